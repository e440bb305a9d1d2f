//! The operator against a real kube-apiserver (1.20, `harness::kube`) with the real controller
//! and dataplane processes and the real kubectl.
//!
//! The controller always runs as the `tollhouse-controller` ServiceAccount of
//! `deploy/controller-rbac.yaml` (a token minted for it), so it works with exactly the rights
//! the chart grants. Each test has its own namespace and its own controller watching only that
//! namespace, so tests share one API server and run in parallel. The exceptions run on a second
//! server, one at a time (`harness::operator::v1_env`): the controller watching every namespace,
//! as the chart's default does, and the `discovery.k8s.io/v1` EndpointSlices.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::operator::{env, v1_env, KubeController, World, SA, SLICES_V1};
use harness::{free_port, http, wait_for, Backend, Dataplane};
use serde_json::Value;
use std::time::{Duration, Instant};

const STAGE: &str = "apiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata: {name: prod}\nspec: {api: pets, basePath: /prod}\n";

fn route(name: &str, path: &str, service: &str) -> String {
    format!(
        "---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: {name}}}\nspec:\n  api: pets\n  path: {path}\n  methods: [GET]\n  integration: {{type: HTTP_PROXY, backendRef: {{name: {service}, port: http}}}}\n"
    )
}

/// Which echo backend answered `path`, or the status code when it was not a 200.
fn backend_of(dp: &Dataplane, path: &str) -> Result<String, u16> {
    let resp = http().get(dp.url(path)).send().map_err(|_| 0u16)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let body: Value = resp.json().map_err(|_| 1u16)?;
    Ok(body["backend"].as_str().unwrap_or_default().to_string())
}

