//! The backend-neutral conformance suite (`vpnroute_store::conformance`) on PostgreSQL: one
//! fresh database per test (see `common`).

mod common;

use std::sync::{Arc, OnceLock};

use vpnroute_store::conformance::Harness;
use vpnroute_store::{NonceStore, RateLimiter, Store};
use vpnroute_store_postgres::PgStore;

struct Postgres {
    store: OnceLock<Arc<PgStore>>,
    // Declared last: dropped after the store has closed its connections.
    db: Option<common::TestDb>,
}

impl Postgres {
    fn new() -> Self {
        Postgres {
            store: OnceLock::new(),
            db: common::TestDb::create(),
        }
    }

    fn pg(&self) -> Arc<PgStore> {
        let db = self.db.as_ref().expect("a database");
        self.store
            .get_or_init(|| PgStore::open(&db.url).expect("open the store"))
            .clone()
    }
}

impl Harness for Postgres {
    fn store(&self) -> Arc<dyn Store> {
        self.pg()
    }

    fn nonces(&self, _window_ms: i64, _now_ms: i64) -> Arc<dyn NonceStore> {
        // A restart: a new store on the same database.
        let db = self.db.as_ref().expect("a database");
        Arc::new(PgStore::open(&db.url).expect("open the store").nonces())
    }

    fn rate_limiter(&self, rps: u32) -> Box<dyn RateLimiter> {
        Box::new(self.pg().rate_limiter(rps))
    }

    /// Each test is skipped (loudly) when PostgreSQL is unreachable outside CI.
    fn available(&self) -> bool {
        self.db.is_some()
    }
}

vpnroute_store::conformance_tests!(Postgres::new());
