//! A Stage: one deployment environment of an API.

use crate::{ApiKeySource, Route, SourceRef, Throttle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One deployment environment of an API, with the routes it serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// The Stage object.
    pub source: SourceRef,
    /// API name (routes of this API in the Stage's namespace are its routes).
    pub api: String,
    /// Lower-case host names this stage answers on; empty means any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Normalised base path: `/` or `/a/b` (no trailing slash).
    pub base_path: String,
    /// Stage variables, usable as `${stageVariables.name}` in integration URIs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Key into [`Snapshot::certificates`] of the certificate served for this stage's hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Routes, sorted by path then by source.
    pub routes: Vec<Route>,
    /// Which of AWS's flavours the Stage's clients see.
    #[serde(default, skip_serializing_if = "ApiType::is_http")]
    pub api_type: ApiType,
    /// The Stage's access log, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// The limit shared by every client of the Stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Where routes with `apiKeyRequired` read the API key.
    #[serde(default, skip_serializing_if = "ApiKeySource::is_header")]
    pub api_key_source: ApiKeySource,
    /// Who may call, by address and route; `None`: anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<ResourcePolicy>,
}

/// A Stage's resource policy, as the controller checked it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourcePolicy {
    /// The statements, in order.
    pub statements: Vec<PolicyStatement>,
}

/// One statement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatement {
    /// Allow (else Deny).
    pub allow: bool,
    /// CIDR blocks; empty: any address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// `METHOD /path` patterns; empty: any route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// AWS's two HTTP flavours (`Stage.spec.apiType`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiType {
    /// An HTTP API (the default).
    #[default]
    Http,
    /// A REST API.
    Rest,
}

impl ApiType {
    /// Whether this is the default, HTTP.
    pub fn is_http(&self) -> bool {
        *self == ApiType::Http
    }
}

/// A Stage's access log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// The format: AWS `$context.*` variables in text, already checked by the controller.
    pub format: String,
}
