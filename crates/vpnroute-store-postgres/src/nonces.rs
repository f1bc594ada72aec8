//! State every replica shares besides the store's records: signature nonces ([`PgNonces`])
//! and the request rate limiter's windows ([`PgRateLimiter`]), each one statement (one round
//! trip) per request on the database's `nonces` and `rate_windows` tables.
//!
//! Both use a pool whose sessions commit asynchronously (`synchronous_commit=off`): a
//! committed row is visible to every replica at once, only its WAL flush is deferred
//! (PostgreSQL flushes within `3 × wal_writer_delay`, 600 ms by default). So a nonce recorded
//! on one replica is refused by every other from that moment on, and across restarts of
//! vpnroute; only a crash of PostgreSQL itself can forget the last fraction of a second of
//! nonces, which is what `NonceStore::record(…, durable: false)` allows. A durable record
//! (the nonce of a write request) uses the ordinary pool and waits for the flush.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use vpnroute_store::{NonceStore, RateLimiter, StoreError};

use crate::{pg_err, section, PgStore};

/// How often expired nonces are deleted (at most; by whichever request comes first).
const PRUNE_EVERY_MS: i64 = 10_000;

/// Signature nonces in the database, shared by every replica: a (key, nonce) is refused
/// until its keep-until time, then accepted again (and kept anew).
pub struct PgNonces {
    store: Arc<PgStore>,
    last_prune: AtomicI64,
}

impl PgNonces {
    pub(crate) fn new(store: Arc<PgStore>) -> Self {
        PgNonces {
            store,
            last_prune: AtomicI64::new(0),
        }
    }

    fn prune(&self, now_ms: i64) {
        let last = self.last_prune.load(Ordering::Relaxed);
        if now_ms - last < PRUNE_EVERY_MS
            || self
                .last_prune
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pruned = self.store.fast_connection().and_then(|c| {
            self.store.block(async {
                c.execute("DELETE FROM nonces WHERE keep_until < $1", &[&now_ms])
                    .await
                    .map_err(pg_err)
            })
        });
        match pruned {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "postgres: expired nonces deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "postgres: pruning nonces failed"),
        }
    }
}

impl NonceStore for PgNonces {
    fn record(
        &self,
        access_key_id: &str,
        nonce: &str,
        now_ms: i64,
        keep_until_ms: i64,
        durable: bool,
    ) -> Result<bool, StoreError> {
        section(|| {
            self.prune(now_ms);
            let conn = if durable {
                self.store.connection()?
            } else {
                self.store.fast_connection()?
            };
            let (key, nonce) = (access_key_id.as_bytes(), nonce.as_bytes());
            let fresh = self.store.block(async {
                let st = conn
                    .prepare_cached(
                        "INSERT INTO nonces AS s(access_key_id, nonce, keep_until) VALUES ($1, $2, $3) \
                         ON CONFLICT (access_key_id, nonce) DO UPDATE SET keep_until = EXCLUDED.keep_until \
                         WHERE s.keep_until < $4 RETURNING 1",
                    )
                    .await
                    .map_err(pg_err)?;
                let rows = conn
                    .query(&st, &[&key, &nonce, &keep_until_ms, &now_ms])
                    .await
                    .map_err(pg_err)?;
                Ok::<_, StoreError>(!rows.is_empty())
            })?;
            Ok(fresh)
        })
    }

    fn remembered(&self) -> usize {
        let counted = section(|| {
            let conn = self.store.fast_connection()?;
            self.store.block(async {
                let n: i64 = conn
                    .query_one("SELECT COUNT(*) FROM nonces", &[])
                    .await
                    .map_err(pg_err)?
                    .get(0);
                Ok::<_, StoreError>(n)
            })
        });
        counted.map(|n| n.max(0) as usize).unwrap_or(0)
    }
}

/// Fixed one-second windows per (access key, action) in the database, shared by every
/// replica: one `INSERT … ON CONFLICT DO UPDATE … RETURNING` per call. Precision: a window is
/// the second of the admitting replica's clock; calls are counted across replicas exactly
/// (one row, updated atomically), so at most `rps` calls are admitted in any window, give or
/// take the clock skew between replicas at window boundaries (a replica whose clock is
/// behind counts into the newer window already open). When the database cannot be reached
/// the call is admitted (the request then meets the same database and fails on its own).
pub struct PgRateLimiter {
    store: Arc<PgStore>,
    rps: u32,
}

impl PgRateLimiter {
    pub(crate) fn new(store: Arc<PgStore>, rps: u32) -> Self {
        PgRateLimiter { store, rps }
    }
}

impl RateLimiter for PgRateLimiter {
    fn admit(&self, access_key_id: &str, action: &str, now_ms: i64) -> bool {
        if self.rps == 0 {
            return true;
        }
        let second = now_ms.div_euclid(1000);
        let counted = section(|| {
            let conn = self.store.fast_connection()?;
            let (key, action) = (access_key_id.as_bytes(), action.as_bytes());
            self.store.block(async {
                let st = conn
                    .prepare_cached(
                        "INSERT INTO rate_windows AS w(access_key_id, action, second, n) VALUES ($1, $2, $3, 1) \
                         ON CONFLICT (access_key_id, action) DO UPDATE SET \
                         n = CASE WHEN EXCLUDED.second > w.second THEN 1 ELSE w.n + 1 END, \
                         second = GREATEST(w.second, EXCLUDED.second) RETURNING n",
                    )
                    .await
                    .map_err(pg_err)?;
                let n: i64 = conn
                    .query_one(&st, &[&key, &action, &second])
                    .await
                    .map_err(pg_err)?
                    .get(0);
                Ok::<_, StoreError>(n)
            })
        });
        match counted {
            Ok(n) => n <= i64::from(self.rps),
            Err(e) => {
                tracing::warn!(error = %e, "postgres: rate limiter unavailable; call admitted");
                true
            }
        }
    }
}
