//! `tollhouse-dataplane`: the proxy process.
//!
//! Threading follows Envoy's and nginx's model: each worker thread runs its own single-threaded
//! runtime with its own listening socket (`SO_REUSEPORT`, so the kernel spreads connections),
//! its own upstream pools, and keeps every connection it accepts. Nothing on the request path
//! crosses threads except the snapshot (an `ArcSwap` read) and metric atomics. The main thread
//! runs the control side: snapshot subscription, admin listener and signals.

use anyhow::Context;
use clap::{Parser, ValueEnum};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tollhouse_dataplane::access_log::AccessLogSink;
use tollhouse_dataplane::delivery_tls::{self, ControllerTlsFiles};
use tollhouse_dataplane::phases::quota::QuotaStore;
use tollhouse_dataplane::phases::throttle::Limit;
use tollhouse_dataplane::pipeline::{Gateway, Worker};
use tollhouse_dataplane::runtime::Runtime;
use tollhouse_dataplane::shared_limits::SharedLimits;
use tollhouse_dataplane::{admin, listener, metrics::Metrics, source, tls};

// mimalloc's per-thread free lists suit a thread-per-core proxy: malloc/free were ~9% of the
// dataplane's CPU samples with the system allocator (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Serves API traffic from the snapshots a Tollhouse controller publishes.
#[derive(Parser, Debug)]
#[command(name = "tollhouse-dataplane", version)]
struct Args {
    /// Controller URL to subscribe to; `https://` needs --controller-ca (mutual TLS with
    /// --tls-cert and --tls-key).
    #[arg(
        long,
        env = "TOLLHOUSE_CONTROLLER",
        default_value = "http://127.0.0.1:9090"
    )]
    controller: String,
    /// PEM CA trusted for an `https://` controller; no other root is.
    #[arg(long, value_name = "PEM")]
    controller_ca: Option<PathBuf>,
    /// PEM client certificate presented to the controller.
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "controller_ca"])]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "controller_ca"])]
    tls_key: Option<PathBuf>,
    /// Name to verify in the controller's certificate (default: the host of --controller).
    #[arg(long, value_name = "NAME", requires = "controller_ca")]
    controller_server_name: Option<String>,
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
    /// Seconds to keep serving after SIGTERM, with `/readyz` answering 503, before the
    /// listeners close: load balancers and kube-proxy take a moment to stop sending to a pod
    /// that is going away. A second signal ends the wait.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    drain_delay: u64,
    /// Format of the operational log on standard error: `text` (coloured only on a terminal)
    /// or `json` (one object a line, for log collectors).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "TOLLHOUSE_LOG_FORMAT")]
    log_format: LogFormat,
    /// File the Stages' access logs are appended to (default: standard output), one line per
    /// request in each Stage's `accessLog.format`.
    #[arg(long, env = "TOLLHOUSE_ACCESS_LOG", value_name = "FILE")]
    access_log: Option<PathBuf>,
    /// The account-wide limit every request of this dataplane is held to, after its route's
    /// and its Stage's, in requests per second (AWS's default: 10,000). 0 refuses every
    /// request; `--account-burst-limit 0` too.
    #[arg(long, default_value_t = 10_000.0, value_name = "PER_SECOND", value_parser = rate)]
    account_rate_limit: f64,
    /// Requests the account-wide limit lets through at once (AWS: 5,000).
    #[arg(long, default_value_t = 5_000, value_name = "REQUESTS")]
    account_burst_limit: u32,
    /// The least time between two fetches of a JWT issuer's keys for a token whose `kid` is
    /// not among them (an issuer that rotated its keys), in milliseconds.
    #[arg(long, default_value_t = tollhouse_dataplane::authorizer::DEFAULT_REFETCH_AFTER_MS, value_name = "MILLIS")]
    jwks_refetch_interval_ms: u64,
    /// PEM certificates of CAs trusted, besides the public web roots, for JWT issuers' `https`
    /// discovery and key fetches (an issuer behind a private CA).
    #[arg(long, value_name = "PEM")]
    jwks_ca_file: Option<std::path::PathBuf>,
    /// The region method ARNs name (`arn:aws:execute-api:REGION:…`), as function authorizers
    /// see them in `methodArn` and policies match them.
    #[arg(long, default_value = tollhouse_dataplane::runtime::DEFAULT_REGION, value_name = "REGION")]
    region: String,
    /// The account method ARNs name, and `requestContext.accountId`.
    #[arg(long, default_value = tollhouse_dataplane::runtime::DEFAULT_ACCOUNT_ID, value_name = "ID")]
    account_id: String,
    /// Redis that holds every limit and quota for the whole fleet of dataplanes
    /// (`redis://[:password@]host:port[/db]`); without it each replica holds its own. Read
    /// from the environment in preference to the command line: the URL may carry a password.
    #[arg(
        long,
        env = "TOLLHOUSE_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    redis: Option<String>,
    /// How long a request waits for Redis before its replica's own limits decide instead.
    #[arg(long, default_value_t = 5, value_name = "MILLIS")]
    redis_timeout_ms: u64,
}

