//! The per-request context, filled in phase by phase: what each later phase, the access log
//! and (later) templates and authorizers read.

use crate::compile::{CompiledSnapshot, CompiledStage};
use crate::error::GatewayError;
use crate::flavour::{Flavour, RequestIds};
use crate::phases::route::CompiledRoute;
use http::{HeaderValue, Method, Uri};
use smallvec::SmallVec;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// What the pipeline knows about the connection a request came on.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Client address.
    pub remote: SocketAddr,
    /// The listener's address.
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client IP as a header value, made once per connection for `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// The listener's port as a header value, for `X-Forwarded-Port`.
    pub local_port: HeaderValue,
}

impl Connection {
    /// Describes an accepted connection.
    pub fn new(remote: SocketAddr, local: SocketAddr, tls: bool) -> Self {
        let client_ip = HeaderValue::from_str(&remote.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        Connection {
            remote,
            local,
            tls,
            client_ip,
            local_port: HeaderValue::from(local.port()),
        }
    }
}

/// Byte ranges of path parameter values.
pub type Params = SmallVec<[(usize, usize); 4]>;

/// What the integration did, for `$context.integration.*`.
#[derive(Debug, Default, Clone)]
pub struct IntegrationRecord {
    /// The backend's status, when it answered.
    pub status: Option<u16>,
    /// Time from sending to the response head.
    pub latency: Option<Duration>,
    /// When the response head came back: the response is ready then, so the pipeline's end
    /// reads no second clock.
    pub answered: Option<Instant>,
    /// Why it failed, when it did.
    pub error: Option<&'static str>,
}

/// One request on its way through the phases.
pub struct RequestContext {
    /// When the request arrived (monotonic).
    pub start: Instant,
    /// When the request arrived (wall clock).
    pub time: SystemTime,
    /// The connection.
    pub conn: Arc<Connection>,
    /// The method.
    pub method: Method,
    /// The request target as the client sent it (`$context.path` comes from it).
    pub uri: Uri,
    /// `Host` (or `:authority`).
    pub host: Option<HeaderValue>,
    /// `User-Agent`.
    pub user_agent: Option<HeaderValue>,
    /// The snapshot serving the request, once one is loaded.
    pub snapshot: Option<Arc<CompiledSnapshot>>,
    /// The flavour answering: the Stage's, or that of a miss.
    pub flavour: Flavour,
    /// Request ids, made once the flavour is known.
    pub ids: Option<RequestIds>,
    /// Whether an integration was called with the trace id ([`RequestContext::trace_id`]).
    pub traced: bool,
    /// The routed path when normalising changed it (else the request's own).
    pub normalised: Option<String>,
    /// The Stage, by index into the snapshot.
    pub stage: Option<usize>,
    /// Where the Stage-relative path starts in the routed path, or `None` when it is `/`.
    pub rest_start: Option<usize>,
    /// The route, by index into the Stage.
    pub route: Option<usize>,
    /// Path parameter values as byte ranges of the routed path, in template order; inline
    /// up to four, so the common route allocates nothing for them.
    pub params: Params,
    /// What the integration did.
    pub integration: IntegrationRecord,
    /// `$context.identity.apiKeyId`: the id of the API key a route with `apiKeyRequired`
    /// accepted.
    pub api_key_id: Option<Arc<str>>,
    /// Who called, when the route's authorizer said (`$context.authorizer.*`).
    pub identity: Option<Arc<crate::authorizer::Identity>>,
    /// The error answered, if any.
    pub error: Option<GatewayError>,
    /// The status answered.
    pub status: u16,
    /// The response body's length, when known at the head.
    pub response_length: Option<u64>,
    /// When the response head was ready.
    pub response_latency: Option<Duration>,
}

impl RequestContext {
    /// A context for a request that has just arrived.
    pub fn new<B>(
        req: &http::Request<B>,
        conn: Arc<Connection>,
        start: Instant,
        time: SystemTime,
    ) -> Self {
        let h = req.headers();
        RequestContext {
            start,
            time,
            conn,
            method: req.method().clone(),
            uri: req.uri().clone(),
            host: req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                .or_else(|| h.get(http::header::HOST).cloned()),
            user_agent: h.get(http::header::USER_AGENT).cloned(),
            snapshot: None,
            flavour: Flavour::default(),
            ids: None,
            traced: false,
            normalised: None,
            stage: None,
            rest_start: None,
            route: None,
            params: Params::new(),
            integration: IntegrationRecord::default(),
            api_key_id: None,
            identity: None,
            error: None,
            status: 0,
            response_length: None,
            response_latency: None,
        }
    }

    /// The host without surprises: empty when the request named none.
    pub fn host_str(&self) -> &str {
        self.host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
    }

    /// The path routing ran on.
    pub fn path(&self) -> &str {
        self.normalised.as_deref().unwrap_or(self.uri.path())
    }

    /// The path below the Stage's base path (`$context.resourcePath`'s request side).
    pub fn rest(&self) -> &str {
        match self.rest_start {
            Some(i) => self.path().get(i..).unwrap_or("/"),
            None => "/",
        }
    }

    /// The Stage, once selected.
    pub fn stage(&self) -> Option<&CompiledStage> {
        self.snapshot.as_ref()?.stage(self.stage?)
    }

    /// The route, once matched.
    pub fn route(&self) -> Option<&CompiledRoute> {
        self.stage()?.routes.get(self.route?)
    }

    /// Path parameter values (raw) in template order.
    pub fn param_values(&self) -> SmallVec<[&str; 4]> {
        let path = self.path();
        self.params
            .iter()
            .map(|&(a, b)| path.get(a..b).unwrap_or(""))
            .collect()
    }

    /// `X-Amzn-Trace-Id`, once an integration has been called with it.
    pub fn trace_id(&self) -> Option<&HeaderValue> {
        self.ids
            .as_ref()
            .filter(|_| self.traced)
            .map(|i| &i.trace_id)
    }

    /// Request ids, made now for the current flavour if they were not yet.
    pub fn ids(&mut self, headers: &http::HeaderMap) -> &RequestIds {
        let flavour = self.flavour;
        let epoch = self
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.ids
            .get_or_insert_with(|| RequestIds::new(flavour, headers, epoch))
    }
}

/// Byte range of `part` inside `whole`, when `part` is a slice of it.
pub fn range_in(whole: &str, part: &str) -> Option<(usize, usize)> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some((start, end))
}
