//! The Helm chart `charts/tollhouse`, driven by the real helm (e2e/kube/setup.sh installs it):
//! `helm lint --strict`, golden renders of the `ci/*-values.yaml` files (`UPDATE_GOLDEN=1`
//! rewrites them), the values schema and its generated reference, and an install into the real
//! API server where the controller and a dataplane run from the installed Deployments' own
//! arguments, as the chart's ServiceAccounts, with exactly the chart's RBAC and certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use base64::Engine;
use harness::kube::{text, KubeEnv};
use harness::tls::{der, presented, SecretDir};
use harness::{free_port, http, wait_for, Proc, TempDir};
use serde_json::Value;
use serde_yaml::Value as Yaml;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/tollhouse");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/chart");
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

// ---------------------------------------------------------------------------------------------
// helm without an API server

/// Runs helm, without a cluster, with its caches in a scratch directory; does not check the
/// exit status.
fn helm(args: &[&str]) -> Output {
    let scratch = std::env::temp_dir().join(format!("tollhouse-e2e-helm-{}", std::process::id()));
    harness::kube::helm(&scratch, None, true, args)
}

fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {} failed:\n{}",
        args.join(" "),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CI values files: `(name, path)`, e.g. `("defaults", .../ci/defaults-values.yaml)`.
fn values_files() -> Vec<(String, PathBuf)> {
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(Path::new(CHART).join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p
                .file_name()?
                .to_str()?
                .strip_suffix("-values.yaml")?
                .to_string();
            Some((name, p))
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "ci/ holds too few values files: {files:?}"
    );
    files
}

/// `helm template` of the chart as release `tollhouse` in namespace `tollhouse`.
fn render(values: &Path, extra: &[&str]) -> String {
    let values = values.display().to_string();
    let mut args = vec![
        "template",
        "tollhouse",
        CHART,
        "--namespace",
        "tollhouse",
        "-f",
        &values,
    ];
    args.extend_from_slice(extra);
    helm_ok(&args)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| {
            let v = Value::deserialize(d).unwrap();
            (!v.is_null()).then_some(v)
        })
        .collect()
}

use serde::Deserialize;

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// What `helm install` prints after the install (NOTES.txt), for a values file.
fn notes(values: &Path) -> String {
    let values = values.display().to_string();
    let out = helm_ok(&[
        "install",
        "tollhouse",
        CHART,
        "--namespace",
        "tollhouse",
        "--dry-run=client",
        "-f",
        &values,
    ]);
    out.split_once("\nNOTES:\n")
        .map(|(_, notes)| notes.to_string())
        .unwrap_or_else(|| panic!("no NOTES in:\n{out}"))
}

/// One line that says what a base64 PEM value of a Secret is, instead of the random bytes:
/// certificates by subject, issuer, names and validity; keys only by their type.
fn describe_pem(b64: &str) -> String {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("Secret data is base64");
    let pem = String::from_utf8(pem).expect("PEM text");
    let label = pem
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"))
        .expect("a PEM block");
    if label != "CERTIFICATE" {
        return format!("<{label}: not shown>");
    }
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let cert = block.parse_x509().unwrap();
    let cn = |name: &x509_parser::x509::X509Name| {
        name.iter_common_name()
            .filter_map(|c| c.as_str().ok())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut dns: Vec<String> = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = name {
                dns.push((*d).to_string());
            }
        }
    }
    let validity = cert.validity();
    let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
    format!(
        "<certificate CN={} issuer={} ca={} dns=[{}] days={days}>",
        cn(cert.subject()),
        cn(cert.issuer()),
        cert.is_ca(),
        dns.join(" ")
    )
}

