//! Tollhouse controller: reads Stages, ApiRoutes and Secrets from a source, translates them
//! into a snapshot plus per-object status, and serves the snapshot to dataplanes.
//!
//! The modules follow the data: [`manifest`] → [`source`] → [`index`] → [`translate`] →
//! [`server`], all speaking of the kinds and inputs of [`model`], with [`reconcile`] running one pass from files to a published snapshot and
//! [`delivery_tls`] building the snapshot server's mutual TLS, and [`usage`] adding up the
//! dataplanes' usage reports for GetUsage.

pub mod convert;
pub mod delivery_tls;
pub mod index;
pub mod k8s;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod reconcile;
pub mod server;
pub mod source;
pub mod translate;
pub mod usage;
