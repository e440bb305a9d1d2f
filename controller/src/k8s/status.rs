//! Writes status back to the API server (leader only): Accepted, ResolvedRefs, Programmed and
//! Ready with `observedGeneration`, by server-side apply on the status subresource, plus
//! Warning Events when an object is rejected.
//!
//! Programmed is True when every connected dataplane has applied a snapshot carrying the
//! object's current generation: the hub knows the first snapshot version that carried it and,
//! from the hash each dataplane reports, the version each one serves. Only what changed is
//! written, and `lastTransitionTime` moves only when a condition's status changes.

use super::source::{Statuses, Stores};
use super::FIELD_MANAGER;
use crate::model::{ObjectKey, StatusKind};
use crate::server::{first_version, DataplaneView, Hub};
use crate::translate::{PlanStatus, Status};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tollhouse_api::{
    ApiRoute, Authorizer, ConditionStatus, ConditionType, Reason, ResourceStatus, Stage,
    StageStatus, UsagePlan, UsagePlanStatus,
};
use tracing::{debug, info, warn};

/// Patches in flight at once.
const CONCURRENCY: usize = 16;
/// Quiet time before writing, so a burst of dataplane reports gives one round.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// Retry delay after a failed write.
const RETRY: Duration = Duration::from_secs(1);
/// How long a round waits for dataplanes still applying the latest snapshot.
const SETTLE: Duration = Duration::from_millis(250);
/// After this replica starts leading, dataplanes get this long to (re)connect before a
/// Programmed=True on the server is taken back: a restarted or new leader has seen no dataplane
/// yet, and dataplanes retry at most every 5 s.
const GRACE: Duration = Duration::from_secs(10);

/// Settings of the status writer.
#[derive(Clone, Debug)]
pub struct StatusConfig {
    /// The gateway's public URL, for the invoke URL of stages without host names.
    pub public_url: Option<String>,
    /// This replica's name, reported on Events.
    pub instance: String,
}

/// One condition as written (`lastTransitionTime` kept separately for comparison).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cond {
    kind: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: String,
}

/// The status an object should have.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Desired {
    generation: i64,
    conditions: Vec<Cond>,
    stage: Option<StageExtra>,
    /// A UsagePlan's Stages and key count (from translate).
    plan: Option<PlanStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct StageExtra {
    invoke_urls: Vec<String>,
    snapshot_version: Option<u64>,
    serving: u32,
    connected: u32,
}

/// What is known to be on the server: the desired status and each condition's transition time,
/// and what it was computed from.
#[derive(Clone, Debug)]
struct Written {
    uid: String,
    desired: Desired,
    transitions: BTreeMap<ConditionType, Time>,
    inputs: Option<Inputs>,
}

/// What a status is computed from. A round compares these first: when they are unchanged the
/// status is too, and nothing is built, cloned or compared further (most objects, most rounds).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Inputs {
    status: Status,
    programmed: Programmed,
    stage: Option<StageExtra>,
    /// The status was held back during the grace after becoming leader: compute it again.
    held: bool,
}

/// Where an object stands with the dataplanes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Programmed {
    /// Not in the served snapshot.
    NotInSnapshot,
    /// In it, but no dataplane serves a snapshot of this controller.
    NoDataplanes,
    /// Some connected dataplane serves an older snapshot.
    Pending,
    /// Every connected dataplane serves this generation.
    Done,
    /// Some connected dataplanes (how many) left this generation out of the snapshot they
    /// serve, for this reason: status says what the data path does.
    LeftOut(u32, Reason, String),
}

/// Whether some connected dataplane serves an older snapshot than the current one.
fn behind(view: &DataplaneView) -> bool {
    let Some((current, _)) = &view.current else {
        return false;
    };
    view.connected
        .iter()
        .any(|d| d.is_some_and(|applied| applied < *current))
}

/// Where an object (`key` at `generation`) with this first version stands with the dataplanes
/// of `view`.
fn programmed_state(
    key: &ObjectKey,
    generation: i64,
    first: Option<u64>,
    view: &DataplaneView,
) -> Programmed {
    if let Some(by) = view
        .left_out
        .get(key)
        .filter(|by| by.generation == generation)
    {
        return Programmed::LeftOut(by.dataplanes, by.reason, by.message.clone());
    }
    match first {
        None => Programmed::NotInSnapshot,
        Some(_) if view.connected.is_empty() => Programmed::NoDataplanes,
        Some(v) if view.connected.iter().all(|d| d.is_some_and(|a| a >= v)) => Programmed::Done,
        Some(_) => Programmed::Pending,
    }
}

