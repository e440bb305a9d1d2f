//! The CRDs in `crds/` against a real kube-apiserver (1.20, see `harness::kube`) with the real
//! kubectl: they install and become Established, their category and short names work, valid
//! objects are stored, and the API server itself refuses invalid ones and prunes unknown fields.
//!
//! Invalid objects are sent with `--validate=false` so that kubectl does not check them first:
//! what is asserted is the API server's answer, as a controller or any other client gets it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::kube::{text, KubeEnv};
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;

const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
const CRD_NAMES: [&str; 3] = [
    "stages.tollhouse.dev",
    "apiroutes.tollhouse.dev",
    "usageplans.tollhouse.dev",
];

/// The shared API server with the CRDs applied and Established, once per test binary.
fn env() -> &'static KubeEnv {
    static APPLIED: OnceLock<()> = OnceLock::new();
    let env = KubeEnv::shared();
    APPLIED.get_or_init(|| {
        let out = env.kubectl_ok(&["apply", "-f", CRDS]);
        for crd in CRD_NAMES {
            assert!(out.contains(crd), "apply did not mention {crd}:\n{out}");
        }
        env.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/stages.tollhouse.dev",
            "crd/apiroutes.tollhouse.dev",
            "crd/usageplans.tollhouse.dev",
        ]);
    });
    env
}

fn route(name: &str, spec: &str) -> String {
    format!("apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// Applies `yaml` in `ns` without client-side validation: the API server decides.
fn apply_unchecked(ns: &str, yaml: &str) -> std::process::Output {
    env().kubectl_stdin(&["apply", "-n", ns, "--validate=false", "-f", "-"], yaml)
}

fn get_json(ns: &str, what: &str) -> Value {
    serde_json::from_str(&env().kubectl_ok(&["get", "-n", ns, what, "-o", "json"])).unwrap()
}

#[test]
fn crds_are_established_and_reachable_by_category_and_short_names() {
    let env = env();
    for crd in CRD_NAMES {
        let status = env.kubectl_ok(&[
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ]);
        assert_eq!(status, "True", "{crd} Established");
        let names = env.kubectl_ok(&[
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].status}",
        ]);
        assert_eq!(names, "True", "{crd} NamesAccepted");
    }
    // Re-applying the same CRDs changes nothing.
    let again = env.kubectl_ok(&["apply", "-f", CRDS]);
    assert!(
        again.lines().all(|l| l.ends_with("unchanged")),
        "re-apply: {again}"
    );

    let ns = env.fresh_namespace("names");
    let out = env.kubectl_stdin(
        &["apply", "-n", &ns, "-f", "-"],
        &format!(
            "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: edge\nspec:\n  api: shop\n  basePath: /edge\n---\n{}---\n{}",
            route(
                "ping",
                "  api: shop\n  path: /ping\n  methods: [GET, HEAD]\n  integration:\n    type: MOCK\n"
            ),
            route(
                "item",
                "  api: shop\n  path: /items/{id}\n  integration:\n    type: HTTP_PROXY\n    uri: http://b/{id}\n"
            ),
        ),
    );
    assert!(out.status.success(), "{}", text(&out));

    // The `tollhouse` category lists both kinds, in every namespace.
    let all = env.kubectl_ok(&["get", "tollhouse", "-A"]);
    for want in [
        "stage.tollhouse.dev/edge",
        "apiroute.tollhouse.dev/ping",
        "apiroute.tollhouse.dev/item",
    ] {
        assert!(all.contains(want), "{want} in\n{all}");
    }

    // Short names, and the printer columns.
    let stages = env.kubectl_ok(&["get", "stg", "-n", &ns]);
    for want in ["BASE PATH", "edge", "shop", "/edge"] {
        assert!(stages.contains(want), "{want} in\n{stages}");
    }
    let routes = env.kubectl_ok(&["get", "ar", "-n", &ns]);
    for want in [
        "INTEGRATION",
        "/items/{id}",
        "HTTP_PROXY",
        "MOCK",
        "[\"GET\",\"HEAD\"]",
    ] {
        assert!(routes.contains(want), "{want} in\n{routes}");
    }
}

