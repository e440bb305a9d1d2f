//! The HTTP integration: connection pools to upstreams.
//!
//! Plain `http://` HTTP/1.1 upstreams — the common case inside a cluster — go through a small
//! pool of hyper HTTP/1 connections owned by the worker thread: a checkout is a short,
//! uncontended lock and a `Vec::pop`, and a connection goes back to the pool when the response
//! body has been read to the end. `https://` (ALPN h2 or HTTP/1.1) and h2c upstreams use
//! hyper-util's pooled client.

use crate::body::RequestBody;
use crate::error::{GatewayError, MAX_BODY_BYTES};
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body_util::{Either, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Body sent upstream: the client's body as is, or bounded when its length is not declared.
pub type UpstreamBody = Either<RequestBody, Limited<RequestBody>>;

type Sender = http1::SendRequest<UpstreamBody>;

/// Idle connections kept per upstream authority and worker.
const MAX_IDLE_PER_AUTHORITY: usize = 256;
/// An idle connection older than this is closed rather than reused: backends commonly close
/// idle keep-alive connections after 60 s or more, and a Service's endpoints come and go.
const IDLE_TIMEOUT: Duration = Duration::from_secs(55);
/// How often the whole pool is swept of expired connections and authorities no longer used.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Idle HTTP/1.1 connections by authority, with the time each went idle.
struct Idle(Mutex<IdleMap>);

struct IdleMap {
    by_authority: HashMap<Authority, Vec<(Sender, Instant)>>,
    last_sweep: Instant,
}

impl Default for Idle {
    fn default() -> Self {
        Idle(Mutex::new(IdleMap {
            by_authority: HashMap::new(),
            last_sweep: Instant::now(),
        }))
    }
}

impl Idle {
    /// A connection ready for a new request. One still busy — its request body still
    /// uploading after an early response — stays in the pool for later instead of making this
    /// request wait behind it. Closed and expired connections are dropped on the way.
    fn pop(&self, authority: &Authority) -> Option<Sender> {
        self.pop_at(authority, Instant::now())
    }

    fn pop_at(&self, authority: &Authority, now: Instant) -> Option<Sender> {
        let mut map = self.0.lock().ok()?;
        let list = map.by_authority.get_mut(authority)?;
        let mut i = list.len();
        while i > 0 {
            i -= 1;
            let (closed, ready) = list.get(i).map_or((true, false), |(s, since)| {
                let expired = now.saturating_duration_since(*since) > IDLE_TIMEOUT;
                (s.is_closed() || expired, s.is_ready())
            });
            if closed {
                list.swap_remove(i);
            } else if ready {
                return Some(list.swap_remove(i).0);
            }
        }
        None
    }

    fn push(&self, authority: Authority, sender: Sender) {
        self.push_at(authority, sender, Instant::now())
    }

    fn push_at(&self, authority: Authority, sender: Sender, now: Instant) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut map) = self.0.lock() {
            if now.saturating_duration_since(map.last_sweep) > SWEEP_EVERY {
                map.last_sweep = now;
                // Authorities no longer routed to (a Service endpoint that went away) are
                // forgotten here, not kept until restart.
                map.by_authority.retain(|_, list| {
                    list.retain(|(s, since)| {
                        !s.is_closed() && now.saturating_duration_since(*since) <= IDLE_TIMEOUT
                    });
                    !list.is_empty()
                });
            }
            let list = map.by_authority.entry(authority).or_default();
            if list.len() >= MAX_IDLE_PER_AUTHORITY {
                list.retain(|(s, _)| !s.is_closed());
            }
            if list.len() < MAX_IDLE_PER_AUTHORITY {
                list.push((sender, now));
            }
        }
    }

    /// Idle connections held, over all authorities (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0
            .lock()
            .map(|m| m.by_authority.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

/// Upstream clients of one worker.
pub struct Upstream {
    idle: Arc<Idle>,
    auto: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    h2c: Client<HttpConnector, UpstreamBody>,
}

fn connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http
}

