#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The pipeline in-process: tables of snapshot + request → response, for both flavours, with
//! a real hyper backend on loopback where a case needs one. Every AWS behaviour names its
//! section of `shared/reference/aws-api-gateway.md` (§3a rows, R = recordings).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tollhouse_dataplane::access_log::AccessLogSink;
use tollhouse_dataplane::body::RequestBody;
use tollhouse_dataplane::compile::CompiledSnapshot;
use tollhouse_dataplane::context::Connection;
use tollhouse_dataplane::metrics::Metrics;
use tollhouse_dataplane::pipeline::{Gateway, Worker};
use tollhouse_dataplane::runtime::{FakeClock, Runtime};
use tollhouse_snapshot::{
    AccessLog, ApiKey, ApiKeySource, ApiType, HttpProxy, Integration, Mock, PlanStage, Route,
    Snapshot, SourceRef, Stage, Throttle, UsagePlan, Versioned,
};

fn src(kind: &str, name: &str) -> SourceRef {
    SourceRef {
        kind: kind.into(),
        namespace: "shop".into(),
        name: name.into(),
        generation: 1,
    }
}

fn proxy(uri: &str, timeout_ms: u32) -> Integration {
    Integration::HttpProxy(HttpProxy {
        uri: uri.into(),
        backend: None,
        timeout_ms,
        http2: false,
        request_parameters: Default::default(),
    })
}

fn mock(status: u16, body: &str) -> Integration {
    Integration::Mock(Mock {
        status_code: status,
        headers: BTreeMap::new(),
        body: body.into(),
    })
}

fn route(name: &str, path: &str, methods: &[&str], integration: Integration) -> Route {
    Route {
        source: src("ApiRoute", name),
        path: path.into(),
        methods: methods.iter().map(|m| m.to_string()).collect(),
        integration,
        throttle: None,
        api_key_required: false,
        authorization: None,
    }
}

/// The API every case runs against: a Stage `prod` at `/prod` of the given flavour, with a
/// proxied route, a greedy route, a MOCK, a query-mapped route, one with an undefined stage
/// variable, a dead backend and a slow one.
fn stage(api_type: ApiType, backend: SocketAddr, access_log: Option<&str>) -> Stage {
    let b = format!("http://{backend}");
    let mut variables = BTreeMap::new();
    variables.insert("backend".to_string(), backend.to_string());
    Stage {
        source: src("Stage", "prod"),
        api: "pets".into(),
        hostnames: vec![],
        base_path: "/prod".into(),
        variables,
        certificate: None,
        routes: vec![
            route(
                "get-pet",
                "/pets/{petId}",
                &["GET"],
                proxy("http://${stageVariables.backend}/pets/{petId}", 29_000),
            ),
            route(
                "files",
                "/files/{proxy+}",
                &["GET"],
                proxy(&format!("{b}/storage/{{proxy}}"), 29_000),
            ),
            route(
                "create-pet",
                "/pets",
                &["POST"],
                mock(201, r#"{"created":true}"#),
            ),
            route(
                "search",
                "/q/{id}",
                &["GET"],
                proxy(&format!("{b}/search?id={{id}}"), 29_000),
            ),
            route(
                "undefined",
                "/undefined",
                &["GET"],
                proxy("http://${stageVariables.nope}/x", 29_000),
            ),
            route(
                "dead",
                "/dead",
                &["GET"],
                proxy("http://127.0.0.1:1/x", 29_000),
            ),
            route("slow", "/slow", &["GET"], proxy(&format!("{b}/slow"), 100)),
        ],
        api_type,
        access_log: access_log.map(|f| AccessLog { format: f.into() }),
        throttle: None,
        api_key_source: ApiKeySource::Header,
        resource_policy: None,
    }
}

struct Rig {
    gateway: Arc<Gateway>,
    worker: Worker,
    logs: std::sync::mpsc::Receiver<String>,
    clock: Arc<FakeClock>,
}

fn rig(stages: Vec<Stage>) -> Rig {
    let (sink, logs) = AccessLogSink::channel(1024);
    let clock = Arc::new(FakeClock::at(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_583_349_317),
    ));
    let runtime = Runtime::new(Metrics::new(), sink).with_clock(clock.clone());
    let gateway = Arc::new(Gateway::new(runtime));
    apply(&gateway, 1, stages);
    Rig {
        worker: Worker::new(gateway.clone()).unwrap(),
        gateway,
        logs,
        clock,
    }
}

