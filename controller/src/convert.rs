//! Kubernetes objects → the plain inputs translate reads, shared by the directory and the
//! Kubernetes sources so both mean the same thing by the same YAML.

use crate::model::{EndpointSliceData, SecretData, ServicePorts};
use k8s_openapi::api::core::v1::{Secret, Service};

/// The label an EndpointSlice names its Service with.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Secret's data with `stringData` merged over `data` (as the API server does on write).
pub fn secret_data(secret: Secret) -> SecretData {
    let mut data: std::collections::BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    SecretData {
        type_: secret.type_.unwrap_or_default(),
        labels: secret.metadata.labels.unwrap_or_default(),
        annotations: secret.metadata.annotations.unwrap_or_default(),
        data,
    }
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

    /// What `kubectl get endpointslice -o json` prints on Kubernetes 1.21+ for a Deployment's
    /// Service: the endpointslice controller's labels and owner, `conditions` with `serving`
    /// and `terminating`, `nodeName`, `zone`, topology `hints`, `targetRef`, and ports with
    /// `protocol` and `appProtocol`.
    fn deployment_slice() -> serde_json::Value {
        serde_json::json!({
            "addressType": "IPv4",
            "apiVersion": "discovery.k8s.io/v1",
            "endpoints": [
                {
                    "addresses": ["10.244.1.17"],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "hints": {"forZones": [{"name": "eu-west-1a"}]},
                    "nodeName": "worker-a",
                    "targetRef": {
                        "kind": "Pod",
                        "name": "web-6d4cf56db6-2xkqp",
                        "namespace": "shop",
                        "uid": "0f5b3c56-8a59-4c55-9d7e-2b3a5c1f9e01"
                    },
                    "zone": "eu-west-1a"
                },
                {
                    "addresses": ["10.244.2.9"],
                    "conditions": {"ready": false, "serving": true, "terminating": true},
                    "hints": {"forZones": [{"name": "eu-west-1b"}]},
                    "nodeName": "worker-b",
                    "targetRef": {
                        "kind": "Pod",
                        "name": "web-6d4cf56db6-8fj2m",
                        "namespace": "shop",
                        "uid": "5c0a7e2d-13b4-4f0e-a0a4-7d9e61c3b2aa"
                    },
                    "zone": "eu-west-1b"
                },
                {
                    "addresses": ["10.244.2.10"],
                    "conditions": {"ready": false, "serving": false, "terminating": false},
                    "nodeName": "worker-b",
                    "targetRef": {
                        "kind": "Pod",
                        "name": "web-6d4cf56db6-q7w4z",
                        "namespace": "shop",
                        "uid": "9b1f4d0e-6c2a-4e8b-8f3d-1a2b3c4d5e6f"
                    },
                    "zone": "eu-west-1b"
                }
            ],
            "kind": "EndpointSlice",
            "metadata": {
                "annotations": {
                    "endpoints.kubernetes.io/last-change-trigger-time": "2026-11-24T20:01:12Z"
                },
                "creationTimestamp": "2026-11-20T09:14:03Z",
                "generateName": "web-",
                "generation": 41,
                "labels": {
                    "app": "web",
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    "kubernetes.io/service-name": "web"
                },
                "name": "web-h7x2c",
                "namespace": "shop",
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "blockOwnerDeletion": true,
                    "controller": true,
                    "kind": "Service",
                    "name": "web",
                    "uid": "2d7c9a4e-3f1b-4a6d-9e8c-7b5a3c1d2e4f"
                }],
                "resourceVersion": "918273",
                "uid": "7e6d5c4b-3a29-4180-9f7e-6d5c4b3a2918"
            },
            "ports": [
                {"appProtocol": "http", "name": "http", "port": 8080, "protocol": "TCP"},
                {"name": "metrics", "port": 9100, "protocol": "TCP"}
            ]
        })
    }

    /// A v1 slice: only `ready` decides. A terminating endpoint is not ready (it may still be
    /// `serving` its last requests, but gets no new ones), nor is one still starting; topology
    /// fields and hints change nothing.
    #[test]
    fn a_v1_slice_routes_to_ready_endpoints_only() {
        let data = endpoint_slice(&deployment_slice()).unwrap();
        assert_eq!(
            data,
            EndpointSliceData {
                service: "web".into(),
                address_type: "IPv4".into(),
                ports: vec![("http".into(), 8080), ("metrics".into(), 9100)],
                endpoints: vec![
                    (vec!["10.244.1.17".into()], true),
                    (vec!["10.244.2.9".into()], false),
                    (vec!["10.244.2.10".into()], false),
                ],
            }
        );
        // The same slice as v1beta1 printed it (topology instead of nodeName and zone, no
        // hints) reads the same.
        let mut beta = deployment_slice();
        beta["apiVersion"] = "discovery.k8s.io/v1beta1".into();
        for e in beta["endpoints"].as_array_mut().unwrap() {
            let e = e.as_object_mut().unwrap();
            let node = e.remove("nodeName").unwrap();
            let zone = e.remove("zone").unwrap();
            e.remove("hints");
            e.insert(
                "topology".into(),
                serde_json::json!({"kubernetes.io/hostname": node, "topology.kubernetes.io/zone": zone}),
            );
        }
        assert_eq!(endpoint_slice(&beta).unwrap(), data);
        // For a Service with `publishNotReadyAddresses` the endpointslice controller marks
        // terminating endpoints ready, which is what that Service asks for.
        let mut published = deployment_slice();
        published["endpoints"][1]["conditions"]["ready"] = true.into();
        assert!(endpoint_slice(&published).unwrap().endpoints[1].1);
    }

    /// An IPv6 slice (a dual-stack Service has one per family) and a hand-made FQDN slice keep
    /// their address type and addresses as written; an endpoint whose `conditions` are empty
    /// is ready (unknown reads as ready).
    #[test]
    fn v1_slices_of_ipv6_and_fqdn_addresses() {
        let ipv6 = serde_json::json!({
            "addressType": "IPv6",
            "apiVersion": "discovery.k8s.io/v1",
            "endpoints": [
                {
                    "addresses": ["fd00:10:244:1::11"],
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                    "nodeName": "worker-a",
                    "zone": "eu-west-1a"
                },
                {
                    "addresses": ["fd00:10:244:2::7"],
                    "conditions": {"ready": false, "serving": true, "terminating": true},
                    "nodeName": "worker-b",
                    "zone": "eu-west-1b"
                }
            ],
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": "web-",
                "labels": {
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    "kubernetes.io/service-name": "web"
                },
                "name": "web-9rbnd",
                "namespace": "shop"
            },
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        });
        let data = endpoint_slice(&ipv6).unwrap();
        assert_eq!(data.address_type, "IPv6");
        assert_eq!(
            data.endpoints,
            vec![
                (vec!["fd00:10:244:1::11".to_string()], true),
                (vec!["fd00:10:244:2::7".to_string()], false),
            ]
        );
        let fqdn = serde_json::json!({
            "addressType": "FQDN",
            "apiVersion": "discovery.k8s.io/v1",
            "endpoints": [
                {"addresses": ["payments.internal.example.com"], "conditions": {}}
            ],
            "kind": "EndpointSlice",
            "metadata": {
                "labels": {
                    "endpointslice.kubernetes.io/managed-by": "team-payments",
                    "kubernetes.io/service-name": "payments"
                },
                "name": "payments-external",
                "namespace": "shop"
            },
            "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]
        });
        assert_eq!(
            endpoint_slice(&fqdn).unwrap(),
            EndpointSliceData {
                service: "payments".into(),
                address_type: "FQDN".into(),
                ports: vec![("https".into(), 443)],
                endpoints: vec![(vec!["payments.internal.example.com".into()], true)],
            }
        );
    }

    /// A Service without pods has a slice whose `endpoints` (and, for a headless Service
    /// without ports, `ports`) kubectl prints as `null`: no endpoints, no ports. A port without
    /// a number (v1: "ports are not restricted") gives the route no target.
    #[test]
    fn an_empty_v1_slice_has_no_endpoints() {
        let empty = serde_json::json!({
            "addressType": "IPv4",
            "apiVersion": "discovery.k8s.io/v1",
            "endpoints": null,
            "kind": "EndpointSlice",
            "metadata": {
                "generateName": "web-",
                "labels": {
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    "kubernetes.io/service-name": "web"
                },
                "name": "web-zz8kq",
                "namespace": "shop"
            },
            "ports": null
        });
        let data = endpoint_slice(&empty).unwrap();
        assert!(
            data.endpoints.is_empty() && data.ports.is_empty(),
            "{data:?}"
        );
        let mut unrestricted = empty;
        unrestricted["ports"] = serde_json::json!([{"name": "", "protocol": "TCP"}]);
        assert!(endpoint_slice(&unrestricted).unwrap().ports.is_empty());
    }
}
