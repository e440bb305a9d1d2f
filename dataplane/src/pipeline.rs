//! The request pipeline: the phases in order over one request's context, and the one place
//! their outcome becomes a response.
//!
//! `admission → path → stage → route → integration → (response) → access log + metrics`.
//! Later capabilities add their phases between route and integration (resource policy, CORS,
//! authorize, throttle, quota, validate, cache, transform); each phase takes what it needs
//! from the context and returns a decision.

use crate::body::RequestBody;
use crate::compile::CompiledSnapshot;
use crate::context::{range_in, Connection, Params, RequestContext};
use crate::error::GatewayError;
use crate::flavour::{Flavour, X_AMZN_TRACE_ID};
use crate::integration::http::{proxy, ProxyCall};
use crate::integration::CompiledIntegration;
use crate::phases::api_key;
use crate::phases::throttle::Chain;
use crate::phases::{access_log, admission, limits, path};
use crate::runtime::Runtime;
use crate::upstream::{PooledBody, Upstream};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use std::borrow::Cow;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tracing::Instrument;

/// Body of every response: streamed from upstream, or generated here.
pub type ResponseBody = Either<PooledBody, Full<Bytes>>;

/// State shared by every worker: the snapshot being served and the runtime that outlives it.
pub struct Gateway {
    /// The compiled snapshot; `None` until the first one is applied.
    pub snapshot: ArcSwapOption<CompiledSnapshot>,
    /// Metrics, clock, access-log sink: what a push keeps.
    pub runtime: Runtime,
    /// Set on SIGTERM: `/readyz` answers 503 so load balancers stop sending, while requests
    /// are still served until `--drain-delay` has passed.
    pub draining: AtomicBool,
}

impl Gateway {
    /// A gateway with no snapshot yet.
    pub fn new(runtime: Runtime) -> Self {
        Gateway {
            draining: AtomicBool::new(false),
            snapshot: ArcSwapOption::empty(),
            runtime,
        }
    }

    /// Installs a compiled snapshot; requests in flight finish on the one they started with.
    pub fn apply(&self, compiled: CompiledSnapshot) {
        self.snapshot.store(Some(Arc::new(compiled)));
    }
}

/// One worker thread's view: the shared gateway plus its own upstream connection pools, so
/// a request never touches another thread's pool.
pub struct Worker {
    gateway: Arc<Gateway>,
    upstream: Upstream,
    /// This worker's connection to Redis, with `--redis`.
    redis: Option<redis::aio::ConnectionManager>,
}

impl Worker {
    /// A worker with its own upstream pools (and Redis connection, made for the calling
    /// thread's runtime).
    pub fn new(gateway: Arc<Gateway>) -> Result<Self, String> {
        let redis = match &gateway.runtime.shared {
            Some(s) => Some(s.connect()?),
            None => None,
        };
        Ok(Worker {
            upstream: Upstream::new().map_err(|e| format!("upstream TLS: {e}"))?,
            gateway,
            redis,
        })
    }

    /// Serves one request.
    pub async fn handle(
        &self,
        req: Request<RequestBody>,
        conn: Arc<Connection>,
    ) -> Response<ResponseBody> {
        let clock = &self.gateway.runtime.clock;
        let start = clock.now();
        let mut ctx = RequestContext::new(&req, conn, start, clock.system_at(start));
        let span = tracing::debug_span!(
            "request",
            request.id = tracing::field::Empty,
            http.method = %ctx.method,
        );
        let outcome = self.run(&mut ctx, req).instrument(span.clone()).await;
        let _enter = span.enter();
        self.finish(&mut ctx, outcome)
    }