fn apply(gateway: &Gateway, version: u64, stages: Vec<Stage>) {
    apply_snapshot(
        gateway,
        version,
        Snapshot {
            stages,
            ..Snapshot::default()
        },
    );
}

fn apply_snapshot(gateway: &Gateway, version: u64, snapshot: Snapshot) {
    let v = Versioned::new(version, snapshot);
    let c = CompiledSnapshot::compile(&v, &gateway.runtime).unwrap();
    assert!(
        c.left_out.is_empty() && c.notes.is_empty(),
        "{:?} {:?}",
        c.left_out,
        c.notes
    );
    gateway.apply(c.snapshot);
}

/// An echo backend: answers with the method, path and headers it received as JSON, and
/// headers of its own that a REST API remaps; `/slow` answers after a second.
async fn backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        let headers: BTreeMap<String, String> = req
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect();
                        let body = serde_json::json!({
                            "method": req.method().as_str(),
                            "path": req.uri().path_and_query().map(|p| p.as_str()),
                            "headers": headers,
                        })
                        .to_string();
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .header("server", "echo/1")
                                .header("x-amzn-requestid", "backend-id")
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn conn() -> std::sync::Arc<Connection> {
    std::sync::Arc::new(Connection::new(
        "192.0.2.7:40000".parse().unwrap(),
        "127.0.0.1:8080".parse().unwrap(),
        false,
    ))
}

fn get(path: &str) -> Request<RequestBody> {
    Request::builder()
        .uri(path)
        .header("host", "api.example.com")
        .header("user-agent", "table/1")
        .body(RequestBody::empty())
        .unwrap()
}

