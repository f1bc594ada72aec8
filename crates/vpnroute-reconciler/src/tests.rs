//! Reconciler tests against the in-memory store and the sim data plane (wrapped to count,
//! slow down, mute or falsify what it does).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vpnroute_dataplane::{
    DataPlane, DataPlaneError, DataPlaneEvent, EventWaker, GatewaySpec, Observed, RouteClass, RouteSpec, SpecChanges,
};
use vpnroute_dataplane_sim::{SimDataPlane, SimFault};

use crate::memory::MemoryReconcileStore;
use crate::{Outcome, ReconcileStore, Reconciler, ReconcilerConfig};

const GW: &str = "vpn-1";

/// The sim, wrapped: counts applies (and overlapping ones), can be slowed down, can swallow
/// its events, and can claim to be out of sync whatever it holds.
#[derive(Default)]
struct TestPlane {
    sim: SimDataPlane,
    /// Versions of full applies.
    applied_versions: Mutex<Vec<i64>>,
    /// Versions reached by incremental applies.
    applied_changes: Mutex<Vec<i64>>,
    applying: AtomicBool,
    overlaps: AtomicUsize,
    apply_delay: Duration,
    mute_events: bool,
    report_out_of_sync: AtomicBool,
    panic_on_apply: AtomicBool,
    /// Answer [`DataPlane::per_process`] with this (the sim's own answer is `true`).
    per_process: bool,
}

impl TestPlane {
    /// Applies made, full or incremental.
    fn applies(&self) -> usize {
        self.applied_versions.lock().unwrap().len() + self.applied_changes.lock().unwrap().len()
    }

    fn chosen(&self, dest: &str) -> Option<String> {
        let v = self
            .explain(GW, Ipv4Addr::new(172, 16, 0, 1), dest.parse().unwrap())
            .unwrap();
        v["Explanation"]["chosen"]["next_hop"].as_str().map(str::to_string)
    }
}

impl DataPlane for TestPlane {
    fn name(&self) -> &'static str {
        "test"
    }
    fn per_process(&self) -> bool {
        self.per_process
    }
    fn apply(&self, spec: &GatewaySpec) -> Result<(), DataPlaneError> {
        if self.applying.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(self.apply_delay);
        if self.panic_on_apply.load(Ordering::SeqCst) {
            self.applying.store(false, Ordering::SeqCst);
            panic!("data plane bug");
        }
        self.applied_versions.lock().unwrap().push(spec.version);
        let r = self.sim.apply(spec);
        self.applying.store(false, Ordering::SeqCst);
        r
    }
    fn apply_changes(&self, changes: &SpecChanges) -> Result<bool, DataPlaneError> {
        if self.applying.swap(true, Ordering::SeqCst) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        std::thread::sleep(self.apply_delay);
        let r = self.sim.apply_changes(changes);
        if matches!(r, Ok(true)) {
            self.applied_changes.lock().unwrap().push(changes.version);
        }
        self.applying.store(false, Ordering::SeqCst);
        r
    }
    fn observe(&self, gateway_id: &str) -> Result<Option<Observed>, DataPlaneError> {
        let mut o = self.sim.observe(gateway_id)?;
        if self.report_out_of_sync.load(Ordering::SeqCst) {
            if let Some(o) = &mut o {
                o.in_sync = false;
            }
        }
        Ok(o)
    }
    fn remove(&self, gateway_id: &str) -> Result<(), DataPlaneError> {
        self.sim.remove(gateway_id)
    }
    fn explain(&self, gateway_id: &str, source: Ipv4Addr, dest: Ipv4Addr) -> Result<Value, DataPlaneError> {
        self.sim.explain(gateway_id, source, dest)
    }
    fn gateways(&self) -> Result<Vec<String>, DataPlaneError> {
        self.sim.gateways()
    }
    fn drain_events(&self) -> Vec<DataPlaneEvent> {
        let events = self.sim.drain_events();
        if self.mute_events {
            Vec::new()
        } else {
            events
        }
    }
    fn subscribe(&self, wake: EventWaker) {
        if !self.mute_events {
            self.sim.subscribe(wake);
        }
    }
}

fn route(id: u64, dest: &str, hop: &str) -> RouteSpec {
    RouteSpec {
        id,
        class: RouteClass::Destination,
        source: None,
        dest: dest.parse().unwrap(),
        next_hop: hop.into(),
        weight: 100,
        priority: 0,
        published: false,
    }
}

fn spec(routes: Vec<RouteSpec>) -> GatewaySpec {
    GatewaySpec {
        gateway_id: GW.into(),
        version: 0,
        internet_ip: Ipv4Addr::new(47, 0, 0, 1),
        vpc_cidr: "172.16.0.0/12".parse().unwrap(),
        connections: Vec::new(),
        routes,
    }
}

/// Routes 1..=n, route i to `10.0.i.0/24` via `vco-a`.
fn routes(n: u64) -> Vec<RouteSpec> {
    (1..=n).map(|i| route(i, &format!("10.0.{i}.0/24"), "vco-a")).collect()
}

fn config(owner: &str) -> ReconcilerConfig {
    let mut c = ReconcilerConfig::new(owner);
    c.drift_interval = Duration::from_secs(10);
    c
}

fn setup(plane: TestPlane) -> (Arc<MemoryReconcileStore>, Arc<TestPlane>, Reconciler) {
    let store = Arc::new(MemoryReconcileStore::new());
    let plane = Arc::new(plane);
    let r = Reconciler::new(store.clone(), plane.clone(), config("r1"));
    (store, plane, r)
}

fn applied(store: &MemoryReconcileStore) -> i64 {
    store.status(GW).unwrap().applied_version
}

#[test]
fn due_versions_come_into_force_in_order_and_manual_ones_wait() {
    let (store, plane, r) = setup(TestPlane::default());
    let t0 = 1_000_000;
    store.commit(spec(routes(1)), Some(t0 + 100));
    store.commit(spec(routes(2)), Some(t0 + 200));
    store.commit(spec(routes(3)), Some(t0 + 300));
    store.commit(spec(routes(4)), None);

    let report = r.run_pass(t0);
    assert!(report.outcomes.is_empty(), "{:?}", report.outcomes);
    assert_eq!(report.next_wake_ms, Some(t0 + 100));
    assert_eq!(plane.sim.route_count(GW), 0, "nothing in force before its task is due");

    let report = r.run_pass(t0 + 100);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 1,
                applied: true
            }
        )]
    );
    assert_eq!(report.next_wake_ms, Some(t0 + 200));
    assert_eq!(plane.sim.route_count(GW), 1);
    assert_eq!(store.status(GW).unwrap().pending_tasks, 3);

    // Two tasks due at once: one apply converges to the later version.
    r.run_pass(t0 + 350);
    assert_eq!(applied(&store), 3);
    assert_eq!(
        *plane.applied_versions.lock().unwrap(),
        vec![1],
        "the first apply is a full one"
    );
    assert_eq!(
        *plane.applied_changes.lock().unwrap(),
        vec![3],
        "then only the difference"
    );
    assert_eq!(plane.sim.route_count(GW), 3);

    // The manual task waits until advanced.
    let report = r.run_pass(t0 + 100_000);
    assert!(report.outcomes.is_empty());
    assert_eq!((applied(&store), plane.sim.route_count(GW)), (3, 3));
    assert_eq!(store.advance(GW, t0 + 100_001), 1);
    r.run_pass(t0 + 100_001);
    let status = store.status(GW).unwrap();
    assert_eq!((status.applied_version, status.pending_tasks), (4, 0));
    assert_eq!(plane.sim.route_count(GW), 4);
    assert_eq!(status.applied_history, vec![1, 3, 4]);
    assert_eq!(r.metrics().snapshot().applied, 3);
    assert_eq!(r.metrics().snapshot().failures, 0);
}

