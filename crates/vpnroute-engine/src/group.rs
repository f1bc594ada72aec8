//! Active/standby groups: routes sharing the same match key (same destination for
//! destination-based routes; same source and destination for policy-based routes).

use ipnet::Ipv4Net;

use crate::decision::Reason;
use crate::links::{LinkState, NextHopId};
use crate::route::{member_preference, PolicyRank};
use crate::slab::Slab;

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

/// Groups this small (the usual active/standby pair) are selected from their hot copy alone.
const INLINE_MEMBERS: usize = 2;

/// Routes with one match key, kept in preference order: actives oldest first, then standbys
/// oldest first.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub members: Vec<Member>,
    /// Rank of the best member (policy groups only; unused for destination groups).
    pub rank: PolicyRank,
    pub source: Ipv4Net,
    pub dest: Ipv4Net,
}

impl Group {
    pub(crate) fn new(source: Ipv4Net, dest: Ipv4Net) -> Self {
        Group {
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
        for member in &self.members {
            if links.is_up(member.hop) {
                let reason = if member.active {
                    Reason::ActiveUp
                } else {
                    Reason::StandbyTakeover
                };
                return Some((member, reason));
            }
        }
        let first = self.members.first()?;
        let reason = if first.active {
            Reason::AllDownActive
        } else {
            Reason::AllDownNoActive
        };
        Some((first, reason))
    }
}

/// What a lookup reads about one member: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HotMember {
    route_id: u64,
    hop: NextHopId,
    role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Role {
    Absent,
    Standby,
    Active,
    /// The group has more members than fit: read the cold [`Group`], whose key is in
    /// `route_id`.
    Overflow,
}

const ABSENT: HotMember = HotMember {
    route_id: 0,
    hop: NextHopId(u32::MAX),
    role: Role::Absent,
};

/// Lookup-side copy of a group's members (32 bytes): everything rule 3 needs for the usual
/// active/standby pair, so that whoever holds a copy answers without touching the group.
///
/// Copies live in the [`GroupStore`] and, for the best-keyed policy group of each
/// destination, inline in the destination's lookup line (see `pbr.rs`); both are refreshed
/// whenever the group changes. A copy of a group too large for it says where the group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HotMembers {
    members: [HotMember; INLINE_MEMBERS],
}

/// What [`HotMembers::select`] could not decide alone: the group has more members than its
/// copy holds; ask [`GroupStore::select_cold`] about `group`.
pub(crate) struct Overflow {
    pub group: u32,
}

impl HotMembers {
    /// No members: selects nothing.
    pub(crate) const EMPTY: Self = HotMembers {
        members: [ABSENT; INLINE_MEMBERS],
    };

    /// The copy of `group`, stored under `key` in its [`GroupStore`].
    pub(crate) fn of(group: &Group, key: u32) -> Self {
        let mut hot = Self::EMPTY;
        if group.members.len() > INLINE_MEMBERS {
            hot.members[0].role = Role::Overflow;
            hot.members[0].route_id = u64::from(key);
            return hot;
        }
        for (slot, member) in hot.members.iter_mut().zip(&group.members) {
            *slot = HotMember {
                route_id: member.route_id,
                hop: member.hop,
                role: if member.active { Role::Active } else { Role::Standby },
            };
        }
        hot
    }

    /// Rule 3 from the copy: `Ok(Some((route id, next hop, reason)))`, `Ok(None)` for an
    /// empty group, or `Err(Overflow)` when the group is too large for the copy and the
    /// caller must ask [`GroupStore::select_cold`].
    #[inline(always)]
    pub(crate) fn select(&self, links: &LinkState) -> Result<Option<(u64, NextHopId, Reason)>, Overflow> {
        let first = &self.members[0];
        // The usual answer, tested first and alone: the active member is up.
        if first.role == Role::Active && links.is_up(first.hop) {
            return Ok(Some((first.route_id, first.hop, Reason::ActiveUp)));
        }
        self.select_failover(links)
    }

