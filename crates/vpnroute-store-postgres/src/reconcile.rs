//! Reconciliation bookkeeping on PostgreSQL, with the semantics of the SQLite store's
//! `reconcile.rs`: tasks as `(gateway, version, due time)`, the route before-images that give
//! a gateway's desired state at any version not yet applied, and per-gateway claims (owner,
//! fencing token, lease) with the failure record. Claims of due work take the candidate rows
//! `FOR UPDATE SKIP LOCKED`, so replicas claiming at the same time split the gateways between
//! them instead of queueing on each other; every record is a compare-and-set on
//! (claim token, owner), so a replica whose lease ran out records nothing.

use vpnroute_domain::model::VpnRoute;
use vpnroute_store::{ChangeAtOnce, ReconcileClaim, ReconcileFailure, StoreError, Task};

use crate::tx::{route_columns, route_from_row, task_from_row, PgTx, ResourceRow, AT_ONCE_AS_PREDICTED, LOCK_ROW};
use vpnroute_store::ResourceKind;

/// The select list of a route-changes query: each changed route's state at version `$to`
/// (columns 0..=11 as `route_from_row` reads them, then whether it is present).
macro_rules! route_changes_select {
    ($to:literal) => {
        "SELECT s.seq, COALESCE(h.kind, r.kind), COALESCE(h.gateway_id, r.gateway_id), \
           COALESCE(h.route_source, r.route_source), COALESCE(h.route_dest, r.route_dest), \
           COALESCE(h.next_hop, r.next_hop), COALESCE(h.weight, r.weight), COALESCE(h.priority, r.priority), \
           COALESCE(h.published, r.published), COALESCE(h.description, r.description), \
           COALESCE(h.overlay_mode, r.overlay_mode), COALESCE(h.create_time, r.create_time), \
           CASE WHEN h.seq IS NOT NULL THEN h.present ELSE r.seq IS NOT NULL END"
    };
}

/// The joins of a route-changes query: a later change's before-image (after `$to`), else
/// the current row.
macro_rules! route_changes_joins {
    ($to:literal) => {
        concat!(
            " LEFT JOIN LATERAL (SELECT * FROM vpn_route_history h WHERE h.gateway_id = $1 AND h.seq = s.seq \
               AND h.version > ",
            $to,
            " ORDER BY version LIMIT 1) h ON TRUE \
             LEFT JOIN vpn_routes r ON h.seq IS NULL AND r.seq = s.seq \
             ORDER BY s.seq"
        )
    };
}

/// One row of a route-changes query (`None`: the row of no change, see `take_claim`).
fn change_from_row(r: &tokio_postgres::Row) -> Option<(i64, Option<VpnRoute>)> {
    let seq: Option<i64> = r.get(0);
    let present: bool = r.get(12);
    Some((seq?, present.then(|| route_from_row(r))))
}

