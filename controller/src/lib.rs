//! Tollhouse controller: reads Stages, ApiRoutes and Secrets from a source, translates them
//! into a snapshot plus per-object status, and serves the snapshot to dataplanes.
//!
//! The modules follow the data: [`manifest`] → [`source`] → [`index`] → [`translate`] →
//! [`server`], with [`reconcile`] running one pass from files to a published snapshot.

pub mod convert;
pub mod index;
pub mod k8s;
pub mod manifest;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod source;
pub mod translate;
