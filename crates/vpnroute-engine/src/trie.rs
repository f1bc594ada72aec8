//! A run-compressed multibit trie over IPv4 prefixes with node-local incremental updates.
//!
//! # Shape
//!
//! Four levels of 256-way nodes (stride 8). A prefix of length `l` lives in the node of level
//! `max(l-1, 0) / 8` that covers its top `8 * level` bits, where it covers a run of
//! `2^(8 - (l - 8 * level))` of that node's 256 slots. Every slot has a *leaf value* — the
//! best (smallest key) prefix *of this node* covering the slot, or [`NO_VALUE`] — and maybe a
//! child node.
//!
//! Slots are compressed into *runs*: a maximal range of slots with the same leaf value(s) and
//! no child, or a single slot with a child. Each run is one 16-byte entry (with two layers,
//! see *Layers*): the run's leaf values and, when it has a child, the child's *link* — its
//! run map and the offset of its entry block — so that descending a level reads the entry
//! and then the child's map, never a node record. A node is an entry block in a shared arena
//! plus a *run map* `run_of_slot[slot] -> run index` (at most 256 runs, so a byte suffices),
//! and a level of a lookup is one map read and one dependent entry read.
//!
//! Run maps come in three kinds, chosen per node when it is rebuilt, all behind one `u32` map
//! id:
//!
//! * *computed*: a node with at most three runs (a `/24` holding one `/32`, a `/16` leading
//!   to one child — the most numerous nodes of a large table) has a map id that encodes where
//!   its second and third runs start; the run index is two compares, no load;
//! * *direct*: a node with many runs ([`DIRECT_MIN_RUNS`]) gets one entry per slot and the
//!   shared identity map, which every lookup keeps cache-resident, instead of a map of its
//!   own — the large nodes in the middle of a big table are distinct, so their maps were a
//!   cache miss per level;
//! * *stored*: the rest keep a 256-byte map, interned so that nodes with the same run
//!   boundaries share one.
//!
//! *Why not poptrie's bitmaps?* A poptrie-style node (256-bit run bitmap + popcount, 64
//! bytes) was the first version. Built for the baseline x86-64 target (no `POPCNT`; this
//! workspace sets no `target-cpu`), `count_ones` compiles to a dozen-instruction SWAR
//! sequence on the lookup's critical path; the byte map measured 2–3× faster lookups on the
//! crate's benchmarks for about 200 more bytes per node (≈ 60–100 B/route on the benchmark
//! tables).
//!
//! Unlike poptrie we do **not** push leaves down into child nodes. A lookup walks the path
//! and reports the leaf value found at every level (at most four); the caller combines them
//! (longest match = deepest hit; best rank = minimum key). This keeps every update local to
//! the one node that owns the changed prefix: inserting or removing a `/8` rewrites one
//! 256-slot node, never the thousands of `/24` nodes below it.
//!
//! Within one node a slot reports only the best of that node's prefixes covering it; the
//! other covering prefixes of the same node are reachable through [`PrefixTrie::parent_of`]
//! (the longest prefix of the same node strictly containing a given one). Walking levels and
//! parents therefore enumerates *every* stored prefix containing an address, which is what
//! policy routing needs.
//!
//! # Layers
//!
//! A trie has `L` *layers* (`L = 1` by default): independent prefix sets that share the nodes
//! and are painted separately, so every run entry carries one leaf value per layer and a walk
//! reports all layers at once. The route table uses two (policy destinations, destination
//! routes) so that one walk over a packet's destination serves both route kinds; the same
//! prefix may be stored in both layers. Keys `K` are compared only among prefixes of one
//! layer, and parents ([`PrefixTrie::parent_of`]) are kept for layer 0 only.
//!
//! # Updates
//!
//! [`PrefixTrie::insert`] and [`PrefixTrie::remove`] only edit the cold per-node metadata and
//! mark the node dirty; [`PrefixTrie::flush`] rebuilds the hot form of dirty nodes
//! (O(256 + own prefixes · log) each) and prunes empty ones. Bulk loads therefore pay one
//! rebuild per node, single changes pay one or two. Rebuilt entry blocks are appended to the
//! arena and the old ones counted as garbage (a block whose run count is unchanged, such as
//! every direct node's, is rewritten in place); the arena is compacted once garbage outgrows
//! live data, which keeps updates amortised O(1) in the table size. A rebuilt child patches
//! its link into its parent's entry, so a change still touches only the node owning it.

use std::collections::HashMap;

/// Leaf value meaning "no prefix".
pub(crate) const NO_VALUE: u32 = u32::MAX;
/// `child_map` of an entry without a child node.
const NO_CHILD: u32 = u32::MAX;
/// Index of the shared `(NO_VALUE, NO_CHILD)` entry used by nodes that have neither prefixes
/// nor children yet; never freed, so empty nodes cost no entry block.
const EMPTY_ENTRY: u32 = 0;
const ROOT: u32 = 0;
/// Map ids with this bit set are not stored but computed: they describe a map of at most
/// three runs by the slots where runs 1 and 2 start (bits 9..18 and 0..9; 256 = no such
/// run). Sparse nodes — a `/24` holding one `/32`, a `/16` leading to one child — are the
/// most numerous, and computing their run costs two compares where loading it would cost a
/// cache miss.
const COMPUTED: u32 = 1 << 31;
/// Run map of a node with a single run: empty nodes, and nodes covered by one prefix.
const SINGLE_RUN_MAP: u32 = COMPUTED | (256 << 9) | 256;
/// The identity run map (`run_of_slot[b] = b`), used by every *direct* node (see
/// [`DIRECT_MIN_RUNS`]). Permanent.
const IDENTITY_MAP: u32 = 0;
/// Nodes whose slots form at least this many runs are stored *direct*: one entry per slot
/// and the shared identity map, which every walk keeps hot, instead of a map of their own,
/// which for the large, distinct nodes in the middle of a big table is one more cache miss
/// per level. Costs up to 4 KiB per such node (256 entries instead of one per run).
const DIRECT_MIN_RUNS: usize = if cfg!(test) { 4 } else { 32 };
/// The entry arena is compacted once it holds more dead entries than this and than live
/// ones. (Small in unit tests, so that they exercise compaction.)
const COMPACT_MIN_GARBAGE: usize = if cfg!(test) { 64 } else { 4096 };
/// Maximum number of levels a lookup visits.
pub(crate) const LEVELS: usize = 4;

