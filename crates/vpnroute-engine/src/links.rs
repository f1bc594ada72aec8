//! Next-hop (IPsec connection) identities and their up/down state.
//!
//! A [`RouteTable`](crate::RouteTable) interns every connection id it sees into a dense
//! [`NextHopId`]. Ids are never reused or forgotten for the life of the table, so a
//! [`LinkState`] keyed by them stays valid across route inserts and removals.
//!
//! [`LinkState`] is deliberately separate from the route table: tunnels flap independently of
//! route changes, so flipping a link is one bit write and needs no `&mut RouteTable`.

use std::collections::HashMap;

/// Dense index of an interned next hop (IPsec connection id) within one
/// [`RouteTable`](crate::RouteTable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHopId(pub(crate) u32);

impl NextHopId {
    /// The dense index (0, 1, 2, … in interning order).
    pub fn index(self) -> u32 {
        self.0
    }
}

/// Up/down state of next hops, by [`NextHopId`]. Every next hop is **up** unless marked down,
/// including ids this set has never heard of.
///
/// Stored as a bitset of *down* hops: [`LinkState::is_up`] is one load, a shift and a mask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    down_bits: Vec<u64>,
}

impl LinkState {
    /// All next hops up.
    pub fn new() -> Self {
        Self::default()
    }

    /// Alias of [`LinkState::new`] that reads better at call sites.
    pub fn all_up() -> Self {
        Self::default()
    }

    /// Is this next hop up (tunnel negotiated and health check passing)?
    #[inline]
    pub fn is_up(&self, hop: NextHopId) -> bool {
        let word = (hop.0 / 64) as usize;
        let bit = hop.0 % 64;
        match self.down_bits.get(word) {
            Some(bits) => (bits >> bit) & 1 == 0,
            None => true,
        }
    }

    /// Marks one next hop up or down.
    pub fn set_up(&mut self, hop: NextHopId, up: bool) {
        let word = (hop.0 / 64) as usize;
        let bit = hop.0 % 64;
        if up {
            if let Some(bits) = self.down_bits.get_mut(word) {
                *bits &= !(1u64 << bit);
            }
        } else {
            if self.down_bits.len() <= word {
                self.down_bits.resize(word + 1, 0);
            }
            if let Some(bits) = self.down_bits.get_mut(word) {
                *bits |= 1u64 << bit;
            }
        }
    }

    /// Marks every next hop up again.
    pub fn clear(&mut self) {
        self.down_bits.clear();
    }

    /// Ids of next hops currently marked down, ascending.
    pub fn down_hops(&self) -> impl Iterator<Item = NextHopId> + '_ {
        self.down_bits.iter().enumerate().flat_map(|(word, &bits)| {
            (0..64u32)
                .filter(move |bit| (bits >> bit) & 1 == 1)
                .map(move |bit| NextHopId(word as u32 * 64 + bit))
        })
    }
}

/// Connection id ⇄ [`NextHopId`]. Append-only.
#[derive(Debug, Clone, Default)]
pub(crate) struct NextHopInterner {
    by_name: HashMap<Box<str>, NextHopId>,
    names: Vec<Box<str>>,
}

impl NextHopInterner {
    pub(crate) fn intern(&mut self, name: &str) -> NextHopId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        // More than 4 billion distinct connection ids cannot be held in memory anyway; saturate
        // rather than panic.
        let id = NextHopId(u32::try_from(self.names.len()).unwrap_or(u32::MAX));
        self.names.push(name.into());
        self.by_name.insert(name.into(), id);
        id
    }

    pub(crate) fn get(&self, name: &str) -> Option<NextHopId> {
        self.by_name.get(name).copied()
    }

    #[inline]
    pub(crate) fn name(&self, id: NextHopId) -> &str {
        self.names.get(id.0 as usize).map_or("", |name| name)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}
