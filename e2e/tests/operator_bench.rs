//! Benchmarks of the operator against the real kube-apiserver (`harness::kube`), with the real
//! controller, dataplane and kubectl. Ignored by default: `bench/programmed.sh` builds the release
//! binaries and runs
//!
//! ```sh
//! cargo test --release -p tollhouse-e2e --test operator_bench -- --ignored --nocapture --test-threads=1
//! ```
//!
//! (with `--release` the harness starts the binaries of `target/release`). Nothing here asserts a
//! timing — the machines are shared — only correctness (each change is served); the numbers are
//! printed, and one `BENCH key=value…` line per test feeds the script's table.
//!
//! Each test has N pre-existing ApiRoutes (MOCK, `/bulk/NNNNN`), created through the API by
//! several clients at once while the controller and one dataplane run, plus one Stage, the
//! measured MOCK route `probe` and an HTTP_PROXY route `proxy` to the Service `web`. It measures:
//!
//! - the bulk: create time, time until the controller's snapshot and the dataplane have every
//!   route, time until every route is Programmed with its generation (status writes included);
//! - `BENCH_CHANGES` (50) edits of `probe`'s mock body, so its generation increments: the clock
//!   starts just before `kubectl apply` is started and stops when a watch on the route delivers
//!   `status.observedGeneration` == the new generation with `Programmed` True (for that
//!   generation). Outside the clock, one request checks that the dataplane serves the new body;
//! - translate time (the controller's histogram, sum/count over the edits), snapshot bytes and
//!   status patches per edit;
//! - `BENCH_ENDPOINT_CHANGES` (10) moves of `web`'s only endpoint between two echo backends: the
//!   clock runs from just before `kubectl apply` of the EndpointSlice to the first answer of the
//!   other backend through the dataplane;
//! - VmRSS and VmHWM of the controller and the dataplane at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::kube::{text, KubeEnv};
use harness::operator::{KubeController, World};
use harness::{Backend, Dataplane, Proc};
use serde_json::{json, Value};
use std::io::BufRead;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const STAGE: &str = "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata: {name: prod}\nspec: {api: pets, basePath: /prod}\n";
const ROUTES_API: &str = "/apis/tollhouse.dev/v1alpha1/namespaces";
/// The longest any one wait may take (10,000 routes on a busy 2-core machine are slow).
const PATIENCE: Duration = Duration::from_secs(30 * 60);

#[test]
#[ignore = "benchmark: bench/programmed.sh"]
fn programmed_00000_routes() {
    bench(0);
}

#[test]
#[ignore = "benchmark: bench/programmed.sh"]
fn programmed_01000_routes() {
    bench(1_000);
}

#[test]
#[ignore = "benchmark: bench/programmed.sh"]
fn programmed_10000_routes() {
    bench(10_000);
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

fn say(msg: &str) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 86_400;
    eprintln!(
        "[bench {:02}:{:02}:{:02}] {msg}",
        t / 3600,
        t / 60 % 60,
        t % 60
    );
}

/// The API server as admin, straight over HTTPS with the admin kubeconfig's token and CA.
#[derive(Clone)]
struct Admin {
    server: String,
    token: String,
    /// Requests (two-minute timeout).
    client: reqwest::blocking::Client,
    /// Watches (no timeout).
    stream: reqwest::blocking::Client,
}

