//! [`ReconcileStore`]: what a reconciler needs from the store — claims with leases, the
//! desired spec at a version, and the compare-and-set records of success and failure.

use vpnroute_dataplane::{GatewaySpec, SpecChanges};

/// A store call failed (connection lost, busy, serialization failure …). The reconciler
/// logs it and tries again on its next pass; nothing is recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reconcile store: {0}")]
pub struct StoreFailure(pub String);

/// What [`ReconcileStore::record_applied_then`] calls with its answer.
pub type RecordDone = Box<dyn FnOnce(Result<bool, StoreFailure>) + Send>;

/// One gateway claimed by one reconciler until `lease_until_ms`.
///
/// While the lease runs no other owner can claim the gateway; after it ran out another may,
/// and the `token` it gets is larger, so records made with this claim are refused from then
/// on (a fencing token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub gateway_id: String,
    /// Who holds the claim (one id per reconciler instance).
    pub owner: String,
    /// Increases with every claim of the gateway.
    pub token: u64,
    pub lease_until_ms: i64,
    /// The version to converge to: the highest version whose task, and every earlier task of
    /// the gateway, is due; the applied version when no task is due (repair of what is in force).
    pub target_version: i64,
    /// The applied version recorded when the claim was taken.
    pub applied_version: i64,
    /// Failed attempts in a row before this claim (0 after a success).
    pub attempts: u32,
}

/// A gateway's recorded versions (for drift checks and for cleaning up the data plane).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayVersion {
    pub gateway_id: String,
    pub applied_version: i64,
}

/// The store side of reconciliation. Every method is one transaction. Several reconcilers
/// (threads, processes, replicas) may share one store: claims make them take turns per
/// gateway, and the fencing token plus the version compare-and-set make a late record from a
/// lost claim harmless.
///
/// Tasks are rows `(gateway, version, due time)` committed with the change that bumped the
/// gateway's desired version; a task without a due time (manual mode) is never due until it
/// is given one. A task is done once the applied version reaches its version.
pub trait ReconcileStore: Send + Sync {
    /// Claim a gateway with work due at `now_ms`: a due task above the applied version, or a
    /// failed attempt whose retry time has come. Skips gateways another owner holds an
    /// unexpired lease on, and gateways whose retry time is still ahead. `None`: nothing due.
    fn claim_due(&self, owner: &str, now_ms: i64, lease_ms: i64) -> Result<Option<Claim>, StoreFailure>;

    /// Claim up to `max` gateways with work due, as [`claim_due`](Self::claim_due) would one
    /// by one (a store may do it in one transaction). Default: `claim_due` until it finds
    /// nothing.
    fn claim_due_many(&self, owner: &str, now_ms: i64, lease_ms: i64, max: usize) -> Result<Vec<Claim>, StoreFailure> {
        let mut claims = Vec::new();
        while claims.len() < max {
            match self.claim_due(owner, now_ms, lease_ms)? {
                Some(claim) => claims.push(claim),
                None => break,
            }
        }
        Ok(claims)
    }

    /// End every claim `owner` holds, whatever its lease: called once by a reconciler that
    /// starts with that owner id, since the instance that held them (a previous run of this
    /// one) is gone. Returns how many ended.
    fn release_owner(&self, owner: &str) -> Result<usize, StoreFailure>;

