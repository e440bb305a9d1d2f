//! The HTTP integration: connection pools to upstreams.
//!
//! Plain `http://` HTTP/1.1 upstreams — the common case inside a cluster — go through a small
//! pool of hyper HTTP/1 connections owned by the worker thread: a checkout is a short,
//! uncontended lock and a `Vec::pop`, and a connection goes back to the pool when the response
//! body has been read to the end. `https://` (ALPN h2 or HTTP/1.1) and h2c upstreams use
//! hyper-util's pooled client.

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
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Body sent upstream: the client's body as is, or bounded when its length is not declared.
pub type UpstreamBody = Either<Incoming, Limited<Incoming>>;

type Sender = http1::SendRequest<UpstreamBody>;

/// Idle connections kept per upstream authority and worker.
const MAX_IDLE_PER_AUTHORITY: usize = 256;

/// Idle HTTP/1.1 connections by authority.
#[derive(Default)]
struct Idle(Mutex<HashMap<Authority, Vec<Sender>>>);

impl Idle {
    fn pop(&self, authority: &Authority) -> Option<Sender> {
        let mut map = self.0.lock().ok()?;
        let list = map.get_mut(authority)?;
        while let Some(s) = list.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn push(&self, authority: Authority, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut map) = self.0.lock() {
            let list = map.entry(authority).or_default();
            if list.len() < MAX_IDLE_PER_AUTHORITY {
                list.push(sender);
            }
        }
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

/// A response body that returns its connection to the pool once read to the end.
pub struct PooledBody {
    inner: Incoming,
    slot: Option<(Sender, Authority, Arc<Idle>)>,
}

impl PooledBody {
    fn plain(inner: Incoming) -> Self {
        PooledBody { inner, slot: None }
    }

    fn release(&mut self) {
        if let Some((sender, authority, idle)) = self.slot.take() {
            idle.push(authority, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.release(),
            // A broken body means a broken connection: never reuse it.
            Poll::Ready(Some(Err(_))) => this.slot = None,
            _ => {}
        }
        polled
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
        let plain_h1 = !http2 && req.uri().scheme() == Some(&Scheme::HTTP);
        let sent = async {
            if plain_h1 {
                self.send_h1(req, host).await
            } else {
                let fut = if http2 {
                    self.h2c.request(req)
                } else {
                    self.auto.request(req)
                };
                fut.await
                    .map(|r| r.map(PooledBody::plain))
                    .map_err(|e| classify(&e))
            }
        };
        tokio::time::timeout(timeout, sent)
            .await
            .unwrap_or(Err(GatewayError::IntegrationTimeout))
    }

    async fn send_h1(
        &self,
        mut req: http::Request<UpstreamBody>,
        host: Option<&http::HeaderValue>,
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
                Ok(resp) => return Ok(self.pooled(resp, sender, authority)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(classify(e.error())),
                },
            }
        }
        let mut sender = connect(&authority).await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok(self.pooled(resp, sender, authority)),
            Err(e) => Err(classify(&e)),
        }
    }

    fn pooled(
        &self,
        resp: http::Response<Incoming>,
        sender: Sender,
        authority: Authority,
    ) -> http::Response<PooledBody> {
        resp.map(|inner| {
            let mut body = PooledBody {
                inner,
                slot: Some((sender, authority, self.idle.clone())),
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
pub fn bounded(body: Incoming, content_length: Option<u64>) -> UpstreamBody {
    if content_length.is_some() || body.is_end_stream() {
        Either::Left(body)
    } else {
        Either::Right(Limited::new(
            body,
            usize::try_from(MAX_BODY_BYTES).unwrap_or(usize::MAX),
        ))
    }
}
