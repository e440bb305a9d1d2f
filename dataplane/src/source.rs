//! Where snapshots come from: the controller (long-poll subscription) and the state directory.
//!
//! The dataplane asks the controller for the snapshot it does not have yet
//! (`GET /v1/snapshot?known=<hash>&applied=<version>`); the controller answers at once when its
//! snapshot differs, otherwise holds the request until one does (or answers 304 after `wait`).
//! Each request reports the version this dataplane serves. The last snapshot applied is kept in
//! `--state-dir`; when the controller cannot be reached and nothing is served yet, the dataplane
//! serves from it, so a controller outage never takes the API down.
//!
//! With an `https://` controller the poll speaks TLS, trusting only the configured CA and
//! presenting this dataplane's client certificate ([`crate::delivery_tls`]). Those files are
//! re-read while it runs; after a change, the next poll goes through a new client (and so a
//! new connection and handshake) built from the new files. A controller
//! replica that is not the leader may answer `307` with the leader's URL: the dataplane polls
//! there while it answers, and goes back to the configured URL when it does not.

use crate::compile::{Compiled, CompiledSnapshot};
use crate::delivery_tls::{self, Reloader};
use crate::pipeline::Gateway;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::ServerName;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollhouse_snapshot::{Report, Versioned};

/// Where to subscribe and where to keep state.
pub struct SourceConfig {
    /// Controller base URL, e.g. `http://127.0.0.1:9090`.
    pub controller: String,
    /// This dataplane's id, reported to the controller.
    pub id: String,
    /// Directory for the last good snapshot.
    pub state_dir: Option<PathBuf>,
    /// TLS for an `https://` controller; `None` polls over plain HTTP.
    pub tls: Option<ControllerTls>,
    /// The quota counters' store, whose past days the usage reporter starts from.
    pub quota_store: Option<Arc<crate::phases::quota::QuotaStore>>,
}

/// How the poll speaks TLS to the controller.
pub struct ControllerTls {
    /// Roots (the controller's CA only) and the client certificate, re-read while polling.
    pub files: Reloader,
    /// Name to verify in the controller's certificate; `None`: the host of the URL polled.
    pub server_name: Option<ServerName<'static>>,
}

const STATE_FILE: &str = "snapshot.json";
const LONG_POLL_SECS: u64 = 30;
/// Redirects followed in a row before the poll counts as failed.
const MAX_REDIRECTS: u8 = 5;

/// Why one poll did not produce a snapshot.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PollError {
    #[error("controller unreachable: {0}")]
    Unreachable(String),
    #[error("controller TLS handshake failed: {0}")]
    Tls(String),
    #[error("controller answered {0}")]
    Status(http::StatusCode),
    #[error("unreadable snapshot: {0}")]
    Decode(String),
    #[error("controller redirect refused: {0}")]
    Redirect(String),
}

impl PollError {
    /// A transport error, told apart as TLS or not: a TLS failure is a configuration problem
    /// (wrong CA, wrong name, refused client certificate) that retrying alone will not fix.
    pub(crate) fn transport(error: &(dyn StdError + 'static)) -> PollError {
        match tls_failure(error) {
            Some(tls) => PollError::Tls(tls.to_string()),
            None => PollError::Unreachable(chain(error)),
        }
    }
}

/// The rustls error somewhere in `error`'s chain. `io::Error::source` skips the error it
/// wraps, so wrapped errors are looked into as well.
fn tls_failure<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(tls) = tls_failure(inner) {
                return Some(tls);
            }
        }
        next = e.source();
    }
    None
}

/// `error` and its causes, `: `-separated, without repeating a cause its wrapper already shows.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let cause = e.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        next = e.source();
    }
    text
}

/// What one poll brought.
enum Polled {
    NotModified,
    Snapshot(Versioned, Bytes),
    /// A `307` to this `Location`.
    Redirect(String),
}

/// Where the next poll (or usage report) goes: the configured controller, or the URL it last
/// redirected to.
#[derive(Debug)]
pub(crate) struct Target {
    /// `<scheme>://<authority><path>` from `--controller`.
    configured: String,
    scheme: http::uri::Scheme,
    redirected: Option<String>,
    /// Redirects followed since the last 200 or 304.
    hops: u8,
}

