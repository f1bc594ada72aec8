//! # vpnroute-store-postgres
//!
//! The PostgreSQL implementation of the `vpnroute-store` traits, for one or several
//! `vpnroute serve` replicas on one database: [`PgStore`] (transactions, group commit, the
//! read cache), [`PgNonces`] (signature nonces shared by every replica), [`PgRateLimiter`]
//! (shared fixed-window counters) and the commit generation ([`PgStore::change_feed`]).
//! Driver: `tokio-postgres` with a `deadpool-postgres` pool; tokio-postgres is used nowhere
//! else.
//!
//! * **Sync traits over an async driver.** The store traits are synchronous. The store owns a
//!   small tokio runtime (two worker threads) that runs the connections; each query is
//!   `block_on`-ed on the calling thread. A call from a tokio worker thread (the server runs
//!   short reads inline on its runtime) is wrapped in `tokio::task::block_in_place`, and one
//!   from a current-thread runtime runs on a scoped helper thread, so no caller can make
//!   `block_on` panic. A writer thread runs its own transactions on a runtime and a
//!   connection of its own (`writer.rs`): no hand-off to the store's threads per statement.
//! * **Isolation.** Write transactions run at READ COMMITTED with explicit row locks:
//!   [`vpnroute_store::WriteTx::lock_gateway`] locks the gateway's row of `gateway_locks`
//!   (an upsert), so check-then-insert logic on a gateway is serialised across
//!   replicas, and each statement after the lock sees every transaction committed before it
//!   was granted (under REPEATABLE READ the snapshot would predate the lock and the check
//!   would miss the other writer's row). Read transactions run at REPEATABLE READ READ ONLY:
//!   one consistent snapshot, never a serialization failure.
//! * **Retries.** Serialization failures (40001), deadlocks (40P01), lock timeouts (55P03,
//!   `lock_timeout` is 5 s), too many connections (53300), an administrator's shutdown and a
//!   lost connection are [`StoreError::Retryable`]: [`Store::submit_write`] reruns the batch
//!   up to [`vpnroute_store::WRITE_RETRIES`] times, then the request is answered
//!   `ServiceUnavailable` (503). Unique and foreign-key violations are
//!   [`StoreError::Constraint`], a full disk [`StoreError::Unavailable`].
//! * **Round trips.** Statements are prepared once per connection (deadpool's statement
//!   cache); transaction control (`BEGIN`, savepoints) is sent in the same round trip as the
//!   next statement, and the commit (checks of predictions, generation bump, `COMMIT`) is one
//!   round trip; the `NOTIFY` of a burst of commits follows as one statement
//!   (`PgStore::notify_commits`).
//! * **Writers.** Write requests ([`Store::submit_write`]) go to a few writer threads, each
//!   request in a transaction of its own (PostgreSQL groups the WAL flushes of concurrent
//!   commits itself; batches of requests deadlocked on each other's gateway locks, see
//!   `writer.rs`). Reads a request needs after its gateway's lock (one statement), its claim
//!   or its record are sent in the same round trip and answer the request's later reads
//!   (`tx.rs`). On the writer threads a transaction may also *predict* (an access key as
//!   recently read, a version change at once from what the lock's reads found): each
//!   prediction is checked by a statement in the next round trip that fails unless it held,
//!   and the transaction is then retried reading (`tx.rs`, `Deferred`).
//! * **Reading ahead** (`ahead.rs`): a transaction told what it is about to read
//!   ([`vpnroute_store::ReadTx::read_ahead`]; a replica mirroring the specs of many gateways
//!   another replica changed) reads it with one set-based statement per kind of read, all in
//!   one round trip, and answers the single reads from that.
//! * **What a read sees** (see [`PgStore::read_fast`]): every read takes the commit
//!   generation from a query PostgreSQL received after the read began (concurrent reads share
//!   one such query), so it never answers older than any commit acknowledged by any replica
//!   before the read began; cached results are used only at exactly that generation.
//! * **Batching** (`batch.rs`): the generation queries of concurrent reads and the nonces of
//!   concurrent reads go to PostgreSQL as one statement per batch (the *fast lane*: a loop
//!   takes the first waiting request and everything queued behind it, no delay; see
//!   [`PgNonces`]); a write's nonce is taken by its own transaction on a writer thread, and
//!   otherwise batched the same way with other writes' nonces. An API read
//!   authenticated on this replica's cache brings its nonce with its own generation query
//!   and awaits the one answer ([`vpnroute_store::NonceReads`], implemented by [`PgNonces`]);
//!   a read fully answered from the cache then takes no connection at all. A request's first
//!   authentication (before its nonce, and for a write before the writer) may use keys read
//!   in the last second (`recent_auth.rs`); its own read or write authenticates it again.
//! * **Migrations** (`schema.rs`): embedded, versioned (`schema_migrations`), applied at open
//!   under a session advisory lock: the first replica migrates, the others wait and find
//!   nothing to do.

