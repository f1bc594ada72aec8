//! Policy-based routes: active/standby groups keyed by `(source, dest)`, classified by
//! "minimum rank among groups whose source contains S and whose dest contains D".
//!
//! # Index
//!
//! Two levels, destination first:
//!
//! 1. A [`PrefixTrie`] over the distinct destination prefixes. For a destination address
//!    it yields, per trie level, the longest destination prefix containing it, and
//!    [`PrefixTrie::parent_of`] walks to the shorter ones; together that enumerates every
//!    destination prefix containing D, longest first.
//! 2. Per destination prefix, a [`SourceSet`] of the groups under it, answering "best ranked
//!    group whose source contains S". Small sets (the common case: a destination reached from
//!    one or a few VPC CIDRs) are a short array sorted by rank, scanned until the first match;
//!    large sets are a [`PrefixTrie`] keyed by rank, whose per-level hits are min-combined.
//!
//! The walk over destinations goes longest first, and a destination entry is skipped unless
//! its best priority is *strictly* smaller than the best match so far (a shorter destination
//! with an equal priority always loses the prefix-length tie-break). Lookups therefore cost
//! one trie walk over D plus one source probe per containing destination prefix that could
//! still win — typically one or two.

use std::collections::HashMap;

use ipnet::Ipv4Net;

use crate::group::{Group, Member};
use crate::route::PolicyRank;
use crate::slab::Slab;
use crate::trie::{PrefixTrie, NO_VALUE};

/// Source sets up to this size are kept as a rank-sorted array.
const LINEAR_SOURCE_SET_MAX: usize = 16;

/// One group in a linear source set.
#[derive(Debug, Clone, Copy)]
struct SourceSlot {
    net: u32,
    mask: u32,
    group: u32,
}

#[derive(Debug, Clone)]
enum SourceSet {
    /// Sorted by group rank: the first slot containing S is the best.
    Linear(Vec<SourceSlot>),
    /// Source prefixes keyed by group rank.
    Trie(Box<PrefixTrie<PolicyRank>>),
}

/// All policy groups sharing one destination prefix.
#[derive(Debug, Clone)]
struct DestEntry {
    dest: Ipv4Net,
    /// Every group with this destination (cold; rebuild input).
    groups: Vec<u32>,
    sources: SourceSet,
    /// Smallest priority among `groups`.
    min_priority: u8,
    dirty: bool,
    /// Sources whose group changed since the last flush (used to update a trie source set).
    changed_sources: Vec<Ipv4Net>,
}

fn lpm_key(dest: Ipv4Net) -> u8 {
    32u8.saturating_sub(dest.prefix_len())
}

