//! Usage plans, API keys, and the throttle and quota settings Stages and routes share with them.

use crate::{SourceRef, Throttle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Requests per key in a calendar period.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Requests per period.
    pub limit: u64,
    /// The period.
    pub period: QuotaPeriod,
    /// Requests subtracted from the limit in the first period.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// UTC calendar periods of a quota.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuotaPeriod {
    /// A day.
    Day,
    /// A week from Monday.
    Week,
    /// A calendar month.
    Month,
}

/// Where a Stage reads the API key.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiKeySource {
    /// The `x-api-key` header.
    #[default]
    Header,
    /// What an authorizer returns as `usageIdentifierKey`.
    Authorizer,
}

impl ApiKeySource {
    /// Whether this is the default, HEADER.
    pub fn is_header(&self) -> bool {
        *self == ApiKeySource::Header
    }
}

/// A usage plan as the dataplane enforces it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsagePlan {
    /// The UsagePlan object.
    pub source: SourceRef,
    /// The Stages it covers, sorted by Stage.
    pub stages: Vec<PlanStage>,
    /// Per key, across the plan's Stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

impl UsagePlan {
    /// `namespace/name`, how keys name the plan.
    pub fn key(&self) -> String {
        self.source.key()
    }
}

/// A Stage of a usage plan.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanStage {
    /// The Stage, as `namespace/name`.
    pub stage: String,
    /// Per-route limits for each key, by route key (`GET /pets/{petId}`, `ANY /files/{proxy+}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub route_throttles: BTreeMap<String, Throttle>,
}

/// An API key: never its value, only the value's SHA-256. Kept lean (no source reference: a
/// Secret has no status to track), since a gateway may hold 100,000 of them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// `$context.identity.apiKeyId`: the Secret's `namespace/name`.
    pub id: String,
    /// SHA-256 of the key's value, lower-case hex.
    pub sha256: String,
    /// The plans it is in (`namespace/name`), at most one per Stage, sorted.
    pub plans: Vec<String>,
}
