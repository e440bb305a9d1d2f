//! A real Kubernetes API server for the operator tests, envtest-style.
//!
//! [`KubeEnv::start`] runs etcd 3.4 and kube-apiserver 1.20 on free loopback ports with a
//! token file, RBAC authorization and a CA of its own, and drives them with the real `kubectl`.
//! The binaries come from `e2e/kube/setup.sh` (cached in `~/.cache/tollhouse-kube/bin`); when
//! they are missing the tests fail, they never skip.
//!
//! With `TOLLHOUSE_KUBECONFIG` set to an admin kubeconfig, the tests use that cluster instead
//! and start nothing; the users below are then impersonated (kubeconfig `as:`), which needs the
//! admin to be allowed to impersonate.
//!
//! What is not there: no kube-controller-manager, scheduler or kubelet. Namespaces are never
//! finalized (a deleted namespace stays `Terminating`), owner references are not garbage
//! collected, no ServiceAccount tokens are minted and Pods never run. The ServiceAccount
//! admission plugin is off (as in envtest), so Pods and Deployments can still be created.
//!
//! Every etcd and kube-apiserver runs under a `sh` watchdog that stops it (and removes the
//! scratch directory) within seconds of the test process going away, so nothing outlives a
//! test binary even when `Drop` never runs ([`KubeEnv::shared`]) or the process is killed.
//! `Drop` of a [`KubeEnv::start`]ed environment stops them at once.
//!
//! ```ignore
//! let env = KubeEnv::shared();
//! env.kubectl_ok(&["apply", "-f", "../crds"]);
//! let ns = env.fresh_namespace("my-test");
//! let out = env.kubectl_as("tollhouse-controller", &["get", "apiroutes", "-n", &ns]);
//! assert!(!out.status.success()); // no RoleBinding yet
//! // A controller process: KUBECONFIG=env.kubeconfig_for("tollhouse-controller")
//! ```

use super::{free_port, install_crypto, TempDir};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The users of a started API server's token file, each with a kubeconfig
/// ([`KubeEnv::kubeconfig_for`]): `admin` (group `system:masters`), `tollhouse-controller`
/// (only `system:authenticated`: no rights until a test binds a role to it) and `nobody`
/// (never bound to anything).
pub const USERS: [&str; 3] = ["admin", "tollhouse-controller", "nobody"];

/// How long the API server may take to become ready (a busy 2-core machine needs ~10–30 s).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one kubectl invocation may take before it is killed and the test fails.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(120);

/// A Kubernetes API server to test against: a private etcd + kube-apiserver, or the existing
/// cluster named by `TOLLHOUSE_KUBECONFIG`.
pub struct KubeEnv {
    server: String,
    kubectl: PathBuf,
    /// `None` on a private server; the user's kubeconfig for an existing cluster.
    existing: Option<PathBuf>,
    /// Started processes, stopped in this order (the API server before etcd).
    procs: Vec<Watched>,
    /// Last field: removed after the processes are gone.
    dir: TempDir,
}

impl KubeEnv {
    /// Starts etcd and kube-apiserver and waits until the API server is ready, or connects to
    /// `TOLLHOUSE_KUBECONFIG`. Panics with instructions when the binaries are missing, and with
    /// the processes' logs when the server does not come up. Takes seconds: prefer
    /// [`KubeEnv::shared`] unless a test needs a server of its own (e.g. to stop it).
    pub fn start() -> KubeEnv {
        match std::env::var_os("TOLLHOUSE_KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(kubeconfig) => Self::existing(PathBuf::from(kubeconfig)),
            None => Self::private(&[]),
        }
    }

    /// A private etcd and kube-apiserver even when `TOLLHOUSE_KUBECONFIG` names a cluster, for
    /// tests that must not share their API server with the others (e.g. a controller watching
    /// every namespace); `apiserver_args` are added to kube-apiserver's (e.g.
    /// `--runtime-config=...`). Needs the binaries of `e2e/kube/setup.sh`; panics with
    /// instructions when they are missing.
    pub fn start_private(apiserver_args: &[&str]) -> KubeEnv {
        Self::private(apiserver_args)
    }

    /// Whether this is the existing cluster of `TOLLHOUSE_KUBECONFIG` (users are impersonated)
    /// rather than a private server (users have tokens).
    pub fn is_existing(&self) -> bool {
        self.existing.is_some()
    }

