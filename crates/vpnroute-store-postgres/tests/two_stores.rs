//! Several stores on one database, as several `vpnroute serve` replicas see it: commits,
//! nonces, rate limits, the gateway lock, retries and migrations across instances.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use vpnroute_domain::model::{RouteKind, VpnRoute};
use vpnroute_store::{NonceStore, RateLimiter, Store, StoreError, WriteJob, WriteTx};
use vpnroute_store_postgres::PgStore;

fn route(gateway: &str, dest: &str, hop: &str) -> VpnRoute {
    common::route_via(gateway, dest, hop)
}

/// Two stores (replicas) on one fresh database; `None` when skipped.
fn two() -> Option<(common::TestDb, Arc<PgStore>, Arc<PgStore>)> {
    let db = common::TestDb::create()?;
    let a = PgStore::open(&db.url).expect("open a");
    let b = PgStore::open(&db.url).expect("open b");
    Some((db, a, b))
}

fn count(store: &dyn Store, fast: bool) -> u64 {
    let f = |tx: &dyn vpnroute_store::ReadTx| tx.count_routes("gw", RouteKind::Dbr);
    if fast {
        store.read_fast(f).unwrap()
    } else {
        store.read(f).unwrap()
    }
}

#[test]
fn a_commit_on_one_replica_is_seen_by_the_next_read_on_the_other() {
    let Some((_db, a, b)) = two() else { return };
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (a, b);
    for i in 0..10u64 {
        // Warm b's cache at the current generation, then commit on a.
        assert_eq!(count(&*b, true), i);
        assert_eq!(count(&*b, true), i, "cached");
        let before = b.change_feed().current();
        a.write(|tx| {
            tx.insert_route(&route("gw", &format!("10.0.{i}.0/24"), "vco"))
                .map(|_| ())
        })
        .unwrap();
        assert_eq!(count(&*b, true), i + 1, "read_fast on the other replica");
        assert_eq!(count(&*b, false), i + 1, "read on the other replica");
        assert!(
            b.change_feed().current() > before,
            "the other replica's generation moved"
        );
    }
}

