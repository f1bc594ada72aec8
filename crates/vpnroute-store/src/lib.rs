//! # vpnroute-store
//!
//! What vpnroute keeps durably, independent of any database: the records (accounts, access
//! keys, resources, routes, VPC entries, ClientTokens, tasks), the transaction traits
//! [`ReadTx`] / [`WriteTx`] with their typed extensions, the [`Store`] that opens
//! transactions and commits write requests ([`Store::submit_write`]), the retryable error
//! class, and small traits for the state that is per host today ([`NonceStore`],
//! [`RateLimiter`], [`ChangeFeed`]). Backends live in their own crates
//! (`vpnroute-store-sqlite`); each runs the suite in the `conformance` module (feature
//! `conformance`).
//!
//! * `Store::write` ([`Store::write_with`]) runs a closure in one transaction: it commits when the closure returns
//!   `Ok` and rolls back otherwise, so a failed request never leaves anything half-written.
//! * [`Store::submit_write`] runs a request's [`WriteJob`] in a transaction of its own or, on
//!   a backend that batches (SQLite's group commit), in a savepoint of a shared one; either
//!   way a request that fails undoes only its own work, and a retryable failure
//!   ([`StoreError::is_retryable`]) reruns the job a bounded number of times before it is
//!   answered `ServiceUnavailable`.
//! * `Store::read` ([`Store::read_with`]) runs a closure on one consistent committed snapshot;
//!   `Store::read_fast` ([`Store::read_fast_with`]) may answer from a read cache (and may run the closure twice).

pub mod cache;
mod local;
mod tx;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;

use vpnroute_domain::ApiError;

pub use local::FixedWindowLimiter;
pub use tx::{from_json, to_json, AnyDoc, DocType, ReadAhead, ReadTx, ReadTxExt, WriteTx, WriteTxExt};
pub use types::{
    AccessKey, Account, ChangeAtOnce, Durability, ReconcileClaim, ReconcileFailure, Resource, ResourceKind, Task,
};

/// A write transaction as handlers name it (kept from when it was a concrete type).
pub type Tx<'a> = dyn WriteTx + 'a;

/// How often a write whose transaction failed with a retryable error is run again.
pub const WRITE_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused for now (a serialization failure, a deadlock, a busy lock): the
    /// same transaction run again may succeed.
    #[error("retryable: {0}")]
    Retryable(String),
    /// A constraint refused the write (a duplicate key).
    #[error("constraint: {0}")]
    Constraint(String),
    /// Any other database failure.
    #[error("database: {0}")]
    Backend(String),
    #[error("corrupt document in {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Other(String),
    /// The data directory cannot take more data now (disk full), or cannot vouch for the
    /// request now (a damaged nonce log): nothing was written, and the same request can
    /// succeed later (once space returns; signed after the damaged log's bound).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A read-cache attempt met a newer snapshot than its cached results; it is retried and
    /// never reaches a caller.
    #[error("read snapshot moved")]
    SnapshotMoved,
    /// The transaction's closure failed (its own error is returned to the caller instead).
    #[error("the transaction was rolled back")]
    RolledBack,
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Retryable(_))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::SnapshotMoved => ApiError::INTERNAL_ERROR,
            StoreError::Retryable(_) => {
                tracing::warn!(error = %e, "store busy");
                ApiError::SERVICE_UNAVAILABLE
            }
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "storage unavailable (full, or a damaged nonce log): write refused with ServiceUnavailable");
                ApiError::SERVICE_UNAVAILABLE
            }
            e => {
                tracing::error!(error = %e, "store error");
                ApiError::INTERNAL_ERROR
            }
        }
    }
}

/// One write request for [`Store::submit_write`].
pub trait WriteJob: Send {
    /// Do the request's work in `tx`: `Ok(true)` keeps it, `Ok(false)` undoes this request's
    /// work only, a retryable `Err` aborts the whole transaction so that it is retried (`run`
    /// is then called again on a fresh transaction). A job keeps its own outcome.
    fn run(&mut self, tx: &dyn WriteTx) -> Result<bool, StoreError>;
    /// Called once at the end: `Ok` when the transaction holding the job's work committed
    /// (the job's outcome stands), `Err` when it did not (nothing of it is durable).
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
    /// The gateway whose lock the job takes, when it is known before it runs: a store with
    /// several writers runs the jobs of one gateway one after the other on one writer
    /// rather than letting a second writer wait on the lock. `None` (the default): any
    /// writer.
    fn affinity(&self) -> Option<&str> {
        None
    }
}

