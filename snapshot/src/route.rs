//! A route and its integration.

use crate::{RouteAuthorization, SourceRef, Throttle};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One route: a path template, the methods it answers and its integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The ApiRoute object.
    pub source: SourceRef,
    /// Normalised AWS path template: `/pets/{petId}`, `/files/{proxy+}`, `/`.
    pub path: String,
    /// Upper-case methods, sorted; `["ANY"]` answers every method.
    pub methods: Vec<String>,
    /// What serves the request.
    pub integration: Integration,
    /// The limit shared by every client of the route on this Stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Whether a request needs an API key of a usage plan covering the Stage.
    #[serde(default, skip_serializing_if = "is_false")]
    pub api_key_required: bool,
    /// The authorizer a request must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<RouteAuthorization>,
}

/// What serves a request that matched a route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Integration {
    /// Proxy the request to an HTTP(S) URI.
    HttpProxy(HttpProxy),
    /// Answer with a fixed response.
    Mock(Mock),
}

/// HTTP proxy integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HttpProxy {
    /// URI template: may hold `${stageVariables.x}` and `{pathParam}` (`{proxy}` for greedy).
    /// With `backend` it is a path template, or empty to send the request's path below the
    /// stage's base path.
    pub uri: String,
    /// Key into [`Snapshot::backends`]: proxy to that Service's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Integration timeout in milliseconds.
    pub timeout_ms: u32,
    /// Speak HTTP/2 to a plain-text upstream (prior knowledge); `https` upstreams use ALPN.
    #[serde(default, skip_serializing_if = "is_false")]
    pub http2: bool,
    /// Parameter mapping (`append:header.x` → value template), as the controller checked it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// MOCK integration: a fixed response.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Mock {
    /// Status code.
    pub status_code: u16,
    /// Response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}
