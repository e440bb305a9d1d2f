//! Tollhouse custom resources, group `tollhouse.dev`, version `v1alpha1`.
//!
//! The Rust types are the source of truth: `crdgen` writes `crds/*.yaml` from them, and a test
//! fails when the committed files differ. No CEL rules: cross-field checks live in the
//! controller's translate and show up as conditions (the e2e API server is Kubernetes 1.20).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of every Tollhouse resource.
pub const GROUP: &str = "tollhouse.dev";
/// API version of every Tollhouse resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "tollhouse.dev/v1alpha1";

/// Status shared by every Tollhouse resource: conditions and the generation they describe.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Accepted, ResolvedRefs, Programmed and Ready, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Status of a Stage: the shared conditions plus where it is served and by how many dataplanes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// Accepted, ResolvedRefs, Programmed and Ready, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` these conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where clients call this stage: one URL per host name (or the gateway's public URL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invoke_urls: Vec<String>,
    /// The snapshot version the controller serves now. A controller that has just started
    /// leading keeps the version shown here until it publishes a change: its first snapshot is
    /// most often the content already served under a new number, which dataplanes serving it
    /// are not sent again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_version: Option<u64>,
    /// Connected dataplanes that have applied that snapshot version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_dataplanes: Option<u32>,
    /// Connected dataplanes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_dataplanes: Option<u32>,
}

/// One deployment environment of an API, with its own invoke URL.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tollhouse.dev",
    version = "v1alpha1",
    kind = "Stage",
    namespaced,
    status = "StageStatus",
    shortname = "stg",
    category = "tollhouse",
    printcolumn = r#"{"name":"API","type":"string","jsonPath":".spec.api"}"#,
    printcolumn = r#"{"name":"Base Path","type":"string","jsonPath":".spec.basePath"}"#,
    printcolumn = r#"{"name":"Hostnames","type":"string","jsonPath":".spec.hostnames"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StageSpec {
    /// Name of the API this stage deploys: the ApiRoutes with this `api` in the same namespace.
    #[schemars(length(min = 1, max = 63))]
    pub api: String,
    /// Host names (custom domains) this stage answers on. Empty: any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Path prefix under which the routes are served, e.g. `/prod`. Default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
    /// Stage variables: names `[A-Za-z0-9_]+` (at most 64), values at most 512 characters of
    /// `[A-Za-z0-9-._~:/?#&=,]`, at most 100 (AWS limits). Used as `${stageVariables.name}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// TLS for this stage's host names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<StageTls>,
    /// Which of Amazon API Gateway's two flavours this Stage's clients see; see [`ApiType`]
    /// (whose text is what `kubectl explain` shows for this field). Default `HTTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_type: Option<ApiType>,
    /// An access log: one line per request, written to the dataplane's standard output or its
    /// `--access-log` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
}

/// Which of Amazon API Gateway's two flavours the Stage's clients see: `HTTP` (an HTTP API, the
/// default) or `REST` (a REST API). It changes the gateway's own answers (an unknown route is
/// 404 `Not Found` or 403 `Missing Authentication Token`; error bodies and `x-amzn-ErrorType`),
/// the request-id headers (`apigw-requestid`, or `x-amzn-RequestId` and `x-amz-apigw-id`) and
/// the headers added towards the backend and remapped on the way back; docs/compatibility.md
/// has the table. Every Stage of one API must agree: a younger Stage that disagrees is not
/// served (Accepted=False, reason Conflict).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ApiType {
    /// An HTTP API (apigatewayv2): 404 `{"message":"Not Found"}`, `apigw-requestid`.
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// A REST API (apigateway v1): 403 `Missing Authentication Token`, `x-amzn-RequestId`.
    #[serde(rename = "REST")]
    Rest,
}

/// A Stage's access log (AWS `accessLogSettings`, without a destination).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// One line of text with AWS `$context` variables (`$context.requestId`,
    /// `$context.status`, …), at most 3 KB, containing `$context.requestId` or
    /// `$context.extendedRequestId`; AWS's CLF, JSON, XML and CSV examples work as written. A
    /// format AWS would refuse makes the Stage Accepted=False, reason InvalidAccessLogFormat.
    #[schemars(length(min = 1, max = 3072))]
    pub format: String,
}

/// TLS settings of a stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageTls {
    /// A `kubernetes.io/tls` Secret (keys `tls.crt`, `tls.key`) in the stage's namespace.
    pub certificate_ref: LocalObjectRef,
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

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
    /// MOCK: the fixed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockSpec>,
}

/// A Service in the route's namespace and one of its ports.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// Name of the Service.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Service port: its number (`port`) or its name. May be left out when the Service
    /// has exactly one port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
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

/// Every CRD this crate defines, in the order `crdgen` writes them.
pub fn crds() -> Vec<(
    &'static str,
    k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
)> {
    use kube::CustomResourceExt;
    vec![
        ("stages.tollhouse.dev.yaml", Stage::crd()),
        ("apiroutes.tollhouse.dev.yaml", ApiRoute::crd()),
    ]
}

/// Renders a CRD as the YAML committed under `crds/`.
pub fn render_crd(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Result<String, serde_yaml::Error> {
    Ok(format!(
        "# Generated by `cargo run -p tollhouse-api --bin crdgen`; do not edit.\n{}",
        serde_yaml::to_string(crd)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// CI fails when `crds/` differs from the types: regenerate with `crdgen`.
    #[test]
    fn committed_crds_match_the_types() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
        for (file, crd) in crds() {
            let want = render_crd(&crd).unwrap();
            let have = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            assert!(
                have == want,
                "crds/{file} is out of date: run `cargo run -p tollhouse-api --bin crdgen`"
            );
        }
    }

    #[test]
    fn crds_use_no_cel_and_carry_category_and_short_names() {
        for (_, crd) in crds() {
            let text = render_crd(&crd).unwrap();
            assert!(!text.contains("x-kubernetes-validations"));
            assert_eq!(
                crd.spec.names.categories,
                Some(vec!["tollhouse".to_string()])
            );
            assert!(crd.spec.names.short_names.is_some());
        }
    }
}
