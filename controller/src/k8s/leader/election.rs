//! The election's decisions, as a pure state machine: what a replica read from the Lease and
//! its own clock reading go in, what to do comes out. No I/O here; [`super::Candidate`] carries
//! the decisions out against a [`super::LeaseStore`].

use std::time::{Duration, Instant};

/// What a read found on the Lease, as far as the election cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Who holds it (`None`: nobody, e.g. released, or the empty Lease the chart creates).
    pub holder: Option<String>,
    /// Its `resourceVersion`: changes with every write, renewals included.
    pub version: Option<String>,
    /// How long its holder said it lasts without renewal.
    pub lasts: Duration,
    /// The holder's advertised delivery URL.
    pub url: Option<String>,
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// There is no Lease: create one that this replica holds.
    Create,
    /// This replica holds the Lease: renew it.
    Renew,
    /// Nobody holds the Lease, or its holder has not renewed it for a whole duration by this
    /// replica's clock: take it, at the `resourceVersion` read (of two candidates one wins).
    TakeOver,
    /// Someone else holds the Lease: follow it, redirecting dataplanes to its URL.
    Follow(Option<String>),
}

/// How the write an [`Action`] asked for went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    /// The API server took it.
    Done,
    /// The Lease had changed since it was read (409): another replica wrote first.
    Conflict,
    /// The request failed (API server unreachable, refused, timed out).
    Failed,
}

/// Where a replica stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// It holds the Lease: it writes status and serves snapshots.
    Leading,
    /// It does not: dataplanes are redirected to the leader's URL, if one is known.
    Following(Option<String>),
}

/// The holder and `resourceVersion` seen on another replica's Lease, and when this replica
/// first saw them.
#[derive(Clone, Debug)]
struct Observation {
    holder: Option<String>,
    version: Option<String>,
    since: Instant,
}

/// One replica's side of the election.
#[derive(Debug)]
pub struct Election {
    identity: String,
    duration: Duration,
    observed: Option<Observation>,
    /// While leading: when the last renewal that the API server took was started.
    renewed: Option<Instant>,
    standing: Standing,
}

impl Election {
    /// A replica named `identity` whose Lease lasts `duration` without renewal; it starts
    /// following nobody.
    pub fn new(identity: impl Into<String>, duration: Duration) -> Election {
        Election {
            identity: identity.into(),
            duration,
            observed: None,
            renewed: None,
            standing: Standing::Following(None),
        }
    }

    /// Where this replica stands now.
    pub fn standing(&self) -> &Standing {
        &self.standing
    }

    /// Whether this replica leads.
    pub fn leading(&self) -> bool {
        self.standing == Standing::Leading
    }

    /// When a leader that has not renewed since must step down: two thirds of the duration
    /// after its last renewal began, so it has stopped before any other replica, having seen
    /// that renewal unchanged for a whole duration, may take over. `None` when following.
    pub fn step_down_at(&self) -> Option<Instant> {
        self.renewed.map(|at| at + self.duration * 2 / 3)
    }

    /// Decides what to do about the Lease as read (`None`: there is none), `now` being this
    /// replica's clock just after the read.
    pub fn decide(&mut self, lease: Option<&Seen>, now: Instant) -> Action {
        let Some(seen) = lease else {
            self.renewed = None;
            self.standing = Standing::Following(None);
            return Action::Create;
        };
        if seen.holder.as_deref() == Some(self.identity.as_str()) {
            self.observed = None;
            return Action::Renew;
        }
        // Someone else's, or nobody's: this replica does not lead, whatever it thought.
        self.renewed = None;
        let since = match &self.observed {
            Some(o) if o.holder == seen.holder && o.version == seen.version => o.since,
            _ => {
                self.observed = Some(Observation {
                    holder: seen.holder.clone(),
                    version: seen.version.clone(),
                    since: now,
                });
                now
            }
        };
        if seen.holder.is_none() || now.saturating_duration_since(since) >= seen.lasts {
            self.standing = Standing::Following(None);
            return Action::TakeOver;
        }
        self.standing = Standing::Following(seen.url.clone());
        Action::Follow(seen.url.clone())
    }