    /// The phases, in order.
    async fn run(
        &self,
        ctx: &mut RequestContext,
        req: Request<RequestBody>,
    ) -> Result<Response<ResponseBody>, GatewayError> {
        if let Err(e) = admission::admit(&req) {
            if e == GatewayError::PayloadTooLarge {
                tokio::spawn(linger(req.into_body()));
            }
            return Err(e);
        }
        let snap = self
            .gateway
            .snapshot
            .load_full()
            .ok_or(GatewayError::NotReady)?;
        ctx.snapshot = Some(snap.clone());
        if let Cow::Owned(p) = path::normalise(req.uri().path())? {
            ctx.normalised = Some(p);
        }

        let route_span = tracing::debug_span!(
            "route",
            stage = tracing::field::Empty,
            route = tracing::field::Empty
        );
        let routed = route_span.in_scope(|| {
            let m = match snap.stage_table.select(ctx.host_str(), ctx.path()) {
                Ok(m) => m,
                Err(flavour) => {
                    ctx.flavour = flavour;
                    return Err(GatewayError::NoRoute);
                }
            };
            let stage = snap.stage(m.stage).ok_or(GatewayError::NoRoute)?;
            ctx.stage = Some(m.stage);
            ctx.flavour = stage.flavour;
            ctx.rest_start = (!m.rest_is_root).then_some(m.rest_start);
            route_span.record("stage", stage.label.as_str());
            let (index, params) = {
                let found = stage
                    .routes
                    .find(&ctx.method, ctx.rest())
                    .ok_or(GatewayError::NoRoute)?;
                let path = ctx.path();
                let params: Params = found
                    .params
                    .iter()
                    .filter_map(|v| range_in(path, v))
                    .collect();
                (found.route, params)
            };
            ctx.route = Some(index);
            ctx.params = params;
            let route = stage.routes.get(index).ok_or(GatewayError::NoRoute)?;
            route_span.record("route", route.label.as_str());
            Ok((stage, route))
        });
        let id = &ctx.ids(req.headers()).request_id;
        tracing::Span::current().record("request.id", id.to_str().unwrap_or("-"));
        let (stage, route) = routed?;

        let rt = &self.gateway.runtime;
        let mut chain = Chain::new(
            route.throttle.as_deref(),
            stage.throttle.as_deref(),
            rt.account.as_ref(),
        );
        // The resource policy (§11) before any authorizer.
        if let Some(policy) = &stage.resource_policy {
            if let Err(refusal) =
                policy.check(ctx.conn.remote.ip(), ctx.method.as_str(), ctx.rest())
            {
                let arn = crate::authorizer::method_arn(&rt.arn_prefix, stage, ctx);
                return Err(GatewayError::ResourcePolicy {
                    arn: arn.into_boxed_str(),
                    explicit: refusal == crate::phases::resource_policy::Refusal::ExplicitDeny,
                });
            }
        }
        // The authorizer (§5, §6) before API keys, as AWS: a refused caller spends nothing.
        let mut req = req;
        if let Some(auth) = &route.authorization {
            // A SigV4 signature covers the body's hash: read it (up to AWS's 10 MB) first.
            let mut payload = None;
            if auth.authorizer.needs_body() {
                let (parts, body) = req.into_parts();
                let bytes = http_body_util::BodyExt::collect(crate::upstream::bounded(body, None))
                    .await
                    .map_err(|e| {
                        if e.downcast_ref::<http_body_util::LengthLimitError>()
                            .is_some()
                        {
                            GatewayError::PayloadTooLarge
                        } else {
                            GatewayError::BadRequest(crate::error::BadRequest::BrokenBody)
                        }
                    })?
                    .to_bytes();
                payload = Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
                req = Request::from_parts(parts, RequestBody::Full(Some(bytes)));
            }
            let call = crate::authorizer::Call {
                payload_sha256: payload.as_deref(),
                headers: req.headers(),
                ctx,
                stage,
                route,
                scopes: &auth.scopes,
                upstream: &self.upstream,
                arn_prefix: &rt.arn_prefix,
            };
            let identity = auth.authorizer.authorize(&call).await?;
            ctx.identity = Some(Arc::new(identity));
        }
        // API keys (§2): a refused key spends nothing; a plan's limits come first.
        let (plan_route, plan_key);
        let mut quota = None;
        if route.api_key_required {
            let found = ctx.stage.and_then(|i| {
                let from_authorizer = ctx
                    .identity
                    .as_deref()
                    .and_then(|id| id.usage_identifier_key.as_deref());
                snap.keys
                    .identify(stage.api_key_source, req.headers(), from_authorizer, i)
            });
            let Some(found) = found else {
                return Err(GatewayError::InvalidApiKey);
            };
            let id = &found.key.id;
            plan_route = api_key::route_limit(&route.plan_limits, found.plan, &ctx.method)
                .and_then(|l| l.buckets.bucket(id));
            let plan = snap.keys.plan(found.plan);
            plan_key = plan
                .and_then(|p| p.per_key.as_ref())
                .and_then(|b| b.bucket(id));
            quota = plan.map(|p| &p.quota);
            ctx.api_key_id = Some(id.clone());
            chain = chain.with_key(plan_route.as_deref(), plan_key.as_deref());
        }
        let secs = ctx
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let shared = rt.shared.as_deref().zip(self.redis.as_ref());
        let keyed = quota.map(|q| &**q).zip(ctx.api_key_id.as_ref());
        if let Err(e) = limits::admit(shared, &chain, keyed, rt.nanos(ctx.start), secs).await {
            // AWS's THROTTLED and quota answers carry the trace id (§3a T1).
            ctx.traced = true;
            return Err(e);
        }

        match &route.integration {
            CompiledIntegration::Mock(m) => Ok(m.respond().map(Either::Right)),
            CompiledIntegration::Failing(e) => Err(e.clone()),
            CompiledIntegration::Http(target) => {
                let mut uri = target.uri(&ctx.param_values(), ctx.rest(), req.uri().query())?;
                // Parameter mapping, with who called (after the authorizer).
                if !target.mappings.is_empty() {
                    uri = crate::phases::mapping::apply(
                        &target.mappings,
                        ctx,
                        stage,
                        route,
                        req.headers_mut(),
                        uri,
                    );
                }
                // The ids, trace id among them, were made once the route was known.
                ctx.traced = true;
                let clock = &rt.clock;
                let sent = clock.now();
                let call = ProxyCall {
                    flavour: stage.flavour,
                    api: &stage.api,
                    conn: &ctx.conn,
                    trace_id: ctx.trace_id(),
                };
                let span = tracing::debug_span!("upstream", upstream.uri = %uri);
                // Boxed: the upstream state machine is ~4 KB, and hyper moves the request's
                // future into place; one allocation is cheaper than copying it each time.
                let result = Box::pin(proxy(&self.upstream, target, uri, req, &call))
                    .instrument(span)
                    .await;
                let answered = clock.now();
                ctx.integration.latency = Some(answered.saturating_duration_since(sent));
                ctx.integration.answered = Some(answered);
                match result {
                    Ok(resp) => {
                        ctx.integration.status = Some(resp.status().as_u16());
                        Ok(resp.map(Either::Left))
                    }
                    Err(e) => {
                        ctx.integration.error = Some(e.metric_label());
                        Err(e)
                    }
                }
            }
        }
    }

