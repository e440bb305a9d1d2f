//! Turns a delivered [`Versioned`] snapshot into a [`CompiledSnapshot`] ready to serve, phase
//! by phase: each phase compiles its own part (the stage table, each Stage's routes, each
//! route's integration, each Stage's access-log format).
//!
//! Parse, don't validate: after compilation routes are tries, URI templates are pre-split with
//! stage variables already substituted, certificates are rustls keys, and metrics handles are
//! taken from the runtime, which keeps them across pushes. A stage, route or certificate that
//! cannot be compiled is left out and reported to the controller (the report says which object,
//! why, and is sent with every poll); the rest is served. An integration URI that names an
//! undefined stage variable is served and fails as AWS fails. Only a snapshot that fails its
//! integrity check is refused whole.

use crate::authorizer::function::ResultCache;
use crate::authorizer::jwks::Jwks;
use crate::authorizer::{CompileEnv, CompiledAuthorizer, RouteAuth};
use crate::error::GatewayError;
use crate::flavour::Flavour;
use crate::integration::http::{CompileError, EndpointPool, HttpTarget};
use crate::integration::mock::MockResponse;
use crate::integration::CompiledIntegration;
use crate::metrics::RouteMetrics;
use crate::phases::api_key::{self, CompiledPlan, KeyTable, PlanRouteLimit};
use crate::phases::route::{CompiledRoute, RouteInput, Routes};
use crate::phases::stage::{StageEntry, StageTable};
use crate::phases::throttle::{Bucket, Limit};
use crate::router::Template;
use crate::runtime::Runtime;
use http::HeaderValue;
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tollhouse_snapshot::{
    ApiKeySource, Integration, IntegrityError, LeftOut, Reason, SourceRef, Versioned,
};
use tollhouse_template::{AccessLogFormat, UriError};

/// A snapshot ready to serve.
pub struct CompiledSnapshot {
    /// Version assigned by the controller.
    pub version: u64,
    /// Content hash.
    pub hash: String,
    /// Host and base-path lookup.
    pub stage_table: StageTable,
    stages: Vec<CompiledStage>,
    certs_by_host: HashMap<String, Arc<CertifiedKey>>,
    default_cert: Option<Arc<CertifiedKey>>,
    /// Metrics for requests that reached no Stage.
    pub unmatched: RouteMetrics,
    /// API keys and usage plans.
    pub keys: KeyTable,
    /// The names of the per-key bucket sets this snapshot uses.
    key_levels: HashSet<String>,
    /// The issuers (and JWKS URLs) whose keys this snapshot's authorizers use.
    jwks_keys: HashSet<(String, Option<String>)>,
    /// The function authorizers whose results this snapshot keeps.
    result_keys: HashSet<String>,
}

/// What compiling a snapshot gave.
pub struct Compiled {
    /// The snapshot to serve.
    pub snapshot: CompiledSnapshot,
    /// The objects not served as the snapshot says, and why.
    pub left_out: Vec<LeftOut>,
    /// What else was skipped (an endpoint that is not `host:port`), for the log.
    pub notes: Vec<String>,
}

/// One stage: its flavour, routes and access log.
pub struct CompiledStage {
    /// `namespace/name`.
    pub label: String,
    /// The Stage's name (`$context.stage`).
    pub name: String,
    /// The API name (`$context.apiId`, `X-Amzn-Apigateway-Api-Id`).
    pub api: HeaderValue,
    /// REST or HTTP API.
    pub flavour: Flavour,
    /// The stage variables (authorizer events; URIs were bound with them when compiled).
    pub variables: BTreeMap<String, String>,
    /// The routes.
    pub routes: Routes,
    /// The access-log format, when the Stage logs.
    pub access_log: Option<Arc<AccessLogFormat>>,
    /// Metrics for requests that reached this stage but matched no route.
    pub unmatched: RouteMetrics,
    /// The Stage's bucket, shared by all its clients (kept by the runtime across pushes).
    pub throttle: Option<Arc<Bucket>>,
    /// Where its routes with `apiKeyRequired` read the key.
    pub api_key_source: ApiKeySource,
    /// Who may call (checked before any authorizer); `None`: anyone.
    pub resource_policy: Option<crate::phases::resource_policy::Policy>,
}

