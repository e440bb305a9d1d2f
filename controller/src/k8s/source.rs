//! Watches the API server and turns its objects into translate's [`Input`].
//!
//! One reflector per kind keeps a local cache (managed fields dropped, they are most of an
//! object's size); any event wakes the translate loop, which waits for a short quiet spell so a
//! burst of changes (a `kubectl apply` of many objects) gives one snapshot. Nothing is published
//! before every cache has its first full list: a partial view would withdraw routes.

use crate::convert;
use crate::model::{
    Input, Kind, Meta, ObjectKey, Resource, API_KEY_SECRET_TYPE, SIGV4_SECRET_TYPE, TLS_SECRET_TYPE,
};
use crate::reconcile::Reconciler;
use crate::server::Hub;
use crate::translate::Status;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource as KubeResource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tollhouse_api::{ApiRoute, Authorizer, Stage, UsagePlan};
use tracing::{info, warn};

/// Quiet time that ends a burst of changes, and the longest a burst may delay a translate.
const QUIET: Duration = Duration::from_millis(30);
const MAX_DELAY: Duration = Duration::from_millis(300);

/// The local caches of every watched kind.
#[derive(Clone)]
pub struct Stores {
    /// Stages.
    pub stages: Store<Stage>,
    /// ApiRoutes.
    pub routes: Store<ApiRoute>,
    /// Services.
    pub services: Store<Service>,
    /// EndpointSlices (v1 or v1beta1, as the server has).
    pub slices: Store<DynamicObject>,
    /// Secrets, one cache per type read: `kubernetes.io/tls`, `tollhouse.dev/api-key`, then
    /// `tollhouse.dev/sigv4-credentials`.
    pub secrets: Vec<Store<Secret>>,
    /// UsagePlans.
    pub usage_plans: Store<UsagePlan>,
    /// Authorizers.
    pub authorizers: Store<Authorizer>,
}

/// Statuses from the latest translate, for the status writer.
pub type Statuses = Arc<BTreeMap<ObjectKey, Status>>;

/// The EndpointSlice API the server offers: `discovery.k8s.io/v1`, else `v1beta1` (before
/// Kubernetes 1.21).
pub async fn endpoint_slice_resource(client: &Client) -> ApiResource {
    let version = match client.list_api_group_resources("discovery.k8s.io/v1").await {
        Ok(list) if list.resources.iter().any(|r| r.name == "endpointslices") => "v1",
        _ => "v1beta1",
    };
    info!(api_version = %format!("discovery.k8s.io/{version}"), "EndpointSlice API found by discovery");
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("discovery.k8s.io", version, "EndpointSlice"),
        "endpointslices",
    )
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: KubeResource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Starts a reflector per kind, over every namespace or only `namespace`; each event wakes
/// `trigger`.
pub async fn start(
    client: Client,
    hub: Arc<Hub>,
    trigger: Arc<Notify>,
    namespace: Option<&str>,
) -> Stores {
    let slices_resource = endpoint_slice_resource(&client).await;
    let (stages, w) = reflector::store();
    spawn(
        api::<Stage>(&client, namespace),
        w,
        &hub,
        &trigger,
        Kind::Stage,
    );
    let (routes, w) = reflector::store();
    spawn(
        api::<ApiRoute>(&client, namespace),
        w,
        &hub,
        &trigger,
        Kind::ApiRoute,
    );
    let (services, w) = reflector::store();
    spawn(
        api::<Service>(&client, namespace),
        w,
        &hub,
        &trigger,
        Kind::Service,
    );
    let w = Writer::new(slices_resource.clone());
    let slices = w.as_reader();
    // In the watched namespace only, like the other kinds: with `--watch-namespace` the
    // controller may hold nothing but a Role there.
    let slices_api = match namespace {
        Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &slices_resource),
        None => Api::<DynamicObject>::all_with(client.clone(), &slices_resource),
    };
    spawn(slices_api, w, &hub, &trigger, Kind::EndpointSlice);
    // A field selector takes one type: one watch per Secret type read.
    let mut secrets = Vec::new();
    for config in watch_configs(Kind::Secret) {
        let (store, w) = reflector::store();
        spawn_with(
            api::<Secret>(&client, namespace),
            w,
            &hub,
            &trigger,
            Kind::Secret,
            config,
        );
        secrets.push(store);
    }
    let (usage_plans, w) = reflector::store();
    spawn(
        api::<UsagePlan>(&client, namespace),
        w,
        &hub,
        &trigger,
        Kind::UsagePlan,
    );
    let (authorizers, w) = reflector::store();
    spawn(
        api::<Authorizer>(&client, namespace),
        w,
        &hub,
        &trigger,
        Kind::Authorizer,
    );
    Stores {
        stages,
        routes,
        services,
        slices,
        secrets,
        usage_plans,
        authorizers,
    }
}

/// What of a kind is watched, one watch per config: only the objects translate can use.
fn watch_configs(kind: Kind) -> Vec<watcher::Config> {
    match kind {
        Kind::Secret => [TLS_SECRET_TYPE, API_KEY_SECRET_TYPE, SIGV4_SECRET_TYPE]
            .iter()
            .map(|t| watcher::Config::default().fields(&format!("type={t}")))
            .collect(),
        Kind::EndpointSlice => {
            vec![watcher::Config::default().labels(convert::SERVICE_NAME_LABEL)]
        }
        Kind::ApiRoute | Kind::Authorizer | Kind::Service | Kind::Stage | Kind::UsagePlan => {
            vec![watcher::Config::default()]
        }
    }
}

fn spawn<K>(api: Api<K>, writer: Writer<K>, hub: &Arc<Hub>, trigger: &Arc<Notify>, kind: Kind)
where
    K: KubeResource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let config = watch_configs(kind).into_iter().next().unwrap_or_default();
    spawn_with(api, writer, hub, trigger, kind, config);
}

