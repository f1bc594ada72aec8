//! Signature nonces: an append-only log file (`nonces.log`) plus an in-memory index.
//!
//! Every signed request records a nonce, so this is on the hot path of every call. A
//! B-tree insert per request (SQLite) cost more than the rest of a Describe call; instead a
//! batch of nonces is appended to the log with one `write` (durable against a process crash,
//! like the database's WAL in `--sync process` mode; `fsync`ed in `--sync full` mode) and
//! checked against an in-memory set of the last 15 minutes. On open, the log is read back,
//! so a nonce stays used across restarts; it is compacted when it grows.
//!
//! The index keeps a 64-bit hash of (access key id, nonce) and the time seen: about 24 bytes
//! per nonce, so 20,000 requests/s sustained for the whole 15-minute window is ~430 MB.
//! A hash collision (probability ~n/2^64 per request) would refuse one fresh request with
//! `SignatureNonceUsed`; nothing is ever accepted twice.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use std::sync::Mutex;

use vpnroute_store::{Durability, StoreError};

/// Compact the log when it holds this many bytes more than the live entries need.
const COMPACT_AT_BYTES: u64 = 64 * 1024 * 1024;

pub struct NonceLog {
    path: PathBuf,
    window_ms: i64,
    durability: Durability,
    state: Mutex<State>,
}

struct State {
    file: File,
    file_bytes: u64,
    seen: HashMap<u64, i64>,
    order: VecDeque<(i64, u64)>,
}

fn key_hash(access_key_id: &str, nonce: &str) -> u64 {
    // FNV-1a: stable across Rust versions (the log stores the text anyway and is re-hashed
    // on open, so stability only matters within one process).
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    access_key_id.hash(&mut h);
    nonce.hash(&mut h);
    h.finish()
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Other(format!("nonce log: {e}"))
}

/// Nonces are opaque text from clients; keep the log line-oriented by refusing the
/// separators (such a nonce is still recorded in memory, hashed).
fn loggable(s: &str) -> bool {
    !s.contains(['\n', '\r', '\t'])
}

/// One parsed log line: `(seen_at_ms, access key id, nonce)`; `None` for a torn or
/// malformed line (a crash can leave the last one half-written).
fn parse_line(line: &str) -> Option<(i64, &str, &str)> {
    let mut parts = line.splitn(3, '\t');
    let ts = parts.next()?.parse().ok()?;
    Some((ts, parts.next()?, parts.next()?))
}

/// The lines of the log at `path` still inside the window (seen at or after `cutoff_ms`).
fn live_lines(path: &Path, cutoff_ms: i64) -> Vec<String> {
    let Ok(f) = File::open(path) else { return Vec::new() };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|line| parse_line(line).is_some_and(|(ts, _, _)| ts >= cutoff_ms))
        .collect()
}

impl NonceLog {
    /// Open (or create) the log in `data_dir`, remembering nonces seen in the last
    /// `window_ms` milliseconds before `now_ms`; the log is rewritten with those only.
    pub fn open(data_dir: &Path, durability: Durability, window_ms: i64, now_ms: i64) -> Result<NonceLog, StoreError> {
        let path = data_dir.join("nonces.log");
        let lines = live_lines(&path, now_ms - window_ms);
        let mut seen = HashMap::new();
        let mut order = VecDeque::new();
        for (ts, key, nonce) in lines.iter().filter_map(|l| parse_line(l)) {
            let h = key_hash(key, nonce);
            if seen.insert(h, ts).is_none() {
                order.push_back((ts, h));
            }
        }
        let (file, file_bytes) = write_log(&path, &lines)?;
        Ok(NonceLog {
            path,
            window_ms,
            durability,
            state: Mutex::new(State {
                file,
                file_bytes,
                seen,
                order,
            }),
        })
    }

    /// Rewrite the log with only the live entries.
    fn compact(&self, st: &mut State, now_ms: i64) -> Result<(), StoreError> {
        let lines = live_lines(&self.path, now_ms - self.window_ms);
        (st.file, st.file_bytes) = write_log(&self.path, &lines)?;
        Ok(())
    }

