//! Reference implementation: the rules written down as directly as possible, by linear scan.
//!
//! [`NaiveTable`] keeps routes in a `Vec` and answers each lookup by scanning all of them.
//! It shares nothing with the indexed [`RouteTable`](crate::RouteTable) except the input
//! types and [`validate`] — not the interning, the grouping or the selection code — so the
//! property tests comparing the two check the indexes against the rules. It is also the
//! baseline of the benchmarks.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::decision::{Decision, Reason};
use crate::route::{validate, InsertError, Route, RouteKind, WEIGHT_ACTIVE, WEIGHT_STANDBY};

/// Linear-scan route table. O(n) per lookup.
#[derive(Debug, Clone, Default)]
pub struct NaiveTable {
    routes: Vec<Route>,
    ids: HashSet<u64>,
}

impl NaiveTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a table, stopping at the first invalid or duplicate route.
    pub fn from_routes(routes: impl IntoIterator<Item = Route>) -> Result<Self, InsertError> {
        let mut table = Self::new();
        for route in routes {
            table.insert(route)?;
        }
        Ok(table)
    }

    /// Adds a route (same validation as [`RouteTable::insert`](crate::RouteTable::insert)).
    pub fn insert(&mut self, route: Route) -> Result<(), InsertError> {
        validate(&route)?;
        if !self.ids.insert(route.id) {
            return Err(InsertError::DuplicateId(route.id));
        }
        self.routes.push(route);
        Ok(())
    }

    /// Removes a route by id.
    pub fn remove(&mut self, id: u64) -> Option<Route> {
        let at = self.routes.iter().position(|r| r.id == id)?;
        self.ids.remove(&id);
        Some(self.routes.remove(at))
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// `true` when empty.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Same contract as [`RouteTable::lookup`](crate::RouteTable::lookup); link state is given
    /// as "is this connection id up?".
    pub fn lookup(&self, src: Ipv4Addr, dst: Ipv4Addr, is_up: impl Fn(&str) -> bool) -> Option<Decision<'_>> {
        // Rule 1: the best matching policy route by (priority, longer dest, longer source,
        // older seq, smaller id); its group is every policy route with the same prefixes.
        let best_policy = self
            .routes
            .iter()
            .filter(|r| r.kind == RouteKind::Policy)
            .filter(|r| r.dest.contains(&dst) && r.source.is_some_and(|s| s.contains(&src)))
            .min_by_key(|r| {
                (
                    r.priority,
                    std::cmp::Reverse(r.dest.prefix_len()),
                    std::cmp::Reverse(r.source.map_or(0, |s| s.prefix_len())),
                    r.seq,
                    r.id,
                )
            });
        if let Some(best) = best_policy {
            let group: Vec<&Route> = self
                .routes
                .iter()
                .filter(|r| {
                    r.kind == RouteKind::Policy
                        && r.dest.trunc() == best.dest.trunc()
                        && r.source.map(|s| s.trunc()) == best.source.map(|s| s.trunc())
                })
                .collect();
            return select(&group, &is_up, RouteKind::Policy);
        }

        // Rule 2: longest matching destination prefix; its group is every destination route
        // with that prefix.
        let best_destination = self
            .routes
            .iter()
            .filter(|r| r.kind == RouteKind::Destination && r.dest.contains(&dst))
            .max_by_key(|r| r.dest.prefix_len())?;
        let group: Vec<&Route> = self
            .routes
            .iter()
            .filter(|r| r.kind == RouteKind::Destination && r.dest.trunc() == best_destination.dest.trunc())
            .collect();
        select(&group, &is_up, RouteKind::Destination)
    }
}

/// Rule 3 within one active/standby group.
fn select<'t>(group: &[&'t Route], is_up: &impl Fn(&str) -> bool, kind: RouteKind) -> Option<Decision<'t>> {
    let oldest = |candidates: &mut dyn Iterator<Item = &&'t Route>| candidates.min_by_key(|r| (r.seq, r.id)).copied();
    let (route, reason) =
        if let Some(r) = oldest(&mut group.iter().filter(|r| r.weight == WEIGHT_ACTIVE && is_up(&r.next_hop))) {
            (r, Reason::ActiveUp)
        } else if let Some(r) = oldest(
            &mut group
                .iter()
                .filter(|r| r.weight == WEIGHT_STANDBY && is_up(&r.next_hop)),
        ) {
            (r, Reason::StandbyTakeover)
        } else if let Some(r) = oldest(&mut group.iter().filter(|r| r.weight == WEIGHT_ACTIVE)) {
            (r, Reason::AllDownActive)
        } else {
            (oldest(&mut group.iter())?, Reason::AllDownNoActive)
        };
    Some(Decision {
        route_id: route.id,
        kind,
        next_hop: &route.next_hop,
        reason,
    })
}