    /// One environment for every test of the test binary, started by the first caller. Its
    /// `Drop` never runs: the watchdogs stop the processes and remove the scratch directory
    /// after the test process exits. If the start fails, every caller fails with its message.
    pub fn shared() -> &'static KubeEnv {
        static ENV: OnceLock<Result<KubeEnv, String>> = OnceLock::new();
        let env = ENV.get_or_init(|| {
            std::panic::catch_unwind(KubeEnv::start).map_err(|e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".into())
            })
        });
        match env {
            Ok(env) => env,
            Err(e) => panic!("the shared KubeEnv failed to start:\n{e}"),
        }
    }

    /// The API server's URL, e.g. `https://127.0.0.1:41234`.
    pub fn server_url(&self) -> &str {
        &self.server
    }

    /// A kubeconfig with full rights (`system:masters`), e.g. for `KUBECONFIG=`.
    pub fn kubeconfig_admin(&self) -> PathBuf {
        match &self.existing {
            Some(path) => path.clone(),
            None => self.kubeconfig_for("admin"),
        }
    }

    /// A kubeconfig that authenticates as `user`: one of [`USERS`] on a private server (with the
    /// user's token and the server's CA). On an existing cluster, any user name: `admin` is
    /// `TOLLHOUSE_KUBECONFIG` itself, any other a copy of it (current context only, flattened)
    /// with `as: <user>`, i.e. the admin impersonates the user, who then has only the group
    /// `system:authenticated`. kubectl and kube-rs both honour `as:`.
    pub fn kubeconfig_for(&self, user: &str) -> PathBuf {
        let Some(admin) = &self.existing else {
            assert!(
                USERS.contains(&user),
                "no user {user:?} in the test API server's token file (users: {USERS:?})"
            );
            return self.dir.path().join(format!("kubeconfig-{user}"));
        };
        if user == "admin" {
            return admin.clone();
        }
        self.kubeconfig_as(user)
    }

    /// A kubeconfig in which the admin impersonates `user` (`as:`), on a private server as on an
    /// existing cluster: e.g. `system:serviceaccount:<ns>:<name>`, which the API server gives
    /// that account's groups, as a pod running with it would have.
    pub fn kubeconfig_as(&self, user: &str) -> PathBuf {
        let safe: String = user
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' => c.to_string(),
                _ => format!("_{:x}", u32::from(c)),
            })
            .collect();
        let path = self
            .dir
            .path()
            .join(format!("kubeconfig-impersonating-{safe}"));
        if !path.exists() {
            let out = self.run(
                &self.kubeconfig_admin(),
                &[
                    "config",
                    "view",
                    "--raw",
                    "--minify",
                    "--flatten",
                    "-o",
                    "json",
                ],
                None,
            );
            assert!(out.status.success(), "kubectl config view: {}", text(&out));
            let mut config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            config["users"][0]["user"]["as"] = user.into();
            // Written whole, then renamed: tests running in parallel may race here.
            let tmp = self
                .dir
                .path()
                .join(format!(".kubeconfig-impersonating-{safe}-{}", unique()));
            fs::write(&tmp, serde_yaml::to_string(&config).unwrap()).unwrap();
            fs::rename(&tmp, &path).unwrap();
        }
        path
    }

    /// Runs the real helm (from the same cache as kubectl) as admin; does not check the exit
    /// status.
    pub fn helm(&self, args: &[&str]) -> Output {
        helm(
            self.dir.path(),
            Some(&self.kubeconfig_admin()),
            self.existing.is_some(),
            args,
        )
    }

    /// Runs helm as admin and returns its stdout; panics with its output if it fails.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        let out = self.helm(args);
        assert!(
            out.status.success(),
            "helm {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl as admin (`--kubeconfig` [`Self::kubeconfig_admin`]); does not check the
    /// exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.run(&self.kubeconfig_admin(), args, None)
    }

    /// Runs kubectl as admin and returns its stdout; panics with its stderr if it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl as `user` (see [`Self::kubeconfig_for`]); does not check the exit status.
    pub fn kubectl_as(&self, user: &str, args: &[&str]) -> Output {
        self.run(&self.kubeconfig_for(user), args, None)
    }

    /// Runs kubectl as admin with `stdin` as its input, e.g. `["apply", "-n", ns, "-f", "-"]`;
    /// does not check the exit status.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.run(&self.kubeconfig_admin(), args, Some(stdin))
    }

    /// `kubectl apply -f -` as admin; returns stdout, panics with stderr if it fails. Objects
    /// without a namespace go to `default`.
    pub fn apply_yaml(&self, yaml: &str) -> String {
        let out = self.kubectl_stdin(&["apply", "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply failed ({}):\n{}\n---- input:\n{yaml}",
            out.status,
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates a namespace of its own for one test, named `<tag>-<n>-<random>` and labelled
    /// `tollhouse.dev/e2e=true` (on an existing cluster: `kubectl delete ns -l
    /// tollhouse.dev/e2e=true` cleans up). Returns its name.
    pub fn fresh_namespace(&self, tag: &str) -> String {
        static N: AtomicU64 = AtomicU64::new(0);
        let mut tag: String = tag
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect();
        tag = tag.trim_matches('-').to_string();
        if tag.is_empty() {
            tag = "e2e".into();
        }
        let name = format!(
            "{tag}-{}-{:08x}",
            N.fetch_add(1, Ordering::Relaxed),
            unique() as u32
        );
        self.apply_yaml(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    tollhouse.dev/e2e: \"true\"\n"
        ));
        name
    }

    fn run(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            // A discovery cache of its own: ports are reused between runs.
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG");
        let what = format!("kubectl {}", args.join(" "));
        run_with_timeout(&what, cmd, stdin, KUBECTL_TIMEOUT)
    }

    /// Connects to the existing cluster of `kubeconfig` and checks that it answers.
    fn existing(kubeconfig: PathBuf) -> KubeEnv {
        // Absolute: cargo runs the tests in `e2e/`, not where the variable was set.
        let kubeconfig = fs::canonicalize(&kubeconfig)
            .unwrap_or_else(|e| panic!("TOLLHOUSE_KUBECONFIG={}: {e}", kubeconfig.display()));
        let dir = TempDir::new("kube");
        // Nothing to stop, but the scratch directory (kubectl cache, kubeconfigs) is removed
        // by a watchdog too: the `Drop` of a shared environment never runs.
        let cleanup = Watched::spawn(
            "cleanup",
            Path::new("sleep"),
            &["infinity".into()],
            dir.path(),
            Some(dir.path()),
        );
        let mut env = KubeEnv {
            server: String::new(),
            kubectl: tool("kubectl", true),
            existing: Some(kubeconfig),
            procs: vec![cleanup],
            dir,
        };
        let ready = env.kubectl(&["get", "--raw", "/readyz"]);
        assert!(
            ready.status.success(),
            "the cluster of TOLLHOUSE_KUBECONFIG is not ready:\n{}",
            text(&ready)
        );
        env.server = env
            .kubectl_ok(&[
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ])
            .trim()
            .to_string();
        env
    }

    /// Starts a private etcd and kube-apiserver, with `extra` kube-apiserver arguments.
    fn private(extra: &[&str]) -> KubeEnv {
        let started = Instant::now();
        let etcd = tool("etcd", false);
        let apiserver = tool("kube-apiserver", false);
        let kubectl = tool("kubectl", false);
        let dir = TempDir::new("kube");
        let d = dir.path();

        // Tokens, one a user: `token,user,uid,"groups"`.
        let tokens: Vec<(&str, String)> = USERS.iter().map(|u| (*u, random_hex(16))).collect();
        let mut token_file = String::new();
        for (user, token) in &tokens {
            let groups = match *user {
                "admin" => ",\"system:masters\"",
                "tollhouse-controller" => ",\"system:authenticated\"",
                _ => "",
            };
            token_file.push_str(&format!("{token},{user},uid-{user}{groups}\n"));
        }
        fs::write(d.join("tokens.csv"), token_file).unwrap();

        // Service account token signing key (ES256) and a CA for the serving certificate.
        let sa = rcgen::KeyPair::generate().unwrap();
        fs::write(d.join("sa.key"), sa.serialize_pem()).unwrap();
        fs::write(d.join("sa.pub"), sa.public_key_pem()).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tollhouse-e2e-ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let serving_key = rcgen::KeyPair::generate().unwrap();
        let mut serving_params = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .unwrap();
        serving_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        let serving = serving_params.signed_by(&serving_key, &ca).unwrap();
        let ca_pem = ca.pem();
        fs::write(d.join("ca.crt"), &ca_pem).unwrap();
        fs::write(d.join("serving.crt"), serving.pem()).unwrap();
        fs::write(d.join("serving.key"), serving_key.serialize_pem()).unwrap();
        fs::create_dir_all(d.join("certs")).unwrap();

        // etcd.
        let (client, peer) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut procs = vec![Watched::spawn(
            "etcd",
            &etcd,
            &[
                "--name=e2e".into(),
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=e2e={peer_url}"),
                "--initial-cluster-state=new".into(),
                "--log-level=warn".into(),
            ],
            d,
            // The last one to stop removes the scratch directory when the test process is gone.
            Some(d),
        )];
        install_crypto();
        let plain = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        wait_ready(&mut procs, "etcd /health", || {
            let r = plain.get(format!("{etcd_url}/health")).send().ok()?;
            r.text().ok()?.contains("true").then_some(())
        });

        // kube-apiserver.
        let port = free_port();
        let server = format!("https://127.0.0.1:{port}");
        let file = |name: &str| d.join(name).display().to_string();
        let mut args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            "--insecure-port=0".into(),
            format!("--cert-dir={}", file("certs")),
            format!("--tls-cert-file={}", file("serving.crt")),
            format!("--tls-private-key-file={}", file("serving.key")),
            format!("--token-auth-file={}", file("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        procs.insert(
            0,
            Watched::spawn("kube-apiserver", &apiserver, &args, d, None),
        );
        let tls = reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let admin_token = &tokens[0].1;
        let get = |path: &str| {
            tls.get(format!("{server}{path}"))
                .bearer_auth(admin_token)
                .send()
                .ok()
                .filter(|r| r.status() == 200)
                .map(drop)
        };
        wait_ready(&mut procs, "kube-apiserver /readyz", || get("/readyz"));
        // Created by the API server's bootstrap controller shortly after it is ready.
        wait_ready(&mut procs, "namespace default", || {
            get("/api/v1/namespaces/default")
        });

        for (user, token) in &tokens {
            let config = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "tollhouse-e2e", "cluster": {
                    "server": server,
                    "certificate-authority": file("ca.crt"),
                }}],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [{"name": user, "context": {"cluster": "tollhouse-e2e", "user": user}}],
                "current-context": user,
            });
            fs::write(
                d.join(format!("kubeconfig-{user}")),
                serde_yaml::to_string(&config).unwrap(),
            )
            .unwrap();
        }
        eprintln!(
            "KubeEnv: etcd + kube-apiserver ready at {server} in {:.1?} (dir {})",
            started.elapsed(),
            d.display()
        );
        KubeEnv {
            server,
            kubectl,
            existing: None,
            procs,
            dir,
        }
    }
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in self.procs.iter().filter(|p| p.name != "cleanup") {
                eprintln!("{}", p.log_tail(40));
            }
        }
        for p in &mut self.procs {
            p.kill();
        }
    }
}

