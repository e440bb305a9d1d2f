//! Stages: their own fields, their certificate, and the conflicts between them.

use super::conditions::{fail, Failure};
use super::conflict::{holder, oldest_wins, Contender};
use crate::model::{Kind, Meta, Resource, SecretData};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tollhouse_api::StageSpec;
use tollhouse_snapshot::{
    AccessLog, ApiType, Certificate, PolicyStatement, Reason, ResourcePolicy, Sensitive, Throttle,
};

/// Max stage variables per stage, and value length (AWS limits).
const MAX_VARIABLES: usize = 100;
const MAX_VARIABLE_VALUE: usize = 512;

/// What a valid Stage becomes.
pub(super) struct StageOk {
    pub hostnames: Vec<String>,
    pub base_path: String,
    pub variables: BTreeMap<String, String>,
    pub api_type: ApiType,
    pub access_log: Option<AccessLog>,
    pub throttle: Option<Throttle>,
    pub resource_policy: Option<ResourcePolicy>,
}

/// One Stage on its way through translate.
pub(super) struct StageEntry<'a> {
    /// The Stage.
    pub resource: &'a Resource<StageSpec>,
    /// Accepted: what its spec became, or why not.
    pub accepted: Result<StageOk, Failure>,
    /// ResolvedRefs: its certificate (snapshot key and content), when it has one.
    pub certificate: Result<Option<(String, Certificate)>, Failure>,
}

impl Contender for StageEntry<'_> {
    fn meta(&self) -> &Meta {
        &self.resource.meta
    }

    fn contends(&self) -> bool {
        self.accepted.is_ok() && self.certificate.is_ok()
    }

    fn reject(&mut self, failure: Failure) {
        self.accepted = Err(failure);
    }
}

impl<'a> StageEntry<'a> {
    /// Checks a Stage and resolves its certificate among `secrets` (by namespace and name).
    pub fn new(
        resource: &'a Resource<StageSpec>,
        secrets: &HashMap<(&str, &str), &Resource<Arc<SecretData>>>,
    ) -> StageEntry<'a> {
        StageEntry {
            resource,
            accepted: check(&resource.spec),
            certificate: certificate(resource, secrets),
        }
    }

    /// What it became, when it is served.
    pub fn served(&self) -> Option<(&StageOk, &Option<(String, Certificate)>)> {
        match (&self.accepted, &self.certificate) {
            (Ok(ok), Ok(certificate)) => Some((ok, certificate)),
            _ => None,
        }
    }
}

/// Two Stages conflict when they claim the same host and base path, or when a younger Stage of
/// an API has another apiType than the oldest (AWS has one flavour per API).
pub(super) fn resolve_conflicts(stages: &mut [StageEntry<'_>]) {
    let mut claims: HashMap<(String, String), String> = HashMap::new();
    let mut flavours: HashMap<(String, String), (String, ApiType)> = HashMap::new();
    oldest_wins(stages, |stage| {
        let Ok(ok) = &stage.accepted else {
            return Ok(());
        };
        let meta = &stage.resource.meta;
        let api = (meta.namespace.clone(), stage.resource.spec.api.clone());
        if let Some((first, flavour)) = flavours.get(&api) {
            if *flavour != ok.api_type {
                return Err(format!(
                    "apiType {} differs from {} of the older Stage {first} of API {}: every Stage of one API must agree",
                    api_type_name(ok.api_type),
                    api_type_name(*flavour),
                    api.1
                ));
            }
        }
        let hosts = if ok.hostnames.is_empty() {
            vec!["*".to_string()]
        } else {
            ok.hostnames.clone()
        };
        let wanted: Vec<(String, String)> = hosts
            .into_iter()
            .map(|h| (h, ok.base_path.clone()))
            .collect();
        if let Some(((host, path), winner)) = wanted
            .iter()
            .find_map(|claim| claims.get(claim).map(|w| (claim, w)))
        {
            return Err(format!(
                "host {host} and base path {path} are already claimed by the older Stage {winner}"
            ));
        }
        let me = holder(meta);
        for claim in wanted {
            claims.insert(claim, me.clone());
        }
        flavours.entry(api).or_insert((me, ok.api_type));
        Ok(())
    });
}

fn api_type_name(t: ApiType) -> &'static str {
    match t {
        ApiType::Http => "HTTP",
        ApiType::Rest => "REST",
    }
}

