//! HTTP proxy: the upstream URI built from its template, the headers AWS sends each way, and
//! the call.
//!
//! A URI template's scheme and authority are fixed when it is compiled: a path parameter may
//! only go into its path and query, so a client can never choose the upstream host. Values
//! are substituted so that they cannot add a segment, a query parameter or a fragment: a
//! non-greedy value has `/` encoded, a value in the query has `&`, `=`, `+` and `#` encoded,
//! and `;` and `\` (which some servers treat as separators) are encoded everywhere. Dot
//! segments never reach this point: [`crate::phases::path`] resolved them.

use crate::body::RequestBody;
use crate::context::Connection;
use crate::error::GatewayError;
use crate::flavour::{Flavour, X_AMZN_REQUEST_ID, X_AMZN_TRACE_ID};
use crate::upstream::{bounded, PooledBody, Upstream};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Version};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tollhouse_template::{BoundUri, Origin, PathTemplate, UriError, UriForm, UriTemplate};

/// An HTTP proxy target.
pub struct HttpTarget {
    uri: TargetUri,
    /// Integration timeout.
    pub timeout: Duration,
    /// Prior-knowledge HTTP/2 to a plain-text upstream.
    pub http2: bool,
    /// Parameter mapping (`requestParameters`), applied before the call.
    pub mappings: Vec<tollhouse_template::Mapping>,
}

enum TargetUri {
    /// Scheme and authority fixed when compiled; a request builds only the path and query.
    Fixed {
        origin: Origin,
        host: HeaderValue,
        path: BoundUri,
    },
    /// A Service backend: the authority is the next ready endpoint; the path is the template,
    /// or (`None`) the request's path below the stage's base path.
    Pool(Arc<EndpointPool>, Option<BoundUri>),
}

/// The ready endpoints of one Service port, taken in turn (round robin).
pub struct EndpointPool {
    endpoints: Vec<http::uri::Authority>,
    next: std::sync::atomic::AtomicUsize,
}

impl EndpointPool {
    /// Parses `host:port` endpoints; unparsable ones are left out with a warning.
    pub fn new(key: &str, endpoints: &[String], warnings: &mut Vec<String>) -> EndpointPool {
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

    fn pick(&self) -> Option<&http::uri::Authority> {
        if self.endpoints.is_empty() {
            return None;
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.endpoints.get(n % self.endpoints.len())
    }
}

/// Why a URI template cannot be compiled.
#[derive(Debug, PartialEq, Eq)]
pub enum CompileError {
    /// With the Stage's variables the URI cannot be built (a variable is undefined, or its
    /// value makes the URI invalid): the route is served and its calls fail (reference §3a R7),
    /// as the controller's status says.
    Unbindable(UriError),
    /// The template itself is unusable; the route is left out.
    Invalid(String),
}

/// Why no upstream URI could be built for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// The result is not a valid URI.
    Invalid,
    /// The Service has no ready endpoint.
    NoEndpoints,
}

impl From<TargetError> for GatewayError {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::Invalid => GatewayError::IntegrationFailure,
            TargetError::NoEndpoints => GatewayError::NoEndpoints,
        }
    }
}

impl HttpTarget {
    /// Compiles a URI template with the grammar the controller checked it with: the route's
    /// path template `route` names its parameters, `${stageVariables.x}` is bound now and a
    /// `{param}` becomes a slot filled per request. With a `pool` the template is a path (or
    /// empty: the request's own path is sent).
    pub fn compile(
        uri: &str,
        variables: &BTreeMap<String, String>,
        route: &PathTemplate,
        pool: Option<Arc<EndpointPool>>,
        timeout: Duration,
        http2: bool,
    ) -> Result<HttpTarget, CompileError> {
        let form = if pool.is_some() {
            UriForm::Path
        } else {
            UriForm::Absolute
        };
        let bound = if uri.is_empty() && pool.is_some() {
            None
        } else {
            let template = UriTemplate::parse(uri, form, route).map_err(|e| match e {
                UriError::Invalid(why) => CompileError::Invalid(why),
                e @ UriError::UndefinedVariable(_) => CompileError::Invalid(e.to_string()),
            })?;
            Some(template.bind(variables).map_err(CompileError::Unbindable)?)
        };
        let uri = match (pool, bound) {
            (Some(pool), path) => TargetUri::Pool(pool, path),
            (None, Some(path)) => {
                let Some(origin) = path.origin().cloned() else {
                    return Err(CompileError::Invalid(format!(
                        "uri {uri:?} must start with http:// or https://"
                    )));
                };
                let host = HeaderValue::from_str(origin.authority.as_str())
                    .map_err(|e| CompileError::Unbindable(UriError::Invalid(e.to_string())))?;
                TargetUri::Fixed { origin, host, path }
            }
            (None, None) => {
                return Err(CompileError::Invalid(
                    "an HTTP_PROXY integration needs a uri or a backendRef".into(),
                ))
            }
        };
        Ok(HttpTarget {
            uri,
            timeout,
            http2,
            mappings: Vec::new(),
        })
    }