/// Runs until `stop`; writes only while `leader` is true.
pub async fn run(
    client: Client,
    hub: Arc<Hub>,
    stores: Stores,
    mut statuses: watch::Receiver<Statuses>,
    mut leader: watch::Receiver<bool>,
    config: StatusConfig,
    mut stop: watch::Receiver<bool>,
) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: Some(config.instance.clone()),
        },
    );
    let mut changes = hub.subscribe_changes();
    let mut written: HashMap<ObjectKey, Written> = HashMap::new();
    let mut retry = false;
    let mut leading_since: Option<tokio::time::Instant> = None;
    let mut grace_pending = false;
    // The version of the snapshot served when this replica started leading.
    let mut inherited: Option<u64> = None;
    loop {
        let grace_end = leading_since.map_or_else(tokio::time::Instant::now, |t| t + GRACE);
        tokio::select! {
            r = statuses.changed() => if r.is_err() { return },
            r = changes.changed() => if r.is_err() { return },
            r = leader.changed() => if r.is_err() { return },
            () = tokio::time::sleep(RETRY), if retry => {}
            () = tokio::time::sleep_until(grace_end), if grace_pending => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::time::sleep(DEBOUNCE).await;
        // Mark everything seen, so `changed()` waits for the next change even on a standby.
        statuses.borrow_and_update();
        changes.borrow_and_update();
        if !*leader.borrow_and_update() {
            // Another replica writes meanwhile: forget what we think is on the server.
            written.clear();
            retry = false;
            leading_since = None;
            grace_pending = false;
            inherited = None;
            continue;
        }
        // Right after a publish the dataplanes are still fetching it: give them a moment, so
        // a change goes to Programmed in one write instead of Pending first and True after.
        let settle = tokio::time::Instant::now() + SETTLE;
        while behind(&hub.view()) {
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                () = tokio::time::sleep_until(settle) => break,
            }
        }
        changes.borrow_and_update();
        let current = statuses.borrow_and_update().clone();
        let since = *leading_since.get_or_insert_with(tokio::time::Instant::now);
        let grace = since.elapsed() < GRACE;
        // One more round when the grace ends, to take back what no dataplane serves.
        grace_pending = grace;
        let view = hub.view();
        if inherited.is_none() {
            inherited = view.current.as_ref().map(|(v, _)| *v);
        }
        retry = !write_round(
            &client,
            &hub,
            &stores,
            &recorder,
            &config,
            &current,
            &view,
            grace,
            inherited,
            &mut written,
        )
        .await;
    }
}

