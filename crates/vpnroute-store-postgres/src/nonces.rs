//! State every replica shares besides the store's records: signature nonces ([`PgNonces`])
//! and the request rate limiter's windows ([`PgRateLimiter`]), in the database's `nonces` and
//! `rate_windows` tables. Nonce records of concurrent requests go to PostgreSQL as one
//! statement per batch (`crate::batch`): one `INSERT … SELECT FROM unnest(…) ON CONFLICT …
//! RETURNING` whose answer tells each request whether its nonce was fresh; the rate limiter
//! is one statement per call.
//!
//! Both use a pool whose sessions commit asynchronously (`synchronous_commit=off`): a
//! committed row is visible to every replica at once, only its WAL flush is deferred
//! (PostgreSQL flushes within `3 × wal_writer_delay`, 600 ms by default). So a nonce recorded
//! on one replica is refused by every other from that moment on, and across restarts of
//! vpnroute; only a crash of PostgreSQL itself can forget the last fraction of a second of
//! nonces, which is what `NonceStore::record(…, durable: false)` allows. A durable record
//! (the nonce of a write request) is batched only with other durable ones, on the ordinary
//! pool, and each batch waits for its flush before any of its callers is answered.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use vpnroute_store::{NonceStore, RateLimiter, StoreError};

use crate::batch::{copy_err, Batcher};
use crate::{pg_err, pool_err, section, PgStore};

/// How often expired nonces are deleted (at most; by whichever request comes first).
const PRUNE_EVERY_MS: i64 = 10_000;

/// Signature nonces in the database, shared by every replica: a (key, nonce) is refused
/// until its keep-until time, then accepted again (and kept anew).
pub struct PgNonces {
    store: Arc<PgStore>,
    last_prune: AtomicI64,
    /// Reads' nonces: the fast pool (asynchronous commit).
    fast: Batcher<NonceRecord, bool>,
    /// Writes' nonces: the ordinary pool (each batch waits for its WAL flush).
    durable: Batcher<NonceRecord, bool>,
}

