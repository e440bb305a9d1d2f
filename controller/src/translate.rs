//! The pure heart of the controller: objects in, snapshot and per-object status out.
//!
//! No I/O and no clock, so the same input always gives the same bytes. A bad or conflicting
//! object is left out of the snapshot with False conditions; the rest still goes out.

use crate::manifest::{Kind, ObjectKey};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tollhouse_api::{ApiRouteSpec, IntegrationType, Method, StageSpec};
use tollhouse_snapshot::{
    Backend, Certificate, HttpProxy, Integration, Mock, Route, Sensitive, Snapshot, SourceRef,
};

/// Metadata translate needs from every object.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.creationTimestamp`, when known.
    pub created: Option<Time>,
    /// First-seen order, the age of objects without a creation timestamp.
    pub seen: u64,
}

/// An object's metadata with its spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource<T> {
    /// Metadata.
    pub meta: Meta,
    /// Spec (for a Secret: its data).
    pub spec: T,
}

/// A Secret's data: key to bytes, `stringData` already merged.
pub type SecretData = BTreeMap<String, Vec<u8>>;

/// Secrets by (namespace, name).
type SecretsByName<'a> = HashMap<(&'a str, &'a str), &'a Resource<SecretData>>;

/// Per (namespace, api, path shape): the routes holding it and their methods.
type ShapeHolders<'a> = HashMap<(&'a str, &'a str, String), Vec<(usize, Vec<String>)>>;

/// What translate needs of a Service: its ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePorts {
    /// `(name, port)` of every port; the name is empty for a single unnamed port.
    pub ports: Vec<(String, i32)>,
}

/// What translate needs of an EndpointSlice (discovery.k8s.io v1 or v1beta1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSliceData {
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service: String,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// `(name, port)`: the name matches the Service port's name.
    pub ports: Vec<(String, i32)>,
    /// `(addresses, ready)` of every endpoint; readiness unknown counts as ready.
    pub endpoints: Vec<(Vec<String>, bool)>,
}

/// Everything translate reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input {
    /// Stages.
    pub stages: Vec<Resource<StageSpec>>,
    /// ApiRoutes.
    pub routes: Vec<Resource<ApiRouteSpec>>,
    /// Secrets with `stringData` merged into `data`.
    pub secrets: Vec<Resource<SecretData>>,
    /// Services (only their ports).
    pub services: Vec<Resource<ServicePorts>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Resource<EndpointSliceData>>,
}

/// One status condition, as in `status.conditions` but without a transition time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    /// `Accepted`, `ResolvedRefs` or `Ready`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// CamelCase reason from a fixed list.
    pub reason: &'static str,
    /// Human-readable detail.
    pub message: String,
}

/// Status of one Stage or ApiRoute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The generation the conditions describe.
    pub observed_generation: i64,
    /// Accepted, ResolvedRefs, Ready, in that order.
    pub conditions: Vec<Condition>,
}

/// What translate produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The snapshot for the dataplanes.
    pub snapshot: Snapshot,
    /// Status of every Stage and ApiRoute.
    pub statuses: BTreeMap<ObjectKey, Status>,
}

/// Condition reasons, a fixed list so that tools can match on them.
pub mod reason {
    /// Accepted=True.
    pub const ACCEPTED: &str = "Accepted";
    /// ResolvedRefs=True.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// Ready=True.
    pub const READY: &str = "Ready";
    /// A Stage without `api`.
    pub const INVALID_API: &str = "InvalidApi";
    /// A bad Stage `basePath`.
    pub const INVALID_BASE_PATH: &str = "InvalidBasePath";
    /// A bad Stage host name.
    pub const INVALID_HOSTNAME: &str = "InvalidHostname";
    /// A stage variable breaks the AWS limits.
    pub const INVALID_STAGE_VARIABLE: &str = "InvalidStageVariable";
    /// An access-log format AWS would refuse. The Stage is left out, as for any other invalid
    /// Stage field: AWS refuses the update and keeps the old config, which translate does not
    /// have, and serving without the log would hide the mistake.
    pub const INVALID_ACCESS_LOG_FORMAT: &str = "InvalidAccessLogFormat";
    /// The certificate Secret does not exist.
    pub const CERTIFICATE_NOT_FOUND: &str = "CertificateNotFound";
    /// The certificate Secret lacks PEM `tls.crt` / `tls.key`.
    pub const INVALID_CERTIFICATE: &str = "InvalidCertificate";
    /// An older object claims the same thing, or an older Stage of the API has another apiType.
    pub const CONFLICT: &str = "Conflict";
    /// A bad ApiRoute path.
    pub const INVALID_PATH: &str = "InvalidPath";
    /// Bad ApiRoute methods.
    pub const INVALID_METHOD: &str = "InvalidMethod";
    /// A bad ApiRoute integration.
    pub const INVALID_INTEGRATION: &str = "InvalidIntegration";
    /// The route uses a stage variable a serving stage lacks. The route is still served there
    /// (its calls fail with 500, as AWS's), so Ready is False while Programmed may be True.
    pub const UNDEFINED_STAGE_VARIABLE: &str = "UndefinedStageVariable";
    /// No Stage deploys the route's API.
    pub const NOT_SERVED: &str = "NotServed";
    /// The `backendRef` Service does not exist.
    pub const BACKEND_NOT_FOUND: &str = "BackendNotFound";
    /// The `backendRef` port is not a port of the Service.
    pub const INVALID_BACKEND_PORT: &str = "InvalidBackendPort";
    /// The Service has no ready endpoints: requests get 503.
    pub const NO_READY_ENDPOINTS: &str = "NoReadyEndpoints";
}

/// Why a condition is False.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Failure {
    reason: &'static str,
    message: String,
}

fn fail<T>(reason: &'static str, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        reason,
        message: message.into(),
    })
}

/// Sort key meaning "older first": creation time, then first-seen order, then namespace/name.
fn age(meta: &Meta) -> (bool, Option<&Time>, u64, &str, &str) {
    (
        meta.created.is_none(),
        meta.created.as_ref(),
        meta.seen,
        &meta.namespace,
        &meta.name,
    )
}

