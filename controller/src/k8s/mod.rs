//! The Kubernetes source: watches Stages, ApiRoutes and what they reference through the API
//! server, translates them with the same pure [`crate::translate`] as the directory mode, and
//! (on the leader only) writes status and Events back.
//!
//! - [`source`]: one reflector per kind, a debounced translate loop, publish into the hub.
//! - [`status`]: conditions (Accepted, ResolvedRefs, Programmed, Ready) by server-side apply.
//! - [`leader`]: a `coordination.k8s.io/v1` Lease decides which replica writes status and
//!   serves snapshots; a standby redirects dataplanes to the leader.

pub mod leader;
pub mod source;
pub mod status;

/// Field manager of every server-side apply this controller makes.
pub const FIELD_MANAGER: &str = "tollhouse-controller";
