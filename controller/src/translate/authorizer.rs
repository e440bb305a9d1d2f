//! Authorizers: each checked on its own, then resolved by the routes that name them. A route
//! whose Authorizer is missing or not accepted is not served: serving it without the
//! authorizer would open it to everyone.

use super::backend::Services;
use super::conditions::{fail, Failure};
use super::conflict::{by_age, holder};
use super::source;
use crate::model::{Kind, Resource, SecretData};
use kube::core::{Selector, SelectorExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tollhouse_api::{AuthorizerSpec, AuthorizerType, FunctionSpec, PayloadFormatVersion};
use tollhouse_snapshot::{
    date, Authorizer, AuthorizerKind, Backend, EventFormat, Function, FunctionTarget, Jwt, Reason,
    Sensitive, Sigv4, Sigv4Credential,
};
use tollhouse_template::IdentitySource;

/// The Invoke API's path: where a Lambda container with the runtime interface emulator answers.
pub(super) const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";

/// One Authorizer on its way through translate.
pub(super) struct AuthorizerEntry<'a> {
    /// The Authorizer.
    pub resource: &'a Resource<AuthorizerSpec>,
    /// What it becomes in the snapshot, or why it cannot be run.
    pub accepted: Result<Authorizer, Failure>,
    /// What its Ready condition adds (a plain-`http://` key URL is said here).
    pub notes: Vec<String>,
    /// A function's Service: its backend key, the backend, and whether it resolved.
    pub backend: Option<(String, Backend, Result<(), Failure>)>,
}

/// The Authorizers by their snapshot [`key`].
pub(super) fn check_all<'a>(
    authorizers: &'a [Resource<AuthorizerSpec>],
    services: &Services<'_>,
    secrets: &[Resource<Arc<SecretData>>],
    today: i64,
) -> HashMap<String, AuthorizerEntry<'a>> {
    authorizers
        .iter()
        .map(|a| {
            let mut notes = Vec::new();
            let mut backend = None;
            let accepted = check(a, &mut notes).map(|mut authorizer| {
                if let (AuthorizerKind::Sigv4(s), Some(spec)) =
                    (&mut authorizer.kind, a.spec.sigv4.as_ref())
                {
                    // check() parsed it already.
                    if let Ok(selector) = Selector::try_from(spec.credential_selector.clone()) {
                        s.credentials = credentials(a, &selector, s, secrets, today, &mut notes);
                    }
                }
                if let AuthorizerKind::Request(f) | AuthorizerKind::Token(f) = &mut authorizer.kind
                {
                    if let Some(backend_ref) = a
                        .spec
                        .function
                        .as_ref()
                        .and_then(|f| f.backend_ref.as_ref())
                    {
                        let (key, b, resolved) = services.resolve(&a.meta.namespace, backend_ref);
                        if let FunctionTarget::Backend { backend, .. } = &mut f.target {
                            backend.clone_from(&key);
                        }
                        backend = Some((key, b, resolved));
                    }
                }
                authorizer
            });
            (
                key(&a.meta.namespace, &a.meta.name),
                AuthorizerEntry {
                    resource: a,
                    accepted,
                    notes,
                    backend,
                },
            )
        })
        .collect()
}

/// An `http(s)://host…` URL; plain http is noted with what it `risks`.
fn url(what: &str, value: &str, notes: &mut Vec<String>, risks: &str) -> Result<(), Failure> {
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
            notes.push(format!("{what} {value} is plain http: {risks}"));
            Ok(())
        }
        _ => fail(
            Reason::InvalidAuthorizer,
            format!("{what} {value:?} is not an https:// or http:// URL with a host"),
        ),
    }
}