#[test]
fn the_examples_are_valid_objects() {
    let env = env();
    let ns = env.fresh_namespace("examples");
    let routes = std::fs::read_to_string(format!("{EXAMPLES}/routes.yaml")).unwrap();
    let stages = std::fs::read_to_string(format!("{EXAMPLES}/petstore.yaml"))
        .unwrap()
        .replace("  namespace: default\n", "");
    let plans = std::fs::read_to_string(format!("{EXAMPLES}/usage-plans.yaml"))
        .unwrap()
        .replace("  namespace: default\n", "");
    let authorizers = std::fs::read_to_string(format!("{EXAMPLES}/authorizers.yaml"))
        .unwrap()
        .replace("  namespace: default\n", "");
    // As a user applies them: with kubectl's own validation.
    for yaml in [&routes, &stages, &plans, &authorizers] {
        let out = env.kubectl_stdin(&["apply", "-n", &ns, "-f", "-"], yaml);
        assert!(out.status.success(), "{}", text(&out));
    }
    let stored = get_json(&ns, "stages,apiroutes,usageplans,authorizers");
    let items = stored["items"].as_array().unwrap();
    assert_eq!(
        items.len(),
        17,
        "3 stages, 10 routes, 1 plan, 3 authorizers: {stored:#}"
    );
    // The Authorizer and a route's authorization, stored as written.
    assert_eq!(
        get_json(&ns, "authorizer/corp")["spec"],
        serde_json::json!({
            "type": "JWT",
            "identitySource": ["$request.header.Authorization"],
            "jwt": {"issuer": "http://127.0.0.1:9000", "audience": ["pets-api"]},
        })
    );
    assert_eq!(
        get_json(&ns, "apiroute/jwt-pets")["spec"]["authorization"],
        serde_json::json!({"authorizerRef": {"name": "corp"}, "scopes": ["pets:read"]})
    );
    assert_eq!(
        get_json(&ns, "authorizer/tokens")["spec"]["function"],
        serde_json::json!({
            "uri": "http://127.0.0.1:9002/2015-03-31/functions/function/invocations",
            "resultTtlInSeconds": 300,
            "identityValidationExpression": "^Bearer [-0-9a-zA-Z\\._:]*$",
        })
    );
    let columns = env.kubectl_ok(&["get", "authz", "-n", &ns]);
    for want in ["TYPE", "ISSUER", "READY", "JWT", "http://127.0.0.1:9000"] {
        assert!(columns.contains(want), "{want} in\n{columns}");
    }
    let gold = get_json(&ns, "usageplan/gold");
    assert_eq!(
        gold["spec"]["apiStages"][0]["throttle"]["GET /partner/pets"],
        serde_json::json!({"rateLimit": 1, "burstLimit": 3})
    );
    assert_eq!(
        gold["spec"]["quota"],
        serde_json::json!({"limit": 1000, "period": "DAY"})
    );
    assert_eq!(
        get_json(&ns, "secret/partner-a")["type"],
        "tollhouse.dev/api-key"
    );

    // Stored as written: nothing pruned or changed in the spec.
    let get_pet = get_json(&ns, "apiroute/get-pet");
    assert_eq!(
        get_pet["spec"],
        serde_json::json!({
            "api": "petstore",
            "path": "/pets/{petId}",
            "methods": ["GET"],
            "integration": {
                "type": "HTTP_PROXY",
                "uri": "http://${stageVariables.backend}/pets/{petId}",
                "timeoutInMillis": 5000,
            },
        })
    );
    let prod = get_json(&ns, "stage/prod");
    assert_eq!(prod["spec"]["basePath"], "/prod");
    assert_eq!(prod["spec"]["variables"]["backend"], "127.0.0.1:8081");
    // Throttles are kept as written, the decimal rate included.
    assert_eq!(
        prod["spec"]["throttle"],
        serde_json::json!({"rateLimit": 100, "burstLimit": 200})
    );
    assert_eq!(
        get_json(&ns, "apiroute/limited")["spec"]["throttle"],
        serde_json::json!({"rateLimit": 1, "burstLimit": 3})
    );

    // A quota period AWS does not have is refused by the API server, naming the field.
    let out = apply_unchecked(
        &ns,
        "apiVersion: tollhouse.dev/v1alpha1\nkind: UsagePlan\nmetadata: {name: yearly}\nspec:\n  quota: {limit: 5, period: YEAR}\n",
    );
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains("spec.quota.period"),
        "{said}"
    );

    // The bounds themselves are accepted.
    for (name, timeout) in [("min-timeout", 50), ("max-timeout", 300000)] {
        let yaml = route(
            name,
            &format!("  api: petstore\n  path: /t\n  integration:\n    type: HTTP_PROXY\n    uri: http://b/\n    timeoutInMillis: {timeout}\n"),
        );
        let out = apply_unchecked(&ns, &yaml);
        assert!(out.status.success(), "{name}: {}", text(&out));
    }
}