/// A closure over a read transaction, as the object-safe [`Store`] methods take it.
pub type ReadFnMut<'a> = dyn FnMut(&dyn ReadTx) -> Result<(), StoreError> + 'a;
/// A closure over a write transaction, as the object-safe [`Store`] methods take it.
pub type WriteFnMut<'a> = dyn FnMut(&dyn WriteTx) -> Result<(), StoreError> + 'a;

/// A transactional store (used as `Arc<dyn Store>`). The closure methods are object-safe;
/// the typed generic `read`, `read_fast` and `write` on
/// `dyn Store` wrap them. A closure returning `Err` makes the transaction roll back.
pub trait Store: Send + Sync {
    /// Run `f` on one consistent committed snapshot.
    fn read_with(&self, f: &mut ReadFnMut<'_>) -> Result<(), StoreError>;
    /// Like [`Store::read_with`], but possibly answered from a read cache; `f` may run twice
    /// (the first run's result is then discarded).
    fn read_fast_with(&self, f: &mut ReadFnMut<'_>) -> Result<(), StoreError>;
    /// Run `f` in one write transaction (it is called once).
    fn write_with(&self, f: &mut WriteFnMut<'_>) -> Result<(), StoreError>;
    /// Run a write request (see [`WriteJob`]); returns at once, the job is finished later.
    fn submit_write(&self, job: Box<dyn WriteJob>);
    /// Like [`Store::submit_write`] for bookkeeping nobody is waiting to see and that is
    /// redone if lost (the record of a version already in force): a batching backend may hold
    /// it back, for a short bounded time, until a request's write comes to share its commit
    /// (SQLite), or commit it without waiting for the flush to disk (PostgreSQL). Default: as
    /// `submit_write`.
    fn submit_write_deferred(&self, job: Box<dyn WriteJob>) {
        self.submit_write(job)
    }
    /// Where the data is, for messages (a path or a connection string without secrets).
    fn location(&self) -> String;
    /// The commit generation readers are invalidated by.
    fn change_feed(&self) -> &dyn ChangeFeed;
    /// A generation that moves whenever another process (another replica, `vpnroute admin`)
    /// commits; it may also move with this process's own commits. What mirroring replicas
    /// watch. Default: the commit generation.
    fn others_generation(&self) -> u64 {
        self.change_feed().current()
    }
}

impl dyn Store + '_ {
    /// Run `f` on one consistent committed snapshot.
    pub fn read<T, E>(&self, f: impl FnOnce(&dyn ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let (mut f, mut kept) = (Some(f), Kept(None));
        let status = self.read_with(&mut |tx| kept.keep((f.take().expect("a read closure runs once"))(tx)));
        kept.finish(status)
    }

    /// Like `read`, possibly from the read cache; `f` may run twice.
    pub fn read_fast<T, E>(&self, mut f: impl FnMut(&dyn ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut kept = Kept(None);
        let status = self.read_fast_with(&mut |tx| kept.keep(f(tx)));
        kept.finish(status)
    }

    /// Run `f` in one write transaction (commit on `Ok`, roll back on `Err`).
    pub fn write<T, E>(&self, f: impl FnOnce(&dyn WriteTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let (mut f, mut kept) = (Some(f), Kept(None));
        let status = self.write_with(&mut |tx| kept.keep((f.take().expect("a write closure runs once"))(tx)));
        kept.finish(status)
    }
}

impl dyn Store + '_ {
    /// Run `f` through [`Store::submit_write`] and wait for the commit: the work shares a
    /// commit with the requests being written (SQLite's group commit) instead of taking one of
    /// its own. `f` may run more than once (a retried batch). Blocks the calling thread: never
    /// call it from a [`WriteJob`] (the writer would wait for itself).
    pub fn write_queued<T: Send + 'static>(
        &self,
        f: impl FnMut(&dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_queued_as(false, f)
    }

    /// `write_queued` through [`Store::submit_write_deferred`]: may
    /// wait for a request's write to share its commit.
    pub fn write_queued_deferred<T: Send + 'static>(
        &self,
        f: impl FnMut(&dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write_queued_as(true, f)
    }

    /// Run `f` through [`Store::submit_write`] (`deferred`: [`Store::submit_write_deferred`])
    /// without waiting: `done` gets the outcome once the commit has succeeded or failed, on
    /// the store's writer thread (it must not wait for the store).
    pub fn write_then<T: Send + 'static>(
        &self,
        deferred: bool,
        f: impl FnMut(&dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
        done: WriteDone<T>,
    ) {
        let job = Box::new(QueuedWrite { f, result: None, done });
        if deferred {
            self.submit_write_deferred(job);
        } else {
            self.submit_write(job);
        }
    }

    fn write_queued_as<T: Send + 'static>(
        &self,
        deferred: bool,
        f: impl FnMut(&dyn WriteTx) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        self.write_then(
            deferred,
            f,
            Box::new(move |result| {
                let _ = done.send(result);
            }),
        );
        answer
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Other("the writer dropped a queued write".into())))
    }
}

/// What `write_then` (on `dyn Store`) calls with the outcome.
pub type WriteDone<T> = Box<dyn FnOnce(Result<T, StoreError>) + Send>;

/// The [`WriteJob`] of `write_then` (on `dyn Store`).
struct QueuedWrite<F, T> {
    f: F,
    result: Option<Result<T, StoreError>>,
    done: WriteDone<T>,
}

impl<F, T> WriteJob for QueuedWrite<F, T>
where
    F: FnMut(&dyn WriteTx) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn run(&mut self, tx: &dyn WriteTx) -> Result<bool, StoreError> {
        match (self.f)(tx) {
            Ok(v) => {
                self.result = Some(Ok(v));
                Ok(true)
            }
            Err(e) if e.is_retryable() => Err(e),
            Err(e) => {
                self.result = Some(Err(e));
                Ok(false)
            }
        }
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let outcome = match (committed, self.result) {
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Other("a queued write did not run".into())),
            (Err(e), _) => Err(e),
        };
        (self.done)(outcome);
    }
}

