//! The snapshot contract between the Tollhouse controller and its dataplanes.
//!
//! Plain serde data with no Kubernetes types. Every collection is ordered (sorted `Vec` or
//! `BTreeMap`), so the same set of objects always serialises to the same bytes and the same
//! content hash. Every entity names the object it came from ([`SourceRef`]) so the dataplane can
//! name it in logs and metrics. TLS private keys are [`Sensitive`]: their `Debug` output is
//! redacted and [`Snapshot::redacted`] replaces them by a hash for golden files and logs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// The schema version of [`Snapshot`] this build writes. Version 2 added Service backends;
/// version 3 added a Stage's `apiType` and `accessLog`.
pub const SCHEMA_VERSION: u32 = 3;
/// The oldest schema this build still reads: every field added since is optional, so an older
/// snapshot (e.g. in a dataplane's state directory) means the same thing. A newer schema is
/// refused, since it may carry what this build would silently ignore.
pub const MIN_SCHEMA_VERSION: u32 = 1;

/// Default integration timeout, as AWS (29 s).
pub const DEFAULT_TIMEOUT_MS: u32 = 29_000;

/// The object an entity was translated from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRef {
    /// Kind of the object, e.g. `ApiRoute`.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// `metadata.generation` the entity was built from.
    pub generation: i64,
}

impl SourceRef {
    /// `namespace/name`, the form used in metric labels and logs.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// The content of one configuration: everything a dataplane serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Stages, sorted by namespace and name.
    pub stages: Vec<Stage>,
    /// TLS certificates referenced by stages, keyed by `namespace/secret-name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub certificates: BTreeMap<String, Certificate>,
    /// Service backends referenced by routes, keyed by `namespace/service:port`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backends: BTreeMap<String, Backend>,
}

/// A Service port and its ready endpoints: the dataplane balances over them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Backend {
    /// The Service.
    pub source: SourceRef,
    /// Ready endpoints as `host:port` (`[v6]:port` for IPv6), sorted; empty: none ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
}

/// One deployment environment of an API, with the routes it serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// The Stage object.
    pub source: SourceRef,
    /// API name (routes of this API in the Stage's namespace are its routes).
    pub api: String,
    /// Lower-case host names this stage answers on; empty means any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Normalised base path: `/` or `/a/b` (no trailing slash).
    pub base_path: String,
    /// Stage variables, usable as `${stageVariables.name}` in integration URIs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Key into [`Snapshot::certificates`] of the certificate served for this stage's hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Routes, sorted by path then by source.
    pub routes: Vec<Route>,
    /// Which of AWS's flavours the Stage's clients see.
    #[serde(default, skip_serializing_if = "ApiType::is_http")]
    pub api_type: ApiType,
    /// The Stage's access log, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
}

/// AWS's two HTTP flavours (`Stage.spec.apiType`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "UPPERCASE")]
pub enum ApiType {
    /// An HTTP API (the default).
    #[default]
    Http,
    /// A REST API.
    Rest,
}

impl ApiType {
    /// Whether this is the default, HTTP.
    pub fn is_http(&self) -> bool {
        *self == ApiType::Http
    }
}

/// A Stage's access log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// The format: AWS `$context.*` variables in text, already checked by the controller.
    pub format: String,
}

/// One route: a path template, the methods it answers and its integration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
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

/// A TLS certificate chain and its private key, both PEM.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// The Secret it came from.
    pub source: SourceRef,
    /// Certificate chain, PEM.
    pub certificate_chain_pem: String,
    /// Private key, PEM; never printed.
    pub private_key_pem: Sensitive,
}

/// A secret string: serialised as is (it travels to the dataplane), but never shown by `Debug`.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(transparent)]
pub struct Sensitive(pub String);

impl fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Sensitive {
    /// `<redacted sha256:…>`: names the value without revealing it.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("<redacted sha256:{}>", &hex::encode(digest)[..16])
    }
}

impl Snapshot {
    /// SHA-256 over the canonical JSON of the content, hex encoded.
    pub fn content_hash(&self) -> String {
        // Serialising plain structs of strings, integers and ordered maps cannot fail;
        // an empty input would still give a well-defined hash.
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    /// The canonical JSON and its content hash, from one serialisation (what a publisher needs:
    /// at 10,000 routes the snapshot is 2 MiB).
    pub fn encoded(&self) -> serde_json::Result<(Vec<u8>, String)> {
        let bytes = serde_json::to_vec(self)?;
        let hash = hex::encode(Sha256::digest(&bytes));
        Ok((bytes, hash))
    }

    /// A copy whose private keys are replaced by their fingerprints: safe for logs and goldens.
    pub fn redacted(&self) -> Snapshot {
        let mut copy = self.clone();
        for cert in copy.certificates.values_mut() {
            cert.private_key_pem = Sensitive(cert.private_key_pem.fingerprint());
        }
        copy
    }

    /// Number of routes over all stages.
    pub fn route_count(&self) -> usize {
        self.stages.iter().map(|s| s.routes.len()).sum()
    }
}

/// A snapshot as delivered: schema, version and content hash around the content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Versioned {
    /// [`SCHEMA_VERSION`] of the sender.
    pub schema: u32,
    /// Monotonic version assigned by the controller when the content changed.
    pub version: u64,
    /// [`Snapshot::content_hash`] of `snapshot`.
    pub hash: String,
    /// The content.
    pub snapshot: Snapshot,
}

