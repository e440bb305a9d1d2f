//! The HTTP integration: pooled HTTP/1.1 and HTTP/2 clients to upstreams.

use crate::error::{GatewayError, MAX_BODY_BYTES};
use http_body_util::{Either, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;

/// Body sent upstream: the client's body as is, or bounded when its length is not declared.
pub type UpstreamBody = Either<Incoming, Limited<Incoming>>;

/// Pooled clients: one negotiating HTTP/1.1 or (over TLS, by ALPN) HTTP/2, one for h2c.
pub struct Upstream {
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

impl Upstream {
    /// Builds both clients.
    pub fn new() -> Result<Self, rustls::Error> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))?
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
        Ok(Upstream { auto, h2c })
    }

    /// Sends a request and waits for the response head within `timeout`.
    pub async fn send(
        &self,
        req: http::Request<UpstreamBody>,
        http2: bool,
        timeout: Duration,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        let fut = if http2 {
            self.h2c.request(req)
        } else {
            self.auto.request(req)
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(GatewayError::IntegrationTimeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(classify(&e)),
        }
    }
}

/// A body over the limit surfaces as the client's error; everything else is a failure.
fn classify(e: &hyper_util::client::legacy::Error) -> GatewayError {
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
    use hyper::body::Body;
    if content_length.is_some() || body.is_end_stream() {
        Either::Left(body)
    } else {
        Either::Right(Limited::new(
            body,
            usize::try_from(MAX_BODY_BYTES).unwrap_or(usize::MAX),
        ))
    }
}
