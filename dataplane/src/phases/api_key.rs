//! API keys (reference §2): on a route with `apiKeyRequired`, the request's key must be one a
//! usage plan covering the Stage subscribes, else 403 Forbidden before anything is spent.
//!
//! The snapshot holds SHA-256 hashes of key values, never the values; a request's key is hashed
//! once and looked up. A key is in several plans at most once per Stage: the first of its plans
//! (oldest first, as the controller orders them) that covers the Stage holds it there.

use crate::phases::quota::PlanQuota;
use crate::phases::throttle::KeyBuckets;
use http::{HeaderMap, Method};
use sha2::{Digest, Sha256};
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tollhouse_snapshot::ApiKeySource;

/// The header a Stage with `apiKeySource: HEADER` reads.
pub const X_API_KEY: &str = "x-api-key";

/// One usage plan, compiled.
pub struct CompiledPlan {
    /// `namespace/name`.
    pub label: String,
    /// The Stages it covers, by index in the compiled snapshot.
    pub stages: SmallVec<[usize; 2]>,
    /// Its per-key limit across its Stages (kept by the runtime across pushes).
    pub per_key: Option<Arc<KeyBuckets>>,
    /// Its counters (kept by the runtime across pushes): the quota's, when it has one, and
    /// each key's count per day, for usage reports.
    pub quota: Arc<PlanQuota>,
    /// The keys it holds, for forgetting the buckets of revoked ones.
    pub keys: HashSet<Arc<str>>,
}

/// An API key, compiled.
pub struct CompiledKey {
    /// `$context.identity.apiKeyId`.
    pub id: Arc<str>,
    /// Its plans, by index, oldest first.
    pub plans: SmallVec<[u32; 2]>,
}

/// Every key, by the SHA-256 of its value, and every plan.
#[derive(Default)]
pub struct KeyTable {
    keys: HashMap<[u8; 32], CompiledKey>,
    /// The plans, by index.
    pub plans: Vec<CompiledPlan>,
}

/// A key's limit on one route in one plan: for one method, or (None) for any.
pub struct PlanRouteLimit {
    /// The plan's index.
    pub plan: u32,
    /// The method of the route key, or None for `ANY`.
    pub method: Option<Method>,
    /// The buckets, one per key.
    pub buckets: Arc<KeyBuckets>,
}

/// The key a request presented, and the plan that holds it on this Stage.
pub struct Identified<'a> {
    /// The key.
    pub key: &'a CompiledKey,
    /// The plan's index.
    pub plan: u32,
}

impl KeyTable {
    /// A table of `keys` (id, hex SHA-256, plan indexes); a hash that is not 64 hex digits is
    /// skipped and named in `notes`.
    pub fn new(
        keys: impl IntoIterator<Item = (Arc<str>, String, SmallVec<[u32; 2]>)>,
        plans: Vec<CompiledPlan>,
        notes: &mut Vec<String>,
    ) -> KeyTable {
        let mut by_hash = HashMap::new();
        for (id, sha256, plans) in keys {
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(&sha256, &mut hash).is_err() {
                notes.push(format!(
                    "API key {id}: its hash is not SHA-256 hex; left out"
                ));
                continue;
            }
            by_hash.insert(hash, CompiledKey { id, plans });
        }
        KeyTable {
            keys: by_hash,
            plans,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key in `headers` (for a Stage reading keys from `source`) and the plan holding it
    /// on Stage `stage`, or None: missing, unknown, disabled (not in the snapshot), or in no
    /// plan covering the Stage. With `AUTHORIZER`, the key is the authorizer's
    /// `usageIdentifierKey`; there are no authorizers yet, so there is none.
    pub fn identify(
        &self,
        source: ApiKeySource,
        headers: &HeaderMap,
        from_authorizer: Option<&str>,
        stage: usize,
    ) -> Option<Identified<'_>> {
        let value = match source {
            ApiKeySource::Header => headers.get(X_API_KEY)?.as_bytes(),
            // The route's authorizer's `usageIdentifierKey` (reference §2, §5).
            ApiKeySource::Authorizer => from_authorizer?.as_bytes(),
        };
        let hash: [u8; 32] = Sha256::digest(value).into();
        let key = self.keys.get(&hash)?;
        let plan = key.plans.iter().copied().find(|&p| {
            self.plans
                .get(p as usize)
                .is_some_and(|plan| plan.stages.contains(&stage))
        })?;
        Some(Identified { key, plan })
    }

    /// The plan at `index`.
    pub fn plan(&self, index: u32) -> Option<&CompiledPlan> {
        self.plans.get(index as usize)
    }

    /// Forgets the per-key buckets of keys no longer in each plan.
    pub fn forget_revoked(&self) {
        for plan in &self.plans {
            if let Some(b) = &plan.per_key {
                b.keep_only(&plan.keys);
            }
        }
    }
}

/// The buckets of `route_limits` for `plan` and `method`: the method's own, else `ANY`'s.
pub fn route_limit<'a>(
    route_limits: &'a [PlanRouteLimit],
    plan: u32,
    method: &Method,
) -> Option<&'a PlanRouteLimit> {
    let mut any = None;
    for l in route_limits.iter().filter(|l| l.plan == plan) {
        match &l.method {
            Some(m) if m == method => return Some(l),
            Some(_) => {}
            None => any = Some(l),
        }
    }
    any
}