/// Hot form of one node: where its entry block starts and which run map it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    /// First entry of this node's block in `entries`.
    entry_off: u32,
    /// Index of the node's run map in [`RunMaps`].
    map: u32,
}

const EMPTY_NODE: Node = Node {
    entry_off: EMPTY_ENTRY,
    map: SINGLE_RUN_MAP,
};

/// `run_of_slot[slot] -> run index` of a node (runs are numbered from 0 in slot order, so
/// there are at most 256 and the last slot holds the largest).
type RunMap = [u8; 256];

const IDENTITY_RUNS: RunMap = {
    let mut map = [0u8; 256];
    let mut slot = 0;
    while slot < 256 {
        map[slot] = slot as u8;
        slot += 1;
    }
    map
};

/// Run maps of the nodes: computed for sparse nodes (see [`COMPUTED`]), otherwise stored and
/// interned, so that nodes with the same run boundaries share one map (all direct nodes
/// share [`IDENTITY_MAP`]).
#[derive(Debug, Clone)]
struct RunMaps {
    maps: Vec<RunMap>,
    /// Nodes using each map; [`u32::MAX`] for the permanent ones.
    refs: Vec<u32>,
    /// Interned maps by a hash of their content (keyed by hash rather than content so that a
    /// map is not stored twice; on a collision the newcomer simply stays private).
    by_hash: HashMap<u64, u32>,
    free: Vec<u32>,
}

/// The [`COMPUTED`] id describing `map`, if it has at most three runs.
fn computed_id(map: &RunMap) -> Option<u32> {
    // Runs are numbered in slot order, so run r starts where the map first reaches r.
    let start = |run: u8| map.iter().position(|&r| r >= run).map_or(256, |slot| slot as u32);
    (map[255] <= 2).then(|| COMPUTED | (start(1) << 9) | start(2))
}

/// A fast, non-cryptographic hash of a map's content (FxHash's mixing step over eight bytes
/// at a time). Collisions only cost sharing, see [`RunMaps::by_hash`].
fn content_hash(map: &RunMap) -> u64 {
    map.chunks_exact(8).fold(0u64, |hash, chunk| {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x517c_c1b7_2722_0a95)
    })
}

impl RunMaps {
    fn new() -> Self {
        RunMaps {
            maps: vec![IDENTITY_RUNS],
            refs: vec![u32::MAX],
            by_hash: HashMap::from([(content_hash(&IDENTITY_RUNS), IDENTITY_MAP)]),
            free: Vec::new(),
        }
    }

    /// Run index of `slot` in map `id` (`None` for an unknown map).
    #[inline(always)]
    fn run(&self, id: u32, slot: u8) -> Option<usize> {
        if id & COMPUTED != 0 {
            let (second, third) = ((id >> 9) & 0x1ff, id & 0x1ff);
            let slot = u32::from(slot);
            Some(usize::from(slot >= second) + usize::from(slot >= third))
        } else {
            self.maps
                .get(id as usize)
                .map(|map| usize::from(map[usize::from(slot)]))
        }
    }

    /// Id of a map with this content, adding a reference.
    fn intern(&mut self, map: &RunMap) -> u32 {
        if let Some(id) = computed_id(map) {
            return id;
        }
        let hash = content_hash(map);
        let known = self.by_hash.get(&hash).copied();
        if let Some(id) = known.filter(|&id| self.maps.get(id as usize) == Some(map)) {
            if let Some(refs) = self.refs.get_mut(id as usize) {
                *refs = refs.saturating_add(1);
            }
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => {
                if let (Some(slot), Some(refs)) = (self.maps.get_mut(id as usize), self.refs.get_mut(id as usize)) {
                    (*slot, *refs) = (*map, 1);
                }
                id
            }
            None => {
                self.maps.push(*map);
                self.refs.push(1);
                (self.maps.len() - 1) as u32
            }
        };
        if known.is_none() {
            self.by_hash.insert(hash, id);
        }
        id
    }

    /// [`RunMaps::intern`] `map` for a node that used map `old` (whose reference it takes
    /// over). Rebuilds usually keep a node's run boundaries, and this spares them the hashing.
    fn reintern(&mut self, old: u32, map: &RunMap) -> u32 {
        let unchanged = if old & COMPUTED != 0 {
            computed_id(map) == Some(old)
        } else {
            self.maps.get(old as usize) == Some(map)
        };
        if unchanged {
            return old;
        }
        let id = self.intern(map);
        self.release(old);
        id
    }

