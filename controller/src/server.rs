//! Snapshot delivery (long-poll), dataplanes' usage reports, AWS's GetUsage, `/status`,
//! `/healthz` and `/readyz` over HTTP/1.1, plain or over TLS with client certificates
//! ([`crate::delivery_tls`]).
//!
//! A publish serialises the snapshot once; every waiting dataplane gets the same bytes. The
//! [`Hub`] is the meeting point: the source publishes into it, the server reads from it.
//!
//! TLS private keys travel only to authenticated peers: a plain-HTTP listener answers a
//! snapshot that carries any with `403` instead (anyone who can connect to it could read them;
//! docs/local-security.md). No other endpoint ever shows key material.
//!
//! Usage reports (`POST /v1/usage`) come only over `--listen`, where dataplanes are; GetUsage
//! (`GET /usageplans/{id}/usage`) is on every listener, since it shows key ids (Secret names),
//! never key values. Both belong to the leader, which alone hears every dataplane
//! ([`crate::usage`]).

use crate::delivery_tls::ReloadingServerConfig;
use crate::manifest::Problem;
use crate::model::ObjectKey;
use crate::translate::Condition;
use crate::usage::{UsageBook, UsageError, UsageQuery, MAX_REPORT_BYTES};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use serde::Serialize;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tollhouse_snapshot::{Snapshot, Versioned};
use tracing::{debug, info, warn};

/// Default and maximum long-poll wait, in seconds.
const DEFAULT_WAIT_SECS: u64 = 30;
const MAX_WAIT_SECS: u64 = 60;
/// A dataplane that has not polled for this long is dropped from `/status`.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// At most this many dataplanes are tracked.
const MAX_DATAPLANES: usize = 4096;
/// How long in-flight requests may run after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A published snapshot, serialised once.
#[derive(Debug)]
pub struct Published {
    /// Version.
    pub version: u64,
    /// Content hash.
    pub hash: String,
    /// Number of stages.
    pub stages: usize,
    /// Number of routes over all stages.
    pub routes: usize,
    /// Whether `body` holds a TLS private key: then only an authenticated peer receives it.
    pub private_keys: bool,
    /// `Versioned` JSON, shared by every response.
    pub body: Bytes,
}

/// Who can reach a listener, which decides what it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Listener {
    /// `--listen` with mutual TLS: every peer showed a certificate from the client CA.
    Authenticated,
    /// `--listen` in plain HTTP: any local process; snapshots carrying private keys are refused.
    Plain,
    /// `--admin-listen`: health, metrics and status, never a snapshot.
    Admin,
}

/// Why a plain listener does not send a snapshot that carries private keys.
const KEYS_NEED_MTLS: &str = "this snapshot carries TLS private keys, which are sent only over \
mutual TLS: start the controller with --tls-cert, --tls-key and --client-ca, and the dataplane \
with an https:// --controller, --controller-ca, --tls-cert and --tls-key \
(docs/local-security.md)\n";

/// One object's line in `/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectReport {
    /// Kind.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Generation the conditions describe.
    pub generation: i64,
    /// File the object comes from, when the source is a directory.
    pub file: Option<String>,
    /// Accepted, ResolvedRefs, Ready.
    pub conditions: Vec<Condition>,
}

#[derive(Debug)]
struct Dataplane {
    applied: Option<u64>,
    known: Option<String>,
    /// What it reported leaving out of the snapshot it serves.
    report: Arc<tollhouse_snapshot::Report>,
    address: SocketAddr,
    last_seen: Instant,
}

/// How many recent publications are remembered to map a dataplane's hash to a version.
const HISTORY: usize = 256;
/// A dataplane that polled within this window counts as connected (a poll waits up to 30 s).
pub const CONNECTED_WINDOW: Duration = Duration::from_secs(45);

/// For every Stage and ApiRoute in the current snapshot: its generation there and the first
/// snapshot version that carried that generation.
pub type Generations = std::collections::HashMap<crate::model::ObjectKey, (i64, u64)>;

#[derive(Debug, Default)]
struct Report {
    files: Vec<Problem>,
    objects: Vec<ObjectReport>,
    dataplanes: BTreeMap<String, Dataplane>,
    /// `(hash, version)` of recent publications, oldest first.
    history: std::collections::VecDeque<(String, u64)>,
    /// See [`Generations`]; replaced whole on every publish.
    generations: Arc<Generations>,
}

/// Whether this replica serves snapshots or sends dataplanes to the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Serves snapshots (also the only role without leader election).
    Leader,
    /// Answers `/v1/snapshot`, `/v1/usage` and GetUsage with a redirect to the leader's URL,
    /// or 503 while none is known.
    Standby(Option<String>),
}

/// What the status writer needs to know about the dataplanes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneView {
    /// Version and hash of the current snapshot.
    pub current: Option<(u64, String)>,
    /// Per connected dataplane: the version (in this controller's numbering) of the snapshot it
    /// has applied, found by the hash it reports; `None` when unknown here.
    pub connected: Vec<Option<u64>>,
    /// Objects some connected dataplane reports having left out of the snapshot it serves.
    pub left_out: std::collections::HashMap<ObjectKey, LeftOutBy>,
}

/// What connected dataplanes say about one object they left out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOutBy {
    /// The generation they left out.
    pub generation: i64,
    /// How many dataplanes.
    pub dataplanes: u32,
    /// The first one's reason.
    pub reason: tollhouse_snapshot::Reason,
    /// The first one's message.
    pub message: String,
}