/// The render with every generated certificate and key replaced by its description.
fn normalise(rendered: &str) -> String {
    let mut out = String::with_capacity(rendered.len());
    let mut secret = false;
    for line in rendered.lines() {
        if line == "---" {
            secret = false;
        } else if line == "kind: Secret" {
            secret = true;
        }
        let data = ["  tls.crt: ", "  tls.key: ", "  ca.crt: "]
            .iter()
            .find(|p| line.starts_with(**p));
        match data {
            Some(prefix) if secret => {
                out.push_str(prefix);
                out.push_str(&describe_pem(&line[prefix.len()..]));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn helm_lint_strict_passes_for_every_values_file() {
    helm_ok(&["lint", "--strict", CHART]);
    for (name, path) in values_files() {
        let out = helm(&["lint", "--strict", CHART, "-f", &path.display().to_string()]);
        assert!(out.status.success(), "lint with {name}:\n{}", text(&out));
    }
}

/// Golden renders; each `ci/*-values.yaml` begins with a comment saying what it proves.
#[test]
fn renders_match_the_goldens() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for (name, path) in values_files() {
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(
            first.starts_with("# Proves: "),
            "{} must begin with `# Proves: ` and what it proves",
            path.display()
        );
        let notes = notes(&path);
        for (golden, got) in [
            (format!("{name}.yaml"), normalise(&render(&path, &[]))),
            (format!("{name}.notes.txt"), notes),
        ] {
            let golden = Path::new(GOLDEN).join(golden);
            if update {
                std::fs::create_dir_all(GOLDEN).unwrap();
                std::fs::write(&golden, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&golden).unwrap_or_default();
            if got != want {
                stale.push(format!(
                    "{name}: {} differs from the render (first difference at line {})",
                    golden.display(),
                    got.lines()
                        .zip(want.lines())
                        .position(|(a, b)| a != b)
                        .map_or(got.lines().count().min(want.lines().count()), |i| i)
                        + 1
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nrun `UPDATE_GOLDEN=1 cargo test -p tollhouse-e2e --test chart renders_match` and review the diff",
        stale.join("\n")
    );
}

/// Leaf paths of a values tree: scalars, lists, empty maps, and maps the schema leaves open
/// (security contexts), in file order.
fn leaves(prefix: &str, value: &Yaml, schema: &Value, out: &mut Vec<(String, Yaml)>) {
    match value {
        Yaml::Mapping(map) if !map.is_empty() && schema["properties"].is_object() => {
            for (k, v) in map {
                let k = k.as_str().unwrap();
                let path = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, &schema["properties"][k], out);
            }
        }
        _ => out.push((prefix.to_string(), value.clone())),
    }
}

/// Every value of values.yaml, as `(dotted path, default)`.
fn all_values() -> Vec<(String, Yaml)> {
    let mut all = Vec::new();
    leaves("", &default_values(), &schema(), &mut all);
    all
}

fn lookup<'a>(value: &'a Yaml, path: &str) -> Option<&'a Yaml> {
    path.split('.').try_fold(value, |v, k| v.get(k))
}

fn default_values() -> Yaml {
    serde_yaml::from_str(&std::fs::read_to_string(Path::new(CHART).join("values.yaml")).unwrap())
        .unwrap()
}

/// Every value the chart exposes is set to something other than its default by at least one
/// golden values file, so each golden shows what the value does.
#[test]
fn every_value_is_exercised_by_a_golden() {
    let all = all_values();
    let files: Vec<(String, Yaml)> = values_files()
        .into_iter()
        .map(|(n, p)| {
            (
                n,
                serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap(),
            )
        })
        .collect();
    let uncovered: Vec<&str> = all
        .iter()
        .filter(|(path, default)| {
            !files
                .iter()
                .any(|(_, v)| lookup(v, path).is_some_and(|set| set != default))
        })
        .map(|(path, _)| path.as_str())
        .collect();
    println!(
        "{} values, {} exercised by a golden",
        all.len(),
        all.len() - uncovered.len()
    );
    assert!(
        uncovered.is_empty(),
        "values no golden sets to a non-default value: {uncovered:?}"
    );
}

fn schema() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(Path::new(CHART).join("values.schema.json")).unwrap(),
    )
    .unwrap()
}

fn schema_at<'a>(schema: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(schema, |s, k| s.get("properties")?.get(k))
}

/// The values reference in docs/helm-values.md, generated from values.yaml (keys, order,
/// defaults) and values.schema.json (types, allowed values, descriptions).
fn values_reference() -> String {
    let schema = schema();
    let all = all_values();
    let mut out = String::from(
        "# Chart values\n\n\
         Generated from `charts/tollhouse/values.schema.json` and `values.yaml` by the chart \
         tests (`UPDATE_GOLDEN=1 cargo test -p tollhouse-e2e --test chart`); do not edit.\n\
         Helm checks every value against the schema: unknown keys, wrong types and values \
         outside the allowed ones are refused before anything is applied.\n\n\
         | Key | Type | Default | Description |\n|---|---|---|---|\n",
    );
    for (path, default) in all {
        let node = schema_at(&schema, &path).unwrap_or_else(|| panic!("{path} not in the schema"));
        let ty = match (&node["type"], &node["anyOf"]) {
            (Value::String(t), _) => t.clone(),
            (Value::Array(ts), _) => ts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" or "),
            (_, Value::Array(any)) => any
                .iter()
                .filter_map(|a| a["type"].as_str())
                .collect::<Vec<_>>()
                .join(" or "),
            _ => "any".into(),
        };
        let mut description = node["description"].as_str().unwrap_or("").to_string();
        if let Some(allowed) = node["enum"].as_array() {
            let allowed: Vec<String> = allowed.iter().map(|v| format!("`{v}`")).collect();
            description.push_str(&format!(" One of {}.", allowed.join(", ")));
        }
        let default = serde_json::to_string(&serde_json::to_value(&default).unwrap()).unwrap();
        out.push_str(&format!(
            "| `{path}` | {ty} | `{}` | {} |\n",
            default.replace('|', "\\|"),
            description.replace('|', "\\|")
        ));
    }
    out
}

/// Every value has a schema entry with a description, the schema has nothing values.yaml
/// lacks, and docs/helm-values.md is the current reference.
#[test]
fn the_schema_describes_every_value_and_the_reference_is_current() {
    let schema = schema();
    let all = all_values();
    for (path, _) in &all {
        let node = schema_at(&schema, path).unwrap_or_else(|| panic!("{path} not in the schema"));
        assert!(
            node["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{path} has no description in the schema"
        );
    }
    // The other way round: a schema property values.yaml does not have is a typo or a leftover.
    fn walk(prefix: &str, node: &Value, values: &Yaml, missing: &mut Vec<String>) {
        let Some(props) = node["properties"].as_object() else {
            return;
        };
        for (k, child) in props {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match values.get(k.as_str()) {
                Some(v) => walk(&path, child, v, missing),
                // `global` is Helm's; issuerRef's fields and further resource quantities are
                // only set by users.
                None if path == "global"
                    || path.starts_with("tls.certManager.issuerRef.")
                    || path.contains(".resources.") => {}
                None => missing.push(path),
            }
        }
    }
    let mut missing = Vec::new();
    walk("", &schema, &default_values(), &mut missing);
    assert!(
        missing.is_empty(),
        "in the schema but not values.yaml: {missing:?}"
    );

    let doc = Path::new(ROOT).join("docs/helm-values.md");
    let want = values_reference();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&doc, &want).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&doc).unwrap_or_default(),
        want,
        "docs/helm-values.md is stale: UPDATE_GOLDEN=1 cargo test -p tollhouse-e2e --test chart"
    );
}

