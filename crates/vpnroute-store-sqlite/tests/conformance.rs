//! The backend-neutral conformance suite (`vpnroute_store::conformance`) on SQLite: one fresh
//! temporary data directory per test.

use std::sync::{Arc, OnceLock};

use vpnroute_store::conformance::Harness;
use vpnroute_store::{Durability, NonceStore, Store};
use vpnroute_store_sqlite::SqliteStore;

struct Sqlite {
    dir: tempfile::TempDir,
    store: OnceLock<Arc<SqliteStore>>,
}

impl Sqlite {
    fn new() -> Self {
        Sqlite {
            dir: tempfile::tempdir().expect("temp dir"),
            store: OnceLock::new(),
        }
    }
}

impl Harness for Sqlite {
    fn store(&self) -> Arc<dyn Store> {
        self.store
            .get_or_init(|| SqliteStore::open(self.dir.path(), Durability::Process).expect("open the store"))
            .clone()
    }

    fn nonces(&self, window_ms: i64, now_ms: i64) -> Arc<dyn NonceStore> {
        Arc::new(
            SqliteStore::open_nonces(self.dir.path(), Durability::Process, window_ms, now_ms).expect("open nonces"),
        )
    }
}

vpnroute_store::conformance_tests!(Sqlite::new());
