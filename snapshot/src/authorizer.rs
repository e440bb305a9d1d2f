//! Authorizers and a route's use of one.

use crate::SourceRef;
use serde::{Deserialize, Serialize};

/// An Authorizer object, as the dataplanes run it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Authorizer {
    /// The Authorizer object.
    pub source: SourceRef,
    /// Where the credentials are read, in AWS's HTTP-API syntax (`$request.header.Authorization`,
    /// `$request.querystring.token`), normalised from REST's `method.request.header.X` too.
    pub identity_source: Vec<String>,
    /// What decides.
    #[serde(flatten)]
    pub kind: AuthorizerKind,
}

/// What an authorizer checks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorizerKind {
    /// A JWT, against an issuer's keys (reference §6).
    Jwt(Jwt),
}

/// A JWT authorizer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Jwt {
    /// The `iss` a token must carry, exactly.
    pub issuer: String,
    /// `aud` or `client_id` must be one of these.
    pub audience: Vec<String>,
    /// Where the keys are; without it, the issuer's OIDC discovery document names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

/// A route's authorization: the authorizer it needs and, for JWT, the scopes of which a token
/// must hold at least one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RouteAuthorization {
    /// Key into [`crate::Snapshot::authorizers`] (`namespace/name`).
    pub authorizer: String,
    /// Scopes; empty means any valid token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}
