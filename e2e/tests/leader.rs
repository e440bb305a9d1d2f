//! Leader election end to end: two controller replicas against the real kube-apiserver
//! (`harness::kube`), each watching the test's namespace as the `tollhouse-controller`
//! ServiceAccount. The election's own paths under a fake clock are unit tests in
//! `controller/src/k8s/leader/tests.rs`; here only what needs the processes and the API server.
//!
//! Both replicas write status with the same field manager, so managedFields cannot tell them
//! apart. Each is given its own `--public-url` instead: the Stage's `status.invokeUrls` name the
//! replica that wrote them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::operator::{KubeController, World};
use harness::{free_port, http, wait_for, Proc};
use serde_json::Value;
use std::time::Duration;

const STAGE: &str = "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata: {name: prod}\nspec: {api: pets, basePath: /prod}\n";

fn route(path: &str) -> String {
    format!(
        "---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: pets}}\nspec:\n  api: pets\n  path: {path}\n  methods: [GET]\n  integration: {{type: HTTP_PROXY, backendRef: {{name: web, port: http}}}}\n"
    )
}

/// The Lease namespace (where the controller's Role lets it keep Leases).
const LEASE_NS: &str = "tollhouse-system";
/// Long enough that a standby which waited the Lease out, rather than finding it released,
/// could not lead within the 30 s every wait here allows.
const LEASE_SECONDS: &str = "40";

/// A replica with election, whose invoke URLs (and so whose status writes) carry its name.
fn replica(w: &World, lease: &str, name: &str) -> KubeController {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let args: Vec<String> = [
        "--kubeconfig",
        &w.kubeconfig.display().to_string(),
        "--watch-namespace",
        &w.ns,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--public-url",
        &format!("http://{name}.example"),
        "--leader-election",
        "--lease-namespace",
        LEASE_NS,
        "--lease-name",
        lease,
        "--lease-duration",
        LEASE_SECONDS,
        "--identity",
        name,
        "--advertise-url",
        &url,
    ]
    .map(String::from)
    .into();
    let c = KubeController {
        port,
        proc: Proc::spawn("tollhouse-controller", &args, &w.logs()),
    };
    wait_for(&format!("{name} healthz"), Duration::from_secs(30), || {
        let r = http().get(c.url("/healthz")).send().ok()?;
        (r.status() == 200).then_some(())
    });
    c
}

/// A gauge of the replica's `/metrics`, e.g. `tollhouse_controller_leader`.
fn gauge(c: &KubeController, name: &str) -> Option<i64> {
    let m = http().get(c.url("/metrics")).send().ok()?.text().ok()?;
    let line = m.lines().find(|l| l.split(' ').next() == Some(name))?;
    line.rsplit(' ').next()?.parse().ok()
}

fn leads(c: &KubeController) -> bool {
    gauge(c, "tollhouse_controller_leader") == Some(1)
}

/// Where the replica sends dataplanes: `None` if it serves them itself.
fn redirect(c: &KubeController) -> Option<String> {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(c.url("/v1/snapshot?wait=0")).send().ok()?;
    let location = r.headers().get("location")?;
    Some(location.to_str().ok()?.to_string())
}

/// Whose invoke URL the Stage's status shows: the replica that wrote it.
fn stage_writer(w: &World) -> Option<String> {
    let urls = w.get("stage/prod")["status"]["invokeUrls"].clone();
    let url = urls.as_array()?.first()?.as_str()?.to_string();
    let host = url.strip_prefix("http://")?.strip_suffix(".example/prod")?;
    Some(host.to_string())
}

fn lease(w: &World, name: &str) -> Value {
    let json = w
        .env
        .kubectl_ok(&["get", "lease", name, "-n", LEASE_NS, "-o", "json"]);
    serde_json::from_str(&json).unwrap()
}

/// Two replicas: only the leader writes status, also when the standby has translated the
/// same change. On SIGTERM the leader releases the Lease before it exits, and the standby takes
/// over at its next read (the Lease lasts longer than the test waits) and writes status from
/// then on.
#[test]
fn only_the_leader_writes_status_and_a_stopped_leader_hands_over() {
    let w = World::new("leader");
    let lease_name = format!("lease-{}", w.ns);
    let first = replica(&w, &lease_name, "replica-1");
    wait_for("replica-1 leads", Duration::from_secs(30), || {
        leads(&first).then_some(())
    });
    let second = replica(&w, &lease_name, "replica-2");
    // The standby has read the Lease: it sends dataplanes to the leader's advertised URL.
    let to = wait_for("replica-2 on standby", Duration::from_secs(30), || {
        redirect(&second)
    });
    assert!(to.starts_with(&first.url("/v1/snapshot")), "{to}");
    assert!(!leads(&second));

    w.apply(&format!(
        "{}---\n{}{}---\n{STAGE}",
        w.service("web"),
        w.slices("web", &[(free_port(), true)]),
        route("/pets"),
    ));
    wait_for("stage status", Duration::from_secs(30), || stage_writer(&w));
    assert_eq!(stage_writer(&w).as_deref(), Some("replica-1"));

    // A change both replicas translate: the standby publishes it too, yet writes nothing.
    let standby_version = gauge(&second, "tollhouse_controller_snapshot_version");
    w.apply(&route("/pets-v2"));
    wait_for(
        "the standby translated the change",
        Duration::from_secs(30),
        || {
            let now = gauge(&second, "tollhouse_controller_snapshot_version");
            (now.is_some() && now != standby_version).then_some(())
        },
    );
    wait_for("generation 2 observed", Duration::from_secs(30), || {
        (w.get("apiroute/pets")["status"]["observedGeneration"] == 2).then_some(())
    });
    assert_eq!(stage_writer(&w).as_deref(), Some("replica-1"));
    // Whoever wrote it, the status is the controller's field manager's alone (1.20 names no
    // subresource in managedFields: the entry owning `f:status` is the one).
    let pets = w.kubectl(&[
        "get",
        "apiroute/pets",
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let pets: Value = serde_json::from_str(&pets).unwrap();
    let managers: Vec<&str> = pets["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["fieldsV1"].get("f:status").is_some())
        .filter_map(|f| f["manager"].as_str())
        .collect();
    assert_eq!(managers, ["tollhouse-controller"], "{pets}");
    assert!(!leads(&second));

    // SIGTERM: by the time the leader has exited, the Lease no longer names it.
    let mut first = first;
    assert!(
        first.proc.terminate(Duration::from_secs(20)),
        "replica-1 did not exit"
    );
    let holder = lease(&w, &lease_name)["spec"]["holderIdentity"].clone();
    assert!(
        holder.is_null() || holder == "" || holder == "replica-2",
        "after exiting, replica-1 still holds the Lease: {holder}"
    );
    assert!(first.proc.log_text().contains("released the lease"));
    wait_for("replica-2 leads", Duration::from_secs(30), || {
        leads(&second).then_some(())
    });
    assert_eq!(redirect(&second), None);
    let held = lease(&w, &lease_name);
    assert_eq!(held["spec"]["holderIdentity"], "replica-2", "{held}");
    assert_eq!(
        held["metadata"]["annotations"]["tollhouse.dev/delivery-url"],
        second.url(""),
        "{held}"
    );

    // From now on the new leader writes status.
    wait_for(
        "replica-2 writes the stage",
        Duration::from_secs(30),
        || (stage_writer(&w).as_deref() == Some("replica-2")).then_some(()),
    );
    w.apply(&route("/pets-v3"));
    wait_for("generation 3 observed", Duration::from_secs(30), || {
        (w.get("apiroute/pets")["status"]["observedGeneration"] == 3).then_some(())
    });
}
