//! [`MemoryReconcileStore`]: an in-memory [`ReconcileStore`] — the reference the persistent
//! stores are checked against, and the store of the reconciler's own tests. It keeps every
//! desired version's spec (a change is committed with [`MemoryReconcileStore::commit`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use vpnroute_dataplane::{GatewaySpec, SpecChanges};

use crate::store::{Claim, GatewayVersion, ReconcileStore, StoreFailure};

#[derive(Debug, Clone)]
struct ClaimRow {
    owner: String,
    token: u64,
    lease_until_ms: i64,
}

#[derive(Debug, Default)]
struct GatewayRow {
    /// Desired spec per version (every version committed so far).
    specs: BTreeMap<i64, GatewaySpec>,
    applied: i64,
    /// Pending tasks: version → due time (`None`: manual, not due until advanced).
    tasks: BTreeMap<i64, Option<i64>>,
    claim: Option<ClaimRow>,
    tokens: u64,
    attempts: u32,
    last_error: Option<String>,
    next_retry_ms: Option<i64>,
    applied_history: Vec<i64>,
}

impl GatewayRow {
    fn desired(&self) -> i64 {
        self.specs.keys().next_back().copied().unwrap_or(0)
    }

    /// The highest version whose task and every earlier task is due (else the applied one).
    fn target(&self, now_ms: i64) -> i64 {
        self.tasks
            .iter()
            .take_while(|(_, due)| due.is_some_and(|d| d <= now_ms))
            .map(|(v, _)| *v)
            .last()
            .unwrap_or(self.applied)
            .max(self.applied)
    }

    fn claimable(&self, now_ms: i64) -> bool {
        let free = self.claim.as_ref().is_none_or(|c| c.lease_until_ms <= now_ms);
        let waiting = self.next_retry_ms.is_some_and(|t| t > now_ms);
        free && !waiting
    }

    fn has_due_work(&self, now_ms: i64) -> bool {
        self.target(now_ms) > self.applied || self.attempts > 0
    }

    fn claim(&mut self, gateway_id: &str, owner: &str, now_ms: i64, lease_ms: i64) -> Claim {
        self.tokens += 1;
        let row = ClaimRow {
            owner: owner.to_string(),
            token: self.tokens,
            lease_until_ms: now_ms + lease_ms,
        };
        let claim = Claim {
            gateway_id: gateway_id.to_string(),
            owner: row.owner.clone(),
            token: row.token,
            lease_until_ms: row.lease_until_ms,
            target_version: self.target(now_ms),
            applied_version: self.applied,
            attempts: self.attempts,
        };
        self.claim = Some(row);
        claim
    }

    fn holds(&self, claim: &Claim) -> bool {
        self.claim
            .as_ref()
            .is_some_and(|c| c.token == claim.token && c.owner == claim.owner)
    }
}

/// A gateway's reconcile state, for assertions (and as introspection would show it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryGatewayStatus {
    pub desired_version: i64,
    pub applied_version: i64,
    pub pending_tasks: usize,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_retry_ms: Option<i64>,
    /// Current claim holder, if a claim is held (expired or not).
    pub claimed_by: Option<String>,
    /// Every applied version recorded, in order.
    pub applied_history: Vec<i64>,
}

/// See the [module docs](self).
#[derive(Debug, Default)]
pub struct MemoryReconcileStore {
    gateways: Mutex<HashMap<String, GatewayRow>>,
    /// Moves with every change (see [`ReconcileStore::generation`]).
    generation: AtomicU64,
    /// Calls of [`ReconcileStore::load_specs`] (reads of several specs at once).
    spec_batches: AtomicU64,
}

