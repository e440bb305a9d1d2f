//! Throttle settings of Stages and ApiRoutes.

use super::conditions::{fail, Failure};
use tollhouse_snapshot::{Reason, Throttle};

/// Checks a `throttle`: `rateLimit` a finite number not below 0 (the CRD says so too, but a
/// directory of manifests has no schema); `burstLimit` is an unsigned integer by its type.
pub(super) fn check(
    throttle: Option<&tollhouse_api::Throttle>,
) -> Result<Option<Throttle>, Failure> {
    let Some(t) = throttle else {
        return Ok(None);
    };
    if !t.rate_limit.is_finite() || t.rate_limit < 0.0 {
        return fail(
            Reason::InvalidThrottle,
            format!(
                "throttle.rateLimit {} must be a number of requests per second, 0 or more",
                t.rate_limit
            ),
        );
    }
    Ok(Some(Throttle {
        rate_limit: t.rate_limit,
        burst_limit: t.burst_limit,
    }))
}