    /// Drops a reference taken by [`RunMaps::intern`].
    fn release(&mut self, id: u32) {
        if id & COMPUTED != 0 {
            return;
        }
        let Some(refs) = self.refs.get_mut(id as usize) else {
            return;
        };
        if *refs == u32::MAX {
            return;
        }
        *refs = refs.saturating_sub(1);
        if *refs == 0 {
            if let Some(map) = self.maps.get(id as usize) {
                let hash = content_hash(map);
                if self.by_hash.get(&hash) == Some(&id) {
                    self.by_hash.remove(&hash);
                }
            }
            self.free.push(id);
        }
    }

    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.maps.capacity() * size_of::<RunMap>()
            + (self.refs.capacity() + self.free.capacity()) * size_of::<u32>()
            + self.by_hash.capacity() * (size_of::<(u64, u32)>() + 1)
    }
}

/// What a run of slots leads to: the run's leaf value in each layer, and its child node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Entry<const L: usize> {
    values: [u32; L],
    /// Run map of the child node, or [`NO_CHILD`].
    child_map: u32,
    /// The child's `entry_off`. With `child_map`, a copy of the child's [`Node`] (kept in
    /// step by [`PrefixTrie::rebuild_node`] and [`PrefixTrie::compact`]), so that descending
    /// reads no node: one dependent miss less per level.
    child_off: u32,
}

impl<const L: usize> Entry<L> {
    const EMPTY: Self = Entry {
        values: [NO_VALUE; L],
        child_map: NO_CHILD,
        child_off: EMPTY_ENTRY,
    };
}

/// A prefix owned by a node, in node-relative terms.
#[derive(Debug, Clone, Copy)]
struct OwnPrefix<K> {
    /// First slot covered.
    first_slot: u8,
    /// Prefix length minus the node's depth in bits (0..=8); covers `2^(8 - rel_len)` slots.
    rel_len: u8,
    /// Layer the prefix is painted in (`< L`).
    layer: u8,
    value: u32,
    key: K,
}

impl<K> OwnPrefix<K> {
    fn slot_count(&self) -> usize {
        1usize << (8 - self.rel_len.min(8))
    }

    fn contains(&self, other: &OwnPrefix<K>) -> bool {
        let start = self.first_slot as usize;
        let other_start = other.first_slot as usize;
        self.rel_len <= other.rel_len
            && other_start >= start
            && other_start + other.slot_count() <= start + self.slot_count()
    }
}

/// Cold, editable form of one node.
#[derive(Debug, Clone)]
struct NodeMeta<K> {
    live: bool,
    dirty: bool,
    parent: u32,
    slot_in_parent: u8,
    own: Vec<OwnPrefix<K>>,
    /// `(slot, child node)`, sorted by slot.
    children: Vec<(u8, u32)>,
}

impl<K> NodeMeta<K> {
    fn new(parent: u32, slot_in_parent: u8) -> Self {
        NodeMeta {
            live: true,
            dirty: false,
            parent,
            slot_in_parent,
            own: Vec::new(),
            children: Vec::new(),
        }
    }
}

/// Where a prefix lives: node level, the address bytes leading to it, slot run inside.
#[derive(Debug, Clone, Copy)]
struct Location {
    level: usize,
    path: [u8; LEVELS],
    first_slot: u8,
    rel_len: u8,
}

fn locate(net: u32, len: u8) -> Location {
    let len = len.min(32);
    let level = if len == 0 { 0 } else { (len as usize - 1) / 8 };
    let rel_len = len - (8 * level) as u8;
    let path = net.to_be_bytes();
    let byte = path[level];
    let first_slot = if rel_len == 0 {
        0
    } else {
        byte & (0xffu8 << (8 - rel_len))
    };
    Location {
        level,
        path,
        first_slot,
        rel_len,
    }
}

/// The stored prefixes containing an address: per level and layer, the best of that level's
/// node's prefixes of that layer covering the address, shallowest level first; [`NO_VALUE`]
/// where there is none, including the levels below the end of the walk. (Stored whole rather
/// than pre-combined: a walk then costs one store per level, and the scans below are fixed
/// four-step loops, unrolled without bounds checks and with branches that predict well.
/// Pre-combined forms measured slower: a bitmask of the levels with hits, walked with
/// `leading_zeros`, took 20% longer per policy lookup on mispredicted loop exits.)
#[derive(Debug, Clone, Copy)]
pub(crate) struct LevelHits<const L: usize> {
    values: [[u32; L]; LEVELS],
}

impl<const L: usize> LevelHits<L> {
    /// Hits of `layer` per level, deepest first ([`NO_VALUE`] where none).
    #[inline]
    pub(crate) fn deepest_first(&self, layer: usize) -> impl Iterator<Item = u32> + '_ {
        self.values
            .iter()
            .rev()
            .map(move |values| values.get(layer).copied().unwrap_or(NO_VALUE))
    }

    /// Value of the deepest hit in `layer` (the longest match when keys order longer
    /// prefixes first), or [`NO_VALUE`].
    #[inline]
    pub(crate) fn deepest(&self, layer: usize) -> u32 {
        self.deepest_first(layer)
            .find(|&value| value != NO_VALUE)
            .unwrap_or(NO_VALUE)
    }
}

