//! Turns a delivered [`Versioned`] snapshot into a [`CompiledSnapshot`] ready to serve.
//!
//! Parse, don't validate: after compilation routes are tries, URI templates are pre-split with
//! stage variables already substituted, certificates are rustls keys, and metrics handles are
//! made. A stage, route or certificate that cannot be compiled is left out with a warning; the
//! rest is served. Only a snapshot that fails its integrity check is refused whole.

use crate::metrics::{Metrics, RouteMetrics};
use crate::router::{method_index, Found, RouteDef, RouteTable, Template};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tollhouse_snapshot::{Integration, IntegrityError, Versioned};

/// A snapshot ready to serve.
pub struct CompiledSnapshot {
    /// Version assigned by the controller.
    pub version: u64,
    /// Content hash.
    pub hash: String,
    stages: Vec<CompiledStage>,
    by_host: HashMap<String, Vec<usize>>,
    any_host: Vec<usize>,
    certs_by_host: HashMap<String, Arc<CertifiedKey>>,
    default_cert: Option<Arc<CertifiedKey>>,
    unmatched: RouteMetrics,
}

/// One stage: base path, route table, routes.
pub struct CompiledStage {
    /// `namespace/name`.
    pub label: String,
    base_path: String,
    table: RouteTable,
    routes: Vec<CompiledRoute>,
    /// Metrics for requests that reached this stage but matched no route.
    pub unmatched: RouteMetrics,
}

/// One route of a stage.
pub struct CompiledRoute {
    /// `namespace/name` of the ApiRoute.
    pub label: String,
    /// What serves it.
    pub integration: CompiledIntegration,
    /// Metric handles.
    pub metrics: RouteMetrics,
}

/// A ready-to-run integration.
pub enum CompiledIntegration {
    /// HTTP proxy.
    Http(HttpTarget),
    /// Fixed response.
    Mock(MockResponse),
}

/// An HTTP proxy target: the URI template split into literal text and parameter slots.
pub struct HttpTarget {
    uri: TargetUri,
    /// Integration timeout.
    pub timeout: Duration,
    /// Prior-knowledge HTTP/2 to a plain-text upstream.
    pub http2: bool,
}

/// How a target URI is built per request.
enum TargetUri {
    /// Scheme and authority parsed once (no path parameter falls inside them): a request only
    /// builds and checks its path.
    Fixed(Origin),
    /// A parameter is part of the authority: the whole URI is built and parsed per request.
    Whole(Vec<UriPart>),
    /// A Service backend: the authority is the next ready endpoint; the path is the template,
    /// or (`None`) the request's path below the stage's base path.
    Pool(Arc<EndpointPool>, Option<Vec<UriPart>>),
}

/// The ready endpoints of one Service port, taken in turn (round robin).
pub struct EndpointPool {
    endpoints: Vec<http::uri::Authority>,
    next: std::sync::atomic::AtomicUsize,
}

impl EndpointPool {
    /// Parses `host:port` endpoints; unparsable ones are left out with a warning.
    fn new(key: &str, endpoints: &[String], warnings: &mut Vec<String>) -> EndpointPool {
        let endpoints = endpoints
            .iter()
            .filter_map(|e| match http::uri::Authority::try_from(e.as_str()) {
                Ok(a) if a.port_u16().is_some() => Some(a),
                _ => {
                    warnings.push(format!("backend {key}: endpoint {e:?} left out"));
                    None
                }
            })
            .collect();
        EndpointPool {
            endpoints,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The next endpoint, or `None` when none is ready.
    fn pick(&self) -> Option<&http::uri::Authority> {
        if self.endpoints.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.endpoints.get(n % self.endpoints.len())
    }
}

/// The fixed part of a target URI, and the template of its path.
struct Origin {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    host: HeaderValue,
    path: Vec<UriPart>,
}

enum UriPart {
    Literal(String),
    Param(usize),
}

/// A MOCK response.
pub struct MockResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

/// A route found for a request.
pub struct Matched<'a, 'p> {
    /// The stage.
    pub stage: &'a CompiledStage,
    /// The route.
    pub route: &'a CompiledRoute,
    /// Path parameter values, in template order.
    pub params: Vec<&'p str>,
    /// The request path below the stage's base path.
    pub rest: &'p str,
}

/// Why no route matched, with the metrics to charge it to.
pub struct Unmatched<'a> {
    /// Handles of the stage reached, or the gateway-wide ones.
    pub metrics: &'a RouteMetrics,
}

fn render(parts: &[UriPart], params: &[&str], query: Option<&str>) -> String {
    let mut s = String::with_capacity(128);
    for part in parts {
        match part {
            UriPart::Literal(l) => s.push_str(l),
            UriPart::Param(i) => s.push_str(params.get(*i).copied().unwrap_or_default()),
        }
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        s.push(if s.contains('?') { '&' } else { '?' });
        s.push_str(q);
    }
    s
}

/// Why no upstream URI could be built for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// A parameter value makes the URI invalid.
    Invalid,
    /// The Service has no ready endpoint.
    NoEndpoints,
}

