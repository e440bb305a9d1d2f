//! `tollhouse-controller`: watch a source of objects and serve snapshots to dataplanes.

use anyhow::Context;
use clap::{Args, Parser, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tollhouse_controller::delivery_tls::{self, DeliveryTlsFiles, ReloadingServerConfig};
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
    /// Address of the snapshot server (`/v1/snapshot`, `/v1/usage`, GetUsage, `/status`,
    /// `/healthz`, `/readyz`): plain HTTP, or mutual TLS with --tls-cert, --tls-key and
    /// --client-ca.
    #[arg(long, default_value = "127.0.0.1:9090", env = "TOLLHOUSE_LISTEN")]
    listen: SocketAddr,
    /// Optional plain-HTTP admin listener with `/healthz`, `/readyz`, `/metrics`, `/status`
    /// and GetUsage (no snapshots, no usage reports), for probes, Prometheus and usage queries
    /// when `--listen` requires mTLS.
    #[arg(long, env = "TOLLHOUSE_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    delivery: Delivery,
    #[command(flatten)]
    kube: KubeArgs,
    /// Format of the log on standard error: `text` (coloured only on a terminal) or `json`
    /// (one object a line, for log collectors).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "TOLLHOUSE_LOG_FORMAT")]
    log_format: LogFormat,
}

/// How the operational log is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, the event's fields at its top level.
    Json,
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

/// Where objects come from; exactly one.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Source {
    /// Directory of manifests (`*.yaml`, `*.yml`, recursive), watched for changes.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Watch a Kubernetes API server, with this kubeconfig file.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Watch the Kubernetes API server of the cluster this runs in (in-cluster service
    /// account, or `$KUBECONFIG`).
    #[arg(long)]
    kubernetes: bool,
}

/// Settings of the Kubernetes source.
#[derive(Args, Debug)]
struct KubeArgs {
    /// Elect a leader with a Lease, for running several replicas: only the leader writes
    /// status and serves snapshots; standbys redirect dataplanes to it.
    #[arg(long)]
    leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "tollhouse-controller")]
    lease_name: String,
    /// Seconds a leader's Lease lasts without renewal (a standby takes over after it).
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
    /// This replica's identity in the Lease and on Events.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// URL dataplanes reach this replica's snapshot server at (standbys redirect to the
    /// leader's), e.g. `https://10.0.0.5:9090`.
    #[arg(long, env = "TOLLHOUSE_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// Watch only this namespace (default: every namespace).
    #[arg(long, env = "TOLLHOUSE_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// The gateway's public URL, shown as the invoke URL of stages without host names.
    #[arg(long, env = "TOLLHOUSE_PUBLIC_URL")]
    public_url: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    init_logs(cli.log_format);

    let kube_client = match (&cli.source.kubeconfig, cli.source.kubernetes) {
        (Some(path), _) => Some(kube_client(Some(path)).await?),
        (None, true) => Some(kube_client(None).await?),
        (None, false) => None,
    };
    if let Some(dir) = &cli.source.dir {
        directory::check(dir)?;
    }
    if let Some(raw) = cli.kube.advertise_url.take() {
        let url = tollhouse_controller::k8s::leader::advertise_url(&raw);
        cli.kube.advertise_url = Some(url.map_err(anyhow::Error::msg)?);
    }
    let reloader = match cli.delivery {
        Delivery {
            tls_cert: Some(cert),
            tls_key: Some(key),
            client_ca: Some(client_ca),
        } => Some(
            delivery_tls::load(DeliveryTlsFiles {
                cert,
                key,
                client_ca,
            })
            .context("snapshot server TLS")?,
        ),
        _ => None,
    };
    let tls = reloader
        .as_ref()
        .map(|reloader| ReloadingServerConfig::from(reloader.config()));
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    info!(listen = %cli.listen, mtls = tls.is_some(), "snapshot server listening");
    if tls.is_none() {
        info!("plain HTTP: snapshots carrying TLS private keys are refused here (serve them with --tls-cert, --tls-key and --client-ca)");
    }

    let hub = Arc::new(Hub::new());
    if let Some(reloader) = reloader {
        // Kubelet and cert-manager replace the files in place: new connections pick them up.
        let hub = hub.clone();
        tokio::spawn(
            reloader.watch(delivery_tls::RELOAD_INTERVAL, move |reload| match reload {
                delivery_tls::Reload::Applied => {
                    hub.metrics.tls_reloads.inc();
                }
                delivery_tls::Reload::Refused => hub.metrics.error("tls_reload"),
                delivery_tls::Reload::Unchanged | delivery_tls::Reload::Changing => {}
            }),
        );
    }
    let (stop, stopped) = watch::channel(false);
    let mut source = match (cli.source.dir, kube_client) {
        (Some(dir), _) => tokio::spawn(directory::run(
            dir,
            Reconciler::new(hub.clone()),
            stopped.clone(),
        )),
        (None, Some(client)) => {
            let identity = cli.kube.identity.clone().unwrap_or_else(default_identity);
            let background =
                run_kubernetes(client, &cli.kube, identity, hub.clone(), stopped.clone()).await;
            tokio::spawn(async move {
                for task in background {
                    let _ = task.await;
                }
                Ok(())
            })
        }
        (None, None) => anyhow::bail!("no source given: use --dir, --kubeconfig or --kubernetes"),
    };
    if let Some(address) = cli.admin_listen {
        let admin = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        info!(listen = %address, "admin listener (health, metrics, status)");
        let mut admin_stopped = stopped.clone();
        tokio::spawn(server::serve_admin(admin, hub.clone(), async move {
            let _ = admin_stopped.wait_for(|stop| *stop).await;
        }));
    }
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

