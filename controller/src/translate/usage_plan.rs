//! Usage plans and their API keys (reference §2).
//!
//! A plan covers Stages of its namespace and subscribes the api-key Secrets (type
//! `tollhouse.dev/api-key`) its `apiKeySelector` matches. The snapshot carries each key's
//! SHA-256, never its value, and the plans it is in, oldest first: on a Stage, the dataplane
//! gives a key to the first of its plans that covers the Stage. So the oldest plan wins a key
//! two plans claim on one Stage (AWS allows one plan per Stage per key); the younger plan keeps
//! serving its other keys and Stages, and says so with ResolvedRefs=False, reason Conflict.
//!
//! Messages name Secrets, never key values.

use super::conditions::{fail, Failure, Status};
use super::conflict::{by_age, holder};
use super::throttle;
use crate::model::{Kind, ObjectKey, Resource, SecretData};
use kube::core::{Selector, SelectorExt};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tollhouse_api::UsagePlanSpec;
use tollhouse_snapshot::{ApiKey, PlanStage, Quota, QuotaPeriod, Reason, UsagePlan};

/// The annotation that disables a key when `"false"` (AWS `enabled`).
pub const ENABLED_ANNOTATION: &str = "tollhouse.dev/enabled";
/// The Secret data key holding the API key's value.
pub const KEY_FIELD: &str = "key";
/// AWS's limits on an API key's value: 20 to 128 alphanumeric characters.
const KEY_MIN: usize = 20;
const KEY_MAX: usize = 128;

/// A usage plan's own status fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanStatus {
    /// The Stages it serves (names, in its namespace).
    pub stages: Vec<String>,
    /// Subscribed, enabled keys with a well-formed value.
    pub keys: u32,
}

/// A Stage as plans see it: whether it is served, and its route keys.
pub(super) struct StageRoutes {
    /// `(method, path)` of every route served on the Stage; method `ANY` for any method.
    pub routes: BTreeSet<(String, String)>,
}

/// What usage plans give the snapshot and the statuses.
pub(super) struct Plans {
    pub plans: Vec<UsagePlan>,
    pub keys: Vec<ApiKey>,
    pub statuses: Vec<(ObjectKey, Status)>,
}

/// A key as read from its Secret.
struct KeyRead<'a> {
    namespace: &'a str,
    /// `namespace/name`.
    id: String,
    labels: &'a BTreeMap<String, String>,
    /// The SHA-256 of its value, or why it is left out.
    sha256: Result<String, String>,
}

