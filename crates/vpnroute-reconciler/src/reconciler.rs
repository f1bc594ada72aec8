//! [`Reconciler`]: one pass claims every gateway with work due, converges its data plane to
//! the target version and records the outcome; [`Reconciler::run`] repeats passes when woken
//! (a commit, a data-plane event, the store's commit generation moving) and periodically
//! (drift repair).
//!
//! Mirroring: several replicas share one store, each with its own data plane. The replica
//! holding a gateway's claim applies a change to its data plane and records it; when the data
//! plane is per-process ([`DataPlane::per_process`], the `sim`), every other replica sees the
//! store's generation move ([`ReconcileStore::generation`], polled every
//! [`ReconcilerConfig::feed_poll`]) and puts the recorded version into its own data plane —
//! without a claim and without recording anything, since the version is recorded already
//! and its data plane is no one else's. A shared data plane (`linux`: the host's kernel) is
//! never mirrored: it changes only under a claim, so one replica programs it at a time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use vpnroute_dataplane::{DataPlane, DataPlaneError, DataPlaneEvent, GatewaySpec, Observed, SpecChanges};

use crate::backoff::Backoff;
use crate::store::{Claim, ReconcileStore, StoreFailure};

/// Milliseconds since the Unix epoch (the store's clock unit).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// How a reconciler claims, retries and checks.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Claim owner id: unique per reconciler instance (replicas must not share one).
    pub owner: String,
    /// How long a claim holds before another owner may take the gateway over.
    pub lease: Duration,
    /// How often every gateway is observed and repaired when out of sync.
    pub drift_interval: Duration,
    /// The longest [`Reconciler::run`] sleeps between passes: the store may change without a
    /// wake-up (another process advancing a task, another replica's commit).
    pub poll_interval: Duration,
    pub backoff: Backoff,
    /// Claims one pass works through at most (the next pass follows at once).
    pub max_claims_per_pass: usize,
    /// How often [`Reconciler::run`] reads the store's commit generation (a cheap, local
    /// read) to notice other replicas' commits and mirror them (per-process data planes).
    pub feed_poll: Duration,
    /// The longest a request waits for its version to be in force here (see
    /// [`Reconciler::when_in_force`]) before it is answered anyway: the change is committed
    /// and comes into force with a later pass (another replica holding the gateway's claim,
    /// say).
    pub in_force_wait: Duration,
}

/// Gateways one mirroring pass puts in force from which the next waits [`BUSY_MIRROR_GAP`]
/// (see `Reconciler::mirror`).
pub const BUSY_MIRROR: usize = 8;
/// The least time between two mirroring passes after a busy one.
pub const BUSY_MIRROR_GAP: Duration = Duration::from_millis(200);
/// Gateways whose specs one read of a mirroring pass fetches at most
/// ([`ReconcileStore::load_specs`]: one transaction for them, not one each).
const MIRROR_READ: usize = 32;

impl ReconcilerConfig {
    /// Defaults with a given owner id.
    pub fn new(owner: impl Into<String>) -> Self {
        ReconcilerConfig {
            owner: owner.into(),
            lease: Duration::from_secs(30),
            drift_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            backoff: Backoff::default(),
            max_claims_per_pass: 1024,
            feed_poll: Duration::from_millis(50),
            in_force_wait: Duration::from_secs(10),
        }
    }
}

/// Counters for `/metrics`, monotonic over the reconciler's life.
#[derive(Debug, Default)]
pub struct ReconcileMetrics {
    pub passes: AtomicU64,
    /// Versions recorded as in force.
    pub applied: AtomicU64,
    /// Failed reconcile attempts (data plane refused, read-back out of sync).
    pub failures: AtomicU64,
    /// Records refused because the claim was taken over or a newer version was recorded.
    pub lost_claims: AtomicU64,
    /// Gateways found out of sync by a check (event or periodic) and reconciled.
    pub drift_repairs: AtomicU64,
    /// Gateways removed from the data plane (deleted from the store).
    pub removed: AtomicU64,
    /// Recorded versions put into this (per-process) data plane without a claim: another
    /// replica's work mirrored, or this process's data plane refilled after a start.
    pub mirrored: AtomicU64,
    /// Store calls that failed.
    pub store_errors: AtomicU64,
}

/// A copy of [`ReconcileMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub passes: u64,
    pub applied: u64,
    pub failures: u64,
    pub lost_claims: u64,
    pub drift_repairs: u64,
    pub removed: u64,
    pub mirrored: u64,
    pub store_errors: u64,
}

impl ReconcileMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            passes: get(&self.passes),
            applied: get(&self.applied),
            failures: get(&self.failures),
            lost_claims: get(&self.lost_claims),
            drift_repairs: get(&self.drift_repairs),
            removed: get(&self.removed),
            mirrored: get(&self.mirrored),
            store_errors: get(&self.store_errors),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What reconciling one claimed gateway came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target version is in force and recorded; `applied` is false when the data plane
    /// already held it (only the record was missing, e.g. after a crash between the two).
    Applied { version: i64, applied: bool },
    /// The data plane already held the recorded version in sync: nothing to do.
    InForce { version: i64 },
    /// Recorded as failed; retried from `next_retry_ms`.
    Failed {
        error: String,
        attempts: u32,
        next_retry_ms: i64,
    },
    /// The claim was lost (lease ran out and another owner took over): nothing recorded.
    Lost,
    /// The gateway no longer exists: removed from the data plane.
    Removed,
    /// A per-process data plane was brought to the recorded `version` without a claim
    /// (nothing recorded: the version was recorded already).
    Mirrored { version: i64 },
    /// A store call failed: nothing recorded, the next pass tries again.
    StoreError(String),
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Each gateway reconciled, in order, with its outcome.
    pub outcomes: Vec<(String, Outcome)>,
    /// When the next pass should run at the latest (ms since the epoch).
    pub next_wake_ms: Option<i64>,
}

