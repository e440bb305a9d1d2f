//! 100,000 API keys in one snapshot (issue 11's scale item), measured over the real processes:
//! a controller in directory mode and one dataplane. `bench/keys-scale.sh` runs the ignored
//! test in release mode and prints its numbers; nothing here asserts a timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

fn key_value(i: usize) -> String {
    format!("ScaleKey{i:012}abcdefghij")
}

fn secret(i: usize, enabled: bool) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\ntype: tollhouse.dev/api-key\nmetadata:\n  name: k{i}\n  namespace: default\n  labels: {{plan: gold}}\n  annotations: {{tollhouse.dev/enabled: \"{enabled}\"}}\nstringData:\n  key: {}\n",
        key_value(i)
    )
}

fn api(body: &str) -> String {
    format!(
        "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: prod\n  namespace: default\nspec:\n  api: shop\n  apiType: REST\n---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: keyed\n  namespace: default\nspec:\n  api: shop\n  path: /keyed\n  methods: [GET]\n  apiKeyRequired: true\n  integration:\n    type: MOCK\n    mock: {{statusCode: 200, body: keyed}}\n---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: open\n  namespace: default\nspec:\n  api: shop\n  path: /open\n  methods: [GET]\n  integration:\n    type: MOCK\n    mock: {{statusCode: 200, body: {body}}}\n---\napiVersion: tollhouse.dev/v1alpha1\nkind: UsagePlan\nmetadata:\n  name: gold\n  namespace: default\nspec:\n  apiStages:\n  - stage: prod\n  throttle: {{rateLimit: 1000000, burstLimit: 1000000}}\n  quota: {{limit: 1000000000, period: MONTH}}\n  apiKeySelector:\n    matchLabels: {{plan: gold}}\n"
    )
}

fn metric(url: &str, name: &str) -> Option<f64> {
    let text = http().get(url).send().ok()?.text().ok()?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Polls `url` with `key` back to back until it answers `status`: the milliseconds from `from`.
fn until(url: &str, key: Option<&str>, status: u16, from: Instant) -> f64 {
    let c = http();
    loop {
        let mut r = c.get(url);
        if let Some(k) = key {
            r = r.header("x-api-key", k);
        }
        if r.send().is_ok_and(|r| r.status().as_u16() == status) {
            return from.elapsed().as_secs_f64() * 1000.0;
        }
        assert!(
            from.elapsed() < Duration::from_secs(120),
            "{url} never answered {status}"
        );
    }
}

#[test]
#[ignore = "a measurement: bench/keys-scale.sh runs it"]
fn keys_at_scale() {
    let n: usize = std::env::var("BENCH_KEYS")
        .ok()
        .map_or(100_000, |v| v.parse().expect("BENCH_KEYS must be a number"));
    let dir = TempDir::new("keys-scale");
    let m = dir.path().join("manifests");
    std::fs::create_dir_all(&m).unwrap();
    let mut keys = String::with_capacity(n * 240);
    for i in 0..n {
        if i > 0 {
            keys.push_str("---\n");
        }
        let _ = write!(keys, "{}", secret(i, true));
    }
    std::fs::write(m.join("keys.yaml"), &keys).unwrap();
    std::fs::write(m.join("api.yaml"), api("v0")).unwrap();

    let started = Instant::now();
    let controller = Controller::start(&m, dir.path());
    let dataplane = Dataplane::start(&controller.url(""), &dir.path().join("state"), dir.path());
    let first_ms = until(
        &dataplane.url("/keyed"),
        Some(&key_value(n - 1)),
        200,
        started,
    );
    let bytes = metric(
        &controller.url("/metrics"),
        "tollhouse_controller_snapshot_bytes",
    )
    .unwrap_or(-1.0);

    // An unrelated route edited: the whole snapshot (keys included) goes out again.
    let write = |name: &str, text: &str| {
        let tmp = dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, m.join(name)).unwrap();
    };
    let c = http();
    let mut edits = Vec::new();
    for i in 1..=5 {
        std::thread::sleep(Duration::from_millis(500));
        let body = format!("v{i}");
        let t = Instant::now();
        write("api.yaml", &api(&body));
        loop {
            if c.get(dataplane.url("/open"))
                .send()
                .and_then(|r| r.text())
                .is_ok_and(|b| b == body)
            {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "edit {i} not served"
            );
        }
        edits.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    // A key added (a file of its own), then revoked (disabled).
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    write("new-key.yaml", &secret(n, true));
    let added_ms = until(&dataplane.url("/keyed"), Some(&key_value(n)), 200, t);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    write("new-key.yaml", &secret(n, false));
    let revoked_ms = until(&dataplane.url("/keyed"), Some(&key_value(n)), 403, t);

    let rss = |pid: Option<u32>| {
        std::fs::read_to_string(format!("/proc/{}/status", pid.unwrap_or(0)))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map_or(-1.0, |kb| kb as f64 / 1024.0)
    };
    edits.sort_by(f64::total_cmp);
    println!(
        "BENCH keys_scale keys={n} yaml_mb={:.1} snapshot_mb={:.1} first_served_ms={first_ms:.0} edit_p50_ms={:.0} edit_max_ms={:.0} key_added_ms={added_ms:.0} key_revoked_ms={revoked_ms:.0} controller_rss_mb={:.0} dataplane_rss_mb={:.0}",
        keys.len() as f64 / 1e6,
        bytes / 1e6,
        edits[edits.len() / 2],
        edits[edits.len() - 1],
        rss(controller.proc.pid()),
        rss(dataplane.proc.pid()),
    );
}
