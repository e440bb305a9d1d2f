//! Throttling (reference §1): token buckets for a key's usage-plan limit on the route, the
//! plan's per-key limit, the route on its Stage, the Stage, and the gateway's account-wide
//! limit, checked in that order.
//!
//! Each bucket is a GCRA cell, AWS's token bucket in one atomic: `rate` tokens a second, at
//! most `burst` at once, so in any window of `s` seconds a bucket that starts full lets through
//! `burst + floor(rate × s)` requests and no more. A request refused at one level gives back the
//! tokens it took at the levels before, so it spends nothing.
//!
//! Buckets belong to the [`Throttles`] in the runtime, not to a compiled snapshot: a push that
//! keeps an object's limit keeps its bucket, and a push that changes the limit reconfigures the
//! bucket in place, keeping the tokens already spent.

use crate::runtime::{ByKey, Retained};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tollhouse_snapshot::Throttle;

/// A rate and a burst, as a bucket uses them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// Requests per second.
    pub rate: f64,
    /// Requests at once.
    pub burst: u32,
}

impl From<Throttle> for Limit {
    fn from(t: Throttle) -> Limit {
        Limit {
            rate: t.rate_limit,
            burst: t.burst_limit,
        }
    }
}

/// Nanoseconds per token for `limit`, or `None` when it lets nothing through.
fn interval(limit: Limit) -> Option<u64> {
    if limit.burst == 0 || limit.rate.is_nan() || limit.rate <= 0.0 {
        return None;
    }
    // Rates below one a year, and above a billion a second, are clamped.
    let ns = (1e9 / limit.rate).round().clamp(1.0, 3.2e16);
    Some(ns as u64)
}

/// One token bucket. Times are nanoseconds on the runtime's monotonic clock.
#[derive(Debug)]
pub struct Bucket {
    /// What it limits (`stage ns/prod`, `plan ns/gold ns/partner-a`, `account`): its key in a
    /// shared store ([`crate::shared_limits`]).
    name: Box<str>,
    /// Nanoseconds per token; `u64::MAX`: blocked.
    interval: AtomicU64,
    /// `burst × interval`: how far the theoretical arrival time may run ahead of now.
    tolerance: AtomicU64,
    /// Theoretical arrival time of the next request: the bucket is full when it is not after
    /// now, and holds `(tolerance - (tat - now)) / interval` tokens otherwise.
    tat: AtomicU64,
}

impl Bucket {
    /// A full bucket for `limit`, with no name.
    pub fn new(limit: Limit) -> Bucket {
        Bucket::named("", limit)
    }

    /// A full bucket for `limit`, named for what it limits.
    pub fn named(name: impl Into<Box<str>>, limit: Limit) -> Bucket {
        let b = Bucket {
            name: name.into(),
            interval: AtomicU64::new(u64::MAX),
            tolerance: AtomicU64::new(0),
            tat: AtomicU64::new(0),
        };
        b.set(limit);
        b
    }