    /// [`HotMembers::select`] when the first member is not an up active one. Written with
    /// `if`s on the role rather than a `match`, which compiled to a jump table whose indirect
    /// branch mispredicts while links are down.
    #[inline(always)]
    fn select_failover(&self, links: &LinkState) -> Result<Option<(u64, NextHopId, Reason)>, Overflow> {
        let [first, second] = self.members;
        if first.role == Role::Overflow {
            return Err(Overflow {
                group: first.route_id as u32,
            });
        }
        for member in [first, second] {
            if member.role != Role::Absent && links.is_up(member.hop) {
                let reason = if member.role == Role::Active {
                    Reason::ActiveUp
                } else {
                    Reason::StandbyTakeover
                };
                return Ok(Some((member.route_id, member.hop, reason)));
            }
        }
        // Every next hop is down: the first member, active if the group has one.
        Ok(if first.role == Role::Absent {
            None
        } else if first.role == Role::Active {
            Some((first.route_id, first.hop, Reason::AllDownActive))
        } else {
            Some((first.route_id, first.hop, Reason::AllDownNoActive))
        })
    }
}

/// A [`HotMembers`] aligned so that two share a cache line and none straddles two.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct HotGroup(HotMembers);

const EMPTY_HOT: HotGroup = HotGroup(HotMembers::EMPTY);

/// The groups of one table: cold [`Group`]s in a slab plus their [`HotGroup`] copies, kept
/// in step by routing every mutation through here.
#[derive(Debug, Clone, Default)]
pub(crate) struct GroupStore {
    cold: Slab<Group>,
    hot: Vec<HotGroup>,
}

impl GroupStore {
    pub(crate) fn insert(&mut self, group: Group) -> u32 {
        let key = self.cold.insert(group);
        self.refresh(key);
        key
    }

    pub(crate) fn get(&self, key: u32) -> Option<&Group> {
        self.cold.get(key)
    }

    /// Edits a group and refreshes its hot copy.
    pub(crate) fn update<R>(&mut self, key: u32, edit: impl FnOnce(&mut Group) -> R) -> Option<R> {
        let result = edit(self.cold.get_mut(key)?);
        self.refresh(key);
        Some(result)
    }

    pub(crate) fn remove(&mut self, key: u32) -> Option<Group> {
        if let Some(hot) = self.hot.get_mut(key as usize) {
            *hot = EMPTY_HOT;
        }
        self.cold.remove(key)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.cold.capacity_bytes()
            + self.hot.capacity() * std::mem::size_of::<HotGroup>()
            + self
                .cold
                .iter()
                .map(|(_, g)| g.members.capacity() * std::mem::size_of::<Member>())
                .sum::<usize>()
    }

    fn refresh(&mut self, key: u32) {
        let Some(group) = self.cold.get(key) else {
            return;
        };
        let hot = HotGroup(HotMembers::of(group, key));
        let index = key as usize;
        if self.hot.len() <= index {
            self.hot.resize(index + 1, EMPTY_HOT);
        }
        if let Some(slot) = self.hot.get_mut(index) {
            *slot = hot;
        }
    }

    /// Rule 3 for group `key`: `(route id, next hop, reason)`.
    #[inline(always)]
    pub(crate) fn select(&self, key: u32, links: &LinkState) -> Option<(u64, NextHopId, Reason)> {
        match self.hot.get(key as usize)?.0.select(links) {
            Ok(selected) => selected,
            Err(Overflow { group }) => self.select_cold(group, links),
        }
    }

    /// Rule 3 for a group too large for its [`HotMembers`] copy.
    #[cold]
    pub(crate) fn select_cold(&self, key: u32, links: &LinkState) -> Option<(u64, NextHopId, Reason)> {
        let (member, reason) = self.cold.get(key)?.select(links)?;
        Some((member.route_id, member.hop, reason))
    }
}
