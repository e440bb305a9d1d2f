//! The request pipeline: stage → route → integration → response, with metrics.
//!
//! Phases run in order over one request; later issues add authorize, throttle, quota, cache and
//! transform between route and integration. Every error is a [`GatewayError`] turned into a
//! response by one function.

use crate::compile::{
    CompiledIntegration, CompiledSnapshot, HttpTarget, MockResponse, TargetError,
};
use crate::error::{GatewayError, MAX_BODY_BYTES};
use crate::metrics::Metrics;
use crate::upstream::{bounded, PooledBody, Upstream};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Body of every response: streamed from upstream, or generated here.
pub type ResponseBody = Either<PooledBody, Full<Bytes>>;

/// What the pipeline knows about the connection a request came on.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Client address.
    pub remote: SocketAddr,
    /// The client IP as a header value, made once per connection for `X-Forwarded-For`.
    client_ip: HeaderValue,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl Connection {
    /// Describes an accepted connection.
    pub fn new(remote: SocketAddr, tls: bool) -> Self {
        let client_ip = HeaderValue::from_str(&remote.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        Connection {
            remote,
            client_ip,
            tls,
        }
    }
}

/// State shared by every worker: the snapshot being served and the metrics.
pub struct Gateway {
    /// The compiled snapshot; `None` until the first one is applied.
    pub snapshot: ArcSwapOption<CompiledSnapshot>,
    /// Metrics.
    pub metrics: Metrics,
    /// Set on SIGTERM: `/readyz` answers 503 so load balancers stop sending, while requests
    /// are still served until `--drain-delay` has passed.
    pub draining: std::sync::atomic::AtomicBool,
}

/// One worker thread's view: the shared gateway plus its own upstream connection pools, so
/// a request never touches another thread's pool.
pub struct Worker {
    gateway: Arc<Gateway>,
    upstream: Upstream,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

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

fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// The client's request id when it sent a sane one (AWS lets clients override it), else a new
/// random UUID.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let bits = fastrand::u128(..) & !(0xf000u128 << 64) & !(0xc000u128 << 48)
        | (0x4000u128 << 64)
        | (0x8000u128 << 48);
    let mut out = [0u8; 36];
    let hex = b"0123456789abcdef";
    let mut n = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
            continue;
        }
        let nibble = (bits >> (124 - 4 * n)) & 0xf;
        *slot = hex.get(nibble as usize).copied().unwrap_or(b'0');
        n += 1;
    }
    HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("0"))
}

fn host_of<B>(req: &Request<B>) -> &str {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}

fn mock_response(m: &MockResponse) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(m.body.clone()));
    *resp.status_mut() = m.status;
    let h = resp.headers_mut();
    for (k, v) in &m.headers {
        h.append(k.clone(), v.clone());
    }
    resp
}