impl From<http::Error> for TargetError {
    fn from(_: http::Error) -> Self {
        TargetError::Invalid
    }
}

impl From<http::uri::InvalidUri> for TargetError {
    fn from(_: http::uri::InvalidUri) -> Self {
        TargetError::Invalid
    }
}

impl HttpTarget {
    /// Builds the upstream URI from parameter values, the request's path below the stage's base
    /// path (`rest`) and its query string.
    pub fn uri(
        &self,
        params: &[&str],
        rest: &str,
        query: Option<&str>,
    ) -> Result<http::Uri, TargetError> {
        match &self.uri {
            TargetUri::Fixed(o) => {
                let path = http::uri::PathAndQuery::try_from(render(&o.path, params, query))?;
                Ok(http::Uri::builder()
                    .scheme(o.scheme.clone())
                    .authority(o.authority.clone())
                    .path_and_query(path)
                    .build()?)
            }
            TargetUri::Whole(parts) => Ok(http::Uri::try_from(render(parts, params, query))?),
            TargetUri::Pool(pool, template) => {
                let endpoint = pool.pick().ok_or(TargetError::NoEndpoints)?;
                let path = match template {
                    Some(parts) => render(parts, params, query),
                    None => {
                        let mut p = String::with_capacity(rest.len() + 64);
                        p.push_str(if rest.is_empty() { "/" } else { rest });
                        if let Some(q) = query.filter(|q| !q.is_empty()) {
                            p.push('?');
                            p.push_str(q);
                        }
                        p
                    }
                };
                Ok(http::Uri::builder()
                    .scheme(http::uri::Scheme::HTTP)
                    .authority(endpoint.clone())
                    .path_and_query(http::uri::PathAndQuery::try_from(path)?)
                    .build()?)
            }
        }
    }

    /// The `Host` header for the upstream, when the authority is fixed.
    pub fn host(&self) -> Option<&HeaderValue> {
        match &self.uri {
            TargetUri::Fixed(o) => Some(&o.host),
            TargetUri::Whole(_) | TargetUri::Pool(..) => None,
        }
    }
}

impl TargetUri {
    /// Splits `scheme://authority` off the first literal, or keeps the whole template when a
    /// parameter is part of the authority.
    fn new(mut parts: Vec<UriPart>) -> TargetUri {
        let Some(UriPart::Literal(first)) = parts.first() else {
            return TargetUri::Whole(parts);
        };
        let Some(after_scheme) = first.find("://").map(|i| i + 3) else {
            return TargetUri::Whole(parts);
        };
        let end = first[after_scheme..]
            .find(['/', '?'])
            .map_or(first.len(), |i| after_scheme + i);
        if end == first.len() && parts.len() > 1 {
            return TargetUri::Whole(parts);
        }
        let fixed = http::uri::Scheme::try_from(&first[..after_scheme - 3])
            .ok()
            .zip(http::uri::Authority::try_from(&first[after_scheme..end]).ok())
            .and_then(|(scheme, authority)| {
                let host = HeaderValue::from_str(authority.as_str()).ok()?;
                Some((scheme, authority, host))
            });
        let Some((scheme, authority, host)) = fixed else {
            return TargetUri::Whole(parts);
        };
        let rest = &first[end..];
        let path_start = if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        };
        if let Some(slot) = parts.first_mut() {
            *slot = UriPart::Literal(path_start);
        }
        TargetUri::Fixed(Origin {
            scheme,
            authority,
            host,
            path: parts,
        })
    }
}