/// Checks a Stage's own fields.
pub(super) fn check(spec: &StageSpec) -> Result<StageOk, Failure> {
    if spec.api.trim().is_empty() {
        return fail(
            Reason::InvalidApi,
            "spec.api must name the API this stage deploys",
        );
    }
    let base_path = normalise_base_path(spec.base_path.as_deref().unwrap_or("/"))?;
    let mut hostnames = BTreeSet::new();
    for host in &spec.hostnames {
        let lower = host.to_ascii_lowercase();
        if !is_dns_name(&lower) {
            return fail(
                Reason::InvalidHostname,
                format!(
                    "hostname {host:?} is not a DNS name (no wildcards, ports or trailing dots)"
                ),
            );
        }
        hostnames.insert(lower);
    }
    if spec.variables.len() > MAX_VARIABLES {
        return fail(
            Reason::InvalidStageVariable,
            format!(
                "{} stage variables; at most {MAX_VARIABLES} are allowed",
                spec.variables.len()
            ),
        );
    }
    for (name, value) in &spec.variables {
        if !tollhouse_template::uri::is_variable_name(name) {
            return fail(
                Reason::InvalidStageVariable,
                format!("stage variable name {name:?} must be 1 to 64 characters of [A-Za-z0-9_]"),
            );
        }
        let value_ok = !value.is_empty()
            && value.len() <= MAX_VARIABLE_VALUE
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~:/?#&=,".contains(c));
        if !value_ok {
            return fail(
                Reason::InvalidStageVariable,
                format!("stage variable {name}: value must be 1 to 512 characters of [A-Za-z0-9-._~:/?#&=,]"),
            );
        }
    }
    let access_log = match &spec.access_log {
        None => None,
        Some(a) => match tollhouse_template::AccessLogFormat::parse(&a.format) {
            Ok(_) => Some(AccessLog {
                format: a.format.clone(),
            }),
            Err(e) => return fail(Reason::InvalidAccessLogFormat, format!("accessLog: {e}")),
        },
    };
    let throttle = super::throttle::check(spec.throttle.as_ref())?;
    let api_type = match spec.api_type.unwrap_or_default() {
        tollhouse_api::ApiType::Http => ApiType::Http,
        tollhouse_api::ApiType::Rest => ApiType::Rest,
    };
    let resource_policy = match &spec.resource_policy {
        None => None,
        Some(p) => {
            let mut statements = Vec::with_capacity(p.statements.len());
            for s in &p.statements {
                for ip in &s.source_ips {
                    if let Err(e) = tollhouse_template::policy::Net::parse(ip) {
                        return fail(
                            Reason::InvalidResourcePolicy,
                            format!("resourcePolicy: {e}"),
                        );
                    }
                }
                for r in &s.routes {
                    if let Err(e) = tollhouse_template::policy::RoutePattern::parse(r) {
                        return fail(
                            Reason::InvalidResourcePolicy,
                            format!("resourcePolicy: {e}"),
                        );
                    }
                }
                statements.push(PolicyStatement {
                    allow: s.effect == tollhouse_api::PolicyEffect::Allow,
                    source_ips: s.source_ips.clone(),
                    routes: s.routes.clone(),
                });
            }
            Some(ResourcePolicy { statements })
        }
    };
    Ok(StageOk {
        hostnames: hostnames.into_iter().collect(),
        base_path,
        variables: spec.variables.clone(),
        api_type,
        access_log,
        throttle,
        resource_policy,
    })
}

pub(super) fn normalise_base_path(raw: &str) -> Result<String, Failure> {
    let bad = |why: &str| fail(Reason::InvalidBasePath, format!("basePath {raw:?} {why}"));
    if !raw.starts_with('/') {
        return bad("must start with /");
    }
    if raw.contains(['{', '}']) {
        return bad("must not contain { or }");
    }
    let trimmed = if raw.len() > 1 {
        raw.strip_suffix('/').unwrap_or(raw)
    } else {
        raw
    };
    if trimmed == "/" {
        return if raw == "/" {
            Ok(raw.to_string())
        } else {
            bad("must not contain empty segments")
        };
    }
    for segment in trimmed[1..].split('/') {
        if segment.is_empty() {
            return bad("must not contain empty segments");
        }
        if segment == ".." || segment == "." {
            return bad("must not contain . or .. segments");
        }
        if segment.contains(|c: char| c.is_whitespace() || c == '?' || c == '#') {
            return bad("must not contain spaces, ? or #");
        }
    }
    Ok(trimmed.to_string())
}

fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The Stage's certificate Secret, checked with the same code the dataplane builds its
/// certificates with ([`tollhouse_pemfile::certified_key`]): a Secret the dataplane would
/// refuse is refused here, so the Stage is never Ready while its routes answer 404.
fn certificate(
    stage: &Resource<StageSpec>,
    secrets: &HashMap<(&str, &str), &Resource<Arc<SecretData>>>,
) -> Result<Option<(String, Certificate)>, Failure> {
    let Some(tls) = &stage.spec.tls else {
        return Ok(None);
    };
    let namespace = stage.meta.namespace.as_str();
    let name = tls.certificate_ref.name.as_str();
    let Some(secret) = secrets.get(&(namespace, name)) else {
        return fail(
            Reason::CertificateNotFound,
            format!("Secret {namespace}/{name} does not exist"),
        );
    };
    // Messages name the missing key or what is wrong with it, never the content: this is key
    // material.
    let text = |key: &str| -> Result<String, Failure> {
        match secret
            .spec
            .data
            .get(key)
            .map(|bytes| String::from_utf8(bytes.clone()))
        {
            Some(Ok(text)) => Ok(text),
            Some(Err(_)) => fail(
                Reason::InvalidCertificate,
                format!("Secret {namespace}/{name}: {key} is not PEM text"),
            ),
            None => fail(
                Reason::InvalidCertificate,
                format!("Secret {namespace}/{name} has no {key}"),
            ),
        }
    };
    let certificate_chain_pem = text("tls.crt")?;
    let private_key = text("tls.key")?;
    if let Err(why) =
        tollhouse_pemfile::certified_key(certificate_chain_pem.as_bytes(), private_key.as_bytes())
    {
        return fail(
            Reason::InvalidCertificate,
            format!("Secret {namespace}/{name}: {why}"),
        );
    }
    Ok(Some((
        format!("{namespace}/{name}"),
        Certificate {
            source: super::source(Kind::Secret, &secret.meta),
            certificate_chain_pem,
            private_key_pem: Sensitive(private_key),
        },
    )))
}