const KEYS_RISK: &str = "the keys can be changed on the way";

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
            let header_or_query = spec.identity_source.iter().all(|s| {
                matches!(
                    IdentitySource::parse(s),
                    Ok(IdentitySource::Header(_) | IdentitySource::Query(_))
                )
            });
            if spec.identity_source.len() > 1 || !header_or_query {
                return fail(
                    Reason::InvalidAuthorizer,
                    "a JWT authorizer reads one header or query parameter",
                );
            }
            if jwt.audience.is_empty() || jwt.audience.len() > 50 {
                return fail(
                    Reason::InvalidAuthorizer,
                    "jwt.audience needs 1 to 50 entries (AWS)",
                );
            }
            match &jwt.jwks_uri {
                Some(uri) => url("jwt.jwksUri", uri, notes, KEYS_RISK)?,
                // Discovery fetches from the issuer itself.
                None => url("jwt.issuer", &jwt.issuer, notes, KEYS_RISK)?,
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
        AuthorizerType::Request | AuthorizerType::Token => {
            let Some(function) = &spec.function else {
                return fail(
                    Reason::InvalidAuthorizer,
                    format!("type {} needs spec.function", spec.kind.as_str()),
                );
            };
            let f = self::function(spec.kind, &spec.identity_source, function, notes)?;
            match spec.kind {
                AuthorizerType::Token => AuthorizerKind::Token(f),
                _ => AuthorizerKind::Request(f),
            }
        }
        AuthorizerType::Sigv4 => {
            let Some(sv) = &spec.sigv4 else {
                return fail(Reason::InvalidAuthorizer, "type SIGV4 needs spec.sigv4");
            };
            if !spec.identity_source.is_empty() {
                return fail(
                    Reason::InvalidAuthorizer,
                    "a SIGV4 authorizer reads the Authorization header: identitySource is not used",
                );
            }
            let service = sv.service.clone().unwrap_or_else(|| "execute-api".into());
            let scoped = |s: &str| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if !scoped(&sv.region) || !scoped(&service) {
                return fail(
                    Reason::InvalidAuthorizer,
                    "sigv4.region and sigv4.service are letters, digits and '-'",
                );
            }
            if let Err(e) = Selector::try_from(sv.credential_selector.clone()) {
                return fail(
                    Reason::InvalidAuthorizer,
                    format!("sigv4.credentialSelector: {e}"),
                );
            }
            AuthorizerKind::Sigv4(Sigv4 {
                region: sv.region.clone(),
                service,
                credentials: Vec::new(),
            })
        }
    };
    Ok(Authorizer {
        source: source(Kind::Authorizer, &a.meta),
        identity_source: spec.identity_source.clone(),
        kind,
    })
}

/// Days before and after today a signing key is sent for: yesterday covers clients whose
/// clock is behind at midnight, the days ahead keep signatures working for a week while the
/// controller is away (it sends a fresh set each day).
const SIGNING_DAYS: std::ops::RangeInclusive<i64> = -1..=6;

/// The access keys of a SigV4 authorizer: the Secrets of type
/// `tollhouse.dev/sigv4-credentials` in its namespace that its selector matches, oldest first
/// (a second Secret with the same access key id is left out), each as its per-day signing
/// keys. Values never reach a note.
fn credentials(
    a: &Resource<AuthorizerSpec>,
    selector: &Selector,
    scope: &Sigv4,
    secrets: &[Resource<Arc<SecretData>>],
    today: i64,
    notes: &mut Vec<String>,
) -> Vec<Sigv4Credential> {
    let mut by_id: BTreeMap<String, Sigv4Credential> = BTreeMap::new();
    for s in by_age(secrets) {
        if s.meta.namespace != a.meta.namespace
            || !s.spec.is_sigv4()
            || !selector.matches(&s.spec.labels)
        {
            continue;
        }
        let name = holder(&s.meta);
        let field = |k: &str| {
            s.spec
                .data
                .get(k)
                .and_then(|v| String::from_utf8(v.clone()).ok())
                .filter(|v| !v.trim().is_empty())
        };
        let (Some(access_key_id), Some(secret)) = (field("accessKeyId"), field("secretAccessKey"))
        else {
            notes.push(format!(
                "Secret {name} is left out: it needs accessKeyId and secretAccessKey"
            ));
            continue;
        };
        if by_id.contains_key(&access_key_id) {
            notes.push(format!(
                "Secret {name} is left out: an older Secret has its accessKeyId"
            ));
            continue;
        }
        let signing_keys = SIGNING_DAYS
            .map(|offset| {
                let day = date::yyyymmdd(today + offset);
                let key = signing_key(&secret, &day, &scope.region, &scope.service);
                (day, Sensitive(hex::encode(key)))
            })
            .collect();
        by_id.insert(
            access_key_id.clone(),
            Sigv4Credential {
                source: source(Kind::Secret, &s.meta),
                access_key_id,
                principal: field("principal"),
                session_token_sha256: field("sessionToken")
                    .map(|t| hex::encode(Sha256::digest(t.as_bytes()))),
                signing_keys,
            },
        );
    }
    match by_id.len() {
        0 => notes.push(
            "no Secret of type tollhouse.dev/sigv4-credentials matches credentialSelector: \
             every request is refused"
                .into(),
        ),
        n => notes.push(format!("{n} access key(s)")),
    }
    by_id.into_values().collect()
}

