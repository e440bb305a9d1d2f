//! Resource policies (AWS's API Gateway resource policy, reference §11) over real sockets: an
//! explicit Deny for the caller's address wins, a request no Allow covers is refused, both
//! with AWS's capital-M `Message` 403 on REST Stages (the HTTP flavour's 403 on HTTP Stages,
//! ours: AWS HTTP APIs have none), checked before the authorizer; a statement that does not
//! parse leaves its Stage out with a condition while the other Stages serve.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use serde_json::Value;

const MANIFESTS: &str = r#"apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {name: rest, namespace: shop}
spec:
  api: rest-api
  apiType: REST
  basePath: /rest
  resourcePolicy:
    statements:
    - effect: Deny
      sourceIps: ["127.0.0.0/8"]
      routes: ["ANY /blocked/*"]
    - effect: Allow
      sourceIps: ["0.0.0.0/0", "::/0"]
      routes: ["GET /pets/*", "ANY /blocked/*"]
---
apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {name: http, namespace: shop}
spec:
  api: http-api
  basePath: /http
  resourcePolicy:
    statements:
    - {effect: Allow, sourceIps: ["10.0.0.0/8"]}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {name: broken, namespace: shop}
spec:
  api: broken-api
  basePath: /broken
  resourcePolicy:
    statements:
    - {effect: Allow, sourceIps: ["10.0.0.1/8"]}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {name: corp, namespace: shop}
spec:
  type: JWT
  jwt: {issuer: "http://127.0.0.1:9", audience: [x]}
"#;

fn route(api: &str, name: &str, path: &str, authorized: bool) -> String {
    let auth = if authorized {
        "  authorization: {authorizerRef: {name: corp}}\n"
    } else {
        ""
    };
    format!(
        "---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  api: {api}\n  path: {path}\n{auth}  integration: {{type: MOCK, mock: {{statusCode: 200, body: ok}}}}\n"
    )
}

#[test]
fn resource_policies_refuse_as_aws_before_the_authorizer() {
    let files = format!(
        "{MANIFESTS}{}{}{}{}{}",
        route("rest-api", "pets", "/pets/{id}", false),
        route("rest-api", "blocked", "/blocked/{id}", true),
        route("http-api", "h", "/h", false),
        route("broken-api", "b", "/b", false),
        route("rest-api", "open", "/open", false),
    );
    let stack = Stack::start("resource-policy", &[("api.yaml", files)]);
    let d = &stack.dataplane;
    let send = |method: &str, path: &str| {
        let r = http()
            .request(method.parse().unwrap(), d.url(path))
            .send()
            .unwrap();
        let error_type = r
            .headers()
            .get("x-amzn-errortype")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), r.text().unwrap(), error_type)
    };
    assert_eq!(send("GET", "/rest/pets/1").0, 200);
    let arn = "arn:aws:execute-api:us-east-1:000000000000:rest-api/rest";
    // An explicit Deny for 127.0.0.0/8, before the route's JWT authorizer (which would 401).
    assert_eq!(
        send("POST", "/rest/blocked/7"),
        (
            403,
            format!(
                r#"{{"Message":"User: anonymous is not authorized to perform: execute-api:Invoke on resource: {arn}/POST/blocked/7 with an explicit deny"}}"#
            ),
            Some("AccessDeniedException".into())
        )
    );
    // No Allow covers a PUT, nor a route the policy does not name.
    for (method, path) in [("PUT", "/rest/pets/1"), ("GET", "/rest/open")] {
        assert_eq!(
            send(method, path),
            (
                403,
                format!(
                    r#"{{"Message":"User: anonymous is not authorized to perform: execute-api:Invoke on resource: {arn}/{method}{}"}}"#,
                    &path[5..]
                ),
                Some("AccessDeniedException".into())
            )
        );
    }
    // HTTP API: only 10.0.0.0/8 may call; we are 127.0.0.1.
    assert_eq!(
        send("GET", "/http/h"),
        (403, r#"{"message":"Forbidden"}"#.to_string(), None)
    );
    // A statement that does not parse: that Stage is not served, and says why.
    assert_eq!(send("GET", "/broken/b").0, 404);
    let status: Value = stack.controller.status();
    let broken = status["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Stage" && o["name"] == "broken")
        .unwrap();
    let accepted = broken["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap();
    assert_eq!(accepted["reason"], "InvalidResourcePolicy", "{broken}");
    assert!(
        accepted["message"].as_str().unwrap().contains("10.0.0.1/8"),
        "{accepted}"
    );
}