fn spawn_with<K>(
    api: Api<K>,
    writer: Writer<K>,
    hub: &Arc<Hub>,
    trigger: &Arc<Notify>,
    kind: Kind,
    config: watcher::Config,
) where
    K: KubeResource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Send + Sync,
{
    let hub = hub.clone();
    let trigger = trigger.clone();
    let by_generation = kind.translates_on_generation();
    tokio::spawn(async move {
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|o: &mut K| o.managed_fields_mut().clear());
        futures::pin_mut!(stream);
        let mut writer = writer;
        let mut seen: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    writer.apply_watcher_event(&event);
                    if relevant(&event, by_generation, &mut seen) {
                        trigger.notify_one();
                    }
                }
                Err(error) => {
                    hub.metrics.error("watch");
                    warn!(kind = kind.as_str(), %error, "watch failed; retrying with backoff");
                }
            }
        }
    });
}

/// Whether a watch event can change translate's input. `seen` keeps the last generation of
/// each object (by uid) when `by_generation`.
fn relevant<K: KubeResource>(
    event: &watcher::Event<K>,
    by_generation: bool,
    seen: &mut std::collections::HashMap<String, i64>,
) -> bool {
    let key = |o: &K| o.meta().uid.clone().unwrap_or_default();
    match event {
        watcher::Event::Apply(o) if by_generation => {
            let generation = o.meta().generation.unwrap_or(0);
            seen.insert(key(o), generation) != Some(generation)
        }
        watcher::Event::InitApply(o) => {
            if by_generation {
                seen.insert(key(o), o.meta().generation.unwrap_or(0));
            }
            false
        }
        watcher::Event::Delete(o) => {
            seen.remove(&key(o));
            true
        }
        watcher::Event::Init => false,
        watcher::Event::Apply(_) | watcher::Event::InitDone => true,
    }
}

/// Waits until every cache holds its first full list.
pub async fn wait_synced(stores: &Stores) -> Result<(), reflector::store::WriterDropped> {
    stores.stages.wait_until_ready().await?;
    stores.routes.wait_until_ready().await?;
    stores.services.wait_until_ready().await?;
    stores.slices.wait_until_ready().await?;
    for secrets in &stores.secrets {
        secrets.wait_until_ready().await?;
    }
    stores.usage_plans.wait_until_ready().await?;
    stores.authorizers.wait_until_ready().await?;
    Ok(())
}

fn meta<K: KubeResource>(object: &K) -> Meta {
    let m = object.meta();
    Meta {
        namespace: m.namespace.clone().unwrap_or_default(),
        name: m.name.clone().unwrap_or_default(),
        generation: m.generation.unwrap_or(1),
        created: m.creation_timestamp.clone(),
        seen: 0,
    }
}

/// Everything translate reads, from the caches.
pub fn input(stores: &Stores) -> Input {
    let mut input = Input::default();
    for s in stores.stages.state() {
        input.stages.push(Resource {
            meta: meta(s.as_ref()),
            spec: s.spec.clone(),
        });
    }
    for r in stores.routes.state() {
        input.routes.push(Resource {
            meta: meta(r.as_ref()),
            spec: r.spec.clone(),
        });
    }
    for s in stores.services.state() {
        input.services.push(Resource {
            meta: meta(s.as_ref()),
            spec: convert::service_ports(&s),
        });
    }
    for e in stores.slices.state() {
        let Ok(json) = serde_json::to_value(e.as_ref()) else {
            continue;
        };
        if let Some(spec) = convert::endpoint_slice(&json) {
            input.endpoint_slices.push(Resource {
                meta: meta(e.as_ref()),
                spec,
            });
        }
    }
    for s in stores.secrets.iter().flat_map(|store| store.state()) {
        let meta = meta(s.as_ref());
        input.secrets.push(Resource {
            meta,
            spec: std::sync::Arc::new(convert::secret_data(s.as_ref().clone())),
        });
    }
    for p in stores.usage_plans.state() {
        input.usage_plans.push(Resource {
            meta: meta(p.as_ref()),
            spec: p.spec.clone(),
        });
    }
    for a in stores.authorizers.state() {
        input.authorizers.push(Resource {
            meta: meta(a.as_ref()),
            spec: a.spec.clone(),
        });
    }
    input
}

/// The translate loop: waits for the caches, then translates after every burst of changes and
/// hands the statuses to the status writer. Ends when `stop` turns true.
pub async fn run(
    stores: Stores,
    trigger: Arc<Notify>,
    mut reconciler: Reconciler,
    statuses: watch::Sender<Statuses>,
    mut stop: watch::Receiver<bool>,
) {
    tokio::select! {
        synced = wait_synced(&stores) => if synced.is_err() { return },
        _ = stop.wait_for(|s| *s) => return,
    }
    info!("caches synced; translating");
    loop {
        let input = input(&stores);
        let result = reconciler.apply_input(&input);
        // The status writer wakes only when some status changed (the same map is the same Arc).
        statuses.send_if_modified(|current| {
            let changed = !Arc::ptr_eq(current, &result);
            *current = result;
            changed
        });
        tokio::select! {
            () = trigger.notified() => {}
            // A new UTC day: fresh SigV4 signing keys, though nothing else changed.
            () = tokio::time::sleep(crate::reconcile::until_next_day()) => continue,
            _ = stop.wait_for(|s| *s) => return,
        }
        let first = Instant::now();
        loop {
            tokio::select! {
                () = trigger.notified() => if first.elapsed() >= MAX_DELAY { break },
                () = tokio::time::sleep(QUIET) => break,
            }
        }
    }
}
