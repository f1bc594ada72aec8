//! # vpnroute-store-sqlite
//!
//! The embedded implementation of the `vpnroute-store` traits: SQLite in WAL mode in the data
//! directory (`vpnroute.db`), owning the schema and its migrations, the statements
//! ([`SqliteTx`]), the typed read cache ([`cache`]), the commit generation shared through a
//! memory-mapped file (`vpnroute.gen`), the signature nonce log (`nonces.log`, [`NonceLog`])
//! and the group-commit writer behind [`Store::submit_write`]. rusqlite is used nowhere else.
//!
//! * [`SqliteStore::write`] runs a closure in one `BEGIN IMMEDIATE` transaction on the single
//!   writer connection: it commits when the closure returns `Ok` and rolls back otherwise.
//!   Because SQLite has one writer, checks and writes in one closure are serialised against
//!   every other writer, which is why [`vpnroute_store::WriteTx::lock_gateway`] is free here.
//! * [`SqliteStore::read`] runs a closure on one of several reader connections (WAL readers
//!   see the last committed state and do not block the writer). Reads are served from the
//!   [`cache`] where the same query was answered at the same commit generation.
//!   [`SqliteStore::read_fast`] goes further: it reads the published generation from shared
//!   memory and begins a SQLite transaction only when a result is not in the cache, so a
//!   warm Describe call does not touch SQLite at all. Access keys and RAM directories are
//!   kept apart (`auth_cache.rs`), across this process's commits that do not change them, so
//!   a request after a write is authenticated without SQLite too.
//! * Write requests ([`Store::submit_write`]) are queued to one writer thread, which runs as
//!   many as are waiting in a single transaction, each inside its own savepoint (see
//!   `writer.rs`).
//! * Durability: `synchronous=NORMAL` in WAL mode loses nothing on a process crash
//!   (`kill -9`); `--sync full` (`Durability::Full`) also survives power loss.

pub use vpnroute_store::cache;
mod auth_cache;
mod generation;
mod nonces;
mod reconcile;
mod schema;
mod tx;
mod writer;

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use crate::auth_cache::AuthCache;
use rusqlite::Connection;
use vpnroute_domain::ApiError;
use vpnroute_store::{ChangeFeed, Durability, ReadFnMut, ReadTx, Store, StoreError, WriteFnMut, WriteJob, WriteTx};

use crate::cache::ReadCache;
use crate::generation::SharedGeneration;

pub use nonces::{NonceLog, NonceLogDamage};
use tx::LazyConnection;
pub use tx::SqliteTx;

/// An error inside this crate: SQLite's, or one of the store's own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Sqlite(e) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    StoreError::Retryable(e.to_string())
                }
                Some(rusqlite::ErrorCode::ConstraintViolation) => StoreError::Constraint(e.to_string()),
                _ if is_disk_full(&e) => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Backend(e.to_string()),
            },
        }
    }
}

/// Whether SQLite failed for want of space (`SQLITE_FULL`, or a write, sync or shared-memory
/// growth refused by the file system): nothing was written, and the same transaction can
/// succeed once space returns.
fn is_disk_full(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            f.code == rusqlite::ErrorCode::DiskFull
                || f.extended_code == rusqlite::ffi::SQLITE_IOERR_WRITE
                || f.extended_code == rusqlite::ffi::SQLITE_IOERR_FSYNC
                || f.extended_code == rusqlite::ffi::SQLITE_IOERR_SHMSIZE
        }
        _ => false,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::from(StoreError::from(e))
    }
}

/// `e` as the caller's error type.
fn store_err<E: From<StoreError>>(e: Error) -> E {
    E::from(StoreError::from(e))
}

/// The SQLite store (see the crate docs).
pub struct SqliteStore {
    /// This store, for the writer thread (which must not keep it alive).
    me: Weak<SqliteStore>,
    /// The group-commit queue, started on the first [`Store::submit_write`].
    queue: OnceLock<Mutex<Sender<writer::Queued>>>,
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    cache: ReadCache,
    /// Access keys and RAM directories, kept across commits that do not change them.
    auth_cache: AuthCache,
    generation: SharedGeneration,
}

