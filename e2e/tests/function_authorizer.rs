//! Function authorizers (AWS's Lambda authorizers, reference §5) over real processes: the
//! function is Lambda code on AWS Lambda Powertools (PyPI) behind an Invoke-API server
//! (`e2e/functions/authorizer.py`) that counts its calls. Powertools' data classes read the
//! events the dataplane sends and its `APIGatewayAuthorizerResponse` builds the IAM policies
//! from their method ARNs.
//!
//! Checked: TOKEN and REQUEST, REST's event and the HTTP API's 1.0 and 2.0 (their top-level
//! fields against the `aws_lambda_events` fixtures), simple and IAM-policy replies, TTL
//! caching (N requests → 1 call, a cached policy re-evaluated per method ARN), TTL 0,
//! concurrent misses making one call, the identity-validation expression and missing identity
//! sources (401 without a call), Unauthorized → 401, deny → 403, an allow that does not cover
//! the method → 403, function error / non-JSON / HTTP 500 / timeout → 500 (each flavour's
//! body), `usageIdentifierKey` as the API key of an `apiKeySource: AUTHORIZER` Stage, the
//! principal and context in the access log, and the cache kept across a push.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::function::Function;
use harness::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const PARTNER_KEY: &str = "PartnerKeyFromTheAuthorizer000000000000";

fn manifests(f: &Function, mock_body: &str, ttl: u32, backend: u16) -> String {
    let uri = f.uri();
    format!(
        r#"apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {{name: rest, namespace: shop}}
spec:
  api: rest-api
  apiType: REST
  basePath: /rest
  apiKeySource: AUTHORIZER
  variables: {{tenant: acme}}
  accessLog:
    format: '{{"requestId":"$context.requestId","status":"$context.status","principal":"$context.authorizer.principalId","user":"$context.authorizer.user","tier":"$context.authorizer.tier","n":"$context.authorizer.n","path":"$context.path"}}'
---
apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {{name: http, namespace: shop}}
spec:
  api: http-api
  apiType: HTTP
  basePath: /http
  variables: {{tenant: acme}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: token, namespace: shop}}
spec:
  type: TOKEN
  identitySource: [method.request.header.Authorization]
  function:
    uri: {uri}
    resultTtlInSeconds: {ttl}
    identityValidationExpression: "^Bearer [-0-9a-zA-Z\\._:]*$"
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: nocache, namespace: shop}}
spec:
  type: TOKEN
  function: {{uri: {uri}, resultTtlInSeconds: 0}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: quick, namespace: shop}}
spec:
  type: TOKEN
  function: {{uri: {uri}, timeoutInMillis: 500}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: req, namespace: shop}}
spec:
  type: REQUEST
  identitySource: [$request.header.Authorization, $stageVariables.tenant]
  function: {{uri: {uri}, payloadFormatVersion: "1.0"}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: simple, namespace: shop}}
spec:
  type: REQUEST
  identitySource: [$request.header.Authorization]
  function: {{uri: {uri}, payloadFormatVersion: "2.0", enableSimpleResponses: true}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: policy2, namespace: shop}}
spec:
  type: REQUEST
  identitySource: [$request.header.Authorization, $request.querystring.v]
  function: {{uri: {uri}}}
---
apiVersion: v1
kind: Secret
type: tollhouse.dev/api-key
metadata:
  name: partner
  namespace: shop
  labels: {{tollhouse.dev/usage-plan: partners}}
stringData:
  key: {PARTNER_KEY}
---
apiVersion: tollhouse.dev/v1alpha1
kind: UsagePlan
metadata: {{name: partners, namespace: shop}}
spec:
  apiStages: [{{stage: rest}}]
  apiKeySelector:
    matchLabels: {{tollhouse.dev/usage-plan: partners}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: mapped, namespace: shop}}