impl Target {
    /// `path` (e.g. `/v1/snapshot`) on `controller`.
    pub(crate) fn new(controller: &str, path: &str) -> Target {
        let base = controller.trim_end_matches('/');
        // A URL that does not parse fails every poll, as it always did; main checks it first.
        let scheme = base
            .parse::<http::Uri>()
            .ok()
            .and_then(|uri| uri.scheme().cloned())
            .unwrap_or(http::uri::Scheme::HTTP);
        Target {
            configured: format!("{base}{path}"),
            scheme,
            redirected: None,
            hops: 0,
        }
    }

    /// The endpoint to call, without a query.
    pub(crate) fn endpoint(&self) -> &str {
        self.redirected.as_deref().unwrap_or(&self.configured)
    }

    /// Follows a `307`: the next poll, with the same query, goes to `location` (its own query
    /// dropped). Refused when it is not an absolute URL of the configured scheme, or when it
    /// is the sixth redirect in a row.
    pub(crate) fn redirect(&mut self, location: &str) -> Result<(), PollError> {
        if self.hops >= MAX_REDIRECTS {
            return Err(PollError::Redirect(format!(
                "more than {MAX_REDIRECTS} redirects in a row"
            )));
        }
        let uri: http::Uri = location
            .parse()
            .map_err(|_| PollError::Redirect(format!("Location {location:?} is not a URL")))?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(PollError::Redirect(format!(
                "Location {location:?} is not an absolute URL"
            )));
        };
        if *scheme != self.scheme {
            return Err(PollError::Redirect(format!(
                "Location {location:?} is not {}://",
                self.scheme
            )));
        }
        self.redirected = Some(format!("{scheme}://{authority}{}", uri.path()));
        self.hops += 1;
        Ok(())
    }

    /// A 200 or 304: keep polling where we are.
    pub(crate) fn answered(&mut self) {
        self.hops = 0;
    }

    /// Anything else: back to the configured controller.
    pub(crate) fn failed(&mut self) {
        self.redirected = None;
        self.hops = 0;
    }
}

/// Reads the last good snapshot from the state directory.
pub fn load_state(dir: &Path) -> Option<Versioned> {
    let path = dir.join(STATE_FILE);
    // Written by an older build (0644 in 0755), its private keys stay readable until the next
    // save: tighten now.
    if dir.exists() {
        if let Err(e) = private_dir(dir).and_then(|()| private_file_mode(&path)) {
            tracing::warn!(dir = %dir.display(), error = %e, "could not make the state directory private");
        }
    }
    let bytes = std::fs::read(&path).ok()?;
    match serde_json::from_slice::<Versioned>(&bytes) {
        Ok(v) if v.verify().is_ok() => Some(v),
        Ok(_) => {
            tracing::warn!(file = %path.display(), "state snapshot fails its integrity check; ignored");
            None
        }
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "state snapshot unreadable; ignored");
            None
        }
    }
}

/// Writes the snapshot atomically: a crash leaves the old file or the new one, never half.
/// The snapshot holds the Stages' TLS private keys, so the directory is 0700 and the file is
/// 0600 before a byte of it is written.
pub fn save_state(dir: &Path, raw: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    private_dir(dir)?;
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        // The mode above applies only to a new file; a leftover one keeps its own.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(raw)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(STATE_FILE))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `dir` (and missing parents) as 0700, or tightens an existing one to 0700. A shared
/// directory (sticky bit, as `/tmp`) is refused rather than changed: it is not ours to close.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o1000 != 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the state directory is shared (sticky bit); give the dataplane a directory of its own",
            ));
        }
        if mode & 0o777 != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

