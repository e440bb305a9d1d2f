//! The pure heart of the controller: objects in, snapshot and per-object status out.
//!
//! No I/O and no clock, so the same input always gives the same bytes. A bad or conflicting
//! object is left out of the snapshot with False conditions; the rest still goes out.
//!
//! One file per kind ([`stage`], [`route`], [`backend`]) holds its checks; each object goes
//! through as one entry (its resource, its conditions so far, what it became). Every conflict
//! follows [`conflict::oldest_wins`]. Checks that the dataplane also makes (certificates, path
//! and URI templates) use the same code as the dataplane, so a status never says more than the
//! data path does.

mod authorizer;
mod backend;
mod conditions;
mod conflict;
mod route;
mod stage;
#[cfg(test)]
mod tests;
mod throttle;
mod usage_plan;

pub use conditions::{Condition, Failure, Status};
pub use usage_plan::{PlanStatus, ENABLED_ANNOTATION, KEY_FIELD};

use crate::model::{Input, Kind, Meta, ObjectKey, Resource, SecretData};
use conditions::fail;
use route::RouteEntry;
use stage::StageEntry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tollhouse_snapshot::{
    ApiKeySource, Integration, Reason, Route, RouteAuthorization, Snapshot, SourceRef,
};
use tollhouse_template::UriError;

/// What translate produces.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    /// The snapshot for the dataplanes.
    pub snapshot: Snapshot,
    /// Status of every object whose kind has one.
    pub statuses: BTreeMap<ObjectKey, Status>,
}

