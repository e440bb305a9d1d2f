//! The test function authorizer, `e2e/functions/authorizer.py`: Lambda code on AWS Lambda
//! Powertools behind an Invoke-API server, counting its calls and keeping what it read from
//! each event. Run with the venv interpreter `e2e/kube/setup.sh` installs.

use super::{free_port, http};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running function.
pub struct Function {
    child: Child,
    pub port: u16,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Function {
    pub fn start() -> Function {
        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("functions/authorizer.py");
        let mut child = Command::new(super::kube::tool("python-boto3", false))
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the function did not start");
        Function { child, port }
    }

    /// The Invoke API URL.
    pub fn uri(&self) -> String {
        format!(
            "http://127.0.0.1:{}/2015-03-31/functions/function/invocations",
            self.port
        )
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        let v: Value = http()
            .get(format!("http://127.0.0.1:{}/counts", self.port))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["calls"].as_u64().unwrap()
    }

    /// What the function read from each event (`seen`) and the event itself (`raw`).
    pub fn events(&self) -> Vec<Value> {
        http()
            .get(format!("http://127.0.0.1:{}/events", self.port))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Forgets the calls and events.
    pub fn reset(&self) {
        http()
            .post(format!("http://127.0.0.1:{}/reset", self.port))
            .send()
            .unwrap();
    }
}