#[test]
fn a_data_plane_failing_half_way_is_retried_with_backoff_and_recovers() {
    let (store, plane, r) = setup(TestPlane::default());
    let t0 = 5_000_000;
    store.commit(spec(routes(2)), Some(t0));
    r.run_pass(t0);
    assert_eq!(applied(&store), 1);

    plane.sim.inject_failures(SimFault {
        after_routes: 2,
        times: 2,
    });
    store.commit(spec(routes(8)), Some(t0 + 10));
    let report = r.run_pass(t0 + 10);
    let Outcome::Failed {
        error,
        attempts,
        next_retry_ms,
    } = &report.outcomes[0].1
    else {
        panic!("{:?}", report.outcomes);
    };
    assert!(error.contains("injected failure"), "{error}");
    assert_eq!(*attempts, 1);
    let first_delay = next_retry_ms - (t0 + 10);
    assert!((80..=100).contains(&first_delay), "{first_delay}");
    assert_eq!(report.next_wake_ms, Some(*next_retry_ms));
    assert_eq!(plane.sim.route_count(GW), 4, "part of the change in force");
    let status = store.status(GW).unwrap();
    assert_eq!((status.applied_version, status.attempts), (1, 1));
    assert_eq!(status.last_error.as_deref(), Some(error.as_str()));
    assert_eq!(status.next_retry_ms, Some(*next_retry_ms));
    assert_eq!(status.claimed_by, None, "the claim is released after a failure");

    // Not before the retry time.
    let retry = *next_retry_ms;
    assert!(r.run_pass(retry - 1).outcomes.is_empty());
    let report = r.run_pass(retry);
    let Outcome::Failed {
        attempts,
        next_retry_ms,
        ..
    } = &report.outcomes[0].1
    else {
        panic!("{:?}", report.outcomes);
    };
    assert_eq!(*attempts, 2);
    assert_eq!(plane.sim.route_count(GW), 6, "a retry makes progress");
    let second_delay = next_retry_ms - retry;
    assert!((160..=200).contains(&second_delay), "backoff doubles: {second_delay}");

    let report = r.run_pass(*next_retry_ms);
    assert_eq!(
        report.outcomes[0].1,
        Outcome::Applied {
            version: 2,
            applied: true
        }
    );
    let status = store.status(GW).unwrap();
    assert_eq!(
        (status.applied_version, status.attempts, status.next_retry_ms),
        (2, 0, None)
    );
    assert_eq!(status.last_error, None);
    assert_eq!(plane.sim.route_count(GW), 8);
    assert!(plane.observe(GW).unwrap().unwrap().in_sync);
    let m = r.metrics().snapshot();
    assert_eq!((m.failures, m.applied), (2, 2));
}

#[test]
fn changes_cut_short_are_completed_by_a_full_apply() {
    let (store, plane, r) = setup(TestPlane::default());
    store.commit(spec(routes(3)), Some(0));
    r.run_pass(0);
    let mut v2 = spec(routes(6));
    v2.routes.remove(0);
    v2.routes[0].next_hop = "vco-b".into();
    store.commit(v2.clone(), Some(1));
    plane.sim.inject_failures(SimFault {
        after_routes: 2,
        times: 1,
    });
    assert!(matches!(r.run_pass(1).outcomes[0].1, Outcome::Failed { .. }));
    assert!(plane.applied_changes.lock().unwrap().is_empty());
    let retry = store.status(GW).unwrap().next_retry_ms.unwrap();
    r.run_pass(retry);
    assert_eq!(applied(&store), 2);
    assert_eq!(
        *plane.applied_versions.lock().unwrap(),
        vec![1, 2],
        "out of sync: a full apply"
    );
    assert_eq!(plane.sim.route_count(GW), 5);
    assert_eq!(plane.chosen("10.0.1.1"), None);
    assert_eq!(plane.chosen("10.0.2.1").as_deref(), Some("vco-b"));
    assert_eq!(plane.chosen("10.0.6.1").as_deref(), Some("vco-a"));
}

#[test]
fn a_read_back_out_of_sync_is_a_failure_and_nothing_is_recorded() {
    let (store, plane, r) = setup(TestPlane::default());
    plane.report_out_of_sync.store(true, Ordering::SeqCst);
    store.commit(spec(routes(1)), Some(0));
    let report = r.run_pass(0);
    match &report.outcomes[0].1 {
        Outcome::Failed { error, .. } => assert!(error.contains("read-back"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(applied(&store), 0);
    plane.report_out_of_sync.store(false, Ordering::SeqCst);
    let retry = store.status(GW).unwrap().next_retry_ms.unwrap();
    let report = r.run_pass(retry);
    // The data plane already holds the version: only the record was missing.
    assert_eq!(
        report.outcomes[0].1,
        Outcome::Applied {
            version: 1,
            applied: false
        }
    );
    assert_eq!(plane.applies(), 1);
    assert_eq!(applied(&store), 1);
}

#[test]
fn a_restart_with_a_task_pending_converges_and_undoes_nothing() {
    let store = Arc::new(MemoryReconcileStore::new());
    let before = Arc::new(TestPlane::default());
    let r1 = Reconciler::new(store.clone(), before.clone(), config("before-restart"));
    store.commit(spec(vec![route(1, "10.0.0.0/24", "vco-a")]), Some(0));
    r1.run_pass(0);
    assert_eq!(applied(&store), 1);
    // A change accepted but not applied (manual), then the process dies.
    store.commit(
        spec(vec![route(1, "10.0.0.0/24", "vco-a"), route(2, "10.0.1.0/24", "vco-b")]),
        None,
    );
    drop(r1);

    // In-memory data plane: empty after the restart. The first pass rebuilds the applied
    // version — not the pending one, and without undoing anything.
    let after = Arc::new(TestPlane::default());
    let r2 = Reconciler::new(store.clone(), after.clone(), config("after-restart"));
    let report = r2.run_pass(10);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 1,
                applied: true
            }
        )]
    );
    assert_eq!(r2.metrics().snapshot().drift_repairs, 1);
    assert_eq!(after.chosen("10.0.0.1").as_deref(), Some("vco-a"));
    assert_eq!(after.chosen("10.0.1.1"), None, "the pending change is not in force");
    assert_eq!(store.status(GW).unwrap().pending_tasks, 1);
    store.advance(GW, 20);
    r2.run_pass(20);
    assert_eq!(after.chosen("10.0.0.1").as_deref(), Some("vco-a"));
    assert_eq!(after.chosen("10.0.1.1").as_deref(), Some("vco-b"));
    let status = store.status(GW).unwrap();
    assert_eq!((status.applied_version, status.pending_tasks), (2, 0));
    assert_eq!(status.applied_history, vec![1, 2]);
}