/// Bad values are refused before anything is rendered, with a message naming the value.
#[test]
fn bad_values_are_refused_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["controller.replicas=0"],
            "at '/controller/replicas': minimum: got 0, want 1",
        ),
        (
            &["dataplane.service.public.type=Loadbalancer"],
            "at '/dataplane/service/public/type': value must be one of 'LoadBalancer', 'NodePort', 'ClusterIP'",
        ),
        (
            &["dataplane.replica=3"],
            "at '/dataplane': additional properties 'replica' not allowed",
        ),
        (
            &["tls.mode=vault"],
            "at '/tls/mode': value must be one of 'generate', 'certManager', 'existingSecret'",
        ),
        (
            &["tls.certManager.duration=90days"],
            "at '/tls/certManager/duration'",
        ),
        (
            &["dataplane.pdb.maxUnavailable=most"],
            "at '/dataplane/pdb/maxUnavailable'",
        ),
        (
            &["tls.mode=existingSecret", "tls.existingSecret.controller=mine"],
            "tls.mode=existingSecret needs both tls.existingSecret.controller and tls.existingSecret.dataplane",
        ),
        (
            &[
                "dataplane.autoscaling.enabled=true",
                "dataplane.autoscaling.minReplicas=5",
                "dataplane.autoscaling.maxReplicas=2",
            ],
            "dataplane.autoscaling.minReplicas (5) is above dataplane.autoscaling.maxReplicas (2)",
        ),
        (
            &[
                "dataplane.service.public.enabled=false",
                "dataplane.service.internal.enabled=false",
            ],
            "nothing could reach the dataplanes",
        ),
        (
            &["dataplane.drainDelaySeconds=30"],
            "dataplane.drainDelaySeconds (30) must be below dataplane.terminationGracePeriodSeconds (30)",
        ),
        (
            &["redis.url=redis://r:6379", "redis.existingSecret.name=mine"],
            "redis.url and redis.existingSecret.name are both set",
        ),
        (&["redis.url=r:6379"], "at '/redis/url'"),
        (
            &["redis.inChart.enabled=true", "redis.url=redis://r:6379"],
            "use the chart's Redis or yours, not both",
        ),
        (
            &["controller.publicUrl=api.example.com"],
            "controller.publicUrl \"api.example.com\" must start with http:// or https://",
        ),
    ];
    for (sets, message) in cases {
        let mut args = vec!["template", "t", CHART];
        for s in *sets {
            args.extend(["--set", s]);
        }
        let out = helm(&args);
        assert!(!out.status.success(), "{sets:?} was accepted");
        let said = text(&out);
        assert!(
            said.contains(message),
            "{sets:?}: expected {message:?} in:\n{said}"
        );
    }
}

/// Helm never upgrades a chart's crds/: they must be exactly the generated ones, small enough
/// for client-side apply's last-applied annotation (256 KiB).
#[test]
fn the_chart_crds_are_the_generated_crds() {
    let generated = Path::new(ROOT).join("crds");
    let mut names: Vec<String> = std::fs::read_dir(&generated)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut in_chart: Vec<String> = std::fs::read_dir(Path::new(CHART).join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    in_chart.sort();
    assert_eq!(names, in_chart, "charts/tollhouse/crds holds other files");
    for name in names {
        let a = std::fs::read(generated.join(&name)).unwrap();
        let b = std::fs::read(Path::new(CHART).join("crds").join(&name)).unwrap();
        assert!(
            a == b,
            "charts/tollhouse/crds/{name} differs from crds/{name}: cp crds/*.yaml charts/tollhouse/crds/"
        );
    }
}

/// The chart's controller rules are deploy/controller-rbac.yaml's, which the operator tests run
/// with.
#[test]
fn the_chart_rbac_is_the_operator_tests_rbac() {
    let docs = documents(&render(
        &Path::new(CHART).join("ci/defaults-values.yaml"),
        &[],
    ));
    let chart = &find(&docs, "ClusterRole", "tollhouse-controller-tollhouse")["rules"];
    let manifest = documents(
        &std::fs::read_to_string(Path::new(ROOT).join("deploy/controller-rbac.yaml")).unwrap(),
    );
    let deploy = &find(&manifest, "ClusterRole", "tollhouse-controller")["rules"];
    assert_eq!(chart, deploy);
    let lease = &find(&docs, "Role", "tollhouse-controller-leader-election")["rules"];
    let deploy_lease = &find(&manifest, "Role", "tollhouse-controller-leader-election")["rules"];
    assert_eq!(lease, deploy_lease);
}

/// Every pod the chart runs: non-root, read-only root filesystem, no capabilities, no privilege
/// escalation, seccomp RuntimeDefault, resource requests, probes; the dataplane without a
/// service account token.
#[test]
fn pods_are_hardened() {
    for (name, path) in values_files() {
        let docs = documents(&render(&path, &[]));
        let deployments: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
        // The controller and the dataplanes, and the in-chart Redis when it is on.
        let redis = documents(&std::fs::read_to_string(&path).unwrap())[0]["redis"]["inChart"]
            ["enabled"]
            == true;
        assert_eq!(deployments.len(), if redis { 3 } else { 2 }, "{name}");
        for d in deployments {
            let component = &d["metadata"]["labels"]["app.kubernetes.io/component"];
            let what = format!("{name}: {}", d["metadata"]["name"]);
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            assert_ne!(pod["securityContext"]["runAsUser"], 0, "{what}");
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{what}"
                );
                assert!(sc["capabilities"]["add"].is_null(), "{what}");
                assert!(c["resources"]["requests"]["cpu"].is_string(), "{what}");
                assert!(c["resources"]["requests"]["memory"].is_string(), "{what}");
                assert!(c["resources"]["limits"]["memory"].is_string(), "{what}");
                for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                    if component == "redis" {
                        assert!(c[probe].is_object(), "{what} {probe}");
                    } else {
                        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{what} {probe}");
                    }
                }
            }
            if component == "dataplane" || component == "redis" {
                assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
            }
        }
        let dataplane_sa = docs
            .iter()
            .find(|d| {
                d["kind"] == "ServiceAccount"
                    && d["metadata"]["labels"]["app.kubernetes.io/component"] == "dataplane"
            })
            .unwrap();
        assert_eq!(
            dataplane_sa["automountServiceAccountToken"], false,
            "{name}"
        );
        // Nothing binds a role to the dataplane's account.
        for d in &docs {
            if d["kind"] == "RoleBinding" || d["kind"] == "ClusterRoleBinding" {
                assert_ne!(
                    d["subjects"][0]["name"], dataplane_sa["metadata"]["name"],
                    "{name}: {} binds the dataplane",
                    d["metadata"]["name"]
                );
            }
        }
    }
}