impl Admin {
    fn new(env: &KubeEnv) -> Admin {
        harness::install_crypto();
        let path = env.kubeconfig_admin();
        let config: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let cluster = &config["clusters"][0]["cluster"];
        let server = cluster["server"]
            .as_str()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        let (Some(token), Some(ca)) = (
            config["users"][0]["user"]["token"].as_str(),
            cluster["certificate-authority"].as_str(),
        ) else {
            panic!(
                "the benchmark talks to the API server with the bearer token and CA file of the \
                 admin kubeconfig ({}), as the private test server has them",
                path.display()
            );
        };
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
        let build = |timeout: Option<Duration>| {
            reqwest::blocking::Client::builder()
                .add_root_certificate(ca.clone())
                .timeout(timeout)
                .build()
                .unwrap()
        };
        Admin {
            server,
            token: token.to_string(),
            client: build(Some(Duration::from_secs(120))),
            stream: build(None),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn get(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().unwrap()
    }
}

/// Creates `bulk-00000` … in `ns`, `workers` requests at a time; returns how long it took.
fn create_bulk(admin: &Admin, ns: &str, n: usize, workers: usize) -> Duration {
    let next = AtomicUsize::new(0);
    let path = format!("{ROUTES_API}/{ns}/apiroutes");
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                if i > 0 && i.is_multiple_of(1000) {
                    say(&format!("created {i} of {n} routes"));
                }
                let body = json!({
                    "apiVersion": "tollhouse.dev/v1alpha1",
                    "kind": "ApiRoute",
                    "metadata": {"name": format!("bulk-{i:05}")},
                    "spec": {
                        "api": "pets",
                        "path": format!("/bulk/{i:05}"),
                        "methods": ["GET"],
                        "integration": {"type": "MOCK", "mock": {"body": format!("bulk {i}")}},
                    },
                });
                let mut tries = 0;
                loop {
                    tries += 1;
                    let resp = admin
                        .client
                        .post(admin.url(&path))
                        .bearer_auth(&admin.token)
                        .json(&body)
                        .send();
                    let status = resp.as_ref().map(|r| r.status().as_u16());
                    match status {
                        // 409: a retried create that had gone through.
                        Ok(201) | Ok(409) => break,
                        Ok(429) | Ok(500..=599) | Err(_) if tries < 10 => {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        _ => panic!(
                            "creating bulk-{i:05}: {:?}",
                            resp.map(|r| r.text().unwrap_or_default())
                        ),
                    }
                }
            });
        }
    });
    start.elapsed()
}

