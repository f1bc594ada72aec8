//! [`RouteTable`]: the indexed, incrementally updated route table of one VPN gateway.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::dbr::DestinationIndex;
use crate::decision::Decision;
use crate::group::Member;
use crate::links::{LinkState, NextHopId, NextHopInterner};
use crate::pbr::PolicyIndex;
use crate::route::{validate, InsertError, Route, RouteKind};
use crate::trie::PrefixTrie;

/// The destination trie shared by both route kinds: one [`PrefixTrie`] over every distinct
/// destination prefix, with two layers — [`POLICY_LAYER`] (values: policy destination
/// entries, parents tracked) and [`DESTINATION_LAYER`] (values: destination-route groups).
/// A lookup walks `D` once and both route kinds read their hits from that one walk.
pub(crate) type DestTrie = PrefixTrie<u8, 2>;
/// Layer of [`DestTrie`] holding policy-route destinations.
pub(crate) const POLICY_LAYER: usize = 0;
/// Layer of [`DestTrie`] holding destination-route prefixes.
pub(crate) const DESTINATION_LAYER: usize = 1;

/// A route as stored: the caller's [`Route`] with its prefixes normalised (host bits cleared)
/// and its next hop interned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredRoute {
    pub kind: RouteKind,
    /// `0.0.0.0/0` for destination routes.
    pub source: Ipv4Net,
    pub dest: Ipv4Net,
    pub hop: NextHopId,
    pub weight: u8,
    pub priority: u8,
    pub seq: u64,
}

