//! Destination-based routes: active/standby groups keyed by destination prefix, found by
//! longest prefix match in the destination layer of the table's shared [`DestTrie`] (the
//! same walk over `D` also serves policy routes, see `table.rs`).

use std::collections::HashMap;

use ipnet::Ipv4Net;

use crate::decision::Reason;
use crate::group::{Group, GroupStore, Member};
use crate::links::{LinkState, NextHopId};
use crate::table::{DestTrie, DESTINATION_LAYER};
use crate::trie::{LevelHits, NO_VALUE};

/// Key ordering the LPM trie: longer prefix = smaller key = wins.
fn lpm_key(dest: Ipv4Net) -> u8 {
    32u8.saturating_sub(dest.prefix_len())
}

#[derive(Debug, Clone, Default)]
pub(crate) struct DestinationIndex {
    pub(crate) groups: GroupStore,
    by_dest: HashMap<Ipv4Net, u32>,
}

impl DestinationIndex {
    pub(crate) fn add(&mut self, trie: &mut DestTrie, dest: Ipv4Net, member: Member) {
        let group_key = match self.by_dest.get(&dest) {
            Some(&key) => key,
            None => {
                let key = self.groups.insert(Group::new(Ipv4Net::default(), dest));
                self.by_dest.insert(dest, key);
                trie.insert_in(
                    DESTINATION_LAYER,
                    u32::from(dest.network()),
                    dest.prefix_len(),
                    key,
                    lpm_key(dest),
                );
                key
            }
        };
        self.groups.update(group_key, |group| group.add(member));
    }

    pub(crate) fn remove(&mut self, trie: &mut DestTrie, dest: Ipv4Net, route_id: u64) {
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
            trie.remove_in(DESTINATION_LAYER, u32::from(dest.network()), dest.prefix_len());
        }
    }

    /// Rule 2 then rule 3: the chosen member of the group with the longest destination
    /// prefix containing `dst`, given the walk of the shared trie over `dst`. Within a level
    /// the trie slot already holds that level's longest prefix, so the deepest hit wins.
    #[inline]
    pub(crate) fn lookup(&self, hits: &LevelHits<2>, links: &LinkState) -> Option<(u64, NextHopId, Reason)> {
        let group = hits.deepest(DESTINATION_LAYER);
        if group == NO_VALUE {
            return None;
        }
        self.groups.select(group, links)
    }

    /// Heap bytes held (the shared trie is counted by the table).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.groups.heap_bytes() + self.by_dest.capacity() * (std::mem::size_of::<(Ipv4Net, u32)>() + 1)
    }
}
