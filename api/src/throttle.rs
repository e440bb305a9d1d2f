//! Throttle settings shared by Stages and ApiRoutes (AWS `ThrottleSettings`, reference §1).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A token bucket (AWS `ThrottleSettings`): `burstLimit` requests at once, refilled at
/// `rateLimit` per second; over it, 429 `{"message":"Too Many Requests"}`. `rateLimit: 0` or
/// `burstLimit: 0` blocks every request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    /// Steady-state requests per second; a decimal, may be below 1.
    #[schemars(range(min = 0.0))]
    pub rate_limit: f64,
    /// The bucket's size: requests allowed at once before 429s.
    pub burst_limit: u32,
}