fn source(kind: Kind, meta: &Meta) -> SourceRef {
    SourceRef {
        kind: kind.as_str().to_string(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        generation: meta.generation,
    }
}

/// Max stage variables per stage, name and value lengths (AWS limits).
const MAX_VARIABLES: usize = 100;
const MAX_VARIABLE_NAME: usize = 64;
const MAX_VARIABLE_VALUE: usize = 512;

struct StageOk {
    hostnames: Vec<String>,
    base_path: String,
    variables: BTreeMap<String, String>,
    api_type: tollhouse_snapshot::ApiType,
    access_log: Option<tollhouse_snapshot::AccessLog>,
}

struct RouteOk {
    path: String,
    shape: String,
    methods: Vec<String>,
    integration: Integration,
    variables: BTreeSet<String>,
    backend: Option<tollhouse_api::BackendRef>,
}

/// Translates the objects into a snapshot and the status of every Stage and ApiRoute.
pub fn translate(input: &Input) -> Output {
    let secrets: SecretsByName<'_> = input
        .secrets
        .iter()
        .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
        .collect();

    let mut stages: Vec<&Resource<StageSpec>> = input.stages.iter().collect();
    stages
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    let mut stage_accepted: Vec<Result<StageOk, Failure>> =
        stages.iter().map(|s| check_stage(&s.spec)).collect();
    let stage_refs: Vec<Result<Option<(String, Certificate)>, Failure>> = stages
        .iter()
        .map(|s| resolve_certificate(s, &secrets))
        .collect();

    // Oldest first, so the first claim of a (host, base path) is the winner's.
    let mut by_age: Vec<usize> = (0..stages.len()).collect();
    by_age.sort_by(|&a, &b| age(&stages[a].meta).cmp(&age(&stages[b].meta)));
    let mut claims: HashMap<(String, String), usize> = HashMap::new();
    // The flavour of each API: that of its oldest served Stage, which the younger ones must
    // share (AWS has one flavour per API).
    let mut flavours: HashMap<(&str, &str), (usize, tollhouse_snapshot::ApiType)> = HashMap::new();
    for &i in &by_age {
        let (Ok(ok), Ok(_)) = (&stage_accepted[i], &stage_refs[i]) else {
            continue;
        };
        let api = (
            stages[i].meta.namespace.as_str(),
            stages[i].spec.api.as_str(),
        );
        if let Some(&(first, flavour)) = flavours.get(&api) {
            if flavour != ok.api_type {
                let w = &stages[first].meta;
                let message = format!(
                    "apiType {} differs from {} of the older Stage {}/{} of API {}: every Stage of one API must agree",
                    api_type_name(ok.api_type),
                    api_type_name(flavour),
                    w.namespace,
                    w.name,
                    api.1
                );
                stage_accepted[i] = fail(reason::CONFLICT, message);
                continue;
            }
        }
        let hosts = if ok.hostnames.is_empty() {
            vec!["*".to_string()]
        } else {
            ok.hostnames.clone()
        };
        let wanted: Vec<(String, String)> = hosts
            .into_iter()
            .map(|h| (h, ok.base_path.clone()))
            .collect();
        let taken = wanted
            .iter()
            .find_map(|claim| claims.get(claim).map(|&w| (claim, w)));
        if let Some(((host, path), winner)) = taken {
            let w = &stages[winner].meta;
            let message = format!(
                "host {host} and base path {path} are already claimed by the older Stage {}/{}",
                w.namespace, w.name
            );
            stage_accepted[i] = fail(reason::CONFLICT, message);
        } else {
            for claim in wanted {
                claims.insert(claim, i);
            }
            flavours.entry(api).or_insert((i, ok.api_type));
        }
    }

    let mut routes: Vec<&Resource<ApiRouteSpec>> = input.routes.iter().collect();
    routes
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    let mut route_accepted: Vec<Result<RouteOk, Failure>> =
        routes.iter().map(|r| check_route(&r.spec)).collect();
    let mut by_age: Vec<usize> = (0..routes.len()).collect();
    by_age.sort_by(|&a, &b| age(&routes[a].meta).cmp(&age(&routes[b].meta)));
    // Per (namespace, api, shape) the method sets already taken; at most a handful each.
    let mut taken: ShapeHolders<'_> = HashMap::new();
    for &i in &by_age {
        let Ok(ok) = &route_accepted[i] else { continue };
        let key = (
            routes[i].meta.namespace.as_str(),
            routes[i].spec.api.as_str(),
            ok.shape.clone(),
        );
        let holders = taken.entry(key).or_default();
        let clash = holders
            .iter()
            .find(|(_, methods)| overlaps(methods, &ok.methods));
        if let Some((winner, methods)) = clash {
            let w = &routes[*winner].meta;
            let message = format!(
                "path {} with methods {} overlaps the older ApiRoute {}/{} (methods {})",
                ok.path,
                ok.methods.join(","),
                w.namespace,
                w.name,
                methods.join(",")
            );
            route_accepted[i] = fail(reason::CONFLICT, message);
        } else {
            holders.push((i, ok.methods.clone()));
        }
    }

    let mut by_api: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, route) in routes.iter().enumerate() {
        if route_accepted[i].is_ok() {
            by_api
                .entry((route.meta.namespace.as_str(), route.spec.api.as_str()))
                .or_default()
                .push(i);
        }
    }

    let services: HashMap<(&str, &str), &Resource<ServicePorts>> = input
        .services
        .iter()
        .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
        .collect();
    let mut slices: HashMap<(&str, &str), Vec<&EndpointSliceData>> = HashMap::new();
    for slice in &input.endpoint_slices {
        slices
            .entry((slice.meta.namespace.as_str(), slice.spec.service.as_str()))
            .or_default()
            .push(&slice.spec);
    }
    let mut backends: BTreeMap<String, Backend> = BTreeMap::new();
    let mut route_backend: Vec<Option<Result<String, Failure>>> = Vec::with_capacity(routes.len());
    for (i, route) in routes.iter().enumerate() {
        let wanted = route_accepted[i]
            .as_ref()
            .ok()
            .and_then(|ok| ok.backend.as_ref());
        route_backend.push(wanted.map(|backend_ref| {
            let namespace = route.meta.namespace.as_str();
            let (key, backend, resolved) =
                resolve_backend(namespace, backend_ref, &services, &slices);
            backends.entry(key.clone()).or_insert(backend);
            resolved.map(|()| key)
        }));
    }

    let mut snapshot = Snapshot::default();
    let mut statuses = BTreeMap::new();
    let mut served_by: Vec<Vec<String>> = vec![Vec::new(); routes.len()];
    let mut undefined: Vec<Vec<String>> = vec![Vec::new(); routes.len()];
    for (i, stage) in stages.iter().enumerate() {
        let (Ok(ok), Ok(certificate)) = (&stage_accepted[i], &stage_refs[i]) else {
            continue;
        };
        let stage_name = format!("{}/{}", stage.meta.namespace, stage.meta.name);
        let mut served = Vec::new();
        for &r in by_api
            .get(&(stage.meta.namespace.as_str(), stage.spec.api.as_str()))
            .into_iter()
            .flatten()
        {
            let Ok(route) = &route_accepted[r] else {
                continue;
            };
            // An undefined variable does not withdraw the route: it is served and its calls
            // fail as AWS's do (reference §3a R7); ResolvedRefs says why.
            for variable in route
                .variables
                .iter()
                .filter(|v| !ok.variables.contains_key(*v))
            {
                undefined[r].push(format!("Stage {stage_name} has no variable `{variable}`"));
            }
            served_by[r].push(stage_name.clone());
            let mut integration = route.integration.clone();
            if let (Integration::HttpProxy(proxy), Some(backend)) =
                (&mut integration, &route_backend[r])
            {
                // An unresolved Service still gets a (never-ready) backend: the route
                // answers 503 instead of disappearing into a 404.
                let key = match backend {
                    Ok(key) => key.clone(),
                    Err(_) => backend_key(&routes[r].meta.namespace, route.backend.as_ref()),
                };
                if let Some(b) = backends.get(&key) {
                    snapshot.backends.insert(key.clone(), b.clone());
                }
                proxy.backend = Some(key);
            }
            served.push(Route {
                source: source(Kind::ApiRoute, &routes[r].meta),
                path: route.path.clone(),
                methods: route.methods.clone(),
                integration,
            });
        }
        served.sort_by(|a, b| (&a.path, &a.source).cmp(&(&b.path, &b.source)));
        let route_count = served.len();
        let certificate_key = certificate.as_ref().map(|(key, cert)| {
            snapshot.certificates.insert(key.clone(), cert.clone());
            key.clone()
        });
        snapshot.stages.push(tollhouse_snapshot::Stage {
            source: source(Kind::Stage, &stage.meta),
            api: stage.spec.api.clone(),
            hostnames: ok.hostnames.clone(),
            base_path: ok.base_path.clone(),
            variables: ok.variables.clone(),
            certificate: certificate_key,
            routes: served,
            api_type: ok.api_type,
            access_log: ok.access_log.clone(),
        });
        let ready = Ok(format!("serving {route_count} route(s)"));
        statuses.insert(
            ObjectKey::new(Kind::Stage, &stage.meta.namespace, &stage.meta.name),
            status(stage.meta.generation, Ok(()), Ok(()), ready),
        );
    }
    for (i, stage) in stages.iter().enumerate() {
        let key = ObjectKey::new(Kind::Stage, &stage.meta.namespace, &stage.meta.name);
        if statuses.contains_key(&key) {
            continue;
        }
        let accepted = stage_accepted[i].as_ref().map(|_| ()).map_err(Clone::clone);
        let refs = stage_refs[i].as_ref().map(|_| ()).map_err(Clone::clone);
        statuses.insert(
            key,
            status(stage.meta.generation, accepted, refs, Ok(String::new())),
        );
    }

    for (i, route) in routes.iter().enumerate() {
        let accepted = route_accepted[i].as_ref().map(|_| ()).map_err(Clone::clone);
        let refs = match &route_backend[i] {
            Some(Err(f)) => Err(f.clone()),
            _ if !undefined[i].is_empty() => {
                fail(reason::UNDEFINED_STAGE_VARIABLE, undefined[i].join("; "))
            }
            _ => Ok(()),
        };
        let no_endpoints = match &route_backend[i] {
            Some(Ok(key)) => backends.get(key).filter(|b| b.endpoints.is_empty()),
            _ => None,
        };
        let ready = if let Some(backend) = no_endpoints {
            fail(
                reason::NO_READY_ENDPOINTS,
                format!(
                    "Service {} has no ready endpoints: requests get 503",
                    backend.source.name
                ),
            )
        } else if served_by[i].is_empty() {
            fail(
                reason::NOT_SERVED,
                format!(
                    "no accepted Stage in namespace {} deploys API {}",
                    route.meta.namespace, route.spec.api
                ),
            )
        } else {
            Ok(format!("served by Stage {}", served_by[i].join(", ")))
        };
        statuses.insert(
            ObjectKey::new(Kind::ApiRoute, &route.meta.namespace, &route.meta.name),
            status(route.meta.generation, accepted, refs, ready),
        );
    }

    Output { snapshot, statuses }
}

