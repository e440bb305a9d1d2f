//! The election's own paths, end to end over an in-memory API server and clocks the tests
//! move: nothing sleeps in real time.

use super::election::Standing;
use super::*;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use kube::api::ObjectMeta;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::Barrier;

const D: Duration = Duration::from_secs(12);
/// How often `run` reads the Lease with [`D`].
const RETRY: Duration = Duration::from_secs(3);

/// A clock that moves only when told to.
#[derive(Clone)]
struct FakeClock(Arc<watch::Sender<Instant>>);

impl FakeClock {
    fn new() -> FakeClock {
        FakeClock(Arc::new(watch::Sender::new(Instant::now())))
    }

    fn advance(&self, by: Duration) {
        self.0.send_modify(|t| *t += by);
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        *self.0.borrow()
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send {
        let mut now = self.0.subscribe();
        async move {
            if now.wait_for(|t| *t >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// One write the fake API server took.
#[derive(Clone, Debug)]
struct Entry {
    /// The replica whose link wrote it.
    by: String,
    /// The holder it wrote.
    holder: Option<String>,
    /// What the writer's `leader` channel said at that moment, if the link watches it.
    leader: Option<bool>,
}

/// The API server's side of one Lease: a `resourceVersion` bumped by every write, and
/// optimistic concurrency on it, as kube-apiserver does.
#[derive(Default)]
struct ApiServer {
    lease: Option<Lease>,
    version: u64,
    log: Vec<Entry>,
}

/// One replica's connection to the [`ApiServer`], which the test can cut or make hang.
#[derive(Clone)]
struct Link {
    server: Arc<Mutex<ApiServer>>,
    by: String,
    /// Every request fails (503).
    down: Arc<AtomicBool>,
    /// Every request hangs; counts the requests that did.
    hang: Arc<AtomicBool>,
    hung: Arc<watch::Sender<usize>>,
    /// The first read waits here (both racers have read before either writes).
    gate: Arc<Mutex<Option<Arc<Barrier>>>>,
    leader: Option<watch::Receiver<bool>>,
}

impl Link {
    fn new(server: &Arc<Mutex<ApiServer>>, by: &str) -> Link {
        Link {
            server: server.clone(),
            by: by.into(),
            down: Arc::default(),
            hang: Arc::default(),
            hung: Arc::new(watch::Sender::new(0)),
            gate: Arc::default(),
            leader: None,
        }
    }

    fn watching(mut self, leader: &watch::Receiver<bool>) -> Link {
        self.leader = Some(leader.clone());
        self
    }

    async fn request(&self) -> Result<(), LeaseError> {
        if self.hang.load(Ordering::SeqCst) {
            self.hung.send_modify(|n| *n += 1);
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::SeqCst) {
            let status = kube::core::Status::failure("etcd is away", "ServiceUnavailable");
            return Err(LeaseError::Request(kube::Error::Api(
                status.with_code(503).boxed(),
            )));
        }
        Ok(())
    }

    fn wrote(&self, server: &mut ApiServer, mut lease: Lease) {
        server.version += 1;
        lease.metadata.resource_version = Some(server.version.to_string());
        server.log.push(Entry {
            by: self.by.clone(),
            holder: lease.spec.as_ref().and_then(|s| s.holder_identity.clone()),
            leader: self.leader.as_ref().map(|l| *l.borrow()),
        });
        server.lease = Some(lease);
    }
}

impl LeaseStore for Link {
    async fn read(&self) -> Result<Option<Lease>, LeaseError> {
        self.request().await?;
        let lease = self.server.lock().unwrap().lease.clone();
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.wait().await;
        }
        Ok(lease)
    }

    async fn create(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.request().await?;
        let mut server = self.server.lock().unwrap();
        if server.lease.is_some() {
            return Err(LeaseError::Conflict);
        }
        self.wrote(&mut server, lease.clone());
        Ok(())
    }

    async fn replace(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.request().await?;
        let mut server = self.server.lock().unwrap();
        let current = server
            .lease
            .as_ref()
            .map(|l| l.metadata.resource_version.clone());
        match current {
            None => {
                let status = kube::core::Status::failure("not found", "NotFound");
                Err(LeaseError::Request(kube::Error::Api(
                    status.with_code(404).boxed(),
                )))
            }
            Some(v) if v != lease.metadata.resource_version => Err(LeaseError::Conflict),
            Some(_) => {
                self.wrote(&mut server, lease.clone());
                Ok(())
            }
        }
    }
}

/// `test` (which joins `run` with its checks), failing rather than hanging if `run` never
/// does what the checks wait for. Passing, it waits on no timer.
async fn bounded(test: impl Future<Output = ((), ())>) {
    let limit = Duration::from_secs(30);
    tokio::time::timeout(limit, test)
        .await
        .expect("run never got there");
}

/// Lets the other futures of a `join!` run until `done` holds (a bounded number of turns:
/// no timer, real or fake, is involved).
async fn eventually(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never happened");
}

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "tollhouse-system".into(),
        name: "tollhouse-controller".into(),
        identity: identity.into(),
        duration: D,
        advertise_url: Some(format!("https://{identity}")),
    }
}

fn url(identity: &str) -> Standing {
    Standing::Following(Some(format!("https://{identity}")))
}

fn holder(server: &Arc<Mutex<ApiServer>>) -> Option<String> {
    let lease = server.lock().unwrap().lease.clone()?;
    Seen::of(&lease, D).holder
}

/// The Lease the chart creates: there, but empty.
fn chart_lease() -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("tollhouse-controller".into()),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec::default()),
    }
}

