//! Policy-based routes: active/standby groups keyed by `(source, dest)`, classified by
//! "minimum rank among groups whose source contains S and whose dest contains D".
//!
//! # Index
//!
//! Two levels, destination first:
//!
//! 1. The policy layer of the table's shared destination trie ([`DestTrie`], also holding the
//!    destination-route prefixes in its other layer, so that one walk over D serves both
//!    route kinds). For a destination address it yields, per trie level, the longest policy
//!    destination prefix containing it, and [`PrefixTrie::parent_of`] (cached in
//!    `DestHot::parent`) walks to the shorter ones; together that enumerates every policy
//!    destination prefix containing D, longest first.
//! 2. Per destination prefix, one cache line ([`DestHot`]) answering "best ranked group whose
//!    source contains S". It holds the destination's best-ranked group inline, with a copy of
//!    its members, so that the common case — a destination reached from one VPC CIDR — is
//!    answered from that line alone (trie walk → destination line → next hop, no group to
//!    load). The other groups ([`OtherSources`]) are an array sorted by rank, scanned until
//!    the first match, or when many a [`PrefixTrie`] keyed by rank, whose per-level hits are
//!    min-combined; their members come from the group store.
//!
//! Candidates are compared by a packed `u32` [`match_key`] `(priority, 32 - dest len,
//! 32 - source len)`, not by the full rank: two *different* groups that both match one packet
//! and tie on all three would have identical prefixes, i.e. be the same group, so the age
//! tie-break never separates matching groups.
//!
//! The walk over destinations goes longest first, and a destination is given up as soon as
//! its best key is no better than the best match so far (keys start with the priority, so a
//! shorter destination needs a *strictly* smaller one: with an equal priority it loses the
//! prefix-length tie-break); a match with the top priority ends the walk. Lookups therefore
//! cost one trie walk over D plus one look at each containing destination prefix that could
//! still win — typically one or two.

use std::collections::HashMap;

use ipnet::Ipv4Net;

use crate::decision::Reason;
use crate::group::{Group, GroupStore, HotMembers, Member, Overflow};
use crate::links::{LinkState, NextHopId};
use crate::route::{PolicyRank, PRIORITY_MIN};
use crate::slab::Slab;
use crate::table::{DestTrie, POLICY_LAYER};
use crate::trie::{LevelHits, PrefixTrie, NO_VALUE};

/// Groups beyond the first of a destination are kept as a key-sorted array up to this many,
/// as a trie beyond. (Tiny in unit tests, so that small random tables exercise every
/// representation.)
const LINEAR_SOURCE_SET_MAX: usize = if cfg!(test) { 6 } else { 32 };

/// `(priority, 32 - dest len, 32 - source len)` packed so that `<` is the policy order.
/// Sufficient to order the groups matching one packet (see the module docs).
pub(crate) fn match_key(rank: &PolicyRank) -> u32 {
    (u32::from(rank.priority) << 16) | (u32::from(rank.dest_len_from_max) << 8) | u32::from(rank.source_len_from_max)
}

/// Priority part of a [`match_key`].
#[inline]
fn key_priority(key: u32) -> u32 {
    key >> 16
}

/// Source prefix and [`match_key`] of one group under a destination: what scanning a source
/// set compares (16 bytes, four to a cache line).
#[derive(Debug, Clone, Copy)]
struct SourceFilter {
    net: u32,
    mask: u32,
    key: u32,
    group: u32,
}

impl SourceFilter {
    #[inline]
    fn contains(&self, addr: u32) -> bool {
        addr & self.mask == self.net
    }
}

/// A filter no address matches (`addr & 0 != u32::MAX`) and no key beats.
const UNUSED_FILTER: SourceFilter = SourceFilter {
    net: u32::MAX,
    mask: 0,
    key: u32::MAX,
    group: NO_VALUE,
};

/// The groups of a destination after its first (see [`DestHot`]). 16 bytes: both variants
/// are boxed, and "no further group" is an empty array, which allocates nothing.
#[derive(Debug, Clone)]
enum OtherSources {
    /// Up to [`LINEAR_SOURCE_SET_MAX`] groups, sorted by key (then group).
    Array(Box<[SourceFilter]>),
    /// Every group of the destination (the first included), source prefixes keyed by
    /// [`match_key`], valued by group.
    Trie(Box<PrefixTrie<u32>>),
}

