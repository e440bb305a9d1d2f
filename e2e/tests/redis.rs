//! Fleet-wide limits over real processes: one controller, three dataplanes given `--redis`, a
//! real redis-server (installed by `e2e/kube/setup.sh`). The Stage's throttle holds for the
//! three together; Redis dying under load turns into each replica's own limits, never a 5xx;
//! and a key's quota is counted once for the fleet and survives Redis losing its data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// A redis-server without persistence on `port`, killed on drop.
struct Redis {
    proc: Proc,
    port: u16,
}

impl Redis {
    fn start(port: u16, logs: &std::path::Path) -> Redis {
        let args = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
            .into_iter()
            .chain(["--save", "", "--appendonly", "no"])
            .map(String::from)
            .collect::<Vec<_>>();
        let proc = Proc::spawn_program(
            "redis-server",
            std::path::Path::new("redis-server"),
            &args,
            logs,
            &[],
        );
        wait_for("redis-server", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Redis { proc, port }
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

    fn kill(&mut self) {
        self.proc.kill();
    }
}

const KEY: &str = "FleetKeyValue0123456789abcdefXYZ";
/// A key of the plan `silver`, which holds each key to 10 a second, 10 at once.
const SILVER_KEY: &str = "SilverKeyValue0123456789abcdefXY";

/// The manifests, the Stage throttled at `rate` a second with a burst of `burst`.
fn manifests(rate: u32, burst: u32) -> String {
    [
        &format!("apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: prod\n  namespace: default\nspec:\n  api: shop\n  apiType: REST\n  throttle: {{rateLimit: {rate}, burstLimit: {burst}}}\n"),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: pets\n  namespace: default\nspec:\n  api: shop\n  path: /pets\n  methods: [GET]\n  integration:\n    type: MOCK\n    mock: {statusCode: 200, body: pets}\n",
        "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: keyed\n  namespace: default\nspec:\n  api: shop\n  path: /keyed\n  methods: [GET]\n  apiKeyRequired: true\n  integration:\n    type: MOCK\n    mock: {statusCode: 200, body: keyed}\n",
        &format!("apiVersion: v1\nkind: Secret\ntype: tollhouse.dev/api-key\nmetadata:\n  name: partner-a\n  namespace: default\n  labels: {{tollhouse.dev/usage-plan: gold}}\nstringData:\n  key: {KEY}\n"),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: UsagePlan\nmetadata:\n  name: gold\n  namespace: default\nspec:\n  apiStages:\n  - stage: prod\n  quota: {limit: 30, period: DAY}\n  apiKeySelector:\n    matchLabels: {tollhouse.dev/usage-plan: gold}\n",
        &format!("apiVersion: v1\nkind: Secret\ntype: tollhouse.dev/api-key\nmetadata:\n  name: partner-b\n  namespace: default\n  labels: {{tollhouse.dev/usage-plan: silver}}\nstringData:\n  key: {SILVER_KEY}\n"),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: UsagePlan\nmetadata:\n  name: silver\n  namespace: default\nspec:\n  apiStages:\n  - stage: prod\n  throttle: {rateLimit: 10, burstLimit: 10}\n  apiKeySelector:\n    matchLabels: {tollhouse.dev/usage-plan: silver}\n",
    ]
    .join("---\n")
}

/// A controller on the manifests and three dataplanes sharing `redis`.
struct Fleet {
    dir: TempDir,
    controller: Controller,
    dataplanes: Vec<Dataplane>,
}

impl Fleet {
    fn start(tag: &str, redis: &Redis, manifests: String) -> Fleet {
        let dir = TempDir::new(tag);
        let m = dir.path().join("manifests");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("api.yaml"), manifests).unwrap();
        let controller = Controller::start(&m, dir.path());
        let dataplanes = (0..3)
            .map(|i| {
                // A generous timeout: on a loaded test machine a 5 ms one falls back now and
                // then, and each fallback lets a replica's own full bucket through.
                let extra = [
                    "--redis".to_string(),
                    redis.url(),
                    "--redis-timeout-ms".to_string(),
                    "250".to_string(),
                ];
                let state = dir.path().join(format!("state-{i}"));
                Dataplane::start_with(&controller.url(""), &state, dir.path(), &extra)
            })
            .collect();
        let f = Fleet {
            dir,
            controller,
            dataplanes,
        };
        for d in &f.dataplanes {
            d.wait_synced(&f.controller);
        }
        f.wait_redis_up(true);
        f
    }

    fn metric(d: &Dataplane, name: &str) -> Option<f64> {
        let text = http().get(d.admin("/metrics")).send().ok()?.text().ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn wait_redis_up(&self, up: bool) {
        let want = if up { 1.0 } else { 0.0 };
        wait_for("tollhouse_redis_up", Duration::from_secs(20), || {
            self.dataplanes
                .iter()
                .all(|d| Fleet::metric(d, "tollhouse_redis_up") == Some(want))
                .then_some(())
        });
    }

    /// Sends GET `path` through all three dataplanes at once, one client each, for `secs`:
    /// the statuses counted, and the seconds from the first request sent to the last.
    fn hammer(&self, path: &str, key: Option<&str>, secs: f64) -> (BTreeMap<u16, usize>, f64) {
        let start = Instant::now();
        let until = start + Duration::from_secs_f64(secs);
        let threads: Vec<_> = self
            .dataplanes
            .iter()
            .map(|d| {
                let (url, key) = (d.url(path), key.map(str::to_string));
                std::thread::spawn(move || {
                    let c = http();
                    let mut seen = BTreeMap::new();
                    let mut last = Instant::now();
                    while Instant::now() < until {
                        let mut req = c.get(&url);
                        if let Some(k) = &key {
                            req = req.header("x-api-key", k);
                        }
                        last = Instant::now();
                        let status = req.send().map_or(0, |r| r.status().as_u16());
                        *seen.entry(status).or_insert(0) += 1;
                    }
                    (seen, last)
                })
            })
            .collect();
        let mut all = BTreeMap::new();
        let mut last = start;
        for t in threads {
            let (seen, l) = t.join().unwrap();
            last = last.max(l);
            for (s, n) in seen {
                *all.entry(s).or_insert(0) += n;
            }
        }
        (all, last.duration_since(start).as_secs_f64())
    }
}

/// A bucket of `burst` at once and `rate` a second holds the fleet: in a window of s seconds
/// from full, the three dataplanes together answer burst + rate × s with 200, not three times
/// that.
fn assert_fleet_holds(
    counts: &BTreeMap<u16, usize>,
    window: f64,
    (burst, rate): (f64, f64),
    what: &str,
) {
    let ok = counts.get(&200).copied().unwrap_or(0) as f64;
    let expected = burst + rate * window;
    eprintln!(
        "{what}: {counts:?} in {window:.2} s; 200s {ok} vs {expected:.1} expected ({:+.2} %)",
        (ok - expected) / expected * 100.0
    );
    assert!(
        counts.keys().all(|s| *s == 200 || *s == 429),
        "{what}: only 200s and 429s, got {counts:?}"
    );
    // Clocks: Redis's decides; the client's window is the first to the last request sent. A
    // token or two either side is the gap between the two.
    assert!(
        (ok - expected).abs() <= 2.0 + 0.01 * expected,
        "{what}: {ok} admitted, {expected:.1} expected"
    );
}

#[test]
fn three_dataplanes_share_the_stage_throttle_through_redis_and_survive_it_dying() {
    let port = free_port();
    let logs = TempDir::new("redis-fleet-server");
    let mut redis = Redis::start(port, logs.path());
    let fleet = Fleet::start("redis-fleet", &redis, manifests(20, 20));

    let (counts, window) = fleet.hammer("/pets", None, 5.0);
    assert_fleet_holds(&counts, window, (20.0, 20.0), "three dataplanes, one Redis");
    for d in &fleet.dataplanes {
        assert_eq!(
            Fleet::metric(d, "tollhouse_redis_fallback_requests_total"),
            Some(0.0),
            "no request fell back while Redis answered"
        );
    }
    let keys = redis.cli(&["KEYS", "tollhouse:*"]);
    assert!(keys.contains("tollhouse:stage default/prod"), "{keys}");
    assert!(keys.contains("tollhouse:account"), "{keys}");

    // Redis dies under load: each replica falls back to its own buckets (no 5xx, no hang).
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        redis.kill();
        redis
    });
    let (counts, _) = fleet.hammer("/pets", None, 2.0);
    let mut redis = killer.join().unwrap();
    eprintln!("Redis killed under load: {counts:?}");
    assert!(counts.keys().all(|s| *s == 200 || *s == 429), "{counts:?}");
    fleet.wait_redis_up(false);
    for d in &fleet.dataplanes {
        let log = d.proc.log_text();
        assert!(log.contains("Redis is not answering"), "{log}");
        assert!(Fleet::metric(d, "tollhouse_redis_fallback_requests_total").unwrap_or(0.0) > 0.0);
    }

