//! The answer of a lookup: which route, which next hop, and why.

use serde::Serialize;

use crate::route::RouteKind;

/// Why the chosen member of the matching active/standby group was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The active route (weight 100) and its next hop is up.
    ActiveUp,
    /// No active route of the group has an up next hop; the oldest standby route (weight 0)
    /// whose next hop is up took over.
    StandbyTakeover,
    /// Every next hop of the group is down; the active route is used anyway (Alibaba: "if both
    /// fail, the active one is used").
    AllDownActive,
    /// Every next hop of the group is down and the group has no active route; the oldest
    /// route is used.
    AllDownNoActive,
}

impl Reason {
    /// Short human description.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::ActiveUp => "active route, next hop up",
            Reason::StandbyTakeover => "standby route took over: no active route has an up next hop",
            Reason::AllDownActive => "all next hops of the group are down; the active route is used",
            Reason::AllDownNoActive => {
                "all next hops of the group are down and it has no active route; the oldest route is used"
            }
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Result of [`RouteTable::lookup`](crate::RouteTable::lookup): the route a packet takes.
///
/// Borrows the connection id from the table, so producing it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Decision<'t> {
    /// Id of the chosen route.
    pub route_id: u64,
    /// Table the route came from.
    pub kind: RouteKind,
    /// IPsec connection id the packet is sent to.
    pub next_hop: &'t str,
    /// Why this member of its active/standby group was chosen.
    pub reason: Reason,
}