/// Why a delivered snapshot was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum IntegrityError {
    /// Sent with another schema version.
    Schema { got: u32 },
    /// The hash does not match the content.
    Hash { claimed: String, actual: String },
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntegrityError::Schema { got } => {
                write!(
                    f,
                    "snapshot schema {got} is not the supported {SCHEMA_VERSION}"
                )
            }
            IntegrityError::Hash { claimed, actual } => {
                write!(
                    f,
                    "snapshot hash {claimed} does not match its content ({actual})"
                )
            }
        }
    }
}

impl std::error::Error for IntegrityError {}

impl Versioned {
    /// Wraps content with its hash.
    pub fn new(version: u64, snapshot: Snapshot) -> Self {
        Versioned {
            schema: SCHEMA_VERSION,
            version,
            hash: snapshot.content_hash(),
            snapshot,
        }
    }

    /// The wire form of a snapshot already encoded by [`Snapshot::encoded`]: byte for byte what
    /// serialising the `Versioned` gives, without serialising the content again.
    pub fn wire(version: u64, hash: &str, snapshot_json: &[u8]) -> Vec<u8> {
        let head = format!(
            r#"{{"schema":{SCHEMA_VERSION},"version":{version},"hash":"{hash}","snapshot":"#
        );
        let mut body = Vec::with_capacity(head.len() + snapshot_json.len() + 1);
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(snapshot_json);
        body.push(b'}');
        body
    }

    /// Checks schema and hash, as a receiver must before applying.
    pub fn verify(&self) -> Result<(), IntegrityError> {
        if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&self.schema) {
            return Err(IntegrityError::Schema { got: self.schema });
        }
        let actual = self.snapshot.content_hash();
        if actual != self.hash {
            return Err(IntegrityError::Hash {
                claimed: self.hash.clone(),
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        let source = SourceRef {
            kind: "Stage".into(),
            namespace: "default".into(),
            name: "prod".into(),
            generation: 1,
        };
        let mut certificates = BTreeMap::new();
        certificates.insert(
            "default/tls".into(),
            Certificate {
                source: SourceRef {
                    kind: "Secret".into(),
                    ..source.clone()
                },
                certificate_chain_pem: "CERT".into(),
                private_key_pem: Sensitive("-----BEGIN PRIVATE KEY----- secret".into()),
            },
        );
        Snapshot {
            stages: vec![Stage {
                source,
                api: "pets".into(),
                hostnames: vec![],
                base_path: "/".into(),
                variables: BTreeMap::new(),
                certificate: Some("default/tls".into()),
                routes: vec![],
                api_type: ApiType::Http,
                access_log: None,
            }],
            certificates,
            backends: BTreeMap::new(),
        }
    }

    #[test]
    fn hash_is_deterministic_and_content_sensitive() {
        let a = sample();
        assert_eq!(a.content_hash(), sample().content_hash());
        let mut b = sample();
        b.stages[0].base_path = "/prod".into();
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn private_keys_never_show_in_debug_or_redacted_copies() {
        let s = sample();
        assert!(!format!("{s:?}").contains("secret"));
        let redacted = serde_json::to_string(&s.redacted()).unwrap();
        assert!(!redacted.contains("secret"));
        assert!(redacted.contains("<redacted sha256:"));
    }

    #[test]
    fn verify_rejects_tampering_and_other_schemas() {
        let mut v = Versioned::new(7, sample());
        assert_eq!(v.verify(), Ok(()));
        v.snapshot.stages[0].api = "other".into();
        assert!(matches!(v.verify(), Err(IntegrityError::Hash { .. })));
        let mut w = Versioned::new(7, sample());
        w.schema = 99;
        assert_eq!(w.verify(), Err(IntegrityError::Schema { got: 99 }));
        // Schema 1 (before backends) still reads: it means the same thing.
        let mut old = Versioned::new(7, sample());
        old.schema = 1;
        assert_eq!(old.verify(), Ok(()));
    }

    #[test]
    fn the_wire_form_is_the_serialised_envelope_byte_for_byte() {
        let (json, hash) = sample().encoded().unwrap();
        assert_eq!(hash, sample().content_hash());
        let wire = Versioned::wire(42, &hash, &json);
        assert_eq!(
            wire,
            serde_json::to_vec(&Versioned::new(42, sample())).unwrap()
        );
    }

    /// Schema 3's Stage fields: written only when not the default, so an HTTP Stage without an
    /// access log serialises (and hashes) as under schema 2, and a schema-2 Stage reads as HTTP.
    #[test]
    fn api_type_and_access_log_are_written_only_when_set() {
        let plain = serde_json::to_value(&sample().stages[0]).unwrap();
        assert!(plain.get("apiType").is_none() && plain.get("accessLog").is_none());
        let back: Stage = serde_json::from_value(plain).unwrap();
        assert_eq!((back.api_type, back.access_log), (ApiType::Http, None));
        let mut rest = sample();
        rest.stages[0].api_type = ApiType::Rest;
        rest.stages[0].access_log = Some(AccessLog {
            format: "$context.requestId".into(),
        });
        let v = serde_json::to_value(&rest.stages[0]).unwrap();
        assert_eq!(v["apiType"], "REST");
        assert_eq!(v["accessLog"]["format"], "$context.requestId");
        assert_ne!(rest.content_hash(), sample().content_hash());
    }

    #[test]
    fn round_trips_through_json() {
        let v = Versioned::new(3, sample());
        let text = serde_json::to_string(&v).unwrap();
        let back: Versioned = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.verify(), Ok(()));
    }
}
