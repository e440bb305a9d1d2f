//! The Stage kind: one deployment environment of an API.

use crate::{ApiKeySource, LocalObjectRef, StageStatus, Throttle};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One deployment environment of an API, with its own invoke URL.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollhouse.dev",
    version = "v1alpha1",
    kind = "Stage",
    namespaced,
    status = "StageStatus",
    shortname = "stg",
    category = "tollhouse",
    printcolumn = r#"{"name":"API","type":"string","jsonPath":".spec.api"}"#,
    printcolumn = r#"{"name":"Base Path","type":"string","jsonPath":".spec.basePath"}"#,
    printcolumn = r#"{"name":"Hostnames","type":"string","jsonPath":".spec.hostnames"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StageSpec {
    /// Name of the API this stage deploys: the ApiRoutes with this `api` in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub api: String,
    /// Host names (custom domains) this stage answers on. Empty: any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Path prefix under which the routes are served, e.g. `/prod`. Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
    /// Stage variables: names `[A-Za-z0-9_]+` (at most 64), values at most 512 characters of
    /// `[A-Za-z0-9-._~:/?#&=,]`, at most 100 (AWS limits). Used as `${stageVariables.name}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// TLS for this stage's host names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<StageTls>,
    /// Which of Amazon API Gateway's two flavours this Stage's clients see; see [`ApiType`]
    /// (whose text is what `kubectl explain` shows for this field). Default `HTTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_type: Option<ApiType>,
    /// An access log: one line per request, written to the dataplane's standard output or its
    /// `--access-log` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Limits shared by every client of this Stage (AWS's stage-default throttling): checked
    /// after the route's, before the gateway's account-wide limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Where routes with `apiKeyRequired` read the API key: `HEADER` (the `x-api-key` header,
    /// the default) or `AUTHORIZER` (the `usageIdentifierKey` a function authorizer returns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_source: Option<ApiKeySource>,
    /// Who may call, by address and route (AWS's resource policy, checked before any
    /// authorizer): an explicit Deny wins; with a policy, a request no Allow covers is denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<ResourcePolicySpec>,
}

/// A Stage's resource policy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourcePolicySpec {
    /// The statements (at most 100).
    #[schemars(length(max = 100))]
    pub statements: Vec<PolicyStatementSpec>,
}

/// One statement: it covers a request from one of `sourceIps` (any address without them) for
/// one of `routes` (any route without them).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatementSpec {
    /// Allow or Deny.
    pub effect: PolicyEffect,
    /// CIDR blocks or addresses, IPv4 or IPv6 (`aws:SourceIp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// `METHOD /path` patterns below the Stage, `*` a wildcard and `ANY` any method
    /// (`execute-api:/stage/METHOD/path`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
}

/// A statement's effect.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PolicyEffect {
    /// Covered requests may call (if no Deny covers them).
    Allow,
    /// Covered requests are refused.
    Deny,
}

/// Which of Amazon API Gateway's two flavours the Stage's clients see: `HTTP` (an HTTP API, the
/// default) or `REST` (a REST API). It changes the gateway's own answers (an unknown route is
/// 404 `Not Found` or 403 `Missing Authentication Token`; error bodies and `x-amzn-ErrorType`),
/// the request-id headers (`apigw-requestid`, or `x-amzn-RequestId` and `x-amz-apigw-id`) and
/// the headers added towards the backend and remapped on the way back; docs/compatibility.md
/// has the table. Every Stage of one API must agree: a younger Stage that disagrees is not
/// served (Accepted=False, reason Conflict).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ApiType {
    /// An HTTP API (apigatewayv2): 404 `{"message":"Not Found"}`, `apigw-requestid`.
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// A REST API (apigateway v1): 403 `Missing Authentication Token`, `x-amzn-RequestId`.
    #[serde(rename = "REST")]
    Rest,
}

/// A Stage's access log (AWS `accessLogSettings`, without a destination).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// One line of text with AWS `$context` variables (`$context.requestId`,
    /// `$context.status`, …), at most 3 KB, containing `$context.requestId` or
    /// `$context.extendedRequestId`; AWS's CLF, JSON, XML and CSV examples work as written. A
    /// format AWS would refuse makes the Stage Accepted=False, reason InvalidAccessLogFormat.
    #[schemars(length(min = 1, max = 3072))]
    pub format: String,
}

/// TLS settings of a stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageTls {
    /// A `kubernetes.io/tls` Secret (keys `tls.crt`, `tls.key`) in the stage's namespace.
    pub certificate_ref: LocalObjectRef,
}
