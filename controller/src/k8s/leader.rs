//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does
//! it (no Rust crate for it supports kube 5 yet).
//!
//! Every replica reads the Lease each `duration / 4`. The holder renews it; a candidate takes
//! it once it has seen the same holder and `resourceVersion` for a whole `duration` by its own
//! clock (so clock skew between nodes does not matter), using the `resourceVersion` for an
//! optimistic write: of two candidates only one wins. A leader that cannot renew within two
//! thirds of the duration steps down before anyone may take over. On shutdown the leader
//! releases the Lease so a standby takes over at its next read.
//!
//! The holder writes its delivery URL into an annotation, which standbys use to redirect
//! dataplanes to it.

use crate::server::{Hub, Role};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// Annotation on the Lease carrying the holder's delivery URL.
pub const URL_ANNOTATION: &str = "tollhouse.dev/delivery-url";

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease lasts without renewal.
    pub duration: Duration,
    /// The URL dataplanes reach this replica's snapshot server at.
    pub advertise_url: Option<String>,
}

/// The holder and `resourceVersion` last seen on the Lease, and when (by this replica's clock)
/// they were first seen.
type Observed = ((Option<String>, Option<String>), Instant);

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the election until `stop`, publishing leadership on `leader` and the role on `hub`.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    hub: Arc<Hub>,
    leader: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let retry = (config.duration / 4).max(Duration::from_millis(250));
    let renew_deadline = config.duration * 2 / 3;
    let mut observed: Option<Observed> = None;
    let mut last_renew: Option<Instant> = None;
    let mut leading = false;
    hub.set_role(Role::Standby(None));
    loop {
        let outcome = step(&api, &config, &mut observed).await;
        match outcome {
            Ok(Step::Leading) => {
                last_renew = Some(Instant::now());
                if !leading {
                    info!(lease = %config.name, identity = %config.identity, "became the leader");
                }
                leading = true;
                hub.set_role(Role::Leader);
            }
            Ok(Step::Following(url)) => {
                if leading {
                    warn!(lease = %config.name, "lost the lease to another replica");
                }
                leading = false;
                hub.set_role(Role::Standby(url));
            }
            Err(error) => {
                hub.metrics.error("lease");
                warn!(lease = %config.name, %error, "lease read or write failed");
                if leading && last_renew.is_none_or(|t| t.elapsed() > renew_deadline) {
                    warn!(lease = %config.name, "could not renew in time; stepping down");
                    leading = false;
                    hub.set_role(Role::Standby(None));
                }
            }
        }
        leader.send_if_modified(|l| {
            let changed = *l != leading;
            *l = leading;
            changed
        });
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if leading {
        leader.send_replace(false);
        release(&api, &config).await;
    }
}

enum Step {
    Leading,
    Following(Option<String>),
}

async fn step(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<Step, kube::Error> {
    let duration_secs = i32::try_from(config.duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                annotations: annotations(config),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration_secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(Step::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Step::Following(None)),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    if holder.as_deref() == Some(config.identity.as_str()) {
        let mut new_spec = spec;
        new_spec.renew_time = Some(now());
        new_spec.lease_duration_seconds = Some(duration_secs);
        lease.spec = Some(new_spec);
        lease.metadata.annotations = merged(lease.metadata.annotations.take(), config);
        api.replace(&config.name, &PostParams::default(), &lease)
            .await?;
        return Ok(Step::Leading);
    }
    let key = (holder.clone(), lease.metadata.resource_version.clone());
    let since = match observed {
        Some((k, at)) if *k == key => *at,
        _ => {
            let at = Instant::now();
            *observed = Some((key, at));
            at
        }
    };
    let lasts = Duration::from_secs(
        u64::try_from(spec.lease_duration_seconds.unwrap_or(duration_secs).max(1)).unwrap_or(1),
    );
    if holder.is_some() && since.elapsed() < lasts {
        let url = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(URL_ANNOTATION))
            .cloned();
        return Ok(Step::Following(url));
    }
    let mut new_spec = spec;
    new_spec.lease_transitions = Some(new_spec.lease_transitions.unwrap_or(0).saturating_add(1));
    new_spec.holder_identity = Some(config.identity.clone());
    new_spec.acquire_time = Some(now());
    new_spec.renew_time = Some(now());
    new_spec.lease_duration_seconds = Some(duration_secs);
    lease.spec = Some(new_spec);
    lease.metadata.annotations = merged(lease.metadata.annotations.take(), config);
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(Step::Leading),
        // Another candidate won the race.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Step::Following(None)),
        Err(e) => Err(e),
    }
}

fn annotations(config: &LeaseConfig) -> Option<BTreeMap<String, String>> {
    merged(None, config)
}

fn merged(
    existing: Option<BTreeMap<String, String>>,
    config: &LeaseConfig,
) -> Option<BTreeMap<String, String>> {
    let mut map = existing.unwrap_or_default();
    match &config.advertise_url {
        Some(url) => {
            map.insert(URL_ANNOTATION.into(), url.clone());
        }
        None => {
            map.remove(URL_ANNOTATION);
        }
    }
    Some(map)
}

/// Gives the Lease up so a standby takes over at its next read instead of waiting it out.
async fn release(api: &Api<Lease>, config: &LeaseConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    lease.spec = Some(spec);
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => info!(lease = %config.name, "released the lease"),
        Err(error) => warn!(lease = %config.name, %error, "could not release the lease"),
    }
}

/// Checks `--advertise-url` and puts brackets around a bare IPv6 address, so that
/// `https://$(POD_IP):8443` (what a pod spec can express) also works in IPv6 clusters, where
/// it expands to `https://fd00::5:8443`. Anything else that is not an absolute `http(s)` URL
/// is refused, naming the flag: dataplanes would otherwise be redirected nowhere.
pub fn advertise_url(raw: &str) -> Result<String, String> {
    let refuse = || format!("--advertise-url {raw:?} is not an absolute http:// or https:// URL");
    let (scheme, rest) = raw.split_once("://").ok_or_else(refuse)?;
    if scheme != "http" && scheme != "https" {
        return Err(refuse());
    }
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let authority = match authority.rsplit_once(':') {
        Some((host, port))
            if host.parse::<std::net::Ipv6Addr>().is_ok() && port.parse::<u16>().is_ok() =>
        {
            format!("[{host}]:{port}")
        }
        _ if authority.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{authority}]"),
        _ => authority.to_string(),
    };
    let url = format!("{scheme}://{authority}{path}");
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.host().is_some_and(|h| !h.is_empty()) => Ok(url),
        _ => Err(refuse()),
    }
}

#[cfg(test)]
mod advertise_tests {
    use super::advertise_url;

    #[test]
    fn bare_ipv6_pod_addresses_get_brackets_and_bad_urls_are_refused() {
        let ok = [
            ("https://10.0.0.5:8443", "https://10.0.0.5:8443"),
            ("https://fd00::5:8443", "https://[fd00::5]:8443"),
            ("https://[fd00::5]:8443", "https://[fd00::5]:8443"),
            ("http://2001:db8::1", "http://[2001:db8::1]"),
            ("https://ctl.ns.svc:8443/", "https://ctl.ns.svc:8443/"),
        ];
        for (raw, want) in ok {
            assert_eq!(advertise_url(raw).as_deref(), Ok(want), "{raw}");
        }
        for raw in [
            "10.0.0.5:8443",
            "ftp://x",
            "https://",
            "https:///x",
            "$(POD_IP)",
        ] {
            let error = advertise_url(raw).unwrap_err();
            assert!(error.contains("--advertise-url"), "{raw}: {error}");
        }
    }
}
