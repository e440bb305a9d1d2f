//! The request phases, in the order the pipeline runs them. Each holds its compiled config,
//! the conversion from the snapshot, and a pure decision function with its tests; the
//! pipeline owns the order and the per-request context.

pub mod access_log;
pub mod admission;
pub mod api_key;
pub mod limits;
pub mod mapping;
pub mod path;
pub mod quota;
pub mod resource_policy;
pub mod route;
pub mod stage;
pub mod throttle;
