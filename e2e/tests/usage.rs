//! AWS GetUsage over real processes: two dataplanes count a plan's keys and report to the
//! controller, whose `/usageplans/{id}/usage` is read with AWS's own SDK (boto3, installed by
//! `e2e/kube/setup.sh`). The report covers both replicas in one call, survives the controller
//! restarting (the dataplanes send their counts again) and a dataplane restarting (its counts
//! come back from its state directory, not counted twice).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const KEY_A: &str = "UsageKeyA0123456789abcdefXYZ";
const KEY_B: &str = "UsageKeyB0123456789abcdefXYZ";

fn manifests() -> String {
    let secret = |name: &str, key: &str| {
        format!("apiVersion: v1\nkind: Secret\ntype: tollhouse.dev/api-key\nmetadata:\n  name: {name}\n  namespace: shop\n  labels: {{tollhouse.dev/usage-plan: gold}}\nstringData:\n  key: {key}\n")
    };
    [
        "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: prod\n  namespace: shop\nspec:\n  api: shop\n  apiType: REST\n".to_string(),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: keyed\n  namespace: shop\nspec:\n  api: shop\n  path: /keyed\n  methods: [GET]\n  apiKeyRequired: true\n  integration:\n    type: MOCK\n    mock: {statusCode: 200, body: keyed}\n".to_string(),
        secret("partner-a", KEY_A),
        secret("partner-b", KEY_B),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: UsagePlan\nmetadata:\n  name: gold\n  namespace: shop\nspec:\n  apiStages:\n  - stage: prod\n  quota: {limit: 100, period: MONTH}\n  apiKeySelector:\n    matchLabels: {tollhouse.dev/usage-plan: gold}\n".to_string(),
    ]
    .join("---\n")
}

/// boto3's `get_usage` against `endpoint`: the parsed answer (without `ResponseMetadata`), or
/// `{"error": code, "message": …}` for an error the SDK raised.
fn get_usage(endpoint: &str, plan: &str, start: &str, end: &str, extra: Value) -> Value {
    const SCRIPT: &str = r#"
import json, sys
import boto3, botocore.exceptions
c = boto3.client("apigateway", endpoint_url=sys.argv[1], region_name="us-east-1",
                 aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-a-secret")
args = dict(usagePlanId=sys.argv[2], startDate=sys.argv[3], endDate=sys.argv[4], **json.loads(sys.argv[5]))
try:
    r = c.get_usage(**args)
    r.pop("ResponseMetadata", None)
    print(json.dumps(r))
except botocore.exceptions.ClientError as e:
    print(json.dumps({"error": e.response["Error"]["Code"], "message": e.response["Error"]["Message"]}))
"#;
    let python = harness::kube::tool("python-boto3", false);
    let out = Command::new(python)
        .args(["-c", SCRIPT, endpoint, plan, start, end, &extra.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
}

/// YYYY-MM-DD of a day number, as coreutils' `date` writes it (not our own calendar code).
fn date(days: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "+%F", "-d", &format!("@{}", days * 86_400)])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn call(d: &Dataplane, key: &str, n: usize) {
    let c = http();
    for _ in 0..n {
        let r = c
            .get(d.url("/keyed"))
            .header("x-api-key", key)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[test]
fn get_usage_covers_the_fleet_and_outlives_controller_and_dataplane_restarts() {
    let dir = TempDir::new("usage");
    let m = dir.path().join("manifests");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("api.yaml"), manifests()).unwrap();
    let port = free_port();
    let mut controller = Controller::start_on(&m, dir.path(), port);
    let states = [dir.path().join("state-0"), dir.path().join("state-1")];
    let mut dps: Vec<Dataplane> = states
        .iter()
        .map(|s| Dataplane::start(&controller.url(""), s, dir.path()))
        .collect();
    for d in &dps {
        d.wait_synced(&controller);
    }
    call(&dps[0], KEY_A, 7);
    call(&dps[1], KEY_A, 5);
    call(&dps[0], KEY_B, 3);

    let (start, end) = (date(today() - 1), date(today()));
    let endpoint = controller.url("");
    // Yesterday nothing (the whole quota left), today both replicas' calls; remaining is what
    // is left of the month's 100 (the plan's quota) after that day.
    let want = json!({
        "usagePlanId": "shop/gold",
        "startDate": start,
        "endDate": end,
        "items": {
            "shop/partner-a": [[0, 100], [12, 88]],
            "shop/partner-b": [[0, 100], [3, 97]],
        }
    });
    let wait_usage = |endpoint: &str, want: &Value, what: &str| {
        let mut last = Value::Null;
        let found = (0..60).any(|_| {
            last = get_usage(endpoint, "shop/gold", &start, &end, json!({}));
            if last == *want {
                return true;
            }
            std::thread::sleep(Duration::from_millis(500));
            false
        });
        assert!(found, "{what}: got {last}, want {want}");
    };
    wait_usage(&endpoint, &want, "both replicas' counts");

    // Paging as the SDK does it: one key a page, then the next from `position`.
    let page = get_usage(&endpoint, "shop/gold", &start, &end, json!({"limit": 1}));
    assert_eq!(
        page["items"],
        json!({"shop/partner-a": [[0, 100], [12, 88]]})
    );
    let position = page["position"].as_str().unwrap().to_string();
    let next = get_usage(
        &endpoint,
        "shop/gold",
        &start,
        &end,
        json!({"limit": 1, "position": position}),
    );
    assert_eq!(
        next["items"],
        json!({"shop/partner-b": [[0, 100], [3, 97]]})
    );
    assert!(next.get("position").is_none(), "{next}");
    let one = get_usage(
        &endpoint,
        "shop/gold",
        &start,
        &end,
        json!({"keyId": "shop/partner-b"}),
    );
    assert_eq!(one["items"], json!({"shop/partner-b": [[0, 100], [3, 97]]}));
    // AWS's errors, as the SDK raises them.
    let unknown = get_usage(&endpoint, "shop/silver", &start, &end, json!({}));
    assert_eq!(
        unknown,
        json!({"error": "NotFoundException", "message": "Invalid Usage Plan ID specified"})
    );
    let backwards = get_usage(&endpoint, "shop/gold", &end, &start, json!({}));
    assert_eq!(backwards["error"], "BadRequestException", "{backwards}");

    // The controller keeps usage in memory only: restarted, it learns it again from the
    // dataplanes, which see its new epoch and send every count.
    assert!(controller.proc.terminate(Duration::from_secs(10)));
    controller = Controller::start_on(&m, dir.path(), port);
    wait_usage(&endpoint, &want, "after the controller restarted");

    // A dataplane restarted on its state directory is the same source: its counts continue
    // instead of being added a second time.
    assert!(dps[0].proc.terminate(Duration::from_secs(10)));
    dps[0] = Dataplane::start(&controller.url(""), &states[0], dir.path());
    dps[0].wait_synced(&controller);
    call(&dps[0], KEY_A, 1);
    let mut after = want.clone();
    after["items"]["shop/partner-a"] = json!([[0, 100], [13, 87]]);
    wait_usage(&endpoint, &after, "after a dataplane restarted");

    // No key value anywhere it could leak.
    for text in [controller.proc.log_text()]
        .into_iter()
        .chain(dps.iter().map(|d| d.proc.log_text()))
    {
        assert!(!text.contains(KEY_A) && !text.contains(KEY_B));
    }
}
