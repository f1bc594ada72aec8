//! [`RouteTable::explain`]: the human-oriented (allocating) account of a routing decision.
//!
//! It scans every route rather than using the lookup indexes, re-derives the decision from
//! the rules on its own, and so doubles as a cross-check of [`RouteTable::lookup`] in tests.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::decision::Reason;
use crate::links::LinkState;
use crate::route::{member_preference, PolicyRank, RouteKind, WEIGHT_ACTIVE};
use crate::table::{RouteTable, StoredRoute};

/// Why a candidate route was or wasn't chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// This route carries the packet.
    Chosen,
    /// Same active/standby group as the chosen route, but its next hop is down.
    NextHopDown,
    /// Standby route whose group's active route is up.
    StandbyWhileActiveUp,
    /// An older route with the same standing (same weight in the same group, or a policy
    /// group equal on priority and both prefix lengths) was preferred.
    OlderRoutePreferred,
    /// Policy route whose group has a larger (= lower-precedence) priority than the chosen one.
    LowerPriority,
    /// Same priority (policy) or plain longest-prefix match (destination), but a longer
    /// destination prefix matched.
    ShorterDestinationPrefix,
    /// Same priority and destination length, but a longer source prefix matched.
    ShorterSourcePrefix,
    /// Destination-based route: a policy-based route matched, and those are evaluated first.
    PolicyRouteMatched,
}

impl Verdict {
    /// Short human description.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Chosen => "chosen",
            Verdict::NextHopDown => "next hop down",
            Verdict::StandbyWhileActiveUp => "standby while the active route is up",
            Verdict::OlderRoutePreferred => "an older, otherwise equal route was preferred",
            Verdict::LowerPriority => "lower priority (larger priority value)",
            Verdict::ShorterDestinationPrefix => "shorter destination prefix",
            Verdict::ShorterSourcePrefix => "shorter source prefix",
            Verdict::PolicyRouteMatched => "a policy-based route matched first",
        }
    }
}

/// One route whose prefixes match the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    /// Route id.
    pub route_id: u64,
    /// Destination- or policy-based.
    pub kind: RouteKind,
    /// Source prefix (policy routes).
    pub source: Option<Ipv4Net>,
    /// Destination prefix.
    pub dest: Ipv4Net,
    /// IPsec connection id.
    pub next_hop: String,
    /// State of that connection in the link state used.
    pub next_hop_up: bool,
    /// 100 = active, 0 = standby.
    pub weight: u8,
    /// Policy priority (policy routes).
    pub priority: Option<u8>,
    /// Creation order.
    pub seq: u64,
    /// Outcome for this route.
    pub verdict: Verdict,
    /// [`Verdict::describe`] of `verdict`, for readers of the JSON.
    pub why: &'static str,
}

/// The route that carries the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChosenRoute {
    /// Route id.
    pub route_id: u64,
    /// Destination- or policy-based.
    pub kind: RouteKind,
    /// IPsec connection id.
    pub next_hop: String,
    /// Why this member of its group.
    pub reason: Reason,
}

/// Answer of [`RouteTable::explain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// Packet source.
    pub source: Ipv4Addr,
    /// Packet destination.
    pub destination: Ipv4Addr,
    /// The route taken, or `None` when nothing matches.
    pub chosen: Option<ChosenRoute>,
    /// Every route whose prefixes match, in evaluation order: policy routes by group rank
    /// (priority, destination length, source length, age), then destination routes by prefix
    /// length; inside a group, actives before standbys, oldest first.
    pub candidates: Vec<Candidate>,
    /// One line for humans.
    pub summary: String,
}

/// Evaluation-order key of a candidate: table, group rank, preference inside the group.
type EvaluationKey = (u8, PolicyRank, (bool, u64, u64));

struct Matched<'t> {
    id: u64,
    route: &'t StoredRoute,
    up: bool,
    group_rank: PolicyRank,
}

impl Matched<'_> {
    fn group_key(&self) -> (RouteKind, Ipv4Net, Ipv4Net) {
        (self.route.kind, self.route.source, self.route.dest)
    }

    fn active(&self) -> bool {
        self.route.weight == WEIGHT_ACTIVE
    }

    fn evaluation_key(&self) -> EvaluationKey {
        let table = match self.route.kind {
            RouteKind::Policy => 0,
            RouteKind::Destination => 1,
        };
        (
            table,
            self.group_rank,
            member_preference(self.active(), self.route.seq, self.id),
        )
    }
}

fn route_rank(id: u64, route: &StoredRoute) -> PolicyRank {
    match route.kind {
        RouteKind::Policy => PolicyRank::new(route.priority, route.source, route.dest, route.seq, id),
        // Destination routes: only the prefix length orders groups.
        RouteKind::Destination => PolicyRank::new(0, Ipv4Net::default(), route.dest, 0, 0),
    }
}

