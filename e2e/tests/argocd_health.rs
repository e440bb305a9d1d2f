//! The Argo CD integration in `deploy/argocd`: `health.lua` run by a real Lua 5.1 interpreter
//! (`lua5.1`, installed by `e2e/kube/setup.sh`) on every object of `testdata/`, with the answer
//! `health_test.yaml` expects; `argocd-cm.yaml` holding exactly that script for every kind in
//! `crds/`; the example Applications; and the CRDs' size under client-side apply.
//!
//! The script runs as Argo CD runs it: the object converted from JSON into the global `obj` (a
//! null member left out, a null element leaving a hole, as gopher-lua's tables do), then the
//! script as a chunk whose returned table is read. Argo CD opens only the base, table and os
//! libraries, so the chunk first takes `string`, `math`, `io` and string methods away: a script
//! that works here works there. A Lua error fails the test, as it would show in Argo CD.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ARGOCD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/argocd");
const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The argocd-cm key of a Tollhouse kind, without the kind.
const KEY_PREFIX: &str = "resource.customizations.health.tollhouse.dev_";
/// kubectl's (and Argo CD's client-side apply's) limit on all annotations of an object; the
/// `kubectl.kubernetes.io/last-applied-configuration` annotation holds the whole object as JSON.
const ANNOTATIONS_LIMIT: usize = 262_144;
/// What the CRDs are kept under: a quarter of the limit, so that they can grow.
const CRD_BUDGET: usize = 64 * 1024;

/// Runs before the object and the script: the libraries Argo CD does not open are taken away.
const SANDBOX: &str = r#"local write = io.write
string, math, io, debug, coroutine = nil, nil, nil, nil, nil
getmetatable("").__index = nil
"#;

/// `health_test.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HealthTest {
    health_status: Health,
    input_path: String,
}

/// What the script returns.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Health {
    status: String,
    #[serde(default)]
    message: String,
}

fn argocd(path: &str) -> PathBuf {
    Path::new(ARGOCD).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn script() -> String {
    read(&argocd("health.lua"))
}

fn table() -> HealthTests {
    let path = argocd("health_test.yaml");
    serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `s` as a quoted Lua string literal (no long brackets, so a `]]` in the text needs no care):
/// printable ASCII as is, every other byte (newlines, UTF-8 sequences) as a three-digit decimal
/// escape, which Lua 5.1 reads back byte for byte whatever digit follows it.
fn lua_string(s: &str, out: &mut String) {
    out.push('"');
    for byte in s.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => write!(out, "\\{byte:03}").unwrap(),
        }
    }
    out.push('"');
}

/// `value` as a Lua expression, the way Argo CD converts the object: objects and arrays become
/// tables (arrays from index 1), a null member is left out, a null element leaves a hole.
fn lua_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("nil"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write!(out, "{n}").unwrap(),
        Value::String(s) => lua_string(s, out),
        Value::Array(items) => {
            out.push('{');
            for item in items {
                lua_value(item, out);
                out.push_str(", ");
            }
            out.push('}');
        }
        Value::Object(members) => {
            out.push('{');
            for (key, member) in members.iter().filter(|(_, m)| !m.is_null()) {
                out.push('[');
                lua_string(key, out);
                out.push_str("] = ");
                lua_value(member, out);
                out.push_str(", ");
            }
            out.push('}');
        }
    }
}

