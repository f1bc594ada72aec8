//! One test per matching rule (see the crate docs), each checked against the fast table, the
//! naive reference and `explain`.

use std::net::Ipv4Addr;

use vpnroute_engine::naive::NaiveTable;
use vpnroute_engine::{Decision, InsertError, Ipv4Net, LinkState, Reason, Route, RouteKind, RouteTable, Verdict};

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("prefix")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("address")
}

fn dbr(id: u64, dest: &str, hop: &str, weight: u8, seq: u64) -> Route {
    Route::destination(id, net(dest), hop, weight, seq)
}

fn pbr(id: u64, src: &str, dest: &str, hop: &str, weight: u8, priority: u8, seq: u64) -> Route {
    Route::policy(id, net(src), net(dest), hop, weight, priority, seq)
}

/// Table, naive reference and link state over the same routes.
struct Fixture {
    table: RouteTable,
    naive: NaiveTable,
    down: Vec<String>,
}

impl Fixture {
    fn new(routes: &[Route]) -> Self {
        Fixture {
            table: RouteTable::from_routes(routes.iter().cloned()).expect("valid routes"),
            naive: NaiveTable::from_routes(routes.iter().cloned()).expect("valid routes"),
            down: Vec::new(),
        }
    }

    fn set_down(&mut self, hop: &str) {
        self.down.push(hop.to_owned());
    }

    fn links(&self) -> LinkState {
        let mut links = LinkState::new();
        for hop in &self.down {
            self.table.set_link_up(&mut links, hop, false);
        }
        links
    }

