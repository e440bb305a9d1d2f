//! The authorize phase: the route's authorizer decides, before API keys and limits (AWS's
//! order: resource policy, authorizer, API key), and who called reaches the context.
//!
//! JWT authorizers ([`jwt`]), whose issuers' keys ([`jwks`]) the runtime keeps across pushes,
//! so a push neither refetches nor forgets them; and function authorizers ([`function`]),
//! whose results the runtime keeps the same way.

pub mod crypto;
pub mod event;
pub mod function;
pub mod jwks;
pub mod jwt;
pub mod policy;
pub mod sigv4;

use crate::compile::CompiledStage;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::integration::http::EndpointPool;
use crate::phases::route::CompiledRoute;
use crate::upstream::Upstream;
use function::{FunctionAuthorizer, ResultCache};
use http::{HeaderMap, HeaderName};
use jwks::Jwks;
use jwt::{JwtAuthorizer, JwtFailure};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tollhouse_snapshot::{Authorizer, AuthorizerKind};

/// Who called, as an authorizer established it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `$context.authorizer.principalId` (a JWT's `sub`, a function's `principalId`).
    pub principal_id: Option<String>,
    /// A JWT's claims (`$context.authorizer.claims.*`).
    pub claims: Map<String, Value>,
    /// A JWT's scopes.
    pub scopes: Vec<String>,
    /// A function's `context` (`$context.authorizer.KEY`).
    pub context: Map<String, Value>,
    /// A function's `usageIdentifierKey`: the API key for a Stage whose `apiKeySource` is
    /// `AUTHORIZER`.
    pub usage_identifier_key: Option<String>,
    /// A SigV4 caller (`$context.identity.accessKey`, `caller`, `userArn`).
    pub iam: Option<sigv4::Caller>,
}

/// What an authorizer sees of one request.
pub struct Call<'a> {
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// The request's context so far (routed).
    pub ctx: &'a RequestContext,
    /// Its Stage.
    pub stage: &'a CompiledStage,
    /// Its route.
    pub route: &'a CompiledRoute,
    /// The route's scopes (JWT).
    pub scopes: &'a [String],
    /// This worker's upstream clients (function calls).
    pub upstream: &'a Upstream,
    /// `arn:aws:execute-api:{region}:{account}:`, what method ARNs start with.
    pub arn_prefix: &'a str,
    /// Hex SHA-256 of the body, read when the authorizer needs it ([`CompiledAuthorizer::needs_body`]).
    pub payload_sha256: Option<&'a str>,
}

impl Call<'_> {
    /// The request's query string.
    pub fn query(&self) -> Option<&str> {
        self.ctx.uri.query()
    }

    /// AWS's method ARN: `arn:aws:execute-api:{region}:{account}:{api}/{stage}/{METHOD}/{path}`
    /// with the request's path below the Stage (reference §5).
    pub fn method_arn(&self) -> String {
        method_arn(self.arn_prefix, self.stage, self.ctx)
    }
}

/// AWS's method ARN of a routed request (reference §5): `{arn_prefix}{api}/{stage}/{METHOD}/{path}`
/// with the path below the Stage.
pub fn method_arn(arn_prefix: &str, stage: &CompiledStage, ctx: &RequestContext) -> String {
    let rest = ctx.rest();
    format!(
        "{arn_prefix}{}/{}/{}/{}",
        stage.api.to_str().unwrap_or("-"),
        stage.name,
        ctx.method,
        rest.strip_prefix('/').unwrap_or(rest)
    )
}

