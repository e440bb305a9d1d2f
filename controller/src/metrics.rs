//! Controller metrics (Prometheus text format on `/metrics`), labels from fixed lists only.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label of `tollhouse_controller_errors_total`: where the error happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// One of [`Metrics::ERROR_KINDS`].
    pub kind: &'static str,
}

/// Every controller metric.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Translate passes.
    pub reconciles: Counter,
    /// Errors by fixed kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// Time spent in translate.
    pub translate_seconds: Histogram,
    /// Size of the published snapshot in bytes.
    pub snapshot_bytes: Gauge,
    /// Routes in the published snapshot.
    pub snapshot_routes: Gauge,
    /// Version of the published snapshot.
    pub snapshot_version: Gauge,
    /// Dataplanes that polled recently.
    pub connected_dataplanes: Gauge,
    /// Status patches written.
    pub status_patches: Counter,
    /// 1 while this replica is the leader.
    pub leader: Gauge,
    /// Delivery TLS files reloaded (new files in use); refusals count as `errors{kind="tls_reload"}`.
    pub tls_reloads: Counter,
    /// Usage rows recorded from dataplanes' reports.
    pub usage_rows: Counter,
}

impl Metrics {
    /// The `kind` values of the error counter.
    pub const ERROR_KINDS: [&'static str; 6] = [
        "watch",
        "status_patch",
        "event",
        "lease",
        "publish",
        "tls_reload",
    ];

    /// Registers everything.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tollhouse_controller");
        let reconciles = Counter::default();
        registry.register("reconciles", "Translate passes", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register("errors", "Errors by kind", errors.clone());
        for kind in Self::ERROR_KINDS {
            let _ = errors.get_or_create(&ErrorLabels { kind });
        }
        let translate_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "translate_duration_seconds",
            "Time spent translating objects into a snapshot",
            translate_seconds.clone(),
        );
        let snapshot_bytes = Gauge::default();
        registry.register(
            "snapshot_bytes",
            "Size of the published snapshot",
            snapshot_bytes.clone(),
        );
        let snapshot_routes = Gauge::default();
        registry.register(
            "snapshot_routes",
            "Routes in the published snapshot",
            snapshot_routes.clone(),
        );
        let snapshot_version = Gauge::default();
        registry.register(
            "snapshot_version",
            "Version of the published snapshot",
            snapshot_version.clone(),
        );
        let connected_dataplanes = Gauge::default();
        registry.register(
            "connected_dataplanes",
            "Dataplanes that polled within the last 45 seconds",
            connected_dataplanes.clone(),
        );
        let status_patches = Counter::default();
        registry.register(
            "status_patches",
            "Status subresource patches written",
            status_patches.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "Whether this replica is the leader (0 or 1)",
            leader.clone(),
        );
        let tls_reloads = Counter::default();
        registry.register(
            "tls_reloads",
            "Delivery TLS certificate files reloaded without a restart",
            tls_reloads.clone(),
        );
        let usage_rows = Counter::default();
        registry.register(
            "usage_rows",
            "Usage rows recorded from dataplanes' reports (POST /v1/usage)",
            usage_rows.clone(),
        );
        Metrics {
            registry,
            reconciles,
            errors,
            translate_seconds,
            snapshot_bytes,
            snapshot_routes,
            snapshot_version,
            connected_dataplanes,
            status_patches,
            leader,
            tls_reloads,
            usage_rows,
        }
    }

    /// Counts one error of a fixed kind.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