    // Back on the same port, empty: the fleet shares again, from a full bucket.
    redis = Redis::start(redis.port, logs.path());
    fleet.wait_redis_up(true);
    std::thread::sleep(Duration::from_secs(2));
    let (counts, window) = fleet.hammer("/pets", None, 3.0);
    assert_fleet_holds(&counts, window, (20.0, 20.0), "after Redis came back");
    drop(redis);
    drop(fleet.dir);
}

/// Issue 11: three dataplanes sharing one Redis hold a key to its plan within a few percent over
/// 10 s (the Stage's own limit is out of reach here).
#[test]
fn three_dataplanes_hold_a_key_to_its_plan_throttle_through_redis_for_10_s() {
    let logs = TempDir::new("redis-plan-server");
    let redis = Redis::start(free_port(), logs.path());
    let fleet = Fleet::start("redis-plan", &redis, manifests(1000, 1000));
    let (counts, window) = fleet.hammer("/keyed", Some(SILVER_KEY), 10.0);
    assert_fleet_holds(
        &counts,
        window,
        (10.0, 10.0),
        "a key's plan throttle, three dataplanes",
    );
    let keys = redis.cli(&["KEYS", "tollhouse:*"]);
    assert!(keys.contains("default/silver"), "{keys}");
    assert!(!keys.contains(SILVER_KEY), "a key value in Redis: {keys}");
    for d in &fleet.dataplanes {
        assert_eq!(
            Fleet::metric(d, "tollhouse_redis_fallback_requests_total"),
            Some(0.0),
            "no request fell back while Redis answered"
        );
    }
    drop(redis);
    drop(fleet.dir);
}