fn prefix_mask(net: Ipv4Net) -> u32 {
    u32::from(net.netmask())
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyIndex {
    pub(crate) groups: Slab<Group>,
    by_key: HashMap<(Ipv4Net, Ipv4Net), u32>,
    dests: Slab<DestEntry>,
    dest_by_prefix: HashMap<Ipv4Net, u32>,
    dest_trie: PrefixTrie<u8>,
    dirty_dests: Vec<u32>,
}

impl PolicyIndex {
    pub(crate) fn add(&mut self, source: Ipv4Net, dest: Ipv4Net, member: Member) {
        let dest_key = self.dest_entry(dest);
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
        if let Some(group) = self.groups.get_mut(group_key) {
            group.add(member);
        }
        self.mark_changed(dest_key, source);
    }

    pub(crate) fn remove(&mut self, source: Ipv4Net, dest: Ipv4Net, route_id: u64) {
        let Some(&group_key) = self.by_key.get(&(source, dest)) else {
            return;
        };
        let group_empty = match self.groups.get_mut(group_key) {
            Some(group) => {
                group.remove(route_id);
                group.members.is_empty()
            }
            None => true,
        };
        let Some(&dest_key) = self.dest_by_prefix.get(&dest) else {
            return;
        };
        if group_empty {
            self.by_key.remove(&(source, dest));
            self.groups.remove(group_key);
            if let Some(entry) = self.dests.get_mut(dest_key) {
                entry.groups.retain(|&g| g != group_key);
            }
        }
        self.mark_changed(dest_key, source);
    }

    fn dest_entry(&mut self, dest: Ipv4Net) -> u32 {
        if let Some(&key) = self.dest_by_prefix.get(&dest) {
            return key;
        }
        let key = self.dests.insert(DestEntry {
            dest,
            groups: Vec::new(),
            sources: SourceSet::Linear(Vec::new()),
            min_priority: u8::MAX,
            dirty: false,
            changed_sources: Vec::new(),
        });
        self.dest_by_prefix.insert(dest, key);
        self.dest_trie
            .insert(u32::from(dest.network()), dest.prefix_len(), key, lpm_key(dest));
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

    /// Brings the source sets and the destination trie up to date.
    pub(crate) fn flush(&mut self) {
        while let Some(dest_key) = self.dirty_dests.pop() {
            let Some(entry) = self.dests.get_mut(dest_key) else {
                continue;
            };
            entry.dirty = false;
            let changed = std::mem::take(&mut entry.changed_sources);
            if entry.groups.is_empty() {
                let dest = entry.dest;
                self.dests.remove(dest_key);
                self.dest_by_prefix.remove(&dest);
                self.dest_trie.remove(u32::from(dest.network()), dest.prefix_len());
                continue;
            }
            entry.min_priority = entry
                .groups
                .iter()
                .filter_map(|&g| self.groups.get(g))
                .map(|g| g.rank.priority)
                .min()
                .unwrap_or(u8::MAX);
            let dest = entry.dest;
            match &mut entry.sources {
                SourceSet::Trie(trie) if entry.groups.len() > LINEAR_SOURCE_SET_MAX / 2 => {
                    for source in changed {
                        let group = self.by_key.get(&(source, dest)).copied();
                        let net = u32::from(source.network());
                        match group.and_then(|g| Some((g, self.groups.get(g)?.rank))) {
                            Some((g, rank)) => {
                                trie.insert(net, source.prefix_len(), g, rank);
                            }
                            None => {
                                trie.remove(net, source.prefix_len());
                            }
                        }
                    }
                    trie.flush();
                }
                _ => entry.sources = build_source_set(&entry.groups, &self.groups),
            }
        }
        self.dest_trie.flush();
    }

    /// The best-ranked policy group matching `(src, dst)`, if any.
    #[inline]
    pub(crate) fn best_match(&self, src: u32, dst: u32) -> Option<&Group> {
        let hits = self.dest_trie.lookup_levels(dst);
        let mut best: Option<&Group> = None;
        for &deepest in hits.as_slice().iter().rev() {
            let mut dest_key = deepest;
            while dest_key != NO_VALUE {
                let Some(entry) = self.dests.get(dest_key) else {
                    break;
                };
                if best.is_none_or(|b| entry.min_priority < b.rank.priority) {
                    if let Some(group) = self.best_source(entry, src) {
                        if best.is_none_or(|b| group.rank < b.rank) {
                            best = Some(group);
                        }
                    }
                }
                dest_key = self.dest_trie.parent_of(dest_key);
            }
        }
        best
    }

    #[inline]
    fn best_source(&self, entry: &DestEntry, src: u32) -> Option<&Group> {
        match &entry.sources {
            SourceSet::Linear(slots) => slots
                .iter()
                .find(|slot| src & slot.mask == slot.net)
                .and_then(|slot| self.groups.get(slot.group)),
            SourceSet::Trie(trie) => trie
                .lookup_levels(src)
                .as_slice()
                .iter()
                .filter_map(|&g| self.groups.get(g))
                .min_by_key(|g| g.rank),
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.groups.capacity_bytes()
            + self
                .groups
                .iter()
                .map(|(_, g)| g.members.capacity() * size_of::<Member>())
                .sum::<usize>()
            + self.by_key.capacity() * (size_of::<((Ipv4Net, Ipv4Net), u32)>() + 1)
            + self.dests.capacity_bytes()
            + self
                .dests
                .iter()
                .map(|(_, d)| {
                    d.groups.capacity() * size_of::<u32>()
                        + d.changed_sources.capacity() * size_of::<Ipv4Net>()
                        + match &d.sources {
                            SourceSet::Linear(slots) => slots.capacity() * size_of::<SourceSlot>(),
                            SourceSet::Trie(trie) => trie.heap_bytes(),
                        }
                })
                .sum::<usize>()
            + self.dest_by_prefix.capacity() * (size_of::<(Ipv4Net, u32)>() + 1)
            + self.dest_trie.heap_bytes()
    }
}

fn build_source_set(group_keys: &[u32], groups: &Slab<Group>) -> SourceSet {
    let mut members: Vec<(u32, &Group)> = group_keys
        .iter()
        .filter_map(|&key| Some((key, groups.get(key)?)))
        .collect();
    if members.len() <= LINEAR_SOURCE_SET_MAX {
        members.sort_unstable_by_key(|(_, g)| g.rank);
        SourceSet::Linear(
            members
                .into_iter()
                .map(|(key, g)| SourceSlot {
                    net: u32::from(g.source.network()),
                    mask: prefix_mask(g.source),
                    group: key,
                })
                .collect(),
        )
    } else {
        let mut trie = PrefixTrie::new();
        for (key, g) in members {
            trie.insert(u32::from(g.source.network()), g.source.prefix_len(), key, g.rank);
        }
        trie.flush();
        SourceSet::Trie(Box::new(trie))
    }
}
