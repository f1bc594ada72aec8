//! The batched statements of many concurrent requests (nonce records, the generation query
//! of reads): each caller still gets exactly the answer it would get alone.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use vpnroute_domain::model::{RouteKind, VpnRoute};
use vpnroute_store::{NonceStore, ReadNonce, ReadTx, Store};
use vpnroute_store_postgres::PgStore;

fn route(dest: &str) -> VpnRoute {
    common::route_via("gw", dest, "vco")
}

/// Many threads race to record the same nonces, half of them on each of two replicas and
/// with both durabilities: each nonce is accepted exactly once.
#[test]
fn racing_records_of_one_nonce_accept_it_once_across_replicas() {
    let Some(db) = common::TestDb::create() else { return };
    let a = PgStore::open(&db.url).unwrap();
    let b = PgStore::open(&db.url).unwrap();
    let stores = [Arc::new(a.nonces()), Arc::new(b.nonces())];
    const THREADS: usize = 24;
    const NONCES: usize = 40;
    let go = Arc::new(Barrier::new(THREADS));
    let accepted: Vec<_> = (0..THREADS)
        .map(|t| {
            let nonces = stores[t % 2].clone();
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                (0..NONCES)
                    .filter(|i| {
                        let durable = (t / 2) % 3 == 0;
                        nonces
                            .record("key", &format!("n{i}"), 1_000 + t as i64, 100_000, durable)
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut times = [0usize; NONCES];
    for t in accepted {
        for i in t.join().unwrap() {
            times[i] += 1;
        }
    }
    assert_eq!(times, [1; NONCES], "accepted once each");
    assert_eq!(db.int("SELECT count(*) FROM nonces"), NONCES as i64);
}

/// Distinct nonces recorded at once are all accepted (a batch answers each caller for its
/// own nonce), and an expired one is accepted again by its own clock.
#[test]
fn concurrent_distinct_nonces_are_each_accepted_and_expiry_is_per_record() {
    let Some(db) = common::TestDb::create() else { return };
    let store = PgStore::open(&db.url).unwrap();
    let nonces = Arc::new(store.nonces());
    let go = Arc::new(Barrier::new(16));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let (nonces, go) = (nonces.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                (0..20).all(|i| {
                    nonces
                        .record(&format!("k{t}"), &format!("n{i}"), 1_000, 2_000, false)
                        .unwrap()
                })
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap(), "every distinct nonce is fresh");
    }
    assert!(
        !nonces.record("k0", "n0", 2_000, 3_000, false).unwrap(),
        "in force until its keep-until"
    );
    assert!(
        nonces.record("k0", "n0", 2_001, 3_001, false).unwrap(),
        "then accepted again"
    );
}

/// A read that begins after a commit was acknowledged (on another replica) sees it, while
/// other readers keep a generation query in flight all the time (so the read must wait for
/// the next query instead of taking the answer of one sent before it began).
#[test]
fn a_read_coalesced_with_others_after_a_commit_sees_it() {
    let Some(db) = common::TestDb::create() else { return };
    let a: Arc<dyn Store> = PgStore::open(&db.url).unwrap();
    let b: Arc<dyn Store> = PgStore::open(&db.url).unwrap();
    let count = |s: &dyn Store| s.read_fast(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let busy: Vec<_> = (0..6)
        .map(|_| {
            let (b, stop, reads) = (b.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    let n = b.read_fast(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap();
                    assert!(n >= last, "a replica's reads never go back: {n} after {last}");
                    last = n;
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for i in 1..=40u64 {
        a.write(|tx| tx.insert_route(&route(&format!("10.1.{i}.0/24"))).map(|_| ()))
            .unwrap();
        assert_eq!(count(&*b), i, "the read after commit {i} on the other replica");
    }
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 40, "the other readers ran alongside");
}

fn read_nonce(nonce: &str) -> ReadNonce<'_> {
    ReadNonce {
        access_key_id: "k",
        nonce,
        now_ms: 1_000,
        keep_until_ms: 10_000_000,
    }
}

/// A read that brings its request's nonce (`NonceReads`, one statement for both): it still
/// sees every commit acknowledged on another replica before it began, while other readers
/// keep the fast lane busy; its nonce counts once (refused afterwards by the lane and by
/// the other replica); the cache-only check answers only from results cached at the newest
/// generation the replica knows of.
#[test]
fn a_read_with_its_nonce_sees_earlier_commits_and_records_the_nonce_once() {
    let Some(db) = common::TestDb::create() else { return };
    let a = PgStore::open(&db.url).unwrap();
    let b = PgStore::open(&db.url).unwrap();
    let (na, nb) = (a.nonces(), b.nonces());
    let reads = nb.reads().expect("PostgreSQL nonces travel with reads");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let count = |tx: &dyn ReadTx| tx.count_routes("gw", RouteKind::Dbr);
    assert_eq!(reads.read_cached(|tx| count(tx).ok()), None, "nothing cached yet");
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let (b, stop) = (b.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    b.read_fast(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap();
                }
            })
        })
        .collect();
    for i in 1..=30u64 {
        let store: &dyn Store = &*a;
        store
            .write(|tx| tx.insert_route(&route(&format!("10.2.{i}.0/24"))).map(|_| ()))
            .unwrap();
        let n = format!("n{i}");
        let g = rt
            .block_on(reads.record_for_read(&read_nonce(&n)))
            .unwrap()
            .expect("a fresh nonce");
        let mut runs = 0;
        let seen = reads
            .read_at(g, |tx| {
                runs += 1;
                count(tx)
            })
            .unwrap();
        assert_eq!(seen, i, "the read after commit {i} on the other replica");
        assert!(runs <= 2);
        assert_eq!(rt.block_on(reads.record_for_read(&read_nonce(&n))).unwrap(), None);
        assert!(
            !na.record("k", &n, 2_000, 10_000_000, false).unwrap(),
            "refused on the other replica"
        );
        assert!(!nb.record("k", &n, 2_000, 10_000_000, true).unwrap(), "and to a write");
    }
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
    // Once read at the newest generation, the count is cached there; a commit makes it stale.
    let known = b.read_fast(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap();
    assert_eq!(reads.read_cached(|tx| count(tx).ok()), Some(Some(known)));
    let store: &dyn Store = &*b;
    store
        .write(|tx| tx.insert_route(&route("10.3.0.0/24")).map(|_| ()))
        .unwrap();
    assert_eq!(
        reads.read_cached(|tx| count(tx).ok()),
        None,
        "not cached at the new generation"
    );
    // A nonce refused before the read: the read does not run.
    assert!(na.record("k", "used", 1_000, 10_000_000, false).unwrap());
    assert_eq!(rt.block_on(reads.record_for_read(&read_nonce("used"))).unwrap(), None);
}
