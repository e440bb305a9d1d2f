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
    /// JWT, REQUEST, TOKEN or SIGV4. This version runs JWT.
    #[serde(rename = "type")]
    pub kind: AuthorizerType,
    /// Where the credentials are, in AWS's HTTP-API syntax (`$request.header.Authorization`,
    /// `$request.querystring.token`) or REST's (`method.request.header.Authorization`).
    /// JWT: one source, default `$request.header.Authorization`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_source: Vec<String>,
    /// Type JWT: the issuer and audiences tokens are checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
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