#[test]
fn a_surviving_data_plane_is_adopted_after_a_crash_between_apply_and_record() {
    let store = Arc::new(MemoryReconcileStore::new());
    // A kernel-like data plane: it survives the restart.
    let plane = Arc::new(TestPlane::default());
    let r1 = Reconciler::new(store.clone(), plane.clone(), config("before"));
    store.commit(spec(routes(2)), Some(0));
    r1.run_pass(0);
    // Version 2 reached the data plane, the process died before recording it …
    let v2 = store.commit(spec(routes(4)), Some(5));
    plane.apply(&store.desired_spec(GW).unwrap()).unwrap();
    // … and version 3 died half-way through its apply.
    store.commit(spec(routes(6)), Some(5));
    drop(r1);
    assert_eq!((applied(&store), v2), (1, 2));

    let r2 = Reconciler::new(store.clone(), plane.clone(), config("after"));
    plane.sim.inject_failures(SimFault {
        after_routes: 1,
        times: 1,
    });
    let report = r2.run_pass(10);
    assert!(
        matches!(report.outcomes[0].1, Outcome::Failed { .. }),
        "{:?}",
        report.outcomes
    );
    let retry = store.status(GW).unwrap().next_retry_ms.unwrap();
    r2.run_pass(retry);
    assert_eq!(applied(&store), 3);
    assert_eq!(plane.sim.route_count(GW), 6);
    assert!(plane.observe(GW).unwrap().unwrap().in_sync);
    assert_eq!(store.status(GW).unwrap().applied_history, vec![1, 3]);

    // Had version 3 reached the data plane in full, the next reconciler records it without
    // applying again.
    store.commit(spec(routes(7)), Some(20));
    plane.apply(&store.desired_spec(GW).unwrap()).unwrap();
    let applies = plane.applies();
    let r3 = Reconciler::new(store.clone(), plane.clone(), config("third"));
    let report = r3.run_pass(30);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 4,
                applied: false
            }
        )]
    );
    assert_eq!(plane.applies(), applies);
}

#[test]
fn a_claimed_gateway_is_left_alone_until_its_lease_runs_out_and_a_stale_claim_records_nothing() {
    let store = Arc::new(MemoryReconcileStore::new());
    let plane = Arc::new(TestPlane::default());
    let a = Reconciler::new(store.clone(), plane.clone(), config("a"));
    let b = Reconciler::new(store.clone(), plane.clone(), config("b"));
    let lease = a.config().lease.as_millis() as i64;
    store.commit(spec(routes(1)), Some(0));

    let claim_a = store.claim_due("a", 0, lease).unwrap().unwrap();
    assert_eq!(claim_a.target_version, 1);
    // B finds nothing to claim while A's lease runs, neither due work nor a repair.
    assert!(b.run_pass(1).outcomes.is_empty());
    assert!(store.claim_gateway(GW, "b", 1, lease).unwrap().is_none());
    assert_eq!(plane.applies(), 0);

    // A stalls past its lease; B takes over and applies.
    let report = b.run_pass(lease);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 1,
                applied: true
            }
        )]
    );
    // A wakes up: its claim is stale, nothing is recorded (nor applied: 1 is in force).
    assert_eq!(a.reconcile_claim(&claim_a, lease + 1), Outcome::Lost);
    assert!(!store.record_applied(&claim_a, 1, lease + 1).unwrap());
    assert_eq!(
        store.record_failure(&claim_a, "late", lease + 2, lease + 1).unwrap(),
        None
    );
    assert_eq!(plane.applies(), 1);
    let status = store.status(GW).unwrap();
    assert_eq!((status.applied_version, status.attempts), (1, 0));
    assert_eq!(a.metrics().snapshot().lost_claims, 1);
}

#[test]
fn a_restarted_instance_takes_over_its_own_claims_at_once() {
    let store = Arc::new(MemoryReconcileStore::new());
    let plane = Arc::new(TestPlane::default());
    store.commit(spec(routes(1)), Some(0));
    // The instance died holding the claim (mid-pass).
    let held = store.claim_due("host-a", 0, 30_000).unwrap().unwrap();
    let other = Reconciler::new(store.clone(), plane.clone(), config("host-b"));
    assert!(
        other.run_pass(1).outcomes.is_empty(),
        "another owner waits for the lease"
    );
    let restarted = Reconciler::new(store.clone(), plane.clone(), config("host-a"));
    let report = restarted.run_pass(2);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 1,
                applied: true
            }
        )]
    );
    // The dead instance's claim is fenced off.
    assert!(!store.record_applied(&held, 1, 3).unwrap());
}

