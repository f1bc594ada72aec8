//! The read cache shared by the backends: results of the read queries that every Describe
//! call makes (access keys, resource documents and owners, resource and route pages,
//! counters), kept in memory and tagged with the **commit generation** they were read at.
//!
//! Why it is exact, not "eventually" right: every write transaction moves the backend's
//! commit generation inside the transaction, just before it commits (SQLite:
//! `store_meta.commit_seq`; PostgreSQL: the sum of the `store_gen` slots) — including those of
//! another process such as `vpnroute admin` or another replica. A read transaction reads
//! that value first, in its own snapshot. It takes a cached result only if that result was
//! read at the same generation, and what it reads from the database belongs to that
//! generation too, so a reader sees exactly its snapshot, cached or not.
//!
//! A newer generation empties the cache. Under load reads outnumber writes by far, and a
//! whole-cache flush keeps writes free of any per-entry bookkeeping; the cache is also
//! emptied when it holds `MAX_ENTRIES`, which bounds its memory. (A backend may keep
//! authentication data apart, across commits it knows did not change it: the SQLite store
//! does.)

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vpnroute_domain::model::RouteKind;

use crate::ResourceKind;

/// Entries kept before the cache is emptied (a page of 50 routes is ~10 KiB, so the bound is
/// in the hundreds of MiB only if every entry were a full page; in practice far less).
pub const MAX_ENTRIES: usize = 16_384;

/// One cached query and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    AccessKey(String),
    /// An account's RAM directory document.
    RamDirectory(String),
    ResourceOwner(ResourceKind, String),
    /// The document type is part of the key: the same row may be decoded as different types.
    Resource(ResourceKind, String, TypeId),
    ResourceCount(ResourceKind, String, String),
    ResourcePage {
        kind: ResourceKind,
        account_id: String,
        region_id: String,
        parent: Option<String>,
        offset: u64,
        limit: u64,
        doc_type: TypeId,
    },
    RouteCount(String, RouteKind),
    RoutePage(String, RouteKind, u64, u64),
}

#[derive(Default)]
struct Entries {
    generation: u64,
    map: HashMap<Query, Arc<dyn Any + Send + Sync>>,
}

/// Query results by [`Query`], valid for one commit generation.
#[derive(Default)]
pub struct ReadCache {
    entries: Mutex<Entries>,
}

impl ReadCache {
    /// The result cached for `query` at exactly `generation`, if any.
    pub fn get<V: Clone + 'static>(&self, generation: u64, key: &Query) -> Option<V> {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.generation != generation {
            if e.generation < generation {
                // The first reader of a new generation drops everything older.
                e.generation = generation;
                e.map.clear();
            }
            return None;
        }
        e.map.get(key).and_then(|v| v.downcast_ref::<V>()).cloned()
    }

    /// Remember `value` as the result of `key` at `generation` (ignored if the cache has
    /// moved on to a newer generation: a slow reader never overwrites newer results).
    pub fn put<V: Send + Sync + 'static>(&self, generation: u64, key: Query, value: V) {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if e.generation > generation {
            return;
        }
        if e.generation < generation || e.map.len() >= MAX_ENTRIES {
            e.generation = generation;
            e.map.clear();
        }
        e.map.insert(key, Arc::new(value));
    }

    /// Entries held (tests, metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_only_seen_at_their_generation() {
        let c = ReadCache::default();
        let k = Query::AccessKey("a".into());
        c.put(1, k.clone(), 7u32);
        assert_eq!(c.get::<u32>(1, &k), Some(7));
        // An older reader neither sees nor disturbs newer entries.
        assert_eq!(c.get::<u32>(0, &k), None);
        c.put(0, k.clone(), 9u32);
        assert_eq!(c.get::<u32>(1, &k), Some(7));
        // A newer generation empties the cache.
        assert_eq!(c.get::<u32>(2, &k), None);
        assert_eq!(c.len(), 0);
        assert_eq!(c.get::<u32>(1, &k), None);
    }

    #[test]
    fn a_wrong_type_is_a_miss_not_a_panic() {
        let c = ReadCache::default();
        let k = Query::AccessKey("a".into());
        c.put(1, k.clone(), 7u32);
        assert_eq!(c.get::<String>(1, &k), None);
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = ReadCache::default();
        for i in 0..(MAX_ENTRIES + 10) {
            c.put(1, Query::AccessKey(i.to_string()), i);
        }
        assert!(c.len() <= MAX_ENTRIES);
    }
}
