//! ApiRoutes: path, methods and integration, and the conflicts between routes of one API.

use super::conditions::{fail, Failure};
use super::conflict::{holder, oldest_wins, Contender};
use crate::model::{Meta, Resource};
use std::collections::{BTreeMap, HashMap};
use tollhouse_api::{ApiRouteSpec, BackendRef, IntegrationType, Method};
use tollhouse_snapshot::{HttpProxy, Integration, Mock, Reason};
use tollhouse_template::{PathTemplate, UriForm, UriTemplate};

/// What a valid ApiRoute becomes.
pub(super) struct RouteOk {
    /// The normalised path template.
    pub path: String,
    /// The template with parameter names erased: routes of one shape match the same requests.
    pub shape: String,
    /// Upper-case methods, sorted; `ANY` alone.
    pub methods: Vec<String>,
    /// The integration as the snapshot carries it (a Service backend is filled in later).
    pub integration: Integration,
    /// The parsed URI template, for an HTTP proxy that has one.
    pub uri: Option<UriTemplate>,
    /// The Service it proxies to.
    pub backend: Option<BackendRef>,
    /// The route's own limit, on each serving Stage.
    pub throttle: Option<tollhouse_snapshot::Throttle>,
}

/// One ApiRoute on its way through translate.
pub(super) struct RouteEntry<'a> {
    /// The ApiRoute.
    pub resource: &'a Resource<ApiRouteSpec>,
    /// Accepted: what its spec became, or why not.
    pub accepted: Result<RouteOk, Failure>,
    /// Its Service backend: the snapshot key, or why it does not resolve.
    pub backend: Option<Result<String, Failure>>,
    /// Its Authorizer: the snapshot key, or why it does not resolve (then it is not served).
    pub authorizer: Option<Result<String, Failure>>,
    /// The Stages serving it (`namespace/name`).
    pub served_by: Vec<String>,
    /// Per serving Stage that lacks a variable its URI uses: what is missing.
    pub undefined: Vec<String>,
    /// Per serving Stage whose variables make its URI unusable: why.
    pub unusable: Vec<String>,
}

impl Contender for RouteEntry<'_> {
    fn meta(&self) -> &Meta {
        &self.resource.meta
    }

    fn contends(&self) -> bool {
        self.accepted.is_ok()
    }

    fn reject(&mut self, failure: Failure) {
        self.accepted = Err(failure);
    }
}