/// What a lookup reads about one destination prefix: exactly one cache line, stored apart
/// from the cold [`DestEntry`] so that the lines a lookup touches are dense.
///
/// The destination's best-keyed group — its *first* — is stored inline, members included,
/// so that the usual destination, reached from one VPC CIDR, is answered from this line
/// alone: destination, source and next hop. The other groups sit behind `others`. A lookup
/// therefore takes two conditional branches (the first group, then maybe the others), where
/// a `match` over a four-variant source set compiled to a jump table whose indirect branch
/// mispredicted on most lookups (measured: 0.8 per lookup, a quarter of the lookup time).
/// The first group's fields are flattened in here, rather than nested, so that the line
/// holds them with `parent` and `others`.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct DestHot {
    /// Members of the first group.
    first_members: HotMembers,
    /// Source prefix of the first group ([`UNUSED_FILTER`]'s when the destination has none).
    first_net: u32,
    first_mask: u32,
    /// [`match_key`] of the first group: the smallest of the destination's, so it also bounds
    /// what any of its groups can achieve.
    first_key: u32,
    /// Copy of the destination trie's `parent_of` for this destination: the next shorter
    /// destination prefix containing it within the same trie node, or [`NO_VALUE`].
    parent: u32,
    others: OtherSources,
}

impl DestHot {
    #[inline]
    fn first_contains(&self, addr: u32) -> bool {
        addr & self.first_mask == self.first_net
    }

    /// Makes `filter`'s group (of `groups`) the first.
    fn set_first(&mut self, filter: &SourceFilter, groups: &GroupStore) {
        self.first_members = groups
            .get(filter.group)
            .map_or(HotMembers::EMPTY, |g| HotMembers::of(g, filter.group));
        (self.first_net, self.first_mask, self.first_key) = (filter.net, filter.mask, filter.key);
    }
}

/// A destination without groups: nothing matches, nothing is skipped to.
impl Default for DestHot {
    fn default() -> Self {
        DestHot {
            first_members: HotMembers::EMPTY,
            first_net: UNUSED_FILTER.net,
            first_mask: UNUSED_FILTER.mask,
            first_key: UNUSED_FILTER.key,
            parent: NO_VALUE,
            others: OtherSources::Array(Box::default()),
        }
    }
}

/// Bookkeeping for one destination prefix (cold; the lookup side is [`DestHot`]).
#[derive(Debug, Clone)]
struct DestEntry {
    dest: Ipv4Net,
    /// Every group with this destination (cold; rebuild input).
    groups: Vec<u32>,
    dirty: bool,
    /// Sources whose group changed since the last flush (used to update a trie source set).
    changed_sources: Vec<Ipv4Net>,
}

/// Where the members of the best-matching group are: the copy in its destination's line,
/// or the group store.
enum Best<'a> {
    First(&'a DestHot),
    Group(u32),
}

