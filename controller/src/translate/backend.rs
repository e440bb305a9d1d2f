//! Service backends: the Service port a `backendRef` names and its ready endpoints.

use super::conditions::{fail, Failure};
use crate::model::{EndpointSliceData, Resource, ServicePorts};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeSet, HashMap};
use tollhouse_api::BackendRef;
use tollhouse_snapshot::{Backend, Reason, SourceRef};

/// Services by (namespace, name), and EndpointSlices by (namespace, Service).
pub(super) struct Services<'a> {
    services: HashMap<(&'a str, &'a str), &'a Resource<ServicePorts>>,
    slices: HashMap<(&'a str, &'a str), Vec<&'a EndpointSliceData>>,
}

impl<'a> Services<'a> {
    pub fn new(
        services: &'a [Resource<ServicePorts>],
        slices: &'a [Resource<EndpointSliceData>],
    ) -> Services<'a> {
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSliceData>> = HashMap::new();
        for slice in slices {
            by_service
                .entry((slice.meta.namespace.as_str(), slice.spec.service.as_str()))
                .or_default()
                .push(&slice.spec);
        }
        Services {
            services: services
                .iter()
                .map(|s| ((s.meta.namespace.as_str(), s.meta.name.as_str()), s))
                .collect(),
            slices: by_service,
        }
    }

    /// Finds the Service port a `backendRef` names and the ready endpoints behind it.
    /// Returns the key, the backend (empty when unresolved) and whether it resolved.
    pub fn resolve(
        &self,
        namespace: &str,
        backend_ref: &BackendRef,
    ) -> (String, Backend, Result<(), Failure>) {
        let key = key(namespace, Some(backend_ref));
        let name = backend_ref.name.as_str();
        let empty = |generation| Backend {
            source: SourceRef {
                kind: crate::model::Kind::Service.as_str().into(),
                namespace: namespace.into(),
                name: name.into(),
                generation,
            },
            endpoints: Vec::new(),
        };
        let Some(service) = self.services.get(&(namespace, name)) else {
            let why = format!("Service {namespace}/{name} does not exist");
            return (key, empty(0), fail(Reason::BackendNotFound, why));
        };
        let ports = &service.spec.ports;
        let port = match &backend_ref.port {
            None if ports.len() == 1 => ports.first(),
            None => {
                let why = format!(
                    "Service {namespace}/{name} has {} ports: backendRef.port must name one",
                    ports.len()
                );
                return (
                    key,
                    empty(service.meta.generation),
                    fail(Reason::InvalidBackendPort, why),
                );
            }
            Some(IntOrString::Int(n)) => ports.iter().find(|(_, p)| p == n),
            Some(IntOrString::String(s)) => ports.iter().find(|(port_name, _)| port_name == s),
        };
        let Some((port_name, _)) = port else {
            let why = format!(
                "Service {namespace}/{name} has no port {}",
                key.rsplit(':').next().unwrap_or_default()
            );
            return (
                key,
                empty(service.meta.generation),
                fail(Reason::InvalidBackendPort, why),
            );
        };
        let mut endpoints = BTreeSet::new();
        for slice in self.slices.get(&(namespace, name)).into_iter().flatten() {
            let Some((_, target)) = slice.ports.iter().find(|(n, _)| n == port_name) else {
                continue;
            };
            for (addresses, ready) in &slice.endpoints {
                if !ready {
                    continue;
                }
                for address in addresses {
                    let host = if slice.address_type == "IPv6" || address.contains(':') {
                        format!("[{address}]")
                    } else {
                        address.clone()
                    };
                    endpoints.insert(format!("{host}:{target}"));
                }
            }
        }
        let mut backend = empty(service.meta.generation);
        backend.endpoints = endpoints.into_iter().collect();
        (key, backend, Ok(()))
    }
}

/// The snapshot key of a Service port: `namespace/service:port`.
pub(super) fn key(namespace: &str, backend_ref: Option<&BackendRef>) -> String {
    let (name, port) = match backend_ref {
        Some(b) => (
            b.name.as_str(),
            match &b.port {
                Some(IntOrString::Int(n)) => n.to_string(),
                Some(IntOrString::String(s)) => s.clone(),
                None => String::new(),
            },
        ),
        None => ("", String::new()),
    };
    format!("{namespace}/{name}:{port}")
}