/// See the module docs. `K` orders prefixes of one layer that cover the same slot of a node:
/// smaller wins. `L` is the number of layers: independent prefix sets sharing the nodes, so
/// that one walk answers for all of them.
#[derive(Debug, Clone)]
pub(crate) struct PrefixTrie<K, const L: usize = 1> {
    nodes: Vec<Node>,
    maps: RunMaps,
    meta: Vec<NodeMeta<K>>,
    free_nodes: Vec<u32>,
    /// Entry blocks of all nodes; index [`EMPTY_ENTRY`] is the shared empty entry.
    entries: Vec<Entry<L>>,
    /// Entries in `entries` no node refers to any more.
    garbage: usize,
    dirty: Vec<u32>,
    /// `parent_of[value]`: value of the longest layer-0 prefix of the same node strictly
    /// containing the layer-0 prefix stored under `value`, or [`NO_VALUE`]. (Only layer 0
    /// tracks parents.)
    parent_of: Vec<u32>,
    /// Values whose `parent_of` changed since [`PrefixTrie::take_parent_changes`] (only
    /// recorded when `track_parent_changes`).
    parent_changes: Vec<u32>,
    track_parent_changes: bool,
    len: usize,
}

impl<K: Ord + Copy, const L: usize> Default for PrefixTrie<K, L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Copy, const L: usize> PrefixTrie<K, L> {
    pub(crate) fn new() -> Self {
        PrefixTrie {
            nodes: vec![EMPTY_NODE],
            maps: RunMaps::new(),
            meta: vec![NodeMeta::new(ROOT, 0)],
            free_nodes: Vec::new(),
            entries: vec![Entry::EMPTY],
            garbage: 0,
            dirty: Vec::new(),
            parent_of: Vec::new(),
            parent_changes: Vec::new(),
            track_parent_changes: false,
            len: 0,
        }
    }

    /// A trie that records which values' parents change, for
    /// [`PrefixTrie::take_parent_changes`].
    pub(crate) fn with_parent_tracking() -> Self {
        PrefixTrie {
            track_parent_changes: true,
            ..Self::new()
        }
    }

    /// Number of stored prefixes.
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `value` under `net/len` in layer 0 with ordering `key`, replacing what was
    /// there. Returns the replaced value. Call [`PrefixTrie::flush`] before looking up.
    pub(crate) fn insert(&mut self, net: u32, len: u8, value: u32, key: K) -> Option<u32> {
        self.insert_in(0, net, len, value, key)
    }

    /// [`PrefixTrie::insert`] in layer `layer` (`< L`).
    pub(crate) fn insert_in(&mut self, layer: usize, net: u32, len: u8, value: u32, key: K) -> Option<u32> {
        let layer = layer.min(L - 1) as u8;
        let loc = locate(net, len);
        let mut node = ROOT;
        for level in 0..loc.level {
            let slot = loc.path[level];
            node = match self.child(node, slot) {
                Some(child) => child,
                None => self.add_child(node, slot),
            };
        }
        let own = OwnPrefix {
            first_slot: loc.first_slot,
            rel_len: loc.rel_len,
            layer,
            value,
            key,
        };
        let mut replaced = None;
        if let Some(meta) = self.meta.get_mut(node as usize) {
            match meta
                .own
                .iter_mut()
                .find(|p| p.first_slot == own.first_slot && p.rel_len == own.rel_len && p.layer == own.layer)
            {
                Some(existing) => {
                    replaced = Some(existing.value);
                    *existing = own;
                }
                None => meta.own.push(own),
            }
        }
        match replaced {
            Some(old) if old != value && layer == 0 => self.set_parent(old, NO_VALUE),
            Some(_) => {}
            None => self.len += 1,
        }
        self.mark_dirty(node);
        replaced
    }

    /// Removes `net/len` from layer 0; returns its value. Call [`PrefixTrie::flush`] before
    /// looking up.
    pub(crate) fn remove(&mut self, net: u32, len: u8) -> Option<u32> {
        self.remove_in(0, net, len)
    }

    /// [`PrefixTrie::remove`] from layer `layer`.
    pub(crate) fn remove_in(&mut self, layer: usize, net: u32, len: u8) -> Option<u32> {
        let layer = layer.min(L - 1) as u8;
        let loc = locate(net, len);
        let mut node = ROOT;
        for level in 0..loc.level {
            node = self.child(node, loc.path[level])?;
        }
        let meta = self.meta.get_mut(node as usize)?;
        let index = meta
            .own
            .iter()
            .position(|p| p.first_slot == loc.first_slot && p.rel_len == loc.rel_len && p.layer == layer)?;
        let removed = meta.own.swap_remove(index).value;
        self.len -= 1;
        if layer == 0 {
            self.set_parent(removed, NO_VALUE);
        }
        self.mark_dirty(node);
        Some(removed)
    }
    /// Rebuilds every node changed since the last flush and prunes empty nodes.
    pub(crate) fn flush(&mut self) {
        while let Some(node) = self.dirty.pop() {
            let Some(meta) = self.meta.get_mut(node as usize) else {
                continue;
            };
            if !meta.live || !meta.dirty {
                continue;
            }
            meta.dirty = false;
            if node != ROOT && meta.own.is_empty() && meta.children.is_empty() {
                self.free_node(node);
            } else {
                self.rebuild_node(node);
            }
        }
        let live = self.entries.len().saturating_sub(self.garbage);
        if self.garbage > COMPACT_MIN_GARBAGE && self.garbage > live {
            self.compact();
        }
    }

