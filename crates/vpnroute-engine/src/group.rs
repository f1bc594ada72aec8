//! Active/standby groups: routes sharing the same match key (same destination for
//! destination-based routes; same source and destination for policy-based routes).

use ipnet::Ipv4Net;

use crate::decision::Reason;
use crate::links::{LinkState, NextHopId};
use crate::route::{member_preference, PolicyRank};

/// One route of a group, reduced to what selection needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Member {
    pub route_id: u64,
    pub hop: NextHopId,
    pub active: bool,
    pub seq: u64,
    pub priority: u8,
}

impl Member {
    fn preference(&self) -> (bool, u64, u64) {
        member_preference(self.active, self.seq, self.route_id)
    }
}

/// Groups this small keep a copy of their members inline, saving a pointer chase on lookup.
const INLINE_MEMBERS: usize = 2;

/// Routes with one match key, kept in preference order: actives oldest first, then standbys
/// oldest first.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Copy of `members` when it has at most [`INLINE_MEMBERS`] entries (the usual
    /// active/standby pair).
    inline: [Member; INLINE_MEMBERS],
    pub members: Vec<Member>,
    /// Rank of the best member (policy groups only; unused for destination groups).
    pub rank: PolicyRank,
    pub source: Ipv4Net,
    pub dest: Ipv4Net,
}

const NO_MEMBER: Member = Member {
    route_id: 0,
    hop: NextHopId(u32::MAX),
    active: false,
    seq: 0,
    priority: 0,
};

impl Group {
    pub(crate) fn new(source: Ipv4Net, dest: Ipv4Net) -> Self {
        Group {
            inline: [NO_MEMBER; INLINE_MEMBERS],
            source,
            dest,
            members: Vec::with_capacity(1),
            rank: PolicyRank::new(u8::MAX, source, dest, u64::MAX, u64::MAX),
        }
    }

    pub(crate) fn add(&mut self, member: Member) {
        let at = self
            .members
            .binary_search_by_key(&member.preference(), Member::preference)
            .unwrap_or_else(|i| i);
        self.members.insert(at, member);
        self.refresh_rank();
    }

    pub(crate) fn remove(&mut self, route_id: u64) -> Option<Member> {
        let at = self.members.iter().position(|m| m.route_id == route_id)?;
        let member = self.members.remove(at);
        self.refresh_rank();
        Some(member)
    }

    fn refresh_rank(&mut self) {
        for (slot, member) in self.inline.iter_mut().zip(&self.members) {
            *slot = *member;
        }
        let (source, dest) = (self.source, self.dest);
        self.rank = self
            .members
            .iter()
            .map(|m| PolicyRank::new(m.priority, source, dest, m.seq, m.route_id))
            .min()
            .unwrap_or_else(|| PolicyRank::new(u8::MAX, source, dest, u64::MAX, u64::MAX));
    }

    /// Rule 3: the first member (in preference order) whose next hop is up; if none is up,
    /// the first member (the oldest active, or the oldest route when there is no active).
    #[inline]
    pub(crate) fn select(&self, links: &LinkState) -> Option<(&Member, Reason)> {
        let members = match self.members.len() {
            n @ 0..=INLINE_MEMBERS => self.inline.get(..n).unwrap_or_default(),
            _ => &self.members,
        };
        for member in members {
            if links.is_up(member.hop) {
                let reason = if member.active {
                    Reason::ActiveUp
                } else {
                    Reason::StandbyTakeover
                };
                return Some((member, reason));
            }
        }
        let first = members.first()?;
        let reason = if first.active {
            Reason::AllDownActive
        } else {
            Reason::AllDownNoActive
        };
        Some((first, reason))
    }
}
