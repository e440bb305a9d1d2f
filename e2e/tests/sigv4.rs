//! SigV4 authorizers (AWS's `AWS_IAM`, reference §7) over real processes: every request is
//! signed by botocore (PyPI; `e2e/sigv4/sign.py`), AWS's own signer, with access keys from
//! Secrets of type `tollhouse.dev/sigv4-credentials`: GET and POST, query strings with
//! reserved characters, unicode and encoded path segments, temporary credentials with a
//! session token, clock skew on both sides, a wrong secret, region or token, unsigned and
//! malformed requests — each answered with AWS's 403 bodies per flavour. The dataplane never
//! holds a secret access key (the snapshot carries per-day signing keys only).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

const ALICE_SECRET: &str = "alice/Secret+Access/Key0000000000000000";
const BOB_SECRET: &str = "bob-temporary-secret-access-key-000000";
const BOB_TOKEN: &str = "IQoJb3JpZ2luX2VjEXAMPLEsessiontoken//////////wEaCXVzLWVhc3QtMSJHMEUCIQ==";

fn manifests(mock_body: &str, backend: u16) -> String {
    format!(
        r#"apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {{name: rest, namespace: shop}}
spec:
  api: rest-api
  apiType: REST
  basePath: /rest
  accessLog:
    format: '{{"requestId":"$context.requestId","status":"$context.status","caller":"$context.identity.caller","userArn":"$context.identity.userArn","error":"$context.error.message"}}'
---
apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {{name: http, namespace: shop}}
spec: {{api: http-api, apiType: HTTP, basePath: /http}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: iam, namespace: shop}}
spec:
  type: SIGV4
  sigv4:
    region: us-east-1
    credentialSelector: {{matchLabels: {{tollhouse.dev/authorizer: iam}}}}
---
apiVersion: v1
kind: Secret
type: tollhouse.dev/sigv4-credentials
metadata: {{name: alice, namespace: shop, labels: {{tollhouse.dev/authorizer: iam}}}}
stringData:
  accessKeyId: AKIDALICE
  secretAccessKey: {ALICE_SECRET}
  principal: arn:aws:iam::123456789012:user/alice
---
apiVersion: v1
kind: Secret
type: tollhouse.dev/sigv4-credentials
metadata: {{name: bob, namespace: shop, labels: {{tollhouse.dev/authorizer: iam}}}}
stringData:
  accessKeyId: ASIABOB
  secretAccessKey: {BOB_SECRET}
  sessionToken: "{BOB_TOKEN}"
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: rest-all, namespace: shop}}
spec:
  api: rest-api
  path: /{{proxy+}}
  authorization: {{authorizerRef: {{name: iam}}}}
  integration:
    type: MOCK
    mock: {{statusCode: 200, body: {mock_body}}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: rest-mapped, namespace: shop}}
spec:
  api: rest-api
  path: /mapped
  authorization: {{authorizerRef: {{name: iam}}}}
  integration:
    type: HTTP_PROXY
    uri: http://127.0.0.1:{backend}/mapped
    requestParameters:
      "overwrite:header.x-caller": "$context.identity.caller"
      "overwrite:header.x-user-arn": "$context.identity.userArn"
      "remove:header.authorization": "''"
      "remove:header.x-amz-security-token": "''"
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: http-all, namespace: shop}}
spec:
  api: http-api
  path: /{{proxy+}}
  authorization: {{authorizerRef: {{name: iam}}}}
  integration:
    type: MOCK
    mock: {{statusCode: 200, body: {mock_body}}}
"#
    )
}

/// Signs and sends `cases` with botocore; one answer each.
fn botocore(cases: &[Value]) -> Vec<Value> {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sigv4/sign.py");
    let mut child = Command::new(harness::kube::tool("python-boto3", false))
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(cases).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sign.py failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn alice(url: String) -> Value {
    json!({"url": url, "access_key": "AKIDALICE", "secret_key": ALICE_SECRET, "region": "us-east-1"})
}

fn with(mut case: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        case[k] = v.clone();
    }
    case
}

