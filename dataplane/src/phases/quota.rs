//! Quotas (reference §2): requests per API key in a UTC calendar period, counted after every
//! throttle has let the request through; over the limit, AWS's 429 Limit Exceeded, and the
//! request spends nothing at the throttles.
//!
//! Counters belong to the runtime, by plan: a push that keeps or changes a plan's quota keeps
//! the counts, and a plan that goes and comes back finds them again. With a state directory,
//! [`QuotaStore`] writes the changed counters to an embedded database (redb) once a second and
//! reads them back at start, so a restart loses at most the last second of counts (none on a
//! clean stop). Each day's count per key is kept as well, for usage reports: in every plan,
//! with or without a quota, and handed to the usage reporter ([`Quotas::unreported`]) as it
//! changes.

use crate::runtime::{ByKey, Retained};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tollhouse_snapshot::{Quota, QuotaPeriod};

/// A key's count in its plan: the current period's and the current day's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// The period counted ([`QuotaPeriod::index`]).
    pub period: u64,
    /// Requests in it.
    pub used: u64,
    /// The day counted (days since the epoch).
    pub day: u64,
    /// Requests that day.
    pub day_used: u64,
}

/// One request's quota, as a shared store counts it ([`PlanQuota::shared_call`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedQuota {
    /// The counter's name: plan, key id, period kind and number.
    pub counter: String,
    /// Requests allowed in the period.
    pub limit: u64,
    /// When the counter may be dropped, in seconds since the epoch.
    pub expire_at: u64,
    /// The least the counter holds.
    pub floor: u64,
}

struct Entry {
    usage: Usage,
    /// Changed since the store last wrote it.
    dirty: bool,
    /// Changed since the usage reporter last took it.
    unreported: bool,
}

/// One key's count on a day that has ended: (key, day, used).
type ClosedDay = (String, u64, u64);

/// Days that ended before the store or the reporter took their last count (a key's first
/// request of a new day rolls its counter over): kept here until they do.
#[derive(Default)]
struct Closed {
    store: Vec<ClosedDay>,
    report: Vec<ClosedDay>,
}

/// The counters of one plan, by key id, made on a key's first request: its quota's, when it
/// has one, and each key's count of the day.
pub struct PlanQuota {
    plan: String,
    quota: Mutex<Option<Quota>>,
    counters: ByKey<Entry>,
    loaded: Arc<Loaded>,
    closed: Mutex<Closed>,
}

/// Counters read back at start, waiting for their plan and key.
#[derive(Default)]
pub struct Loaded {
    usage: Mutex<HashMap<(String, String), Usage>>,
}

impl PlanQuota {
    fn new(plan: String, quota: Option<Quota>, loaded: Arc<Loaded>) -> PlanQuota {
        PlanQuota {
            plan,
            quota: Mutex::new(quota),
            counters: ByKey::default(),
            loaded,
            closed: Mutex::default(),
        }
    }

    /// The entry of `key` as the store left it, for its first request.
    fn loaded(&self, key: &Arc<str>) -> Entry {
        Entry {
            usage: self
                .loaded
                .usage
                .lock()
                .ok()
                .and_then(|mut l| l.remove(&(self.plan.clone(), key.to_string())))
                .unwrap_or_default(),
            dirty: false,
            unreported: false,
        }
    }

    /// `f` on the entry of `key` (read back from the store on its first request), rolled over
    /// to the period and the day of `unix_secs`, with the quota and the period's number (0
    /// without a quota); `None` if the counter is broken. A day that ends with counts the
    /// store or the reporter has not taken yet is kept for them.
    fn current<R>(
        &self,
        key: &Arc<str>,
        unix_secs: u64,
        f: impl FnOnce(&mut Entry, Option<&Quota>, u64) -> R,
    ) -> Option<R> {
        let quota = *self.quota.lock().ok()?;
        let period = quota.map_or(0, |q| q.period.index(unix_secs));
        let day = QuotaPeriod::Day.index(unix_secs);
        self.counters.with(
            key,
            || self.loaded(key),
            |entry| {
                let u = &mut entry.usage;
                if u.period != period {
                    u.period = period;
                    u.used = 0;
                }
                if u.day != day {
                    if (entry.dirty || entry.unreported) && u.day_used > 0 {
                        if let Ok(mut closed) = self.closed.lock() {
                            let ended = (key.to_string(), u.day, u.day_used);
                            if entry.dirty {
                                closed.store.push(ended.clone());
                            }
                            if entry.unreported {
                                closed.report.push(ended);
                            }
                        }
                    }
                    u.day = day;
                    u.day_used = 0;
                }
                f(entry, quota.as_ref(), period)
            },
        )
    }

