//! `tollhouse-controller`: watch a source of objects and serve snapshots to dataplanes.

use anyhow::Context;
use clap::{Args, Parser};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;
use tollhouse_controller::delivery_tls::{self, DeliveryTlsFiles};
use tollhouse_controller::reconcile::Reconciler;
use tollhouse_controller::server::{self, Hub};
use tollhouse_controller::source::directory;
use tracing::{error, info};

/// Tollhouse controller: translates Stages and ApiRoutes into snapshots for the dataplanes.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    source: Source,
    /// Address of the snapshot server (`/v1/snapshot`, `/status`, `/healthz`, `/readyz`):
    /// plain HTTP, or mutual TLS with --tls-cert, --tls-key and --client-ca.
    #[arg(long, default_value = "127.0.0.1:9090", env = "TOLLHOUSE_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    delivery: Delivery,
}

/// Mutual TLS on the snapshot server: all three flags or none.
#[derive(Args, Debug)]
struct Delivery {
    /// PEM certificate chain of the snapshot server (turns on mutual TLS on --listen).
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "client_ca"])]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "client_ca"])]
    tls_key: Option<PathBuf>,
    /// PEM CA that dataplane client certificates must chain to; others are refused.
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "tls_key"])]
    client_ca: Option<PathBuf>,
}

/// Where objects come from; exactly one (a Kubernetes source will join this group).
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Source {
    /// Directory of manifests (`*.yaml`, `*.yml`, recursive), watched for changes.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let Some(dir) = cli.source.dir else {
        anyhow::bail!("no source given: use --dir");
    };
    directory::check(&dir)?;
    let tls = match cli.delivery {
        Delivery {
            tls_cert: Some(cert),
            tls_key: Some(key),
            client_ca: Some(client_ca),
        } => Some(
            delivery_tls::acceptor(&DeliveryTlsFiles {
                cert,
                key,
                client_ca,
            })
            .context("snapshot server TLS")?,
        ),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    info!(listen = %cli.listen, mtls = tls.is_some(), "snapshot server listening");

    let hub = Arc::new(Hub::new());
    let (stop, stopped) = watch::channel(false);
    let mut source = tokio::spawn(directory::run(
        dir,
        Reconciler::new(hub.clone()),
        stopped.clone(),
    ));
    let mut server_stopped = stopped.clone();
    let mut server = tokio::spawn(server::serve(listener, hub, tls, async move {
        let _ = server_stopped.wait_for(|stop| *stop).await;
    }));

    let result = tokio::select! {
        () = shutdown_signal() => {
            info!("shutting down");
            Ok(())
        }
        finished = &mut source => match finished {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e)),
            Err(e) => Err(anyhow::Error::new(e).context("source task failed")),
        },
    };
    stop.send_replace(true);
    if let Err(e) = (&mut server).await {
        error!(error = %e, "snapshot server task failed");
    }
    if !source.is_finished() {
        let _ = source.await;
    }
    info!("stopped");
    result
}

/// Resolves on SIGINT or SIGTERM (Kubernetes sends SIGTERM before killing a pod).
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