    /// Turns the outcome into the response: errors through their one function, request ids
    /// and trace id stamped, metrics and the access log written.
    fn finish(
        &self,
        ctx: &mut RequestContext,
        outcome: Result<Response<ResponseBody>, GatewayError>,
    ) -> Response<ResponseBody> {
        let rt = &self.gateway.runtime;
        let mut resp = match outcome {
            Ok(r) => r,
            Err(e) => {
                rt.metrics.gateway_error(e.metric_label());
                let r = e.response(ctx.flavour).map(Either::Right);
                ctx.error = Some(e);
                r
            }
        };
        let front_end = ctx.error.as_ref().is_some_and(GatewayError::is_front_end);
        if !front_end {
            let flavour = ctx.flavour;
            ctx.ids(&HeaderMap::new())
                .stamp(flavour, resp.headers_mut());
            if flavour == Flavour::Rest {
                if let Some(t) = ctx.trace_id() {
                    resp.headers_mut().insert(X_AMZN_TRACE_ID, t.clone());
                }
            }
        }
        let end = ctx.integration.answered.unwrap_or_else(|| rt.clock.now());
        let elapsed = end.saturating_duration_since(ctx.start);
        ctx.status = resp.status().as_u16();
        ctx.response_length = resp.body().size_hint().exact();
        ctx.response_latency = Some(elapsed);
        let metrics = match (ctx.route(), ctx.stage(), &ctx.snapshot) {
            (Some(r), _, _) => Some(&r.metrics),
            (None, Some(s), _) => Some(&s.unmatched),
            (None, None, Some(snap)) => Some(&snap.unmatched),
            (None, None, None) => None,
        };
        if let Some(m) = metrics {
            m.record(ctx.status, elapsed.as_secs_f64());
        }
        if let Some(format) = ctx.stage().and_then(|s| s.access_log.as_ref()) {
            rt.access_log.send(access_log::render(format, ctx));
        }
        resp
    }
}

/// Reads and discards a refused body for a while, as nginx's lingering close does: a client
/// still sending would otherwise hit a reset before it reads the 413. Bounded in bytes and
/// time, so a hostile client cannot keep the connection busy.
async fn linger(mut body: RequestBody) {
    use http_body_util::BodyExt;
    const MAX_DRAIN: usize = 64 << 20;
    let mut drained = 0usize;
    let drain = async {
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |d| d.len());
            if drained > MAX_DRAIN {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}