/// Publish/subscribe point between the source and the server, plus what `/status` shows.
#[derive(Debug)]
pub struct Hub {
    snapshot: watch::Sender<Option<Arc<Published>>>,
    closing: watch::Sender<bool>,
    report: Mutex<Report>,
    role: watch::Sender<Role>,
    changes: watch::Sender<u64>,
    /// The last version a plain listener refused for its keys, so the warning is logged once.
    refused_plain: std::sync::atomic::AtomicU64,
    /// Controller metrics.
    pub metrics: crate::metrics::Metrics,
    /// The fleet's usage, for GetUsage: dataplanes' reports and the current snapshot's plans.
    pub usage: UsageBook,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// A hub with nothing published.
    pub fn new() -> Self {
        let metrics = crate::metrics::Metrics::new();
        // Without an election the only replica leads.
        metrics.leader.set(1);
        Hub {
            snapshot: watch::Sender::new(None),
            closing: watch::Sender::new(false),
            report: Mutex::new(Report::default()),
            role: watch::Sender::new(Role::Leader),
            changes: watch::Sender::new(0),
            refused_plain: std::sync::atomic::AtomicU64::new(0),
            metrics,
            usage: UsageBook::new(),
        }
    }

    /// Publishes `snapshot` unless its content equals the current one; returns the new version.
    pub fn publish(&self, snapshot: Snapshot) -> Result<Option<u64>, serde_json::Error> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        self.publish_at(snapshot, u64::try_from(now_ms).unwrap_or(u64::MAX))
    }

    /// [`Hub::publish`] with the clock given: versions are `max(previous + 1, now_ms)`, so they
    /// keep increasing across restarts as long as the wall clock does.
    pub fn publish_at(
        &self,
        mut snapshot: Snapshot,
        now_ms: u64,
    ) -> Result<Option<u64>, serde_json::Error> {
        let (json, hash) = snapshot.encoded()?;
        let previous = self.snapshot.borrow().clone();
        if previous.as_ref().is_some_and(|p| p.hash == hash) {
            return Ok(None);
        }
        let version = previous.map_or(now_ms, |p| now_ms.max(p.version.saturating_add(1)));
        let stages = snapshot.stages.len();
        let routes = snapshot.route_count();
        let private_keys = snapshot.carries_secrets();
        // Which objects with a status, at which generation, this snapshot carries: the same
        // walk over the snapshot that redaction uses.
        let mut present: std::collections::HashMap<crate::model::ObjectKey, i64> =
            std::collections::HashMap::with_capacity(routes + stages);
        for entity in snapshot.entities() {
            if let Some(key) = crate::model::ObjectKey::of_source(entity.source)
                .filter(|k| k.kind.status().is_some())
            {
                present.insert(key, entity.source.generation);
            }
        }
        let body = Bytes::from(Versioned::wire(version, &hash, &json));
        let published = Published {
            version,
            hash,
            stages,
            routes,
            private_keys,
            body,
        };
        {
            let mut report = self.lock();
            if report.history.len() >= HISTORY {
                report.history.pop_front();
            }
            report.history.push_back((published.hash.clone(), version));
            let old = report.generations.clone();
            report.generations = Arc::new(
                present
                    .into_iter()
                    .map(|(key, generation)| {
                        let first = match old.get(&key) {
                            Some(&(g, first)) if g == generation => first,
                            _ => version,
                        };
                        (key, (generation, first))
                    })
                    .collect(),
            );
        }
        let m = &self.metrics;
        m.snapshot_bytes
            .set(i64::try_from(published.body.len()).unwrap_or(i64::MAX));
        m.snapshot_routes
            .set(i64::try_from(routes).unwrap_or(i64::MAX));
        m.snapshot_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.snapshot.send_replace(Some(Arc::new(published)));
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        // After the dataplanes have it: at 100,000 keys this and freeing the snapshot take a
        // few hundred milliseconds.
        self.usage.set_plans(&snapshot);
        drop(snapshot);
        Ok(Some(version))
    }

    /// The current snapshot, if any was published.
    pub fn current(&self) -> Option<Arc<Published>> {
        self.snapshot.borrow().clone()
    }

    /// Replaces the file problems and object statuses shown by `/status`.
    pub fn set_report(&self, files: Vec<Problem>, objects: Vec<ObjectReport>) {
        let mut report = self.lock();
        report.files = files;
        report.objects = objects;
    }

    /// The first snapshot version that carried this generation of the object, when the current
    /// snapshot carries it.
    pub fn first_version(&self, key: &crate::model::ObjectKey, generation: i64) -> Option<u64> {
        first_version(&self.generations(), key, generation)
    }

    /// The publication record of the current snapshot (shared, not copied).
    pub fn generations(&self) -> Arc<Generations> {
        self.lock().generations.clone()
    }

    /// Forgets that a dataplane is connected (its poll's connection closed).
    fn disconnected(&self, id: &str) {
        let mut report = self.lock();
        let Some(d) = report.dataplanes.get_mut(id) else {
            return;
        };
        if let Some(long_ago) = Instant::now().checked_sub(CONNECTED_WINDOW) {
            d.last_seen = long_ago;
        }
        drop(report);
        debug!(dataplane = id, "dataplane disconnected");
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The current snapshot and what each connected dataplane has applied. A dataplane counts
    /// once it serves a snapshot this controller published (one still starting up, or one that
    /// serves content this controller never published, does not hold Programmed back; one
    /// stuck on an older snapshot does).
    pub fn view(&self) -> DataplaneView {
        let current = self.current().map(|p| (p.version, p.hash.clone()));
        let report = self.lock();
        let now = Instant::now();
        let mut left_out: std::collections::HashMap<ObjectKey, LeftOutBy> =
            std::collections::HashMap::new();
        let connected: Vec<Option<u64>> = report
            .dataplanes
            .values()
            .filter(|d| now.duration_since(d.last_seen) < CONNECTED_WINDOW)
            .filter_map(|d| {
                let known = d.known.as_deref()?;
                let version = report
                    .history
                    .iter()
                    .rev()
                    .find(|(hash, _)| hash == known)
                    .map(|(_, version)| Some(*version))?;
                for entry in &d.report.left_out {
                    let Some(key) = ObjectKey::of_source(&entry.source) else {
                        continue;
                    };
                    left_out
                        .entry(key)
                        .and_modify(|by| {
                            if by.generation == entry.source.generation {
                                by.dataplanes += 1;
                            }
                        })
                        .or_insert_with(|| LeftOutBy {
                            generation: entry.source.generation,
                            dataplanes: 1,
                            reason: entry.reason,
                            message: entry.message.clone(),
                        });
                }
                Some(version)
            })
            .collect();
        self.metrics
            .connected_dataplanes
            .set(i64::try_from(connected.len()).unwrap_or(i64::MAX));
        DataplaneView {
            current,
            connected,
            left_out,
        }
    }

    /// A receiver that changes whenever a snapshot is published or a dataplane reports.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Sets whether this replica serves snapshots or redirects to the leader.
    pub fn set_role(&self, role: Role) {
        self.metrics.leader.set(i64::from(role == Role::Leader));
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }

    /// This replica's role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Logs, once per version, that a plain listener refused `version` for its private keys.
    fn refused_on_plain(&self, version: u64) {
        use std::sync::atomic::Ordering;
        if self.refused_plain.swap(version, Ordering::Relaxed) != version {
            warn!(
                snapshot.version = version,
                "a dataplane asked for a snapshot with TLS private keys over plain HTTP; refused \
                 (serve --listen with --tls-cert, --tls-key and --client-ca)"
            );
        }
    }

    /// Ends waiting long-polls, for shutdown.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn lock(&self) -> MutexGuard<'_, Report> {
        // A panic elsewhere cannot leave the report half-written in a harmful way.
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a dataplane's poll. `applied` is what it reports when the poll starts (a
    /// restarted dataplane reporting nothing replaces its old version); the call at the end of
    /// a poll passes `None` and only refreshes `last_seen`.
    fn saw(
        &self,
        id: &str,
        applied: Option<u64>,
        known: Option<&str>,
        left_out: Option<tollhouse_snapshot::Report>,
        start: bool,
        address: SocketAddr,
    ) {
        let mut report = self.lock();
        let now = Instant::now();
        // Dataplanes that stopped polling are forgotten, and the table is bounded: any client
        // can name itself in a poll.
        if !report.dataplanes.contains_key(id) {
            report
                .dataplanes
                .retain(|_, d| now.duration_since(d.last_seen) < FORGET_AFTER);
            if report.dataplanes.len() >= MAX_DATAPLANES {
                return;
            }
        }
        let entry = report
            .dataplanes
            .entry(id.to_string())
            .or_insert(Dataplane {
                applied: None,
                known: None,
                report: Arc::default(),
                address,
                last_seen: now,
            });
        let mut changed = false;
        if start {
            changed = entry.applied != applied || entry.known.as_deref() != known;
            entry.applied = applied;
            entry.known = known.map(str::to_string);
            let left_out = left_out.unwrap_or_default();
            if *entry.report != left_out {
                changed = true;
                entry.report = Arc::new(left_out);
            }
        }
        let reconnected = now.duration_since(entry.last_seen) >= CONNECTED_WINDOW;
        entry.address = address;
        entry.last_seen = now;
        drop(report);
        if changed || reconnected {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// The `/status` document.
    pub fn status(&self) -> serde_json::Value {
        let snapshot = self.current().map(|p| {
            serde_json::json!({"version": p.version, "hash": p.hash, "stages": p.stages, "routes": p.routes})
        });
        let report = self.lock();
        let dataplanes: Vec<serde_json::Value> = report
            .dataplanes
            .iter()
            .map(|(id, d)| {
                let mut entry = serde_json::json!({
                    "id": id,
                    "appliedVersion": d.applied,
                    "appliedHash": d.known,
                    "address": d.address.to_string(),
                    "lastSeenSecondsAgo": d.last_seen.elapsed().as_secs(),
                });
                // What it left out of the snapshot it serves, when anything.
                if !d.report.is_empty() {
                    entry["report"] = serde_json::json!(*d.report);
                }
                entry
            })
            .collect();
        serde_json::json!({
            "snapshot": snapshot,
            "dataplanes": dataplanes,
            "files": report.files,
            "objects": report.objects,
        })
    }
}

/// The first snapshot version that carried this generation of the object, in `generations`.
pub fn first_version(
    generations: &Generations,
    key: &crate::model::ObjectKey,
    generation: i64,
) -> Option<u64> {
    generations
        .get(key)
        .filter(|(g, _)| *g == generation)
        .map(|(_, first)| *first)
}

/// Serves until `shutdown` completes, then drains in-flight requests for a few seconds. With
/// `tls`, every connection must complete a TLS handshake (client certificate included, when the
/// config requires one) before a request is read; each new connection takes `tls`'s newest
/// config, so a reloaded certificate is used without a restart.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    tls: Option<ReloadingServerConfig>,
    shutdown: impl Future<Output = ()>,
) {
    let kind = match tls {
        Some(_) => Listener::Authenticated,
        None => Listener::Plain,
    };
    serve_inner(listener, hub, tls, kind, shutdown).await
}

/// The plain-HTTP admin listener: `/healthz`, `/readyz`, `/metrics`, `/status` and GetUsage,
/// never `/v1/snapshot` (snapshots carry private keys and go only over `--listen`) nor
/// `/v1/usage` (only dataplanes report). Kubelet probes and Prometheus, which cannot present a
/// client certificate, use this one.
pub async fn serve_admin(listener: TcpListener, hub: Arc<Hub>, shutdown: impl Future<Output = ()>) {
    serve_inner(listener, hub, None, Listener::Admin, shutdown).await
}

async fn serve_inner(
    listener: TcpListener,
    hub: Arc<Hub>,
    tls: Option<ReloadingServerConfig>,
    kind: Listener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Usually fd exhaustion: back off instead of spinning.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let hub = hub.clone();
                let watcher = graceful.watcher();
                let acceptor = tls.as_ref().map(ReloadingServerConfig::acceptor);
                tokio::spawn(async move {
                    let Some(acceptor) = acceptor else {
                        return serve_connection(stream, hub, remote, kind, watcher).await;
                    };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, hub, remote, kind, watcher).await,
                        // Probes and port scans connect and close without a word.
                        Ok(Err(error)) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                            debug!(client.address = %remote, "connection closed before the TLS handshake")
                        }
                        Ok(Err(error)) => {
                            info!(%error, client.address = %remote, "delivery TLS handshake failed")
                        }
                        Err(_) => {
                            info!(client.address = %remote, "delivery TLS handshake timed out")
                        }
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    hub.close();
    tokio::select! {
        () = graceful.shutdown() => info!("snapshot server stopped"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => warn!("snapshot server stopped with connections still open"),
    }
}

async fn serve_connection<S>(
    stream: S,
    hub: Arc<Hub>,
    remote: SocketAddr,
    kind: Listener,
    watcher: Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let hub = hub.clone();
        async move { Ok::<_, Infallible>(handle(&hub, request, remote, kind).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(error) = watcher.watch(connection).await {
        debug!(%error, client.address = %remote, "connection ended with an error");
    }
}

async fn handle<B>(
    hub: &Hub,
    request: Request<B>,
    remote: SocketAddr,
    kind: Listener,
) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if request.uri().path() == "/v1/usage" {
        if kind == Listener::Admin {
            return text(StatusCode::NOT_FOUND, "not found\n");
        }
        if request.method() != Method::POST {
            return only(Method::POST);
        }
        return receive_usage(hub, request.into_body()).await;
    }
    let path = request.uri().path();
    if let Some(id) = usage_plan_id(path) {
        if request.method() != Method::GET {
            return only(Method::GET);
        }
        return usage(hub, id, path, request.uri().query().unwrap_or(""));
    }
    let known = matches!(
        path,
        "/v1/snapshot" | "/status" | "/healthz" | "/readyz" | "/metrics"
    ) && !(kind == Listener::Admin && path == "/v1/snapshot");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if request.method() != Method::GET {
        return only(Method::GET);
    }
    match path {
        "/v1/snapshot" => long_poll(hub, request.uri().query().unwrap_or(""), remote, kind).await,
        "/status" => match serde_json::to_vec(&hub.status()) {
            Ok(body) => json(StatusCode::OK, Bytes::from(body)),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "status unavailable\n"),
        },
        "/healthz" => text(StatusCode::OK, "ok"),
        "/metrics" => {
            let _ = hub.view();
            let mut response = Response::new(Full::new(Bytes::from(hub.metrics.encode())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ if hub.current().is_some() => text(StatusCode::OK, "ready"),
        _ => text(StatusCode::SERVICE_UNAVAILABLE, "no snapshot published yet"),
    }
}

async fn long_poll(
    hub: &Hub,
    query: &str,
    remote: SocketAddr,
    kind: Listener,
) -> Response<Full<Bytes>> {
    let params = parse_query(query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            // `applied=` with no value means "nothing applied yet", not a malformed number.
            .filter(|v| !v.is_empty())
    };
    let wait = match param("wait").map(str::parse::<u64>) {
        None => DEFAULT_WAIT_SECS,
        Some(Ok(secs)) => secs.min(MAX_WAIT_SECS),
        Some(Err(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "wait must be a number of seconds\n",
            )
        }
    };
    let applied = match param("applied").map(str::parse::<u64>) {
        None => None,
        Some(Ok(version)) => Some(version),
        Some(Err(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "applied must be a snapshot version\n",
            )
        }
    };
    // What the dataplane left out of the snapshot it serves (`report=`, JSON): bad JSON is a
    // bad request, so a dataplane of another build learns at once that it is not understood.
    let report = match param("report").map(serde_json::from_str::<tollhouse_snapshot::Report>) {
        None => None,
        Some(Ok(report)) => Some(report),
        Some(Err(_)) => {
            return text(
                StatusCode::BAD_REQUEST,
                "report must be the JSON of what the dataplane left out\n",
            )
        }
    };
    match hub.role() {
        Role::Leader => {}
        Role::Standby(Some(leader)) => {
            return redirect(
                &format!("{}/v1/snapshot?{query}", leader.trim_end_matches('/')),
                "this replica is on standby; the leader serves snapshots\n",
            )
        }
        Role::Standby(None) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "this replica is on standby and no leader is known yet\n",
            )
        }
    }
    let dataplane = param("dataplane").filter(|id| !id.is_empty());
    let known = param("known").unwrap_or("");
    if let Some(id) = dataplane {
        hub.saw(
            id,
            applied,
            Some(known).filter(|k| !k.is_empty()),
            report,
            true,
            remote,
        );
    }
    let mut snapshots = hub.snapshot.subscribe();
    let mut closing = hub.closing.subscribe();
    let deadline = tokio::time::sleep(Duration::from_secs(wait));
    tokio::pin!(deadline);
    // A poll dropped before it answers means the dataplane went away (hyper drops the request
    // when its connection closes): it stops counting at once instead of after a time-out.
    let mut gone = dataplane.map(|id| Gone { hub, id: Some(id) });
    let response = loop {
        let fresh = snapshots
            .borrow_and_update()
            .as_ref()
            .filter(|p| p.hash != known)
            .cloned();
        if let Some(published) = fresh {
            break match kind {
                Listener::Plain if published.private_keys => {
                    hub.refused_on_plain(published.version);
                    text(StatusCode::FORBIDDEN, KEYS_NEED_MTLS)
                }
                Listener::Plain | Listener::Authenticated => {
                    json(StatusCode::OK, published.body.clone())
                }
                // `handle` answers 404 before a poll starts; never a snapshot here either.
                Listener::Admin => text(StatusCode::NOT_FOUND, "not found\n"),
            };
        }
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break not_modified() },
            () = &mut deadline => break not_modified(),
            () = async { let _ = closing.wait_for(|closed| *closed).await.map(|_| ()); } => break not_modified(),
        }
    };
    if let Some(g) = gone.as_mut() {
        g.id = None;
    }
    if let Some(id) = dataplane {
        hub.saw(id, None, None, None, false, remote);
    }
    response
}

/// `POST /v1/usage`: records a dataplane's report and answers the epoch.
async fn receive_usage<B>(hub: &Hub, body: B) -> Response<Full<Bytes>>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match hub.role() {
        Role::Leader => {}
        Role::Standby(Some(leader)) => {
            return redirect(
                &format!("{}/v1/usage", leader.trim_end_matches('/')),
                "this replica is on standby; the leader takes usage reports\n",
            )
        }
        Role::Standby(None) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "this replica is on standby and no leader is known yet\n",
            )
        }
    }
    let body = match Limited::new(body, MAX_REPORT_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "a usage report is at most 16 MiB\n",
            )
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "the body could not be read\n"),
    };
    match hub.usage.receive(&body, today()) {
        Ok(rows) => {
            hub.metrics
                .usage_rows
                .inc_by(u64::try_from(rows).unwrap_or(u64::MAX));
            let ack = tollhouse_snapshot::UsageAck {
                epoch: hub.usage.epoch().to_string(),
            };
            match serde_json::to_vec(&ack) {
                Ok(body) => json(StatusCode::OK, Bytes::from(body)),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "ack unavailable\n"),
            }
        }
        Err(error) => text(StatusCode::BAD_REQUEST, format!("{error}\n")),
    }
}