/// Finds a binary in `TOLLHOUSE_KUBE_BIN`, else in `$TOLLHOUSE_KUBE_CACHE/bin` or
/// `~/.cache/tollhouse-kube/bin`, else (`from_path`, only for an existing cluster, where
/// `setup.sh` installs nothing) on `PATH`. Panics with instructions if it is nowhere.
pub fn tool(name: &str, from_path: bool) -> PathBuf {
    let dir = match std::env::var_os("TOLLHOUSE_KUBE_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => PathBuf::from(bin),
        None => match std::env::var_os("TOLLHOUSE_KUBE_CACHE").filter(|v| !v.is_empty()) {
            Some(cache) => PathBuf::from(cache).join("bin"),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/tollhouse-kube/bin"),
        },
    };
    let path = dir.join(name);
    if path.is_file() {
        return path;
    }
    if from_path {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        });
        if let Some(found) = found {
            return found;
        }
    }
    panic!(
        "{} is missing. The e2e tests need etcd, kube-apiserver 1.20, kubectl, helm and \
         python-boto3 (boto3 in a venv): run `e2e/kube/setup.sh` (installs them into ~/.cache/tollhouse-kube/bin; \
         TOLLHOUSE_KUBE_CACHE moves the cache, TOLLHOUSE_KUBE_BIN points at other binaries), \
         or set TOLLHOUSE_KUBECONFIG to an existing cluster's admin kubeconfig.",
        path.display()
    )
}

