//! Request metrics, exposed in Prometheus text format on the admin listener.
//!
//! Handles for each route are created when a snapshot is compiled and kept in the compiled
//! route, so the request path only increments atomics: no label formatting, no map lookup.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    stage: String,
    route: String,
    status_class: String,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    stage: String,
    route: String,
}

/// Labels of gateway-generated errors: a fixed set (`GatewayError::metric_label`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    kind: String,
}

/// Labels of function authorizer decisions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthorizerLabels {
    authorizer: String,
    result: String,
}

/// Labels of snapshot applies.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Every metric of the dataplane.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    errors: Family<ErrorLabels, Counter>,
    authorizer_results: Family<AuthorizerLabels, Counter>,
    applies: Family<ResultLabels, Counter>,
    tls_reloads: Family<ResultLabels, Counter>,
    access_log_dropped: Counter,
    snapshot_version: Gauge,
    /// (stage, route) pairs of the snapshot being served, to forget removed routes' series.
    live: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Handles already made, by stage then route: a new snapshot of 10,000 routes looks them up
    /// by `&str` instead of building and hashing six label sets per route again.
    handles: std::sync::Mutex<RouteHandles>,
}

/// The handles of fleet-wide limits ([`Metrics::redis`]).
#[derive(Clone, Debug)]
pub struct RedisMetrics {
    /// 1 while Redis answers.
    pub up: Gauge,
    /// Times Redis stopped answering.
    pub fallbacks: Counter,
    /// Requests checked locally because Redis did not answer.
    pub fallback_requests: Counter,
    /// Round trips of the limit script.
    pub script: Histogram,
}

/// Pre-made handles for one (stage, route) pair.
/// Route metric handles by stage, then route.
type RouteHandles =
    std::collections::HashMap<String, std::collections::HashMap<String, RouteMetrics>>;

#[derive(Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    latency: Histogram,
}