/// A rate: a finite decimal, 0 or more.
fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a number of requests per second, 0 or more"
        )),
    }
}

/// Where one worker listens; the first worker resolves port 0 for the others.
#[derive(Clone, Copy)]
struct Addrs {
    http: SocketAddr,
    tls: Option<SocketAddr>,
}

/// How the operational log is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, the event's fields at its top level.
    Json,
}

/// Logs to standard error at `RUST_LOG` (default `info`). Colour only on a terminal, and not
/// with `NO_COLOR` set: escape codes in a file or a collector's pipe are noise.
fn init_logs(format: LogFormat) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder.with_ansi(false).json().flatten_event(true).init(),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logs(args.log_format);
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let controller_tls = controller_tls(&args)?;
    let mut metrics = Metrics::new();
    let shared = match &args.redis {
        Some(url) => {
            let limits = SharedLimits::new(
                url,
                std::time::Duration::from_millis(args.redis_timeout_ms),
                &mut metrics,
            )
            .map_err(anyhow::Error::msg)?;
            tracing::info!(
                server = limits.server(),
                timeout_ms = args.redis_timeout_ms,
                "limits and quotas are shared with the fleet through Redis"
            );
            Some(Arc::new(limits))
        }
        None => None,
    };
    let access_log = AccessLogSink::start(args.access_log.as_deref(), metrics.access_log_dropped())
        .with_context(|| match &args.access_log {
            Some(p) => format!("opening the access log {}", p.display()),
            None => "starting the access log".to_string(),
        })?;
    let mut runtime = Runtime::new(metrics, access_log).with_account_limit(Limit {
        rate: args.account_rate_limit,
        burst: args.account_burst_limit,
    });
    runtime.jwks_refetch_after = std::time::Duration::from_millis(args.jwks_refetch_interval_ms);
    if let Some(path) = &args.jwks_ca_file {
        let certs = tollhouse_pemfile::certificates(path)
            .map_err(|e| anyhow::anyhow!("--jwks-ca-file: {e}"))?;
        let config =
            tollhouse_dataplane::authorizer::jwks_tls(&certs).map_err(anyhow::Error::msg)?;
        runtime.jwks_tls = Some(std::sync::Arc::new(config));
    }
    runtime.arn_prefix = tollhouse_dataplane::runtime::arn_prefix(&args.region, &args.account_id);
    if let Some(shared) = shared.clone() {
        runtime = runtime.with_shared_limits(shared);
    }
    let gateway = Arc::new(Gateway::new(runtime));
    // Quota counters come back from the state directory before any request is served.
    let quota_store = match &args.state_dir {
        Some(dir) => {
            source::private_dir(dir)
                .with_context(|| format!("creating the state directory {}", dir.display()))?;
            let store = QuotaStore::open(dir).map_err(anyhow::Error::msg)?;
            let rows = store.read().map_err(anyhow::Error::msg)?;
            tracing::info!(
                counters = rows.len(),
                "quota counters read from the state directory"
            );
            gateway.runtime.quotas.load(rows);
            Some(Arc::new(store))
        }
        None => None,
    };
    let tls_config = match args.listen_tls {
        Some(_) => Some(Arc::new(
            tls::server_config(gateway.clone()).context("TLS configuration")?,
        )),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut addrs = Addrs {
        http: args.listen,
        tls: args.listen_tls,
    };
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (gateway, tls_config, stop_rx) = (gateway.clone(), tls_config.clone(), stop_rx.clone());
        let thread = std::thread::Builder::new()
            .name(format!("tollhouse-worker-{i}"))
            .spawn(move || run_worker(gateway, addrs, tls_config, stop_rx, ready_tx))
            .context("starting a worker thread")?;
        threads.push(thread);
        addrs = ready_rx
            .recv()
            .context("worker thread ended")?
            .map_err(anyhow::Error::msg)?;
    }

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = control.block_on(run_control(
        args,
        controller_tls,
        addrs,
        workers,
        gateway.clone(),
        stop_tx,
        quota_store.clone(),
    ));
    for t in threads {
        let _ = t.join();
    }
    // Every request has been answered: the last counts go to the store.
    if let Some(store) = quota_store {
        match store.flush(&gateway.runtime.quotas) {
            Ok(n) => tracing::info!(counters = n, "quota counters written"),
            Err(error) => tracing::error!(%error, "quota counters not written"),
        }
    }
    result
}