/// Runs `$3...` in the background. Stops it when the test process (`$1`) is gone, then removes
/// `$2` (if not empty). On SIGTERM, kills it and returns once it is dead (its sockets closed).
/// Exits with its status if it exits first.
const WATCHDOG: &str = r#"testpid=$1; cleanup=$2; shift 2
"$@" &
child=$!
nap=
trap 'kill -KILL "$child" $nap 2>/dev/null; wait "$child"; exit 143' TERM
while kill -0 "$testpid" 2>/dev/null; do
  kill -0 "$child" 2>/dev/null || { wait "$child"; exit $?; }
  sleep 1 & nap=$!
  wait "$nap"
done
kill -TERM "$child" 2>/dev/null
i=0
while kill -0 "$child" 2>/dev/null && [ $i -lt 10 ]; do sleep 1; i=$((i+1)); done
kill -KILL "$child" 2>/dev/null
wait "$child"
[ -n "$cleanup" ] && rm -rf "$cleanup"
"#;

/// etcd or kube-apiserver (or a `sleep` that only holds the cleanup) under a watchdog, in a
/// process group of its own (the watchdog's).
struct Watched {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Watched {
    fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[String],
        log_dir: &Path,
        cleanup: Option<&Path>,
    ) -> Watched {
        let log = log_dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(std::process::id().to_string())
            .arg(cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({}): {e}", bin.display()));
        Watched {
            name,
            child: Some(child),
            log,
        }
    }

    /// The exit status if the process (and so its watchdog) has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let tail = &all[all.len().saturating_sub(lines)..];
        format!(
            "---- {} ({}, last {} lines)\n{}",
            self.name,
            self.log.display(),
            tail.len(),
            tail.join("\n")
        )
    }

