//! Throttle settings (AWS `ThrottleSettings`).

use serde::{Deserialize, Serialize};

/// A token bucket: `burst_limit` requests at once, refilled at `rate_limit` per second. The
/// controller has checked that `rate_limit` is finite and not negative; 0 in either blocks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    /// Requests per second.
    pub rate_limit: f64,
    /// The bucket's size.
    pub burst_limit: u32,
}