    fn set(&self, limit: Limit) {
        match interval(limit) {
            Some(i) => {
                self.interval.store(i, Ordering::Relaxed);
                self.tolerance
                    .store(i.saturating_mul(u64::from(limit.burst)), Ordering::Relaxed);
            }
            None => {
                self.interval.store(u64::MAX, Ordering::Relaxed);
                self.tolerance.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Takes one token at `now`, or says there is none.
    pub fn take(&self, now: u64) -> bool {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == u64::MAX {
            return false;
        }
        let tolerance = self.tolerance.load(Ordering::Relaxed);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(interval);
            if next - now > tolerance {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Gives back a token taken by [`Bucket::take`] for a request refused further on.
    pub fn give_back(&self) {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == u64::MAX {
            return;
        }
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(interval))
            });
    }

    /// Applies a new limit at `now`, keeping the tokens already spent (at most the new burst).
    pub fn reconfigure(&self, limit: Limit, now: u64) {
        let old = self.interval.load(Ordering::Relaxed);
        let ahead = self.tat.load(Ordering::Relaxed).saturating_sub(now);
        let spent = if old == u64::MAX || old == 0 {
            0
        } else {
            ahead.div_ceil(old)
        };
        self.set(limit);
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == u64::MAX {
            return;
        }
        let spent = spent.min(u64::from(limit.burst));
        self.tat.store(
            now.saturating_add(spent.saturating_mul(interval)),
            Ordering::Relaxed,
        );
    }

    /// What the bucket limits.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limit in whole microseconds per token and tokens at once (the units a shared store
    /// works in); `None` when it lets nothing through.
    pub fn micros(&self) -> Option<(u64, u64)> {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == u64::MAX {
            return None;
        }
        let burst = self.tolerance.load(Ordering::Relaxed) / interval;
        Some((interval.div_ceil(1_000).max(1), burst))
    }

    /// Tokens left at `now` (for tests and the admin API).
    pub fn available(&self, now: u64) -> u64 {
        let interval = self.interval.load(Ordering::Relaxed);
        if interval == u64::MAX {
            return 0;
        }
        let tolerance = self.tolerance.load(Ordering::Relaxed);
        let ahead = self.tat.load(Ordering::Relaxed).saturating_sub(now);
        tolerance.saturating_sub(ahead) / interval
    }
}

/// Every bucket the gateway has, by the object it limits; owned by the runtime.
pub type Throttles = Retained<String, Limit, Bucket>;

/// One bucket per API key for one limit (a plan's per-key limit, or its limit on one route),
/// made on a key's first request. Kept by the runtime across pushes like [`Bucket`]s; a changed
/// limit reconfigures every bucket in place.
pub struct KeyBuckets {
    /// The level's name: each key's bucket is named `{level} {key}`.
    level: String,
    limit: Mutex<Limit>,
    buckets: ByKey<Arc<Bucket>>,
}

impl KeyBuckets {
    /// No bucket yet, for `limit`, at the level named `level`.
    pub fn new(level: impl Into<String>, limit: Limit) -> KeyBuckets {
        KeyBuckets {
            level: level.into(),
            limit: Mutex::new(limit),
            buckets: ByKey::default(),
        }
    }

    /// The bucket of `key`: a full one on its first request.
    pub fn bucket(&self, key: &Arc<str>) -> Option<Arc<Bucket>> {
        if let Some(b) = self.buckets.get(key, |b| b.clone()) {
            return Some(b);
        }
        // A key's first request: only then is the limit read.
        let limit = *self.limit.lock().ok()?;
        self.buckets.with(
            key,
            || Arc::new(Bucket::named(format!("{} {key}", self.level), limit)),
            |b| b.clone(),
        )
    }

    /// Applies a new limit at `now` to every bucket, keeping the tokens they have spent.
    pub fn reconfigure(&self, limit: Limit, now: u64) {
        if let Ok(mut l) = self.limit.lock() {
            *l = limit;
        }
        self.buckets.for_each(|_, b| b.reconfigure(limit, now));
    }

    /// Forgets the buckets of keys not in `live`.
    pub fn keep_only(&self, live: &HashSet<Arc<str>>) {
        self.buckets.retain(|k| live.contains(k));
    }

    /// Buckets made so far.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key has called yet.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Every per-key bucket set, by plan level; owned by the runtime.
pub type KeyThrottles = Retained<String, Limit, KeyBuckets>;

impl KeyThrottles {
    /// The bucket set for `level` with `limit`, kept from before (reconfigured at `now` if its
    /// limit changed), or a new one.
    pub fn buckets(&self, level: String, limit: Limit, now: u64) -> Arc<KeyBuckets> {
        self.get_or_update(
            &level,
            &limit,
            || KeyBuckets::new(level.clone(), limit),
            |b| b.reconfigure(limit, now),
        )
    }
}

impl Throttles {
    /// The bucket for `key` with `limit`: the one kept from before (reconfigured at `now` if its
    /// limit changed), or a full new one.
    pub fn bucket(&self, key: String, limit: Limit, now: u64) -> Arc<Bucket> {
        self.get_or_update(
            &key,
            &limit,
            || Bucket::named(key.clone(), limit),
            |b| b.reconfigure(limit, now),
        )
    }
}

/// The buckets one request passes, in order: the key's plan limit on the route, the plan's
/// per-key limit, the route, the Stage, the account.
#[derive(Clone, Default)]
pub struct Chain<'a> {
    levels: [Option<&'a Bucket>; 5],
}

impl<'a> Chain<'a> {
    /// The chain for a route's bucket, its Stage's and the account's (each optional).
    pub fn new(
        route: Option<&'a Bucket>,
        stage: Option<&'a Bucket>,
        account: Option<&'a Bucket>,
    ) -> Chain<'a> {
        Chain {
            levels: [None, None, route, stage, account],
        }
    }

    /// The same chain behind a key's buckets: its plan's limit on this route, then the plan's
    /// per-key limit.
    pub fn with_key(mut self, plan_route: Option<&'a Bucket>, plan: Option<&'a Bucket>) -> Self {
        self.levels[0] = plan_route;
        self.levels[1] = plan;
        self
    }

    /// Its buckets, in order.
    pub fn levels(&self) -> impl Iterator<Item = &'a Bucket> + '_ {
        self.levels.iter().flatten().copied()
    }

    /// Gives back the tokens [`Chain::admit`] took, for a request refused after it (over its
    /// quota).
    pub fn refund(&self) {
        for level in self.levels.iter().flatten() {
            level.give_back();
        }
    }

    /// Takes a token from every level, or from none: a level without one refuses the request,
    /// and the levels before it get theirs back.
    pub fn admit(&self, now: u64) -> bool {
        for (i, level) in self.levels.iter().enumerate() {
            let Some(bucket) = level else { continue };
            if !bucket.take(now) {
                for earlier in self.levels.iter().take(i).flatten() {
                    earlier.give_back();
                }
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn limit(rate: f64, burst: u32) -> Limit {
        Limit { rate, burst }
    }

    fn admitted(b: &Bucket, now: u64, tries: usize) -> usize {
        (0..tries).filter(|_| b.take(now)).count()
    }

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_the_rate() {
        let b = Bucket::new(limit(5.0, 10));
        let t0 = 100 * SEC;
        assert_eq!(admitted(&b, t0, 50), 10);
        // 200 ms later: one token (5 a second).
        assert_eq!(admitted(&b, t0 + SEC / 5, 50), 1);
        // In any window of s seconds: burst + rate × s.
        let b = Bucket::new(limit(5.0, 10));
        let mut ok = 0;
        for ms in 0..=3000 {
            ok += admitted(&b, t0 + ms * SEC / 1000, 3);
        }
        assert_eq!(ok, 10 + 5 * 3);
        // Idle for long, it is full again but never holds more than the burst.
        assert_eq!(admitted(&b, t0 + 3600 * SEC, 50), 10);
    }

    #[test]
    fn rates_below_one_and_zero_limits() {
        let b = Bucket::new(limit(0.5, 1));
        assert_eq!(admitted(&b, SEC, 5), 1);
        assert_eq!(admitted(&b, 2 * SEC, 5), 0);
        assert_eq!(admitted(&b, 3 * SEC, 5), 1);
        assert_eq!(admitted(&Bucket::new(limit(0.0, 10)), SEC, 5), 0);
        assert_eq!(admitted(&Bucket::new(limit(10.0, 0)), SEC, 5), 0);
        assert_eq!(admitted(&Bucket::new(limit(f64::NAN, 10)), SEC, 5), 0);
    }

    #[test]
    fn a_changed_limit_keeps_the_tokens_already_spent() {
        let b = Bucket::new(limit(1.0, 10));
        assert_eq!(admitted(&b, SEC, 4), 4);
        assert_eq!(b.available(SEC), 6);
        // A bigger bucket: the 4 spent stay spent.
        b.reconfigure(limit(1.0, 20), SEC);
        assert_eq!(b.available(SEC), 16);
        // A smaller one than what was spent: empty, refilling at the new rate.
        b.reconfigure(limit(2.0, 3), SEC);
        assert_eq!(b.available(SEC), 0);
        assert_eq!(admitted(&b, SEC + SEC / 2, 5), 1);
        // Blocked, then opened again: full.
        b.reconfigure(limit(0.0, 3), SEC);
        assert_eq!(admitted(&b, 2 * SEC, 5), 0);
        b.reconfigure(limit(2.0, 3), 2 * SEC);
        assert_eq!(admitted(&b, 2 * SEC, 5), 3);
    }

    #[test]
    fn a_request_refused_further_on_spends_nothing_before() {
        let route = Bucket::new(limit(1.0, 5));
        let stage = Bucket::new(limit(1.0, 2));
        let chain = Chain::new(Some(&route), Some(&stage), None);
        assert!(chain.admit(SEC));
        assert!(chain.admit(SEC));
        assert!(!chain.admit(SEC));
        assert!(!chain.admit(SEC));
        // The route gave back what the refused requests took from it.
        assert_eq!(route.available(SEC), 3);
        assert_eq!(stage.available(SEC), 0);
    }

    #[test]
    fn buckets_outlive_a_push_and_are_forgotten_with_their_object() {
        let t = Throttles::default();
        let a = t.bucket("stage:ns/prod".into(), limit(1.0, 3), SEC);
        assert!(a.take(SEC));
        let again = t.bucket("stage:ns/prod".into(), limit(1.0, 3), 2 * SEC);
        assert!(Arc::ptr_eq(&a, &again));
        let changed = t.bucket("stage:ns/prod".into(), limit(1.0, 10), SEC);
        assert!(Arc::ptr_eq(&a, &changed));
        assert_eq!(changed.available(SEC), 9);
        t.bucket("stage:ns/other".into(), limit(1.0, 1), SEC);
        t.keep_only(&HashSet::from(["stage:ns/other".to_string()]));
        assert_eq!(t.len(), 1);
        let fresh = t.bucket("stage:ns/prod".into(), limit(1.0, 3), SEC);
        assert_eq!(fresh.available(SEC), 3);
    }

    #[test]
    fn each_key_has_its_own_bucket_and_a_new_limit_keeps_what_each_spent() {
        let t = KeyThrottles::default();
        let plan = t.buckets("plan ns/gold".into(), limit(1.0, 3), SEC);
        let a: Arc<str> = Arc::from("ns/a");
        let b: Arc<str> = Arc::from("ns/b");
        assert_eq!(admitted(&plan.bucket(&a).unwrap(), SEC, 10), 3);
        assert_eq!(admitted(&plan.bucket(&b).unwrap(), SEC, 1), 1);
        assert_eq!(plan.len(), 2);
        // A push with a bigger limit: the same set, each key keeps what it spent.
        let again = t.buckets("plan ns/gold".into(), limit(1.0, 5), SEC);
        assert!(Arc::ptr_eq(&plan, &again));
        assert_eq!(again.bucket(&a).unwrap().available(SEC), 2);
        assert_eq!(again.bucket(&b).unwrap().available(SEC), 4);
        // A revoked key's bucket goes; the next key made is full at the new limit.
        again.keep_only(&HashSet::from([b.clone()]));
        assert_eq!(again.len(), 1);
        assert_eq!(again.bucket(&a).unwrap().available(SEC), 5);
    }

    #[test]
    fn a_key_refused_by_its_plan_spends_nothing_at_the_route_stage_or_account() {
        let plan = Bucket::new(limit(1.0, 1));
        let route = Bucket::new(limit(1.0, 10));
        let account = Bucket::new(limit(1.0, 10));
        let chain = Chain::new(Some(&route), None, Some(&account)).with_key(None, Some(&plan));
        assert!(chain.admit(SEC));
        assert!(!chain.admit(SEC));
        assert_eq!(route.available(SEC), 9);
        assert_eq!(account.available(SEC), 9);
        // And a request refused at the account gives the key its token back.
        let plan = Bucket::new(limit(1.0, 5));
        let account = Bucket::new(limit(0.0, 0));
        let chain = Chain::new(None, None, Some(&account)).with_key(Some(&route), Some(&plan));
        assert!(!chain.admit(SEC));
        assert_eq!(plan.available(SEC), 5);
    }
}
