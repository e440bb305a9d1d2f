//! Accept loops: plain HTTP (HTTP/1.1 and h2c) and TLS (ALPN h2 / http/1.1).

mod head;

use crate::body::RequestBody;
use crate::context::Connection;
use crate::phases::admission::ConflictingLength;
use crate::pipeline::Worker;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

fn builder() -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1000);
    b
}

/// Serves until `shutdown` turns true, then lets open connections finish (up to 30 s).
pub async fn serve(
    listener: TcpListener,
    worker: Arc<Worker>,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let builder = Arc::new(builder());
    let graceful = GracefulShutdown::new();
    let mut stopping = false;
    loop {
        // After the stop signal, connections already queued in the kernel are still taken and
        // served (graceful shutdown closes them after their request) instead of being reset
        // when the listener closes; then the loop ends.
        let accepted = if stopping {
            match futures_util::FutureExt::now_or_never(listener.accept()) {
                Some(a) => a,
                None => break,
            }
        } else {
            tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.changed() => {
                    stopping = true;
                    continue;
                }
            }
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(_) if stopping => break,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(remote);
        let conn = Arc::new(Connection::new(remote, local, tls.is_some()));
        let w = worker.clone();
        let tail = head::Tail::default();
        let seen = tail.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let (w, conn) = (w.clone(), conn.clone());
            let mut req = req.map(RequestBody::from);
            if req.headers().contains_key(http::header::TRANSFER_ENCODING)
                && req.version() <= http::Version::HTTP_11
            {
                let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
                if seen.head_has_content_length(req.method().as_str(), target) {
                    req.extensions_mut().insert(ConflictingLength);
                }
            }
            // Boxed once here, so hyper moves a pointer instead of the request's state machine.
            Box::pin(async move { Ok::<_, Infallible>(w.handle(req, conn).await) })
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        match &tls {
            None => {
                tokio::spawn(async move {
                    let stream = head::Recorded::new(stream, tail);
                    let c = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(c.into_owned()).await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(
                        Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(client.ip = %remote.ip(), error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    };
                    let stream = head::Recorded::new(stream, tail);
                    let c = builder.serve_connection(TokioIo::new(stream), service);
                    let _ = watcher.watch(c.into_owned()).await;
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; closing");
    }
}