/// A response body that returns its connection to the pool once read to the end, and ends
/// with an error when the integration timeout passes before it does (AWS times the whole
/// response, not just its head).
pub struct PooledBody {
    inner: Incoming,
    slot: Option<(Sender, Authority, Arc<Idle>)>,
    deadline: tokio::time::Instant,
    /// Armed only when the body first has to wait, so fast bodies never touch the timer wheel.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The response body did not finish within the integration timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body not finished within the integration timeout")]
pub struct BodyTimeout;

impl PooledBody {
    fn plain(inner: Incoming, deadline: tokio::time::Instant) -> Self {
        PooledBody {
            inner,
            slot: None,
            deadline,
            timer: None,
        }
    }

    fn release(&mut self) {
        if let Some((sender, authority, idle)) = self.slot.take() {
            idle.push(authority, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // A broken body means a broken connection: never reuse it.
            Poll::Ready(Some(Err(e))) => {
                this.slot = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.slot = None;
                        Poll::Ready(Some(Err(Box::new(BodyTimeout))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Upstream {
    /// Builds the pools and clients.
    pub fn new() -> Result<Self, rustls::Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(connector());
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024);
        let auto = builder.build(https);
        let mut h2 = Client::builder(TokioExecutor::new());
        h2.pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .http2_only(true);
        let h2c = h2.build(connector());
        Ok(Upstream {
            idle: Arc::default(),
            auto,
            h2c,
        })
    }

    /// Sends a request and waits for the response head within `timeout`.
    pub async fn send(
        &self,
        req: http::Request<UpstreamBody>,
        host: Option<&http::HeaderValue>,
        http2: bool,
        timeout: Duration,
    ) -> Result<http::Response<PooledBody>, GatewayError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let plain_h1 = !http2 && req.uri().scheme() == Some(&Scheme::HTTP);
        let sent = async {
            if plain_h1 {
                self.send_h1(req, host, deadline).await
            } else {
                let fut = if http2 {
                    self.h2c.request(req)
                } else {
                    self.auto.request(req)
                };
                fut.await
                    .map(|r| r.map(|b| PooledBody::plain(b, deadline)))
                    .map_err(|e| classify(&e))
            }
        };
        tokio::time::timeout_at(deadline, sent)
            .await
            .unwrap_or(Err(GatewayError::IntegrationTimeout))
    }

    async fn send_h1(
        &self,
        mut req: http::Request<UpstreamBody>,
        host: Option<&http::HeaderValue>,
        deadline: tokio::time::Instant,
    ) -> Result<http::Response<PooledBody>, GatewayError> {
        let authority = req
            .uri()
            .authority()
            .cloned()
            .ok_or(GatewayError::IntegrationFailure)?;
        // HTTP/1.1 requests carry the origin form and a Host header.
        if !req.headers().contains_key(http::header::HOST) {
            let value = match host {
                Some(h) => Some(h.clone()),
                None => http::HeaderValue::from_str(authority.as_str()).ok(),
            };
            if let Some(v) = value {
                req.headers_mut().insert(http::header::HOST, v);
            }
        }
        let origin = req.uri().path_and_query().cloned();
        *req.uri_mut() = origin
            .map(http::Uri::from)
            .unwrap_or_else(|| http::Uri::from_static("/"));
        // A pooled connection the upstream has closed meanwhile gives the request back
        // unsent; then it goes out on a fresh connection.
        while let Some(mut sender) = self.idle.pop(&authority) {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.pooled(resp, sender, authority, deadline)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(classify(e.error())),
                },
            }
        }
        let mut sender = connect(&authority).await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok(self.pooled(resp, sender, authority, deadline)),
            Err(e) => Err(classify(&e)),
        }
    }

    fn pooled(
        &self,
        resp: http::Response<Incoming>,
        sender: Sender,
        authority: Authority,
        deadline: tokio::time::Instant,
    ) -> http::Response<PooledBody> {
        resp.map(|inner| {
            let mut body = PooledBody {
                inner,
                slot: Some((sender, authority, self.idle.clone())),
                deadline,
                timer: None,
            };
            if body.inner.is_end_stream() {
                body.release();
            }
            body
        })
    }
}

async fn connect(authority: &Authority) -> Result<Sender, GatewayError> {
    let host = authority.host();
    let port = authority.port_u16().unwrap_or(80);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|_| GatewayError::IntegrationFailure)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| GatewayError::IntegrationFailure)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// A body over the limit surfaces as the client's error; everything else is a failure.
fn classify(e: &(dyn std::error::Error + 'static)) -> GatewayError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return GatewayError::PayloadTooLarge;
        }
        source = err.source();
    }
    GatewayError::IntegrationFailure
}