/// Makes the file at `path`, if there is one, readable by its owner only.
pub fn private_file_mode(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// Compiles and installs a snapshot; returns, when it is now served, the report of what it
/// left out (sent with every later poll, so the controller's status says what is served).
pub fn install(gateway: &Gateway, v: &Versioned, how: &'static str) -> Option<Report> {
    match CompiledSnapshot::compile(v, &gateway.runtime) {
        Ok(Compiled {
            snapshot: compiled,
            left_out,
            notes,
        }) => {
            for note in &notes {
                tracing::warn!(snapshot.version = v.version, "{note}");
            }
            for entry in &left_out {
                tracing::warn!(
                    snapshot.version = v.version,
                    object.kind = %entry.source.kind,
                    object.namespace = %entry.source.namespace,
                    object.name = %entry.source.name,
                    reason = %entry.reason,
                    "left out: {}",
                    entry.message
                );
            }
            tracing::info!(
                snapshot.version = v.version,
                snapshot.hash = %v.hash,
                stages = compiled.stage_count(),
                routes = compiled.route_count(),
                how,
                "snapshot applied"
            );
            let keys = compiled.metric_keys();
            let buckets = compiled.throttle_keys();
            let key_levels = compiled.key_levels().clone();
            let jwks = compiled.jwks_keys().clone();
            let results = compiled.result_keys().clone();
            compiled.keys.forget_revoked();
            gateway.apply(compiled);
            gateway.runtime.metrics.retain(keys);
            gateway.runtime.throttles.keep_only(&buckets);
            gateway.runtime.key_throttles.keep_only(&key_levels);
            gateway.runtime.jwks.keep_only(&jwks);
            gateway.runtime.authorizer_results.keep_only(&results);
            gateway.runtime.metrics.snapshot_apply(how, Some(v.version));
            Some(Report::new(left_out))
        }
        Err(e) => {
            tracing::error!(snapshot.version = v.version, error = %e, "snapshot refused; keeping the current one");
            gateway.runtime.metrics.snapshot_apply("rejected", None);
            None
        }
    }
}

/// Follows the controller forever, with backoff; falls back to the state directory.
pub async fn run(gateway: Arc<Gateway>, mut config: SourceConfig) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(2)));
    connector.set_nodelay(true);
    match config.tls.take() {
        None => {
            let client = Client::builder(TokioExecutor::new()).build(connector);
            let clients = move || client.clone();
            let usage = report_usage(clients.clone(), &gateway, &mut config);
            tokio::join!(follow(clients, gateway, config), usage);
        }
        Some(tls) => {
            connector.enforce_http(false);
            let configs = tls.files.config();
            // The client and the config it was built from; a reload makes a new client, whose
            // pool (and so handshake) is fresh. The old client's connection is dropped with it,
            // between two polls.
            let mut built: Option<(Arc<rustls::ClientConfig>, Client<_, Full<Bytes>>)> = None;
            let clients = move || {
                let current = configs.current();
                if let Some((from, client)) = &built {
                    if Arc::ptr_eq(from, &current) {
                        return client.clone();
                    }
                    tracing::debug!("new connections to the controller use the reloaded TLS files");
                }
                let builder = HttpsConnectorBuilder::new()
                    .with_tls_config(rustls::ClientConfig::clone(&current))
                    .https_only();
                let builder = match tls.server_name.clone() {
                    Some(name) => {
                        builder.with_server_name_resolver(FixedServerNameResolver::new(name))
                    }
                    None => builder,
                };
                let client = Client::builder(TokioExecutor::new())
                    .build(builder.enable_http1().wrap_connector(connector.clone()));
                built = Some((current, client.clone()));
                client
            };
            let metrics = gateway.clone();
            let counted = move |reload| match reload {
                tollhouse_pemfile::reload::Reload::Applied => {
                    metrics.runtime.metrics.tls_reload("applied")
                }
                tollhouse_pemfile::reload::Reload::Refused => {
                    metrics.runtime.metrics.tls_reload("refused")
                }
                _ => {}
            };
            // Each clone of `clients` keeps its own client, rebuilt after a reload.
            let usage = report_usage(clients.clone(), &gateway, &mut config);
            // All run forever; the task is aborted at shutdown.
            tokio::select! {
                () = tls.files.watch(delivery_tls::RELOAD_INTERVAL, counted) => {}
                _ = async { tokio::join!(follow(clients, gateway, config), usage) } => {}
            }
        }
    }
}

/// The usage reporter ([`crate::usage_report`]) to the same controller, through the same
/// kind of client as the poll.
fn report_usage<C>(
    clients: impl FnMut() -> Client<C, Full<Bytes>>,
    gateway: &Arc<Gateway>,
    config: &mut SourceConfig,
) -> impl std::future::Future<Output = ()>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let source = crate::usage_report::source_id(config.state_dir.as_deref());
    crate::usage_report::run(
        clients,
        gateway.clone(),
        config.controller.clone(),
        source,
        config.quota_store.take(),
    )
}

