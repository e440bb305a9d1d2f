//! Kubernetes objects → the plain inputs translate reads, shared by the directory and the
//! Kubernetes sources so both mean the same thing by the same YAML.

use crate::model::{EndpointSliceData, SecretData, ServicePorts};
use k8s_openapi::api::core::v1::{Secret, Service};

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Secret's data with `stringData` merged over `data` (as the API server does on write).
pub fn secret_data(secret: Secret) -> SecretData {
    let mut data: SecretData = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    data
}

/// A Service's ports.
pub fn service_ports(service: &Service) -> ServicePorts {
    let ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|p| (p.name.clone().unwrap_or_default(), p.port))
                .collect()
        })
        .unwrap_or_default();
    ServicePorts { ports }
}

/// An EndpointSlice of `discovery.k8s.io/v1` or `v1beta1` (the fields read are the same in
/// both), from its JSON. `None` when it names no Service.
pub fn endpoint_slice(object: &serde_json::Value) -> Option<EndpointSliceData> {
    let service = object
        .pointer("/metadata/labels")
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .and_then(|v| v.as_str())?
        .to_string();
    let address_type = object
        .get("addressType")
        .and_then(|v| v.as_str())
        .unwrap_or("IPv4")
        .to_string();
    let ports = object
        .get("ports")
        .and_then(|v| v.as_array())
        .map(|ports| {
            ports
                .iter()
                .filter_map(|p| {
                    let name = p.get("name").and_then(|v| v.as_str()).unwrap_or("");
                    let port = p.get("port").and_then(|v| v.as_i64())?;
                    Some((name.to_string(), i32::try_from(port).ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let endpoints = object
        .get("endpoints")
        .and_then(|v| v.as_array())
        .map(|endpoints| {
            endpoints
                .iter()
                .map(|e| {
                    let addresses = e
                        .get("addresses")
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    // "ready" unknown (absent) is to be read as ready.
                    let ready = e
                        .pointer("/conditions/ready")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(true);
                    (addresses, ready)
                })
                .collect()
        })
        .unwrap_or_default();
    Some(EndpointSliceData {
        service,
        address_type,
        ports,
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_slices_of_both_versions_read_the_same() {
        let slice = serde_json::json!({
            "apiVersion": "discovery.k8s.io/v1beta1",
            "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false}},
                {"addresses": ["10.0.0.3"]}
            ]
        });
        let data = endpoint_slice(&slice).unwrap();
        assert_eq!(data.service, "web");
        assert_eq!(data.ports, vec![("http".to_string(), 8080)]);
        assert_eq!(
            data.endpoints,
            vec![
                (vec!["10.0.0.1".to_string()], true),
                (vec!["10.0.0.2".to_string()], false),
                (vec!["10.0.0.3".to_string()], true)
            ]
        );
        let mut unlabelled = slice.clone();
        unlabelled["metadata"]["labels"] = serde_json::json!({});
        assert!(endpoint_slice(&unlabelled).is_none());
    }
}