/// Runs `chunk` with `lua5.1`; its standard output, or the interpreter's error.
fn run_lua(chunk: &str) -> Result<String, String> {
    let mut child = match Command::new("lua5.1")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "lua5.1 is not on PATH: the Argo CD health checks are tested with a real Lua 5.1 \
             interpreter (Argo CD runs them with gopher-lua, a Lua 5.1). Install it with \
             `sudo apt-get install lua5.1` (e2e/kube/setup.sh does, when it installs anything; \
             scripts/test runs it)."
        ),
        Err(e) => panic!("cannot start lua5.1: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(chunk.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What `script` answers for `object`, run as Argo CD runs it.
fn health(script: &str, object: &Value) -> Result<Health, String> {
    let mut chunk = String::from(SANDBOX);
    chunk.push_str("obj = ");
    lua_value(object, &mut chunk);
    chunk.push_str("\nlocal function health()\n");
    chunk.push_str(script);
    chunk.push_str("\nend\nlocal hs = health()\n");
    chunk.push_str("write(tostring(hs.status), \"\\n\", tostring(hs.message or \"\"))\n");
    let out = run_lua(&chunk)?;
    let (status, message) = out.split_once('\n').unwrap_or((&out, ""));
    Ok(Health {
        status: status.into(),
        message: message.into(),
    })
}

#[test]
fn health_lua_gives_the_expected_answer_for_every_object() {
    let script = script();
    let mut failures = Vec::new();
    for row in table().tests {
        let object = yaml(&argocd(&row.input_path));
        match health(&script, &object) {
            Ok(got) if got == row.health_status => {
                println!(
                    "ok  {:<55} {:<11} {}",
                    row.input_path, got.status, got.message
                );
            }
            Ok(got) => failures.push(format!(
                "{}: expected {:?}, got {:?}",
                row.input_path, row.health_status, got
            )),
            Err(error) => failures.push(format!("{}: Lua error: {error}", row.input_path)),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_testdata_file_is_in_the_table_and_says_what_it_proves() {
    let rows: Vec<String> = table().tests.into_iter().map(|t| t.input_path).collect();
    let listed: BTreeSet<&str> = rows.iter().map(String::as_str).collect();
    assert_eq!(listed.len(), rows.len(), "a file is listed twice: {rows:?}");
    for row in &rows {
        assert!(
            argocd(row).is_file(),
            "health_test.yaml lists {row}, which does not exist"
        );
    }
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(argocd("testdata")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let path = format!("testdata/{name}");
        let text = read(&argocd(&path));
        assert!(
            text.starts_with("# "),
            "{path} must begin with a comment saying what it proves"
        );
        files.insert(path);
    }
    let files: BTreeSet<&str> = files.iter().map(String::as_str).collect();
    let unlisted: Vec<&&str> = files.difference(&listed).collect();
    assert!(unlisted.is_empty(), "not in health_test.yaml: {unlisted:?}");
}

/// The kinds of the CRDs in `dir`, by file.
fn crd_kinds(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let crd = yaml(&path);
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            assert_eq!(crd["spec"]["group"], "tollhouse.dev", "{}", path.display());
            out.push((path, kind));
        }
    }
    out.sort();
    out
}

/// `argocd-cm.yaml` as it should be: the hand-written part up to `data:`, then one key per kind
/// holding the script as a literal block.
fn render_argocd_cm(current: &str, kinds: &[String], script: &str) -> String {
    let (head, _) = current
        .split_once("\ndata:\n")
        .expect("argocd-cm.yaml has a `data:` line");
    let mut out = format!("{head}\ndata:\n");
    for kind in kinds {
        writeln!(out, "  {KEY_PREFIX}{kind}: |").unwrap();
        for line in script.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                writeln!(out, "    {line}").unwrap();
            }
        }
    }
    out
}

#[test]
fn argocd_cm_holds_exactly_health_lua_for_every_kind() {
    let script = script();
    // What a YAML literal block (`|`) can carry back unchanged.
    assert!(script.ends_with('\n') && !script.ends_with("\n\n"));
    for (i, line) in script.lines().enumerate() {
        assert!(!line.contains('\t'), "health.lua:{}: a tab", i + 1);
        assert_eq!(
            line.trim_end(),
            line,
            "health.lua:{}: trailing space",
            i + 1
        );
    }
    let mut kinds: Vec<String> = crd_kinds(&Path::new(REPO).join("crds"))
        .into_iter()
        .map(|(_, kind)| kind)
        .collect();
    // Stage first, then the rest as the file lists them: keep the order argocd-cm.yaml has.
    let path = argocd("argocd-cm.yaml");
    let current = read(&path);
    kinds.sort_by_key(|k| {
        current
            .find(&format!("{KEY_PREFIX}{k}:"))
            .unwrap_or(usize::MAX)
    });
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, render_argocd_cm(&current, &kinds, &script)).unwrap();
    }

    let cm = yaml(&path);
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    assert_eq!(cm["metadata"]["namespace"], "argocd");
    let data = cm["data"].as_object().expect("argocd-cm.yaml has data");
    for kind in &kinds {
        let key = format!("{KEY_PREFIX}{kind}");
        let value = data
            .get(&key)
            .unwrap_or_else(|| panic!("argocd-cm.yaml has no {key} (UPDATE_GOLDEN=1 adds it)"));
        assert!(
            value.as_str() == Some(script.as_str()),
            "{key} differs from health.lua (UPDATE_GOLDEN=1 rewrites it)"
        );
    }
    for key in data.keys() {
        assert!(
            key.strip_prefix(KEY_PREFIX)
                .is_some_and(|kind| kinds.iter().any(|k| k == kind)),
            "argocd-cm.yaml: {key} is no health check of a kind in crds/"
        );
    }
}