/// Polls with the client `client()` gives for each poll.
async fn follow<C>(
    mut client: impl FnMut() -> Client<C, Full<Bytes>>,
    gateway: Arc<Gateway>,
    config: SourceConfig,
) where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut target = Target::new(&config.controller, "/v1/snapshot");
    let mut fallback = config.state_dir.as_deref().and_then(load_state);
    let mut known = String::new();
    // The version served and what compiling it left out.
    let mut applied: Option<(u64, Report)> = None;
    // The version last written to the state directory (writes run on the blocking pool).
    let saved = Arc::new(std::sync::Mutex::new(0u64));
    let mut backoff = Duration::from_millis(100);
    // Serves the state directory's snapshot when nothing is served yet and the controller
    // cannot give a usable one (unreachable, nothing published, or a snapshot we refused).
    // It also becomes `known` unless a refused hash is there, so the same content is not
    // sent again.
    let restore = |fallback: &mut Option<Versioned>,
                   applied: &mut Option<(u64, Report)>,
                   known: &mut String,
                   why: &str| {
        if gateway.snapshot.load().is_some() {
            return;
        }
        if let Some(v) = fallback.take() {
            if let Some(report) = install(&gateway, &v, "restored") {
                tracing::warn!(
                    snapshot.version = v.version,
                    reason = why,
                    "serving the last good snapshot from the state directory"
                );
                *applied = Some((v.version, report));
                if known.is_empty() {
                    *known = v.hash.clone();
                }
            }
        }
    };
    loop {
        // `known` empty makes the controller answer at once when it has anything.
        let mut url = format!(
            "{}?known={known}&dataplane={}&wait={LONG_POLL_SECS}",
            target.endpoint(),
            urlencode(&config.id)
        );
        if let Some((v, report)) = &applied {
            url.push_str(&format!("&applied={v}"));
            if !report.is_empty() {
                if let Ok(json) = serde_json::to_string(report) {
                    url.push_str("&report=");
                    url.push_str(&urlencode(&json));
                }
            }
        }
        let result = match poll(&client(), &url, LONG_POLL_SECS).await {
            Ok(Polled::Redirect(location)) => match target.redirect(&location) {
                Ok(()) => {
                    tracing::info!(to = %target.endpoint(), "controller redirected the snapshot poll");
                    continue;
                }
                Err(e) => Err(e),
            },
            Ok(Polled::NotModified) => Ok(None),
            Ok(Polled::Snapshot(v, raw)) => Ok(Some((v, raw))),
            Err(e) => Err(e),
        };
        match result {
            Ok(None) => {
                target.answered();
                backoff = Duration::from_millis(100);
                restore(
                    &mut fallback,
                    &mut applied,
                    &mut known,
                    "the controller has no snapshot yet",
                );
            }
            Ok(Some((v, raw))) => {
                target.answered();
                backoff = Duration::from_millis(100);
                // Remember it even if refused: the controller then waits for the next change.
                known = v.hash.clone();
                if let Some(report) = install(&gateway, &v, "applied") {
                    fallback = None;
                    applied = Some((v.version, report));
                    if let Some(dir) = &config.state_dir {
                        // Written (and fsynced) off the poll path, so the next poll reports the
                        // applied version at once; the newest version always wins the file.
                        let (dir, saved, version) = (dir.clone(), saved.clone(), v.version);
                        tokio::task::spawn_blocking(move || {
                            let Ok(mut last) = saved.lock() else { return };
                            if *last >= version {
                                return;
                            }
                            match save_state(&dir, &raw) {
                                Ok(()) => *last = version,
                                Err(e) => {
                                    tracing::warn!(dir = %dir.display(), error = %e, "could not save the snapshot to the state directory")
                                }
                            }
                        });
                    }
                } else {
                    restore(
                        &mut fallback,
                        &mut applied,
                        &mut known,
                        "the controller's snapshot was refused",
                    );
                }
            }
            Err(e) => {
                tracing::warn!(controller = %target.endpoint(), error = %e, retry_in_ms = backoff.as_millis() as u64, "snapshot poll failed");
                target.failed();
                restore(
                    &mut fallback,
                    &mut applied,
                    &mut known,
                    "the controller is unreachable",
                );
                let jitter =
                    Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
                tokio::time::sleep(backoff + jitter).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn poll<C>(client: &Client<C, Full<Bytes>>, url: &str, wait: u64) -> Result<Polled, PollError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| PollError::Unreachable(e.to_string()))?;
    let req = http::Request::get(uri)
        .body(Full::new(Bytes::new()))
        .map_err(|e| PollError::Unreachable(e.to_string()))?;
    let deadline = Duration::from_secs(wait + 10);
    let resp = tokio::time::timeout(deadline, client.request(req))
        .await
        .map_err(|_| PollError::Unreachable("timed out".into()))?
        .map_err(|e| PollError::transport(&e))?;
    match resp.status() {
        http::StatusCode::NOT_MODIFIED => Ok(Polled::NotModified),
        http::StatusCode::OK => {
            let raw = tokio::time::timeout(deadline, resp.into_body().collect())
                .await
                .map_err(|_| PollError::Unreachable("timed out reading body".into()))?
                .map_err(|e| PollError::transport(&e))?
                .to_bytes();
            let v: Versioned =
                serde_json::from_slice(&raw).map_err(|e| PollError::Decode(e.to_string()))?;
            Ok(Polled::Snapshot(v, raw))
        }
        http::StatusCode::TEMPORARY_REDIRECT => resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| Polled::Redirect(l.to_string()))
            .ok_or_else(|| PollError::Redirect("307 without a readable Location".into())),
        s => Err(PollError::Status(s)),
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollhouse_snapshot::Snapshot;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    /// The state file holds private keys: 0600 in a 0700 directory, whether the directory is
    /// new or was left open (0755, a 0644 file) by an older build.
    #[test]
    fn state_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("tollhouse-modes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let raw = serde_json::to_vec(&Versioned::new(5, Snapshot::default())).unwrap();

        let fresh = root.join("fresh").join("state");
        save_state(&fresh, &raw).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(mode(&fresh.join(STATE_FILE)), 0o600);

        let old = root.join("old");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(old.join(STATE_FILE), &raw).unwrap();
        std::fs::set_permissions(old.join(STATE_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        // A leftover temporary file keeps its mode when opened: it must not matter.
        let tmp = old.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, b"").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        // Reading at startup tightens what is there before anything new arrives.
        assert!(load_state(&old).is_some());
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join(STATE_FILE)), 0o600);
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        save_state(&old, &raw).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join(STATE_FILE)), 0o600);

        // A shared directory is not changed, and nothing is written into it.
        let shared = root.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(save_state(&shared, &raw).is_err());
        assert_eq!(mode(&shared), 0o1777);
        assert!(!shared.join(STATE_FILE).exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn state_round_trips_and_rejects_corruption() {
        let dir = std::env::temp_dir().join(format!("tollhouse-state-{}", std::process::id()));
        let v = Versioned::new(5, Snapshot::default());
        save_state(&dir, &serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(load_state(&dir), Some(v));
        std::fs::write(dir.join(STATE_FILE), b"{\"schema\":1,").unwrap();
        assert_eq!(load_state(&dir), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A controller whose snapshot this dataplane refuses (here: a newer schema) must not
    /// leave it serving nothing when its state directory holds a good snapshot.
    #[tokio::test]
    async fn a_refused_snapshot_falls_back_to_the_state_directory() {
        let dir = std::env::temp_dir().join(format!("tollhouse-refused-{}", std::process::id()));
        let good = Versioned::new(41, Snapshot::default());
        save_state(&dir, &serde_json::to_vec(&good).unwrap()).unwrap();
        let mut newer = Versioned::new(42, Snapshot::default());
        newer.schema = 99;
        let body = Bytes::from(serde_json::to_vec(&newer).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let body = body.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |_req: http::Request<hyper::body::Incoming>| {
                            let body = body.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(body),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let (gateway, task) = follow_controller(addr, Some(dir.clone()));
        let served = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(s) = gateway.snapshot.load_full() {
                    return s.version;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(served.unwrap(), 41);
    }

    #[test]
    fn redirects_must_be_absolute_same_scheme_and_at_most_five_in_a_row() {
        let mut t = Target::new("https://standby:9090/", "/v1/snapshot");
        assert_eq!(t.endpoint(), "https://standby:9090/v1/snapshot");
        for _ in 0..MAX_REDIRECTS {
            t.redirect("https://leader:9090/v1/snapshot?known=abc")
                .unwrap();
        }
        // Its own query is dropped: the dataplane sends its current one.
        assert_eq!(t.endpoint(), "https://leader:9090/v1/snapshot");
        assert!(matches!(
            t.redirect("https://leader:9090/v1/snapshot"),
            Err(PollError::Redirect(_))
        ));
        // An answer ends the run of redirects.
        t.answered();
        t.redirect("https://leader-2:9090/v1/snapshot").unwrap();
        assert_eq!(t.endpoint(), "https://leader-2:9090/v1/snapshot");
        for bad in [
            "http://leader:9090/v1/snapshot",
            "/v1/snapshot",
            "leader:9090",
            "::",
        ] {
            assert!(t.redirect(bad).is_err(), "{bad}");
        }
        assert_eq!(t.endpoint(), "https://leader-2:9090/v1/snapshot");
        t.failed();
        assert_eq!(t.endpoint(), "https://standby:9090/v1/snapshot");
    }

    /// A tiny HTTP/1.1 server: `answer` gets the request URI and returns the status, the
    /// `Location` and the body. A 304 is held for a moment, as a long-poll would be.
    async fn tiny(
        answer: impl Fn(&http::Uri) -> (http::StatusCode, Option<String>, Bytes) + Send + Sync + 'static,
    ) -> std::net::SocketAddr {
        let answer = Arc::new(answer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let (status, location, body) = answer(req.uri());
                            async move {
                                if status == http::StatusCode::NOT_MODIFIED {
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                                let mut resp = http::Response::builder().status(status);
                                if let Some(l) = location {
                                    resp = resp.header(http::header::LOCATION, l);
                                }
                                Ok::<_, std::convert::Infallible>(
                                    resp.body(http_body_util::Full::new(body)).unwrap(),
                                )
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        addr
    }

    /// A gateway following the controller at `addr` as dataplane `dp-1`.
    fn follow_controller(
        addr: std::net::SocketAddr,
        state_dir: Option<PathBuf>,
    ) -> (Arc<Gateway>, tokio::task::JoinHandle<()>) {
        let gateway = Arc::new(Gateway::new(crate::runtime::Runtime::without_logs(
            crate::metrics::Metrics::new(),
        )));
        let task = tokio::spawn(run(
            gateway.clone(),
            SourceConfig {
                controller: format!("http://{addr}"),
                id: "dp-1".into(),
                state_dir,
                tls: None,
                quota_store: None,
            },
        ));
        (gateway, task)
    }

    /// A standby that redirects to a leader: the dataplane gets the leader's snapshot, keeps
    /// polling the leader directly, and goes back to the standby when the leader fails.
    #[tokio::test]
    async fn a_redirect_is_followed_while_its_target_answers() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Mutex;

        let v = Versioned::new(7, Snapshot::default());
        let body = Bytes::from(serde_json::to_vec(&v).unwrap());
        let hash = v.hash.clone();
        let leader_hits = Arc::new(AtomicUsize::new(0));
        let leader_queries = Arc::new(Mutex::new(Vec::<String>::new()));
        let leader_down = Arc::new(AtomicBool::new(false));
        let leader = tiny({
            let (hits, queries, down) = (
                leader_hits.clone(),
                leader_queries.clone(),
                leader_down.clone(),
            );
            move |uri| {
                hits.fetch_add(1, Ordering::SeqCst);
                let query = uri.query().unwrap_or("").to_string();
                queries.lock().unwrap().push(query.clone());
                if down.load(Ordering::SeqCst) || uri.path() != "/v1/snapshot" {
                    (http::StatusCode::INTERNAL_SERVER_ERROR, None, Bytes::new())
                } else if query.contains(&format!("known={hash}")) {
                    (http::StatusCode::NOT_MODIFIED, None, Bytes::new())
                } else {
                    (http::StatusCode::OK, None, body.clone())
                }
            }
        })
        .await;
        let standby_hits = Arc::new(AtomicUsize::new(0));
        let standby = tiny({
            let hits = standby_hits.clone();
            move |_| {
                hits.fetch_add(1, Ordering::SeqCst);
                (
                    http::StatusCode::TEMPORARY_REDIRECT,
                    Some(format!("http://{leader}/v1/snapshot?from=standby")),
                    Bytes::new(),
                )
            }
        })
        .await;

        let (gateway, task) = follow_controller(standby, None);
        let until = |what: &'static str, done: Box<dyn Fn() -> bool>| async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                while !done() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        };
        let g = gateway.clone();
        until(
            "the leader's snapshot",
            Box::new(move || g.snapshot.load().as_ref().is_some_and(|s| s.version == 7)),
        )
        .await;
        let hits = leader_hits.clone();
        until(
            "more polls at the leader",
            Box::new(move || hits.load(Ordering::SeqCst) >= 3),
        )
        .await;
        assert_eq!(standby_hits.load(Ordering::SeqCst), 1);
        {
            let queries = leader_queries.lock().unwrap();
            // The redirected poll carries the dataplane's query, not the Location's.
            assert!(
                queries[0].starts_with("known=&dataplane=dp-1&"),
                "{queries:?}"
            );
            assert!(queries.iter().all(|q| !q.contains("from=standby")));
            assert!(queries[1].contains("applied=7"), "{queries:?}");
        }

        leader_down.store(true, Ordering::SeqCst);
        let hits = standby_hits.clone();
        until(
            "a poll back at the standby",
            Box::new(move || hits.load(Ordering::SeqCst) >= 2),
        )
        .await;
        task.abort();
        // It still serves what it had.
        assert_eq!(gateway.snapshot.load().as_ref().map(|s| s.version), Some(7));
    }

    /// What compiling left out goes back to the controller with every later poll, as the
    /// `report=` JSON the controller reads, and without the key material it is about.
    #[tokio::test]
    async fn what_was_left_out_is_reported_with_the_next_polls() {
        use std::sync::Mutex;

        let snapshot: Snapshot = serde_json::from_value(serde_json::json!({
            "stages": [
                {"source": {"kind": "Stage", "namespace": "ns", "name": "ok", "generation": 1},
                 "api": "a", "basePath": "/ok", "routes": []},
                {"source": {"kind": "Stage", "namespace": "ns", "name": "tls", "generation": 4},
                 "api": "a", "hostnames": ["t.example"], "basePath": "/",
                 "certificate": "ns/dummy", "routes": []},
            ],
            "certificates": {"ns/dummy": {
                "source": {"kind": "Secret", "namespace": "ns", "name": "dummy", "generation": 1},
                "certificateChainPem": "-----BEGIN CERTIFICATE-----\nZHVtbXk=\n-----END CERTIFICATE-----\n",
                "privateKeyPem": "-----BEGIN PRIVATE KEY-----\nc2Vrcml0\n-----END PRIVATE KEY-----\n"}},
        }))
        .unwrap();
        let v = Versioned::new(9, snapshot);
        let body = Bytes::from(serde_json::to_vec(&v).unwrap());
        let hash = v.hash.clone();
        let queries = Arc::new(Mutex::new(Vec::<String>::new()));
        let controller = tiny({
            let queries = queries.clone();
            move |uri| {
                let query = uri.query().unwrap_or("").to_string();
                queries.lock().unwrap().push(query.clone());
                if query.contains(&format!("known={hash}")) {
                    (http::StatusCode::NOT_MODIFIED, None, Bytes::new())
                } else {
                    (http::StatusCode::OK, None, body.clone())
                }
            }
        })
        .await;
        let (gateway, task) = follow_controller(controller, None);
        tokio::time::timeout(Duration::from_secs(10), async {
            while queries.lock().unwrap().len() < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a second poll");
        task.abort();
        // The rest of the snapshot is served.
        assert_eq!(
            gateway.snapshot.load().as_ref().map(|s| s.stage_count()),
            Some(1)
        );
        let queries = queries.lock().unwrap();
        assert!(!queries[0].contains("report="), "{queries:?}");
        let second = &queries[1];
        assert!(
            !second.contains("c2Vrcml0") && !second.contains("PRIVATE"),
            "{second}"
        );
        let encoded = second
            .split('&')
            .find_map(|pair| pair.strip_prefix("report="))
            .expect("a report");
        let json = percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .unwrap();
        let report: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(report.more, 0);
        let [entry] = report.left_out.as_slice() else {
            panic!("{report:?}")
        };
        assert_eq!(
            (entry.source.key(), entry.source.generation, entry.reason),
            (
                "ns/tls".to_string(),
                4,
                tollhouse_snapshot::Reason::InvalidCertificate
            )
        );
        assert!(second.contains("applied=9"), "{second}");
    }

    #[test]
    fn tls_failures_are_found_inside_wrapped_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        match PollError::transport(&wrapped) {
            PollError::Tls(text) => assert!(text.contains("UnknownIssuer"), "{text}"),
            other => panic!("{other}"),
        }
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            PollError::transport(&refused),
            PollError::Unreachable(_)
        ));
    }

    #[test]
    fn ids_are_url_encoded() {
        assert_eq!(urlencode("dp 1/a"), "dp%201%2Fa");
    }
}
