//! The Lease itself: how the election reads and writes it (behind [`LeaseStore`], so tests
//! can put an in-memory API server in its place), and what each decision writes into it.

use super::election::Seen;
use super::{LeaseConfig, URL_ANNOTATION};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

/// Why a read or write of the Lease failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The Lease changed since it was read, or was created meanwhile (409): someone else
    /// wrote first.
    #[error("the Lease changed since it was read")]
    Conflict,
    /// The API server refused the request or could not be reached.
    #[error(transparent)]
    Request(kube::Error),
}

/// Access to one Lease, with the API server's optimistic concurrency.
pub trait LeaseStore: Send + Sync {
    /// The Lease, or `None` if there is none.
    fn read(&self) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;
    /// Creates the Lease; [`LeaseError::Conflict`] if it exists.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<(), LeaseError>> + Send;
    /// Replaces the Lease if it is still at the `resourceVersion` `lease` carries;
    /// [`LeaseError::Conflict`] if it is not.
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<(), LeaseError>> + Send;
}

/// The Lease on the API server.
#[derive(Clone)]
pub struct KubeLeases {
    api: Api<Lease>,
    name: String,
}

impl KubeLeases {
    /// The Lease `name` in the namespace `api` is for.
    pub fn new(api: Api<Lease>, name: impl Into<String>) -> KubeLeases {
        KubeLeases {
            api,
            name: name.into(),
        }
    }
}

fn request(error: kube::Error) -> LeaseError {
    match error {
        kube::Error::Api(status) if status.code == 409 => LeaseError::Conflict,
        error => LeaseError::Request(error),
    }
}

impl LeaseStore for KubeLeases {
    async fn read(&self) -> Result<Option<Lease>, LeaseError> {
        self.api.get_opt(&self.name).await.map_err(request)
    }

    async fn create(&self, lease: &Lease) -> Result<(), LeaseError> {
        let pp = PostParams::default();
        self.api.create(&pp, lease).await.map(drop).map_err(request)
    }

    async fn replace(&self, lease: &Lease) -> Result<(), LeaseError> {
        let pp = PostParams::default();
        let replaced = self.api.replace(&self.name, &pp, lease).await;
        replaced.map(drop).map_err(request)
    }
}

impl Seen {
    /// What the election needs from `lease`; `duration` stands in for a missing or zero
    /// `leaseDurationSeconds`.
    pub fn of(lease: &Lease, duration: Duration) -> Seen {
        let spec = lease.spec.as_ref();
        let lasts = spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(duration, Duration::from_secs);
        Seen {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            version: lease.metadata.resource_version.clone(),
            lasts,
            url: lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(URL_ANNOTATION))
                .cloned(),
        }
    }
}

fn seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// `annotations` with this replica's delivery URL in (or, without one, out).
fn advertised(
    annotations: Option<BTreeMap<String, String>>,
    config: &LeaseConfig,
) -> Option<BTreeMap<String, String>> {
    let mut map = annotations.unwrap_or_default();
    match &config.advertise_url {
        Some(url) => map.insert(URL_ANNOTATION.into(), url.clone()),
        None => map.remove(URL_ANNOTATION),
    };
    Some(map)
}

/// A new Lease held by this replica.
pub fn created(config: &LeaseConfig, now: MicroTime) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            annotations: advertised(None, config),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(seconds(config.duration)),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// `lease` renewed by this replica, its holder.
pub fn renewed(mut lease: Lease, config: &LeaseConfig, now: MicroTime) -> Lease {
    let mut spec = lease.spec.take().unwrap_or_default();
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(seconds(config.duration));
    lease.spec = Some(spec);
    lease.metadata.annotations = advertised(lease.metadata.annotations.take(), config);
    lease
}

/// `lease` taken over by this replica (its `resourceVersion` kept, so of two candidates
/// only one can write it).
pub fn taken(mut lease: Lease, config: &LeaseConfig, now: MicroTime) -> Lease {
    let mut spec = lease.spec.take().unwrap_or_default();
    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    spec.holder_identity = Some(config.identity.clone());
    spec.acquire_time = Some(now.clone());
    spec.renew_time = Some(now);
    spec.lease_duration_seconds = Some(seconds(config.duration));
    lease.spec = Some(spec);
    lease.metadata.annotations = advertised(lease.metadata.annotations.take(), config);
    lease
}

/// `lease` given up, so a standby takes it at its next read instead of waiting it out; the
/// URL goes too, since nothing serves there any more.
pub fn released(mut lease: Lease, now: MicroTime) -> Lease {
    let mut spec = lease.spec.take().unwrap_or_default();
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now);
    lease.spec = Some(spec);
    if let Some(annotations) = lease.metadata.annotations.as_mut() {
        annotations.remove(URL_ANNOTATION);
    }
    lease
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: Option<&str>) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            advertise_url: url.map(String::from),
        }
    }

    fn now() -> MicroTime {
        MicroTime(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn each_write_names_its_holder_and_url_and_keeps_what_others_put_there() {
        let mut lease = created(&config(Some("https://a")), now());
        let seen = Seen::of(&lease, Duration::ZERO);
        assert_eq!(seen.holder.as_deref(), Some("a"));
        assert_eq!(seen.url.as_deref(), Some("https://a"));
        assert_eq!(seen.lasts, Duration::from_secs(15));
        lease.metadata.resource_version = Some("5".into());
        let mut others = BTreeMap::new();
        others.insert("team".to_string(), "gateway".to_string());
        others.insert(URL_ANNOTATION.to_string(), "https://old".to_string());
        lease.metadata.annotations = Some(others);

        let taken = taken(lease.clone(), &config(Some("https://b")), now());
        let spec = taken.spec.clone().unwrap_or_default();
        assert_eq!(spec.lease_transitions, Some(1));
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("5"));
        let annotations = taken.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations["team"], "gateway");
        assert_eq!(annotations[URL_ANNOTATION], "https://b");

        // A replica without a URL leaves none behind it for standbys to redirect to.
        let renewed = renewed(taken, &config(None), now());
        let annotations = renewed.metadata.annotations.clone().unwrap_or_default();
        assert!(!annotations.contains_key(URL_ANNOTATION));
        assert_eq!(annotations["team"], "gateway");

        let released = released(lease, now());
        let seen = Seen::of(&released, Duration::from_secs(15));
        assert_eq!((seen.holder, seen.url), (None, None));
        let annotations = released.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations["team"], "gateway");
    }

    #[test]
    fn an_empty_holder_is_nobody_and_a_missing_duration_is_ours() {
        let lease = Lease {
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(0),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        let seen = Seen::of(&lease, Duration::from_secs(7));
        assert_eq!(seen.holder, None);
        assert_eq!(seen.lasts, Duration::from_secs(7));
        assert_eq!(
            Seen::of(&Lease::default(), Duration::from_secs(7)).lasts,
            Duration::from_secs(7)
        );
    }
}
