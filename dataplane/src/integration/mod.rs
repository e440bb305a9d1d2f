//! Integrations: what serves a routed request. HTTP proxy ([`http`]) and MOCK ([`mock`]);
//! an integration that cannot work at request time (an undefined stage variable) is served
//! and fails as AWS fails.

pub mod http;
pub mod mock;

use crate::error::GatewayError;

/// A ready-to-run integration.
pub enum CompiledIntegration {
    /// HTTP proxy.
    Http(http::HttpTarget),
    /// Fixed response.
    Mock(mock::MockResponse),
    /// Answers every call with this error (reference §3a R7).
    Failing(GatewayError),
}