    /// Looks up through all three paths, checks they agree, returns `(route_id, reason)`.
    fn route(&self, src: &str, dst: &str) -> Option<(u64, Reason)> {
        let links = self.links();
        let fast = self.table.lookup(ip(src), ip(dst), &links);
        let naive = self
            .naive
            .lookup(ip(src), ip(dst), |hop| !self.down.iter().any(|d| d == hop));
        assert_eq!(fast, naive, "fast vs naive for {src} -> {dst}");
        let explained = self.table.explain(ip(src), ip(dst), &links);
        assert_eq!(
            explained.chosen.as_ref().map(|c| (c.route_id, c.reason)),
            fast.map(|d| (d.route_id, d.reason)),
            "explain vs lookup for {src} -> {dst}"
        );
        fast.map(|d: Decision<'_>| (d.route_id, d.reason))
    }

    fn verdicts(&self, src: &str, dst: &str) -> Vec<(u64, Verdict)> {
        self.table
            .explain(ip(src), ip(dst), &self.links())
            .candidates
            .iter()
            .map(|c| (c.route_id, c.verdict))
            .collect()
    }
}

#[test]
fn policy_routes_are_evaluated_before_destination_routes() {
    let f = Fixture::new(&[
        dbr(1, "10.1.1.0/24", "a", 100, 1),
        pbr(2, "0.0.0.0/0", "10.0.0.0/8", "b", 100, 100, 2),
    ]);
    assert_eq!(f.route("1.1.1.1", "10.1.1.1"), Some((2, Reason::ActiveUp)));
    assert_eq!(
        f.verdicts("1.1.1.1", "10.1.1.1"),
        vec![(2, Verdict::Chosen), (1, Verdict::PolicyRouteMatched)]
    );
    // Policy route needs both prefixes to match; otherwise destination routes apply.
    let f = Fixture::new(&[
        dbr(1, "10.1.1.0/24", "a", 100, 1),
        pbr(2, "192.168.0.0/16", "10.0.0.0/8", "b", 100, 1, 2),
    ]);
    assert_eq!(f.route("1.1.1.1", "10.1.1.1"), Some((1, Reason::ActiveUp)));
    assert_eq!(f.route("192.168.3.3", "10.1.1.1"), Some((2, Reason::ActiveUp)));
}

#[test]
fn smaller_priority_value_wins_over_longer_prefixes() {
    let f = Fixture::new(&[
        pbr(1, "192.168.1.0/24", "10.1.1.0/24", "a", 100, 20, 1),
        pbr(2, "0.0.0.0/0", "10.0.0.0/8", "b", 100, 5, 2),
    ]);
    assert_eq!(f.route("192.168.1.1", "10.1.1.1"), Some((2, Reason::ActiveUp)));
    assert_eq!(
        f.verdicts("192.168.1.1", "10.1.1.1"),
        vec![(2, Verdict::Chosen), (1, Verdict::LowerPriority)]
    );
}

#[test]
fn equal_priority_prefers_longer_destination_then_longer_source() {
    let f = Fixture::new(&[
        pbr(1, "192.168.1.0/24", "10.0.0.0/8", "a", 100, 10, 1),
        pbr(2, "192.168.0.0/16", "10.1.0.0/16", "b", 100, 10, 2),
        pbr(3, "192.168.1.0/24", "10.1.0.0/16", "c", 100, 10, 3),
    ]);
    assert_eq!(f.route("192.168.1.1", "10.1.1.1"), Some((3, Reason::ActiveUp)));
    assert_eq!(
        f.verdicts("192.168.1.1", "10.1.1.1"),
        vec![
            (3, Verdict::Chosen),
            (2, Verdict::ShorterSourcePrefix),
            (1, Verdict::ShorterDestinationPrefix)
        ]
    );
    assert_eq!(f.route("192.168.2.1", "10.1.1.1"), Some((2, Reason::ActiveUp)));
    assert_eq!(f.route("192.168.1.1", "10.2.1.1"), Some((1, Reason::ActiveUp)));
}

#[test]
fn equal_priority_and_prefixes_means_same_group_where_the_oldest_active_wins() {
    // Two *different* groups that both match (S, D) with equal priority and equal prefix
    // lengths would need identical prefixes, i.e. be the same group: the `seq` step of the
    // policy order only ever separates members of one group, where rule 3 applies.
    let f = Fixture::new(&[
        pbr(7, "192.168.0.0/16", "10.0.0.0/8", "a", 100, 10, 5),
        pbr(8, "192.168.0.0/16", "10.0.0.0/8", "b", 100, 10, 9),
        pbr(9, "192.168.0.0/16", "10.0.0.0/8", "c", 100, 10, 3),
        pbr(10, "192.168.0.0/16", "10.0.0.0/8", "d", 100, 10, 3),
    ]);
    assert_eq!(f.route("192.168.0.1", "10.0.0.1"), Some((9, Reason::ActiveUp)));
    assert_eq!(
        f.verdicts("192.168.0.1", "10.0.0.1"),
        vec![
            (9, Verdict::Chosen),
            (10, Verdict::OlderRoutePreferred),
            (7, Verdict::OlderRoutePreferred),
            (8, Verdict::OlderRoutePreferred)
        ]
    );
}

#[test]
fn policy_group_ranks_as_its_best_member() {
    // Group (192.168/16, 10/8): active priority 50, standby priority 1 → group priority 1.
    let f = Fixture::new(&[
        pbr(1, "192.168.0.0/16", "10.0.0.0/8", "a", 100, 50, 1),
        pbr(2, "192.168.0.0/16", "10.0.0.0/8", "b", 0, 1, 2),
        pbr(3, "192.168.1.0/24", "10.1.1.0/24", "c", 100, 10, 3),
    ]);
    // Active of the winning group is up: it carries the packet although its own priority is 50.
    assert_eq!(f.route("192.168.1.1", "10.1.1.1"), Some((1, Reason::ActiveUp)));
    assert_eq!(
        f.verdicts("192.168.1.1", "10.1.1.1"),
        vec![
            (1, Verdict::Chosen),
            (2, Verdict::StandbyWhileActiveUp),
            (3, Verdict::LowerPriority)
        ]
    );
}

#[test]
fn destination_routes_use_longest_prefix_match() {
    let f = Fixture::new(&[
        dbr(1, "10.0.0.0/8", "a", 100, 1),
        dbr(2, "10.1.0.0/16", "b", 100, 2),
        dbr(3, "10.1.2.0/24", "c", 100, 3),
        dbr(4, "10.1.2.3/32", "d", 100, 4),
        dbr(5, "0.0.0.0/0", "e", 100, 5),
    ]);
    assert_eq!(f.route("1.1.1.1", "10.1.2.3"), Some((4, Reason::ActiveUp)));
    assert_eq!(f.route("1.1.1.1", "10.1.2.4"), Some((3, Reason::ActiveUp)));
    assert_eq!(f.route("1.1.1.1", "10.1.3.4"), Some((2, Reason::ActiveUp)));
    assert_eq!(f.route("1.1.1.1", "10.2.3.4"), Some((1, Reason::ActiveUp)));
    assert_eq!(f.route("1.1.1.1", "11.2.3.4"), Some((5, Reason::ActiveUp)));
    assert_eq!(
        f.verdicts("1.1.1.1", "10.1.2.4"),
        vec![
            (3, Verdict::Chosen),
            (2, Verdict::ShorterDestinationPrefix),
            (1, Verdict::ShorterDestinationPrefix),
            (5, Verdict::ShorterDestinationPrefix)
        ]
    );
}

#[test]
fn no_match_means_no_route() {
    let f = Fixture::new(&[
        dbr(1, "10.0.0.0/8", "a", 100, 1),
        pbr(2, "192.168.0.0/16", "172.16.0.0/12", "b", 100, 1, 2),
    ]);
    assert_eq!(f.route("1.1.1.1", "11.0.0.1"), None);
    assert_eq!(f.route("1.1.1.1", "172.16.0.1"), None);
    let explained = f.table.explain(ip("1.1.1.1"), ip("11.0.0.1"), &LinkState::new());
    assert!(explained.candidates.is_empty());
    assert!(explained.summary.contains("no route"));
    assert_eq!(Fixture::new(&[]).route("1.1.1.1", "1.1.1.1"), None);
}

#[test]
fn active_standby_failover_for_destination_routes() {
    let routes = [
        dbr(1, "10.0.0.0/8", "standby", 0, 1),
        dbr(2, "10.0.0.0/8", "active", 100, 2),
    ];
    let mut f = Fixture::new(&routes);
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((2, Reason::ActiveUp)));
    f.set_down("active");
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((1, Reason::StandbyTakeover)));
    assert_eq!(
        f.verdicts("1.1.1.1", "10.0.0.1"),
        vec![(2, Verdict::NextHopDown), (1, Verdict::Chosen)]
    );
    f.set_down("standby");
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((2, Reason::AllDownActive)));
    let mut f = Fixture::new(&routes);
    f.set_down("standby");
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((2, Reason::ActiveUp)));
}

