//! Property tests: the indexed [`RouteTable`] must agree with the linear-scan
//! [`NaiveTable`] on random tables, random link states and random queries, including after
//! random insert/remove sequences. Prefixes come from a small universe so that overlaps,
//! nested prefixes, shared keys (active/standby groups) and ties are frequent.

use std::net::Ipv4Addr;

use proptest::prelude::*;
use vpnroute_engine::naive::NaiveTable;
use vpnroute_engine::{Ipv4Net, LinkState, Route, RouteKind, RouteTable};

/// Addresses prefixes are cut from and queries are made near.
const ANCHORS: [u32; 6] = [
    0x0a00_0000, // 10.0.0.0
    0x0a00_0180, // 10.0.1.128
    0x0a01_0000, // 10.1.0.0
    0xc0a8_0000, // 192.168.0.0
    0xc0a8_0101, // 192.168.1.1
    0x8000_0000, // 128.0.0.0
];
const LENGTHS: [u8; 14] = [0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 30, 31, 32];
const OFFSETS: [u32; 9] = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x1ff, 0x1_0000, 0x80_0000];
const HOPS: [&str; 5] = ["h0", "h1", "h2", "h3", "h4"];

fn prefix() -> impl Strategy<Value = Ipv4Net> {
    (0..ANCHORS.len(), 0..LENGTHS.len(), any::<bool>()).prop_map(|(a, l, keep_host_bits)| {
        let net = Ipv4Net::new(Ipv4Addr::from(ANCHORS[a]), LENGTHS[l]).expect("len <= 32");
        // Sometimes hand in host bits: the engine must normalise them.
        if keep_host_bits {
            net
        } else {
            net.trunc()
        }
    })
}

fn address() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        4 => (0..ANCHORS.len(), 0..OFFSETS.len())
            .prop_map(|(a, o)| Ipv4Addr::from(ANCHORS[a].wrapping_add(OFFSETS[o]))),
        1 => any::<u32>().prop_map(Ipv4Addr::from),
    ]
}

/// A route without its id (ids are assigned uniquely by the test).
#[derive(Debug, Clone)]
struct RouteShape {
    policy: bool,
    source: Ipv4Net,
    dest: Ipv4Net,
    hop: usize,
    active: bool,
    priority: u8,
    seq: u64,
}

impl RouteShape {
    fn into_route(self, id: u64) -> Route {
        let weight = if self.active { 100 } else { 0 };
        let hop = HOPS[self.hop % HOPS.len()];
        if self.policy {
            Route::policy(id, self.source, self.dest, hop, weight, self.priority, self.seq)
        } else {
            Route::destination(id, self.dest, hop, weight, self.seq)
        }
    }
}

fn route_shape() -> impl Strategy<Value = RouteShape> {
    (
        any::<bool>(),
        prefix(),
        prefix(),
        0..HOPS.len(),
        prop::bool::weighted(0.6),
        1u8..=4,
        0u64..8,
    )
        .prop_map(|(policy, source, dest, hop, active, priority, seq)| RouteShape {
            policy,
            source,
            dest,
            hop,
            active,
            priority,
            seq,
        })
}

/// Many policy routes over two destinations: exercises large (trie-backed) source sets.
fn crowded_policy_shape() -> impl Strategy<Value = RouteShape> {
    (
        prefix(),
        prop::sample::select(vec![
            Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).expect("prefix"),
            Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24).expect("prefix"),
        ]),
        0..HOPS.len(),
        prop::bool::weighted(0.6),
        1u8..=3,
        0u64..8,
    )
        .prop_map(|(source, dest, hop, active, priority, seq)| RouteShape {
            policy: true,
            source,
            dest,
            hop,
            active,
            priority,
            seq,
        })
}

fn links_from_mask(table: &RouteTable, down_mask: u8) -> (LinkState, Vec<&'static str>) {
    let mut links = LinkState::new();
    let mut down = Vec::new();
    for (i, hop) in HOPS.iter().enumerate() {
        if down_mask & (1 << i) != 0 {
            table.set_link_up(&mut links, hop, false);
            down.push(*hop);
        }
    }
    (links, down)
}

fn assert_agree(
    table: &RouteTable,
    naive: &NaiveTable,
    down_mask: u8,
    queries: &[(Ipv4Addr, Ipv4Addr)],
) -> Result<(), TestCaseError> {
    let (links, down) = links_from_mask(table, down_mask);
    for &(src, dst) in queries {
        let fast = table.lookup(src, dst, &links);
        let reference = naive.lookup(src, dst, |hop| !down.contains(&hop));
        prop_assert_eq!(fast, reference, "lookup {} -> {}", src, dst);
        let explained = table.explain(src, dst, &links);
        prop_assert_eq!(
            explained.chosen.as_ref().map(|c| (c.route_id, c.kind, c.reason)),
            fast.map(|d| (d.route_id, d.kind, d.reason)),
            "explain {} -> {}",
            src,
            dst
        );
        if let Some(decision) = fast {
            prop_assert!(explained.candidates.iter().any(|c| c.route_id == decision.route_id));
        }
    }
    Ok(())
}

fn queries() -> impl Strategy<Value = Vec<(Ipv4Addr, Ipv4Addr)>> {
    prop::collection::vec((address(), address()), 1..24)
}

#[derive(Debug, Clone)]
enum Op {
    Insert(RouteShape),
    /// Remove the n-th (modulo count) route currently present.
    Remove(usize),
    /// Re-insert an id that is present (must be refused).
    Duplicate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => route_shape().prop_map(Op::Insert),
        1 => crowded_policy_shape().prop_map(Op::Insert),
        3 => any::<usize>().prop_map(Op::Remove),
        1 => any::<usize>().prop_map(Op::Duplicate),
    ]
}

