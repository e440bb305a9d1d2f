//! The fleet's usage per plan, key and day, from dataplanes' reports, for AWS's GetUsage.
//!
//! Each dataplane counts only the requests it served, so no one of them can answer GetUsage;
//! the leader adds them up. Reports are absolute per (source, plan, day, key): the book keeps
//! each source's last word and, beside it, the fleet's running total, so a resend changes
//! nothing and a query reads one table instead of summing thousands of sources.
//!
//! The book is bounded where a client could grow it: at most [`MAX_SOURCES`] sources (past
//! that the one seen least recently is retired: its counts stay in the totals, its own table
//! goes), and [`KEEP_DAYS`] days. The plans and their keys come from the current snapshot, so
//! a subscribed key with no traffic still shows zeros and the quota gives `remaining`.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use tollhouse_snapshot::{format_date, parse_date, Quota, Snapshot, UsageReport};

/// Sources (dataplanes, or their processes) whose own counts are kept.
pub const MAX_SOURCES: usize = 4096;
/// Days of usage kept before today; also the longest range GetUsage answers.
pub const KEEP_DAYS: u64 = 100;
/// The largest `POST /v1/usage` body read.
pub const MAX_REPORT_BYTES: usize = 16 << 20;
/// GetUsage's default page, and its largest.
pub const DEFAULT_LIMIT: usize = 25;
/// See [`DEFAULT_LIMIT`].
pub const MAX_LIMIT: usize = 500;
/// The longest source, plan or key name accepted (a `namespace/name` is at most 317 bytes).
const MAX_NAME: usize = 1024;
/// Days after today a row may be for: a dataplane whose clock runs a little ahead.
const FUTURE_DAYS: u64 = 1;

const DAY_SECS: u64 = 86_400;

/// Why a `POST /v1/usage` was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    /// The body is not the JSON of a `UsageReport`.
    #[error("the body must be the JSON of a usage report: {0}")]
    NotJson(String),
    /// No source, or one too long.
    #[error("source must be 1 to 1024 bytes")]
    BadSource,
    /// A row without a plan or key, or with one too long.
    #[error("every row needs a plan and a key of 1 to 1024 bytes")]
    BadRow,
}

/// Why a GetUsage was refused; each is an AWS control-plane error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    /// Neither the current snapshot nor any report knows the plan.
    #[error("Invalid Usage Plan ID specified")]
    NoSuchPlan,
    /// `startDate` or `endDate` is missing.
    #[error("{0} is required, as YYYY-MM-DD")]
    MissingDate(&'static str),
    /// `startDate` or `endDate` is not a date.
    #[error("{0} must be a date as YYYY-MM-DD (1970 or later)")]
    BadDate(&'static str),
    /// `endDate` is before `startDate`.
    #[error("endDate must not be before startDate")]
    EndBeforeStart,
    /// More days than the book keeps.
    #[error("the range has {0} days, but the usage report keeps 100 days")]
    RangeTooLong(u64),
    /// `limit` is not in 1..=500.
    #[error("limit must be a number from 1 to 500")]
    BadLimit,
    /// `position` is not a token this server gave.
    #[error("position must be one a previous answer gave")]
    BadPosition,
}

impl UsageError {
    /// `x-amzn-ErrorType`.
    pub fn error_type(&self) -> &'static str {
        match self {
            UsageError::NoSuchPlan => "NotFoundException",
            UsageError::MissingDate(_)
            | UsageError::BadDate(_)
            | UsageError::EndBeforeStart
            | UsageError::RangeTooLong(_)
            | UsageError::BadLimit
            | UsageError::BadPosition => "BadRequestException",
        }
    }
}

/// A GetUsage request, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    /// The plan, `namespace/name`.
    pub plan: String,
    /// First day, days since 1970-01-01.
    pub start: u64,
    /// Last day, included.
    pub end: u64,
    /// Only this key.
    pub key: Option<String>,
    /// Keys per page.
    pub limit: usize,
    /// The first key of this page.
    pub position: Option<String>,
}