#[test]
fn two_reconcilers_racing_take_turns_and_versions_never_go_backwards() {
    let store = Arc::new(MemoryReconcileStore::new());
    let plane = Arc::new(TestPlane {
        apply_delay: Duration::from_millis(1),
        ..TestPlane::default()
    });
    let reconcilers: Vec<Arc<Reconciler>> = ["a", "b"]
        .iter()
        .map(|owner| Arc::new(Reconciler::new(store.clone(), plane.clone(), config(owner))))
        .collect();
    const CHANGES: u64 = 60;
    let done = Arc::new(AtomicBool::new(false));
    let committer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            for n in 1..=CHANGES {
                store.commit(spec(routes(n)), Some(crate::now_ms()));
                std::thread::sleep(Duration::from_micros(700));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let workers: Vec<_> = reconcilers
        .iter()
        .map(|r| {
            let (r, store, done) = (r.clone(), store.clone(), done.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    r.run_pass(crate::now_ms());
                    let s = store.status(GW);
                    if done.load(Ordering::SeqCst) && s.is_some_and(|s| s.applied_version == CHANGES as i64) {
                        break;
                    }
                    assert!(Instant::now() < deadline, "did not converge");
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    committer.join().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(plane.overlaps.load(Ordering::SeqCst), 0, "two applies ran at once");
    let status = store.status(GW).unwrap();
    assert!(
        status.applied_history.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        status.applied_history
    );
    assert_eq!(status.applied_version, CHANGES as i64);
    let metrics: Vec<_> = reconcilers.iter().map(|r| r.metrics().snapshot()).collect();
    assert_eq!(
        metrics.iter().map(|m| m.applied).sum::<u64>(),
        status.applied_history.len() as u64,
        "one record per successful claim"
    );
    assert_eq!(metrics.iter().map(|m| m.lost_claims + m.failures).sum::<u64>(), 0);
    // Each apply happened under a claim that then recorded: as many applies as records.
    assert_eq!(plane.applies(), status.applied_history.len());
    assert!(
        !plane.applied_changes.lock().unwrap().is_empty(),
        "later versions apply as changes"
    );
    assert_eq!(plane.sim.route_count(GW), CHANGES as usize);
    let o = plane.observe(GW).unwrap().unwrap();
    assert_eq!((o.applied_version, o.in_sync), (Some(CHANGES as i64), true));
}

#[test]
fn drift_is_repaired_when_reported_and_by_the_periodic_check() {
    let (store, plane, r) = setup(TestPlane::default());
    store.commit(spec(routes(3)), Some(0));
    r.run_pass(0);
    assert!(plane.sim.inject_drift(GW, 2));
    let report = r.run_pass(1);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 1,
                applied: true
            }
        )]
    );
    assert_eq!(plane.sim.route_count(GW), 3);
    assert_eq!(r.metrics().snapshot().drift_repairs, 1);
    assert_eq!(applied(&store), 1);

    // A data plane that reports nothing: the periodic check finds the drift.
    let (store, plane, r) = setup(TestPlane {
        mute_events: true,
        ..TestPlane::default()
    });
    store.commit(spec(routes(3)), Some(0));
    r.run_pass(0);
    plane.sim.inject_drift(GW, 3);
    assert!(r.run_pass(1).outcomes.is_empty(), "no event, interval not over");
    assert_eq!(plane.sim.route_count(GW), 2);
    let interval = r.config().drift_interval.as_millis() as i64;
    let report = r.run_pass(interval);
    assert_eq!(report.outcomes.len(), 1, "{:?}", report.outcomes);
    assert_eq!(plane.sim.route_count(GW), 3);
    assert!(plane.observe(GW).unwrap().unwrap().in_sync);
    // In sync: the next check does nothing.
    assert!(r.run_pass(2 * interval).outcomes.is_empty());
}

#[test]
fn deleted_gateways_leave_the_data_plane() {
    let (store, plane, r) = setup(TestPlane::default());
    store.commit(spec(routes(2)), Some(0));
    r.run_pass(0);
    assert_eq!(plane.gateways().unwrap(), vec![GW.to_string()]);
    store.delete(GW);
    r.check_all_on_next_pass();
    let report = r.run_pass(1);
    assert_eq!(report.outcomes, vec![(GW.to_string(), Outcome::Removed)]);
    assert!(plane.gateways().unwrap().is_empty());
    assert_eq!(r.metrics().snapshot().removed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_is_woken_by_commits_and_by_data_plane_events() {
    let store = Arc::new(MemoryReconcileStore::new());
    let plane = Arc::new(TestPlane::default());
    let mut cfg = config("loop");
    cfg.drift_interval = Duration::from_secs(3600);
    cfg.poll_interval = Duration::from_millis(200);
    let r = Arc::new(Reconciler::new(store.clone(), plane.clone(), cfg));
    let handle = tokio::spawn(r.clone().run());
    let polled = r.metrics().snapshot().passes;
    async fn until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    until("the first pass", || r.metrics().snapshot().passes >= 1).await;
    store.commit(spec(routes(2)), Some(crate::now_ms()));
    r.wake();
    until("the commit applied", || store.status(GW).unwrap().applied_version == 1).await;
    assert_eq!(plane.sim.route_count(GW), 2);
    plane.sim.inject_drift(GW, 1);
    until("the drift repaired", || plane.sim.route_count(GW) == 2).await;
    assert_eq!(r.metrics().snapshot().drift_repairs, 1);

    // A change due at once: the callback runs after a pass that applied it.
    let (tx, rx) = std::sync::mpsc::channel();
    let v = store.commit(spec(routes(5)), Some(crate::now_ms()));
    let (s2, p2) = (store.clone(), plane.clone());
    r.after_next_pass(Box::new(move || {
        tx.send((s2.status(GW).unwrap().applied_version, p2.sim.route_count(GW)))
            .unwrap();
    }));
    let seen = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the callback ran");
    assert_eq!(seen, (v, 5));

    // Without any wake-up, the loop polls the store (another process may have changed it).
    let v = store.commit(spec(routes(6)), Some(crate::now_ms()));
    until("a poll applied it", || store.status(GW).unwrap().applied_version == v).await;
    assert!(r.metrics().snapshot().passes > polled);
    handle.abort();
}

/// The memory store, with `record_applied` failing while `failing` is set.
struct FlakyStore {
    inner: MemoryReconcileStore,
    failing: AtomicBool,
}

impl ReconcileStore for FlakyStore {
    fn claim_due(&self, owner: &str, now_ms: i64, lease_ms: i64) -> Result<Option<crate::Claim>, crate::StoreFailure> {
        self.inner.claim_due(owner, now_ms, lease_ms)
    }
    fn claim_gateway(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<crate::Claim>, crate::StoreFailure> {
        self.inner.claim_gateway(gateway_id, owner, now_ms, lease_ms)
    }
    fn load_spec(&self, gateway_id: &str, version: i64) -> Result<Option<GatewaySpec>, crate::StoreFailure> {
        self.inner.load_spec(gateway_id, version)
    }
    fn record_applied(&self, claim: &crate::Claim, version: i64, now_ms: i64) -> Result<bool, crate::StoreFailure> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(crate::StoreFailure("database is locked".into()));
        }
        self.inner.record_applied(claim, version, now_ms)
    }
    fn record_failure(
        &self,
        claim: &crate::Claim,
        error: &str,
        next_retry_ms: i64,
        now_ms: i64,
    ) -> Result<Option<u32>, crate::StoreFailure> {
        self.inner.record_failure(claim, error, next_retry_ms, now_ms)
    }
    fn release(&self, claim: &crate::Claim) -> Result<(), crate::StoreFailure> {
        self.inner.release(claim)
    }
    fn release_owner(&self, owner: &str) -> Result<usize, crate::StoreFailure> {
        self.inner.release_owner(owner)
    }
    fn gateway_versions(&self) -> Result<Vec<crate::GatewayVersion>, crate::StoreFailure> {
        self.inner.gateway_versions()
    }
    fn next_wake(&self, now_ms: i64) -> Result<Option<i64>, crate::StoreFailure> {
        self.inner.next_wake(now_ms)
    }
}

#[test]
fn a_failing_store_neither_spins_a_pass_nor_loses_the_change() {
    let store = Arc::new(FlakyStore {
        inner: MemoryReconcileStore::new(),
        failing: AtomicBool::new(true),
    });
    let plane = Arc::new(TestPlane::default());
    let r = Reconciler::new(store.clone(), plane.clone(), config("r"));
    store.inner.commit(spec(routes(2)), Some(0));
    let report = r.run_pass(0);
    assert_eq!(
        report.outcomes,
        vec![(GW.to_string(), Outcome::StoreError("database is locked".into()))]
    );
    assert_eq!(plane.applies(), 1, "one attempt in the pass, not a spin");
    assert_eq!(report.next_wake_ms, Some(100), "retried soon");
    assert_eq!(
        store.inner.status(GW).unwrap().claimed_by,
        None,
        "the claim was released"
    );
    assert_eq!(r.metrics().snapshot().store_errors, 1);
    store.failing.store(false, Ordering::SeqCst);
    let report = r.run_pass(100);
    // The data plane holds it already: only the record is made.
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 1,
                applied: false
            }
        )]
    );
    assert_eq!(store.inner.status(GW).unwrap().applied_version, 1);
}

