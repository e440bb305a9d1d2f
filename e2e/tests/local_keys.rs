//! Keys at rest and in transit on one machine: the real controller in directory mode with a
//! Stage that has a TLS certificate. Over plain HTTP nobody (a curl, a dataplane) gets a
//! byte of a private key from any endpoint; a dataplane over mutual TLS, set up as
//! `scripts/run-example` does, serves the TLS Stage and keeps the snapshot in a 0700
//! directory, in a 0600 file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::tls::tls_config;
use harness::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use tollhouse_e2e::certs::{self, Authority, Issued};

const HOST: &str = "local.example.test";

/// The Stage's certificate (a leaf for [`HOST`] from its own CA) and the CA that issued it.
struct StageCert {
    ca_pem: String,
    leaf: Issued,
}

impl StageCert {
    fn new() -> StageCert {
        let ca = Authority::new("stage CA").unwrap();
        StageCert {
            leaf: ca.server(&[HOST]).unwrap(),
            ca_pem: ca.cert_pem(),
        }
    }

    /// Lines of the private key that would give it away (not the `-----` markers).
    fn key_lines(&self) -> Vec<&str> {
        self.leaf
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.is_empty())
            .collect()
    }

    /// The manifests: the `kubernetes.io/tls` Secret, a Stage serving it for [`HOST`], a MOCK
    /// route, and a broken Secret whose data is a private key (its error must not quote it).
    fn files(&self) -> Vec<(&'static str, String)> {
        let indent = |s: &str| {
            s.lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        vec![
            (
                "api.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: local-tls\n  namespace: default\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}\n  tls.key: |\n{}\n---\n\
                     apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: local\n  namespace: default\nspec:\n  api: local\n  hostnames: [{HOST}]\n  tls:\n    certificateRef:\n      name: local-tls\n---\n\
                     apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: who\n  namespace: default\nspec:\n  api: local\n  path: /who\n  integration:\n    type: MOCK\n    mock:\n      body: local-tls-stage\n",
                    indent(&self.leaf.cert_pem),
                    indent(&self.leaf.key_pem),
                ),
            ),
            (
                "broken.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: broken\n  namespace: default\ndata: {:?}\n",
                    self.leaf.key_pem
                ),
            ),
        ]
    }

    /// [`StageCert::files`] written into `dir/manifests`.
    fn manifests(&self, dir: &Path) -> std::path::PathBuf {
        let m = dir.join("manifests");
        std::fs::create_dir_all(&m).unwrap();
        for (name, text) in self.files() {
            std::fs::write(m.join(name), text).unwrap();
        }
        m
    }

    /// Asserts `text` (a response body or a log) holds no private key material.
    fn assert_absent(&self, what: &str, text: &str) {
        assert!(!text.contains("PRIVATE KEY"), "{what} shows a private key");
        for line in self.key_lines() {
            assert!(!text.contains(line), "{what} shows a line of a private key");
        }
    }
}

/// A client trusting only the Stage's CA, reaching [`HOST`] on the dataplane's TLS `port`.
fn stage_client(cert: &StageCert, dir: &Path, port: u16) -> reqwest::blocking::Client {
    let ca = certs::write(dir, "stage-ca.pem", &cert.ca_pem).unwrap();
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls_config(&ca, None))
        .resolve(HOST, addr(port))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every path a plain listener knows, and some it does not.
const PATHS: &[&str] = &[
    "/v1/snapshot",
    "/v1/snapshot?wait=0",
    "/v1/snapshot?wait=0&known=&applied=&dataplane=curious",
    "/v1/snapshot/",
    "/status",
    "/metrics",
    "/healthz",
    "/readyz",
    "/",
    "/snapshot",
];

/// Plain HTTP, on `--listen` and on `--admin-listen`: no endpoint gives a private key, the
/// snapshot request is refused with what to do instead, and a dataplane polling over plain
/// HTTP gets nothing to serve or to store.
#[test]
fn a_plain_controller_gives_no_key_material_to_anyone() {
    let cert = StageCert::new();
    let dir = TempDir::new("local-keys-plain");
    let admin_port = free_port();
    let controller = Controller::start_with(
        &cert.manifests(dir.path()),
        dir.path(),
        free_port(),
        &["--admin-listen".into(), format!("127.0.0.1:{admin_port}")],
        None,
    );
    // The snapshot does carry the certificate: the Stage is valid and published.
    let status = controller.status();
    assert_eq!(status["snapshot"]["stages"], 1, "{status}");

    let client = http();
    for base in [controller.url(""), format!("http://127.0.0.1:{admin_port}")] {
        for path in PATHS {
            let url = format!("{base}{path}");
            let r = client.get(&url).send().unwrap();
            let code = r.status().as_u16();
            let body = r.text().unwrap();
            cert.assert_absent(&format!("GET {url} ({code})"), &body);
            if path.starts_with("/v1/snapshot?") || *path == "/v1/snapshot" {
                if base == controller.url("") {
                    assert_eq!(code, 403, "GET {url}: {body}");
                    assert!(body.contains("--tls-cert"), "GET {url}: {body}");
                } else {
                    assert_eq!(code, 404, "the admin listener serves no snapshot: {url}");
                }
            }
        }
    }

    // A dataplane over plain HTTP is just another unauthenticated caller.
    let state = dir.path().join("state");
    let dataplane = Dataplane::start(&controller.url(""), &state, dir.path());
    wait_for(
        "the dataplane's poll to be refused",
        Duration::from_secs(20),
        || dataplane.proc.log_text().contains("403").then_some(()),
    );
    assert!(controller
        .proc
        .log_text()
        .contains("over plain HTTP; refused"));
    assert_eq!(dataplane.hash(), None, "the dataplane serves a snapshot");
    assert!(!state.join("snapshot.json").exists());
    cert.assert_absent("the controller's log", &controller.proc.log_text());
    cert.assert_absent("the dataplane's log", &dataplane.proc.log_text());
}

