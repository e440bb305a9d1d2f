//! Function authorizers (AWS's Lambda authorizers, reference §5): AWS's event POSTed as JSON
//! to an HTTP endpoint, the reply read as AWS reads it, and results cached per authorizer on
//! the identity-source values for the TTL.
//!
//! The call is AWS Lambda's Invoke API: a Lambda container with the runtime interface
//! emulator answers it unchanged. A function error (`X-Amz-Function-Error`, or a body that is
//! the Lambda error shape `{"errorMessage", "errorType"}`) whose message is `Unauthorized` is
//! a 401, as AWS reads a thrown `Error("Unauthorized")`; a plain HTTP service may also answer
//! 401 for that. Any other failure (an error, a non-2xx status, a timeout, an unreachable or
//! endpoint-less function, a malformed reply) is AWS's 500.
//!
//! The cache is the runtime's: kept across pushes while the authorizer's configuration is
//! unchanged. Concurrent misses for one identity wait on one call (quick_cache's placeholder).
//! Allow and deny verdicts are cached; 401s and failures are not.

use super::event;
use super::policy::{Decision, Verdict};
use super::{Call, Identity};
use crate::error::GatewayError;
use crate::flavour::Flavour;
use crate::integration::http::{EndpointPool, HttpTarget};
use crate::upstream::bounded;
use bytes::Bytes;
use http::{header, HeaderName, Method, Request};
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollhouse_snapshot::{EventFormat, Function, FunctionTarget};
use tollhouse_template::PathTemplate;

/// Lambda's function-error header (`Unhandled`, `Handled`).
const X_AMZ_FUNCTION_ERROR: HeaderName = HeaderName::from_static("x-amz-function-error");
/// The most of a reply read; AWS Lambda's synchronous response limit is 6 MB, an authorizer's
/// reply is a policy.
const MAX_REPLY: usize = 1 << 20;
/// Identities kept per authorizer.
const CACHE_ENTRIES: usize = 10_000;

/// One authorizer's cached verdicts, kept by the runtime across pushes, and its counters
/// (`tollhouse_authorizer_function_results`).
pub struct ResultCache {
    entries: quick_cache::sync::Cache<Box<str>, Cached>,
    hits: Counter,
    calls: Counter,
}

impl ResultCache {
    /// An empty cache counting into `hits` and `calls`.
    pub fn new((hits, calls): (Counter, Counter)) -> Self {
        ResultCache {
            entries: quick_cache::sync::Cache::new(CACHE_ENTRIES),
            hits,
            calls,
        }
    }
}

#[derive(Clone)]
struct Cached {
    until: Instant,
    verdict: Arc<Verdict>,
}

/// A REQUEST or TOKEN authorizer's function, compiled.
pub struct FunctionAuthorizer {
    token: bool,
    target: HttpTarget,
    format: EventFormat,
    simple: bool,
    ttl: Duration,
    validation: Option<regex::Regex>,
    results: Arc<ResultCache>,
}

impl FunctionAuthorizer {
    /// Compiles a snapshot function with its retained `results`.
    pub fn compile(
        f: &Function,
        token: bool,
        pools: &HashMap<&str, Arc<EndpointPool>>,
        results: Arc<ResultCache>,
    ) -> Result<Self, String> {
        let root = PathTemplate::parse("/").map_err(|e| e.to_string())?;
        let (uri, pool) = match &f.target {
            FunctionTarget::Uri(uri) => (uri.as_str(), None),
            FunctionTarget::Backend { backend, path } => (
                path.as_str(),
                Some(
                    pools
                        .get(backend.as_str())
                        .cloned()
                        .ok_or_else(|| format!("backend {backend} missing"))?,
                ),
            ),
        };
        let timeout = Duration::from_millis(u64::from(f.timeout_ms));
        let target = HttpTarget::compile(uri, &BTreeMap::new(), &root, pool, timeout, false)
            .map_err(|e| format!("function target: {e:?}"))?;
        let validation = match &f.validation {
            None => None,
            // AWS matches the whole token (Java's `matches`).
            Some(re) => Some(
                regex::Regex::new(&format!("^(?:{re})$"))
                    .map_err(|e| format!("identityValidationExpression: {e}"))?,
            ),
        };
        Ok(FunctionAuthorizer {
            token,
            target,
            format: f.format,
            simple: f.simple_responses,
            ttl: Duration::from_secs(u64::from(f.ttl_seconds)),
            validation,
            results,
        })
    }

    /// Decides on a request whose identity-source `values` are all present.
    pub async fn authorize(
        &self,
        call: &Call<'_>,
        values: &[String],
        label: &str,
    ) -> Result<Identity, GatewayError> {
        if let (Some(re), Some(token)) = (&self.validation, values.first()) {
            if !re.is_match(token) {
                return Err(GatewayError::Unauthorized(None));
            }
        }
        let arn = call.method_arn();
        let verdict = if self.ttl.is_zero() {
            Arc::new(self.invoke(call, values, &arn, label).await?)
        } else {
            self.cached(call, values, &arn, label).await?
        };
        self.decide(&verdict, &arn, call.stage.flavour)
    }

    async fn cached(
        &self,
        call: &Call<'_>,
        values: &[String],
        arn: &str,
        label: &str,
    ) -> Result<Arc<Verdict>, GatewayError> {
        let key: Box<str> = values.join("\u{1f}").into();
        let now = call.ctx.start;
        // An expired entry is dropped and loaded again (a second pass at most).
        for _ in 0..2 {
            match self.results.entries.get_value_or_guard_async(&key).await {
                Ok(c) if c.until > now => {
                    self.results.hits.inc();
                    return Ok(c.verdict);
                }
                Ok(_) => {
                    self.results.entries.remove(&key);
                }
                Err(guard) => {
                    let verdict = Arc::new(self.invoke(call, values, arn, label).await?);
                    let _ = guard.insert(Cached {
                        until: now + self.ttl,
                        verdict: verdict.clone(),
                    });
                    return Ok(verdict);
                }
            }
        }
        Ok(Arc::new(self.invoke(call, values, arn, label).await?))
    }

