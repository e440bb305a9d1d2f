//! Admin listener: `/healthz`, `/readyz`, `/metrics`, `/snapshot`.

use crate::pipeline::Gateway;
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

/// Answers one admin request.
pub fn respond<B>(gateway: &Gateway, req: &Request<B>) -> Response<Full<Bytes>> {
    let snap = gateway.snapshot.load();
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if gateway.draining.load(std::sync::atomic::Ordering::Relaxed) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining: shutting down\n",
        ),
        "/readyz" => match snap.as_ref() {
            Some(_) => text(StatusCode::OK, "text/plain", "ready\n"),
            None => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "no snapshot applied yet\n",
            ),
        },
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gateway.runtime.metrics.encode(),
        ),
        "/snapshot" => {
            let body = match snap.as_ref() {
                Some(s) => serde_json::json!({
                    "version": s.version,
                    "hash": s.hash,
                    "stages": s.stage_count(),
                    "routes": s.route_count(),
                }),
                None => serde_json::json!({ "version": null, "hash": null }),
            };
            text(StatusCode::OK, "application/json", body.to_string())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

/// Serves the admin endpoints until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let gw = gateway.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let resp = respond(&gw, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
