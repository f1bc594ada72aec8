//! Destination-based routes: active/standby groups keyed by destination prefix, found by
//! longest prefix match through a [`PrefixTrie`].

use std::collections::HashMap;

use ipnet::Ipv4Net;

use crate::decision::Reason;
use crate::group::{Group, GroupStore, Member};
use crate::links::{LinkState, NextHopId};
use crate::trie::PrefixTrie;

/// Key ordering the LPM trie: longer prefix = smaller key = wins.
fn lpm_key(dest: Ipv4Net) -> u8 {
    32u8.saturating_sub(dest.prefix_len())
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DestinationIndex {
    pub(crate) groups: GroupStore,
    by_dest: HashMap<Ipv4Net, u32>,
    trie: PrefixTrie<u8>,
}

impl DestinationIndex {
    pub(crate) fn add(&mut self, dest: Ipv4Net, member: Member) {
        let group_key = match self.by_dest.get(&dest) {
            Some(&key) => key,
            None => {
                let key = self.groups.insert(Group::new(Ipv4Net::default(), dest));
                self.by_dest.insert(dest, key);
                self.trie
                    .insert(u32::from(dest.network()), dest.prefix_len(), key, lpm_key(dest));
                key
            }
        };
        self.groups.update(group_key, |group| group.add(member));
    }

    pub(crate) fn remove(&mut self, dest: Ipv4Net, route_id: u64) {
        let Some(&group_key) = self.by_dest.get(&dest) else {
            return;
        };
        let now_empty = self
            .groups
            .update(group_key, |group| {
                group.remove(route_id);
                group.members.is_empty()
            })
            .unwrap_or(true);
        if now_empty {
            self.by_dest.remove(&dest);
            self.groups.remove(group_key);
            self.trie.remove(u32::from(dest.network()), dest.prefix_len());
        }
    }

    pub(crate) fn flush(&mut self) {
        self.trie.flush();
    }

    /// Rule 2 then rule 3: the chosen member of the group with the longest destination
    /// prefix containing `dst`.
    #[inline]
    pub(crate) fn lookup(&self, dst: u32, links: &LinkState) -> Option<(u64, NextHopId, Reason)> {
        self.groups.select(self.trie.longest_match(dst)?, links)
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.groups.heap_bytes()
            + self.by_dest.capacity() * (std::mem::size_of::<(Ipv4Net, u32)>() + 1)
            + self.trie.heap_bytes()
    }
}
