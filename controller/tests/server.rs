//! The snapshot server over a real socket: long-poll, 304, wake-up on publish, status.

// Helpers outside #[test] functions are test code too; clippy.toml only knows the latter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tollhouse_controller::server::{serve, Hub};
use tollhouse_snapshot::{Snapshot, SourceRef, Stage, Versioned};

async fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn snapshot(name: &str) -> Snapshot {
    Snapshot {
        stages: vec![Stage {
            source: SourceRef {
                kind: "Stage".into(),
                namespace: "default".into(),
                name: name.into(),
                generation: 1,
            },
            api: "pets".into(),
            hostnames: vec![],
            base_path: "/".into(),
            variables: BTreeMap::new(),
            certificate: None,
            routes: vec![],
            api_type: Default::default(),
            access_log: None,
            throttle: None,
            api_key_source: Default::default(),
            resource_policy: None,
        }],
        ..Snapshot::default()
    }
}

#[tokio::test]
async fn long_poll_delivers_waits_and_wakes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hub = Arc::new(Hub::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, hub.clone(), None, async move {
        let _ = stopped.await;
    }));

    assert_eq!(get(addr, "/healthz").await, (200, "ok".to_string()));
    assert_eq!(get(addr, "/readyz").await.0, 503);
    assert_eq!(get(addr, "/nope").await.0, 404);
    // Nothing published yet: the poll times out empty.
    assert_eq!(get(addr, "/v1/snapshot?wait=0").await, (304, String::new()));

    let first = hub.publish(snapshot("prod")).unwrap().unwrap();
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (status, body) = get(addr, "/v1/snapshot?dataplane=dp-1").await;
    assert_eq!(status, 200);
    let delivered: Versioned = serde_json::from_str(&body).unwrap();
    assert_eq!(delivered.verify(), Ok(()));
    assert_eq!(delivered.version, first);
    let hash = delivered.hash.clone();
    // Empty parameters mean "none yet", as a dataplane with nothing applied sends them.
    assert_eq!(
        get(addr, "/v1/snapshot?known=&applied=&dataplane=dp-0")
            .await
            .0,
        200
    );
    assert_eq!(get(addr, "/v1/snapshot?applied=x").await.0, 400);

    let (status, body) = get(
        addr,
        &format!("/v1/snapshot?known={hash}&wait=1&dataplane=dp-1&applied={first}"),
    )
    .await;
    assert_eq!((status, body.as_str()), (304, ""));
    // Same content again: not a new publish.
    assert_eq!(hub.publish(snapshot("prod")).unwrap(), None);

    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let response = get(
            addr,
            &format!("/v1/snapshot?known={hash}&wait=30&dataplane=dp-2"),
        )
        .await;
        (response, started.elapsed())
    });
    // Publish only once the poll is registered, so the test proves a wake-up.
    for _ in 0..500 {
        if hub.status()["dataplanes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "dp-2")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = hub.publish(snapshot("beta")).unwrap().unwrap();
    let ((status, body), elapsed) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        elapsed < Duration::from_secs(20),
        "the poll was not woken: {elapsed:?}"
    );
    let delivered: Versioned = serde_json::from_str(&body).unwrap();
    assert_eq!(delivered.version, second);
    assert!(second > first);

    let (status, body) = get(addr, "/status").await;
    assert_eq!(status, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["snapshot"]["version"], second);
    assert_eq!(status["snapshot"]["stages"], 1);
    let dataplanes = status["dataplanes"].as_array().unwrap();
    let dp = |id: &str| dataplanes.iter().find(|d| d["id"] == id).unwrap();
    assert_eq!(dp("dp-1")["appliedVersion"], first);
    assert!(dp("dp-1")["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(dp("dp-2")["appliedVersion"], serde_json::Value::Null);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap();
}
