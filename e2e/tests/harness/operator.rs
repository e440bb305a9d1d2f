//! The operator's test fixtures: the shared API server with the CRDs and the controller's RBAC,
//! a controller in Kubernetes mode running as its ServiceAccount, and a per-test namespace.
#![allow(dead_code)]

use super::kube::{text, KubeEnv};
use super::{free_port, http, wait_for, Proc, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

pub const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
pub const RBAC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/controller-rbac.yaml"
);
pub const SA: &str = "system:serviceaccount:tollhouse-system:tollhouse-controller";
/// A CRD that serves `discovery.k8s.io/v1` EndpointSlices on a 1.20 server ([`v1_env`]).
pub const ENDPOINT_SLICE_V1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/kube/endpointslice-v1-crd.yaml"
);
/// The EndpointSlice API of the shared test server (1.20), and that of [`v1_env`].
pub const SLICES_V1BETA1: &str = "discovery.k8s.io/v1beta1";
pub const SLICES_V1: &str = "discovery.k8s.io/v1";

/// The shared API server with the CRDs and the controller's RBAC applied, and a kubeconfig
/// holding a token of the controller's ServiceAccount.
pub fn env() -> (&'static KubeEnv, &'static Path) {
    static SETUP: OnceLock<PathBuf> = OnceLock::new();
    let env = KubeEnv::shared();
    let kubeconfig = SETUP.get_or_init(|| install(env));
    (env, kubeconfig.as_path())
}

/// The CRDs and the controller's RBAC; returns the ServiceAccount's kubeconfig.
fn install(env: &KubeEnv) -> PathBuf {
    env.kubectl_ok(&["apply", "-f", CRDS]);
    env.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/stages.tollhouse.dev",
        "crd/apiroutes.tollhouse.dev",
        "crd/usageplans.tollhouse.dev",
        "--timeout=60s",
    ]);
    env.kubectl_ok(&["apply", "-f", RBAC]);
    service_account_kubeconfig(env)
}

/// A second API server of this test binary's own, always private, set up like [`env`] but
/// serving EndpointSlices as `discovery.k8s.io/v1` only, as Kubernetes 1.25+ does: its
/// built-in v1beta1 is turned off (`--runtime-config`) and the CRD [`ENDPOINT_SLICE_V1`] serves
/// v1 (1.20 cannot serve a CRD version in a group it serves itself: its handler for the group
/// answers 404 for any other version). Its tests take turns (the guard): one of them runs a
/// controller that watches every namespace, which would write the status of the others'
/// objects.
pub fn v1_env() -> (MutexGuard<'static, ()>, &'static KubeEnv, &'static Path) {
    static TURN: Mutex<()> = Mutex::new(());
    static SETUP: OnceLock<(KubeEnv, PathBuf)> = OnceLock::new();
    // A test that failed holding the turn leaves nothing the next one depends on.
    let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let (env, kubeconfig) = SETUP.get_or_init(|| {
        let env = KubeEnv::start_private(&["--runtime-config=discovery.k8s.io/v1beta1=false"]);
        env.kubectl_ok(&["apply", "-f", ENDPOINT_SLICE_V1]);
        env.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/endpointslices.discovery.k8s.io",
            "--timeout=60s",
        ]);
        let kubeconfig = install(&env);
        (env, kubeconfig)
    });
    (turn, env, kubeconfig.as_path())
}

