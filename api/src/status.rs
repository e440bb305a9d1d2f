//! Status shared by the kinds: conditions typed in the vocabulary of `tollhouse-snapshot`
//! ([`ConditionType`], [`ConditionStatus`], [`Reason`]) and written as Kubernetes conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
pub use tollhouse_snapshot::{ConditionStatus, ConditionType, Reason};

/// Status shared by every Tollhouse resource: conditions and the generation they describe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Accepted, ResolvedRefs, Programmed and Ready, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Status of a Stage: the shared conditions plus where it is served and by how many dataplanes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// Accepted, ResolvedRefs, Programmed and Ready, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where clients call this stage: one URL per host name (or the gateway's public URL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invoke_urls: Vec<String>,
    /// The snapshot version the controller serves now. A controller that has just started
    /// leading keeps the version shown here until it publishes a change: its first snapshot is
    /// most often the content already served under a new number, which dataplanes serving it
    /// are not sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_version: Option<u64>,
    /// Connected dataplanes that have applied that snapshot version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_dataplanes: Option<u32>,
    /// Connected dataplanes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_dataplanes: Option<u32>,
}

/// A Kubernetes condition from its typed parts.
pub fn condition(
    kind: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: impl Into<String>,
    observed_generation: i64,
    last_transition_time: Time,
) -> Condition {
    Condition {
        type_: kind.as_str().to_string(),
        status: status.as_str().to_string(),
        reason: reason.as_str().to_string(),
        message: message.into(),
        observed_generation: Some(observed_generation),
        last_transition_time,
    }
}