    /// Counts one request of `key` at `unix_secs`, or says the key's quota for the period is
    /// spent (and counts nothing).
    pub fn take(&self, key: &Arc<str>, unix_secs: u64) -> bool {
        // Best effort, as AWS's: a broken counter serves the request.
        self.current(key, unix_secs, |entry, quota, period| {
            let u = &mut entry.usage;
            if let Some(quota) = quota {
                if u.used >= quota.limit_in(period) {
                    return false;
                }
                u.used += 1;
            }
            u.day_used += 1;
            entry.dirty = true;
            entry.unreported = true;
            true
        })
        .unwrap_or(true)
    }

    /// What a shared store needs to count one request of `key` at `unix_secs` for the fleet:
    /// the counter's name for this period, the limit, when the counter may go, and the least
    /// it holds (the fleet's count as this replica last saw it), so a store that lost its
    /// data never starts a key's period again from zero. `None` without a quota, or if the
    /// counter is broken.
    pub fn shared_call(&self, key: &Arc<str>, unix_secs: u64) -> Option<SharedQuota> {
        let (quota, period, floor) = self
            .current(key, unix_secs, |e, q, period| {
                q.map(|q| (*q, period, e.usage.used))
            })
            .flatten()?;
        Some(SharedQuota {
            counter: format!("quota {} {key} {:?} {period}", self.plan, quota.period),
            limit: quota.limit_in(period),
            // A day past the period's end, so a replica whose clock is a little behind still
            // finds it.
            expire_at: quota.period.start(period.saturating_add(1)) + 86_400,
            floor,
        })
    }

    /// Records what a shared store answered for one request of `key`: the fleet's count in the
    /// period is `fleet_used` (0 without a quota), and this request was counted (or refused,
    /// over the quota). The day's count stays this replica's own: usage reports add the
    /// replicas up.
    pub fn record_shared(&self, key: &Arc<str>, unix_secs: u64, fleet_used: u64, counted: bool) {
        self.current(key, unix_secs, |entry, _, _| {
            let u = &mut entry.usage;
            u.used = u.used.max(fleet_used);
            if counted {
                u.day_used += 1;
                entry.unreported = true;
            }
            entry.dirty = true;
        });
    }

    /// The count of `key`, if it has called.
    pub fn usage(&self, key: &str) -> Option<Usage> {
        self.counters.get(key, |e| e.usage)
    }

    fn set(&self, quota: Option<Quota>) {
        if let Ok(mut q) = self.quota.lock() {
            *q = quota;
        }
    }

    /// The counters changed since the last call, marked clean, and the days that ended
    /// since.
    fn take_dirty(&self, out: &mut Vec<(String, String, Usage)>, ended: &mut Vec<DayRow>) {
        self.drain_closed(|c| &mut c.store, ended);
        self.counters.for_each(|key, e| {
            if e.dirty {
                e.dirty = false;
                out.push((self.plan.clone(), key.to_string(), e.usage));
            }
        });
    }

    /// Each key's count of the day that changed since the last call, and of the days that
    /// ended since.
    fn take_unreported(&self, out: &mut Vec<DayRow>) {
        self.drain_closed(|c| &mut c.report, out);
        self.counters.for_each(|key, e| {
            if e.unreported {
                e.unreported = false;
                out.push((
                    self.plan.clone(),
                    e.usage.day,
                    key.to_string(),
                    e.usage.day_used,
                ));
            }
        });
    }

    /// Moves the ended days of one of `closed`'s lists to `out`.
    fn drain_closed(
        &self,
        list: impl FnOnce(&mut Closed) -> &mut Vec<ClosedDay>,
        out: &mut Vec<DayRow>,
    ) {
        if let Ok(mut closed) = self.closed.lock() {
            for (key, day, used) in list(&mut closed).drain(..) {
                out.push((self.plan.clone(), day, key, used));
            }
        }
    }

    /// Marks counters dirty again after a failed write.
    fn mark_dirty(&self, key: &str) {
        self.counters.get(key, |e| e.dirty = true);
    }
}

/// One key's count on one day in one plan: (plan, day, key, used).
pub type DayRow = (String, u64, String, u64);

/// Every plan's counters, kept across pushes and never forgotten while the process runs.
#[derive(Default)]
pub struct Quotas {
    plans: Retained<String, Option<Quota>, PlanQuota>,
    loaded: Arc<Loaded>,
}