/// Translates every plan against the served Stages (`namespace/name` → routes) and the Stage
/// objects that exist at all (`stages_known`, for a better message).
pub(super) fn translate(
    plans: &[Resource<UsagePlanSpec>],
    secrets: &[Resource<Arc<SecretData>>],
    served: &HashMap<String, StageRoutes>,
    stages_known: &BTreeSet<String>,
) -> Plans {
    // At 100,000 keys this loop is most of a translation: keys are referred to by their
    // index in `keys`, and nothing is allocated per key that the snapshot does not keep.
    let keys = read_keys(secrets);
    // Per key (by index): the plans it is in, oldest first.
    let mut key_plans: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
    // Stage → key index → the plan holding the key there (by its place in `holders`).
    let mut claims: HashMap<String, HashMap<usize, usize>> = HashMap::new();
    let mut holders: Vec<String> = Vec::new();
    let mut out = Plans {
        plans: Vec::new(),
        keys: Vec::new(),
        statuses: Vec::new(),
    };
    for plan in by_age(plans) {
        let meta = &plan.meta;
        let me = holder(meta);
        let ordinal = holders.len();
        holders.push(me.clone());
        let object = ObjectKey::new(Kind::UsagePlan, &meta.namespace, &meta.name);
        let checked = match check(&plan.spec, meta) {
            Ok(c) => c,
            Err(f) => {
                out.statuses.push((
                    object,
                    Status::new(meta.generation, Err(f), Ok(()), Ok(String::new())),
                ));
                continue;
            }
        };
        let mut problems: Vec<(Reason, String)> = Vec::new();
        let mut conflicts: Vec<String> = Vec::new();
        let mut stages = Vec::new();
        for api_stage in &plan.spec.api_stages {
            let stage_key = format!("{}/{}", meta.namespace, api_stage.stage);
            let Some(routes) = served.get(&stage_key) else {
                problems.push((
                    Reason::StageNotFound,
                    if stages_known.contains(&stage_key) {
                        format!("Stage {stage_key} is not served (see its conditions)")
                    } else {
                        format!("Stage {stage_key} does not exist")
                    },
                ));
                continue;
            };
            let mut route_throttles = BTreeMap::new();
            for (route_key, limit) in &api_stage.throttle {
                let Some((method, path)) = route_key.split_once(' ') else {
                    problems.push((
                        Reason::RouteNotFound,
                        format!(
                            "route key `{route_key}` on Stage {stage_key} is not `METHOD /path`"
                        ),
                    ));
                    continue;
                };
                let method = method.to_ascii_uppercase();
                let found = routes.routes.contains(&(method.clone(), path.to_string()))
                    || (method != "ANY"
                        && routes
                            .routes
                            .contains(&("ANY".to_string(), path.to_string())));
                if !found {
                    problems.push((
                        Reason::RouteNotFound,
                        format!("Stage {stage_key} serves no route `{method} {path}`"),
                    ));
                    continue;
                }
                // Checked with the plan: a bad limit is not accepted at all.
                if let Ok(Some(t)) = throttle::check(Some(limit)) {
                    route_throttles.insert(format!("{method} {path}"), t);
                }
            }
            stages.push(PlanStage {
                stage: stage_key,
                route_throttles,
            });
        }
        stages.sort_by(|a, b| a.stage.cmp(&b.stage));
        let mut subscribed = 0u32;
        for stage in &stages {
            claims.entry(stage.stage.clone()).or_default();
        }
        if let Some(selector) = &checked.selector {
            for (index, key) in keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.namespace == meta.namespace && selector.matches(k.labels))
            {
                match &key.sha256 {
                    Ok(_) => {}
                    Err(why) => {
                        problems.push((
                            Reason::InvalidApiKey,
                            format!("Secret {}: {why}; left out", key.id),
                        ));
                        continue;
                    }
                };
                subscribed += 1;
                key_plans[index].push(me.clone());
                for stage in &stages {
                    let Some(held) = claims.get_mut(&stage.stage) else {
                        continue;
                    };
                    match held.get(&index) {
                        Some(&older) if older != ordinal => conflicts.push(format!(
                            "Secret {} is already in the older plan {} for Stage {}: it is not in this plan there",
                            key.id, holders[older], stage.stage
                        )),
                        _ => {
                            held.insert(index, ordinal);
                        }
                    }
                }
            }
        }
        problems.extend(conflicts.into_iter().map(|c| (Reason::Conflict, c)));
        let refs = match problems.first() {
            Some((reason, _)) => {
                let text: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
                fail(*reason, text.join("; "))
            }
            None => Ok(()),
        };
        let names: Vec<String> = stages
            .iter()
            .filter_map(|s| s.stage.split_once('/').map(|(_, n)| n.to_string()))
            .collect();
        let mut status = Status::new(
            meta.generation,
            Ok(()),
            refs,
            Ok(format!(
                "{subscribed} key(s) on Stage(s) {}",
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join(", ")
                }
            )),
        );
        status.plan = Some(PlanStatus {
            stages: names,
            keys: subscribed,
        });
        out.statuses.push((object, status));
        out.plans.push(UsagePlan {
            source: super::source(Kind::UsagePlan, meta),
            stages,
            throttle: checked.throttle,
            quota: checked.quota,
        });
    }
    out.plans.sort_by_key(|p| p.source.key());
    for (key, plans) in keys.into_iter().zip(key_plans) {
        if let (Ok(sha256), false) = (key.sha256, plans.is_empty()) {
            out.keys.push(ApiKey {
                id: key.id,
                sha256,
                plans,
            });
        }
    }
    out
}

/// What a valid plan spec becomes.
struct Checked {
    throttle: Option<tollhouse_snapshot::Throttle>,
    quota: Option<Quota>,
    selector: Option<Selector>,
}

