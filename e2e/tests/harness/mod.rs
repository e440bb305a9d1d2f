//! Starts the real binaries on free loopback ports and waits on conditions, never on sleeps.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod function;
pub mod idp;
pub mod kube;
pub mod operator;
pub mod tls;

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The directory cargo put the binaries in (`target/debug`), found from the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test does)",
        path.display()
    );
    path
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A scratch directory removed at drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tollhouse-e2e-{tag}-{}-{}",
            std::process::id(),
            fastnum()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn fastnum() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A child process killed at drop; its stderr goes to a log file shown on failure.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, args: &[String], log_dir: &Path) -> Proc {
        Self::spawn_with_env(name, args, log_dir, &[])
    }

    /// [`Proc::spawn`] with extra environment variables (e.g. a pod's downward-API values).
    pub fn spawn_with_env(
        name: &str,
        args: &[String],
        log_dir: &Path,
        vars: &[(&str, &str)],
    ) -> Proc {
        Self::spawn_program(name, &bin(name), args, log_dir, vars)
    }

    /// Runs `program` (ours or a third party's, e.g. `redis-server`), logged as `name`.
    pub fn spawn_program(
        name: &str,
        program: &Path,
        args: &[String],
        log_dir: &Path,
        vars: &[(&str, &str)],
    ) -> Proc {
        let log = log_dir.join(format!("{name}-{}.log", fastnum()));
        let file = fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .envs(vars.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            child: Some(child),
            log,
        }
    }

    /// The process id while it runs (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit (at most `timeout`); returns whether it exited.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for the process to exit by itself (at most `timeout`); its status, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        // A failing test shows what the process said: the scratch directory is removed after.
        if std::thread::panicking() {
            let text = self.log_text();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- {} (last {} lines)", self.log.display(), tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Holds a port while refusing every connection on it: an unreachable service that no other
/// test can take the port of.
pub struct PortBlocker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PortBlocker {
    pub fn hold(port: u16) -> PortBlocker {
        let listener = wait_for("the port to be free", Duration::from_secs(10), || {
            TcpListener::bind(("127.0.0.1", port)).ok()
        });
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => drop(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        PortBlocker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PortBlocker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A test server written in Python (`e2e/<script>`), run with the venv interpreter
/// `e2e/kube/setup.sh` installs, on a free port; started once it prints `ready`, killed on drop.
pub struct PyServer {
    child: Child,
    pub port: u16,
}

impl PyServer {
    /// Starts `script` (relative to `e2e/`) with the port and `extra` arguments.
    pub fn start(script: &str, extra: &[String]) -> PyServer {
        use std::io::{BufRead, BufReader};
        let port = free_port();
        let mut child = Command::new(kube::tool("python-boto3", false))
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script))
            .arg(port.to_string())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "{script} did not start");
        PyServer { child, port }
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::blocking::Client {
    install_crypto();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The demo backend as a real process.
pub struct Backend {
    pub port: u16,
    pub proc: Proc,
}

impl Backend {
    pub fn start(name: &str, logs: &Path) -> Backend {
        let port = free_port();
        let proc = Proc::spawn(
            "tollhouse-echo",
            &[
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--name".into(),
                name.into(),
            ],
            logs,
        );
        let client = http();
        wait_for("echo backend", Duration::from_secs(20), || {
            client
                .get(format!("http://127.0.0.1:{port}/fast"))
                .send()
                .ok()
        });
        Backend { port, proc }
    }
}

/// The controller in directory mode.
pub struct Controller {
    pub port: u16,
    pub proc: Proc,
    /// The client for its endpoints; one with a client certificate when it serves mTLS.
    client: reqwest::blocking::Client,
    scheme: &'static str,
}

impl Controller {
    pub fn start(dir: &Path, logs: &Path) -> Controller {
        Self::start_on(dir, logs, free_port())
    }

    pub fn start_on(dir: &Path, logs: &Path, port: u16) -> Controller {
        Self::start_with(dir, logs, port, &[], None)
    }

    /// With `extra` arguments; `tls_client` (a client that can pass the controller's mTLS)
    /// makes the endpoints `https://` and is used to wait for readiness and read `/status`.
    pub fn start_with(
        dir: &Path,
        logs: &Path,
        port: u16,
        extra: &[String],
        tls_client: Option<reqwest::blocking::Client>,
    ) -> Controller {
        let mut args = vec![
            "--dir".into(),
            dir.display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
        ];
        args.extend_from_slice(extra);
        let proc = Proc::spawn("tollhouse-controller", &args, logs);
        let scheme = if tls_client.is_some() {
            "https"
        } else {
            "http"
        };
        let c = Controller {
            port,
            proc,
            client: tls_client.unwrap_or_else(http),
            scheme,
        };
        wait_for("controller ready", Duration::from_secs(20), || {
            c.client
                .get(c.url("/readyz"))
                .send()
                .ok()
                .filter(|r| r.status() == 200)
        });
        c
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    pub fn status(&self) -> serde_json::Value {
        self.client
            .get(self.url("/status"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Hash of the snapshot the controller publishes now.
    pub fn hash(&self) -> Option<String> {
        self.client
            .get(self.url("/status"))
            .send()
            .ok()?
            .json::<serde_json::Value>()
            .ok()?["snapshot"]["hash"]
            .as_str()
            .map(str::to_string)
    }
}

/// A dataplane process.
pub struct Dataplane {
    pub http_port: u16,
    pub tls_port: u16,
    pub admin_port: u16,
    pub proc: Proc,
}

impl Dataplane {
    pub fn start(controller: &str, state_dir: &Path, logs: &Path) -> Dataplane {
        Self::start_with(controller, state_dir, logs, &[])
    }

    /// With `extra` arguments (e.g. the controller TLS flags).
    pub fn start_with(
        controller: &str,
        state_dir: &Path,
        logs: &Path,
        extra: &[String],
    ) -> Dataplane {
        let (http_port, tls_port, admin_port) = (free_port(), free_port(), free_port());
        let mut args: Vec<String> = vec![
            "--controller".into(),
            controller.into(),
            "--listen".into(),
            format!("127.0.0.1:{http_port}"),
            "--listen-tls".into(),
            format!("127.0.0.1:{tls_port}"),
            "--admin".into(),
            format!("127.0.0.1:{admin_port}"),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--id".into(),
            format!("e2e-{http_port}"),
        ];
        // The account-wide limit defaults to AWS's 10,000 a second, which the load tests here
        // exceed on a quiet machine: raised out of reach unless a test sets its own.
        if !extra.iter().any(|a| a.starts_with("--account-")) {
            args.extend(
                [
                    "--account-rate-limit",
                    "1000000000",
                    "--account-burst-limit",
                    "1000000000",
                ]
                .map(String::from),
            );
        }
        args.extend_from_slice(extra);
        let proc = Proc::spawn("tollhouse-dataplane", &args, logs);
        let d = Dataplane {
            http_port,
            tls_port,
            admin_port,
            proc,
        };
        let client = http();
        wait_for("dataplane admin", Duration::from_secs(20), || {
            client.get(d.admin("/healthz")).send().ok()
        });
        d
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    pub fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Hash of the snapshot the dataplane serves now.
    pub fn hash(&self) -> Option<String> {
        http()
            .get(self.admin("/snapshot"))
            .send()
            .ok()?
            .json::<serde_json::Value>()
            .ok()?["hash"]
            .as_str()
            .map(str::to_string)
    }

    /// Waits until the dataplane serves what the controller publishes.
    pub fn wait_synced(&self, c: &Controller) {
        wait_for(
            "dataplane to serve the controller's snapshot",
            Duration::from_secs(20),
            || {
                let want = c.hash()?;
                (self.hash()? == want).then_some(())
            },
        );
    }
}

/// Everything for one scenario: a manifest directory, a backend, controller and dataplane.
pub struct Stack {
    pub dir: TempDir,
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub controller: Controller,
    pub dataplane: Dataplane,
}

impl Stack {
    /// Writes `files` into a fresh manifest directory and starts controller and dataplane.
    pub fn start(tag: &str, files: &[(&str, String)]) -> Stack {
        let dir = TempDir::new(tag);
        let manifests = dir.path().join("manifests");
        let state = dir.path().join("state");
        fs::create_dir_all(&manifests).unwrap();
        for (name, text) in files {
            fs::write(manifests.join(name), text).unwrap();
        }
        let controller = Controller::start(&manifests, dir.path());
        let dataplane = Dataplane::start(&controller.url(""), &state, dir.path());
        dataplane.wait_synced(&controller);
        Stack {
            dir,
            manifests,
            state,
            controller,
            dataplane,
        }
    }

    /// Replaces a manifest file atomically, as editors do (write + rename).
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, self.manifests.join(name)).unwrap();
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Delivery mTLS on one machine as `scripts/run-example` sets it up: `tollhouse-devcerts`
/// writes a CA, the controller's server certificate and a dataplane's client certificate into
/// a directory of this user's only.
pub struct DeliveryPki {
    pub dir: PathBuf,
}

impl DeliveryPki {
    /// Runs the real `tollhouse-devcerts --out <dir>` (names `localhost` and `127.0.0.1`).
    pub fn new(dir: &Path) -> DeliveryPki {
        let out = Command::new(bin("tollhouse-devcerts"))
            .arg("--out")
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tollhouse-devcerts failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        DeliveryPki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The controller's `--tls-cert`, `--tls-key` and `--client-ca`.
    pub fn controller_args(&self) -> Vec<String> {
        [
            ("--tls-cert", "controller.pem"),
            ("--tls-key", "controller.key"),
            ("--client-ca", "ca.pem"),
        ]
        .iter()
        .flat_map(|(flag, name)| [flag.to_string(), self.file(name).display().to_string()])
        .collect()
    }

    /// The dataplane's `--controller-ca`, `--tls-cert` and `--tls-key`.
    pub fn dataplane_args(&self) -> Vec<String> {
        [
            ("--controller-ca", "ca.pem"),
            ("--tls-cert", "dataplane.pem"),
            ("--tls-key", "dataplane.key"),
        ]
        .iter()
        .flat_map(|(flag, name)| [flag.to_string(), self.file(name).display().to_string()])
        .collect()
    }

    /// A client holding the dataplane's certificate: what the controller's mTLS lets in.
    pub fn client(&self) -> reqwest::blocking::Client {
        tls::tls_client(
            &self.file("ca.pem"),
            Some((&self.file("dataplane.pem"), &self.file("dataplane.key"))),
        )
    }
}

impl Stack {
    /// [`Stack::start`] with snapshots over mutual TLS, as `scripts/run-example` runs them. A
    /// Stage with a TLS certificate needs it: a plain-HTTP controller refuses to send a
    /// snapshot that carries private keys.
    pub fn start_mtls(tag: &str, files: &[(&str, String)]) -> Stack {
        let dir = TempDir::new(tag);
        let manifests = dir.path().join("manifests");
        let state = dir.path().join("state");
        fs::create_dir_all(&manifests).unwrap();
        for (name, text) in files {
            fs::write(manifests.join(name), text).unwrap();
        }
        let pki = DeliveryPki::new(&dir.path().join("certs"));
        let controller = Controller::start_with(
            &manifests,
            dir.path(),
            free_port(),
            &pki.controller_args(),
            Some(pki.client()),
        );
        let dataplane = Dataplane::start_with(
            &controller.url(""),
            &state,
            dir.path(),
            &pki.dataplane_args(),
        );
        dataplane.wait_synced(&controller);
        Stack {
            dir,
            manifests,
            state,
            controller,
            dataplane,
        }
    }
}