#[tokio::test]
async fn a_standby_follows_the_holder_and_reports_its_url() {
    let server = Arc::default();
    let clock = FakeClock::new();
    let mut a = Candidate::new(config("a"), Link::new(&server, "a"));
    a.round(&clock).await.unwrap();
    assert_eq!(a.standing(), &Standing::Leading);

    // Through `run`: the hub redirects to the holder's URL and the status writer stays off.
    let hub = Hub::new();
    let (leader, mut leading) = watch::channel(false);
    let (stop, stopped) = watch::channel(false);
    let standby = run_with(
        Link::new(&server, "b"),
        clock.clone(),
        config("b"),
        &hub,
        &leader,
        stopped,
    );
    let check = async {
        eventually(|| hub.role() == Role::Standby(Some("https://a".into()))).await;
        assert!(!*leading.borrow_and_update());
        stop.send_replace(true);
    };
    bounded(async { tokio::join!(standby, check) }).await;
    assert!(!leading.has_changed().unwrap_or(false));
    // The standby wrote nothing, not even on its way out.
    let log = server.lock().unwrap().log.clone();
    assert!(log.iter().all(|e| e.by == "a"), "{log:?}");
}

/// Two candidates read the same free or expired Lease before either writes: the
/// `resourceVersion` lets exactly one write it; the other learns the winner and its URL at
/// once.
#[tokio::test]
async fn of_two_candidates_racing_for_a_free_lease_exactly_one_wins() {
    // What there is to race for, whether its holder went away, and the `leaseTransitions`
    // the winner writes (client-go's count: one per change of holder, a new Lease none).
    let cases: [(&str, Option<Lease>, bool, i32); 3] = [
        ("no Lease yet", None, false, 0),
        ("the chart's empty Lease", Some(chart_lease()), false, 1),
        ("a holder gone for a whole duration", None, true, 1),
    ];
    for (what, initial, expired, transitions) in cases {
        let server = Arc::new(Mutex::new(ApiServer {
            lease: initial,
            version: 1,
            log: Vec::new(),
        }));
        let clock = FakeClock::new();
        let mut b = Candidate::new(config("b"), Link::new(&server, "b"));
        let mut c = Candidate::new(config("c"), Link::new(&server, "c"));
        if expired {
            let mut gone = Candidate::new(config("gone"), Link::new(&server, "gone"));
            gone.round(&clock).await.unwrap();
            b.round(&clock).await.unwrap();
            c.round(&clock).await.unwrap();
            assert_eq!((b.standing(), c.standing()), (&url("gone"), &url("gone")));
            clock.advance(D);
        }
        let gate = Arc::new(Barrier::new(2));
        for link in [&b.store, &c.store] {
            *link.gate.lock().unwrap() = Some(gate.clone());
        }
        let (rb, rc) = tokio::join!(b.round(&clock), c.round(&clock));
        rb.unwrap();
        rc.unwrap();
        let standings = (b.standing().clone(), c.standing().clone());
        let winner = holder(&server).unwrap();
        match winner.as_str() {
            "b" => assert_eq!(standings, (Standing::Leading, url("b")), "{what}"),
            "c" => assert_eq!(standings, (url("c"), Standing::Leading), "{what}"),
            other => panic!("{what}: {other} holds the Lease"),
        }
        let lease = server.lock().unwrap().lease.clone().unwrap();
        let written = lease.spec.unwrap().lease_transitions;
        assert_eq!(written, Some(transitions), "{what}");
    }
}

