//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does
//! it. Not `kube-lease-manager`: it writes no annotation (the URL below would need a second,
//! unsynchronised write), judges expiry by the Lease's `renewTime` against this node's wall
//! clock, keeps reporting leadership while its renewals fail, and talks to a `kube::Client`
//! only, so its decisions cannot be tested without an API server.
//!
//! Every replica reads the Lease each `duration / 4`. The holder renews it; a candidate takes
//! it once it has seen the same holder and `resourceVersion` for a whole `duration` by its own
//! clock (so clock skew between nodes does not matter), using the `resourceVersion` for an
//! optimistic write: of two candidates only one wins. A leader that cannot renew within two
//! thirds of the duration steps down before anyone may take over, even while a request hangs.
//! On shutdown the leader stops leading, then releases the Lease so a standby takes over at its
//! next read.
//!
//! The holder writes its delivery URL into an annotation, which standbys use to redirect
//! dataplanes to it.
//!
//! - [`election`]: the decisions, a pure state machine over what was read and this replica's
//!   clock.
//! - [`lease`]: the Lease behind [`LeaseStore`] (the API server, or a fake in tests), and what
//!   each decision writes into it.
//! - here: [`Candidate`] carries one round of decisions out, [`run`] loops rounds on a
//!   [`Clock`] and publishes leadership.

pub mod election;
pub mod lease;
#[cfg(test)]
mod tests;

use crate::server::{Hub, Role};
use election::{Action, Election, Seen, Standing, Written};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::Api;
use kube::Client;
pub use lease::{KubeLeases, LeaseError, LeaseStore};
use std::future::Future;
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

/// The clock the election decides and waits by.
pub trait Clock: Send + Sync {
    /// This replica's monotonic time.
    fn now(&self) -> Instant;
    /// Resolves once [`Clock::now`] has reached `at`.
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send;
}

/// The process's monotonic clock, through tokio's timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(at.into())
    }
}

/// The wall-clock time written into `acquireTime` and `renewTime`, for people reading the
/// Lease: no replica decides by it.
fn stamp() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One replica's part in the election: its decisions and its access to the Lease.
pub struct Candidate<S> {
    config: LeaseConfig,
    election: Election,
    store: S,
}

impl<S: LeaseStore> Candidate<S> {
    /// A replica configured by `config`, reaching the Lease through `store`; it starts
    /// following nobody.
    pub fn new(config: LeaseConfig, store: S) -> Candidate<S> {
        let election = Election::new(config.identity.clone(), config.duration);
        Candidate {
            config,
            election,
            store,
        }
    }

    /// Where this replica stands.
    pub fn standing(&self) -> &Standing {
        self.election.standing()
    }

    /// When this replica, leading, must step down if no renewal goes through first.
    pub fn step_down_at(&self) -> Option<Instant> {
        self.election.step_down_at()
    }

    /// Reads the Lease and writes what the election decides. A write that loses to another
    /// replica's is followed by one more read at once, to learn who won and its URL.
    pub async fn round(&mut self, clock: &impl Clock) -> Result<(), LeaseError> {
        let started = clock.now();
        let mut reread = true;
        loop {
            let lease = match self.store.read().await {
                Ok(lease) => lease,
                Err(error) => {
                    self.election.unread(clock.now());
                    return Err(error);
                }
            };
            let seen = lease.as_ref().map(|l| Seen::of(l, self.config.duration));
            let action = self.election.decide(seen.as_ref(), clock.now());
            let result = self.write(&action, lease).await;
            let written = match &result {
                Ok(()) => Written::Done,
                Err(LeaseError::Conflict) => Written::Conflict,
                Err(LeaseError::Request(_)) => Written::Failed,
            };
            self.election
                .written(&action, written, started, clock.now());
            if reread && matches!(result, Err(LeaseError::Conflict)) {
                reread = false;
                continue;
            }
            return result;
        }
    }

    async fn write(&self, action: &Action, lease: Option<Lease>) -> Result<(), LeaseError> {
        let config = &self.config;
        match (action, lease) {
            (Action::Follow(_), _) => Ok(()),
            (Action::Renew, Some(l)) => {
                self.store
                    .replace(&lease::renewed(l, config, stamp()))
                    .await
            }
            (Action::TakeOver, Some(l)) => {
                self.store.replace(&lease::taken(l, config, stamp())).await
            }
            // The election asks for a write to an existing Lease only when it read one.
            (Action::Create | Action::Renew | Action::TakeOver, _) => {
                self.store.create(&lease::created(config, stamp())).await
            }
        }
    }