impl<'a> RouteEntry<'a> {
    /// Checks an ApiRoute on its own.
    pub fn new(resource: &'a Resource<ApiRouteSpec>) -> RouteEntry<'a> {
        RouteEntry {
            resource,
            accepted: check(&resource.spec),
            backend: None,
            authorizer: None,
            served_by: Vec::new(),
            undefined: Vec::new(),
            unusable: Vec::new(),
        }
    }
}

/// Two routes of one API collide when they have the same shape and define the same method.
/// `ANY` collides only with `ANY`: beside explicit methods it answers just the methods not
/// otherwise defined (reference §8, HTTP API routing).
pub(super) fn resolve_conflicts(routes: &mut [RouteEntry<'_>]) {
    /// (namespace, api, path shape).
    type Shape = (String, String, String);
    /// The holder of a method set.
    type Held = (String, Vec<String>);
    // Per shape the method sets already taken; at most a handful each.
    let mut taken: HashMap<Shape, Vec<Held>> = HashMap::new();
    oldest_wins(routes, |route| {
        let Ok(ok) = &route.accepted else {
            return Ok(());
        };
        let meta = &route.resource.meta;
        let key = (
            meta.namespace.clone(),
            route.resource.spec.api.clone(),
            ok.shape.clone(),
        );
        let holders = taken.entry(key).or_default();
        if let Some((winner, methods)) = holders
            .iter()
            .find(|(_, methods)| methods.iter().any(|m| ok.methods.contains(m)))
        {
            return Err(format!(
                "path {} with methods {} overlaps the older ApiRoute {winner} (methods {})",
                ok.path,
                ok.methods.join(","),
                methods.join(",")
            ));
        }
        holders.push((holder(meta), ok.methods.clone()));
        Ok(())
    });
}

/// Checks an ApiRoute's own fields.
pub(super) fn check(spec: &ApiRouteSpec) -> Result<RouteOk, Failure> {
    let template = PathTemplate::parse(&spec.path).map_err(|e| Failure {
        reason: Reason::InvalidPath,
        message: e.to_string(),
    })?;
    let mut methods: Vec<&'static str> = spec.methods.iter().map(|m| m.as_str()).collect();
    if methods.is_empty() {
        methods.push(Method::Any.as_str());
    }
    methods.sort_unstable();
    methods.dedup();
    if methods.len() > 1 && methods.contains(&Method::Any.as_str()) {
        return fail(
            Reason::InvalidMethod,
            "ANY must be the only method: it already answers every method",
        );
    }
    let (integration, uri) = check_integration(spec, &template)?;
    let throttle = super::throttle::check(spec.throttle.as_ref())?;
    Ok(RouteOk {
        path: template.path().to_string(),
        shape: template.shape(),
        methods: methods.into_iter().map(str::to_string).collect(),
        integration,
        uri,
        backend: spec.integration.backend_ref.clone(),
        throttle,
    })
}

fn check_integration(
    spec: &ApiRouteSpec,
    template: &PathTemplate,
) -> Result<(Integration, Option<UriTemplate>), Failure> {
    let bad = |why: String| fail(Reason::InvalidIntegration, why);
    let integration = &spec.integration;
    match integration.kind {
        IntegrationType::HttpProxy => {
            if integration.mock.is_some() {
                return bad("HTTP_PROXY integration must not set mock".into());
            }
            let (uri, form) = match (&integration.backend_ref, integration.uri.as_deref()) {
                (None, None) => {
                    return bad("HTTP_PROXY integration needs a uri or a backendRef".into())
                }
                (Some(_), None) => ("", None),
                (Some(_), Some(path)) => (path, Some(UriForm::Path)),
                (None, Some(uri)) => (uri, Some(UriForm::Absolute)),
            };
            let parsed = match form {
                None => None,
                Some(form) => {
                    Some(
                        UriTemplate::parse(uri, form, template).map_err(|e| Failure {
                            reason: Reason::InvalidIntegration,
                            message: e.to_string(),
                        })?,
                    )
                }
            };
            let timeout_ms = integration
                .timeout_in_millis
                .unwrap_or(tollhouse_snapshot::DEFAULT_TIMEOUT_MS);
            if !(50..=300_000).contains(&timeout_ms) {
                return bad(format!(
                    "timeoutInMillis {timeout_ms} must be between 50 and 300000"
                ));
            }
            let http2 = integration.http2.unwrap_or(false);
            if let Err(e) = tollhouse_template::mapping::parse(&integration.request_parameters) {
                return bad(e.to_string());
            }
            Ok((
                Integration::HttpProxy(HttpProxy {
                    uri: uri.to_string(),
                    backend: None,
                    timeout_ms,
                    http2,
                    request_parameters: integration.request_parameters.clone(),
                }),
                parsed,
            ))
        }
        IntegrationType::Mock => {
            if integration.uri.is_some() || integration.backend_ref.is_some() {
                return bad("MOCK integration must not set uri or backendRef".into());
            }
            if !integration.request_parameters.is_empty() {
                return bad("MOCK integration has no requestParameters (HTTP_PROXY has)".into());
            }
            let mock = integration.mock.clone().unwrap_or(tollhouse_api::MockSpec {
                status_code: None,
                headers: BTreeMap::new(),
                body: None,
            });
            let status_code = mock.status_code.unwrap_or(200);
            if !(100..=599).contains(&status_code) {
                return bad(format!(
                    "mock statusCode {status_code} must be between 100 and 599"
                ));
            }
            for (name, value) in &mock.headers {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || http::HeaderValue::from_str(value).is_err()
                {
                    return bad(format!("mock header {name:?} is not a valid HTTP header"));
                }
            }
            let mock = Mock {
                status_code,
                headers: mock.headers,
                body: mock.body.unwrap_or_default(),
            };
            Ok((Integration::Mock(mock), None))
        }
    }
}
