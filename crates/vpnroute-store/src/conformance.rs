//! The conformance suite: behaviour every store backend must have, written once against the
//! traits. A backend implements [`Harness`] (fresh, empty state per call of its factory) and
//! runs every test with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! vpnroute_store::conformance_tests!(MyHarness::new());
//! ```
//!
//! The traits are synchronous, so an async backend's harness blocks on its runtime inside.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use vpnroute_domain::model::{RouteKind, VpcRouteEntry, VpnRoute};

use crate::{
    AccessKey, Account, FixedWindowLimiter, NonceStore, RateLimiter, ReadAhead, ReadTx, ReadTxExt, ReconcileClaim,
    ResourceKind, Store, StoreError, WriteJob, WriteTx, WriteTxExt,
};

/// What a backend provides to the suite. One harness is one fresh, isolated state (an empty
/// temporary directory, an empty database schema).
pub trait Harness {
    /// The store of this harness (every call returns the same state).
    fn store(&self) -> Arc<dyn Store>;
    /// The nonce store of this harness, opened at `now_ms` remembering `window_ms`; opening it
    /// again models a restart and must keep what was recorded.
    fn nonces(&self, window_ms: i64, now_ms: i64) -> Arc<dyn NonceStore>;
    /// A rate limiter admitting `rps` calls per second per (key, action).
    fn rate_limiter(&self, rps: u32) -> Box<dyn RateLimiter> {
        Box::new(FixedWindowLimiter::new(rps))
    }
    /// Whether the backend can be reached; `false`: the test returns at once (the harness
    /// has said why, loudly, or failed when that is not allowed).
    fn available(&self) -> bool {
        true
    }
}

/// One `#[test]` per conformance test, each on a fresh harness from `$factory`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@tests $factory;
            resources_crud_ownership_and_paging,
            routes_by_key_dest_and_count,
            vpc_entries,
            client_tokens_save_lookup_and_expire,
            tasks_and_versions,
            a_change_at_once_is_recorded_with_its_route_writes,
            routes_at_a_version_and_changes_between_versions,
            reading_ahead_answers_as_the_single_reads,
            a_transactions_route_writes_show_in_its_later_reads,
            reconcile_claims_records_and_failures,
            a_restarted_owner_ends_its_previous_claims,
            accounts_and_access_keys,
            ram_directories_and_user_keys,
            settings_keep_the_first_value,
            a_failed_transaction_rolls_everything_back,
            group_commit_undoes_only_the_failed_request,
            the_gateway_lock_serialises_check_then_insert,
            the_lock_of_an_existing_gateway_gives_its_owner_and_serialises,
            a_retryable_failure_reruns_the_request,
            a_request_that_stays_retryable_gives_up_retryably,
            fast_reads_see_every_commit,
            the_change_feed_moves_forward,
            nonces_refuse_replays_and_expire,
            the_rate_limiter_counts_per_key_and_action,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let harness = $factory;
                if $crate::conformance::Harness::available(&harness) {
                    $crate::conformance::$name(&harness);
                }
            }
        )*
    };
}