/// What routing decided, with nothing borrowed from the request.
enum Plan<'a> {
    Proxy(&'a HttpTarget, Uri),
    Mock(&'a MockResponse),
}

impl Gateway {
    /// A gateway with no snapshot yet.
    pub fn new(metrics: Metrics) -> Self {
        Gateway {
            draining: std::sync::atomic::AtomicBool::new(false),
            snapshot: ArcSwapOption::empty(),
            metrics,
        }
    }

    /// Installs a compiled snapshot; requests in flight finish on the one they started with.
    pub fn apply(&self, compiled: CompiledSnapshot) {
        self.snapshot.store(Some(Arc::new(compiled)));
    }
}

impl Worker {
    /// A worker with its own upstream pools.
    pub fn new(gateway: Arc<Gateway>) -> Result<Self, rustls::Error> {
        Ok(Worker {
            gateway,
            upstream: Upstream::new()?,
        })
    }

    /// Serves one request.
    pub async fn handle(&self, req: Request<Incoming>, conn: Connection) -> Response<ResponseBody> {
        let start = Instant::now();
        let id = request_id(req.headers());
        let Some(snap) = self.gateway.snapshot.load_full() else {
            return self.finish_error(GatewayError::NotReady, id, None, start);
        };
        let routed = snap
            .route(host_of(&req), req.method(), req.uri().path())
            .map(|m| {
                let plan = match &m.route.integration {
                    CompiledIntegration::Http(t) => t
                        .uri(&m.params, m.rest, req.uri().query())
                        .map(|u| Plan::Proxy(t, u)),
                    CompiledIntegration::Mock(mock) => Ok(Plan::Mock(mock)),
                };
                (m.route, plan)
            });
        let (route, plan) = match routed {
            Ok(r) => r,
            Err(unmatched) => {
                return self.finish_error(GatewayError::NoRoute, id, Some(unmatched.metrics), start)
            }
        };
        let result = match plan {
            Ok(Plan::Mock(mock)) => Ok(mock_response(mock).map(Either::Right)),
            // Boxed: the upstream state machine is ~4 KB, and hyper moves the request's future
            // into place; one allocation is cheaper than copying it on every request.
            Ok(Plan::Proxy(target, uri)) => Box::pin(self.proxy(target, uri, req, conn))
                .await
                .map(|r| r.map(Either::Left)),
            // A Service with no ready endpoint: 503, as AWS answers for an unavailable service.
            Err(TargetError::NoEndpoints) => Err(GatewayError::NoEndpoints),
            // A parameter value that makes the URI invalid: the integration cannot be called.
            Err(TargetError::Invalid) => Err(GatewayError::IntegrationFailure),
        };
        match result {
            Ok(mut resp) => {
                resp.headers_mut().insert(REQUEST_ID, id);
                route
                    .metrics
                    .record(resp.status().as_u16(), start.elapsed().as_secs_f64());
                resp
            }
            Err(e) => self.finish_error(e, id, Some(&route.metrics), start),
        }
    }

    fn finish_error(
        &self,
        e: GatewayError,
        id: HeaderValue,
        metrics: Option<&crate::metrics::RouteMetrics>,
        start: Instant,
    ) -> Response<ResponseBody> {
        let mut resp = e.response().map(Either::Right);
        resp.headers_mut().insert(REQUEST_ID, id);
        self.gateway.metrics.gateway_error(e.metric_label());
        if let Some(m) = metrics {
            m.record(resp.status().as_u16(), start.elapsed().as_secs_f64());
        }
        resp
    }

    async fn proxy(
        &self,
        target: &HttpTarget,
        uri: Uri,
        req: Request<Incoming>,
        conn: Connection,
    ) -> Result<Response<PooledBody>, GatewayError> {
        let (mut parts, body) = req.into_parts();
        let content_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if content_length.is_some_and(|n| n > MAX_BODY_BYTES) {
            tokio::spawn(linger(body));
            return Err(GatewayError::PayloadTooLarge);
        }
        let original_host = match parts.uri.authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => parts.headers.get(header::HOST).cloned(),
        };
        let h = &mut parts.headers;
        strip_hop_by_hop(h);
        // The upstream sees its own host, as with AWS HTTP_PROXY; the client's is forwarded.
        h.remove(header::HOST);
        let xff = match h.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) => HeaderValue::from_str(&format!("{prev}, {}", conn.remote.ip())).ok(),
            None => Some(conn.client_ip.clone()),
        };
        if let Some(v) = xff {
            h.insert(X_FORWARDED_FOR, v);
        }
        h.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if conn.tls { "https" } else { "http" }),
        );
        if let Some(host) = original_host {
            h.insert(X_FORWARDED_HOST, host);
        }
        parts.uri = uri;
        parts.version = if target.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let upstream_req = Request::from_parts(parts, bounded(body, content_length));
        let mut resp = self
            .upstream
            .send(upstream_req, target.host(), target.http2, target.timeout)
            .await?;
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp)
    }
}

/// Reads and discards a refused body for a while, as nginx's lingering close does: a client
/// still sending would otherwise hit a reset before it reads the 413. Bounded in bytes and
/// time, so a hostile client cannot keep the connection busy.
async fn linger(mut body: Incoming) {
    use http_body_util::BodyExt;
    const MAX_DRAIN: usize = 64 << 20;
    let mut drained = 0usize;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |d| d.len());
            if drained > MAX_DRAIN {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_v4_and_client_ids_are_kept() {
        let id = request_id(&HeaderMap::new());
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(s.as_bytes()[14], b'4');
        assert!(matches!(s.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{s}");
        assert_ne!(request_id(&HeaderMap::new()), id);
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("client-chosen"));
        assert_eq!(request_id(&h), "client-chosen");
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