fn crowded_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => crowded_policy_shape().prop_map(Op::Insert),
        1 => route_shape().prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Remove),
    ]
}

fn check_incremental(ops: Vec<Op>, down_mask: u8, queries: &[(Ipv4Addr, Ipv4Addr)]) -> Result<(), TestCaseError> {
    let mut table = RouteTable::new();
    let mut naive = NaiveTable::new();
    let mut present: Vec<u64> = Vec::new();
    let mut next_id = 0u64;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Insert(shape) => {
                let route = shape.into_route(next_id);
                next_id += 1;
                prop_assert_eq!(table.insert(route.clone()), naive.insert(route.clone()));
                present.push(route.id);
            }
            Op::Remove(n) if !present.is_empty() => {
                let id = present.swap_remove(n % present.len());
                let removed = table.remove(id);
                let reference = naive.remove(id);
                prop_assert!(removed.is_some());
                prop_assert_eq!(
                    removed.map(|r| (r.id, r.kind, r.next_hop)),
                    reference.map(|r| (r.id, r.kind, r.next_hop))
                );
                prop_assert!(table.remove(id).is_none());
            }
            Op::Duplicate(n) if !present.is_empty() => {
                let id = present[n % present.len()];
                let route = Route::destination(id, "10.0.0.0/8".parse().expect("net"), "h0", 100, 0);
                prop_assert!(table.insert(route.clone()).is_err());
                prop_assert!(naive.insert(route).is_err());
            }
            Op::Remove(_) | Op::Duplicate(_) => {}
        }
        prop_assert_eq!(table.len(), naive.len());
        if step % 3 == 0 {
            assert_agree(&table, &naive, down_mask, queries)?;
        }
    }
    assert_agree(&table, &naive, down_mask, queries)?;

    // The incrementally maintained table answers like one built from scratch.
    let mut routes: Vec<Route> = table.routes().collect();
    routes.sort_by_key(|r| r.id);
    let rebuilt = RouteTable::from_routes(routes).expect("valid");
    let (links, _) = links_from_mask(&table, down_mask);
    let (rebuilt_links, _) = links_from_mask(&rebuilt, down_mask);
    for &(src, dst) in queries {
        prop_assert_eq!(
            table
                .lookup(src, dst, &links)
                .map(|d| (d.route_id, d.next_hop, d.reason)),
            rebuilt
                .lookup(src, dst, &rebuilt_links)
                .map(|d| (d.route_id, d.next_hop, d.reason))
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn lookup_matches_naive_on_random_tables(
        shapes in prop::collection::vec(route_shape(), 0..60),
        down_masks in prop::collection::vec(any::<u8>(), 1..4),
        queries in queries(),
    ) {
        let routes: Vec<Route> = shapes
            .into_iter()
            .enumerate()
            .map(|(i, shape)| shape.into_route(i as u64))
            .collect();
        let table = RouteTable::from_routes(routes.clone()).expect("valid");
        let naive = NaiveTable::from_routes(routes).expect("valid");
        for mask in down_masks {
            assert_agree(&table, &naive, mask, &queries)?;
        }
    }

    #[test]
    fn lookup_matches_naive_with_crowded_policy_sources(
        shapes in prop::collection::vec(crowded_policy_shape(), 10..80),
        extra in prop::collection::vec(route_shape(), 0..10),
        down_mask in any::<u8>(),
        queries in queries(),
    ) {
        let routes: Vec<Route> = shapes
            .into_iter()
            .chain(extra)
            .enumerate()
            .map(|(i, shape)| shape.into_route(i as u64))
            .collect();
        let table = RouteTable::from_routes(routes.clone()).expect("valid");
        let naive = NaiveTable::from_routes(routes).expect("valid");
        assert_agree(&table, &naive, down_mask, &queries)?;
    }

    #[test]
    fn incremental_updates_match_naive_and_a_fresh_build(
        ops in prop::collection::vec(op(), 1..80),
        down_mask in any::<u8>(),
        queries in queries(),
    ) {
        check_incremental(ops, down_mask, &queries)?;
    }

    #[test]
    fn incremental_updates_on_crowded_destinations_match_naive(
        ops in prop::collection::vec(crowded_op(), 20..160),
        down_mask in any::<u8>(),
        queries in queries(),
    ) {
        check_incremental(ops, down_mask, &queries)?;
    }

    #[test]
    fn lookup_never_panics_on_arbitrary_routes_and_addresses(
        raw in prop::collection::vec(
            (any::<bool>(), any::<u32>(), 0u8..=32, any::<u32>(), 0u8..=32, any::<u8>(), any::<u8>(), any::<u64>(), any::<u8>()),
            0..40),
        queries in prop::collection::vec((any::<u32>(), any::<u32>()), 1..16),
    ) {
        let mut table = RouteTable::new();
        let mut naive = NaiveTable::new();
        for (i, (policy, s, sl, d, dl, weight, priority, seq, hop)) in raw.into_iter().enumerate() {
            let source = Ipv4Net::new(Ipv4Addr::from(s), sl).expect("len <= 32");
            let dest = Ipv4Net::new(Ipv4Addr::from(d), dl).expect("len <= 32");
            let route = Route {
                id: i as u64 % 30,
                kind: if policy { RouteKind::Policy } else { RouteKind::Destination },
                source: policy.then_some(source),
                dest,
                next_hop: format!("c{}", hop % 7),
                weight,
                priority,
                seq,
            };
            prop_assert_eq!(table.insert(route.clone()), naive.insert(route));
        }
        for (s, d) in queries {
            let (src, dst) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            prop_assert_eq!(
                table.lookup(src, dst, &LinkState::new()),
                naive.lookup(src, dst, |_| true)
            );
        }
    }
}
