//! The Authorizer kind: who may call a route (AWS `Authorizer`; reference §5–§7).

use crate::ResourceStatus;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An authorizer routes refer to by name (`ApiRoute.spec.authorization.authorizerRef`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollhouse.dev",
    version = "v1alpha1",
    kind = "Authorizer",
    namespaced,
    status = "ResourceStatus",
    shortname = "authz",
    category = "tollhouse",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Issuer","type":"string","jsonPath":".spec.jwt.issuer"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerSpec {
    /// JWT, REQUEST, TOKEN or SIGV4.
    #[serde(rename = "type")]
    pub kind: AuthorizerType,
    /// Where the credentials are, in AWS's HTTP-API syntax (`$request.header.Authorization`,
    /// `$request.querystring.token`) or REST's (`method.request.header.Authorization`).
    /// JWT and TOKEN: one header, default `$request.header.Authorization`. REQUEST: any of
    /// headers, query parameters, `$stageVariables.X` and `$context.X`; the function's results
    /// are cached on their values, and a request missing one is refused without a call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_source: Vec<String>,
    /// Type JWT: the issuer and audiences tokens are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
    /// Types REQUEST and TOKEN: the HTTP function that decides (AWS's Lambda authorizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionSpec>,
    /// Type SIGV4: requests signed with AWS Signature Version 4 by the holders of access keys
    /// (AWS's `AWS_IAM` authorization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<Sigv4Spec>,
}

/// A SigV4 authorizer's scope and credentials.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Sigv4Spec {
    /// The region signatures must be scoped to (`us-east-1`).
    #[schemars(length(min = 1, max = 64))]
    pub region: String,
    /// The service signatures must be scoped to; default `execute-api`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Which Secrets of type `tollhouse.dev/sigv4-credentials` in this namespace hold the
    /// access keys (`accessKeyId`, `secretAccessKey`, optional `sessionToken` and `principal`).
    pub credential_selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
}

/// A function authorizer's endpoint and how its answers are read (AWS's Lambda authorizer).
///
/// The function gets AWS's authorizer event as a JSON `POST`, as AWS Lambda's Invoke API
/// does, so a Lambda container with the runtime interface emulator works unchanged.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// The function's URL, `http://` or `https://`. Exactly one of `uri` and `backendRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// A Service in the Authorizer's namespace that serves the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<crate::BackendRef>,
    /// With `backendRef`: the path called. Default the Invoke API's,
    /// `/2015-03-31/functions/function/invocations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The event format on HTTP API Stages: "1.0" or "2.0" (default). REST Stages send REST's
    /// REQUEST event; TOKEN authorizers send the TOKEN event everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format_version: Option<PayloadFormatVersion>,
    /// "2.0" only: the function answers `{"isAuthorized": bool, "context": {...}}` instead of an
    /// IAM policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_simple_responses: Option<bool>,
    /// How long an answer is reused for the same identity-source values, 0 to 3600 seconds;
    /// default 300, 0 calls the function on every request (AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub result_ttl_in_seconds: Option<u32>,
    /// How long to wait for the function, 50 to 30000 ms; default 10000 (AWS's authorizer
    /// limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 50, max = 30000))]
    pub timeout_in_millis: Option<u32>,
    /// TOKEN only: a regular expression the token must match, else 401 without a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_validation_expression: Option<String>,
}

/// A function authorizer's event format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PayloadFormatVersion {
    /// AWS's 1.0 format: REST's REQUEST event with `identitySource` and `authorizationToken`.
    #[serde(rename = "1.0")]
    V1,
    /// AWS's 2.0 format.
    #[serde(rename = "2.0")]
    V2,
}

/// Authorizer types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthorizerType {
    /// A JWT signed by an issuer's keys (AWS HTTP API's JWT authorizer).
    Jwt,
    /// An HTTP function that gets AWS's REQUEST authorizer event.
    Request,
    /// An HTTP function that gets AWS's TOKEN authorizer event.
    Token,
    /// AWS SigV4-signed requests (AWS_IAM).
    Sigv4,
}

impl AuthorizerType {
    /// As written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizerType::Jwt => "JWT",
            AuthorizerType::Request => "REQUEST",
            AuthorizerType::Token => "TOKEN",
            AuthorizerType::Sigv4 => "SIGV4",
        }
    }
}

/// A JWT authorizer's issuer (AWS `JwtConfiguration`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// The `iss` tokens must carry, exactly; an `https://` (or `http://`) URL. Without
    /// `jwksUri`, its OIDC discovery document (`{issuer}/.well-known/openid-configuration`)
    /// names the keys.
    #[schemars(length(min = 1, max = 2048))]
    pub issuer: String,
    /// A token's `aud` or `client_id` must be one of these (at most 50, AWS).
    #[schemars(length(min = 1, max = 50))]
    pub audience: Vec<String>,
    /// Where the issuer's keys are, skipping discovery. Plain `http://` is accepted (in-cluster
    /// issuers often are) and noted in the Authorizer's condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

/// A route's authorization (`ApiRoute.spec.authorization`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Authorization {
    /// The Authorizer, in the route's namespace.
    pub authorizer_ref: crate::LocalObjectRef,
    /// JWT: a token must hold at least one of these scopes (`scope` or `scp`; at most 10, AWS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub scopes: Vec<String>,
}
