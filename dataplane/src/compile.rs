//! Turns a delivered [`Versioned`] snapshot into a [`CompiledSnapshot`] ready to serve, phase
//! by phase: each phase compiles its own part (the stage table, each Stage's routes, each
//! route's integration, each Stage's access-log format).
//!
//! Parse, don't validate: after compilation routes are tries, URI templates are pre-split with
//! stage variables already substituted, certificates are rustls keys, and metrics handles are
//! taken from the runtime, which keeps them across pushes. A stage, route or certificate that
//! cannot be compiled is left out with a warning; the rest is served. An integration URI that
//! names an undefined stage variable is served and fails as AWS fails. Only a snapshot that
//! fails its integrity check is refused whole.

use crate::error::GatewayError;
use crate::flavour::Flavour;
use crate::integration::http::{CompileError, EndpointPool, HttpTarget};
use crate::integration::mock::MockResponse;
use crate::integration::CompiledIntegration;
use crate::metrics::{Metrics, RouteMetrics};
use crate::phases::route::{CompiledRoute, RouteInput, Routes};
use crate::phases::stage::{StageEntry, StageTable};
use crate::router::Template;
use http::HeaderValue;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tollhouse_snapshot::{Integration, IntegrityError, Versioned};
use tollhouse_template::AccessLogFormat;

/// A snapshot ready to serve.
pub struct CompiledSnapshot {
    /// Version assigned by the controller.
    pub version: u64,
    /// Content hash.
    pub hash: String,
    /// Host and base-path lookup.
    pub stage_table: StageTable,
    stages: Vec<CompiledStage>,
    certs_by_host: HashMap<String, Arc<CertifiedKey>>,
    default_cert: Option<Arc<CertifiedKey>>,
    /// Metrics for requests that reached no Stage.
    pub unmatched: RouteMetrics,
}

/// One stage: its flavour, routes and access log.
pub struct CompiledStage {
    /// `namespace/name`.
    pub label: String,
    /// The Stage's name (`$context.stage`).
    pub name: String,
    /// The API name (`$context.apiId`, `X-Amzn-Apigateway-Api-Id`).
    pub api: HeaderValue,
    /// REST or HTTP API.
    pub flavour: Flavour,
    /// The routes.
    pub routes: Routes,
    /// The access-log format, when the Stage logs.
    pub access_log: Option<Arc<AccessLogFormat>>,
    /// Metrics for requests that reached this stage but matched no route.
    pub unmatched: RouteMetrics,
}

fn compile_cert(c: &tollhouse_snapshot::Certificate) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(c.certificate_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("certificate: {e}"))?;
    if chain.is_empty() {
        return Err("no certificate in PEM".into());
    }
    let key = PrivateKeyDer::from_pem_slice(c.private_key_pem.0.as_bytes())
        .map_err(|_| "unreadable private key".to_string())?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("private key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, signer)))
}

/// Compiles one route's integration.
fn compile_integration(
    integration: &Integration,
    stage: &tollhouse_snapshot::Stage,
    template: &Template,
    pools: &HashMap<&str, Arc<EndpointPool>>,
) -> Result<CompiledIntegration, String> {
    match integration {
        Integration::HttpProxy(h) => {
            let pool = match &h.backend {
                Some(key) => Some(
                    pools
                        .get(key.as_str())
                        .cloned()
                        .ok_or_else(|| format!("backend {key} missing"))?,
                ),
                None => None,
            };
            match HttpTarget::compile(
                &h.uri,
                &stage.variables,
                &template.params,
                template.greedy,
                pool,
                Duration::from_millis(u64::from(h.timeout_ms)),
                h.http2,
            ) {
                Ok(t) => Ok(CompiledIntegration::Http(t)),
                Err(CompileError::UndefinedStageVariable(_)) => Ok(CompiledIntegration::Failing(
                    GatewayError::UndefinedStageVariable,
                )),
                Err(CompileError::Invalid(e)) => Err(e),
            }
        }
        Integration::Mock(m) => Ok(CompiledIntegration::Mock(MockResponse::compile(m)?)),
    }
}