#[test]
fn crds_are_far_below_the_last_applied_configuration_limit() {
    let mut dirs = vec![Path::new(REPO).join("crds")];
    // The chart ships the same CRDs for Argo CD's tollhouse-crds Application.
    let chart = Path::new(REPO).join("charts/tollhouse/crds");
    if chart.is_dir() {
        dirs.push(chart);
    }
    for dir in dirs {
        for (path, kind) in crd_kinds(&dir) {
            let size = serde_json::to_string(&yaml(&path)).unwrap().len();
            println!(
                "{:<60} {kind:<10} {size:>6} bytes as JSON ({:.1}% of the {ANNOTATIONS_LIMIT}-byte annotation limit)",
                path.strip_prefix(REPO).unwrap_or(&path).display(),
                size as f64 * 100.0 / ANNOTATIONS_LIMIT as f64
            );
            assert!(
                size < CRD_BUDGET,
                "{}: {size} bytes as JSON; keep CRDs under {CRD_BUDGET} so client-side apply works",
                path.display()
            );
        }
    }
}

#[test]
fn the_example_applications_apply_the_crds_first() {
    let text = read(&argocd("application.yaml"));
    let apps: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect();
    let app = |name: &str| {
        apps.iter()
            .find(|a| a["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("application.yaml has no Application {name}"))
    };
    let wave = |a: &Value| -> i64 {
        a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let options = |a: &Value| -> Vec<String> {
        serde_json::from_value(a["spec"]["syncPolicy"]["syncOptions"].clone()).unwrap()
    };
    let crds = app("tollhouse-crds");
    let tollhouse = app("tollhouse");
    for a in [crds, tollhouse] {
        assert_eq!(a["kind"], "Application");
        assert_eq!(a["apiVersion"], "argoproj.io/v1alpha1");
    }
    assert!(wave(crds) < wave(tollhouse));
    assert_eq!(crds["spec"]["source"]["path"], "charts/tollhouse/crds");
    for option in ["ServerSideApply=true", "Replace=false"] {
        assert!(options(crds).iter().any(|o| o == option), "{option}");
    }
    let source = &tollhouse["spec"]["source"];
    assert_eq!(source["path"], "charts/tollhouse");
    assert_eq!(source["helm"]["skipCrds"], true);
    assert_eq!(source["helm"]["releaseName"], "tollhouse");
    let values: Value = serde_yaml::from_str(source["helm"]["values"].as_str().unwrap()).unwrap();
    assert_eq!(values["tls"]["mode"], "certManager");
    assert_eq!(tollhouse["spec"]["destination"]["namespace"], "tollhouse");
    assert!(options(tollhouse)
        .iter()
        .any(|o| o == "CreateNamespace=true"));
    assert!(Path::new(REPO)
        .join("charts/tollhouse/Chart.yaml")
        .is_file());
}

#[test]
fn lua_literals_carry_any_string_byte_for_byte() {
    let awkward = [
        "plain",
        "]] ]=] [[ --",
        "quote \" backslash \\ \\\"",
        "new\nline\ttab\r\0nul",
        "digits after an escape: \n123",
        "UTF-8: é ✓ 😀",
        "",
    ];
    for s in awkward {
        let mut chunk = String::from("io.write(");
        lua_string(s, &mut chunk);
        chunk.push(')');
        assert_eq!(run_lua(&chunk).unwrap(), s);
    }
    // Arrays from 1, a null member left out, a null element a hole that ends ipairs.
    let object = serde_json::json!({"list": ["a", "b", null, "d"], "gone": null, "n": -2.5});
    let mut chunk = String::from("local o = ");
    lua_value(&object, &mut chunk);
    chunk.push_str(
        "\nlocal n = 0 for _ in ipairs(o.list) do n = n + 1 end\n\
         io.write(o.list[1], o.list[4], n, tostring(o.gone), o.n)",
    );
    assert_eq!(run_lua(&chunk).unwrap(), "ad2nil-2.5");
}

#[test]
fn the_sandbox_takes_away_what_argo_cd_does_not_open() {
    let object = serde_json::json!({});
    for script in [
        "return { status = string.upper(\"healthy\") }",
        "return { status = (\"Healthy\"):sub(1) }",
        "return { status = \"Healthy\", message = tostring(math.floor(1.5)) }",
    ] {
        let result = health(script, &object);
        assert!(result.is_err(), "{script} ran: {result:?}");
    }
    assert_eq!(
        health("return { status = \"Healthy\" }", &object).unwrap(),
        Health {
            status: "Healthy".into(),
            message: String::new()
        }
    );
}
