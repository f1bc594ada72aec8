//! State every replica shares besides the store's records: signature nonces ([`PgNonces`])
//! and the request rate limiter's windows ([`PgRateLimiter`]), in the database's `nonces` and
//! `rate_windows` tables. Nonce records of concurrent requests go to PostgreSQL as one
//! statement per batch (`crate::batch`): one `INSERT … SELECT FROM unnest(…) ON CONFLICT …
//! RETURNING` whose answer tells each request whether its nonce was fresh. Reads' nonces
//! share the store's fast lane with the generation queries of reads (the same statement also
//! returns the generation in its snapshot when a read is waiting for one); a read that
//! brings its own nonce ([`NonceReads`]) asks for both in one request to the lane. The rate
//! limiter is one statement per call.
//!
//! Both use a pool whose sessions commit asynchronously (`synchronous_commit=off`): a
//! committed row is visible to every replica at once, only its WAL flush is deferred
//! (PostgreSQL flushes within `3 × wal_writer_delay`, 600 ms by default). So a nonce recorded
//! on one replica is refused by every other from that moment on, and across restarts of
//! vpnroute; only a crash of PostgreSQL itself can forget the last fraction of a second of
//! nonces, which is what `NonceStore::record(…, durable: false)` allows. A durable record
//! (the nonce of a write request) is batched only with other durable ones, also without
//! waiting for its flush: the write it admits commits afterwards with a flush, and PostgreSQL's
//! WAL is flushed in order, so once a write is acknowledged its nonce is on disk too (one
//! flush per write, not two). Only the nonce of a write that committed nothing (a refused
//! request) can be lost, by a crash of PostgreSQL within that fraction of a second; replayed,
//! such a request meets the state it met before.
//!
//! Most writes' nonces do not come here: a writer thread's transaction takes its request's
//! nonce itself (`WriteTx::take_nonce`, in `tx.rs`), checked as a prediction with the
//! transaction's next statement and durable with its commit; the retry of a transaction
//! whose nonce check failed, or whose request failed on its own, records it here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use vpnroute_store::{BoxFuture, NonceReads, NonceStore, RateLimiter, ReadFnMut, ReadNonce, ReadTx, StoreError};

use crate::batch::{copy_err, Batcher};
use crate::{pg_err, pool_err, section, PgStore};

/// How often expired nonces are deleted (at most; by whichever request comes first).
const PRUNE_EVERY_MS: i64 = 10_000;

/// Signature nonces in the database, shared by every replica: a (key, nonce) is refused
/// until its keep-until time, then accepted again (and kept anew).
pub struct PgNonces {
    store: Arc<PgStore>,
    /// Writes' nonces (made durable by the write's own commit, see the module docs). Reads'
    /// nonces go to the store's fast lane (with the generation queries of reads).
    durable: Batcher<NonceRecord, bool>,
}

impl PgNonces {
    pub(crate) fn new(store: Arc<PgStore>) -> Self {
        let rt = store.rt.handle();
        PgNonces {
            durable: start_durable(rt, store.fast_pool.clone()),
            store,
        }
    }
}