/// A holder that stops renewing (killed, partitioned) is taken over once a standby has seen
/// its Lease unchanged for a whole duration by the standby's own clock, not before; a
/// renewal meanwhile starts the count again. The clocks are hours apart: only intervals count.
#[tokio::test]
async fn a_silent_holder_is_taken_over_after_a_whole_duration_of_unchanged_reads() {
    let server = Arc::default();
    let (clock_a, clock_b) = (FakeClock::new(), FakeClock::new());
    clock_b.advance(Duration::from_secs(7 * 3600));
    let tick = |by: Duration| {
        clock_a.advance(by);
        clock_b.advance(by);
    };
    let mut a = Candidate::new(config("a"), Link::new(&server, "a"));
    let mut b = Candidate::new(config("b"), Link::new(&server, "b"));
    a.round(&clock_a).await.unwrap();
    b.round(&clock_b).await.unwrap();
    // `a` renews once more, halfway through: `b` counts from when it saw that renewal.
    tick(D / 2);
    a.round(&clock_a).await.unwrap();
    for step in 1..=4 {
        b.round(&clock_b).await.unwrap();
        assert_eq!(b.standing(), &url("a"), "{step} reads after the renewal");
        tick(RETRY);
    }
    // The fifth read comes a whole duration after the renewal was first seen.
    assert_eq!(holder(&server).as_deref(), Some("a"));
    b.round(&clock_b).await.unwrap();
    assert_eq!(b.standing(), &Standing::Leading);
    assert_eq!(holder(&server).as_deref(), Some("b"));
    // The old holder, back, finds it has lost the Lease and follows.
    a.round(&clock_a).await.unwrap();
    assert_eq!(a.standing(), &url("b"));
}

/// A leader whose renewals fail steps down two thirds of a duration after its last renewal,
/// so at no moment do two replicas lead: the standby needs a whole duration of unchanged reads.
#[tokio::test]
async fn a_leader_whose_renewals_fail_steps_down_before_anyone_may_take_over() {
    let server = Arc::default();
    let clock = FakeClock::new();
    let t0 = clock.now();
    let mut a = Candidate::new(config("a"), Link::new(&server, "a"));
    let mut b = Candidate::new(config("b"), Link::new(&server, "b"));
    a.round(&clock).await.unwrap();
    b.round(&clock).await.unwrap();
    a.store.down.store(true, Ordering::SeqCst);
    let mut stepped_down = None;
    let mut took_over = None;
    for _ in 0..8 {
        clock.advance(RETRY);
        assert!(a.round(&clock).await.is_err());
        b.round(&clock).await.unwrap();
        let leaders = [a.standing(), b.standing()];
        let leading = leaders.iter().filter(|s| **s == &Standing::Leading).count();
        assert!(leading <= 1, "two leaders at {:?}", clock.now() - t0);
        if a.standing() != &Standing::Leading {
            stepped_down.get_or_insert(clock.now() - t0);
        }
        if b.standing() == &Standing::Leading {
            took_over.get_or_insert(clock.now() - t0);
        }
    }
    // Rounds come every D/4, so the first one past 2/3 D (8 s) is at 9 s.
    assert_eq!(stepped_down, Some(Duration::from_secs(9)));
    assert_eq!(took_over, Some(D));
    // Reconnected, it finds the Lease taken and follows.
    a.store.down.store(false, Ordering::SeqCst);
    a.round(&clock).await.unwrap();
    assert_eq!(a.standing(), &url("b"));
}

