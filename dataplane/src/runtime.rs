//! State owned by the gateway rather than by a compiled snapshot, so a push keeps it.
//!
//! A [`crate::compile::CompiledSnapshot`] is rebuilt on every push; anything that must outlive
//! a push lives here: metric handles today (their counters keep counting across pushes), and
//! the limiters, quota counters, authorizer result caches, JWKS sets and response cache of the
//! capabilities to come, through [`Retained`]. Time comes from an injected [`Clock`], so
//! throttle, quota and token-expiry tests run without sleeping.

use crate::access_log::AccessLogSink;
use crate::authorizer::jwks::Jwks;
use crate::metrics::Metrics;
use crate::phases::quota::Quotas;
use crate::phases::throttle::{Bucket, KeyThrottles, Limit, Throttles};
use crate::shared_limits::SharedLimits;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the gateway reads the time.
pub trait Clock: Send + Sync {
    /// Monotonic time, for latencies, timeouts and token buckets.
    fn now(&self) -> Instant;
    /// Wall-clock time, for `$context.requestTime` and token expiry.
    fn system_now(&self) -> SystemTime;
    /// The wall-clock time at `at`, a reading of [`Clock::now`] taken just before: lets a
    /// request read one clock instead of two.
    fn system_at(&self, at: Instant) -> SystemTime {
        let _ = at;
        self.system_now()
    }
}

/// The operating system's clocks.
///
/// [`Clock::system_at`] derives the wall clock from the monotonic reading and an offset
/// between the two that is re-read at most once a second, so a request reads the clock once
/// (each `clock_gettime` was visible in the profile) and a step of the system clock still
/// shows within a second.
#[derive(Debug)]
pub struct SystemClock {
    base: Instant,
    /// Wall-clock nanoseconds since the epoch at `base`.
    wall_at_base: AtomicU64,
    /// When `wall_at_base` was last measured, in nanoseconds since `base`.
    measured: AtomicU64,
}

/// How long a measured offset between the clocks is used.
const OFFSET_FOR: u64 = 1_000_000_000;

impl Default for SystemClock {
    fn default() -> Self {
        let c = SystemClock {
            base: Instant::now(),
            wall_at_base: AtomicU64::new(0),
            measured: AtomicU64::new(0),
        };
        c.measure();
        c
    }
}

impl SystemClock {
    fn measure(&self) -> u64 {
        let mono = nanos(Instant::now().saturating_duration_since(self.base));
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, nanos)
            .saturating_sub(mono);
        self.wall_at_base.store(wall, Ordering::Relaxed);
        self.measured.store(mono, Ordering::Relaxed);
        wall
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn system_now(&self) -> SystemTime {
        SystemTime::now()
    }
    fn system_at(&self, at: Instant) -> SystemTime {
        let since = nanos(at.saturating_duration_since(self.base));
        let wall = if since.saturating_sub(self.measured.load(Ordering::Relaxed)) > OFFSET_FOR {
            self.measure()
        } else {
            self.wall_at_base.load(Ordering::Relaxed)
        };
        UNIX_EPOCH + Duration::from_nanos(wall.saturating_add(since))
    }
}

/// A clock that moves only when told: tests drive time instead of sleeping.
#[derive(Debug)]
pub struct FakeClock {
    base: Instant,
    wall: SystemTime,
    offset: Mutex<Duration>,
}

impl FakeClock {
    /// A clock standing at `wall`.
    pub fn at(wall: SystemTime) -> Self {
        FakeClock {
            base: Instant::now(),
            wall,
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves both clocks forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut o) = self.offset.lock() {
            *o += by;
        }
    }

    fn offset(&self) -> Duration {
        self.offset.lock().map(|o| *o).unwrap_or_default()
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.base + self.offset()
    }
    fn system_now(&self) -> SystemTime {
        self.wall + self.offset()
    }
}

/// Values kept from one compile to the next while their key and configuration stay the same.
///
/// A compile asks for the value of each key with the configuration it has now; an unchanged
/// configuration gets the value built before (with whatever state it holds), a changed one
/// gets a new value ([`Retained::get_or_make`]) or the same value updated in place
/// ([`Retained::get_or_update`], for state that must survive a new configuration, such as the
/// tokens a bucket has spent). [`Retained::keep_only`] then forgets the keys the new snapshot
/// no longer has, so state never outlives its object.
pub struct Retained<K, C, V> {
    entries: Mutex<HashMap<K, (C, Arc<V>)>>,
}