fn message(answer: &Value) -> String {
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    body["message"].as_str().unwrap().to_string()
}

#[test]
fn sigv4_authorizer_checks_botocore_signatures_as_aws() {
    let dir = TempDir::new("sigv4");
    let manifests_dir = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests_dir).unwrap();
    let backend = Backend::start("mapped", dir.path());
    std::fs::write(
        manifests_dir.join("api.yaml"),
        manifests("ok", backend.port),
    )
    .unwrap();
    // Signing keys are secrets: the snapshot goes only over mutual TLS, as TLS keys do.
    let pki = DeliveryPki::new(&dir.path().join("certs"));
    let controller = Controller::start_with(
        &manifests_dir,
        dir.path(),
        free_port(),
        &pki.controller_args(),
        Some(pki.client()),
    );
    let mut args = pki.dataplane_args();
    args.extend([
        "--access-log".into(),
        dir.path().join("access.log").display().to_string(),
    ]);
    let d = Dataplane::start_with(
        &controller.url(""),
        &dir.path().join("state"),
        dir.path(),
        &args,
    );
    d.wait_synced(&controller);
    let url = |p: &str| d.url(p);

    let good = vec![
        ("GET", alice(url("/rest/pets"))),
        (
            "GET with reserved characters and unicode in the query",
            with(
                alice(url("/rest/pets")),
                json!({"params": {"q": "a b&c=d", "slash": "x/y", "plus": "1+1", "café": "naïve ü", "empty": ""}}),
            ),
        ),
        (
            "a query written in the URL, in another order",
            alice(url("/rest/pets?b=2&a=1&a=0&tilde=~")),
        ),
        (
            "unicode and encoded path segments",
            alice(url("/rest/caf%C3%A9/a%20b/x%2Fy/%E2%9C%93")),
        ),
        (
            "POST with a JSON body and a signed content-type",
            with(
                alice(url("/rest/pets")),
                json!({"method": "POST", "body": "{\"name\":\"rex\"}", "headers": {"Content-Type": "application/json"}}),
            ),
        ),
        (
            "PUT with an empty body",
            with(alice(url("/rest/pets/1")), json!({"method": "PUT"})),
        ),
        (
            "temporary credentials with a session token",
            json!({"url": url("/rest/pets"), "access_key": "ASIABOB", "secret_key": BOB_SECRET,
                "token": BOB_TOKEN, "region": "us-east-1"}),
        ),
        (
            "clock 4 minutes behind",
            with(alice(url("/rest/pets")), json!({"skew": -240})),
        ),
        (
            "clock 4 minutes ahead",
            with(alice(url("/rest/pets")), json!({"skew": 240})),
        ),
        ("an HTTP API Stage", alice(url("/http/pets"))),
    ];
    let cases: Vec<Value> = good.iter().map(|(_, c)| c.clone()).collect();
    for ((what, _), answer) in good.iter().zip(botocore(&cases)) {
        assert_eq!(
            (answer["status"].as_u64(), answer["body"].as_str()),
            (Some(200), Some("ok")),
            "{what}: {answer}"
        );
    }

    // Parameter mapping: the backend learns the caller, not the signature.
    let mapped = botocore(&[alice(url("/rest/mapped"))]);
    assert_eq!(mapped[0]["status"], 200, "{}", mapped[0]);
    let seen: Value = serde_json::from_str(mapped[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        seen["headers"]["x-caller"],
        "arn:aws:iam::123456789012:user/alice"
    );
    assert_eq!(
        seen["headers"]["x-user-arn"],
        "arn:aws:iam::123456789012:user/alice"
    );
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");

    // Refused, with AWS's bodies (REST: x-amzn-ErrorType).
    let bad = vec![
        with(alice(url("/rest/pets")), json!({"sign": false})),
        with(
            alice(url("/rest/pets")),
            json!({"sign": false, "headers": {"Authorization": "Bearer abc"}}),
        ),
        with(
            alice(url("/rest/pets")),
            json!({"secret_key": "not-alices-secret"}),
        ),
        with(alice(url("/rest/pets")), json!({"skew": -600})),
        with(alice(url("/rest/pets")), json!({"skew": 600})),
        with(alice(url("/rest/pets")), json!({"region": "eu-west-1"})),
        with(
            alice(url("/rest/pets")),
            json!({"access_key": "AKIDNOBODY"}),
        ),
        json!({"url": url("/rest/pets"), "access_key": "ASIABOB", "secret_key": BOB_SECRET,
            "token": "not-bobs-token", "region": "us-east-1"}),
        json!({"url": url("/rest/pets"), "access_key": "ASIABOB", "secret_key": BOB_SECRET,
            "region": "us-east-1"}),
        with(
            alice(url("/http/pets")),
            json!({"secret_key": "not-alices-secret"}),
        ),
    ];
    let a = botocore(&bad);
    let refused = |i: usize, error_type: Option<&str>| {
        assert_eq!(a[i]["status"], 403, "case {i}: {}", a[i]);
        assert_eq!(
            a[i]["error_type"].as_str(),
            error_type,
            "case {i}: {}",
            a[i]
        );
        message(&a[i])
    };
    assert_eq!(
        refused(0, Some("MissingAuthenticationTokenException")),
        "Missing Authentication Token"
    );
    assert_eq!(
        refused(1, Some("IncompleteSignatureException")),
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=Bearer abc"
    );
    let mismatch = refused(2, Some("InvalidSignatureException"));
    assert!(
        mismatch.starts_with("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.\n\nThe Canonical String for this request should have been\n'GET\n/rest/pets\n\nhost:"),
        "{mismatch}"
    );
    assert!(
        mismatch.contains("'\n\nThe String-to-Sign should have been\n'AWS4-HMAC-SHA256\n"),
        "{mismatch}"
    );
    let expired = refused(3, Some("InvalidSignatureException"));
    assert!(
        expired.starts_with("Signature expired: ")
            && expired.ends_with(" - 5 min.)")
            && expired.contains(" is now earlier than "),
        "{expired}"
    );
    let early = refused(4, Some("InvalidSignatureException"));
    assert!(
        early.starts_with("Signature not yet current: ") && early.ends_with(" + 5 min.)"),
        "{early}"
    );
    assert!(refused(5, Some("InvalidSignatureException")).contains("valid region"));
    for i in [6, 7, 8] {
        assert_eq!(
            refused(i, Some("UnrecognizedClientException")),
            "The security token included in the request is invalid.",
            "case {i}"
        );
    }
    // HTTP API Stages: the same bodies, no x-amzn-ErrorType.
    assert!(refused(9, None).starts_with("The request signature we calculated"));

    // The caller reaches the access log; no signature, token or secret reaches any log.
    let access = wait_for("the access log", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(dir.path().join("access.log")).ok()?;
        (text.lines().count() >= 18).then_some(text)
    });
    let lines: Vec<Value> = access
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok = lines.iter().find(|l| l["status"] == "200").unwrap();
    assert_eq!(ok["caller"], "arn:aws:iam::123456789012:user/alice");
    assert_eq!(ok["userArn"], "arn:aws:iam::123456789012:user/alice");
    let refused_line = lines.iter().find(|l| l["status"] == "403").unwrap();
    assert_eq!(refused_line["caller"], "-");
    let signature = a[2]["authorization"]
        .as_str()
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    let logs = d.proc.log_text() + &controller.proc.log_text() + &access;
    for secret in [
        ALICE_SECRET,
        BOB_SECRET,
        BOB_TOKEN,
        signature.as_str(),
        "Canonical String",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs");
    }
    // Nor the snapshot the dataplane holds: signing keys only.
    let state = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap_or_default())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect::<String>();
    assert!(
        state.contains("signingKeys"),
        "the snapshot is in the state directory"
    );
    for secret in [ALICE_SECRET, BOB_SECRET, BOB_TOKEN] {
        assert!(
            !state.contains(secret),
            "{secret} in the dataplane's snapshot"
        );
    }
}
