//! Usage reports: each key's requests per day and plan, sent to the controller so that AWS's
//! GetUsage there covers the whole fleet in one call.
//!
//! The quota counters ([`crate::phases::quota`]) hand over the days that changed; the
//! [`Ledger`] keeps every (plan, day, key) count of the last [`KEEP_DAYS`] days and which of
//! them the controller has not acknowledged yet. Once a second the pending rows are `POST`ed to
//! `<controller>/v1/usage` as a [`UsageReport`]: absolute counts, so a report that is sent
//! twice (a lost answer, a retry) counts nothing twice. With nothing pending, an empty report
//! goes every [`HEARTBEAT`] (once anything was counted) so that a restarted controller, whose new epoch the answer carries,
//! is noticed and given every row again. A controller that cannot be reached loses nothing:
//! rows stay pending until one answers.
//!
//! The source id names this dataplane's counts. With a state directory it is kept there (in
//! `usage-source`), like the counts themselves, so a restart continues the same rows; without
//! one each process is a new source, and its counts start from zero, as its quota counters do.

use crate::phases::quota::{DayRow, QuotaStore};
use crate::pipeline::Gateway;
use crate::source::{PollError, Target};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollhouse_snapshot::{UsageAck, UsageReport, UsageRow};

/// Days kept and resent: the controller answers GetUsage for as many.
pub const KEEP_DAYS: u64 = 100;
/// How often the changed counts are sent.
const INTERVAL: Duration = Duration::from_secs(1);
/// The longest gap between two reports, so a restarted controller is noticed.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Rows per report, so that a resend of everything stays well under the controller's limit.
const BATCH: usize = 20_000;
/// How long one report may take.
const TIMEOUT: Duration = Duration::from_secs(10);
const SOURCE_FILE: &str = "usage-source";

/// (plan, day, key).
type RowKey = (String, u64, String);

/// Every count of the kept days, and which the controller has not acknowledged.
#[derive(Debug, Default)]
pub struct Ledger {
    rows: BTreeMap<RowKey, u64>,
    pending: BTreeSet<RowKey>,
}

impl Ledger {
    /// Takes in counts (from the store at start, or as they change): a count that differs
    /// from the one held becomes pending.
    pub fn absorb(&mut self, counts: Vec<DayRow>) {
        for (plan, day, key, used) in counts {
            let row = (plan, day, key);
            if self.rows.get(&row) != Some(&used) {
                self.rows.insert(row.clone(), used);
                self.pending.insert(row);
            }
        }
    }

    /// Up to `max` pending rows, oldest day first within a plan.
    pub fn batch(&self, max: usize) -> Vec<UsageRow> {
        self.pending
            .iter()
            .take(max)
            .filter_map(|row| {
                let used = *self.rows.get(row)?;
                Some(UsageRow {
                    plan: row.0.clone(),
                    day: row.1,
                    key: row.2.clone(),
                    used,
                })
            })
            .collect()
    }

    /// The controller acknowledged `rows`: they are no longer pending, unless their count
    /// changed since they were taken.
    pub fn sent(&mut self, rows: &[UsageRow]) {
        for r in rows {
            let row = (r.plan.clone(), r.day, r.key.clone());
            if self.rows.get(&row) == Some(&r.used) {
                self.pending.remove(&row);
            }
        }
    }

    /// A controller that forgot: every row is pending again.
    pub fn resend_all(&mut self) {
        self.pending = self.rows.keys().cloned().collect();
    }

    /// Drops the days before `day`.
    pub fn forget_before(&mut self, day: u64) {
        self.rows.retain(|(_, d, _), _| *d >= day);
        self.pending.retain(|(_, d, _)| *d >= day);
    }

    /// Whether nothing was counted in the kept days.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows waiting for the controller.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// This dataplane's source id: the one kept in `dir`, or a new one (kept there when it can
/// be). Without a directory, a new one for this process.
pub fn source_id(dir: Option<&Path>) -> String {
    let fresh = || format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let Some(dir) = dir else { return fresh() };
    let path = dir.join(SOURCE_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return id.to_string();
        }
    }
    let id = fresh();
    let written = std::fs::write(&path, format!("{id}\n"))
        .and_then(|()| crate::source::private_file_mode(&path));
    if let Err(error) = written {
        tracing::warn!(path = %path.display(), %error, "the usage source id is not kept; a restart reports as a new source");
    }
    id
}

/// The day of `now`, in days since the epoch.
fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// What one report brought.
enum Posted {
    Ack(String),
    Redirect(String),
}