/// kubectl apply → Programmed → served; endpoints followed as they change; a Service with no
/// ready endpoint answers 503 and says so in the route's status.
#[test]
fn routes_reach_service_endpoints_and_follow_them() {
    let w = World::new("endpoints");
    let logs = w.logs();
    let a = Backend::start("a", &logs);
    let b = Backend::start("b", &logs);
    let c = KubeController::start(w.kubeconfig, &w.ns, &logs, &[]);
    let state = w.dir.path().join("state");
    let dp = Dataplane::start(&c.url(""), &state, &logs);

    w.apply(&format!(
        "{}---\n{}{}{}",
        w.service("web"),
        w.slices("web", &[(a.port, true)]),
        route("pets", "/pets/{proxy+}", "web"),
        format_args!("---\n{STAGE}")
    ));
    w.wait_programmed("apiroute/pets");
    w.wait_programmed("stage/prod");
    assert_eq!(backend_of(&dp, "/prod/pets/1"), Ok("a".into()));

    // kubectl get tollhouse shows every object with its READY column.
    let table = w.kubectl(&["get", "tollhouse"]);
    assert!(table.contains("READY"), "{table}");
    for line in table.lines().filter(|l| l.contains("tollhouse.dev/")) {
        assert!(line.contains("True"), "not ready: {line}\n{table}");
    }
    // The Stage shows its invoke URL and the dataplanes serving the current snapshot.
    let stage = w.get("stage/prod");
    assert_eq!(
        stage["status"]["invokeUrls"],
        serde_json::json!(["http://gateway.example/prod"])
    );
    wait_for(
        "stage served by 1 dataplane",
        Duration::from_secs(30),
        || {
            let s = w.get("stage/prod")["status"].clone();
            (s["servingDataplanes"] == 1 && s["connectedDataplanes"] == 1).then_some(())
        },
    );

    // Both endpoints: traffic reaches both.
    w.apply(&w.slices("web", &[(a.port, true), (b.port, true)]));
    wait_for("traffic on both endpoints", Duration::from_secs(30), || {
        let seen: std::collections::BTreeSet<String> = (0..6)
            .filter_map(|_| backend_of(&dp, "/prod/pets/x").ok())
            .collect();
        (seen.len() == 2).then_some(())
    });

    // a turns unready: it stops receiving traffic.
    w.apply(&w.slices("web", &[(a.port, false), (b.port, true)]));
    wait_for("only b serves", Duration::from_secs(30), || {
        let all_b = (0..6).all(|_| backend_of(&dp, "/prod/pets/x") == Ok("b".into()));
        all_b.then_some(())
    });

    // No ready endpoint: 503 with AWS's body, and the route says why.
    w.kubectl(&["delete", "endpointslice", "web-0", "web-1"]);
    wait_for("503 without endpoints", Duration::from_secs(30), || {
        let resp = http().get(dp.url("/prod/pets/x")).send().ok()?;
        (resp.status() == 503).then(|| resp.text().unwrap())
    });
    let resp = http().get(dp.url("/prod/pets/x")).send().unwrap();
    assert_eq!(resp.text().unwrap(), r#"{"message":"Service Unavailable"}"#);
    let ready = w.wait_condition("apiroute/pets", "Ready", "False", "NoReadyEndpoints");
    assert!(ready["message"].as_str().unwrap().contains("web"));
    drop(c);
}

/// Valid in schema, wrong in meaning: each gets a False condition with a reason and an Event,
/// and the others keep being served.
#[test]
fn rejections_get_conditions_and_events_and_leave_the_rest_alone() {
    let w = World::new("rejections");
    let logs = w.logs();
    let a = Backend::start("a", &logs);
    let c = KubeController::start(w.kubeconfig, &w.ns, &logs, &[]);
    let dp = Dataplane::start(&c.url(""), &w.dir.path().join("state"), &logs);
    w.apply(&format!(
        "{}---\n{}{}---\n{STAGE}",
        w.service("web"),
        w.slices("web", &[(a.port, true)]),
        route("good", "/good", "web"),
    ));
    w.wait_programmed("apiroute/good");

    // A missing Service, a route conflicting with an older one, a bad stage variable.
    w.apply(&format!(
        "{}{}---\napiVersion: tollhouse.dev/v1alpha1\nkind: Stage\nmetadata: {{name: badvars}}\nspec: {{api: other, variables: {{'bad-name': x}}}}\n",
        // Oldest wins; creation times have whole seconds, so a tie goes to the name that sorts
        // first (as Gateway API does): this one both is newer and sorts after "good".
        route("missing", "/missing", "nowhere"),
        route("the-newer-clash", "/good", "web"),
    ));
    let missing = w.wait_condition(
        "apiroute/missing",
        "ResolvedRefs",
        "False",
        "BackendNotFound",
    );
    assert!(missing["message"].as_str().unwrap().contains("nowhere"));
    let clash = w.wait_condition("apiroute/the-newer-clash", "Accepted", "False", "Conflict");
    assert!(clash["message"].as_str().unwrap().contains("good"));
    w.wait_condition("stage/badvars", "Accepted", "False", "InvalidStageVariable");
    for (what, reason) in [
        ("missing", "BackendNotFound"),
        ("the-newer-clash", "Conflict"),
        ("badvars", "InvalidStageVariable"),
    ] {
        wait_for(
            &format!("Event {reason} on {what}"),
            Duration::from_secs(30),
            || {
                let events: Value = serde_json::from_str(&w.events()).ok()?;
                events["items"]
                    .as_array()?
                    .iter()
                    .any(|e| {
                        e["reason"] == reason
                            && e["regarding"]["name"] == what
                            && e["type"] == "Warning"
                    })
                    .then_some(())
            },
        );
    }
    // kubectl describe shows the Event under the object.
    let described = w.kubectl(&["describe", "apiroute", "missing"]);
    assert!(described.contains("BackendNotFound"), "{described}");
    // The good route is untouched and still served; the missing one answers 503.
    assert_eq!(
        w.condition("apiroute/good", "Ready").unwrap()["status"],
        "True"
    );
    assert_eq!(backend_of(&dp, "/prod/good"), Ok("a".into()));
    assert_eq!(backend_of(&dp, "/prod/missing"), Err(503));
    drop(c);
}

/// Programmed waits for a dataplane; observedGeneration follows edits; lastTransitionTime moves
/// only when a condition's status changes.
#[test]
fn programmed_needs_a_dataplane_and_transition_times_hold_still() {
    let w = World::new("programmed");
    let logs = w.logs();
    let a = Backend::start("a", &logs);
    let admin = free_port();
    let c = KubeController::start(
        w.kubeconfig,
        &w.ns,
        &logs,
        &["--admin-listen".into(), format!("127.0.0.1:{admin}")],
    );
    // The plain admin listener has health and metrics but never hands out snapshots.
    let admin_url = |path: &str| format!("http://127.0.0.1:{admin}{path}");
    assert_eq!(
        http().get(admin_url("/healthz")).send().unwrap().status(),
        200
    );
    assert_eq!(
        http()
            .get(admin_url("/v1/snapshot"))
            .send()
            .unwrap()
            .status(),
        404
    );
    w.apply(&format!(
        "{}---\n{}{}---\n{STAGE}",
        w.service("web"),
        w.slices("web", &[(a.port, true)]),
        route("pets", "/pets", "web"),
    ));
    // No dataplane yet: accepted, but not programmed.
    w.wait_condition("apiroute/pets", "Programmed", "False", "NoDataplanes");
    assert_eq!(
        w.condition("apiroute/pets", "Accepted").unwrap()["status"],
        "True"
    );
    let dp = Dataplane::start(&c.url(""), &w.dir.path().join("state"), &logs);
    w.wait_programmed("apiroute/pets");
    let accepted_at =
        w.condition("apiroute/pets", "Accepted").unwrap()["lastTransitionTime"].clone();
    let programmed_at =
        w.condition("apiroute/pets", "Programmed").unwrap()["lastTransitionTime"].clone();

    // Unrelated changes rewrite nothing on this route.
    w.apply(&route("other", "/other", "web"));
    w.wait_programmed("apiroute/other");
    let pets = w.get("apiroute/pets");
    assert_eq!(pets["status"]["observedGeneration"], 1);
    assert_eq!(
        w.condition("apiroute/pets", "Accepted").unwrap()["lastTransitionTime"],
        accepted_at
    );
    assert_eq!(
        w.condition("apiroute/pets", "Programmed").unwrap()["lastTransitionTime"],
        programmed_at
    );

    // An edit: generation 2 is observed, programmed, and served.
    w.apply(&route("pets", "/pets2", "web"));
    wait_for("generation 2 observed", Duration::from_secs(30), || {
        (w.get("apiroute/pets")["status"]["observedGeneration"] == 2).then_some(())
    });
    w.wait_programmed("apiroute/pets");
    assert_eq!(backend_of(&dp, "/prod/pets2"), Ok("a".into()));
    let accepted = w.condition("apiroute/pets", "Accepted").unwrap();
    assert_eq!(
        accepted["lastTransitionTime"], accepted_at,
        "Accepted stayed True"
    );
    assert_eq!(accepted["observedGeneration"], 2);

    // The controller's metrics count what it did.
    let metrics = http()
        .get(c.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "tollhouse_controller_connected_dataplanes 1",
        "tollhouse_controller_errors_total{kind=\"status_patch\"} 0",
        "tollhouse_controller_leader 1",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("tollhouse_controller_translate_duration_seconds_count"));
    drop(dp);
}

/// The ServiceAccount can do what the controller needs and nothing more.
#[test]
fn the_controller_role_grants_no_more_than_needed() {
    let (env, _) = env();
    let can = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--as", SA]);
        let out = env.kubectl(&all);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    for allowed in [
        &["watch", "apiroutes.tollhouse.dev", "-A"][..],
        &[
            "patch",
            "apiroutes.tollhouse.dev",
            "--subresource=status",
            "-n",
            "default",
        ],
        &["watch", "authorizers.tollhouse.dev", "-A"],
        &[
            "patch",
            "authorizers.tollhouse.dev",
            "--subresource=status",
            "-n",
            "default",
        ],
        &["list", "endpointslices.discovery.k8s.io", "-A"],
        &["create", "events.events.k8s.io", "-n", "default"],
        &[
            "update",
            "leases.coordination.k8s.io",
            "-n",
            "tollhouse-system",
        ],
    ] {
        assert_eq!(can(allowed), "yes", "should be allowed: {allowed:?}");
    }
    for denied in [
        &["update", "apiroutes.tollhouse.dev", "-n", "default"][..],
        &["delete", "stages.tollhouse.dev", "-n", "default"],
        &["update", "authorizers.tollhouse.dev", "-n", "default"],
        &["get", "configmaps", "-n", "default"],
        &["create", "secrets", "-n", "default"],
        &["update", "leases.coordination.k8s.io", "-n", "default"],
        &["create", "pods", "-n", "default"],
    ] {
        assert_eq!(can(denied), "no", "should be denied: {denied:?}");
    }
}

fn no_redirect() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Whether the replica reports itself as the leader on `/metrics`.
fn leads(c: &KubeController) -> bool {
    let Ok(m) = http().get(c.url("/metrics")).send().and_then(|r| r.text()) else {
        return false;
    };
    m.lines().any(|l| l == "tollhouse_controller_leader 1")
}

/// Two replicas: the leader writes status and serves snapshots, the standby redirects
/// dataplanes to it; the leader is killed and the standby takes over within the lease time.
#[test]
fn standby_takes_over_when_the_leader_dies() {
    let w = World::new("failover");
    let logs = w.logs();
    let a = Backend::start("a", &logs);
    let lease = format!("lease-{}", w.ns);
    let replica = |name: &str| {
        let port = free_port();
        let args = vec![
            "--leader-election".to_string(),
            "--lease-namespace".into(),
            "tollhouse-system".into(),
            "--lease-name".into(),
            lease.clone(),
            "--lease-duration".into(),
            "3".into(),
            "--identity".into(),
            name.into(),
            "--advertise-url".into(),
            format!("http://127.0.0.1:{port}"),
        ];
        KubeController::start_on(w.kubeconfig, &w.ns, &logs, port, &args)
    };
    let first = replica("replica-1");
    wait_for("replica-1 leads", Duration::from_secs(30), || {
        leads(&first).then_some(())
    });
    let second = replica("replica-2");
    // Let the standby see the Lease at least once before the leader goes.
    wait_for("replica-2 on standby", Duration::from_secs(30), || {
        let r = no_redirect()
            .get(second.url("/v1/snapshot?wait=0"))
            .send()
            .ok()?;
        (r.status() == 307).then_some(())
    });
    assert!(!leads(&second));
    // The dataplane is pointed at the standby, which redirects it to the leader.
    let dp = Dataplane::start(&second.url(""), &w.dir.path().join("state"), &logs);
    w.apply(&format!(
        "{}---\n{}{}---\n{STAGE}",
        w.service("web"),
        w.slices("web", &[(a.port, true)]),
        route("pets", "/pets", "web"),
    ));
    w.wait_programmed("apiroute/pets");
    assert_eq!(backend_of(&dp, "/prod/pets"), Ok("a".into()));
    // The standby redirects to the leader's advertised URL.
    let standby = no_redirect()
        .get(second.url("/v1/snapshot?wait=0"))
        .send()
        .unwrap();
    assert_eq!(standby.status(), 307);
    let location = standby.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&first.url("/v1/snapshot")),
        "{location}"
    );

    let mut first = first;
    let killed = Instant::now();
    first.proc.kill();
    wait_for("replica-2 leads", Duration::from_secs(30), || {
        leads(&second).then_some(())
    });
    let takeover = killed.elapsed();
    eprintln!("standby took over {takeover:?} after the leader was killed (lease 3 s)");
    assert!(takeover < Duration::from_secs(15), "took {takeover:?}");

    // Status keeps updating and the dataplane follows the new leader.
    w.apply(&route("pets", "/pets-v2", "web"));
    wait_for("generation 2 observed", Duration::from_secs(30), || {
        (w.get("apiroute/pets")["status"]["observedGeneration"] == 2).then_some(())
    });
    w.wait_programmed("apiroute/pets");
    assert_eq!(backend_of(&dp, "/prod/pets-v2"), Ok("a".into()));
}