impl CompiledSnapshot {
    /// Compiles a delivered snapshot; returns it with warnings about parts left out.
    pub fn compile(
        v: &Versioned,
        metrics: &Metrics,
    ) -> Result<(CompiledSnapshot, Vec<String>), IntegrityError> {
        v.verify()?;
        let snap = &v.snapshot;
        let mut warnings = Vec::new();
        let mut certs: HashMap<&str, Arc<CertifiedKey>> = HashMap::new();
        for (key, cert) in &snap.certificates {
            match compile_cert(cert) {
                Ok(k) => {
                    certs.insert(key.as_str(), k);
                }
                Err(e) => warnings.push(format!("certificate {key} left out: {e}")),
            }
        }
        let pools: HashMap<&str, Arc<EndpointPool>> = snap
            .backends
            .iter()
            .map(|(key, b)| {
                (
                    key.as_str(),
                    Arc::new(EndpointPool::new(key, &b.endpoints, &mut warnings)),
                )
            })
            .collect();
        let mut stages = Vec::with_capacity(snap.stages.len());
        let mut entries: Vec<StageEntry<'_>> = Vec::with_capacity(snap.stages.len());
        let mut certs_by_host = HashMap::new();
        let mut default_cert = None;
        for stage in &snap.stages {
            let label = stage.source.key();
            if let Some(cert_key) = &stage.certificate {
                match certs.get(cert_key.as_str()) {
                    Some(cert) if stage.hostnames.is_empty() => {
                        default_cert = default_cert.or(Some(cert.clone()))
                    }
                    Some(cert) => {
                        for h in &stage.hostnames {
                            certs_by_host
                                .entry(h.clone())
                                .or_insert_with(|| cert.clone());
                        }
                    }
                    None => {
                        warnings.push(format!(
                            "stage {label} left out: certificate {cert_key} unavailable"
                        ));
                        continue;
                    }
                }
            }
            let access_log = match &stage.access_log {
                None => None,
                Some(a) => match AccessLogFormat::parse(&a.format) {
                    Ok(f) => Some(Arc::new(f)),
                    Err(e) => {
                        warnings.push(format!("stage {label}: access log left out: {e}"));
                        None
                    }
                },
            };
            let mut inputs = Vec::with_capacity(stage.routes.len());
            for route in &stage.routes {
                let rlabel = route.source.key();
                let compiled = Template::parse(&route.path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        let i = compile_integration(&route.integration, stage, &t, &pools)?;
                        Ok((t, i))
                    });
                match compiled {
                    Ok((template, integration)) => inputs.push(RouteInput {
                        route: CompiledRoute {
                            metrics: metrics.route(&label, &rlabel),
                            label: rlabel,
                            resource_path: route.path.clone(),
                            methods: route.methods.clone(),
                            greedy: template.greedy,
                            integration,
                        },
                        template,
                    }),
                    Err(e) => {
                        warnings.push(format!("route {rlabel} left out of stage {label}: {e}"))
                    }
                }
            }
            let (routes, failed) = Routes::build(inputs);
            for (name, why) in failed {
                warnings.push(format!("route {name} left out of stage {label}: {why}"));
            }
            let flavour: Flavour = stage.api_type;
            entries.push(StageEntry {
                hostnames: &stage.hostnames,
                base_path: &stage.base_path,
                flavour,
            });
            stages.push(CompiledStage {
                unmatched: metrics.route(&label, ""),
                label,
                name: stage.source.name.clone(),
                api: HeaderValue::from_str(&stage.api).unwrap_or(HeaderValue::from_static("-")),
                flavour,
                routes,
                access_log,
            });
        }
        let compiled = CompiledSnapshot {
            version: v.version,
            hash: v.hash.clone(),
            stage_table: StageTable::build(&entries),
            stages,
            certs_by_host,
            default_cert,
            unmatched: metrics.route("", ""),
        };
        Ok((compiled, warnings))
    }

    /// The Stage at `index`.
    pub fn stage(&self, index: usize) -> Option<&CompiledStage> {
        self.stages.get(index)
    }

    /// The (stage, route) metric label pairs this snapshot uses.
    pub fn metric_keys(&self) -> std::collections::HashSet<(String, String)> {
        let mut keys = std::collections::HashSet::new();
        keys.insert((String::new(), String::new()));
        for stage in &self.stages {
            keys.insert((stage.label.clone(), String::new()));
            for route in stage.routes.iter() {
                keys.insert((stage.label.clone(), route.label.clone()));
            }
        }
        keys
    }

    /// Number of stages served.
    pub fn stage_count(&self) -> usize {
        self.stages.len()
    }

    /// Number of routes served over all stages.
    pub fn route_count(&self) -> usize {
        self.stages.iter().map(|s| s.routes.len()).sum()
    }

    /// The certificate for a TLS server name.
    pub fn certificate(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        server_name
            .and_then(|n| {
                self.certs_by_host
                    .get(n)
                    .or_else(|| self.certs_by_host.get(&n.to_ascii_lowercase()))
            })
            .cloned()
            .or_else(|| self.default_cert.clone())
    }
}