struct Seen {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(rig: &Rig, req: Request<RequestBody>) -> Seen {
    let resp = rig.worker.handle(req, conn()).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Seen {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// One row: request, then the status and body each flavour answers.
struct Row {
    what: &'static str,
    req: fn() -> Request<RequestBody>,
    http: (u16, Option<&'static str>),
    rest: (u16, Option<&'static str>),
}

const MAT: &str = r#"{"message":"Missing Authentication Token"}"#;
const NOT_FOUND: &str = r#"{"message":"Not Found"}"#;

fn rows() -> Vec<Row> {
    vec![
        // §3a R1: unknown path and known path with an undefined method.
        Row {
            what: "unknown path",
            req: || get("/prod/nothing"),
            http: (404, Some(NOT_FOUND)),
            rest: (403, Some(MAT)),
        },
        Row {
            what: "undefined method",
            req: || {
                Request::builder()
                    .method("DELETE")
                    .uri("/prod/pets")
                    .header("host", "h")
                    .body(RequestBody::empty())
                    .unwrap()
            },
            http: (404, Some(NOT_FOUND)),
            rest: (403, Some(MAT)),
        },
        Row {
            what: "outside every stage",
            req: || get("/other/pets/1"),
            http: (404, Some(NOT_FOUND)),
            rest: (403, Some(MAT)),
        },
        // §3a: MOCK.
        Row {
            what: "mock",
            req: || {
                Request::builder()
                    .method("POST")
                    .uri("/prod/pets")
                    .header("host", "h")
                    .body(RequestBody::empty())
                    .unwrap()
            },
            http: (201, Some(r#"{"created":true}"#)),
            rest: (201, Some(r#"{"created":true}"#)),
        },
        // §3a R7: an undefined stage variable: the route is served and the call fails.
        Row {
            what: "undefined stage variable",
            req: || get("/prod/undefined"),
            http: (500, Some(r#"{"message":"Internal Server Error"}"#)),
            rest: (500, Some(r#"{"message": "Internal server error"}"#)),
        },
        // §3a R4: integration failure.
        Row {
            what: "integration failure",
            req: || get("/prod/dead"),
            http: (500, Some(r#"{"message":"Internal Server Error"}"#)),
            rest: (500, Some(r#"{"message": "Internal server error"}"#)),
        },
        // §3a T4 / §3: integration timeout.
        Row {
            what: "integration timeout",
            req: || get("/prod/slow"),
            http: (503, Some(r#"{"message":"Service Unavailable"}"#)),
            rest: (504, Some(r#"{"message": "Endpoint request timed out"}"#)),
        },
        // §3a T2: over 10 MB, before routing, for MOCK and unknown routes alike.
        Row {
            what: "413 on a mock",
            req: || {
                Request::builder()
                    .method("POST")
                    .uri("/prod/pets")
                    .header("host", "h")
                    .header("content-length", "10485761")
                    .body(RequestBody::empty())
                    .unwrap()
            },
            http: (413, Some("HTTP content length exceeded 10485760 bytes.")),
            rest: (413, Some("HTTP content length exceeded 10485760 bytes.")),
        },
        Row {
            what: "413 on no route",
            req: || {
                Request::builder()
                    .method("PUT")
                    .uri("/prod/none")
                    .header("host", "h")
                    .header("content-length", "20000000")
                    .body(RequestBody::empty())
                    .unwrap()
            },
            http: (413, Some("HTTP content length exceeded 10485760 bytes.")),
            rest: (413, Some("HTTP content length exceeded 10485760 bytes.")),
        },
        // RFC 9112 §6.1 and §3.2.
        Row {
            what: "content-length with transfer-encoding",
            req: || {
                Request::builder()
                    .method("POST")
                    .uri("/prod/pets")
                    .header("host", "h")
                    .header("content-length", "3")
                    .header("transfer-encoding", "chunked")
                    .body(RequestBody::empty())
                    .unwrap()
            },
            http: (400, None),
            rest: (400, None),
        },
        Row {
            what: "HTTP/1.1 without Host",
            req: || {
                Request::builder()
                    .uri("/prod/pets/1")
                    .body(RequestBody::empty())
                    .unwrap()
            },
            http: (400, None),
            rest: (400, None),
        },
        // The traversal of the issue, in three spellings: resolved before routing, so the
        // greedy route never sees `..` and nothing reaches `/etc/passwd`.
        Row {
            what: "dot-dot traversal",
            req: || get("/prod/files/a/../../etc/passwd"),
            http: (404, Some(NOT_FOUND)),
            rest: (403, Some(MAT)),
        },
        Row {
            what: "encoded traversal",
            req: || get("/prod/files/a/%2e%2e/%2E%2E/etc/passwd"),
            http: (404, Some(NOT_FOUND)),
            rest: (403, Some(MAT)),
        },
        Row {
            what: "traversal behind an encoded slash",
            req: || get("/prod/files/a/.%2e/..%2F/etc/passwd"),
            http: (400, None),
            rest: (400, None),
        },
        // §8: a trailing slash is ignored; §3a R8: leading duplicate slashes collapse.
        Row {
            what: "trailing slash",
            req: || get("/prod/pets/7/"),
            http: (200, None),
            rest: (200, None),
        },
        Row {
            what: "leading double slash",
            req: || get("//prod/pets/7"),
            http: (200, None),
            rest: (200, None),
        },
        Row {
            what: "double slash after the stage",
            req: || get("/prod//pets/7"),
            http: (200, None),
            rest: (200, None),
        },
        // §17: headers and URL over 10,240 bytes.
        Row {
            what: "headers too large",
            req: || {
                Request::builder()
                    .uri("/prod/pets/1")
                    .header("host", "h")
                    .header("x-big", "a".repeat(10_240))
                    .body(RequestBody::empty())
                    .unwrap()
            },
            http: (431, None),
            rest: (431, None),
        },
        Row {
            what: "URL too long",
            req: || get(&format!("/prod/pets/{}", "a".repeat(10_240))),
            http: (414, None),
            rest: (414, None),
        },
    ]
}

#[tokio::test]
async fn both_flavours_answer_as_aws_does() {
    let addr = backend().await;
    for (flavour, api_type) in [("HTTP", ApiType::Http), ("REST", ApiType::Rest)] {
        let rig = rig(vec![stage(api_type, addr, None)]);
        for row in rows() {
            let seen = send(&rig, (row.req)()).await;
            let (status, body) = if flavour == "HTTP" {
                row.http
            } else {
                row.rest
            };
            assert_eq!(seen.status, status, "{flavour} {}: {}", row.what, seen.body);
            if let Some(b) = body {
                assert_eq!(seen.body, b, "{flavour} {}", row.what);
                if seen.status >= 400 {
                    assert_eq!(
                        seen.header("content-length"),
                        Some(b.len().to_string().as_str()),
                        "{flavour} {}",
                        row.what
                    );
                }
            }
            // §3a: request ids by flavour on every response but the front end's.
            let front_end = matches!(seen.status, 400 | 413 | 414 | 431);
            let (rid, apigw, http_id) = (
                seen.header("x-amzn-requestid"),
                seen.header("x-amz-apigw-id"),
                seen.header("apigw-requestid"),
            );
            match (front_end, flavour) {
                (true, _) => assert!(
                    rid.is_none() && apigw.is_none() && http_id.is_none(),
                    "{flavour} {}",
                    row.what
                ),
                // An HTTP API passes the backend's own x-amzn-RequestId through.
                (false, "HTTP") => assert!(
                    rid.is_none_or(|r| r == "backend-id") && apigw.is_none() && http_id.is_some(),
                    "{flavour} {}",
                    row.what
                ),
                (false, _) => {
                    assert_eq!(rid.map(str::len), Some(36), "{flavour} {}", row.what);
                    assert!(
                        apigw.is_some_and(|a| a.ends_with('=')) && http_id.is_none(),
                        "{flavour} {}",
                        row.what
                    );
                }
            }
            if seen.status == 400 {
                assert_eq!(seen.header("connection"), Some("close"), "{}", row.what);
            }
            // x-amzn-ErrorType: REST errors only.
            let error_type = seen.header("x-amzn-errortype");
            match (flavour, seen.status) {
                ("REST", 403) => {
                    assert_eq!(error_type, Some("MissingAuthenticationTokenException"))
                }
                ("REST", 500 | 504) => assert_eq!(error_type, Some("InternalServerErrorException")),
                _ => assert_eq!(error_type, None, "{flavour} {}", row.what),
            }
        }
    }
}

/// §3a R3: MOCK is `application/json` without a trace id; R5/R6: what a REST backend receives
/// and what comes back remapped; HTTP APIs pass the backend's headers through.
#[tokio::test]
async fn headers_each_way_follow_the_flavour() {
    let addr = backend().await;
    let rest = rig(vec![stage(ApiType::Rest, addr, None)]);
    let m = send(
        &rest,
        Request::builder()
            .method("POST")
            .uri("/prod/pets")
            .header("host", "h")
            .body(RequestBody::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(m.header("content-type"), Some("application/json"));
    assert_eq!(m.header("x-amzn-trace-id"), None);

    let mut req = get("/prod/pets/42");
    req.headers_mut()
        .insert("x-amzn-requestid", "client-chosen".parse().unwrap());
    req.headers_mut()
        .insert("via", "p.example.net".parse().unwrap());
    let r = send(&rest, req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-amzn-requestid"), Some("client-chosen"));
    assert_eq!(r.header("x-amzn-remapped-server"), Some("echo/1"));
    assert_eq!(
        r.header("x-amzn-remapped-x-amzn-requestid"),
        Some("backend-id")
    );
    assert!(r.header("x-amzn-remapped-content-length").is_some());
    assert!(r.header("server").is_none());
    let trace = r.header("x-amzn-trace-id").unwrap().to_string();
    let echoed = r.json();
    let h = &echoed["headers"];
    assert_eq!(echoed["path"], "/pets/42");
    assert_eq!(h["x-amzn-apigateway-api-id"], "pets");
    assert_eq!(h["x-amzn-trace-id"], trace.as_str());
    assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    assert_eq!(h["x-forwarded-port"], "8080");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(h.get("x-forwarded-host").is_none() && h.get("via").is_none());

    let http = rig(vec![stage(ApiType::Http, addr, None)]);
    let r = send(&http, get("/prod/pets/42")).await;
    assert_eq!(r.header("server"), Some("echo/1"));
    assert_eq!(r.header("x-amzn-requestid"), Some("backend-id"));
    assert!(r.header("x-amzn-trace-id").is_none());
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-host"], "api.example.com");
    assert!(h["x-amzn-trace-id"]
        .as_str()
        .unwrap()
        .starts_with("Root=1-"));
}

/// Values substituted into the URI never add a segment or a query parameter; a greedy value
/// keeps its segments; `%2F` stays encoded.
#[tokio::test]
async fn parameter_values_cannot_reshape_the_upstream_uri() {
    let addr = backend().await;
    let rig = rig(vec![stage(ApiType::Http, addr, None)]);
    let path = |p: &'static str| {
        let rig = &rig;
        async move {
            send(rig, get(p)).await.json()["path"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert_eq!(
        path("/prod/q/1&admin=true").await,
        "/search?id=1%26admin%3Dtrue"
    );
    assert_eq!(path("/prod/q/a;b").await, "/search?id=a%3Bb");
    assert_eq!(path("/prod/files/a/b.txt").await, "/storage/a/b.txt");
    assert_eq!(path("/prod/pets/a%2Fb").await, "/pets/a%2Fb");
}

/// §14: AWS's JSON example format, one line per request, written from the context.
#[tokio::test]
async fn access_logs_render_the_context() {
    let addr = backend().await;
    let json = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","httpMethod":"$context.httpMethod","routeKey":"$context.routeKey","status":"$context.status","protocol":"$context.protocol","responseLength":"$context.responseLength","path":"$context.path","error":"$context.error.message","ua":"$context.identity.userAgent"}"#;
    let rig = rig(vec![stage(ApiType::Http, addr, Some(json))]);
    let mut req = get("/prod/nothing");
    req.headers_mut().insert(
        "user-agent",
        "evil\"\n{\"forged\":1}"
            .parse()
            .unwrap_or(http::HeaderValue::from_static("evil\"")),
    );
    let r = send(&rig, req).await;
    let line = rig.logs.try_recv().unwrap();
    assert!(!line.contains('\n'));
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["requestId"], r.header("apigw-requestid").unwrap());
    assert_eq!(v["ip"], "192.0.2.7");
    assert_eq!(v["requestTime"], "04/Mar/2020:19:15:17 +0000");
    assert_eq!(v["httpMethod"], "GET");
    assert_eq!(v["routeKey"], "-");
    assert_eq!(v["status"], "404");
    assert_eq!(v["protocol"], "HTTP/1.1");
    assert_eq!(v["responseLength"], "23");
    assert_eq!(v["path"], "/prod/nothing");
    assert_eq!(v["error"], "Not Found");

    rig.clock.advance(Duration::from_secs(60));
    send(&rig, get("/prod/pets/9")).await;
    let v: serde_json::Value = serde_json::from_str(&rig.logs.try_recv().unwrap()).unwrap();
    assert_eq!(v["routeKey"], "GET /pets/{petId}");
    assert_eq!(v["status"], "200");
    assert_eq!(v["requestTime"], "04/Mar/2020:19:16:17 +0000");
    assert_eq!(v["error"], "-");
    // A request outside every stage has no stage's format, so no line.
    send(&rig, get("/other")).await;
    assert!(rig.logs.try_recv().is_err());
}

/// A push keeps the state of everything it did not change: the route's request counter goes
/// on counting across a new snapshot that adds another route.
#[tokio::test]
async fn a_push_keeps_what_it_did_not_change() {
    let addr = backend().await;
    let rig = rig(vec![stage(ApiType::Http, addr, None)]);
    send(
        &rig,
        Request::builder()
            .method("POST")
            .uri("/prod/pets")
            .header("host", "h")
            .body(RequestBody::empty())
            .unwrap(),
    )
    .await;
    let mut changed = stage(ApiType::Http, addr, None);
    changed
        .routes
        .push(route("extra", "/extra", &["GET"], mock(200, "")));
    apply(&rig.gateway, 2, vec![changed]);
    send(
        &rig,
        Request::builder()
            .method("POST")
            .uri("/prod/pets")
            .header("host", "h")
            .body(RequestBody::empty())
            .unwrap(),
    )
    .await;
    let text = rig.gateway.runtime.metrics.encode();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("tollhouse_requests_total{")
                && l.contains("shop/create-pet")
                && l.contains("2xx")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with(" 2"), "{line}");
}

/// A Stage `limited` at `/lim` with a throttled MOCK route and an unthrottled one.
fn limited(api_type: ApiType, route_burst: u32) -> Stage {
    let throttle = |rate_limit, burst_limit| {
        Some(Throttle {
            rate_limit,
            burst_limit,
        })
    };
    let mut tight = route("tight", "/tight", &["GET"], mock(200, "tight"));
    tight.throttle = throttle(1.0, route_burst);
    Stage {
        source: src("Stage", "limited"),
        api: "lim".into(),
        hostnames: vec![],
        base_path: "/lim".into(),
        variables: BTreeMap::new(),
        certificate: None,
        routes: vec![tight, route("open", "/open", &["GET"], mock(200, "open"))],
        api_type,
        access_log: None,
        throttle: throttle(10.0, 3),
        api_key_source: ApiKeySource::Header,
        resource_policy: None,
    }
}

const TOO_MANY: &str = r#"{"message":"Too Many Requests"}"#;

/// §1, §3a T1: route then Stage buckets; a request refused by one spends nothing at the
/// others; AWS's 429 in both flavours; a push keeps what was spent.
#[tokio::test]
async fn route_and_stage_throttles_refuse_with_aws_429_and_survive_pushes() {
    for api_type in [ApiType::Rest, ApiType::Http] {
        let rig = rig(vec![limited(api_type, 2)]);
        assert_eq!(send(&rig, get("/lim/tight")).await.status, 200);
        assert_eq!(send(&rig, get("/lim/tight")).await.status, 200);
        let refused = send(&rig, get("/lim/tight")).await;
        assert_eq!(
            (refused.status, refused.body.as_str()),
            (429, TOO_MANY),
            "{api_type:?}"
        );
        assert_eq!(refused.header("content-type"), Some("application/json"));
        assert_eq!(refused.header("content-length"), Some("31"));
        assert!(refused.header("retry-after").is_none());
        match api_type {
            ApiType::Rest => {
                assert_eq!(
                    refused.header("x-amzn-errortype"),
                    Some("TooManyRequestsException")
                );
                assert!(refused.header("x-amzn-requestid").is_some());
                assert!(refused.header("x-amz-apigw-id").is_some());
                assert!(refused
                    .header("x-amzn-trace-id")
                    .unwrap()
                    .starts_with("Root=1-"));
            }
            ApiType::Http => {
                assert!(refused.header("apigw-requestid").is_some());
                assert!(refused.header("x-amzn-errortype").is_none());
            }
        }
        // The Stage (burst 3) gave two tokens to the route's 200s and none to its 429: one
        // is left for the other route, then the Stage refuses.
        assert_eq!(send(&rig, get("/lim/open")).await.status, 200);
        assert_eq!(send(&rig, get("/lim/open")).await.status, 429);
        // A push of the same Stage keeps the buckets: still refused.
        apply(&rig.gateway, 2, vec![limited(api_type, 2)]);
        assert_eq!(send(&rig, get("/lim/tight")).await.status, 429);
        // A second later the route has one token again, and the Stage ten more.
        rig.clock.advance(Duration::from_secs(1));
        assert_eq!(send(&rig, get("/lim/tight")).await.status, 200);
        assert_eq!(send(&rig, get("/lim/tight")).await.status, 429);
        // A bigger route burst keeps the tokens spent: 3 spent of 5, so 2 more.
        apply(&rig.gateway, 3, vec![limited(api_type, 5)]);
        assert_eq!(send(&rig, get("/lim/tight")).await.status, 200);
        assert_eq!(send(&rig, get("/lim/tight")).await.status, 200);
        assert_eq!(send(&rig, get("/lim/tight")).await.status, 429);
        let metrics = rig.gateway.runtime.metrics.encode();
        assert!(metrics.contains("throttled"), "{metrics}");
    }
}

/// The account-wide limit holds every Stage to one bucket, after theirs.
#[tokio::test]
async fn the_account_limit_is_shared_by_every_stage() {
    let (sink, _logs) = AccessLogSink::channel(16);
    let clock = Arc::new(FakeClock::at(SystemTime::UNIX_EPOCH));
    let runtime = Runtime::new(Metrics::new(), sink)
        .with_clock(clock.clone())
        .with_account_limit(tollhouse_dataplane::phases::throttle::Limit {
            rate: 1.0,
            burst: 3,
        });
    let gateway = Arc::new(Gateway::new(runtime));
    let mut open = limited(ApiType::Http, 2);
    open.throttle = None;
    apply(&gateway, 1, vec![open]);
    let rig = Rig {
        worker: Worker::new(gateway.clone()).unwrap(),
        gateway,
        logs: std::sync::mpsc::channel().1,
        clock,
    };
    let statuses: Vec<u16> = [
        send(&rig, get("/lim/open")).await.status,
        send(&rig, get("/lim/tight")).await.status,
        send(&rig, get("/lim/open")).await.status,
        send(&rig, get("/lim/open")).await.status,
    ]
    .to_vec();
    assert_eq!(statuses, [200, 200, 200, 429]);
    rig.clock.advance(Duration::from_secs(1));
    assert_eq!(send(&rig, get("/lim/open")).await.status, 200);
}

const FORBIDDEN: &str = r#"{"message":"Forbidden"}"#;
const KEY_A: &str = "PartnerAKeyValue0123456789";
const KEY_B: &str = "PartnerBKeyValue0123456789";

fn sha256(v: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(v.as_bytes()))
}

/// Stage `limited` with `/tight` and `/open` needing a key, and the plan `gold` holding keys
/// a and b to 3 a second per key (burst 3), and to burst 1 on `GET /tight`.
fn keyed(api_type: ApiType, plan_burst: u32) -> Snapshot {
    let mut stage = limited(api_type, 100);
    stage.throttle = None;
    for r in &mut stage.routes {
        r.api_key_required = true;
    }
    stage
        .routes
        .push(route("free", "/free", &["GET"], mock(200, "free")));
    let limit = |rate_limit, burst_limit| Throttle {
        rate_limit,
        burst_limit,
    };
    Snapshot {
        stages: vec![stage],
        usage_plans: vec![UsagePlan {
            source: src("UsagePlan", "gold"),
            stages: vec![PlanStage {
                stage: "shop/limited".into(),
                route_throttles: BTreeMap::from([("GET /tight".into(), limit(1.0, 1))]),
            }],
            throttle: Some(limit(3.0, plan_burst)),
            quota: None,
        }],
        api_keys: [("a", KEY_A), ("b", KEY_B)]
            .iter()
            .map(|(id, v)| ApiKey {
                id: format!("shop/{id}"),
                sha256: sha256(v),
                plans: vec!["shop/gold".into()],
            })
            .collect(),
        ..Snapshot::default()
    }
}

fn with_key(path: &str, key: &str) -> Request<RequestBody> {
    let mut r = get(path);
    r.headers_mut().insert("x-api-key", key.parse().unwrap());
    r
}

/// §2: a route with apiKeyRequired refuses a missing, unknown or revoked key with AWS's 403
/// (before any bucket is touched); each key has its own plan buckets, the plan's per-route
/// limit comes first, and a push keeps what each key spent.
#[tokio::test]
async fn api_keys_refuse_with_aws_403_and_hold_each_key_to_its_plan() {
    for api_type in [ApiType::Rest, ApiType::Http] {
        let rig = rig(vec![]);
        apply_snapshot(&rig.gateway, 1, keyed(api_type, 3));
        for req in [
            get("/lim/open"),
            with_key("/lim/open", "UnknownKeyValue000000000000"),
        ] {
            let refused = send(&rig, req).await;
            assert_eq!((refused.status, refused.body.as_str()), (403, FORBIDDEN));
            assert_eq!(refused.header("content-length"), Some("23"));
            match api_type {
                ApiType::Rest => {
                    assert_eq!(
                        refused.header("x-amzn-errortype"),
                        Some("ForbiddenException")
                    );
                    assert!(refused.header("x-amzn-requestid").is_some());
                }
                ApiType::Http => {
                    assert!(refused.header("x-amzn-errortype").is_none());
                    assert!(refused.header("apigw-requestid").is_some());
                }
            }
        }
        // A route without apiKeyRequired ignores keys, good or bad.
        assert_eq!(send(&rig, get("/lim/free")).await.status, 200);
        assert_eq!(
            send(&rig, with_key("/lim/free", "nonsense")).await.status,
            200
        );
        // The plan's GET /tight limit (burst 1) before its per-key limit (burst 3).
        assert_eq!(send(&rig, with_key("/lim/tight", KEY_A)).await.status, 200);
        let t = send(&rig, with_key("/lim/tight", KEY_A)).await;
        assert_eq!((t.status, t.body.as_str()), (429, TOO_MANY));
        // The refused request spent nothing of a's 3: two more on /open, then 429.
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 200);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 200);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 429);
        // b has buckets of its own.
        assert_eq!(send(&rig, with_key("/lim/tight", KEY_B)).await.status, 200);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_B)).await.status, 200);
        // A push with a bigger per-key burst keeps what a spent (3 of 5).
        apply_snapshot(&rig.gateway, 2, keyed(api_type, 5));
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 200);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 200);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 429);
        // Revoked (b left out of the snapshot): refused at once; a keeps its state.
        let mut revoked = keyed(api_type, 5);
        revoked.api_keys.retain(|k| k.id == "shop/a");
        apply_snapshot(&rig.gateway, 3, revoked);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_B)).await.status, 403);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 429);
        // A key in no plan covering the Stage: 403.
        let mut elsewhere = keyed(api_type, 5);
        elsewhere.usage_plans[0].stages[0].stage = "shop/other".into();
        apply_snapshot(&rig.gateway, 4, elsewhere);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 403);
        let metrics = rig.gateway.runtime.metrics.encode();
        assert!(metrics.contains("invalid_api_key"), "{metrics}");
        assert!(!metrics.contains(KEY_A) && !metrics.contains(&sha256(KEY_A)));
    }
}

const LIMIT_EXCEEDED: &str = r#"{"message":"Limit Exceeded"}"#;

/// §2: over its quota a key gets AWS's 429 Limit Exceeded (not THROTTLED's), spends nothing at
/// the throttles, and is served again when the UTC day rolls over; a push keeps the count.
#[tokio::test]
async fn a_key_over_its_quota_gets_limit_exceeded_until_the_period_rolls_over() {
    for api_type in [ApiType::Rest, ApiType::Http] {
        let rig = rig(vec![]);
        let with_quota = |limit| {
            let mut s = keyed(api_type, 100);
            s.usage_plans[0].quota = Some(tollhouse_snapshot::Quota {
                limit,
                period: tollhouse_snapshot::QuotaPeriod::Day,
                offset: 0,
                first_period: None,
            });
            s
        };
        apply_snapshot(&rig.gateway, 1, with_quota(3));
        for _ in 0..3 {
            assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 200);
        }
        let over = send(&rig, with_key("/lim/open", KEY_A)).await;
        assert_eq!((over.status, over.body.as_str()), (429, LIMIT_EXCEEDED));
        assert_eq!(over.header("content-length"), Some("28"));
        match api_type {
            ApiType::Rest => assert_eq!(
                over.header("x-amzn-errortype"),
                Some("LimitExceededException")
            ),
            ApiType::Http => assert!(over.header("x-amzn-errortype").is_none()),
        }
        // Refused by the quota, it spent nothing at the plan's GET /tight limit (burst 1).
        let t = send(&rig, with_key("/lim/tight", KEY_A)).await;
        assert_eq!((t.status, t.body.as_str()), (429, LIMIT_EXCEEDED));
        // b has a quota of its own.
        assert_eq!(send(&rig, with_key("/lim/open", KEY_B)).await.status, 200);
        // A push raising the limit keeps a's count: one more, and /tight still has its token.
        apply_snapshot(&rig.gateway, 2, with_quota(4));
        assert_eq!(send(&rig, with_key("/lim/tight", KEY_A)).await.status, 200);
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 429);
        // The clock stands at 1583349317 (19:15:17 UTC): 4 h 45 min to the next day.
        rig.clock
            .advance(Duration::from_secs(4 * 3600 + 44 * 60 + 42));
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 429);
        rig.clock.advance(Duration::from_secs(1));
        assert_eq!(send(&rig, with_key("/lim/open", KEY_A)).await.status, 200);
    }
}
