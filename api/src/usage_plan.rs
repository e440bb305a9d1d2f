//! The UsagePlan kind: API keys grouped under per-key throttles and quotas (AWS `UsagePlan`,
//! `QuotaSettings`; reference §2).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::Throttle;

/// A usage plan: which Stages it covers, the rate, burst and quota each subscribed API key is
/// held to, and which api-key Secrets (type `tollhouse.dev/api-key`) subscribe.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollhouse.dev",
    version = "v1alpha1",
    kind = "UsagePlan",
    namespaced,
    status = "UsagePlanStatus",
    shortname = "up",
    category = "tollhouse",
    printcolumn = r#"{"name":"Stages","type":"string","jsonPath":".status.stages"}"#,
    printcolumn = r#"{"name":"Keys","type":"integer","jsonPath":".status.keys"}"#,
    printcolumn = r#"{"name":"Rate","type":"number","jsonPath":".spec.throttle.rateLimit"}"#,
    printcolumn = r#"{"name":"Quota","type":"integer","jsonPath":".spec.quota.limit"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct UsagePlanSpec {
    /// Stages in this namespace the plan covers, each at most once. On routes with
    /// `apiKeyRequired`, a key is accepted on a Stage only through a plan that names it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_stages: Vec<ApiStage>,
    /// Per key, across all of the plan's stages (AWS `UsagePlan.throttle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Requests per key in a calendar period (AWS `UsagePlan.quota`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Which api-key Secrets in this namespace subscribe. None: no key subscribes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_selector: Option<LabelSelector>,
}

/// A Stage a usage plan covers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiStage {
    /// Name of a Stage in the plan's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub stage: String,
    /// Per-route limits for each key of this plan on this Stage, keyed by route key
    /// (`"GET /pets/{petId}"`, `"ANY /files/{proxy+}"`; AWS `apiStages[].throttle`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub throttle: BTreeMap<String, Throttle>,
}

/// A quota (AWS `QuotaSettings`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Requests per key in one period.
    pub limit: u64,
    /// DAY, WEEK (from Monday) or MONTH, UTC calendar periods.
    pub period: QuotaPeriod,
    /// Requests subtracted from the limit in the initial period (AWS).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The period of a quota.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuotaPeriod {
    /// A UTC day.
    Day,
    /// A UTC week, Monday to Sunday.
    Week,
    /// A UTC calendar month.
    Month,
}

/// Where a Stage reads a request's API key (AWS `apiKeySource`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiKeySource {
    /// The `x-api-key` header.
    #[default]
    Header,
    /// The `usageIdentifierKey` a function authorizer returns.
    Authorizer,
}

/// Status of a UsagePlan: conditions, the Stages it covers, and how many keys subscribe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsagePlanStatus {
    /// Accepted, ResolvedRefs, Programmed and Ready, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Stages the plan serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    /// Subscribed, enabled keys with a well-formed value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<u32>,
}