fn condition(
    kind: &'static str,
    result: &Result<String, Failure>,
    ok_reason: &'static str,
) -> Condition {
    match result {
        Ok(message) => Condition {
            kind,
            status: "True",
            reason: ok_reason,
            message: message.clone(),
        },
        Err(f) => Condition {
            kind,
            status: "False",
            reason: f.reason,
            message: f.message.clone(),
        },
    }
}

/// Ready carries the first blocking reason, so `kubectl get` shows why in one column.
fn status(
    generation: i64,
    accepted: Result<(), Failure>,
    refs: Result<(), Failure>,
    ready: Result<String, Failure>,
) -> Status {
    let accepted = accepted.map(|()| "the object is valid".to_string());
    let refs = refs.map(|()| "all references are resolved".to_string());
    let ready = match (&accepted, &refs) {
        (Err(f), _) | (Ok(_), Err(f)) => Err(f.clone()),
        _ => ready,
    };
    Status {
        observed_generation: generation,
        conditions: vec![
            condition("Accepted", &accepted, reason::ACCEPTED),
            condition("ResolvedRefs", &refs, reason::RESOLVED_REFS),
            condition("Ready", &ready, reason::READY),
        ],
    }
}

/// The snapshot key of a Service port: `namespace/service:port`.
fn backend_key(namespace: &str, backend_ref: Option<&tollhouse_api::BackendRef>) -> String {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let (name, port) = match backend_ref {
        Some(b) => (
            b.name.as_str(),
            match &b.port {
                Some(IntOrString::Int(n)) => n.to_string(),
                Some(IntOrString::String(s)) => s.clone(),
                None => String::new(),
            },
        ),
        None => ("", String::new()),
    };
    format!("{namespace}/{name}:{port}")
}

