//! The ApiRoute kind: one route of an API and its integration.

use crate::{BackendRef, ResourceStatus, Throttle};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One route of an API: a path template, methods, and the integration that serves it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollhouse.dev",
    version = "v1alpha1",
    kind = "ApiRoute",
    namespaced,
    status = "ResourceStatus",
    shortname = "ar",
    category = "tollhouse",
    printcolumn = r#"{"name":"API","type":"string","jsonPath":".spec.api"}"#,
    printcolumn = r#"{"name":"Methods","type":"string","jsonPath":".spec.methods"}"#,
    printcolumn = r#"{"name":"Path","type":"string","jsonPath":".spec.path"}"#,
    printcolumn = r#"{"name":"Integration","type":"string","jsonPath":".spec.integration.type"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApiRouteSpec {
    /// Name of the API this route belongs to.
    #[schemars(length(min = 1, max = 63))]
    pub api: String,
    /// AWS path template: `/pets`, `/pets/{petId}`, greedy `/files/{proxy+}` as last segment.
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub path: String,
    /// HTTP methods (GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS) or ANY. Default `[ANY]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<Method>,
    /// What serves a matching request.
    pub integration: IntegrationSpec,
    /// Whether a request needs the API key of a usage plan that covers the Stage; only such
    /// routes are held to usage plans' throttles and quotas (AWS `apiKeyRequired`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_key_required: bool,
    /// Limits shared by every client of this route on each Stage that serves it (AWS's
    /// per-method throttling): checked before the Stage's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// The Authorizer a request must pass (AWS `authorizerId`, `authorizationScopes`). A
    /// route whose Authorizer is missing or not accepted is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<crate::Authorization>,
}

/// An HTTP method a route answers, or ANY.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// Every method not defined by another route on the same path.
    Any,
    /// GET.
    Get,
    /// POST.
    Post,
    /// PUT.
    Put,
    /// DELETE.
    Delete,
    /// PATCH.
    Patch,
    /// HEAD.
    Head,
    /// OPTIONS.
    Options,
}

impl Method {
    /// Upper-case name as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Any => "ANY",
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
        }
    }
}

/// Integration types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum IntegrationType {
    /// Proxy to an HTTP(S) URI.
    #[serde(rename = "HTTP_PROXY")]
    HttpProxy,
    /// Answer with a fixed response.
    #[serde(rename = "MOCK")]
    Mock,
}

/// The integration of a route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationSpec {
    /// HTTP_PROXY or MOCK.
    #[serde(rename = "type")]
    pub kind: IntegrationType,
    /// HTTP_PROXY: target URI; may use `${stageVariables.x}` and the route's path parameters
    /// (`{petId}`, `{proxy}` for a greedy `{proxy+}`). With `backendRef`, only a path template
    /// (`/v2/pets/{petId}`); without one the request path below the stage's base path is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// HTTP_PROXY: a Service in the route's namespace; requests are balanced over its ready
    /// endpoints (a private integration). Either this or an absolute `uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<BackendRef>,
    /// HTTP_PROXY: timeout in milliseconds, 50 to 300000. Default 29000 (AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 50, max = 300000))]
    pub timeout_in_millis: Option<u32>,
    /// HTTP_PROXY: speak HTTP/2 with prior knowledge to a plain-text (`http://`) upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<bool>,
    /// HTTP_PROXY: AWS HTTP API parameter mapping, how the backend's request is changed:
    /// `append:`, `overwrite:` or `remove:` a `header.NAME` or `querystring.NAME`, or
    /// `overwrite:path`, to a value of text, `$request.header.NAME`,
    /// `$request.querystring.NAME`, `$request.path[.NAME]`, `$context.NAME` (e.g.
    /// `$context.authorizer.claims.sub`, `$context.identity.caller`) and
    /// `$stageVariables.NAME`; `''` is empty. At most 50.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, String>,
    /// MOCK: the fixed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockSpec>,
}

/// The fixed response of a MOCK integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MockSpec {
    /// Status code, 100 to 599. Default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 599))]
    pub status_code: Option<u16>,
    /// Response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}