/// A controller restart rewrites nothing: no Stage or ApiRoute is written (same
/// `resourceVersion` and `managedFields`, so the same conditions, transition times and a
/// Stage's `snapshotVersion`), no new Events, and the dataplane (serving identical content)
/// counts as programmed again without being sent the snapshot anew.
#[test]
fn a_restarted_controller_rewrites_nothing() {
    let w = World::new("restart");
    let logs = w.logs();
    let a = Backend::start("a", &logs);
    let port = free_port();
    let mut c = KubeController::start_on(w.kubeconfig, &w.ns, &logs, port, &[]);
    let dp = Dataplane::start(&c.url(""), &w.dir.path().join("state"), &logs);
    let beta = STAGE
        .replace("name: prod", "name: beta")
        .replace("/prod", "/beta");
    w.apply(&format!(
        "{}---\n{}{}{}---\n{STAGE}---\n{beta}",
        w.service("web"),
        w.slices("web", &[(a.port, true)]),
        route("pets", "/pets", "web"),
        route("missing", "/missing", "nowhere"),
    ));
    w.wait_programmed("apiroute/pets");
    w.wait_condition(
        "apiroute/missing",
        "ResolvedRefs",
        "False",
        "BackendNotFound",
    );
    for stage in ["stage/prod", "stage/beta"] {
        w.wait_programmed(stage);
        wait_for(
            &format!("{stage} served by the dataplane"),
            Duration::from_secs(30),
            || {
                let s = w.get(stage)["status"].clone();
                (s["servingDataplanes"] == 1 && s["connectedDataplanes"] == 1).then_some(())
            },
        );
    }
    let writes_before = settled_writes(&w);
    let before = w.get("apiroute/pets")["status"].clone();
    let events_before = event_count(&w);
    let hash = dp.hash();

    c.proc.terminate(Duration::from_secs(10));
    let restarted = Instant::now();
    let c2 = KubeController::start_on(w.kubeconfig, &w.ns, &logs, port, &[]);
    // The dataplane reconnects and is counted again.
    wait_for("dataplane reconnected", Duration::from_secs(30), || {
        let m = http().get(c2.url("/metrics")).send().ok()?.text().ok()?;
        m.lines()
            .any(|l| l == "tollhouse_controller_connected_dataplanes 1")
            .then_some(())
    });
    // Let the new controller write whatever it would write, also in the round at the end of
    // its grace for reconnecting dataplanes (`GRACE` in controller/src/k8s/status.rs, 10 s).
    let settle = Duration::from_secs(13);
    if let Some(left) = settle.checked_sub(restarted.elapsed()) {
        std::thread::sleep(left);
    }
    let writes_after = writes(&w);
    let rewritten: Vec<&String> = writes_before
        .keys()
        .filter(|k| writes_after.get(*k) != writes_before.get(*k))
        .collect();
    assert!(
        rewritten.is_empty() && writes_after.len() == writes_before.len(),
        "the restart rewrote {rewritten:?}:\n{writes_after:#?}"
    );
    let m = http()
        .get(c2.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l == "tollhouse_controller_status_patches_total 0"),
        "the restarted controller patched status:\n{m}"
    );
    assert_eq!(w.get("apiroute/pets")["status"], before);
    assert_eq!(event_count(&w), events_before);
    assert_eq!(dp.hash(), hash, "identical content is not sent again");
    assert_eq!(backend_of(&dp, "/prod/pets"), Ok("a".into()));
    // And it still programs changes, and the Stages show the version of the new snapshot.
    let version_before = w.get("stage/prod")["status"]["snapshotVersion"].clone();
    w.apply(&route("pets", "/pets-again", "web"));
    wait_for("generation 2 observed", Duration::from_secs(30), || {
        (w.get("apiroute/pets")["status"]["observedGeneration"] == 2).then_some(())
    });
    w.wait_programmed("apiroute/pets");
    assert_eq!(backend_of(&dp, "/prod/pets-again"), Ok("a".into()));
    let served = wait_for(
        "stage/prod with the new version",
        Duration::from_secs(30),
        || {
            let s = w.get("stage/prod")["status"].clone();
            (s["snapshotVersion"] != version_before && s["servingDataplanes"] == 1)
                .then(|| s["snapshotVersion"].as_u64())
                .flatten()
        },
    );
    let m = http()
        .get(c2.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l == format!("tollhouse_controller_snapshot_version {served}")),
        "stage/prod shows version {served}, the controller serves another:\n{m}"
    );
}