impl PgStore {
    /// Delete expired nonces, at most every [`PRUNE_EVERY_MS`] per process (by whichever
    /// request comes first: a read's or a write's nonce).
    pub(crate) fn prune_nonces(&self, now_ms: i64) {
        let last = self.last_nonce_prune.load(Ordering::Relaxed);
        if now_ms - last < PRUNE_EVERY_MS
            || self
                .last_nonce_prune
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pruned = self.fast_connection().and_then(|c| {
            self.block(async {
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
macro_rules! record_nonces {
    () => {
        "WITH input AS (SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::int8[], $4::int8[]) AS t(k, n, keep, now)), \
         ins AS (INSERT INTO nonces AS s(access_key_id, nonce, keep_until) SELECT k, n, keep FROM input \
         ON CONFLICT (access_key_id, nonce) DO UPDATE SET keep_until = EXCLUDED.keep_until \
         WHERE s.keep_until < (SELECT i.now FROM input i WHERE i.k = EXCLUDED.access_key_id AND i.n = EXCLUDED.nonce) \
         RETURNING access_key_id, nonce) "
    };
}
const RECORD: &str = concat!(record_nonces!(), "SELECT access_key_id, nonce, NULL::int8 FROM ins");
/// The same, and the commit generation in the statement's snapshot (a row of NULL nonces).
/// Every sub-statement of a `WITH` runs on the statement's one snapshot, taken when
/// PostgreSQL received the statement.
const RECORD_AND_GENERATION: &str = concat!(
    record_nonces!(),
    "SELECT access_key_id, nonce, NULL::int8 FROM ins UNION ALL SELECT NULL, NULL, sum(n)::int8 FROM store_gen"
);
const GENERATION: &str = "SELECT NULL::bytea, NULL::bytea, sum(n)::int8 FROM store_gen";

/// How many times a batch PostgreSQL aborted as a deadlock is sent again (rows are sent in
/// one order, so two batches should never deadlock; this bounds the odd case).
const DEADLOCK_RETRIES: usize = 3;

/// A request to the fast lane: the commit generation now (for a read), a read's nonce, or
/// both (a read that brings its request's nonce).
pub(crate) enum Fast {
    Generation,
    Nonce(NonceRecord),
    GenerationAndNonce(NonceRecord),
}

/// The answer: the generation, whether the nonce was fresh, or both.
pub(crate) enum FastAnswer {
    Generation(u64),
    Fresh(bool),
    GenerationAndFresh(u64, bool),
}

/// The fast lane of a store, on the fast pool (asynchronous commit): the generation queries
/// of concurrent reads and the nonces of concurrent reads, all in one statement per batch.
pub(crate) fn start_fast_lane(rt: &tokio::runtime::Handle, pool: Pool) -> Batcher<Fast, FastAnswer> {
    Batcher::start(rt, move |batch: Vec<Fast>| {
        let pool = pool.clone();
        async move {
            let generation = batch.iter().any(|f| !matches!(f, Fast::Nonce(_)));
            let mut records = Vec::new();
            // Per request: (wants the generation, brings a nonce).
            let kinds: Vec<(bool, bool)> = batch
                .into_iter()
                .map(|f| match f {
                    Fast::Generation => (true, false),
                    Fast::Nonce(r) => {
                        records.push(r);
                        (false, true)
                    }
                    Fast::GenerationAndNonce(r) => {
                        records.push(r);
                        (true, true)
                    }
                })
                .collect();
            let (g, fresh) = record_batch(&pool, &records, generation).await;
            let mut fresh = fresh.into_iter();
            kinds
                .into_iter()
                .map(|(wants_generation, brings_nonce)| {
                    let fresh = brings_nonce.then(|| {
                        fresh
                            .next()
                            .unwrap_or_else(|| Err(StoreError::Backend("postgres: a nonce went unanswered".into())))
                    });
                    let g = wants_generation.then(|| match &g {
                        Ok(Some(g)) => Ok(*g),
                        Ok(None) => Err(StoreError::Backend("postgres: no generation in the answer".into())),
                        Err(e) => Err(copy_err(e)),
                    });
                    match (g, fresh) {
                        (Some(g), None) => Ok(FastAnswer::Generation(g?)),
                        (None, Some(fresh)) => Ok(FastAnswer::Fresh(fresh?)),
                        (Some(g), Some(fresh)) => Ok(FastAnswer::GenerationAndFresh(g?, fresh?)),
                        (None, None) => Err(mixed_up()),
                    }
                })
                .collect()
        }
    })
}

fn mixed_up() -> StoreError {
    StoreError::Backend("postgres: the fast lane answered another request's kind".into())
}

impl PgStore {
    /// The commit generation, from a statement sent after this call began (through the fast
    /// lane, shared with the reads and nonces waiting when it is sent).
    pub(crate) fn generation_now(&self) -> Result<u64, StoreError> {
        match self.block(self.fast_lane.ask(Fast::Generation))? {
            FastAnswer::Generation(g) => Ok(g),
            _ => Err(mixed_up()),
        }
    }
}

/// The batching loop of durable nonce records (writes' nonces), on the asynchronously
/// committing pool: the write each admits flushes them with its own commit (module docs).
fn start_durable(rt: &tokio::runtime::Handle, pool: Pool) -> Batcher<NonceRecord, bool> {
    Batcher::start(rt, move |batch: Vec<NonceRecord>| {
        let pool = pool.clone();
        async move { record_batch(&pool, &batch, false).await.1 }
    })
}

/// One statement for the batch (and, if `generation`, the commit generation in its
/// snapshot); `true` for each nonce recorded now. The second and later copies of one (key,
/// nonce) in a batch are refused here (ON CONFLICT DO UPDATE may not meet one row twice in a
/// statement): whatever the statement answers for the first copy, the nonce is in force once
/// it has run.
pub(crate) async fn record_batch(
    pool: &Pool,
    batch: &[NonceRecord],
    generation: bool,
) -> (Result<Option<u64>, StoreError>, Vec<Result<bool, StoreError>>) {
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
    let sql = match (batch.is_empty(), generation) {
        (true, false) => return (Ok(None), Vec::new()),
        (true, true) => GENERATION,
        (false, false) => RECORD,
        (false, true) => RECORD_AND_GENERATION,
    };
    let mut attempt = 0;
    let answer = loop {
        // (whether PostgreSQL aborted the statement as a deadlock, the error)
        let sent = async {
            let conn = pool.get().await.map_err(|e| (false, pool_err(e)))?;
            let st = conn.prepare_cached(sql).await.map_err(|e| (false, pg_err(e)))?;
            if batch.is_empty() {
                conn.query(&st, &[]).await
            } else {
                conn.query(&st, &[&keys, &nonces, &keeps, &nows]).await
            }
            .map_err(|e| (e.code() == Some(&SqlState::T_R_DEADLOCK_DETECTED), pg_err(e)))
        };
        match sent.await {
            Ok(rows) => {
                let mut g = None;
                let mut fresh = HashSet::with_capacity(rows.len());
                for r in &rows {
                    match r.get::<_, Option<i64>>(2) {
                        Some(n) => g = Some(n as u64),
                        None => {
                            fresh.insert((r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)));
                        }
                    }
                }
                break Ok((g, fresh));
            }
            Err((true, e)) if attempt < DEADLOCK_RETRIES => {
                attempt += 1;
                tracing::debug!(error = %e, attempt, "postgres: nonce batch deadlocked; sent again");
            }
            Err((_, e)) => break Err(e),
        }
    };
    let fresh = batch
        .iter()
        .enumerate()
        .map(|(i, r)| match &answer {
            Err(e) => Err(copy_err(e)),
            Ok(_) if first[&(&r.key[..], &r.nonce[..])] != i => Ok(false),
            Ok((_, set)) => Ok(set.contains(&(r.key.clone(), r.nonce.clone()))),
        })
        .collect();
    let generation = match answer {
        Ok((g, _)) if generation => g
            .map(Some)
            .ok_or_else(|| StoreError::Backend("postgres: no generation in the answer".into())),
        Ok(_) => Ok(None),
        Err(e) => Err(e),
    };
    (generation, fresh)
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
            self.store.prune_nonces(now_ms);
            let record = NonceRecord {
                key: access_key_id.as_bytes().to_vec(),
                nonce: nonce.as_bytes().to_vec(),
                now_ms,
                keep_until_ms,
            };
            if durable {
                return self.store.block(self.durable.ask(record));
            }
            match self.store.block(self.store.fast_lane.ask(Fast::Nonce(record)))? {
                FastAnswer::Fresh(fresh) => Ok(fresh),
                _ => Err(mixed_up()),
            }
        })
    }

    /// A read's nonce travels with the read's generation query ([`PgNonces`] as
    /// [`NonceReads`]).
    fn reads(&self) -> Option<&dyn NonceReads> {
        Some(self)
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

/// A read request on this store waits for PostgreSQL once, without blocking a thread:
/// authenticated first on the results this replica has cached at the newest generation it
/// knows of, then its nonce is recorded by the fast lane's statement that also answers the
/// generation the read then runs at (`PgStore::read_at`).
impl NonceReads for PgNonces {
    fn read_cached_with(&self, f: &mut ReadFnMut<'_>) -> Result<bool, StoreError> {
        self.store.read_cached(f)
    }

    fn record_for_read(&self, nonce: &ReadNonce<'_>) -> BoxFuture<Result<Option<u64>, StoreError>> {
        // (At most every 10 s, and blocking where it may: see `PgStore::block`.)
        self.store.prune_nonces(nonce.now_ms);
        let record = NonceRecord {
            key: nonce.access_key_id.as_bytes().to_vec(),
            nonce: nonce.nonce.as_bytes().to_vec(),
            now_ms: nonce.now_ms,
            keep_until_ms: nonce.keep_until_ms,
        };
        let answer = self.store.fast_lane.ask(Fast::GenerationAndNonce(record));
        Box::pin(async move {
            match answer.await? {
                FastAnswer::GenerationAndFresh(g, fresh) => Ok(fresh.then_some(g)),
                _ => Err(mixed_up()),
            }
        })
    }

    fn read_at_with(&self, generation: u64, f: &mut ReadFnMut<'_>) -> Result<(), StoreError> {
        self.store.read_at(generation, |tx| f(tx as &dyn ReadTx))
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
    use crate::current_generation;
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
            .block(record_batch(pool, &batch, false))
            .1
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
                vec![
                    rec("k", &b, 10, 100),
                    rec("k", &a, 10, 100),
                    rec("k", &b, 11, 100),
                    rec("j", &a, 10, 100),
                    rec("k", &a, 12, 100),
                ],
            );
            assert_eq!(got, [true, true, false, true, false]);
            // `a` expired by the first record's clock (101 > 100), not by the second's.
            let got = answers(
                &store,
                pool,
                vec![
                    rec("k", &a, 101, 200),
                    rec("k", &b, 100, 200),
                    rec("k", &c, 50, 60),
                    rec("k", &c, 50, 60),
                ],
            );
            assert_eq!(got, [true, false, true, false]);
        }
        assert_eq!(store.nonces().remembered(), 8);
    }

    #[test]
    fn a_batch_may_carry_the_generation_and_answers_it_with_or_without_nonces() {
        let Some(db) = TestDb::create() else { return };
        let store = PgStore::open(&db.url()).unwrap();
        let now = || store.block(async { current_generation(&store.pool.get().await.unwrap()).await.unwrap() });
        let g0 = now();
        let (g, fresh) = store.block(record_batch(&store.fast_pool, &[], true));
        assert_eq!((g.unwrap(), fresh.len()), (Some(g0), 0));
        store.write(|tx| tx.next_counter("c").map(|_| ())).unwrap();
        let g1 = now();
        assert!(g1 > g0);
        let batch = [rec("k", "x", 1, 10), rec("k", "x", 1, 10), rec("k", "y", 1, 10)];
        let (g, fresh) = store.block(record_batch(&store.fast_pool, &batch, true));
        assert_eq!(g.unwrap(), Some(g1));
        assert_eq!(
            fresh.into_iter().map(|f| f.unwrap()).collect::<Vec<_>>(),
            [true, false, true]
        );
        let (g, fresh) = store.block(record_batch(&store.fast_pool, &batch[..1], false));
        assert_eq!(
            (g.unwrap(), fresh.into_iter().map(|f| f.unwrap()).collect::<Vec<_>>()),
            (None, vec![false])
        );
    }
}
