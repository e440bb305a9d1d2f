//! The JWT authorizer (reference §6): signature against the issuer's keys, `kid`, `iss`, `aud`
//! or `client_id`, `exp`, `nbf`, `iat`, and the route's scopes from `scope` or `scp`.
//!
//! jsonwebtoken checks the signature and the algorithm against the key's family; the claims are
//! checked here, against the runtime's clock (so expiry tests need no sleeping) and with no
//! leeway: AWS documents none.

use super::jwks::{Jwks, Missing};
use super::Identity;
use jsonwebtoken::{decode, decode_header, Validation};
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Why a token was refused: each is a 401 with its own `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFailure {
    /// No token in the identity source.
    Missing,
    /// Not three base64url parts of JSON, or no `kid`.
    Malformed,
    /// An algorithm the authorizer does not accept (HS*, `none`) or the key does not allow.
    Algorithm,
    /// No key of the issuer has the token's `kid`.
    UnknownKid,
    /// The issuer's keys could not be fetched, and none were fetched before.
    KeysUnavailable,
    /// The signature does not verify.
    Signature,
    /// `iss` is not the issuer.
    Issuer,
    /// Neither `aud` nor `client_id` is one of the audiences.
    Audience,
    /// No `exp`, or `exp` is not after now.
    Expired,
    /// `nbf` is after now.
    NotYetValid,
    /// `iat` is after now.
    IssuedInFuture,
    /// The token has none of the route's scopes.
    Scope,
}

impl JwtFailure {
    /// The `error_description` of the `www-authenticate` header. AWS documents "the token does
    /// not have a valid audience"; the others are ours in its style (docs/compatibility.md).
    pub fn description(self) -> &'static str {
        match self {
            JwtFailure::Missing => "",
            JwtFailure::Malformed => "the token is malformed",
            JwtFailure::Algorithm => "the token's signing algorithm is not accepted",
            JwtFailure::UnknownKid => "the token's key id is not one of the issuer's keys",
            JwtFailure::KeysUnavailable => "the issuer's keys could not be fetched",
            JwtFailure::Signature => "the token's signature is invalid",
            JwtFailure::Issuer => "the token does not have a valid issuer",
            JwtFailure::Audience => "the token does not have a valid audience",
            JwtFailure::Expired => "the token has expired",
            JwtFailure::NotYetValid => "the token is not valid yet",
            JwtFailure::IssuedInFuture => "the token was issued in the future",
            JwtFailure::Scope => "the token does not have the required scope",
        }
    }

    /// A fixed label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            JwtFailure::Missing => "missing",
            JwtFailure::Malformed => "malformed",
            JwtFailure::Algorithm => "algorithm",
            JwtFailure::UnknownKid => "unknown_kid",
            JwtFailure::KeysUnavailable => "keys_unavailable",
            JwtFailure::Signature => "signature",
            JwtFailure::Issuer => "issuer",
            JwtFailure::Audience => "audience",
            JwtFailure::Expired => "expired",
            JwtFailure::NotYetValid => "not_yet_valid",
            JwtFailure::IssuedInFuture => "issued_in_future",
            JwtFailure::Scope => "scope",
        }
    }
}

/// A JWT authorizer ready to check tokens.
pub struct JwtAuthorizer {
    issuer: String,
    audience: Vec<String>,
    keys: Arc<Jwks>,
}

impl JwtAuthorizer {
    /// An authorizer for `issuer` and `audience` over the issuer's (retained) keys.
    pub fn new(issuer: &str, audience: &[String], keys: Arc<Jwks>) -> Self {
        super::crypto::install();
        JwtAuthorizer {
            issuer: issuer.to_string(),
            audience: audience.to_vec(),
            keys,
        }
    }

    /// Checks the identity-source value (`Bearer <jwt>` or a bare JWT) at `now` (monotonic,
    /// for the key cache) and `wall` (for the claims); the caller's identity when it passes.
    pub async fn authorize(
        &self,
        value: &str,
        scopes: &[String],
        now: Instant,
        wall: SystemTime,
    ) -> Result<Identity, JwtFailure> {
        let token = strip_bearer(value);
        if token.is_empty() {
            return Err(JwtFailure::Missing);
        }
        let header = decode_header(token).map_err(|_| JwtFailure::Malformed)?;
        if !super::crypto::ALGORITHMS.contains(&header.alg) {
            return Err(JwtFailure::Algorithm);
        }
        let kid = header.kid.as_deref().ok_or(JwtFailure::Malformed)?;
        let key = self.keys.key(kid, now).await.map_err(|m| match m {
            Missing::UnknownKid => JwtFailure::UnknownKid,
            Missing::Unavailable => JwtFailure::KeysUnavailable,
        })?;
        if !key.algorithms.contains(&header.alg) {
            return Err(JwtFailure::Algorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = decode::<Map<String, Value>>(token, &key.key, &validation).map_err(|e| {
            if super::crypto::is_bad_signature(&e) {
                JwtFailure::Signature
            } else {
                JwtFailure::Malformed
            }
        })?;
        let claims = data.claims;
        self.check(&claims, scopes, wall)?;
        Ok(Identity {
            principal_id: claims
                .get("sub")
                .and_then(Value::as_str)
                .map(str::to_string),
            scopes: token_scopes(&claims),
            claims,
            ..Identity::default()
        })
    }

    fn check(
        &self,
        claims: &Map<String, Value>,
        scopes: &[String],
        wall: SystemTime,
    ) -> Result<(), JwtFailure> {
        let now = wall
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(JwtFailure::Issuer);
        }
        if !self.audience.is_empty() {
            let wanted = |s: &str| self.audience.iter().any(|a| a == s);
            let aud = match claims.get("aud") {
                Some(Value::String(s)) => wanted(s),
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).any(wanted),
                _ => false,
            };
            let client_id = claims
                .get("client_id")
                .and_then(Value::as_str)
                .is_some_and(wanted);
            if !aud && !client_id {
                return Err(JwtFailure::Audience);
            }
        }
        match claims.get("exp").and_then(Value::as_f64) {
            Some(exp) if exp > now => {}
            _ => return Err(JwtFailure::Expired),
        }
        let time = |name: &str| claims.get(name).map(Value::as_f64);
        match time("nbf") {
            None => {}
            Some(Some(nbf)) if nbf <= now => {}
            Some(_) => return Err(JwtFailure::NotYetValid),
        }
        match time("iat") {
            None => {}
            Some(Some(iat)) if iat <= now => {}
            Some(_) => return Err(JwtFailure::IssuedInFuture),
        }
        if !scopes.is_empty() {
            let held = token_scopes(claims);
            if !scopes.iter().any(|s| held.contains(s)) {
                return Err(JwtFailure::Scope);
            }
        }
        Ok(())
    }
}

/// The token of a `Bearer` credential, or the value itself when bare (AWS takes both).
fn strip_bearer(value: &str) -> &str {
    let v = value.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].trim_start(),
        _ => v,
    }
}

/// The token's scopes: `scope` (space-separated) or `scp` (a list, or space-separated).
fn token_scopes(claims: &Map<String, Value>) -> Vec<String> {
    let split = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => split(s),
        (_, Some(Value::String(s))) => split(s),
        (_, Some(Value::Array(a))) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_optional_and_case_insensitive() {
        assert_eq!(strip_bearer("Bearer abc"), "abc");
        assert_eq!(strip_bearer("bearer  abc"), "abc");
        assert_eq!(strip_bearer("abc"), "abc");
        assert_eq!(strip_bearer("Bearer"), "Bearer");
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            token_scopes(&m(serde_json::json!({"scope": "a b"}))),
            ["a", "b"]
        );
        assert_eq!(
            token_scopes(&m(serde_json::json!({"scp": ["a", "c"]}))),
            ["a", "c"]
        );
        assert!(token_scopes(&m(serde_json::json!({}))).is_empty());
    }
}
