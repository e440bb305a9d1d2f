//! Authorizers: each checked on its own, then resolved by the routes that name them. A route
//! whose Authorizer is missing or not accepted is not served: serving it without the
//! authorizer would open it to everyone.

use super::conditions::{fail, Failure};
use super::source;
use crate::model::{Kind, Resource};
use std::collections::HashMap;
use tollhouse_api::{AuthorizerSpec, AuthorizerType};
use tollhouse_snapshot::{Authorizer, AuthorizerKind, Jwt, Reason};
use tollhouse_template::IdentitySource;

/// One Authorizer on its way through translate.
pub(super) struct AuthorizerEntry<'a> {
    /// The Authorizer.
    pub resource: &'a Resource<AuthorizerSpec>,
    /// What it becomes in the snapshot, or why it cannot be run.
    pub accepted: Result<Authorizer, Failure>,
    /// What its Ready condition adds (a plain-`http://` key URL is said here).
    pub notes: Vec<String>,
}

/// The Authorizers by their snapshot [`key`].
pub(super) fn check_all(
    authorizers: &[Resource<AuthorizerSpec>],
) -> HashMap<String, AuthorizerEntry<'_>> {
    authorizers
        .iter()
        .map(|a| {
            let mut notes = Vec::new();
            let accepted = check(a, &mut notes);
            (
                key(&a.meta.namespace, &a.meta.name),
                AuthorizerEntry {
                    resource: a,
                    accepted,
                    notes,
                },
            )
        })
        .collect()
}

/// An `http(s)://host…` URL, as a key or issuer location; plain http is noted.
fn url(what: &str, value: &str, notes: &mut Vec<String>) -> Result<(), Failure> {
    let uri: http::Uri = match value.parse() {
        Ok(u) => u,
        Err(e) => {
            return fail(
                Reason::InvalidAuthorizer,
                format!("{what} is not a URL: {e}"),
            )
        }
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("https"), Some(_)) => Ok(()),
        (Some("http"), Some(_)) => {
            notes.push(format!(
                "{what} {value} is plain http: the keys can be changed on the way"
            ));
            Ok(())
        }
        _ => fail(
            Reason::InvalidAuthorizer,
            format!("{what} {value:?} is not an https:// or http:// URL with a host"),
        ),
    }
}

fn check(a: &Resource<AuthorizerSpec>, notes: &mut Vec<String>) -> Result<Authorizer, Failure> {
    let spec = &a.spec;
    for s in &spec.identity_source {
        if let Err(e) = IdentitySource::parse(s) {
            return fail(Reason::InvalidAuthorizer, e.to_string());
        }
    }
    let kind = match spec.kind {
        AuthorizerType::Jwt => {
            let Some(jwt) = &spec.jwt else {
                return fail(Reason::InvalidAuthorizer, "type JWT needs spec.jwt");
            };
            if spec.identity_source.len() > 1 {
                return fail(
                    Reason::InvalidAuthorizer,
                    "a JWT authorizer reads one identity source",
                );
            }
            if jwt.audience.is_empty() || jwt.audience.len() > 50 {
                return fail(
                    Reason::InvalidAuthorizer,
                    "jwt.audience needs 1 to 50 entries (AWS)",
                );
            }
            match &jwt.jwks_uri {
                Some(uri) => url("jwt.jwksUri", uri, notes)?,
                // Discovery fetches from the issuer itself.
                None => url("jwt.issuer", &jwt.issuer, notes)?,
            }
            if jwt.jwks_uri.is_some() && jwt.issuer.trim().is_empty() {
                return fail(Reason::InvalidAuthorizer, "jwt.issuer is empty");
            }
            AuthorizerKind::Jwt(Jwt {
                issuer: jwt.issuer.clone(),
                audience: jwt.audience.clone(),
                jwks_uri: jwt.jwks_uri.clone(),
            })
        }
        other @ (AuthorizerType::Request | AuthorizerType::Token | AuthorizerType::Sigv4) => {
            return fail(
                Reason::InvalidAuthorizer,
                format!(
                    "type {} is not run by this version of Tollhouse yet (JWT is)",
                    other.as_str()
                ),
            )
        }
    };
    Ok(Authorizer {
        source: source(Kind::Authorizer, &a.meta),
        identity_source: spec.identity_source.clone(),
        kind,
    })
}

/// The snapshot key of an Authorizer.
pub(super) fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}