/// Logs to standard error at `RUST_LOG` (default `info`). Colour only on a terminal, and not
/// with `NO_COLOR` set: escape codes in a file or a collector's pipe are noise.
fn init_logs(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder.with_ansi(false).json().flatten_event(true).init(),
    }
}

/// A client from the given kubeconfig, or inferred (in-cluster, then `$KUBECONFIG`).
async fn kube_client(path: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match path {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster service account and no usable $KUBECONFIG")?,
    };
    info!(server = %config.cluster_url, "using the Kubernetes API server");
    kube::Client::try_from(config).context("cannot build a Kubernetes client")
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "tollhouse".into());
    format!("{host}-{}", std::process::id())
}

/// Starts the Kubernetes source: reflectors, translate loop, election and status writer.
async fn run_kubernetes(
    client: kube::Client,
    args: &KubeArgs,
    identity: String,
    hub: Arc<Hub>,
    stopped: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use tollhouse_controller::k8s::{leader, source, status};
    let trigger = Arc::new(tokio::sync::Notify::new());
    let stores = source::start(
        client.clone(),
        hub.clone(),
        trigger.clone(),
        args.watch_namespace.as_deref(),
    )
    .await;
    let (statuses_tx, statuses_rx) = watch::channel(Arc::default());
    let (leader_tx, leader_rx) = watch::channel(!args.leader_election);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(source::run(
        stores.clone(),
        trigger,
        Reconciler::new(hub.clone()),
        statuses_tx,
        stopped.clone(),
    )));
    if args.leader_election {
        let config = leader::LeaseConfig {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration: Duration::from_secs(args.lease_duration.max(1)),
            advertise_url: args.advertise_url.clone(),
        };
        tasks.push(tokio::spawn(leader::run(
            client.clone(),
            config,
            hub.clone(),
            leader_tx,
            stopped.clone(),
        )));
    } else {
        // A single replica leads; keep the sender alive for the writer.
        let mut until_stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            let _ = until_stopped.wait_for(|s| *s).await;
            drop(leader_tx);
        }));
    }
    let config = status::StatusConfig {
        public_url: args.public_url.clone(),
        instance: identity,
    };
    tasks.push(tokio::spawn(status::run(
        client,
        hub,
        stores,
        statuses_rx,
        leader_rx,
        config,
        stopped,
    )));
    tasks
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