/// With the default generate mode, both leaves chain to the CA in their Secrets, the
/// controller's certificate names the Service the dataplanes dial, and validity follows the
/// values (a golden masks the bytes, so this checks them).
#[test]
fn generated_certificates_chain_to_the_ca_and_follow_the_validity_values() {
    let path = Path::new(CHART).join("ci/generate-values.yaml");
    let docs = documents(&render(&path, &[]));
    let data = |name: &str, key: &str| {
        let b64 = find(&docs, "Secret", name)["data"][key].as_str().unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let ca = data("tollhouse-ca", "tls.crt");
    for secret in ["tollhouse-controller-tls", "tollhouse-dataplane-tls"] {
        assert_eq!(data(secret, "ca.crt"), ca, "{secret} trusts another CA");
        let (_, leaf) = x509_parser::pem::parse_x509_pem(&data(secret, "tls.crt")).unwrap();
        let leaf = leaf.parse_x509().unwrap();
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca).unwrap();
        let ca_cert = ca_pem.parse_x509().unwrap();
        leaf.verify_signature(Some(ca_cert.public_key()))
            .unwrap_or_else(|e| panic!("{secret} is not signed by the CA: {e}"));
        let v = leaf.validity();
        assert_eq!(
            (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400,
            30
        );
        let v = ca_cert.validity();
        assert_eq!(
            (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400,
            730
        );
    }
    let described = describe_pem(
        find(&docs, "Secret", "tollhouse-controller-tls")["data"]["tls.crt"]
            .as_str()
            .unwrap(),
    );
    assert!(
        described.contains("tollhouse-controller.tollhouse.svc "),
        "{described}"
    );
    let dataplane = find(&docs, "Deployment", "tollhouse-dataplane");
    let args = dataplane["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(
        args.contains("--controller-server-name=tollhouse-controller.tollhouse.svc"),
        "{args}"
    );
}

// ---------------------------------------------------------------------------------------------
// helm install into the real API server

/// A Secret's data, decoded: what kubelet writes into the files of a Secret volume.
fn secret_files(env: &KubeEnv, ns: &str, secret: &str) -> Vec<(String, String)> {
    let object: Value =
        serde_json::from_str(&env.kubectl_ok(&["get", "secret", secret, "-n", ns, "-o", "json"]))
            .unwrap();
    object["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, b64)| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.as_str().unwrap())
                .unwrap();
            (key.clone(), String::from_utf8(bytes).unwrap())
        })
        .collect()
}

/// The value of `key` among a Secret's files.
fn file_of<'a>(files: &'a [(String, String)], key: &str) -> &'a str {
    files
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in the Secret"))
}

/// The container of an installed Deployment: its args and the env values it sets literally.
fn container(env: &KubeEnv, ns: &str, deployment: &str) -> Value {
    let d: Value = serde_json::from_str(&env.kubectl_ok(&[
        "get",
        "deployment",
        deployment,
        "-n",
        ns,
        "-o",
        "json",
    ]))
    .unwrap();
    d["spec"]["template"]["spec"]["containers"][0].clone()
}

