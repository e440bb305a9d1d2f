//! The operational logs of both binaries, as a log collector reads them: stderr piped into a
//! file (the harness's), so never a colour escape, and with `--log-format json` (or
//! `TOLLHOUSE_LOG_FORMAT=json`) one JSON object a line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use std::path::Path;
use std::time::Duration;

fn manifests(dir: &Path) -> std::path::PathBuf {
    let m = dir.join("manifests");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(
        m.join("api.yaml"),
        "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: prod\n  namespace: default\nspec:\n  api: petstore\n---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: hello\n  namespace: default\nspec:\n  api: petstore\n  path: /hello\n  integration:\n    type: MOCK\n    mock:\n      body: hi\n",
    )
    .unwrap();
    m
}

/// Every line of `text` is a JSON object with a level and a message; returns the objects.
fn json_lines(what: &str, text: &str) -> Vec<serde_json::Value> {
    assert!(!text.trim().is_empty(), "{what} logged nothing");
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: a line that is not JSON ({e}): {line}"));
            assert!(v.is_object(), "{what}: not an object: {line}");
            assert!(v["level"].is_string(), "{what}: no level: {line}");
            assert!(v["timestamp"].is_string(), "{what}: no timestamp: {line}");
            v
        })
        .collect()
}

/// Text logs into a pipe have no ANSI escapes; JSON logs (by flag for the controller, by
/// environment for the dataplane) parse line by line, with the events' fields at the top.
#[test]
fn piped_logs_have_no_colour_and_json_logs_are_one_object_a_line() {
    let dir = TempDir::new("logs");
    let m = manifests(dir.path());

    let text_logs = dir.path().join("text");
    std::fs::create_dir_all(&text_logs).unwrap();
    let controller = Controller::start(&m, &text_logs);
    let dataplane = Dataplane::start(&controller.url(""), &dir.path().join("s1"), &text_logs);
    dataplane.wait_synced(&controller);
    for (what, text) in [
        ("controller", controller.proc.log_text()),
        ("dataplane", dataplane.proc.log_text()),
    ] {
        assert!(text.contains("INFO"), "{what}: {text}");
        assert!(
            !text.contains("\x1b["),
            "{what} writes colour into a pipe: {text:?}"
        );
    }
    drop((dataplane, controller));

    let json_logs = dir.path().join("json");
    std::fs::create_dir_all(&json_logs).unwrap();
    let controller = Controller::start_with(
        &m,
        &json_logs,
        free_port(),
        &["--log-format".into(), "json".into()],
        None,
    );
    let admin = free_port();
    let mut dataplane = Proc::spawn_with_env(
        "tollhouse-dataplane",
        &[
            "--controller".into(),
            controller.url(""),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--admin".into(),
            format!("127.0.0.1:{admin}"),
        ],
        &json_logs,
        &[("TOLLHOUSE_LOG_FORMAT", "json")],
    );
    let client = http();
    wait_for("the dataplane to serve", Duration::from_secs(20), || {
        client
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .ok()
            .filter(|r| r.status() == 200)
    });
    // Stopping logs too: those lines must be JSON as well.
    assert!(dataplane.terminate(Duration::from_secs(20)));
    let lines = json_lines("dataplane", &dataplane.log_text());
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "snapshot applied" && l["snapshot.version"].is_u64()),
        "no flat `snapshot applied` event: {lines:?}"
    );
    let lines = json_lines("controller", &controller.proc.log_text());
    assert!(
        lines.iter().any(|l| l["message"] == "snapshot published"),
        "no `snapshot published` event: {lines:?}"
    );

    // A format that does not exist stops the process at once, naming the ones that do.
    let mut wrong = Proc::spawn(
        "tollhouse-controller",
        &[
            "--dir".into(),
            m.display().to_string(),
            "--log-format".into(),
            "xml".into(),
        ],
        &json_logs,
    );
    let status = wrong.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(!status.success());
    assert!(wrong.log_text().contains("text"), "{}", wrong.log_text());
}