mod ahead;
mod batch;
mod nonces;
mod recent_auth;
mod reconcile;
mod schema;
#[cfg(test)]
mod testdb;
mod tx;
mod writer;

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;
use vpnroute_store::cache::ReadCache;
use vpnroute_store::{ChangeFeed, ReadFnMut, ReadTx, Store, StoreError, WriteFnMut, WriteJob, WriteTx};

pub use nonces::{PgNonces, PgRateLimiter};
pub use tx::PgTx;

/// Connections for read transactions and for writes off the writer threads, which have their
/// own (the pool grows on demand).
const POOL_SIZE: usize = 12;
/// Connections for nonces, rate-limit counters and the NOTIFY of commits (asynchronous
/// commit, see [`PgNonces`]).
const FAST_POOL_SIZE: usize = 6;
/// How long a request waits for a free connection before it is answered busy.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// The least time between two NOTIFYs of this process's commits (see
/// `PgStore::notify_commits`). The other replicas' mirrors look at what they heard every
/// 50 ms, and reads do not depend on it; at 2 ms, a replica under a stream of writes sent one
/// NOTIFY (a transaction of its own) per two or three writes (BENCHMARKS.md "Session 7").
const NOTIFY_GAP: Duration = Duration::from_millis(20);
/// The NOTIFY channel carrying the commit generation.
const CHANNEL: &str = "vpnroute_gen";
/// Number of `store_gen` slots (migration 001).
const GEN_SLOTS: i32 = 64;

/// A PostgreSQL database as the store, from a `postgres://user[:password]@host:port/db`
/// connection string (or a `key=value` one).
pub struct PgStore {
    me: Weak<PgStore>,
    rt: StoreRuntime,
    pool: Pool,
    fast_pool: Pool,
    location: String,
    cache: ReadCache,
    /// Authentication data read recently, for first checks only (`recent_auth.rs`).
    pub(crate) recent_auth: recent_auth::RecentAuth,
    generation: Generation,
    /// The generation queries of concurrent reads (see [`PgStore::read_fast`]) and reads'
    /// nonces, one statement per batch, on this store's runtime. (On the server's runtime
    /// instead, measured: signed Describe 13% slower, the loop competing with the requests
    /// for those threads.)
    fast_lane: batch::Batcher<nonces::Fast, nonces::FastAnswer>,
    /// When this process last deleted expired nonces (see `PgStore::prune_nonces`).
    last_nonce_prune: AtomicI64,
    queue: OnceLock<writer::WriteQueue>,
    /// Keeps the LISTEN connection's task alive with the store.
    _listener: Option<tokio::task::JoinHandle<()>>,
    /// The connection settings (a writer thread opens its own connection with them).
    config: tokio_postgres::Config,
    /// Woken by each commit of this process: see [`PgStore::notify_commits`].
    pub(crate) commit_notice: Arc<tokio::sync::Notify>,
}

/// The store's own runtime, shut down without waiting when the store is dropped: the last
/// owner may drop it on another runtime's thread (the server's tasks ending at shutdown),
/// where a runtime may not be dropped the blocking way.
struct StoreRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for StoreRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("the store's runtime lives as long as the store")
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The newest commit generation this process has seen (a commit of its own, a read's
/// snapshot, or a NOTIFY from another replica).
#[derive(Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl ChangeFeed for Generation {
    fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn publish(&self, generation: u64) {
        self.0.fetch_max(generation, Ordering::AcqRel);
    }
}

/// A PostgreSQL error as the store's error class.
pub(crate) fn pg_err(e: tokio_postgres::Error) -> StoreError {
    let text = format!("postgres: {}", error_text(&e));
    let retryable = |_: &tokio_postgres::Error| StoreError::Retryable(text.clone());
    match e.code() {
        None if e.is_closed() => retryable(&e),
        None => match e.as_db_error() {
            Some(_) => StoreError::Backend(text),
            // An I/O error or a connection lost mid-query.
            None => retryable(&e),
        },
        Some(code) => {
            if [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::QUERY_CANCELED,
            ]
            .contains(code)
            {
                retryable(&e)
            } else if code.code().starts_with("23") {
                StoreError::Constraint(text)
            } else if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
                StoreError::Unavailable(text)
            } else {
                StoreError::Backend(text)
            }
        }
    }
}