    /// Visits the entry of `addr` at each level, root first, until a slot without child.
    #[inline(always)]
    fn walk(&self, addr: u32, mut visit: impl FnMut(usize, &[u32; L])) {
        let Some(&Node {
            entry_off: mut off,
            mut map,
        }) = self.nodes.get(ROOT as usize)
        else {
            return;
        };
        for (level, byte) in addr.to_be_bytes().into_iter().enumerate() {
            let Some(run) = self.maps.run(map, byte) else {
                return;
            };
            let Some(entry) = self.entries.get(off as usize + run) else {
                return;
            };
            visit(level, &entry.values);
            if entry.child_map == NO_CHILD {
                return;
            }
            (map, off) = (entry.child_map, entry.child_off);
        }
    }

    /// The prefixes containing `addr`: see [`LevelHits`]. Allocation-free.
    #[inline]
    pub(crate) fn lookup_levels(&self, addr: u32) -> LevelHits<L> {
        let mut hits = LevelHits {
            values: [[NO_VALUE; L]; LEVELS],
        };
        self.walk(addr, |level, values| {
            if let Some(slot) = hits.values.get_mut(level) {
                *slot = *values;
            }
        });
        hits
    }

    /// Value of the longest stored layer-`layer` prefix containing `addr` (only meaningful
    /// when keys order longer prefixes first, as in an LPM table).
    #[cfg(test)]
    pub(crate) fn longest_match(&self, layer: usize, addr: u32) -> Option<u32> {
        let best = self.lookup_levels(addr).deepest(layer);
        (best != NO_VALUE).then_some(best)
    }

    /// Value of the longest prefix in the same node strictly containing the prefix stored
    /// under `value`, or [`NO_VALUE`].
    #[inline]
    pub(crate) fn parent_of(&self, value: u32) -> u32 {
        self.parent_of.get(value as usize).copied().unwrap_or(NO_VALUE)
    }