#[test]
fn active_standby_failover_for_policy_routes_never_falls_through() {
    let mut f = Fixture::new(&[
        pbr(1, "192.168.0.0/16", "10.0.0.0/8", "active", 100, 1, 1),
        pbr(2, "192.168.0.0/16", "10.0.0.0/8", "standby", 0, 1, 2),
        pbr(3, "192.168.0.0/16", "10.0.0.0/8", "standby2", 0, 1, 3),
        pbr(4, "192.168.0.0/17", "10.0.0.0/8", "other", 100, 2, 4),
        dbr(5, "10.0.0.0/8", "dbr", 100, 5),
    ]);
    assert_eq!(f.route("192.168.0.1", "10.0.0.1"), Some((1, Reason::ActiveUp)));
    f.set_down("active");
    assert_eq!(f.route("192.168.0.1", "10.0.0.1"), Some((2, Reason::StandbyTakeover)));
    f.set_down("standby");
    assert_eq!(f.route("192.168.0.1", "10.0.0.1"), Some((3, Reason::StandbyTakeover)));
    f.set_down("standby2");
    // Whole group down: the active route is used; neither route 4 nor the DBR route.
    assert_eq!(f.route("192.168.0.1", "10.0.0.1"), Some((1, Reason::AllDownActive)));
}

#[test]
fn group_without_active_uses_oldest_standby_and_duplicate_actives_use_oldest_up() {
    let mut f = Fixture::new(&[dbr(1, "10.0.0.0/8", "b", 0, 9), dbr(2, "10.0.0.0/8", "a", 0, 3)]);
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((2, Reason::StandbyTakeover)));
    f.set_down("a");
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((1, Reason::StandbyTakeover)));
    f.set_down("b");
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((2, Reason::AllDownNoActive)));

    let mut f = Fixture::new(&[
        dbr(1, "10.0.0.0/8", "young", 100, 9),
        dbr(2, "10.0.0.0/8", "old", 100, 3),
        dbr(3, "10.0.0.0/8", "standby", 0, 1),
    ]);
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((2, Reason::ActiveUp)));
    assert_eq!(
        f.verdicts("1.1.1.1", "10.0.0.1"),
        vec![
            (2, Verdict::Chosen),
            (1, Verdict::OlderRoutePreferred),
            (3, Verdict::StandbyWhileActiveUp)
        ]
    );
    f.set_down("old");
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((1, Reason::ActiveUp)));
    f.set_down("young");
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((3, Reason::StandbyTakeover)));
    f.set_down("standby");
    assert_eq!(f.route("1.1.1.1", "10.0.0.1"), Some((2, Reason::AllDownActive)));
}