fn source(kind: Kind, meta: &Meta) -> SourceRef {
    SourceRef {
        kind: kind.as_str().to_string(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        generation: meta.generation,
    }
}

fn by_name<T>(items: &[Resource<T>]) -> Vec<&Resource<T>> {
    let mut sorted: Vec<&Resource<T>> = items.iter().collect();
    sorted
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    sorted
}

/// Translates the objects into a snapshot and the status of every Stage and ApiRoute, today.
pub fn translate(input: &Input) -> Output {
    translate_on(input, today())
}

/// Today, in UTC days since the epoch: SigV4 signing keys are derived per day.
pub fn today() -> i64 {
    tollhouse_snapshot::date::day_of(std::time::SystemTime::now())
}

/// [`translate`] on UTC day `today` (days since the epoch).
pub fn translate_on(input: &Input, today: i64) -> Output {
    // A credentials Secret is never read as a certificate.
    let secrets: HashMap<(&str, &str), &Resource<Arc<SecretData>>> = input
        .secrets
        .iter()
        .filter(|s| !s.spec.is_credentials())
        .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
        .collect();
    let mut stages: Vec<StageEntry<'_>> = by_name(&input.stages)
        .into_iter()
        .map(|s| StageEntry::new(s, &secrets))
        .collect();
    stage::resolve_conflicts(&mut stages);

    let mut routes: Vec<RouteEntry<'_>> = by_name(&input.routes)
        .into_iter()
        .map(RouteEntry::new)
        .collect();
    route::resolve_conflicts(&mut routes);

    let services = backend::Services::new(&input.services, &input.endpoint_slices);
    let authorizers = authorizer::check_all(&input.authorizers, &services, &input.secrets, today);
    for route in routes.iter_mut() {
        let (Ok(_), Some(a)) = (&route.accepted, &route.resource.spec.authorization) else {
            continue;
        };
        let ns = &route.resource.meta.namespace;
        let name = &a.authorizer_ref.name;
        let key = authorizer::key(ns, name);
        route.authorizer = Some(match authorizers.get(&key) {
            Some(e) => match &e.accepted {
                Ok(_) => Ok(key),
                Err(f) => fail(
                    Reason::AuthorizerNotFound,
                    format!(
                        "Authorizer {name} is not accepted ({}): the route is not served",
                        f.message
                    ),
                ),
            },
            None => fail(
                Reason::AuthorizerNotFound,
                format!("no Authorizer {name} in namespace {ns}: the route is not served"),
            ),
        });
    }

    let mut backends = BTreeMap::new();
    let mut by_api: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, route) in routes.iter_mut().enumerate() {
        let Ok(ok) = &route.accepted else { continue };
        let meta = &route.resource.meta;
        by_api
            .entry((meta.namespace.as_str(), route.resource.spec.api.as_str()))
            .or_default()
            .push(i);
        if let Some(backend_ref) = &ok.backend {
            let (key, backend, resolved) = services.resolve(&meta.namespace, backend_ref);
            backends.entry(key.clone()).or_insert(backend);
            route.backend = Some(resolved.map(|()| key));
        }
    }

    let mut snapshot = Snapshot::default();
    let mut statuses = BTreeMap::new();
    for stage in &stages {
        let Some((ok, certificate)) = stage.served() else {
            continue;
        };
        let meta = &stage.resource.meta;
        let stage_name = conflict::holder(meta);
        let mut served = Vec::new();
        for &r in by_api
            .get(&(meta.namespace.as_str(), stage.resource.spec.api.as_str()))
            .into_iter()
            .flatten()
        {
            let entry = &mut routes[r];
            let Ok(route) = &entry.accepted else { continue };
            // Never served without its authorizer.
            let authorization = match &entry.authorizer {
                None => None,
                Some(Err(_)) => continue,
                Some(Ok(key)) => {
                    if let Some(a) = authorizers.get(key) {
                        if let Ok(compiled) = &a.accepted {
                            snapshot.authorizers.insert(key.clone(), compiled.clone());
                        }
                        // A function's Service, resolved or not: unresolved, its calls fail.
                        if let Some((backend_key, backend, _)) = &a.backend {
                            snapshot
                                .backends
                                .insert(backend_key.clone(), backend.clone());
                        }
                    }
                    Some(RouteAuthorization {
                        authorizer: key.clone(),
                        scopes: entry
                            .resource
                            .spec
                            .authorization
                            .as_ref()
                            .map(|a| a.scopes.clone())
                            .unwrap_or_default(),
                    })
                }
            };
            // The URI is bound with the code the dataplane binds it with. An undefined or
            // unusable variable does not withdraw the route: it is served and its calls fail
            // as AWS's do (reference §3a R7); ResolvedRefs says why.
            if let Some(uri) = &route.uri {
                match uri.bind(&ok.variables) {
                    Ok(_) => {}
                    Err(UriError::UndefinedVariable(_)) => {
                        for variable in uri.variables() {
                            if !ok.variables.contains_key(variable) {
                                entry.undefined.push(format!(
                                    "Stage {stage_name} has no variable `{variable}`"
                                ));
                            }
                        }
                    }
                    Err(UriError::Invalid(why)) => entry.unusable.push(format!(
                        "with the variables of Stage {stage_name}, the uri is unusable: {why}"
                    )),
                }
            }
            entry.served_by.push(stage_name.clone());
            let mut integration = route.integration.clone();
            if let (Integration::HttpProxy(proxy), Some(resolved)) =
                (&mut integration, &entry.backend)
            {
                // An unresolved Service still gets a (never-ready) backend: the route
                // answers 503 instead of disappearing into a 404.
                let key = match resolved {
                    Ok(key) => key.clone(),
                    Err(_) => backend::key(&entry.resource.meta.namespace, route.backend.as_ref()),
                };
                if let Some(b) = backends.get(&key) {
                    snapshot.backends.insert(key.clone(), b.clone());
                }
                proxy.backend = Some(key);
            }
            served.push(Route {
                source: source(Kind::ApiRoute, &entry.resource.meta),
                path: route.path.clone(),
                methods: route.methods.clone(),
                integration,
                throttle: route.throttle,
                api_key_required: entry.resource.spec.api_key_required,
                authorization,
            });
        }
        served.sort_by(|a, b| (&a.path, &a.source).cmp(&(&b.path, &b.source)));
        let route_count = served.len();
        let certificate_key = certificate.as_ref().map(|(key, cert)| {
            snapshot.certificates.insert(key.clone(), cert.clone());
            key.clone()
        });
        snapshot.stages.push(tollhouse_snapshot::Stage {
            source: source(Kind::Stage, meta),
            api: stage.resource.spec.api.clone(),
            hostnames: ok.hostnames.clone(),
            base_path: ok.base_path.clone(),
            variables: ok.variables.clone(),
            certificate: certificate_key,
            routes: served,
            api_type: ok.api_type,
            access_log: ok.access_log.clone(),
            throttle: ok.throttle,
            resource_policy: ok.resource_policy.clone(),
            api_key_source: match stage.resource.spec.api_key_source {
                None | Some(tollhouse_api::ApiKeySource::Header) => ApiKeySource::Header,
                Some(tollhouse_api::ApiKeySource::Authorizer) => ApiKeySource::Authorizer,
            },
        });
        statuses.insert(
            ObjectKey::new(Kind::Stage, &meta.namespace, &meta.name),
            Status::new(
                meta.generation,
                Ok(()),
                Ok(()),
                Ok(format!("serving {route_count} route(s)")),
            ),
        );
    }
    // Usage plans, against the Stages as served.
    let served_stages: HashMap<String, usage_plan::StageRoutes> = snapshot
        .stages
        .iter()
        .map(|s| {
            let routes = s
                .routes
                .iter()
                .flat_map(|r| {
                    let methods: Vec<String> = if r.methods.is_empty() {
                        vec!["ANY".to_string()]
                    } else {
                        r.methods.clone()
                    };
                    methods.into_iter().map(|m| (m, r.path.clone()))
                })
                .collect();
            (s.source.key(), usage_plan::StageRoutes { routes })
        })
        .collect();
    let stages_known: BTreeSet<String> = input
        .stages
        .iter()
        .map(|s| format!("{}/{}", s.meta.namespace, s.meta.name))
        .collect();
    let plans = usage_plan::translate(
        &input.usage_plans,
        &input.secrets,
        &served_stages,
        &stages_known,
    );
    snapshot.usage_plans = plans.plans;
    snapshot.api_keys = plans.keys;
    statuses.extend(plans.statuses);

    for stage in &stages {
        let meta = &stage.resource.meta;
        let key = ObjectKey::new(Kind::Stage, &meta.namespace, &meta.name);
        if statuses.contains_key(&key) {
            continue;
        }
        let accepted = stage.accepted.as_ref().map(|_| ()).map_err(Clone::clone);
        let refs = stage.certificate.as_ref().map(|_| ()).map_err(Clone::clone);
        statuses.insert(
            key,
            Status::new(meta.generation, accepted, refs, Ok(String::new())),
        );
    }

    for route in &routes {
        let meta = &route.resource.meta;
        let accepted = route.accepted.as_ref().map(|_| ()).map_err(Clone::clone);
        let refs = match (&route.authorizer, &route.backend) {
            (Some(Err(f)), _) => Err(f.clone()),
            (_, Some(Err(f))) => Err(f.clone()),
            _ if !route.unusable.is_empty() => {
                fail(Reason::InvalidIntegration, route.unusable.join("; "))
            }
            _ if !route.undefined.is_empty() => {
                fail(Reason::UndefinedStageVariable, route.undefined.join("; "))
            }
            _ => Ok(()),
        };
        let no_endpoints = match &route.backend {
            Some(Ok(key)) => backends.get(key).filter(|b| b.endpoints.is_empty()),
            _ => None,
        };
        let ready = if let Some(backend) = no_endpoints {
            fail(
                Reason::NoReadyEndpoints,
                format!(
                    "Service {} has no ready endpoints: requests get 503",
                    backend.source.name
                ),
            )
        } else if route.served_by.is_empty() {
            fail(
                Reason::NotServed,
                format!(
                    "no accepted Stage in namespace {} deploys API {}",
                    meta.namespace, route.resource.spec.api
                ),
            )
        } else {
            Ok(format!("served by Stage {}", route.served_by.join(", ")))
        };
        statuses.insert(
            ObjectKey::new(Kind::ApiRoute, &meta.namespace, &meta.name),
            Status::new(meta.generation, accepted, refs, ready),
        );
    }

    // Each Authorizer's users: the routes that resolved it and are served.
    let mut used_by: HashMap<&str, usize> = HashMap::new();
    for route in routes.iter().filter(|r| !r.served_by.is_empty()) {
        if let Some(Ok(key)) = &route.authorizer {
            *used_by.entry(key.as_str()).or_default() += 1;
        }
    }
    for (key, entry) in &authorizers {
        let meta = &entry.resource.meta;
        let accepted = entry.accepted.as_ref().map(|_| ()).map_err(Clone::clone);
        let mut ready = match used_by.get(key.as_str()).copied().unwrap_or(0) {
            0 => "used by no served route".to_string(),
            n => format!("used by {n} served route(s)"),
        };
        for note in &entry.notes {
            ready.push_str("; ");
            ready.push_str(note);
        }
        let (refs, ready) = match &entry.backend {
            Some((_, _, Err(f))) => (Err(f.clone()), Ok(ready)),
            Some((_, b, Ok(()))) if b.endpoints.is_empty() => (
                Ok(()),
                fail(
                    Reason::NoReadyEndpoints,
                    format!(
                        "Service {} has no ready endpoints: its routes answer 500 ({ready})",
                        b.source.name
                    ),
                ),
            ),
            _ => (Ok(()), Ok(ready)),
        };
        statuses.insert(
            ObjectKey::new(Kind::Authorizer, &meta.namespace, &meta.name),
            Status::new(meta.generation, accepted, refs, ready),
        );
    }

    Output { snapshot, statuses }
}