/// The typed result of a closure run through an object-safe [`Store`] method: the closure's
/// own error is kept aside (the transaction sees [`StoreError::RolledBack`]) and returned as
/// is.
struct Kept<T, E>(Option<Result<T, E>>);

impl<T, E: From<StoreError>> Kept<T, E> {
    fn keep(&mut self, r: Result<T, E>) -> Result<(), StoreError> {
        let failed = r.is_err();
        self.0 = Some(r);
        if failed {
            Err(StoreError::RolledBack)
        } else {
            Ok(())
        }
    }

    fn finish(self, status: Result<(), StoreError>) -> Result<T, E> {
        match (status, self.0) {
            (Ok(()), Some(r)) => r,
            (Err(StoreError::RolledBack), Some(Err(e))) => Err(e),
            (Err(e), _) => Err(E::from(e)),
            (Ok(()), None) => Err(E::from(StoreError::Other("the transaction closure did not run".into()))),
        }
    }
}

/// Signature nonces seen recently: a replayed (access key, nonce) is refused.
pub trait NonceStore: Send + Sync {
    /// Record one nonce seen at `now_ms`, to be refused until `keep_until_ms` (the end of
    /// its request timestamp's acceptance window); `false` when it is still refused.
    /// `durable`: fail ([`StoreError::Unavailable`]) when the nonce cannot be made durable
    /// (a write must not run on a nonce a restart would forget); otherwise it is kept in
    /// memory and made durable as soon as possible.
    fn record(
        &self,
        access_key_id: &str,
        nonce: &str,
        now_ms: i64,
        keep_until_ms: i64,
        durable: bool,
    ) -> Result<bool, StoreError>;
    /// [`NonceStore::record`] for a request signed at `signed_at_ms`: a store that cannot
    /// vouch for the nonces of requests signed up to some time (SQLite's nonce log found
    /// damaged at start) refuses a durable record of such a request with
    /// [`StoreError::Unavailable`]. By default, `record`.
    fn record_signed(
        &self,
        access_key_id: &str,
        nonce: &str,
        now_ms: i64,
        signed_at_ms: i64,
        keep_until_ms: i64,
        durable: bool,
    ) -> Result<bool, StoreError> {
        let _ = signed_at_ms;
        self.record(access_key_id, nonce, now_ms, keep_until_ms, durable)
    }
    /// Number of nonces remembered (metrics).
    fn remembered(&self) -> usize;
    /// The reads of this nonce store's own database that record a read request's nonce in
    /// the statement that reads the read's commit generation ([`NonceReads`]; PostgreSQL).
    /// `None` (the default): a read records its nonce with [`NonceStore::record_signed`].
    fn reads(&self) -> Option<&dyn NonceReads> {
        None
    }
}