/// Mutual TLS with `tollhouse-devcerts`' certificates, as `scripts/run-example` runs: the
/// dataplane serves the TLS Stage by SNI; a caller without a client certificate gets no
/// snapshot; the certificates and the state are readable by their owner only, an old
/// world-readable state directory included.
#[test]
fn over_mtls_the_tls_stage_is_served_and_the_keys_stay_private() {
    let cert = StageCert::new();
    let dir = TempDir::new("local-keys-mtls");
    let pki = DeliveryPki::new(&dir.path().join("certs"));
    assert_eq!(mode(&pki.dir), 0o700);
    for key in ["controller.key", "dataplane.key"] {
        assert_eq!(mode(&pki.file(key)), 0o600, "{key}");
    }
    // As an older build left it: 0755, its snapshot 0644.
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(state.join("snapshot.json"), "{}").unwrap();
    std::fs::set_permissions(
        state.join("snapshot.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();

    let admin_port = free_port();
    let mut args = pki.controller_args();
    args.extend(["--admin-listen".into(), format!("127.0.0.1:{admin_port}")]);
    let controller = Controller::start_with(
        &cert.manifests(dir.path()),
        dir.path(),
        free_port(),
        &args,
        Some(pki.client()),
    );
    let dataplane = Dataplane::start_with(
        &controller.url(""),
        &state,
        dir.path(),
        &pki.dataplane_args(),
    );
    dataplane.wait_synced(&controller);

    // The TLS Stage, by SNI, with the certificate from its Secret.
    let port = dataplane.tls_port;
    let r = stage_client(&cert, dir.path(), port)
        .get(format!("https://{HOST}:{port}/who"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "local-tls-stage");

    // Without a client certificate from the delivery CA there is no snapshot, nor any answer.
    let stranger = harness::tls::tls_client(&pki.file("ca.pem"), None);
    assert!(stranger.get(controller.url("/v1/snapshot")).send().is_err());
    let plain = http()
        .get(format!("http://127.0.0.1:{}/v1/snapshot", controller.port))
        .send();
    if let Ok(r) = plain {
        cert.assert_absent("plain HTTP to the mTLS port", &r.text().unwrap_or_default());
    }
    let client = http();
    for path in PATHS {
        let url = format!("http://127.0.0.1:{admin_port}{path}");
        let body = client.get(&url).send().unwrap().text().unwrap();
        cert.assert_absent(&format!("GET {url}"), &body);
    }
    cert.assert_absent(
        "the dataplane's admin /snapshot",
        &client
            .get(dataplane.admin("/snapshot"))
            .send()
            .unwrap()
            .text()
            .unwrap(),
    );

    // The state file holds the key (it is what the dataplane restarts from), so it is 0600
    // in a 0700 directory.
    let file = state.join("snapshot.json");
    wait_for("the snapshot to be saved", Duration::from_secs(20), || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|t| t.contains(cert.key_lines()[0]))
    });
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&file), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| mode(p) & 0o077 != 0)
        .collect();
    assert!(leftovers.is_empty(), "readable by others: {leftovers:?}");
    cert.assert_absent("the controller's log", &controller.proc.log_text());
    cert.assert_absent("the dataplane's log", &dataplane.proc.log_text());
}

/// `Stack::start_mtls`, the harness's one-machine mTLS stack: a fresh state directory is
/// created 0700 with a 0600 file, and the TLS Stage is served.
#[test]
fn the_mtls_stack_serves_a_tls_stage_from_a_private_state_directory() {
    let cert = StageCert::new();
    let s = Stack::start_mtls("local-keys-stack", &cert.files());
    let port = s.dataplane.tls_port;
    let r = stage_client(&cert, s.dir.path(), port)
        .get(format!("https://{HOST}:{port}/who"))
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "local-tls-stage");
    let file = s.state.join("snapshot.json");
    wait_for("the snapshot to be saved", Duration::from_secs(20), || {
        file.exists().then_some(())
    });
    assert_eq!(mode(&s.state), 0o700);
    assert_eq!(mode(&file), 0o600);
    cert.assert_absent("/status", &s.controller.status().to_string());
}
