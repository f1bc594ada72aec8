//! The read cache for authentication data (access keys, RAM directories): unlike the main
//! read cache ([`vpnroute_store::cache`]), which a new commit generation empties, its entries
//! outlive commits that do not touch those tables, so that a signed request after a write is
//! authenticated from memory, not from SQLite.
//!
//! Why it is exact: this process's writer knows what its own commits wrote. After each commit
//! it notes its generation (`last_own`) and, when the commit wrote authentication data or
//! followed a commit it did not make (another process: `vpnroute admin`), the generation from
//! which the data is unchanged (`stable_since`); both before the generation is published. An
//! entry read at generation `e` is used by a read at generation `g` only when both lie in
//! `[stable_since, last_own]`: every commit in between is this writer's own, and none of them
//! wrote authentication data, so the entry is exactly what a read at `g` would find. Anything
//! else (a generation published by another process, a newer change) is a miss and is read
//! from SQLite.
//!
//! The same knowledge of which commits were this process's own gives
//! `Store::others_generation`: a per-process data plane mirrors only after other processes'
//! commits, not after each of its own.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vpnroute_store::cache::{Query, MAX_ENTRIES};

/// A cached result and the generation it was read at.
type Entry = (u64, Arc<dyn Any + Send + Sync>);

/// See the [module docs](self).
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<Query, Entry>>,
    /// The generation of this process's last commit (0: none yet).
    last_own: AtomicU64,
    /// Authentication data is unchanged from this generation to `last_own`.
    stable_since: AtomicU64,
    /// The newest generation this writer found committed by another process.
    last_foreign: AtomicU64,
}

impl Default for AuthCache {
    fn default() -> Self {
        AuthCache {
            entries: Mutex::new(HashMap::new()),
            last_own: AtomicU64::new(0),
            stable_since: AtomicU64::new(u64::MAX),
            last_foreign: AtomicU64::new(0),
        }
    }
}

impl AuthCache {
    /// The window of generations in which entries are valid (empty before the first commit).
    fn window(&self) -> (u64, u64) {
        // `last_own` first: a newer `last_own` comes with its `stable_since` (release/acquire).
        let last_own = self.last_own.load(Ordering::Acquire);
        (self.stable_since.load(Ordering::Acquire), last_own)
    }

    /// The entry for `key` valid at `generation`, if any.
    pub(crate) fn get<V: Clone + 'static>(&self, generation: u64, key: &Query) -> Option<V> {
        let (from, to) = self.window();
        if generation < from || generation > to {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (read_at, v) = entries.get(key)?;
        if *read_at < from || *read_at > to {
            return None;
        }
        v.downcast_ref::<V>().cloned()
    }

    /// Remember `value` as read at `generation`.
    pub(crate) fn put<V: Send + Sync + 'static>(&self, generation: u64, key: Query, value: V) {
        let (from, to) = self.window();
        if generation < from || generation > to {
            // Never valid: older than a change, or from a generation this writer did not see.
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (generation, Arc::new(value)));
    }

    /// Called by the writer after its commit at `generation`, before publishing it.
    pub(crate) fn committed(&self, generation: u64, wrote_auth: bool) {
        let previous_own = self.last_own.load(Ordering::Acquire);
        let foreign_before = previous_own == 0 || generation != previous_own + 1;
        if foreign_before {
            self.last_foreign.fetch_max(generation - 1, Ordering::AcqRel);
        }
        if wrote_auth || foreign_before {
            // Changed here, or a commit this writer did not make came in between.
            self.stable_since.store(generation, Ordering::Release);
        }
        self.last_own.store(generation, Ordering::Release);
    }

    /// A generation that moves with every commit of another process (see
    /// `Store::others_generation`), given the `published` one: that one while it is newer
    /// than this writer's last commit, else the last generation found committed by another.
    pub(crate) fn others_generation(&self, published: u64) -> u64 {
        let last_own = self.last_own.load(Ordering::Acquire);
        if published > last_own {
            return published;
        }
        self.last_foreign.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_outlive_commits_that_leave_authentication_alone() {
        let c = AuthCache::default();
        let k = Query::AccessKey("a".into());
        // Before this process committed anything, nothing is known.
        c.put(5, k.clone(), 1u32);
        assert_eq!(c.len(), 0);
        c.committed(5, false);
        c.put(5, k.clone(), 1u32);
        c.committed(6, false);
        c.committed(7, false);
        assert_eq!(c.get::<u32>(7, &k), Some(1));
        assert_eq!(c.get::<u32>(5, &k), Some(1));
        // A generation this writer has not committed (another process's): a miss.
        assert_eq!(c.get::<u32>(8, &k), None);
        // A commit that wrote authentication data ends every older entry.
        c.committed(8, true);
        assert_eq!(c.get::<u32>(8, &k), None);
        c.put(8, k.clone(), 2u32);
        assert_eq!(c.get::<u32>(8, &k), Some(2));
        // Another process committed 9: this writer's 10 does not vouch for it.
        c.committed(10, false);
        assert_eq!(c.get::<u32>(10, &k), None);
        // A wrong type is a miss, not a panic.
        c.put(10, k.clone(), 3u32);
        assert_eq!(c.get::<String>(10, &k), None);
    }

    #[test]
    fn others_generation_moves_only_with_other_processes_commits() {
        let c = AuthCache::default();
        assert_eq!(c.others_generation(4), 4, "nothing committed here yet");
        c.committed(5, false);
        let after_first = c.others_generation(5);
        c.committed(6, false);
        c.committed(7, false);
        assert_eq!(c.others_generation(7), after_first, "own commits do not move it");
        // Another process published 8.
        assert_eq!(c.others_generation(8), 8);
        c.committed(9, false);
        let after = c.others_generation(9);
        assert!(after >= 8 && after != after_first, "{after}");
        c.committed(10, true);
        assert_eq!(c.others_generation(10), after);
    }
}
