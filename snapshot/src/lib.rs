//! The snapshot contract between the Tollhouse controller and its dataplanes.
//!
//! Plain serde data with no Kubernetes types. Every collection is ordered (sorted `Vec` or
//! `BTreeMap`), so the same set of objects always serialises to the same bytes and the same
//! content hash. Every entity names the object it came from ([`SourceRef`]) so the dataplane can
//! name it in logs and metrics. TLS private keys are [`Sensitive`]: their `Debug` output is
//! redacted and [`Snapshot::redacted`] replaces them by a hash for golden files and logs.

mod authorizer;
mod backend;
mod certificate;
pub mod condition;
mod report;
mod route;
mod source;
mod stage;
mod throttle;
mod usage;
mod usage_plan;
mod versioned;

pub mod date;
pub use authorizer::{
    Authorizer, AuthorizerKind, EventFormat, Function, FunctionTarget, Jwt, RouteAuthorization,
    Sigv4, Sigv4Credential,
};
pub use backend::Backend;
pub use certificate::{Certificate, Sensitive};
pub use condition::{ConditionStatus, ConditionType, Reason};
pub use report::{LeftOut, Report};
pub use route::{HttpProxy, Integration, Mock, Route};
pub use source::SourceRef;
pub use stage::{AccessLog, ApiType, PolicyStatement, ResourcePolicy, Stage};
pub use throttle::Throttle;
pub use usage::{UsageAck, UsageReport, UsageRow};
pub use usage_plan::{
    format_date, parse_date, ApiKey, ApiKeySource, PlanStage, Quota, QuotaPeriod, UsagePlan,
};
pub use versioned::{IntegrityError, Versioned};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The schema version of [`Snapshot`] this build writes. Version 2 added Service backends;
/// version 3 added a Stage's `apiType` and `accessLog`; version 4 the `throttle` of Stages and
/// routes; version 5 usage plans, API keys, a Stage's `apiKeySource` and a route's
/// `apiKeyRequired`; version 6 authorizers (JWT, REQUEST, TOKEN, SIGV4) and a route's
/// `authorization`, so a dataplane that cannot check them never serves such a route open, and
/// a Stage's `resourcePolicy`.
pub const SCHEMA_VERSION: u32 = 6;
/// The oldest schema this build still reads: every field added since is optional, so an older
/// snapshot (e.g. in a dataplane's state directory) means the same thing. A newer schema is
/// refused, since it may carry what this build would silently ignore.
pub const MIN_SCHEMA_VERSION: u32 = 1;