impl<K, C, V> Default for Retained<K, C, V> {
    fn default() -> Self {
        Retained {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, C: PartialEq + Clone, V> Retained<K, C, V> {
    /// The value kept for `key` when it was built from an equal `config`, else a new one.
    pub fn get_or_make(&self, key: &K, config: &C, make: impl FnOnce() -> V) -> Arc<V> {
        let Ok(mut entries) = self.entries.lock() else {
            return Arc::new(make());
        };
        if let Some((c, v)) = entries.get(key) {
            if c == config {
                return v.clone();
            }
        }
        let v = Arc::new(make());
        entries.insert(key.clone(), (config.clone(), v.clone()));
        v
    }

    /// The value kept for `key`, after `update` if it was built from another `config`; a new
    /// one when there is none.
    pub fn get_or_update(
        &self,
        key: &K,
        config: &C,
        make: impl FnOnce() -> V,
        update: impl FnOnce(&V),
    ) -> Arc<V> {
        let Ok(mut entries) = self.entries.lock() else {
            return Arc::new(make());
        };
        if let Some((c, v)) = entries.get_mut(key) {
            if c != config {
                update(v);
                *c = config.clone();
            }
            return v.clone();
        }
        let v = Arc::new(make());
        entries.insert(key.clone(), (config.clone(), v.clone()));
        v
    }

    /// Every value kept.
    pub fn values(&self) -> Vec<Arc<V>> {
        self.entries
            .lock()
            .map(|e| e.values().map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()
    }

    /// Forgets every key not in `live`.
    pub fn keep_only(&self, live: &std::collections::HashSet<K>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|k, _| live.contains(k));
        }
    }

    /// Number of keys kept.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The default `--region`.
pub const DEFAULT_REGION: &str = "us-east-1";
/// The default `--account-id`: no real account's.
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";

/// What method ARNs start with.
pub fn arn_prefix(region: &str, account: &str) -> String {
    format!("arn:aws:execute-api:{region}:{account}:")
}

/// Everything the gateway keeps across pushes.
pub struct Runtime {
    /// Metrics and their per-route handles.
    pub metrics: Metrics,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Where access-log lines go.
    pub access_log: AccessLogSink,
    /// The token buckets of Stages and routes, kept across pushes.
    pub throttles: Throttles,
    /// The per-key buckets of usage plans, kept across pushes.
    pub key_throttles: KeyThrottles,
    /// Quota counters of usage plans, kept across pushes (and, with a store, restarts).
    pub quotas: Quotas,
    /// The gateway's account-wide bucket (AWS's 10,000 requests a second, burst 5,000, by
    /// default); `None`: unlimited.
    pub account: Option<Bucket>,
    /// The fleet's shared limits in Redis, with `--redis`.
    pub shared: Option<Arc<SharedLimits>>,
    /// JWT issuers' keys by issuer and `jwksUri`, kept across pushes.
    pub jwks: Retained<(String, Option<String>), (), Jwks>,
    /// The least time between two JWKS fetches for an unknown `kid`.
    pub jwks_refetch_after: Duration,
    /// The TLS client of JWKS and discovery fetches when `--jwks-ca-file` adds roots.
    pub jwks_tls: Option<Arc<rustls::ClientConfig>>,
    /// Function authorizers' cached results by authorizer, kept across pushes while the
    /// authorizer's configuration is unchanged.
    pub authorizer_results:
        Retained<String, tollhouse_snapshot::Function, crate::authorizer::function::ResultCache>,
    /// `arn:aws:execute-api:{region}:{account}:`, what method ARNs start with
    /// (`--region`, `--account-id`).
    pub arn_prefix: String,
    /// Where [`Runtime::nanos`] counts from.
    base: Instant,
}

impl Runtime {
    /// A runtime on the system clock, writing access logs to `access_log`.
    pub fn new(metrics: Metrics, access_log: AccessLogSink) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::default());
        Runtime {
            metrics,
            base: clock.now(),
            clock,
            access_log,
            throttles: Throttles::default(),
            key_throttles: KeyThrottles::default(),
            quotas: Quotas::default(),
            account: None,
            shared: None,
            jwks: Retained::default(),
            jwks_refetch_after: crate::authorizer::DEFAULT_REFETCH_AFTER,
            jwks_tls: None,
            authorizer_results: Retained::default(),
            arn_prefix: arn_prefix(DEFAULT_REGION, DEFAULT_ACCOUNT_ID),
        }
    }

    /// The same runtime holding requests to limits shared through Redis.
    pub fn with_shared_limits(mut self, shared: Arc<SharedLimits>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The same runtime holding every request to `limit` in all (AWS's account-level limit).
    pub fn with_account_limit(mut self, limit: Limit) -> Self {
        self.account = Some(Bucket::named("account", limit));
        self
    }

    /// Nanoseconds from the runtime's start to `at` (a reading of its clock): the time token
    /// buckets run on.
    pub fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// [`Runtime::nanos`] of now.
    pub fn now_nanos(&self) -> u64 {
        self.nanos(self.clock.now())
    }

    /// A runtime that writes no access log.
    pub fn without_logs(metrics: Metrics) -> Self {
        Runtime::new(metrics, AccessLogSink::disabled())
    }

    /// The same runtime reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.base = clock.now();
        self.clock = clock;
        self
    }
}

/// Shards of a [`ByKey`] map: requests of different keys rarely wait for one another.
const SHARDS: usize = 16;

/// State per API key (buckets, quota counters), made on a key's first request, in locked
/// shards so that 100,000 keys cost nothing until they call and keys seldom share a lock.
pub struct ByKey<V> {
    shards: [Mutex<HashMap<Arc<str>, V>>; SHARDS],
}

impl<V> Default for ByKey<V> {
    fn default() -> Self {
        ByKey {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
        }
    }
}

impl<V> ByKey<V> {
    fn shard(&self, key: &str) -> &Mutex<HashMap<Arc<str>, V>> {
        use std::hash::Hasher;
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        // The remainder is below SHARDS.
        &self.shards[(h.finish() % SHARDS as u64) as usize]
    }

    /// `f` on the value of `key`, made by `make` if it has none; None if its shard is
    /// poisoned.
    pub fn with<R>(
        &self,
        key: &Arc<str>,
        make: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> R,
    ) -> Option<R> {
        let mut shard = self.shard(key).lock().ok()?;
        Some(f(shard.entry(key.clone()).or_insert_with(make)))
    }

    /// `f` on the value of `key`, if it has one.
    pub fn get<R>(&self, key: &str, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        self.shard(key).lock().ok()?.get_mut(key).map(f)
    }

    /// `f` on every value.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<str>, &mut V)) {
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                for (k, v) in shard.iter_mut() {
                    f(k, v);
                }
            }
        }
    }

    /// Keeps only the keys `keep` says yes to.
    pub fn retain(&self, mut keep: impl FnMut(&Arc<str>) -> bool) {
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                shard.retain(|k, _| keep(k));
            }
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn retained_values_survive_an_unchanged_config_and_are_rebuilt_on_a_change() {
        let kept: Retained<String, u32, std::sync::atomic::AtomicU32> = Retained::default();
        let a = kept.get_or_make(&"a".into(), &1, Default::default);
        a.fetch_add(5, std::sync::atomic::Ordering::Relaxed);
        let again = kept.get_or_make(&"a".into(), &1, Default::default);
        assert_eq!(again.load(std::sync::atomic::Ordering::Relaxed), 5);
        let changed = kept.get_or_make(&"a".into(), &2, Default::default);
        assert_eq!(changed.load(std::sync::atomic::Ordering::Relaxed), 0);
        kept.get_or_make(&"b".into(), &1, Default::default);
        kept.keep_only(&HashSet::from(["b".to_string()]));
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn the_system_clock_derives_wall_time_from_one_monotonic_reading() {
        let c = SystemClock::default();
        let before = SystemTime::now();
        let at = c.now();
        let derived = c.system_at(at);
        let after = SystemTime::now();
        let slack = Duration::from_millis(5);
        assert!(
            derived + slack >= before && derived <= after + slack,
            "{derived:?}"
        );
        // Later readings move with the monotonic clock.
        let later = at + Duration::from_millis(250);
        assert_eq!(
            c.system_at(later).duration_since(derived).unwrap(),
            Duration::from_millis(250)
        );
        // A stepped system clock shows once the offset is older than a second: a clock whose
        // base is two seconds back, with a stale offset measured at its base.
        let c = SystemClock {
            base: Instant::now().checked_sub(Duration::from_secs(2)).unwrap(),
            wall_at_base: AtomicU64::new(0),
            measured: AtomicU64::new(0),
        };
        let at = c.now();
        let wall = SystemTime::now();
        let d = c.system_at(at);
        let gap = d.duration_since(wall).unwrap_or_else(|e| e.duration());
        assert!(gap < slack, "{gap:?}");
    }

    #[test]
    fn fake_clocks_move_only_when_told() {
        let c = FakeClock::at(SystemTime::UNIX_EPOCH);
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(3));
        assert_eq!(c.now() - t0, Duration::from_secs(3));
        assert_eq!(
            c.system_now(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(3)
        );
    }
}
