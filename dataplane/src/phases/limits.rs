//! Throttle, then quota: one decision over a request's [`Chain`] of buckets and its key's
//! quota, taken for the whole fleet by Redis when the gateway has one and it answers
//! ([`crate::shared_limits`]), else by this replica's own buckets and counters.

use crate::error::GatewayError;
use crate::phases::quota::PlanQuota;
use crate::phases::throttle::Chain;
use crate::shared_limits::{SharedLimits, Verdict};
use redis::aio::ConnectionManager;
use std::sync::Arc;

/// Admits a request through `chain` and, for a key, its plan's quota, at `now` (the runtime's
/// nanoseconds) and `unix_secs`; refused, it has spent nothing anywhere.
pub async fn admit(
    shared: Option<(&SharedLimits, &ConnectionManager)>,
    chain: &Chain<'_>,
    quota: Option<(&PlanQuota, &Arc<str>)>,
    now: u64,
    unix_secs: u64,
) -> Result<(), GatewayError> {
    if let Some((limits, conn)) = shared {
        let call = quota.and_then(|(q, key)| q.shared_call(key, unix_secs));
        // The fleet's count when Redis kept the quota; every request let through counts in
        // the day's usage of this replica.
        let record = |used, counted| {
            if let Some((q, key)) = quota {
                q.record_shared(key, unix_secs, used, counted);
            }
        };
        match limits.admit(conn, chain, call.as_ref()).await {
            Some(Verdict::Admitted { used }) => {
                record(used, true);
                return Ok(());
            }
            Some(Verdict::Throttled) => return Err(GatewayError::Throttled),
            Some(Verdict::OverQuota { used }) => {
                record(used, false);
                return Err(GatewayError::QuotaExceeded);
            }
            // Redis is away: this replica decides alone.
            None => {}
        }
    }
    if !chain.admit(now) {
        return Err(GatewayError::Throttled);
    }
    if let Some((q, key)) = quota {
        if !q.take(key, unix_secs) {
            chain.refund();
            return Err(GatewayError::QuotaExceeded);
        }
    }
    Ok(())
}
