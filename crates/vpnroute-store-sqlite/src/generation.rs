//! The published commit generation: one 64-bit counter in `vpnroute.gen`, a file every
//! process that opens the store maps into memory (`MAP_SHARED`).
//!
//! A writer publishes the `store_meta.commit_seq` it committed (a `fetch_max`, so the
//! counter never goes back) before [`crate::SqliteStore::write`] returns. A reader that loads the
//! counter and finds every result it needs in the read cache at that generation answers
//! without touching SQLite at all: what it returns is exactly the committed state of that
//! generation, and any write it does not see had not returned to its caller yet. Another
//! process writing (`vpnroute admin` while `vpnroute serve` runs) publishes through the same
//! mapping, so its changes are seen by the next request.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::MmapMut;

use vpnroute_store::StoreError;

pub(crate) struct SharedGeneration {
    map: MmapMut,
}

impl SharedGeneration {
    pub(crate) fn open(path: &Path) -> Result<Self, StoreError> {
        let err = |e: std::io::Error| StoreError::Other(format!("{}: {e}", path.display()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len != 8 {
            if len != 0 {
                // Truncated or overwritten: not trusted; `Store::open` republishes the
                // database's generation into the zeroed counter.
                tracing::warn!(path = %path.display(), bytes = len, "generation file has the wrong size: rebuilt from the database");
            }
            // Written, not `set_len`: the page is allocated now, so a later store through the
            // mapping cannot fault on a full disk (tmpfs would SIGBUS on a sparse page).
            use std::io::Write;
            file.set_len(0).map_err(err)?;
            (&file).write_all(&[0u8; 8]).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        // SAFETY: the mapping is only ever accessed through the `AtomicU64` below; other
        // processes mapping the same file do the same. A process truncating the file under
        // us would be outside the store's contract (like truncating the database itself).
        let map = unsafe { MmapMut::map_mut(&file) }.map_err(err)?;
        Ok(SharedGeneration { map })
    }

    fn counter(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned and at least 8 bytes long, and it lives as long
        // as `self`; `AtomicU64` has the size and alignment of `u64`.
        unsafe { &*(self.map.as_ptr() as *const AtomicU64) }
    }

    /// The newest published generation.
    pub(crate) fn load(&self) -> u64 {
        self.counter().load(Ordering::Acquire)
    }

    /// Publish `generation` (no effect if a newer one is published already).
    pub(crate) fn publish(&self, generation: u64) {
        self.counter().fetch_max(generation, Ordering::AcqRel);
    }

    /// Replace `expected` by `generation`, unless the counter moved meanwhile (opening a
    /// database whose history is older than the counter file, e.g. one restored from a
    /// backup). Returns whether it was replaced.
    pub(crate) fn replace(&self, expected: u64, generation: u64) -> bool {
        self.counter()
            .compare_exchange(expected, generation, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Set the counter unconditionally (tests simulate a writer that has not published yet).
    #[cfg(test)]
    pub(crate) fn force(&self, generation: u64) {
        self.counter().store(generation, Ordering::Release);
    }
}

impl vpnroute_store::ChangeFeed for SharedGeneration {
    fn current(&self) -> u64 {
        self.load()
    }

    fn publish(&self, generation: u64) {
        SharedGeneration::publish(self, generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_file_see_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpnroute.gen");
        let a = SharedGeneration::open(&path).unwrap();
        let b = SharedGeneration::open(&path).unwrap();
        assert_eq!(a.load(), 0);
        a.publish(5);
        assert_eq!(b.load(), 5);
        b.publish(3);
        assert_eq!(a.load(), 5, "publishing never goes back");
        assert!(!b.replace(4, 2), "the counter is not at 4");
        assert!(b.replace(5, 2));
        assert_eq!(a.load(), 2);
        drop((a, b));
        assert_eq!(SharedGeneration::open(&path).unwrap().load(), 2, "kept in the file");
    }

    #[test]
    fn a_truncated_or_oversized_file_is_reset_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vpnroute.gen");
        std::fs::write(&path, [0xff, 0xff, 0xff]).unwrap();
        assert_eq!(SharedGeneration::open(&path).unwrap().load(), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
        std::fs::write(&path, [0xff; 12]).unwrap();
        assert_eq!(SharedGeneration::open(&path).unwrap().load(), 0);
    }
}