/// `resourceVersion` and `managedFields` of every Stage and ApiRoute in the namespace, by
/// kind and name: what any write changes.
fn writes(w: &World) -> std::collections::BTreeMap<String, Value> {
    let list: Value = serde_json::from_str(&w.kubectl(&[
        "get",
        "stages,apiroutes",
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    let items = list["items"].as_array().unwrap();
    assert!(
        items
            .iter()
            .all(|o| o["metadata"]["managedFields"].is_array()),
        "no managedFields: {list}"
    );
    items
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            (
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    m["name"].as_str().unwrap()
                ),
                serde_json::json!([m["resourceVersion"], m["managedFields"]]),
            )
        })
        .collect()
}

/// [`writes`] once it has held still for a second.
fn settled_writes(w: &World) -> std::collections::BTreeMap<String, Value> {
    wait_for("status writes to settle", Duration::from_secs(30), || {
        let a = writes(w);
        std::thread::sleep(Duration::from_secs(1));
        (writes(w) == a).then_some(a)
    })
}

fn event_count(w: &World) -> usize {
    let events: Value = serde_json::from_str(&w.events()).unwrap();
    events["items"].as_array().map_or(0, Vec::len)
}

/// A TCP relay to the API server that can be cut and restored, to play a dead API server.
struct Relay {
    port: u16,
    target: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn start(port: u16, target: std::net::SocketAddr) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let relay = Relay {
            port,
            target,
            stop: Default::default(),
            conns: Default::default(),
        };
        let (stop, conns) = (relay.stop.clone(), relay.conns.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        relay
    }