/// Invalid objects, the field the API server must name, and what else its message must say.
#[test]
fn the_api_server_refuses_invalid_objects_naming_the_field() {
    let env = env();
    let ns = env.fresh_namespace("invalid");
    let proxy = "  integration:\n    type: HTTP_PROXY\n    uri: http://b/\n";
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "relative-path",
            format!("  api: petstore\n  path: pets\n{proxy}"),
            "spec.path",
            "should match '^/'",
        ),
        (
            "timeout-too-small",
            "  api: petstore\n  path: /t\n  integration:\n    type: HTTP_PROXY\n    uri: http://b/\n    timeoutInMillis: 49\n".into(),
            "spec.integration.timeoutInMillis",
            "greater than or equal to 50",
        ),
        (
            "timeout-too-large",
            "  api: petstore\n  path: /t\n  integration:\n    type: HTTP_PROXY\n    uri: http://b/\n    timeoutInMillis: 300001\n".into(),
            "spec.integration.timeoutInMillis",
            "less than or equal to 300000",
        ),
        (
            "missing-api",
            format!("  path: /t\n{proxy}"),
            "spec.api",
            "Required value",
        ),
        (
            "negative-rate",
            format!("  api: petstore\n  path: /t\n  throttle:\n    rateLimit: -1\n    burstLimit: 5\n{proxy}"),
            "spec.throttle.rateLimit",
            "greater than or equal to 0",
        ),
        (
            "unknown-integration-type",
            "  api: petstore\n  path: /t\n  integration:\n    type: LAMBDA\n".into(),
            "spec.integration.type",
            "Unsupported value: \"LAMBDA\"",
        ),
    ];
    for (name, spec, field, detail) in &cases {
        let out = apply_unchecked(&ns, &route(name, spec));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted: {}", text(&out));
        // The API server's own answer: `The ApiRoute "x" is invalid: <field>: ...`.
        assert!(
            stderr.contains(&format!("The ApiRoute \"{name}\" is invalid")),
            "{name}: not the API server's validation error:\n{stderr}"
        );
        assert!(
            stderr.contains(field),
            "{name}: {field} not named:\n{stderr}"
        );
        assert!(
            stderr.contains(detail),
            "{name}: {detail:?} not said:\n{stderr}"
        );
        let get = env.kubectl(&["get", "-n", &ns, "apiroute", name]);
        assert!(!get.status.success(), "{name} was stored anyway");
        assert!(String::from_utf8_lossy(&get.stderr).contains("NotFound"));
    }

    // A valid update of a stored route to an invalid one is refused too; the old one stays.
    let good = route("updated", &format!("  api: petstore\n  path: /ok\n{proxy}"));
    let out = apply_unchecked(&ns, &good);
    assert!(out.status.success(), "{}", text(&out));
    let out = apply_unchecked(&ns, &good.replace("path: /ok", "path: ok"));
    assert!(!out.status.success(), "the update was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.path"));
    assert_eq!(get_json(&ns, "apiroute/updated")["spec"]["path"], "/ok");
}

#[test]
fn unknown_fields_are_pruned() {
    let env = env();
    let ns = env.fresh_namespace("prune");
    let stage = "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: typo\nspec:\n  api: petstore\n  basepath: /prod\n  variables:\n    backend: b\n";
    let out = apply_unchecked(&ns, stage);
    assert!(out.status.success(), "{}", text(&out));
    let stored = get_json(&ns, "stage/typo");
    assert_eq!(
        stored["spec"],
        serde_json::json!({"api": "petstore", "variables": {"backend": "b"}}),
        "the typo `basepath` is pruned, the rest kept"
    );

    // Nested and top-level unknown fields too.
    let yaml = route(
        "nested",
        "  api: petstore\n  path: /t\n  integration:\n    type: MOCK\n    timeout: 5\n    mock:\n      statusCode: 204\n      colour: red\n",
    ) + "extra: field\n";
    let out = apply_unchecked(&ns, &yaml);
    assert!(out.status.success(), "{}", text(&out));
    let stored = get_json(&ns, "apiroute/nested");
    assert_eq!(
        stored["spec"]["integration"],
        serde_json::json!({"type": "MOCK", "mock": {"statusCode": 204}})
    );
    assert!(stored.get("extra").is_none(), "{stored:#}");
}

#[test]
fn harness_users_authenticate_and_are_subject_to_rbac() {
    let env = env();
    let ns = env.fresh_namespace("rbac");
    let can = |user: &str, verb: &str, what: &str| {
        let out = env.kubectl_as(user, &["auth", "can-i", verb, what, "-n", &ns]);
        let answer = String::from_utf8_lossy(&out.stdout);
        match answer.trim() {
            "yes" => true,
            no if no.starts_with("no") => false,
            _ => panic!("kubectl auth can-i as {user}: {}", text(&out)),
        }
    };
    assert!(can("admin", "delete", "apiroutes.tollhouse.dev"));
    assert!(!can(
        "tollhouse-controller",
        "list",
        "apiroutes.tollhouse.dev"
    ));
    assert!(!can("nobody", "list", "apiroutes.tollhouse.dev"));
    let denied = env.kubectl_as("tollhouse-controller", &["get", "ar", "-n", &ns]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(
        stderr.contains("Forbidden") && stderr.contains("\"tollhouse-controller\""),
        "{stderr}"
    );

    env.apply_yaml(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: read-routes
  namespace: {ns}
rules:
- apiGroups: [tollhouse.dev]
  resources: [apiroutes, stages]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-routes
  namespace: {ns}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: read-routes
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: tollhouse-controller
"
    ));
    // The authorizer sees the binding through its informer: soon, not at once.
    harness::wait_for(
        "the binding to take effect",
        Duration::from_secs(30),
        || can("tollhouse-controller", "list", "apiroutes.tollhouse.dev").then_some(()),
    );
    let listed = env.kubectl_as("tollhouse-controller", &["get", "ar", "-n", &ns]);
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(!can(
        "tollhouse-controller",
        "delete",
        "apiroutes.tollhouse.dev"
    ));
    assert!(!can("nobody", "list", "apiroutes.tollhouse.dev"));
}