/// Every version of one ApiRoute as a watch delivers it, stamped when its line arrives. The
/// thread ends at the first event after the receiver is gone.
fn watch(admin: &Admin, ns: &str, name: &str, rv: String) -> mpsc::Receiver<(Instant, Value)> {
    let (tx, rx) = mpsc::channel();
    let admin = admin.clone();
    let object = format!("{ROUTES_API}/{ns}/apiroutes/{name}");
    let list = format!("{ROUTES_API}/{ns}/apiroutes?watch=true&fieldSelector=metadata.name%3D{name}&timeoutSeconds=3600");
    std::thread::spawn(move || {
        let mut rv = rv;
        loop {
            let url = admin.url(&format!("{list}&resourceVersion={rv}"));
            let resp = match admin.stream.get(url).bearer_auth(&admin.token).send() {
                Ok(r) if r.status().is_success() => r,
                _ => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            for line in std::io::BufReader::new(resp).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event["type"] == "ERROR" {
                    // Expired resourceVersion: start again from the object as it is now.
                    rv = admin.get(&object)["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    break;
                }
                if let Some(v) = event["object"]["metadata"]["resourceVersion"].as_str() {
                    rv = v.to_string();
                }
                if tx.send((at, event["object"].clone())).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Whether the object carries `status.observedGeneration == generation` and Programmed True
/// for that generation.
fn programmed(object: &Value, generation: i64) -> bool {
    object["status"]["observedGeneration"] == generation
        && object["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "Programmed"
                    && c["status"] == "True"
                    && c["observedGeneration"] == generation
            })
        })
}

fn probe(body: &str) -> String {
    format!(
        "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: probe}}\nspec:\n  api: pets\n  path: /probe\n  methods: [GET]\n  integration: {{type: MOCK, mock: {{body: '{body}'}}}}\n"
    )
}

const PROXY: &str = "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {name: proxy}\nspec:\n  api: pets\n  path: /proxy\n  methods: [GET]\n  integration: {type: HTTP_PROXY, backendRef: {name: web, port: http}}\n";

fn metrics_text(c: &KubeController) -> String {
    harness::http()
        .get(c.url("/metrics"))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default()
}

/// The value of the sample named exactly `name` (no labels), NaN when absent.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

/// Translate count, translate seconds, status patches, snapshot bytes, snapshot version.
#[derive(Clone, Copy, Debug)]
struct Counters {
    translates: f64,
    translate_s: f64,
    patches: f64,
    snapshot_bytes: f64,
    snapshot_version: f64,
}

fn counters(c: &KubeController) -> Counters {
    let m = metrics_text(c);
    Counters {
        translates: metric(&m, "tollhouse_controller_translate_duration_seconds_count"),
        translate_s: metric(&m, "tollhouse_controller_translate_duration_seconds_sum"),
        patches: metric(&m, "tollhouse_controller_status_patches_total"),
        snapshot_bytes: metric(&m, "tollhouse_controller_snapshot_bytes"),
        snapshot_version: metric(&m, "tollhouse_controller_snapshot_version"),
    }
}

/// Mean translate milliseconds between two readings.
fn mean_translate_ms(before: Counters, after: Counters) -> f64 {
    (after.translate_s - before.translate_s) * 1000.0 / (after.translates - before.translates)
}

/// VmRSS and VmHWM of a process, in MiB.
fn memory_mib(proc: &Proc) -> (f64, f64) {
    let pid = proc.pid().expect("process running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) a process has used, in ms.
fn cpu_ms(proc: &Proc) -> f64 {
    let pid = proc.pid().expect("process running");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    ticks * 1000.0 / hz
}

/// Polls `f` every `every` until it returns `Some`; panics after [`PATIENCE`].
fn poll<T>(what: &str, every: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// Percentile `p` (0..=1) of sorted samples, interpolated between the closest ranks.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn dp_routes(dp: &Dataplane, client: &reqwest::blocking::Client) -> Option<u64> {
    client
        .get(dp.admin("/snapshot"))
        .send()
        .ok()?
        .json::<Value>()
        .ok()?["routes"]
        .as_u64()
}

/// The `backend` an echo answer names, through the dataplane.
fn backend_of(client: &reqwest::blocking::Client, dp: &Dataplane, path: &str) -> Option<String> {
    let resp = client.get(dp.url(path)).send().ok()?;
    if resp.status() != 200 {
        return None;
    }
    let body: Value = resp.json().ok()?;
    body["backend"].as_str().map(str::to_string)
}

fn bench(n: usize) {
    let changes = knob("BENCH_CHANGES", 50);
    let endpoint_changes = knob("BENCH_ENDPOINT_CHANGES", 10);
    let workers = knob("BENCH_CREATORS", 8).max(1);
    let w = World::new(&format!("bench-{n}"));
    let admin = Admin::new(w.env);
    let logs = w.logs();
    let a = Backend::start("a", &logs);
    let b = Backend::start("b", &logs);
    let c = KubeController::start(w.kubeconfig, &w.ns, &logs, &[]);
    let dp = Dataplane::start(&c.url(""), &w.dir.path().join("state"), &logs);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let exe = |p: &Proc| std::fs::read_link(format!("/proc/{}/exe", p.pid().unwrap())).unwrap();
    say(&format!(
        "{n} routes: namespace {}, controller {} ({}), dataplane {} ({})",
        w.ns,
        c.url(""),
        exe(&c.proc).display(),
        dp.url(""),
        exe(&dp.proc).display(),
    ));

    w.apply(&format!(
        "{}---\n{}---\n{STAGE}---\n{}---\n{PROXY}",
        w.service("web"),
        w.slices("web", &[(a.port, true)]),
        probe("v0"),
    ));
    w.wait_programmed("apiroute/probe");
    w.wait_programmed("apiroute/proxy");
    assert_eq!(
        backend_of(&client, &dp, "/prod/proxy").as_deref(),
        Some("a")
    );

    // The bulk, created while the controller and the dataplane run.
    let total = n + 2;
    let before_bulk = counters(&c);
    let cpu_before_bulk = (cpu_ms(&c.proc), cpu_ms(&dp.proc));
    let bulk_start = Instant::now();
    let create = create_bulk(&admin, &w.ns, n, workers);
    say(&format!("{n} routes created in {create:.1?}"));
    let in_snapshot = poll(
        "the controller's snapshot",
        Duration::from_millis(100),
        || {
            let routes = metric(&metrics_text(&c), "tollhouse_controller_snapshot_routes");
            (routes as usize == total).then(|| bulk_start.elapsed())
        },
    );
    let in_dataplane = poll(
        "the dataplane to serve every route",
        Duration::from_millis(100),
        || (dp_routes(&dp, &client)? as usize == total).then(|| bulk_start.elapsed()),
    );
    say(&format!(
        "snapshot has them after {in_snapshot:.1?}, the dataplane after {in_dataplane:.1?}"
    ));
    // Every route Programmed for its generation: listed only once the status writes paused for
    // a second (so this is known to within a second or two).
    let mut last_patches = f64::NAN;
    let mut last_report = Instant::now();
    let all_programmed = poll("every route Programmed", Duration::from_secs(1), || {
        let patches = counters(&c).patches;
        let quiet = patches == last_patches;
        last_patches = patches;
        if !quiet {
            if last_report.elapsed() > Duration::from_secs(30) {
                say(&format!("{patches} status patches so far"));
                last_report = Instant::now();
            }
            return None;
        }
        let at = bulk_start.elapsed();
        let list = admin.get(&format!("{ROUTES_API}/{}/apiroutes", w.ns));
        let items = list["items"].as_array().unwrap();
        let done = items
            .iter()
            .filter(|o| programmed(o, o["metadata"]["generation"].as_i64().unwrap_or(-1)))
            .count();
        say(&format!("{done} of {} routes Programmed", items.len()));
        (done == total).then_some(at)
    });
    let after_bulk = counters(&c);
    let cpu_after_bulk = (cpu_ms(&c.proc), cpu_ms(&dp.proc));
    say(&format!(
        "every route Programmed after {all_programmed:.1?}; {} status patches, {} translates (mean {:.1} ms)",
        after_bulk.patches - before_bulk.patches,
        after_bulk.translates - before_bulk.translates,
        mean_translate_ms(before_bulk, after_bulk),
    ));

    // Edits of the probe route, timed from kubectl apply to the watch event with Programmed.
    let current = admin.get(&format!("{ROUTES_API}/{}/apiroutes/probe", w.ns));
    let rx = watch(
        &admin,
        &w.ns,
        "probe",
        current["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let before = counters(&c);
    let cpu_before = (cpu_ms(&c.proc), cpu_ms(&dp.proc));
    let mut edits = Samples::default();
    // Status writes of the new generation before the Programmed one (e.g. `Pending`).
    let mut early_writes = 0usize;
    for i in 1..=changes {
        let body = format!("v{i}");
        let yaml = probe(&body);
        std::thread::sleep(Duration::from_millis(250));
        let wall = now_of_day();
        let t0 = Instant::now();
        let out = w
            .env
            .kubectl_stdin(&["apply", "-n", &w.ns, "-f", "-"], &yaml);
        let applied = t0.elapsed();
        assert!(out.status.success(), "kubectl apply: {}", text(&out));
        let mut seen = None;
        let done = loop {
            let (at, object) = rx
                .recv_timeout(PATIENCE)
                .expect("a watch event on the probe route");
            if object["spec"]["integration"]["mock"]["body"] != body.as_str() {
                continue;
            }
            let generation = object["metadata"]["generation"].as_i64().unwrap();
            if seen.is_none() {
                seen = Some(at.saturating_duration_since(t0));
            }
            if programmed(&object, generation) {
                break at.saturating_duration_since(t0);
            }
            if object["status"]["observedGeneration"] == generation {
                early_writes += 1;
            }
        };
        // Outside the clock: the dataplane serves the new body; when it was published and
        // applied (the controller's version is its publish time in ms; the dataplane's log).
        let served = client.get(dp.url("/prod/probe")).send().unwrap();
        assert_eq!(served.status(), 200);
        assert_eq!(served.text().unwrap(), body, "change {i} is not served");
        let (published, dp_applied) = published_and_applied(&c, &dp, wall);
        edits.push(Sample {
            apply: ms(applied),
            seen: ms(seen.unwrap()),
            published,
            dp_applied,
            done: ms(done),
        });
        if i % 10 == 0 {
            say(&format!("{i} of {changes} edits; last {done:.1?}"));
        }
    }
    let after = counters(&c);
    let cpu_after = (cpu_ms(&c.proc), cpu_ms(&dp.proc));

    // EndpointSlice changes: web's only endpoint moves between the two echo backends.
    let mut moves = Samples::default();
    for j in 0..endpoint_changes {
        let (to, name) = if j % 2 == 0 { (&b, "b") } else { (&a, "a") };
        let yaml = w.slices("web", &[(to.port, true)]);
        std::thread::sleep(Duration::from_millis(250));
        let wall = now_of_day();
        let t0 = Instant::now();
        let out = w
            .env
            .kubectl_stdin(&["apply", "-n", &w.ns, "-f", "-"], &yaml);
        let applied = t0.elapsed();
        assert!(out.status.success(), "kubectl apply: {}", text(&out));
        poll(
            &format!("backend {name} to answer"),
            Duration::from_millis(2),
            || (backend_of(&client, &dp, "/prod/proxy").as_deref() == Some(name)).then_some(()),
        );
        let done = t0.elapsed();
        let (published, dp_applied) = published_and_applied(&c, &dp, wall);
        moves.push(Sample {
            apply: ms(applied),
            seen: f64::NAN,
            published,
            dp_applied,
            done: ms(done),
        });
    }
    let after_endpoints = counters(&c);
    let cpu_after_endpoints = (cpu_ms(&c.proc), cpu_ms(&dp.proc));
    let (c_rss, c_hwm) = memory_mib(&c.proc);
    let (d_rss, d_hwm) = memory_mib(&dp.proc);

    let done = sorted(edits.done.clone());
    let row = [
        ("routes", format!("{n}")),
        ("create_s", format!("{:.1}", create.as_secs_f64())),
        (
            "create_per_s",
            format!("{:.0}", n as f64 / create.as_secs_f64().max(1e-9)),
        ),
        ("in_snapshot_s", format!("{:.1}", in_snapshot.as_secs_f64())),
        (
            "in_dataplane_s",
            format!("{:.1}", in_dataplane.as_secs_f64()),
        ),
        (
            "all_programmed_s",
            format!("{:.1}", all_programmed.as_secs_f64()),
        ),
        (
            "bulk_patches",
            format!("{}", after_bulk.patches - before_bulk.patches),
        ),
        (
            "bulk_translates",
            format!("{}", after_bulk.translates - before_bulk.translates),
        ),
        (
            "bulk_translate_ms",
            format!("{:.1}", mean_translate_ms(before_bulk, after_bulk)),
        ),
        (
            "bulk_controller_cpu_s",
            format!("{:.1}", (cpu_after_bulk.0 - cpu_before_bulk.0) / 1000.0),
        ),
        (
            "bulk_dataplane_cpu_s",
            format!("{:.1}", (cpu_after_bulk.1 - cpu_before_bulk.1) / 1000.0),
        ),
        ("changes", format!("{changes}")),
        ("p50_ms", format!("{:.0}", pct(&done, 0.5))),
        ("p90_ms", format!("{:.0}", pct(&done, 0.9))),
        ("p99_ms", format!("{:.0}", pct(&done, 0.99))),
        ("max_ms", format!("{:.0}", pct(&done, 1.0))),
        ("apply_p50_ms", format!("{:.0}", edits.median(|s| s.apply))),
        ("seen_p50_ms", format!("{:.0}", edits.median(|s| s.seen))),
        (
            "seen_to_programmed_p50_ms",
            format!("{:.0}", edits.median(|s| s.done - s.seen)),
        ),
        (
            "seen_to_programmed_p99_ms",
            format!("{:.0}", edits.pct(0.99, |s| s.done - s.seen)),
        ),
        (
            "seen_to_published_p50_ms",
            format!("{:.0}", edits.median(|s| s.published - s.seen)),
        ),
        (
            "published_to_dp_applied_p50_ms",
            format!("{:.0}", edits.median(|s| s.dp_applied - s.published)),
        ),
        (
            "dp_applied_to_programmed_p50_ms",
            format!("{:.0}", edits.median(|s| s.done - s.dp_applied)),
        ),
        (
            "translate_ms",
            format!("{:.2}", mean_translate_ms(before, after)),
        ),
        (
            "translates_per_change",
            format!(
                "{:.1}",
                (after.translates - before.translates) / changes.max(1) as f64
            ),
        ),
        (
            "patches_per_change",
            format!(
                "{:.1}",
                (after.patches - before.patches) / changes.max(1) as f64
            ),
        ),
        (
            "early_status_writes_per_change",
            format!("{:.1}", early_writes as f64 / changes.max(1) as f64),
        ),
        (
            "controller_cpu_ms_per_change",
            format!(
                "{:.0}",
                (cpu_after.0 - cpu_before.0) / changes.max(1) as f64
            ),
        ),
        (
            "dataplane_cpu_ms_per_change",
            format!(
                "{:.0}",
                (cpu_after.1 - cpu_before.1) / changes.max(1) as f64
            ),
        ),
        (
            "snapshot_kib",
            format!("{:.0}", after.snapshot_bytes / 1024.0),
        ),
        ("endpoint_changes", format!("{endpoint_changes}")),
        (
            "endpoint_p50_ms",
            format!("{:.0}", moves.median(|s| s.done)),
        ),
        (
            "endpoint_max_ms",
            format!("{:.0}", moves.pct(1.0, |s| s.done)),
        ),
        (
            "endpoint_apply_p50_ms",
            format!("{:.0}", moves.median(|s| s.apply)),
        ),
        (
            "endpoint_published_p50_ms",
            format!("{:.0}", moves.median(|s| s.published)),
        ),
        (
            "endpoint_published_to_served_p50_ms",
            format!("{:.0}", moves.median(|s| s.done - s.published)),
        ),
        (
            "endpoint_controller_cpu_ms",
            format!(
                "{:.0}",
                (cpu_after_endpoints.0 - cpu_after.0) / endpoint_changes.max(1) as f64
            ),
        ),
        (
            "endpoint_dataplane_cpu_ms",
            format!(
                "{:.0}",
                (cpu_after_endpoints.1 - cpu_after.1) / endpoint_changes.max(1) as f64
            ),
        ),
        (
            "endpoint_translate_ms",
            format!("{:.2}", mean_translate_ms(after, after_endpoints)),
        ),
        ("controller_rss_mib", format!("{c_rss:.0}")),
        ("controller_hwm_mib", format!("{c_hwm:.0}")),
        ("dataplane_rss_mib", format!("{d_rss:.0}")),
        ("dataplane_hwm_mib", format!("{d_hwm:.0}")),
    ];
    let line: Vec<String> = row.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // On a line of its own: libtest prints `test name ... ` without a newline before the output.
    println!("\nBENCH {}", line.join(" "));
    say(&format!(
        "{n} routes: Programmed after an edit p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; endpoint move served p50 {:.0} ms",
        pct(&done, 0.5),
        pct(&done, 0.99),
        pct(&done, 1.0),
        moves.median(|s| s.done),
    ));
    say(&format!("samples (ms, sorted): {done:.0?}"));

    // Leave the shared API server lighter for the next test (namespaces are never finalized).
    drop(dp);
    drop(c);
    let _ = admin
        .client
        .delete(admin.url(&format!("{ROUTES_API}/{}/apiroutes", w.ns)))
        .bearer_auth(&admin.token)
        .send();
}

/// One timed change, in ms from just before `kubectl apply` started.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// kubectl apply returned.
    apply: f64,
    /// The watch delivered the new spec (NaN when not watched).
    seen: f64,
    /// The controller published the snapshot (its version is the publish time in ms).
    published: f64,
    /// The dataplane logged "snapshot applied" for that version.
    dp_applied: f64,
    /// Programmed seen by the watch, or the other backend answered.
    done: f64,
}

#[derive(Default)]
struct Samples {
    all: Vec<Sample>,
    done: Vec<f64>,
}

impl Samples {
    fn push(&mut self, s: Sample) {
        self.all.push(s);
        self.done.push(s.done);
    }

    fn pct(&self, p: f64, f: impl Fn(&Sample) -> f64) -> f64 {
        pct(&sorted(self.all.iter().map(f).collect()), p)
    }

    fn median(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        self.pct(0.5, f)
    }
}

/// Milliseconds since midnight UTC, the clock of the processes' log timestamps.
fn now_of_day() -> f64 {
    let t = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    (t.as_secs_f64() % 86_400.0) * 1000.0
}

/// When (ms after `t0`, a [`now_of_day`] reading) the controller published its current snapshot
/// and the dataplane applied it.
fn published_and_applied(c: &KubeController, dp: &Dataplane, t0: f64) -> (f64, f64) {
    let version = counters(c).snapshot_version;
    let published = version % 86_400_000.0 - t0;
    let applied = applied_at(&std::fs::read_to_string(&dp.proc.log).unwrap(), version)
        .map_or(f64::NAN, |at| at - t0);
    (published, applied)
}

/// Milliseconds since midnight UTC of the dataplane's `snapshot applied` log line for
/// `version` (tracing's default format: RFC 3339 time first, ANSI colours maybe).
fn applied_at(log: &str, version: f64) -> Option<f64> {
    let needle = format!("snapshot.version={version:.0} ");
    log.lines().map(strip_ansi).find_map(|l| {
        if !(l.contains("snapshot applied") && l.contains(&needle)) {
            return None;
        }
        let time = l.split_whitespace().next()?.split('T').nth(1)?;
        let mut hms = time.trim_end_matches('Z').split(':');
        let (h, m, s): (f64, f64, f64) = (
            hms.next()?.parse().ok()?,
            hms.next()?.parse().ok()?,
            hms.next()?.parse().ok()?,
        );
        Some((h * 3600.0 + m * 60.0 + s) * 1000.0)
    })
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}
