//! Authentication data (access keys, RAM directories) recently read by this replica, for the
//! *first* check of a signed request only ([`crate::PgStore::read_cached`]): the check that
//! keeps junk and forged requests away from the writer and from the nonce table, before the
//! request's own transaction authenticates it again on its own state. Under a stream of
//! writes the read cache is emptied by every commit, so without this the first check of each
//! write was a read transaction of its own (measured: 5 of the 22 statements, and 3 of the 11
//! round trips, of a route create on PostgreSQL).
//!
//! Why it may be stale: nothing it answers is final. An entry is used for at most [`TTL`]
//! after it was read from a committed snapshot; only entries for something that exists are
//! kept (a key created a moment ago is never refused on an old "absent"), and a commit of
//! this replica that changes keys or RAM directories forgets them all. A key disabled or
//! deleted, or a policy changed, through another replica within that time passes the first
//! check and is refused by the second, in the write's (or read's) own transaction: the
//! request then has used its nonce (docs/compatibility.md §1.2, step 8).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vpnroute_store::cache::{Query, MAX_ENTRIES};

/// A value and when it was read.
type Entry = (Instant, Arc<dyn Any + Send + Sync>);

/// How long an entry answers first checks.
pub(crate) const TTL: Duration = Duration::from_secs(1);

/// See the [module docs](self).
#[derive(Default)]
pub(crate) struct RecentAuth {
    entries: Mutex<HashMap<Query, Entry>>,
}

impl RecentAuth {
    /// The value read for `key` less than [`TTL`] ago, if any.
    pub(crate) fn get<V: Clone + 'static>(&self, key: &Query) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (read_at, v) = entries.get(key)?;
        if read_at.elapsed() >= TTL {
            return None;
        }
        v.downcast_ref::<V>().cloned()
    }

    /// Forget everything (after this replica committed a change of authentication data).
    pub(crate) fn clear(&self) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Remember `value`, read now from a committed snapshot.
    pub(crate) fn put<V: Send + Sync + 'static>(&self, key: Query, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < TTL);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), Arc::new(value)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_answers_for_its_ttl_only_and_as_its_own_type() {
        let r = RecentAuth::default();
        let k = Query::AccessKey("k".into());
        assert_eq!(r.get::<u32>(&k), None);
        r.put(k.clone(), 7u32);
        assert_eq!(r.get::<u32>(&k), Some(7));
        assert_eq!(r.get::<String>(&k), None, "another type is a miss, not a panic");
        assert_eq!(r.get::<u32>(&Query::AccessKey("other".into())), None);
        r.entries.lock().unwrap().get_mut(&k).unwrap().0 -= TTL;
        assert_eq!(r.get::<u32>(&k), None, "expired");
        r.put(k.clone(), 8u32);
        r.clear();
        assert_eq!(r.get::<u32>(&k), None, "forgotten");
    }
}