spec:
  api: rest-api
  path: /mapped/{{id}}
  authorization: {{authorizerRef: {{name: token}}}}
  integration:
    type: HTTP_PROXY
    uri: http://127.0.0.1:{backend}/orig
    requestParameters:
      "append:header.x-user": "$context.authorizer.principalId"
      "overwrite:header.x-tier": "tier=$context.authorizer.tier; n=$context.authorizer.n"
      "overwrite:header.x-route": "$context.routeKey $request.path.id $stageVariables.tenant"
      "remove:header.authorization": "''"
      "overwrite:path": "/v2/pets/$request.path.id"
      "append:querystring.tenant": "$stageVariables.tenant"
      "remove:querystring.secret": "''"
{routes}"#,
        routes = [
            ("rest-api", "pets", "/pets/{id}", "token", false),
            ("rest-api", "keyed", "/keyed", "token", true),
            ("rest-api", "nocache", "/nocache", "nocache", false),
            ("rest-api", "quick", "/quick", "quick", false),
            ("rest-api", "req", "/req/{id}", "req", false),
            ("http-api", "simple", "/simple/{id}", "simple", false),
            ("http-api", "v1", "/v1", "req", false),
            ("http-api", "v2", "/v2/{id}", "policy2", false),
        ]
        .iter()
        .map(|(api, name, path, authorizer, keyed)| format!(
            "---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: {name}, namespace: shop}}
spec:
  api: {api}
  path: {path}
  apiKeyRequired: {keyed}
  authorization: {{authorizerRef: {{name: {authorizer}}}}}
  integration:
    type: MOCK
    mock: {{statusCode: 200, body: {mock_body}}}
"
        ))
        .collect::<String>()
    )
}

struct Answer {
    status: u16,
    body: String,
    error_type: Option<String>,
}

fn call(d: &Dataplane, method: &str, path: &str, auth: Option<&str>) -> Answer {
    let mut req = http().request(method.parse().unwrap(), d.url(path));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let r = req
        .header("cookie", "session=s1; theme=dark")
        .send()
        .unwrap();
    Answer {
        status: r.status().as_u16(),
        error_type: r
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_string()),
        body: r.text().unwrap(),
    }
}