    /// Records how the write for `action` went, `now` being this replica's clock after it;
    /// `started` is its clock when the round began, before the read (a renewal counts from
    /// then, the earliest it can have landed, so the step-down deadline errs on the early side).
    pub fn written(
        &mut self,
        action: &Action,
        written: Written,
        started: Instant,
        now: Instant,
    ) -> &Standing {
        match (action, written) {
            (Action::Follow(_), _) => {}
            (Action::Create | Action::Renew | Action::TakeOver, Written::Done) => {
                self.observed = None;
                self.renewed = Some(started);
                self.standing = Standing::Leading;
            }
            // Lost the race, or could not write: nobody known leads until the next read.
            (Action::Create | Action::TakeOver, Written::Conflict | Written::Failed) => {
                self.renewed = None;
                self.standing = Standing::Following(None);
            }
            (Action::Renew, Written::Conflict | Written::Failed) => self.expire(now),
        }
        &self.standing
    }

    /// Records that the Lease could not be read at `now`: a leader keeps leading until its
    /// deadline, a standby keeps following whom it followed.
    pub fn unread(&mut self, now: Instant) -> &Standing {
        self.expire(now);
        &self.standing
    }

    /// Steps down if the deadline has passed at `now` without a renewal.
    pub fn expire(&mut self, now: Instant) {
        if self.step_down_at().is_some_and(|at| now >= at) {
            self.renewed = None;
            self.standing = Standing::Following(None);
        }
    }

    /// Stops taking part: returns whether this replica led and so must release the Lease.
    pub fn stop(&mut self) -> bool {
        let led = self.leading();
        self.renewed = None;
        self.observed = None;
        self.standing = Standing::Following(None);
        led
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(12);

    fn seen(holder: Option<&str>, version: &str, url: Option<&str>) -> Seen {
        Seen {
            holder: holder.map(String::from),
            version: Some(version.into()),
            lasts: D,
            url: url.map(String::from),
        }
    }

    /// A read: what the replica saw, at what second by its own clock, and what it decides.
    type Read = (Option<Seen>, u64, Action);

    /// Each case: the reads a replica makes, in order.
    #[test]
    fn decisions_follow_the_reads_and_the_replicas_own_clock() {
        let other = |v: &str| seen(Some("b"), v, Some("https://b"));
        let follow = Action::Follow(Some("https://b".into()));
        let cases: Vec<(&str, Vec<Read>)> = vec![
            ("no Lease: create it", vec![(None, 0, Action::Create)]),
            (
                "the chart's empty Lease (no holder): take it at once",
                vec![(Some(seen(None, "1", None)), 0, Action::TakeOver)],
            ),
            (
                "ours: renew",
                vec![(Some(seen(Some("a"), "7", None)), 0, Action::Renew)],
            ),
            (
                "held and renewed (version changes): follow, however long",
                vec![
                    (Some(other("1")), 0, follow.clone()),
                    (Some(other("2")), 9, follow.clone()),
                    (Some(other("3")), 18, follow.clone()),
                    (Some(other("4")), 27, follow.clone()),
                ],
            ),
            (
                "held, unchanged: follow until a whole duration has passed since first seen",
                vec![
                    (Some(other("1")), 100, follow.clone()),
                    (Some(other("1")), 111, follow.clone()),
                    (Some(other("1")), 112, Action::TakeOver),
                ],
            ),
            (
                "a renewal just before the duration ends starts the count again",
                vec![
                    (Some(other("1")), 0, follow.clone()),
                    (Some(other("2")), 11, follow.clone()),
                    (Some(other("2")), 22, follow.clone()),
                    (Some(other("2")), 23, Action::TakeOver),
                ],
            ),
            (
                "a new holder at the same version still starts the count again",
                vec![
                    (Some(other("1")), 0, follow.clone()),
                    (Some(seen(Some("c"), "1", None)), 11, Action::Follow(None)),
                    (Some(seen(Some("c"), "1", None)), 22, Action::Follow(None)),
                    (Some(seen(Some("c"), "1", None)), 23, Action::TakeOver),
                ],
            ),
        ];
        let t0 = Instant::now();
        for (what, reads) in cases {
            let mut e = Election::new("a", D);
            for (lease, at, want) in reads {
                let now = t0 + Duration::from_secs(at);
                assert_eq!(e.decide(lease.as_ref(), now), want, "{what}, at {at} s");
            }
        }
    }

    #[test]
    fn a_lease_written_by_its_holder_says_how_long_it_lasts() {
        let t0 = Instant::now();
        let mut e = Election::new("a", D);
        let short = Seen {
            lasts: Duration::from_secs(3),
            ..seen(Some("b"), "1", None)
        };
        assert_eq!(e.decide(Some(&short), t0), Action::Follow(None));
        let later = t0 + Duration::from_secs(3);
        assert_eq!(e.decide(Some(&short), later), Action::TakeOver);
    }

    #[test]
    fn a_leader_steps_down_two_thirds_of_a_duration_after_its_last_renewal_began() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut e = Election::new("a", D);
        assert_eq!(e.decide(None, at(0)), Action::Create);
        assert_eq!(
            e.written(&Action::Create, Written::Done, at(0), at(0)),
            &Standing::Leading
        );
        assert_eq!(e.step_down_at(), Some(at(8)));
        // Renewals fail, reads fail: it leads until the deadline, not after.
        assert_eq!(
            e.written(&Action::Renew, Written::Failed, at(3), at(3)),
            &Standing::Leading
        );
        assert_eq!(e.unread(at(7)), &Standing::Leading);
        assert_eq!(e.unread(at(8)), &Standing::Following(None));
        assert_eq!(e.step_down_at(), None);
        // Its Lease still names it: once a renewal goes through it leads again.
        let ours = seen(Some("a"), "1", None);
        assert_eq!(e.decide(Some(&ours), at(9)), Action::Renew);
        assert_eq!(
            e.written(&Action::Renew, Written::Done, at(9), at(9)),
            &Standing::Leading
        );
        assert_eq!(e.step_down_at(), Some(at(17)));
    }