/// Run once a pass has ended (see [`Reconciler::after_next_pass`]).
pub type AfterPass = Box<dyn FnOnce() + Send>;

/// Later versions one claim follows at most (see `Reconciler::converge_following`).
const MAX_FOLLOWS: usize = 16;

/// A request waiting for a version of a gateway (see [`Reconciler::when_in_force`]).
struct InForceWaiter {
    version: i64,
    since_ms: i64,
    done: AfterPass,
}

/// Converges data-plane state to the store's desired versions (see the [crate docs](crate)).
pub struct Reconciler {
    store: Arc<dyn ReconcileStore>,
    data_plane: Arc<dyn DataPlane>,
    config: ReconcilerConfig,
    metrics: ReconcileMetrics,
    wake: Arc<Notify>,
    /// Callbacks to run once the next pass has ended (see [`Reconciler::after_next_pass`]).
    after_pass: Mutex<Vec<AfterPass>>,
    /// Requests waiting for a version of a gateway, by gateway (see
    /// [`Reconciler::when_in_force`]).
    in_force_waiters: Mutex<HashMap<String, Vec<InForceWaiter>>>,
    /// Set by the first pass (which ends the claims of a previous instance of this owner).
    started: AtomicBool,
    /// When the next periodic check of every gateway is due (0: on the first pass).
    next_full_check_ms: Mutex<i64>,
    /// What the last mirroring saw (see the [module docs](self)).
    mirror: Mutex<MirrorState>,
    /// The generation the last complete mirroring started at (`u64::MAX`: none yet), read
    /// by [`Reconciler::run`]'s poll without taking `mirror`.
    mirrored_generation: AtomicU64,
    /// No mirroring before this time (ms): set after a pass that mirrored many gateways.
    mirror_gap_until_ms: AtomicI64,
    /// Passes run one at a time (the loop, and callers running one themselves).
    pass: Mutex<()>,
}

/// The recorded versions the last mirroring put in force (or found in force).
#[derive(Default)]
struct MirrorState {
    versions: HashMap<String, i64>,
}

/// Where converging one claimed gateway ended.
enum Converged {
    /// `version` is in force (`applied`: by this attempt): record it.
    Record { version: i64, applied: bool },
    /// Nothing to record.
    Done(Outcome),
}

/// Why an attempt failed, before it is recorded.
enum Failure {
    Store(StoreFailure),
    DataPlane(String),
}

impl From<StoreFailure> for Failure {
    fn from(e: StoreFailure) -> Self {
        Failure::Store(e)
    }
}

impl From<DataPlaneError> for Failure {
    fn from(e: DataPlaneError) -> Self {
        Failure::DataPlane(e.to_string())
    }
}

fn in_force(observed: &Option<Observed>, version: i64) -> bool {
    matches!(observed, Some(o) if o.in_sync && o.applied_version == Some(version))
}

/// Whether a per-process data plane lags the recorded `version` of a gateway: it holds an
/// older version (or none, for a gateway past its first version), or holds it out of sync.
/// Never backwards: a data plane ahead of the record is left to the claims.
fn lags(observed: &Option<Observed>, version: i64) -> bool {
    let held = observed.as_ref().and_then(|o| o.applied_version);
    !(in_force(observed, version) || held.is_some_and(|h| h > version) || (held.is_none() && version == 0))
}

impl Reconciler {
    /// A reconciler; subscribes to the data plane's events so that they wake it.
    pub fn new(store: Arc<dyn ReconcileStore>, data_plane: Arc<dyn DataPlane>, config: ReconcilerConfig) -> Self {
        let wake = Arc::new(Notify::new());
        let waker = wake.clone();
        data_plane.subscribe(Arc::new(move || waker.notify_one()));
        Reconciler {
            store,
            data_plane,
            config,
            metrics: ReconcileMetrics::default(),
            wake,
            after_pass: Mutex::new(Vec::new()),
            in_force_waiters: Mutex::new(HashMap::new()),
            started: AtomicBool::new(false),
            next_full_check_ms: Mutex::new(0),
            mirror: Mutex::new(MirrorState::default()),
            mirrored_generation: AtomicU64::new(u64::MAX),
            mirror_gap_until_ms: AtomicI64::new(0),
            pass: Mutex::new(()),
        }
    }

    pub fn data_plane(&self) -> &Arc<dyn DataPlane> {
        &self.data_plane
    }

    pub fn metrics(&self) -> &ReconcileMetrics {
        &self.metrics
    }

    pub fn config(&self) -> &ReconcilerConfig {
        &self.config
    }

    /// Ask [`run`](Self::run) for a pass now (after a commit that enqueued a task).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Make the next pass check every gateway (drift repair) whatever the interval.
    pub fn check_all_on_next_pass(&self) {
        *self.next_full_check_ms.lock().unwrap_or_else(|p| p.into_inner()) = 0;
    }

    /// Run `done` once a pass that starts after this call has ended (whatever it achieved),
    /// and wake [`run`](Self::run) for that pass. A request whose change is due at once
    /// answers from `done`: its change is then in force unless the data plane failed (the
    /// failure is recorded and retried), and many such requests share one pass.
    pub fn after_next_pass(&self, done: AfterPass) {
        self.after_pass.lock().unwrap_or_else(|p| p.into_inner()).push(done);
        self.wake();
    }