/// Finds the Service port a `backendRef` names and the ready endpoints behind it.
/// Returns the key, the backend (empty when unresolved) and whether it resolved.
fn resolve_backend(
    namespace: &str,
    backend_ref: &tollhouse_api::BackendRef,
    services: &HashMap<(&str, &str), &Resource<ServicePorts>>,
    slices: &HashMap<(&str, &str), Vec<&EndpointSliceData>>,
) -> (String, Backend, Result<(), Failure>) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let key = backend_key(namespace, Some(backend_ref));
    let name = backend_ref.name.as_str();
    let empty = |generation| Backend {
        source: SourceRef {
            kind: "Service".into(),
            namespace: namespace.into(),
            name: name.into(),
            generation,
        },
        endpoints: Vec::new(),
    };
    let Some(service) = services.get(&(namespace, name)) else {
        let why = format!("Service {namespace}/{name} does not exist");
        return (key, empty(0), fail(reason::BACKEND_NOT_FOUND, why));
    };
    let ports = &service.spec.ports;
    let port = match &backend_ref.port {
        None if ports.len() == 1 => ports.first(),
        None => {
            let why = format!(
                "Service {namespace}/{name} has {} ports: backendRef.port must name one",
                ports.len()
            );
            return (
                key,
                empty(service.meta.generation),
                fail(reason::INVALID_BACKEND_PORT, why),
            );
        }
        Some(IntOrString::Int(n)) => ports.iter().find(|(_, p)| p == n),
        Some(IntOrString::String(s)) => ports.iter().find(|(port_name, _)| port_name == s),
    };
    let Some((port_name, _)) = port else {
        let why = format!(
            "Service {namespace}/{name} has no port {}",
            key.rsplit(':').next().unwrap_or_default()
        );
        return (
            key,
            empty(service.meta.generation),
            fail(reason::INVALID_BACKEND_PORT, why),
        );
    };
    let mut endpoints = BTreeSet::new();
    for slice in slices.get(&(namespace, name)).into_iter().flatten() {
        let Some((_, target)) = slice.ports.iter().find(|(n, _)| n == port_name) else {
            continue;
        };
        for (addresses, ready) in &slice.endpoints {
            if !ready {
                continue;
            }
            for address in addresses {
                let host = if slice.address_type == "IPv6" || address.contains(':') {
                    format!("[{address}]")
                } else {
                    address.clone()
                };
                endpoints.insert(format!("{host}:{target}"));
            }
        }
    }
    let mut backend = empty(service.meta.generation);
    backend.endpoints = endpoints.into_iter().collect();
    (key, backend, Ok(()))
}

/// Two routes of one shape collide when they define the same method. `ANY` collides only with
/// `ANY`: beside explicit methods it answers just the methods not otherwise defined (reference
/// §8, HTTP API routing).
fn overlaps(a: &[String], b: &[String]) -> bool {
    a.iter().any(|x| b.contains(x))
}

fn api_type_name(t: tollhouse_snapshot::ApiType) -> &'static str {
    match t {
        tollhouse_snapshot::ApiType::Http => "HTTP",
        tollhouse_snapshot::ApiType::Rest => "REST",
    }
}

fn check_stage(spec: &StageSpec) -> Result<StageOk, Failure> {
    if spec.api.trim().is_empty() {
        return fail(
            reason::INVALID_API,
            "spec.api must name the API this stage deploys",
        );
    }
    let base_path = normalise_base_path(spec.base_path.as_deref().unwrap_or("/"))?;
    let mut hostnames = BTreeSet::new();
    for host in &spec.hostnames {
        let lower = host.to_ascii_lowercase();
        if !is_dns_name(&lower) {
            return fail(
                reason::INVALID_HOSTNAME,
                format!(
                    "hostname {host:?} is not a DNS name (no wildcards, ports or trailing dots)"
                ),
            );
        }
        hostnames.insert(lower);
    }
    if spec.variables.len() > MAX_VARIABLES {
        return fail(
            reason::INVALID_STAGE_VARIABLE,
            format!(
                "{} stage variables; at most {MAX_VARIABLES} are allowed",
                spec.variables.len()
            ),
        );
    }
    for (name, value) in &spec.variables {
        if !is_variable_name(name) {
            return fail(
                reason::INVALID_STAGE_VARIABLE,
                format!("stage variable name {name:?} must be 1 to 64 characters of [A-Za-z0-9_]"),
            );
        }
        let value_ok = !value.is_empty()
            && value.len() <= MAX_VARIABLE_VALUE
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~:/?#&=,".contains(c));
        if !value_ok {
            return fail(
                reason::INVALID_STAGE_VARIABLE,
                format!("stage variable {name}: value must be 1 to 512 characters of [A-Za-z0-9-._~:/?#&=,]"),
            );
        }
    }
    let access_log = match &spec.access_log {
        None => None,
        Some(a) => match tollhouse_template::AccessLogFormat::parse(&a.format) {
            Ok(_) => Some(tollhouse_snapshot::AccessLog {
                format: a.format.clone(),
            }),
            Err(e) => return fail(reason::INVALID_ACCESS_LOG_FORMAT, format!("accessLog: {e}")),
        },
    };
    let api_type = match spec.api_type.unwrap_or_default() {
        tollhouse_api::ApiType::Http => tollhouse_snapshot::ApiType::Http,
        tollhouse_api::ApiType::Rest => tollhouse_snapshot::ApiType::Rest,
    };
    Ok(StageOk {
        hostnames: hostnames.into_iter().collect(),
        base_path,
        variables: spec.variables.clone(),
        api_type,
        access_log,
    })
}

fn normalise_base_path(raw: &str) -> Result<String, Failure> {
    let bad = |why: &str| fail(reason::INVALID_BASE_PATH, format!("basePath {raw:?} {why}"));
    if !raw.starts_with('/') {
        return bad("must start with /");
    }
    if raw.contains(['{', '}']) {
        return bad("must not contain { or }");
    }
    let trimmed = if raw.len() > 1 {
        raw.strip_suffix('/').unwrap_or(raw)
    } else {
        raw
    };
    if trimmed == "/" {
        return if raw == "/" {
            Ok(raw.to_string())
        } else {
            bad("must not contain empty segments")
        };
    }
    for segment in trimmed[1..].split('/') {
        if segment.is_empty() {
            return bad("must not contain empty segments");
        }
        if segment == ".." || segment == "." {
            return bad("must not contain . or .. segments");
        }
        if segment.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            return bad("must not contain spaces, ? or #");
        }
    }
    Ok(trimmed.to_string())
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_VARIABLE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn resolve_certificate(
    stage: &Resource<StageSpec>,
    secrets: &SecretsByName<'_>,
) -> Result<Option<(String, Certificate)>, Failure> {
    let Some(tls) = &stage.spec.tls else {
        return Ok(None);
    };
    let namespace = stage.meta.namespace.as_str();
    let name = tls.certificate_ref.name.as_str();
    let Some(secret) = secrets.get(&(namespace, name)) else {
        return fail(
            reason::CERTIFICATE_NOT_FOUND,
            format!("Secret {namespace}/{name} does not exist"),
        );
    };
    // Messages name the missing key, never the content: this is key material.
    let pem = |key: &str| -> Result<String, Failure> {
        match secret
            .spec
            .get(key)
            .map(|bytes| String::from_utf8(bytes.clone()))
        {
            Some(Ok(text)) if text.contains("-----BEGIN") => Ok(text),
            Some(_) => fail(
                reason::INVALID_CERTIFICATE,
                format!("Secret {namespace}/{name}: {key} is not PEM (no -----BEGIN line)"),
            ),
            None => fail(
                reason::INVALID_CERTIFICATE,
                format!("Secret {namespace}/{name} has no {key}"),
            ),
        }
    };
    let certificate_chain_pem = pem("tls.crt")?;
    let private_key = pem("tls.key")?;
    Ok(Some((
        format!("{namespace}/{name}"),
        Certificate {
            source: source(Kind::Secret, &secret.meta),
            certificate_chain_pem,
            private_key_pem: Sensitive(private_key),
        },
    )))
}

