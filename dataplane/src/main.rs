//! `tollhouse-dataplane`: the proxy process.

use anyhow::Context;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollhouse_dataplane::{admin, listener, metrics::Metrics, pipeline::Gateway, source, tls};

/// Serves API traffic from the snapshots a Tollhouse controller publishes.
#[derive(Parser, Debug)]
#[command(name = "tollhouse-dataplane", version)]
struct Args {
    /// Controller URL to subscribe to.
    #[arg(
        long,
        env = "TOLLHOUSE_CONTROLLER",
        default_value = "http://127.0.0.1:9090"
    )]
    controller: String,
    /// Plain-text listener (HTTP/1.1 and h2c).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// TLS listener (certificates chosen by SNI from the stages' Secrets).
    #[arg(long)]
    listen_tls: Option<SocketAddr>,
    /// Admin listener: /healthz, /readyz, /metrics, /snapshot.
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: SocketAddr,
    /// Directory that keeps the last good snapshot, served when the controller is away.
    #[arg(long, env = "TOLLHOUSE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Name reported to the controller (default: host name and process id).
    #[arg(long)]
    id: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = args.workers {
        rt.worker_threads(n.max(1));
    }
    rt.build()
        .context("starting the runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let gateway = Arc::new(Gateway::new(Metrics::new()).context("building upstream clients")?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let admin_l = TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("binding {}", args.admin))?;
    let mut tasks = vec![
        tokio::spawn(listener::serve(
            http,
            gateway.clone(),
            None,
            stop_rx.clone(),
        )),
        tokio::spawn(admin::serve(admin_l, gateway.clone(), stop_rx.clone())),
    ];
    if let Some(addr) = args.listen_tls {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let config = tls::server_config(gateway.clone()).context("TLS configuration")?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        tasks.push(tokio::spawn(listener::serve(
            l,
            gateway.clone(),
            Some(acceptor),
            stop_rx.clone(),
        )));
    }
    let id = args.id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    tracing::info!(listen = %args.listen, listen_tls = ?args.listen_tls, admin = %args.admin, controller = %args.controller, dataplane.id = %id, "dataplane started");
    let subscription = tokio::spawn(source::run(
        gateway.clone(),
        source::SourceConfig {
            controller: args.controller,
            id,
            state_dir: args.state_dir,
        },
    ));
    shutdown_signal().await;
    tracing::info!("shutting down: draining connections");
    subscription.abort();
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