impl PgTx<'_> {
    // Before-images: an insert of a route records it as "absent" before the next version
    // (the desired version plus one), an update or delete copies its row first; a second
    // change in the same version keeps the first image. Both are folded into the route's own
    // statement (see `insert_route`, `update_route`, `delete_route` in `tx.rs`).

    /// Bump the gateway's desired version and record its task (one statement).
    pub fn enqueue_version(&self, gateway_id: &str, due_at: Option<i64>, now_ms: i64) -> Result<i64, StoreError> {
        self.memo().forget_versions(gateway_id);
        Ok(self
            .query_one(
                "WITH v AS (INSERT INTO gateway_versions(gateway_id, desired, applied) VALUES ($1, 1, 0) \
                   ON CONFLICT (gateway_id) DO UPDATE SET desired = gateway_versions.desired + 1 RETURNING desired) \
                 INSERT INTO gateway_tasks(gateway_id, version, due_at, created_at) \
                   SELECT $1, desired, $2, $3 FROM v RETURNING version",
                &[&gateway_id, &due_at, &now_ms],
            )?
            .get(0))
    }

    /// See [`WriteTx::change_at_once`](vpnroute_store::WriteTx::change_at_once) (one statement).
    pub fn change_at_once(&self, gateway_id: &str, now_ms: i64) -> Result<Option<i64>, StoreError> {
        let locked = self.memo().locked_versions.get(gateway_id).copied();
        self.memo().forget_versions(gateway_id);
        if let (Some(locked), true) = (locked, self.may_predict()) {
            // Predicted from what was read with the gateway's lock; a version taken is
            // checked (and taken) in the next round trip (see `Deferred`). Declining needs no
            // check: the claimed path is right whatever the row holds.
            let version = match locked {
                Some((desired, applied, lease)) if desired == applied && lease.is_none_or(|l| l <= now_ms) => {
                    desired + 1
                }
                _ => return Ok(None),
            };
            self.defer(
                AT_ONCE_AS_PREDICTED,
                vec![
                    Box::new(gateway_id.to_string()),
                    Box::new(now_ms),
                    Box::new(version - 1),
                ],
            );
            self.at_once.borrow_mut().push(ChangeAtOnce::new(gateway_id, version));
            return Ok(Some(version));
        }
        let version: Option<i64> = self
            .query_opt(
                "UPDATE gateway_versions SET desired = desired + 1, applied = applied + 1 \
                 WHERE gateway_id = $1 AND desired = applied AND (lease_until IS NULL OR lease_until <= $2) \
                 RETURNING desired",
                &[&gateway_id, &now_ms],
            )?
            .map(|r| r.get(0));
        if let Some(version) = version {
            self.at_once.borrow_mut().push(ChangeAtOnce::new(gateway_id, version));
        }
        Ok(version)
    }

    /// Whether [`PgTx::change_at_once`] took a version of the gateway in this transaction.
    pub(crate) fn is_at_once(&self, gateway_id: &str) -> bool {
        self.at_once.borrow().iter().any(|c| c.gateway_id == gateway_id)
    }

    /// Collect a route write of a gateway whose version this transaction recorded at once.
    pub(crate) fn collect_at_once(&self, gateway_id: &str, seq: i64, state: Option<VpnRoute>) {
        ChangeAtOnce::collect(&mut self.at_once.borrow_mut(), gateway_id, seq, || state);
    }

    pub fn pending_tasks(&self, gateway_id: &str) -> Result<Vec<Task>, StoreError> {
        if let Some(tasks) = self.memo().tasks.get(gateway_id) {
            return Ok(tasks.clone());
        }
        Ok(self
            .query(
                "SELECT gateway_id, version, due_at FROM gateway_tasks WHERE gateway_id = $1 ORDER BY version",
                &[&gateway_id],
            )?
            .iter()
            .map(task_from_row)
            .collect())
    }

    pub fn all_pending_tasks(&self) -> Result<Vec<Task>, StoreError> {
        Ok(self
            .query(
                "SELECT gateway_id, version, due_at FROM gateway_tasks ORDER BY gateway_id, version",
                &[],
            )?
            .iter()
            .map(task_from_row)
            .collect())
    }

    /// The current routes, with each route changed after `version` in its state before the
    /// earliest such change.
    pub fn routes_at_version(&self, gateway_id: &str, version: i64) -> Result<Vec<VpnRoute>, StoreError> {
        if let Some((v, routes)) = self.memo().routes_at.get(gateway_id) {
            if *v == version {
                return Ok(routes.clone());
            }
        }
        Ok(self
            .query(
                concat!(
                    "SELECT ",
                    route_columns!(),
                    " FROM vpn_routes r WHERE gateway_id = $1 AND NOT EXISTS \
                     (SELECT 1 FROM vpn_route_history h WHERE h.gateway_id = $1 AND h.seq = r.seq AND h.version > $2) \
                     UNION ALL SELECT ",
                    route_columns!(),
                    " FROM vpn_route_history h WHERE gateway_id = $1 AND present AND version = \
                     (SELECT MIN(version) FROM vpn_route_history h2 WHERE h2.gateway_id = $1 AND h2.seq = h.seq AND h2.version > $2) \
                     ORDER BY seq"
                ),
                &[&gateway_id, &version],
            )?
            .iter()
            .map(route_from_row)
            .collect())
    }

    /// The routes changed by versions `from + 1 ..= to`, each with its state at `to` (a later
    /// change's before-image, else the current row; `None`: absent), by seq. One statement.
    pub fn route_changes(
        &self,
        gateway_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Option<VpnRoute>)>, StoreError> {
        if let Some((f, t, changes)) = self.memo().changes.get(gateway_id) {
            if (*f, *t) == (from, to) {
                return Ok(changes.clone());
            }
        }
        let rows = self.query(
            concat!(
                "WITH s AS (SELECT DISTINCT seq FROM vpn_route_history WHERE gateway_id = $1 AND version > $2 AND version <= $3) ",
                route_changes_select!("$3"),
                " FROM s",
                route_changes_joins!("$3")
            ),
            &[&gateway_id, &from, &to],
        )?;
        Ok(rows.iter().filter_map(change_from_row).collect())
    }

    /// The highest version whose task and every earlier task is due at `now_ms`; else
    /// `applied`.
    fn target_version(tasks: &[Task], applied: i64, now_ms: i64) -> i64 {
        let mut target = applied;
        for task in tasks {
            match task.due_at {
                Some(due) if due <= now_ms => target = target.max(task.version),
                _ => break,
            }
        }
        target
    }

    /// Take the claim of a gateway whose lease and retry time allow it. One round trip: the
    /// gateway's tasks (for the target version) are read by a statement of their own sent
    /// with the claim, so that they are read after the claim's row lock was granted.
    ///
    /// `changes`: also send [`PgTx::route_changes`] from the applied to the desired version,
    /// computed after the claim (the changes a claim at a request's commit applies; the memo
    /// answers the read when it asks for exactly these versions).
    pub(crate) fn take_claim(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        changes: bool,
    ) -> Result<Option<ReconcileClaim>, StoreError> {
        let lease_until = now_ms.saturating_add(lease_ms);
        let changes_sql = concat!(
            "WITH b AS (SELECT applied AS f, desired AS t FROM gateway_versions WHERE gateway_id = $1), \
             s AS (SELECT DISTINCT seq FROM vpn_route_history, b WHERE gateway_id = $1 AND version > b.f AND version <= b.t) ",
            route_changes_select!("b.t"),
            ", b.f, b.t FROM b LEFT JOIN s ON TRUE",
            route_changes_joins!("b.t")
        );
        let claim_params: crate::tx::Params<'_> = &[&gateway_id, &owner, &now_ms, &lease_until];
        let gateway_param: crate::tx::Params<'_> = &[&gateway_id];
        let mut statements: Vec<(&str, crate::tx::Params<'_>)> = vec![
            (
                "UPDATE gateway_versions SET claim_owner = $2, claim_token = claim_token + 1, lease_until = $4 \
                 WHERE gateway_id = $1 AND (lease_until IS NULL OR lease_until <= $3) \
                 AND (next_retry_at IS NULL OR next_retry_at <= $3) \
                 RETURNING claim_token, applied, attempts, desired",
                claim_params,
            ),
            (
                "SELECT gateway_id, version, due_at FROM gateway_tasks WHERE gateway_id = $1 ORDER BY version",
                gateway_param,
            ),
        ];
        if changes {
            statements.push((changes_sql, gateway_param));
        }
        let mut answers = self.pipeline(&statements)?;
        let changed = if changes { answers.pop() } else { None };
        let tasks: Vec<Task> = answers.pop().unwrap_or_default().iter().map(task_from_row).collect();
        let Some(row) = answers.pop().and_then(|rows| rows.into_iter().next()) else {
            return Ok(None);
        };
        if let Some(rows) = changed.filter(|rows| !rows.is_empty()) {
            let (f, t): (i64, i64) = (rows[0].get(13), rows[0].get(14));
            let list = rows.iter().filter_map(change_from_row).collect();
            self.memo().changes.insert(gateway_id.to_string(), (f, t, list));
        }
        let (token, applied, attempts, desired): (i64, i64, i32, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let target_version = Self::target_version(&tasks, applied, now_ms);
        {
            // The claim holds the version row's lock until this transaction ends.
            let mut memo = self.memo();
            memo.versions.insert(gateway_id.to_string(), (desired, applied));
            memo.tasks.insert(gateway_id.to_string(), tasks);
        }
        Ok(Some(ReconcileClaim {
            gateway_id: gateway_id.to_string(),
            owner: owner.to_string(),
            token,
            lease_until_ms: lease_until,
            target_version,
            applied_version: applied,
            attempts: attempts.max(0) as u32,
        }))
    }

    /// Claim up to `max` gateways with work due (the first pending task due, or a failure to
    /// retry), skipping gateways under an unexpired lease, waiting for their retry time, or
    /// being claimed by another replica right now (`SKIP LOCKED`).
    pub fn claim_due_gateways(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        max: usize,
    ) -> Result<Vec<ReconcileClaim>, StoreError> {
        let max = max.min(i64::MAX as usize) as i64;
        let candidates: Vec<String> = self
            .query(
                "SELECT g.gateway_id FROM gateway_versions g WHERE g.gateway_id IN ( \
                   SELECT t.gateway_id FROM gateway_tasks t WHERE t.due_at <= $1 \
                     AND t.version = (SELECT MIN(version) FROM gateway_tasks t2 WHERE t2.gateway_id = t.gateway_id) \
                   UNION SELECT gateway_id FROM gateway_versions WHERE attempts > 0) \
                 AND (g.lease_until IS NULL OR g.lease_until <= $1) AND (g.next_retry_at IS NULL OR g.next_retry_at <= $1) \
                 ORDER BY g.gateway_id LIMIT $2 FOR UPDATE OF g SKIP LOCKED",
                &[&now_ms, &max],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut claims = Vec::with_capacity(candidates.len());
        for gateway_id in candidates {
            claims.extend(self.take_claim(&gateway_id, owner, now_ms, lease_ms, false)?);
        }
        Ok(claims)
    }

    /// Record `version` in force if `claim` is the latest claim and `version` is not below
    /// the applied version; completes its tasks, drops their before-images, clears the
    /// failure record and ends the claim (one statement). Sent with it, in the same round
    /// trip, the reads a record is followed by: the tasks left and the gateway's row.
    pub fn record_applied(&self, claim: &ReconcileClaim, version: i64) -> Result<bool, StoreError> {
        let gateway_kind = ResourceKind::VpnGateway.as_str();
        {
            let mut memo = self.memo();
            memo.versions.remove(&claim.gateway_id);
            memo.changes.remove(&claim.gateway_id);
            // The before-images it deletes give the routes at older versions.
            memo.routes_at.remove(&claim.gateway_id);
        }
        // The gateway's lock first (a plain one: none of `lock_gateway`'s reads ahead), in the
        // same round trip; the statements after it see every commit made before it was granted.
        let mut answers = self.pipeline(&[
            (LOCK_ROW, &[&claim.gateway_id]),
            (
                "WITH g AS (UPDATE gateway_versions SET applied = $4, attempts = 0, last_error = NULL, next_retry_at = NULL, \
                   claim_owner = NULL, lease_until = NULL \
                   WHERE gateway_id = $1 AND claim_token = $2 AND claim_owner = $3 AND applied <= $4 RETURNING gateway_id), \
                 t AS (DELETE FROM gateway_tasks WHERE gateway_id IN (SELECT gateway_id FROM g) AND version <= $4), \
                 h AS (DELETE FROM vpn_route_history WHERE gateway_id IN (SELECT gateway_id FROM g) AND version <= $4) \
                 SELECT COUNT(*) FROM g",
                &[&claim.gateway_id, &claim.token, &claim.owner, &version],
            ),
            (
                "SELECT gateway_id, version, due_at FROM gateway_tasks WHERE gateway_id = $1 ORDER BY version",
                &[&claim.gateway_id],
            ),
            (
                "SELECT account_id, region_id, doc FROM resources WHERE id = $1 AND kind = $2",
                &[&claim.gateway_id, &gateway_kind],
            ),
        ])?;
        let own = answers.pop().unwrap_or_default();
        let tasks = answers.pop().unwrap_or_default();
        let recorded = answers
            .pop()
            .and_then(|rows| rows.into_iter().next())
            .map(|r| r.get::<_, i64>(0) > 0)
            .ok_or_else(|| StoreError::Backend("no row from the record of an applied version".into()))?;
        if recorded {
            // Read after this statement's changes (a statement of its own sees them); the
            // version row stays locked by this transaction, so no task is added meanwhile.
            self.memo()
                .tasks
                .insert(claim.gateway_id.clone(), tasks.iter().map(task_from_row).collect());
            let own = own.first().map(|r| ResourceRow {
                account_id: r.get(0),
                region_id: r.get(1),
                doc: r.get(2),
            });
            self.remember_row(ResourceKind::VpnGateway, &claim.gateway_id, own);
        }
        Ok(recorded)
    }

    /// Record a failed attempt and end the claim; `None` when the claim was lost.
    pub fn record_failure(
        &self,
        claim: &ReconcileClaim,
        error: &str,
        next_retry_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        self.memo().versions.remove(&claim.gateway_id);
        Ok(self
            .query_opt(
                "UPDATE gateway_versions SET attempts = attempts + 1, last_error = $4, next_retry_at = $5, \
                 claim_owner = NULL, lease_until = NULL \
                 WHERE gateway_id = $1 AND claim_token = $2 AND claim_owner = $3 RETURNING attempts",
                &[&claim.gateway_id, &claim.token, &claim.owner, &error, &next_retry_ms],
            )?
            .map(|r| r.get::<_, i32>(0).max(0) as u32))
    }

    pub fn reconcile_failure(&self, gateway_id: &str) -> Result<Option<ReconcileFailure>, StoreError> {
        Ok(self
            .query_opt(
                "SELECT attempts, COALESCE(last_error, ''), next_retry_at FROM gateway_versions \
                 WHERE gateway_id = $1 AND attempts > 0",
                &[&gateway_id],
            )?
            .map(|r| ReconcileFailure {
                attempts: r.get::<_, i32>(0).max(0) as u32,
                last_error: r.get(1),
                next_retry_ms: r.get(2),
            }))
    }

    /// The earliest time at which a claim may find new work (a first task's due time, a
    /// retry time, a lease running out).
    pub fn next_reconcile_wake(&self, now_ms: i64) -> Result<Option<i64>, StoreError> {
        Ok(self
            .query_one(
                "SELECT MIN(w) FROM ( \
                   SELECT GREATEST(t.due_at, COALESCE(g.next_retry_at, 0), COALESCE(g.lease_until, 0)) AS w \
                   FROM gateway_tasks t JOIN gateway_versions g ON g.gateway_id = t.gateway_id \
                   WHERE t.due_at IS NOT NULL AND t.version = (SELECT MIN(version) FROM gateway_tasks t2 WHERE t2.gateway_id = t.gateway_id) \
                   UNION ALL \
                   SELECT GREATEST($1::BIGINT, COALESCE(next_retry_at, 0), COALESCE(lease_until, 0)) FROM gateway_versions WHERE attempts > 0) s",
                &[&now_ms],
            )?
            .get(0))
    }
}