/// A normalised path, its shape (parameter names erased) and its parameter names.
struct PathTemplate {
    path: String,
    shape: String,
    params: BTreeSet<String>,
}

fn parse_path(raw: &str) -> Result<PathTemplate, Failure> {
    let bad = |why: String| fail(reason::INVALID_PATH, format!("path {raw:?} {why}"));
    if !raw.starts_with('/') {
        return bad("must start with /".into());
    }
    let path = if raw.len() > 1 {
        raw.strip_suffix('/').unwrap_or(raw)
    } else {
        raw
    };
    let mut template = PathTemplate {
        path: path.to_string(),
        shape: String::new(),
        params: BTreeSet::new(),
    };
    if path == "/" && raw != "/" {
        return bad("has an empty segment".into());
    }
    if path == "/" {
        template.shape.push('/');
        return Ok(template);
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    for (index, segment) in segments.iter().enumerate() {
        template.shape.push('/');
        if segment.is_empty() {
            return bad("has an empty segment".into());
        }
        if segment.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            return bad(format!(
                "segment {segment:?} must not contain spaces, ? or #"
            ));
        }
        if !segment.contains(['{', '}']) {
            template.shape.push_str(segment);
            continue;
        }
        let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            return bad(format!(
                "segment {segment:?}: a parameter must be a whole segment like {{name}}"
            ));
        };
        let (name, greedy) = match inner.strip_suffix('+') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return bad(format!(
                "parameter {segment:?} must be named with [A-Za-z0-9_.-]"
            ));
        }
        if greedy && index + 1 != segments.len() {
            return bad(format!(
                "greedy parameter {segment:?} must be the last segment"
            ));
        }
        if !template.params.insert(name.to_string()) {
            return bad(format!("parameter {name:?} appears twice"));
        }
        template.shape.push_str(if greedy { "{+}" } else { "{}" });
    }
    Ok(template)
}

fn check_route(spec: &ApiRouteSpec) -> Result<RouteOk, Failure> {
    let template = parse_path(&spec.path)?;
    let mut methods: Vec<&'static str> = spec.methods.iter().map(|m| m.as_str()).collect();
    if methods.is_empty() {
        methods.push(Method::Any.as_str());
    }
    methods.sort_unstable();
    methods.dedup();
    if methods.len() > 1 && methods.contains(&Method::Any.as_str()) {
        return fail(
            reason::INVALID_METHOD,
            "ANY must be the only method: it already answers every method",
        );
    }
    let (integration, variables) = check_integration(spec, &template.params)?;
    Ok(RouteOk {
        path: template.path,
        shape: template.shape,
        methods: methods.into_iter().map(str::to_string).collect(),
        integration,
        variables,
        backend: spec.integration.backend_ref.clone(),
    })
}

fn check_integration(
    spec: &ApiRouteSpec,
    params: &BTreeSet<String>,
) -> Result<(Integration, BTreeSet<String>), Failure> {
    let bad = |why: String| fail(reason::INVALID_INTEGRATION, why);
    let integration = &spec.integration;
    match integration.kind {
        IntegrationType::HttpProxy => {
            if integration.mock.is_some() {
                return bad("HTTP_PROXY integration must not set mock".into());
            }
            let uri = match (&integration.backend_ref, integration.uri.as_deref()) {
                (None, None) => {
                    return bad("HTTP_PROXY integration needs a uri or a backendRef".into())
                }
                (Some(_), None) => "",
                (Some(_), Some(path)) => {
                    if !path.starts_with('/') {
                        return bad(format!(
                            "with a backendRef, uri {path:?} must be a path starting with /"
                        ));
                    }
                    path
                }
                (None, Some(uri)) => {
                    let rest = uri
                        .strip_prefix("http://")
                        .or_else(|| uri.strip_prefix("https://"));
                    if rest.is_none_or(str::is_empty) {
                        return bad(format!(
                            "uri {uri:?} must start with http:// or https:// and name a host"
                        ));
                    }
                    uri
                }
            };
            let variables = uri_variables(uri, params).map_err(|why| Failure {
                reason: reason::INVALID_INTEGRATION,
                message: format!("uri {uri:?}: {why}"),
            })?;
            let timeout_ms = integration
                .timeout_in_millis
                .unwrap_or(tollhouse_snapshot::DEFAULT_TIMEOUT_MS);
            if !(50..=300_000).contains(&timeout_ms) {
                return bad(format!(
                    "timeoutInMillis {timeout_ms} must be between 50 and 300000"
                ));
            }
            let http2 = integration.http2.unwrap_or(false);
            Ok((
                Integration::HttpProxy(HttpProxy {
                    uri: uri.to_string(),
                    backend: None,
                    timeout_ms,
                    http2,
                }),
                variables,
            ))
        }
        IntegrationType::Mock => {
            if integration.uri.is_some() || integration.backend_ref.is_some() {
                return bad("MOCK integration must not set uri or backendRef".into());
            }
            let mock = integration.mock.clone().unwrap_or(tollhouse_api::MockSpec {
                status_code: None,
                headers: BTreeMap::new(),
                body: None,
            });
            let status_code = mock.status_code.unwrap_or(200);
            if !(100..=599).contains(&status_code) {
                return bad(format!(
                    "mock statusCode {status_code} must be between 100 and 599"
                ));
            }
            for (name, value) in &mock.headers {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || http::HeaderValue::from_str(value).is_err()
                {
                    return bad(format!("mock header {name:?} is not a valid HTTP header"));
                }
            }
            let mock = Mock {
                status_code,
                headers: mock.headers,
                body: mock.body.unwrap_or_default(),
            };
            Ok((Integration::Mock(mock), BTreeSet::new()))
        }
    }
}