/// The poll's TLS settings: required for an `https://` controller, refused for `http://` (the
/// flags would otherwise be silently ignored and snapshots, keys included, sent in the clear).
fn controller_tls(args: &Args) -> anyhow::Result<Option<source::ControllerTls>> {
    let url: http::Uri = args
        .controller
        .parse()
        .with_context(|| format!("--controller {} is not a URL", args.controller))?;
    match (url.scheme_str(), &args.controller_ca) {
        (Some("http"), None) => Ok(None),
        (Some("http"), Some(_)) => anyhow::bail!(
            "--controller-ca, --tls-cert and --tls-key need an https:// --controller, not {}",
            args.controller
        ),
        (Some("https"), None) => {
            anyhow::bail!("an https:// --controller needs --controller-ca (the CA to trust)")
        }
        (Some("https"), Some(ca)) => {
            let identity = args.tls_cert.clone().zip(args.tls_key.clone());
            let files = delivery_tls::load(ControllerTlsFiles {
                ca: ca.clone(),
                identity,
            })
            .context("controller TLS")?;
            let server_name = match &args.controller_server_name {
                None => None,
                Some(name) => {
                    let bare = name.trim_start_matches('[').trim_end_matches(']');
                    Some(
                        rustls::pki_types::ServerName::try_from(bare.to_string()).with_context(
                            || format!("--controller-server-name {name} is not a DNS name or IP"),
                        )?,
                    )
                }
            };
            Ok(Some(source::ControllerTls { files, server_name }))
        }
        _ => anyhow::bail!(
            "--controller {} must start with http:// or https://",
            args.controller
        ),
    }
}

/// A listening socket that other workers of this process can bind too.
fn shared_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn run_worker(
    gateway: Arc<Gateway>,
    addrs: Addrs,
    tls_config: Option<Arc<rustls::ServerConfig>>,
    stop: watch::Receiver<bool>,
    ready: mpsc::Sender<Result<Addrs, String>>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("starting a worker runtime: {e}")));
            return;
        }
    };
    rt.block_on(async move {
        let bound = (|| -> Result<_, String> {
            let worker = Arc::new(Worker::new(gateway)?);
            let http =
                shared_listener(addrs.http).map_err(|e| format!("binding {}: {e}", addrs.http))?;
            let tls = match addrs.tls {
                Some(a) => Some(shared_listener(a).map_err(|e| format!("binding {a}: {e}"))?),
                None => None,
            };
            Ok((worker, http, tls))
        })();
        let (worker, http, tls) = match bound {
            Ok(b) => b,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let resolved = Addrs {
            http: http.local_addr().unwrap_or(addrs.http),
            tls: tls.as_ref().and_then(|l| l.local_addr().ok()).or(addrs.tls),
        };
        let _ = ready.send(Ok(resolved));
        let mut tasks = vec![tokio::spawn(listener::serve(
            http,
            worker.clone(),
            None,
            stop.clone(),
        ))];
        if let (Some(l), Some(config)) = (tls, tls_config) {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            tasks.push(tokio::spawn(listener::serve(
                l,
                worker,
                Some(acceptor),
                stop,
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

async fn run_control(
    args: Args,
    controller_tls: Option<source::ControllerTls>,
    addrs: Addrs,
    workers: usize,
    gateway: Arc<Gateway>,
    stop_tx: watch::Sender<bool>,
    quota_store: Option<Arc<QuotaStore>>,
) -> anyhow::Result<()> {
    if let Some(store) = quota_store.clone() {
        tokio::spawn(flush_quotas(store, gateway.clone()));
    }
    if let Some(shared) = gateway.runtime.shared.clone() {
        tokio::spawn(async move { shared.probe().await });
    }
    let admin_l = TcpListener::bind(args.admin)
        .await
        .with_context(|| format!("binding {}", args.admin))?;
    let admin_task = tokio::spawn(admin::serve(admin_l, gateway.clone(), stop_tx.subscribe()));
    let id = args.id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    tracing::info!(listen = %addrs.http, listen_tls = ?addrs.tls, admin = %args.admin, workers, controller = %args.controller, controller.tls = args.controller_ca.is_some(), dataplane.id = %id, "dataplane started");
    let subscription = tokio::spawn(source::run(
        gateway.clone(),
        source::SourceConfig {
            controller: args.controller,
            id,
            state_dir: args.state_dir,
            tls: controller_tls,
            quota_store,
        },
    ));
    shutdown_signal().await;
    if args.drain_delay > 0 {
        gateway
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            drain_delay_secs = args.drain_delay,
            "shutting down: /readyz answers 503, still serving until the drain delay ends"
        );
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(args.drain_delay)) => {}
            () = shutdown_signal() => {}
        }
    }
    tracing::info!("shutting down: draining connections");
    subscription.abort();
    let _ = stop_tx.send(true);
    let _ = admin_task.await;
    Ok(())
}

/// Writes the changed quota counters once a second: a kill -9 loses at most that much.
async fn flush_quotas(store: Arc<QuotaStore>, gateway: Arc<Gateway>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let (store, gateway) = (store.clone(), gateway.clone());
        let result =
            tokio::task::spawn_blocking(move || store.flush(&gateway.runtime.quotas)).await;
        match result {
            Ok(Ok(_)) if failing => {
                failing = false;
                tracing::info!("quota counters are written again");
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) if !failing => {
                failing = true;
                tracing::error!(%error, "quota counters not written; retrying every second");
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }
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