fn args_of(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// Rewrites a container's arguments for a process on this machine: the mount path becomes the
/// projected Secret, `0.0.0.0:<port>` a loopback port, `$(VAR)` the pod's value, and the
/// in-cluster API (`--kubernetes`) the given kubeconfig. Everything else is kept as rendered.
fn localise(
    args: &[String],
    tls: &Path,
    ports: &[(u16, u16)],
    vars: &[(&str, &str)],
    replace: &[(&str, Vec<String>)],
) -> Vec<String> {
    args.iter()
        .flat_map(|a| {
            let mut a = a.replace("/etc/tollhouse/tls", &tls.display().to_string());
            for (from, to) in ports {
                a = a.replace(&format!("0.0.0.0:{from}"), &format!("127.0.0.1:{to}"));
                a = a.replace(&format!("$(POD_IP):{from}"), &format!("$(POD_IP):{to}"));
            }
            for (var, value) in vars {
                a = a.replace(&format!("$({var})"), value);
            }
            for (flag, with) in replace {
                if a == *flag || a.starts_with(&format!("{flag}=")) {
                    return with.clone();
                }
            }
            vec![a]
        })
        .collect()
}

/// `kubectl auth can-i` as `user`: true for yes.
fn can_i(env: &KubeEnv, user: &str, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
    let sub = format!("--subresource={sub}");
    let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
    if sub != "--subresource=" {
        args.push(&sub);
    }
    match ns {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let out = env.kubectl(&args);
    String::from_utf8_lossy(&out.stdout).trim() == "yes"
}

/// What is left in `ns` of every listable kind, as `kind/name`.
fn everything_in(env: &KubeEnv, ns: &str) -> BTreeSet<String> {
    let kinds = env.kubectl_ok(&[
        "api-resources",
        "--verbs=list",
        "--namespaced",
        "-o",
        "name",
    ]);
    let kinds: Vec<&str> = kinds
        .lines()
        // Events come and go on their own; the chart creates none.
        .filter(|k| !k.is_empty() && !k.starts_with("events"))
        .collect();
    env.kubectl_ok(&[
        "get",
        &kinds.join(","),
        "-n",
        ns,
        "-o",
        "name",
        "--ignore-not-found",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The installed controller and dataplane Deployments, run here from their own arguments as
/// the chart's ServiceAccounts, with the chart's certificates projected as kubelet would.
struct Release {
    controller: Proc,
    _dataplane: Proc,
    controller_tls: SecretDir,
    dataplane_tls: SecretDir,
    /// The controller's snapshot port (`delivery`, 8443 in the pod).
    delivery: u16,
    /// The name the dataplane verifies in the controller's certificate.
    server_name: String,
    /// The dataplane's plain HTTP port (`http`, 8080 in the pod).
    http_port: u16,
    /// `ca.crt` and the dataplane's `tls.crt` as first projected.
    projected_ca: String,
    projected_dataplane_cert: String,
    _state: TempDir,
}

impl Release {
    /// Starts both; `watch` narrows the controller to one namespace when the chart watches
    /// all of them (the shared test server holds other tests' objects).
    fn run(env: &KubeEnv, ns: &str, release: &str, logs: &Path, watch: Option<&str>) -> Release {
        let prefix = format!("{release}-tollhouse");
        let controller_files = secret_files(env, ns, &format!("{prefix}-controller-tls"));
        let dataplane_files = secret_files(env, ns, &format!("{prefix}-dataplane-tls"));
        let projected_ca = file_of(&controller_files, "ca.crt").to_string();
        let projected_dataplane_cert = file_of(&dataplane_files, "tls.crt").to_string();
        let controller_tls = SecretDir::new(logs.join("controller-tls"), &controller_files);
        let dataplane_tls = SecretDir::new(logs.join("dataplane-tls"), &dataplane_files);
        let (delivery, admin) = (free_port(), free_port());
        let user = format!("system:serviceaccount:{ns}:{prefix}-controller");
        let kubeconfig = env.kubeconfig_as(&user);
        let c = container(env, ns, &format!("{prefix}-controller"));
        let mut controller_args = localise(
            &args_of(&c),
            controller_tls.dir(),
            &[(8443, delivery), (9090, admin)],
            &[("POD_IP", "127.0.0.1")],
            &[(
                "--kubernetes",
                vec!["--kubeconfig".into(), kubeconfig.display().to_string()],
            )],
        );
        if let Some(watch) = watch {
            controller_args.extend(["--watch-namespace".into(), watch.to_string()]);
        }
        assert!(controller_args.contains(&"--leader-election".to_string()));
        let pod = format!("{prefix}-controller-0");
        let controller = Proc::spawn_with_env(
            "tollhouse-controller",
            &controller_args,
            logs,
            &[("POD_NAME", pod.as_str()), ("POD_NAMESPACE", ns)],
        );
        let client = http();
        wait_for(
            "the controller's admin listener",
            Duration::from_secs(30),
            || {
                client
                    .get(format!("http://127.0.0.1:{admin}/readyz"))
                    .send()
                    .ok()
                    .filter(|r| r.status() == 200)
            },
        );
        // It leads through the chart's Lease, which the chart created empty.
        wait_for(
            "the chart's Lease to name a holder",
            Duration::from_secs(30),
            || {
                let lease: Value = serde_json::from_str(&env.kubectl_ok(&[
                    "get",
                    "lease",
                    &format!("{prefix}-controller"),
                    "-n",
                    ns,
                    "-o",
                    "json",
                ]))
                .unwrap();
                (lease["spec"]["holderIdentity"] == pod.as_str()).then_some(())
            },
        );

        let (http_port, https_port, dp_admin) = (free_port(), free_port(), free_port());
        let state = TempDir::new("chart-state");
        let d = container(env, ns, &format!("{prefix}-dataplane"));
        let rendered = args_of(&d).join(" ");
        assert!(
            rendered.contains(&format!(
                "--controller-server-name={prefix}-controller.{ns}.svc"
            )),
            "{rendered}"
        );
        let dataplane_args = localise(
            &args_of(&d),
            dataplane_tls.dir(),
            &[(8080, http_port), (8443, https_port), (9901, dp_admin)],
            &[("POD_NAME", &format!("{prefix}-dataplane-0"))],
            &[
                (
                    "--controller",
                    vec![format!("--controller=https://127.0.0.1:{delivery}")],
                ),
                (
                    "--state-dir",
                    vec![format!("--state-dir={}", state.path().display())],
                ),
            ],
        );
        let dataplane = Proc::spawn("tollhouse-dataplane", &dataplane_args, logs);
        Release {
            controller,
            _dataplane: dataplane,
            controller_tls,
            dataplane_tls,
            delivery,
            server_name: format!("{prefix}-controller.{ns}.svc"),
            http_port,
            projected_ca,
            projected_dataplane_cert,
            _state: state,
        }
    }

    /// The controller's certificate as projected now (DER).
    fn controller_certificate(&self) -> Vec<u8> {
        der(&std::fs::read_to_string(self.controller_tls.file("tls.crt")).unwrap())
    }

    /// The certificate the controller presents to a new connection from the dataplane's
    /// identity, verified for the in-cluster name the dataplane uses (DER).
    fn presented(&self) -> Vec<u8> {
        let d = &self.dataplane_tls;
        presented(
            self.delivery,
            &d.file("ca.crt"),
            (&d.file("tls.crt"), &d.file("tls.key")),
            &self.server_name,
        )
        .unwrap()
    }

    /// `kubectl wait` for the hello Stage and route to be Programmed in `apps`.
    fn wait_programmed(&self, env: &KubeEnv, apps: &str) {
        let waited = env.kubectl(&[
            "wait",
            "--for=condition=Programmed",
            "stage/hello",
            "apiroute/hello",
            "-n",
            apps,
            "--timeout=60s",
        ]);
        assert!(
            waited.status.success(),
            "not Programmed:\n{}\ncontroller:\n{}",
            text(&waited),
            self.controller.log_text()
        );
    }

    /// GET the hello route: the body of a 200, or `None`.
    fn hello(&self, client: &reqwest::blocking::Client) -> Option<String> {
        client
            .get(format!(
                "http://127.0.0.1:{}/hello/greeting",
                self.http_port
            ))
            .send()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|r| r.text().ok())
    }
}

/// A Stage `hello` and a MOCK route answering `body` at /hello/greeting, in `ns`.
fn hello(ns: &str, body: &str) -> String {
    format!(
        r#"apiVersion: tollhouse.dev/v1alpha1
kind: Stage
metadata: {{name: hello, namespace: {ns}}}
spec: {{api: hello, basePath: /hello}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: hello, namespace: {ns}}}
spec:
  api: hello
  path: /greeting
  methods: [GET]
  integration: {{type: MOCK, mock: {{statusCode: 200, body: '{body}'}}}}
"#
    )
}

/// `helm install` into the real API server with the defaults; every object accepted. Then the
/// installed controller Deployment's own arguments run here, as the chart's controller
/// ServiceAccount (impersonated) and with the chart's certificates; the dataplane's likewise.
/// A Stage and a route become Programmed and are served, which takes exactly the chart's RBAC
/// (watch, status, events, the Lease). The dataplane's account may read nothing. `helm
/// upgrade` with other values reshapes the release and renews the leaf certificates under the
/// running processes without a failed request; `helm uninstall` leaves only the CRDs.
#[test]
fn install_run_as_the_chart_accounts_upgrade_and_uninstall() {
    let env = KubeEnv::shared();
    let ns = env.fresh_namespace("chart");
    let apps = env.fresh_namespace("chart-apps");
    let release = "gw";
    let logs = TempDir::new("chart");

    // --- install: every object accepted --------------------------------------------------
    let out = env.helm_ok(&["install", release, CHART, "-n", &ns]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(out.contains("Your invoke URL"), "NOTES.txt missing:\n{out}");
    let manifest = env.helm_ok(&["get", "manifest", release, "-n", &ns]);
    let objects = documents(&manifest);
    assert!(objects.len() >= 15, "{} objects", objects.len());
    assert_all_exist(env, &objects);
    env.kubectl_ok(&[
        "get",
        "crd",
        "stages.tollhouse.dev",
        "apiroutes.tollhouse.dev",
    ]);
    // The 1.20 test server has neither policy/v1 nor autoscaling/v2: the chart picked by
    // capabilities.
    let pdb_api = find(&objects, "PodDisruptionBudget", "gw-tollhouse-dataplane")["apiVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let server_minor: u32 = {
        let v: Value = serde_json::from_str(&env.kubectl_ok(&["version", "-o", "json"])).unwrap();
        v["serverVersion"]["minor"]
            .as_str()
            .unwrap()
            .trim_end_matches('+')
            .parse()
            .unwrap()
    };
    assert_eq!(
        pdb_api,
        if server_minor >= 21 {
            "policy/v1"
        } else {
            "policy/v1beta1"
        }
    );

    // --- the dataplane's account reads nothing ------------------------------------------
    let dp_user = format!("system:serviceaccount:{ns}:gw-tollhouse-dataplane");
    let ctl_user = format!("system:serviceaccount:{ns}:gw-tollhouse-controller");
    for (verb, resource) in [
        ("get", "secrets"),
        ("list", "secrets"),
        ("list", "services"),
        ("list", "endpointslices.discovery.k8s.io"),
        ("list", "stages.tollhouse.dev"),
        ("list", "apiroutes.tollhouse.dev"),
        ("get", "leases.coordination.k8s.io"),
        ("list", "pods"),
        ("list", "configmaps"),
        ("create", "events.events.k8s.io"),
    ] {
        for scope in [Some(ns.as_str()), Some(apps.as_str()), None] {
            assert!(
                !can_i(env, &dp_user, verb, resource, scope),
                "the dataplane may {verb} {resource} in {scope:?}"
            );
        }
    }
    let listed = env.kubectl_ok(&["auth", "can-i", "--list", "--as", &dp_user, "-n", &ns]);
    for line in listed.lines().skip(1) {
        let resource = line.split_whitespace().next().unwrap_or("");
        assert!(
            resource.starts_with("selfsubject")
                || resource.starts_with('/')
                || line.starts_with(' ')
                || resource.is_empty()
                || line.trim_start().starts_with('['),
            "the dataplane's account may do more than ask what it may do: {line}"
        );
    }
    // The controller: exactly its rules, nothing more.
    for (verb, resource, scope, allowed) in [
        ("watch", "stages.tollhouse.dev", None, true),
        ("patch", "apiroutes.tollhouse.dev/status", None, true),
        ("update", "stages.tollhouse.dev", None, false),
        ("delete", "apiroutes.tollhouse.dev", None, false),
        ("create", "secrets", Some(apps.as_str()), false),
        ("list", "configmaps", None, false),
        (
            "update",
            "leases.coordination.k8s.io",
            Some(ns.as_str()),
            true,
        ),
        (
            "update",
            "leases.coordination.k8s.io",
            Some(apps.as_str()),
            false,
        ),
        ("create", "events.events.k8s.io", Some(apps.as_str()), true),
        ("create", "pods", Some(ns.as_str()), false),
    ] {
        assert_eq!(
            can_i(env, &ctl_user, verb, resource, scope),
            allowed,
            "controller {verb} {resource} in {scope:?}"
        );
    }

    // --- run the installed containers here, as the chart's accounts -----------------------
    let mut run = Release::run(env, &ns, release, logs.path(), Some(&apps));
    let ca_before = run.projected_ca.clone();
    let dp_before = run.projected_dataplane_cert.clone();
    let client = http();
    env.apply_yaml(&hello(&apps, r#"{"hello":"world"}"#));
    run.wait_programmed(env, &apps);
    let http_port = run.http_port;
    let route = |body: &str| hello(&apps, body);
    let url = format!("http://127.0.0.1:{http_port}/hello/greeting");
    let get = |client: &reqwest::blocking::Client| {
        client
            .get(&url)
            .send()
            .ok()
            .filter(|r| r.status() == 200)
            .and_then(|r| r.text().ok())
    };
    assert_eq!(get(&client).as_deref(), Some(r#"{"hello":"world"}"#));
    let warnings = run.controller.log_text();
    assert!(
        !warnings.contains("Forbidden") && !warnings.contains(" 403"),
        "the controller was refused something:\n{warnings}"
    );
    let served_before = run.controller_certificate();
    assert_eq!(run.presented(), served_before);

    // --- upgrade with other values, under traffic ---------------------------------------
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, failures, requests, url) = (
            stop.clone(),
            failures.clone(),
            requests.clone(),
            url.clone(),
        );
        std::thread::spawn(move || {
            let client = http();
            while !stop.load(Ordering::Relaxed) {
                let ok = client.get(&url).send().is_ok_and(|r| r.status() == 200);
                requests.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    env.helm_ok(&[
        "upgrade",
        release,
        CHART,
        "-n",
        &ns,
        "--set",
        "controller.replicas=1",
        "--set",
        "dataplane.service.internal.enabled=false",
        "--set",
        "dataplane.pdb.enabled=false",
        "--set",
        "dataplane.autoscaling.enabled=true",
        "--set",
        "dataplane.service.public.type=ClusterIP",
    ]);
    let after = everything_in(env, &ns);
    assert!(
        !after.contains("service/gw-tollhouse-dataplane-internal"),
        "{after:?}"
    );
    assert!(
        !after.iter().any(|o| o.starts_with("poddisruptionbudget")),
        "{after:?}"
    );
    assert!(
        after.contains("horizontalpodautoscaler.autoscaling/gw-tollhouse-dataplane"),
        "{after:?}"
    );
    let svc = env.kubectl_ok(&[
        "get",
        "service",
        "gw-tollhouse-dataplane",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.type}",
    ]);
    assert_eq!(svc, "ClusterIP");
    let replicas = env.kubectl_ok(&[
        "get",
        "deployment",
        "gw-tollhouse-controller",
        "-n",
        &ns,
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "1");
    // New leaf certificates from the same CA, projected under the running processes as
    // kubelet would.
    let controller_files = secret_files(env, &ns, "gw-tollhouse-controller-tls");
    let dataplane_files = secret_files(env, &ns, "gw-tollhouse-dataplane-tls");
    run.controller_tls.update(&controller_files);
    run.dataplane_tls.update(&dataplane_files);
    let (ca_after, dp_after) = (
        file_of(&controller_files, "ca.crt"),
        file_of(&dataplane_files, "tls.crt"),
    );
    assert_eq!(ca_before, ca_after, "the upgrade replaced the CA");
    assert_ne!(
        dp_before, dp_after,
        "the upgrade kept the dataplane's certificate"
    );
    let served_after = run.controller_certificate();
    assert_ne!(
        served_before, served_after,
        "the upgrade kept the controller's certificate"
    );
    wait_for(
        "the controller to present its renewed certificate",
        Duration::from_secs(40),
        || (run.presented() == served_after).then_some(()),
    );
    // Delivery still works after the renewal: a change reaches the dataplane.
    env.apply_yaml(&route(r#"{"hello":"again"}"#));
    wait_for(
        "the edited route to be served",
        Duration::from_secs(30),
        || (get(&client).as_deref() == Some(r#"{"hello":"again"}"#)).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let (failed, total) = (
        failures.load(Ordering::Relaxed),
        requests.load(Ordering::Relaxed),
    );
    println!("during the upgrade: {total} requests, {failed} failed");
    assert!(total > 50, "too few requests to tell: {total}");
    assert_eq!(
        failed, 0,
        "requests failed while the certificates were renewed"
    );

    // --- uninstall: nothing but the CRDs is left ----------------------------------------
    drop(run);
    env.helm_ok(&["uninstall", release, "-n", &ns, "--wait"]);
    let left = everything_in(env, &ns);
    let ignorable = |o: &String| {
        // Made by Kubernetes' own controllers for every namespace, when they run.
        o == "serviceaccount/default"
            || o.starts_with("secret/default-token-")
            || o == "configmap/kube-root-ca.crt"
    };
    let left: Vec<&String> = left.iter().filter(|o| !ignorable(o)).collect();
    assert!(left.is_empty(), "helm uninstall left {left:?}");
    let cluster = env.kubectl_ok(&[
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        &format!("app.kubernetes.io/instance={release}"),
        "-o",
        "name",
    ]);
    assert!(
        !cluster.contains(&format!("gw-tollhouse-controller-{ns}")),
        "left cluster-wide: {cluster}"
    );
    env.kubectl_ok(&[
        "get",
        "crd",
        "stages.tollhouse.dev",
        "apiroutes.tollhouse.dev",
    ]);
}

/// A gateway for one namespace, reachable only inside the cluster
/// (`ci/private-only-values.yaml`, watching that namespace): the controller's rules are a Role
/// there, nothing cluster-wide is rendered, and that is all it needs to program and serve a
/// route.
#[test]
fn a_private_release_for_one_namespace_needs_no_cluster_role() {
    let env = KubeEnv::shared();
    let ns = env.fresh_namespace("chart-private");
    let apps = env.fresh_namespace("chart-private-apps");
    let logs = TempDir::new("chart-private");
    let values = Path::new(CHART)
        .join("ci/private-only-values.yaml")
        .display()
        .to_string();
    let watch = format!("controller.watchNamespace={apps}");
    let out = env.helm_ok(&[
        "install", "edge", CHART, "-n", &ns, "-f", &values, "--set", &watch,
    ]);
    assert!(
        out.contains("(there is no public Service)"),
        "NOTES should say so:\n{out}"
    );
    let objects = documents(&env.helm_ok(&["get", "manifest", "edge", "-n", &ns]));
    let cluster_wide: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding")
        .collect();
    assert!(cluster_wide.is_empty(), "{cluster_wide:?}");
    assert_eq!(
        find(&objects, "Role", "edge-tollhouse-controller")["metadata"]["namespace"],
        apps.as_str()
    );
    let services: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "Service")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        [
            "edge-tollhouse-controller",
            "edge-tollhouse-dataplane-internal",
            "edge-tollhouse-dataplane-admin"
        ]
    );
    let user = format!("system:serviceaccount:{ns}:edge-tollhouse-controller");
    assert!(can_i(
        env,
        &user,
        "watch",
        "stages.tollhouse.dev",
        Some(&apps)
    ));
    assert!(!can_i(env, &user, "watch", "stages.tollhouse.dev", None));
    assert!(!can_i(env, &user, "list", "secrets", Some(&ns)));

    let run = Release::run(env, &ns, "edge", logs.path(), None);
    env.apply_yaml(&hello(&apps, r#"{"private":true}"#));
    run.wait_programmed(env, &apps);
    assert_eq!(run.hello(&http()).as_deref(), Some(r#"{"private":true}"#));
    let log = run.controller.log_text();
    assert!(
        !log.contains("Forbidden") && !log.contains(" 403"),
        "the controller was refused something:\n{log}"
    );
    drop(run);
    env.helm_ok(&["uninstall", "edge", "-n", &ns, "--wait"]);
}

/// A stand-in for another project's CRD (cert-manager's, the Prometheus Operator's): the same
/// group, version, kind and scope, any content, so the API server takes the chart's objects of
/// that kind. Their real schemas are not checked here.
fn stand_in_crd(group: &str, kind: &str) -> String {
    let plural = format!("{}s", kind.to_ascii_lowercase());
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.{group}}}
spec:
  group: {group}
  names: {{kind: {kind}, plural: {plural}, singular: {singular}}}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
",
        singular = kind.to_ascii_lowercase()
    )
}

/// Panics unless every object of a release's manifest exists on the server.
fn assert_all_exist(env: &KubeEnv, objects: &[Value]) {
    for o in objects {
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        let mut args = vec!["get", kind, name, "-o", "name"];
        if let Some(n) = o["metadata"]["namespace"].as_str() {
            args.extend(["-n", n]);
        }
        env.kubectl_ok(&args);
    }
}

/// Every golden values file installs into the real API server (each object accepted, in the
/// API versions the server offers) and uninstalls without a trace.
#[test]
fn every_golden_values_file_installs_and_uninstalls() {
    let env = KubeEnv::shared();
    for (group, kind) in [
        ("cert-manager.io", "Certificate"),
        ("cert-manager.io", "Issuer"),
        ("monitoring.coreos.com", "ServiceMonitor"),
    ] {
        env.apply_yaml(&stand_in_crd(group, kind));
    }
    env.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/certificates.cert-manager.io",
        "crd/issuers.cert-manager.io",
        "crd/servicemonitors.monitoring.coreos.com",
        "--timeout=60s",
    ]);
    for (name, path) in values_files() {
        let ns = env.fresh_namespace(&format!("chart-{name}"));
        let values = path.display().to_string();
        // A watched namespace must exist for the Role the chart puts there.
        let parsed: Yaml = serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if let Some(watch) = lookup(&parsed, "controller.watchNamespace").and_then(Yaml::as_str) {
            env.apply_yaml(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {watch}\n  labels:\n    tollhouse.dev/e2e: \"true\"\n"
            ));
        }
        let out = env.helm(&["install", "tollhouse", CHART, "-n", &ns, "-f", &values]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        let objects = documents(&env.helm_ok(&["get", "manifest", "tollhouse", "-n", &ns]));
        assert_all_exist(env, &objects);
        println!("{name}: {} objects accepted", objects.len());
        env.helm_ok(&["uninstall", "tollhouse", "-n", &ns, "--wait"]);
        let left = everything_in(env, &ns);
        assert!(left.is_empty(), "{name}: helm uninstall left {left:?}");
    }
}

/// `redis.url` reaches the dataplanes through a Secret the chart makes, never in the
/// Deployment (it may carry a password); `redis.existingSecret` points them at the user's.
#[test]
fn the_redis_url_reaches_the_dataplanes_only_through_a_secret() {
    let defaults = Path::new(CHART).join("values.yaml");
    let password = "NotInTheDeployment42";
    let url = format!("redis.url=redis://:{password}@redis.shop.svc:6379");
    let docs = documents(&render(
        &defaults,
        &["--set", &url, "--set", "redis.timeoutMs=7"],
    ));
    let secret = find(&docs, "Secret", "tollhouse-redis");
    assert!(secret["stringData"]["url"]
        .as_str()
        .unwrap()
        .contains(password));
    let deployment = find(&docs, "Deployment", "tollhouse-dataplane");
    let text = serde_json::to_string(deployment).unwrap();
    assert!(!text.contains(password), "{text}");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    let redis = env
        .iter()
        .find(|e| e["name"] == "TOLLHOUSE_REDIS_URL")
        .unwrap();
    assert_eq!(
        redis["valueFrom"]["secretKeyRef"]["name"],
        "tollhouse-redis"
    );
    assert_eq!(redis["valueFrom"]["secretKeyRef"]["key"], "url");
    assert!(container["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "--redis-timeout-ms=7"));

    let docs = documents(&render(
        &defaults,
        &[
            "--set",
            "redis.existingSecret.name=mine",
            "--set",
            "redis.existingSecret.key=u",
        ],
    ));
    assert!(!docs
        .iter()
        .any(|d| d["kind"] == "Secret" && d["metadata"]["name"] == "tollhouse-redis"));
    let deployment = find(&docs, "Deployment", "tollhouse-dataplane");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let redis = env
        .iter()
        .find(|e| e["name"] == "TOLLHOUSE_REDIS_URL")
        .unwrap();
    assert_eq!(redis["valueFrom"]["secretKeyRef"]["name"], "mine");
    assert_eq!(redis["valueFrom"]["secretKeyRef"]["key"], "u");

    // Without Redis: no Secret, no variable, no flag.
    let docs = documents(&render(&defaults, &[]));
    let deployment = find(&docs, "Deployment", "tollhouse-dataplane");
    let text = serde_json::to_string(deployment).unwrap();
    assert!(
        !text.contains("REDIS") && !text.contains("--redis"),
        "{text}"
    );
}
