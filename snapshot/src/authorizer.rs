//! Authorizers and a route's use of one.

use crate::{Sensitive, SourceRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// A function given AWS's REQUEST event (reference §5).
    Request(Function),
    /// A function given AWS's TOKEN event: one header's value (reference §5).
    Token(Function),
    /// AWS Signature Version 4 with access keys from Secrets (reference §7).
    Sigv4(Sigv4),
}

/// A SigV4 authorizer: the scope signatures must carry and the keys they are checked with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Sigv4 {
    /// The credential scope's region.
    pub region: String,
    /// The credential scope's service.
    pub service: String,
    /// The access keys, sorted by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Sigv4Credential>,
}

/// One access key, as the dataplane checks it: never the secret access key itself, only the
/// signing keys derived from it for a few days (`HMAC` chain of AWS's SigV4 down to
/// `aws4_request`), so a snapshot that leaks gives no more than signing for those days.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Sigv4Credential {
    /// The Secret it came from.
    pub source: SourceRef,
    /// The access key id.
    pub access_key_id: String,
    /// What `$context.identity.caller` and `userArn` show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// With temporary credentials: SHA-256 (hex) of the session token requests must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token_sha256: Option<String>,
    /// Signing keys (hex) by UTC day (`yyyymmdd`).
    pub signing_keys: BTreeMap<String, Sensitive>,
}

/// A function authorizer (AWS's Lambda authorizer, reference §5).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Function {
    /// Where the event is POSTed.
    pub target: FunctionTarget,
    /// The event format on HTTP API Stages (REST Stages always get REST's).
    pub format: EventFormat,
    /// 2.0: the reply is `{"isAuthorized", "context"}`, not an IAM policy.
    #[serde(default, skip_serializing_if = "is_false")]
    pub simple_responses: bool,
    /// How long a reply is reused for the same identity-source values; 0: never.
    pub ttl_seconds: u32,
    /// How long to wait for the function.
    pub timeout_ms: u32,
    /// TOKEN: the regular expression a token must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a function authorizer is called.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FunctionTarget {
    /// An absolute `http(s)://` URL.
    Uri(String),
    /// A Service's endpoints (key into [`crate::Snapshot::backends`]) and the path called.
    Backend {
        /// The backend key.
        backend: String,
        /// The path, from `/`.
        path: String,
    },
}

/// A function authorizer's event format on HTTP API Stages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFormat {
    /// 1.0.
    #[serde(rename = "1.0")]
    V1,
    /// 2.0.
    #[serde(rename = "2.0")]
    V2,
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