fn lpm_key(dest: Ipv4Net) -> u8 {
    32u8.saturating_sub(dest.prefix_len())
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyIndex {
    pub(crate) groups: GroupStore,
    /// `match_keys[group]`: [`match_key`] of the group's rank.
    match_keys: Vec<u32>,
    by_key: HashMap<(Ipv4Net, Ipv4Net), u32>,
    dests: Slab<DestEntry>,
    /// `dest_hot[dest key]`, kept in step with `dests`.
    dest_hot: Vec<DestHot>,
    dest_by_prefix: HashMap<Ipv4Net, u32>,
    dirty_dests: Vec<u32>,
}

impl PolicyIndex {
    pub(crate) fn add(&mut self, trie: &mut DestTrie, source: Ipv4Net, dest: Ipv4Net, member: Member) {
        let dest_key = self.dest_entry(trie, dest);
        let group_key = match self.by_key.get(&(source, dest)) {
            Some(&key) => key,
            None => {
                let key = self.groups.insert(Group::new(source, dest));
                self.by_key.insert((source, dest), key);
                if let Some(entry) = self.dests.get_mut(dest_key) {
                    entry.groups.push(key);
                }
                key
            }
        };
        if let Some(key) = self.groups.update(group_key, |group| {
            group.add(member);
            match_key(&group.rank)
        }) {
            set_match_key(&mut self.match_keys, group_key, key);
        }
        self.mark_changed(dest_key, source);
    }

    pub(crate) fn remove(&mut self, source: Ipv4Net, dest: Ipv4Net, route_id: u64) {
        let Some(&group_key) = self.by_key.get(&(source, dest)) else {
            return;
        };
        let group_empty = match self.groups.update(group_key, |group| {
            group.remove(route_id);
            (match_key(&group.rank), group.members.is_empty())
        }) {
            Some((key, empty)) => {
                set_match_key(&mut self.match_keys, group_key, key);
                empty
            }
            None => true,
        };
        let Some(&dest_key) = self.dest_by_prefix.get(&dest) else {
            return;
        };
        if group_empty {
            self.by_key.remove(&(source, dest));
            self.groups.remove(group_key);
            set_match_key(&mut self.match_keys, group_key, u32::MAX);
            if let Some(entry) = self.dests.get_mut(dest_key) {
                entry.groups.retain(|&g| g != group_key);
            }
        }
        self.mark_changed(dest_key, source);
    }

    fn dest_entry(&mut self, trie: &mut DestTrie, dest: Ipv4Net) -> u32 {
        if let Some(&key) = self.dest_by_prefix.get(&dest) {
            return key;
        }
        let key = self.dests.insert(DestEntry {
            dest,
            groups: Vec::new(),
            dirty: false,
            changed_sources: Vec::new(),
        });
        if self.dest_hot.len() <= key as usize {
            self.dest_hot.resize_with(key as usize + 1, DestHot::default);
        }
        self.dest_by_prefix.insert(dest, key);
        trie.insert_in(
            POLICY_LAYER,
            u32::from(dest.network()),
            dest.prefix_len(),
            key,
            lpm_key(dest),
        );
        key
    }

    fn mark_changed(&mut self, dest_key: u32, source: Ipv4Net) {
        if let Some(entry) = self.dests.get_mut(dest_key) {
            entry.changed_sources.push(source);
            if !entry.dirty {
                entry.dirty = true;
                self.dirty_dests.push(dest_key);
            }
        }
    }

    /// Brings the source sets and the policy layer of the destination trie up to date
    /// (flushes `trie`).
    pub(crate) fn flush(&mut self, trie: &mut DestTrie) {
        while let Some(dest_key) = self.dirty_dests.pop() {
            let (Some(entry), Some(hot)) = (self.dests.get_mut(dest_key), self.dest_hot.get_mut(dest_key as usize))
            else {
                continue;
            };
            entry.dirty = false;
            let changed = std::mem::take(&mut entry.changed_sources);
            if entry.groups.is_empty() {
                let dest = entry.dest;
                *hot = DestHot::default();
                self.dests.remove(dest_key);
                self.dest_by_prefix.remove(&dest);
                trie.remove_in(POLICY_LAYER, u32::from(dest.network()), dest.prefix_len());
                continue;
            }
            let dest = entry.dest;
            match &mut hot.others {
                // Large sets stay tries (with hysteresis) and are updated in place; only the
                // inline first group is recomputed.
                OtherSources::Trie(trie) if entry.groups.len() > LINEAR_SOURCE_SET_MAX / 2 => {
                    for source in changed {
                        let net = u32::from(source.network());
                        match self.by_key.get(&(source, dest)) {
                            Some(&g) => {
                                let key = self.match_keys.get(g as usize).copied();
                                trie.insert(net, source.prefix_len(), g, key.unwrap_or(u32::MAX));
                            }
                            None => {
                                trie.remove(net, source.prefix_len());
                            }
                        }
                    }
                    trie.flush();
                    let first = (entry.groups)
                        .iter()
                        .filter_map(|&g| filter_of(g, &self.groups))
                        .min_by_key(|f| (f.key, f.group));
                    hot.set_first(&first.unwrap_or(UNUSED_FILTER), &self.groups);
                }
                _ => set_sources(hot, &entry.groups, &self.groups),
            }
        }
        trie.flush();
        for dest_key in trie.take_parent_changes() {
            let parent = trie.parent_of(dest_key);
            if let Some(hot) = self.dest_hot.get_mut(dest_key as usize) {
                hot.parent = parent;
            }
        }
    }

    /// Rule 1 then rule 3: the chosen member of the best-ranked policy group matching
    /// `(src, dst)`, if any, given the walk of the shared trie over `dst`.
    #[inline]
    pub(crate) fn lookup(&self, hits: &LevelHits<2>, src: u32, links: &LinkState) -> Option<(u64, NextHopId, Reason)> {
        match self.best_match(hits, src)? {
            Best::First(entry) => match entry.first_members.select(links) {
                Ok(selected) => selected,
                Err(Overflow { group }) => self.groups.select_cold(group, links),
            },
            Best::Group(group) => self.groups.select(group, links),
        }
    }

    /// The best-ranked policy group matching `(src, dst)`, if any.
    #[inline]
    fn best_match(&self, hits: &LevelHits<2>, src: u32) -> Option<Best<'_>> {
        // Tables without policy routes (a common configuration) skip the level scan.
        if self.dest_by_prefix.is_empty() {
            return None;
        }
        let (mut best_key, mut best) = (u32::MAX, None);
        for mut dest_key in hits.deepest_first(POLICY_LAYER) {
            while dest_key != NO_VALUE {
                let Some(entry) = self.dest_hot.get(dest_key as usize) else {
                    break;
                };
                if let Some((key, found)) = self.best_source(entry, src, best_key) {
                    (best_key, best) = (key, Some(found));
                    // Nothing shorter beats the top priority: stop loading candidates.
                    if key_priority(key) <= u32::from(PRIORITY_MIN) {
                        return best;
                    }
                }
                dest_key = entry.parent;
            }
        }
        best
    }

    /// Best `(match key, group)` under one destination whose source contains `src`, if its
    /// key is smaller than `below`. (Comparing whole keys also applies the rule that a
    /// shorter destination needs a strictly smaller priority: with an equal priority its key
    /// is larger.)
    #[inline]
    fn best_source<'a>(&'a self, entry: &'a DestHot, src: u32, below: u32) -> Option<(u32, Best<'a>)> {
        // The first group has the destination's smallest key: if it cannot win, nothing here
        // can.
        if entry.first_key >= below {
            return None;
        }
        if entry.first_contains(src) {
            return Some((entry.first_key, Best::First(entry)));
        }
        match &entry.others {
            OtherSources::Array(filters) => filters
                .iter()
                .take_while(|filter| filter.key < below)
                .find(|filter| filter.contains(src))
                .map(|filter| (filter.key, Best::Group(filter.group))),
            OtherSources::Trie(trie) => self.best_in_trie(trie, src, below),
        }
    }

    /// [`PolicyIndex::best_source`] for a trie source set. Kept out of line: it is rare, and
    /// inlined its setup was hoisted into every lookup.
    #[inline(never)]
    fn best_in_trie(&self, trie: &PrefixTrie<u32>, src: u32, below: u32) -> Option<(u32, Best<'_>)> {
        trie.lookup_levels(src)
            .deepest_first(0)
            .filter(|&g| g != NO_VALUE)
            .map(|g| (self.match_keys.get(g as usize).copied().unwrap_or(u32::MAX), g))
            .min()
            .filter(|&(key, _)| key < below)
            .map(|(key, group)| (key, Best::Group(group)))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.groups.heap_bytes()
            + self.match_keys.capacity() * size_of::<u32>()
            + self.by_key.capacity() * (size_of::<((Ipv4Net, Ipv4Net), u32)>() + 1)
            + self.dests.capacity_bytes()
            + self
                .dests
                .iter()
                .map(|(_, d)| {
                    d.groups.capacity() * size_of::<u32>() + d.changed_sources.capacity() * size_of::<Ipv4Net>()
                })
                .sum::<usize>()
            + self.dest_hot.capacity() * size_of::<DestHot>()
            + self
                .dest_hot
                .iter()
                .map(|hot| match &hot.others {
                    OtherSources::Array(filters) => filters.len() * size_of::<SourceFilter>(),
                    OtherSources::Trie(trie) => size_of::<PrefixTrie<u32>>() + trie.heap_bytes(),
                })
                .sum::<usize>()
            + self.dest_by_prefix.capacity() * (size_of::<(Ipv4Net, u32)>() + 1)
    }
}