#[test]
fn a_quota_is_counted_once_for_the_fleet_and_outlives_redis_losing_its_data() {
    let port = free_port();
    let logs = TempDir::new("redis-quota-server");
    let mut redis = Redis::start(port, logs.path());
    let fleet = Fleet::start("redis-quota", &redis, manifests(1000, 1000));
    let c = http();
    let call = |i: usize| {
        let d = &fleet.dataplanes[i % 3];
        let r = c
            .get(d.url("/keyed"))
            .header("x-api-key", KEY)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().unwrap())
    };
    let answers: Vec<(u16, String)> = (0..40).map(call).collect();
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 30, "{answers:?}");
    // AWS's Limit Exceeded (§3a) for the ten over the quota, whichever replica they reached.
    assert!(answers[30..]
        .iter()
        .all(|(s, b)| *s == 429 && b == r#"{"message":"Limit Exceeded"}"#));
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let counter = format!("tollhouse:quota default/gold default/partner-a Day {day}");
    assert_eq!(redis.cli(&["GET", &counter]), "30");

    // Redis restarts empty: every replica still refuses the key (its floor is 30), and the
    // counter is written back.
    redis.kill();
    fleet.wait_redis_up(false);
    for i in 0..3 {
        assert_eq!(call(i).0, 429, "while Redis is down");
    }
    let redis = Redis::start(port, logs.path());
    fleet.wait_redis_up(true);
    for i in 0..6 {
        assert_eq!(call(i).0, 429, "after Redis came back empty");
    }
    assert_eq!(redis.cli(&["GET", &counter]), "30");
    // The key value is in no log and no metric.
    for d in &fleet.dataplanes {
        assert!(!d.proc.log_text().contains(KEY));
        let metrics = c.get(d.admin("/metrics")).send().unwrap().text().unwrap();
        assert!(!metrics.contains(KEY));
    }
    assert!(!fleet.controller.proc.log_text().contains(KEY));
}