impl PgNonces {
    pub(crate) fn new(store: Arc<PgStore>) -> Self {
        let rt = store.rt.handle();
        PgNonces {
            fast: start_batcher(rt, store.fast_pool.clone()),
            durable: start_batcher(rt, store.pool.clone()),
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

/// One nonce to record (bytes: a nonce may hold any byte).
pub(crate) struct NonceRecord {
    key: Vec<u8>,
    nonce: Vec<u8>,
    now_ms: i64,
    keep_until_ms: i64,
}

/// Records every nonce of a batch in one statement. Each row's own `now` decides whether
/// an existing row has expired (the input is joined back in the `WHERE` of the update).
const RECORD_BATCH: &str = "WITH input AS (SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int8[], $4::int8[]) AS t(k, n, keep, now)) \
     INSERT INTO nonces AS s(access_key_id, nonce, keep_until) SELECT k, n, keep FROM input \
     ON CONFLICT (access_key_id, nonce) DO UPDATE SET keep_until = EXCLUDED.keep_until \
     WHERE s.keep_until < (SELECT i.now FROM input i WHERE i.k = EXCLUDED.access_key_id AND i.n = EXCLUDED.nonce) \
     RETURNING access_key_id, nonce";

/// How many times a batch PostgreSQL aborted as a deadlock is sent again (rows are sent in
/// one order, so two batches should never deadlock; this bounds the odd case).
const DEADLOCK_RETRIES: usize = 3;

/// The batching loop of nonce records on `pool` (the fast pool: asynchronous commit; the
/// ordinary pool: each batch waits for its WAL flush).
fn start_batcher(rt: &tokio::runtime::Handle, pool: Pool) -> Batcher<NonceRecord, bool> {
    Batcher::start(rt, move |batch: Vec<NonceRecord>| {
        let pool = pool.clone();
        async move { record_batch(&pool, batch).await }
    })
}

/// One statement for the batch; `true` for each nonce recorded now. The second and later
/// copies of one (key, nonce) in a batch are refused here (ON CONFLICT DO UPDATE may not meet
/// one row twice in a statement): whatever the statement answers for the first copy, the
/// nonce is in force once it has run.
async fn record_batch(pool: &Pool, batch: Vec<NonceRecord>) -> Vec<Result<bool, StoreError>> {
    let mut first: HashMap<(&[u8], &[u8]), usize> = HashMap::with_capacity(batch.len());
    let mut unique: Vec<usize> = Vec::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        first.entry((&r.key[..], &r.nonce[..])).or_insert_with(|| {
            unique.push(i);
            i
        });
    }
    // One order for every batch (of every replica): two batches lock their rows in the
    // same order and cannot deadlock each other.
    unique.sort_by(|&a, &b| (&batch[a].key, &batch[a].nonce).cmp(&(&batch[b].key, &batch[b].nonce)));
    let keys: Vec<&[u8]> = unique.iter().map(|&i| &batch[i].key[..]).collect();
    let nonces: Vec<&[u8]> = unique.iter().map(|&i| &batch[i].nonce[..]).collect();
    let keeps: Vec<i64> = unique.iter().map(|&i| batch[i].keep_until_ms).collect();
    let nows: Vec<i64> = unique.iter().map(|&i| batch[i].now_ms).collect();
    let mut attempt = 0;
    let fresh = loop {
        // (whether PostgreSQL aborted the statement as a deadlock, the error)
        let sent = async {
            let conn = pool.get().await.map_err(|e| (false, pool_err(e)))?;
            let st = conn.prepare_cached(RECORD_BATCH).await.map_err(|e| (false, pg_err(e)))?;
            conn.query(&st, &[&keys, &nonces, &keeps, &nows])
                .await
                .map_err(|e| (e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED), pg_err(e)))
        };
        match sent.await {
            Ok(rows) => {
                break Ok(rows
                    .iter()
                    .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
                    .collect::<HashSet<_>>())
            }
            Err((true, e)) if attempt < DEADLOCK_RETRIES => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "postgres: nonce batch deadlocked; sent again");
            }
            Err((_, e)) => break Err(e),
        }
    };
    batch
        .iter()
        .enumerate()
        .map(|(i, r)| match &fresh {
            Err(e) => Err(copy_err(e)),
            Ok(_) if first[&(&r.key[..], &r.nonce[..])] != i => Ok(false),
            Ok(set) => Ok(set.contains(&(r.key.clone(), r.nonce.clone()))),
        })
        .collect()
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
            let record = NonceRecord {
                key: access_key_id.as_bytes().to_vec(),
                nonce: nonce.as_bytes().to_vec(),
                now_ms,
                keep_until_ms,
            };
            let batcher = if durable { &self.durable } else { &self.fast };
            self.store.block(batcher.ask(record))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdb::TestDb;

    fn rec(key: &str, nonce: &str, now_ms: i64, keep_until_ms: i64) -> NonceRecord {
        NonceRecord {
            key: key.into(),
            nonce: nonce.into(),
            now_ms,
            keep_until_ms,
        }
    }

    fn answers(store: &PgStore, pool: &Pool, batch: Vec<NonceRecord>) -> Vec<bool> {
        store
            .block(record_batch(pool, batch))
            .into_iter()
            .map(|a| a.unwrap())
            .collect()
    }

    #[test]
    fn a_duplicate_in_one_batch_is_refused_and_each_record_uses_its_own_clock() {
        let Some(db) = TestDb::create() else { return };
        let store = PgStore::open(&db.url()).unwrap();
        for pool in [&store.fast_pool, &store.pool] {
            let p = if std::ptr::eq(pool, &store.pool) { "d" } else { "f" };
            let (a, b, c) = (format!("{p}a"), format!("{p}b"), format!("{p}c"));
            // Out of order and with copies: each copy after the first is refused.
            let got = answers(
                &store,
                pool,
                vec![rec("k", &b, 10, 100), rec("k", &a, 10, 100), rec("k", &b, 11, 100), rec("j", &a, 10, 100), rec("k", &a, 12, 100)],
            );
            assert_eq!(got, [true, true, false, true, false]);
            // `a` expired by the first record's clock (101 > 100), not by the second's.
            let got = answers(&store, pool, vec![rec("k", &a, 101, 200), rec("k", &b, 100, 200), rec("k", &c, 50, 60), rec("k", &c, 50, 60)]);
            assert_eq!(got, [true, false, true, false]);
        }
        assert_eq!(store.nonces().remembered(), 8);
    }
}