#[test]
fn several_gateways_due_are_reconciled_in_one_pass() {
    let (store, plane, r) = setup(TestPlane::default());
    for n in 1..=5u64 {
        let mut s = spec(routes(n));
        s.gateway_id = format!("vpn-{n}");
        store.commit(s, Some(0));
    }
    let report = r.run_pass(0);
    assert_eq!(report.outcomes.len(), 5, "{:?}", report.outcomes);
    for n in 1..=5u64 {
        let id = format!("vpn-{n}");
        assert_eq!(store.status(&id).unwrap().applied_version, 1);
        assert_eq!(plane.sim.route_count(&id), n as usize);
    }
    // A pass takes at most `max_claims_per_pass`: the rest follow at once.
    let mut cfg = config("small");
    cfg.max_claims_per_pass = 2;
    let small = Reconciler::new(store.clone(), plane.clone(), cfg);
    for n in 1..=5u64 {
        let mut s = spec(routes(n + 1));
        s.gateway_id = format!("vpn-{n}");
        store.commit(s, Some(10));
    }
    let report = small.run_pass(10);
    assert_eq!((report.outcomes.len(), report.next_wake_ms), (2, Some(10)));
    small.run_pass(10);
    small.run_pass(10);
    assert!((1..=5).all(|n| store.status(&format!("vpn-{n}")).unwrap().applied_version == 2));
}

#[test]
fn requests_waiting_for_a_pass_are_answered_even_when_it_panics() {
    let (store, plane, r) = setup(TestPlane::default());
    plane.panic_on_apply.store(true, Ordering::SeqCst);
    store.commit(spec(routes(1)), Some(0));
    let answered = Arc::new(AtomicBool::new(false));
    let a = answered.clone();
    r.after_next_pass(Box::new(move || a.store(true, Ordering::SeqCst)));
    let report = r.run_pass_and_callbacks(0);
    assert!(answered.load(Ordering::SeqCst));
    assert_eq!(report.next_wake_ms, Some(100));
    // The claim's lease runs out; then the next attempt succeeds.
    plane.panic_on_apply.store(false, Ordering::SeqCst);
    let lease = r.config().lease.as_millis() as i64;
    r.run_pass(lease);
    assert_eq!(applied(&store), 1);
}

/// A replica: its own data plane and the reconciler putting versions into it.
type Replica = (Arc<TestPlane>, Arc<Reconciler>);

/// Replicas: one store, each reconciler with a data plane of its own.
fn replicas(per_process: bool, owners: &[&str]) -> (Arc<MemoryReconcileStore>, Vec<Replica>) {
    let store = Arc::new(MemoryReconcileStore::new());
    let replicas = owners
        .iter()
        .map(|owner| {
            let plane = Arc::new(TestPlane {
                per_process,
                ..TestPlane::default()
            });
            let r = Arc::new(Reconciler::new(store.clone(), plane.clone(), config(owner)));
            (plane, r)
        })
        .collect();
    (store, replicas)
}

fn held(plane: &TestPlane) -> Option<(Option<i64>, bool)> {
    plane.observe(GW).unwrap().map(|o| (o.applied_version, o.in_sync))
}

#[test]
fn a_replica_mirrors_recorded_versions_without_claiming_or_recording() {
    let (store, replicas) = replicas(true, &["a", "b"]);
    let [(pa, ra), (pb, rb)] = &replicas[..] else {
        unreachable!()
    };
    // Both start with nothing (the first pass's full check at 0).
    ra.run_pass(0);
    rb.run_pass(0);
    store.commit(spec(routes(3)), Some(0));
    let report = ra.run_pass(1);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 1,
                applied: true
            }
        )]
    );
    assert_eq!(held(pb), None, "b has not run a pass yet");
    // b's next pass sees the generation move: v1 is put into its own data plane. Another
    // owner holds a claim meanwhile: mirroring needs none.
    let foreign = store.claim_gateway(GW, "x", 2, 60_000).unwrap().expect("free");
    let report = rb.run_pass(2);
    assert_eq!(
        report.outcomes,
        vec![(GW.to_string(), Outcome::Mirrored { version: 1 })]
    );
    assert_eq!(held(pb), Some((Some(1), true)));
    assert_eq!(pb.chosen("10.0.2.9"), pa.chosen("10.0.2.9"));
    assert_eq!(pb.sim.route_count(GW), 3);
    let status = store.status(GW).unwrap();
    assert_eq!(status.applied_history, vec![1], "nothing recorded by the mirror");
    assert_eq!(
        status.claimed_by.as_deref(),
        Some("x"),
        "the foreign claim is untouched"
    );
    assert_eq!(
        (rb.metrics().snapshot().applied, rb.metrics().snapshot().mirrored),
        (0, 1)
    );
    store.release(&foreign).unwrap();
    // Nothing moved: nothing to do, not even at the periodic check.
    let interval = rb.config().drift_interval.as_millis() as i64;
    assert!(rb.run_pass(3).outcomes.is_empty());
    assert!(
        rb.run_pass(interval + 3).outcomes.is_empty(),
        "in force: no claim taken"
    );
    assert_eq!(pb.applies(), 1);

    // The next version comes across as its whole spec (a store keeps a version's changes
    // only until it is applied, and a mirrored version is applied).
    store.commit(spec(routes(5)), Some(10));
    ra.run_pass(11);
    assert_eq!(
        rb.run_pass(12).outcomes,
        vec![(GW.to_string(), Outcome::Mirrored { version: 2 })]
    );
    assert_eq!((pb.applies(), pb.applied_changes.lock().unwrap().len()), (2, 0));
    assert_eq!(pb.chosen("10.0.5.1"), Some("vco-a".into()));
    // A version due but not recorded yet is not mirrored: only what the claim holder put in
    // force and recorded.
    store.commit(spec(routes(6)), Some(20));
    assert!(rb.run_pass(13).outcomes.is_empty(), "not due yet for b either");
    assert_eq!(held(pb), Some((Some(2), true)));
    // A deleted gateway leaves every replica's data plane.
    store.delete(GW);
    assert_eq!(rb.run_pass(14).outcomes, vec![(GW.to_string(), Outcome::Removed)]);
    assert!(pb.gateways().unwrap().is_empty());
    assert_eq!(store.status(GW), None);
}

