//! `tollhouse-echo`: the demo and test backend.
//!
//! Answers every request with JSON describing what it received (backend name, method, path,
//! query, headers, body size, HTTP version, the peer address of the connection), so a user or a
//! test can see what the gateway forwarded and over which connection.
//! `/delay/<ms>` waits before answering, `/status/<code>` answers with that status, and
//! `/fast` answers a fixed 13-byte body for benchmarks. Serves HTTP/1.1 and h2c.

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A backend that echoes what it receives.
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Name reported in every answer (`backend` field and `x-backend` header).
    #[arg(long, default_value = "echo")]
    name: String,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

async fn answer(name: Arc<str>, peer: SocketAddr, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == "/fast" {
        return Response::new(Full::new(Bytes::from_static(b"hello, world\n")));
    }
    let mut status = 200u16;
    if let Some(ms) = path
        .strip_prefix("/delay/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
    {
        status = code;
    }
    let method = req.method().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let version = format!("{:?}", req.version());
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        headers.insert(
            k.as_str().to_string(),
            serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
        );
    }
    let body_bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let body = serde_json::json!({
        "backend": &*name,
        "method": method,
        "path": path,
        "query": query,
        "version": version,
        "headers": headers,
        "bodyBytes": body_bytes,
        "peer": peer.to_string(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&name) {
        h.insert("x-backend", v);
    }
    resp
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(args.listen).await?;
            eprintln!(
                "tollhouse-echo {} listening on {}",
                args.name,
                listener.local_addr()?
            );
            let name: Arc<str> = args.name.into();
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let name = name.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let name = name.clone();
                        async move { Ok::<_, Infallible>(answer(name, peer, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        })
}