impl UsageQuery {
    /// Parses GetUsage's query parameters (decoded; an empty value counts as absent).
    pub fn parse(plan: String, params: &[(String, String)]) -> Result<UsageQuery, UsageError> {
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let date = |name: &'static str| {
            let text = param(name).ok_or(UsageError::MissingDate(name))?;
            parse_date(text).ok_or(UsageError::BadDate(name))
        };
        let (start, end) = (date("startDate")?, date("endDate")?);
        if end < start {
            return Err(UsageError::EndBeforeStart);
        }
        let days = end - start + 1;
        if days > KEEP_DAYS {
            return Err(UsageError::RangeTooLong(days));
        }
        let limit = match param("limit").map(str::parse::<usize>) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => return Err(UsageError::BadLimit),
        };
        let position = param("position")
            .map(|token| {
                hex::decode(token)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or(UsageError::BadPosition)
            })
            .transpose()?;
        Ok(UsageQuery {
            plan,
            start,
            end,
            key: param("keyId").map(str::to_string),
            limit,
            position,
        })
    }
}

/// GetUsage's answer, in AWS's wire form.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// The plan as asked for.
    pub usage_plan_id: String,
    /// `YYYY-MM-DD`.
    pub start_date: String,
    /// `YYYY-MM-DD`.
    pub end_date: String,
    /// The next page's token, when more keys follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Per key id, one `[used, remaining]` per day; `remaining` is null without a quota.
    pub values: BTreeMap<String, Vec<(u64, Option<u64>)>>,
}

/// A plan as the current snapshot has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanInfo {
    /// Its quota, which gives `remaining`.
    pub quota: Option<Quota>,
    /// Ids of the keys subscribed to it.
    pub keys: BTreeSet<String>,
}

/// The plans of a snapshot, with each one's keys (the snapshot lists plans per key).
pub fn plans_of(snapshot: &Snapshot) -> HashMap<String, PlanInfo> {
    let mut plans: HashMap<String, PlanInfo> = snapshot
        .usage_plans
        .iter()
        .map(|p| {
            let info = PlanInfo {
                quota: p.quota,
                keys: BTreeSet::new(),
            };
            (p.key(), info)
        })
        .collect();
    for key in &snapshot.api_keys {
        for plan in &key.plans {
            if let Some(info) = plans.get_mut(plan) {
                info.keys.insert(key.id.clone());
            }
        }
    }
    plans
}

/// (plan, key, day).
type RowKey = (String, String, u64);

#[derive(Debug, Default)]
struct Source {
    rows: BTreeMap<RowKey, u64>,
    /// When it last reported, on the book's own counter (only the order matters).
    seen: u64,
}

/// Per plan, per key, per day: the fleet's count.
type Totals = HashMap<String, BTreeMap<String, BTreeMap<u64, u64>>>;

#[derive(Debug)]
struct Book {
    max_sources: usize,
    sources: HashMap<String, Source>,
    /// Every source's counts, retired ones included.
    totals: Totals,
    plans: HashMap<String, PlanInfo>,
    /// The day rows before the retention window were last dropped.
    pruned_on: Option<u64>,
    ticks: u64,
}

impl Book {
    fn new(max_sources: usize) -> Book {
        Book {
            max_sources,
            sources: HashMap::new(),
            totals: HashMap::new(),
            plans: HashMap::new(),
            pruned_on: None,
            ticks: 0,
        }
    }

    fn record(&mut self, report: UsageReport, today: u64) -> usize {
        let oldest = today.saturating_sub(KEEP_DAYS);
        if self.pruned_on != Some(today) {
            self.prune(oldest);
            self.pruned_on = Some(today);
        }
        self.ticks += 1;
        let seen = self.ticks;
        if let Some(source) = self.sources.get_mut(&report.source) {
            source.seen = seen;
        }
        if report.rows.is_empty() {
            return 0;
        }
        if !self.sources.contains_key(&report.source) && self.sources.len() >= self.max_sources {
            self.retire_least_recent();
        }
        let source = self.sources.entry(report.source).or_default();
        source.seen = seen;
        let mut recorded = 0;
        for row in report.rows {
            if row.day < oldest || row.day > today + FUTURE_DAYS {
                continue;
            }
            recorded += 1;
            let old = source
                .rows
                .insert((row.plan.clone(), row.key.clone(), row.day), row.used)
                .unwrap_or(0);
            if old == row.used {
                continue;
            }
            let total = self
                .totals
                .entry(row.plan)
                .or_default()
                .entry(row.key)
                .or_default()
                .entry(row.day)
                .or_default();
            *total = total.saturating_sub(old).saturating_add(row.used);
        }
        recorded
    }