/// An error with its causes (tokio-postgres shows only "db error" / "error connecting to
/// server" at the top).
fn error_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(e),
        e => StoreError::Retryable(format!("postgres pool: {e}")),
    }
}

/// `postgres://user@host:port/db` of a configuration, never its password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// Run `f` where it may block: inside `block_in_place` on a tokio worker thread.
pub(crate) fn section<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// A pool of at most `size` connections of `config` (each connection's task is spawned on
/// the runtime that creates it).
fn make_pool(config: tokio_postgres::Config, size: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .map_err(|e| StoreError::Other(format!("postgres pool: {e}")))
}

/// Whether `url` is a connection string this store can use (without connecting).
pub fn check_connection_string(url: &str) -> Result<(), String> {
    tokio_postgres::Config::from_str(url)
        .map(|_| ())
        .map_err(|e| format!("bad PostgreSQL connection string: {e}"))
}

impl PgStore {
    /// Connect to the database of `url`, apply the migrations (under the migration lock) and
    /// start listening for other replicas' commits. Fails (without panicking) on a bad
    /// string or an unreachable database.
    pub fn open(url: &str) -> Result<Arc<PgStore>, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Other(format!("bad PostgreSQL connection string: {e}")))?;
        if config.get_hosts().is_empty() {
            config.host("localhost");
        }
        config.application_name("vpnroute");
        config.connect_timeout(Duration::from_secs(10));
        config.options("-c lock_timeout=5000 -c idle_in_transaction_session_timeout=60000");
        let location = describe(&config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(format!("postgres runtime: {e}")))?;
        let pool = make_pool(config.clone(), POOL_SIZE)?;
        // Nonces and rate-limit windows: committed without waiting for the WAL flush (see
        // `PgNonces`); visible to every replica at once all the same.
        let mut fast = config.clone();
        fast.options("-c lock_timeout=5000 -c synchronous_commit=off");
        let fast_pool = make_pool(fast, FAST_POOL_SIZE)?;
        let fast_lane = nonces::start_fast_lane(rt.handle(), fast_pool.clone());
        let commit_notice = Arc::new(tokio::sync::Notify::new());
        rt.spawn(PgStore::notify_commits(fast_pool.clone(), commit_notice.clone()));
        let generation = Generation::default();
        let listener = rt.block_on(async {
            let client = pool.get().await.map_err(|e| {
                let why = match e {
                    deadpool_postgres::PoolError::Backend(e) => error_text(&e),
                    e => e.to_string(),
                };
                StoreError::Other(format!("{location}: cannot connect: {why}"))
            })?;
            schema::migrate(&client).await?;
            let g = current_generation(&client).await?;
            generation.publish(g);
            Ok::<_, StoreError>(listen(config.clone(), generation.0.clone()).await)
        })?;
        Ok(Arc::new_cyclic(|me| PgStore {
            me: me.clone(),
            rt: StoreRuntime(Some(rt)),
            pool,
            fast_pool,
            location,
            cache: ReadCache::default(),
            recent_auth: Default::default(),
            generation,
            fast_lane,
            last_nonce_prune: AtomicI64::new(0),
            queue: OnceLock::new(),
            _listener: listener,
            config,
            commit_notice,
        }))
    }

    /// The NOTIFY of the commit generation to every replica (and `vpnroute admin`)
    /// listening, for the commits of this process: after a commit wakes it, one statement
    /// sends the generation committed by then (read after those commits), at most one every
    /// [`NOTIFY_GAP`] — a burst of commits is heard of as one, and the listeners (this
    /// replica's own among them) wake once for it. What the others learn of this replica's
    /// commits is at most that gap and one round trip later; reads do not depend on it (they
    /// read the generation from PostgreSQL). Ends with the store's runtime.
    async fn notify_commits(pool: Pool, notice: Arc<tokio::sync::Notify>) {
        loop {
            // A commit after a quiet time is heard of at once; the commits of the gap after
            // a NOTIFY (the permit `notify_one` leaves) with the next one.
            notice.notified().await;
            let sent = async {
                let conn = pool.get().await.map_err(pool_err)?;
                let st = conn.prepare_cached(tx::NOTIFY_GENERATION).await.map_err(pg_err)?;
                conn.query_one(&st, &[]).await.map_err(pg_err)
            };
            if let Err(e) = sent.await {
                // Heard of with the next commit; the mirror's drift check covers the rest.
                tracing::warn!(error = %e, "postgres: the NOTIFY of commits failed");
            }
            tokio::time::sleep(NOTIFY_GAP).await;
        }
    }

    /// Run `f` to completion on this store's runtime, from any thread. (A write transaction
    /// on a writer thread's own connection runs its statements on that thread's own runtime
    /// instead, see `writer.rs`; everything else, on any connection of the shared pools, runs
    /// here: a connection made on a writer's runtime would stall whenever that writer idles.)
    pub(crate) fn block<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        match tokio::runtime::Handle::try_current() {
            Err(_) => self.rt.block_on(f),
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.rt.block_on(f))
            }
            // A current-thread runtime cannot lend its thread: block another one.
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| self.rt.block_on(f))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            }),
        }
    }

    pub(crate) fn connection(&self) -> Result<Object, StoreError> {
        self.block(async { self.pool.get().await.map_err(pool_err) })
    }

    pub(crate) fn fast_connection(&self) -> Result<Object, StoreError> {
        self.block(async { self.fast_pool.get().await.map_err(pool_err) })
    }

    /// The nonce store of this database (shared by every replica; see [`PgNonces`]).
    pub fn nonces(self: &Arc<Self>) -> PgNonces {
        PgNonces::new(self.clone())
    }

    /// The rate limiter of this database (shared by every replica; see [`PgRateLimiter`]).
    pub fn rate_limiter(self: &Arc<Self>, rps: u32) -> PgRateLimiter {
        PgRateLimiter::new(self.clone(), rps)
    }

    /// Queue a job for the writer threads (started on first use).
    fn queue_write(&self, queued: writer::Queued) {
        self.queue.get_or_init(|| writer::start(self.me.clone())).send(queued);
    }

    pub fn write<T, E>(&self, f: impl FnOnce(&PgTx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        section(|| {
            let tx = match writer::own_connection(self) {
                Some(conn) => PgTx::begin_write(self, conn.map_err(E::from)?, true),
                None => PgTx::begin_write(self, self.connection().map_err(E::from)?, false),
            };
            let v = match f(&tx) {
                Ok(v) => v,
                Err(e) => {
                    tx.rollback();
                    return Err(e);
                }
            };
            tx.commit().map_err(E::from)?;
            Ok(v)
        })
    }

    /// Run `f` on one consistent snapshot (REPEATABLE READ READ ONLY), taking results from
    /// the read cache where it holds them at the snapshot's generation.
    pub fn read<T, E>(&self, f: impl FnOnce(&PgTx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        section(|| {
            let tx = PgTx::begin_read(self, self.connection().map_err(E::from)?).map_err(E::from)?;
            let result = f(&tx);
            let _ = tx.end();
            result
        })
    }

    /// Like [`PgStore::read`], but a transaction is begun (and a connection taken) only if
    /// some result is not in the cache. The generation is read first, in one autocommit
    /// statement shared by the reads waiting at the time it is sent: a read uses only the
    /// answer of a statement sent after the read began (a read arriving while one is in
    /// flight waits for the next). If every result is cached at that generation the read is
    /// answered without a transaction; it is exactly the committed state of that generation,
    /// which includes every commit acknowledged (by any replica) before the read began. If a
    /// result must be read and the snapshot then begun is at a newer generation than cached
    /// results already used, `f` runs again with [`PgStore::read`]. Either way `f` sees one
    /// consistent committed state.
    pub fn read_fast<T, E>(&self, mut f: impl FnMut(&PgTx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let torn = section(|| -> Result<Option<T>, E> {
            // The answer of a query sent after this call began (concurrent reads share it).
            let generation = self.generation_now().map_err(E::from)?;
            self.generation.publish(generation);
            let tx = PgTx::optimistic(self, generation);
            let result = f(&tx);
            if tx.is_torn() {
                let _ = tx.end();
                return Ok(None);
            }
            let ended = tx.end();
            let v = result?;
            ended.map_err(E::from)?;
            Ok(Some(v))
        })?;
        match torn {
            Some(v) => Ok(v),
            None => self.read(f),
        }
    }

    /// A read at `generation`, a generation read by a statement sent after the read began
    /// (see [`PgStore::read_fast`]): `f` runs on the results cached at exactly that
    /// generation, without the database and without blocking; if one is not cached, `f`
    /// runs again with [`PgStore::read`] (a snapshot at that generation or newer, so still
    /// one that includes every commit acknowledged before the read began).
    pub(crate) fn read_at<T, E>(&self, generation: u64, mut f: impl FnMut(&PgTx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        self.generation.publish(generation);
        let tx = PgTx::cache_only(self, generation);
        let result = f(&tx);
        let torn = tx.is_torn();
        let _ = tx.end();
        if torn {
            return self.read(f);
        }
        result
    }

    /// Run `f` on the results cached at the newest generation this process knows of
    /// ([`ChangeFeed::current`]), never the database: `Ok(false)` if `f` needed a result that
    /// was not cached (see [`vpnroute_store::NonceReads::read_cached_with`]).
    /// Authentication data may also come from what was read in the last second
    /// (`recent_auth.rs`): this read is a first check, which the request's own read or write
    /// repeats on its state.
    pub(crate) fn read_cached(&self, f: &mut ReadFnMut<'_>) -> Result<bool, StoreError> {
        let mut tx = PgTx::cache_only(self, self.generation.current());
        tx.first_check = true;
        let result = f(&tx as &dyn ReadTx);
        let torn = tx.is_torn();
        let _ = tx.end();
        if torn {
            return Ok(false);
        }
        result.map(|()| true)
    }
}

/// The commit generation of the state `client` sees now (or of its transaction's snapshot).
pub(crate) async fn current_generation(client: &Object) -> Result<u64, StoreError> {
    let st = client
        .prepare_cached("SELECT sum(n)::BIGINT FROM store_gen")
        .await
        .map_err(pg_err)?;
    let g: i64 = client.query_one(&st, &[]).await.map_err(pg_err)?.get(0);
    Ok(g as u64)
}

/// LISTEN for the generations other replicas commit; `None` if the listener could not start
/// (then only reads and this process's commits move the generation, which is all reads need).
/// Returns once the LISTEN is in place (or after 5 s at most), so that every commit made after
/// the store has opened is heard of.
async fn listen(config: tokio_postgres::Config, generation: Arc<AtomicU64>) -> Option<tokio::task::JoinHandle<()>> {
    use futures_util::StreamExt;
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "postgres: LISTEN connection failed");
            return None;
        }
    };
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let (listening_tx, listening_rx) = tokio::sync::oneshot::channel::<()>();
    let mut listening_tx = Some(listening_tx);
    let task = tokio::spawn(async move {
        let listen_sql = format!("LISTEN {CHANNEL}");
        let listening = client.batch_execute(&listen_sql);
        tokio::pin!(listening);
        let mut listening_done = false;
        loop {
            tokio::select! {
                r = &mut listening, if !listening_done => {
                    listening_done = true;
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "postgres: LISTEN failed");
                    }
                    if let Some(tx) = listening_tx.take() {
                        let _ = tx.send(());
                    }
                }
                m = messages.next() => match m {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        if let Ok(g) = n.payload().parse::<u64>() {
                            generation.fetch_max(g, Ordering::AcqRel);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "postgres: LISTEN connection lost");
                        break;
                    }
                    None => break,
                }
            }
        }
    });
    if tokio::time::timeout(std::time::Duration::from_secs(5), listening_rx)
        .await
        .is_err()
    {
        tracing::warn!(
            "postgres: LISTEN not confirmed within 5 s; other replicas' commits are noticed at reads until it is"
        );
    }
    Some(task)
}