/// Decoded `name=value` pairs of a query string, in order (`+` is a space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Where an authorizer reads the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A request header (case-insensitive).
    Header(HeaderName),
    /// A query-string parameter (case-sensitive).
    Query(String),
    /// A stage variable.
    StageVariable(String),
    /// A context variable (one of [`tollhouse_template::identity::CONTEXT_VARIABLES`]).
    Context(String),
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
            tollhouse_template::IdentitySource::StageVariable(name) => {
                Ok(IdentitySource::StageVariable(name))
            }
            tollhouse_template::IdentitySource::Context(name) => Ok(IdentitySource::Context(name)),
        }
    }

    /// The value in a request's headers or query, when present and not empty; `None` for the
    /// sources that need the routed request ([`IdentitySource::value_in`]).
    pub fn value(&self, headers: &HeaderMap, query: Option<&str>) -> Option<String> {
        let v = match self {
            IdentitySource::Header(name) => headers.get(name)?.to_str().ok()?.to_string(),
            IdentitySource::Query(name) => query_pairs(query)
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)?,
            IdentitySource::StageVariable(_) | IdentitySource::Context(_) => return None,
        };
        (!v.trim().is_empty()).then_some(v)
    }

    /// The value in a routed request, when present and not empty.
    pub fn value_in(&self, call: &Call<'_>) -> Option<String> {
        let ctx = call.ctx;
        let v = match self {
            IdentitySource::Header(_) | IdentitySource::Query(_) => {
                return self.value(call.headers, call.query())
            }
            IdentitySource::StageVariable(name) => call.stage.variables.get(name)?.clone(),
            IdentitySource::Context(name) => match name.as_str() {
                "apiId" => call.stage.api.to_str().ok()?.to_string(),
                "domainName" => event::domain_name(ctx).to_string(),
                "httpMethod" => ctx.method.to_string(),
                "identity.sourceIp" => ctx.conn.remote.ip().to_string(),
                "identity.userAgent" => ctx.user_agent.as_ref()?.to_str().ok()?.to_string(),
                "path" => ctx.uri.path().to_string(),
                "resourcePath" => call.route.resource_path.clone(),
                "routeKey" => call.route.route_key(&ctx.method),
                "stage" => call.stage.name.clone(),
                _ => return None,
            },
        };
        (!v.trim().is_empty()).then_some(v)
    }
}

/// An authorizer of the snapshot, compiled.
pub struct CompiledAuthorizer {
    /// `namespace/name`.
    pub label: String,
    /// Where the credentials are read, in order.
    identity: Vec<IdentitySource>,
    check: Check,
}

enum Check {
    Jwt(JwtAuthorizer),
    Function(FunctionAuthorizer),
    Sigv4(sigv4::Sigv4Authorizer),
}

/// What a compile hands authorizers from the runtime and the snapshot.
pub struct CompileEnv<'a> {
    /// An issuer's retained keys: `(issuer, jwksUri)` to the one [`Jwks`].
    pub keys: &'a mut dyn FnMut(&str, Option<&str>) -> Arc<Jwks>,
    /// A function authorizer's retained results, by its label and configuration.
    pub results: &'a mut dyn FnMut(&str, &tollhouse_snapshot::Function) -> Arc<ResultCache>,
    /// The snapshot's Service backends.
    pub pools: &'a HashMap<&'a str, Arc<EndpointPool>>,
}