fn check(spec: &UsagePlanSpec, meta: &crate::model::Meta) -> Result<Checked, Failure> {
    let throttle = throttle::check(spec.throttle.as_ref())?;
    let mut seen = BTreeSet::new();
    for s in &spec.api_stages {
        if !seen.insert(s.stage.as_str()) {
            return fail(
                Reason::InvalidUsagePlan,
                format!("apiStages names Stage {} twice", s.stage),
            );
        }
        for (route, t) in &s.throttle {
            throttle::check(Some(t)).map_err(|f| Failure {
                message: format!("apiStages[{}].throttle[{route}]: {}", s.stage, f.message),
                ..f
            })?;
        }
    }
    let quota = spec.quota.map(|q| Quota {
        limit: q.limit,
        period: period_of(q.period),
        offset: q.offset,
        first_period: meta
            .created
            .as_ref()
            .and_then(|t| u64::try_from(t.0.as_second()).ok())
            .map(|secs| period_of(q.period).index(secs)),
    });
    if let Some(q) = quota {
        if q.offset >= q.limit && q.limit > 0 {
            return fail(
                Reason::InvalidUsagePlan,
                format!(
                    "quota.offset {} must be below quota.limit {}",
                    q.offset, q.limit
                ),
            );
        }
    }
    let selector = match &spec.api_key_selector {
        None => None,
        Some(s) => Some(Selector::try_from(s.clone()).map_err(|e| Failure {
            reason: Reason::InvalidUsagePlan,
            message: format!("apiKeySelector: {e}"),
        })?),
    };
    Ok(Checked {
        throttle,
        quota,
        selector,
    })
}

fn period_of(p: tollhouse_api::QuotaPeriod) -> QuotaPeriod {
    match p {
        tollhouse_api::QuotaPeriod::Day => QuotaPeriod::Day,
        tollhouse_api::QuotaPeriod::Week => QuotaPeriod::Week,
        tollhouse_api::QuotaPeriod::Month => QuotaPeriod::Month,
    }
}

/// Reads every api-key Secret, oldest first, into its id, labels and the hash of its value or
/// why it is left out; a disabled key is not read. Two Secrets with one value: the older keeps
/// it. Sorted by id.
fn read_keys(secrets: &[Resource<Arc<SecretData>>]) -> Vec<KeyRead<'_>> {
    let mut keys: Vec<KeyRead> = Vec::new();
    // Digest → the Secret holding it.
    let mut values: HashMap<[u8; 32], String> = HashMap::new();
    for secret in by_age(secrets) {
        if !secret.spec.is_api_key() {
            continue;
        }
        let id = holder(&secret.meta);
        let enabled = secret
            .spec
            .annotations
            .get(ENABLED_ANNOTATION)
            .map(String::as_str);
        let sha256 = match enabled {
            Some(v) if v.eq_ignore_ascii_case("false") => continue,
            None => key_hash(&secret.spec, &id, &mut values),
            Some(v) if v.eq_ignore_ascii_case("true") => key_hash(&secret.spec, &id, &mut values),
            Some(_) => Err(format!(
                "annotation {ENABLED_ANNOTATION} must be \"true\" or \"false\""
            )),
        };
        keys.push(KeyRead {
            namespace: &secret.meta.namespace,
            id,
            labels: &secret.spec.labels,
            sha256,
        });
    }
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    keys
}

/// The SHA-256 of a Secret's well-formed key value that no older Secret (in `values`, hash →
/// id) has, else why not.
fn key_hash(
    secret: &SecretData,
    id: &str,
    values: &mut HashMap<[u8; 32], String>,
) -> Result<String, String> {
    let value = secret.data.get(KEY_FIELD).filter(|v| {
        (KEY_MIN..=KEY_MAX).contains(&v.len()) && v.iter().all(u8::is_ascii_alphanumeric)
    });
    let Some(value) = value else {
        return Err(format!(
            "`{KEY_FIELD}` must be {KEY_MIN}-{KEY_MAX} alphanumeric characters"
        ));
    };
    let digest: [u8; 32] = Sha256::digest(value).into();
    match values.entry(digest) {
        std::collections::hash_map::Entry::Occupied(older) => {
            Err(format!("its key value is already Secret {}'s", older.get()))
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(id.to_string());
            Ok(hex::encode(digest))
        }
    }
}