/// The route table of one VPN gateway. See the [crate docs](crate) for the matching rules.
///
/// Mutations ([`insert`](Self::insert), [`remove`](Self::remove)) update the indexes
/// incrementally: cost depends on the size of the touched trie nodes and active/standby
/// group, not on the number of routes in the table. [`lookup`](Self::lookup) is
/// allocation-free.
#[derive(Debug, Clone)]
pub struct RouteTable {
    hops: NextHopInterner,
    routes: HashMap<u64, StoredRoute>,
    dest_trie: DestTrie,
    destination: DestinationIndex,
    policy: PolicyIndex,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            hops: NextHopInterner::default(),
            routes: HashMap::new(),
            dest_trie: DestTrie::with_parent_tracking(),
            destination: DestinationIndex::default(),
            policy: PolicyIndex::default(),
        }
    }
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a table from routes, stopping at the first invalid or duplicate one.
    ///
    /// Bulk-loads: every touched index node is rebuilt once at the end rather than once per
    /// route.
    pub fn from_routes(routes: impl IntoIterator<Item = Route>) -> Result<Self, InsertError> {
        let mut table = Self::new();
        for route in routes {
            table.insert_deferred(route)?;
        }
        table.flush();
        Ok(table)
    }

    /// Adds a route. Refuses duplicate ids and routes that break the invariants listed on
    /// [`InsertError`]; the table is unchanged on error.
    pub fn insert(&mut self, route: Route) -> Result<(), InsertError> {
        let result = self.insert_deferred(route);
        self.flush();
        result
    }

    /// Inserts several routes, rebuilding index nodes once at the end. Stops at the first
    /// error; routes before it stay inserted.
    pub fn extend(&mut self, routes: impl IntoIterator<Item = Route>) -> Result<(), InsertError> {
        let result = routes.into_iter().try_for_each(|route| self.insert_deferred(route));
        self.flush();
        result
    }

    /// Removes a route by id, returning it.
    pub fn remove(&mut self, id: u64) -> Option<Route> {
        let stored = self.routes.remove(&id)?;
        match stored.kind {
            RouteKind::Destination => self.destination.remove(&mut self.dest_trie, stored.dest, id),
            RouteKind::Policy => self.policy.remove(stored.source, stored.dest, id),
        }
        self.flush();
        Some(self.to_route(id, &stored))
    }

    /// The route with this id.
    pub fn get(&self, id: u64) -> Option<Route> {
        self.routes.get(&id).map(|stored| self.to_route(id, stored))
    }

    /// Is a route with this id present?
    pub fn contains(&self, id: u64) -> bool {
        self.routes.contains_key(&id)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// `true` when the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// All routes, in no particular order.
    pub fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        self.routes.iter().map(|(&id, stored)| self.to_route(id, stored))
    }

    /// The [`NextHopId`] of a connection id, if any route ever used it or it was interned.
    pub fn next_hop_id(&self, connection_id: &str) -> Option<NextHopId> {
        self.hops.get(connection_id)
    }

    /// Interns a connection id (e.g. to mark a tunnel down in a [`LinkState`] before any route
    /// uses it). Ids are stable for the life of the table.
    pub fn intern_next_hop(&mut self, connection_id: &str) -> NextHopId {
        self.hops.intern(connection_id)
    }

    /// Connection id of an interned next hop (`""` for an id this table never issued).
    pub fn next_hop_name(&self, hop: NextHopId) -> &str {
        self.hops.name(hop)
    }

    /// Number of distinct connection ids interned so far.
    pub fn next_hop_count(&self) -> usize {
        self.hops.len()
    }

    /// Marks a connection up or down in `links`, by connection id. Returns `false` (and does
    /// nothing) when the table has never seen the id: no route uses it, so its state cannot
    /// matter until one does — intern it first with [`intern_next_hop`](Self::intern_next_hop)
    /// to record its state ahead of time.
    pub fn set_link_up(&self, links: &mut LinkState, connection_id: &str, up: bool) -> bool {
        match self.hops.get(connection_id) {
            Some(hop) => {
                links.set_up(hop, up);
                true
            }
            None => false,
        }
    }

    /// Approximate heap bytes held by the table and its indexes (capacity-based).
    pub fn memory_usage(&self) -> usize {
        use std::mem::size_of;
        std::mem::size_of::<Self>()
            + self.routes.capacity() * (size_of::<(u64, StoredRoute)>() + 1)
            + self.dest_trie.heap_bytes()
            + self.destination.heap_bytes()
            + self.policy.heap_bytes()
            + self.hops.len() * 64
    }

    /// Where does a packet from `src` to `dst` go? See the [crate docs](crate) for the rules.
    ///
    /// Hot path: allocation-free; one trie walk over `dst` shared by both route kinds,
    /// typically one source probe, and (when no policy route matches) the destination
    /// route read from the same walk.
    #[inline]
    pub fn lookup(&self, src: Ipv4Addr, dst: Ipv4Addr, links: &LinkState) -> Option<Decision<'_>> {
        let (src, dst) = (u32::from(src), u32::from(dst));
        let hits = self.dest_trie.lookup_levels(dst);
        let (route_id, hop, reason, kind) = match self.policy.lookup(&hits, src, links) {
            Some((route_id, hop, reason)) => (route_id, hop, reason, RouteKind::Policy),
            None => {
                let (route_id, hop, reason) = self.destination.lookup(&hits, links)?;
                (route_id, hop, reason, RouteKind::Destination)
            }
        };
        Some(Decision {
            route_id,
            kind,
            next_hop: self.hops.name(hop),
            reason,
        })
    }

    /// Every stored route (feeds [`RouteTable::explain`], implemented in `explain.rs`).
    pub(crate) fn stored_routes(&self) -> impl Iterator<Item = (u64, &StoredRoute)> {
        self.routes.iter().map(|(&id, stored)| (id, stored))
    }

    fn insert_deferred(&mut self, route: Route) -> Result<(), InsertError> {
        validate(&route)?;
        if self.routes.contains_key(&route.id) {
            return Err(InsertError::DuplicateId(route.id));
        }
        let hop = self.hops.intern(&route.next_hop);
        let dest = route.dest.trunc();
        let source = route.source.map_or_else(Ipv4Net::default, |s| s.trunc());
        let member = Member {
            route_id: route.id,
            hop,
            active: route.is_active(),
            seq: route.seq,
            priority: route.priority,
        };
        match route.kind {
            RouteKind::Destination => self.destination.add(&mut self.dest_trie, dest, member),
            RouteKind::Policy => self.policy.add(&mut self.dest_trie, source, dest, member),
        }
        self.routes.insert(
            route.id,
            StoredRoute {
                kind: route.kind,
                source,
                dest,
                hop,
                weight: route.weight,
                priority: route.priority,
                seq: route.seq,
            },
        );
        Ok(())
    }

    /// Brings the indexes up to date (policy source sets first: emptied policy destinations
    /// leave the trie there; then every dirty trie node is rebuilt once).
    fn flush(&mut self) {
        self.policy.flush(&mut self.dest_trie);
    }

    fn to_route(&self, id: u64, stored: &StoredRoute) -> Route {
        Route {
            id,
            kind: stored.kind,
            source: (stored.kind == RouteKind::Policy).then_some(stored.source),
            dest: stored.dest,
            next_hop: self.hops.name(stored.hop).to_owned(),
            weight: stored.weight,
            priority: stored.priority,
            seq: stored.seq,
        }
    }
}
