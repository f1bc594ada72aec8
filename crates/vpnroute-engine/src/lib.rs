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
//!    active/standby group, which ranks as its best member; the best group wins.
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
//! (`10.0.0.7/24` is stored as `10.0.0.0/24`).
//!
//! # Data structures
//!
//! * Destination routes: an LPM index (module `trie`) — a four-level, stride-8, poptrie-style
//!   compressed trie (256-bit bitmaps + popcount, no leaf pushing across levels) over the
//!   distinct destination prefixes. A lookup visits at most four nodes.
//! * Policy routes: the same trie over distinct destination prefixes, enumerating every
//!   destination prefix containing `D` longest first; under each, the groups are kept in a
//!   rank-sorted array (or a rank-keyed trie when there are many sources), and the walk stops
//!   probing destinations that can no longer win (module `pbr`).
//! * Next hops are interned to dense [`NextHopId`]s; [`LinkState`] is a bitset by that id,
//!   kept outside the table so that tunnel flaps cost one bit write.
//!
//! Updates are **incremental**: a change edits the one trie node owning the prefix
//! (≤ 256 slots re-painted) and the one group / destination entry involved, so applying a
//! change costs microseconds whatever the table size; a full rebuild of 100k routes would
//! cost tens of milliseconds. The benchmarks (`benches/lookup.rs`) measure both lookups and
//! one insert + remove on a 100k-route table.
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