/// The usage plan id of a GetUsage path: `/usageplans/{id}/usage`, with the id percent-encoded
/// as SDKs send it (`shop%2Fgold`) or not (`shop/gold`); still encoded.
fn usage_plan_id(path: &str) -> Option<&str> {
    path.strip_prefix("/usageplans/")?
        .strip_suffix("/usage")
        .filter(|id| !id.is_empty())
}

/// `GET /usageplans/{id}/usage`: AWS's GetUsage over the whole fleet.
fn usage(hub: &Hub, id: &str, path: &str, query: &str) -> Response<Full<Bytes>> {
    match hub.role() {
        Role::Leader => {}
        Role::Standby(Some(leader)) => {
            let leader = leader.trim_end_matches('/');
            let location = match query {
                "" => format!("{leader}{path}"),
                _ => format!("{leader}{path}?{query}"),
            };
            return redirect(
                &location,
                "this replica is on standby; the leader counts usage\n",
            );
        }
        Role::Standby(None) => {
            return aws_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "this replica is on standby and no leader is known yet",
            )
        }
    }
    let answer = UsageQuery::parse(percent_decode(id), &parse_query(query))
        .and_then(|q| hub.usage.usage(&q));
    let error = match answer {
        Ok(usage) => match serde_json::to_vec(&usage) {
            Ok(body) => return json(StatusCode::OK, Bytes::from(body)),
            Err(_) => {
                return aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerErrorException",
                    "usage unavailable",
                )
            }
        },
        Err(error) => error,
    };
    let status = match error {
        UsageError::NoSuchPlan => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    aws_error(status, error.error_type(), &error.to_string())
}

