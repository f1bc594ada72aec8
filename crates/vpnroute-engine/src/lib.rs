//! Route engine of one VPN gateway: for a packet from source `S` to destination `D` (IPv4),
//! which next hop (IPsec connection) does it take, and why.
//!
//! This crate owns the *matching rules* and the data structures that make them fast. It is
//! pure: no I/O, no async, no clock, no persistence. The control plane feeds it [`Route`]s
//! and a [`LinkState`] (which tunnels are up) and asks [`RouteTable::lookup`] (hot path,
//! allocation-free) or [`RouteTable::explain`] (for people: every candidate and its verdict,
//! serialisable to JSON).
//!
//! # Rules
//!
//! They follow Alibaba Cloud's VPN gateway documentation; where it is silent, the choice
//! below is ours and marked as such.
//!
//! 1. **Policy-based routes first.** A policy route matches when `S ∈ source` and
//!    `D ∈ dest`. Matching routes are ordered by
//!    1. priority ascending (1 is evaluated first; Alibaba: "a smaller value indicates a higher
//!       priority"),
//!    2. then longer destination prefix,
//!    3. then longer source prefix,
//!    4. then `seq` ascending (older first), then `id` ascending.
//!
//!    Alibaba says equal priorities are matched "based on their sequence numbers" without
//!    defining them; steps 2–4 are **our documented choice** for that sequence (most specific
//!    first, then creation order). Routes with the same `(source, dest)` form an
//!    active/standby group, which ranks as its best member; the best group wins. Note that
//!    two *different* groups matching one packet and equal on steps 1–3 would have identical
//!    prefixes, i.e. be one group — so step 4 only orders members of a group, where rule 3
//!    decides anyway; it is kept to make the order total (and `explain` lists it).
//! 2. **Otherwise destination-based routes**, by longest prefix match on `D`. Routes with the
//!    same `dest` form an active/standby group.
//! 3. **Inside the winning group**: the active route (weight 100) if its next hop is up; else
//!    the oldest standby (weight 0) whose next hop is up; if every next hop is down, the active
//!    route anyway (Alibaba: "if both fail, the active one is used"), or the oldest route if
//!    the group has no active one. Several actives (the API forbids it) → the oldest *up* one.
//!    Link state never makes a lookup fall through to another group or table.
//! 4. **No match → no route** ([`RouteTable::lookup`] returns `None`): the packet is dropped or
//!    left to the VPC.
//!
//! "Oldest" means smallest `seq`, then smallest `id`. Prefixes are normalised on insert
//! (`10.0.0.7/24` is stored as `10.0.0.0/24`). Weights other than 0/100, policy priorities
//! outside 1..=100, duplicate ids and missing/unexpected source prefixes are refused with an
//! [`InsertError`]; nothing else is (e.g. `0.0.0.0/0` is accepted: API-level prohibitions
//! belong to the control plane).
//!
//! # Data structures
//!
//! * A run-compressed, stride-8 multibit trie (module `trie`): four levels of 256-way nodes,
//!   each a `slot → run` map over an arena of 16-byte `(values, child link)` entries, with no
//!   leaf pushing between levels so that every update touches one node. A lookup visits at
//!   most four nodes (three for a `/24`), each one map read and one entry read; the maps of
//!   sparse nodes are computed (no read), those of large nodes are one shared identity map
//!   (their entries are per slot), the rest are interned.
//! * One such trie over the destination prefixes of *both* route kinds, with two layers
//!   painted independently into the same nodes: each run entry carries a policy value and a
//!   destination value. A lookup walks `D` once; policy routes read their layer first and,
//!   when none matches, destination routes read theirs from the same walk (a mixed table
//!   used to pay two walks, one per kind, for every packet that no policy route claims).
//! * Destination routes: the destination layer, valued by active/standby group; the deepest
//!   hit is the longest match.
//! * Policy routes (module `pbr`): the policy layer, valued by policy destination entry,
//!   enumerating every destination prefix containing `D` longest first; per destination one
//!   cache line holding its best-ranked group *with that group's members*, so the usual
//!   policy lookup ends on that line; further groups sorted by rank (up to 32 in an array,
//!   beyond that a trie keyed by rank); destinations that can no longer win are not probed.
//! * Groups keep a 32-byte hot copy of up to two members (the active/standby pair) apart from
//!   the cold bookkeeping, so the final selection is one cache line (or none, for the copy
//!   inline in a policy destination's line).
//! * Next hops are interned to dense [`NextHopId`]s; [`LinkState`] is a bitset by that id,
//!   kept outside the table so that a tunnel flap costs one bit write.
//!
//! Updates are **incremental** rather than rebuilds: a change edits the one trie node owning
//! the prefix (≤ 256 slots re-painted), the one group and the one destination entry
//! involved, so applying it costs a few microseconds whatever the table size, where a full
//! rebuild of a 100k-route table costs ~100–200 ms (both measured in `benches/lookup.rs`).
//!
//! [`naive`] is a linear-scan implementation of the same rules, used as the reference in
//! property tests and as the benchmark baseline.
//!
//! # Example
//!
//! ```
//! use vpnroute_engine::{LinkState, Reason, Route, RouteKind, RouteTable};
//!
//! let net = |s: &str| s.parse().unwrap();
//! let mut table = RouteTable::new();
//! table.insert(Route::destination(1, net("10.0.0.0/8"), "vco-a", 100, 1)).unwrap();
//! table.insert(Route::destination(2, net("10.0.0.0/8"), "vco-b", 0, 2)).unwrap();
//! table.insert(Route::policy(3, net("172.16.0.0/16"), net("10.1.0.0/16"), "vco-c", 100, 5, 3)).unwrap();
//!
//! let mut links = LinkState::new();
//! let src = "172.16.0.9".parse().unwrap();
//! let d = table.lookup(src, "10.1.2.3".parse().unwrap(), &links).unwrap();
//! assert_eq!((d.route_id, d.kind, d.next_hop), (3, RouteKind::Policy, "vco-c"));
//!
//! table.set_link_up(&mut links, "vco-a", false);
//! let d = table.lookup(src, "10.9.9.9".parse().unwrap(), &links).unwrap();
//! assert_eq!((d.next_hop, d.reason), ("vco-b", Reason::StandbyTakeover));
//!
//! let why = table.explain(src, "10.9.9.9".parse().unwrap(), &links);
//! assert_eq!(why.candidates.len(), 2);
//! println!("{}", why.summary);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dbr;
mod decision;
mod explain;
mod group;
mod links;
pub mod naive;
mod pbr;
mod route;
mod slab;
mod table;
mod trie;

pub use decision::{Decision, Reason};
pub use explain::{Candidate, ChosenRoute, Explanation, Verdict};
pub use ipnet::Ipv4Net;
pub use links::{LinkState, NextHopId};
pub use route::{validate, InsertError, Route, RouteKind, PRIORITY_MAX, PRIORITY_MIN, WEIGHT_ACTIVE, WEIGHT_STANDBY};
pub use table::RouteTable;
