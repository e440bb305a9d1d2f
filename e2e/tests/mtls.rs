//! Snapshot delivery over mutual TLS, with the real controller and dataplane processes, real
//! sockets and certificates made fresh for each test: only a dataplane holding a certificate
//! from the controller's client CA gets a snapshot, only a controller with a certificate from
//! the dataplane's CA is believed, and no private key ever reaches a log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tollhouse_e2e::certs::{self, Authority};

/// Two unrelated CAs and what they issued, written to a scratch directory.
struct Pki {
    dir: TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: PathBuf,
    other_cert: PathBuf,
    other_key: PathBuf,
    /// Every private key made, PEM.
    keys: Vec<String>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = TempDir::new(tag);
        let ca = Authority::new("delivery CA").unwrap();
        let server = ca.server(&["localhost", "127.0.0.1"]).unwrap();
        let client = ca.client("dataplane-1").unwrap();
        let other = Authority::new("unrelated CA").unwrap();
        let stranger = other.client("dataplane-1").unwrap();
        let w = |name: &str, text: &str| certs::write(dir.path(), name, text).unwrap();
        Pki {
            ca: w("ca.pem", &ca.cert_pem()),
            server_cert: w("controller.pem", &server.cert_pem),
            server_key: w("controller.key", &server.key_pem),
            client_cert: w("dataplane.pem", &client.cert_pem),
            client_key: w("dataplane.key", &client.key_pem),
            other_ca: w("other-ca.pem", &other.cert_pem()),
            other_cert: w("other.pem", &stranger.cert_pem),
            other_key: w("other.key", &stranger.key_pem),
            keys: vec![
                ca.key_pem(),
                server.key_pem,
                client.key_pem,
                other.key_pem(),
                stranger.key_pem,
            ],
            dir,
        }
    }

    fn controller_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            path(&self.server_cert),
            "--tls-key".into(),
            path(&self.server_key),
            "--client-ca".into(),
            path(&self.ca),
        ]
    }

    /// A client trusting the delivery CA only, presenting `identity` (certificate, key).
    fn client(&self, identity: Option<(&Path, &Path)>) -> reqwest::blocking::Client {
        install_crypto();
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&self.ca).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
        };
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(config)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// The controller's own client: a certificate from the delivery CA.
    fn trusted_client(&self) -> reqwest::blocking::Client {
        self.client(Some((&self.client_cert, &self.client_key)))
    }

    /// No private key, nor any line of one, in any process log of this test.
    fn assert_no_key_in_logs(&self, logs: &Path) {
        let mut checked = 0;
        for entry in std::fs::read_dir(logs).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for key in &self.keys {
                for line in key.lines().filter(|l| !l.starts_with("-----")) {
                    assert!(
                        !text.contains(line),
                        "{} contains private key material",
                        path.display()
                    );
                }
            }
            checked += 1;
        }
        assert!(checked > 0, "no process log found in {}", logs.display());
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn manifests(dir: &Path, backend: u16) -> PathBuf {
    let m = dir.join("manifests");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(
        m.join("api.yaml"),
        format!(
            "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata:\n  name: prod\n  namespace: default\nspec:\n  api: petstore\n---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: list-pets\n  namespace: default\nspec:\n  api: petstore\n  path: \"/pets\"\n  methods: [GET]\n  integration:\n    type: HTTP_PROXY\n    uri: \"http://127.0.0.1:{backend}/pets\"\n"
        ),
    )
    .unwrap();
    m
}

/// A controller serving mTLS on a free port, with one route to `backend`.
fn controller(pki: &Pki, backend: u16) -> Controller {
    Controller::start_with(
        &manifests(pki.dir.path(), backend),
        pki.dir.path(),
        free_port(),
        &pki.controller_args(),
        Some(pki.trusted_client()),
    )
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// (a) The right CA on both sides: the dataplane gets the snapshot and serves the route.
#[test]
fn a_dataplane_with_a_certificate_from_the_client_ca_is_served() {
    let pki = Pki::new("mtls-ok");
    let backend = Backend::start("pets", pki.dir.path());
    let c = controller(&pki, backend.port);
    // The URL names the IP; the certificate is checked for the name given instead.
    let d = Dataplane::start_with(
        &c.url(""),
        &pki.dir.path().join("state"),
        pki.dir.path(),
        &[
            "--controller-ca".into(),
            path(&pki.ca),
            "--tls-cert".into(),
            path(&pki.client_cert),
            "--tls-key".into(),
            path(&pki.client_key),
            "--controller-server-name".into(),
            "localhost".into(),
        ],
    );
    assert!(c.url("").starts_with("https://127.0.0.1:"));
    d.wait_synced(&c);

    let client = http();
    let r = client.get(d.url("/pets")).send().unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["backend"], "pets");
    assert_eq!(body["path"], "/pets");
    assert_eq!(client.get(d.admin("/readyz")).send().unwrap().status(), 200);
    // The controller saw the dataplane over mTLS, with the version it applied.
    // (It reports that version when its next poll starts.)
    wait_for(
        "the controller to list the dataplane",
        Duration::from_secs(10),
        || {
            let status = c.status();
            let dataplanes = status["dataplanes"].as_array()?;
            (dataplanes.len() == 1
                && dataplanes[0]["id"] == format!("e2e-{}", d.http_port)
                && dataplanes[0]["appliedVersion"] == status["snapshot"]["version"])
                .then_some(())
        },
    );

    pki.assert_no_key_in_logs(pki.dir.path());
}

