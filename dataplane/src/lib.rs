//! Tollhouse dataplane: compiles snapshots into route tables and serves API traffic.
//!
//! Data flows one way: [`source`] receives a snapshot, [`compile`] turns it into a
//! [`compile::CompiledSnapshot`], [`pipeline::Gateway`] swaps it in atomically and runs each
//! request through the pipeline to an [`upstream`] or a mock. This crate depends on no
//! Kubernetes crate and holds no API credentials.

pub mod admin;
pub mod compile;
pub mod delivery_tls;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod pipeline;
pub mod router;
pub mod source;
pub mod tls;
pub mod upstream;