impl RouteMetrics {
    /// Records one finished request.
    pub fn record(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).saturating_sub(1).min(4);
        if let Some(c) = self.by_class.get(class) {
            c.inc();
        }
        self.latency.observe(seconds);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tollhouse");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = HistogramFamily::new_with_constructor(latency_histogram);
        let errors = Family::<ErrorLabels, Counter>::default();
        let authorizer_results = Family::<AuthorizerLabels, Counter>::default();
        let applies = Family::<ResultLabels, Counter>::default();
        let tls_reloads = Family::<ResultLabels, Counter>::default();
        let snapshot_version = Gauge::default();
        let access_log_dropped = Counter::default();
        registry.register(
            "requests",
            "Requests by stage, route and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to response headers, by stage and route",
            latency.clone(),
        );
        registry.register(
            "gateway_errors",
            "Responses the gateway generated itself, by kind",
            errors.clone(),
        );
        registry.register(
            "authorizer_function_results",
            "Function authorizer decisions by authorizer: from its result cache (cache_hit) or by calling the function (called)",
            authorizer_results.clone(),
        );
        registry.register(
            "snapshot_applies",
            "Snapshots received, by result",
            applies.clone(),
        );
        registry.register(
            "controller_tls_reloads",
            "Changed controller TLS files (--controller-ca, --tls-cert, --tls-key), by result",
            tls_reloads.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the log's queue was full",
            access_log_dropped.clone(),
        );
        registry.register(
            "snapshot_version",
            "Version of the snapshot being served",
            snapshot_version.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            errors,
            authorizer_results,
            applies,
            tls_reloads,
            access_log_dropped,
            snapshot_version,
            live: Default::default(),
            handles: Default::default(),
        }
    }

    /// Registers the metrics of fleet-wide limits (only a dataplane given `--redis` has them).
    pub fn redis(&mut self) -> RedisMetrics {
        let m = RedisMetrics {
            up: Gauge::default(),
            fallbacks: Counter::default(),
            fallback_requests: Counter::default(),
            script: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
            ]),
        };
        self.registry.register(
            "redis_up",
            "1 while Redis answers the fleet-wide limit checks, 0 while limits are per replica",
            m.up.clone(),
        );
        self.registry.register(
            "redis_fallbacks",
            "Times Redis stopped answering and limits fell back to this replica's own",
            m.fallbacks.clone(),
        );
        self.registry.register(
            "redis_fallback_requests",
            "Requests held to this replica's own limits because Redis did not answer",
            m.fallback_requests.clone(),
        );
        self.registry.register(
            "redis_script_duration_seconds",
            "Round trip of one fleet-wide limit check to Redis",
            m.script.clone(),
        );
        m
    }

    /// The counter of dropped access-log lines, for the sink to increment.
    pub fn access_log_dropped(&self) -> Counter {
        self.access_log_dropped.clone()
    }

    /// Handles for a route (`route` empty for requests that matched no route).
    pub fn route(&self, stage: &str, route: &str) -> RouteMetrics {
        if let Ok(handles) = self.handles.lock() {
            if let Some(m) = handles.get(stage).and_then(|routes| routes.get(route)) {
                return m.clone();
            }
        }
        let made = self.make_route(stage, route);
        if let Ok(mut handles) = self.handles.lock() {
            handles
                .entry(stage.to_string())
                .or_default()
                .insert(route.to_string(), made.clone());
        }
        made
    }

    fn make_route(&self, stage: &str, route: &str) -> RouteMetrics {
        let by_class = CLASSES.map(|class| {
            self.requests.get_or_create_owned(&RequestLabels {
                stage: stage.to_string(),
                route: route.to_string(),
                status_class: class.to_string(),
            })
        });
        let latency = self.latency.get_or_create_owned(&RouteLabels {
            stage: stage.to_string(),
            route: route.to_string(),
        });
        RouteMetrics { by_class, latency }
    }

    /// Drops the series of (stage, route) pairs the served snapshot no longer has, so renamed
    /// and deleted routes do not grow `/metrics` forever.
    pub fn retain(&self, now_live: std::collections::HashSet<(String, String)>) {
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        let mut handles = self.handles.lock().ok();
        for (stage, route) in live.difference(&now_live) {
            if let Some(routes) = handles.as_mut().and_then(|h| h.get_mut(stage)) {
                routes.remove(route);
            }
            for class in CLASSES {
                self.requests.remove(&RequestLabels {
                    stage: stage.clone(),
                    route: route.clone(),
                    status_class: class.to_string(),
                });
            }
            self.latency.remove(&RouteLabels {
                stage: stage.clone(),
                route: route.clone(),
            });
        }
        if let Some(h) = handles.as_mut() {
            h.retain(|_, routes| !routes.is_empty());
        }
        *live = now_live;
    }

    /// The counters of a function authorizer (`namespace/name`): cache hits, function calls.
    pub fn function_authorizer(&self, label: &str) -> (Counter, Counter) {
        let get = |result: &str| {
            self.authorizer_results
                .get_or_create(&AuthorizerLabels {
                    authorizer: label.to_string(),
                    result: result.to_string(),
                })
                .clone()
        };
        (get("cache_hit"), get("called"))
    }

    /// Counts a gateway-generated error.
    pub fn gateway_error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_string(),
            })
            .inc();
    }

    /// Counts a snapshot apply attempt (`applied`, `rejected`, `restored`).
    pub fn snapshot_apply(&self, result: &'static str, version: Option<u64>) {
        self.applies
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        if let Some(v) = version {
            self.snapshot_version
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        }
    }

    /// Counts changed controller TLS files: `applied`, or `refused` (the old ones stay).
    pub fn tls_reload(&self, result: &'static str) {
        self.tls_reloads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_removed_routes_are_forgotten() {
        let m = Metrics::new();
        let keys = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        m.route("s", "old").record(200, 0.01);
        m.route("s", "kept").record(200, 0.01);
        m.retain(keys(&[("s", "old"), ("s", "kept")]));
        assert!(m.encode().contains(r#"route="old""#));
        m.route("s", "new").record(500, 0.01);
        m.retain(keys(&[("s", "kept"), ("s", "new")]));
        let text = m.encode();
        assert!(!text.contains(r#"route="old""#), "{text}");
        assert!(
            text.contains(
                r#"tollhouse_requests_total{stage="s",route="kept",status_class="2xx"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"route="new",status_class="5xx"} 1"#),
            "{text}"
        );
    }
}