    /// Closes the listener and every relayed connection.
    fn cut(self) -> (u16, std::net::SocketAddr) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(50));
        (self.port, self.target)
    }
}

/// The API server goes away: the dataplane keeps serving, the controller stays up and reports
/// watch errors, and once the API server is back it catches up with what changed meanwhile.
#[test]
fn an_api_server_outage_loses_nothing() {
    let w = World::new("outage");
    let logs = w.logs();
    let a = Backend::start("a", &logs);
    let url: reqwest::Url = w.env.server_url().parse().unwrap();
    let target: std::net::SocketAddr = format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port_or_known_default().unwrap()
    )
    .parse()
    .unwrap();
    let relay = Relay::start(free_port(), target);
    // The controller's kubeconfig, pointed at the relay (the serving certificate is for the IP,
    // whatever the port).
    let text = std::fs::read_to_string(w.kubeconfig).unwrap();
    let relayed = text.replace(&format!(":{}", target.port()), &format!(":{}", relay.port));
    assert_ne!(text, relayed, "kubeconfig names the API server port");
    let kubeconfig = w.dir.path().join("kubeconfig-relayed");
    std::fs::write(&kubeconfig, relayed).unwrap();

    let c = KubeController::start(&kubeconfig, &w.ns, &logs, &[]);
    let dp = Dataplane::start(&c.url(""), &w.dir.path().join("state"), &logs);
    w.apply(&format!(
        "{}---\n{}{}---\n{STAGE}",
        w.service("web"),
        w.slices("web", &[(a.port, true)]),
        route("pets", "/pets", "web"),
    ));
    w.wait_programmed("apiroute/pets");

    let (port, target) = relay.cut();
    // Meanwhile the route changes; the controller cannot see it yet.
    w.apply(&route("pets", "/pets-during-outage", "web"));
    for _ in 0..20 {
        assert_eq!(backend_of(&dp, "/prod/pets"), Ok("a".into()));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        http().get(c.url("/healthz")).send().unwrap().status(),
        200,
        "the controller stays up"
    );

    let _relay = Relay::start(port, target);
    wait_for(
        "generation 2 observed after the outage",
        Duration::from_secs(90),
        || (w.get("apiroute/pets")["status"]["observedGeneration"] == 2).then_some(()),
    );
    w.wait_programmed("apiroute/pets");
    assert_eq!(backend_of(&dp, "/prod/pets-during-outage"), Ok("a".into()));
    let metrics = http()
        .get(c.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        !metrics.contains("tollhouse_controller_errors_total{kind=\"watch\"} 0"),
        "watch errors were counted:\n{metrics}"
    );
}

/// How a pod's endpoint stands in a v1 EndpointSlice, as the endpointslice controller writes
/// its `conditions`.
#[derive(Clone, Copy)]
enum Pod {
    /// `ready`, `serving`.
    Ready,
    /// Shutting down: not `ready`, still `serving` its last requests, `terminating`.
    Terminating,
    /// Not yet passing its readiness probe: neither `ready` nor `serving`.
    Starting,
}

/// `discovery.k8s.io/v1` EndpointSlices as Kubernetes 1.21+ writes them (`nodeName`, `zone`,
/// `targetRef`, the three conditions): one per pod on 127.0.0.1, each with its port.
fn v1_slices(service: &str, pods: &[(u16, Pod)]) -> String {
    let mut out = String::new();
    for (i, (port, pod)) in pods.iter().enumerate() {
        let (ready, serving, terminating) = match pod {
            Pod::Ready => (true, true, false),
            Pod::Terminating => (false, true, true),
            Pod::Starting => (false, false, false),
        };
        out.push_str(&format!(
            "---\napiVersion: {SLICES_V1}\nkind: EndpointSlice\nmetadata:\n  name: {service}-{i}\n  labels:\n    kubernetes.io/service-name: {service}\n    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io\naddressType: IPv4\nports:\n  - {{name: http, port: {port}, protocol: TCP, appProtocol: http}}\nendpoints:\n  - addresses: [127.0.0.1]\n    conditions: {{ready: {ready}, serving: {serving}, terminating: {terminating}}}\n    nodeName: worker-{i}\n    zone: zone-{i}\n    hints: {{forZones: [{{name: zone-{i}}}]}}\n    targetRef: {{kind: Pod, name: {service}-pod-{i}, namespace: default}}\n"
        ));
    }
    out
}