    /// Drops the source seen least recently; its counts stay in the totals.
    fn retire_least_recent(&mut self) {
        let least = self
            .sources
            .iter()
            .min_by_key(|(_, s)| s.seen)
            .map(|(id, _)| id.clone());
        if let Some(id) = least {
            self.sources.remove(&id);
        }
    }

    fn prune(&mut self, oldest: u64) {
        for source in self.sources.values_mut() {
            source.rows.retain(|(_, _, day), _| *day >= oldest);
        }
        self.sources.retain(|_, s| !s.rows.is_empty());
        for keys in self.totals.values_mut() {
            for days in keys.values_mut() {
                days.retain(|day, _| *day >= oldest);
            }
            keys.retain(|_, days| !days.is_empty());
        }
        self.totals.retain(|_, keys| !keys.is_empty());
    }

    fn usage(&self, query: &UsageQuery) -> Result<Usage, UsageError> {
        let info = self.plans.get(&query.plan);
        let (no_keys, no_days) = (BTreeMap::new(), BTreeMap::new());
        let counted = self.totals.get(&query.plan);
        if info.is_none() && counted.is_none() {
            return Err(UsageError::NoSuchPlan);
        }
        let counted = counted.unwrap_or(&no_keys);
        let quota = info.and_then(|i| i.quota);
        let used_in_range = |key: &str| {
            counted
                .get(key)
                .is_some_and(|days| days.range(query.start..=query.end).any(|(_, n)| *n > 0))
        };
        // Subscribed keys and keys with usage in the range, merged in order from the position.
        let from = (
            Bound::Included(query.position.as_deref().unwrap_or("")),
            Bound::Unbounded,
        );
        let subscribed = info
            .into_iter()
            .flat_map(|i| i.keys.range::<str, _>(from))
            .map(String::as_str);
        let with_usage = counted
            .range::<str, _>(from)
            .map(|(k, _)| k.as_str())
            .filter(|k| used_in_range(k));
        let mut keys = merge(subscribed, with_usage)
            .filter(|k| query.key.as_deref().is_none_or(|only| only == *k));
        let mut values = BTreeMap::new();
        for key in keys.by_ref().take(query.limit) {
            let days = counted.get(key).unwrap_or(&no_days);
            values.insert(key.to_string(), series(days, quota, query.start, query.end));
        }
        let position = keys.next().map(hex::encode);
        Ok(Usage {
            usage_plan_id: query.plan.clone(),
            start_date: format_date(query.start),
            end_date: format_date(query.end),
            position,
            values,
        })
    }
}