/// A read request's nonce, recorded by [`NonceReads::record_for_read`] as
/// [`NonceStore::record`] would with `durable: false`.
#[derive(Debug, Clone, Copy)]
pub struct ReadNonce<'a> {
    pub access_key_id: &'a str,
    pub nonce: &'a str,
    pub now_ms: i64,
    pub keep_until_ms: i64,
}

/// A boxed future a [`NonceReads`] answers with.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// Reads of a store whose nonce store shares its database, so that a read request waits for
/// the database once, not twice, and without blocking a thread for it: the request is
/// authenticated first on what this process has cached ([`NonceReads::read_cached_with`], no
/// database), then its nonce travels in the statement that reads the commit generation the
/// read runs at ([`NonceReads::record_for_read`], a future), then the read runs at that
/// generation ([`NonceReads::read_at_with`], from the cache when it holds every result).
pub trait NonceReads: Send + Sync {
    /// Run `f` on the results this process has cached at the newest commit generation it
    /// knows of, without the database: `Ok(true)` if every result `f` asked for was cached
    /// (what it computed stands), `Ok(false)` if one was not (a store method then failed with
    /// [`StoreError::SnapshotMoved`]; discard what `f` computed).
    fn read_cached_with(&self, f: &mut ReadFnMut<'_>) -> Result<bool, StoreError>;
    /// Record `nonce` and read the commit generation, both in one statement sent after this
    /// call (queued before it returns): the future answers the generation for
    /// [`NonceReads::read_at_with`], or `None` if the nonce was still refused. Awaiting it
    /// blocks no thread.
    fn record_for_read(&self, nonce: &ReadNonce<'_>) -> BoxFuture<Result<Option<u64>, StoreError>>;
    /// Like [`Store::read_fast_with`], at `generation` (an answer of
    /// [`NonceReads::record_for_read`], so the read includes every commit acknowledged before
    /// that call): `f` may run twice. Blocks (inside `block_in_place` on a tokio worker) only
    /// when a result is not cached.
    fn read_at_with(&self, generation: u64, f: &mut ReadFnMut<'_>) -> Result<(), StoreError>;
}

impl dyn NonceReads + '_ {
    /// [`NonceReads::read_cached_with`] for a closure with its own result: `None` when some
    /// result `f` needed was not cached.
    pub fn read_cached<T>(&self, mut f: impl FnMut(&dyn ReadTx) -> T) -> Option<T> {
        let mut kept = None;
        match self.read_cached_with(&mut |tx| {
            kept = Some(f(tx));
            Ok(())
        }) {
            Ok(true) => kept,
            _ => None,
        }
    }

    /// [`NonceReads::read_at_with`] for a typed closure.
    pub fn read_at<T, E>(&self, generation: u64, mut f: impl FnMut(&dyn ReadTx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut kept = Kept(None);
        let status = self.read_at_with(generation, &mut |tx| kept.keep(f(tx)));
        kept.finish(status)
    }
}

/// Per (access key, action) request rate limits.
pub trait RateLimiter: Send + Sync {
    /// Whether one more call at `now_ms` is within the limit (and count it if so).
    fn admit(&self, access_key_id: &str, action: &str, now_ms: i64) -> bool;
}

/// The commit generation: a counter that moves forward with every commit, shared by every
/// process using the store, so a read cache knows when its entries are stale.
pub trait ChangeFeed: Send + Sync {
    /// The newest published generation.
    fn current(&self) -> u64;
    /// Publish `generation` (no effect if a newer one is published already).
    fn publish(&self, generation: u64);
}