    /// Run `done` once this reconciler has `version` of `gateway_id` in force in its data plane
    /// (or a later one), once an attempt to put it in force failed (the failure is recorded and
    /// retried), once the gateway is gone, or after [`ReconcilerConfig::in_force_wait`] at
    /// the latest. A request whose change is due at once answers from `done`; unlike
    /// [`after_next_pass`](Self::after_next_pass) it is not answered by a pass that could not
    /// claim the gateway. Does not wake the reconciler: the caller reconciles its claim
    /// ([`reconcile_claimed`](Self::reconcile_claimed)) or calls [`wake`](Self::wake).
    pub fn when_in_force(&self, gateway_id: &str, version: i64, done: AfterPass) {
        self.when_claimed_in_force(gateway_id, version, done);
        // It may be in force already (another request's pass, or this replica's repair).
        if let Ok(Some(o)) = self.data_plane.observe(gateway_id) {
            if let (true, Some(v)) = (o.in_sync, o.applied_version) {
                self.settle_waiters(gateway_id, Some(v));
            }
        }
    }

    /// [`when_in_force`](Self::when_in_force) for a gateway whose claim the caller holds and
    /// reconciles next ([`reconcile_claimed`](Self::reconcile_claimed)): that reconcile answers,
    /// so the data plane is not read now.
    pub fn when_claimed_in_force(&self, gateway_id: &str, version: i64, done: AfterPass) {
        self.lock_waiters()
            .entry(gateway_id.to_string())
            .or_default()
            .push(InForceWaiter {
                version,
                since_ms: now_ms(),
                done,
            });
    }

    /// Reconcile a claim taken elsewhere (in the transaction of the request that made the
    /// change, so that the request is answered without waiting for a pass), then, if requests
    /// still wait (for a version the claim held the gateway against), wake [`run`](Self::run).
    /// Its record may wait briefly to share a commit with the next write
    /// ([`ReconcileStore::record_applied_deferred`]): its requests are answered already.
    pub fn reconcile_claimed(&self, claim: &Claim, now_ms: i64) -> Outcome {
        let outcome = self.reconcile_claim_as(claim, now_ms, true);
        if !self.lock_waiters().is_empty() {
            self.wake();
        }
        outcome
    }