/// Kubernetes 1.21+ serves EndpointSlices as `discovery.k8s.io/v1` (1.25+ only so). On the
/// second test server, which serves them as v1 only (`harness::operator::v1_env`), the
/// controller picks v1 by discovery and follows v1 slices: a ready endpoint gets traffic, a terminating
/// one (not ready, still serving) and a starting one get none, and a Service whose every pod is
/// terminating answers 503 and says so in the route's status.
#[test]
fn routes_follow_v1_endpoint_slices() {
    let (_turn, env, kubeconfig) = v1_env();
    let w = World::on(env, kubeconfig, SLICES_V1, "slices-v1");
    let logs = w.logs();
    let a = Backend::start("a", &logs);
    let b = Backend::start("b", &logs);
    let c = KubeController::start(w.kubeconfig, &w.ns, &logs, &[]);
    let dp = Dataplane::start(&c.url(""), &w.dir.path().join("state"), &logs);
    // Base paths of its own: the other test on this server serves every namespace.
    let stage = STAGE.replace("/prod", "/v1slices");
    w.apply(&format!(
        "{}{}---\n{stage}",
        w.service("web"),
        route("pets", "/pets", "web")
    ));
    // Server-side, as every later update of the slices must be (`World::apply_server_side`).
    w.apply_server_side(&v1_slices(
        "web",
        &[(a.port, Pod::Ready), (b.port, Pod::Starting)],
    ));
    w.wait_programmed("apiroute/pets");
    let log = c.proc.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("EndpointSlice API found by discovery")
                && l.trim_end().ends_with("api_version=discovery.k8s.io/v1")),
        "the controller did not pick discovery.k8s.io/v1:\n{log}"
    );
    for _ in 0..6 {
        assert_eq!(backend_of(&dp, "/v1slices/pets"), Ok("a".into()));
    }

    // A rollout: a terminates, b turns ready.
    w.apply_server_side(&v1_slices(
        "web",
        &[(a.port, Pod::Terminating), (b.port, Pod::Ready)],
    ));
    wait_for("only b serves", Duration::from_secs(30), || {
        let all_b = (0..6).all(|_| backend_of(&dp, "/v1slices/pets") == Ok("b".into()));
        all_b.then_some(())
    });

    // Every pod terminating: no ready endpoint.
    w.apply_server_side(&v1_slices(
        "web",
        &[(a.port, Pod::Terminating), (b.port, Pod::Terminating)],
    ));
    let ready = w.wait_condition("apiroute/pets", "Ready", "False", "NoReadyEndpoints");
    assert!(
        ready["message"].as_str().unwrap().contains("web"),
        "{ready}"
    );
    assert_eq!(backend_of(&dp, "/v1slices/pets"), Err(503));
}

/// The chart's default: no `--watch-namespace`, so the controller watches every namespace with
/// its ClusterRole (on the second server, where no other test's controller runs meanwhile).
/// Objects of the same names in two namespaces, one created after the controller started, are
/// served from each namespace's own Service and get their status; a backendRef resolves only
/// in the route's own namespace.
#[test]
fn a_cluster_wide_controller_serves_every_namespace() {
    let (_turn, env, kubeconfig) = v1_env();
    let east = World::on(env, kubeconfig, SLICES_V1, "east");
    let logs = east.logs();
    let a = Backend::start("a", &logs);
    let b = Backend::start("b", &logs);
    let c = KubeController::start_cluster_wide(kubeconfig, &logs, &[]);
    let dp = Dataplane::start(&c.url(""), &east.dir.path().join("state"), &logs);
    let objects = |w: &World, port: u16, base: &str| {
        format!(
            "{}---\n{}{}---\n{}",
            w.service("web"),
            w.slices("web", &[(port, true)]),
            route("pets", "/pets", "web"),
            STAGE.replace("/prod", base)
        )
    };
    east.apply(&format!(
        "{}---\n{}",
        objects(&east, a.port, "/east"),
        east.service("only-east")
    ));
    // A namespace that did not exist when the controller started.
    let west = World::on(env, kubeconfig, SLICES_V1, "west");
    west.apply(&format!(
        "{}{}",
        objects(&west, b.port, "/west"),
        route("elsewhere", "/elsewhere", "only-east")
    ));
    for w in [&east, &west] {
        w.wait_programmed("apiroute/pets");
        w.wait_programmed("stage/prod");
    }
    assert_eq!(backend_of(&dp, "/east/pets"), Ok("a".into()));
    assert_eq!(backend_of(&dp, "/west/pets"), Ok("b".into()));
    for (w, base) in [(&east, "/east"), (&west, "/west")] {
        let status = w.get("stage/prod")["status"].clone();
        assert_eq!(
            status["invokeUrls"],
            serde_json::json!([format!("http://gateway.example{base}")]),
            "{status}"
        );
    }
    let refs = west.wait_condition(
        "apiroute/elsewhere",
        "ResolvedRefs",
        "False",
        "BackendNotFound",
    );
    assert!(
        refs["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{}/only-east", west.ns)),
        "{refs}"
    );
}

const KEY_A: &str = "OperatorKeyA0123456789abcdefgh";
const KEY_B: &str = "OperatorKeyB0123456789abcdefgh";