/// A kubeconfig for the controller's ServiceAccount: a minted token on the test server, the
/// admin impersonating it on an existing cluster.
pub fn service_account_kubeconfig(env: &KubeEnv) -> PathBuf {
    if env.is_existing() {
        return env.kubeconfig_for(SA);
    }
    let token = env
        .kubectl_ok(&[
            "create",
            "token",
            "tollhouse-controller",
            "-n",
            "tollhouse-system",
            "--duration=24h",
        ])
        .trim()
        .to_string();
    let admin = std::fs::read_to_string(env.kubeconfig_admin()).unwrap();
    let mut config: serde_yaml::Value = serde_yaml::from_str(&admin).unwrap();
    let users = config["users"].as_sequence_mut().unwrap();
    for user in users.iter_mut() {
        user["user"] = serde_yaml::to_value(serde_json::json!({ "token": token })).unwrap();
    }
    let path = env
        .kubeconfig_admin()
        .with_file_name("kubeconfig-tollhouse-controller-sa");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// A controller in Kubernetes mode watching one namespace.
pub struct KubeController {
    pub port: u16,
    pub proc: Proc,
}

impl KubeController {
    pub fn start(
        kubeconfig: &Path,
        namespace: &str,
        logs: &Path,
        extra: &[String],
    ) -> KubeController {
        Self::start_on(kubeconfig, namespace, logs, free_port(), extra)
    }

    pub fn start_on(
        kubeconfig: &Path,
        namespace: &str,
        logs: &Path,
        port: u16,
        extra: &[String],
    ) -> KubeController {
        Self::spawn(kubeconfig, Some(namespace), logs, port, extra)
    }

    /// A controller without `--watch-namespace`, as the chart runs it by default: it watches
    /// every namespace with its ClusterRole. Only on a server of its own ([`v1_env`]).
    pub fn start_cluster_wide(kubeconfig: &Path, logs: &Path, extra: &[String]) -> KubeController {
        Self::spawn(kubeconfig, None, logs, free_port(), extra)
    }

    fn spawn(
        kubeconfig: &Path,
        namespace: Option<&str>,
        logs: &Path,
        port: u16,
        extra: &[String],
    ) -> KubeController {
        let mut args = vec!["--kubeconfig".to_string(), kubeconfig.display().to_string()];
        if let Some(namespace) = namespace {
            args.extend(["--watch-namespace".into(), namespace.into()]);
        }
        args.extend([
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--public-url".into(),
            "http://gateway.example".into(),
        ]);
        args.extend_from_slice(extra);
        let proc = Proc::spawn("tollhouse-controller", &args, logs);
        let c = KubeController { port, proc };
        let client = http();
        wait_for("controller healthz", Duration::from_secs(30), || {
            client
                .get(c.url("/healthz"))
                .send()
                .ok()
                .filter(|r| r.status() == 200)
        });
        c
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// One test's world: namespace, scratch directory, backends.
pub struct World {
    pub env: &'static KubeEnv,
    pub kubeconfig: &'static Path,
    pub ns: String,
    pub dir: TempDir,
    /// The `apiVersion` of the EndpointSlices [`World::slices`] writes.
    pub slice_api: &'static str,
}

impl World {
    /// A namespace on the shared server.
    pub fn new(tag: &str) -> World {
        let (env, kubeconfig) = env();
        World::on(env, kubeconfig, SLICES_V1BETA1, tag)
    }

    /// A namespace on `env`, whose EndpointSlices are `slice_api`.
    pub fn on(
        env: &'static KubeEnv,
        kubeconfig: &'static Path,
        slice_api: &'static str,
        tag: &str,
    ) -> World {
        World {
            env,
            kubeconfig,
            ns: env.fresh_namespace(tag),
            dir: TempDir::new(tag),
            slice_api,
        }
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn apply(&self, yaml: &str) {
        let out = self
            .env
            .kubectl_stdin(&["apply", "-n", &self.ns, "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed:\n{}",
            text(&out)
        );
    }

    /// `kubectl apply --server-side --force-conflicts`: for the EndpointSlices of [`v1_env`],
    /// which kubectl's client-side apply would patch as a built-in kind (a strategic merge
    /// patch, which a CRD refuses with 415).
    pub fn apply_server_side(&self, yaml: &str) {
        let out = self.env.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-n",
                &self.ns,
                "-f",
                "-",
            ],
            yaml,
        );
        assert!(
            out.status.success(),
            "kubectl apply --server-side failed:\n{}",
            text(&out)
        );
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend_from_slice(&["-n", &self.ns]);
        self.env.kubectl_ok(&all)
    }

    pub fn get(&self, what: &str) -> Value {
        serde_json::from_str(&self.kubectl(&["get", what, "-o", "json"])).unwrap()
    }

    pub fn condition(&self, what: &str, kind: &str) -> Option<Value> {
        self.get(what)["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == kind)
            .cloned()
    }

    /// Waits until `what` has condition `kind` with this status and reason.
    pub fn wait_condition(&self, what: &str, kind: &str, status: &str, reason: &str) -> Value {
        wait_for(
            &format!("{what} {kind}={status} ({reason})"),
            Duration::from_secs(30),
            || {
                let c = self.condition(what, kind)?;
                (c["status"] == status && c["reason"] == reason).then_some(c)
            },
        )
    }

    pub fn wait_programmed(&self, what: &str) {
        let out = self.env.kubectl(&[
            "wait",
            "--for=condition=Programmed",
            what,
            "-n",
            &self.ns,
            "--timeout=30s",
        ]);
        assert!(
            out.status.success(),
            "kubectl wait Programmed {what}:\n{}\n{}",
            text(&out),
            serde_json::to_string_pretty(&self.get(what)).unwrap()
        );
    }

    pub fn events(&self) -> String {
        self.kubectl(&["get", "events.events.k8s.io", "-o", "json"])
    }

    pub fn service(&self, name: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
        )
    }

    /// Hand-made EndpointSlices of [`World::slice_api`] (there is no endpoint controller):
    /// `(port, ready)` endpoints on 127.0.0.1, each with its own port, as one slice per
    /// endpoint.
    pub fn slices(&self, service: &str, endpoints: &[(u16, bool)]) -> String {
        let api = self.slice_api;
        let mut out = String::new();
        for (i, (port, ready)) in endpoints.iter().enumerate() {
            out.push_str(&format!(
                "---\napiVersion: {api}\nkind: EndpointSlice\nmetadata:\n  name: {service}-{i}\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n  - addresses: [127.0.0.1]\n    conditions: {{ready: {ready}}}\n"
            ));
        }
        out
    }
}
