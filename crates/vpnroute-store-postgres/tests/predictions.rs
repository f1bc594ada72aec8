//! Predictions of write transactions on the writer threads: an access key taken as recently
//! read, a version change recorded at once taken from the versions read with the gateway's
//! lock. Each is checked in the transaction's next round trip; a prediction that does not
//! hold fails the transaction, which is retried reading, so what commits is what reads would
//! have given. Here another session changes the predicted row between the prediction and its
//! check.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use vpnroute_domain::model::VpnRoute;
use vpnroute_store::{AccessKey, Account, NonceStore, ReadTx, Store, StoreError, WriteTx};
use vpnroute_store_postgres::PgStore;

fn route(dest: &str) -> VpnRoute {
    common::route_via("gw", dest, "vco")
}

/// Another session on the test database (raw SQL, no store).
struct Side {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Side {
    fn connect(url: &str) -> Side {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(conn);
            client
        });
        Side { rt, client }
    }

    fn run(&self, sql: &str) {
        self.rt.block_on(self.client.batch_execute(sql)).unwrap();
    }
}

/// A gateway `gw` with version 1 applied and nothing pending.
fn applied_gateway(store: &PgStore) {
    store
        .write(|tx| {
            tx.insert_route(&route("10.0.0.0/24"))?;
            tx.enqueue_version("gw", Some(1), 1)?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let claim = store.write(|tx| tx.claim_gateway("gw", "a", 2, 1000)).unwrap().unwrap();
    assert!(store.write(|tx| tx.record_applied(&claim, 1)).unwrap());
}

/// Account `acct` with the active access key `k1`, read by a read transaction (so remembered
/// for a second: a write may take it as read, checked in its next round trip).
fn active_key_read_recently(store: &PgStore) {
    store
        .write(|tx| {
            tx.insert_account(&Account {
                id: "acct".into(),
                name: "a".into(),
                is_root: true,
                created_at: 1,
            })?;
            tx.insert_access_key(&AccessKey {
                id: "k1".into(),
                account_id: "acct".into(),
                secret: "s".into(),
                status: "Active".into(),
                created_at: 1,
                ram_user_id: None,
            })
        })
        .unwrap();
    assert!(store.read(|tx| tx.access_key("k1")).unwrap().is_some());
}

#[test]
fn a_version_taken_at_once_holds_or_the_write_is_retried_reading() {
    let Some(db) = common::TestDb::create() else { return };
    let store = PgStore::open(&db.url).unwrap();
    applied_gateway(&store);
    let queued: &dyn Store = &*store;

    // Nothing in the way: taken at once, in one run.
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let version = queued
        .write_queued(move |tx| {
            counted.fetch_add(1, Ordering::SeqCst);
            tx.lock_gateway("gw")?;
            let v = tx.change_at_once("gw", 10)?;
            tx.insert_route(&route("10.0.1.0/24"))?;
            Ok(v)
        })
        .unwrap();
    assert_eq!((version, runs.load(Ordering::SeqCst)), (Some(2), 1));
    let versions = store.read(|tx| tx.gateway_versions("gw")).unwrap();
    assert_eq!(versions, (2, 2));

    // A reconciler's lease taken after the lock's reads, before the check: the prediction
    // (nothing pending) does not hold, the first run is undone and the retry declines.
    let side = Side::connect(&db.url);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let url = db.url.clone();
    let version = queued
        .write_queued(move |tx| {
            tx.lock_gateway("gw")?;
            if kept.lock().unwrap().is_empty() {
                Side::connect(&url).run(
                    "UPDATE gateway_versions SET claim_owner = 'b', lease_until = 9000000000000 WHERE gateway_id = 'gw'",
                );
            }
            let v = tx.change_at_once("gw", 20)?;
            kept.lock().unwrap().push(v);
            tx.insert_route(&route("10.0.2.0/24"))?;
            Ok(v)
        })
        .unwrap();
    assert_eq!(version, None, "declined once the lease is seen");
    assert_eq!(*seen.lock().unwrap(), [Some(3), None], "predicted, then read");
    let (versions, routes) = store
        .read(|tx| Ok::<_, StoreError>((tx.gateway_versions("gw")?, tx.gateway_routes("gw")?.len())))
        .unwrap();
    assert_eq!(versions, (2, 2), "the missed prediction took no version");
    assert_eq!(routes, 3, "the retried write's route once");
    side.run("UPDATE gateway_versions SET claim_owner = NULL, lease_until = NULL WHERE gateway_id = 'gw'");

    // Predictions are back for the next job.
    let version = queued
        .write_queued(|tx| {
            tx.lock_gateway("gw")?;
            tx.change_at_once("gw", 30)
        })
        .unwrap();
    assert_eq!(version, Some(3));
}

#[test]
fn a_key_taken_as_recently_read_is_checked_before_the_commit() {
    let Some(db) = common::TestDb::create() else { return };
    let store = PgStore::open(&db.url).unwrap();
    active_key_read_recently(&store);
    let queued: &dyn Store = &*store;

    // Unchanged: the write sees it as read and commits.
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let kept = statuses.clone();
    queued
        .write_queued(move |tx| {
            kept.lock().unwrap().push(tx.access_key("k1")?.map(|k| k.status));
            tx.insert_route(&route("10.0.0.0/24"))?;
            Ok(())
        })
        .unwrap();
    assert_eq!(*statuses.lock().unwrap(), [Some("Active".to_string())]);

    // Disabled by another session (another replica) within that second: the check fails,
    // the write runs again and reads the key as it is.
    Side::connect(&db.url).run("UPDATE access_keys SET status = 'Inactive' WHERE id = 'k1'");
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let kept = statuses.clone();
    queued
        .write_queued(move |tx| {
            kept.lock().unwrap().push(tx.access_key("k1")?.map(|k| k.status));
            tx.insert_route(&route("10.0.1.0/24"))?;
            Ok(())
        })
        .unwrap();
    let statuses = statuses.lock().unwrap().clone();
    assert_eq!(statuses.last().unwrap().as_deref(), Some("Inactive"), "{statuses:?}");
    if statuses.len() == 2 {
        assert_eq!(statuses[0].as_deref(), Some("Active"), "predicted, then read");
    } else {
        // The second had passed (a slow machine): read at once.
        assert_eq!(statuses.len(), 1);
    }
    let routes = store.read(|tx| tx.gateway_routes("gw")).unwrap();
    assert_eq!(routes.len(), 2, "each write's route once");

    // A change through this replica ends what it read recently: a first check no longer
    // passes on the old state.
    Side::connect(&db.url).run("UPDATE access_keys SET status = 'Active' WHERE id = 'k1'");
    assert_eq!(store.read(|tx| tx.access_key("k1")).unwrap().unwrap().status, "Active");
    let nonces = store.nonces();
    let reads = nonces.reads().unwrap();
    let first_check = || reads.read_cached(|tx| tx.access_key("k1").ok().flatten().map(|k| k.status));
    assert_eq!(first_check(), Some(Some("Active".to_string())), "recently read");
    store.write(|tx| tx.set_access_key_status("k1", "Inactive")).unwrap();
    assert_ne!(
        first_check(),
        Some(Some("Active".to_string())),
        "forgotten by the commit"
    );
}

#[test]
fn the_lock_of_a_gateway_that_does_not_exist_leaves_no_row() {
    let Some(db) = common::TestDb::create() else { return };
    let store = PgStore::open(&db.url).unwrap();
    assert_eq!(store.write(|tx| tx.lock_existing_gateway("vpn-junk")).unwrap(), None);
    store.write(|tx| tx.lock_gateway("vpn-other")).unwrap();
    let side = Side::connect(&db.url);
    let rows: Vec<String> = side
        .rt
        .block_on(
            side.client
                .query("SELECT gateway_id FROM gateway_locks ORDER BY 1", &[]),
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["vpn-other"]);
}

/// Far in the future: a nonce kept that long is refused for the whole test.
const KEEP: i64 = 9_000_000_000_000;

#[test]
fn a_nonce_taken_by_a_write_is_recorded_with_its_commit_or_on_its_own() {
    let Some(db) = common::TestDb::create() else { return };
    let store = PgStore::open(&db.url).unwrap();
    let nonces = Arc::new(store.nonces());
    let queued: &dyn Store = &*store;

    // Taken and committed: refused from then on.
    let taken = queued
        .write_queued(|tx| {
            let taken = tx.take_nonce("k", "n1", 1000, KEEP);
            tx.insert_route(&route("10.0.0.0/24"))?;
            Ok(taken)
        })
        .unwrap();
    assert!(taken, "a writer's transaction takes the nonce");
    assert!(
        !nonces.record("k", "n1", 2000, KEEP, true).unwrap(),
        "recorded by the commit"
    );

    // Still refused: the check fails before anything commits, and the retry does not take
    // it (it goes to the nonce store, which refuses it).
    let runs = Arc::new(Mutex::new(Vec::new()));
    let (kept, store_nonces) = (runs.clone(), nonces.clone());
    let refused = queued.write_queued(move |tx| {
        let taken = tx.take_nonce("k", "n1", 3000, KEEP);
        kept.lock().unwrap().push(taken);
        if !taken && !store_nonces.record("k", "n1", 3000, KEEP, true)? {
            return Err(StoreError::Constraint("nonce used".into()));
        }
        tx.insert_route(&route("10.0.1.0/24"))?;
        Ok(())
    });
    assert!(matches!(refused, Err(StoreError::Constraint(_))), "{refused:?}");
    assert_eq!(*runs.lock().unwrap(), [true, false], "taken, then recorded on its own");
    assert_eq!(
        store.read(|tx| tx.gateway_routes("gw")).unwrap().len(),
        1,
        "nothing of it committed"
    );

    // A request that fails on its own after taking its nonce is run again, so the nonce
    // outlives the failure (a replay is refused).
    let runs = Arc::new(Mutex::new(Vec::new()));
    let (kept, store_nonces) = (runs.clone(), nonces.clone());
    let failed = queued.write_queued(move |tx| -> Result<(), StoreError> {
        let taken = tx.take_nonce("k", "n2", 4000, KEEP);
        kept.lock().unwrap().push(taken);
        if !taken {
            assert!(store_nonces.record("k", "n2", 4000, KEEP, true)?);
        }
        Err(StoreError::Constraint("the request's own failure".into()))
    });
    assert!(matches!(failed, Err(StoreError::Constraint(_))), "{failed:?}");
    assert_eq!(*runs.lock().unwrap(), [true, false]);
    assert!(
        !nonces.record("k", "n2", 5000, KEEP, true).unwrap(),
        "the failed request's nonce is kept"
    );

    // An expired nonce is taken again.
    let taken = queued
        .write_queued(|tx| {
            let taken = tx.take_nonce("k", "old", 1000, 2000);
            tx.insert_route(&route("10.0.2.0/24"))?;
            Ok(taken)
        })
        .unwrap();
    assert!(taken);
    let taken = queued
        .write_queued(|tx| {
            let taken = tx.take_nonce("k", "old", 3000, KEEP);
            tx.insert_route(&route("10.0.3.0/24"))?;
            Ok(taken)
        })
        .unwrap();
    assert!(taken, "kept anew once expired, in one run");
    assert!(!nonces.record("k", "old", 4000, KEEP, true).unwrap());

    // Outside a writer thread (a plain write transaction): not taken.
    assert!(!store
        .write(|tx| Ok::<_, StoreError>(tx.take_nonce("k", "n3", 1000, KEEP)))
        .unwrap());
}

/// A write that takes its access key as recently read and its nonce checks both in one
/// statement: it commits in one run when both hold (a wrong parameter would fail the check
/// and show as a second run), and runs again reading when either does not.
#[test]
fn a_writes_key_and_nonce_are_checked_together() {
    let Some(db) = common::TestDb::create() else { return };
    let store = PgStore::open(&db.url).unwrap();
    let nonces = Arc::new(store.nonces());
    let queued: &dyn Store = &*store;
    // Each run: the key's status as the write saw it, and whether it took the nonce.
    type Runs = Arc<Mutex<Vec<(Option<String>, bool)>>>;
    // The key looked up first (as a request authenticates), or the nonce taken first.
    let write = |nonce: &'static str, dest: &'static str, nonce_first: bool| {
        let runs: Runs = Arc::default();
        let (kept, store_nonces) = (runs.clone(), nonces.clone());
        let result = queued.write_queued(move |tx| {
            let (status, taken) = if nonce_first {
                let taken = tx.take_nonce("k1", nonce, 1000, KEEP);
                (tx.access_key("k1")?.map(|k| k.status), taken)
            } else {
                let status = tx.access_key("k1")?.map(|k| k.status);
                (status, tx.take_nonce("k1", nonce, 1000, KEEP))
            };
            kept.lock().unwrap().push((status, taken));
            if !taken && !store_nonces.record("k1", nonce, 1000, KEEP, true)? {
                return Err(StoreError::Constraint("nonce used".into()));
            }
            tx.insert_route(&route(dest))?;
            Ok(())
        });
        let runs = runs.lock().unwrap().clone();
        (result, runs)
    };

    // Both hold: one run, the nonce recorded by the commit.
    active_key_read_recently(&store);
    let (result, runs) = write("n1", "10.0.0.0/24", false);
    result.unwrap();
    assert_eq!(runs, [(Some("Active".to_string()), true)]);
    assert!(
        !nonces.record("k1", "n1", 2000, KEEP, true).unwrap(),
        "recorded by the commit"
    );
    // The same with the nonce taken before the key is looked up.
    assert!(
        store.read(|tx| tx.access_key("k1")).unwrap().is_some(),
        "read again: remembered anew"
    );
    let (result, runs) = write("n0", "10.0.3.0/24", true);
    result.unwrap();
    assert_eq!(runs, [(Some("Active".to_string()), true)]);
    assert!(
        !nonces.record("k1", "n0", 2000, KEEP, true).unwrap(),
        "recorded by the commit"
    );

    // The nonce used already: the check fails, the retry meets the nonce store's refusal.
    let (result, runs) = write("n1", "10.0.1.0/24", false);
    assert!(matches!(result, Err(StoreError::Constraint(_))), "{result:?}");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs[0].1 && !runs[1].1, "taken, then recorded on its own: {runs:?}");

    // The key disabled by another session: the check fails and the retry reads the key as
    // it is; the nonce, not recorded by the failed run, is fresh for the retry.
    assert!(
        store.read(|tx| tx.access_key("k1")).unwrap().is_some(),
        "read again: remembered anew"
    );
    Side::connect(&db.url).run("UPDATE access_keys SET status = 'Inactive' WHERE id = 'k1'");
    let (result, runs) = write("n2", "10.0.2.0/24", false);
    result.unwrap();
    assert_eq!(runs.last().unwrap().0.as_deref(), Some("Inactive"), "{runs:?}");
    if runs.len() == 2 {
        assert_eq!(runs[0], (Some("Active".to_string()), true), "predicted, then read");
    } else {
        // The second had passed (a slow machine): read at once.
        assert_eq!(runs.len(), 1, "{runs:?}");
    }
    assert!(
        !nonces.record("k1", "n2", 2000, KEEP, true).unwrap(),
        "recorded once, by the retry"
    );
    let routes = store.read(|tx| tx.gateway_routes("gw")).unwrap();
    assert_eq!(routes.len(), 3, "the three writes that committed, once each");
}

/// A route's insert (its seq taken with the gateway's lock), update and delete in a version
/// recorded at once need no answer: on a writer thread they travel with the next round trip
/// (here the read after them, and the commit), and one that fails there fails the
/// transaction, which commits nothing.
#[test]
fn route_writes_at_once_travel_with_the_next_round_trip_and_fail_it() {
    let Some(db) = common::TestDb::create() else { return };
    let store = PgStore::open(&db.url).unwrap();
    applied_gateway(&store);
    store.write(|tx| tx.insert_route(&route("10.0.9.0/24"))).unwrap();
    let routes = store.read(|tx| tx.gateway_routes("gw")).unwrap();
    let (kept, gone) = (routes[0].clone(), routes[1].clone());
    let queued: &dyn Store = &*store;

    // An insert: its seq comes with the lock, after every seq before it.
    let (seq, seen_in_tx) = queued
        .write_queued(|tx| {
            tx.lock_gateway("gw")?;
            assert_eq!(tx.change_at_once("gw", 5)?, Some(2));
            let seq = tx.insert_route(&route("10.0.7.0/24"))?;
            Ok((seq, tx.gateway_routes("gw")?))
        })
        .unwrap();
    assert!(seq > gone.seq, "{seq} after {}", gone.seq);
    assert!(seen_in_tx.iter().any(|r| r.seq == seq && r.dest == "10.0.7.0/24"));
    let after = store.read(|tx| tx.gateway_routes("gw")).unwrap();
    assert_eq!(
        after.last().map(|r| (r.seq, r.dest.as_str())),
        Some((seq, "10.0.7.0/24"))
    );
    assert_eq!(store.read(|tx| tx.gateway_versions("gw")).unwrap(), (2, 2));
    let (k, n) = (after.last().unwrap().clone(), after.len());
    assert_eq!(
        store.read(|tx| tx.count_routes("gw", k.kind)).unwrap(),
        n as u64,
        "the route count moved with it"
    );
    queued
        .write_queued(move |tx| {
            tx.lock_gateway("gw")?;
            assert_eq!(tx.change_at_once("gw", 6)?, Some(3));
            tx.delete_route(&k)
        })
        .unwrap();

    let (k, g) = (kept.clone(), gone.clone());
    let seen_in_tx = queued
        .write_queued(move |tx| {
            tx.lock_gateway("gw")?;
            assert_eq!(tx.change_at_once("gw", 10)?, Some(4));
            tx.update_route(&VpnRoute { weight: 0, ..k.clone() })?;
            tx.delete_route(&g)?;
            // A read after them sees them (they went first in its round trip).
            tx.gateway_routes("gw")
        })
        .unwrap();
    assert_eq!(seen_in_tx.len(), 1);
    assert_eq!((seen_in_tx[0].seq, seen_in_tx[0].weight), (kept.seq, 0));
    let (versions, routes) = store
        .read(|tx| Ok::<_, StoreError>((tx.gateway_versions("gw")?, tx.gateway_routes("gw")?)))
        .unwrap();
    assert_eq!(versions, (4, 4));
    assert_eq!(routes.len(), 1);
    assert_eq!((routes[0].seq, routes[0].weight), (kept.seq, 0));

    // A delete PostgreSQL refuses: the call itself succeeds (the statement has not gone
    // out), the commit fails, and nothing of the transaction is kept.
    let side = Side::connect(&db.url);
    side.run(
        "CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'no deletes today'; END $$; \
         CREATE TRIGGER refuse_delete BEFORE DELETE ON vpn_routes FOR EACH ROW EXECUTE FUNCTION refuse_delete();",
    );
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let k = kept.clone();
    let failed = queued.write_queued(move |tx| {
        tx.lock_gateway("gw")?;
        let v = tx.change_at_once("gw", 20)?;
        let deleted = tx.delete_route(&VpnRoute { weight: 0, ..k.clone() });
        seen.lock().unwrap().push((v, deleted.is_ok()));
        deleted
    });
    let e = failed.expect_err("the refused delete fails the transaction");
    assert!(e.to_string().contains("no deletes today"), "{e}");
    assert_eq!(
        calls.lock().unwrap()[0],
        (Some(5), true),
        "deferred on the writer thread"
    );
    // The same for an insert.
    side.run("CREATE TRIGGER refuse_insert BEFORE INSERT ON vpn_routes FOR EACH ROW EXECUTE FUNCTION refuse_delete();");
    let seen = calls.clone();
    let failed = queued.write_queued(move |tx| {
        tx.lock_gateway("gw")?;
        let v = tx.change_at_once("gw", 30)?;
        let inserted = tx.insert_route(&route("10.0.8.0/24"));
        seen.lock().unwrap().push((v, inserted.is_ok()));
        inserted
    });
    assert!(failed.expect_err("refused").to_string().contains("no deletes today"));
    assert_eq!(
        calls.lock().unwrap()[1],
        (Some(5), true),
        "deferred on the writer thread"
    );
    let (versions, routes) = store
        .read(|tx| Ok::<_, StoreError>((tx.gateway_versions("gw")?, tx.gateway_routes("gw")?.len())))
        .unwrap();
    assert_eq!(versions, (4, 4), "no version taken");
    assert_eq!(routes, 1, "the route is still there, and no other");
    // A caller that ignores the failed round trip: the commit fails with its error, not
    // with PostgreSQL's "transaction aborted".
    let failed = queued.write_queued(|tx| {
        tx.lock_gateway("gw")?;
        tx.change_at_once("gw", 40)?;
        tx.insert_route(&route("10.0.8.0/24"))?;
        // (A read the transaction's memo cannot answer: it goes out with the insert.)
        let ignored = tx.all_gateway_versions();
        assert!(ignored.is_err());
        Ok(())
    });
    let e = failed.expect_err("refused").to_string();
    assert!(e.contains("no deletes today") && !e.contains("25P02"), "{e}");
}