impl CompiledAuthorizer {
    /// Compiles a snapshot authorizer with the runtime's retained state.
    pub fn compile(a: &Authorizer, env: &mut CompileEnv<'_>) -> Result<Self, String> {
        let label = a.source.key();
        let sources = a
            .identity_source
            .iter()
            .map(|s| IdentitySource::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let header_or_query =
            |s: &IdentitySource| matches!(s, IdentitySource::Header(_) | IdentitySource::Query(_));
        let (identity, check) = match &a.kind {
            AuthorizerKind::Jwt(j) => {
                let identity = match sources.as_slice() {
                    [] => IdentitySource::Header(http::header::AUTHORIZATION),
                    [one] if header_or_query(one) => one.clone(),
                    _ => return Err("a JWT authorizer reads one header or query parameter".into()),
                };
                let jwks = (env.keys)(&j.issuer, j.jwks_uri.as_deref());
                (
                    vec![identity],
                    Check::Jwt(JwtAuthorizer::new(&j.issuer, &j.audience, jwks)),
                )
            }
            AuthorizerKind::Token(f) => {
                let identity = match sources.as_slice() {
                    [] => IdentitySource::Header(http::header::AUTHORIZATION),
                    [one @ IdentitySource::Header(_)] => one.clone(),
                    _ => return Err("a TOKEN authorizer reads one header".into()),
                };
                let results = (env.results)(&label, f);
                (
                    vec![identity],
                    Check::Function(FunctionAuthorizer::compile(f, true, env.pools, results)?),
                )
            }
            AuthorizerKind::Request(f) => {
                let results = (env.results)(&label, f);
                (
                    sources,
                    Check::Function(FunctionAuthorizer::compile(f, false, env.pools, results)?),
                )
            }
            AuthorizerKind::Sigv4(s) => (
                Vec::new(),
                Check::Sigv4(sigv4::Sigv4Authorizer::compile(s)?),
            ),
        };
        Ok(CompiledAuthorizer {
            label,
            identity,
            check,
        })
    }

    /// Whether it reads the body (a SigV4 signature covers its hash): the pipeline reads it
    /// first.
    pub fn needs_body(&self) -> bool {
        matches!(self.check, Check::Sigv4(_))
    }

    /// Decides on a request: its caller's identity, or the error to answer.
    pub async fn authorize(&self, call: &Call<'_>) -> Result<Identity, GatewayError> {
        match &self.check {
            Check::Sigv4(s) => {
                let ctx = call.ctx;
                let signed = sigv4::Signed {
                    method: ctx.method.as_str(),
                    path: ctx.uri.path(),
                    query: ctx.uri.query(),
                    headers: call.headers,
                    host: ctx.host_str(),
                    payload_sha256: call.payload_sha256.unwrap_or(""),
                };
                let caller = s
                    .verify(&signed, ctx.time)
                    .map_err(|f| GatewayError::Signature(Box::new(f)))?;
                Ok(Identity {
                    iam: Some(caller),
                    ..Identity::default()
                })
            }
            Check::Jwt(j) => {
                let value = self
                    .identity
                    .first()
                    .and_then(|s| s.value(call.headers, call.query()));
                let Some(value) = value else {
                    return Err(GatewayError::Unauthorized(Some(JwtFailure::Missing)));
                };
                j.authorize(&value, call.scopes, call.ctx.start, call.ctx.time)
                    .await
                    .map_err(|f| GatewayError::Unauthorized(Some(f)))
            }
            Check::Function(f) => {
                // A missing identity source is 401 without a call (reference §5).
                let mut values = Vec::with_capacity(self.identity.len());
                for source in &self.identity {
                    match source.value_in(call) {
                        Some(v) => values.push(v),
                        None => return Err(GatewayError::Unauthorized(None)),
                    }
                }
                f.authorize(call, &values, &self.label).await
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

/// The TLS client for JWKS and discovery fetches: the public web roots (webpki-roots) and the
/// certificates of `extra` (`--jwks-ca-file`, for issuers behind a private CA).
pub fn jwks_tls(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| format!("--jwks-ca-file: a certificate is not a usable CA: {e}"))?;
    }
    // No ALPN here: hyper-rustls sets it (and refuses a configuration that has it).
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(config)
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
        assert_eq!(
            IdentitySource::parse("$context.routeKey"),
            Ok(IdentitySource::Context("routeKey".into()))
        );
        assert!(IdentitySource::parse("$context.requestId").is_err());
        assert!(IdentitySource::parse("$request.header.bad name").is_err());
        let q = IdentitySource::Query("token".into());
        assert_eq!(
            q.value(&HeaderMap::new(), Some("a=1&token=x%2By&b")),
            Some("x+y".into())
        );
        assert_eq!(q.value(&HeaderMap::new(), Some("token=")), None);
    }
}