impl RouteTable {
    /// Explains where a packet from `src` to `dst` goes and why, listing every route whose
    /// prefixes match. Allocates; meant for operators and APIs, not the data path.
    /// Its `chosen` always agrees with [`RouteTable::lookup`].
    pub fn explain(&self, src: Ipv4Addr, dst: Ipv4Addr, links: &LinkState) -> Explanation {
        let mut matched: Vec<Matched<'_>> = self
            .stored_routes()
            .filter(|(_, route)| {
                route.dest.contains(&dst) && (route.kind == RouteKind::Destination || route.source.contains(&src))
            })
            .map(|(id, route)| Matched {
                id,
                route,
                up: links.is_up(route.hop),
                group_rank: route_rank(id, route),
            })
            .collect();

        // A group ranks as its best member.
        let mut group_ranks: HashMap<(RouteKind, Ipv4Net, Ipv4Net), PolicyRank> = HashMap::new();
        for m in &matched {
            let rank = group_ranks.entry(m.group_key()).or_insert(m.group_rank);
            *rank = (*rank).min(m.group_rank);
        }
        for m in &mut matched {
            if let Some(&rank) = group_ranks.get(&m.group_key()) {
                m.group_rank = rank;
            }
        }
        matched.sort_by_key(Matched::evaluation_key);

        // Rule 1/2: the first candidate's group wins. Rule 3 inside it.
        let winning_group: Vec<&Matched<'_>> = match matched.first() {
            Some(first) => matched.iter().filter(|m| m.group_key() == first.group_key()).collect(),
            None => Vec::new(),
        };
        let winner = winning_group
            .iter()
            .find(|m| m.up)
            .map(|m| {
                let reason = if m.active() {
                    Reason::ActiveUp
                } else {
                    Reason::StandbyTakeover
                };
                (*m, reason)
            })
            .or_else(|| {
                winning_group.first().map(|m| {
                    let reason = if m.active() {
                        Reason::AllDownActive
                    } else {
                        Reason::AllDownNoActive
                    };
                    (*m, reason)
                })
            });

        let candidates = matched
            .iter()
            .map(|m| {
                let verdict = winner.map_or(Verdict::Chosen, |(w, _)| verdict(m, w));
                Candidate {
                    route_id: m.id,
                    kind: m.route.kind,
                    source: (m.route.kind == RouteKind::Policy).then_some(m.route.source),
                    dest: m.route.dest,
                    next_hop: self.next_hop_name(m.route.hop).to_owned(),
                    next_hop_up: m.up,
                    weight: m.route.weight,
                    priority: (m.route.kind == RouteKind::Policy).then_some(m.route.priority),
                    seq: m.route.seq,
                    verdict,
                    why: verdict.describe(),
                }
            })
            .collect::<Vec<_>>();

        let chosen = winner.map(|(w, reason)| ChosenRoute {
            route_id: w.id,
            kind: w.route.kind,
            next_hop: self.next_hop_name(w.route.hop).to_owned(),
            reason,
        });
        let summary = match winner {
            Some((w, reason)) => {
                let what = match w.route.kind {
                    RouteKind::Policy => format!(
                        "policy route {} ({} -> {}, priority {})",
                        w.id, w.route.source, w.route.dest, w.route.priority
                    ),
                    RouteKind::Destination => {
                        format!("destination route {} ({})", w.id, w.route.dest)
                    }
                };
                format!(
                    "{src} -> {dst}: {what} via {}: {reason}; {} candidate(s) considered",
                    self.next_hop_name(w.route.hop),
                    candidates.len()
                )
            }
            None => format!("{src} -> {dst}: no route matches; the gateway does not forward it"),
        };

        Explanation {
            source: src,
            destination: dst,
            chosen,
            candidates,
            summary,
        }
    }
}

/// Verdict for candidate `m` given the chosen route `w`.
fn verdict(m: &Matched<'_>, w: &Matched<'_>) -> Verdict {
    if m.id == w.id {
        return Verdict::Chosen;
    }
    if m.group_key() == w.group_key() {
        return if !m.up {
            Verdict::NextHopDown
        } else if w.active() && !m.active() {
            Verdict::StandbyWhileActiveUp
        } else {
            Verdict::OlderRoutePreferred
        };
    }
    match (m.route.kind, w.route.kind) {
        (RouteKind::Destination, RouteKind::Policy) => Verdict::PolicyRouteMatched,
        (RouteKind::Destination, RouteKind::Destination) => Verdict::ShorterDestinationPrefix,
        _ => {
            let (mr, wr) = (m.group_rank, w.group_rank);
            if mr.priority != wr.priority {
                Verdict::LowerPriority
            } else if mr.dest_len_from_max != wr.dest_len_from_max {
                Verdict::ShorterDestinationPrefix
            } else if mr.source_len_from_max != wr.source_len_from_max {
                Verdict::ShorterSourcePrefix
            } else {
                Verdict::OlderRoutePreferred
            }
        }
    }
}