/// The key of a Stage's bucket.
fn stage_bucket(stage: &str) -> String {
    format!("stage {stage}")
}

/// The key of a route's bucket on one Stage (AWS's per-method limits are per Stage).
fn route_bucket(stage: &str, route: &str) -> String {
    format!("route {stage} {route}")
}

/// Compiles one route's integration.
fn compile_integration(
    integration: &Integration,
    stage: &tollhouse_snapshot::Stage,
    template: &Template,
    pools: &HashMap<&str, Arc<EndpointPool>>,
) -> Result<CompiledIntegration, String> {
    match integration {
        Integration::HttpProxy(h) => {
            let pool = match &h.backend {
                Some(key) => Some(
                    pools
                        .get(key.as_str())
                        .cloned()
                        .ok_or_else(|| format!("backend {key} missing"))?,
                ),
                None => None,
            };
            match HttpTarget::compile(
                &h.uri,
                &stage.variables,
                &template.path,
                pool,
                Duration::from_millis(u64::from(h.timeout_ms)),
                h.http2,
            ) {
                Ok(mut t) => {
                    t.mappings = tollhouse_template::mapping::parse(&h.request_parameters)
                        .map_err(|e| e.to_string())?;
                    Ok(CompiledIntegration::Http(t))
                }
                Err(CompileError::Unbindable(UriError::UndefinedVariable(_))) => Ok(
                    CompiledIntegration::Failing(GatewayError::UndefinedStageVariable),
                ),
                Err(CompileError::Unbindable(UriError::Invalid(_))) => Ok(
                    CompiledIntegration::Failing(GatewayError::IntegrationFailure),
                ),
                Err(CompileError::Invalid(e)) => Err(e),
            }
        }
        Integration::Mock(m) => Ok(CompiledIntegration::Mock(MockResponse::compile(m)?)),
    }
}