/// The level name of a plan's per-key buckets.
pub fn plan_level(plan: &str) -> String {
    format!("plan {plan}")
}

/// The level name of a plan's per-key buckets on one route of one Stage for one route key.
pub fn plan_route_level(plan: &str, stage: &str, route: &str, route_key: &str) -> String {
    format!("plan {plan} stage {stage} route {route} {route_key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phases::throttle::Limit;
    use smallvec::smallvec;

    fn sha(v: &str) -> String {
        hex::encode(Sha256::digest(v.as_bytes()))
    }

    fn plan(label: &str, stages: &[usize]) -> CompiledPlan {
        CompiledPlan {
            label: label.into(),
            stages: stages.iter().copied().collect(),
            per_key: None,
            quota: crate::phases::quota::Quotas::default().plan(label, None),
            keys: HashSet::new(),
        }
    }

    #[test]
    fn a_key_is_known_by_its_hash_and_held_by_its_first_plan_covering_the_stage() {
        let mut notes = Vec::new();
        let table = KeyTable::new(
            [
                (
                    Arc::from("ns/a"),
                    sha("AAAAAAAAAAAAAAAAAAAAAAAA"),
                    smallvec![0, 1],
                ),
                (Arc::from("ns/bad"), "not-hex".to_string(), smallvec![0]),
            ],
            vec![plan("ns/gold", &[0]), plan("ns/silver", &[0, 1])],
            &mut notes,
        );
        assert_eq!(table.len(), 1);
        assert_eq!(notes.len(), 1);
        assert!(!notes[0].contains("not-hex"));
        let mut h = HeaderMap::new();
        assert!(table.identify(ApiKeySource::Header, &h, None, 0).is_none());
        h.insert(X_API_KEY, "AAAAAAAAAAAAAAAAAAAAAAAB".parse().unwrap());
        assert!(table.identify(ApiKeySource::Header, &h, None, 0).is_none());
        h.insert(X_API_KEY, "AAAAAAAAAAAAAAAAAAAAAAAA".parse().unwrap());
        let on0 = table.identify(ApiKeySource::Header, &h, None, 0).unwrap();
        assert_eq!((&*on0.key.id, on0.plan), ("ns/a", 0));
        assert_eq!(
            table
                .identify(ApiKeySource::Header, &h, None, 1)
                .unwrap()
                .plan,
            1
        );
        assert!(table.identify(ApiKeySource::Header, &h, None, 2).is_none());
        // AUTHORIZER reads the authorizer's usageIdentifierKey, never the header.
        assert!(table
            .identify(ApiKeySource::Authorizer, &h, None, 0)
            .is_none());
        let from = table
            .identify(
                ApiKeySource::Authorizer,
                &HeaderMap::new(),
                Some("AAAAAAAAAAAAAAAAAAAAAAAA"),
                0,
            )
            .unwrap();
        assert_eq!(&*from.key.id, "ns/a");
    }

    #[test]
    fn a_methods_own_route_limit_wins_over_any() {
        let b = || {
            Arc::new(KeyBuckets::new(
                "plan test",
                Limit {
                    rate: 1.0,
                    burst: 1,
                },
            ))
        };
        let limits = vec![
            PlanRouteLimit {
                plan: 0,
                method: None,
                buckets: b(),
            },
            PlanRouteLimit {
                plan: 0,
                method: Some(Method::GET),
                buckets: b(),
            },
            PlanRouteLimit {
                plan: 1,
                method: Some(Method::PUT),
                buckets: b(),
            },
        ];
        let get = route_limit(&limits, 0, &Method::GET).unwrap();
        assert_eq!(get.method, Some(Method::GET));
        assert_eq!(route_limit(&limits, 0, &Method::PUT).unwrap().method, None);
        assert!(route_limit(&limits, 1, &Method::GET).is_none());
        assert!(route_limit(&limits, 2, &Method::GET).is_none());
    }
}
