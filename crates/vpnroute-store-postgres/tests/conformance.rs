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
}

/// Each test: skipped (loudly) when PostgreSQL is unreachable outside CI.
macro_rules! pg_conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let harness = Postgres::new();
                if harness.db.is_none() {
                    return;
                }
                vpnroute_store::conformance::$name(&harness);
            }
        )*
    };
}

pg_conformance_tests!(
    resources_crud_ownership_and_paging,
    routes_by_key_dest_and_count,
    vpc_entries,
    client_tokens_save_lookup_and_expire,
    tasks_and_versions,
    routes_at_a_version_and_changes_between_versions,
    reconcile_claims_records_and_failures,
    a_restarted_owner_ends_its_previous_claims,
    accounts_and_access_keys,
    ram_directories_and_user_keys,
    a_failed_transaction_rolls_everything_back,
    group_commit_undoes_only_the_failed_request,
    the_gateway_lock_serialises_check_then_insert,
    a_retryable_failure_reruns_the_request,
    a_request_that_stays_retryable_gives_up_retryably,
    fast_reads_see_every_commit,
    the_change_feed_moves_forward,
    nonces_refuse_replays_and_expire,
    the_rate_limiter_counts_per_key_and_action,
);