    fn decide(
        &self,
        verdict: &Verdict,
        arn: &str,
        flavour: Flavour,
    ) -> Result<Identity, GatewayError> {
        let (principal_id, context, usage_identifier_key) = match verdict {
            Verdict::Simple {
                authorized,
                context,
            } => {
                if !authorized {
                    return Err(GatewayError::AuthorizerDenied);
                }
                (None, context.clone(), None)
            }
            Verdict::Policy(p) => {
                match p.decide(arn) {
                    Decision::Allow => {}
                    Decision::Deny => return Err(GatewayError::AuthorizerDenied),
                    Decision::NotCovered => return Err(GatewayError::AuthorizerNotCovered),
                }
                (
                    Some(p.principal_id.clone()),
                    p.context.clone(),
                    p.usage_identifier_key.clone(),
                )
            }
        };
        let context = if flavour == Flavour::Rest || !self.simple {
            stringified(context)?
        } else {
            context
        };
        Ok(Identity {
            principal_id,
            context,
            usage_identifier_key,
            ..Identity::default()
        })
    }

    /// Calls the function once.
    async fn invoke(
        &self,
        call: &Call<'_>,
        values: &[String],
        arn: &str,
        label: &str,
    ) -> Result<Verdict, GatewayError> {
        self.results.calls.inc();
        let event = match (self.token, values.first()) {
            (true, Some(token)) => event::token(token, arn),
            _ => event::request(call, self.format, values, arn),
        };
        let failed = |why: &str| {
            // Never the token or the reply: they may carry credentials.
            tracing::warn!(authorizer = label, "authorizer function failed: {why}");
            GatewayError::AuthorizerFailure
        };
        let body = Bytes::from(serde_json::to_vec(&event).map_err(|_| failed("event"))?);
        let uri = self
            .target
            .uri(&[], "", None)
            .map_err(|_| failed("no ready endpoint, or an unusable URI"))?;
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(bounded(
                crate::body::RequestBody::Full(Some(body)),
                None::<u64>,
            ))
            .map_err(|_| failed("request"))?;
        if let Some(id) = call.ctx.ids.as_ref() {
            req.headers_mut()
                .insert(crate::flavour::X_AMZN_REQUEST_ID, id.request_id.clone());
        }
        let resp = call
            .upstream
            .send(req, self.target.host(), false, self.target.timeout)
            .await
            .map_err(|e| match e {
                GatewayError::IntegrationTimeout => failed("timed out"),
                _ => failed("unreachable"),
            })?;
        let status = resp.status();
        let function_error = resp.headers().contains_key(X_AMZ_FUNCTION_ERROR);
        let reply = http_body_util::Limited::new(resp.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|_| failed("reply not read (too large, broken or too slow)"))?
            .to_bytes();
        if status == http::StatusCode::UNAUTHORIZED {
            return Err(GatewayError::Unauthorized(None));
        }
        if let Some(message) = lambda_error(&reply) {
            if message == "Unauthorized" {
                return Err(GatewayError::Unauthorized(None));
            }
            return Err(failed("function error"));
        }
        if function_error {
            return Err(failed("function error"));
        }
        if !status.is_success() {
            return Err(failed(&format!("status {}", status.as_u16())));
        }
        Verdict::parse(&reply, self.simple).map_err(|m| failed(m.0))
    }
}

/// The `errorMessage` of Lambda's error shape, `{"errorMessage": …, "errorType": …}`.
fn lambda_error(reply: &[u8]) -> Option<String> {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(reply) else {
        return None;
    };
    if m.contains_key("principalId") || m.contains_key("isAuthorized") {
        return None;
    }
    match m.get("errorMessage") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => Some(String::new()),
        None => None,
    }
}

/// REST (and IAM-policy) context values: strings, numbers and booleans, all handed on as
/// strings; an object or array is AWS's 500 (reference §5).
fn stringified(context: Map<String, Value>) -> Result<Map<String, Value>, GatewayError> {
    context
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(_) => Ok((k, v)),
            Value::Number(n) => Ok((k, Value::String(n.to_string()))),
            Value::Bool(b) => Ok((k, Value::String(b.to_string()))),
            Value::Null => Ok((k, Value::String(String::new()))),
            Value::Object(_) | Value::Array(_) => Err(GatewayError::AuthorizerFailure),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_errors_are_told_from_replies() {
        assert_eq!(
            lambda_error(br#"{"errorMessage":"Unauthorized","errorType":"Error"}"#).as_deref(),
            Some("Unauthorized")
        );
        assert_eq!(
            lambda_error(br#"{"principalId":"u","errorMessage":"x"}"#),
            None
        );
        assert_eq!(lambda_error(b"nope"), None);
    }

    #[test]
    fn rest_context_is_strings_and_refuses_objects() {
        let m: Map<String, Value> = serde_json::from_str(r#"{"a":1,"b":true,"c":"x"}"#).unwrap();
        let s = stringified(m).unwrap();
        assert_eq!(s.get("a"), Some(&Value::from("1")));
        assert_eq!(s.get("b"), Some(&Value::from("true")));
        let m: Map<String, Value> = serde_json::from_str(r#"{"a":{"b":1}}"#).unwrap();
        assert_eq!(stringified(m), Err(GatewayError::AuthorizerFailure));
    }
}