fn set_match_key(match_keys: &mut Vec<u32>, group: u32, key: u32) {
    let index = group as usize;
    if index >= match_keys.len() {
        match_keys.resize(index + 1, u32::MAX);
    }
    if let Some(slot) = match_keys.get_mut(index) {
        *slot = key;
    }
}

fn filter_of(group: u32, groups: &GroupStore) -> Option<SourceFilter> {
    let g = groups.get(group)?;
    Some(SourceFilter {
        net: u32::from(g.source.network()),
        mask: u32::from(g.source.netmask()),
        key: match_key(&g.rank),
        group,
    })
}

/// Rebuilds the lookup form of a destination's groups: the best-keyed one inline as its
/// first, the others sorted by key (ties by group, to be deterministic) or, when many, in a
/// trie.
fn set_sources(hot: &mut DestHot, group_keys: &[u32], groups: &GroupStore) {
    let mut filters: Vec<SourceFilter> = group_keys.iter().filter_map(|&g| filter_of(g, groups)).collect();
    filters.sort_unstable_by_key(|filter| (filter.key, filter.group));
    let Some((first, rest)) = filters.split_first() else {
        *hot = DestHot {
            parent: hot.parent,
            ..DestHot::default()
        };
        return;
    };
    hot.set_first(first, groups);
    hot.others = if rest.len() <= LINEAR_SOURCE_SET_MAX {
        OtherSources::Array(rest.into())
    } else {
        let mut trie = PrefixTrie::new();
        for filter in &filters {
            let len = filter.mask.leading_ones() as u8;
            trie.insert(filter.net, len, filter.group, filter.key);
        }
        trie.flush();
        OtherSources::Trie(Box::new(trie))
    };
}