/// An AWS control-plane error: `{"message":…}` and its `x-amzn-ErrorType`.
fn aws_error(status: StatusCode, error_type: &'static str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = json(status, Bytes::from(body));
    response.headers_mut().insert(
        "x-amzn-ErrorType",
        header::HeaderValue::from_static(error_type),
    );
    response
}

/// Today in UTC, as days since 1970-01-01.
fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// Marks a dataplane disconnected when its poll is dropped unanswered.
struct Gone<'a> {
    hub: &'a Hub,
    id: Option<&'a str>,
}

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.hub.disconnected(id);
        }
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// 405, naming the one method the path takes.
fn only(method: Method) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, format!("only {method}\n"));
    if let Ok(value) = header::HeaderValue::from_str(method.as_str()) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// 307 to the leader: the client repeats the same request there.
fn redirect(location: &str, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = text(StatusCode::TEMPORARY_REDIRECT, body);
    if let Ok(value) = header::HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn not_modified() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_content_is_never_published_twice_and_versions_increase() {
        let hub = Hub::new();
        assert_eq!(
            hub.publish_at(Snapshot::default(), 1_000).unwrap(),
            Some(1_000)
        );
        assert_eq!(hub.publish_at(Snapshot::default(), 2_000).unwrap(), None);
        let mut other = Snapshot::default();
        other.certificates.insert(
            "a/b".into(),
            tollhouse_snapshot::Certificate {
                source: tollhouse_snapshot::SourceRef {
                    kind: "Secret".into(),
                    namespace: "a".into(),
                    name: "b".into(),
                    generation: 1,
                },
                certificate_chain_pem: String::new(),
                private_key_pem: tollhouse_snapshot::Sensitive(String::new()),
            },
        );
        // The clock went backwards: the version still increases.
        assert_eq!(hub.publish_at(other, 500).unwrap(), Some(1_001));
    }

    fn stage(generation: i64) -> Snapshot {
        Snapshot {
            stages: vec![tollhouse_snapshot::Stage {
                source: tollhouse_snapshot::SourceRef {
                    kind: "Stage".into(),
                    namespace: "ns".into(),
                    name: "prod".into(),
                    generation,
                },
                api: "pets".into(),
                hostnames: vec![],
                base_path: "/".into(),
                variables: BTreeMap::new(),
                certificate: None,
                routes: vec![],
                api_type: Default::default(),
                access_log: None,
                throttle: None,
                api_key_source: Default::default(),
                resource_policy: None,
            }],
            ..Snapshot::default()
        }
    }

    /// Programmed's inputs: the first version carrying a generation, and per dataplane the
    /// version it serves, found by the hash it reports (versions are this controller's own).
    #[test]
    fn generations_and_dataplane_versions_are_tracked_by_hash() {
        let hub = Hub::new();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        hub.publish_at(stage(1), 100).unwrap();
        let h1 = hub.current().unwrap().hash.clone();
        let prod = crate::model::ObjectKey::new(crate::model::Kind::Stage, "ns", "prod");
        assert_eq!(hub.first_version(&prod, 1), Some(100));
        assert_eq!(hub.first_version(&prod, 2), None);
        // A dataplane that has applied nothing yet does not count.
        hub.saw("dp-new", None, None, None, true, addr);
        // One serving the current snapshot counts with that version, even if its own version
        // number came from another replica.
        hub.saw("dp-1", Some(7), Some(&h1), None, true, addr);
        assert_eq!(hub.view().connected, vec![Some(100)]);

        hub.publish_at(stage(2), 200).unwrap();
        assert_eq!(hub.first_version(&prod, 2), Some(200));
        assert_eq!(hub.view().current.map(|(v, _)| v), Some(200));
        // Still on the old snapshot: Programmed for generation 2 waits for it.
        assert_eq!(hub.view().connected, vec![Some(100)]);
        // Its poll's connection closes: it stops counting at once.
        hub.disconnected("dp-1");
        assert!(hub.view().connected.is_empty());
    }

    #[test]
    fn standby_redirects_to_the_leader() {
        let hub = Hub::new();
        hub.set_role(Role::Standby(Some("http://10.0.0.9:9090/".into())));
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let r = rt.block_on(long_poll(&hub, "dataplane=a&wait=0", addr, Listener::Plain));
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            r.headers()[header::LOCATION],
            "http://10.0.0.9:9090/v1/snapshot?dataplane=a&wait=0"
        );
        hub.set_role(Role::Standby(None));
        let r = rt.block_on(long_poll(&hub, "wait=0", addr, Listener::Plain));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    fn with_key(key: &str) -> Snapshot {
        let mut snapshot = stage(1);
        snapshot.certificates.insert(
            "ns/tls".into(),
            tollhouse_snapshot::Certificate {
                source: tollhouse_snapshot::SourceRef {
                    kind: "Secret".into(),
                    namespace: "ns".into(),
                    name: "tls".into(),
                    generation: 1,
                },
                certificate_chain_pem: "-----BEGIN CERTIFICATE-----".into(),
                private_key_pem: tollhouse_snapshot::Sensitive(key.into()),
            },
        );
        snapshot
    }

    async fn body(response: Response<Full<Bytes>>) -> (StatusCode, String) {
        use http_body_util::BodyExt;
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Only a peer that showed a client certificate receives private keys; on a plain listener
    /// a snapshot without any is still served, and status never shows one.
    #[test]
    fn a_plain_listener_never_sends_private_keys() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let key = "-----BEGIN PRIVATE KEY----- sekrit";
        let hub = Hub::new();
        hub.publish_at(stage(1), 100).unwrap();
        let (status, text) = rt.block_on(body(rt.block_on(long_poll(
            &hub,
            "wait=0",
            addr,
            Listener::Plain,
        ))));
        assert_eq!(status, StatusCode::OK, "{text}");

        hub.publish_at(with_key(key), 200).unwrap();
        assert!(hub.current().unwrap().private_keys);
        let (status, text) = rt.block_on(body(rt.block_on(long_poll(
            &hub,
            "wait=0",
            addr,
            Listener::Plain,
        ))));
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(text.contains("--tls-cert"), "{text}");
        assert!(!text.contains("sekrit"));
        assert!(!hub.status().to_string().contains("sekrit"));
        let (status, text) = rt.block_on(body(rt.block_on(long_poll(
            &hub,
            "wait=0",
            addr,
            Listener::Authenticated,
        ))));
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("sekrit"));
        // A certificate whose key is empty carries nothing secret.
        hub.publish_at(with_key(""), 300).unwrap();
        assert!(!hub.current().unwrap().private_keys);
    }

    /// A dataplane's `report=` is kept per dataplane: the objects it left out (at the
    /// generation it had) are in the view Programmed is computed from, and in `/status`; a
    /// report that does not parse is a 400, and a poll without one clears it.
    #[test]
    fn what_a_dataplane_left_out_is_kept_from_its_poll() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let hub = Hub::new();
        hub.publish_at(stage(3), 100).unwrap();
        let hash = hub.current().unwrap().hash.clone();
        let report = r#"{"leftOut":[{"source":{"kind":"Stage","namespace":"ns","name":"prod","generation":3},"reason":"InvalidCertificate","message":"certificate ns/tls: tls.key is not a usable RSA, ECDSA or Ed25519 private key"}]}"#;
        let encoded: String = report.bytes().map(|b| format!("%{b:02X}")).collect();
        let poll = |query: String| rt.block_on(long_poll(&hub, &query, addr, Listener::Plain));
        let r = poll(format!(
            "known={hash}&dataplane=dp-1&applied=100&report={encoded}&wait=0"
        ));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let prod = crate::model::ObjectKey::new(crate::model::Kind::Stage, "ns", "prod");
        let view = hub.view();
        let by = view.left_out.get(&prod).expect("left out");
        assert_eq!(
            (by.generation, by.dataplanes, by.reason),
            (3, 1, tollhouse_snapshot::Reason::InvalidCertificate)
        );
        let status = hub.status();
        assert_eq!(
            status["dataplanes"][0]["report"]["leftOut"][0]["reason"],
            "InvalidCertificate"
        );
        let r = poll(format!("known={hash}&dataplane=dp-1&report=%7Bnope&wait=0"));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        poll(format!("known={hash}&dataplane=dp-1&applied=100&wait=0"));
        assert!(hub.view().left_out.is_empty());
    }

    /// A request through `handle`, as a listener of `kind` would serve it.
    fn call(
        hub: &Hub,
        kind: Listener,
        method: Method,
        uri: &str,
        payload: &str,
    ) -> (StatusCode, http::HeaderMap, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(payload.to_string())))
            .unwrap();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let response = rt.block_on(handle(hub, request, addr, kind));
        let headers = response.headers().clone();
        let (status, text) = rt.block_on(body(response));
        (status, headers, text)
    }

    /// Plan shop/gold with one key, shop/k1.
    fn plan_snapshot(quota: Option<tollhouse_snapshot::Quota>) -> Snapshot {
        crate::usage::tests::snapshot(quota, &["shop/k1"])
    }

    fn today_date() -> String {
        tollhouse_snapshot::format_date(today())
    }

    /// Reports from two dataplanes add up in GetUsage, a resend counts once, and the plan id
    /// is read encoded (as boto3 sends it) or not, on every listener.
    #[test]
    fn usage_reports_add_up_in_get_usage() {
        let hub = Hub::new();
        hub.publish_at(
            plan_snapshot(Some(tollhouse_snapshot::Quota {
                limit: 1000,
                period: tollhouse_snapshot::QuotaPeriod::Day,
                offset: 0,
                first_period: None,
            })),
            100,
        )
        .unwrap();
        let day = today();
        let row = |source: &str, used: u64| {
            format!(
                r#"{{"source":"{source}","rows":[{{"plan":"shop/gold","day":{day},"key":"shop/k1","used":{used}}}]}}"#
            )
        };
        for report in [row("dp-a", 5), row("dp-b", 7), row("dp-a", 5)] {
            let (status, _, text) = call(
                &hub,
                Listener::Authenticated,
                Method::POST,
                "/v1/usage",
                &report,
            );
            assert_eq!(status, StatusCode::OK, "{text}");
            let ack: tollhouse_snapshot::UsageAck = serde_json::from_str(&text).unwrap();
            assert_eq!(ack.epoch, hub.usage.epoch());
        }
        // A heartbeat.
        let (status, _, _) = call(
            &hub,
            Listener::Plain,
            Method::POST,
            "/v1/usage",
            r#"{"source":"dp-a","rows":[]}"#,
        );
        assert_eq!(status, StatusCode::OK);
        let date = today_date();
        let expected = format!(
            r#"{{"usagePlanId":"shop/gold","startDate":"{date}","endDate":"{date}","values":{{"shop/k1":[[12,988]]}}}}"#
        );
        for (kind, path) in [
            (Listener::Admin, "/usageplans/shop%2Fgold/usage"),
            (Listener::Authenticated, "/usageplans/shop%2fgold/usage"),
            (Listener::Plain, "/usageplans/shop/gold/usage"),
        ] {
            let uri = format!("{path}?startDate={date}&endDate={date}");
            let (status, headers, text) = call(&hub, kind, Method::GET, &uri, "");
            assert_eq!(status, StatusCode::OK, "{text}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(text, expected);
        }
        assert!(hub
            .metrics
            .encode()
            .contains("tollhouse_controller_usage_rows_total 3"));
    }

    /// GetUsage errors are AWS's: a JSON message and `x-amzn-ErrorType`.
    #[test]
    fn get_usage_errors_are_aws_errors() {
        let hub = Hub::new();
        hub.publish_at(plan_snapshot(None), 100).unwrap();
        let cases = [
            (
                "/usageplans/shop%2Fnone/usage?startDate=2026-12-01&endDate=2026-12-01",
                StatusCode::NOT_FOUND,
                "NotFoundException",
                r#"{"message":"Invalid Usage Plan ID specified"}"#,
            ),
            (
                "/usageplans/shop%2Fgold/usage?endDate=2026-12-01",
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                r#"{"message":"startDate is required, as YYYY-MM-DD"}"#,
            ),
            (
                "/usageplans/shop%2Fgold/usage?startDate=2026-12-01&endDate=2026-13-01",
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                r#"{"message":"endDate must be a date as YYYY-MM-DD (1970 or later)"}"#,
            ),
            (
                "/usageplans/shop%2Fgold/usage?startDate=2026-01-01&endDate=2026-12-31",
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                r#"{"message":"the range has 365 days, but the usage report keeps 100 days"}"#,
            ),
        ];
        for (uri, status, error_type, message) in cases {
            let (got, headers, text) = call(&hub, Listener::Admin, Method::GET, uri, "");
            assert_eq!((got, text.as_str()), (status, message), "{uri}");
            assert_eq!(headers["x-amzn-ErrorType"], error_type, "{uri}");
        }
        let (status, headers, _) = call(
            &hub,
            Listener::Plain,
            Method::DELETE,
            "/usageplans/shop%2Fgold/usage",
            "",
        );
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "GET");
    }

    /// Reports come only over `--listen`, by POST, as a bounded usage report.
    #[test]
    fn usage_reports_are_refused_where_they_do_not_belong() {
        let hub = Hub::new();
        let report = r#"{"source":"dp-a","rows":[]}"#;
        let (status, _, _) = call(&hub, Listener::Admin, Method::POST, "/v1/usage", report);
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, headers, _) = call(&hub, Listener::Plain, Method::GET, "/v1/usage", "");
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(headers[header::ALLOW], "POST");
        let (status, _, text) = call(&hub, Listener::Plain, Method::POST, "/v1/usage", "{");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            text.starts_with("the body must be the JSON of a usage report"),
            "{text}"
        );
        let huge = " ".repeat(MAX_REPORT_BYTES + 1);
        let (status, _, _) = call(&hub, Listener::Plain, Method::POST, "/v1/usage", &huge);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        // Paths next to GetUsage's are still unknown, and the old ones unchanged.
        let (status, _, _) = call(&hub, Listener::Plain, Method::GET, "/usageplans//usage", "");
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = call(&hub, Listener::Admin, Method::GET, "/v1/snapshot", "");
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, text) = call(&hub, Listener::Plain, Method::POST, "/status", "");
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, "only GET\n")
        );
    }

    /// A standby sends reports and GetUsage to the leader, which alone hears every dataplane.
    #[test]
    fn a_standby_sends_usage_to_the_leader() {
        let hub = Hub::new();
        hub.set_role(Role::Standby(Some("https://10.0.0.9:9090/".into())));
        let (status, headers, _) = call(
            &hub,
            Listener::Authenticated,
            Method::POST,
            "/v1/usage",
            r#"{"source":"dp-a","rows":[]}"#,
        );
        assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(headers[header::LOCATION], "https://10.0.0.9:9090/v1/usage");
        let uri = "/usageplans/shop%2Fgold/usage?startDate=2026-12-01&endDate=2026-12-02";
        let (status, headers, _) = call(&hub, Listener::Admin, Method::GET, uri, "");
        assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
        assert_eq!(
            headers[header::LOCATION],
            format!("https://10.0.0.9:9090{uri}").as_str()
        );
        hub.set_role(Role::Standby(None));
        let (status, _, _) = call(&hub, Listener::Plain, Method::POST, "/v1/usage", "{}");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, headers, _) = call(&hub, Listener::Plain, Method::GET, uri, "");
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["x-amzn-ErrorType"], "ServiceUnavailableException");
    }

    #[test]
    fn queries_are_percent_decoded() {
        assert_eq!(
            parse_query("dataplane=dp%2D1&known=&wait"),
            vec![
                ("dataplane".into(), "dp-1".into()),
                ("known".into(), "".into()),
                ("wait".into(), "".into())
            ]
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