    #[test]
    fn a_leader_that_reads_another_holder_or_no_lease_stops_leading_at_once() {
        let t0 = Instant::now();
        for lease in [None, Some(seen(Some("b"), "9", Some("https://b")))] {
            let mut e = Election::new("a", D);
            e.decide(Some(&seen(Some("a"), "1", None)), t0);
            e.written(&Action::Renew, Written::Done, t0, t0);
            assert!(e.leading());
            e.decide(lease.as_ref(), t0 + Duration::from_secs(1));
            assert!(!e.leading(), "{lease:?}");
            assert_eq!(e.step_down_at(), None);
        }
    }

    #[test]
    fn losing_a_race_or_failing_to_take_over_leaves_nobody_known() {
        let t0 = Instant::now();
        for (action, written) in [
            (Action::Create, Written::Conflict),
            (Action::TakeOver, Written::Conflict),
            (Action::Create, Written::Failed),
            (Action::TakeOver, Written::Failed),
        ] {
            let mut e = Election::new("a", D);
            assert_eq!(
                e.written(&action, written, t0, t0),
                &Standing::Following(None),
                "{action:?} {written:?}"
            );
            assert_eq!(e.step_down_at(), None);
        }
    }

    #[test]
    fn a_standby_that_cannot_read_keeps_following_its_leader() {
        let t0 = Instant::now();
        let mut e = Election::new("a", D);
        e.decide(Some(&seen(Some("b"), "1", Some("https://b"))), t0);
        let url = Some("https://b".to_string());
        assert_eq!(e.unread(t0 + D * 5), &Standing::Following(url));
    }

    #[test]
    fn stopping_says_whether_to_release() {
        let t0 = Instant::now();
        let mut e = Election::new("a", D);
        e.decide(None, t0);
        e.written(&Action::Create, Written::Done, t0, t0);
        assert!(e.stop());
        assert!(!e.leading());
        assert!(!e.stop());
    }
}