#[test]
fn a_mirroring_pass_reads_the_specs_it_needs_together() {
    let (store, replicas) = replicas(true, &["a", "b"]);
    let [(pa, ra), (pb, rb)] = &replicas[..] else {
        unreachable!()
    };
    ra.run_pass(0);
    rb.run_pass(0);
    let ids: Vec<String> = (0..40).map(|i| format!("vpn-m{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        store.commit(
            GatewaySpec {
                gateway_id: id.clone(),
                ..spec(routes(1 + i as u64 % 3))
            },
            Some(0),
        );
    }
    // a applies all of them under claims (more than one pass's worth).
    for t in 1..20 {
        ra.run_pass(t);
    }
    assert_eq!(pa.gateways().unwrap().len(), 40);
    let before = store.spec_batches();
    let report = rb.run_pass(100);
    let mut mirrored: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Mirrored { version: 1 }))
        .map(|(id, _)| id.as_str())
        .collect();
    mirrored.sort_unstable();
    assert_eq!(mirrored, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // 40 specs in two reads (32 at most each), not 40.
    assert_eq!(store.spec_batches() - before, 2);
    for id in &ids {
        assert_eq!(pb.sim.route_count(id), pa.sim.route_count(id), "{id}");
    }
    // Nothing moved since: nothing read.
    assert!(rb.run_pass(101).outcomes.is_empty());
    assert_eq!(store.spec_batches() - before, 2);
}

#[test]
fn a_replica_ahead_of_the_record_is_left_to_the_claims() {
    let (store, replicas) = replicas(true, &["a", "b"]);
    let [(_, ra), (pb, rb)] = &replicas[..] else {
        unreachable!()
    };
    store.commit(spec(routes(2)), Some(0));
    ra.run_pass(1);
    rb.run_pass(1);
    assert_eq!(held(pb), Some((Some(1), true)));
    // b applies version 2 under a claim and has not recorded it (its lease runs out at 4):
    // its data plane is ahead of the record. The mirror leaves it (never back to version 1);
    // a claim brings the record up.
    store.commit(spec(routes(4)), Some(2));
    let claim = store.claim_due("b", 3, 1).unwrap().expect("due");
    pb.apply(&store.load_spec(GW, 2).unwrap().unwrap()).unwrap();
    assert!(
        rb.run_pass(3).outcomes.is_empty(),
        "claimed by b's stalled attempt: nothing to do"
    );
    assert_eq!(
        held(pb),
        Some((Some(2), true)),
        "not rolled back to the recorded version"
    );
    let report = ra.run_pass(10);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 2,
                applied: true
            }
        )]
    );
    assert!(
        !store.record_applied(&claim, 2, 11).unwrap(),
        "the stalled claim is fenced off"
    );
    assert_eq!(store.status(GW).unwrap().applied_history, vec![1, 2]);
    assert!(rb.run_pass(12).outcomes.is_empty(), "b holds the recorded version");
    assert_eq!(rb.metrics().snapshot().mirrored, 1);
}

#[test]
fn a_shared_data_plane_changes_only_under_a_claim() {
    let (store, replicas) = replicas(false, &["a", "b"]);
    let [(_, ra), (pb, rb)] = &replicas[..] else {
        unreachable!()
    };
    ra.run_pass(0);
    rb.run_pass(0);
    store.commit(spec(routes(2)), Some(0));
    ra.run_pass(1);
    // b's data plane is shared with other processes (a kernel): b does not touch it because
    // another replica recorded a version; only a claim (due work, drift repair) does.
    assert!(rb.run_pass(2).outcomes.is_empty());
    assert_eq!(held(pb), None);
    assert_eq!(rb.metrics().snapshot().mirrored, 0);
    let interval = rb.config().drift_interval.as_millis() as i64;
    let report = rb.run_pass(interval);
    assert_eq!(
        report.outcomes,
        vec![(
            GW.to_string(),
            Outcome::Applied {
                version: 1,
                applied: true
            }
        )],
        "the periodic check repairs under a claim"
    );
}