impl Store for PgStore {
    fn read_with(&self, f: &mut ReadFnMut<'_>) -> Result<(), StoreError> {
        self.read(|tx| f(tx as &dyn ReadTx))
    }

    fn read_fast_with(&self, f: &mut ReadFnMut<'_>) -> Result<(), StoreError> {
        self.read_fast(|tx| f(tx as &dyn ReadTx))
    }

    fn write_with(&self, f: &mut WriteFnMut<'_>) -> Result<(), StoreError> {
        self.write(|tx| f(tx as &dyn WriteTx))
    }

    fn submit_write(&self, job: Box<dyn WriteJob>) {
        self.queue_write(writer::Queued { job, deferred: false });
    }

    /// Bookkeeping nobody waits for (a reconcile record): committed without waiting for the
    /// WAL flush (`synchronous_commit = off`). A crash of PostgreSQL may lose the last such
    /// commits; the next reconcile records them again.
    fn submit_write_deferred(&self, job: Box<dyn WriteJob>) {
        self.queue_write(writer::Queued { job, deferred: true });
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn change_feed(&self) -> &dyn ChangeFeed {
        &self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_location_never_shows_the_password() {
        let c = tokio_postgres::Config::from_str("postgres://alice:s3cret@db.example:6543/vr").unwrap();
        let shown = describe(&c);
        assert_eq!(shown, "postgres://alice@db.example:6543/vr");
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn a_bad_url_is_an_error_not_a_panic() {
        let e = PgStore::open("postgres://a@b:notaport/x").err().expect("refused");
        assert!(e.to_string().contains("connection string"), "{e}");
    }
}