    /// Builds the upstream URI from parameter values, the request's path below the stage's base
    /// path (`rest`) and its query string.
    pub fn uri(
        &self,
        params: &[&str],
        rest: &str,
        query: Option<&str>,
    ) -> Result<http::Uri, TargetError> {
        let (scheme, authority, path) = match &self.uri {
            TargetUri::Fixed { origin, path, .. } => (
                origin.scheme.clone(),
                origin.authority.clone(),
                path.render(params, query),
            ),
            TargetUri::Pool(pool, template) => {
                let endpoint = pool.pick().ok_or(TargetError::NoEndpoints)?;
                let path = match template {
                    Some(t) => t.render(params, query),
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
                (http::uri::Scheme::HTTP, endpoint.clone(), path)
            }
        };
        let path = http::uri::PathAndQuery::try_from(path).map_err(|_| TargetError::Invalid)?;
        http::Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query(path)
            .build()
            .map_err(|_| TargetError::Invalid)
    }

    /// The `Host` header for the upstream, when the authority is fixed.
    pub fn host(&self) -> Option<&HeaderValue> {
        match &self.uri {
            TargetUri::Fixed { host, .. } => Some(host),
            TargetUri::Pool(..) => None,
        }
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_AMZN_API_ID: HeaderName = HeaderName::from_static("x-amzn-apigateway-api-id");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const CONTENT_MD5: HeaderName = HeaderName::from_static("content-md5");
const MAX_FORWARDS: HeaderName = HeaderName::from_static("max-forwards");

/// Hop-by-hop headers (RFC 9110 §7.6.1) are for one connection and never forwarded.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// What a REST API's HTTP_PROXY drops on the way to the backend beyond hop-by-hop headers
/// (reference §3a R5).
const REST_DROPPED: [HeaderName; 7] = [
    header::CONTENT_ENCODING,
    CONTENT_MD5,
    header::EXPECT,
    MAX_FORWARDS,
    header::SERVER,
    header::VIA,
    header::WWW_AUTHENTICATE,
];

/// What a REST API renames on the way back (reference §3a R5, R6).
const REST_REMAPPED: [(HeaderName, HeaderName); 5] = [
    (
        header::CONNECTION,
        HeaderName::from_static("x-amzn-remapped-connection"),
    ),
    (
        header::CONTENT_LENGTH,
        HeaderName::from_static("x-amzn-remapped-content-length"),
    ),
    (
        header::DATE,
        HeaderName::from_static("x-amzn-remapped-date"),
    ),
    (
        header::SERVER,
        HeaderName::from_static("x-amzn-remapped-server"),
    ),
    (
        X_AMZN_REQUEST_ID,
        HeaderName::from_static("x-amzn-remapped-x-amzn-requestid"),
    ),
];

/// Removes hop-by-hop headers and those a `Connection` header lists.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of nine hash lookups.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP.iter() {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
}

/// What the proxy needs to know of the request beyond its head and body.
pub struct ProxyCall<'a> {
    /// The Stage's flavour.
    pub flavour: Flavour,
    /// The API name (`X-Amzn-Apigateway-Api-Id`).
    pub api: &'a HeaderValue,
    /// The connection the request came on.
    pub conn: &'a Connection,
    /// `X-Amzn-Trace-Id` for the backend.
    pub trace_id: Option<&'a HeaderValue>,
}

/// The headers the backend receives, as `flavour` sends them.
pub fn request_headers(h: &mut HeaderMap, call: &ProxyCall<'_>) {
    let original_host = h.get(header::HOST).cloned();
    strip_hop_by_hop(h);
    // The upstream sees its own host, as with AWS HTTP_PROXY.
    h.remove(header::HOST);
    let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", call.conn.remote.ip())).ok(),
        None => Some(call.conn.client_ip.clone()),
    };
    if let Some(v) = xff {
        h.insert(X_FORWARDED_FOR, v);
    }
    h.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if call.conn.tls { "https" } else { "http" }),
    );
    h.insert(X_FORWARDED_PORT, call.conn.local_port.clone());
    if let Some(t) = call.trace_id {
        h.insert(X_AMZN_TRACE_ID, t.clone());
    }
    match call.flavour {
        Flavour::Rest => {
            for name in REST_DROPPED.iter() {
                if h.contains_key(name) {
                    h.remove(name);
                }
            }
            h.remove(&X_FORWARDED_HOST);
            h.insert(X_AMZN_API_ID, call.api.clone());
        }
        // Unrecorded for HTTP APIs (§3a): the client's host is passed on, as before.
        Flavour::Http => {
            if let Some(host) = original_host {
                h.insert(X_FORWARDED_HOST, host);
            }
        }
    }
}