/// Compiles a URI template: `${stageVariables.x}` is substituted now, `{param}` becomes a slot.
fn compile_target(
    template: &str,
    variables: &BTreeMap<String, String>,
    params: &[String],
    pool: Option<Arc<EndpointPool>>,
    timeout: Duration,
    http2: bool,
) -> Result<HttpTarget, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("${stageVariables.") {
            let end = after.find('}').ok_or("unterminated ${stageVariables.")?;
            let name = &after[..end];
            // The controller leaves out routes whose variables a stage lacks; an empty value is
            // what AWS substitutes for an undefined variable.
            literal.push_str(variables.get(name).map(String::as_str).unwrap_or(""));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('{') {
            let end = after.find('}').ok_or("unterminated {param}")?;
            let name = &after[..end];
            let idx = params
                .iter()
                .position(|p| p == name)
                .ok_or_else(|| format!("unknown path parameter {name:?}"))?;
            if !literal.is_empty() {
                parts.push(UriPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(UriPart::Param(idx));
            rest = &after[end + 1..];
        } else {
            let next = rest
                .find(['$', '{'])
                .map(|i| if i == 0 { 1 } else { i })
                .unwrap_or(rest.len());
            literal.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    if !literal.is_empty() {
        parts.push(UriPart::Literal(literal));
    }
    if let Some(pool) = pool {
        let path = if parts.is_empty() { None } else { Some(parts) };
        let check = path.as_ref().map(|p| {
            let placeholders: Vec<&str> = params.iter().map(|_| "x").collect();
            http::uri::PathAndQuery::try_from(render(p, &placeholders, None))
        });
        if let Some(Err(e)) = check {
            return Err(format!("invalid path template: {e}"));
        }
        return Ok(HttpTarget {
            uri: TargetUri::Pool(pool, path),
            timeout,
            http2,
        });
    }
    let target = HttpTarget {
        uri: TargetUri::new(parts),
        timeout,
        http2,
    };
    // Check the template yields a valid URI with placeholder parameters.
    let placeholders: Vec<&str> = params.iter().map(|_| "x").collect();
    let uri = target
        .uri(&placeholders, "", None)
        .map_err(|e| format!("invalid URI: {e:?}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.authority().is_some() => Ok(target),
        _ => Err("URI must be absolute http:// or https://".into()),
    }
}

fn compile_mock(m: &tollhouse_snapshot::Mock) -> Result<MockResponse, String> {
    let status = StatusCode::from_u16(m.status_code).map_err(|e| e.to_string())?;
    let mut headers = Vec::with_capacity(m.headers.len());
    for (k, v) in &m.headers {
        let name = HeaderName::try_from(k.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
        let value = HeaderValue::try_from(v.as_str()).map_err(|e| format!("header {k:?}: {e}"))?;
        headers.push((name, value));
    }
    Ok(MockResponse {
        status,
        headers,
        body: Bytes::from(m.body.clone()),
    })
}

fn compile_cert(c: &tollhouse_snapshot::Certificate) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(c.certificate_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in PEM".into());
    }
    let key = PrivateKeyDer::from_pem_slice(c.private_key_pem.0.as_bytes())
        .map_err(|_| "unreadable private key".to_string())?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("private key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

impl CompiledSnapshot {
    /// Compiles a delivered snapshot; returns it with warnings about parts left out.
    pub fn compile(
        v: &Versioned,
        metrics: &Metrics,
    ) -> Result<(CompiledSnapshot, Vec<String>), IntegrityError> {
        v.verify()?;
        let snap = &v.snapshot;
        let mut warnings = Vec::new();
        let mut certs: HashMap<&str, Arc<CertifiedKey>> = HashMap::new();
        for (key, cert) in &snap.certificates {
            match compile_cert(cert) {
                Ok(k) => {
                    certs.insert(key.as_str(), k);
                }
                Err(e) => warnings.push(format!("certificate {key} left out: {e}")),
            }
        }
        let pools: HashMap<&str, Arc<EndpointPool>> = snap
            .backends
            .iter()
            .map(|(key, b)| {
                (
                    key.as_str(),
                    Arc::new(EndpointPool::new(key, &b.endpoints, &mut warnings)),
                )
            })
            .collect();
        let mut stages = Vec::with_capacity(snap.stages.len());
        let mut stage_hosts: Vec<&Vec<String>> = Vec::with_capacity(snap.stages.len());
        let mut certs_by_host = HashMap::new();
        let mut default_cert = None;
        for stage in &snap.stages {
            let label = stage.source.key();
            if let Some(cert_key) = &stage.certificate {
                match certs.get(cert_key.as_str()) {
                    Some(cert) if stage.hostnames.is_empty() => {
                        default_cert = default_cert.or(Some(cert.clone()))
                    }
                    Some(cert) => {
                        for h in &stage.hostnames {
                            certs_by_host
                                .entry(h.clone())
                                .or_insert_with(|| cert.clone());
                        }
                    }
                    None => {
                        warnings.push(format!(
                            "stage {label} left out: certificate {cert_key} unavailable"
                        ));
                        continue;
                    }
                }
            }
            let mut templates = Vec::with_capacity(stage.routes.len());
            let mut routes = Vec::with_capacity(stage.routes.len());
            let mut methods = Vec::with_capacity(stage.routes.len());
            for route in &stage.routes {
                let rlabel = route.source.key();
                let compiled = Template::parse(&route.path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        let integration = match &route.integration {
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
                                CompiledIntegration::Http(compile_target(
                                    &h.uri,
                                    &stage.variables,
                                    &t.params,
                                    pool,
                                    Duration::from_millis(u64::from(h.timeout_ms)),
                                    h.http2,
                                )?)
                            }
                            Integration::Mock(m) => CompiledIntegration::Mock(compile_mock(m)?),
                        };
                        Ok((t, integration))
                    });
                match compiled {
                    Ok((t, integration)) => {
                        templates.push(t);
                        methods.push(route.methods.clone());
                        routes.push(CompiledRoute {
                            metrics: metrics.route(&label, &rlabel),
                            label: rlabel,
                            integration,
                        });
                    }
                    Err(e) => {
                        warnings.push(format!("route {rlabel} left out of stage {label}: {e}"))
                    }
                }
            }
            let defs: Vec<RouteDef<'_>> = templates
                .iter()
                .zip(methods.iter())
                .map(|(template, methods)| RouteDef { template, methods })
                .collect();
            let (table, failed) = RouteTable::build(&defs);
            for (idx, why) in failed {
                let name = routes.get(idx).map(|r| r.label.as_str()).unwrap_or("?");
                warnings.push(format!("route {name} left out of stage {label}: {why}"));
            }
            let base_path = stage.base_path.trim_end_matches('/').to_string();
            stage_hosts.push(&stage.hostnames);
            stages.push(CompiledStage {
                unmatched: metrics.route(&label, ""),
                label,
                base_path,
                table,
                routes,
            });
        }
        let mut by_host: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_host = Vec::new();
        for (i, hostnames) in stage_hosts.iter().enumerate() {
            if hostnames.is_empty() {
                any_host.push(i);
            }
            for h in hostnames.iter() {
                by_host.entry(h.clone()).or_default().push(i);
            }
        }
        // Longest base path first, so the most specific stage wins.
        let by_base_len = |v: &mut Vec<usize>| {
            v.sort_by_key(|&i| {
                std::cmp::Reverse(
                    stages
                        .get(i)
                        .map(|s: &CompiledStage| s.base_path.len())
                        .unwrap_or(0),
                )
            });
        };
        by_host.values_mut().for_each(by_base_len);
        by_base_len(&mut any_host);
        let compiled = CompiledSnapshot {
            version: v.version,
            hash: v.hash.clone(),
            stages,
            by_host,
            any_host,
            certs_by_host,
            default_cert,
            unmatched: metrics.route("", ""),
        };
        Ok((compiled, warnings))
    }

    /// The (stage, route) metric label pairs this snapshot uses.
    pub fn metric_keys(&self) -> std::collections::HashSet<(String, String)> {
        let mut keys = std::collections::HashSet::new();
        keys.insert((String::new(), String::new()));
        for stage in &self.stages {
            keys.insert((stage.label.clone(), String::new()));
            for route in &stage.routes {
                keys.insert((stage.label.clone(), route.label.clone()));
            }
        }
        keys
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

    fn stages_for_host(&self, host: &str) -> Option<&[usize]> {
        if let Some(v) = self.by_host.get(host) {
            return Some(v);
        }
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self
                .by_host
                .get(&host.to_ascii_lowercase())
                .map(Vec::as_slice);
        }
        None
    }

    /// Finds stage and route for a request.
    pub fn route<'a, 'p>(
        &'a self,
        host: &str,
        method: &http::Method,
        path: &'p str,
    ) -> Result<Matched<'a, 'p>, Unmatched<'a>> {
        let host = strip_port(host);
        let candidates = self
            .stages_for_host(host)
            .into_iter()
            .flatten()
            .chain(self.any_host.iter());
        for &i in candidates {
            let Some(stage) = self.stages.get(i) else {
                continue;
            };
            let Some(rest) = strip_base(path, &stage.base_path) else {
                continue;
            };
            let Some(m) = method_index(method) else {
                return Err(Unmatched {
                    metrics: &stage.unmatched,
                });
            };
            return match stage.table.find(m, rest) {
                Some(Found { route, params }) => match stage.routes.get(route) {
                    Some(route) => Ok(Matched {
                        stage,
                        route,
                        params,
                        rest,
                    }),
                    None => Err(Unmatched {
                        metrics: &stage.unmatched,
                    }),
                },
                None => Err(Unmatched {
                    metrics: &stage.unmatched,
                }),
            };
        }
        Err(Unmatched {
            metrics: &self.unmatched,
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map(|(h, _)| &host[..h.len() + 1])
            .unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

/// The path under a base path, on a segment boundary: `/prod/pets` under `/prod` is `/pets`.
fn strip_base<'p>(path: &'p str, base: &str) -> Option<&'p str> {
    if base.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollhouse_snapshot::{HttpProxy, Mock, Route, Snapshot, SourceRef, Stage};

    fn src(kind: &str, name: &str) -> SourceRef {
        SourceRef {
            kind: kind.into(),
            namespace: "default".into(),
            name: name.into(),
            generation: 1,
        }
    }

    fn http(uri: &str) -> Integration {
        Integration::HttpProxy(HttpProxy {
            uri: uri.into(),
            backend: None,
            timeout_ms: 29_000,
            http2: false,
        })
    }

    fn route(name: &str, path: &str, methods: &[&str], integration: Integration) -> Route {
        Route {
            source: src("ApiRoute", name),
            path: path.into(),
            methods: methods.iter().map(|m| m.to_string()).collect(),
            integration,
        }
    }

    fn stage(name: &str, hosts: &[&str], base: &str, routes: Vec<Route>) -> Stage {
        let mut variables = BTreeMap::new();
        variables.insert("backend".to_string(), "10.0.0.1:8080".to_string());
        Stage {
            source: src("Stage", name),
            api: "pets".into(),
            hostnames: hosts.iter().map(|h| h.to_string()).collect(),
            base_path: base.into(),
            variables,
            certificate: None,
            routes,
        }
    }

    fn compiled(stages: Vec<Stage>) -> CompiledSnapshot {
        let v = Versioned::new(
            1,
            Snapshot {
                stages,
                certificates: BTreeMap::new(),
                backends: BTreeMap::new(),
            },
        );
        let (c, warnings) = CompiledSnapshot::compile(&v, &Metrics::new()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        c
    }

    /// Private integration: the authority is the next ready endpoint; the path is the template
    /// or the request path below the base path; no endpoint at all is `NoEndpoints`.
    #[test]
    fn backends_round_robin_over_endpoints_and_pass_the_path_through() {
        let backend = |uri: &str, key: &str| {
            Integration::HttpProxy(HttpProxy {
                uri: uri.into(),
                backend: Some(key.into()),
                timeout_ms: 29_000,
                http2: false,
            })
        };
        let mut backends = BTreeMap::new();
        for (key, endpoints) in [
            ("default/web:80", vec!["10.0.0.1:8080", "10.0.0.2:8080"]),
            ("default/idle:80", vec![]),
        ] {
            backends.insert(
                key.to_string(),
                tollhouse_snapshot::Backend {
                    source: src("Service", "web"),
                    endpoints: endpoints.into_iter().map(String::from).collect(),
                },
            );
        }
        let v = Versioned::new(
            1,
            Snapshot {
                stages: vec![stage(
                    "prod",
                    &[],
                    "/prod",
                    vec![
                        route(
                            "a",
                            "/pets/{proxy+}",
                            &["GET"],
                            backend("", "default/web:80"),
                        ),
                        route(
                            "b",
                            "/admin/{id}",
                            &["GET"],
                            backend("/in/{id}", "default/web:80"),
                        ),
                        route("c", "/idle", &["GET"], backend("", "default/idle:80")),
                    ],
                )],
                certificates: BTreeMap::new(),
                backends,
            },
        );
        let (c, warnings) = CompiledSnapshot::compile(&v, &Metrics::new()).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let uri = |path: &str| {
            let m = c.route("h", &http::Method::GET, path).ok().unwrap();
            let CompiledIntegration::Http(t) = &m.route.integration else {
                panic!()
            };
            t.uri(&m.params, m.rest, Some("q=1")).map(|u| u.to_string())
        };
        let first = uri("/prod/pets/a/b").unwrap();
        let second = uri("/prod/pets/a/b").unwrap();
        let mut both = [first, second];
        both.sort();
        assert_eq!(
            both,
            [
                "http://10.0.0.1:8080/pets/a/b?q=1".to_string(),
                "http://10.0.0.2:8080/pets/a/b?q=1".to_string()
            ]
        );
        assert!(uri("/prod/admin/7").unwrap().ends_with(":8080/in/7?q=1"));
        assert_eq!(uri("/prod/idle"), Err(TargetError::NoEndpoints));
    }

    #[test]
    fn stage_variables_and_params_fill_the_uri() {
        let c = compiled(vec![stage(
            "prod",
            &[],
            "/",
            vec![route(
                "get-pet",
                "/pets/{petId}",
                &["GET"],
                http("http://${stageVariables.backend}/v1/pets/{petId}?src=gw"),
            )],
        )]);
        let m = c.route("x", &http::Method::GET, "/pets/42").ok().unwrap();
        let CompiledIntegration::Http(t) = &m.route.integration else {
            panic!()
        };
        assert_eq!(
            t.uri(&m.params, m.rest, Some("a=1")).unwrap().to_string(),
            "http://10.0.0.1:8080/v1/pets/42?src=gw&a=1"
        );
    }

    #[test]
    fn host_then_longest_base_path_selects_the_stage() {
        let mock = |b: &str| {
            Integration::Mock(Mock {
                status_code: 200,
                headers: BTreeMap::new(),
                body: b.into(),
            })
        };
        let c = compiled(vec![
            stage(
                "any",
                &[],
                "/",
                vec![route("a", "/{proxy+}", &["ANY"], mock("any"))],
            ),
            stage(
                "prod",
                &[],
                "/prod",
                vec![route("b", "/{proxy+}", &["ANY"], mock("prod"))],
            ),
            stage(
                "host",
                &["api.example.com"],
                "/",
                vec![route("c", "/x", &["GET"], mock("host"))],
            ),
        ]);
        let label = |host: &str, path: &str| {
            c.route(host, &http::Method::GET, path)
                .ok()
                .map(|m| m.route.label.clone())
        };
        assert_eq!(label("other", "/prod/pets").as_deref(), Some("default/b"));
        assert_eq!(label("other", "/production").as_deref(), Some("default/a"));
        assert_eq!(
            label("API.example.com:8443", "/x").as_deref(),
            Some("default/c")
        );
        // The host's stage has no such route: that is a 404 on that stage, not a fall-through.
        assert!(label("api.example.com", "/prod/pets").is_none());
    }

    #[test]
    fn a_bad_route_is_left_out_and_the_rest_served() {
        let v = Versioned::new(
            1,
            Snapshot {
                stages: vec![stage(
                    "prod",
                    &[],
                    "/",
                    vec![
                        route("bad", "/a", &["GET"], http("http://h/{nope}")),
                        route("good", "/b", &["GET"], http("http://h/b")),
                    ],
                )],
                certificates: BTreeMap::new(),
                backends: BTreeMap::new(),
            },
        );
        let (c, warnings) = CompiledSnapshot::compile(&v, &Metrics::new()).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(c.route("h", &http::Method::GET, "/b").is_ok());
        assert!(c.route("h", &http::Method::GET, "/a").is_err());
    }

    #[test]
    fn fixed_origins_are_parsed_once_and_parameters_in_the_authority_still_work() {
        let c = compiled(vec![stage(
            "prod",
            &[],
            "/",
            vec![
                route("bare", "/bare", &["GET"], http("http://h:81")),
                route(
                    "svc",
                    "/{svc}/x",
                    &["GET"],
                    http("http://{svc}.internal:8080/x"),
                ),
            ],
        )]);
        let target = |path: &str| {
            let m = c.route("x", &http::Method::GET, path).ok().unwrap();
            let CompiledIntegration::Http(t) = &m.route.integration else {
                panic!()
            };
            (
                t.uri(&m.params, m.rest, Some("a=1")).unwrap().to_string(),
                t.host().map(|h| h.to_str().unwrap().to_string()),
            )
        };
        assert_eq!(
            target("/bare"),
            ("http://h:81/?a=1".into(), Some("h:81".into()))
        );
        assert_eq!(
            target("/api/x"),
            ("http://api.internal:8080/x?a=1".into(), None)
        );
    }

    #[test]
    fn tampered_snapshots_are_refused() {
        let mut v = Versioned::new(1, Snapshot::default());
        v.hash = "0".repeat(64);
        assert!(CompiledSnapshot::compile(&v, &Metrics::new()).is_err());
    }
}