fn key_secret(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\ntype: tollhouse.dev/api-key\nmetadata:\n  name: {name}\n  labels: {{tollhouse.dev/usage-plan: gold}}\nstringData:\n  key: {value}\n")
}

fn plan(name: &str) -> String {
    format!("apiVersion: tollhouse.dev/v1alpha1\nkind: UsagePlan\nmetadata: {{name: {name}}}\nspec:\n  apiStages:\n  - stage: prod\n  throttle: {{rateLimit: 100, burstLimit: 200}}\n  quota: {{limit: 100000, period: MONTH}}\n  apiKeySelector:\n    matchLabels: {{tollhouse.dev/usage-plan: gold}}\n")
}

fn keyed_status(dp: &Dataplane, key: Option<&str>) -> u16 {
    let mut req = http().get(dp.url("/prod/keyed"));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Reference §2 on the real API server: api-key Secrets (only that type is read) and a
/// UsagePlan get the plan's status (stages, key count, conditions, printer columns); a younger
/// plan claiming the same keys on the Stage is ResolvedRefs=False Conflict; a key disabled by
/// its annotation is refused once the change reaches the dataplane; no key value shows in
/// status or Events.
#[test]
fn usage_plans_get_status_and_keys_follow_their_secrets() {
    let w = World::new("plans");
    let logs = w.logs();
    let c = KubeController::start(w.kubeconfig, &w.ns, &logs, &[]);
    let dp = Dataplane::start(&c.url(""), &w.dir.path().join("state"), &logs);
    w.apply(&format!(
        "{STAGE}---\napiVersion: tollhouse.dev/v1alpha1\nkind: ApiRoute\nmetadata: {{name: keyed}}\nspec:\n  api: pets\n  path: /keyed\n  apiKeyRequired: true\n  integration: {{type: MOCK}}\n---\n{}---\n{}---\n{}",
        key_secret("partner-a", KEY_A),
        key_secret("partner-b", KEY_B),
        plan("gold"),
    ));
    w.wait_programmed("usageplan/gold");
    let status = w.get("usageplan/gold")["status"].clone();
    assert_eq!(status["stages"], serde_json::json!(["prod"]));
    assert_eq!(status["keys"], 2);
    wait_for("the key to be served", Duration::from_secs(30), || {
        (keyed_status(&dp, Some(KEY_A)) == 200).then_some(())
    });
    assert_eq!(keyed_status(&dp, None), 403);
    let table = w.kubectl(&["get", "usageplans"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "STAGES", "KEYS", "RATE", "QUOTA", "READY", "AGE"]
    );
    assert!(
        table.contains("gold") && table.contains("100000"),
        "{table}"
    );
    // By short name and category too.
    assert!(w.kubectl(&["get", "up"]).contains("gold"));
    assert!(w.kubectl(&["get", "tollhouse"]).contains("usageplan"));

    // A younger plan with the same keys on the same Stage.
    std::thread::sleep(Duration::from_millis(1100));
    w.apply(&plan("younger"));
    let conflict = w.wait_condition("usageplan/younger", "ResolvedRefs", "False", "Conflict");
    assert!(
        conflict["message"].as_str().unwrap().contains("gold"),
        "{conflict}"
    );

    // Disabling a key through its annotation.
    let started = Instant::now();
    w.kubectl(&[
        "annotate",
        "secret",
        "partner-b",
        "tollhouse.dev/enabled=false",
    ]);
    wait_for(
        "the disabled key to be refused",
        Duration::from_secs(30),
        || (keyed_status(&dp, Some(KEY_B)) == 403).then_some(()),
    );
    eprintln!(
        "disabled key refused {:?} after kubectl annotate",
        started.elapsed()
    );
    assert_eq!(keyed_status(&dp, Some(KEY_A)), 200);
    wait_for("the key count to follow", Duration::from_secs(30), || {
        (w.get("usageplan/gold")["status"]["keys"] == 1).then_some(())
    });
    let everything = format!(
        "{}{}{}",
        w.kubectl(&["get", "usageplans", "-o", "yaml"]),
        w.events(),
        c.proc.log_text()
    );
    assert!(!everything.contains(KEY_A) && !everything.contains(KEY_B));
    drop(c);
}

/// Authorizers on the real API server: a JWT Authorizer in use is Programmed and Ready (its
/// plain-http issuer said in the message), with its printer columns and short name; a REQUEST
/// one without its function is Accepted=False, and its route is ResolvedRefs=False and not
/// served; the served route refuses a request without a token and passes a PyJWT one. A TOKEN
/// authorizer whose function is a Service is ResolvedRefs=False BackendNotFound until the
/// Service exists (its route answers 500), then its EndpointSlice's endpoint (the Powertools
/// function) decides.
#[test]
fn authorizers_get_status_and_protect_their_routes() {
    let idp = harness::idp::Idp::start();
    let function = harness::function::Function::start();
    let w = World::new("authz");
    let logs = w.logs();
    let c = KubeController::start(w.kubeconfig, &w.ns, &logs, &[]);
    let dp = Dataplane::start(&c.url(""), &w.dir.path().join("state"), &logs);
    let issuer = idp.issuer();
    w.apply(&format!(
        "{STAGE}---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: corp}}
spec:
  type: JWT
  jwt: {{issuer: \"{issuer}\", audience: [pets-api]}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: fn}}
spec: {{type: REQUEST}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: jwt}}
spec:
  api: pets
  path: /jwt
  authorization: {{authorizerRef: {{name: corp}}, scopes: [pets:read]}}
  integration: {{type: MOCK, mock: {{statusCode: 200, body: jwt}}}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: by-fn}}
spec:
  api: pets
  path: /fn
  authorization: {{authorizerRef: {{name: fn}}}}
  integration: {{type: MOCK}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {{name: tokens}}
spec:
  type: TOKEN
  function: {{backendRef: {{name: authz-fn, port: http}}}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {{name: by-token}}
spec:
  api: pets
  path: /token
  authorization: {{authorizerRef: {{name: tokens}}}}
  integration: {{type: MOCK, mock: {{statusCode: 200, body: token}}}}
"
    ));
    w.wait_programmed("authorizer/corp");
    let ready = w.wait_condition("authorizer/corp", "Ready", "True", "Ready");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("used by 1 served route(s)") && message.contains("plain http"),
        "{ready}"
    );
    let refused = w.wait_condition("authorizer/fn", "Accepted", "False", "InvalidAuthorizer");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("type REQUEST needs spec.function"),
        "{refused}"
    );
    w.wait_condition(
        "apiroute/by-fn",
        "ResolvedRefs",
        "False",
        "AuthorizerNotFound",
    );

    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = idp.mint(
        "k1",
        serde_json::json!({"iss": issuer, "aud": "pets-api", "sub": "op", "iat": t,
            "exp": t + 600, "scope": "pets:read"}),
        "RS256",
    );
    let get = |path: &str, token: Option<&str>| {
        let mut req = http().get(dp.url(path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.send().map(|r| r.status().as_u16()).unwrap_or(0)
    };
    wait_for("the protected route", Duration::from_secs(30), || {
        (get("/prod/jwt", Some(&token)) == 200).then_some(())
    });
    assert_eq!(get("/prod/jwt", None), 401);
    assert_eq!(
        get("/prod/fn", Some(&token)),
        404,
        "not served without its authorizer"
    );

    // The TOKEN authorizer's Service: missing (500, said on the Authorizer), then there.
    let missing = w.wait_condition(
        "authorizer/tokens",
        "ResolvedRefs",
        "False",
        "BackendNotFound",
    );
    assert!(
        missing["message"].as_str().unwrap().contains("authz-fn"),
        "{missing}"
    );
    wait_for("the token route", Duration::from_secs(30), || {
        (get("/prod/token", Some("allow:op")) == 500).then_some(())
    });
    w.apply(&format!(
        "{}{}",
        w.service("authz-fn"),
        w.slices("authz-fn", &[(function.port, true)])
    ));
    w.wait_condition("authorizer/tokens", "Ready", "True", "Ready");
    wait_for("the function decides", Duration::from_secs(30), || {
        (get("/prod/token", Some("allow:op")) == 200).then_some(())
    });
    assert_eq!(get("/prod/token", Some("deny")), 403);
    assert_eq!(get("/prod/token", None), 401);
    assert_eq!(function.calls(), 2, "one call per token");

    // A SIGV4 authorizer reads its access keys from Secrets of type
    // tollhouse.dev/sigv4-credentials, watched on the API server; no value reaches the status.
    w.apply(
        "apiVersion: tollhouse.dev/v1alpha1
kind: Authorizer
metadata: {name: iam}
spec:
  type: SIGV4
  sigv4:
    region: us-east-1
    credentialSelector: {matchLabels: {tollhouse.dev/authorizer: iam}}
---
apiVersion: tollhouse.dev/v1alpha1
kind: ApiRoute
metadata: {name: by-iam}
spec:
  api: pets
  path: /iam
  authorization: {authorizerRef: {name: iam}}
  integration: {type: MOCK}
",
    );
    let none = w.wait_condition("authorizer/iam", "Ready", "True", "Ready");
    assert!(
        none["message"]
            .as_str()
            .unwrap()
            .contains("every request is refused"),
        "{none}"
    );
    w.apply(
        "apiVersion: v1
kind: Secret
type: tollhouse.dev/sigv4-credentials
metadata: {name: alice, labels: {tollhouse.dev/authorizer: iam}}
stringData:
  accessKeyId: AKIDOPERATOR
  secretAccessKey: operator-secret-access-key-0000
",
    );
    wait_for("the access key", Duration::from_secs(30), || {
        let ready = w.wait_condition("authorizer/iam", "Ready", "True", "Ready");
        ready["message"]
            .as_str()
            .unwrap()
            .contains("1 access key(s)")
            .then_some(())
    });

    let table = w.kubectl(&["get", "authorizers"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "ISSUER", "READY", "AGE"]);
    assert!(table.contains("corp") && table.contains("JWT"), "{table}");
    assert!(w.kubectl(&["get", "authz"]).contains("corp"));
    assert!(w.kubectl(&["get", "tollhouse"]).contains("authorizer"));
    let everything = format!(
        "{}{}{}",
        w.kubectl(&["get", "authorizers,apiroutes", "-o", "yaml"]),
        w.events(),
        c.proc.log_text()
    );
    assert!(!everything.contains(&token[token.len() - 20..]));
    assert!(!everything.contains("operator-secret-access-key"));
    drop(c);
}