impl CompiledSnapshot {
    /// Compiles a delivered snapshot; returns it with what it left out (reported to the
    /// controller, so that status never says more than the data path does) and notes for the
    /// log only.
    pub fn compile(v: &Versioned, runtime: &Runtime) -> Result<Compiled, IntegrityError> {
        v.verify()?;
        let metrics = &runtime.metrics;
        let now = runtime.now_nanos();
        let snap = &v.snapshot;
        let mut left_out = Vec::new();
        let mut notes = Vec::new();
        let mut leave_out = |source: &SourceRef, reason: Reason, message: String| {
            left_out.push(LeftOut {
                source: source.clone(),
                reason,
                message,
            })
        };
        // Built with the function the controller checked the Secret with.
        let certs: HashMap<&str, Result<Arc<CertifiedKey>, String>> = snap
            .certificates
            .iter()
            .map(|(key, c)| {
                let built = tollhouse_pemfile::certified_key(
                    c.certificate_chain_pem.as_bytes(),
                    c.private_key_pem.0.as_bytes(),
                );
                (key.as_str(), built.map(Arc::new))
            })
            .collect();
        let pools: HashMap<&str, Arc<EndpointPool>> = snap
            .backends
            .iter()
            .map(|(key, b)| {
                (
                    key.as_str(),
                    Arc::new(EndpointPool::new(key, &b.endpoints, &mut notes)),
                )
            })
            .collect();
        // Each plan's per-route limits, by Stage: (plan index, route key, limit).
        let mut plan_routes: HashMap<&str, Vec<(u32, &str, Limit)>> = HashMap::new();
        for (i, plan) in snap.usage_plans.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            for ps in &plan.stages {
                for (key, t) in &ps.route_throttles {
                    plan_routes.entry(ps.stage.as_str()).or_default().push((
                        i,
                        key.as_str(),
                        (*t).into(),
                    ));
                }
            }
        }
        let plan_labels: Vec<String> = snap.usage_plans.iter().map(|p| p.key()).collect();
        // Authorizers, each with its issuer's retained keys.
        let mut jwks_keys = HashSet::new();
        let mut authorizers: HashMap<&str, Result<Arc<CompiledAuthorizer>, String>> =
            HashMap::new();
        let mut result_keys = HashSet::new();
        for (key, a) in &snap.authorizers {
            let compiled = CompiledAuthorizer::compile(
                a,
                &mut CompileEnv {
                    keys: &mut |issuer, uri| {
                        let k = (issuer.to_string(), uri.map(str::to_string));
                        jwks_keys.insert(k.clone());
                        runtime.jwks.get_or_make(&k, &(), || {
                            Jwks::new(
                                issuer,
                                uri,
                                runtime.jwks_refetch_after,
                                runtime.jwks_tls.as_deref(),
                            )
                        })
                    },
                    results: &mut |label, function| {
                        result_keys.insert(label.to_string());
                        runtime
                            .authorizer_results
                            .get_or_make(&label.to_string(), function, || {
                                ResultCache::new(runtime.metrics.function_authorizer(label))
                            })
                    },
                    pools: &pools,
                },
            );
            if let Err(e) = &compiled {
                leave_out(&a.source, Reason::InvalidAuthorizer, e.clone());
            }
            authorizers.insert(key.as_str(), compiled.map(Arc::new));
        }
        let mut key_levels = HashSet::new();
        let mut stages = Vec::with_capacity(snap.stages.len());
        let mut entries: Vec<StageEntry<'_>> = Vec::with_capacity(snap.stages.len());
        let mut certs_by_host = HashMap::new();
        let mut default_cert = None;
        for stage in &snap.stages {
            let label = stage.source.key();
            if let Some(cert_key) = &stage.certificate {
                match certs.get(cert_key.as_str()) {
                    Some(Ok(cert)) if stage.hostnames.is_empty() => {
                        default_cert = default_cert.or(Some(cert.clone()))
                    }
                    Some(Ok(cert)) => {
                        for h in &stage.hostnames {
                            certs_by_host
                                .entry(h.clone())
                                .or_insert_with(|| cert.clone());
                        }
                    }
                    Some(Err(e)) => {
                        leave_out(
                            &stage.source,
                            Reason::InvalidCertificate,
                            format!("certificate {cert_key}: {e}"),
                        );
                        continue;
                    }
                    None => {
                        leave_out(
                            &stage.source,
                            Reason::InvalidCertificate,
                            format!("certificate {cert_key} is not in the snapshot"),
                        );
                        continue;
                    }
                }
            }
            let access_log = match &stage.access_log {
                None => None,
                Some(a) => match AccessLogFormat::parse(&a.format) {
                    Ok(f) => Some(Arc::new(f)),
                    Err(e) => {
                        leave_out(
                            &stage.source,
                            Reason::InvalidAccessLogFormat,
                            format!("access log left out: {e}"),
                        );
                        None
                    }
                },
            };
            // A policy that cannot be compiled leaves the Stage out: open would be wrong.
            let resource_policy = match &stage.resource_policy {
                None => None,
                Some(p) => match crate::phases::resource_policy::Policy::compile(p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        leave_out(
                            &stage.source,
                            Reason::InvalidResourcePolicy,
                            format!("Stage left out: resource policy: {e}"),
                        );
                        continue;
                    }
                },
            };
            let mut inputs = Vec::with_capacity(stage.routes.len());
            let mut sources = Vec::with_capacity(stage.routes.len());
            for route in &stage.routes {
                let rlabel = route.source.key();
                let template = match Template::parse(&route.path) {
                    Ok(t) => t,
                    Err(e) => {
                        leave_out(
                            &route.source,
                            Reason::InvalidPath,
                            format!("left out of Stage {label}: {e}"),
                        );
                        continue;
                    }
                };
                let integration =
                    match compile_integration(&route.integration, stage, &template, &pools) {
                        Ok(i) => i,
                        Err(e) => {
                            leave_out(
                                &route.source,
                                Reason::InvalidIntegration,
                                format!("left out of Stage {label}: {e}"),
                            );
                            continue;
                        }
                    };
                let authorization = match &route.authorization {
                    None => None,
                    Some(a) => match authorizers.get(a.authorizer.as_str()) {
                        Some(Ok(c)) => Some(RouteAuth {
                            authorizer: c.clone(),
                            scopes: a.scopes.clone(),
                        }),
                        // Never served unprotected.
                        _ => {
                            leave_out(
                                &route.source,
                                Reason::AuthorizerNotFound,
                                format!(
                                    "left out of Stage {label}: authorizer {} is not served",
                                    a.authorizer
                                ),
                            );
                            continue;
                        }
                    },
                };
                sources.push(&route.source);
                let throttle = route.throttle.map(|t| {
                    runtime
                        .throttles
                        .bucket(route_bucket(&label, &rlabel), t.into(), now)
                });
                let mut plan_limits = Vec::new();
                if route.api_key_required {
                    let any = route.methods.is_empty() || route.methods.iter().any(|m| m == "ANY");
                    for &(plan, key, limit) in plan_routes.get(label.as_str()).into_iter().flatten()
                    {
                        let Some((m, path)) = key.split_once(' ') else {
                            continue;
                        };
                        if path != route.path {
                            continue;
                        }
                        let method = if m == "ANY" {
                            None
                        } else if any || route.methods.iter().any(|r| r == m) {
                            match http::Method::from_bytes(m.as_bytes()) {
                                Ok(m) => Some(m),
                                Err(_) => continue,
                            }
                        } else {
                            continue;
                        };
                        let Some(plan_label) = plan_labels.get(plan as usize) else {
                            continue;
                        };
                        let level = api_key::plan_route_level(plan_label, &label, &rlabel, key);
                        let buckets = runtime.key_throttles.buckets(level.clone(), limit, now);
                        key_levels.insert(level);
                        plan_limits.push(PlanRouteLimit {
                            plan,
                            method,
                            buckets,
                        });
                    }
                }
                inputs.push(RouteInput {
                    route: CompiledRoute {
                        api_key_required: route.api_key_required,
                        authorization,
                        plan_limits,
                        throttle,
                        metrics: metrics.route(&label, &rlabel),
                        label: rlabel,
                        resource_path: route.path.clone(),
                        methods: route.methods.clone(),
                        greedy: template.greedy(),
                        params: template.path.params().to_vec(),
                        integration,
                    },
                    template,
                });
            }
            let (routes, failed) = Routes::build(inputs);
            for (index, why) in failed {
                if let Some(source) = sources.get(index) {
                    leave_out(
                        source,
                        Reason::Conflict,
                        format!("left out of Stage {label}: {why}"),
                    );
                }
            }
            let flavour: Flavour = stage.api_type;
            entries.push(StageEntry {
                hostnames: &stage.hostnames,
                base_path: &stage.base_path,
                flavour,
            });
            let throttle = stage.throttle.map(|t| {
                runtime
                    .throttles
                    .bucket(stage_bucket(&label), t.into(), now)
            });
            stages.push(CompiledStage {
                api_key_source: stage.api_key_source,
                throttle,
                unmatched: metrics.route(&label, ""),
                label,
                name: stage.source.name.clone(),
                api: HeaderValue::from_str(&stage.api).unwrap_or(HeaderValue::from_static("-")),
                variables: stage.variables.clone(),
                resource_policy,
                flavour,
                routes,
                access_log,
            });
        }
        // Usage plans and keys, against the Stages as compiled.
        let stage_index: HashMap<&str, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.label.as_str(), i))
            .collect();
        let mut plans: Vec<CompiledPlan> = snap
            .usage_plans
            .iter()
            .zip(&plan_labels)
            .map(|(plan, label)| CompiledPlan {
                per_key: plan.throttle.map(|t| {
                    let level = api_key::plan_level(label);
                    key_levels.insert(level.clone());
                    runtime.key_throttles.buckets(level, t.into(), now)
                }),
                stages: plan
                    .stages
                    .iter()
                    .filter_map(|s| stage_index.get(s.stage.as_str()).copied())
                    .collect(),
                quota: runtime.quotas.plan(label, plan.quota),
                label: label.clone(),
                keys: HashSet::new(),
            })
            .collect();
        let plan_index: HashMap<&str, u32> = plan_labels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| Some((l.as_str(), u32::try_from(i).ok()?)))
            .collect();
        let keys: Vec<_> = snap
            .api_keys
            .iter()
            .map(|k| {
                let id: Arc<str> = Arc::from(k.id.as_str());
                let indexes = k
                    .plans
                    .iter()
                    .filter_map(|p| plan_index.get(p.as_str()).copied())
                    .collect::<smallvec::SmallVec<[u32; 2]>>();
                for &p in &indexes {
                    if let Some(plan) = plans.get_mut(p as usize) {
                        plan.keys.insert(id.clone());
                    }
                }
                (id, k.sha256.clone(), indexes)
            })
            .collect();
        let keys = KeyTable::new(keys, plans, &mut notes);
        let compiled = CompiledSnapshot {
            keys,
            key_levels,
            jwks_keys,
            result_keys,
            version: v.version,
            hash: v.hash.clone(),
            stage_table: StageTable::build(&entries),
            stages,
            certs_by_host,
            default_cert,
            unmatched: metrics.route("", ""),
        };
        Ok(Compiled {
            snapshot: compiled,
            left_out,
            notes,
        })
    }

    /// The Stage at `index`.
    pub fn stage(&self, index: usize) -> Option<&CompiledStage> {
        self.stages.get(index)
    }

    /// The (stage, route) metric label pairs this snapshot uses.
    pub fn metric_keys(&self) -> std::collections::HashSet<(String, String)> {
        let mut keys = std::collections::HashSet::new();
        keys.insert((String::new(), String::new()));
        for stage in &self.stages {
            keys.insert((stage.label.clone(), String::new()));
            for route in stage.routes.iter() {
                keys.insert((stage.label.clone(), route.label.clone()));
            }
        }
        keys
    }

    /// The keys of the token buckets this snapshot uses: the runtime forgets the others once
    /// it is applied.
    pub fn throttle_keys(&self) -> HashSet<String> {
        let mut keys = HashSet::new();
        for stage in &self.stages {
            if stage.throttle.is_some() {
                keys.insert(stage_bucket(&stage.label));
            }
            for route in stage.routes.iter().filter(|r| r.throttle.is_some()) {
                keys.insert(route_bucket(&stage.label, &route.label));
            }
        }
        keys
    }

    /// The names of the per-key bucket sets this snapshot uses: the runtime forgets the others
    /// once it is applied.
    pub fn key_levels(&self) -> &HashSet<String> {
        &self.key_levels
    }

    /// The issuers (and JWKS URLs) whose keys this snapshot uses: the runtime forgets others.
    pub fn jwks_keys(&self) -> &HashSet<(String, Option<String>)> {
        &self.jwks_keys
    }

    /// The function authorizers whose cached results are kept.
    pub fn result_keys(&self) -> &HashSet<String> {
        &self.result_keys
    }

    /// Number of stages served.
    pub fn stage_count(&self) -> usize {
        self.stages.len()
    }

    /// Number of routes served over all stages.
    pub fn route_count(&self) -> usize {
        self.stages.iter().map(|s| s.routes.len()).sum()
    }

    /// The certificate for a TLS server name.
    pub fn certificate(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        server_name
            .and_then(|n| {
                self.certs_by_host
                    .get(n)
                    .or_else(|| self.certs_by_host.get(&n.to_ascii_lowercase()))
            })
            .cloned()
            .or_else(|| self.default_cert.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollhouse_pemfile::testing::Authority;
    use tollhouse_snapshot::Snapshot;

    fn compile(snapshot: serde_json::Value) -> Compiled {
        let snapshot: Snapshot = serde_json::from_value(snapshot).unwrap();
        CompiledSnapshot::compile(
            &Versioned::new(1, snapshot),
            &Runtime::without_logs(crate::metrics::Metrics::default()),
        )
        .unwrap()
    }

    fn source(kind: &str, name: &str) -> serde_json::Value {
        serde_json::json!({"kind": kind, "namespace": "ns", "name": name, "generation": 3})
    }

    fn route(name: &str, path: &str, uri: &str) -> serde_json::Value {
        serde_json::json!({
            "source": source("ApiRoute", name), "path": path, "methods": ["GET"],
            "integration": {"type": "HTTP_PROXY", "uri": uri, "timeoutMs": 1000},
        })
    }

    fn left_out(c: &Compiled) -> Vec<(String, Reason)> {
        c.left_out
            .iter()
            .map(|l| {
                (
                    format!(
                        "{}/{}@{}",
                        l.source.kind, l.source.name, l.source.generation
                    ),
                    l.reason,
                )
            })
            .collect()
    }

    /// What the dataplane cannot serve is reported by object and reason, the rest is served.
    #[test]
    fn what_cannot_be_compiled_is_reported_by_object_and_reason() {
        let good = Authority::new().server();
        let c = compile(serde_json::json!({
            "stages": [
                {"source": source("Stage", "ok"), "api": "a", "hostnames": ["ok.example"],
                 "basePath": "/", "certificate": "ns/good", "routes": [
                    route("fine", "/pets/{id}", "http://h/pets/{id}"),
                    route("bad-path", "/a{b}", "http://h/"),
                    route("host-param", "/{svc}", "http://{svc}.internal/"),
                    route("twin", "/pets/{other}", "http://h/"),
                 ]},
                {"source": source("Stage", "dummy"), "api": "a", "hostnames": ["d.example"],
                 "basePath": "/", "certificate": "ns/dummy", "routes": []},
                {"source": source("Stage", "missing"), "api": "a", "hostnames": ["m.example"],
                 "basePath": "/", "certificate": "ns/nope", "routes": []},
                {"source": source("Stage", "log"), "api": "b", "basePath": "/",
                 "accessLog": {"format": "$context.nope"}, "routes": []},
            ],
            "certificates": {
                "ns/good": {"source": source("Secret", "good"),
                            "certificateChainPem": good.cert, "privateKeyPem": good.key},
                "ns/dummy": {"source": source("Secret", "dummy"),
                             "certificateChainPem": "-----BEGIN CERTIFICATE-----\nZHVtbXk=\n-----END CERTIFICATE-----\n",
                             "privateKeyPem": "-----BEGIN PRIVATE KEY-----\nZHVtbXk=\n-----END PRIVATE KEY-----\n"},
            },
        }));
        assert_eq!(
            left_out(&c),
            [
                ("ApiRoute/bad-path@3".to_string(), Reason::InvalidPath),
                (
                    "ApiRoute/host-param@3".to_string(),
                    Reason::InvalidIntegration
                ),
                ("ApiRoute/twin@3".to_string(), Reason::Conflict),
                ("Stage/dummy@3".to_string(), Reason::InvalidCertificate),
                ("Stage/missing@3".to_string(), Reason::InvalidCertificate),
                ("Stage/log@3".to_string(), Reason::InvalidAccessLogFormat),
            ]
        );
        // Messages name the object's problem, never key material.
        for l in &c.left_out {
            assert!(
                !l.message.contains("ZHVtbXk") && !l.message.contains("PRIVATE"),
                "{l:?}"
            );
        }
        assert_eq!(c.snapshot.stage_count(), 2);
        let ok = c.snapshot.stage(0).unwrap();
        let found = ok.routes.find(&http::Method::GET, "/pets/7").unwrap();
        assert_eq!(ok.routes.get(found.route).unwrap().label, "ns/fine");
        assert!(c.snapshot.certificate(Some("ok.example")).is_some());
    }

    /// An undefined stage variable, or one whose value makes the URI invalid, keeps the route
    /// served (it fails as AWS's does) and is not a left-out: the controller's ResolvedRefs
    /// already says so.
    #[test]
    fn unbindable_uris_are_served_failing() {
        let c = compile(serde_json::json!({
            "stages": [{"source": source("Stage", "s"), "api": "a", "basePath": "/",
                        "variables": {"host": "a b"}, "routes": [
                route("undefined", "/u", "http://${stageVariables.nope}/"),
                route("invalid", "/i", "http://${stageVariables.host}/"),
            ]}],
        }));
        assert_eq!(left_out(&c), []);
        assert_eq!(c.snapshot.route_count(), 2);
    }
}