    /// Approximate heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.nodes.capacity() * size_of::<Node>()
            + self.maps.heap_bytes()
            + self.meta.capacity() * size_of::<NodeMeta<K>>()
            + self
                .meta
                .iter()
                .map(|m| m.own.capacity() * size_of::<OwnPrefix<K>>() + m.children.capacity() * size_of::<(u8, u32)>())
                .sum::<usize>()
            + self.entries.capacity() * size_of::<Entry<L>>()
            + (self.parent_of.capacity()
                + self.parent_changes.capacity()
                + self.free_nodes.capacity()
                + self.dirty.capacity())
                * size_of::<u32>()
    }

    fn child(&self, node: u32, slot: u8) -> Option<u32> {
        let children = &self.meta.get(node as usize)?.children;
        children
            .binary_search_by_key(&slot, |&(s, _)| s)
            .ok()
            .and_then(|i| children.get(i))
            .map(|&(_, child)| child)
    }

    fn add_child(&mut self, parent: u32, slot: u8) -> u32 {
        let meta = NodeMeta::new(parent, slot);
        let child = match self.free_nodes.pop() {
            Some(free) => {
                if let Some(m) = self.meta.get_mut(free as usize) {
                    *m = meta;
                }
                if let Some(n) = self.nodes.get_mut(free as usize) {
                    *n = EMPTY_NODE;
                }
                free
            }
            None => {
                self.nodes.push(EMPTY_NODE);
                self.meta.push(meta);
                (self.nodes.len() - 1) as u32
            }
        };
        if let Some(parent_meta) = self.meta.get_mut(parent as usize) {
            let at = parent_meta
                .children
                .binary_search_by_key(&slot, |&(s, _)| s)
                .unwrap_or_else(|i| i);
            parent_meta.children.insert(at, (slot, child));
        }
        self.mark_dirty(parent);
        self.mark_dirty(child);
        child
    }

    fn mark_dirty(&mut self, node: u32) {
        if let Some(meta) = self.meta.get_mut(node as usize) {
            if !meta.dirty {
                meta.dirty = true;
                self.dirty.push(node);
            }
        }
    }

    fn set_parent(&mut self, value: u32, parent: u32) {
        let index = value as usize;
        if index >= self.parent_of.len() {
            if parent == NO_VALUE {
                return;
            }
            self.parent_of.resize(index + 1, NO_VALUE);
        }
        if let Some(p) = self.parent_of.get_mut(index) {
            if *p != parent {
                *p = parent;
                if self.track_parent_changes {
                    self.parent_changes.push(value);
                }
            }
        }
    }

    /// Values whose [`PrefixTrie::parent_of`] changed since the last call (for callers that
    /// cache parents next to their own data). May list a value more than once.
    pub(crate) fn take_parent_changes(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.parent_changes)
    }

    fn free_node(&mut self, node: u32) {
        let Some(meta) = self.meta.get_mut(node as usize) else {
            return;
        };
        meta.live = false;
        let (parent, slot) = (meta.parent, meta.slot_in_parent);
        if let Some(n) = self.nodes.get_mut(node as usize) {
            self.garbage += block_len(n, &self.maps);
            self.maps.release(n.map);
            *n = EMPTY_NODE;
        }
        self.free_nodes.push(node);
        if let Some(parent_meta) = self.meta.get_mut(parent as usize) {
            parent_meta.children.retain(|&(s, _)| s != slot);
        }
        self.mark_dirty(parent);
    }

    fn rebuild_node(&mut self, node: u32) {
        let Some(meta) = self.meta.get_mut(node as usize) else {
            return;
        };

        // Parents inside the node (layer 0 only): sort by (layer, first slot, shorter first);
        // a stack of open prefixes then yields each prefix's innermost container.
        meta.own.sort_unstable_by_key(|p| (p.layer, p.first_slot, p.rel_len));
        let mut open: Vec<usize> = Vec::new();
        let mut parents: Vec<(u32, u32)> = Vec::with_capacity(meta.own.len());
        for (i, prefix) in meta.own.iter().enumerate().take_while(|(_, p)| p.layer == 0) {
            while let Some(&top) = open.last() {
                if meta.own.get(top).is_some_and(|t| t.contains(prefix)) {
                    break;
                }
                open.pop();
            }
            let parent = open
                .last()
                .and_then(|&top| meta.own.get(top))
                .map_or(NO_VALUE, |p| p.value);
            parents.push((prefix.value, parent));
            open.push(i);
        }

        // Paint the 256 slots worst key first, so the best covering prefix ends on top.
        let mut order: Vec<usize> = (0..meta.own.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            let (ka, kb) = (meta.own.get(a).map(|p| p.key), meta.own.get(b).map(|p| p.key));
            kb.cmp(&ka)
        });
        let mut slots = [[NO_VALUE; L]; 256];
        for &i in &order {
            if let Some(prefix) = meta.own.get(i) {
                let start = prefix.first_slot as usize;
                let end = (start + prefix.slot_count()).min(256);
                let layer = usize::from(prefix.layer);
                for values in slots.get_mut(start..end).unwrap_or_default() {
                    if let Some(value) = values.get_mut(layer) {
                        *value = prefix.value;
                    }
                }
            }
        }

        let has_content = !meta.own.is_empty() || !meta.children.is_empty();
        let (parent, slot_in_parent) = (meta.parent, meta.slot_in_parent);
        let mut children = [(NO_CHILD, EMPTY_ENTRY); 256];
        for &(slot, child) in &meta.children {
            if let Some(c) = children.get_mut(slot as usize) {
                *c = link_to(&self.nodes, child);
            }
        }

        let old = self.nodes.get(node as usize).copied().unwrap_or(EMPTY_NODE);
        let old_len = block_len(&old, &self.maps);
        let mut new = EMPTY_NODE;
        if has_content {
            // Runs: a new one wherever the entry changes, and one per slot with a child.
            let mut block: Vec<Entry<L>> = Vec::new();
            let mut run_of_slot = [0u8; 256];
            for ((&values, &(child_map, child_off)), run) in slots.iter().zip(&children).zip(run_of_slot.iter_mut()) {
                let entry = Entry {
                    values,
                    child_map,
                    child_off,
                };
                match block.last() {
                    Some(&last) if last == entry && child_map == NO_CHILD => {}
                    _ => block.push(entry),
                }
                *run = (block.len() - 1) as u8;
            }
            if block.len() >= DIRECT_MIN_RUNS {
                block = slots
                    .iter()
                    .zip(&children)
                    .map(|(&values, &(child_map, child_off))| Entry {
                        values,
                        child_map,
                        child_off,
                    })
                    .collect();
                run_of_slot = IDENTITY_RUNS;
            }
            new.map = self.maps.reintern(old.map, &run_of_slot);
            // A block of unchanged length (always so for a direct node) is rewritten in
            // place: no garbage, no arena growth, and the parent's link stays valid.
            let old_range = old.entry_off as usize..old.entry_off as usize + old_len;
            match self.entries.get_mut(old_range).filter(|_| old_len == block.len()) {
                Some(in_place) => {
                    in_place.copy_from_slice(&block);
                    new.entry_off = old.entry_off;
                }
                None => {
                    self.garbage += old_len;
                    new.entry_off = self.entries.len() as u32;
                    self.entries.extend_from_slice(&block);
                }
            }
        } else {
            self.garbage += old_len;
            self.maps.release(old.map);
        }
        if let Some(n) = self.nodes.get_mut(node as usize) {
            *n = new;
        }
        if node != ROOT {
            let link = link_to(&self.nodes, node);
            self.patch_child_link(parent, slot_in_parent, link);
        }
        for (value, parent) in parents {
            self.set_parent(value, parent);
        }
    }

    /// Points the parent's entry for `slot` at the child's new block and map. A dirty parent
    /// is left alone: its entry may not lead to the child yet, and its rebuild will read the
    /// child's current link anyway.
    fn patch_child_link(&mut self, parent: u32, slot: u8, (child_map, child_off): (u32, u32)) {
        if self.meta.get(parent as usize).is_none_or(|m| m.dirty || !m.live) {
            return;
        }
        let Some(parent_node) = self.nodes.get(parent as usize) else {
            return;
        };
        let run = parent_node.entry_off as usize + self.maps.run(parent_node.map, slot).unwrap_or(0);
        if let Some(entry) = self.entries.get_mut(run) {
            (entry.child_map, entry.child_off) = (child_map, child_off);
        }
    }

    /// Copies live blocks into a fresh arena, dropping garbage.
    fn compact(&mut self) {
        let mut entries = Vec::with_capacity(self.entries.len().saturating_sub(self.garbage));
        entries.push(Entry::EMPTY);
        for (node, meta) in self.nodes.iter_mut().zip(&self.meta) {
            if !meta.live || node.entry_off == EMPTY_ENTRY {
                continue;
            }
            let start = node.entry_off as usize;
            let end = start + block_len(node, &self.maps);
            node.entry_off = entries.len() as u32;
            if let Some(block) = self.entries.get(start..end) {
                entries.extend_from_slice(block);
            }
        }
        self.entries = entries;
        self.garbage = 0;
        // Blocks moved: re-point every entry leading to a child.
        for (parent, meta) in self.nodes.iter().zip(&self.meta).filter(|(_, meta)| meta.live) {
            for &(slot, child) in &meta.children {
                let run = parent.entry_off as usize + self.maps.run(parent.map, slot).unwrap_or(0);
                if let Some(entry) = self.entries.get_mut(run) {
                    (entry.child_map, entry.child_off) = link_to(&self.nodes, child);
                }
            }
        }
    }

    /// Checks internal invariants; used by tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        assert!(self.dirty.is_empty());
        let mut count = 0;
        for (i, meta) in self.meta.iter().enumerate() {
            if !meta.live {
                continue;
            }
            count += meta.own.len();
            if i as u32 != ROOT {
                assert!(!meta.own.is_empty() || !meta.children.is_empty());
            }
            for &(_, child) in &meta.children {
                let c = &self.meta[child as usize];
                assert!(c.live);
                assert_eq!(c.parent, i as u32);
            }
        }
        assert_eq!(count, self.len);
        // Map reference counts match the live nodes using them.
        let mut refs = vec![0u32; self.maps.maps.len()];
        for (node, _) in self.nodes.iter().zip(&self.meta).filter(|(_, m)| m.live) {
            if node.map & COMPUTED == 0 {
                refs[node.map as usize] += 1;
            }
        }
        for (id, (&counted, &recorded)) in refs.iter().zip(&self.maps.refs).enumerate() {
            if recorded != u32::MAX {
                assert_eq!(counted, recorded, "map {id}");
            }
        }
        // Every live node's block leads to its children's current blocks.
        for (node, meta) in self.nodes.iter().zip(&self.meta).filter(|(_, m)| m.live) {
            for &(slot, child) in &meta.children {
                let entry = self.entries[node.entry_off as usize + self.maps.run(node.map, slot).unwrap()];
                assert_eq!(entry.child_map, self.nodes[child as usize].map);
                assert_eq!(entry.child_off, self.nodes[child as usize].entry_off);
            }
        }
    }
}