impl MemoryReconcileStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times several specs were read at once ([`ReconcileStore::load_specs`]).
    pub fn spec_batches(&self) -> u64 {
        self.spec_batches.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, GatewayRow>> {
        self.gateways.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A change is committed (called with the lock held, so a reader of the generation
    /// finds the change once it sees the new value).
    fn moved(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Commit a change: the gateway's next desired version is `spec` (its `version` field is
    /// set here), with a task due at `due_ms` (`None`: manual). Creates the gateway on its
    /// first change. Returns the new version.
    pub fn commit(&self, mut spec: GatewaySpec, due_ms: Option<i64>) -> i64 {
        let mut gateways = self.lock();
        let row = gateways.entry(spec.gateway_id.clone()).or_default();
        let version = row.desired() + 1;
        spec.version = version;
        row.specs.insert(version, spec);
        row.tasks.insert(version, due_ms);
        self.moved();
        version
    }

    /// Commit a change recorded as applied by its own transaction (the store's
    /// `WriteTx::change_at_once`): desired and applied both become the new version, with no
    /// task. Returns the new version.
    pub fn commit_recorded(&self, mut spec: GatewaySpec) -> i64 {
        let mut gateways = self.lock();
        let row = gateways.entry(spec.gateway_id.clone()).or_default();
        let version = row.desired() + 1;
        spec.version = version;
        row.specs.insert(version, spec);
        row.applied = version;
        row.applied_history.push(version);
        self.moved();
        version
    }

    /// The latest desired spec of a gateway.
    pub fn desired_spec(&self, gateway_id: &str) -> Option<GatewaySpec> {
        self.lock()
            .get(gateway_id)
            .and_then(|g| g.specs.values().next_back().cloned())
    }

    /// Make every pending task of a gateway due at `now_ms` (manual mode's advance).
    pub fn advance(&self, gateway_id: &str, now_ms: i64) -> usize {
        let mut gateways = self.lock();
        let Some(row) = gateways.get_mut(gateway_id) else {
            return 0;
        };
        row.tasks.values_mut().for_each(|due| *due = Some(now_ms));
        self.moved();
        row.tasks.len()
    }

    /// Delete a gateway with everything of it.
    pub fn delete(&self, gateway_id: &str) {
        let mut gateways = self.lock();
        gateways.remove(gateway_id);
        self.moved();
    }

    pub fn status(&self, gateway_id: &str) -> Option<MemoryGatewayStatus> {
        self.lock().get(gateway_id).map(|g| MemoryGatewayStatus {
            desired_version: g.desired(),
            applied_version: g.applied,
            pending_tasks: g.tasks.len(),
            attempts: g.attempts,
            last_error: g.last_error.clone(),
            next_retry_ms: g.next_retry_ms,
            claimed_by: g.claim.as_ref().map(|c| c.owner.clone()),
            applied_history: g.applied_history.clone(),
        })
    }
}

impl ReconcileStore for MemoryReconcileStore {
    fn claim_due(&self, owner: &str, now_ms: i64, lease_ms: i64) -> Result<Option<Claim>, StoreFailure> {
        let mut gateways = self.lock();
        let mut due: Vec<(&String, &mut GatewayRow)> = gateways
            .iter_mut()
            .filter(|(_, g)| g.claimable(now_ms) && g.has_due_work(now_ms))
            .collect();
        due.sort_by(|a, b| a.0.cmp(b.0));
        Ok(due
            .into_iter()
            .next()
            .map(|(id, g)| g.claim(id, owner, now_ms, lease_ms)))
    }

    fn claim_gateway(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, StoreFailure> {
        let mut gateways = self.lock();
        Ok(gateways
            .get_mut(gateway_id)
            .filter(|g| g.claimable(now_ms))
            .map(|g| g.claim(gateway_id, owner, now_ms, lease_ms)))
    }

    fn load_spec(&self, gateway_id: &str, version: i64) -> Result<Option<GatewaySpec>, StoreFailure> {
        let gateways = self.lock();
        let Some(row) = gateways.get(gateway_id) else {
            return Ok(None);
        };
        match row.specs.get(&version) {
            Some(spec) => Ok(Some(spec.clone())),
            None => Err(StoreFailure(format!("gateway {gateway_id} has no version {version}"))),
        }
    }

    fn load_specs(&self, wanted: &[(String, i64)]) -> Vec<Result<Option<GatewaySpec>, StoreFailure>> {
        self.spec_batches.fetch_add(1, Ordering::SeqCst);
        wanted
            .iter()
            .map(|(id, version)| self.load_spec(id, *version))
            .collect()
    }

    fn release_owner(&self, owner: &str) -> Result<usize, StoreFailure> {
        let mut ended = 0;
        for row in self.lock().values_mut() {
            if row.claim.as_ref().is_some_and(|c| c.owner == owner) {
                row.claim = None;
                ended += 1;
            }
        }
        Ok(ended)
    }

    fn load_changes(&self, gateway_id: &str, from: i64, to: i64) -> Result<Option<SpecChanges>, StoreFailure> {
        let gateways = self.lock();
        let Some(row) = gateways.get(gateway_id) else {
            return Ok(None);
        };
        let (Some(old), Some(new)) = (row.specs.get(&from), row.specs.get(&to)) else {
            return Ok(None);
        };
        let before: HashMap<u64, &vpnroute_dataplane::RouteSpec> = old.routes.iter().map(|r| (r.id, r)).collect();
        let after: HashMap<u64, &vpnroute_dataplane::RouteSpec> = new.routes.iter().map(|r| (r.id, r)).collect();
        let mut removed: Vec<u64> = before.keys().filter(|id| !after.contains_key(id)).copied().collect();
        removed.sort_unstable();
        Ok(Some(SpecChanges {
            gateway_id: gateway_id.to_string(),
            from_version: from,
            version: to,
            upserts: new
                .routes
                .iter()
                .filter(|r| before.get(&r.id) != Some(r))
                .cloned()
                .collect(),
            removed,
            connections: Some(new.connections.clone()),
        }))
    }

    fn record_applied(&self, claim: &Claim, version: i64, _now_ms: i64) -> Result<bool, StoreFailure> {
        let mut gateways = self.lock();
        let Some(row) = gateways.get_mut(&claim.gateway_id) else {
            return Ok(false);
        };
        if !row.holds(claim) || version < row.applied {
            return Ok(false);
        }
        if version > row.applied {
            row.applied_history.push(version);
        }
        row.applied = version;
        row.tasks.retain(|v, _| *v > version);
        row.attempts = 0;
        row.last_error = None;
        row.next_retry_ms = None;
        row.claim = None;
        self.moved();
        Ok(true)
    }

    fn record_failure(
        &self,
        claim: &Claim,
        error: &str,
        next_retry_ms: i64,
        _now_ms: i64,
    ) -> Result<Option<u32>, StoreFailure> {
        let mut gateways = self.lock();
        let Some(row) = gateways.get_mut(&claim.gateway_id).filter(|g| g.holds(claim)) else {
            return Ok(None);
        };
        row.attempts += 1;
        row.last_error = Some(error.to_string());
        row.next_retry_ms = Some(next_retry_ms);
        row.claim = None;
        Ok(Some(row.attempts))
    }

    fn release(&self, claim: &Claim) -> Result<(), StoreFailure> {
        let mut gateways = self.lock();
        if let Some(row) = gateways.get_mut(&claim.gateway_id).filter(|g| g.holds(claim)) {
            row.claim = None;
        }
        Ok(())
    }

    fn gateway_versions(&self) -> Result<Vec<GatewayVersion>, StoreFailure> {
        let mut out: Vec<GatewayVersion> = self
            .lock()
            .iter()
            .map(|(id, g)| GatewayVersion {
                gateway_id: id.clone(),
                applied_version: g.applied,
            })
            .collect();
        out.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
        Ok(out)
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(Ordering::SeqCst))
    }

    fn next_wake(&self, now_ms: i64) -> Result<Option<i64>, StoreFailure> {
        let gateways = self.lock();
        Ok(gateways
            .values()
            .filter_map(|g| {
                let first_due = match g.tasks.values().next() {
                    Some(Some(due)) => Some(*due),
                    _ => (g.attempts > 0).then_some(now_ms),
                }?;
                let retry = g.next_retry_ms.unwrap_or(i64::MIN);
                let lease = g.claim.as_ref().map_or(i64::MIN, |c| c.lease_until_ms);
                Some(first_due.max(retry).max(lease))
            })
            .min())
    }
}
