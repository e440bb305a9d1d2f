//! What the controller knows about objects, whatever their source: the kinds it reads, their
//! identity, and the plain inputs translate takes.
//!
//! [`Kind`] is the one list of kinds. Everything that depends on a kind — which API version it
//! has, whether it gets a status, whether only a new generation re-translates it — is a match
//! over it without a wildcard, so a kind added here does not compile until every place that
//! must handle it does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use tollhouse_api::{ApiRouteSpec, AuthorizerSpec, StageSpec, UsagePlanSpec};

/// Defines [`Kind`] and `Kind::ALL` from one list, so the two cannot drift apart.
macro_rules! kinds {
    ($($(#[$meta:meta])* $variant:ident),+ $(,)?) => {
        /// The kinds the controller reads.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        pub enum Kind {
            $($(#[$meta])* $variant),+
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),+];

            /// The `kind` as written in manifests.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => stringify!($variant)),+
                }
            }
        }
    };
}

kinds! {
    /// `tollhouse.dev/v1alpha1` ApiRoute.
    ApiRoute,
    /// `tollhouse.dev/v1alpha1` Authorizer.
    Authorizer,
    /// `discovery.k8s.io/v1` (or `v1beta1`) EndpointSlice: the endpoints of a Service.
    EndpointSlice,
    /// `v1` Secret: `kubernetes.io/tls` (certificates), `tollhouse.dev/api-key` (API keys) and
    /// `tollhouse.dev/sigv4-credentials` (SigV4 access keys).
    Secret,
    /// `v1` Service (a `backendRef` target).
    Service,
    /// `tollhouse.dev/v1alpha1` Stage.
    Stage,
    /// `tollhouse.dev/v1alpha1` UsagePlan.
    UsagePlan,
}

/// The kinds that get a status (conditions written back by the controller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatusKind {
    /// A Stage: conditions plus invoke URLs and dataplane counts.
    Stage,
    /// An ApiRoute: conditions.
    ApiRoute,
    /// A UsagePlan: conditions plus its Stages and key count.
    UsagePlan,
    /// An Authorizer: conditions.
    Authorizer,
}

impl Kind {
    /// The `apiVersion` this controller writes and reads for the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ApiRoute | Kind::Authorizer | Kind::Stage | Kind::UsagePlan => {
                tollhouse_api::API_VERSION
            }
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Secret | Kind::Service => "v1",
        }
    }

    /// Whether a manifest with this `apiVersion` is of this kind as the controller reads it.
    pub fn accepts(self, api_version: &str) -> bool {
        match self {
            Kind::EndpointSlice => {
                api_version == self.api_version() || api_version == "discovery.k8s.io/v1beta1"
            }
            Kind::ApiRoute
            | Kind::Authorizer
            | Kind::Secret
            | Kind::Service
            | Kind::Stage
            | Kind::UsagePlan => api_version == self.api_version(),
        }
    }

    /// The kind named by a manifest's `kind`, when the controller reads it.
    pub fn from_kind(kind: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == kind)
    }

    /// Whether the controller writes this kind's status, and which status it is. Programmed
    /// tracking, status writes and the `/status` report follow this.
    pub fn status(self) -> Option<StatusKind> {
        match self {
            Kind::Stage => Some(StatusKind::Stage),
            Kind::ApiRoute => Some(StatusKind::ApiRoute),
            Kind::UsagePlan => Some(StatusKind::UsagePlan),
            Kind::Authorizer => Some(StatusKind::Authorizer),
            Kind::EndpointSlice | Kind::Secret | Kind::Service => None,
        }
    }

    /// Whether only a new `metadata.generation` changes what translate reads of the object.
    /// True for kinds with a spec and a status: the controller's own status writes (and label
    /// or annotation edits) come back as watch events and must not cost a translate each.
    /// Other kinds have no generation worth trusting: every change counts.
    pub fn translates_on_generation(self) -> bool {
        match self {
            Kind::Stage | Kind::ApiRoute | Kind::UsagePlan | Kind::Authorizer => true,
            Kind::EndpointSlice | Kind::Secret | Kind::Service => false,
        }
    }
}