/// The headers the client receives from the backend, as `flavour` passes them.
pub fn response_headers(h: &mut HeaderMap, flavour: Flavour) {
    if flavour == Flavour::Rest {
        for (from, to) in REST_REMAPPED.iter() {
            if h.contains_key(from) {
                let values: Vec<HeaderValue> = h.get_all(from).iter().cloned().collect();
                h.remove(from);
                for v in values {
                    h.append(to.clone(), v);
                }
            }
        }
    }
    strip_hop_by_hop(h);
}

/// Proxies a request to `uri`.
pub async fn proxy(
    upstream: &Upstream,
    target: &HttpTarget,
    uri: http::Uri,
    req: Request<RequestBody>,
    call: &ProxyCall<'_>,
) -> Result<Response<PooledBody>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if parts.headers.get(header::HOST).is_none() {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(header::HOST, v);
            }
        }
    }
    request_headers(&mut parts.headers, call);
    parts.uri = uri;
    parts.version = if target.http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let upstream_req = Request::from_parts(parts, bounded(body, content_length));
    let mut resp = upstream
        .send(upstream_req, target.host(), target.http2, target.timeout)
        .await?;
    response_headers(resp.headers_mut(), call.flavour);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([("backend".to_string(), "10.0.0.1:8080".to_string())])
    }

    /// A route `/{a}/{b}…` with `params` (the last greedy when `greedy`).
    fn target(uri: &str, params: &[&str], greedy: bool) -> Result<HttpTarget, CompileError> {
        let segments: Vec<String> = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let plus = if greedy && i + 1 == params.len() {
                    "+"
                } else {
                    ""
                };
                format!("/{{{p}{plus}}}")
            })
            .collect();
        let path = if segments.is_empty() {
            "/".to_string()
        } else {
            segments.concat()
        };
        HttpTarget::compile(
            uri,
            &vars(),
            &PathTemplate::parse(&path).unwrap(),
            None,
            Duration::from_secs(1),
            false,
        )
    }

    #[test]
    fn stage_variables_and_params_fill_the_uri() {
        let t = target(
            "http://${stageVariables.backend}/v1/pets/{petId}?src=gw",
            &["petId"],
            false,
        )
        .unwrap();
        assert_eq!(
            t.uri(&["42"], "", Some("a=1")).unwrap().to_string(),
            "http://10.0.0.1:8080/v1/pets/42?src=gw&a=1"
        );
        assert_eq!(t.host().unwrap(), "10.0.0.1:8080");
    }

    /// The host hole of the issue: a request value may never choose the upstream.
    #[test]
    fn parameters_in_the_scheme_or_host_are_refused() {
        for uri in [
            "http://{svc}.internal:8080/x",
            "http://h:{port}/x",
            "{scheme}://h/x",
            "http://${stageVariables.backend}{svc}/x",
        ] {
            assert!(
                matches!(
                    target(uri, &["svc", "port", "scheme"], false),
                    Err(CompileError::Invalid(_))
                ),
                "{uri}"
            );
        }
        assert!(target("http://h:81", &[], false).is_ok());
    }

    #[test]
    fn undefined_stage_variables_are_reported_as_such() {
        assert_eq!(
            target("https://${stageVariables.url}/", &[], false).err(),
            Some(CompileError::Unbindable(UriError::UndefinedVariable(
                "url".into()
            )))
        );
    }

    /// Values never add a segment, a query parameter or a fragment.
    #[test]
    fn values_are_encoded_by_where_they_go() {
        let t = target("http://h/in/{id}/{proxy}?q={id}", &["id", "proxy"], true).unwrap();
        let uri = |id: &str, proxy: &str| t.uri(&[id, proxy], "", None).unwrap().to_string();
        assert_eq!(uri("7", "a/b.txt"), "http://h/in/7/a/b.txt?q=7");
        assert_eq!(uri("a%2Fb", "x"), "http://h/in/a%2Fb/x?q=a%2Fb");
        assert_eq!(
            uri("1&admin=true", "x"),
            "http://h/in/1&admin=true/x?q=1%26admin%3Dtrue"
        );
        assert_eq!(
            uri("..;", "a;b/..;/c"),
            "http://h/in/..%3B/a%3Bb/..%3B/c?q=..%3B"
        );
        assert_eq!(uri("a+b", "x"), "http://h/in/a+b/x?q=a%2Bb");
    }

    #[test]
    fn bare_origins_get_a_root_path() {
        let t = target("http://h:81", &[], false).unwrap();
        assert_eq!(
            t.uri(&[], "", Some("a=1")).unwrap().to_string(),
            "http://h:81/?a=1"
        );
        assert!(matches!(
            target("ftp://h/x", &[], false),
            Err(CompileError::Invalid(_))
        ));
        assert!(matches!(
            target("/relative", &[], false),
            Err(CompileError::Invalid(_))
        ));
    }

    fn conn() -> Connection {
        Connection::new(
            "192.0.2.1:5000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
            false,
        )
    }

    /// reference §3a R5: what a REST backend receives, and what the client gets back.
    #[test]
    fn aws_r5_rest_header_rules() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "api.example.com"),
            ("connection", "close"),
            ("content-encoding", "deflate"),
            ("content-md5", "x"),
            ("expect", "100-continue"),
            ("max-forwards", "2"),
            ("server", "s"),
            ("te", "deflate"),
            ("via", "p.example.net"),
            ("www-authenticate", "Basic x"),
            ("x-forwarded-host", "spoofed"),
            ("authorization", "Unauthorized"),
            ("user-agent", "ua"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let c = conn();
        let call = ProxyCall {
            flavour: Flavour::Rest,
            api: &HeaderValue::from_static("pets"),
            conn: &c,
            trace_id: Some(&HeaderValue::from_static("Root=1-a-b")),
        };
        request_headers(&mut h, &call);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "authorization",
                "user-agent",
                "x-amzn-apigateway-api-id",
                "x-amzn-trace-id",
                "x-forwarded-for",
                "x-forwarded-port",
                "x-forwarded-proto"
            ]
        );
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-forwarded-for"], "192.0.2.1");

        let mut back = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive"),
            ("content-length", "790"),
            ("date", "d"),
            ("server", "gunicorn/19.9.0"),
            ("x-amzn-requestid", "backend-id"),
            ("content-type", "application/json"),
        ] {
            back.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        response_headers(&mut back, Flavour::Rest);
        let mut names: Vec<&str> = back.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "content-type",
                "x-amzn-remapped-connection",
                "x-amzn-remapped-content-length",
                "x-amzn-remapped-date",
                "x-amzn-remapped-server",
                "x-amzn-remapped-x-amzn-requestid"
            ]
        );
        assert_eq!(back["x-amzn-remapped-server"], "gunicorn/19.9.0");
    }

    #[test]
    fn http_apis_pass_headers_through_less_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::HOST, HeaderValue::from_static("api.example.com"));
        h.insert(header::SERVER, HeaderValue::from_static("s"));
        let c = conn();
        let call = ProxyCall {
            flavour: Flavour::Http,
            api: &HeaderValue::from_static("pets"),
            conn: &c,
            trace_id: Some(&HeaderValue::from_static("Root=1-a-b")),
        };
        request_headers(&mut h, &call);
        assert!(!h.contains_key("x-secret-hop") && !h.contains_key("connection"));
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h["server"], "s");
        let mut back = HeaderMap::new();
        back.insert(header::SERVER, HeaderValue::from_static("s"));
        back.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        response_headers(&mut back, Flavour::Http);
        assert_eq!(back.len(), 1);
    }
}