/// Default integration timeout, as AWS (29 s).
pub const DEFAULT_TIMEOUT_MS: u32 = 29_000;
/// The content of one configuration: everything a dataplane serves.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
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
    /// Usage plans, sorted by namespace and name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage_plans: Vec<UsagePlan>,
    /// API keys in some plan, sorted by id. Only hashes of their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
    /// Authorizers referenced by served routes, keyed by `namespace/name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorizers: BTreeMap<String, Authorizer>,
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

    /// Whether it carries secrets (TLS private keys, SigV4 signing keys): then it goes only to
    /// authenticated peers.
    pub fn carries_secrets(&self) -> bool {
        self.certificates
            .values()
            .any(|c| !c.private_key_pem.0.is_empty())
            || self.authorizers.values().any(|a| match &a.kind {
                AuthorizerKind::Sigv4(s) => {
                    s.credentials.iter().any(|c| !c.signing_keys.is_empty())
                }
                _ => false,
            })
    }

    /// A copy whose private keys are replaced by their fingerprints: safe for logs and goldens.
    pub fn redacted(&self) -> Snapshot {
        let mut copy = self.clone();
        for entity in copy.entities() {
            for secret in entity.secrets {
                *secret = Sensitive(secret.fingerprint());
            }
        }
        copy
    }

    /// Every entity with the object it came from and its secrets: the one walk over a snapshot
    /// that both Programmed tracking (which objects, at which generation, a snapshot carries)
    /// and redaction use. Each struct is taken apart field by field, so an entity or a field
    /// added later does not compile until it is placed here, and a secret cannot be missed.
    pub fn entities(&mut self) -> Vec<Entity<'_>> {
        let Snapshot {
            stages,
            certificates,
            backends,
            usage_plans,
            api_keys,
            authorizers,
        } = self;
        let mut out = Vec::new();
        for stage in stages.iter_mut() {
            let Stage {
                source,
                api: _,
                hostnames: _,
                base_path: _,
                variables: _,
                certificate: _,
                routes,
                api_type: _,
                access_log: _,
                throttle: _,
                api_key_source: _,
                resource_policy: _,
            } = stage;
            out.push(Entity::new(source, Vec::new()));
            for route in routes.iter_mut() {
                let Route {
                    source,
                    path: _,
                    methods: _,
                    integration,
                    throttle: _,
                    api_key_required: _,
                    authorization: _,
                } = route;
                match integration {
                    Integration::HttpProxy(HttpProxy {
                        uri: _,
                        backend: _,
                        timeout_ms: _,
                        http2: _,
                        request_parameters: _,
                    })
                    | Integration::Mock(Mock {
                        status_code: _,
                        headers: _,
                        body: _,
                    }) => {}
                }
                out.push(Entity::new(source, Vec::new()));
            }
        }
        for certificate in certificates.values_mut() {
            let Certificate {
                source,
                certificate_chain_pem: _,
                private_key_pem,
            } = certificate;
            out.push(Entity::new(source, vec![private_key_pem]));
        }
        for backend in backends.values_mut() {
            let Backend {
                source,
                endpoints: _,
            } = backend;
            out.push(Entity::new(source, Vec::new()));
        }
        for authorizer in authorizers.values_mut() {
            let Authorizer {
                source,
                identity_source: _,
                kind,
            } = authorizer;
            match kind {
                AuthorizerKind::Jwt(Jwt {
                    issuer: _,
                    audience: _,
                    jwks_uri: _,
                }) => {}
                AuthorizerKind::Request(Function {
                    target: _,
                    format: _,
                    simple_responses: _,
                    ttl_seconds: _,
                    timeout_ms: _,
                    validation: _,
                })
                | AuthorizerKind::Token(Function {
                    target: _,
                    format: _,
                    simple_responses: _,
                    ttl_seconds: _,
                    timeout_ms: _,
                    validation: _,
                }) => {}
                AuthorizerKind::Sigv4(Sigv4 {
                    region: _,
                    service: _,
                    credentials,
                }) => {
                    let mut secrets = Vec::new();
                    for c in credentials.iter_mut() {
                        let Sigv4Credential {
                            source: _,
                            access_key_id: _,
                            principal: _,
                            session_token_sha256: _,
                            signing_keys,
                        } = c;
                        secrets.extend(signing_keys.values_mut());
                    }
                    out.push(Entity::new(source, secrets));
                    continue;
                }
            }
            out.push(Entity::new(source, Vec::new()));
        }
        for plan in usage_plans.iter_mut() {
            let UsagePlan {
                source,
                stages: _,
                throttle: _,
                quota: _,
            } = plan;
            out.push(Entity::new(source, Vec::new()));
        }
        // Keys carry only hashes, and Secrets have no status to track: not entities.
        for key in api_keys.iter() {
            let ApiKey {
                id: _,
                sha256: _,
                plans: _,
            } = key;
        }
        out
    }

    /// Number of routes over all stages.
    pub fn route_count(&self) -> usize {
        self.stages.iter().map(|s| s.routes.len()).sum()
    }
}

/// One entity of a snapshot, as [`Snapshot::entities`] visits it.
#[derive(Debug)]
pub struct Entity<'a> {
    /// The object it was translated from.
    pub source: &'a SourceRef,
    /// Its secrets, to be redacted wherever the snapshot is shown.
    pub secrets: Vec<&'a mut Sensitive>,
}

impl<'a> Entity<'a> {
    fn new(source: &'a SourceRef, secrets: Vec<&'a mut Sensitive>) -> Entity<'a> {
        Entity { source, secrets }
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
                throttle: None,
                api_key_source: ApiKeySource::Header,
                resource_policy: None,
            }],
            certificates,
            backends: BTreeMap::new(),
            usage_plans: Vec::new(),
            api_keys: Vec::new(),
            authorizers: BTreeMap::new(),
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