/// A renewal that hangs does not keep a leader leading: `run` steps down at the deadline
/// while the request is still under way.
#[tokio::test]
async fn a_leader_stuck_in_a_renewal_steps_down_at_its_deadline() {
    let server = Arc::default();
    let clock = FakeClock::new();
    let link = Link::new(&server, "a");
    let (hang, hung) = (link.hang.clone(), link.hung.clone());
    let hub = Hub::new();
    let (leader, mut leading) = watch::channel(false);
    let (stop, stopped) = watch::channel(false);
    let running = run_with(link, clock.clone(), config("a"), &hub, &leader, stopped);
    let check = async {
        leading.wait_for(|l| *l).await.unwrap();
        assert_eq!(hub.role(), Role::Leader);
        hang.store(true, Ordering::SeqCst);
        clock.advance(RETRY);
        hung.subscribe().wait_for(|n| *n == 1).await.unwrap();
        // The deadline is 2/3 D = 8 s after the renewal at 0 s.
        clock.advance(Duration::from_secs(5));
        leading.wait_for(|l| !*l).await.unwrap();
        assert_eq!(hub.role(), Role::Standby(None));
        stop.send_replace(true);
    };
    bounded(async { tokio::join!(running, check) }).await;
}

/// On stop the leader first stops leading (the status writer sees `false`), then clears the
/// holder, and a standby takes over at its very next read instead of waiting a duration out.
#[tokio::test]
async fn a_stopped_leader_releases_the_lease_after_it_stops_leading() {
    let server = Arc::default();
    let clock = FakeClock::new();
    let hub = Hub::new();
    let (leader, mut leading) = watch::channel(false);
    let (stop, stopped) = watch::channel(false);
    let link = Link::new(&server, "a").watching(&leading);
    let mut b = Candidate::new(config("b"), Link::new(&server, "b"));
    let running = run_with(link, clock.clone(), config("a"), &hub, &leader, stopped);
    let check = async {
        leading.wait_for(|l| *l).await.unwrap();
        b.round(&clock).await.unwrap();
        assert_eq!(b.standing(), &url("a"));
        stop.send_replace(true);
    };
    bounded(async { tokio::join!(running, check) }).await;
    assert!(!*leading.borrow());
    assert_eq!(hub.role(), Role::Standby(None));
    let log = server.lock().unwrap().log.clone();
    let last = log.last().unwrap();
    assert_eq!(
        (last.by.as_str(), last.holder.as_deref(), last.leader),
        ("a", None, Some(false)),
        "{log:?}"
    );
    // Every earlier write of `a` was made leading or on the way to it, none after.
    assert_eq!(log.len(), 2, "{log:?}");
    let lease = server.lock().unwrap().lease.clone().unwrap();
    assert!(!lease
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key(URL_ANNOTATION));

    // No time passes: the standby's next read finds the Lease free.
    b.round(&clock).await.unwrap();
    assert_eq!(b.standing(), &Standing::Leading);
    assert_eq!(holder(&server).as_deref(), Some("b"));
}

/// A standby's or a deposed leader's stop writes nothing: only the holder releases.
#[tokio::test]
async fn only_the_holder_releases() {
    let server = Arc::default();
    let clock = FakeClock::new();
    let mut a = Candidate::new(config("a"), Link::new(&server, "a"));
    let mut b = Candidate::new(config("b"), Link::new(&server, "b"));
    a.round(&clock).await.unwrap();
    b.round(&clock).await.unwrap();
    assert!(!b.stop());
    assert!(!b.release().await.unwrap());
    assert_eq!(holder(&server).as_deref(), Some("a"));
    assert!(a.stop());
    assert!(a.release().await.unwrap());
    assert_eq!(holder(&server), None);
}