    /// [`reconcile_claimed`](Self::reconcile_claimed) on the thread that committed the change
    /// (the store's writer), for a data plane that [applies inline](DataPlane::applies_inline):
    /// nothing here waits for the store's writer. The record is handed to the store without
    /// waiting; a failure is settled on a thread of its own.
    ///
    /// `changes`: the claim's changes from its applied to its target version, if the caller
    /// read them already (in the transaction that committed the target version).
    pub fn reconcile_claimed_inline(self: &Arc<Self>, claim: &Claim, changes: Option<SpecChanges>, now_ms: i64) {
        let mut claim = claim.clone();
        let converged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.converge_following_from(&mut claim, changes)
        }))
        .unwrap_or_else(|_| Err(Failure::DataPlane("the data plane panicked".into())));
        match converged {
            Ok(Converged::Record { version, applied }) => {
                let this = self.clone();
                let recorded_claim = claim.clone();
                self.store.record_applied_then(
                    &claim,
                    version,
                    now_ms,
                    Box::new(move |recorded| {
                        match recorded {
                            Ok(recorded) => {
                                this.recorded(&recorded_claim, version, applied, recorded);
                            }
                            // Ending the claim waits for the store: not on its writer thread.
                            Err(e) => this.off_thread(move |this| {
                                this.unrecorded(&recorded_claim, e);
                            }),
                        }
                        if !this.lock_waiters().is_empty() {
                            this.wake();
                        }
                    }),
                );
            }
            other => self.off_thread(move |this| {
                this.settle(&claim, other, now_ms);
                this.wake();
            }),
        }
    }

    /// Like [`Reconciler::put_recorded_in_force_inline`], from the whole `spec` at the
    /// recorded version (read by the request's transaction because this data plane did not
    /// hold the version before).
    pub fn put_recorded_spec_in_force_inline(self: &Arc<Self>, spec: GatewaySpec, done: AfterPass) {
        let (gateway_id, version) = (spec.gateway_id.clone(), spec.version);
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.data_plane.apply(&spec)));
        if let Ok(Ok(())) = applied {
            bump(&self.metrics.applied);
            self.settle_waiters(&gateway_id, Some(version));
            return done();
        }
        self.put_recorded_in_force_off_thread(gateway_id, version, done);
    }

    /// Put in force here a version that the transaction which made it also recorded as
    /// applied (a change due at once on a per-process data plane: the store's
    /// `WriteTx::change_at_once`), on the thread that committed it: `changes` lead from the
    /// version before it. When the data plane does not hold that version in sync (another
    /// apply got there first, a mirror lags, an apply failed), the recorded version is put in
    /// force as a mirror would, on a thread of its own. `done` runs once it is in force, or
    /// once that attempt failed (logged and counted; the drift check repairs it later).
    pub fn put_recorded_in_force_inline(self: &Arc<Self>, changes: SpecChanges, done: AfterPass) {
        let (gateway_id, version) = (changes.gateway_id.clone(), changes.version);
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.data_plane.apply_changes(&changes)));
        if let Ok(Ok(true)) = applied {
            bump(&self.metrics.applied);
            self.settle_waiters(&gateway_id, Some(version));
            return done();
        }
        self.put_recorded_in_force_off_thread(gateway_id, version, done);
    }

    /// The recorded `version` of a gateway put in force as a mirror would, on a thread of its
    /// own (an inline apply of it did not succeed); then `done`.
    fn put_recorded_in_force_off_thread(self: &Arc<Self>, gateway_id: String, version: i64, done: AfterPass) {
        self.off_thread(move |this| {
            if let Err(e) = this.mirror_one(&gateway_id, version) {
                bump(&this.metrics.failures);
                let error = match e {
                    Failure::Store(e) => e.0,
                    Failure::DataPlane(e) => e,
                };
                tracing::warn!(gateway = %gateway_id, version, error = %error, "putting a version recorded at once in force failed");
                this.check_all_on_next_pass();
                this.wake();
            }
            done();
        });
    }

    /// Run `f` on a thread of its own (store calls that must not run on the writer thread).
    fn off_thread(self: &Arc<Self>, f: impl FnOnce(&Reconciler) + Send + 'static) {
        let this = self.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("reconcile".into())
            .spawn(move || f(&this))
        {
            // The claim's lease runs out and a pass takes the gateway over.
            tracing::error!(error = %e, "spawning a reconcile thread");
        }
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<InForceWaiter>>> {
        self.in_force_waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer the waiters of a gateway up to `version` (`None`: all of them).
    fn settle_waiters(&self, gateway_id: &str, version: Option<i64>) {
        let ready: Vec<InForceWaiter> = {
            let mut waiters = self.lock_waiters();
            let Some(list) = waiters.get_mut(gateway_id) else {
                return;
            };
            let (ready, waiting) = std::mem::take(list)
                .into_iter()
                .partition(|w| version.is_none_or(|v| w.version <= v));
            *list = waiting;
            if list.is_empty() {
                waiters.remove(gateway_id);
            }
            ready
        };
        ready.into_iter().for_each(|w| (w.done)());
    }

    /// Answer the waiters that have waited [`ReconcilerConfig::in_force_wait`].
    fn settle_overdue_waiters(&self, now_ms: i64) {
        let bound = self.config.in_force_wait.as_millis() as i64;
        let overdue: Vec<InForceWaiter> = {
            let mut waiters = self.lock_waiters();
            let mut overdue = Vec::new();
            waiters.retain(|gateway_id, list| {
                let (late, waiting): (Vec<_>, Vec<_>) =
                    std::mem::take(list).into_iter().partition(|w| now_ms - w.since_ms >= bound);
                if !late.is_empty() {
                    tracing::warn!(gateway = %gateway_id, waiting = late.len(), "version not in force here in time: answered anyway");
                }
                overdue.extend(late);
                *list = waiting;
                !list.is_empty()
            });
            overdue
        };
        overdue.into_iter().for_each(|w| (w.done)());
    }

    /// [`run_pass`](Self::run_pass), then the callbacks registered before it started (also
    /// when the pass panicked: their requests are answered either way).
    pub fn run_pass_and_callbacks(&self, now_ms: i64) -> PassReport {
        let waiting = std::mem::take(&mut *self.after_pass.lock().unwrap_or_else(|p| p.into_inner()));
        let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_pass(now_ms)));
        waiting.into_iter().for_each(|done| done());
        report.unwrap_or_else(|_| {
            tracing::error!("reconcile pass panicked");
            PassReport {
                outcomes: Vec::new(),
                next_wake_ms: Some(now_ms + self.config.backoff.base.as_millis() as i64),
            }
        })
    }

    /// Passes until the task is dropped: after each one, sleep until woken, until the store's
    /// next due time, or for the poll interval, whichever comes first.
    pub async fn run(self: Arc<Self>) {
        loop {
            let this = self.clone();
            let next = tokio::task::spawn_blocking(move || this.run_pass_and_callbacks(now_ms()).next_wake_ms)
                .await
                .unwrap_or(None);
            let max = self.config.poll_interval.min(self.config.drift_interval).as_millis() as i64;
            let sleep_ms = next.map_or(max, |t| (t - now_ms()).clamp(1, max.max(1)));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                _ = self.generation_moved() => {}
            }
        }
    }

    /// Resolves once the store's generation differs from the one last mirrored (never for a
    /// shared data plane, which is not mirrored).
    async fn generation_moved(&self) {
        if !self.data_plane.per_process() {
            return std::future::pending().await;
        }
        let poll = self.config.feed_poll.max(Duration::from_millis(1));
        loop {
            tokio::time::sleep(poll).await;
            let mirrored = self.mirrored_generation.load(Ordering::Acquire);
            if self.store.generation().is_none_or(|g| g != mirrored) {
                // After a busy mirroring, not before its gap has passed (see `mirror`).
                let gap = self.mirror_gap_until_ms.load(Ordering::Acquire) - now_ms();
                if gap > 0 {
                    tokio::time::sleep(Duration::from_millis(gap as u64)).await;
                }
                return;
            }
        }
    }

    /// One pass at `now_ms`: drain data-plane events, reconcile every due gateway, then check
    /// the gateways events named (and every gateway when the drift interval has passed) and
    /// repair those out of sync. Blocking (store and data-plane calls).
    pub fn run_pass(&self, now_ms: i64) -> PassReport {
        let _one_at_a_time = self.pass.lock().unwrap_or_else(|p| p.into_inner());
        bump(&self.metrics.passes);
        let store_errors_before = self.metrics.store_errors.load(Ordering::Relaxed);
        let mut report = PassReport::default();
        let mut to_check: BTreeSet<String> = BTreeSet::new();
        for event in self.data_plane.drain_events() {
            match event {
                DataPlaneEvent::Drift { gateway_id } | DataPlaneEvent::Tunnel { gateway_id, .. } => {
                    to_check.insert(gateway_id);
                }
            }
        }
        if !self.started.swap(true, Ordering::SeqCst) {
            // A reconciler starting with this owner id replaces the instance that had it.
            match self.store.release_owner(&self.config.owner) {
                Ok(0) => {}
                Ok(n) => tracing::info!(claims = n, owner = %self.config.owner, "claims of a previous instance ended"),
                Err(e) => self.store_failed("ending a previous instance's claims", &e),
            }
        }
        let max = self.config.max_claims_per_pass.max(1);
        let claims = match self
            .store
            .claim_due_many(&self.config.owner, now_ms, self.lease_ms(), max)
        {
            Ok(claims) => claims,
            Err(e) => {
                self.store_failed("claiming due gateways", &e);
                Vec::new()
            }
        };
        // More may be due than one pass takes: go on at once.
        let exhausted = claims.len() >= max;
        let reconciled: HashSet<String> = claims.iter().map(|c| c.gateway_id.clone()).collect();
        self.reconcile_claims(claims, now_ms, &mut report);
        self.mirror(&reconciled, &mut report);
        let full_check = {
            let mut next = self.next_full_check_ms.lock().unwrap_or_else(|p| p.into_inner());
            let due = now_ms >= *next;
            if due {
                *next = now_ms + self.config.drift_interval.as_millis() as i64;
            }
            due
        };
        self.check(full_check, &to_check, &reconciled, now_ms, &mut report);
        let next_check = *self.next_full_check_ms.lock().unwrap_or_else(|p| p.into_inner());
        let next_due = match self.store.next_wake(now_ms) {
            Ok(t) => t,
            Err(e) => {
                self.store_failed("reading the next due time", &e);
                Some(now_ms + self.config.backoff.base.as_millis() as i64)
            }
        };
        let mut soonest = [next_due, Some(next_check)].into_iter().flatten().min();
        if self.metrics.store_errors.load(Ordering::Relaxed) > store_errors_before {
            // The store is in trouble: what it says is due stays due; do not spin on it.
            soonest = soonest.map(|t| t.max(now_ms + self.config.backoff.base.as_millis() as i64));
        }
        self.settle_overdue_waiters(now_ms);
        if !self.lock_waiters().is_empty() {
            let bound = self.config.in_force_wait.as_millis() as i64;
            soonest = Some(soonest.map_or(now_ms + bound, |t| t.min(now_ms + bound)));
        }
        report.next_wake_ms = soonest;
        if exhausted {
            report.next_wake_ms = Some(now_ms);
        }
        report
    }

    /// Per-process data plane: once the store's generation has moved since the last time, put
    /// into the data plane every recorded version it does not hold (another replica applied
    /// and recorded it, or this process has just started) and remove the gateways the store
    /// no longer has. No claim, no record: the versions are recorded already, and only this
    /// process sees its data plane. A gateway whose data plane is ahead of the record (an
    /// apply of this process not recorded yet) is left to the claims; `skip`: gateways this
    /// pass has just reconciled under a claim.
    ///
    /// A pass that mirrored [`BUSY_MIRROR`] gateways or more (other replicas changing many
    /// gateways at once) leaves [`BUSY_MIRROR_GAP`] before the next one: each mirrored gateway
    /// costs a read of its whole spec, and under a stream of changes on every replica those
    /// reads took more of the shared cores than the changes themselves. Versions are then in
    /// force here within that gap plus one pass, instead of one feed poll plus one pass.
    fn mirror(&self, skip: &HashSet<String>, report: &mut PassReport) {
        if !self.data_plane.per_process() {
            return;
        }
        let generation = self.store.generation();
        if generation.is_some_and(|g| g == self.mirrored_generation.load(Ordering::Acquire)) {
            return;
        }
        let started_ms = now_ms();
        if started_ms < self.mirror_gap_until_ms.load(Ordering::Acquire) {
            return;
        }
        let outcomes_before = report.outcomes.len();
        let mut state = self.mirror.lock().unwrap_or_else(|p| p.into_inner());
        // Read after the generation: every commit up to it is in what this lists.
        let versions = match self.store.gateway_versions() {
            Ok(v) => v,
            Err(e) => return self.store_failed("listing gateways to mirror", &e),
        };
        let mut complete = true;
        let mut seen = HashMap::with_capacity(versions.len());
        let mut wanted = Vec::new();
        for gv in versions {
            let (id, version) = (gv.gateway_id, gv.applied_version);
            if skip.contains(&id) || state.versions.get(&id) == Some(&version) {
                seen.insert(id, version);
                continue;
            }
            match self.data_plane.observe(&id) {
                Ok(before) if !lags(&before, version) => {
                    seen.insert(id, version);
                }
                Ok(_) => wanted.push((id, version)),
                Err(e) => {
                    complete = false;
                    self.mirror_failed(&id, version, e.into());
                }
            }
        }
        // The specs of the gateways to mirror, read together ([`MIRROR_READ`] per read).
        for chunk in wanted.chunks(MIRROR_READ) {
            for ((id, version), spec) in chunk.iter().zip(self.store.load_specs(chunk)) {
                match spec
                    .map_err(Failure::from)
                    .and_then(|spec| self.mirror_spec(id, *version, spec))
                {
                    Ok(outcome) => {
                        seen.insert(id.clone(), *version);
                        if let Some(outcome) = outcome {
                            report.outcomes.push((id.clone(), outcome));
                        }
                    }
                    Err(failure) => {
                        complete = false;
                        self.mirror_failed(id, *version, failure);
                    }
                }
            }
        }
        complete &= self.remove_gone(|id| !seen.contains_key(id), report);
        state.versions = seen;
        let mirrored = report.outcomes[outcomes_before..]
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Mirrored { .. }))
            .count();
        let gap_ms = if mirrored >= BUSY_MIRROR {
            BUSY_MIRROR_GAP.as_millis() as i64
        } else {
            0
        };
        self.mirror_gap_until_ms.store(started_ms + gap_ms, Ordering::Release);
        let done = match (complete, generation) {
            (true, Some(g)) => g,
            _ => u64::MAX,
        };
        self.mirrored_generation.store(done, Ordering::Release);
    }

    fn mirror_failed(&self, gateway_id: &str, version: i64, failure: Failure) {
        match failure {
            Failure::Store(e) => self.store_failed("mirroring a gateway", &e),
            Failure::DataPlane(error) => {
                // Tried again when the generation next moves, and by the drift check.
                bump(&self.metrics.failures);
                tracing::warn!(gateway = %gateway_id, version, error = %error, "mirroring a recorded version failed");
            }
        }
    }

    /// Bring a per-process data plane to the recorded `version` of one gateway, if it holds
    /// an older one (or none); `None`: nothing to do.
    fn mirror_one(&self, gateway_id: &str, version: i64) -> Result<Option<Outcome>, Failure> {
        if !lags(&self.data_plane.observe(gateway_id)?, version) {
            return Ok(None);
        }
        let spec = self.store.load_specs(&[(gateway_id.to_string(), version)]).pop();
        let spec = spec.unwrap_or_else(|| Err(StoreFailure("no answer for the spec asked for".into())))?;
        self.mirror_spec(gateway_id, version, spec)
    }

    /// [`mirror_one`](Self::mirror_one) with the recorded version's spec read already. The
    /// full spec, never the difference: the store keeps the changes of a version only until
    /// it is applied, and a mirrored version is applied. The data plane is looked at again
    /// first: a claim of this process may have put a newer version in force since.
    fn mirror_spec(
        &self,
        gateway_id: &str,
        version: i64,
        spec: Option<GatewaySpec>,
    ) -> Result<Option<Outcome>, Failure> {
        // A newer recorded version read instead (`ReconcileStore::load_specs` may): that one.
        let version = spec.as_ref().map_or(version, |s| s.version.max(version));
        if !lags(&self.data_plane.observe(gateway_id)?, version) {
            return Ok(None);
        }
        if !self.apply_spec(gateway_id, version, spec)? {
            return Ok(Some(Outcome::Removed));
        }
        bump(&self.metrics.mirrored);
        tracing::debug!(gateway = %gateway_id, version, "recorded version mirrored");
        // A request on this replica whose change another replica put in force is answered.
        self.settle_waiters(gateway_id, Some(version));
        Ok(Some(Outcome::Mirrored { version }))
    }

    /// Apply `version` of a gateway to the data plane and read it back: the difference from
    /// `from` when the data plane holds `from` in sync and the store can tell it, else the
    /// full spec (`read_already`: the difference if the caller has read it). `false`: the gateway
    /// no longer exists (removed from the data plane).
    fn put_in_force(
        &self,
        gateway_id: &str,
        before: &Option<Observed>,
        from: i64,
        version: i64,
        read_already: Option<SpecChanges>,
    ) -> Result<bool, Failure> {
        let read_already =
            read_already.filter(|c| c.from_version == from && c.version == version && c.gateway_id == gateway_id);
        let incremental = from < version
            && in_force(before, from)
            && match read_already.map_or_else(|| self.store.load_changes(gateway_id, from, version), |c| Ok(Some(c)))? {
                Some(changes) => self.data_plane.apply_changes(&changes)?,
                None => false,
            };
        if !incremental {
            let spec = self.store.load_spec(gateway_id, version)?;
            return self.apply_spec(gateway_id, version, spec);
        }
        self.read_back(gateway_id, version)?;
        Ok(true)
    }

    /// Apply the full `spec` of a gateway at `version` and read it back; `None` (the gateway
    /// no longer exists): removed from the data plane, `false`.
    fn apply_spec(&self, gateway_id: &str, version: i64, spec: Option<GatewaySpec>) -> Result<bool, Failure> {
        let Some(spec) = spec else {
            self.data_plane.remove(gateway_id)?;
            bump(&self.metrics.removed);
            tracing::info!(gateway = %gateway_id, "gateway deleted: removed from the data plane");
            self.settle_waiters(gateway_id, None);
            return Ok(false);
        };
        if spec.version != version || spec.gateway_id != gateway_id {
            return Err(Failure::Store(StoreFailure(format!(
                "asked for {gateway_id} at version {version}, got {} at version {}",
                spec.gateway_id, spec.version
            ))));
        }
        self.data_plane.apply(&spec)?;
        self.read_back(gateway_id, version)?;
        Ok(true)
    }

    /// Whether the data plane holds `version` in sync after an apply of it.
    fn read_back(&self, gateway_id: &str, version: i64) -> Result<(), Failure> {
        let after = self.data_plane.observe(gateway_id)?;
        if !in_force(&after, version) {
            let seen = after.map(|o| (o.applied_version, o.in_sync));
            return Err(Failure::DataPlane(format!(
                "read-back after applying version {version} does not match: (applied version, in sync) = {seen:?}"
            )));
        }
        Ok(())
    }

    /// Observe gateways (all of them, or those named) and reconcile those whose data plane
    /// does not hold their applied version in sync; remove gateways the store no longer has.
    fn check(
        &self,
        full: bool,
        named: &BTreeSet<String>,
        skip: &HashSet<String>,
        now_ms: i64,
        report: &mut PassReport,
    ) {
        if !full && named.is_empty() {
            return;
        }
        let versions = match self.store.gateway_versions() {
            Ok(v) => v,
            Err(e) => return self.store_failed("listing gateways", &e),
        };
        let known: HashSet<&str> = versions.iter().map(|v| v.gateway_id.as_str()).collect();
        for gv in &versions {
            if skip.contains(&gv.gateway_id) || !(full || named.contains(&gv.gateway_id)) {
                continue;
            }
            let observed = self.data_plane.observe(&gv.gateway_id);
            let held = match &observed {
                Ok(o) => in_force(o, gv.applied_version) || (o.is_none() && gv.applied_version == 0),
                Err(_) => false,
            };
            if held {
                continue;
            }
            if self.data_plane.per_process() {
                // This process's own copy fell behind its record: put the recorded version
                // back without a claim. A data plane ahead of the record (or a local apply
                // that failed) goes on to a claim, which records it (or the failure).
                match self.mirror_one(&gv.gateway_id, gv.applied_version) {
                    Ok(Some(outcome)) => {
                        bump(&self.metrics.drift_repairs);
                        tracing::info!(gateway = %gv.gateway_id, applied_version = gv.applied_version, "data plane out of sync: recorded version put back");
                        report.outcomes.push((gv.gateway_id.clone(), outcome));
                        continue;
                    }
                    Ok(None) | Err(Failure::DataPlane(_)) => {}
                    Err(Failure::Store(e)) => {
                        self.store_failed("repairing a gateway", &e);
                        continue;
                    }
                }
            }
            let claim = match self
                .store
                .claim_gateway(&gv.gateway_id, &self.config.owner, now_ms, self.lease_ms())
            {
                Ok(Some(c)) => c,
                Ok(None) => continue, // another owner is on it, or it waits for a retry
                Err(e) => {
                    self.store_failed("claiming a gateway to repair", &e);
                    continue;
                }
            };
            tracing::info!(
                gateway = %gv.gateway_id,
                applied_version = gv.applied_version,
                observed = ?observed.as_ref().ok().and_then(|o| o.as_ref().map(|o| (o.applied_version, o.in_sync))),
                "data plane out of sync: repairing"
            );
            bump(&self.metrics.drift_repairs);
            let outcome = self.reconcile_claim(&claim, now_ms);
            report.outcomes.push((gv.gateway_id.clone(), outcome));
        }
        self.remove_gone(|id| !known.contains(&id) && (full || named.contains(id)), report);
    }

    /// Remove from the data plane the gateways it holds that `gone` names (the store no
    /// longer has them). Returns whether every removal (and the listing) succeeded.
    fn remove_gone(&self, gone: impl Fn(&str) -> bool, report: &mut PassReport) -> bool {
        let ids = match self.data_plane.gateways() {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "listing the data plane's gateways");
                return false;
            }
        };
        let mut all = true;
        for id in ids.into_iter().filter(|id| gone(id)) {
            match self.data_plane.remove(&id) {
                Ok(()) => {
                    tracing::info!(gateway = %id, "gateway no longer in the store: removed from the data plane");
                    bump(&self.metrics.removed);
                    report.outcomes.push((id, Outcome::Removed));
                }
                Err(e) => {
                    all = false;
                    tracing::warn!(gateway = %id, error = %e, "removing a deleted gateway");
                }
            }
        }
        all
    }

    /// Claim one gateway and reconcile it now (a change that must be in force before its
    /// request is answered). `None`: the gateway could not be claimed (unknown, held by
    /// another owner, or waiting for a retry).
    pub fn reconcile_now(&self, gateway_id: &str, now_ms: i64) -> Option<Outcome> {
        match self
            .store
            .claim_gateway(gateway_id, &self.config.owner, now_ms, self.lease_ms())
        {
            Ok(Some(claim)) => Some(self.reconcile_claim(&claim, now_ms)),
            Ok(None) => None,
            Err(e) => {
                self.store_failed("claiming a gateway", &e);
                Some(Outcome::StoreError(e.0))
            }
        }
    }

    /// Reconcile one claimed gateway to its target version and record the outcome; the
    /// claim ends either way.
    pub fn reconcile_claim(&self, claim: &Claim, now_ms: i64) -> Outcome {
        self.reconcile_claim_as(claim, now_ms, false)
    }

    fn reconcile_claim_as(&self, claim: &Claim, now_ms: i64, deferred_record: bool) -> Outcome {
        let mut claim = claim.clone();
        let claim = &mut claim;
        match self.converge_following(claim) {
            Ok(Converged::Record { version, applied }) => {
                let recorded = if deferred_record {
                    self.store.record_applied_deferred(claim, version, now_ms)
                } else {
                    self.store.record_applied(claim, version, now_ms)
                };
                match recorded {
                    Ok(recorded) => self.recorded(claim, version, applied, recorded),
                    Err(e) => self.unrecorded(claim, e),
                }
            }
            other => self.settle(claim, other, now_ms),
        }
    }

    /// [`reconcile_claim`](Self::reconcile_claim) for several claims, with the successes
    /// recorded in one store call.
    fn reconcile_claims(&self, claims: Vec<Claim>, now_ms: i64, report: &mut PassReport) {
        let mut records = Vec::new();
        for mut claim in claims {
            match self.converge_following(&mut claim) {
                Ok(Converged::Record { version, applied }) => records.push((claim, version, applied)),
                other => {
                    let outcome = self.settle(&claim, other, now_ms);
                    report.outcomes.push((claim.gateway_id, outcome));
                }
            }
        }
        if records.is_empty() {
            return;
        }
        let batch: Vec<(Claim, i64)> = records.iter().map(|(c, v, _)| (c.clone(), *v)).collect();
        match self.store.record_applied_many(&batch, now_ms) {
            Ok(recorded) if recorded.len() == records.len() => {
                for ((claim, version, applied), recorded) in records.into_iter().zip(recorded) {
                    let outcome = self.recorded(&claim, version, applied, recorded);
                    report.outcomes.push((claim.gateway_id, outcome));
                }
            }
            result => {
                let e = result
                    .err()
                    .unwrap_or_else(|| StoreFailure("one answer per record expected".into()));
                for (claim, _, _) in records {
                    let outcome = self.unrecorded(&claim, e.clone());
                    report.outcomes.push((claim.gateway_id, outcome));
                }
            }
        }
    }

    /// The outcome of a record of `version` for `claim`.
    fn recorded(&self, claim: &Claim, version: i64, applied: bool, recorded: bool) -> Outcome {
        if !recorded {
            bump(&self.metrics.lost_claims);
            tracing::warn!(gateway = %claim.gateway_id, version, "claim lost before recording: not recorded");
            return Outcome::Lost;
        }
        bump(&self.metrics.applied);
        tracing::debug!(gateway = %claim.gateway_id, version, applied, "version in force");
        Outcome::Applied { version, applied }
    }

    /// A record that failed in the store: nothing recorded, the claim ended.
    fn unrecorded(&self, claim: &Claim, e: StoreFailure) -> Outcome {
        self.store_failed("recording an applied version", &e);
        self.release(claim);
        Outcome::StoreError(e.0)
    }

    /// The outcome of a convergence that needs no record of an applied version.
    fn settle(&self, claim: &Claim, converged: Result<Converged, Failure>, now_ms: i64) -> Outcome {
        match converged {
            Ok(Converged::Record { .. }) => unreachable!("records are made by the callers"),
            Ok(Converged::Done(outcome)) => {
                self.release(claim);
                outcome
            }
            Err(Failure::Store(e)) => {
                self.store_failed("reconciling", &e);
                self.release(claim);
                Outcome::StoreError(e.0)
            }
            // A failure record ends the claim.
            Err(Failure::DataPlane(error)) => {
                let outcome = self.record_failure(claim, error, now_ms);
                // Answered: the failure is recorded and retried.
                self.settle_waiters(&claim.gateway_id, Some(claim.target_version));
                outcome
            }
        }
    }

    fn release(&self, claim: &Claim) {
        if let Err(e) = self.store.release(claim) {
            // The lease runs out on its own.
            self.store_failed("releasing a claim", &e);
        }
    }

    /// [`converge`](Self::converge), then on to later versions requests are waiting for
    /// (committed while the claim was held, due at once: every version up to them is due),
    /// under the same claim, so that a stream of changes to one gateway is put in force
    /// without a claim and a record for each. The claim's target is the version reached.
    fn converge_following(&self, claim: &mut Claim) -> Result<Converged, Failure> {
        self.converge_following_from(claim, None)
    }

    /// [`converge_following`](Self::converge_following), the first step with `changes` read
    /// already (if they lead from the claim's applied to its target version).
    fn converge_following_from(&self, claim: &mut Claim, changes: Option<SpecChanges>) -> Result<Converged, Failure> {
        let mut converged = self.converge(claim, changes)?;
        for _ in 0..MAX_FOLLOWS {
            let Converged::Record { version, applied } = converged else {
                break;
            };
            let Some(wanted) = self.highest_waiting(&claim.gateway_id).filter(|&w| w > version) else {
                break;
            };
            // What is in force now is `version`: the next step applies only the difference.
            claim.applied_version = version;
            claim.target_version = wanted;
            converged = match self.converge(claim, None)? {
                Converged::Record {
                    version,
                    applied: later,
                } => Converged::Record {
                    version,
                    applied: applied || later,
                },
                done => done,
            };
        }
        Ok(converged)
    }

    /// The highest version a request waits for on a gateway.
    fn highest_waiting(&self, gateway_id: &str) -> Option<i64> {
        self.lock_waiters()
            .get(gateway_id)
            .and_then(|list| list.iter().map(|w| w.version).max())
    }

    /// Bring the data plane to the claim's target version; what is left to record.
    fn converge(&self, claim: &Claim, changes: Option<SpecChanges>) -> Result<Converged, Failure> {
        let gateway_id = &claim.gateway_id;
        let version = claim.target_version;
        let before = self.data_plane.observe(gateway_id)?;
        let applied = !in_force(&before, version);
        if applied {
            // What is in force is the recorded version: apply only the difference, if the
            // store can tell it and the data plane takes it; else the full spec.
            if !self.put_in_force(gateway_id, &before, claim.applied_version, version, changes)? {
                return Ok(Converged::Done(Outcome::Removed));
            }
        } else if claim.applied_version == version && claim.attempts == 0 {
            self.settle_waiters(gateway_id, Some(version));
            return Ok(Converged::Done(Outcome::InForce { version }));
        }
        // In force here: its requests are answered now, not after the record (which shares a
        // later commit; a crash before it loses nothing, the next reconcile records it).
        self.settle_waiters(gateway_id, Some(version));
        Ok(Converged::Record { version, applied })
    }

    fn record_failure(&self, claim: &Claim, error: String, now_ms: i64) -> Outcome {
        bump(&self.metrics.failures);
        let attempts = claim.attempts.saturating_add(1);
        let next_retry_ms = now_ms + self.config.backoff.delay(attempts).as_millis() as i64;
        match self.store.record_failure(claim, &error, next_retry_ms, now_ms) {
            Ok(Some(attempts)) => {
                tracing::warn!(
                    gateway = %claim.gateway_id,
                    version = claim.target_version,
                    attempts,
                    retry_in_ms = next_retry_ms - now_ms,
                    error = %error,
                    "reconcile failed"
                );
                Outcome::Failed {
                    error,
                    attempts,
                    next_retry_ms,
                }
            }
            Ok(None) => {
                bump(&self.metrics.lost_claims);
                tracing::warn!(gateway = %claim.gateway_id, error = %error, "reconcile failed; claim lost before recording");
                Outcome::Lost
            }
            Err(e) => {
                self.store_failed("recording a failure", &e);
                Outcome::StoreError(e.0)
            }
        }
    }

    fn lease_ms(&self) -> i64 {
        self.config.lease.as_millis() as i64
    }

    fn store_failed(&self, doing: &str, e: &StoreFailure) {
        bump(&self.metrics.store_errors);
        tracing::error!(error = %e, "{doing}");
    }
}