#[test]
fn replicas_racing_each_end_with_every_recorded_version_in_force() {
    let (store, replicas) = replicas(true, &["a", "b", "c"]);
    const CHANGES: u64 = 40;
    let done = Arc::new(AtomicBool::new(false));
    let committer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            for n in 1..=CHANGES {
                store.commit(spec(routes(n)), Some(crate::now_ms()));
                std::thread::sleep(Duration::from_micros(500));
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let workers: Vec<_> = replicas
        .iter()
        .map(|(plane, r)| {
            let (plane, r, store, done) = (plane.clone(), r.clone(), store.clone(), done.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    r.run_pass(crate::now_ms());
                    let recorded = store.status(GW).map(|s| s.applied_version);
                    if done.load(Ordering::SeqCst)
                        && recorded == Some(CHANGES as i64)
                        && held(&plane) == Some((Some(CHANGES as i64), true))
                    {
                        break;
                    }
                    assert!(Instant::now() < deadline, "did not converge");
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    committer.join().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let status = store.status(GW).unwrap();
    assert!(
        status.applied_history.windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        status.applied_history
    );
    let metrics: Vec<_> = replicas.iter().map(|(_, r)| r.metrics().snapshot()).collect();
    assert_eq!(
        metrics.iter().map(|m| m.applied).sum::<u64>(),
        status.applied_history.len() as u64,
        "only claims record"
    );
    assert!(metrics.iter().map(|m| m.mirrored).sum::<u64>() > 0, "{metrics:?}");
    for (plane, _) in &replicas {
        assert_eq!(plane.sim.route_count(GW), CHANGES as usize);
        assert_eq!(plane.overlaps.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_loop_mirrors_another_replicas_record_promptly() {
    let (store, replicas) = replicas(true, &["a", "b"]);
    let [(_, ra), (pb, _)] = &replicas[..] else {
        unreachable!()
    };
    // Nothing wakes b but the generation: its other timers are far away.
    let mut cfg = config("b-loop");
    cfg.drift_interval = Duration::from_secs(3600);
    cfg.poll_interval = Duration::from_secs(3600);
    cfg.feed_poll = Duration::from_millis(20);
    let rb_loop = Arc::new(Reconciler::new(store.clone(), pb.clone(), cfg));
    let handle = tokio::spawn(rb_loop.clone().run());
    let deadline = Instant::now() + Duration::from_secs(5);
    while rb_loop.metrics().snapshot().passes == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for n in 1..=3u64 {
        store.commit(spec(routes(n)), Some(crate::now_ms()));
        let ra = ra.clone();
        tokio::task::spawn_blocking(move || ra.run_pass(crate::now_ms()))
            .await
            .unwrap();
        let recorded = Instant::now();
        while held(pb) != Some((Some(n as i64), true)) {
            assert!(
                recorded.elapsed() < Duration::from_secs(2),
                "version {n} not mirrored within 2 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    assert_eq!(rb_loop.metrics().snapshot().applied, 0, "b recorded nothing");
    assert_eq!(rb_loop.metrics().snapshot().mirrored, 3);
    handle.abort();
}

/// A waiter that records when it was answered.
fn waiter(answered: &Arc<AtomicUsize>) -> crate::AfterPass {
    let answered = answered.clone();
    Box::new(move || {
        answered.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn a_request_with_its_claim_is_answered_once_its_version_is_in_force() {
    let (store, plane, r) = setup(TestPlane::default());
    let lease = r.config().lease.as_millis() as i64;
    let v1 = store.commit(spec(routes(1)), Some(0));
    let v2 = store.commit(spec(routes(2)), Some(0));
    let answered = Arc::new(AtomicUsize::new(0));
    r.when_in_force(GW, v1, waiter(&answered));
    r.when_in_force(GW, v2, waiter(&answered));
    assert_eq!(answered.load(Ordering::SeqCst), 0, "nothing is in force yet");

    let claim = store.claim_gateway(GW, "r1", 1, lease).unwrap().unwrap();
    assert_eq!(claim.target_version, v2);
    assert_eq!(
        r.reconcile_claimed(&claim, 1),
        Outcome::Applied {
            version: v2,
            applied: true
        }
    );
    assert_eq!(answered.load(Ordering::SeqCst), 2, "both versions up to the target");
    assert_eq!(plane.sim.route_count(GW), 2);
    assert_eq!(applied(&store), v2);
    let v3 = store.commit(spec(routes(3)), Some(0));
    r.when_in_force(GW, v3, waiter(&answered));
    assert_eq!(answered.load(Ordering::SeqCst), 2, "not a later version");

    // A waiter for a version already in force is answered at once.
    r.when_in_force(GW, v1, waiter(&answered));
    assert_eq!(answered.load(Ordering::SeqCst), 3);
    let report = r.run_pass(2);
    assert_eq!(
        answered.load(Ordering::SeqCst),
        4,
        "the later version by the next pass: {report:?}"
    );
}

#[test]
fn a_waiter_on_a_gateway_another_owner_holds_is_answered_by_the_pass_after_it_or_by_the_bound() {
    let store = Arc::new(MemoryReconcileStore::new());
    let plane = Arc::new(TestPlane::default());
    let mut cfg = config("a");
    cfg.in_force_wait = Duration::from_millis(500);
    let a = Reconciler::new(store.clone(), plane.clone(), cfg);
    let lease = a.config().lease.as_millis() as i64;
    let v1 = store.commit(spec(routes(1)), Some(0));
    let answered = Arc::new(AtomicUsize::new(0));

    // B holds the claim: A's pass cannot put the version in force, and does not answer.
    let claim_b = store.claim_gateway(GW, "b", crate::now_ms(), lease).unwrap().unwrap();
    a.when_in_force(GW, v1, waiter(&answered));
    a.run_pass(crate::now_ms());
    assert_eq!(
        answered.load(Ordering::SeqCst),
        0,
        "a pass that could not claim answers nobody"
    );

    // B gives up; A's next pass applies and answers.
    store.release(&claim_b).unwrap();
    a.run_pass(crate::now_ms());
    assert_eq!(answered.load(Ordering::SeqCst), 1);

    // Held again by B: the bound answers the waiter anyway.
    let v2 = store.commit(spec(routes(2)), Some(0));
    let _claim_b = store.claim_gateway(GW, "b", crate::now_ms(), lease).unwrap().unwrap();
    a.when_in_force(GW, v2, waiter(&answered));
    let report = a.run_pass(crate::now_ms());
    assert_eq!(answered.load(Ordering::SeqCst), 1);
    assert!(
        report.next_wake_ms.is_some(),
        "a pass with waiters left wakes again by the bound"
    );
    std::thread::sleep(Duration::from_millis(600));
    a.run_pass(crate::now_ms());
    assert_eq!(answered.load(Ordering::SeqCst), 2, "answered after the bound");
}

#[test]
fn a_failed_attempt_answers_its_waiters() {
    let (store, plane, r) = setup(TestPlane::default());
    plane.sim.inject_failures(SimFault {
        after_routes: 0,
        times: 1,
    });
    let v1 = store.commit(spec(routes(1)), Some(0));
    let answered = Arc::new(AtomicUsize::new(0));
    r.when_in_force(GW, v1, waiter(&answered));
    let report = r.run_pass(1);
    assert!(
        matches!(report.outcomes[0].1, Outcome::Failed { .. }),
        "{:?}",
        report.outcomes
    );
    assert_eq!(
        answered.load(Ordering::SeqCst),
        1,
        "answered: the failure is recorded and retried"
    );
}

#[test]
fn drift_of_a_per_process_data_plane_is_repaired_without_a_claim() {
    let (store, replicas) = replicas(true, &["a"]);
    let [(plane, r)] = &replicas[..] else { unreachable!() };
    store.commit(spec(routes(3)), Some(0));
    r.run_pass(0);
    assert!(plane.sim.inject_drift(GW, 2));
    // Another owner holds the gateway: the repair of this process's own copy needs no claim.
    store.claim_gateway(GW, "x", 1, 60_000).unwrap().expect("free");
    let report = r.run_pass(1);
    assert_eq!(
        report.outcomes,
        vec![(GW.to_string(), Outcome::Mirrored { version: 1 })]
    );
    assert_eq!(plane.sim.route_count(GW), 3);
    let m = r.metrics().snapshot();
    assert_eq!(
        (m.drift_repairs, m.applied),
        (1, 1),
        "repaired, recorded only once (the change)"
    );
    assert_eq!(store.status(GW).unwrap().applied_history, vec![1]);
}

#[test]
fn a_claim_follows_the_versions_requests_wait_for_and_records_once() {
    let (store, plane, r) = setup(TestPlane::default());
    let lease = r.config().lease.as_millis() as i64;
    let v1 = store.commit(spec(routes(1)), Some(0));
    let claim = store.claim_gateway(GW, "r1", 1, lease).unwrap().unwrap();
    assert_eq!(claim.target_version, v1);
    // Two more changes committed while the claim is held; their requests wait.
    let v2 = store.commit(spec(routes(2)), Some(0));
    let v3 = store.commit(spec(routes(3)), Some(0));
    let answered = Arc::new(AtomicUsize::new(0));
    for v in [v1, v2, v3] {
        r.when_in_force(GW, v, waiter(&answered));
    }
    assert_eq!(
        r.reconcile_claimed(&claim, 1),
        Outcome::Applied {
            version: v3,
            applied: true
        }
    );
    assert_eq!(answered.load(Ordering::SeqCst), 3);
    assert_eq!(plane.sim.route_count(GW), 3);
    assert_eq!(applied(&store), v3);
    assert_eq!(
        store.status(GW).unwrap().applied_history,
        vec![v3],
        "one record for the three versions"
    );
    assert_eq!(
        *plane.applied_changes.lock().unwrap(),
        vec![v3],
        "the follow-up applies only the difference"
    );
}

/// A version its own transaction recorded as applied is put in force from its changes when the
/// data plane holds the version before; otherwise (a failed apply, a data plane that lags) as a
/// mirror would, off the calling thread; `done` runs either way.
#[test]
fn a_version_recorded_at_once_is_put_in_force_from_its_changes_or_as_a_mirror() {
    let (store, plane, r) = setup(TestPlane {
        per_process: true,
        ..TestPlane::default()
    });
    let r = Arc::new(r);
    store.commit(spec(routes(2)), Some(0));
    r.run_pass(0);
    assert_eq!(applied(&store), 1);
    let answered = Arc::new(AtomicUsize::new(0));
    let changes = |from: i64, id: u64| SpecChanges {
        gateway_id: GW.into(),
        from_version: from,
        version: from + 1,
        upserts: vec![route(id, &format!("10.0.{id}.0/24"), "vco-b")],
        removed: vec![1],
        connections: None,
    };
    // In sync at the version before: applied from the changes, on this thread.
    let v2 = store.commit_recorded(spec(vec![
        route(2, "10.0.2.0/24", "vco-a"),
        route(3, "10.0.3.0/24", "vco-b"),
    ]));
    r.put_recorded_in_force_inline(changes(1, 3), waiter(&answered));
    assert_eq!(answered.load(Ordering::SeqCst), 1);
    assert_eq!(held(&plane), Some((Some(v2), true)));
    assert_eq!(plane.chosen("10.0.3.9").as_deref(), Some("vco-b"));
    assert_eq!(plane.chosen("10.0.1.9"), None);
    assert_eq!(*plane.applied_changes.lock().unwrap(), vec![v2]);

    // The apply fails part-way: the recorded version is put in force in full, off this thread.
    let v3 = store.commit_recorded(spec(vec![
        route(2, "10.0.2.0/24", "vco-a"),
        route(4, "10.0.4.0/24", "vco-b"),
    ]));
    plane.sim.inject_failures(SimFault {
        after_routes: 0,
        times: 1,
    });
    r.put_recorded_in_force_inline(changes(2, 4), waiter(&answered));
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "not answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(held(&plane), Some((Some(v3), true)));
    assert_eq!(plane.chosen("10.0.4.9").as_deref(), Some("vco-b"));
    assert_eq!(plane.chosen("10.0.3.9"), None);
    assert_eq!(
        *plane.applied_versions.lock().unwrap().last().unwrap(),
        v3,
        "a full apply of the recorded version"
    );

    // Changes from a version the data plane does not hold (it lags): the same full put.
    let v4 = store.commit_recorded(spec(vec![route(5, "10.0.5.0/24", "vco-a")]));
    let v5 = store.commit_recorded(spec(vec![route(6, "10.0.6.0/24", "vco-a")]));
    assert_eq!(v5, v4 + 1);
    r.put_recorded_in_force_inline(changes(v4, 6), waiter(&answered));
    while answered.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "not answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(held(&plane), Some((Some(v5), true)));
    assert_eq!(plane.chosen("10.0.6.9").as_deref(), Some("vco-a"));
    assert_eq!(plane.chosen("10.0.5.9"), None);
    let status = store.status(GW).unwrap();
    assert_eq!(
        (status.desired_version, status.applied_version, status.pending_tasks),
        (v5, v5, 0)
    );
    assert_eq!(status.claimed_by, None, "no claim taken");
}

#[test]
fn a_version_recorded_at_once_with_its_whole_spec_is_put_in_force_on_this_thread() {
    let (store, plane, r) = setup(TestPlane {
        per_process: true,
        ..TestPlane::default()
    });
    let r = Arc::new(r);
    store.commit(spec(routes(2)), Some(0));
    r.run_pass(0);
    // Another replica recorded two versions this data plane has not followed; this
    // replica's request records the third with the whole spec read in its transaction.
    store.commit_recorded(spec(vec![route(7, "10.0.7.0/24", "vco-a")]));
    let v = store.commit_recorded(spec(vec![
        route(7, "10.0.7.0/24", "vco-a"),
        route(8, "10.0.8.0/24", "vco-b"),
    ]));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut whole = spec(vec![route(7, "10.0.7.0/24", "vco-a"), route(8, "10.0.8.0/24", "vco-b")]);
    whole.version = v;
    r.put_recorded_spec_in_force_inline(whole, waiter(&answered));
    assert_eq!(answered.load(Ordering::SeqCst), 1, "answered on this thread");
    assert_eq!(held(&plane), Some((Some(v), true)));
    assert_eq!(plane.chosen("10.0.8.9").as_deref(), Some("vco-b"));
    assert_eq!(plane.chosen("10.0.1.9"), None, "the older routes are gone");

    // The apply fails: the recorded version is put in force as a mirror would, off this thread.
    let v2 = store.commit_recorded(spec(vec![route(9, "10.0.9.0/24", "vco-a")]));
    plane.sim.inject_failures(SimFault {
        after_routes: 0,
        times: 1,
    });
    let mut whole = spec(vec![route(9, "10.0.9.0/24", "vco-a")]);
    whole.version = v2;
    r.put_recorded_spec_in_force_inline(whole, waiter(&answered));
    let deadline = Instant::now() + Duration::from_secs(10);
    while answered.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "not answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(held(&plane), Some((Some(v2), true)));
    assert_eq!(plane.chosen("10.0.9.9").as_deref(), Some("vco-a"));
    assert_eq!(plane.chosen("10.0.8.9"), None);
}