    /// Kills the process and waits until it is dead: SIGTERM to the watchdog, which kills it
    /// and reaps it; if the watchdog does not answer, SIGKILL to the whole process group.
    fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `ready` until it answers, failing early (with the logs) if a process exits, and after
/// [`START_TIMEOUT`].
fn wait_ready(procs: &mut [Watched], what: &str, mut ready: impl FnMut() -> Option<()>) {
    let start = Instant::now();
    loop {
        if ready().is_some() {
            return;
        }
        let mut failure = None;
        for p in procs.iter_mut() {
            if let Some(status) = p.exited() {
                failure = Some(format!("{} exited ({status})", p.name));
            }
        }
        if failure.is_none() && start.elapsed() > START_TIMEOUT {
            failure = Some(format!("timed out after {START_TIMEOUT:?}"));
        }
        if let Some(failure) = failure {
            let logs: Vec<String> = procs.iter().map(|p| p.log_tail(60)).collect();
            panic!("waiting for {what}: {failure}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs the real helm ([`tool`]; `from_path` as there) with its caches, config and plugins
/// under `scratch`, never the user's, against `kubeconfig` when given (else no cluster at
/// all); does not check the exit status.
pub fn helm(scratch: &Path, kubeconfig: Option<&Path>, from_path: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new(tool("helm", from_path));
    if let Some(kubeconfig) = kubeconfig {
        cmd.arg("--kubeconfig").arg(kubeconfig);
    }
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .env("HELM_CACHE_HOME", scratch.join("helm-cache"))
        .env("HELM_CONFIG_HOME", scratch.join("helm-config"))
        .env("HELM_DATA_HOME", scratch.join("helm-data"));
    let what = format!("helm {}", args.join(" "));
    run_with_timeout(&what, cmd, None, KUBECTL_TIMEOUT)
}

/// Runs `cmd` with `stdin`, collecting its output; kills it and panics after `timeout`.
fn run_with_timeout(
    what: &str,
    mut cmd: Command,
    stdin: Option<&str>,
    timeout: Duration,
) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let pipe_reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = pipe_reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = pipe_reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            // Not joining the readers: a grandchild may still hold the pipes.
            panic!("{what} did not finish within {timeout:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// stdout and stderr of a command, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn unique() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    nanos as u64 ^ u64::from(std::process::id()).rotate_left(40)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