/// SigV4's `kSigning`: the `HMAC-SHA256` chain from `"AWS4" + secret` through the day, region,
/// service and `aws4_request` (reference §7).
fn signing_key(secret: &str, day: &str, region: &str, service: &str) -> Vec<u8> {
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in [day, region, service, "aws4_request"] {
        key = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            part.as_bytes(),
        )
        .as_ref()
        .to_vec();
    }
    key
}

/// A REQUEST or TOKEN authorizer's function, checked.
fn function(
    kind: AuthorizerType,
    identity_source: &[String],
    f: &FunctionSpec,
    notes: &mut Vec<String>,
) -> Result<Function, Failure> {
    let token = kind == AuthorizerType::Token;
    if token {
        let header = match identity_source {
            [] => true,
            [one] => matches!(IdentitySource::parse(one), Ok(IdentitySource::Header(_))),
            _ => false,
        };
        if !header {
            return fail(
                Reason::InvalidAuthorizer,
                "a TOKEN authorizer reads one header (identitySource)",
            );
        }
    }
    let ttl_seconds = f.result_ttl_in_seconds.unwrap_or(300);
    if ttl_seconds > 3600 {
        return fail(
            Reason::InvalidAuthorizer,
            "function.resultTtlInSeconds is 0 to 3600 (AWS)",
        );
    }
    if !token && ttl_seconds > 0 && identity_source.is_empty() {
        return fail(
            Reason::InvalidAuthorizer,
            "a REQUEST authorizer that caches (resultTtlInSeconds > 0) needs an identitySource: \
             its results are cached on those values (AWS)",
        );
    }
    let timeout_ms = f.timeout_in_millis.unwrap_or(10_000);
    if !(50..=30_000).contains(&timeout_ms) {
        return fail(
            Reason::InvalidAuthorizer,
            "function.timeoutInMillis is 50 to 30000",
        );
    }
    let format = match f.payload_format_version {
        None | Some(PayloadFormatVersion::V2) => EventFormat::V2,
        Some(PayloadFormatVersion::V1) => EventFormat::V1,
    };
    let simple_responses = f.enable_simple_responses.unwrap_or(false);
    if simple_responses && (token || format != EventFormat::V2) {
        return fail(
            Reason::InvalidAuthorizer,
            "function.enableSimpleResponses needs a REQUEST authorizer with \
             payloadFormatVersion 2.0 (AWS)",
        );
    }
    let validation = match &f.identity_validation_expression {
        None => None,
        Some(_) if !token => {
            return fail(
                Reason::InvalidAuthorizer,
                "function.identityValidationExpression is for TOKEN authorizers (AWS)",
            )
        }
        Some(re) => match regex::Regex::new(re) {
            Ok(_) => Some(re.clone()),
            Err(e) => {
                return fail(
                    Reason::InvalidAuthorizer,
                    format!(
                        "function.identityValidationExpression is not a regular expression: {}",
                        // The parser's message ends with its one-line reason.
                        e.to_string()
                            .lines()
                            .last()
                            .unwrap_or("invalid")
                            .trim_start_matches("error: ")
                    ),
                );
            }
        },
    };
    let target = match (&f.uri, &f.backend_ref) {
        (Some(uri), None) => {
            if f.path.is_some() {
                return fail(
                    Reason::InvalidAuthorizer,
                    "function.path goes with backendRef; put the path in function.uri",
                );
            }
            url(
                "function.uri",
                uri,
                notes,
                "credentials and replies travel unencrypted",
            )?;
            FunctionTarget::Uri(uri.clone())
        }
        (None, Some(_)) => {
            let path = f.path.clone().unwrap_or_else(|| INVOKE_PATH.to_string());
            if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
                return fail(
                    Reason::InvalidAuthorizer,
                    format!("function.path {path:?} is not a path from /"),
                );
            }
            // The key is set once the Service is resolved.
            FunctionTarget::Backend {
                backend: String::new(),
                path,
            }
        }
        _ => {
            return fail(
                Reason::InvalidAuthorizer,
                "function needs exactly one of uri and backendRef",
            )
        }
    };
    Ok(Function {
        target,
        format,
        simple_responses,
        ttl_seconds,
        timeout_ms,
        validation,
    })
}

/// The snapshot key of an Authorizer.
pub(super) fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}
