//! Reconciliation bookkeeping in SQLite (migration 007): tasks as `(gateway, version, due
//! time)`, the route before-images that give a gateway's desired state at any version not yet
//! applied, and per-gateway claims (owner, fencing token, lease) with the failure record.

use rusqlite::{params, OptionalExtension};
use vpnroute_domain::model::VpnRoute;

use vpnroute_store::{ReconcileClaim, ReconcileFailure, Task};

use crate::tx::{route_from_row, SqliteTx};
use crate::Error;

/// The route columns of `vpn_route_history`, in `route_from_row` order.
macro_rules! history_routes {
    ($rest:literal) => {
        concat!(
            "SELECT seq, kind, gateway_id, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time FROM vpn_route_history ",
            $rest
        )
    };
}

/// SQL for the version this transaction's changes of gateway `$gw` (a parameter) belong to:
/// the desired version plus one (the change bumps it with [`SqliteTx::enqueue_version`]
/// before committing).
macro_rules! next_version {
    ($gw:literal) => {
        concat!(
            "(SELECT COALESCE((SELECT desired FROM gateway_versions WHERE gateway_id = ",
            $gw,
            "), 0) + 1)"
        )
    };
}

impl SqliteTx<'_> {
    /// Keep route `seq`'s state before this transaction's change as its state before the
    /// next version: a copy of its row (`existed`: called before an update or delete), or
    /// "absent" (called after the insert that created it). A second change in the same
    /// version keeps the first image.
    pub(crate) fn remember_route_before(&self, gateway_id: &str, seq: i64, existed: bool) -> Result<(), Error> {
        // The version is `NEXT_VERSION`, computed in the statement (one statement per image).
        if existed {
            self.conn()?
                .prepare_cached(concat!(
                    "INSERT OR IGNORE INTO vpn_route_history \
                     SELECT gateway_id, ",
                    next_version!("?2"),
                    ", seq, 1, kind, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time \
                     FROM vpn_routes WHERE seq = ?1"
                ))?
                .execute(params![seq, gateway_id])?;
        } else {
            self.conn()?
                .prepare_cached(concat!(
                    "INSERT OR IGNORE INTO vpn_route_history VALUES (?1, ",
                    next_version!("?1"),
                    ", ?2, 0, '', '', '', '', 0, 0, 0, '', '', 0)"
                ))?
                .execute(params![gateway_id, seq])?;
        }
        Ok(())
    }

    /// Bump the gateway's desired version and record its task, due at `due_at` (`None`:
    /// manual). Returns the new version.
    pub fn enqueue_version(&self, gateway_id: &str, due_at: Option<i64>, now_ms: i64) -> Result<i64, Error> {
        let version: i64 = self
            .conn()?
            .prepare_cached(
                "INSERT INTO gateway_versions(gateway_id, desired, applied) VALUES (?1, 1, 0) \
                 ON CONFLICT(gateway_id) DO UPDATE SET desired = desired + 1 RETURNING desired",
            )?
            .query_row(params![gateway_id], |r| r.get(0))?;
        self.conn()?
            .prepare_cached(
                "INSERT INTO gateway_tasks(gateway_id, version, due_at, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![gateway_id, version, due_at, now_ms])?;
        Ok(version)
    }

    /// Pending tasks of a gateway, oldest (lowest version) first.
    pub fn pending_tasks(&self, gateway_id: &str) -> Result<Vec<Task>, Error> {
        let mut st = self.conn()?.prepare_cached(
            "SELECT gateway_id, version, due_at FROM gateway_tasks WHERE gateway_id = ?1 ORDER BY version",
        )?;
        let rows = st.query_map(params![gateway_id], |r| {
            Ok(Task {
                gateway_id: r.get(0)?,
                version: r.get(1)?,
                due_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every pending task, by gateway then version.
    pub fn all_pending_tasks(&self) -> Result<Vec<Task>, Error> {
        let mut st = self
            .conn()?
            .prepare_cached("SELECT gateway_id, version, due_at FROM gateway_tasks ORDER BY gateway_id, version")?;
        let rows = st.query_map([], |r| {
            Ok(Task {
                gateway_id: r.get(0)?,
                version: r.get(1)?,
                due_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Set the due time of every pending task of a gateway; returns how many.
    pub fn reschedule_tasks(&self, gateway_id: &str, due_at: Option<i64>) -> Result<usize, Error> {
        Ok(self
            .conn()?
            .prepare_cached("UPDATE gateway_tasks SET due_at = ?2 WHERE gateway_id = ?1")?
            .execute(params![gateway_id, due_at])?)
    }

    /// The routes of a gateway at `version` (≥ its applied version), in creation order: the
    /// current routes, with each route changed after `version` in its state before the
    /// earliest such change.
    pub fn routes_at_version(&self, gateway_id: &str, version: i64) -> Result<Vec<VpnRoute>, Error> {
        let mut st = self.conn()?.prepare_cached(concat!(
            "SELECT seq, kind, gateway_id, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time \
             FROM vpn_routes r WHERE gateway_id = ?1 AND NOT EXISTS \
             (SELECT 1 FROM vpn_route_history h WHERE h.gateway_id = ?1 AND h.seq = r.seq AND h.version > ?2) \
             UNION ALL ",
            history_routes!(
                "h WHERE gateway_id = ?1 AND present = 1 AND version = \
                 (SELECT MIN(version) FROM vpn_route_history h2 WHERE h2.gateway_id = ?1 AND h2.seq = h.seq AND h2.version > ?2) \
                 ORDER BY seq"
            )
        ))?;
        let rows = st.query_map(params![gateway_id, version], route_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The routes changed by versions `from + 1 ..= to`, each with its state at `to`
    /// (`None`: absent), by seq.
    pub fn route_changes(&self, gateway_id: &str, from: i64, to: i64) -> Result<Vec<(i64, Option<VpnRoute>)>, Error> {
        let seqs: Vec<i64> = {
            let mut st = self.conn()?.prepare_cached(
                "SELECT DISTINCT seq FROM vpn_route_history WHERE gateway_id = ?1 AND version > ?2 AND version <= ?3 ORDER BY seq",
            )?;
            let rows = st.query_map(params![gateway_id, from, to], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            // A later change's before-image is the state at `to`; else the current row.
            let later: Option<(bool, VpnRoute)> = self
                .conn()?
                .prepare_cached(
                    "SELECT seq, kind, gateway_id, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time, present \
                     FROM vpn_route_history WHERE gateway_id = ?1 AND seq = ?2 AND version > ?3 ORDER BY version LIMIT 1",
                )?
                .query_row(params![gateway_id, seq, to], |r| Ok((r.get::<_, i64>(12)? != 0, route_from_row(r)?)))
                .optional()?;
            let state = match later {
                Some((present, route)) => present.then_some(route),
                None => self
                    .conn()?
                    .prepare_cached(
                        "SELECT seq, kind, gateway_id, route_source, route_dest, next_hop, weight, priority, published, description, overlay_mode, create_time FROM vpn_routes WHERE seq = ?1",
                    )?
                    .query_row(params![seq], route_from_row)
                    .optional()?,
            };
            out.push((seq, state));
        }
        Ok(out)
    }

    /// The highest version whose task and every earlier task is due at `now_ms`; else
    /// `applied`.
    fn target_version(&self, gateway_id: &str, applied: i64, now_ms: i64) -> Result<i64, Error> {
        let mut target = applied;
        for task in self.pending_tasks(gateway_id)? {
            match task.due_at {
                Some(due) if due <= now_ms => target = target.max(task.version),
                _ => break,
            }
        }
        Ok(target)
    }

    /// Take the claim of a gateway whose lease and retry time allow it.
    fn take_claim(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ReconcileClaim>, Error> {
        let row: Option<(i64, i64, u32)> = self
            .conn()?
            .prepare_cached(
                "UPDATE gateway_versions SET claim_owner = ?2, claim_token = claim_token + 1, lease_until = ?3 + ?4 \
                 WHERE gateway_id = ?1 AND (lease_until IS NULL OR lease_until <= ?3) \
                 AND (next_retry_at IS NULL OR next_retry_at <= ?3) \
                 RETURNING claim_token, applied, attempts",
            )?
            .query_row(params![gateway_id, owner, now_ms, lease_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((token, applied, attempts)) = row else {
            return Ok(None);
        };
        Ok(Some(ReconcileClaim {
            gateway_id: gateway_id.to_string(),
            owner: owner.to_string(),
            token,
            lease_until_ms: now_ms + lease_ms,
            target_version: self.target_version(gateway_id, applied, now_ms)?,
            applied_version: applied,
            attempts,
        }))
    }

    /// Claim up to `max` gateways with work due: the first pending task due, or a failure to
    /// retry; skipping gateways under another claim's lease or waiting for their retry time.
    pub fn claim_due_gateways(
        &self,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        max: usize,
    ) -> Result<Vec<ReconcileClaim>, Error> {
        let candidates: Vec<String> = {
            let mut st = self.conn()?.prepare_cached(
                "SELECT g.gateway_id FROM gateway_versions g WHERE g.gateway_id IN ( \
                   SELECT t.gateway_id FROM gateway_tasks t WHERE t.due_at <= ?1 \
                     AND t.version = (SELECT MIN(version) FROM gateway_tasks t2 WHERE t2.gateway_id = t.gateway_id) \
                   UNION SELECT gateway_id FROM gateway_versions WHERE attempts > 0) \
                 AND (g.lease_until IS NULL OR g.lease_until <= ?1) AND (g.next_retry_at IS NULL OR g.next_retry_at <= ?1) \
                 ORDER BY g.gateway_id LIMIT ?2",
            )?;
            let rows = st.query_map(params![now_ms, max as i64], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut claims = Vec::with_capacity(candidates.len());
        for gateway_id in candidates {
            claims.extend(self.take_claim(&gateway_id, owner, now_ms, lease_ms)?);
        }
        Ok(claims)
    }

    /// End every claim `owner` holds (a restarted instance ends its previous run's claims).
    pub fn release_owner_claims(&self, owner: &str) -> Result<usize, Error> {
        Ok(self
            .conn()?
            .prepare_cached(
                "UPDATE gateway_versions SET claim_owner = NULL, lease_until = NULL WHERE claim_owner = ?1",
            )?
            .execute(params![owner])?)
    }

    /// Claim one gateway whatever is due (drift repair).
    pub fn claim_gateway(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ReconcileClaim>, Error> {
        self.take_claim(gateway_id, owner, now_ms, lease_ms)
    }

    /// Record `version` in force if `claim` is the latest claim and `version` is not below
    /// the applied version; completes its tasks, drops their before-images, clears the failure
    /// record and ends the claim.
    pub fn record_applied(&self, claim: &ReconcileClaim, version: i64) -> Result<bool, Error> {
        let n = self
            .conn()?
            .prepare_cached(
                "UPDATE gateway_versions SET applied = ?4, attempts = 0, last_error = NULL, next_retry_at = NULL, \
                 claim_owner = NULL, lease_until = NULL \
                 WHERE gateway_id = ?1 AND claim_token = ?2 AND claim_owner = ?3 AND applied <= ?4",
            )?
            .execute(params![claim.gateway_id, claim.token, claim.owner, version])?;
        if n == 0 {
            return Ok(false);
        }
        self.conn()?
            .prepare_cached("DELETE FROM gateway_tasks WHERE gateway_id = ?1 AND version <= ?2")?
            .execute(params![claim.gateway_id, version])?;
        self.conn()?
            .prepare_cached("DELETE FROM vpn_route_history WHERE gateway_id = ?1 AND version <= ?2")?
            .execute(params![claim.gateway_id, version])?;
        Ok(true)
    }

    /// Record a failed attempt and end the claim; `None` when the claim was lost.
    pub fn record_failure(
        &self,
        claim: &ReconcileClaim,
        error: &str,
        next_retry_ms: i64,
    ) -> Result<Option<u32>, Error> {
        Ok(self
            .conn()?
            .prepare_cached(
                "UPDATE gateway_versions SET attempts = attempts + 1, last_error = ?4, next_retry_at = ?5, \
                 claim_owner = NULL, lease_until = NULL \
                 WHERE gateway_id = ?1 AND claim_token = ?2 AND claim_owner = ?3 RETURNING attempts",
            )?
            .query_row(
                params![claim.gateway_id, claim.token, claim.owner, error, next_retry_ms],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// End a claim without a record (if it is still the latest).
    pub fn release_claim(&self, claim: &ReconcileClaim) -> Result<(), Error> {
        self.conn()?
            .prepare_cached(
                "UPDATE gateway_versions SET claim_owner = NULL, lease_until = NULL \
                 WHERE gateway_id = ?1 AND claim_token = ?2 AND claim_owner = ?3",
            )?
            .execute(params![claim.gateway_id, claim.token, claim.owner])?;
        Ok(())
    }

    /// The failure record of a gateway (`None`: its last reconcile succeeded, or none ran).
    pub fn reconcile_failure(&self, gateway_id: &str) -> Result<Option<ReconcileFailure>, Error> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT attempts, COALESCE(last_error, ''), next_retry_at FROM gateway_versions WHERE gateway_id = ?1 AND attempts > 0",
            )?
            .query_row(params![gateway_id], |r| {
                Ok(ReconcileFailure {
                    attempts: r.get(0)?,
                    last_error: r.get(1)?,
                    next_retry_ms: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// The earliest time at which a claim may find new work (a first task's due time, a
    /// retry time, a lease running out).
    pub fn next_reconcile_wake(&self, now_ms: i64) -> Result<Option<i64>, Error> {
        Ok(self
            .conn()?
            .prepare_cached(
                "SELECT MIN(w) FROM ( \
                   SELECT MAX(t.due_at, COALESCE(g.next_retry_at, 0), COALESCE(g.lease_until, 0)) AS w \
                   FROM gateway_tasks t JOIN gateway_versions g ON g.gateway_id = t.gateway_id \
                   WHERE t.due_at IS NOT NULL AND t.version = (SELECT MIN(version) FROM gateway_tasks t2 WHERE t2.gateway_id = t.gateway_id) \
                   UNION ALL \
                   SELECT MAX(?1, COALESCE(next_retry_at, 0), COALESCE(lease_until, 0)) FROM gateway_versions WHERE attempts > 0)",
            )?
            .query_row(params![now_ms], |r| r.get(0))?)
    }
}

#[cfg(test)]
mod tests {
    use vpnroute_store::{Durability, StoreError};

    use crate::SqliteStore;

    /// A data directory of the delta-task era with tasks pending: migration 7 keeps them as
    /// versions whose before-images come from the ops, so they come into force as before.
    #[test]
    fn pending_delta_tasks_survive_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(dir.path().join("vpnroute.db")).unwrap();
            for sql in [
                include_str!("migrations/001_init.sql"),
                include_str!("migrations/002_route_counts.sql"),
                include_str!("migrations/003_nonces_out.sql"),
                include_str!("migrations/004_route_page_index.sql"),
                include_str!("migrations/005_resource_counts.sql"),
                include_str!("migrations/006_commit_generation.sql"),
            ] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 6).unwrap();
            // In force (applied 1): route 5 with weight 100 and route 7. Pending: v2 makes
            // route 5 standby and creates route 6; v3 deletes route 7.
            conn.execute_batch(
                r#"
                INSERT INTO gateway_versions VALUES ('gw', 3, 1);
                INSERT INTO vpn_routes VALUES (5, 'gw', 'dbr', '', '10.0.0.0/24', 'vco', 0, 10, 0, '', 'Ipsec', 1);
                INSERT INTO vpn_routes VALUES (6, 'gw', 'pbr', '1.0.0.0/8', '10.0.0.0/24', 'vco', 100, 10, 0, '', 'Ipsec', 1);
                INSERT INTO tasks(gateway_id, op, version, due_at, state, created_at) VALUES ('gw',
                  '[{"Upsert":{"route":{"seq":5,"kind":"dbr","gateway_id":"gw","source":"","dest":"10.0.0.0/24","next_hop":"vco","weight":0,"priority":10,"published":false,"description":"","overlay_mode":"Ipsec","create_time":1},"before":{"seq":5,"kind":"dbr","gateway_id":"gw","source":"","dest":"10.0.0.0/24","next_hop":"vco","weight":100,"priority":10,"published":false,"description":"","overlay_mode":"Ipsec","create_time":1}}},{"Upsert":{"route":{"seq":6,"kind":"pbr","gateway_id":"gw","source":"1.0.0.0/8","dest":"10.0.0.0/24","next_hop":"vco","weight":100,"priority":10,"published":false,"description":"","overlay_mode":"Ipsec","create_time":1},"before":null}}]',
                  2, NULL, 'pending', 1);
                INSERT INTO tasks(gateway_id, op, version, due_at, state, created_at) VALUES ('gw',
                  '[{"Remove":{"route":{"seq":7,"kind":"dbr","gateway_id":"gw","source":"","dest":"10.9.0.0/24","next_hop":"vco","weight":100,"priority":10,"published":true,"description":"d","overlay_mode":"Ipsec","create_time":1}}}]',
                  3, 99, 'pending', 2);
                "#,
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        store
            .read(|tx| {
                let tasks: Vec<_> = tx
                    .pending_tasks("gw")?
                    .into_iter()
                    .map(|t| (t.version, t.due_at))
                    .collect();
                assert_eq!(tasks, [(2, None), (3, Some(99))]);
                let at = |v| -> Result<Vec<(i64, i64)>, StoreError> {
                    Ok(tx
                        .routes_at_version("gw", v)?
                        .into_iter()
                        .map(|r| (r.seq, r.weight))
                        .collect())
                };
                assert_eq!(at(1)?, [(5, 100), (7, 100)]);
                assert_eq!(at(2)?, [(5, 0), (6, 100), (7, 100)]);
                assert_eq!(at(3)?, [(5, 0), (6, 100)]);
                let seven = tx.routes_at_version("gw", 2)?.pop().unwrap();
                assert_eq!(
                    (seven.dest.as_str(), seven.published, seven.description.as_str()),
                    ("10.9.0.0/24", true, "d")
                );
                Ok::<_, StoreError>(())
            })
            .unwrap();
    }
}