/// Checks `{param}` and `${stageVariables.x}` references; returns the stage variables used.
fn uri_variables(uri: &str, params: &BTreeSet<String>) -> Result<BTreeSet<String>, String> {
    let mut variables = BTreeSet::new();
    let mut rest = uri;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("has an unmatched }".into());
        }
        let is_variable = rest[..open].ends_with('$');
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("has an unmatched {".into());
        };
        let inner = &after[..close];
        if inner.contains('{') {
            return Err("has nested braces".into());
        }
        if is_variable {
            match inner.strip_prefix("stageVariables.") {
                Some(name) if is_variable_name(name) => {
                    variables.insert(name.to_string());
                }
                _ => {
                    return Err(format!(
                        "${{{inner}}} is not ${{stageVariables.name}} with a name of [A-Za-z0-9_]"
                    ))
                }
            }
        } else if params.contains(inner) {
            // A request value in the scheme or host would let a client choose the upstream;
            // stage variables may be there, as AWS allows.
            let at = uri.len() - rest.len() + open;
            if let Some(i) = uri.find("://") {
                if !uri.get(i + 3..at).unwrap_or("").contains(['/', '?']) {
                    return Err(format!(
                        "path parameter {{{inner}}} is in the scheme or host: request values may only go into the path and query"
                    ));
                }
            } else if !uri.starts_with('/') {
                return Err(format!(
                    "path parameter {{{inner}}} is in the scheme or host: request values may only go into the path and query"
                ));
            }
        } else {
            let hint = if inner.ends_with('+') {
                " (write a greedy parameter {proxy+} as {proxy})"
            } else {
                ""
            };
            return Err(format!(
                "{{{inner}}} is not a path parameter of the route{hint}"
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(variables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollhouse_api::{IntegrationSpec, LocalObjectRef, MockSpec, StageTls};

    fn meta(name: &str, seen: u64) -> Meta {
        Meta {
            namespace: "default".into(),
            name: name.into(),
            generation: 1,
            created: None,
            seen,
        }
    }

    fn stage(name: &str, seen: u64, base_path: &str) -> Resource<StageSpec> {
        Resource {
            meta: meta(name, seen),
            spec: StageSpec {
                api: "pets".into(),
                hostnames: vec![],
                base_path: Some(base_path.into()),
                variables: BTreeMap::new(),
                tls: None,
                api_type: None,
                access_log: None,
            },
        }
    }

    fn proxy(
        name: &str,
        seen: u64,
        path: &str,
        methods: Vec<Method>,
        uri: &str,
    ) -> Resource<ApiRouteSpec> {
        Resource {
            meta: meta(name, seen),
            spec: ApiRouteSpec {
                api: "pets".into(),
                path: path.into(),
                methods,
                integration: IntegrationSpec {
                    kind: IntegrationType::HttpProxy,
                    uri: Some(uri.into()),
                    backend_ref: None,
                    timeout_in_millis: None,
                    http2: None,
                    mock: None,
                },
            },
        }
    }

    fn condition_of(out: &Output, kind: Kind, name: &str, which: &str) -> Condition {
        let status = &out.statuses[&ObjectKey::new(kind, "default", name)];
        status
            .conditions
            .iter()
            .find(|c| c.kind == which)
            .cloned()
            .unwrap()
    }

    fn reason_of(out: &Output, kind: Kind, name: &str) -> &'static str {
        condition_of(out, kind, name, "Ready").reason
    }

    #[test]
    fn base_paths_are_normalised_or_refused() {
        assert_eq!(normalise_base_path("/").unwrap(), "/");
        assert_eq!(normalise_base_path("/prod/").unwrap(), "/prod");
        assert_eq!(normalise_base_path("/a/b").unwrap(), "/a/b");
        for bad in ["", "prod", "/a//b", "/a/../b", "/{x}", "//"] {
            assert_eq!(
                normalise_base_path(bad).unwrap_err().reason,
                reason::INVALID_BASE_PATH,
                "{bad}"
            );
        }
    }

    #[test]
    fn paths_take_whole_segment_parameters_and_greedy_last() {
        let t = parse_path("/pets/{petId}/").unwrap();
        assert_eq!(
            (t.path.as_str(), t.shape.as_str()),
            ("/pets/{petId}", "/pets/{}")
        );
        assert_eq!(parse_path("/files/{proxy+}").unwrap().shape, "/files/{+}");
        assert_eq!(parse_path("/").unwrap().shape, "/");
        for bad in [
            "pets", "//", "/a//b", "/a/{b}c", "/{a+}/b", "/{a}/{a}", "/{}", "/{a b}", "/a{",
        ] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uris_use_only_route_parameters_and_valid_stage_variables() {
        let params: BTreeSet<String> = ["id".to_string(), "proxy".to_string()].into();
        let vars = uri_variables("http://${stageVariables.host}/x/{id}/{proxy}", &params).unwrap();
        assert_eq!(vars, ["host".to_string()].into());
        assert!(uri_variables("http://h/{other}", &params).is_err());
        assert!(uri_variables("http://h/{proxy+}", &params).is_err());
        assert!(uri_variables("http://${stage.host}/", &params).is_err());
        assert!(uri_variables("http://${stageVariables.a-b}/", &params).is_err());
        assert!(uri_variables("http://h/}", &params).is_err());
        // A request value may never choose the upstream host.
        for uri in [
            "http://{id}.internal/x",
            "http://h:{id}/x",
            "{id}://h/",
            "http://${stageVariables.host}{id}/",
        ] {
            let e = uri_variables(uri, &params).unwrap_err();
            assert!(e.contains("scheme or host"), "{uri}: {e}");
        }
        assert!(uri_variables("http://h/?q={id}", &params).is_ok());
        assert!(uri_variables("/in/{id}", &params).is_ok());
    }

    #[test]
    fn hostnames_and_variables_follow_the_rules() {
        let mut s = stage("s", 0, "/");
        s.spec.hostnames = vec!["API.Example.com".into(), "api.example.com".into()];
        assert_eq!(
            check_stage(&s.spec).map(|ok| ok.hostnames).unwrap(),
            vec!["api.example.com"]
        );
        for bad in ["*.example.com", "example.com:443", "-a.com", "a..com", ""] {
            s.spec.hostnames = vec![bad.into()];
            assert_eq!(
                check_stage(&s.spec).err().unwrap().reason,
                reason::INVALID_HOSTNAME,
                "{bad}"
            );
        }
        s.spec.hostnames = vec![];
        s.spec.variables = [("ok_1".to_string(), "http://a:80/b?c=d&e,f#g~".to_string())].into();
        assert!(check_stage(&s.spec).is_ok());
        for (name, value) in [
            ("a-b", "x"),
            ("a", "sp ace"),
            ("a", ""),
            (&*"n".repeat(65), "x"),
        ] {
            s.spec.variables = [(name.to_string(), value.to_string())].into();
            assert_eq!(
                check_stage(&s.spec).err().unwrap().reason,
                reason::INVALID_STAGE_VARIABLE
            );
        }
        s.spec.variables = (0..101)
            .map(|i| (format!("v{i}"), "x".to_string()))
            .collect();
        assert_eq!(
            check_stage(&s.spec).err().unwrap().reason,
            reason::INVALID_STAGE_VARIABLE
        );
        s.spec.variables = [("v".to_string(), "x".repeat(513))].into();
        assert_eq!(
            check_stage(&s.spec).err().unwrap().reason,
            reason::INVALID_STAGE_VARIABLE
        );
    }

    #[test]
    fn oldest_stage_wins_a_host_and_base_path() {
        let input = Input {
            stages: vec![
                stage("young", 2, "/v1/"),
                stage("old", 1, "/v1"),
                stage("other", 3, "/v2"),
            ],
            ..Input::default()
        };
        let out = translate(&input);
        assert_eq!(reason_of(&out, Kind::Stage, "young"), reason::CONFLICT);
        assert!(condition_of(&out, Kind::Stage, "young", "Accepted")
            .message
            .contains("default/old"));
        let names: Vec<_> = out
            .snapshot
            .stages
            .iter()
            .map(|s| s.source.name.as_str())
            .collect();
        assert_eq!(names, vec!["old", "other"]);
    }

    #[test]
    fn creation_timestamps_beat_first_seen_order() {
        let mut young = stage("a", 1, "/");
        let mut old = stage("b", 2, "/");
        old.meta.created = Some(serde_json::from_str("\"2020-01-01T00:00:00Z\"").unwrap());
        young.meta.created = Some(serde_json::from_str("\"2021-01-01T00:00:00Z\"").unwrap());
        let out = translate(&Input {
            stages: vec![young, old],
            ..Input::default()
        });
        assert_eq!(reason_of(&out, Kind::Stage, "a"), reason::CONFLICT);
        assert_eq!(reason_of(&out, Kind::Stage, "b"), reason::READY);
    }

    #[test]
    fn routes_conflict_on_shape_and_overlapping_methods() {
        let input = Input {
            stages: vec![stage("prod", 0, "/")],
            routes: vec![
                proxy("get", 1, "/pets/{a}", vec![Method::Get], "http://b/{a}"),
                proxy("post", 2, "/pets/{b}", vec![Method::Post], "http://b/{b}"),
                proxy("any", 3, "/pets/{c}/", vec![], "http://b"),
                proxy("greedy", 4, "/pets/{c+}", vec![Method::Get], "http://b/{c}"),
                proxy("literal", 5, "/pets/x", vec![Method::Get], "http://b"),
                proxy("any-again", 6, "/pets/{d}", vec![Method::Any], "http://b"),
                proxy(
                    "get-again",
                    7,
                    "/pets/{e}",
                    vec![Method::Get, Method::Put],
                    "http://b",
                ),
            ],
            ..Input::default()
        };
        let out = translate(&input);
        // ANY beside explicit methods on one path is AWS's "methods not otherwise defined".
        for ok in ["get", "post", "any", "greedy", "literal"] {
            assert_eq!(reason_of(&out, Kind::ApiRoute, ok), reason::READY, "{ok}");
        }
        assert_eq!(
            reason_of(&out, Kind::ApiRoute, "any-again"),
            reason::CONFLICT
        );
        assert!(condition_of(&out, Kind::ApiRoute, "any-again", "Accepted")
            .message
            .contains("default/any"));
        assert_eq!(
            reason_of(&out, Kind::ApiRoute, "get-again"),
            reason::CONFLICT
        );
        assert!(condition_of(&out, Kind::ApiRoute, "get-again", "Accepted")
            .message
            .contains("default/get"));
        assert_eq!(out.snapshot.route_count(), 5);
    }

    #[test]
    fn methods_default_to_any_and_any_stands_alone() {
        let mut r = proxy(
            "r",
            0,
            "/",
            vec![Method::Post, Method::Get, Method::Get],
            "http://b",
        );
        assert_eq!(
            check_route(&r.spec).map(|ok| ok.methods).unwrap(),
            vec!["GET", "POST"]
        );
        r.spec.methods = vec![];
        assert_eq!(
            check_route(&r.spec).map(|ok| ok.methods).unwrap(),
            vec!["ANY"]
        );
        r.spec.methods = vec![Method::Any, Method::Get];
        assert_eq!(
            check_route(&r.spec).err().unwrap().reason,
            reason::INVALID_METHOD
        );
    }

    #[test]
    fn integrations_are_checked() {
        let mut r = proxy("r", 0, "/{id}", vec![], "ftp://b");
        assert_eq!(
            check_route(&r.spec).err().unwrap().reason,
            reason::INVALID_INTEGRATION
        );
        r.spec.integration.uri = Some("https://b/{id}".into());
        r.spec.integration.timeout_in_millis = Some(49);
        assert_eq!(
            check_route(&r.spec).err().unwrap().reason,
            reason::INVALID_INTEGRATION
        );
        r.spec.integration.timeout_in_millis = None;
        match check_route(&r.spec).unwrap().integration {
            Integration::HttpProxy(p) => assert_eq!((p.timeout_ms, p.http2), (29_000, false)),
            other => panic!("{other:?}"),
        }
        r.spec.integration = IntegrationSpec {
            kind: IntegrationType::Mock,
            uri: None,
            backend_ref: None,
            timeout_in_millis: None,
            http2: None,
            mock: None,
        };
        match check_route(&r.spec).unwrap().integration {
            Integration::Mock(m) => assert_eq!(m.status_code, 200),
            other => panic!("{other:?}"),
        }
        r.spec.integration.mock = Some(MockSpec {
            status_code: Some(600),
            headers: BTreeMap::new(),
            body: None,
        });
        assert_eq!(
            check_route(&r.spec).err().unwrap().reason,
            reason::INVALID_INTEGRATION
        );
    }

    /// reference §3a R7: the route is served by the Stage that lacks the variable (its calls
    /// fail there with 500), and ResolvedRefs (and so Ready) says which Stage lacks what.
    #[test]
    fn undefined_stage_variables_keep_the_route_served_and_say_why() {
        let mut with = stage("with", 0, "/with");
        with.spec.variables = [("host".to_string(), "backend".to_string())].into();
        let input = Input {
            stages: vec![with, stage("without", 1, "/without")],
            routes: vec![proxy("r", 2, "/", vec![], "http://${stageVariables.host}/")],
            ..Input::default()
        };
        let out = translate(&input);
        let refs = condition_of(&out, Kind::ApiRoute, "r", "ResolvedRefs");
        assert_eq!(refs.reason, reason::UNDEFINED_STAGE_VARIABLE);
        assert!(refs.message.contains("default/without") && refs.message.contains("host"));
        assert_eq!(
            reason_of(&out, Kind::ApiRoute, "r"),
            reason::UNDEFINED_STAGE_VARIABLE
        );
        let counts: Vec<_> = out.snapshot.stages.iter().map(|s| s.routes.len()).collect();
        assert_eq!(counts, vec![1, 1]);
    }

    #[test]
    fn every_stage_of_an_api_takes_the_oldest_stages_api_type() {
        let mut old = stage("old", 1, "/old");
        old.spec.api_type = Some(tollhouse_api::ApiType::Rest);
        let young = stage("young", 2, "/young");
        let mut also_rest = stage("also-rest", 3, "/also");
        also_rest.spec.api_type = Some(tollhouse_api::ApiType::Rest);
        let mut other_api = stage("other-api", 4, "/other");
        other_api.spec.api = "orders".into();
        let out = translate(&Input {
            stages: vec![young, old, also_rest, other_api],
            ..Input::default()
        });
        let accepted = condition_of(&out, Kind::Stage, "young", "Accepted");
        assert_eq!(accepted.reason, reason::CONFLICT);
        assert!(
            accepted.message.contains("default/old")
                && accepted.message.contains("HTTP")
                && accepted.message.contains("REST"),
            "{}",
            accepted.message
        );
        let served: Vec<_> = out
            .snapshot
            .stages
            .iter()
            .map(|s| (s.source.name.as_str(), s.api_type))
            .collect();
        use tollhouse_snapshot::ApiType::{Http, Rest};
        assert_eq!(
            served,
            vec![("also-rest", Rest), ("old", Rest), ("other-api", Http)]
        );
    }

    /// A format AWS refuses leaves the Stage out, like any other invalid Stage field; the
    /// message names the variable, never the rest of the format.
    #[test]
    fn access_log_formats_are_checked_and_carried() {
        let mut good = stage("good", 1, "/good");
        good.spec.access_log = Some(tollhouse_api::AccessLog {
            format: tollhouse_template::access_log::examples::CLF.into(),
        });
        let mut bad = stage("bad", 2, "/bad");
        bad.spec.access_log = Some(tollhouse_api::AccessLog {
            format: "password=hunter2 $context.requestId $context.nope".into(),
        });
        let out = translate(&Input {
            stages: vec![good, bad],
            ..Input::default()
        });
        let accepted = condition_of(&out, Kind::Stage, "bad", "Accepted");
        assert_eq!(accepted.reason, reason::INVALID_ACCESS_LOG_FORMAT);
        assert!(
            accepted.message.contains("$context.nope") && !accepted.message.contains("hunter2")
        );
        assert_eq!(out.snapshot.stages.len(), 1);
        assert_eq!(
            out.snapshot.stages[0]
                .access_log
                .as_ref()
                .map(|a| a.format.as_str()),
            Some(tollhouse_template::access_log::examples::CLF)
        );
    }

    #[test]
    fn routes_without_a_stage_are_not_served() {
        let out = translate(&Input {
            routes: vec![proxy("r", 0, "/", vec![], "http://b")],
            ..Input::default()
        });
        assert_eq!(reason_of(&out, Kind::ApiRoute, "r"), reason::NOT_SERVED);
        assert_eq!(
            condition_of(&out, Kind::ApiRoute, "r", "Accepted").status,
            "True"
        );
    }

    #[test]
    fn certificates_come_from_pem_secrets_in_the_namespace() {
        let mut s = stage("tls", 0, "/");
        s.spec.tls = Some(StageTls {
            certificate_ref: LocalObjectRef {
                name: "cert".into(),
            },
        });
        let missing = translate(&Input {
            stages: vec![s.clone()],
            ..Input::default()
        });
        assert_eq!(
            reason_of(&missing, Kind::Stage, "tls"),
            reason::CERTIFICATE_NOT_FOUND
        );
        assert!(missing.snapshot.stages.is_empty());
        let secret = |key: &str| Resource {
            meta: meta("cert", 1),
            spec: [
                (
                    "tls.crt".to_string(),
                    b"-----BEGIN CERTIFICATE-----\nx\n".to_vec(),
                ),
                ("tls.key".to_string(), key.as_bytes().to_vec()),
            ]
            .into(),
        };
        let bad = translate(&Input {
            stages: vec![s.clone()],
            secrets: vec![secret("sekrit")],
            ..Input::default()
        });
        assert_eq!(
            reason_of(&bad, Kind::Stage, "tls"),
            reason::INVALID_CERTIFICATE
        );
        assert!(!format!("{:?}", bad.statuses).contains("sekrit"));
        let key = "-----BEGIN PRIVATE KEY-----\nsekrit\n";
        let good = translate(&Input {
            stages: vec![s],
            secrets: vec![secret(key)],
            ..Input::default()
        });
        assert_eq!(reason_of(&good, Kind::Stage, "tls"), reason::READY);
        assert_eq!(
            good.snapshot.stages[0].certificate.as_deref(),
            Some("default/cert")
        );
        assert_eq!(
            good.snapshot.certificates["default/cert"].private_key_pem.0,
            key
        );
    }

    #[test]
    fn ten_thousand_routes_translate() {
        let routes: Vec<_> = (0..10_000)
            .map(|i| {
                proxy(
                    &format!("r{i}"),
                    i,
                    &format!("/r{}/{{id}}", i % 5_000),
                    vec![Method::Get],
                    "http://b/{id}",
                )
            })
            .collect();
        let out = translate(&Input {
            stages: vec![stage("prod", 0, "/")],
            routes,
            ..Input::default()
        });
        assert_eq!(out.snapshot.route_count(), 5_000);
        assert_eq!(out.statuses.len(), 10_001);
        assert_eq!(reason_of(&out, Kind::ApiRoute, "r9999"), reason::CONFLICT);
    }
}
