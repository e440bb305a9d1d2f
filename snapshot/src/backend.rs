//! A Service port and its endpoints.

use crate::SourceRef;
use serde::{Deserialize, Serialize};

/// A Service port and its ready endpoints: the dataplane balances over them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// The Service.
    pub source: SourceRef,
    /// Ready endpoints as `host:port` (`[v6]:port` for IPv6), sorted; empty: none ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
}