/// What an entry leading to `child` holds: the child's run map and block.
fn link_to(nodes: &[Node], child: u32) -> (u32, u32) {
    nodes
        .get(child as usize)
        .map_or((SINGLE_RUN_MAP, EMPTY_ENTRY), |n| (n.map, n.entry_off))
}

/// Number of entries a node's block holds (0 for the shared empty entry).
fn block_len(node: &Node, maps: &RunMaps) -> usize {
    if node.entry_off == EMPTY_ENTRY {
        0
    } else {
        maps.run(node.map, 255).unwrap_or(0) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lpm(trie: &PrefixTrie<u8>, addr: u32) -> Option<u32> {
        trie.longest_match(0, addr)
    }

    fn insert(trie: &mut PrefixTrie<u8>, net: u32, len: u8, value: u32) {
        trie.insert(net, len, value, 32 - len);
        trie.flush();
        trie.check_invariants();
    }

    #[test]
    fn empty_trie_matches_nothing() {
        let trie = PrefixTrie::<u8>::new();
        assert_eq!(lpm(&trie, 0), None);
        assert_eq!(lpm(&trie, u32::MAX), None);
    }

    #[test]
    fn longest_prefix_wins_across_and_within_levels() {
        let mut trie = PrefixTrie::new();
        insert(&mut trie, 0, 0, 0); // default
        insert(&mut trie, 0x0a00_0000, 8, 1); // 10/8
        insert(&mut trie, 0x0a00_0000, 12, 2); // 10.0/12
        insert(&mut trie, 0x0a01_0200, 24, 3); // 10.1.2/24
        insert(&mut trie, 0x0a01_0205, 32, 4); // 10.1.2.5/32
        assert_eq!(lpm(&trie, 0x0a01_0205), Some(4));
        assert_eq!(lpm(&trie, 0x0a01_0206), Some(3));
        assert_eq!(lpm(&trie, 0x0a01_0306), Some(2));
        assert_eq!(lpm(&trie, 0x0a10_0000), Some(1));
        assert_eq!(lpm(&trie, 0x0b00_0000), Some(0));
        // Parents within the root node: 10/8 → 0/0.
        assert_eq!(trie.parent_of(1), 0);
        assert_eq!(trie.parent_of(0), NO_VALUE);
        assert_eq!(trie.parent_of(2), NO_VALUE); // 10.0/12 is alone in its node
    }

    #[test]
    fn removal_prunes_nodes_and_restores_shorter_match() {
        let mut trie = PrefixTrie::new();
        insert(&mut trie, 0x0a00_0000, 8, 1);
        insert(&mut trie, 0x0a01_0205, 32, 4);
        assert_eq!(trie.remove(0x0a01_0205, 32), Some(4));
        trie.flush();
        trie.check_invariants();
        assert_eq!(lpm(&trie, 0x0a01_0205), Some(1));
        assert_eq!(trie.free_nodes.len(), 3);
        assert_eq!(trie.remove(0x0a01_0205, 32), None);
    }

    fn check(
        trie: &PrefixTrie<u8, 2>,
        present: &[(usize, u32, u8, u32)],
        queries: &[u32],
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        for &q in queries {
            let q = (q & 0x0303_0f0f) | 0x0a00_0000;
            for layer in 0..2 {
                let expected = present
                    .iter()
                    .filter(|p| p.0 == layer && (p.2 == 0 || (q ^ p.1) >> (32 - u32::from(p.2)) == 0))
                    .max_by_key(|p| p.2)
                    .map(|p| p.3);
                let deepest = trie.longest_match(layer, q);
                proptest::prop_assert_eq!(deepest, expected);
            }
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// Two layers sharing nodes, checked against a brute-force longest match per layer
        /// after every batch of inserts and removes, then while draining.
        #[test]
        fn layered_trie_matches_brute_force(
            batches in proptest::collection::vec(
                proptest::collection::vec((0usize..2, proptest::prelude::any::<u32>(), 0u8..=32, 0u8..4), 1..80),
                1..10,
            ),
            queries in proptest::collection::vec(proptest::prelude::any::<u32>(), 16),
        ) {
            let mut trie = PrefixTrie::<u8, 2>::with_parent_tracking();
            let mut present: Vec<(usize, u32, u8, u32)> = Vec::new();
            let mut next_value = 0u32;
            for batch in batches {
                for (layer, bits, len, op) in batch {
                    let insert = op != 0;
                    // Cluster addresses so that prefixes nest and share nodes.
                    let addr = (bits & 0x0303_0f0f) | 0x0a00_0000;
                    let net = if len == 0 { 0 } else { addr & (u32::MAX << (32 - u32::from(len))) };
                    if insert || present.is_empty() {
                        present.retain(|p| !(p.0 == layer && p.1 == net && p.2 == len));
                        trie.insert_in(layer, net, len, next_value, 32 - len);
                        present.push((layer, net, len, next_value));
                        next_value += 1;
                    } else {
                        let (layer, net, len, value) = present.swap_remove(bits as usize % present.len());
                        proptest::prop_assert_eq!(trie.remove_in(layer, net, len), Some(value));
                    }
                }
                trie.flush();
                trie.check_invariants();
                check(&trie, &present, &queries)?;
            }
            // Drain, so that nodes are pruned and compacted away.
            while !present.is_empty() {
                for _ in 0..present.len().min(16) {
                    let (layer, net, len, value) = present.swap_remove(next_value as usize % present.len());
                    next_value += 1;
                    proptest::prop_assert_eq!(trie.remove_in(layer, net, len), Some(value));
                }
                trie.flush();
                trie.check_invariants();
                check(&trie, &present, &queries)?;
            }
        }
    }

    #[test]
    fn computed_and_interned_maps_answer_like_the_map() {
        let mut maps = RunMaps::new();
        let mut shapes: Vec<RunMap> = vec![[0; 256], IDENTITY_RUNS];
        for (second, third) in [(1, 256), (255, 256), (17, 18), (0x80, 0xc0), (3, 255)] {
            shapes.push(std::array::from_fn(|slot| {
                u8::from(slot >= second) + u8::from(slot >= third)
            }));
        }
        shapes.push(std::array::from_fn(|slot| (slot / 64) as u8)); // four runs: stored
        let ids: Vec<u32> = shapes.iter().map(|shape| maps.intern(shape)).collect();
        for (shape, &id) in shapes.iter().zip(&ids) {
            assert_eq!(id & COMPUTED != 0, shape[255] <= 2, "{id:#x}");
            for slot in 0..=255u8 {
                assert_eq!(maps.run(id, slot), Some(usize::from(shape[usize::from(slot)])));
            }
        }
        assert_eq!(ids[0], SINGLE_RUN_MAP);
        assert_eq!(ids[1], IDENTITY_MAP);
        // Interning again shares; the last release frees a stored map for reuse.
        let four_runs = ids[ids.len() - 1];
        assert_eq!(maps.intern(&shapes[shapes.len() - 1]), four_runs);
        maps.release(four_runs);
        maps.release(four_runs);
        assert_eq!(maps.free, vec![four_runs]);
        maps.release(IDENTITY_MAP); // permanent: no effect
        assert_eq!(maps.run(IDENTITY_MAP, 7), Some(7));
    }

    #[test]
    fn compaction_keeps_lookups_right() {
        // Nodes are created and pruned every round (a `/32` per `/24` node, a third of them
        // removed), so garbage accumulates and the arena must be compacted to stay bounded.
        let mut trie = PrefixTrie::new();
        let host = |i: u32, round: u32| 0x0a00_0000 | (i << 8) | (round % 7);
        let mut longest_arena = 0;
        for round in 0..60u32 {
            for i in 0..200u32 {
                trie.insert(0x0a00_0000 | (i << 8), 24, i, 8);
                trie.insert(host(i, round), 32, 1000 + i, 0);
            }
            trie.flush();
            for i in (0..200u32).filter(|i| i % 3 == round % 3) {
                trie.remove(0x0a00_0000 | (i << 8), 24);
                trie.remove(host(i, round), 32);
            }
            trie.flush();
            trie.check_invariants();
            for i in 0..200u32 {
                let kept = i % 3 != round % 3;
                assert_eq!(lpm(&trie, host(i, round)), kept.then_some(1000 + i));
                assert_eq!(lpm(&trie, host(i, round) ^ 0x80), kept.then_some(i));
            }
            for i in (0..200u32).filter(|i| i % 3 != round % 3) {
                trie.remove(host(i, round), 32);
            }
            trie.flush();
            longest_arena = longest_arena.max(trie.entries.len());
        }
        // 60 rounds of ~130 pruned nodes would leave well over 20,000 dead entries.
        assert!(longest_arena < 12_000, "arena reached {longest_arena} entries");
    }
}