fn route(gateway: &str, kind: RouteKind, source: &str, dest: &str, hop: &str) -> VpnRoute {
    VpnRoute {
        seq: 0,
        kind,
        gateway_id: gateway.into(),
        source: source.into(),
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

fn write(store: &dyn Store, f: impl FnOnce(&dyn WriteTx) -> Result<(), StoreError>) {
    store.write(f).expect("write transaction");
}

fn entry(id: &str, table: &str, dest: &str, hop: &str) -> VpcRouteEntry {
    VpcRouteEntry {
        id: id.into(),
        route_table_id: table.into(),
        dest: dest.into(),
        next_hop_type: "VpnGateway".into(),
        next_hop_id: hop.into(),
        entry_type: "Custom".into(),
        name: String::new(),
        description: String::new(),
        create_time: 1,
    }
}

pub fn resources_crud_ownership_and_paging(h: &dyn Harness) {
    let store = h.store();
    write(&*store, |tx| {
        for id in ["a", "b", "c", "d"] {
            tx.insert_resource(ResourceKind::Vpc, id, "acct", "cn-hangzhou", "", &format!("doc-{id}"))?;
        }
        tx.insert_resource(ResourceKind::Vpc, "x", "other", "cn-hangzhou", "", &"doc-x".to_string())?;
        tx.insert_resource(ResourceKind::Vpc, "y", "acct", "cn-shanghai", "", &"doc-y".to_string())?;
        tx.insert_resource(
            ResourceKind::VpnGateway,
            "g",
            "acct",
            "cn-hangzhou",
            "a",
            &"gw".to_string(),
        )?;
        Ok(())
    });
    store
        .read(|tx| {
            let a = tx.resource::<String>(ResourceKind::Vpc, "a")?.expect("a exists");
            assert_eq!((a.account_id.as_str(), a.doc.as_str()), ("acct", "doc-a"));
            assert!(
                tx.resource::<String>(ResourceKind::VpnGateway, "a")?.is_none(),
                "kinds are separate"
            );
            assert_eq!(
                tx.resource_owner(ResourceKind::Vpc, "x")?,
                Some(("other".into(), "cn-hangzhou".into()))
            );
            let (page, total) = tx.list_resources::<String>(ResourceKind::Vpc, "acct", "cn-hangzhou", None, 1, 2)?;
            assert_eq!(
                (page, total),
                (vec!["doc-b".to_string(), "doc-c".to_string()], 4),
                "creation order"
            );
            assert_eq!(tx.count_resources(ResourceKind::Vpc, "acct", "cn-hangzhou")?, 4);
            assert_eq!(
                tx.children::<String>(ResourceKind::VpnGateway, "a")?,
                vec!["gw".to_string()]
            );
            assert_eq!(tx.count_children(ResourceKind::VpnGateway, "a")?, 1);
            let (children, n) =
                tx.list_resources::<String>(ResourceKind::VpnGateway, "acct", "cn-hangzhou", Some("a"), 0, 10)?;
            assert_eq!((children.len(), n), (1, 1));
            assert_eq!(tx.all_resources::<String>(ResourceKind::Vpc)?.len(), 6);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(&*store, |tx| {
        tx.update_resource(ResourceKind::Vpc, "a", &"doc-a2".to_string())?;
        assert!(tx.delete_resource(ResourceKind::Vpc, "b")?);
        assert!(
            !tx.delete_resource(ResourceKind::Vpc, "b")?,
            "a second delete finds nothing"
        );
        Ok(())
    });
    store
        .read_fast(|tx| {
            assert_eq!(tx.resource::<String>(ResourceKind::Vpc, "a")?.unwrap().doc, "doc-a2");
            let (page, total) = tx.list_resources::<String>(ResourceKind::Vpc, "acct", "cn-hangzhou", None, 0, 10)?;
            assert_eq!(page, vec!["doc-a2", "doc-c", "doc-d"]);
            assert_eq!(total, 3);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub fn routes_by_key_dest_and_count(h: &dyn Harness) {
    let store = h.store();
    let mut seqs = Vec::new();
    write(&*store, |tx| {
        seqs.push(tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco-a"))?);
        seqs.push(tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco-b"))?);
        seqs.push(tx.insert_route(&route("gw", RouteKind::Pbr, "192.168.0.0/24", "10.0.0.0/24", "vco-a"))?);
        seqs.push(tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.1.0/24", "vco-a"))?);
        seqs.push(tx.insert_route(&route("other", RouteKind::Dbr, "", "10.0.0.0/24", "vco-c"))?);
        Ok(())
    });
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq follows creation order: {seqs:?}"
    );
    let dup = store.write(|tx| tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco-a")));
    assert!(dup.is_err(), "the same route twice is refused");
    store
        .read(|tx| {
            let key = tx.routes_with_key("gw", RouteKind::Dbr, "", "10.0.0.0/24")?;
            assert_eq!(
                key.iter().map(|r| r.next_hop.as_str()).collect::<Vec<_>>(),
                ["vco-a", "vco-b"]
            );
            assert_eq!(
                tx.routes_with_key("gw", RouteKind::Pbr, "192.168.0.0/24", "10.0.0.0/24")?
                    .len(),
                1
            );
            assert_eq!(tx.routes_with_dest("gw", "10.0.0.0/24")?.len(), 3, "both kinds");
            assert_eq!(tx.count_routes("gw", RouteKind::Dbr)?, 3);
            assert_eq!(tx.count_routes("gw", RouteKind::Pbr)?, 1);
            assert_eq!(tx.list_routes("gw", RouteKind::Dbr, 1, 1)?[0].next_hop, "vco-b");
            assert_eq!(tx.gateway_routes("gw")?.len(), 4);
            assert_eq!(tx.count_routes_via("vco-a")?, 3);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(&*store, |tx| {
        let mut r = tx.routes_with_key("gw", RouteKind::Dbr, "", "10.0.1.0/24")?.remove(0);
        r.weight = 0;
        r.description = "changed".into();
        tx.update_route(&r)?;
        let first = tx.routes_with_key("gw", RouteKind::Dbr, "", "10.0.0.0/24")?.remove(0);
        tx.delete_route(&first)?;
        tx.delete_route(&first)?; // idempotent: counted once
        Ok(())
    });
    store
        .read_fast(|tx| {
            assert_eq!(tx.count_routes("gw", RouteKind::Dbr)?, 2);
            let r = &tx.routes_with_key("gw", RouteKind::Dbr, "", "10.0.1.0/24")?[0];
            assert_eq!((r.weight, r.description.as_str()), (0, "changed"));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub fn vpc_entries(h: &dyn Harness) {
    let store = h.store();
    write(&*store, |tx| {
        tx.insert_vpc_entry(&entry("rte-1", "vtb-1", "10.0.0.0/24", "vpn-1"))?;
        tx.insert_vpc_entry(&entry("rte-2", "vtb-1", "10.0.0.0/24", "vpn-2"))?;
        tx.insert_vpc_entry(&entry("rte-3", "vtb-1", "10.0.1.0/24", "vpn-1"))?;
        tx.insert_vpc_entry(&entry("rte-4", "vtb-2", "10.0.0.0/24", "vpn-1"))?;
        Ok(())
    });
    store
        .read(|tx| {
            let ids = |v: Vec<VpcRouteEntry>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
            assert_eq!(
                ids(tx.vpc_entries_for_dest("vtb-1", "10.0.0.0/24")?),
                ["rte-1", "rte-2"]
            );
            assert_eq!(ids(tx.vpc_entries("vtb-1")?), ["rte-1", "rte-2", "rte-3"]);
            assert_eq!(tx.vpc_entry("rte-3")?.map(|e| e.dest), Some("10.0.1.0/24".into()));
            assert_eq!(tx.count_vpc_entries_to("vtb-1", "vpn-1")?, 2);
            assert_eq!(tx.count_vpc_entries_via("vpn-1")?, 3);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(&*store, |tx| {
        assert!(tx.delete_vpc_entry("rte-1")?);
        assert!(!tx.delete_vpc_entry("rte-1")?);
        tx.delete_vpc_entries_of_table("vtb-2")
    });
    store
        .read(|tx| {
            assert!(tx.vpc_entry("rte-1")?.is_none());
            assert!(tx.vpc_entries("vtb-2")?.is_empty());
            assert_eq!(tx.count_vpc_entries_via("vpn-1")?, 1);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub fn client_tokens_save_lookup_and_expire(h: &dyn Harness) {
    let store = h.store();
    write(&*store, |tx| {
        tx.save_client_token("acct", "CreateVpc", "t1", "h1", "r1", 1_000)?;
        tx.save_client_token("acct", "CreateVpc", "t2", "h2", "r2", 5_000)
    });
    store
        .read(|tx| {
            assert_eq!(
                tx.client_token("acct", "CreateVpc", "t1", 0)?,
                Some(("h1".into(), "r1".into()))
            );
            assert_eq!(tx.client_token("acct", "CreateVpc", "t1", 1_001)?, None, "too old");
            assert_eq!(tx.client_token("other", "CreateVpc", "t1", 0)?, None, "per account");
            assert_eq!(tx.client_token("acct", "DeleteVpc", "t1", 0)?, None, "per action");
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(&*store, |tx| {
        // Saving again replaces (a token reused after its window).
        tx.save_client_token("acct", "CreateVpc", "t1", "h3", "r3", 6_000)?;
        assert_eq!(tx.prune_client_tokens(5_500)?, 1, "t2 only");
        Ok(())
    });
    store
        .read(|tx| {
            assert_eq!(
                tx.client_token("acct", "CreateVpc", "t1", 0)?,
                Some(("h3".into(), "r3".into()))
            );
            assert_eq!(tx.client_token("acct", "CreateVpc", "t2", 0)?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

/// Tasks are `(gateway, version, due time)`; the desired version moves with each change.
pub fn tasks_and_versions(h: &dyn Harness) {
    let store = h.store();
    let (v1, v2) = store
        .write(|tx| {
            let v1 = tx.enqueue_version("gw", Some(100), 1)?;
            let v2 = tx.enqueue_version("gw", None, 2)?;
            tx.enqueue_version("gw2", Some(50), 3)?;
            Ok::<_, StoreError>((v1, v2))
        })
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    store
        .read(|tx| {
            let due: Vec<_> = tx
                .pending_tasks("gw")?
                .into_iter()
                .map(|t| (t.version, t.due_at))
                .collect();
            assert_eq!(due, [(1, Some(100)), (2, None)]);
            assert_eq!(tx.all_pending_tasks()?.len(), 3);
            assert_eq!(tx.gateway_versions("gw")?, (2, 0));
            assert_eq!(tx.gateway_versions("nothing")?, (0, 0));
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(&*store, |tx| {
        assert_eq!(tx.reschedule_tasks("gw", Some(7))?, 2);
        Ok(())
    });
    store
        .read(|tx| {
            let due: Vec<_> = tx.pending_tasks("gw")?.into_iter().map(|t| t.due_at).collect();
            assert_eq!(due, [Some(7), Some(7)]);
            let all = tx.all_gateway_versions()?;
            assert_eq!(all.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(), ["gw", "gw2"]);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(&*store, |tx| tx.delete_gateway_state("gw"));
    store
        .read(|tx| {
            assert!(tx.pending_tasks("gw")?.is_empty());
            assert_eq!(tx.gateway_versions("gw")?, (0, 0));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

/// [`WriteTx::change_at_once`]: desired and applied move together only when nothing is
/// pending and the gateway is unclaimed; its route writes keep no earlier state and are
/// handed back in order; a rolled-back request's are dropped.
pub fn a_change_at_once_is_recorded_with_its_route_writes(h: &dyn Harness) {
    let store = h.store();
    // A gateway with a version applied and nothing pending.
    write(&*store, |tx| {
        tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco"))?;
        tx.enqueue_version("gw", Some(1), 1)?;
        Ok(())
    });
    let claim = store.write(|tx| tx.claim_gateway("gw", "a", 2, 1000)).unwrap().unwrap();
    // Claimed: not at once.
    assert_eq!(store.write(|tx| tx.change_at_once("gw", 3)).unwrap(), None);
    assert!(store.write(|tx| tx.record_applied(&claim, 1)).unwrap());
    let (version, changes, seq) = store
        .write(|tx| {
            let v = tx.change_at_once("gw", 4)?;
            let seq = tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.1.0/24", "vco"))?;
            let mut first = tx
                .gateway_routes("gw")?
                .into_iter()
                .find(|r| r.dest == "10.0.0.0/24")
                .unwrap();
            first.weight = 0;
            tx.update_route(&first)?;
            tx.delete_route(&first)?;
            Ok::<_, StoreError>((v, tx.take_changes_at_once(), (seq, first.seq)))
        })
        .unwrap();
    assert_eq!(version, Some(2));
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!((c.gateway_id.as_str(), c.version), ("gw", 2));
    let writes: Vec<(i64, Option<(String, i64)>)> = c
        .routes
        .iter()
        .map(|(s, r)| (*s, r.as_ref().map(|r| (r.dest.clone(), r.weight))))
        .collect();
    assert_eq!(
        writes,
        [
            (seq.0, Some(("10.0.1.0/24".to_string(), 100))),
            (seq.1, Some(("10.0.0.0/24".to_string(), 0))),
            (seq.1, None)
        ]
    );
    store
        .read(|tx| {
            assert_eq!(tx.gateway_versions("gw")?, (2, 2));
            assert!(tx.pending_tasks("gw")?.is_empty());
            // No earlier state kept: the routes at the applied version are the current ones.
            assert!(tx.route_changes("gw", 1, 2)?.is_empty());
            Ok::<_, StoreError>(())
        })
        .unwrap();
    // Pending work (a version not applied yet): not at once, and its route writes are versioned.
    write(&*store, |tx| {
        tx.enqueue_version("gw", None, 5)?;
        Ok(())
    });
    write(&*store, |tx| {
        assert_eq!(tx.change_at_once("gw", 6)?, None);
        // Versioned as usual: its before-image belongs to the next version.
        tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.2.0/24", "vco"))?;
        tx.enqueue_version("gw", None, 6)?;
        assert!(tx.take_changes_at_once().is_empty());
        Ok(())
    });
    assert_eq!(store.read(|tx| tx.route_changes("gw", 2, 4)).unwrap().len(), 1);
    // A rolled-back request's version and writes are gone with it.
    assert_eq!(
        store.write(|tx| tx.change_at_once("gw2", 7)).unwrap(),
        None,
        "a gateway without versions"
    );
    write(&*store, |tx| {
        tx.insert_route(&route("gw3", RouteKind::Dbr, "", "10.0.0.0/24", "vco"))?;
        tx.enqueue_version("gw3", Some(1), 1)?;
        Ok(())
    });
    let claim = store
        .write(|tx| tx.claim_gateway("gw3", "a", 2, 1000))
        .unwrap()
        .unwrap();
    assert!(store.write(|tx| tx.record_applied(&claim, 1)).unwrap());
    let (taken, seen) = mpsc::channel();
    let failed = submit(&*store, {
        let taken = taken.clone();
        move |tx| {
            let _ = taken.send(("failed", tx.change_at_once("gw3", 8)?.unwrap_or(-1)));
            tx.insert_route(&route("gw3", RouteKind::Dbr, "", "10.0.9.0/24", "vco"))?;
            Ok(false)
        }
    });
    let next = submit(&*store, move |tx| {
        let _ = taken.send(("next", tx.take_changes_at_once().len() as i64));
        Ok(true)
    });
    finished(&failed).unwrap();
    finished(&next).unwrap();
    let seen: Vec<(&str, i64)> = seen.try_iter().collect();
    assert!(seen.contains(&("failed", 2)), "{seen:?}");
    assert!(
        seen.contains(&("next", 0)),
        "the failed request's version was dropped: {seen:?}"
    );
    assert_eq!(store.read(|tx| tx.gateway_versions("gw3")).unwrap(), (1, 1));
}

/// The routes of a gateway at any version not yet applied: each change is versioned with the
/// task committed with it, and the state at a version ignores every later change.
pub fn routes_at_a_version_and_changes_between_versions(h: &dyn Harness) {
    let store = h.store();
    let dests =
        |routes: Vec<VpnRoute>| -> Vec<(String, i64)> { routes.into_iter().map(|r| (r.dest, r.weight)).collect() };
    // v1: a and b.
    let (a, b) = store
        .write(|tx| {
            let a = tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco"))?;
            let b = tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.1.0/24", "vco"))?;
            tx.enqueue_version("gw", Some(0), 1)?;
            Ok::<_, StoreError>((a, b))
        })
        .unwrap();
    // v2: b's weight changes, c comes; v3: a goes, b changes again.
    let c = store
        .write(|tx| {
            let mut rb = route("gw", RouteKind::Dbr, "", "10.0.1.0/24", "vco");
            rb.seq = b;
            rb.weight = 0;
            tx.update_route(&rb)?;
            let c = tx.insert_route(&route("gw", RouteKind::Pbr, "1.0.0.0/8", "10.0.2.0/24", "vco"))?;
            tx.enqueue_version("gw", None, 2)?;
            Ok::<_, StoreError>(c)
        })
        .unwrap();
    write(&*store, |tx| {
        let mut ra = route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco");
        ra.seq = a;
        tx.delete_route(&ra)?;
        let mut rb = route("gw", RouteKind::Dbr, "", "10.0.1.0/24", "vco");
        rb.seq = b;
        rb.weight = 100;
        rb.published = true;
        tx.update_route(&rb)?;
        tx.enqueue_version("gw", None, 3)?;
        Ok(())
    });
    store
        .read(|tx| {
            assert!(tx.routes_at_version("gw", 0)?.is_empty());
            assert_eq!(
                dests(tx.routes_at_version("gw", 1)?),
                [("10.0.0.0/24".into(), 100), ("10.0.1.0/24".into(), 100)]
            );
            assert_eq!(
                dests(tx.routes_at_version("gw", 2)?),
                [
                    ("10.0.0.0/24".into(), 100),
                    ("10.0.1.0/24".into(), 0),
                    ("10.0.2.0/24".into(), 100)
                ]
            );
            let at3 = tx.routes_at_version("gw", 3)?;
            assert_eq!(at3, tx.gateway_routes("gw")?);
            assert_eq!(dests(at3), [("10.0.1.0/24".into(), 100), ("10.0.2.0/24".into(), 100)]);

            type Changes = Vec<(i64, Option<(String, i64)>)>;
            let changes = |from, to| -> Result<Changes, StoreError> {
                Ok(tx
                    .route_changes("gw", from, to)?
                    .into_iter()
                    .map(|(seq, r)| (seq, r.map(|r| (r.dest, r.weight))))
                    .collect())
            };
            assert_eq!(
                changes(1, 2)?,
                [
                    (b, Some(("10.0.1.0/24".into(), 0))),
                    (c, Some(("10.0.2.0/24".into(), 100)))
                ]
            );
            assert_eq!(
                changes(1, 3)?,
                [
                    (a, None),
                    (b, Some(("10.0.1.0/24".into(), 100))),
                    (c, Some(("10.0.2.0/24".into(), 100)))
                ]
            );
            assert_eq!(changes(3, 3)?, []);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

/// What a transaction reads after [`ReadTx::read_ahead`] is what it reads without: for ids
/// that exist and ids that do not, children of every kind, versions and routes at the
/// version read ahead and at another one, ids named twice; and in a write transaction
/// (where a store may decline to read ahead) its own later writes show through.
pub fn reading_ahead_answers_as_the_single_reads(h: &dyn Harness) {
    let store = h.store();
    let (a, b) = store
        .write(|tx| {
            tx.insert_resource(ResourceKind::Vpc, "v1", "acct", "cn-hangzhou", "", &"vpc".to_string())?;
            tx.insert_resource(
                ResourceKind::CustomerGateway,
                "cg1",
                "acct",
                "cn-hangzhou",
                "",
                &"cg".to_string(),
            )?;
            for g in ["g1", "g2"] {
                tx.insert_resource(
                    ResourceKind::VpnGateway,
                    g,
                    "acct",
                    "cn-hangzhou",
                    "v1",
                    &format!("gw-{g}"),
                )?;
            }
            tx.insert_resource(
                ResourceKind::VpnConnection,
                "c1",
                "acct",
                "cn-hangzhou",
                "g1",
                &"c1".to_string(),
            )?;
            tx.insert_resource(
                ResourceKind::SslVpnServer,
                "s1",
                "acct",
                "cn-hangzhou",
                "g1",
                &"s1".to_string(),
            )?;
            tx.insert_resource(
                ResourceKind::VpnConnection,
                "c2",
                "other",
                "cn-shanghai",
                "g1",
                &"c2".to_string(),
            )?;
            let a = tx.insert_route(&route("g1", RouteKind::Dbr, "", "10.0.0.0/24", "c1"))?;
            let b = tx.insert_route(&route("g1", RouteKind::Pbr, "1.0.0.0/8", "10.0.1.0/24", "c2"))?;
            tx.enqueue_version("g1", Some(0), 1)?;
            Ok::<_, StoreError>((a, b))
        })
        .unwrap();
    write(&*store, |tx| {
        tx.delete_route(&VpnRoute {
            seq: a,
            ..route("g1", RouteKind::Dbr, "", "10.0.0.0/24", "c1")
        })?;
        tx.update_route(&VpnRoute {
            seq: b,
            weight: 0,
            ..route("g1", RouteKind::Pbr, "1.0.0.0/8", "10.0.1.0/24", "c2")
        })?;
        tx.insert_route(&route("g1", RouteKind::Dbr, "", "10.0.2.0/24", "c1"))?;
        tx.enqueue_version("g1", None, 2)?;
        Ok(())
    });
    let ids = ["g1", "g2", "nope"];
    let all = || {
        vec![
            // Ids named twice, as several gateways name one VPC or customer gateway.
            ReadAhead::GatewayVersions(["g1", "g2", "nope", "g1"].map(String::from).to_vec()),
            ReadAhead::Resources(ResourceKind::VpnGateway, ids.map(String::from).to_vec()),
            ReadAhead::Resources(ResourceKind::Vpc, vec!["v1".into(), "g1".into(), "v1".into()]),
            ReadAhead::Resources(
                ResourceKind::CustomerGateway,
                vec!["cg1".into(), "nope".into(), "cg1".into()],
            ),
            ReadAhead::Children(["g1", "g2", "nope", "g1"].map(String::from).to_vec()),
            ReadAhead::RoutesAtVersion(vec![
                ("g1".into(), 1),
                ("g2".into(), 2),
                ("nope".into(), 0),
                ("g1".into(), 1),
                ("g1".into(), 2),
            ]),
            ReadAhead::Resources(ResourceKind::VpnConnection, Vec::new()),
        ]
    };
    type Answers = Vec<String>;
    let answers = |tx: &dyn ReadTx| -> Result<Answers, StoreError> {
        let mut out = Vec::new();
        for id in ids {
            out.push(format!(
                "{id}: {:?}",
                tx.resource::<String>(ResourceKind::VpnGateway, id)?
                    .map(|r| r.doc.clone())
            ));
            out.push(format!("{id}: {:?}", tx.resource_owner(ResourceKind::VpnGateway, id)?));
            out.push(format!(
                "{id}: {:?}",
                tx.children_docs(ResourceKind::VpnConnection, id)?
            ));
            out.push(format!("{id}: {:?}", tx.children_docs(ResourceKind::SslVpnServer, id)?));
            out.push(format!("{id}: {:?}", tx.gateway_versions(id)?));
            for version in [1, 2] {
                let routes: Vec<_> = tx
                    .routes_at_version(id, version)?
                    .into_iter()
                    .map(|r| (r.seq, r.dest, r.weight))
                    .collect();
                out.push(format!("{id}@{version}: {routes:?}"));
            }
        }
        for (kind, id) in [
            (ResourceKind::Vpc, "v1"),
            (ResourceKind::Vpc, "g1"),
            (ResourceKind::CustomerGateway, "cg1"),
            (ResourceKind::CustomerGateway, "nope"),
            (ResourceKind::VpnConnection, "c2"),
        ] {
            let r = tx.resource::<String>(kind, id)?;
            out.push(format!("{id}: {:?}", r.map(|r| (r.account_id.clone(), r.doc.clone()))));
        }
        Ok(out)
    };
    let plain = store.read(|tx| answers(tx)).unwrap();
    assert!(
        plain.contains(&format!(
            "g1@1: {:?}",
            [(a, "10.0.0.0/24".to_string(), 100), (b, "10.0.1.0/24".into(), 100)]
        )),
        "{plain:#?}"
    );
    assert!(plain.contains(&r#"g1: ["\"c1\"", "\"c2\""]"#.to_string()), "{plain:#?}");
    let ahead = store
        .read(|tx| {
            tx.read_ahead(&all())?;
            answers(tx)
        })
        .unwrap();
    assert_eq!(ahead, plain);
    // A write transaction's own writes after reading ahead.
    write(&*store, |tx| {
        tx.read_ahead(&all())?;
        tx.insert_resource(
            ResourceKind::VpnConnection,
            "c3",
            "acct",
            "cn-hangzhou",
            "g1",
            &"c3".to_string(),
        )?;
        tx.update_resource(ResourceKind::Vpc, "v1", &"vpc-2".to_string())?;
        let desired = tx.enqueue_version("g1", None, 3)?;
        assert_eq!(
            tx.children_docs(ResourceKind::VpnConnection, "g1")?,
            [r#""c1""#, r#""c2""#, r#""c3""#]
        );
        assert_eq!(
            tx.resource::<String>(ResourceKind::Vpc, "v1")?.map(|r| r.doc.clone()),
            Some("vpc-2".into())
        );
        assert_eq!(tx.gateway_versions("g1")?.0, desired);
        Ok(())
    });
}

/// After the gateway's lock (which may read its routes along) a transaction's own inserts,
/// updates and deletes of routes show in its later reads of them, in creation order, for a
/// change recorded at once and for a versioned one; and they are what it committed.
pub fn a_transactions_route_writes_show_in_its_later_reads(h: &dyn Harness) {
    let store = h.store();
    write(&*store, |tx| {
        tx.insert_resource(
            ResourceKind::VpnGateway,
            "gw",
            "acct",
            "cn-hangzhou",
            "",
            &"gw".to_string(),
        )?;
        tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "c1"))?;
        tx.insert_route(&route("gw", RouteKind::Pbr, "1.0.0.0/8", "10.0.1.0/24", "c1"))?;
        tx.enqueue_version("gw", Some(1), 1)?;
        Ok(())
    });
    let claim = store.write(|tx| tx.claim_gateway("gw", "a", 2, 1000)).unwrap().unwrap();
    assert!(store.write(|tx| tx.record_applied(&claim, 1)).unwrap());
    type Row = (i64, String, String, i64, String);
    let rows = |routes: Vec<VpnRoute>| -> Vec<Row> {
        routes
            .into_iter()
            .map(|r| (r.seq, r.source, r.dest, r.weight, r.description))
            .collect()
    };
    for at_once in [true, false] {
        if !at_once {
            // A version not applied yet: this round's change is versioned.
            write(&*store, |tx| tx.enqueue_version("gw", None, 3).map(|_| ()));
        }
        let (inside, expected) = store
            .write(|tx| {
                assert!(tx.lock_existing_gateway("gw")?.is_some());
                let before = tx.gateway_routes("gw")?;
                assert_eq!(tx.change_at_once("gw", 3)?.is_some(), at_once);
                let dest = if at_once { "10.0.2.0/24" } else { "10.0.3.0/24" };
                let seq = tx.insert_route(&route("gw", RouteKind::Dbr, "", dest, "c1"))?;
                let mut first = before.iter().find(|r| r.dest == "10.0.0.0/24").unwrap().clone();
                let gone = before.iter().find(|r| r.kind == RouteKind::Pbr).unwrap().clone();
                first.weight = 0;
                first.description = format!("at once: {at_once}");
                tx.update_route(&first)?;
                tx.delete_route(&gone)?;
                let mut expected = rows(before);
                for r in expected.iter_mut().filter(|r| r.0 == first.seq) {
                    (r.3, r.4) = (0, first.description.clone());
                }
                expected.retain(|r| r.0 != gone.seq);
                expected.push((seq, String::new(), dest.into(), 100, String::new()));
                let with_dest = |d: &str| -> Vec<Row> { expected.iter().filter(|r| r.2 == d).cloned().collect() };
                assert_eq!(rows(tx.routes_with_dest("gw", dest)?), with_dest(dest));
                assert_eq!(rows(tx.routes_with_dest("gw", &first.dest)?), with_dest(&first.dest));
                assert!(tx
                    .routes_with_key("gw", RouteKind::Pbr, &gone.source, &gone.dest)?
                    .is_empty());
                Ok::<_, StoreError>((rows(tx.gateway_routes("gw")?), expected))
            })
            .unwrap();
        assert_eq!(inside, expected, "at once: {at_once}");
        assert_eq!(rows(store.read(|tx| tx.gateway_routes("gw")).unwrap()), expected);
        // The next round starts from these: put one pbr route back, at once or versioned.
        write(&*store, |tx| {
            tx.insert_route(&route("gw", RouteKind::Pbr, "1.0.0.0/8", "10.0.1.0/24", "c1"))?;
            Ok(())
        });
        let pending = store.read(|tx| tx.pending_tasks("gw")).unwrap();
        if let Some(last) = pending.last() {
            let claim = store.write(|tx| tx.claim_gateway("gw", "a", 4, 1000)).unwrap().unwrap();
            assert!(store.write(|tx| tx.record_applied(&claim, last.version)).unwrap());
        }
    }
}

/// Claims: one owner at a time until the lease runs out; records only from the latest claim,
/// versions never backwards; failures counted with their retry time; recording completes
/// tasks and forgets the before-images of applied versions.
pub fn reconcile_claims_records_and_failures(h: &dyn Harness) {
    let store = h.store();
    type ClaimFn<'a> = &'a dyn Fn(&dyn WriteTx) -> Result<Option<ReconcileClaim>, StoreError>;
    let w = |f: ClaimFn<'_>| store.write(|tx| f(tx)).unwrap();
    write(&*store, |tx| {
        tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco"))?;
        tx.enqueue_version("gw", Some(100), 1)?;
        tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.1.0/24", "vco"))?;
        tx.enqueue_version("gw", Some(200), 2)?;
        tx.enqueue_version("manual", None, 3)?;
        Ok(())
    });
    assert!(
        w(&|tx| tx.claim_due_gateways("a", 50, 1000, 1).map(|mut v| v.pop())).is_none(),
        "nothing due yet"
    );
    assert_eq!(store.read(|tx| tx.next_reconcile_wake(50)).unwrap(), Some(100));
    let first = w(&|tx| tx.claim_due_gateways("a", 150, 1000, 1).map(|mut v| v.pop())).expect("gw is due");
    assert_eq!(
        (
            first.gateway_id.as_str(),
            first.target_version,
            first.applied_version,
            first.attempts
        ),
        ("gw", 1, 0, 0)
    );
    // Held: nobody else claims it before the lease runs out.
    assert!(w(&|tx| tx.claim_due_gateways("b", 250, 1000, 1).map(|mut v| v.pop())).is_none());
    assert!(w(&|tx| tx.claim_gateway("gw", "b", 250, 1000)).is_none());
    // A failure: counted, claim ended, no claim before the retry time.
    let attempts = store.write(|tx| tx.record_failure(&first, "boom", 400)).unwrap();
    assert_eq!(attempts, Some(1));
    let f = store.read(|tx| tx.reconcile_failure("gw")).unwrap().unwrap();
    assert_eq!(
        (f.attempts, f.last_error.as_str(), f.next_retry_ms),
        (1, "boom", Some(400))
    );
    assert!(w(&|tx| tx.claim_due_gateways("b", 399, 1000, 1).map(|mut v| v.pop())).is_none());
    assert_eq!(store.read(|tx| tx.next_reconcile_wake(300)).unwrap(), Some(400));
    let second = w(&|tx| tx.claim_due_gateways("b", 400, 1000, 1).map(|mut v| v.pop())).expect("retry time");
    assert_eq!(
        (second.target_version, second.attempts),
        (2, 1),
        "both tasks due by now"
    );
    assert!(second.token > first.token);
    // The stale claim records nothing.
    assert!(!store.write(|tx| tx.record_applied(&first, 2)).unwrap());
    assert_eq!(store.write(|tx| tx.record_failure(&first, "late", 0)).unwrap(), None);
    assert!(store.write(|tx| tx.record_applied(&second, 2)).unwrap());
    store
        .read(|tx| {
            assert_eq!(tx.gateway_versions("gw")?, (2, 2));
            assert!(tx.pending_tasks("gw")?.is_empty());
            assert!(tx.reconcile_failure("gw")?.is_none());
            assert_eq!(tx.routes_at_version("gw", 2)?.len(), 2);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    // Versions never go backwards; a repair at the applied version records again.
    let repair = w(&|tx| tx.claim_gateway("gw", "a", 500, 1000)).unwrap();
    assert_eq!(repair.target_version, 2);
    let older = ReconcileClaim {
        target_version: 1,
        ..repair.clone()
    };
    assert!(!store.write(|tx| tx.record_applied(&older, 1)).unwrap());
    assert!(store.write(|tx| tx.record_applied(&repair, 2)).unwrap());
    // Release ends a claim without a record; an expired lease can be taken over.
    let c = w(&|tx| tx.claim_gateway("gw", "a", 600, 100)).unwrap();
    write(&*store, |tx| tx.release_claim(&c));
    let c = w(&|tx| tx.claim_gateway("gw", "b", 601, 100)).unwrap();
    let taken = w(&|tx| tx.claim_gateway("gw", "a", 701, 100)).expect("lease ran out");
    assert!(!store.write(|tx| tx.record_applied(&c, 2)).unwrap());
    assert!(store.write(|tx| tx.record_applied(&taken, 2)).unwrap());
    // A manual task is never due.
    assert!(w(&|tx| tx.claim_due_gateways("a", i64::MAX / 2, 1000, 1).map(|mut v| v.pop())).is_none());
    assert_eq!(store.read(|tx| tx.next_reconcile_wake(800)).unwrap(), None);
    write(&*store, |tx| tx.reschedule_tasks("manual", Some(900)).map(|_| ()));
    let m = w(&|tx| tx.claim_due_gateways("a", 900, 1000, 1).map(|mut v| v.pop())).unwrap();
    assert_eq!((m.gateway_id.as_str(), m.target_version), ("manual", 1));
}

/// A restarted owner ends the claims of its previous run; until then its own live claim
/// blocks it like any other; the dead claim stays fenced off.
pub fn a_restarted_owner_ends_its_previous_claims(h: &dyn Harness) {
    let store = h.store();
    let claim = |owner: &str, now| {
        store
            .write(|tx| tx.claim_due_gateways(owner, now, 30_000, 1))
            .unwrap()
            .pop()
    };
    write(&*store, |tx| tx.enqueue_version("gw", Some(0), 1).map(|_| ()));
    let dead = claim("a", 10).unwrap();
    assert!(claim("b", 20).is_none());
    assert!(claim("a", 20).is_none(), "a live claim blocks its own owner too");
    assert_eq!(store.write(|tx| tx.release_owner_claims("a")).unwrap(), 1);
    let again = claim("a", 20).expect("claims of the previous run ended");
    assert!(again.token > dead.token);
    assert!(!store.write(|tx| tx.record_applied(&dead, 1)).unwrap());
    assert!(store.write(|tx| tx.record_applied(&again, 1)).unwrap());
}

pub fn settings_keep_the_first_value(h: &dyn Harness) {
    let store = h.store();
    let read = |name: &'static str| store.read(|tx| tx.setting(name)).unwrap();
    assert_eq!(read("sts_key"), None);
    write(&*store, |tx| tx.put_setting_if_absent("sts_key", "first"));
    write(&*store, |tx| tx.put_setting_if_absent("sts_key", "second"));
    write(&*store, |tx| tx.put_setting_if_absent("other", "x"));
    assert_eq!(read("sts_key").as_deref(), Some("first"), "the first writer wins");
    assert_eq!(read("other").as_deref(), Some("x"));
}

pub fn ram_directories_and_user_keys(h: &dyn Harness) {
    let store = h.store();
    let user_key = |id: &str, user: &str, at: i64| AccessKey {
        id: id.into(),
        account_id: "a1".into(),
        secret: format!("secret-{id}"),
        status: "Active".into(),
        created_at: at,
        ram_user_id: Some(user.into()),
    };
    write(&*store, |tx| {
        tx.insert_account(&Account {
            id: "a1".into(),
            name: "a1".into(),
            is_root: true,
            created_at: 1,
        })?;
        tx.insert_access_key(&user_key("k2", "u1", 2))?;
        tx.insert_access_key(&user_key("k1", "u1", 1))?;
        tx.insert_access_key(&user_key("k3", "u2", 3))?;
        tx.put_ram_directory("a1", "{\"users\":{}}")
    });
    store
        .read_fast(|tx| {
            let ids: Vec<_> = tx.ram_user_access_keys("a1", "u1")?.into_iter().map(|k| k.id).collect();
            assert_eq!(ids, ["k1", "k2"], "the user's keys, oldest first");
            assert_eq!(tx.access_key("k3")?.and_then(|k| k.ram_user_id), Some("u2".into()));
            assert!(tx.ram_user_access_keys("a1", "nobody")?.is_empty());
            assert_eq!(tx.ram_directory("a1")?.as_deref(), Some("{\"users\":{}}"));
            assert_eq!(tx.ram_directory("a2")?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(&*store, |tx| tx.put_ram_directory("a1", "{}"));
    store
        .read_fast(|tx| {
            assert_eq!(
                tx.ram_directory("a1")?.as_deref(),
                Some("{}"),
                "replaced, and no stale cached copy"
            );
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub fn accounts_and_access_keys(h: &dyn Harness) {
    let store = h.store();
    let account = |id: &str, root: bool, at: i64| Account {
        id: id.into(),
        name: format!("name-{id}"),
        is_root: root,
        created_at: at,
    };
    let key = |id: &str, at: i64| AccessKey {
        id: id.into(),
        account_id: "a1".into(),
        secret: format!("secret-{id}"),
        status: "Active".into(),
        created_at: at,
        ram_user_id: None,
    };
    write(&*store, |tx| {
        tx.insert_account(&account("a2", false, 2))?;
        tx.insert_account(&account("a1", true, 1))?;
        tx.insert_access_key(&key("k2", 2))?;
        tx.insert_access_key(&key("k1", 1))
    });
    store
        .read(|tx| {
            let ids: Vec<_> = tx.accounts()?.into_iter().map(|a| a.id).collect();
            assert_eq!(ids, ["a1", "a2"], "by creation time");
            assert_eq!(tx.account("name-a2")?.map(|a| a.id), Some("a2".into()), "by name too");
            assert_eq!(tx.root_account()?.map(|a| a.id), Some("a1".into()));
            let keys: Vec<_> = tx.access_keys()?.into_iter().map(|k| k.id).collect();
            assert_eq!(keys, ["k1", "k2"]);
            assert_eq!(tx.access_key("k1")?, Some(key("k1", 1)));
            Ok::<_, StoreError>(())
        })
        .unwrap();
    write(&*store, |tx| {
        assert!(tx.set_access_key_status("k1", "Inactive")?);
        assert!(!tx.set_access_key_status("nope", "Inactive")?);
        assert!(tx.delete_access_key("k2")?);
        assert!(!tx.delete_access_key("k2")?);
        Ok(())
    });
    store
        .read_fast(|tx| {
            assert_eq!(tx.access_key("k1")?.map(|k| k.status), Some("Inactive".into()));
            assert_eq!(tx.access_key("k2")?, None);
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub fn a_failed_transaction_rolls_everything_back(h: &dyn Harness) {
    let store = h.store();
    let r: Result<(), StoreError> = store.write(|tx| {
        tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco-a"))?;
        tx.insert_resource(ResourceKind::Vpc, "v", "acct", "r", "", &"doc".to_string())?;
        tx.enqueue_version("gw", None, 1)?;
        Err(StoreError::Other("the handler refused".into()))
    });
    assert!(
        matches!(r, Err(StoreError::Other(m)) if m == "the handler refused"),
        "the closure's own error"
    );
    store
        .read(|tx| {
            assert_eq!(tx.count_routes("gw", RouteKind::Dbr)?, 0);
            assert!(tx.gateway_routes("gw")?.is_empty());
            assert!(tx.resource_owner(ResourceKind::Vpc, "v")?.is_none());
            assert_eq!(tx.count_resources(ResourceKind::Vpc, "acct", "r")?, 0);
            assert!(tx.all_pending_tasks()?.is_empty());
            assert_eq!(tx.gateway_versions("gw")?, (0, 0));
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

type JobFn = Box<dyn FnMut(&dyn WriteTx) -> Result<bool, StoreError> + Send>;

/// A [`WriteJob`] running a closure, reporting how it finished on a channel.
struct ClosureJob {
    run: JobFn,
    done: mpsc::Sender<Result<(), StoreError>>,
}

impl WriteJob for ClosureJob {
    fn run(&mut self, tx: &dyn WriteTx) -> Result<bool, StoreError> {
        (self.run)(tx)
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let _ = self.done.send(committed);
    }
}

/// Submit a job; the receiver yields how it finished.
fn submit(
    store: &dyn Store,
    run: impl FnMut(&dyn WriteTx) -> Result<bool, StoreError> + Send + 'static,
) -> mpsc::Receiver<Result<(), StoreError>> {
    let (done, finished) = mpsc::channel();
    store.submit_write(Box::new(ClosureJob {
        run: Box::new(run),
        done,
    }));
    finished
}

fn finished(rx: &mpsc::Receiver<Result<(), StoreError>>) -> Result<(), StoreError> {
    rx.recv_timeout(Duration::from_secs(30)).expect("the job is finished")
}

pub fn group_commit_undoes_only_the_failed_request(h: &dyn Harness) {
    let store = h.store();
    let insert = |dest: &'static str, keep: bool| {
        move |tx: &dyn WriteTx| {
            tx.insert_route(&route("gw", RouteKind::Dbr, "", dest, "vco-a"))?;
            Ok(keep)
        }
    };
    // Submitted back to back, so a batching backend may well run them in one transaction.
    let a = submit(&*store, insert("10.0.0.0/24", true));
    let b = submit(&*store, insert("10.0.1.0/24", false));
    let c = submit(&*store, insert("10.0.2.0/24", true));
    // A request failing on a store error (a duplicate) is undone alone as well.
    let d = submit(&*store, insert("10.0.0.0/24", true));
    for rx in [&a, &b, &c] {
        finished(rx).expect("the transaction holding the request committed");
    }
    let _ = finished(&d);
    let mut dests: Vec<String> = store
        .read(|tx| tx.gateway_routes("gw"))
        .unwrap()
        .into_iter()
        .map(|r| r.dest)
        .collect();
    // Requests submitted without waiting for each other may run in any order (PostgreSQL's
    // writers run side by side): either of the two identical ones is the duplicate.
    dests.sort();
    assert_eq!(dests, ["10.0.0.0/24", "10.0.2.0/24"]);
    assert_eq!(store.read(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap(), 2);
}

/// Two writers race to add a route to `gw` unless it has one to that destination, each
/// taking the gateway's lock with `lock` first: exactly one sees the other's route.
fn race_check_then_insert(store: &Arc<dyn Store>, lock: fn(&dyn WriteTx) -> Result<(), StoreError>) {
    let start = Arc::new(Barrier::new(2));
    let writers: Vec<_> = ["vco-a", "vco-b"]
        .into_iter()
        .map(|hop| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                // "At most one route to this destination": correct only if the lock makes
                // the check and the insert one step against the other writer.
                store
                    .write(|tx| {
                        lock(tx)?;
                        let seen = tx.routes_with_dest("gw", "10.0.0.0/24")?;
                        if seen.is_empty() {
                            tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", hop))?;
                        }
                        Ok::<_, StoreError>(seen.len())
                    })
                    .unwrap()
            })
        })
        .collect();
    let mut seen: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    seen.sort();
    assert_eq!(seen, [0, 1], "exactly one writer saw the other's route");
}

pub fn the_gateway_lock_serialises_check_then_insert(h: &dyn Harness) {
    let store = h.store();
    race_check_then_insert(&store, |tx| tx.lock_gateway("gw"));
    assert_eq!(store.read(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap(), 1);
    // Locking another gateway, or one with no state at all, is fine.
    write(&*store, |tx| tx.lock_gateway("vpn-none"));
}

pub fn the_lock_of_an_existing_gateway_gives_its_owner_and_serialises(h: &dyn Harness) {
    let store = h.store();
    write(&*store, |tx| {
        tx.insert_resource(
            ResourceKind::VpnGateway,
            "gw",
            "acct",
            "cn-hangzhou",
            "vpc",
            &"gw".to_string(),
        )?;
        tx.insert_resource(ResourceKind::Vpc, "vpc", "acct", "cn-hangzhou", "", &"vpc".to_string())
    });
    let owner = store.write(|tx| tx.lock_existing_gateway("gw")).unwrap();
    assert_eq!(owner, Some(("acct".to_string(), "cn-hangzhou".to_string())));
    assert_eq!(store.write(|tx| tx.lock_existing_gateway("vpn-none")).unwrap(), None);
    assert_eq!(
        store.write(|tx| tx.lock_existing_gateway("vpc")).unwrap(),
        None,
        "not a gateway"
    );
    // The lock it takes serialises check-then-insert as `lock_gateway` does.
    race_check_then_insert(&store, |tx| match tx.lock_existing_gateway("gw")? {
        Some(_) => Ok(()),
        None => Err(StoreError::Other("the gateway was not found".into())),
    });
    // Its reads under the lock are the gateway's (the owner, the document, the routes), and
    // the transaction's own writes after it are seen by its later reads.
    store
        .write(|tx| {
            assert!(tx.lock_existing_gateway("gw")?.is_some());
            assert_eq!(tx.resource_owner(ResourceKind::VpnGateway, "gw")?.unwrap().0, "acct");
            assert_eq!(tx.gateway_routes("gw")?.len(), 1);
            tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.1.0/24", "vco-a"))?;
            let dests: Vec<String> = tx.gateway_routes("gw")?.into_iter().map(|r| r.dest).collect();
            assert_eq!(dests, ["10.0.0.0/24", "10.0.1.0/24"]);
            assert_eq!(tx.routes_with_key("gw", RouteKind::Dbr, "", "10.0.1.0/24")?.len(), 1);
            let first = tx.routes_with_dest("gw", "10.0.0.0/24")?.pop().unwrap();
            tx.delete_route(&first)?;
            assert!(tx.routes_with_dest("gw", "10.0.0.0/24")?.is_empty());
            Ok::<_, StoreError>(())
        })
        .unwrap();
}

pub fn a_retryable_failure_reruns_the_request(h: &dyn Harness) {
    let store = h.store();
    let mut runs = 0;
    let rx = submit(&*store, move |tx| {
        runs += 1;
        tx.insert_route(&route("gw", RouteKind::Dbr, "", &format!("10.0.{runs}.0/24"), "vco-a"))?;
        if runs == 1 {
            return Err(StoreError::Retryable("serialization failure".into()));
        }
        Ok(true)
    });
    finished(&rx).expect("the rerun committed");
    let dests: Vec<String> = store
        .read(|tx| tx.gateway_routes("gw"))
        .unwrap()
        .into_iter()
        .map(|r| r.dest)
        .collect();
    assert_eq!(dests, ["10.0.2.0/24"], "the first run's work was rolled back");
}

pub fn a_request_that_stays_retryable_gives_up_retryably(h: &dyn Harness) {
    let store = h.store();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    let rx = submit(&*store, move |tx| {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tx.insert_route(&route("gw", RouteKind::Dbr, "", "10.0.0.0/24", "vco-a"))?;
        Err(StoreError::Retryable("deadlock".into()))
    });
    let e = finished(&rx).expect_err("never committed");
    assert!(e.is_retryable(), "still retryable for the caller: {e}");
    let api: vpnroute_domain::ApiError = e.into();
    assert_eq!((api.code.as_ref(), api.status), ("ServiceUnavailable", 503));
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(runs, 1 + crate::WRITE_RETRIES, "bounded retries");
    assert_eq!(store.read(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap(), 0);
}

pub fn fast_reads_see_every_commit(h: &dyn Harness) {
    let store = h.store();
    for i in 0..20u64 {
        let count = store.read_fast(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap();
        assert_eq!(count, i);
        // Twice: the second may come from a cache and must agree.
        assert_eq!(store.read_fast(|tx| tx.count_routes("gw", RouteKind::Dbr)).unwrap(), i);
        write(&*store, |tx| {
            tx.insert_route(&route("gw", RouteKind::Dbr, "", &format!("10.0.{i}.0/24"), "vco-a"))
                .map(|_| ())
        });
    }
}

pub fn the_change_feed_moves_forward(h: &dyn Harness) {
    let store = h.store();
    let before = store.change_feed().current();
    write(&*store, |tx| tx.next_counter("c").map(|_| ()));
    let after = store.change_feed().current();
    assert!(
        after > before,
        "a commit publishes a newer generation ({before} -> {after})"
    );
    store.change_feed().publish(before);
    assert_eq!(store.change_feed().current(), after, "publishing never goes back");
}

pub fn nonces_refuse_replays_and_expire(h: &dyn Harness) {
    let window = 1_000;
    let nonces = h.nonces(window, 10_000);
    let record = |n: &dyn NonceStore, key: &str, nonce: &str, now: i64| n.record(key, nonce, now, now + window, true);
    assert!(record(&*nonces, "k1", "n1", 10_000).unwrap());
    assert!(!record(&*nonces, "k1", "n1", 10_001).unwrap(), "a replay is refused");
    assert!(record(&*nonces, "k2", "n1", 10_001).unwrap(), "per access key");
    assert!(record(&*nonces, "k1", "n2", 10_002).unwrap());
    // Signed ahead of time: kept until its own timestamp's window has passed.
    assert!(nonces.record("k1", "future", 10_002, 10_900 + window, true).unwrap());
    // Any bytes, separators of a line-oriented log included.
    assert!(record(&*nonces, "k1", "nl\ntab\tcr\r%", 10_003).unwrap());
    assert!(nonces.remembered() >= 5);
    drop(nonces);
    let reopened = h.nonces(window, 10_500);
    assert!(
        !record(&*reopened, "k1", "n2", 10_500).unwrap(),
        "remembered across a restart"
    );
    assert!(
        !record(&*reopened, "k1", "nl\ntab\tcr\r%", 10_500).unwrap(),
        "odd bytes remembered across a restart"
    );
    assert!(
        !record(&*reopened, "k1", "future", 11_800).unwrap(),
        "within its timestamp's window"
    );
    // Once out of the window, a nonce is forgotten.
    assert!(record(&*reopened, "k1", "n1", 12_000).unwrap());
    assert!(
        record(&*reopened, "k1", "future", 12_000).unwrap(),
        "after its timestamp's window"
    );
}

pub fn the_rate_limiter_counts_per_key_and_action(h: &dyn Harness) {
    let limiter = h.rate_limiter(2);
    assert!(limiter.admit("k", "A", 1_000));
    assert!(limiter.admit("k", "A", 1_001));
    assert!(!limiter.admit("k", "A", 1_002), "the third call in one second");
    assert!(limiter.admit("k", "B", 1_002), "per action");
    assert!(limiter.admit("j", "A", 1_002), "per key");
    assert!(limiter.admit("k", "A", 2_000), "a new second");
    let off = h.rate_limiter(0);
    assert!((0..100).all(|i| off.admit("k", "A", i)), "0 turns limiting off");
}
