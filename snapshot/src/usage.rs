//! What dataplanes tell the controller about usage, for AWS's GetUsage over the whole fleet.
//!
//! Each dataplane `POST`s its own count per (plan, day, key) to the controller's `/v1/usage`:
//! absolute numbers, so sending one twice changes nothing, and only the rows that changed since
//! the last answer. The controller answers with its `epoch`, fixed for the life of its
//! process: a new one means a controller that has forgotten, and the dataplane sends every
//! row it has again. The controller adds the sources up.

use serde::{Deserialize, Serialize};

/// One `POST /v1/usage`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    /// Who counted: stable across a dataplane's restarts when it keeps a state directory (its
    /// counts come back with it), new for each process otherwise.
    pub source: String,
    /// Counts, in no particular order.
    #[serde(default)]
    pub rows: Vec<UsageRow>,
}

/// One key's requests on one day in one plan, as one source counted them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageRow {
    /// The plan, `namespace/name`.
    pub plan: String,
    /// Days since 1970-01-01 (UTC).
    pub day: u64,
    /// The key's id (`$context.identity.apiKeyId`), never its value.
    pub key: String,
    /// Requests let through that day.
    pub used: u64,
}

/// The controller's answer to a report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UsageAck {
    /// The controller process's epoch; see the module's documentation.
    pub epoch: String,
}