    /// Claim one gateway whatever is due (to repair a drift): `None` when the gateway does
    /// not exist, another owner holds an unexpired lease, or it waits for a retry.
    fn claim_gateway(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, StoreFailure>;

    /// The desired state of a gateway at `version` (`None`: the gateway no longer exists).
    /// The state at a version is that of the change that produced it, whatever was committed
    /// since: a queued change does not come into force before its own task.
    fn load_spec(&self, gateway_id: &str, version: i64) -> Result<Option<GatewaySpec>, StoreFailure>;

    /// [`load_spec`](Self::load_spec) of several recorded versions (a replica mirroring what
    /// other replicas recorded), one answer per item, in order; a store may read them all in
    /// one transaction, and may answer a newer recorded version of a gateway than the one
    /// asked for (another replica recorded it meanwhile). Default: one `load_spec` each.
    fn load_specs(&self, wanted: &[(String, i64)]) -> Vec<Result<Option<GatewaySpec>, StoreFailure>> {
        wanted
            .iter()
            .map(|(gateway_id, version)| self.load_spec(gateway_id, *version))
            .collect()
    }

    /// What changed between two versions (`from` < `to`), in the state at `to`; `None` when
    /// the store cannot tell or the gateway no longer exists (the reconciler then loads the
    /// full spec). Default: `None`.
    fn load_changes(&self, gateway_id: &str, from: i64, to: i64) -> Result<Option<SpecChanges>, StoreFailure> {
        let _ = (gateway_id, from, to);
        Ok(None)
    }

    /// Record that `version` is in force (applied and read back in sync), if `claim` is still
    /// the gateway's latest claim and `version` is not below the applied version (compare and
    /// set: versions never go backwards). Completes the tasks up to `version`, clears the
    /// failure record, ends the claim, and — when no task remains — ends the gateway's busy
    /// state. Returns whether it recorded.
    fn record_applied(&self, claim: &Claim, version: i64, now_ms: i64) -> Result<bool, StoreFailure>;

    /// [`record_applied`](Self::record_applied) when nobody waits to see the record (the
    /// requests were answered when the version came into force): a store may hold it back
    /// briefly to share a commit with the next write. Default: `record_applied`.
    fn record_applied_deferred(&self, claim: &Claim, version: i64, now_ms: i64) -> Result<bool, StoreFailure> {
        self.record_applied(claim, version, now_ms)
    }

    /// [`record_applied_deferred`](Self::record_applied_deferred) without waiting: `done` gets
    /// the answer later, possibly on the store's writer thread (it must not wait for the
    /// store). Default: `record_applied` at once.
    fn record_applied_then(&self, claim: &Claim, version: i64, now_ms: i64, done: RecordDone) {
        done(self.record_applied(claim, version, now_ms))
    }

    /// [`record_applied`](Self::record_applied) for several claims (a store may do it in one
    /// transaction); one answer per record, in order. Default: one by one.
    fn record_applied_many(&self, records: &[(Claim, i64)], now_ms: i64) -> Result<Vec<bool>, StoreFailure> {
        records
            .iter()
            .map(|(claim, version)| self.record_applied(claim, *version, now_ms))
            .collect()
    }

    /// Record a failed attempt (if `claim` is still the latest): attempts + 1, `error` as the
    /// last error, and no new claim of the gateway by [`claim_due`](Self::claim_due) or
    /// [`claim_gateway`](Self::claim_gateway) before `next_retry_ms`; ends the claim. Returns
    /// the attempts recorded so far (`None` when the claim was lost).
    fn record_failure(
        &self,
        claim: &Claim,
        error: &str,
        next_retry_ms: i64,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreFailure>;

    /// End the claim (if it is still the latest) without recording anything, so another owner
    /// can claim at once.
    fn release(&self, claim: &Claim) -> Result<(), StoreFailure>;

    /// Every gateway with its applied version.
    fn gateway_versions(&self) -> Result<Vec<GatewayVersion>, StoreFailure>;

    /// A number that moves with every commit of another process sharing the store (another
    /// replica's; it may also move with this process's own commits), cheap to read (no round
    /// trip: an atomic, a mapped counter, a value fed by notifications). A reconciler whose
    /// data plane is per-process mirrors the recorded versions when it moves. `None`: the
    /// store cannot tell, and the reconciler mirrors on every pass. Default: `None`.
    fn generation(&self) -> Option<u64> {
        None
    }

    /// The earliest time after `now_ms` at which [`claim_due`](Self::claim_due) may find
    /// something new (a task's due time, a retry time, a lease running out); `None`: nothing
    /// scheduled.
    fn next_wake(&self, now_ms: i64) -> Result<Option<i64>, StoreFailure>;
}