const READERS: usize = 4;

impl SqliteStore {
    /// Open (creating if needed) the database `vpnroute.db` in `data_dir` and migrate it.
    pub fn open(data_dir: &Path, durability: Durability) -> Result<Arc<SqliteStore>, StoreError> {
        Self::open_inner(data_dir, durability).map_err(StoreError::from)
    }

    fn open_inner(data_dir: &Path, durability: Durability) -> Result<Arc<SqliteStore>, Error> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Other(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join("vpnroute.db");
        let mut writer = open_conn(&path, durability)?;
        schema::migrate(&mut writer)?;
        let generation = SharedGeneration::open(&data_dir.join("vpnroute.gen"))?;
        // Counter first, database second: anything published before the read below was
        // committed before it, so a counter still ahead afterwards really belongs to a newer
        // database (this one was restored from a backup), not to a concurrent writer.
        let published = generation.load();
        let committed: i64 = writer.query_row("SELECT commit_seq FROM store_meta WHERE id = 1", [], |r| r.get(0))?;
        let committed = committed as u64;
        if published > committed {
            if generation.replace(published, committed) {
                tracing::warn!(
                    published,
                    committed,
                    "the database is older than its generation file (restored?): reset the file"
                );
            }
        } else {
            generation.publish(committed);
        }
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(open_conn(&path, durability)?));
        }
        Ok(Arc::new_cyclic(|me| SqliteStore {
            me: me.clone(),
            queue: OnceLock::new(),
            path,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
            cache: ReadCache::default(),
            auth_cache: AuthCache::default(),
            generation,
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn queue_write(&self, queued: writer::Queued) {
        let queue = self.queue.get_or_init(|| Mutex::new(writer::start(self.me.clone())));
        let sent = queue.lock().unwrap_or_else(|p| p.into_inner()).send(queued);
        if let Err(std::sync::mpsc::SendError(queued)) = sent {
            queued
                .into_job()
                .finish(Err(StoreError::Other("the writer thread is gone".into())));
        }
    }

    /// Open the nonce log next to the database (see [`NonceLog`]).
    pub fn open_nonces(
        data_dir: &Path,
        durability: Durability,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<NonceLog, StoreError> {
        NonceLog::open(data_dir, durability, window_ms, now_ms)
    }

    /// Run `f` in one write transaction (commit on `Ok`, roll back on `Err`).
    pub fn write<T, E>(&self, f: impl FnOnce(&SqliteTx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut committed = None;
        let result = in_transaction(&conn, "BEGIN IMMEDIATE", |tx| {
            let v = f(tx)?;
            // Last statement before COMMIT: a new generation for the read cache.
            let seq: i64 = conn
                .prepare_cached("UPDATE store_meta SET commit_seq = commit_seq + 1 RETURNING commit_seq")
                .and_then(|mut st| st.query_row([], |r| r.get(0)))
                .map_err(|e| store_err::<E>(Error::from(e)))?;
            committed = Some((seq as u64, tx.wrote_auth()));
            Ok(v)
        });
        if let (Ok(_), Some((seq, wrote_auth))) = (&result, committed) {
            self.auth_cache.committed(seq, wrote_auth);
            self.generation.publish(seq);
        }
        result
    }

    /// A reader connection: an idle one if there is one, else wait for the round-robin one.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(g) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return g;
            }
        }
        self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Like [`SqliteStore::read`], but answers from the read cache at the published generation
    /// without beginning a SQLite transaction when every result is cached. `f` may run twice:
    /// if a result had to be read from SQLite and SQLite's snapshot turned out newer than the
    /// cached results already used, the first run's result is discarded and `f` runs again
    /// with [`SqliteStore::read`]. Either way `f` sees one consistent committed state.
    pub fn read_fast<T, E>(&self, mut f: impl FnMut(&SqliteTx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let lazy = LazyReader {
            store: self,
            conn: OnceCell::new(),
        };
        let (result, torn) = {
            let tx = SqliteTx::optimistic(&lazy, &self.cache, &self.auth_cache, self.generation.load());
            let result = f(&tx);
            (result, tx.is_torn())
        };
        let ended = lazy.end();
        if torn {
            return self.read(f);
        }
        let v = result?;
        ended.map_err(store_err::<E>)?;
        Ok(v)
    }

    /// Run `f` on a consistent read snapshot.
    pub fn read<T, E>(&self, f: impl FnOnce(&SqliteTx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let conn = self.reader();
        in_transaction(&conn, "BEGIN", |tx| {
            // The first read fixes the snapshot and tells its generation. It may be ahead of
            // the published one (a writer between COMMIT and publishing): publish it, so no
            // later fast read answers an older state than this one.
            let generation = tx.commit_generation().map_err(store_err::<E>)? as u64;
            self.generation.publish(generation);
            f(&SqliteTx::cached(&conn, &self.cache, &self.auth_cache, generation))
        })
    }
}

impl Store for SqliteStore {
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
        self.queue_write(writer::Queued::Now(job));
    }

    fn submit_write_deferred(&self, job: Box<dyn WriteJob>) {
        self.queue_write(writer::Queued::WithNext(job));
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn change_feed(&self) -> &dyn ChangeFeed {
        &self.generation
    }

    fn others_generation(&self) -> u64 {
        self.auth_cache.others_generation(self.generation.load())
    }
}

/// The reader connection of a [`SqliteStore::read_fast`], taken and put in a read transaction only
/// when a query needs it.
pub(crate) struct LazyReader<'s> {
    store: &'s SqliteStore,
    conn: OnceCell<MutexGuard<'s, Connection>>,
}

impl LazyConnection for LazyReader<'_> {
    fn connection(&self) -> Result<(&Connection, Option<u64>), Error> {
        if let Some(c) = self.conn.get() {
            return Ok((c, None));
        }
        let guard = self.store.reader();
        begin(&guard, "BEGIN")?;
        let snapshot = match SqliteTx::new(&guard).commit_generation() {
            Ok(s) => s as u64,
            Err(e) => {
                let _ = exec(&guard, "ROLLBACK");
                return Err(e);
            }
        };
        let conn = self.conn.get_or_init(|| guard);
        Ok((conn, Some(snapshot)))
    }

    fn publish(&self, generation: u64) {
        self.store.generation.publish(generation);
    }
}

impl LazyReader<'_> {
    /// End the read transaction, if one was begun.
    fn end(self) -> Result<(), Error> {
        match self.conn.into_inner() {
            Some(conn) => exec(&conn, "COMMIT"),
            None => Ok(()),
        }
    }
}

/// Run a transaction statement. These are prepared once per connection (rusqlite's
/// `Transaction` would parse them on every call, a measurable cost at tens of thousands of
/// requests/s).
fn exec(conn: &Connection, sql: &str) -> Result<(), Error> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Run `begin_sql`, after discarding whatever a closure that panicked mid-transaction left
/// open on this connection.
fn begin(conn: &Connection, begin_sql: &str) -> Result<(), Error> {
    if !conn.is_autocommit() {
        exec(conn, "ROLLBACK")?;
    }
    exec(conn, begin_sql)
}

/// Run `f` between `begin_sql` and COMMIT (ROLLBACK when `f` fails or COMMIT fails).
fn in_transaction<T, E>(
    conn: &Connection,
    begin_sql: &str,
    f: impl FnOnce(&SqliteTx<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    begin(conn, begin_sql).map_err(store_err::<E>)?;
    match f(&SqliteTx::new(conn)) {
        Ok(v) => match exec(conn, "COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = exec(conn, "ROLLBACK");
                Err(store_err(e))
            }
        },
        Err(e) => {
            let _ = exec(conn, "ROLLBACK");
            Err(e)
        }
    }
}

pub(crate) fn open_conn(path: &Path, durability: Durability) -> Result<Connection, Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Process => "NORMAL",
            Durability::Full => "FULL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Reads straight from the OS page cache instead of pread() per page, and a larger
    // private cache per connection.
    conn.pragma_update(None, "mmap_size", 268_435_456i64)?;
    conn.pragma_update(None, "cache_size", -16_000i64)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Query-planner stability: without it SQLite may re-prepare a cached statement whenever
    // a bound parameter changes (STAT4 / LIKE optimisations), which profiling showed as a
    // large share of every request.
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vpnroute_domain::model::{RouteKind, VpnRoute};
    use vpnroute_store::{AccessKey, Account, ReadTxExt, ResourceKind, WriteTxExt};

    fn route(dest: &str, hop: &str) -> VpnRoute {
        VpnRoute {
            seq: 0,
            kind: RouteKind::Dbr,
            gateway_id: "vpn-1".into(),
            source: String::new(),
            dest: dest.into(),
            next_hop: hop.into(),
            weight: 100,
            priority: 10,
            published: false,
            description: String::new(),
            overlay_mode: "Ipsec".into(),
            create_time: 1,
        }
    }

    #[test]
    fn a_deferred_write_shares_the_next_commit_or_commits_alone_after_its_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        let generation = || store.change_feed().current();
        let count = |store: &Arc<dyn Store>| store.read(|tx| tx.count_routes("vpn-1", RouteKind::Dbr)).unwrap();

        // Alone: committed within the wait (and not at once).
        let (done, answer) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        store.write_then(
            true,
            |tx| tx.insert_route(&route("10.0.1.0/24", "vco-a")),
            Box::new(move |r| done.send((r.is_ok(), std::time::Instant::now())).unwrap()),
        );
        let (ok, at) = answer.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(ok);
        assert!(
            at - started >= writer::DEFERRED_WAIT / 2,
            "held back for a request to share its commit"
        );
        assert_eq!(count(&store), 1);

        // With a request: one commit for both.
        let before = generation();
        let (done, deferred) = std::sync::mpsc::channel();
        store.write_then(
            true,
            |tx| tx.insert_route(&route("10.0.2.0/24", "vco-a")),
            Box::new(move |r| done.send(r.is_ok()).unwrap()),
        );
        store
            .write_queued(|tx| tx.insert_route(&route("10.0.3.0/24", "vco-a")))
            .unwrap();
        assert!(deferred.recv_timeout(std::time::Duration::from_secs(5)).unwrap());
        assert_eq!(count(&store), 3);
        assert_eq!(
            generation(),
            before + 1,
            "one commit for the deferred write and the request"
        );
    }

    #[test]
    fn failed_transactions_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        let r: Result<(), ApiError> = store.write(|tx| {
            tx.insert_route(&route("10.0.0.0/24", "vco-a"))?;
            Err(ApiError::ROUTE_CONFLICT)
        });
        assert_eq!(r.unwrap_err().code, "VpnRouteEntry.Conflict");
        let n = store
            .read(|tx| tx.count_routes("vpn-1", RouteKind::Dbr).map_err(ApiError::from))
            .unwrap();
        assert_eq!(n, 0);
        let listed = store
            .read(|tx| tx.gateway_routes("vpn-1").map_err(ApiError::from))
            .unwrap();
        assert!(listed.is_empty());
    }

    #[test]
    fn counts_follow_inserts_and_deletes_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
            store
                .write(|tx| {
                    let a = tx.insert_route(&route("10.0.0.0/24", "vco-a"))?;
                    tx.insert_route(&route("10.0.1.0/24", "vco-a"))?;
                    let mut ra = route("10.0.0.0/24", "vco-a");
                    ra.seq = a;
                    tx.delete_route(&ra)?;
                    tx.delete_route(&ra)?; // idempotent: no double decrement
                    Ok::<_, ApiError>(())
                })
                .unwrap();
        }
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        let n = store
            .read(|tx| tx.count_routes("vpn-1", RouteKind::Dbr).map_err(ApiError::from))
            .unwrap();
        assert_eq!(n, 1);
        let dup = store.write(|tx| tx.insert_route(&route("10.0.1.0/24", "vco-a")).map_err(ApiError::from));
        assert!(dup.is_err(), "the unique key rejects a duplicate route");
    }

    #[test]
    fn resource_counts_follow_inserts_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        store
            .write(|tx| {
                for id in ["a", "b", "c"] {
                    tx.insert_resource(ResourceKind::Vpc, id, "acct", "cn-hangzhou", "", &id)?;
                }
                tx.insert_resource(ResourceKind::Vpc, "d", "acct", "cn-shanghai", "", &"d")?;
                assert!(tx.delete_resource(ResourceKind::Vpc, "b")?);
                assert!(!tx.delete_resource(ResourceKind::Vpc, "b")?);
                Ok::<_, ApiError>(())
            })
            .unwrap();
        let (n, total) = store
            .read(|tx| {
                let n = tx.count_resources(ResourceKind::Vpc, "acct", "cn-hangzhou")?;
                let (_, total) = tx.list_resources::<String>(ResourceKind::Vpc, "acct", "cn-hangzhou", None, 0, 10)?;
                Ok::<_, ApiError>((n, total))
            })
            .unwrap();
        assert_eq!((n, total), (2, 2));
    }

    fn key(id: &str) -> AccessKey {
        AccessKey {
            id: id.into(),
            account_id: "acct".into(),
            secret: "s".into(),
            status: "Active".into(),
            created_at: 1,
            ram_user_id: None,
        }
    }

    fn write_ok(store: &SqliteStore, f: impl FnOnce(&SqliteTx<'_>) -> Result<(), Error>) {
        store.write(|tx| f(tx).map_err(ApiError::from)).unwrap();
    }

    /// The status of access key `k1`, by a fast read.
    fn lookup(s: &SqliteStore) -> Option<String> {
        s.read_fast(|tx| tx.access_key("k1").map_err(ApiError::from))
            .unwrap()
            .map(|k| k.status)
    }

    fn with_account(store: &SqliteStore) {
        write_ok(store, |tx| {
            tx.insert_account(&Account {
                id: "acct".into(),
                name: "acct".into(),
                is_root: false,
                created_at: 1,
            })
        });
    }

    #[test]
    fn fast_reads_see_every_committed_write_of_this_and_other_processes() {
        let dir = tempfile::tempdir().unwrap();
        let server = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        with_account(&server);
        write_ok(&server, |tx| tx.insert_access_key(&key("k1")));
        assert_eq!(lookup(&server).as_deref(), Some("Active"));
        assert_eq!(lookup(&server).as_deref(), Some("Active"), "now from the cache");
        // Another process (here: another Store on the same directory, as `vpnroute admin`).
        let admin = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        write_ok(&admin, |tx| tx.set_access_key_status("k1", "Inactive").map(|_| ()));
        assert_eq!(lookup(&server).as_deref(), Some("Inactive"));
        write_ok(&admin, |tx| tx.delete_access_key("k1").map(|_| ()));
        assert_eq!(lookup(&server), None);
        write_ok(&server, |tx| tx.insert_access_key(&key("k1")));
        assert_eq!(lookup(&admin).as_deref(), Some("Active"));
    }

    #[test]
    fn access_keys_stay_cached_across_commits_that_do_not_change_them() {
        let dir = tempfile::tempdir().unwrap();
        let server = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        with_account(&server);
        write_ok(&server, |tx| tx.insert_access_key(&key("k1")));
        assert_eq!(lookup(&server).as_deref(), Some("Active"));
        // Behind the store's back (no new generation), so only a read of SQLite would see it.
        let raw = open_conn(&dir.path().join("vpnroute.db"), Durability::Process).unwrap();
        raw.execute("UPDATE access_keys SET status = 'Hidden' WHERE id = 'k1'", [])
            .unwrap();
        // This process's commits of other data keep the entry: it is not read again.
        write_ok(&server, |tx| {
            tx.insert_route(&route("10.0.0.0/24", "vco-1")).map(|_| ())
        });
        write_ok(&server, |tx| {
            tx.insert_route(&route("10.0.1.0/24", "vco-1")).map(|_| ())
        });
        assert_eq!(
            lookup(&server).as_deref(),
            Some("Active"),
            "from the authentication cache"
        );
        // A commit that writes authentication data (any key) ends it.
        write_ok(&server, |tx| tx.insert_access_key(&key("k2")));
        assert_eq!(lookup(&server).as_deref(), Some("Hidden"));
        raw.execute("UPDATE access_keys SET status = 'Active' WHERE id = 'k1'", [])
            .unwrap();
        // So does a commit of another process, even one that changes no key.
        let admin = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        write_ok(&admin, |tx| tx.insert_route(&route("10.0.2.0/24", "vco-1")).map(|_| ()));
        assert_eq!(lookup(&server).as_deref(), Some("Active"));
        // … and the server's next commit does not vouch for the one it did not make.
        raw.execute("UPDATE access_keys SET status = 'Hidden2' WHERE id = 'k1'", [])
            .unwrap();
        write_ok(&admin, |tx| tx.insert_route(&route("10.0.3.0/24", "vco-1")).map(|_| ()));
        write_ok(&server, |tx| {
            tx.insert_route(&route("10.0.4.0/24", "vco-1")).map(|_| ())
        });
        assert_eq!(lookup(&server).as_deref(), Some("Hidden2"));
    }

    #[test]
    fn a_fast_read_never_mixes_generations() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        with_account(&store);
        write_ok(&store, |tx| {
            tx.insert_access_key(&key("k1"))?;
            tx.insert_route(&route("10.0.0.0/24", "vco-a")).map(|_| ())
        });
        let published = store.generation.load();
        // Warm the cache with the route count only.
        store
            .read_fast(|tx| tx.count_routes("vpn-1", RouteKind::Dbr).map_err(ApiError::from))
            .unwrap();
        // A writer commits (a route added) but has not published yet.
        write_ok(&store, |tx| tx.insert_route(&route("10.0.1.0/24", "vco-a")).map(|_| ()));
        store.generation.force(published);
        // The count comes from the cache (old generation), the page needs SQLite, whose
        // snapshot is newer: the first run is discarded and the read runs again.
        let mut runs = 0;
        let (counted, listed) = store
            .read_fast(|tx| {
                runs += 1;
                let n = tx.count_routes("vpn-1", RouteKind::Dbr)?;
                let page = tx.list_routes("vpn-1", RouteKind::Dbr, 0, 10)?;
                Ok::<_, ApiError>((n, page.len()))
            })
            .unwrap();
        assert_eq!(runs, 2);
        assert_eq!((counted, listed), (2, 2), "one consistent state: the newest");
        // The same with an access key, which the authentication cache keeps across commits:
        // one that deletes it is seen even before it is published.
        store
            .read_fast(|tx| tx.access_key("k1").map_err(ApiError::from))
            .unwrap();
        let published = store.generation.load();
        write_ok(&store, |tx| {
            tx.delete_access_key("k1")?;
            tx.insert_route(&route("10.0.2.0/24", "vco-a")).map(|_| ())
        });
        store.generation.force(published);
        let (key_found, routes) = store
            .read_fast(|tx| {
                let k = tx.access_key("k1")?;
                let n = tx.count_routes("vpn-1", RouteKind::Dbr)?;
                Ok::<_, ApiError>((k.is_some(), n))
            })
            .unwrap();
        assert_eq!((key_found, routes), (false, 3), "one consistent state: the newest");
        // A read that needed SQLite first simply adopts the newer snapshot and publishes it.
        store.generation.force(published);
        let mut runs = 0;
        let n = store
            .read_fast(|tx| {
                runs += 1;
                tx.count_routes("vpn-1", RouteKind::Dbr).map_err(ApiError::from)
            })
            .unwrap();
        assert_eq!((runs, n), (1, 3));
        assert!(store.generation.load() > published);
    }

    #[test]
    fn cached_results_are_copies() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        write_ok(&store, |tx| tx.insert_route(&route("10.0.0.0/24", "vco-a")).map(|_| ()));
        let page = |s: &SqliteStore| {
            s.read_fast(|tx| tx.list_routes("vpn-1", RouteKind::Dbr, 0, 10).map_err(ApiError::from))
                .unwrap()
        };
        let mut first = page(&store);
        first[0].dest = "changed".into();
        assert_eq!(page(&store)[0].dest, "10.0.0.0/24");
    }

    /// Readers racing a writer (and a second process) never see a torn or older state: in
    /// each read the route count and the listed routes agree, and what one reader sees never
    /// goes back.
    #[test]
    fn concurrent_fast_reads_are_consistent_and_monotonic() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(dir.path(), Durability::Process).unwrap());
        let other_process = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, done) = (store.clone(), done.clone());
                std::thread::spawn(move || {
                    let (mut last, mut reads) = (0u64, 0u64);
                    while !done.load(Ordering::Relaxed) || reads < 100 {
                        let (count, listed) = store
                            .read_fast(|tx| {
                                let count = tx.count_routes("vpn-1", RouteKind::Dbr)?;
                                let listed = tx.list_routes("vpn-1", RouteKind::Dbr, 0, 10_000)?.len() as u64;
                                Ok::<_, ApiError>((count, listed))
                            })
                            .unwrap();
                        assert_eq!(count, listed, "one read, one state");
                        assert!(count >= last, "never older than an earlier read: {count} < {last}");
                        last = count;
                        reads += 1;
                    }
                    last
                })
            })
            .collect();
        for i in 0..300 {
            // Alternate writers: this process and "another" one on the same directory.
            let writer = if i % 3 == 0 { &other_process } else { &*store };
            let dest = format!("10.{}.{}.0/24", i / 256, i % 256);
            write_ok(writer, |tx| tx.insert_route(&route(&dest, "vco-a")).map(|_| ()));
        }
        done.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() <= 300);
        }
        let final_count = store
            .read_fast(|tx| tx.count_routes("vpn-1", RouteKind::Dbr).map_err(ApiError::from))
            .unwrap();
        assert_eq!(final_count, 300);
    }

    #[test]
    fn a_restored_database_resets_a_newer_generation_file() {
        let dir = tempfile::tempdir().unwrap();
        let committed = {
            let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
            write_ok(&store, |tx| tx.insert_route(&route("10.0.0.0/24", "vco-a")).map(|_| ()));
            store.generation.load()
        };
        // The generation file of a newer history (the database was restored from a backup).
        generation::SharedGeneration::open(&dir.path().join("vpnroute.gen"))
            .unwrap()
            .force(committed + 100);
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        assert_eq!(store.generation.load(), committed);
        write_ok(&store, |tx| tx.insert_route(&route("10.0.1.0/24", "vco-a")).map(|_| ()));
        let n = store
            .read_fast(|tx| tx.count_routes("vpn-1", RouteKind::Dbr).map_err(ApiError::from))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn a_truncated_generation_file_is_rebuilt_from_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let committed = {
            let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
            write_ok(&store, |tx| tx.insert_route(&route("10.0.0.0/24", "vco-a")).map(|_| ()));
            store.generation.load()
        };
        std::fs::write(dir.path().join("vpnroute.gen"), [7u8, 7]).unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Process).unwrap();
        assert_eq!(store.generation.load(), committed);
        let n = store
            .read_fast(|tx| tx.count_routes("vpn-1", RouteKind::Dbr).map_err(ApiError::from))
            .unwrap();
        assert_eq!(n, 1);
    }
}
