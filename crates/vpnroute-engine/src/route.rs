//! Route definitions as callers hand them to the engine, and their validation.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Weight of the active member of an active/standby pair.
pub const WEIGHT_ACTIVE: u8 = 100;
/// Weight of the standby member of an active/standby pair.
pub const WEIGHT_STANDBY: u8 = 0;
/// Smallest (= highest-precedence) policy priority.
pub const PRIORITY_MIN: u8 = 1;
/// Largest (= lowest-precedence) policy priority.
pub const PRIORITY_MAX: u8 = 100;

/// Which routing table a route belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// Destination-based route (Alibaba `VpnRouteEntry`): matched by longest prefix on the
    /// destination address.
    Destination,
    /// Policy-based route (Alibaba `VpnPbrRouteEntry`): matched on source and destination,
    /// ordered by priority.
    Policy,
}

/// One route as the control plane knows it.
///
/// `next_hop` is the id of the IPsec connection the route points at (e.g. `vco-…`); the
/// engine interns it, so repeating the same string across routes costs nothing per route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Stable, unique id. The engine refuses a second route with the same id.
    pub id: u64,
    /// Destination- or policy-based.
    pub kind: RouteKind,
    /// Source prefix: required for [`RouteKind::Policy`], must be `None` for
    /// [`RouteKind::Destination`].
    pub source: Option<Ipv4Net>,
    /// Destination prefix.
    pub dest: Ipv4Net,
    /// IPsec connection id the packet is sent to.
    pub next_hop: String,
    /// [`WEIGHT_ACTIVE`] (100) or [`WEIGHT_STANDBY`] (0).
    pub weight: u8,
    /// Policy priority, [`PRIORITY_MIN`]`..=`[`PRIORITY_MAX`]; smaller wins. Ignored for
    /// destination-based routes.
    pub priority: u8,
    /// Creation order: smaller = older. Breaks ties (ties in `seq` fall back to `id`).
    pub seq: u64,
}

impl Route {
    /// A destination-based route.
    pub fn destination(id: u64, dest: Ipv4Net, next_hop: impl Into<String>, weight: u8, seq: u64) -> Self {
        Route {
            id,
            kind: RouteKind::Destination,
            source: None,
            dest,
            next_hop: next_hop.into(),
            weight,
            priority: 0,
            seq,
        }
    }

    /// A policy-based route.
    pub fn policy(
        id: u64,
        source: Ipv4Net,
        dest: Ipv4Net,
        next_hop: impl Into<String>,
        weight: u8,
        priority: u8,
        seq: u64,
    ) -> Self {
        Route {
            id,
            kind: RouteKind::Policy,
            source: Some(source),
            dest,
            next_hop: next_hop.into(),
            weight,
            priority,
            seq,
        }
    }

    /// `true` for the active member of an active/standby group (weight 100).
    pub fn is_active(&self) -> bool {
        self.weight == WEIGHT_ACTIVE
    }
}

/// Why a route was refused by [`RouteTable::insert`](crate::RouteTable::insert).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// A route with this id is already in the table.
    #[error("route {0} already exists")]
    DuplicateId(u64),
    /// Weight other than 0 or 100.
    #[error("route {id}: weight {weight} is neither 0 (standby) nor 100 (active)")]
    InvalidWeight {
        /// Route id.
        id: u64,
        /// Offending weight.
        weight: u8,
    },
    /// Policy priority outside 1..=100.
    #[error("route {id}: priority {priority} is outside 1..=100")]
    InvalidPriority {
        /// Route id.
        id: u64,
        /// Offending priority.
        priority: u8,
    },
    /// A policy route without a source prefix.
    #[error("policy route {0} has no source prefix")]
    MissingSource(u64),
    /// A destination route with a source prefix.
    #[error("destination route {0} must not have a source prefix")]
    UnexpectedSource(u64),
}

/// Checks the per-route invariants the engine relies on (shared by the fast table and the
/// [`naive`](crate::naive) reference so that both accept exactly the same routes).
pub fn validate(route: &Route) -> Result<(), InsertError> {
    if route.weight != WEIGHT_ACTIVE && route.weight != WEIGHT_STANDBY {
        return Err(InsertError::InvalidWeight {
            id: route.id,
            weight: route.weight,
        });
    }
    match (route.kind, route.source) {
        (RouteKind::Policy, None) => Err(InsertError::MissingSource(route.id)),
        (RouteKind::Destination, Some(_)) => Err(InsertError::UnexpectedSource(route.id)),
        (RouteKind::Policy, Some(_)) if !(PRIORITY_MIN..=PRIORITY_MAX).contains(&route.priority) => {
            Err(InsertError::InvalidPriority {
                id: route.id,
                priority: route.priority,
            })
        }
        _ => Ok(()),
    }
}

/// Position of a policy route (or group) in evaluation order: smaller = evaluated first.
///
/// Field order is the comparison order: priority ascending, then longer destination prefix,
/// then longer source prefix, then older `seq`, then smaller id (only to make the order total).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PolicyRank {
    pub priority: u8,
    /// `32 - dest prefix length`, so that a longer prefix sorts first.
    pub dest_len_from_max: u8,
    /// `32 - source prefix length`.
    pub source_len_from_max: u8,
    pub seq: u64,
    pub route_id: u64,
}

impl PolicyRank {
    pub(crate) fn new(priority: u8, source: Ipv4Net, dest: Ipv4Net, seq: u64, route_id: u64) -> Self {
        PolicyRank {
            priority,
            dest_len_from_max: 32u8.saturating_sub(dest.prefix_len()),
            source_len_from_max: 32u8.saturating_sub(source.prefix_len()),
            seq,
            route_id,
        }
    }
}

/// Order of members inside one active/standby group: actives first, then standbys, each
/// oldest first (`seq`, then id).
pub(crate) fn member_preference(active: bool, seq: u64, route_id: u64) -> (bool, u64, u64) {
    (!active, seq, route_id)
}
