//! Tollhouse dataplane: compiles snapshots into route tables and serves API traffic.
//!
//! Data flows one way: [`source`] receives a snapshot, [`compile`] turns it into a
//! [`compile::CompiledSnapshot`] phase by phase, [`pipeline::Gateway`] swaps it in atomically
//! and runs each request through the [`phases`] over a [`context::RequestContext`] to an
//! [`integration`]; [`runtime`] holds what outlives a snapshot. This crate depends on no
//! Kubernetes crate and holds no API credentials.

pub mod access_log;
pub mod admin;
pub mod authorizer;
pub mod body;
pub mod compile;
pub mod context;
pub mod delivery_tls;
pub mod error;
pub mod flavour;
pub mod integration;
pub mod listener;
pub mod metrics;
pub mod phases;
pub mod pipeline;
pub mod router;
pub mod runtime;
pub mod shared_limits;
pub mod source;
pub mod tls;
pub mod upstream;
pub mod usage_report;
