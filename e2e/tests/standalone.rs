//! End-to-end tests of the one-machine mode: the real controller, dataplane and echo backend
//! processes on loopback, driven by a real HTTP client. Each scenario waits for the dataplane
//! to serve the controller's snapshot before it sends traffic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use reqwest::blocking::Client;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn stage(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  api: petstore\n{extra}"
    )
}

fn route(name: &str, path: &str, methods: &str, integration: &str) -> String {
    format!(
        "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: {name}\nspec:\n  api: petstore\n  path: \"{path}\"\n  methods: {methods}\n  integration:\n{integration}"
    )
}

fn proxy(uri: &str) -> String {
    format!("    type: HTTP_PROXY\n    uri: \"{uri}\"\n")
}

fn mock(status: u16, body: &str) -> String {
    format!("    type: MOCK\n    mock:\n      statusCode: {status}\n      headers:\n        content-type: text/plain\n      body: \"{body}\"\n")
}

fn docs(parts: &[String]) -> String {
    parts.join("---\n")
}

struct Resp {
    status: u16,
    body: String,
    headers: reqwest::header::HeaderMap,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn send(client: &Client, method: &str, url: &str, host: Option<&str>) -> Resp {
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(h) = host {
        req = req.header("host", h);
    }
    let r = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Resp {
        status,
        body: r.text().unwrap(),
        headers,
    }
}

/// Routing table with AWS semantics: parameters, greedy, ANY, most specific match, 404.
#[test]
fn routing_table_follows_aws_precedence() {
    let logs = TempDir::new("routing-logs");
    let be = Backend::start("pets", logs.path());
    let b = format!("127.0.0.1:{}", be.port);
    let config = docs(&[
        stage("prod", &format!("  variables:\n    backend: \"{b}\"\n")),
        route(
            "list-pets",
            "/pets",
            "[GET]",
            &proxy(&format!("http://{b}/pets")),
        ),
        route(
            "get-pet",
            "/pets/{petId}",
            "[GET]",
            &proxy("http://${stageVariables.backend}/pets/{petId}"),
        ),
        route(
            "special-pet",
            "/pets/special",
            "[GET]",
            &mock(200, "special"),
        ),
        route("create-pet", "/pets", "[POST]", &mock(201, "created")),
        route(
            "files",
            "/files/{proxy+}",
            "[ANY]",
            &proxy(&format!("http://{b}/storage/{{proxy}}")),
        ),
        route(
            "owner-toys",
            "/owners/{ownerId}/toys/{toyId}",
            "[GET]",
            &proxy(&format!("http://{b}/o/{{ownerId}}/t/{{toyId}}")),
        ),
    ]);
    let s = Stack::start("routing", &[("api.yaml", config)]);
    let c = http();
    let url = |p: &str| s.dataplane.url(p);

    // (method, path, status, expected echo path or mock body)
    let table: &[(&str, &str, u16, &str)] = &[
        ("GET", "/pets", 200, "/pets"),
        ("GET", "/pets/", 200, "/pets"),
        ("GET", "/pets/42", 200, "/pets/42"),
        ("GET", "/pets/special", 200, "special"),
        ("POST", "/pets", 201, "created"),
        ("PUT", "/files/a/b/c.txt", 200, "/storage/a/b/c.txt"),
        ("DELETE", "/files/x", 200, "/storage/x"),
        ("GET", "/owners/7/toys/ball", 200, "/o/7/t/ball"),
    ];
    for (method, path, status, want) in table {
        let r = send(&c, method, &url(path), None);
        assert_eq!(r.status, *status, "{method} {path}: {}", r.body);
        if want.starts_with('/') {
            let j = r.json();
            assert_eq!(j["path"], *want, "{method} {path}");
            assert_eq!(j["method"], *method);
        } else {
            assert_eq!(r.body, *want, "{method} {path}");
        }
        // An HTTP API's request id (reference §3a; docs/compatibility.md).
        assert_eq!(r.headers["apigw-requestid"].len(), 16);
    }
    // No route, or no route for this method: HTTP API's 404 (reference §3, §8), byte for byte.
    for (method, path) in [
        ("GET", "/nothing"),
        ("DELETE", "/pets"),
        ("GET", "/files"),
        ("GET", "/pets/1/2"),
    ] {
        let r = send(&c, method, &url(path), None);
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, r#"{"message":"Not Found"}"#),
            "{method} {path}"
        );
        assert_eq!(r.headers["content-type"], "application/json");
    }
    // Query strings pass through; forwarding headers are set; hop-by-hop headers are not sent.
    let r = c
        .get(url("/pets/9?color=red&x=1"))
        .header("connection", "x-private-hop")
        .header("x-private-hop", "secret")
        .send()
        .unwrap();
    assert_eq!(r.headers()["apigw-requestid"].len(), 16);
    let j: Value = r.json().unwrap();
    assert_eq!(j["query"], "color=red&x=1");
    assert_eq!(j["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(j["headers"]["x-forwarded-proto"], "http");
    assert_eq!(
        j["headers"]["x-forwarded-host"],
        format!("127.0.0.1:{}", s.dataplane.http_port)
    );
    assert_eq!(j["headers"]["host"], b.as_str());
    assert!(j["headers"].get("x-private-hop").is_none(), "{j}");

    // Metrics count requests by stage, route and status class; unmatched requests too.
    let metrics = c
        .get(s.dataplane.admin("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        r#"tollhouse_requests_total{stage="default/prod",route="default/list-pets",status_class="2xx"} 2"#,
        r#"tollhouse_requests_total{stage="default/prod",route="",status_class="4xx"} 4"#,
        r#"tollhouse_request_duration_seconds_count{stage="default/prod",route="default/create-pet"} 1"#,
        r#"tollhouse_gateway_errors_total{kind="no_route"} 4"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    // The dataplane reported the version it applied back to the controller.
    let status = s.controller.status();
    let version = status["snapshot"]["version"].clone();
    let dp = format!("e2e-{}", s.dataplane.http_port);
    wait_for(
        "applied version on /status",
        Duration::from_secs(40),
        || {
            let st = s.controller.status();
            let d = st["dataplanes"]
                .as_array()?
                .iter()
                .find(|d| d["id"] == dp.as_str())?
                .clone();
            (d["appliedVersion"] == version).then_some(())
        },
    );
}

/// Stages are selected by host name and base path; each has its own stage variables.
#[test]
fn stages_by_host_and_base_path_with_their_own_variables() {
    let logs = TempDir::new("stages-logs");
    let a = Backend::start("backend-a", logs.path());
    let b = Backend::start("backend-b", logs.path());
    let config = docs(&[
        stage("prod", &format!("  basePath: /prod\n  variables:\n    backend: \"127.0.0.1:{}\"\n", a.port)),
        stage("beta", &format!("  basePath: /beta/\n  variables:\n    backend: \"127.0.0.1:{}\"\n", b.port)),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: custom\nspec:\n  api: other\n  hostnames: [API.Example.com]\n".to_string(),
        route("hello", "/hello", "[ANY]", &proxy("http://${stageVariables.backend}/hello")),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: other-hello\nspec:\n  api: other\n  path: /hello\n  integration:\n    type: MOCK\n    mock:\n      body: custom-domain\n".to_string(),
    ]);
    let s = Stack::start("stages", &[("stages.yaml", config)]);
    let c = http();
    let r = send(&c, "GET", &s.dataplane.url("/prod/hello"), None);
    assert_eq!(
        (r.status, r.json()["backend"].as_str()),
        (200, Some("backend-a"))
    );
    assert_eq!(r.json()["path"], "/hello");
    let r = send(&c, "GET", &s.dataplane.url("/beta/hello"), None);
    assert_eq!(r.json()["backend"], "backend-b");
    let r = send(
        &c,
        "GET",
        &s.dataplane.url("/hello"),
        Some("api.example.com"),
    );
    assert_eq!((r.status, r.body.as_str()), (200, "custom-domain"));
    let r = send(
        &c,
        "GET",
        &s.dataplane.url("/hello"),
        Some("api.example.com:443"),
    );
    assert_eq!(r.body, "custom-domain");
    // Base paths match whole segments only; an unknown prefix is a 404.
    assert_eq!(
        send(&c, "GET", &s.dataplane.url("/production/hello"), None).status,
        404
    );
    assert_eq!(
        send(&c, "GET", &s.dataplane.url("/hello"), None).status,
        404
    );
}

/// Integration failures answer as a REST API does (reference §3a): timeout, unreachable, too
/// large.
#[test]
fn integration_failures_map_to_aws_responses() {
    let logs = TempDir::new("errors-logs");
    let be = Backend::start("slow", logs.path());
    let dead = free_port();
    let config = docs(&[
        stage("prod", "  apiType: REST\n"),
        route(
            "slow",
            "/slow",
            "[GET]",
            &format!(
                "{}    timeoutInMillis: 300\n",
                proxy(&format!("http://127.0.0.1:{}/delay/3000", be.port))
            ),
        ),
        route(
            "dead",
            "/dead",
            "[GET]",
            &proxy(&format!("http://127.0.0.1:{dead}/")),
        ),
        route(
            "upload",
            "/upload",
            "[POST]",
            &proxy(&format!("http://127.0.0.1:{}/upload", be.port)),
        ),
    ]);
    let s = Stack::start("errors", &[("api.yaml", config)]);
    let c = http();
    let r = send(&c, "GET", &s.dataplane.url("/slow"), None);
    assert_eq!(
        (r.status, r.body.as_str()),
        (504, r#"{"message": "Endpoint request timed out"}"#)
    );
    assert_eq!(
        r.headers["x-amzn-errortype"],
        "InternalServerErrorException"
    );
    // A REST client may choose its request id (reference §3).
    let chosen = c
        .get(s.dataplane.url("/dead"))
        .header("x-amzn-requestid", "my-request-id")
        .send()
        .unwrap();
    assert_eq!(chosen.headers()["x-amzn-requestid"], "my-request-id");
    assert!(chosen.headers()["x-amz-apigw-id"]
        .to_str()
        .unwrap()
        .ends_with('='));
    // §3a R4: every recorded integration failure is a 500 (the flavour table's change).
    let r = send(&c, "GET", &s.dataplane.url("/dead"), None);
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, r#"{"message": "Internal server error"}"#)
    );
    // A body just under the limit goes through; one byte over is refused before the backend.
    let ok = c
        .post(s.dataplane.url("/upload"))
        .body(vec![b'x'; 1_000_000])
        .send()
        .unwrap();
    assert_eq!(ok.json::<Value>().unwrap()["bodyBytes"], 1_000_000);
    let big = c
        .post(s.dataplane.url("/upload"))
        .body(vec![b'x'; 10_485_761])
        .send()
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(
        big.text().unwrap(),
        "HTTP content length exceeded 10485760 bytes."
    );
}

/// HTTP/2 without TLS (prior knowledge) is served on the plain listener.
#[test]
fn h2c_clients_are_served() {
    let s = Stack::start(
        "h2c",
        &[(
            "api.yaml",
            docs(&[
                stage("prod", ""),
                route("m", "/m", "[GET]", &mock(200, "over h2")),
            ]),
        )],
    );
    install_crypto();
    let c = Client::builder().http2_prior_knowledge().build().unwrap();
    let r = c.get(s.dataplane.url("/m")).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().unwrap(), "over h2");
}

fn tls_secret(name: &str, host: &str) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let pem = cert.cert.pem();
    let key = cert.signing_key.serialize_pem();
    let indent = |s: &str| {
        s.lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}\n  tls.key: |\n{}\n",
        indent(&pem),
        indent(&key)
    );
    (yaml, pem)
}

fn tls_client(root_pem: &str, host: &str, port: u16) -> Client {
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(root_pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let mut tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Client::builder()
        .use_preconfigured_tls(tls)
        .resolve(host, addr(port))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// TLS termination: each stage's certificate is chosen by SNI; HTTP/2 is negotiated by ALPN.
#[test]
fn tls_certificates_follow_sni() {
    let (secret_a, pem_a) = tls_secret("cert-a", "a.example.test");
    let (secret_b, pem_b) = tls_secret("cert-b", "b.example.test");
    let config = docs(&[
        secret_a,
        secret_b,
        "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: a\nspec:\n  api: a\n  hostnames: [a.example.test]\n  tls:\n    certificateRef:\n      name: cert-a\n".into(),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: b\nspec:\n  api: b\n  hostnames: [b.example.test]\n  tls:\n    certificateRef:\n      name: cert-b\n".into(),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: a\nspec:\n  api: a\n  path: /who\n  integration:\n    type: MOCK\n    mock:\n      body: stage-a\n".into(),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: b\nspec:\n  api: b\n  path: /who\n  integration:\n    type: MOCK\n    mock:\n      body: stage-b\n".into(),
    ]);
    let s = Stack::start_mtls("tls", &[("tls.yaml", config)]);
    let port = s.dataplane.tls_port;
    let a = tls_client(&pem_a, "a.example.test", port);
    let r = a
        .get(format!("https://a.example.test:{port}/who"))
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.text().unwrap(), "stage-a");
    let b = tls_client(&pem_b, "b.example.test", port);
    assert_eq!(
        b.get(format!("https://b.example.test:{port}/who"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
        "stage-b"
    );
    // Trusting only A's certificate, B's host name must fail verification: SNI chose B's.
    let a_for_b = tls_client(&pem_a, "b.example.test", port);
    assert!(a_for_b
        .get(format!("https://b.example.test:{port}/who"))
        .send()
        .is_err());
    // The private keys never reach the controller's status or logs.
    let status = s.controller.status().to_string();
    assert!(!status.contains("PRIVATE KEY"));
    assert!(!s.controller.proc.log_text().contains("PRIVATE KEY"));
    assert!(!s.dataplane.proc.log_text().contains("PRIVATE KEY"));
}

/// One answer seen by a looping client: when its request started and ended, and the body of a
/// 200 (or what went wrong instead).
struct Seen {
    start: Instant,
    end: Instant,
    answer: Result<String, String>,
}

/// Editing a file while clients loop: no request fails, and the answers come in order. Every
/// answer before the edit is v1; each client sees v1, then v2, and never v1 again; and once any
/// client has had v2, no request started later gets v1. (How long the edit takes to be served
/// is a benchmark figure, not asserted here: `bench/live-edit.sh`.)
#[test]
fn live_edit_is_served_in_order_without_failures() {
    let v = |body: &str| {
        docs(&[
            stage("prod", ""),
            route("hello", "/hello", "[GET]", &mock(200, body)),
        ])
    };
    let s = Stack::start("live", &[("api.yaml", v("v1"))]);
    let url = s.dataplane.url("/hello");
    let stop = Arc::new(AtomicBool::new(false));
    let seen_v2 = Arc::new(AtomicBool::new(false));
    let loopers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen_v2, url) = (stop.clone(), seen_v2.clone(), url.clone());
            std::thread::spawn(move || {
                let c = http();
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let answer = match c.get(&url).send() {
                        Ok(r) if r.status() == 200 => r.text().map_err(|e| e.to_string()),
                        Ok(r) => Err(format!("status {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    };
                    if answer.as_deref() == Ok("v2") {
                        seen_v2.store(true, Ordering::Relaxed);
                    }
                    seen.push(Seen {
                        start,
                        end: Instant::now(),
                        answer,
                    });
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let edited = Instant::now();
    s.write("api.yaml", &v("v2"));
    // A bound against hanging, not a latency requirement.
    wait_for("v2 to be served", Duration::from_secs(30), || {
        seen_v2.load(Ordering::Relaxed).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let clients: Vec<Vec<Seen>> = loopers.into_iter().map(|t| t.join().unwrap()).collect();
    let all = || clients.iter().flatten();
    let failed: Vec<&String> = all().filter_map(|x| x.answer.as_ref().err()).collect();
    let total = all().count();
    eprintln!("{total} requests, {} failed", failed.len());
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(total > 10, "only {total} requests");
    for x in all() {
        let body = x.answer.as_deref().unwrap();
        assert!(body == "v1" || body == "v2", "unexpected body {body:?}");
        if x.end < edited {
            assert_eq!(body, "v1", "answered before the edit");
        }
    }
    for (i, seen) in clients.iter().enumerate() {
        let bodies: Vec<&str> = seen.iter().map(|x| x.answer.as_deref().unwrap()).collect();
        let first_v2 = bodies.iter().position(|b| *b == "v2");
        let Some(first_v2) = first_v2 else {
            panic!("client {i} never saw v2: {} answers", bodies.len())
        };
        assert!(first_v2 > 0, "client {i} saw v2 first");
        assert!(
            bodies[first_v2..].iter().all(|b| *b == "v2"),
            "client {i} went back to v1 after v2: {bodies:?}"
        );
    }
    let first_v2_end = all()
        .filter(|x| x.answer.as_deref() == Ok("v2"))
        .map(|x| x.end)
        .min()
        .unwrap();
    let late_v1 = all()
        .filter(|x| x.start > first_v2_end && x.answer.as_deref() == Ok("v1"))
        .count();
    assert_eq!(late_v1, 0, "requests started after v2 was served got v1");
}

/// How long a file edit takes to be served, for `bench/live-edit.sh`: `BENCH_EDITS` (default
/// 30) edits of one route's mock body, each timed from just before the file is replaced to the
/// first answer with the new body (a client polling in a loop). Prints one `BENCH live_edit`
/// line; asserts only that every edit is served.
#[test]
#[ignore = "a benchmark: bench/live-edit.sh runs it"]
fn live_edit_latency() {
    let edits: usize = std::env::var("BENCH_EDITS")
        .ok()
        .map_or(30, |v| v.parse().expect("BENCH_EDITS must be a number"));
    assert!(edits > 0, "BENCH_EDITS must be positive");
    let v = |body: &str| {
        docs(&[
            stage("prod", ""),
            route("hello", "/hello", "[GET]", &mock(200, body)),
        ])
    };
    let s = Stack::start("live-bench", &[("api.yaml", v("v0"))]);
    let url = s.dataplane.url("/hello");
    let c = http();
    let mut ms: Vec<f64> = Vec::with_capacity(edits);
    let mut requests = 0usize;
    for i in 1..=edits {
        let body = format!("v{i}");
        // Let the previous edit settle, so that every edit starts from a quiet controller.
        std::thread::sleep(Duration::from_millis(250));
        let edited = Instant::now();
        s.write("api.yaml", &v(&body));
        // Back to back, no sleep: each poll is a keep-alive request of well under a ms.
        let served = loop {
            requests += 1;
            let text = c.get(&url).send().and_then(|r| r.text());
            if text.as_deref().is_ok_and(|t| *t == body) {
                break Instant::now();
            }
            assert!(
                edited.elapsed() < Duration::from_secs(30),
                "{body} not served after 30 s: {text:?}"
            );
        };
        ms.push(served.duration_since(edited).as_secs_f64() * 1000.0);
    }
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    eprintln!("edit -> served, ms: {ms:.1?}");
    println!(
        "BENCH live_edit edits={edits} p50_ms={:.1} p90_ms={:.1} p99_ms={:.1} max_ms={:.1} min_ms={:.1} requests={requests}",
        pick(0.5),
        pick(0.9),
        pick(0.99),
        sorted[sorted.len() - 1],
        sorted[0],
    );
}

/// A malformed file is reported with file and line; the previous config keeps serving.
#[test]
fn malformed_file_is_reported_and_previous_config_keeps_serving() {
    let good = docs(&[
        stage("prod", ""),
        route("hello", "/hello", "[GET]", &mock(200, "still here")),
    ]);
    let s = Stack::start(
        "malformed",
        &[
            ("api.yaml", good),
            (
                "other.yaml",
                route("other", "/other", "[GET]", &mock(200, "other")),
            ),
        ],
    );
    let before = s.controller.hash().unwrap();
    s.write("api.yaml", "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: prod\nspec:\n  api: [unclosed\n");
    let problem = wait_for(
        "the file problem on /status",
        Duration::from_secs(5),
        || {
            s.controller.status()["files"]
                .as_array()?
                .iter()
                .find(|f| f["file"].as_str().is_some_and(|n| n.ends_with("api.yaml")))
                .cloned()
        },
    );
    assert!(
        problem["line"].as_u64().is_some_and(|l| l >= 5),
        "{problem}"
    );
    assert!(!problem["message"].as_str().unwrap().is_empty());
    assert!(
        s.controller.proc.log_text().contains("api.yaml"),
        "the controller log names the file"
    );
    // The rest of the directory still updates, and api.yaml's last good objects stay served.
    s.write(
        "other.yaml",
        &route("other", "/other", "[GET]", &mock(200, "other v2")),
    );
    let c = http();
    wait_for("other.yaml change", Duration::from_secs(5), || {
        (send(&c, "GET", &s.dataplane.url("/other"), None).body == "other v2").then_some(())
    });
    assert_ne!(s.controller.hash().unwrap(), before);
    assert_eq!(
        send(&c, "GET", &s.dataplane.url("/hello"), None).body,
        "still here"
    );
}

/// A controller outage never takes the API down; a dataplane restarted during the outage
/// serves from its state directory.
#[test]
fn controller_outage_keeps_serving_and_restart_uses_state_dir() {
    let mut s = Stack::start(
        "outage",
        &[(
            "api.yaml",
            docs(&[
                stage("prod", ""),
                route("hello", "/hello", "[GET]", &mock(200, "up")),
            ]),
        )],
    );
    let c = http();
    s.controller.proc.kill();
    // Keep the dead controller's port from being taken by another test's process.
    let blocker = PortBlocker::hold(s.controller.port);
    for _ in 0..20 {
        assert_eq!(send(&c, "GET", &s.dataplane.url("/hello"), None).body, "up");
    }
    s.dataplane.proc.kill();
    let restarted = Dataplane::start(&s.controller.url(""), &s.state, s.dir.path());
    let r = wait_for(
        "restarted dataplane to serve from its state dir",
        Duration::from_secs(10),
        || client_get(&c, &restarted.url("/hello")).filter(|(st, _)| *st == 200),
    );
    assert_eq!(r.1, "up");
    assert!(restarted.proc.log_text().contains("state directory"));
    assert_eq!(
        c.get(restarted.admin("/readyz")).send().unwrap().status(),
        200
    );
    // The controller comes back on the same port with a change: the dataplane follows it.
    s.write(
        "api.yaml",
        &docs(&[
            stage("prod", ""),
            route("hello", "/hello", "[GET]", &mock(200, "back")),
        ]),
    );
    drop(blocker);
    let controller = Controller::start_on(&s.manifests, s.dir.path(), s.controller.port);
    restarted.wait_synced(&controller);
    assert_eq!(send(&c, "GET", &restarted.url("/hello"), None).body, "back");
}

fn client_get(c: &Client, url: &str) -> Option<(u16, String)> {
    let r = c.get(url).send().ok()?;
    Some((r.status().as_u16(), r.text().ok()?))
}

/// Until the first snapshot the dataplane is not ready and answers 503.
#[test]
fn dataplane_is_not_ready_before_its_first_snapshot() {
    let dir = TempDir::new("notready");
    let d = Dataplane::start(
        &format!("http://127.0.0.1:{}", free_port()),
        &dir.path().join("state"),
        dir.path(),
    );
    let c = http();
    assert_eq!(c.get(d.admin("/readyz")).send().unwrap().status(), 503);
    assert_eq!(c.get(d.url("/x")).send().unwrap().status(), 503);
}

/// Upstream connections are pooled and kept alive; `http2: true` speaks h2c to the backend.
#[test]
fn upstream_connections_are_reused_and_h2c_is_spoken() {
    let logs = TempDir::new("pool-logs");
    let be = Backend::start("pool", logs.path());
    let config = docs(&[
        stage("prod", ""),
        route(
            "h1",
            "/h1",
            "[GET]",
            &proxy(&format!("http://127.0.0.1:{}/h1", be.port)),
        ),
        route(
            "h2",
            "/h2",
            "[GET]",
            &format!(
                "{}    http2: true\n",
                proxy(&format!("http://127.0.0.1:{}/h2", be.port))
            ),
        ),
    ]);
    let s = Stack::start("pool", &[("api.yaml", config)]);
    let c = http();
    for (path, version) in [("/h1", "HTTP/1.1"), ("/h2", "HTTP/2.0")] {
        let peers: std::collections::BTreeSet<String> = (0..10)
            .map(|_| {
                let j = send(&c, "GET", &s.dataplane.url(path), None).json();
                assert_eq!(j["version"], version, "{path}");
                j["peer"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            peers.len(),
            1,
            "{path}: 10 sequential requests should share one upstream connection: {peers:?}"
        );
    }
}

/// A body without a declared length is cut at 10 MB as it streams (reference §17).
#[test]
fn chunked_bodies_over_ten_megabytes_are_refused() {
    let logs = TempDir::new("chunked-logs");
    let be = Backend::start("sink", logs.path());
    let config = docs(&[
        stage("prod", ""),
        route(
            "up",
            "/up",
            "[POST]",
            &proxy(&format!("http://127.0.0.1:{}/up", be.port)),
        ),
    ]);
    let s = Stack::start("chunked", &[("api.yaml", config)]);
    let c = http();
    let chunked = |n: usize| reqwest::blocking::Body::new(std::io::Cursor::new(vec![b'y'; n]));
    let ok = c
        .post(s.dataplane.url("/up"))
        .body(chunked(2_000_000))
        .send()
        .unwrap();
    assert_eq!(ok.json::<Value>().unwrap()["bodyBytes"], 2_000_000);
    let big = c
        .post(s.dataplane.url("/up"))
        .body(chunked(10_485_761))
        .send()
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(
        big.text().unwrap(),
        "HTTP content length exceeded 10485760 bytes."
    );
}

/// SIGTERM lets a request in flight finish, then the dataplane exits.
#[test]
fn sigterm_drains_requests_in_flight() {
    let logs = TempDir::new("drain-logs");
    let be = Backend::start("slow", logs.path());
    let config = docs(&[
        stage("prod", ""),
        route(
            "slow",
            "/slow",
            "[GET]",
            &proxy(&format!("http://127.0.0.1:{}/delay/1500", be.port)),
        ),
    ]);
    let mut s = Stack::start("drain", &[("api.yaml", config)]);
    let url = s.dataplane.url("/slow");
    let in_flight = std::thread::spawn(move || {
        let r = http().get(url).send().unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap()["path"].clone(),
        )
    });
    // Signal only once the request has reached the backend: an established connection to
    // the backend's port shows in /proc/net/tcp (remote port in hex, state 01).
    let port_hex = format!(":{:04X}", be.port);
    wait_for(
        "the request to reach the backend",
        Duration::from_secs(10),
        || {
            let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
            tcp.lines()
                .skip(1)
                .any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.get(2).is_some_and(|r| r.ends_with(&port_hex)) && f.get(3) == Some(&"01")
                })
                .then_some(())
        },
    );
    assert!(
        s.dataplane.proc.terminate(Duration::from_secs(20)),
        "the dataplane did not exit after SIGTERM"
    );
    assert_eq!(in_flight.join().unwrap(), (200, Value::from("/delay/1500")));
    assert!(s.dataplane.proc.log_text().contains("draining"));
}

/// With `--drain-delay`, SIGTERM first turns `/readyz` to 503 (load balancers take the pod out)
/// while requests are still served, and only then do the listeners close.
#[test]
fn sigterm_with_a_drain_delay_keeps_serving_while_readyz_says_503() {
    let mut s = Stack::start(
        "drain-delay",
        &[(
            "api.yaml",
            docs(&[
                stage("prod", ""),
                route("hi", "/hi", "[GET]", &mock(200, "hi")),
            ]),
        )],
    );
    // A dataplane of its own with the delay, next to the stack's.
    let state = s.dir.path().join("state-drain");
    let mut d = Dataplane::start_with(
        &s.controller.url(""),
        &state,
        s.dir.path(),
        &["--drain-delay".into(), "3".into()],
    );
    d.wait_synced(&s.controller);
    let c = http();
    assert_eq!(c.get(d.admin("/readyz")).send().unwrap().status(), 200);
    let pid = d.proc.pid().unwrap().to_string();
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("/readyz to answer 503", Duration::from_secs(2), || {
        let r = c.get(d.admin("/readyz")).send().ok()?;
        (r.status() == 503).then(|| r.text().unwrap())
    });
    // Still serving, on new connections too, until the delay is over.
    let mut served = 0;
    while signalled.elapsed() < Duration::from_millis(2_500) {
        // A client per request: a new connection each time.
        let r = http().get(d.url("/hi")).send().unwrap();
        assert_eq!(
            r.status(),
            200,
            "refused {:?} after SIGTERM",
            signalled.elapsed()
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(served >= 10, "{served}");
    assert!(
        d.proc.wait_exit(Duration::from_secs(10)).is_some(),
        "the dataplane did not exit after the drain delay"
    );
    let took = signalled.elapsed();
    assert!(took >= Duration::from_secs(3), "exited after {took:?}");
    assert!(d
        .proc
        .log_text()
        .contains("still serving until the drain delay ends"));
    s.dataplane.proc.terminate(Duration::from_secs(10));
}

const TOO_MANY: &str = r#"{"message":"Too Many Requests"}"#;

/// Reference §1: a route's and a Stage's token buckets over real sockets — exactly burst +
/// rate × seconds get a 200, the rest AWS's 429 — and an edit of another object resets nothing.
#[test]
fn throttles_hold_exactly_and_an_unrelated_edit_resets_nothing() {
    let throttled = |rate: &str, burst: u32| {
        format!("  throttle:\n    rateLimit: {rate}\n    burstLimit: {burst}\n")
    };
    let files = |other_body: &str| {
        docs(&[
            stage("prod", "  apiType: REST\n"),
            route("slow", "/slow", "[GET]", &mock(200, "slow")) + &throttled("0.1", 5),
            route("busy", "/busy", "[GET]", &mock(200, "busy")) + &throttled("20", 10),
            route("other", "/other", "[GET]", &mock(200, other_body)),
        ])
    };
    let s = Stack::start("throttle", &[("api.yaml", files("v1"))]);
    let c = http();
    let url = |p: &str| s.dataplane.url(p);

    // One token every 10 s, 5 at once: 8 quick calls give 5 × 200 and 3 × AWS's 429.
    let first = Instant::now();
    let slow: Vec<Resp> = (0..8)
        .map(|_| send(&c, "GET", &url("/slow"), None))
        .collect();
    let ok = slow.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 5 + (first.elapsed().as_secs() / 10) as usize);
    let refused = slow.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(refused.body, TOO_MANY);
    assert_eq!(
        refused.headers["x-amzn-errortype"],
        "TooManyRequestsException"
    );
    assert!(refused.headers.contains_key("x-amzn-requestid"));

    // Editing another route is a new snapshot; the slow bucket stays spent.
    let before = s.controller.hash().unwrap();
    s.write("api.yaml", &files("v2"));
    wait_for("the edit to be served", Duration::from_secs(10), || {
        (send(&c, "GET", &url("/other"), None).body == "v2").then_some(())
    });
    assert_ne!(s.controller.hash().unwrap(), before);
    let after_edit = send(&c, "GET", &url("/slow"), None).status;
    let refills = first.elapsed().as_secs() / 10;
    assert!(
        after_edit == 429 || refills > 0,
        "the push reset the bucket: {after_edit}"
    );

    // 20 a second, 10 at once, from four clients for about 3 s: burst + rate × seconds.
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url, c) = (stop.clone(), url("/busy"), http());
            std::thread::spawn(move || {
                let (mut ok, mut limited) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    match send(&c, "GET", &url, None).status {
                        200 => ok += 1,
                        429 => limited += 1,
                        other => panic!("unexpected status {other}"),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (ok, limited) = workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let elapsed = start.elapsed().as_secs_f64();
    // The window runs from the first request to the last answer: at most `elapsed`.
    let most = 10 + (20.0 * elapsed).floor() as u64;
    assert!(limited > 0, "nothing was throttled in {elapsed:.2}s");
    assert!(
        ok <= most && ok + 2 >= most - (20.0 * 0.1) as u64,
        "{ok} × 200 in {elapsed:.2}s: want 10 + 20 × s = {most} (within the time the last \
         requests took)"
    );

    // The account-wide limit of a dataplane holds every route of every Stage, unthrottled
    // ones too: 5 at once, one every 10 s.
    let limited = Dataplane::start_with(
        &s.controller.url(""),
        &s.dir.path().join("state-account"),
        s.dir.path(),
        &["--account-rate-limit", "0.1", "--account-burst-limit", "5"].map(String::from),
    );
    limited.wait_synced(&s.controller);
    let first = Instant::now();
    let ok = (0..8)
        .filter(|i| {
            let path = if i % 2 == 0 { "/other" } else { "/busy" };
            send(&c, "GET", &limited.url(path), None).status == 200
        })
        .count();
    assert_eq!(ok, 5 + (first.elapsed().as_secs() / 10) as usize);
}

const KEY_A: &str = "PartnerAKeyValue0123456789abcdef";
const KEY_B: &str = "PartnerBKeyValue0123456789abcdef";

fn api_key_secret(name: &str, value: &str, enabled: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\ntype: tollhouse.dev/api-key\nmetadata:\n  name: {name}\n  namespace: default\n  labels: {{tollhouse.dev/usage-plan: gold}}\n  annotations: {{tollhouse.dev/enabled: \"{enabled}\"}}\nstringData:\n  key: {value}\n"
    )
}

fn send_key(c: &Client, url: &str, key: Option<&str>) -> Resp {
    let mut req = c.get(url);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Resp {
        status,
        headers,
        body: r.text().unwrap(),
    }
}

/// Reference §2 over real processes, from a directory of manifests: API keys in Secrets, a
/// UsagePlan with a per-key throttle and a daily quota, a route with apiKeyRequired. The 403
/// and both 429s are AWS's; the quota survives a push, a clean restart and a kill -9 (less at
/// most its last second); a disabled key is refused as soon as the edit is served; and no log
/// or status names a key's value.
#[test]
fn api_keys_plans_and_quotas_hold_across_pushes_and_restarts() {
    let files = |b_enabled: &str, other_body: &str| {
        docs(&[
            stage("prod", "  apiType: REST\n"),
            route("pets", "/pets", "[GET]", &mock(200, "pets")) + "  apiKeyRequired: true\n",
            route("other", "/other", "[GET]", &mock(200, other_body)),
            api_key_secret("partner-a", KEY_A, "true"),
            api_key_secret("partner-b", KEY_B, b_enabled),
            "apiVersion: tollhouse.dev/v1alpha1\nkind: UsagePlan\nmetadata:\n  name: gold\n  namespace: default\nspec:\n  apiStages:\n  - stage: prod\n  throttle: {rateLimit: 0.01, burstLimit: 4}\n  quota: {limit: 6, period: DAY}\n  apiKeySelector:\n    matchLabels: {tollhouse.dev/usage-plan: gold}\n".to_string(),
        ])
    };
    let mut s = Stack::start("api-keys", &[("api.yaml", files("true", "v1"))]);
    let c = http();
    let pets = s.dataplane.url("/pets");

    for key in [None, Some("UnknownKeyValue00000000000000000")] {
        let r = send_key(&c, &pets, key);
        assert_eq!(
            (r.status, r.body.as_str()),
            (403, r#"{"message":"Forbidden"}"#)
        );
        assert_eq!(r.headers["x-amzn-errortype"], "ForbiddenException");
    }
    // Burst 4, then AWS's THROTTLED: the per-key bucket refills once in 100 s.
    let statuses: Vec<u16> = (0..5)
        .map(|_| send_key(&c, &pets, Some(KEY_A)).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429]);
    // b has a bucket of its own.
    assert_eq!(send_key(&c, &pets, Some(KEY_B)).status, 200);

    // An edit of another route: a new snapshot, nothing reset (a is still throttled).
    s.write("api.yaml", &files("true", "v2"));
    wait_for("the edit to be served", Duration::from_secs(10), || {
        (send(&c, "GET", &s.dataplane.url("/other"), None).body == "v2").then_some(())
    });
    assert_eq!(send_key(&c, &pets, Some(KEY_A)).status, 429);

    // A clean restart keeps a's quota count (4 of 6): the buckets are new (full), the quota
    // is not. Two more, then AWS's Limit Exceeded.
    assert!(s.dataplane.proc.terminate(Duration::from_secs(10)));
    let logs = s.dir.path().to_path_buf();
    s.dataplane = Dataplane::start(&s.controller.url(""), &s.state, &logs);
    s.dataplane.wait_synced(&s.controller);
    let pets = s.dataplane.url("/pets");
    assert_eq!(send_key(&c, &pets, Some(KEY_A)).status, 200);
    assert_eq!(send_key(&c, &pets, Some(KEY_A)).status, 200);
    let over = send_key(&c, &pets, Some(KEY_A));
    assert_eq!(
        (over.status, over.body.as_str()),
        (429, r#"{"message":"Limit Exceeded"}"#)
    );
    assert_eq!(over.headers["x-amzn-errortype"], "LimitExceededException");

    // kill -9 a second after b's calls: the store has them (b: 1 + 3 = 4 of 6).
    for _ in 0..3 {
        assert_eq!(send_key(&c, &pets, Some(KEY_B)).status, 200);
    }
    std::thread::sleep(Duration::from_millis(2500));
    s.dataplane.proc.kill();
    s.dataplane = Dataplane::start(&s.controller.url(""), &s.state, &logs);
    s.dataplane.wait_synced(&s.controller);
    let pets = s.dataplane.url("/pets");
    let after: Vec<u16> = (0..4)
        .map(|_| send_key(&c, &pets, Some(KEY_B)).status)
        .collect();
    assert_eq!(
        after,
        [200, 200, 429, 429],
        "b's count was lost in the kill"
    );
    assert_eq!(send_key(&c, &pets, Some(KEY_A)).status, 429);

    // Disabling a key: refused as soon as the edit is served.
    s.write("api.yaml", &files("false", "v3"));
    wait_for(
        "the disabled key to be refused",
        Duration::from_secs(10),
        || (send_key(&c, &pets, Some(KEY_B)).status == 403).then_some(()),
    );

    // The plan's status, and no key value anywhere it could leak.
    let status = s.controller.status().to_string();
    assert!(
        status.contains(r#""kind":"UsagePlan","name":"gold""#)
            && status.contains("1 key(s) on Stage(s) prod"),
        "{status}"
    );
    for text in [
        status,
        s.controller.proc.log_text(),
        s.dataplane.proc.log_text(),
        reqwest::blocking::get(s.dataplane.admin("/metrics"))
            .unwrap()
            .text()
            .unwrap(),
    ] {
        assert!(!text.contains(KEY_A) && !text.contains(KEY_B));
    }
}