/// One pass over every object; returns false when some write failed.
#[allow(clippy::too_many_arguments)]
async fn write_round(
    client: &Client,
    hub: &Hub,
    stores: &Stores,
    recorder: &Recorder,
    config: &StatusConfig,
    statuses: &BTreeMap<ObjectKey, Status>,
    view: &DataplaneView,
    grace: bool,
    inherited: Option<u64>,
    written: &mut HashMap<ObjectKey, Written>,
) -> bool {
    written.retain(|key, _| statuses.contains_key(key));
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let generations = hub.generations();
    let mut jobs = Vec::new();
    for (key, status) in statuses {
        // Every kind with a status is handled here: a new one does not compile until it is.
        let Some(status_kind) = key.kind.status() else {
            continue;
        };
        let stored = match status_kind {
            StatusKind::Stage => stores
                .stages
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(Stored::Stage),
            StatusKind::ApiRoute => stores
                .routes
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(Stored::ApiRoute),
            StatusKind::UsagePlan => stores
                .usage_plans
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(Stored::UsagePlan),
            StatusKind::Authorizer => stores
                .authorizers
                .get(&ObjectRef::new(&key.name).within(&key.namespace))
                .map(Stored::Authorizer),
        };
        let Some(stored) = stored else { continue };
        let uid = match &stored {
            Stored::Stage(s) => s.meta().uid.clone(),
            Stored::ApiRoute(r) => r.meta().uid.clone(),
            Stored::UsagePlan(p) => p.meta().uid.clone(),
            Stored::Authorizer(a) => a.meta().uid.clone(),
        };
        let Some(uid) = uid else { continue };
        let first = first_version(&generations, key, status.observed_generation);
        let programmed = programmed_state(key, status.observed_generation, first, view);
        let extra = match &stored {
            Stored::Stage(s) => Some(stage_extra(&s.spec, view, config)),
            Stored::ApiRoute(_) | Stored::UsagePlan(_) | Stored::Authorizer(_) => None,
        };
        if let Some(w) = written.get(key) {
            let unchanged = w.uid == uid
                && w.inputs.as_ref().is_some_and(|i| {
                    !i.held && i.programmed == programmed && i.stage == extra && i.status == *status
                });
            if unchanged {
                continue;
            }
        }
        let mut desired = desire(status, programmed.clone(), extra.clone());
        let base = match written.get(key) {
            Some(w) if w.uid == uid => Some(w.clone()),
            _ => {
                let on_server = match &stored {
                    Stored::Stage(o) => o.status.as_ref().map(|s| {
                        let extra = StageExtra {
                            invoke_urls: s.invoke_urls.clone(),
                            snapshot_version: s.snapshot_version,
                            serving: s.serving_dataplanes.unwrap_or(0),
                            connected: s.connected_dataplanes.unwrap_or(0),
                        };
                        from_server(s.observed_generation, &s.conditions, Some(extra), None)
                    }),
                    Stored::ApiRoute(o) => o
                        .status
                        .as_ref()
                        .map(|s| from_server(s.observed_generation, &s.conditions, None, None)),
                    Stored::Authorizer(o) => o
                        .status
                        .as_ref()
                        .map(|s| from_server(s.observed_generation, &s.conditions, None, None)),
                    Stored::UsagePlan(o) => o.status.as_ref().map(|s| {
                        let plan = PlanStatus {
                            stages: s.stages.clone(),
                            keys: s.keys.unwrap_or(0),
                        };
                        from_server(s.observed_generation, &s.conditions, None, Some(plan))
                    }),
                };
                on_server.map(|(desired, transitions)| Written {
                    uid: uid.clone(),
                    desired,
                    transitions,
                    inputs: None,
                })
            }
        };
        if let Some(b) = &base {
            keep_inherited_version(&b.desired, &mut desired, inherited);
        }
        let mut held = false;
        if grace {
            if let Some(b) = &base {
                let before = desired.clone();
                hold_while_dataplanes_reconnect(&b.desired, &mut desired);
                held = desired != before;
            }
        }
        let inputs = Inputs {
            status: status.clone(),
            programmed,
            stage: extra,
            held,
        };
        if let Some(b) = base.as_ref().filter(|b| b.desired == desired) {
            let mut b = b.clone();
            b.inputs = Some(inputs);
            written.insert(key.clone(), b);
            continue;
        }
        let reference = match &stored {
            Stored::Stage(o) => o.object_ref(&()),
            Stored::ApiRoute(o) => o.object_ref(&()),
            Stored::UsagePlan(o) => o.object_ref(&()),
            Stored::Authorizer(o) => o.object_ref(&()),
        };
        let mut transitions = BTreeMap::new();
        for c in &desired.conditions {
            let kept = base.as_ref().and_then(|b| {
                let before = b.desired.conditions.iter().find(|p| p.kind == c.kind)?;
                if before.status == c.status {
                    b.transitions.get(&c.kind).cloned()
                } else {
                    None
                }
            });
            transitions.insert(c.kind, kept.unwrap_or_else(|| now.clone()));
        }
        let events = new_rejections(base.as_ref().map(|b| &b.desired), &desired);
        jobs.push((
            key.clone(),
            Written {
                uid,
                desired,
                transitions,
                inputs: Some(inputs),
            },
            reference,
            events,
        ));
    }
    if jobs.is_empty() {
        return true;
    }
    debug!(patches = jobs.len(), "writing status");
    let results: Vec<(ObjectKey, Option<Written>)> = futures::stream::iter(jobs)
        .map(|(key, w, reference, events)| async move {
            let ok = patch(client, &key, &w).await;
            match ok {
                Ok(()) => {
                    hub.metrics.status_patches.inc();
                    for c in events {
                        warn!(object.kind = %key.kind, object.namespace = %key.namespace, object.name = %key.name,
                              condition = %c.kind, reason = %c.reason, message = %c.message, "object rejected");
                        publish_event(recorder, hub, &reference, &c).await;
                    }
                    (key, Some(w))
                }
                Err(kube::Error::Api(e)) if e.code == 404 => (key, None),
                Err(error) => {
                    hub.metrics.error("status_patch");
                    warn!(object.kind = %key.kind, object.namespace = %key.namespace, object.name = %key.name,
                          %error, "status write failed; will retry");
                    (key, None)
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut all_ok = true;
    for (key, w) in results {
        match w {
            Some(w) => {
                written.insert(key, w);
            }
            None => {
                written.remove(&key);
                all_ok = false;
            }
        }
    }
    all_ok
}

/// What the server holds, in the typed form. A condition of a type this build does not know is
/// skipped; a reason it does not know reads as `Unknown`, which never equals what is desired,
/// so it is rewritten.
fn from_server(
    generation: Option<i64>,
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    stage: Option<StageExtra>,
    plan: Option<PlanStatus>,
) -> (Desired, BTreeMap<ConditionType, Time>) {
    let mut conds = Vec::with_capacity(conditions.len());
    let mut transitions = BTreeMap::new();
    for c in conditions {
        let Some(kind) = ConditionType::from_name(&c.type_) else {
            continue;
        };
        conds.push(Cond {
            kind,
            status: ConditionStatus::from_name(&c.status).unwrap_or(ConditionStatus::Unknown),
            reason: Reason::from_name(&c.reason).unwrap_or(Reason::Unknown),
            message: c.message.clone(),
        });
        transitions.insert(kind, c.last_transition_time.clone());
    }
    (
        Desired {
            generation: generation.unwrap_or(0),
            conditions: conds,
            stage,
            plan,
        },
        transitions,
    )
}

fn cond(
    kind: ConditionType,
    status: ConditionStatus,
    reason: Reason,
    message: impl Into<String>,
) -> Cond {
    Cond {
        kind,
        status,
        reason,
        message: message.into(),
    }
}

/// The conditions: translate's Accepted and ResolvedRefs, then Programmed, then Ready folded
/// from translate's Ready and Programmed.
fn desire(status: &Status, programmed: Programmed, stage: Option<StageExtra>) -> Desired {
    // Messages carry no counts or versions: they would rewrite every object on every publish.
    use ConditionStatus::{False, True};
    let programmed = match programmed {
        Programmed::NotInSnapshot => cond(
            ConditionType::Programmed,
            False,
            Reason::NotProgrammed,
            "the object is not part of the served snapshot; see Ready",
        ),
        Programmed::NoDataplanes => cond(
            ConditionType::Programmed,
            False,
            Reason::NoDataplanes,
            "no dataplane is connected to the controller",
        ),
        Programmed::Done => cond(
            ConditionType::Programmed,
            True,
            Reason::Programmed,
            "every connected dataplane serves this generation",
        ),
        Programmed::Pending => cond(
            ConditionType::Programmed,
            False,
            Reason::Pending,
            "waiting for the connected dataplanes to apply this generation",
        ),
        Programmed::LeftOut(dataplanes, reason, ref message) => cond(
            ConditionType::Programmed,
            False,
            reason,
            format!("{dataplanes} connected dataplane(s) left it out: {message}"),
        ),
    };
    let mut conditions: Vec<Cond> = Vec::with_capacity(4);
    let mut ready = None;
    for c in &status.conditions {
        let c = cond(c.kind, c.status, c.reason, c.message.clone());
        if c.kind == ConditionType::Ready {
            ready = Some(c);
        } else {
            conditions.push(c);
        }
    }
    let ready = match ready {
        Some(r) if r.status == True && programmed.status != True => cond(
            ConditionType::Ready,
            False,
            programmed.reason,
            programmed.message.clone(),
        ),
        Some(r) => r,
        None => cond(ConditionType::Ready, False, Reason::Unknown, ""),
    };
    conditions.push(programmed);
    conditions.push(ready);
    Desired {
        generation: status.observed_generation,
        conditions,
        stage,
        plan: status.plan.clone(),
    }
}

/// A Stage's invoke URLs and dataplane counts.
fn stage_extra(
    spec: &tollhouse_api::StageSpec,
    view: &DataplaneView,
    config: &StatusConfig,
) -> StageExtra {
    let base = spec.base_path.as_deref().unwrap_or("/");
    let base = if base.starts_with('/') {
        base.to_string()
    } else {
        format!("/{base}")
    };
    let scheme = if spec.tls.is_some() { "https" } else { "http" };
    let mut invoke_urls: Vec<String> = spec
        .hostnames
        .iter()
        .map(|h| format!("{scheme}://{}{base}", h.to_ascii_lowercase()))
        .collect();
    if invoke_urls.is_empty() {
        if let Some(url) = &config.public_url {
            invoke_urls.push(format!("{}{base}", url.trim_end_matches('/')));
        }
    }
    let current = view.current.as_ref().map(|(v, _)| *v);
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    StageExtra {
        invoke_urls,
        snapshot_version: current,
        serving: count(
            view.connected
                .iter()
                .filter(|d| d.is_some() && **d == current)
                .count(),
        ),
        connected: count(view.connected.len()),
    }
}

/// During the grace after becoming leader, keeps what the server says about Programmed (and the
/// Ready it implies, and a Stage's dataplane counts) when the only news is that no dataplane
/// has reported yet.
fn hold_while_dataplanes_reconnect(before: &Desired, desired: &mut Desired) {
    use ConditionType::{Programmed, Ready};
    if before.generation != desired.generation {
        return;
    }
    let reconnecting = |r: Reason| matches!(r, Reason::NoDataplanes | Reason::Pending);
    let waiting = desired.conditions.iter().any(|c| {
        c.kind == Programmed && c.status == ConditionStatus::False && reconnecting(c.reason)
    });
    let was_programmed = before
        .conditions
        .iter()
        .any(|c| c.kind == Programmed && c.status == ConditionStatus::True);
    if waiting && was_programmed {
        for kind in [Programmed, Ready] {
            let old = before.conditions.iter().find(|c| c.kind == kind);
            let new = desired.conditions.iter_mut().find(|c| c.kind == kind);
            if let (Some(old), Some(new)) = (old, new) {
                // Ready only if nothing but Programmed was holding it back.
                if kind == Programmed || reconnecting(new.reason) {
                    *new = old.clone();
                }
            }
        }
    }
    if let (Some(old), Some(new)) = (&before.stage, &mut desired.stage) {
        if new.connected < old.connected {
            new.connected = old.connected;
            new.serving = old.serving;
        }
    }
}

/// A replica that starts leading publishes the snapshot it starts with under a version of its
/// own (a publish time), usually the very content the previous leader served: the dataplanes
/// already serving it are sent nothing and keep reporting the old version. While the current
/// snapshot is that first one (`inherited`), a Stage keeps the version it already shows, so a
/// restart rewrites no Stage; the next snapshot goes out with its own version.
fn keep_inherited_version(before: &Desired, desired: &mut Desired, inherited: Option<u64>) {
    if let (Some(old), Some(new)) = (&before.stage, &mut desired.stage) {
        if old.snapshot_version.is_some()
            && new.snapshot_version.is_some()
            && new.snapshot_version == inherited
        {
            new.snapshot_version = old.snapshot_version;
        }
    }
}

/// Conditions that turned False with a reason not reported before (an Event each); Ready is
/// skipped when it only repeats another condition or waits for dataplanes.
fn new_rejections(before: Option<&Desired>, after: &Desired) -> Vec<Cond> {
    let mut out: Vec<Cond> = Vec::new();
    for c in &after.conditions {
        if c.status != ConditionStatus::False || c.kind == ConditionType::Programmed {
            continue;
        }
        if matches!(
            c.reason,
            Reason::Pending | Reason::NoDataplanes | Reason::NotProgrammed
        ) {
            continue;
        }
        if c.kind == ConditionType::Ready && out.iter().any(|o| o.reason == c.reason) {
            continue;
        }
        let seen = before.is_some_and(|b| {
            b.generation == after.generation
                && b.conditions.iter().any(|p| {
                    p.kind == c.kind
                        && p.status == ConditionStatus::False
                        && p.reason == c.reason
                        && p.message == c.message
                })
        });
        if !seen {
            out.push(c.clone());
        }
    }
    out
}

/// The cached object a status is written to, one variant per [`StatusKind`].
enum Stored {
    Stage(Arc<Stage>),
    ApiRoute(Arc<ApiRoute>),
    UsagePlan(Arc<UsagePlan>),
    Authorizer(Arc<Authorizer>),
}

/// A server-side apply of the status subresource: the typed status of the kind.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusPatch<S> {
    api_version: &'static str,
    kind: &'static str,
    status: S,
}

async fn patch(client: &Client, key: &ObjectKey, w: &Written) -> Result<(), kube::Error> {
    let generation = w.desired.generation;
    let conditions: Vec<_> = w
        .desired
        .conditions
        .iter()
        .map(|c| {
            tollhouse_api::condition(
                c.kind,
                c.status,
                c.reason,
                c.message.clone(),
                generation,
                w.transitions
                    .get(&c.kind)
                    .cloned()
                    .unwrap_or_else(|| Time(k8s_openapi::jiff::Timestamp::now())),
            )
        })
        .collect();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let Some(status_kind) = key.kind.status() else {
        return Ok(());
    };
    match status_kind {
        StatusKind::Stage => {
            let extra = w.desired.stage.clone().unwrap_or(StageExtra {
                invoke_urls: Vec::new(),
                snapshot_version: None,
                serving: 0,
                connected: 0,
            });
            let body = StatusPatch {
                api_version: tollhouse_api::API_VERSION,
                kind: status_kind.kind().as_str(),
                status: StageStatus {
                    conditions,
                    observed_generation: Some(generation),
                    invoke_urls: extra.invoke_urls,
                    snapshot_version: extra.snapshot_version,
                    serving_dataplanes: Some(extra.serving),
                    connected_dataplanes: Some(extra.connected),
                },
            };
            Api::<Stage>::namespaced(client.clone(), &key.namespace)
                .patch_status(&key.name, &params, &Patch::Apply(body))
                .await
                .map(|_| ())
        }
        StatusKind::ApiRoute | StatusKind::Authorizer => {
            let body = StatusPatch {
                api_version: tollhouse_api::API_VERSION,
                kind: status_kind.kind().as_str(),
                status: ResourceStatus {
                    conditions,
                    observed_generation: Some(generation),
                },
            };
            let patch = Patch::Apply(body);
            if status_kind == StatusKind::Authorizer {
                Api::<Authorizer>::namespaced(client.clone(), &key.namespace)
                    .patch_status(&key.name, &params, &patch)
                    .await
                    .map(|_| ())
            } else {
                Api::<ApiRoute>::namespaced(client.clone(), &key.namespace)
                    .patch_status(&key.name, &params, &patch)
                    .await
                    .map(|_| ())
            }
        }
        StatusKind::UsagePlan => {
            let plan = w.desired.plan.clone().unwrap_or_default();
            let body = StatusPatch {
                api_version: tollhouse_api::API_VERSION,
                kind: status_kind.kind().as_str(),
                status: UsagePlanStatus {
                    conditions,
                    observed_generation: Some(generation),
                    stages: plan.stages,
                    keys: Some(plan.keys),
                },
            };
            Api::<UsagePlan>::namespaced(client.clone(), &key.namespace)
                .patch_status(&key.name, &params, &Patch::Apply(body))
                .await
                .map(|_| ())
        }
    }
}

async fn publish_event(recorder: &Recorder, hub: &Hub, reference: &ObjectReference, c: &Cond) {
    let note: String = c.message.chars().take(1000).collect();
    let event = Event {
        type_: EventType::Warning,
        reason: c.reason.as_str().to_string(),
        note: Some(format!("{}: {note}", c.kind)),
        action: "Translate".into(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, reference).await {
        hub.metrics.error("event");
        info!(%error, "could not record an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use crate::translate::Condition;
    use serde_json::json;

    /// A condition from its names, as they appear in status.
    pub(super) fn named(kind: &str, status: &str, reason: &str, message: &str) -> Cond {
        cond(
            ConditionType::from_name(kind).unwrap(),
            ConditionStatus::from_name(status).unwrap(),
            Reason::from_name(reason).unwrap(),
            message,
        )
    }

    fn typed(kind: &str, status: &str, reason: &str, message: &str) -> Condition {
        let c = named(kind, status, reason, message);
        Condition {
            kind: c.kind,
            status: c.status,
            reason: c.reason,
            message: c.message,
        }
    }

    fn status(ready: (&'static str, &'static str)) -> Status {
        Status {
            observed_generation: 3,
            conditions: vec![
                typed("Accepted", "True", "Accepted", "ok"),
                typed("ResolvedRefs", "True", "ResolvedRefs", "ok"),
                typed("Ready", ready.0, ready.1, "m"),
            ],
            plan: None,
        }
    }

    fn config() -> StatusConfig {
        StatusConfig {
            public_url: Some("https://gw.example/".into()),
            instance: "t".into(),
        }
    }

    fn published(hub: &Hub) {
        let snapshot = tollhouse_snapshot::Snapshot {
            stages: vec![tollhouse_snapshot::Stage {
                source: tollhouse_snapshot::SourceRef {
                    kind: "Stage".into(),
                    namespace: "ns".into(),
                    name: "prod".into(),
                    generation: 3,
                },
                api: "pets".into(),
                hostnames: vec![],
                base_path: "/v1".into(),
                variables: BTreeMap::new(),
                certificate: None,
                routes: vec![],
                api_type: Default::default(),
                access_log: None,
                throttle: None,
                api_key_source: Default::default(),
                resource_policy: None,
            }],
            ..Default::default()
        };
        hub.publish_at(snapshot, 50).unwrap();
    }

    fn kinds(d: &Desired) -> Vec<(&str, &str, &str)> {
        d.conditions
            .iter()
            .map(|c| (c.kind.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn ready_waits_for_programmed_and_stages_show_where_they_are_served() {
        let hub = Hub::new();
        published(&hub);
        let key = ObjectKey::new(Kind::Stage, "ns", "prod");
        let first = hub.first_version(&key, 3);
        assert_eq!(first, Some(50));
        let spec: tollhouse_api::StageSpec =
            serde_json::from_value(json!({"api": "pets", "basePath": "/v1"})).unwrap();
        let view = |connected: Vec<Option<u64>>| DataplaneView {
            current: Some((50, "h".into())),
            connected,
            left_out: Default::default(),
        };
        let ready = status(("True", "Ready"));
        let none = programmed_state(&key, 3, first, &view(vec![]));
        assert_eq!(
            kinds(&desire(&ready, none, None)),
            vec![
                ("Accepted", "True", "Accepted"),
                ("ResolvedRefs", "True", "ResolvedRefs"),
                ("Programmed", "False", "NoDataplanes"),
                ("Ready", "False", "NoDataplanes")
            ]
        );
        let behind = programmed_state(&key, 3, first, &view(vec![Some(40), Some(50)]));
        assert_eq!(
            kinds(&desire(&ready, behind, None))[2],
            ("Programmed", "False", "Pending")
        );
        let all = view(vec![Some(50), Some(50)]);
        let d = desire(&ready, programmed_state(&key, 3, first, &all), None);
        assert_eq!(
            kinds(&d)[2..],
            [
                ("Programmed", "True", "Programmed"),
                ("Ready", "True", "Ready")
            ]
        );
        let stage = stage_extra(&spec, &all, &config());
        assert_eq!(stage.invoke_urls, vec!["https://gw.example/v1".to_string()]);
        assert_eq!(
            (stage.snapshot_version, stage.serving, stage.connected),
            (Some(50), 2, 2)
        );
        // An object not in the snapshot is not programmed, whatever the dataplanes do.
        let gone = ObjectKey::new(Kind::ApiRoute, "ns", "gone");
        let state = programmed_state(&gone, 3, hub.first_version(&gone, 3), &all);
        let d = desire(&status(("False", "NotServed")), state, None);
        assert_eq!(
            kinds(&d)[2..],
            [
                ("Programmed", "False", "NotProgrammed"),
                ("Ready", "False", "NotServed")
            ]
        );
    }

    /// A route with an undefined stage variable is in the snapshot (its calls answer 500, as
    /// AWS's): Programmed turns True with the dataplanes, Ready stays False with the reason.
    #[test]
    fn served_but_unresolved_is_programmed_and_not_ready() {
        let mut unresolved = status(("False", "UndefinedStageVariable"));
        unresolved.conditions[1] = typed(
            "ResolvedRefs",
            "False",
            "UndefinedStageVariable",
            "Stage ns/prod has no variable `host`",
        );
        let d = desire(&unresolved, Programmed::Done, None);
        assert_eq!(
            kinds(&d)[1..],
            [
                ("ResolvedRefs", "False", "UndefinedStageVariable"),
                ("Programmed", "True", "Programmed"),
                ("Ready", "False", "UndefinedStageVariable")
            ]
        );
        // Reconnecting dataplanes do not bring back an old Ready=True.
        let before = desire(&status(("True", "Ready")), Programmed::Done, None);
        let mut after = desire(&unresolved, Programmed::NoDataplanes, None);
        hold_while_dataplanes_reconnect(&before, &mut after);
        assert_eq!(
            kinds(&after)[3],
            ("Ready", "False", "UndefinedStageVariable")
        );
    }

    /// A dataplane that left the object out of the snapshot it serves turns Programmed, and so
    /// Ready, False with the dataplane's reason, even when every dataplane serves the current
    /// snapshot: status never says more than the data path does.
    #[test]
    fn what_a_dataplane_left_out_is_not_programmed() {
        let key = ObjectKey::new(Kind::Stage, "ns", "prod");
        let mut view = DataplaneView {
            current: Some((50, "h".into())),
            connected: vec![Some(50), Some(50)],
            left_out: Default::default(),
        };
        view.left_out.insert(
            key.clone(),
            crate::server::LeftOutBy {
                generation: 3,
                dataplanes: 1,
                reason: Reason::InvalidCertificate,
                message: "stage ns/prod left out: certificate ns/web unavailable".into(),
            },
        );
        let state = programmed_state(&key, 3, Some(50), &view);
        let d = desire(&status(("True", "Ready")), state, None);
        assert_eq!(
            kinds(&d)[2..],
            [
                ("Programmed", "False", "InvalidCertificate"),
                ("Ready", "False", "InvalidCertificate")
            ]
        );
        assert!(d.conditions[3]
            .message
            .contains("1 connected dataplane(s) left it out"));
        // A report about an older generation says nothing about this one.
        assert_eq!(programmed_state(&key, 4, Some(50), &view), Programmed::Done);
    }

    #[test]
    fn a_rejection_is_announced_once() {
        let mut before = Desired {
            generation: 3,
            conditions: vec![named("Accepted", "True", "Accepted", "ok")],
            stage: None,
            plan: None,
        };
        let after = Desired {
            generation: 3,
            conditions: vec![
                named("Accepted", "False", "Conflict", "older route"),
                named("Programmed", "False", "NotProgrammed", "x"),
                named("Ready", "False", "Conflict", "older route"),
            ],
            stage: None,
            plan: None,
        };
        let events = new_rejections(Some(&before), &after);
        assert_eq!(
            events.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
            vec!["Accepted"]
        );
        assert!(new_rejections(Some(&after), &after).is_empty());
        // Waiting for dataplanes is no rejection.
        before.conditions = vec![named("Ready", "False", "Pending", "w")];
        assert!(new_rejections(None, &before).is_empty());
    }
}

#[cfg(test)]
mod grace_tests {
    use super::tests::named;
    use super::*;

    fn desired(generation: i64, programmed: (&str, &str), ready: (&str, &str)) -> Desired {
        Desired {
            generation,
            conditions: vec![
                named("Accepted", "True", "Accepted", ""),
                named("Programmed", programmed.0, programmed.1, ""),
                named("Ready", ready.0, ready.1, ""),
            ],
            stage: None,
            plan: None,
        }
    }

    /// A restarted leader does not take Programmed back before dataplanes could reconnect, but
    /// a new generation or a real rejection goes through at once.
    #[test]
    fn programmed_is_held_while_dataplanes_reconnect() {
        let before = desired(1, ("True", "Programmed"), ("True", "Ready"));
        let mut now = desired(1, ("False", "NoDataplanes"), ("False", "NoDataplanes"));
        hold_while_dataplanes_reconnect(&before, &mut now);
        assert_eq!(now, before);
        let mut edited = desired(2, ("False", "NoDataplanes"), ("False", "NoDataplanes"));
        let want = edited.clone();
        hold_while_dataplanes_reconnect(&before, &mut edited);
        assert_eq!(edited, want);
        let mut rejected = desired(1, ("False", "Pending"), ("False", "NoReadyEndpoints"));
        hold_while_dataplanes_reconnect(&before, &mut rejected);
        assert_eq!(rejected.conditions[1].status, ConditionStatus::True);
        assert_eq!(rejected.conditions[2].reason, Reason::NoReadyEndpoints);
    }

    fn stage(version: Option<u64>, serving: u32) -> Desired {
        Desired {
            stage: Some(StageExtra {
                invoke_urls: vec!["http://gw.example/prod".into()],
                snapshot_version: version,
                serving,
                connected: 1,
            }),
            ..desired(1, ("True", "Programmed"), ("True", "Ready"))
        }
    }

    /// A restarted leader republishes the same content as version 200: the Stage keeps the
    /// 100 it shows (nothing to write), also when its counts change, until version 300.
    #[test]
    fn a_new_leader_keeps_a_stages_version_until_it_publishes_a_change() {
        let on_server = stage(Some(100), 1);
        let mut now = stage(Some(200), 1);
        keep_inherited_version(&on_server, &mut now, Some(200));
        assert_eq!(now, on_server);
        let mut counts = stage(Some(200), 0);
        keep_inherited_version(&on_server, &mut counts, Some(200));
        assert_eq!(counts, stage(Some(100), 0));
        let mut next = stage(Some(300), 1);
        keep_inherited_version(&on_server, &mut next, Some(200));
        assert_eq!(next, stage(Some(300), 1));
        // A Stage that shows no version yet gets the current one.
        let mut first = stage(Some(200), 1);
        keep_inherited_version(&stage(None, 1), &mut first, Some(200));
        assert_eq!(first, stage(Some(200), 1));
    }
}