impl Quotas {
    /// The counters of `plan` with `quota`: the ones kept from before (the quota updated in
    /// place, counts kept), or new ones.
    pub fn plan(&self, plan: &str, quota: Option<Quota>) -> Arc<PlanQuota> {
        self.plans.get_or_update(
            &plan.to_string(),
            &quota,
            || PlanQuota::new(plan.to_string(), quota, self.loaded.clone()),
            |p| p.set(quota),
        )
    }

    /// Counters read from a store, for the keys that call next.
    pub fn load(&self, rows: Vec<(String, String, Usage)>) {
        if let Ok(mut l) = self.loaded.usage.lock() {
            for (plan, key, usage) in rows {
                l.insert((plan, key), usage);
            }
        }
    }

    /// The counters and ended days the store has not written yet.
    fn dirty(&self) -> (Vec<(String, String, Usage)>, Vec<DayRow>) {
        let (mut out, mut ended) = (Vec::new(), Vec::new());
        for p in self.plans.values() {
            p.take_dirty(&mut out, &mut ended);
        }
        (out, ended)
    }

    /// Each key's count per day in every plan that changed since the last call, for the
    /// usage reporter.
    pub fn unreported(&self) -> Vec<DayRow> {
        let mut out = Vec::new();
        for p in self.plans.values() {
            p.take_unreported(&mut out);
        }
        out
    }

    fn redirty(&self, rows: &[(String, String, Usage)], ended: Vec<DayRow>) {
        let plans: HashMap<String, Arc<PlanQuota>> = self
            .plans
            .values()
            .into_iter()
            .map(|p| (p.plan.clone(), p))
            .collect();
        for (plan, key, _) in rows {
            if let Some(p) = plans.get(plan) {
                p.mark_dirty(key);
            }
        }
        for (plan, day, key, used) in ended {
            if let Some(mut closed) = plans.get(&plan).and_then(|p| p.closed.lock().ok()) {
                closed.store.push((key, day, used));
            }
        }
    }
}

/// The period counters: (plan, key) → (period, used, day, day used). The version is in the
/// name: a new layout gets a new table, and this one can be read to migrate it.
const COUNTERS: TableDefinition<(&str, &str), (u64, u64, u64, u64)> =
    TableDefinition::new("quota-counters-v1");
/// Each day's count: (plan, day, key) → used, for usage reports: one plan's days are one range.
const DAYS: TableDefinition<(&str, u64, &str), u64> = TableDefinition::new("quota-days-v2");

/// Opens or creates the database at `path`, readable by its owner only, like every file of
/// the state directory.
fn create_private(path: &Path) -> Result<Database, redb::DatabaseError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(path)
        .map_err(|e| redb::DatabaseError::Storage(e.into()))?;
    crate::source::private_file_mode(path).map_err(|e| redb::DatabaseError::Storage(e.into()))?;
    redb::Builder::new().create_with_backend(redb::backends::FileBackend::new(file)?)
}

/// The quota counters' file in a state directory.
pub struct QuotaStore {
    db: Database,
    path: PathBuf,
}