    /// Steps down if the deadline has passed at `now` (a renewal still under way counts for
    /// nothing).
    pub fn expire(&mut self, now: Instant) {
        self.election.expire(now);
    }

    /// Stops taking part; returns whether this replica led (and so should [`Candidate::release`]).
    pub fn stop(&mut self) -> bool {
        self.election.stop()
    }

    /// Gives the Lease up if it still names this replica, so a standby takes over at its next
    /// read instead of waiting it out. Returns whether it did.
    pub async fn release(&self) -> Result<bool, LeaseError> {
        let Some(lease) = self.store.read().await? else {
            return Ok(false);
        };
        let holder = Seen::of(&lease, self.config.duration).holder;
        if holder.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        self.store.replace(&lease::released(lease, stamp())).await?;
        Ok(true)
    }
}

/// Runs the election against the API server until `stop`, publishing leadership on `leader`
/// and the role on `hub`.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    hub: Arc<Hub>,
    leader: watch::Sender<bool>,
    stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let store = KubeLeases::new(api, config.name.clone());
    run_with(store, TokioClock, config, &hub, &leader, stop).await;
}

/// What woke the election loop.
enum Woken {
    Stopped,
    /// The step-down deadline passed before the round's renewal went through.
    Late,
    Round(Result<(), LeaseError>),
}

/// [`run`] over any Lease store and clock.
pub async fn run_with<S: LeaseStore, C: Clock>(
    store: S,
    clock: C,
    config: LeaseConfig,
    hub: &Hub,
    leader: &watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let retry = (config.duration / 4).max(Duration::from_millis(250));
    let duration = config.duration;
    let name = config.name.clone();
    let identity = config.identity.clone();
    let mut candidate = Candidate::new(config, store);
    hub.set_role(Role::Standby(None));
    loop {
        let led = candidate.standing() == &Standing::Leading;
        let deadline = candidate.step_down_at();
        let woken = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => Woken::Stopped,
            () = until(&clock, deadline) => Woken::Late,
            result = candidate.round(&clock) => Woken::Round(result),
        };
        let failed = match woken {
            Woken::Stopped => break,
            Woken::Late => {
                candidate.expire(clock.now());
                true
            }
            Woken::Round(Ok(())) => false,
            Woken::Round(Err(error)) => {
                hub.metrics.error("lease");
                warn!(lease = %name, %error, "lease read or write failed");
                true
            }
        };
        let standing = candidate.standing().clone();
        match (led, &standing, failed) {
            (false, Standing::Leading, _) => {
                info!(lease = %name, %identity, "became the leader");
            }
            (true, Standing::Following(_), true) => {
                warn!(lease = %name, "could not renew in time; stepping down");
            }
            (true, Standing::Following(_), false) => {
                warn!(lease = %name, "lost the lease to another replica");
            }
            _ => {}
        }
        publish(&standing, hub, leader);
        tokio::select! {
            () = clock.sleep_until(clock.now() + retry) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if candidate.stop() {
        // Nothing is written as leader once a standby could take over.
        publish(&Standing::Following(None), hub, leader);
        // Bounded, so an unreachable API server cannot hold the shutdown up: the standby
        // then waits the Lease out.
        let patience = (duration * 2 / 3).max(retry);
        let bounded = tokio::select! {
            released = candidate.release() => Some(released),
            () = clock.sleep_until(clock.now() + patience) => None,
        };
        match bounded {
            Some(Ok(true)) => info!(lease = %name, "released the lease"),
            Some(Ok(false)) => {}
            Some(Err(error)) => warn!(lease = %name, %error, "could not release the lease"),
            None => warn!(lease = %name, "could not release the lease in time"),
        }
    }
}

/// Resolves at `deadline`, or never.
async fn until(clock: &impl Clock, deadline: Option<Instant>) {
    match deadline {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Tells the status writer (first: it must stop writing before anyone else may lead) and the
/// snapshot server where this replica stands.
fn publish(standing: &Standing, hub: &Hub, leader: &watch::Sender<bool>) {
    let leading = standing == &Standing::Leading;
    leader.send_if_modified(|l| {
        let changed = *l != leading;
        *l = leading;
        changed
    });
    hub.set_role(match standing {
        Standing::Leading => Role::Leader,
        Standing::Following(url) => Role::Standby(url.clone()),
    });
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
