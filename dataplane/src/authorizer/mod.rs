//! The authorize phase: the route's authorizer decides, before API keys and limits (AWS's
//! order: resource policy, authorizer, API key), and who called reaches the context.
//!
//! JWT authorizers today ([`jwt`]); their issuers' keys ([`jwks`]) are kept by the runtime
//! across pushes, so a push neither refetches nor forgets them.

pub mod crypto;
pub mod jwks;
pub mod jwt;

use crate::error::GatewayError;
use http::{HeaderMap, HeaderName};
use jwks::Jwks;
use jwt::{JwtAuthorizer, JwtFailure};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tollhouse_snapshot::{Authorizer, AuthorizerKind};

/// Who called, as an authorizer established it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `$context.authorizer.principalId` (a JWT's `sub`).
    pub principal_id: Option<String>,
    /// A JWT's claims (`$context.authorizer.claims.*`).
    pub claims: Map<String, Value>,
    /// A JWT's scopes.
    pub scopes: Vec<String>,
}

/// Where an authorizer reads the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A request header (case-insensitive).
    Header(HeaderName),
    /// A query-string parameter (case-sensitive).
    Query(String),
}

impl IdentitySource {
    /// Parses with the grammar the controller checked it with.
    pub fn parse(s: &str) -> Result<Self, String> {
        match tollhouse_template::IdentitySource::parse(s).map_err(|e| e.to_string())? {
            tollhouse_template::IdentitySource::Header(name) => {
                HeaderName::from_bytes(name.as_bytes())
                    .map(IdentitySource::Header)
                    .map_err(|_| format!("identity source {s:?} is not a header name"))
            }
            tollhouse_template::IdentitySource::Query(name) => Ok(IdentitySource::Query(name)),
        }
    }

    /// The value in this request, when present and not empty.
    pub fn value(&self, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
        let v = match self {
            IdentitySource::Header(name) => headers.get(name)?.to_str().ok()?.to_string(),
            IdentitySource::Query(name) => query?
                .split('&')
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let k = percent_encoding::percent_decode_str(k).decode_utf8().ok()?;
                    (k == name.as_str()).then(|| {
                        percent_encoding::percent_decode_str(&v.replace('+', " "))
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                })
                .next()?,
        };
        (!v.trim().is_empty()).then_some(v)
    }
}

/// An authorizer of the snapshot, compiled.
pub struct CompiledAuthorizer {
    /// `namespace/name`.
    pub label: String,
    identity: IdentitySource,
    check: Check,
}

enum Check {
    Jwt(JwtAuthorizer),
}

/// How a compile finds an issuer's retained keys: `(issuer, jwksUri)` to the one [`Jwks`].
pub type KeysFor<'a> = dyn FnMut(&str, Option<&str>) -> Arc<Jwks> + 'a;

impl CompiledAuthorizer {
    /// Compiles a snapshot authorizer; `keys` hands out the runtime's key set for an issuer.
    pub fn compile(a: &Authorizer, keys: &mut KeysFor<'_>) -> Result<Self, String> {
        let identity = match a.identity_source.as_slice() {
            [] => IdentitySource::Header(http::header::AUTHORIZATION),
            [one] => IdentitySource::parse(one)?,
            _ => return Err("a JWT authorizer reads one identity source".to_string()),
        };
        let check = match &a.kind {
            AuthorizerKind::Jwt(j) => {
                let jwks = keys(&j.issuer, j.jwks_uri.as_deref());
                Check::Jwt(JwtAuthorizer::new(&j.issuer, &j.audience, jwks))
            }
        };
        Ok(CompiledAuthorizer {
            label: a.source.key(),
            identity,
            check,
        })
    }

    /// Decides on a request: its caller's identity, or the error to answer.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        scopes: &[String],
        now: Instant,
        wall: SystemTime,
    ) -> Result<Identity, GatewayError> {
        let value = self.identity.value(headers, query);
        match &self.check {
            Check::Jwt(j) => {
                let Some(value) = value else {
                    return Err(GatewayError::Unauthorized(Some(JwtFailure::Missing)));
                };
                j.authorize(&value, scopes, now, wall)
                    .await
                    .map_err(|f| GatewayError::Unauthorized(Some(f)))
            }
        }
    }
}

/// A route's authorization, compiled.
pub struct RouteAuth {
    /// The authorizer.
    pub authorizer: Arc<CompiledAuthorizer>,
    /// JWT: the scopes of which a token needs one.
    pub scopes: Vec<String>,
}

/// The default least time between two JWKS fetches for an unknown `kid`, in milliseconds
/// (`--jwks-refetch-interval-ms`).
pub const DEFAULT_REFETCH_AFTER_MS: u64 = 10_000;
/// [`DEFAULT_REFETCH_AFTER_MS`] as a duration.
pub const DEFAULT_REFETCH_AFTER: Duration = Duration::from_millis(DEFAULT_REFETCH_AFTER_MS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sources_in_both_syntaxes() {
        assert_eq!(
            IdentitySource::parse("$request.header.Authorization"),
            Ok(IdentitySource::Header(http::header::AUTHORIZATION))
        );
        assert_eq!(
            IdentitySource::parse("method.request.querystring.token"),
            Ok(IdentitySource::Query("token".into()))
        );
        assert!(IdentitySource::parse("$context.routeKey").is_err());
        assert!(IdentitySource::parse("$request.header.bad name").is_err());
        let q = IdentitySource::Query("token".into());
        assert_eq!(
            q.value(&HeaderMap::new(), Some("a=1&token=x%2By&b")),
            Some("x+y".into())
        );
        assert_eq!(q.value(&HeaderMap::new(), Some("token=")), None);
    }
}