/// (b), (c) No client certificate, one from another CA, or no TLS at all: no snapshot, and
/// the controller keeps serving the dataplanes it trusts.
#[test]
fn clients_without_a_certificate_from_the_client_ca_get_nothing() {
    let pki = Pki::new("mtls-refused");
    let c = controller(&pki, free_port());
    let snapshot = c.url("/v1/snapshot?wait=0");
    let attempts = [
        ("no client certificate", pki.client(None), snapshot.clone()),
        (
            "a certificate from another CA",
            pki.client(Some((&pki.other_cert, &pki.other_key))),
            snapshot.clone(),
        ),
        (
            "plain HTTP",
            http(),
            snapshot.replacen("https://", "http://", 1),
        ),
    ];
    for (what, client, url) in &attempts {
        match client.get(url).send() {
            Err(_) => {}
            Ok(r) => panic!("{what}: the controller answered {}", r.status()),
        }
    }
    // Refusals are logged with the peer address, and the controller is still there.
    let refused = wait_for(
        "the refused handshakes in the controller log",
        Duration::from_secs(10),
        || {
            let log = c.proc.log_text();
            (count(&log, "delivery TLS handshake failed") >= 3).then_some(log)
        },
    );
    assert!(refused.contains("client.address"), "{refused}");
    assert!(refused.contains("127.0.0.1:"), "{refused}");
    let r = pki.trusted_client().get(&snapshot).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(c.status()["dataplanes"].as_array().unwrap().is_empty());

    pki.assert_no_key_in_logs(pki.dir.path());
}

/// (d) A dataplane that trusts another CA refuses the controller: it serves nothing, says
/// why, and keeps retrying.
#[test]
fn a_dataplane_that_does_not_trust_the_controller_serves_nothing() {
    let pki = Pki::new("mtls-distrust");
    let backend = Backend::start("pets", pki.dir.path());
    let c = controller(&pki, backend.port);
    let d = Dataplane::start_with(
        &c.url(""),
        &pki.dir.path().join("state"),
        pki.dir.path(),
        &[
            "--controller-ca".into(),
            path(&pki.other_ca),
            "--tls-cert".into(),
            path(&pki.client_cert),
            "--tls-key".into(),
            path(&pki.client_key),
        ],
    );
    let client = http();
    // Two failures: the first, and a retry after the backoff.
    let log = wait_for(
        "the dataplane to log two TLS failures",
        Duration::from_secs(20),
        || {
            let log = d.proc.log_text();
            (count(&log, "controller TLS handshake failed") >= 2).then_some(log)
        },
    );
    assert!(log.contains("invalid peer certificate"), "{log}");
    assert_eq!(client.get(d.admin("/readyz")).send().unwrap().status(), 503);
    assert_eq!(client.get(d.url("/pets")).send().unwrap().status(), 503);
    assert!(d.hash().is_none());
    assert!(c.status()["dataplanes"].as_array().unwrap().is_empty());

    pki.assert_no_key_in_logs(pki.dir.path());
}

/// (e) A key given where a certificate belongs (and the other way round) stops the process
/// with an error naming the file, and quotes none of it.
#[test]
fn misplaced_keys_stop_the_process_without_showing_the_key() {
    let pki = Pki::new("mtls-misplaced");
    let m = manifests(pki.dir.path(), free_port());
    let mut controller = Proc::spawn(
        "tollhouse-controller",
        &[
            "--dir".into(),
            path(&m),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--tls-cert".into(),
            path(&pki.server_key),
            "--tls-key".into(),
            path(&pki.server_cert),
            "--client-ca".into(),
            path(&pki.ca),
        ],
        pki.dir.path(),
    );
    let mut dataplane = Proc::spawn(
        "tollhouse-dataplane",
        &[
            "--controller".into(),
            "https://127.0.0.1:1".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", free_port()),
            "--admin".into(),
            format!("127.0.0.1:{}", free_port()),
            "--controller-ca".into(),
            path(&pki.ca),
            "--tls-cert".into(),
            path(&pki.client_key),
            "--tls-key".into(),
            path(&pki.client_cert),
        ],
        pki.dir.path(),
    );
    for (proc, file) in [
        (&mut controller, &pki.server_key),
        (&mut dataplane, &pki.client_key),
    ] {
        let status = proc
            .wait_exit(Duration::from_secs(20))
            .expect("the process should stop");
        assert!(!status.success());
        let log = proc.log_text();
        assert!(log.contains(&path(file)), "{log}");
        assert!(log.contains("no PEM CERTIFICATE block found"), "{log}");
    }
    // TLS flags with a plain-HTTP controller are refused rather than ignored.
    let mut plain = Proc::spawn(
        "tollhouse-dataplane",
        &[
            "--controller".into(),
            "http://127.0.0.1:1".into(),
            "--controller-ca".into(),
            path(&pki.ca),
        ],
        pki.dir.path(),
    );
    assert!(!plain
        .wait_exit(Duration::from_secs(20))
        .expect("the process should stop")
        .success());
    assert!(plain.log_text().contains("need an https:// --controller"));

    pki.assert_no_key_in_logs(pki.dir.path());
}