#[test]
fn the_other_replica_hears_of_commits_by_notify() {
    let Some((_db, a, b)) = two() else { return };
    let before = b.change_feed().current();
    (a.clone() as Arc<dyn Store>)
        .write(|tx| tx.next_counter("c").map(|_| ()))
        .unwrap();
    let target = a.change_feed().current();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.change_feed().current() < target {
        assert!(std::time::Instant::now() < deadline, "no NOTIFY within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(target > before);
}

/// Commits in bursts are notified together (at most one NOTIFY per gap): the other replica
/// still hears of the generation the last of them committed.
#[test]
fn the_other_replica_hears_of_the_last_of_a_burst_of_commits() {
    let Some((_db, a, b)) = two() else { return };
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let a = a.clone() as Arc<dyn Store>;
            std::thread::spawn(move || {
                for i in 0..20 {
                    a.write(|tx| tx.next_counter(&format!("c{t}-{i}")).map(|_| ())).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // The generation committed, read from PostgreSQL by a snapshot of the writer's replica.
    (a.clone() as Arc<dyn Store>).read(|_| Ok::<_, StoreError>(())).unwrap();
    let committed = a.change_feed().current();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.change_feed().current() < committed {
        assert!(
            std::time::Instant::now() < deadline,
            "the last commit of the burst not heard of: {} < {committed}",
            b.change_feed().current()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_nonce_used_on_one_replica_is_refused_by_the_other_and_after_a_restart() {
    let Some((db, a, b)) = two() else { return };
    let (na, nb) = (a.nonces(), b.nonces());
    for durable in [false, true] {
        let nonce = format!("n-{durable}");
        assert!(na.record("k", &nonce, 1_000, 2_000, durable).unwrap());
        assert!(
            !nb.record("k", &nonce, 1_001, 2_001, durable).unwrap(),
            "refused elsewhere"
        );
        assert!(!na.record("k", &nonce, 1_002, 2_002, durable).unwrap(), "and here");
    }
    assert!(nb.record("k", "nul\0byte", 1_000, 2_000, false).unwrap(), "any bytes");
    assert!(!na.record("k", "nul\0byte", 1_000, 2_000, false).unwrap());
    drop((na, nb, a, b));
    let restarted = PgStore::open(&db.url).unwrap().nonces();
    assert!(
        !restarted.record("k", "n-false", 1_500, 2_500, true).unwrap(),
        "kept across restarts"
    );
    assert!(
        restarted.record("k", "n-false", 2_001, 3_001, true).unwrap(),
        "until it expires"
    );
    assert!(restarted.remembered() >= 3);
}

#[test]
fn the_rate_limiter_counts_across_replicas() {
    let Some((_db, a, b)) = two() else { return };
    let (la, lb) = (a.rate_limiter(3), b.rate_limiter(3));
    assert!(la.admit("k", "A", 5_000));
    assert!(lb.admit("k", "A", 5_100));
    assert!(la.admit("k", "A", 5_200));
    assert!(
        !lb.admit("k", "A", 5_300),
        "the fourth call in the second, on either replica"
    );
    assert!(!la.admit("k", "A", 5_999));
    assert!(lb.admit("k", "B", 5_999), "per action");
    assert!(la.admit("k", "A", 6_000), "a new second");
    assert!(
        la.admit("k", "A", 5_900),
        "a replica whose clock is behind counts into the open window"
    );
    assert!(lb.admit("k", "A", 6_001));
    assert!(!la.admit("k", "A", 6_002));
}

#[test]
fn conflicting_inserts_under_the_gateway_lock_on_two_replicas_one_wins() {
    let Some((_db, a, b)) = two() else { return };
    for round in 0..10 {
        let gw = format!("gw-{round}");
        let start = Arc::new(Barrier::new(2));
        let writers: Vec<_> = [(a.clone(), "vco-a"), (b.clone(), "vco-b")]
            .into_iter()
            .map(|(store, hop)| {
                let (start, gw) = (start.clone(), gw.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let store: Arc<dyn Store> = store;
                    store
                        .write(|tx| {
                            tx.lock_gateway(&gw)?;
                            let seen = tx.routes_with_dest(&gw, "10.0.0.0/24")?;
                            if seen.is_empty() {
                                tx.insert_route(&route(&gw, "10.0.0.0/24", hop))?;
                            }
                            Ok::<_, StoreError>(seen.len())
                        })
                        .unwrap()
                })
            })
            .collect();
        let mut seen: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        seen.sort();
        assert_eq!(seen, [0, 1], "round {round}: exactly one writer inserted");
        let n = (a.clone() as Arc<dyn Store>)
            .read(|tx| tx.count_routes(&gw, RouteKind::Dbr))
            .unwrap();
        assert_eq!(n, 1);
    }
}

/// A job locking two gateways, waiting at `meet` in between on its first run only.
struct Crossing {
    first: String,
    second: String,
    meet: Arc<Barrier>,
    runs: Arc<AtomicUsize>,
    /// This job's own runs.
    mine: usize,
    done: mpsc::Sender<Result<(), StoreError>>,
}

impl WriteJob for Crossing {
    fn run(&mut self, tx: &dyn WriteTx) -> Result<bool, StoreError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.mine += 1;
        tx.lock_gateway(&self.first)?;
        if self.mine == 1 {
            self.meet.wait();
        }
        tx.lock_gateway(&self.second)?;
        tx.insert_route(&route(&self.first, "10.9.0.0/24", "vco"))?;
        Ok(true)
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let _ = self.done.send(committed);
    }
}

#[test]
fn a_deadlock_between_replicas_is_retried_and_both_requests_commit() {
    let Some((_db, a, b)) = two() else { return };
    let meet = Arc::new(Barrier::new(2));
    let runs = Arc::new(AtomicUsize::new(0));
    let (done, finished) = mpsc::channel();
    for (store, first, second) in [(a.clone(), "gw-x", "gw-y"), (b.clone(), "gw-y", "gw-x")] {
        store.submit_write(Box::new(Crossing {
            first: first.into(),
            second: second.into(),
            meet: meet.clone(),
            runs: runs.clone(),
            mine: 0,
            done: done.clone(),
        }));
    }
    for _ in 0..2 {
        finished
            .recv_timeout(Duration::from_secs(30))
            .unwrap()
            .expect("committed after the retry");
    }
    // The deadlock victim ran again (more than once if a retry also met a lock timeout on a
    // loaded machine): what matters is that both requests committed.
    let runs = runs.load(Ordering::SeqCst);
    assert!(runs >= 3, "the deadlock victim ran again: {runs} runs");
    let store: Arc<dyn Store> = a;
    for gw in ["gw-x", "gw-y"] {
        assert_eq!(store.read(|tx| tx.count_routes(gw, RouteKind::Dbr)).unwrap(), 1);
    }
}

#[test]
fn concurrent_openers_migrate_once() {
    let Some(db) = common::TestDb::create() else { return };
    let start = Arc::new(Barrier::new(4));
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let (url, start) = (db.url.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                PgStore::open(&url).map(|_| ())
            })
        })
        .collect();
    for o in openers {
        o.join().unwrap().expect("every opener succeeds");
    }
    // Every migration once.
    let migrations = db.int("SELECT COUNT(*) FROM schema_migrations");
    assert!(migrations >= 2, "{migrations}");
    assert_eq!(db.int("SELECT MAX(version) FROM schema_migrations"), migrations);
    assert_eq!(
        db.int("SELECT COUNT(DISTINCT version) FROM schema_migrations"),
        migrations
    );
    assert_eq!(db.int("SELECT COUNT(*) FROM store_gen"), 64);
    // Opening again is a no-op.
    PgStore::open(&db.url).unwrap();
    assert_eq!(db.int("SELECT COUNT(*) FROM schema_migrations"), migrations);
}

#[test]
fn an_unreachable_database_is_an_error() {
    let e = PgStore::open("postgres://postgres@127.0.0.1:1/none")
        .err()
        .expect("refused");
    assert!(e.to_string().contains("cannot connect"), "{e}");
}