impl QuotaStore {
    /// Opens (or creates) `dir/quotas.redb`. A file that does not open as a database is moved
    /// aside (named in the error log) and a new one started: counting goes on.
    pub fn open(dir: &Path) -> Result<QuotaStore, String> {
        let path = dir.join("quotas.redb");
        let db = match create_private(&path) {
            Ok(db) => db,
            Err(e) => {
                let aside = dir.join(format!(
                    "quotas.redb.unreadable-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs())
                ));
                tracing::error!(path = %path.display(), moved_to = %aside.display(), error = %e,
                    "the quota store does not open; moved aside, counting starts again from zero");
                std::fs::rename(&path, &aside).map_err(|e| format!("{}: {e}", path.display()))?;
                create_private(&path).map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        Ok(QuotaStore { db, path })
    }

    /// Every counter in the store.
    pub fn read(&self) -> Result<Vec<(String, String, Usage)>, String> {
        let e = |e: &dyn std::fmt::Display| self.error(e);
        let Some(table) = self.open_read(COUNTERS)? else {
            return Ok(Vec::new());
        };
        let mut rows = Vec::new();
        for row in table.iter().map_err(|x| e(&x))? {
            let (k, v) = row.map_err(|x| e(&x))?;
            let (plan, key) = k.value();
            let (period, used, day, day_used) = v.value();
            rows.push((
                plan.to_string(),
                key.to_string(),
                Usage {
                    period,
                    used,
                    day,
                    day_used,
                },
            ));
        }
        Ok(rows)
    }

    /// Writes `rows`, and the last counts of days that ended, in one transaction.
    pub fn write(&self, rows: &[(String, String, Usage)], ended: &[DayRow]) -> Result<(), String> {
        let e = |e: &dyn std::fmt::Display| self.error(e);
        let txn = self.db.begin_write().map_err(|x| e(&x))?;
        {
            let mut counters = txn.open_table(COUNTERS).map_err(|x| e(&x))?;
            let mut days = txn.open_table(DAYS).map_err(|x| e(&x))?;
            for (plan, day, key, used) in ended {
                days.insert((plan.as_str(), *day, key.as_str()), *used)
                    .map_err(|x| e(&x))?;
            }
            for (plan, key, u) in rows {
                counters
                    .insert(
                        (plan.as_str(), key.as_str()),
                        (u.period, u.used, u.day, u.day_used),
                    )
                    .map_err(|x| e(&x))?;
                days.insert((plan.as_str(), u.day, key.as_str()), u.day_used)
                    .map_err(|x| e(&x))?;
            }
        }
        txn.commit().map_err(|x| e(&x))
    }

    /// Every day's count of every plan from day `from` on, for the usage reporter to start
    /// from.
    pub fn all_days(&self, from: u64) -> Result<Vec<DayRow>, String> {
        let e = |e: &dyn std::fmt::Display| self.error(e);
        let Some(table) = self.open_read(DAYS)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for row in table.iter().map_err(|x| e(&x))? {
            let (k, v) = row.map_err(|x| e(&x))?;
            let (plan, day, key) = k.value();
            if day >= from {
                out.push((plan.to_string(), day, key.to_string(), v.value()));
            }
        }
        Ok(out)
    }

    /// Each day's count of `plan`'s keys from day `from` to day `to`, inclusive.
    pub fn days(&self, plan: &str, from: u64, to: u64) -> Result<Vec<(String, u64, u64)>, String> {
        let e = |e: &dyn std::fmt::Display| self.error(e);
        let Some(table) = self.open_read(DAYS)? else {
            return Ok(Vec::new());
        };
        // The smallest key of the day after `to` ends the range.
        let end = to.saturating_add(1);
        let mut out = Vec::new();
        for row in table
            .range((plan, from, "")..(plan, end, ""))
            .map_err(|x| e(&x))?
        {
            let (k, v) = row.map_err(|x| e(&x))?;
            let (_, day, key) = k.value();
            out.push((key.to_string(), day, v.value()));
        }
        Ok(out)
    }

    /// An error of this store, naming its file.
    fn error(&self, e: &dyn std::fmt::Display) -> String {
        format!("{}: {e}", self.path.display())
    }

    /// `table` for reading, or None before anything was written to it.
    fn open_read<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Option<redb::ReadOnlyTable<K, V>>, String> {
        let txn = self.db.begin_read().map_err(|x| self.error(&x))?;
        match txn.open_table(table) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(x) => Err(self.error(&x)),
        }
    }

    /// Writes what changed in `quotas`; on failure, keeps it to write next time.
    pub fn flush(&self, quotas: &Quotas) -> Result<usize, String> {
        let (rows, ended) = quotas.dirty();
        if rows.is_empty() && ended.is_empty() {
            return Ok(0);
        }
        match self.write(&rows, &ended) {
            Ok(()) => Ok(rows.len() + ended.len()),
            Err(e) => {
                quotas.redirty(&rows, ended);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    /// 2026-12-03, a Thursday.
    const THU: u64 = 1_796_256_000;

    fn quota(limit: u64, period: QuotaPeriod) -> Quota {
        Quota {
            limit,
            period,
            offset: 0,
            first_period: None,
        }
    }

    fn taken(p: &PlanQuota, key: &Arc<str>, at: u64, tries: usize) -> usize {
        (0..tries).filter(|_| p.take(key, at)).count()
    }

    #[test]
    fn a_key_gets_its_limit_per_period_and_the_next_period_starts_at_zero() {
        let q = Quotas::default();
        let a: Arc<str> = Arc::from("ns/a");
        let b: Arc<str> = Arc::from("ns/b");
        let week = q.plan("ns/gold", Some(quota(3, QuotaPeriod::Week)));
        assert_eq!(taken(&week, &a, THU, 5), 3);
        assert_eq!(taken(&week, &b, THU, 1), 1);
        // Sunday 23:59:59 is the same week; Monday 00:00 a new one.
        assert_eq!(taken(&week, &a, THU + 4 * DAY - 1, 1), 0);
        assert_eq!(taken(&week, &a, THU + 4 * DAY, 5), 3);
        // A push raising the limit keeps the count: 3 used of 4.
        let again = q.plan("ns/gold", Some(quota(4, QuotaPeriod::Week)));
        assert!(Arc::ptr_eq(&week, &again));
        assert_eq!(taken(&again, &a, THU + 4 * DAY, 5), 1);
        let u = again.usage("ns/a").unwrap();
        assert_eq!((u.used, u.day_used, u.day), (4, 4, THU / DAY + 4));
    }

    #[test]
    fn the_offset_is_taken_from_the_first_period() {
        let q = Quotas::default();
        let a: Arc<str> = Arc::from("ns/a");
        let first = QuotaPeriod::Month.index(THU);
        let p = q.plan(
            "ns/gold",
            Some(Quota {
                offset: 8,
                first_period: Some(first),
                ..quota(10, QuotaPeriod::Month)
            }),
        );
        assert_eq!(taken(&p, &a, THU, 5), 2);
        let next = QuotaPeriod::Month.start(first + 1);
        assert_eq!(taken(&p, &a, next, 20), 10);
    }

    #[test]
    fn counts_survive_a_restart_through_the_store() {
        let dir = tempfile_dir();
        let a: Arc<str> = Arc::from("ns/a");
        {
            let store = QuotaStore::open(&dir).unwrap();
            let q = Quotas::default();
            let p = q.plan("ns/gold", Some(quota(5, QuotaPeriod::Day)));
            assert_eq!(taken(&p, &a, THU, 3), 3);
            assert_eq!(store.flush(&q).unwrap(), 1);
            // Nothing changed: nothing written.
            assert_eq!(store.flush(&q).unwrap(), 0);
        }
        let store = QuotaStore::open(&dir).unwrap();
        let q = Quotas::default();
        q.load(store.read().unwrap());
        let p = q.plan("ns/gold", Some(quota(5, QuotaPeriod::Day)));
        assert_eq!(taken(&p, &a, THU, 5), 2);
        store.flush(&q).unwrap();
        assert_eq!(
            store.days("ns/gold", 0, u64::MAX).unwrap(),
            vec![("ns/a".to_string(), THU / DAY, 5)]
        );
        // Only the plan's days in the range.
        assert!(store.days("ns/gold", 0, THU / DAY - 1).unwrap().is_empty());
        assert!(store.days("ns/other", 0, u64::MAX).unwrap().is_empty());
        // A file that is not a database is moved aside; counting goes on in a new one.
        drop(store);
        std::fs::write(dir.join("quotas.redb"), b"not a database").unwrap();
        let store = QuotaStore::open(&dir).unwrap();
        assert!(store.read().unwrap().is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("quotas.redb"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(std::fs::read_dir(&dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("unreadable")));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_day_of_every_plan_is_counted_for_reports_even_across_midnight() {
        let dir = tempfile_dir();
        let store = QuotaStore::open(&dir).unwrap();
        let q = Quotas::default();
        let a: Arc<str> = Arc::from("ns/a");
        // A plan without a quota lets everything through and still counts the day.
        let free = q.plan("ns/free", None);
        assert_eq!(taken(&free, &a, THU, 4), 4);
        assert!(free.shared_call(&a, THU).is_none());
        assert_eq!(
            q.unreported(),
            vec![("ns/free".into(), THU / DAY, "ns/a".into(), 4)]
        );
        assert!(q.unreported().is_empty(), "taken once");
        // The day's last requests and the next day's first, with neither the store nor the
        // reporter in between: the ended day keeps its full count for both.
        assert_eq!(taken(&free, &a, THU + DAY - 1, 2), 2);
        assert_eq!(taken(&free, &a, THU + DAY, 1), 1);
        free.record_shared(&a, THU + DAY, 0, true);
        let mut rows = q.unreported();
        rows.sort();
        assert_eq!(
            rows,
            vec![
                ("ns/free".into(), THU / DAY, "ns/a".into(), 6),
                ("ns/free".into(), THU / DAY + 1, "ns/a".into(), 2),
            ]
        );
        store.flush(&q).unwrap();
        assert_eq!(
            store.days("ns/free", 0, u64::MAX).unwrap(),
            vec![
                ("ns/a".to_string(), THU / DAY, 6),
                ("ns/a".to_string(), THU / DAY + 1, 2)
            ]
        );
        assert_eq!(store.all_days(THU / DAY + 1).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "tollhouse-quota-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