#[cfg(test)]
mod tests {
    //! Random tables crowded onto two destinations, so that source sets move between the
    //! inline, array and trie representations (thresholds are tiny under `cfg(test)`).

    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use crate::naive::NaiveTable;
    use crate::{Ipv4Net, LinkState, Route, RouteTable};

    fn source() -> impl Strategy<Value = Ipv4Net> {
        (0u32..12, prop::sample::select(vec![8u8, 16, 23, 24, 25, 32])).prop_map(|(i, len)| {
            let addr = 0xc0a8_0000 | (i << 7) | (i & 1);
            Ipv4Net::new(Ipv4Addr::from(addr), len).expect("len").trunc()
        })
    }

    fn dest() -> impl Strategy<Value = Ipv4Net> {
        prop::sample::select(vec![
            Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).expect("net"),
            Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24).expect("net"),
        ])
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Ipv4Net, Ipv4Net, u8, bool, u8),
        Remove(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (source(), dest(), 1u8..=3, any::<bool>(), 0u8..3)
                .prop_map(|(s, d, p, active, hop)| Op::Insert(s, d, p, active, hop)),
            2 => any::<usize>().prop_map(Op::Remove),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn crowded_source_sets_match_naive_through_updates(
            ops in prop::collection::vec(op(), 1..120),
            queries in prop::collection::vec((0u32..12, 0u32..300), 1..16),
        ) {
            let mut table = RouteTable::new();
            let mut naive = NaiveTable::new();
            let mut present = Vec::new();
            for (id, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(s, d, p, active, hop) => {
                        let weight = if active { 100 } else { 0 };
                        let hop = format!("h{hop}");
                        let route = Route::policy(id as u64, s, d, hop, weight, p, id as u64);
                        prop_assert_eq!(table.insert(route.clone()), naive.insert(route));
                        present.push(id as u64);
                    }
                    Op::Remove(n) if !present.is_empty() => {
                        let id = present.swap_remove(n % present.len());
                        prop_assert!(table.remove(id).is_some());
                        prop_assert!(naive.remove(id).is_some());
                    }
                    Op::Remove(_) => {}
                }
                for &(s, d) in &queries {
                    let src = Ipv4Addr::from(0xc0a8_0000 | (s << 7) | (s & 1));
                    let dst = Ipv4Addr::from(0x0a00_0000 | d);
                    prop_assert_eq!(
                        table.lookup(src, dst, &LinkState::new()),
                        naive.lookup(src, dst, |_| true)
                    );
                }
            }
        }
    }
}