/// Whether a body must be bounded as it streams (no declared length within the limit).
pub fn bounded(body: RequestBody, content_length: Option<u64>) -> UpstreamBody {
    if content_length.is_some() || body.is_end_stream() {
        Either::Left(body)
    } else {
        Either::Right(Limited::new(
            body,
            usize::try_from(MAX_BODY_BYTES).unwrap_or(usize::MAX),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    /// An open HTTP/1.1 connection to a listener that never answers.
    async fn idle_sender() -> Sender {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        sender.ready().await.unwrap();
        sender
    }

    /// Expired idle connections are not reused, and authorities nobody routes to any more
    /// (an endpoint that went away) are swept out.
    #[tokio::test]
    async fn idle_connections_expire_and_dead_authorities_are_swept() {
        let idle = Idle::default();
        let a: Authority = "10.0.0.1:80".parse().unwrap();
        let b: Authority = "10.0.0.2:80".parse().unwrap();
        let now = Instant::now();
        idle.push_at(a.clone(), idle_sender().await, now);
        assert!(idle
            .pop_at(&a, now + IDLE_TIMEOUT + Duration::from_secs(1))
            .is_none());
        assert_eq!(idle.len(), 0);
        idle.push_at(a.clone(), idle_sender().await, now);
        assert!(idle.pop_at(&a, now + Duration::from_secs(1)).is_some());
        idle.push_at(a.clone(), idle_sender().await, now);
        let later = now + IDLE_TIMEOUT + SWEEP_EVERY;
        idle.push_at(b.clone(), idle_sender().await, later);
        assert_eq!(
            idle.len(),
            1,
            "a's expired connection swept when b's was pushed"
        );
        assert!(idle.pop_at(&b, later).is_some());
    }

    /// An upstream that sends its head and part of its body, then stalls.
    async fn stalling_upstream() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        addr
    }

    #[tokio::test]
    async fn a_body_stalled_past_the_integration_timeout_ends_with_an_error() {
        let addr = stalling_upstream().await;
        let upstream = Arc::new(Upstream::new().unwrap());
        // An empty request body, as hyper's server would hand over for a GET.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let server = tokio::spawn(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().await.unwrap();
            let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let upstream = upstream.clone();
                let uri: http::Uri = format!("http://{addr}/x").parse().unwrap();
                let (mut parts, body) = req.into_parts();
                parts.uri = uri;
                async move {
                    let resp = upstream
                        .send(
                            http::Request::from_parts(parts, Either::Left(RequestBody::from(body))),
                            None,
                            false,
                            Duration::from_millis(300),
                        )
                        .await
                        .unwrap();
                    let started = std::time::Instant::now();
                    let err = resp.into_body().collect().await.err();
                    assert!(err.is_some(), "the stalled body must end with an error");
                    assert!(started.elapsed() < Duration::from_secs(5));
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                        Bytes,
                    >::new(
                    )))
                }
            });
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await
                .unwrap();
        });
        let front = rx.await.unwrap();
        let stream = tokio::net::TcpStream::connect(front).await.unwrap();
        let (mut send, conn) =
            http1::handshake::<_, http_body_util::Empty<Bytes>>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let resp = send
            .send_request(
                http::Request::get("/")
                    .body(http_body_util::Empty::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        drop(send);
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .unwrap()
            .unwrap();
    }
}
