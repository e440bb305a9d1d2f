#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Fleet-wide limits against a real redis-server (installed by `e2e/kube/setup.sh`): several
//! connections stand for several replicas sharing one Redis.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollhouse_dataplane::metrics::Metrics;
use tollhouse_dataplane::phases::quota::Quotas;
use tollhouse_dataplane::phases::throttle::{Bucket, Chain, Limit};
use tollhouse_dataplane::shared_limits::{SharedLimits, Verdict};
use tollhouse_snapshot::{Quota, QuotaPeriod};

/// A redis-server on a free port, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(extra: &[&str]) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (installed by e2e/kube/setup.sh) must be on PATH");
        let r = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn limit(rate: f64, burst: u32) -> Limit {
    Limit { rate, burst }
}

/// Shared limits on `url` with the probe running, once it is up.
async fn shared(url: &str, timeout_ms: u64) -> Arc<SharedLimits> {
    let mut metrics = Metrics::new();
    let s =
        Arc::new(SharedLimits::new(url, Duration::from_millis(timeout_ms), &mut metrics).unwrap());
    let probe = s.clone();
    tokio::spawn(async move { probe.probe().await });
    s
}

async fn wait_up(s: &SharedLimits) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.is_up() {
        assert!(Instant::now() < deadline, "Redis never came up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn quota(limit: u64) -> Quota {
    Quota {
        limit,
        period: QuotaPeriod::Day,
        offset: 0,
        first_period: None,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_racing_400_requests_get_exactly_the_burst() {
    let redis = Redis::start(&[]);
    let s = shared(&redis.url(), 200).await;
    let conns: Vec<_> = (0..4).map(|_| s.connect().unwrap()).collect();
    wait_up(&s).await;
    // One token an hour after the burst of 50: nothing refills during the test.
    let bucket = Arc::new(Bucket::named("stage t/prod", limit(1.0 / 3600.0, 50)));
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (s, conn, bucket) = (s.clone(), conns[i % 4].clone(), bucket.clone());
        tasks.push(tokio::spawn(async move {
            let chain = Chain::new(None, Some(&bucket), None);
            s.admit(&conn, &chain, None).await
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(Verdict::Admitted { .. }) => admitted += 1,
            Some(Verdict::Throttled) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted, 50);
    // The local bucket was never spent: Redis decided.
    assert_eq!(bucket.available(0), 50);
}

#[tokio::test]
async fn a_request_refused_at_a_later_level_spends_nothing_at_the_earlier_ones() {
    let redis = Redis::start(&[]);
    let s = shared(&redis.url(), 200).await;
    let conn = s.connect().unwrap();
    wait_up(&s).await;
    let slow = 1.0 / 3600.0;
    let plan = Bucket::named("plan t/gold t/a", limit(slow, 5));
    let stage = Bucket::named("stage t/prod", limit(slow, 3));
    let chain = Chain::new(None, Some(&stage), None).with_key(None, Some(&plan));
    let mut verdicts = Vec::new();
    for _ in 0..6 {
        verdicts.push(s.admit(&conn, &chain, None).await.unwrap());
    }
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Admitted { .. }))
            .count(),
        3
    );
    // The key spent 3 of its 5, not 6: two more on another Stage.
    let other = Bucket::named("stage t/test", limit(slow, 10));
    let chain = Chain::new(None, Some(&other), None).with_key(None, Some(&plan));
    let mut more = 0;
    for _ in 0..5 {
        if s.admit(&conn, &chain, None).await == Some(Verdict::Admitted { used: 0 }) {
            more += 1;
        }
    }
    assert_eq!(more, 2);
    // A blocked level refuses without a round trip.
    let blocked = Bucket::named("stage t/shut", limit(0.0, 10));
    let chain = Chain::new(None, Some(&blocked), None);
    assert_eq!(s.admit(&conn, &chain, None).await, Some(Verdict::Throttled));
}

#[tokio::test]
async fn a_changed_limit_keeps_the_tokens_the_fleet_spent() {
    let redis = Redis::start(&[]);
    let s = shared(&redis.url(), 200).await;
    let conn = s.connect().unwrap();
    wait_up(&s).await;
    let slow = 1.0 / 3600.0;
    let admitted = |n: usize, b: Bucket| {
        let (s, conn) = (s.clone(), conn.clone());
        async move {
            let chain = Chain::new(None, Some(&b), None);
            let mut ok = 0;
            for _ in 0..n {
                if matches!(
                    s.admit(&conn, &chain, None).await,
                    Some(Verdict::Admitted { .. })
                ) {
                    ok += 1;
                }
            }
            ok
        }
    };
    assert_eq!(
        admitted(4, Bucket::named("stage t/prod", limit(slow, 10))).await,
        4
    );
    // A push doubling the burst: 20 - 4 spent = 16 left, not 20.
    assert_eq!(
        admitted(30, Bucket::named("stage t/prod", limit(slow / 2.0, 20))).await,
        16
    );
    let h = redis.cli(&["HGETALL", "tollhouse:stage t/prod"]);
    assert!(h.contains("tat") && h.contains("iv"), "{h}");
    let ttl: i64 = redis
        .cli(&["PTTL", "tollhouse:stage t/prod"])
        .parse()
        .unwrap();
    assert!(ttl > 0, "buckets expire once full again: {ttl}");
}

#[tokio::test]
async fn a_quota_holds_for_the_fleet_and_survives_redis_losing_its_data() {
    let redis = Redis::start(&[]);
    let s = shared(&redis.url(), 200).await;
    let (c1, c2) = (s.connect().unwrap(), s.connect().unwrap());
    wait_up(&s).await;
    // Two replicas, each with its own counters, one Redis.
    let (q1, q2) = (Quotas::default(), Quotas::default());
    let (p1, p2) = (
        q1.plan("t/gold", Some(quota(10))),
        q2.plan("t/gold", Some(quota(10))),
    );
    let key: Arc<str> = Arc::from("t/a");
    let now = unix_now();
    let chain = Chain::default();
    let mut ok = 0;
    for i in 0..16 {
        let (p, c) = if i % 2 == 0 { (&p1, &c1) } else { (&p2, &c2) };
        let call = p.shared_call(&key, now).unwrap();
        match s.admit(c, &chain, Some(&call)).await.unwrap() {
            Verdict::Admitted { used } => {
                ok += 1;
                p.record_shared(&key, now, used, true);
            }
            Verdict::OverQuota { used } => {
                assert_eq!(used, 10);
                p.record_shared(&key, now, used, false);
            }
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(ok, 10);
    let day = QuotaPeriod::Day.index(now);
    let counter = format!("tollhouse:quota t/gold t/a Day {day}");
    assert_eq!(redis.cli(&["GET", &counter]), "10");
    let ttl: u64 = redis.cli(&["TTL", &counter]).parse().unwrap();
    let expires = QuotaPeriod::Day.start(day + 1) + 86_400 - now;
    assert!(ttl <= expires && ttl + 5 >= expires, "{ttl} vs {expires}");
    // Each replica counted only its own requests for the day's usage.
    assert_eq!(p1.usage("t/a").unwrap().day_used, 5);
    assert_eq!(p2.usage("t/a").unwrap().day_used, 5);
    // Redis loses everything: the replicas' floor keeps the key refused.
    assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
    let call = p1.shared_call(&key, now).unwrap();
    assert_eq!(call.floor, 10);
    assert_eq!(
        s.admit(&c1, &chain, Some(&call)).await,
        Some(Verdict::OverQuota { used: 10 })
    );
    assert_eq!(redis.cli(&["GET", &counter]), "10");
    // Another key of the plan is not affected.
    let b: Arc<str> = Arc::from("t/b");
    let call = p2.shared_call(&b, now).unwrap();
    assert_eq!(
        s.admit(&c2, &chain, Some(&call)).await,
        Some(Verdict::Admitted { used: 1 })
    );
}

#[tokio::test]
async fn a_hung_redis_is_not_waited_on_and_is_used_again_once_it_answers() {
    let redis = Redis::start(&[]);
    let s = shared(&redis.url(), 20).await;
    let conn = s.connect().unwrap();
    wait_up(&s).await;
    let bucket = Bucket::named("stage t/prod", limit(1.0, 100));
    let chain = Chain::new(None, Some(&bucket), None);
    assert!(s.admit(&conn, &chain, None).await.is_some());
    redis.signal("-STOP");
    let started = Instant::now();
    assert_eq!(s.admit(&conn, &chain, None).await, None);
    let waited = started.elapsed();
    // The timeout is 20 ms; a loaded machine gets slack, a stuck request would take seconds.
    assert!(waited < Duration::from_millis(1000), "{waited:?}");
    assert!(!s.is_up());
    // While down, no request waits at all.
    assert_eq!(s.admit(&conn, &chain, None).await, None);
    redis.signal("-CONT");
    wait_up(&s).await;
    assert!(matches!(
        s.admit(&conn, &chain, None).await,
        Some(Verdict::Admitted { .. })
    ));
}

#[tokio::test]
async fn a_password_in_the_url_is_never_in_an_error() {
    let secret = "Sup3rSecretPassw0rd";
    let redis = Redis::start(&["--requirepass", "right-one"]);
    let url = format!("redis://:{secret}@127.0.0.1:{}", redis.port);
    let s = shared(&url, 200).await;
    let conn = s.connect().unwrap();
    assert!(!s.server().contains(secret));
    assert_eq!(s.server(), format!("127.0.0.1:{}", redis.port));
    // A wrong password: never up, every check falls back, nothing names the password.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!s.is_up());
    let chain = Chain::default();
    assert_eq!(s.admit(&conn, &chain, None).await, None);
    let mut metrics = Metrics::new();
    let bad = format!("rediss//:{secret}@nowhere");
    let err = SharedLimits::new(&bad, Duration::from_millis(5), &mut metrics)
        .err()
        .unwrap();
    assert!(!err.contains(secret), "{err}");
    // With the right password it comes up.
    let good = format!("redis://:right-one@127.0.0.1:{}", redis.port);
    let s = shared(&good, 200).await;
    let _conn = s.connect().unwrap();
    wait_up(&s).await;
}