impl StatusKind {
    /// The kind.
    pub fn kind(self) -> Kind {
        match self {
            StatusKind::Stage => Kind::Stage,
            StatusKind::ApiRoute => Kind::ApiRoute,
            StatusKind::UsagePlan => Kind::UsagePlan,
            StatusKind::Authorizer => Kind::Authorizer,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an object: kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace (`default` when the manifest has none).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of the object a snapshot entity came from, when it is of a kind read here.
    pub fn of_source(source: &tollhouse_snapshot::SourceRef) -> Option<ObjectKey> {
        Kind::from_kind(&source.kind)
            .map(|kind| ObjectKey::new(kind, &source.namespace, &source.name))
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Metadata translate needs from every object.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.creationTimestamp`, when known.
    pub created: Option<Time>,
    /// First-seen order, the age of objects without a creation timestamp.
    pub seen: u64,
}

/// An object's metadata with its spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource<T> {
    /// Metadata.
    pub meta: Meta,
    /// Spec (for a Secret: its data).
    pub spec: T,
}

/// What translate reads of a Secret: its type, labels and annotations (API keys are selected
/// and disabled through them), and its data with `stringData` already merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretData {
    /// `type`; empty when the manifest has none (the API server's default is `Opaque`).
    pub type_: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Key to bytes.
    pub data: BTreeMap<String, Vec<u8>>,
}

/// The Secret type of TLS certificates.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// The Secret type of API keys.
pub const API_KEY_SECRET_TYPE: &str = "tollhouse.dev/api-key";
/// The Secret type of SigV4 access keys.
pub const SIGV4_SECRET_TYPE: &str = "tollhouse.dev/sigv4-credentials";

impl SecretData {
    /// Whether this Secret holds an API key.
    pub fn is_api_key(&self) -> bool {
        self.type_ == API_KEY_SECRET_TYPE
    }

    /// Whether this Secret holds SigV4 access keys.
    pub fn is_sigv4(&self) -> bool {
        self.type_ == SIGV4_SECRET_TYPE
    }

    /// Whether it holds credentials (API or access keys), and so is never read as a certificate.
    pub fn is_credentials(&self) -> bool {
        self.is_api_key() || self.is_sigv4()
    }
}

/// What translate needs of a Service: its ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicePorts {
    /// `(name, port)` of every port; the name is empty for a single unnamed port.
    pub ports: Vec<(String, i32)>,
}

/// What translate needs of an EndpointSlice (discovery.k8s.io v1 or v1beta1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointSliceData {
    /// The Service it belongs to (label `kubernetes.io/service-name`).
    pub service: String,
    /// `IPv4`, `IPv6` or `FQDN`.
    pub address_type: String,
    /// `(name, port)`: the name matches the Service port's name.
    pub ports: Vec<(String, i32)>,
    /// `(addresses, ready)` of every endpoint; readiness unknown counts as ready.
    pub endpoints: Vec<(Vec<String>, bool)>,
}

/// Everything translate reads, one list per kind.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Input {
    /// Stages.
    pub stages: Vec<Resource<StageSpec>>,
    /// ApiRoutes.
    pub routes: Vec<Resource<ApiRouteSpec>>,
    /// Secrets with `stringData` merged into `data`.
    /// Shared with the index (or the API cache): an `Input` of 100,000 keys is built per change.
    pub secrets: Vec<Resource<std::sync::Arc<SecretData>>>,
    /// Services (only their ports).
    pub services: Vec<Resource<ServicePorts>>,
    /// EndpointSlices.
    pub endpoint_slices: Vec<Resource<EndpointSliceData>>,
    /// UsagePlans.
    pub usage_plans: Vec<Resource<UsagePlanSpec>>,
    /// Authorizers.
    pub authorizers: Vec<Resource<AuthorizerSpec>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_named_and_read_back() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_kind(kind.as_str()), Some(*kind));
            assert!(kind.accepts(kind.api_version()));
            if let Some(s) = kind.status() {
                assert_eq!(s.kind(), *kind);
            }
        }
        assert!(Kind::EndpointSlice.accepts("discovery.k8s.io/v1beta1"));
        assert_eq!(Kind::from_kind("ConfigMap"), None);
    }
}
