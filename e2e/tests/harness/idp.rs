//! The test issuer, `e2e/idp/idp.py`: OIDC discovery, a JWKS and tokens minted by PyJWT, run
//! with the venv interpreter `e2e/kube/setup.sh` installs.

use super::{free_port, http};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A running issuer.
pub struct Idp {
    child: Child,
    pub port: u16,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Idp {
    pub fn start() -> Idp {
        let port = free_port();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("idp/idp.py");
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
        assert_eq!(line.trim(), "ready", "the issuer did not start");
        Idp { child, port }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn post(&self, path: &str, body: Value) -> String {
        let r = http()
            .post(format!("{}{path}", self.issuer()))
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.text().unwrap()
    }

    pub fn mint(&self, kid: &str, claims: Value, alg: &str) -> String {
        self.post("/mint", json!({"kid": kid, "claims": claims, "alg": alg}))
    }

    pub fn forge(&self, kind: &str, claims: Value) -> String {
        self.post(
            "/forge",
            json!({"kind": kind, "kid": "k1", "claims": claims}),
        )
    }

    pub fn counts(&self) -> (u64, u64) {
        let v: Value = http()
            .get(format!("{}/counts", self.issuer()))
            .send()
            .unwrap()
            .json()
            .unwrap();
        (
            v["discovery"].as_u64().unwrap(),
            v["jwks"].as_u64().unwrap(),
        )
    }
}