#[test]
fn insert_validates_and_remove_restores() {
    let mut table = RouteTable::new();
    assert_eq!(
        table.insert(dbr(1, "10.0.0.0/8", "a", 50, 1)),
        Err(InsertError::InvalidWeight { id: 1, weight: 50 })
    );
    assert_eq!(
        table.insert(pbr(1, "1.0.0.0/8", "10.0.0.0/8", "a", 100, 0, 1)),
        Err(InsertError::InvalidPriority { id: 1, priority: 0 })
    );
    assert_eq!(
        table.insert(pbr(1, "1.0.0.0/8", "10.0.0.0/8", "a", 100, 101, 1)),
        Err(InsertError::InvalidPriority { id: 1, priority: 101 })
    );
    let mut no_source = pbr(1, "1.0.0.0/8", "10.0.0.0/8", "a", 100, 1, 1);
    no_source.source = None;
    assert_eq!(table.insert(no_source), Err(InsertError::MissingSource(1)));
    let mut with_source = dbr(1, "10.0.0.0/8", "a", 100, 1);
    with_source.source = Some(net("1.0.0.0/8"));
    assert_eq!(table.insert(with_source), Err(InsertError::UnexpectedSource(1)));
    assert!(table.is_empty());

    table.insert(dbr(1, "10.0.0.7/8", "a", 100, 1)).expect("insert");
    assert_eq!(
        table.insert(dbr(1, "11.0.0.0/8", "a", 100, 1)),
        Err(InsertError::DuplicateId(1))
    );
    assert_eq!(table.get(1).map(|r| r.dest), Some(net("10.0.0.0/8")));
    table.insert(dbr(2, "10.1.0.0/16", "b", 100, 2)).expect("insert");
    let links = LinkState::new();
    let route = |t: &RouteTable| t.lookup(ip("1.1.1.1"), ip("10.1.0.1"), &links).map(|d| d.route_id);
    assert_eq!(route(&table), Some(2));
    assert_eq!(table.remove(2).map(|r| r.next_hop), Some("b".to_owned()));
    assert_eq!(route(&table), Some(1));
    assert_eq!(table.remove(2), None);
    assert_eq!(table.remove(1).map(|r| r.kind), Some(RouteKind::Destination));
    assert_eq!(route(&table), None);
    assert!(table.is_empty());
}

#[test]
fn link_state_is_independent_of_route_changes() {
    let mut table = RouteTable::new();
    let hop = table.intern_next_hop("vco-late");
    let mut links = LinkState::new();
    links.set_up(hop, false);
    table.insert(dbr(1, "10.0.0.0/8", "vco-late", 100, 1)).expect("insert");
    table.insert(dbr(2, "10.0.0.0/8", "vco-b", 0, 2)).expect("insert");
    let d = table.lookup(ip("1.1.1.1"), ip("10.0.0.1"), &links).expect("route");
    assert_eq!((d.next_hop, d.reason), ("vco-b", Reason::StandbyTakeover));
    assert_eq!(links.down_hops().collect::<Vec<_>>(), vec![hop]);
    assert!(!table.set_link_up(&mut links, "unknown", false));
    links.clear();
    let d = table.lookup(ip("1.1.1.1"), ip("10.0.0.1"), &links).expect("route");
    assert_eq!(d.next_hop, "vco-late");
}

#[test]
fn explanation_serializes_to_json() {
    let f = Fixture::new(&[
        pbr(1, "192.168.0.0/16", "10.0.0.0/8", "vco-a", 100, 5, 1),
        dbr(2, "10.0.0.0/8", "vco-b", 100, 2),
    ]);
    let explained = f.table.explain(ip("192.168.0.1"), ip("10.0.0.1"), &LinkState::new());
    let json = serde_json::to_value(&explained).expect("json");
    assert_eq!(json["chosen"]["route_id"], 1);
    assert_eq!(json["chosen"]["kind"], "policy");
    assert_eq!(json["chosen"]["reason"], "active_up");
    assert_eq!(json["candidates"][0]["source"], "192.168.0.0/16");
    assert_eq!(json["candidates"][1]["verdict"], "policy_route_matched");
    assert_eq!(json["destination"], "10.0.0.1");
    assert!(json["summary"].as_str().is_some_and(|s| s.contains("vco-a")));
}
