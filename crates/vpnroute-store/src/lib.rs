//! # vpnroute-store
//!
//! Durable state: accounts and access keys, signature nonces, resources, VPN routes, VPC
//! route entries, ClientTokens and per-gateway tasks. The embedded implementation is SQLite
//! in WAL mode in the data directory; a PostgreSQL implementation fills the same API later,
//! which is why the SQL here is portable and every transaction is explicit.
//!
//! * [`Store::write`] runs a closure in one `BEGIN IMMEDIATE` transaction on the single
//!   writer connection: it commits when the closure returns `Ok` and rolls back otherwise,
//!   so a failed or interrupted request never leaves anything half-written. Because SQLite
//!   has one writer, checks and writes in one closure are serialised against every other
//!   writer: two conflicting requests can never both pass their checks.
//! * [`Store::read`] runs a closure on one of several reader connections (WAL readers see
//!   the last committed state and do not block the writer).
//! * Durability: `synchronous=NORMAL` in WAL mode loses nothing on a process crash
//!   (`kill -9`); `--sync full` (`Durability::Full`) also survives power loss.

mod nonces;
mod schema;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rusqlite::Connection;
use vpnroute_domain::ApiError;

pub use nonces::NonceLog;
pub use tx::{AccessKey, Account, Resource, ResourceKind, Task, Tx};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt document in {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::INTERNAL_ERROR
    }
}

/// How hard a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a process crash (`synchronous=NORMAL` with WAL).
    Process,
    /// Survives power loss (`synchronous=FULL`).
    Full,
}

pub struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

const READERS: usize = 4;

impl Store {
    /// Open (creating if needed) the database `vpnroute.db` in `data_dir` and migrate it.
    pub fn open(data_dir: &Path, durability: Durability) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Other(format!("{}: {e}", data_dir.display())))?;
        let path = data_dir.join("vpnroute.db");
        let mut writer = open_conn(&path, durability)?;
        schema::migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(open_conn(&path, durability)?));
        }
        Ok(Store {
            path,
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Run `f` in one write transaction (commit on `Ok`, roll back on `Err`).
    pub fn write<T, E>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        in_transaction(&conn, "BEGIN IMMEDIATE", f)
    }

    /// Run `f` on a consistent read snapshot.
    pub fn read<T, E>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        // Prefer an idle reader; fall back to waiting on the round-robin one.
        let mut guard = None;
        for i in 0..self.readers.len() {
            if let Ok(g) = self.readers[(start + i) % self.readers.len()].try_lock() {
                guard = Some(g);
                break;
            }
        }
        let conn = match guard {
            Some(g) => g,
            None => self.readers[start % self.readers.len()]
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        };
        in_transaction(&conn, "BEGIN", f)
    }
}

/// Run `f` between `begin` and COMMIT (ROLLBACK when `f` fails or COMMIT fails). The
/// transaction statements are prepared once per connection (rusqlite's `Transaction` would
/// parse them on every call, a measurable cost at tens of thousands of requests/s).
fn in_transaction<T, E>(conn: &Connection, begin: &str, f: impl FnOnce(&Tx<'_>) -> Result<T, E>) -> Result<T, E>
where
    E: From<StoreError>,
{
    let exec = |sql: &str| -> Result<(), StoreError> {
        conn.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    if !conn.is_autocommit() {
        // A previous closure panicked mid-transaction: discard what it left.
        exec("ROLLBACK").map_err(E::from)?;
    }
    exec(begin).map_err(E::from)?;
    let result = f(&Tx::new(conn));
    match result {
        Ok(v) => match exec("COMMIT") {
            Ok(()) => Ok(v),
            Err(e) => {
                let _ = exec("ROLLBACK");
                Err(E::from(e))
            }
        },
        Err(e) => {
            let _ = exec("ROLLBACK");
            Err(e)
        }
    }
}

pub(crate) fn open_conn(path: &Path, durability: Durability) -> Result<Connection, StoreError> {
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
    fn failed_transactions_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Process).unwrap();
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
            let store = Store::open(dir.path(), Durability::Process).unwrap();
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
        let store = Store::open(dir.path(), Durability::Process).unwrap();
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
        let store = Store::open(dir.path(), Durability::Process).unwrap();
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
}