/// Reports forever, with the client `client()` gives for each report.
pub async fn run<C>(
    mut client: impl FnMut() -> Client<C, Full<Bytes>>,
    gateway: Arc<Gateway>,
    controller: String,
    source: String,
    store: Option<Arc<QuotaStore>>,
) where
    C: Connect + Clone + Send + Sync + 'static,
{
    let mut ledger = Ledger::default();
    if let Some(store) = store {
        let from = today().saturating_sub(KEEP_DAYS);
        match tokio::task::spawn_blocking(move || store.all_days(from)).await {
            Ok(Ok(rows)) => ledger.absorb(rows),
            Ok(Err(error)) => {
                tracing::error!(%error, "the usage of past days is not read from the state directory; it is not reported")
            }
            Err(_) => {}
        }
    }
    let mut target = Target::new(&controller, "/v1/usage");
    let mut epoch: Option<String> = None;
    let mut last = Instant::now();
    let mut failing = false;
    let mut kept_from = today().saturating_sub(KEEP_DAYS);
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        ledger.absorb(gateway.runtime.quotas.unreported());
        let from = today().saturating_sub(KEEP_DAYS);
        if from != kept_from {
            kept_from = from;
            ledger.forget_before(from);
        }
        // Nothing counted yet: nothing to say. Nothing new: a heartbeat now and then.
        if ledger.pending() == 0 && (ledger.is_empty() || last.elapsed() < HEARTBEAT) {
            continue;
        }
        // Until everything pending is sent, or the controller fails.
        loop {
            let rows = ledger.batch(BATCH);
            let report = UsageReport {
                source: source.clone(),
                rows,
            };
            let result = match post(&client(), target.endpoint(), &report).await {
                Ok(Posted::Redirect(location)) => match target.redirect(&location) {
                    Ok(()) => continue,
                    Err(e) => Err(e),
                },
                Ok(Posted::Ack(e)) => Ok(e),
                Err(e) => Err(e),
            };
            match result {
                Ok(new_epoch) => {
                    target.answered();
                    last = Instant::now();
                    if failing {
                        failing = false;
                        tracing::info!(
                            pending = ledger.pending(),
                            "usage reports reach the controller again"
                        );
                    }
                    ledger.sent(&report.rows);
                    if epoch.as_ref().is_some_and(|old| *old != new_epoch) {
                        tracing::info!(
                            "the controller restarted; sending it every usage count again"
                        );
                        ledger.resend_all();
                    }
                    epoch = Some(new_epoch);
                    if ledger.pending() == 0 {
                        break;
                    }
                }
                Err(error) => {
                    target.failed();
                    if !failing {
                        failing = true;
                        tracing::warn!(controller = %target.endpoint(), %error, pending = ledger.pending(),
                            "usage report failed; the counts are kept and sent again every second");
                    }
                    break;
                }
            }
        }
    }
}

async fn post<C>(
    client: &Client<C, Full<Bytes>>,
    url: &str,
    report: &UsageReport,
) -> Result<Posted, PollError>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let body = serde_json::to_vec(report).map_err(|e| PollError::Decode(e.to_string()))?;
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| PollError::Unreachable(e.to_string()))?;
    let req = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| PollError::Unreachable(e.to_string()))?;
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| PollError::Unreachable("timed out".into()))?
        .map_err(|e| PollError::transport(&e))?;
    match resp.status() {
        http::StatusCode::OK => {
            let raw = tokio::time::timeout(TIMEOUT, resp.into_body().collect())
                .await
                .map_err(|_| PollError::Unreachable("timed out reading the answer".into()))?
                .map_err(|e| PollError::transport(&e))?
                .to_bytes();
            let ack: UsageAck =
                serde_json::from_slice(&raw).map_err(|e| PollError::Decode(e.to_string()))?;
            Ok(Posted::Ack(ack.epoch))
        }
        http::StatusCode::TEMPORARY_REDIRECT => resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| Posted::Redirect(l.to_string()))
            .ok_or_else(|| PollError::Redirect("307 without a readable Location".into())),
        s => Err(PollError::Status(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(plan: &str, day: u64, key: &str, used: u64) -> DayRow {
        (plan.into(), day, key.into(), used)
    }

    #[test]
    fn only_changed_counts_are_pending_and_an_ack_of_an_older_count_keeps_the_newer() {
        let mut l = Ledger::default();
        l.absorb(vec![
            row("shop/gold", 10, "shop/a", 3),
            row("shop/gold", 10, "shop/b", 1),
        ]);
        assert_eq!(l.pending(), 2);
        let batch = l.batch(10);
        assert_eq!(batch.len(), 2);
        // The same count again is not news; a new one is.
        l.absorb(vec![
            row("shop/gold", 10, "shop/a", 3),
            row("shop/gold", 10, "shop/b", 2),
        ]);
        l.sent(&batch);
        let left = l.batch(10);
        assert_eq!(left.len(), 1);
        assert_eq!((left[0].key.as_str(), left[0].used), ("shop/b", 2));
        l.sent(&left);
        assert_eq!(l.pending(), 0);
        l.resend_all();
        assert_eq!(l.pending(), 2);
        l.forget_before(11);
        assert_eq!((l.pending(), l.batch(10).len()), (0, 0));
    }

    #[test]
    fn batches_are_bounded() {
        let mut l = Ledger::default();
        l.absorb((0..5).map(|d| row("p", d, "k", 1)).collect());
        assert_eq!(l.batch(2).len(), 2);
    }

    #[test]
    fn the_source_id_is_kept_in_the_state_directory() {
        let dir = std::env::temp_dir().join(format!("tollhouse-usage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let id = source_id(Some(&dir));
        assert_eq!(id.len(), 32);
        assert_eq!(source_id(Some(&dir)), id);
        assert_ne!(source_id(None), id);
        // A damaged file gets a new id.
        std::fs::write(dir.join(SOURCE_FILE), "../../etc\n").unwrap();
        let other = source_id(Some(&dir));
        assert_ne!(other, id);
        assert_eq!(source_id(Some(&dir)), other);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