    /// Record a batch of nonces with one append; for each, whether it was new (`false`
    /// means a replay, also of an earlier entry of the same batch).
    pub fn record_batch<'a>(
        &self,
        batch: impl Iterator<Item = (&'a str, &'a str, i64)>,
    ) -> Result<Vec<bool>, StoreError> {
        let batch: Vec<_> = batch.collect();
        let newest = batch.iter().map(|(_, _, now)| *now).max().unwrap_or(i64::MIN);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Forget what left the window first: a nonce older than the window is usable again.
        forget_before(&mut st, newest - self.window_ms);
        let mut out = Vec::new();
        let mut text = String::new();
        for (key, nonce, now) in batch {
            let h = key_hash(key, nonce);
            let fresh = !st.seen.contains_key(&h);
            if fresh {
                st.seen.insert(h, now);
                st.order.push_back((now, h));
                if loggable(key) && loggable(nonce) {
                    text.push_str(&format!("{now}\t{key}\t{nonce}\n"));
                }
            }
            out.push(fresh);
        }
        if !text.is_empty() {
            st.file.write_all(text.as_bytes()).map_err(io)?;
            if self.durability == Durability::Full {
                st.file.sync_data().map_err(io)?;
            }
            st.file_bytes += text.len() as u64;
        }
        if st.file_bytes > COMPACT_AT_BYTES && st.file_bytes > 4 * 40 * st.seen.len() as u64 {
            self.compact(&mut st, newest)?;
        }
        Ok(out)
    }

    /// Record one nonce; `false` when it was already used.
    pub fn record(&self, access_key_id: &str, nonce: &str, now_ms: i64) -> Result<bool, StoreError> {
        Ok(self
            .record_batch(std::iter::once((access_key_id, nonce, now_ms)))?
            .first()
            .copied()
            .unwrap_or(false))
    }

    /// Number of nonces remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl vpnroute_store::NonceStore for NonceLog {
    fn record(&self, access_key_id: &str, nonce: &str, now_ms: i64) -> Result<bool, StoreError> {
        NonceLog::record(self, access_key_id, nonce, now_ms)
    }

    fn remembered(&self) -> usize {
        self.len()
    }
}

/// Drop the remembered nonces seen before `cutoff_ms`.
fn forget_before(st: &mut State, cutoff_ms: i64) {
    while let Some(&(ts, h)) = st.order.front() {
        if ts >= cutoff_ms {
            break;
        }
        st.order.pop_front();
        if st.seen.get(&h) == Some(&ts) {
            st.seen.remove(&h);
        }
    }
}

/// Replace the log at `path` with `lines` (write, sync, atomic rename); returns the log
/// opened for appending and its size.
fn write_log(path: &Path, lines: &[String]) -> Result<(File, u64), StoreError> {
    let tmp = path.with_extension("log.tmp");
    let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(io)?);
    let mut bytes = 0u64;
    for line in lines {
        out.write_all(line.as_bytes()).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        bytes += line.len() as u64 + 1;
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok((OpenOptions::new().append(true).open(path).map_err(io)?, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 15 * 60 * 1000;

    #[test]
    fn nonces_are_single_use_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 10).unwrap();
            let r = log
                .record_batch([("k", "n1", 10), ("k", "n2", 10), ("k", "n1", 10)].into_iter())
                .unwrap();
            assert_eq!(r, vec![true, true, false]);
        }
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 11).unwrap();
        assert_eq!(
            log.record_batch([("k", "n1", 11), ("k2", "n1", 11)].into_iter())
                .unwrap(),
            vec![false, true]
        );
    }

    #[test]
    fn old_nonces_are_forgotten_and_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 0).unwrap();
        log.record_batch([("k", "old", 0)].into_iter()).unwrap();
        // Past the window the same nonce is accepted again (Alibaba: unique within 15 min).
        assert_eq!(
            log.record_batch([("k", "new", WINDOW + 1)].into_iter()).unwrap(),
            vec![true]
        );
        assert_eq!(log.len(), 1);
        drop(log);
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, WINDOW + 2).unwrap();
        assert_eq!(log.len(), 1);
        let text = std::fs::read_to_string(dir.path().join("nonces.log")).unwrap();
        assert!(!text.contains("old") && text.contains("new"), "{text}");
    }

    #[test]
    fn a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nonces.log"), "5\tk\tn1\n6\tk").unwrap();
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 10).unwrap();
        assert_eq!(log.record_batch([("k", "n1", 10)].into_iter()).unwrap(), vec![false]);
    }
}