/// The sorted union of two sorted sequences.
fn merge<'a>(
    a: impl Iterator<Item = &'a str>,
    b: impl Iterator<Item = &'a str>,
) -> impl Iterator<Item = &'a str> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x < y => a.next(),
        (Some(x), Some(y)) if x > y => b.next(),
        (Some(_), Some(_)) => {
            b.next();
            a.next()
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// `[used, remaining]` for each day from `start` to `end`: remaining is the period's limit less
/// what the fleet used from the period's first day (which may be before `start`) to that day.
fn series(
    days: &BTreeMap<u64, u64>,
    quota: Option<Quota>,
    start: u64,
    end: u64,
) -> Vec<(u64, Option<u64>)> {
    let used = |day: u64| days.get(&day).copied().unwrap_or(0);
    let Some(quota) = quota else {
        return (start..=end).map(|d| (used(d), None)).collect();
    };
    let period = |day: u64| quota.period.index(day * DAY_SECS);
    let mut index = period(start);
    let first = quota.period.start(index) / DAY_SECS;
    let mut spent: u64 = days.range(first..start).map(|(_, n)| *n).sum();
    let mut out = Vec::new();
    for day in start..=end {
        if period(day) != index {
            index = period(day);
            spent = 0;
        }
        spent = spent.saturating_add(used(day));
        out.push((used(day), Some(quota.limit_in(index).saturating_sub(spent))));
    }
    out
}

/// The fleet's usage: what dataplanes report, and the plans of the current snapshot.
#[derive(Debug)]
pub struct UsageBook {
    epoch: String,
    book: Mutex<Book>,
}

impl Default for UsageBook {
    fn default() -> Self {
        UsageBook::new()
    }
}

impl UsageBook {
    /// An empty book whose epoch is this process's start (nanoseconds) and id.
    pub fn new() -> UsageBook {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        UsageBook::with(format!("{nanos}-{}", std::process::id()), MAX_SOURCES)
    }

    fn with(epoch: String, max_sources: usize) -> UsageBook {
        UsageBook {
            epoch,
            book: Mutex::new(Book::new(max_sources)),
        }
    }

    /// What every answer to a report carries: fixed for this process's life.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // Every change is a few map updates that leave the book consistent.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Parses and records the body of a `POST /v1/usage` on `today` (days since 1970-01-01).
    pub fn receive(&self, body: &[u8], today: u64) -> Result<usize, ReportError> {
        let report: UsageReport =
            serde_json::from_slice(body).map_err(|e| ReportError::NotJson(e.to_string()))?;
        self.record(report, today)
    }

    /// Records a report: each row replaces what its source said before for that plan, key and
    /// day. Rows outside the days kept are ignored. Returns the rows recorded.
    pub fn record(&self, report: UsageReport, today: u64) -> Result<usize, ReportError> {
        let name_ok = |s: &str| !s.is_empty() && s.len() <= MAX_NAME;
        if !name_ok(&report.source) {
            return Err(ReportError::BadSource);
        }
        if !report
            .rows
            .iter()
            .all(|r| name_ok(&r.plan) && name_ok(&r.key))
        {
            return Err(ReportError::BadRow);
        }
        Ok(self.lock().record(report, today))
    }

    /// Replaces the plans and their keys with those of `snapshot`.
    pub fn set_plans(&self, snapshot: &Snapshot) {
        let plans = plans_of(snapshot);
        self.lock().plans = plans;
    }

    /// Answers a GetUsage.
    pub fn usage(&self, query: &UsageQuery) -> Result<Usage, UsageError> {
        self.lock().usage(query)
    }

    /// Sources whose own counts are kept.
    pub fn sources(&self) -> usize {
        self.lock().sources.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tollhouse_snapshot::{ApiKey, QuotaPeriod, SourceRef, UsagePlan, UsageRow};

    /// 2026-12-03.
    fn dec(day: u64) -> u64 {
        parse_date("2026-12-01").unwrap() + day - 1
    }

    fn report(source: &str, rows: &[(&str, &str, u64, u64)]) -> UsageReport {
        UsageReport {
            source: source.into(),
            rows: rows
                .iter()
                .map(|&(plan, key, day, used)| UsageRow {
                    plan: plan.into(),
                    key: key.into(),
                    day,
                    used,
                })
                .collect(),
        }
    }

    /// Plan shop/gold with `keys`.
    pub(crate) fn snapshot(quota: Option<Quota>, keys: &[&str]) -> Snapshot {
        Snapshot {
            usage_plans: vec![UsagePlan {
                source: SourceRef {
                    kind: "UsagePlan".into(),
                    namespace: "shop".into(),
                    name: "gold".into(),
                    generation: 1,
                },
                stages: vec![],
                throttle: None,
                quota,
            }],
            api_keys: keys
                .iter()
                .map(|id| ApiKey {
                    id: (*id).into(),
                    sha256: String::new(),
                    plans: vec!["shop/gold".into()],
                })
                .collect(),
            ..Snapshot::default()
        }
    }

    fn query(start: u64, end: u64) -> UsageQuery {
        UsageQuery {
            plan: "shop/gold".into(),
            start,
            end,
            key: None,
            limit: DEFAULT_LIMIT,
            position: None,
        }
    }

    fn used(book: &UsageBook, q: &UsageQuery, key: &str) -> Vec<(u64, Option<u64>)> {
        book.usage(q)
            .unwrap()
            .values
            .get(key)
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn sources_add_up_and_a_resend_changes_nothing() {
        let book = UsageBook::new();
        book.set_plans(&snapshot(None, &["shop/k1"]));
        let a = report("dp-a", &[("shop/gold", "shop/k1", dec(3), 5)]);
        book.record(a.clone(), dec(3)).unwrap();
        book.record(
            report("dp-b", &[("shop/gold", "shop/k1", dec(3), 7)]),
            dec(3),
        )
        .unwrap();
        book.record(a, dec(3)).unwrap();
        let q = query(dec(3), dec(3));
        assert_eq!(used(&book, &q, "shop/k1"), vec![(12, None)]);
        // A source's later count replaces its earlier one.
        book.record(
            report("dp-a", &[("shop/gold", "shop/k1", dec(3), 9)]),
            dec(3),
        )
        .unwrap();
        assert_eq!(used(&book, &q, "shop/k1"), vec![(16, None)]);
        // A heartbeat is answered and changes nothing.
        assert_eq!(book.record(report("dp-a", &[]), dec(3)), Ok(0));
        assert_eq!(used(&book, &q, "shop/k1"), vec![(16, None)]);
    }

    /// A MONTH quota counts from the 1st, before startDate too, and starts afresh on the next
    /// month; the first period's offset lowers its limit.
    #[test]
    fn remaining_counts_from_the_start_of_the_quota_period() {
        let nov30 = dec(1) - 1;
        let month = QuotaPeriod::Month.index(dec(1) * DAY_SECS);
        let book = UsageBook::new();
        book.set_plans(&snapshot(
            Some(Quota {
                limit: 100,
                period: QuotaPeriod::Month,
                offset: 10,
                first_period: Some(month),
            }),
            &["shop/k1"],
        ));
        let rows = [
            ("shop/gold", "shop/k1", nov30, 40),
            ("shop/gold", "shop/k1", dec(1), 3),
            ("shop/gold", "shop/k1", dec(2), 4),
            ("shop/gold", "shop/k1", dec(4), 5),
        ];
        book.record(report("dp-a", &rows), dec(4)).unwrap();
        book.record(
            report("dp-b", &[("shop/gold", "shop/k1", dec(2), 1)]),
            dec(4),
        )
        .unwrap();
        assert_eq!(
            used(&book, &query(dec(3), dec(4)), "shop/k1"),
            vec![(0, Some(82)), (5, Some(77))]
        );
        assert_eq!(
            used(&book, &query(nov30, dec(1)), "shop/k1"),
            vec![(40, Some(60)), (3, Some(87))]
        );
    }

    #[test]
    fn keys_are_the_plans_and_those_with_usage_paged_in_order() {
        let book = UsageBook::new();
        book.set_plans(&snapshot(None, &["shop/a", "shop/c", "shop/e"]));
        let rows = [
            ("shop/gold", "shop/b", dec(2), 1),
            ("shop/gold", "shop/d", dec(2), 2),
            // Used only outside the range: not listed.
            ("shop/gold", "shop/z", dec(9), 3),
        ];
        book.record(report("dp-a", &rows), dec(9)).unwrap();
        let mut q = query(dec(1), dec(3));
        q.limit = 2;
        let mut seen = vec![];
        loop {
            let page = book.usage(&q).unwrap();
            seen.push(page.values.keys().cloned().collect::<Vec<_>>());
            match page.position {
                Some(p) => {
                    q.position = UsageQuery::parse(
                        q.plan.clone(),
                        &[
                            ("startDate".into(), "2026-12-01".into()),
                            ("endDate".into(), "2026-12-03".into()),
                            ("position".into(), p),
                        ],
                    )
                    .unwrap()
                    .position
                }
                None => break,
            }
        }
        assert_eq!(
            seen,
            vec![
                vec!["shop/a", "shop/b"],
                vec!["shop/c", "shop/d"],
                vec!["shop/e"]
            ]
        );
        assert_eq!(
            used(&book, &query(dec(1), dec(3)), "shop/d"),
            vec![(0, None), (2, None), (0, None)]
        );
        let mut only = query(dec(1), dec(3));
        only.key = Some("shop/d".into());
        let page = book.usage(&only).unwrap();
        assert_eq!(page.values.keys().collect::<Vec<_>>(), vec!["shop/d"]);
        assert_eq!(page.position, None);
    }

    #[test]
    fn a_plan_is_known_from_the_snapshot_or_from_usage() {
        let book = UsageBook::new();
        let mut q = query(dec(1), dec(1));
        assert_eq!(book.usage(&q), Err(UsageError::NoSuchPlan));
        book.set_plans(&snapshot(None, &[]));
        assert!(book.usage(&q).unwrap().values.is_empty());
        q.plan = "shop/gone".into();
        book.record(
            report("dp-a", &[("shop/gone", "shop/k", dec(1), 2)]),
            dec(1),
        )
        .unwrap();
        assert_eq!(used(&book, &q, "shop/k"), vec![(2, None)]);
    }

    #[test]
    fn a_retired_source_keeps_its_counts() {
        let book = UsageBook::with("e".into(), 2);
        book.set_plans(&snapshot(None, &[]));
        for (n, source) in ["dp-1", "dp-2", "dp-3"].into_iter().enumerate() {
            book.record(
                report(source, &[("shop/gold", "shop/k", dec(1), 10 + n as u64)]),
                dec(1),
            )
            .unwrap();
        }
        assert_eq!(book.sources(), 2);
        assert_eq!(
            used(&book, &query(dec(1), dec(1)), "shop/k"),
            vec![(33, None)]
        );
        // dp-1, seen least recently, was retired when dp-3 came: its 10 still count, and dp-3
        // still replaces its own.
        book.record(
            report("dp-3", &[("shop/gold", "shop/k", dec(1), 20)]),
            dec(1),
        )
        .unwrap();
        assert_eq!(
            used(&book, &query(dec(1), dec(1)), "shop/k"),
            vec![(41, None)]
        );
    }

    #[test]
    fn days_before_the_retention_window_are_dropped() {
        let book = UsageBook::new();
        book.set_plans(&snapshot(None, &[]));
        let today = dec(1) + 200;
        book.record(
            report("dp-a", &[("shop/gold", "shop/k", dec(1), 2)]),
            dec(1),
        )
        .unwrap();
        // An old row in a new report is ignored, and the next day's first report prunes.
        assert_eq!(
            book.record(
                report(
                    "dp-b",
                    &[
                        ("shop/gold", "shop/k", dec(2), 3),
                        ("shop/gold", "shop/k", today, 4)
                    ]
                ),
                today
            ),
            Ok(1)
        );
        assert_eq!(used(&book, &query(dec(1), dec(2)), "shop/k"), vec![]);
        assert_eq!(book.sources(), 1);
    }

    #[test]
    fn reports_and_queries_are_validated() {
        let book = UsageBook::new();
        assert!(matches!(
            book.receive(b"{", 1),
            Err(ReportError::NotJson(_))
        ));
        assert_eq!(
            book.receive(br#"{"source":"","rows":[]}"#, 1),
            Err(ReportError::BadSource)
        );
        assert_eq!(
            book.receive(
                br#"{"source":"a","rows":[{"plan":"","day":1,"key":"k","used":1}]}"#,
                1
            ),
            Err(ReportError::BadRow)
        );
        let parse = |q: &[(&str, &str)]| {
            let params: Vec<(String, String)> = q
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            UsageQuery::parse("shop/gold".into(), &params)
        };
        let dates = [("startDate", "2026-12-01"), ("endDate", "2026-12-03")];
        let ok = parse(&dates).unwrap();
        assert_eq!((ok.start, ok.end, ok.limit), (dec(1), dec(3), 25));
        assert_eq!(
            parse(&[("endDate", "2026-12-03")]),
            Err(UsageError::MissingDate("startDate"))
        );
        assert_eq!(
            parse(&[("startDate", "2026-12-01"), ("endDate", "12/03/2026")]),
            Err(UsageError::BadDate("endDate"))
        );
        assert_eq!(
            parse(&[("startDate", "2026-12-03"), ("endDate", "2026-12-01")]),
            Err(UsageError::EndBeforeStart)
        );
        assert_eq!(
            parse(&[("startDate", "2026-01-01"), ("endDate", "2026-12-01")]),
            Err(UsageError::RangeTooLong(335))
        );
        for limit in ["0", "501", "x"] {
            let q = [dates[0], dates[1], ("limit", limit)];
            assert_eq!(parse(&q), Err(UsageError::BadLimit), "{limit}");
        }
        let q = [dates[0], dates[1], ("position", "zz")];
        assert_eq!(parse(&q), Err(UsageError::BadPosition));
    }

    #[test]
    fn the_answer_has_aws_wire_names() {
        let book = UsageBook::new();
        book.set_plans(&snapshot(
            Some(Quota {
                limit: 10,
                period: QuotaPeriod::Day,
                offset: 0,
                first_period: None,
            }),
            &["shop/k"],
        ));
        let json = serde_json::to_string(&book.usage(&query(dec(1), dec(2))).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"usagePlanId":"shop/gold","startDate":"2026-12-01","endDate":"2026-12-02","values":{"shop/k":[[0,10],[0,10]]}}"#
        );
    }
}
