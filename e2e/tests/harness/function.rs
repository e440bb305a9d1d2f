//! The test function authorizer, `e2e/functions/authorizer.py`: Lambda code on AWS Lambda
//! Powertools behind an Invoke-API server, counting its calls and keeping what it read from
//! each event. Run with the venv interpreter `e2e/kube/setup.sh` installs.

use super::{http, PyServer};
use serde_json::Value;

/// A running function.
pub struct Function {
    _server: PyServer,
    pub port: u16,
}

impl Function {
    pub fn start() -> Function {
        let server = PyServer::start("functions/authorizer.py", &[]);
        Function {
            port: server.port,
            _server: server,
        }
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