fn get(d: &Dataplane, path: &str, auth: &str) -> Answer {
    call(d, "GET", path, Some(auth))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// The last event the function read whose `seen.kind` is `kind`.
fn last_event(f: &Function, kind: &str) -> Value {
    f.events()
        .into_iter()
        .rev()
        .find(|e| e["seen"]["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event"))
}

#[test]
fn function_authorizers_decide_as_aws_and_are_called_once_per_identity() {
    let f = Function::start();
    let dir = TempDir::new("fn-authz");
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    let backend = Backend::start("mapped", dir.path());
    std::fs::write(
        manifests_dir.join("api.yaml"),
        manifests(&f, "pets", 300, backend.port),
    )
    .unwrap();
    let controller = Controller::start(&manifests_dir, dir.path());
    let d = Dataplane::start_with(
        &controller.url(""),
        &dir.path().join("state"),
        dir.path(),
        &[
            "--access-log".into(),
            dir.path().join("access.log").display().to_string(),
        ],
    );
    d.wait_synced(&controller);

    // TOKEN, IAM policy: allowed, then cached: 5 requests on several paths, one call.
    let a = get(&d, "/rest/pets/1", "Bearer allow:alice");
    assert_eq!((a.status, a.body.as_str()), (200, "pets"), "{}", a.body);
    for i in 2..6 {
        assert_eq!(
            get(&d, &format!("/rest/pets/{i}"), "Bearer allow:alice").status,
            200
        );
    }
    assert_eq!(f.calls(), 1, "one call for one identity within the TTL");
    let token = last_event(&f, "TOKEN");
    assert_eq!(
        keys(&token["raw"]),
        set(&["type", "authorizationToken", "methodArn"])
    );
    assert_eq!(token["seen"]["token"], "Bearer allow:alice");
    assert_eq!(
        token["seen"]["arn"],
        serde_json::json!({"region": "us-east-1", "account": "000000000000", "api": "rest-api",
            "stage": "rest", "method": "GET", "resource": "pets/1"})
    );
    // The cached policy allows GET only: a PUT is re-evaluated against its method ARN.
    let a = call(&d, "PUT", "/rest/pets/1", Some("Bearer allow:alice"));
    assert_eq!(
        (a.status, a.body.as_str(), a.error_type.as_deref()),
        (
            403,
            r#"{"Message":"User is not authorized to access this resource"}"#,
            Some("AccessDeniedException")
        )
    );
    assert_eq!(
        f.calls(),
        1,
        "a cached policy is evaluated, not fetched again"
    );

    // Refused without a call: no header, a token that fails the validation expression.
    for auth in [None, Some("Basic YWxhZGRpbg==")] {
        let a = call(&d, "GET", "/rest/pets/1", auth);
        assert_eq!(
            (a.status, a.body.as_str(), a.error_type.as_deref()),
            (
                401,
                r#"{"message":"Unauthorized"}"#,
                Some("UnauthorizedException")
            ),
            "{auth:?}"
        );
    }
    assert_eq!(f.calls(), 1, "no call without a valid identity source");

    // Deny (cached), Unauthorized (not cached), and the failures (500, REST's body).
    for _ in 0..2 {
        let a = get(&d, "/rest/pets/1", "Bearer deny");
        assert_eq!(
            (a.status, a.body.as_str(), a.error_type.as_deref()),
            (
                403,
                r#"{"Message":"User is not authorized to access this resource with an explicit deny"}"#,
                Some("AccessDeniedException")
            )
        );
    }
    assert_eq!(f.calls(), 2, "a deny is cached too");
    for _ in 0..2 {
        let a = get(&d, "/rest/pets/1", "Bearer unauthorized");
        assert_eq!(
            (a.status, a.body.as_str()),
            (401, r#"{"message":"Unauthorized"}"#)
        );
    }
    assert_eq!(f.calls(), 4, "an Unauthorized is not cached");
    for failure in ["boom", "garbage", "http500"] {
        let a = get(&d, "/rest/pets/1", &format!("Bearer {failure}"));
        assert_eq!(
            (a.status, a.body.as_str(), a.error_type.as_deref()),
            (
                500,
                r#"{"message": null}"#,
                Some("AuthorizerConfigurationException")
            ),
            "{failure}"
        );
    }

    // TTL 0: every request calls.
    let before = f.calls();
    for _ in 0..3 {
        assert_eq!(get(&d, "/rest/nocache", "Bearer allow:zed").status, 200);
    }
    assert_eq!(f.calls(), before + 3, "TTL 0 calls on every request");

    // A function slower than the authorizer's timeout: 500, soon.
    let started = Instant::now();
    let a = get(&d, "/rest/quick", "Bearer slow:2000");
    assert_eq!((a.status, a.body.as_str()), (500, r#"{"message": null}"#));
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );

    // Concurrent misses for one identity: one call.
    let before = f.calls();
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let d = &d;
                s.spawn(move || get(d, &format!("/rest/pets/{i}"), "Bearer slow:400").status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, vec![200; 8]);
    assert_eq!(f.calls(), before + 1, "concurrent misses wait on one call");

    // usageIdentifierKey is the API key of a Stage with apiKeySource AUTHORIZER.
    let a = get(&d, "/rest/keyed", &format!("Bearer key:bob:{PARTNER_KEY}"));
    assert_eq!(a.status, 200, "{}", a.body);
    let a = get(
        &d,
        "/rest/keyed",
        "Bearer key:eve:NotAKnownKey0000000000000000",
    );
    assert_eq!(
        (a.status, a.body.as_str(), a.error_type.as_deref()),
        (
            403,
            r#"{"message":"Forbidden"}"#,
            Some("ForbiddenException")
        )
    );
    // A key in the x-api-key header does not count on such a Stage.
    let r = http()
        .get(d.url("/rest/keyed"))
        .header("authorization", "Bearer allow:mallory")
        .header("x-api-key", PARTNER_KEY)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // REST's REQUEST event: what Powertools read, and the fixture's fields.
    let a = get(&d, "/rest/req/7?color=red&color=blue", "allow:carol");
    assert_eq!(a.status, 200, "{}", a.body);
    let e = last_event(&f, "REST");
    let seen = &e["seen"];
    assert_eq!(seen["resource"], "/req/{id}");
    assert_eq!(seen["path"], "/req/7");
    assert_eq!(seen["httpMethod"], "GET");
    assert_eq!(seen["pathParameters"], serde_json::json!({"id": "7"}));
    assert_eq!(
        seen["stageVariables"],
        serde_json::json!({"tenant": "acme"})
    );
    assert_eq!(seen["query"], serde_json::json!({"color": "blue"}));
    assert_eq!(seen["sourceIp"], "127.0.0.1");
    assert_eq!(seen["stage"], "rest");
    assert_eq!(seen["resourcePath"], "/req/{id}");
    assert_eq!(seen["accountId"], "000000000000");
    assert_eq!(seen["arn"]["resource"], "req/7");
    assert!(!seen["requestId"].as_str().unwrap().is_empty());
    assert_eq!(
        e["raw"]["multiValueQueryStringParameters"],
        serde_json::json!({"color": ["red", "blue"]})
    );
    // example-apigw-custom-auth-request-type-request.json (aws_lambda_events).
    assert_eq!(
        keys(&e["raw"]),
        set(&[
            "type",
            "methodArn",
            "resource",
            "path",
            "httpMethod",
            "headers",
            "multiValueHeaders",
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "pathParameters",
            "stageVariables",
            "requestContext",
        ])
    );
    let rc = keys(&e["raw"]["requestContext"]);
    for k in [
        "path",
        "accountId",
        "resourceId",
        "stage",
        "requestId",
        "identity",
        "resourcePath",
        "httpMethod",
        "apiId",
    ] {
        assert!(rc.contains(k), "requestContext.{k}");
    }

    // The HTTP API's 1.0 event: the same authorizer on an HTTP Stage.
    assert_eq!(get(&d, "/http/v1", "allow:dave").status, 200);
    let e = last_event(&f, "1.0");
    assert_eq!(e["seen"]["identitySource"], "allow:dave,acme");
    assert_eq!(e["raw"]["authorizationToken"], "allow:dave,acme");
    // example-apigw-v2-custom-authorizer-v1-request.json.
    assert_eq!(
        keys(&e["raw"]),
        set(&[
            "version",
            "type",
            "methodArn",
            "identitySource",
            "authorizationToken",
            "resource",
            "path",
            "httpMethod",
            "headers",
            "queryStringParameters",
            "pathParameters",
            "stageVariables",
            "requestContext",
        ])
    );

    // 2.0 with simple responses: yes, no (403, the HTTP API's body); cached per identity.
    let a = get(&d, "/http/simple/1", "Bearer yes");
    assert_eq!((a.status, a.body.as_str()), (200, "pets"));
    let e = last_event(&f, "2.0");
    let seen = &e["seen"];
    assert_eq!(seen["identitySource"], serde_json::json!(["Bearer yes"]));
    assert_eq!(seen["routeKey"], "ANY /simple/{id}");
    assert_eq!(seen["rawPath"], "/http/simple/1");
    assert_eq!(
        seen["cookies"],
        serde_json::json!(["session=s1", "theme=dark"])
    );
    assert_eq!(seen["pathParameters"], serde_json::json!({"id": "1"}));
    assert_eq!(seen["stage"], "http");
    assert_eq!(seen["method"], "GET");
    assert!(
        seen["headers"].get("cookie").is_none(),
        "cookies are not headers in 2.0"
    );
    // example-apigw-v2-custom-authorizer-v2-request*.json.
    assert_eq!(
        keys(&e["raw"]),
        set(&[
            "version",
            "type",
            "routeArn",
            "identitySource",
            "routeKey",
            "rawPath",
            "rawQueryString",
            "cookies",
            "headers",
            "requestContext",
            "pathParameters",
            "stageVariables",
        ])
    );
    let a = get(&d, "/http/simple/1", "Bearer no");
    assert_eq!(
        (a.status, a.body.as_str(), a.error_type),
        (403, r#"{"message":"Forbidden"}"#, None)
    );
    let before = f.calls();
    assert_eq!(get(&d, "/http/simple/2", "Bearer yes").status, 200);
    assert_eq!(f.calls(), before, "a simple answer holds for every route");

    // 2.0 with an IAM policy; a missing query identity source is 401 without a call; a
    // failure is the HTTP API's 500.
    assert_eq!(get(&d, "/http/v2/5?v=1", "Bearer allow:erin").status, 200);
    let before = f.calls();
    let a = get(&d, "/http/v2/5", "Bearer allow:erin");
    assert_eq!(
        (a.status, a.body.as_str()),
        (401, r#"{"message":"Unauthorized"}"#)
    );
    assert_eq!(f.calls(), before);
    let a = get(&d, "/http/v2/5?v=1", "Bearer boom");
    assert_eq!(
        (a.status, a.body.as_str()),
        (500, r#"{"message":"Internal Server Error"}"#)
    );

    // Parameter mapping: the backend learns who called; the credential does not reach it.
    let seen: Value = http()
        .get(d.url("/rest/mapped/7?secret=s3&keep=1"))
        .header("authorization", "Bearer allow:alice")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let h = &seen["headers"];
    assert_eq!(h["x-user"], "alice", "{seen}");
    assert_eq!(h["x-tier"], "tier=gold; n=3");
    assert_eq!(h["x-route"], "ANY /mapped/{id} 7 acme");
    assert!(h.get("authorization").is_none(), "{seen}");
    assert_eq!(seen["path"], "/v2/pets/7");
    assert_eq!(seen["query"], "keep=1&tenant=acme");

    // A push that leaves the authorizer alone keeps its cache; one that changes it does not.
    let before = f.calls();
    std::fs::write(
        manifests_dir.join("api.yaml"),
        manifests(&f, "pets-v2", 300, backend.port),
    )
    .unwrap();
    wait_for("the push", Duration::from_secs(20), || {
        (get(&d, "/rest/pets/1", "Bearer allow:alice").body == "pets-v2").then_some(())
    });
    assert_eq!(f.calls(), before, "a push keeps the cached results");
    std::fs::write(
        manifests_dir.join("api.yaml"),
        manifests(&f, "pets-v3", 60, backend.port),
    )
    .unwrap();
    wait_for("the second push", Duration::from_secs(20), || {
        (get(&d, "/rest/pets/1", "Bearer allow:alice").body == "pets-v3").then_some(())
    });
    assert_eq!(
        f.calls(),
        before + 1,
        "a changed authorizer starts a new cache"
    );

    // The principal and context reach the access log (REST: context values as strings).
    let access = wait_for("the access log", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(dir.path().join("access.log")).ok()?;
        text.contains(r#""status":"500""#).then_some(text)
    });
    let lines: Vec<Value> = access
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok = lines
        .iter()
        .find(|l| l["status"] == "200" && l["principal"] == "alice")
        .unwrap();
    assert_eq!(
        (&ok["user"], &ok["tier"], &ok["n"]),
        (
            &Value::from("alice"),
            &Value::from("gold"),
            &Value::from("3")
        )
    );
    let refused = lines.iter().find(|l| l["status"] == "401").unwrap();
    assert_eq!(refused["principal"], "-");

    // The metrics count every call the function saw, and the cache hits.
    let metrics = http()
        .get(d.admin("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let sum = |result: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("tollhouse_authorizer_function_results_total{")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(sum("called"), f.calls(), "{metrics}");
    assert!(sum("cache_hit") >= 10, "{metrics}");
    assert!(metrics.contains(r#"authorizer="shop/token""#));

    // No credential reaches the logs.
    let logs = d.proc.log_text() + &controller.proc.log_text() + &access;
    for secret in ["allow:alice", PARTNER_KEY] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
}
