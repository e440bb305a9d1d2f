//! Snapshot delivery over mutual TLS, with the real controller and dataplane processes, real
//! sockets and certificates made fresh for each test: only a dataplane holding a certificate
//! from the controller's client CA gets a snapshot, only a controller with a certificate from
//! the dataplane's CA is believed, no private key ever reaches a log, and certificate files
//! replaced the way kubelet replaces a Secret's are used without a restart or an outage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::tls::{der, presented, tls_client, SecretDir};
use harness::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
        tls_client(&self.ca, identity)
    }

    /// The controller's own client: a certificate from the delivery CA.
    fn trusted_client(&self) -> reqwest::blocking::Client {
        self.client(Some((&self.client_cert, &self.client_key)))
    }

    /// No private key, nor any line of one, in any process log of this test.
    fn assert_no_key_in_logs(&self, logs: &Path) {
        assert_no_key_in_logs(logs, &self.keys);
    }
}

/// No line of any of `keys` in any process log in `logs`.
fn assert_no_key_in_logs(logs: &Path, keys: &[String]) {
    let mut checked = 0;
    for entry in std::fs::read_dir(logs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for key in keys {
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

/// The dataplane's delivery TLS flags: trust `ca`, present `cert` and `key`, and verify the
/// controller's certificate for `server_name` instead of the URL's host.
fn dataplane_tls_args(
    ca: &Path,
    cert: &Path,
    key: &Path,
    server_name: Option<&str>,
) -> Vec<String> {
    let mut args = vec![
        "--controller-ca".into(),
        path(ca),
        "--tls-cert".into(),
        path(cert),
        "--tls-key".into(),
        path(key),
    ];
    if let Some(name) = server_name {
        args.extend(["--controller-server-name".into(), name.into()]);
    }
    args
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
        &dataplane_tls_args(
            &pki.ca,
            &pki.client_cert,
            &pki.client_key,
            Some("localhost"),
        ),
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
        &dataplane_tls_args(&pki.other_ca, &pki.client_cert, &pki.client_key, None),
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

/// Writes (atomically) the one extra route, `/rotated-<n>`, to the controller's directory.
fn extra_route(manifests: &Path, backend: u16, n: u32) {
    let tmp = manifests.join(".extra.yaml.tmp");
    std::fs::write(
        &tmp,
        format!(
            "apiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata:\n  name: rotated\n  namespace: default\nspec:\n  api: petstore\n  path: \"/rotated-{n}\"\n  methods: [GET]\n  integration:\n    type: HTTP_PROXY\n    uri: \"http://127.0.0.1:{backend}/pets\"\n"
        ),
    )
    .unwrap();
    std::fs::rename(&tmp, manifests.join("extra.yaml")).unwrap();
}

/// The address the controller last saw the (only) dataplane poll from.
fn dataplane_address(c: &Controller, client: &reqwest::blocking::Client) -> Option<String> {
    let status: serde_json::Value = client.get(c.url("/status")).send().ok()?.json().ok()?;
    status["dataplanes"][0]["address"]
        .as_str()
        .map(str::to_string)
}

/// (f) Certificates rotated under running processes, as kubelet does when the chart's Secrets
/// change: the controller presents the new leaf, the dataplane presents its new one on its
/// next connection and keeps receiving snapshots, and requests to the dataplane never fail.
/// A new client CA on the controller then refuses certificates from the old one.
#[test]
fn rotated_certificates_are_used_without_a_restart_or_an_outage() {
    let dir = TempDir::new("mtls-rotate");
    let ca = Authority::new("delivery CA").unwrap();
    let names = ["localhost", "127.0.0.1"];
    let (server_1, server_2) = (ca.server(&names).unwrap(), ca.server(&names).unwrap());
    let (client_1, client_2) = (
        ca.client("dataplane-1").unwrap(),
        ca.client("dataplane-1").unwrap(),
    );
    let next_ca = Authority::new("next delivery CA").unwrap();
    let client_3 = next_ca.client("dataplane-1").unwrap();
    let keys = vec![
        ca.key_pem(),
        next_ca.key_pem(),
        server_1.key_pem.clone(),
        server_2.key_pem.clone(),
        client_1.key_pem.clone(),
        client_2.key_pem.clone(),
        client_3.key_pem.clone(),
    ];
    // Copies for the test's own clients, outside the directories that get rotated.
    let w = |name: &str, text: &str| certs::write(dir.path(), name, text).unwrap();
    let ca_file = w("ca.pem", &ca.cert_pem());
    let client_1_files = (
        w("client-1.pem", &client_1.cert_pem),
        w("client-1.key", &client_1.key_pem),
    );
    let client_3_files = (
        w("client-3.pem", &client_3.cert_pem),
        w("client-3.key", &client_3.key_pem),
    );
    let as_client_1 = || (client_1_files.0.as_path(), client_1_files.1.as_path());
    let as_client_3 = || (client_3_files.0.as_path(), client_3_files.1.as_path());

    let mut controller_tls = SecretDir::new(
        dir.path().join("controller-tls"),
        &[
            ("tls.crt", &server_1.cert_pem),
            ("tls.key", &server_1.key_pem),
            ("ca.crt", &ca.cert_pem()),
        ],
    );
    let mut dataplane_tls = SecretDir::new(
        dir.path().join("dataplane-tls"),
        &[
            ("tls.crt", &client_1.cert_pem),
            ("tls.key", &client_1.key_pem),
            ("ca.crt", &ca.cert_pem()),
        ],
    );
    let backend = Backend::start("pets", dir.path());
    let m = manifests(dir.path(), backend.port);
    let c = Controller::start_with(
        &m,
        dir.path(),
        free_port(),
        &[
            "--tls-cert".into(),
            path(&controller_tls.file("tls.crt")),
            "--tls-key".into(),
            path(&controller_tls.file("tls.key")),
            "--client-ca".into(),
            path(&controller_tls.file("ca.crt")),
        ],
        Some(tls_client(&ca_file, Some(as_client_1()))),
    );
    let d = Dataplane::start_with(
        &c.url(""),
        &dir.path().join("state"),
        dir.path(),
        &dataplane_tls_args(
            &dataplane_tls.file("ca.crt"),
            &dataplane_tls.file("tls.crt"),
            &dataplane_tls.file("tls.key"),
            Some("localhost"),
        ),
    );
    d.wait_synced(&c);
    assert_eq!(
        presented(c.port, &ca_file, as_client_1(), "localhost").unwrap(),
        der(&server_1.cert_pem)
    );

    // Requests to the dataplane, all along.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = std::thread::spawn({
        let (stop, url) = (stop.clone(), d.url("/pets"));
        move || {
            let client = http();
            let (mut served, mut failed) = (0u32, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send() {
                    Ok(r) if r.status() == 200 => served += 1,
                    Ok(r) => failed.push(r.status().to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (served, failed)
        }
    });
    let serves = |n: u32| {
        let (client, url) = (http(), d.url(&format!("/rotated-{n}")));
        wait_for(
            &format!("the dataplane to serve /rotated-{n}"),
            Duration::from_secs(30),
            || {
                let r = client.get(&url).send().ok()?;
                (r.status() == 200).then_some(())
            },
        );
    };
    // The dataplane's log line for its n-th reload.
    let dataplane_reloads = |n: usize| {
        wait_for(
            &format!("reload {n} in the dataplane log"),
            Duration::from_secs(30),
            || (count(&d.proc.log_text(), "controller TLS files reloaded") >= n).then_some(()),
        );
    };
    extra_route(&m, backend.port, 0);
    serves(0);

    // 1. New leaves from the same CA on both sides.
    let status_1 = tls_client(&ca_file, Some(as_client_1()));
    let before = dataplane_address(&c, &status_1).unwrap();
    let swapped = Instant::now();
    controller_tls.update(&[
        ("tls.crt", &server_2.cert_pem),
        ("tls.key", &server_2.key_pem),
    ]);
    dataplane_tls.update(&[
        ("tls.crt", &client_2.cert_pem),
        ("tls.key", &client_2.key_pem),
    ]);
    wait_for(
        "the controller to present its new certificate",
        Duration::from_secs(30),
        || {
            (presented(c.port, &ca_file, as_client_1(), "localhost").ok()?
                == der(&server_2.cert_pem))
            .then_some(())
        },
    );
    let controller_took = swapped.elapsed();
    dataplane_reloads(1);
    let dataplane_took = swapped.elapsed();
    // The poll that brings this snapshot may still use the old connection; the next one is a
    // new connection, with the new client certificate, and brings the next snapshot.
    extra_route(&m, backend.port, 1);
    serves(1);
    wait_for(
        "the dataplane to poll over a new connection",
        Duration::from_secs(30),
        || (dataplane_address(&c, &status_1)? != before).then_some(()),
    );
    extra_route(&m, backend.port, 2);
    serves(2);
    let rotated_took = swapped.elapsed();

    // 2. A new CA for client certificates: the controller trusts only it, the dataplane
    // presents a leaf from it. Old-CA clients are refused from then on.
    let status_3 = tls_client(&ca_file, Some(as_client_3()));
    let before = dataplane_address(&c, &status_1).unwrap();
    let swapped = Instant::now();
    controller_tls.update(&[("ca.crt", &next_ca.cert_pem())]);
    dataplane_tls.update(&[
        ("tls.crt", &client_3.cert_pem),
        ("tls.key", &client_3.key_pem),
    ]);
    wait_for(
        "the controller to refuse a certificate from the old CA",
        Duration::from_secs(30),
        || {
            tls_client(&ca_file, Some(as_client_1()))
                .get(c.url("/healthz"))
                .send()
                .is_err()
                .then_some(())
        },
    );
    let ca_took = swapped.elapsed();
    assert_eq!(
        status_3.get(c.url("/healthz")).send().unwrap().status(),
        200
    );
    dataplane_reloads(2);
    extra_route(&m, backend.port, 3);
    serves(3);
    wait_for(
        "the dataplane to poll over a new connection",
        Duration::from_secs(30),
        || (dataplane_address(&c, &status_3)? != before).then_some(()),
    );
    extra_route(&m, backend.port, 4);
    serves(4);

    stop.store(true, Ordering::Relaxed);
    let (served, failed) = traffic.join().unwrap();
    assert!(
        failed.is_empty(),
        "requests failed during the rotation: {failed:?}"
    );
    assert!(served > 100, "only {served} requests made");

    // A dataplane still holding an old-CA certificate gets nothing.
    let (old_cert, old_key) = as_client_1();
    let stale = Dataplane::start_with(
        &c.url(""),
        &dir.path().join("stale-state"),
        dir.path(),
        &dataplane_tls_args(&ca_file, old_cert, old_key, Some("localhost")),
    );
    let log = wait_for(
        "the old-CA dataplane to log a refused handshake",
        Duration::from_secs(20),
        || {
            let log = stale.proc.log_text();
            log.contains("controller TLS handshake failed")
                .then_some(log)
        },
    );
    assert_eq!(
        http().get(stale.admin("/readyz")).send().unwrap().status(),
        503,
        "{log}"
    );

    let controller_log = c.proc.log_text();
    assert_eq!(
        count(&controller_log, "delivery TLS files reloaded"),
        2,
        "{controller_log}"
    );
    let metrics = status_3
        .get(c.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("tollhouse_controller_tls_reloads_total 2"),
        "{metrics}"
    );
    let dataplane_metrics = http()
        .get(d.admin("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        dataplane_metrics.contains("tollhouse_controller_tls_reloads_total{result=\"applied\"} 2"),
        "{dataplane_metrics}"
    );
    eprintln!(
        "rotation: controller presented the new leaf after {controller_took:?}, the dataplane \
         reloaded after {dataplane_took:?}, snapshots over the new connection after \
         {rotated_took:?}; new client CA enforced after {ca_took:?}; {served} requests, none failed"
    );
    assert_no_key_in_logs(dir.path(), &keys);
}
