//! The test issuer, `e2e/idp/idp.py`: OIDC discovery, a JWKS and tokens minted by PyJWT, run
//! with the venv interpreter `e2e/kube/setup.sh` installs.

use super::{http, PyServer};
use serde_json::{json, Value};

/// A running issuer.
pub struct Idp {
    _server: PyServer,
    pub port: u16,
    /// Where its control endpoints are, and the client that reaches them.
    base: String,
    client: reqwest::blocking::Client,
}

impl Idp {
    pub fn start() -> Idp {
        Self::start_with(&[], None)
    }

    /// Over https with `cert` and `key` (PEM files, for `localhost`) from the CA `ca`: the
    /// issuer is `https://localhost:PORT`.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> Idp {
        Self::start_with(
            &[cert.display().to_string(), key.display().to_string()],
            Some(ca),
        )
    }

    fn start_with(extra: &[String], ca: Option<&std::path::Path>) -> Idp {
        let server = PyServer::start("idp/idp.py", extra);
        let port = server.port;
        let (base, client) = match ca {
            Some(ca) => (
                format!("https://localhost:{port}"),
                super::tls::tls_client(ca, None),
            ),
            None => (format!("http://127.0.0.1:{port}"), http()),
        };
        Idp {
            _server: server,
            port,
            base,
            client,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The issuer of [`Idp::start_tls`].
    pub fn tls_issuer(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    pub fn post(&self, path: &str, body: Value) -> String {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
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
        let v: Value = self
            .client
            .get(format!("{}/counts", self.base))
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
