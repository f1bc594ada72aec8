//! Signature nonces: an append-only log file (`nonces.log`) plus an in-memory index.
//!
//! Every signed request records a nonce, so this is on the hot path of every call. A
//! B-tree insert per request (SQLite) cost more than the rest of a Describe call; instead a
//! batch of nonces is appended to the log with one `write` (durable against a process crash,
//! like the database's WAL in `--sync process` mode; `fsync`ed in `--sync full` mode) and
//! checked against an in-memory index. On open, the log is read back, so a nonce stays used
//! across restarts; it is compacted when it grows.
//!
//! Each nonce is kept until its *keep-until* time, which the caller chooses: the end of the
//! acceptance window of the request's own timestamp, and at least the window after it was
//! seen (a request signed up to 15 minutes in the future stays refusable until its
//! timestamp is too old to be accepted at all).
//!
//! Log format (version 2): a header line `# vpnroute nonces v2`, optionally a line
//! `# untrusted-before\t<ms>` (see below), then one `keep_until_ms\tAccessKeyId\tnonce` line
//! per nonce, where access key and nonce are escaped (`%`, control characters and DEL as
//! `%XX`), so every nonce is persisted whatever its bytes. A log whose first line is a
//! nonce line is version 1 (`seen_at_ms\t…`, unescaped) and is read as keep-until = seen +
//! window.
//!
//! Damage found at open ([`NonceLogDamage`]) is reported in a `warn` log line and the log
//! is rewritten without it:
//! - a torn last line (no newline: a crash during an append, whose request was therefore
//!   never answered) is dropped;
//! - a damaged header (an empty file, a first line that is neither the header nor a
//!   version-1 nonce line, e.g. a file cut inside the header) or malformed lines elsewhere
//!   mean nonces may have been lost, so the log is not trusted: the remaining lines are
//!   read as version 2, and a write whose request is signed at or before *open time +
//!   window* — the latest timestamp a request seen before this start can carry — is
//!   refused ([`StoreError::Unavailable`], `ServiceUnavailable`) without consuming its
//!   nonce, since it may be a replay of one that was lost. Reads are served (a replayed read
//!   changes nothing). The bound is kept in the rewritten log (`# untrusted-before`), so a
//!   restart inside that time does not forget it; once the window has passed, no such
//!   timestamp is accepted any more and the line is dropped at the next rewrite.
//!
//! When an append fails (disk full), the unwritten lines are kept in memory and written
//! first by the next append that succeeds; the file is cut back to its last complete line.
//!
//! The index keeps a 64-bit hash of (access key id, nonce) and the keep-until time: about
//! 40 bytes per nonce. A hash collision (probability ~n/2^64 per request) would refuse one
//! fresh request with `SignatureNonceUsed`; nothing is ever accepted twice.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{File, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::sync::Mutex;

use vpnroute_store::{Durability, StoreError};

/// Compact the log when it holds this many bytes more than the live entries need.
const COMPACT_AT_BYTES: u64 = 64 * 1024 * 1024;

/// First line of a version-2 log.
const HEADER: &str = "# vpnroute nonces v2";

/// Start of the line that keeps the damaged-log bound across rewrites.
const UNTRUSTED: &str = "# untrusted-before\t";

/// Most unwritten log bytes kept while the disk is full; beyond, further nonces are kept
/// in memory only (they are still refused as replays until the process exits).
const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

pub struct NonceLog {
    path: PathBuf,
    window_ms: i64,
    durability: Durability,
    /// Writes signed at or before this time (ms) are refused: the log was damaged and
    /// their nonces may have been lost (see the module docs).
    untrusted_before: Option<i64>,
    state: Mutex<State>,
}

struct State {
    file: File,
    file_bytes: u64,
    /// hash → keep-until (ms).
    seen: HashMap<u64, i64>,
    /// (keep-until, hash), soonest first.
    expiry: BinaryHeap<Reverse<(i64, u64)>>,
    /// Lines not yet in the file (the last append failed).
    pending: String,
}

/// What opening a log found besides the live entries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NonceLogDamage {
    /// Malformed lines other than a torn last one and the header (dropped).
    pub malformed_lines: usize,
    /// Whether the last line was torn (no newline: dropped).
    pub torn_tail: bool,
    /// Whether the header was missing or damaged (an empty file, or a first line that is
    /// neither the header nor a version-1 nonce line).
    pub damaged_header: bool,
    /// Writes signed at or before this time (ms) are refused: set when the header or
    /// other lines were damaged (from this open or kept from an earlier one).
    pub untrusted_before: Option<i64>,
}

impl NonceLogDamage {
    /// Whether nonces may have been lost (more than a torn last line).
    pub fn loses_nonces(&self) -> bool {
        self.damaged_header || self.malformed_lines > 0
    }
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
    if e.raw_os_error() == Some(28) || e.kind() == std::io::ErrorKind::StorageFull {
        StoreError::Unavailable(format!("nonce log: {e}"))
    } else {
        StoreError::Other(format!("nonce log: {e}"))
    }
}

/// Escape `%`, control characters and DEL as `%XX`, so a field never contains the log's
/// separators (tab, newline) whatever the client sent.
pub fn escape_field(s: &str, out: &mut String) {
    for c in s.chars() {
        if c == '%' || c.is_ascii_control() {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
}

/// Inverse of [`escape_field`]; `None` for a bad escape or a raw control character.
pub fn unescape_field(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c if c.is_ascii_control() => return None,
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// One parsed log line: `(keep_until_ms, access key id, nonce)`; `None` when malformed.
fn parse_line(line: &str, v2: bool, window_ms: i64) -> Option<(i64, String, String)> {
    let mut parts = line.split('\t');
    let ts: i64 = parts.next()?.parse().ok()?;
    let (key, nonce) = (parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    if v2 {
        Some((ts, unescape_field(key)?, unescape_field(nonce)?))
    } else {
        Some((ts.checked_add(window_ms)?, key.to_owned(), nonce.to_owned()))
    }
}

fn log_line(keep_until: i64, key: &str, nonce: &str, out: &mut String) {
    out.push_str(&keep_until.to_string());
    out.push('\t');
    escape_field(key, out);
    out.push('\t');
    escape_field(nonce, out);
    out.push('\n');
}

/// The entries of the log at `path` still to be kept at `now_ms`, and the damage found.
fn live_entries(path: &Path, now_ms: i64, window_ms: i64) -> (Vec<(i64, String, String)>, NonceLogDamage) {
    let mut damage = NonceLogDamage::default();
    let Ok(bytes) = std::fs::read(path) else {
        // No log: a new data directory.
        return (Vec::new(), damage);
    };
    if bytes.is_empty() {
        // Every log this version writes starts with its header: an empty file was cut.
        damage.damaged_header = true;
        return (Vec::new(), damage);
    }
    let ends_with_newline = bytes.last().is_none_or(|b| *b == b'\n');
    let raw_lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let count = raw_lines.len() - usize::from(ends_with_newline);
    // The first line, complete (with its newline).
    let first = raw_lines[0];
    let complete = count > 1 || ends_with_newline;
    let v1 = complete && std::str::from_utf8(first).is_ok_and(|l| parse_line(l, false, window_ms).is_some());
    // Not the header and not a version-1 line (or the header without its newline: cut):
    // a damaged header; the rest is read as version 2 (the only version with a header).
    let header = complete && first == HEADER.as_bytes();
    damage.damaged_header = !(v1 || header);
    let v2 = !v1;
    let mut out = Vec::new();
    for (i, raw) in raw_lines.into_iter().take(count).enumerate() {
        if v2 && i == 0 {
            continue;
        }
        let last_torn = i + 1 == count && !ends_with_newline;
        if v2 {
            if let Some(rest) = raw.strip_prefix(UNTRUSTED.as_bytes()) {
                match std::str::from_utf8(rest).ok().and_then(|t| t.parse::<i64>().ok()) {
                    // Written whole by a rewrite, never appended: cut, it is damage (a
                    // new bound from this start covers the old one).
                    Some(_) if last_torn => damage.malformed_lines += 1,
                    Some(ms) => damage.untrusted_before = damage.untrusted_before.max(Some(ms)),
                    None => damage.malformed_lines += 1,
                }
                continue;
            }
        }
        if last_torn {
            // Every append ends with a newline: a last line without one was cut (even if
            // what is left parses, its nonce may be a prefix of the real one).
            damage.torn_tail = true;
            continue;
        }
        let parsed = std::str::from_utf8(raw).ok().and_then(|l| parse_line(l, v2, window_ms));
        match parsed {
            Some(e) if e.0 >= now_ms => out.push(e),
            Some(_) => {}
            None => damage.malformed_lines += 1,
        }
    }
    (out, damage)
}

impl NonceLog {
    /// Open (or create) the log in `data_dir`, remembering the nonces whose keep-until
    /// time is not before `now_ms`; the log is rewritten with those only. Malformed lines
    /// are reported (`warn`) and dropped.
    pub fn open(data_dir: &Path, durability: Durability, window_ms: i64, now_ms: i64) -> Result<NonceLog, StoreError> {
        Ok(Self::open_reporting(data_dir, durability, window_ms, now_ms)?.0)
    }

    /// [`NonceLog::open`], also returning what damage the log had.
    pub fn open_reporting(
        data_dir: &Path,
        durability: Durability,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(NonceLog, NonceLogDamage), StoreError> {
        let path = data_dir.join("nonces.log");
        let (entries, mut damage) = live_entries(&path, now_ms, window_ms);
        if damage.torn_tail {
            tracing::warn!(
                path = %path.display(),
                torn_lines = 1,
                kept = entries.len(),
                "nonce log: torn last line dropped (a crash during an append), log rewritten"
            );
        }
        if damage.loses_nonces() {
            // Requests seen before this start were signed at most a window after it.
            let bound = now_ms.saturating_add(window_ms);
            damage.untrusted_before = damage.untrusted_before.max(Some(bound));
            tracing::warn!(
                path = %path.display(),
                damaged_header = damage.damaged_header,
                malformed_lines = damage.malformed_lines,
                kept = entries.len(),
                untrusted_before_ms = bound,
                "nonce log is corrupt: nonces may have been lost; writes signed up to a window after \
                 this start are refused with ServiceUnavailable (they may be replays); log rewritten"
            );
        }
        // Once no accepted timestamp can be at or before the bound, it is dropped.
        let untrusted_before = damage
            .untrusted_before
            .filter(|b| b.saturating_add(window_ms) >= now_ms);
        if let (Some(b), false) = (untrusted_before, damage.loses_nonces()) {
            tracing::warn!(
                path = %path.display(),
                untrusted_before_ms = b,
                "nonce log was damaged at an earlier start: writes signed up to the bound are still refused"
            );
        }
        let mut seen = HashMap::new();
        let mut expiry = BinaryHeap::new();
        for (keep_until, key, nonce) in &entries {
            let h = key_hash(key, nonce);
            let slot = seen.entry(h).or_insert(*keep_until);
            *slot = (*slot).max(*keep_until);
            expiry.push(Reverse((*keep_until, h)));
        }
        let (file, file_bytes) = write_log(&path, &entries, untrusted_before)?;
        let log = NonceLog {
            path,
            window_ms,
            durability,
            untrusted_before,
            state: Mutex::new(State {
                file,
                file_bytes,
                seen,
                expiry,
                pending: String::new(),
            }),
        };
        Ok((log, damage))
    }

    /// Rewrite the log with only the live entries.
    fn compact(&self, st: &mut State, now_ms: i64) -> Result<(), StoreError> {
        let (entries, _) = live_entries(&self.path, now_ms, self.window_ms);
        let untrusted = self
            .untrusted_before
            .filter(|b| b.saturating_add(self.window_ms) >= now_ms);
        (st.file, st.file_bytes) = write_log(&self.path, &entries, untrusted)?;
        Ok(())
    }

    /// Record a batch of nonces `(access key, nonce, now, keep_until)` with one append; for
    /// each, whether it was new (`false` means a replay, also of an earlier entry of the
    /// same batch). A nonce is refused until its `keep_until` time has passed.
    ///
    /// When the append fails (disk full): with `durable` (a write request must not proceed
    /// on a nonce that a restart would forget) the error is returned and the batch leaves no
    /// trace (a retry is not a replay); without (a read may proceed), the nonces stay
    /// recorded in memory and their lines are written by the next append that succeeds.
    pub fn record_batch<'a>(
        &self,
        batch: impl Iterator<Item = (&'a str, &'a str, i64, i64)>,
        durable: bool,
    ) -> Result<Vec<bool>, StoreError> {
        let batch: Vec<_> = batch.collect();
        let newest = batch.iter().map(|(_, _, now, _)| *now).max().unwrap_or(i64::MIN);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Forget first what may be accepted again.
        forget_before(&mut st, newest);
        let mut out = Vec::new();
        let pending_len = st.pending.len();
        let mut text = std::mem::take(&mut st.pending);
        let mut added = Vec::new();
        for (key, nonce, now, keep_until) in batch {
            let keep_until = keep_until.max(now);
            let h = key_hash(key, nonce);
            // An entry past its keep-until time may still be indexed (forgotten below).
            let fresh = st.seen.get(&h).is_none_or(|until| *until < now);
            if fresh {
                st.seen.insert(h, keep_until);
                st.expiry.push(Reverse((keep_until, h)));
                log_line(keep_until, key, nonce, &mut text);
                added.push(h);
            }
            out.push(fresh);
        }
        let appended = self.append(&mut st, &text);
        if appended.is_err() {
            if durable {
                // The batch did not happen: a retry of the same request is not a replay.
                text.truncate(pending_len);
                for h in added {
                    st.seen.remove(&h);
                }
            }
            if text.len() <= MAX_PENDING_BYTES {
                st.pending = text;
            }
        }
        match appended {
            Ok(()) => {
                if st.file_bytes > COMPACT_AT_BYTES && st.file_bytes > 4 * 60 * st.seen.len() as u64 {
                    if let Err(e) = self.compact(&mut st, newest) {
                        tracing::warn!(error = %e, "nonce log compaction failed; appending to the old log");
                    }
                }
                Ok(out)
            }
            Err(e) if durable => Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "nonce log append failed; nonces kept in memory until it succeeds");
                Ok(out)
            }
        }
    }

    /// Append `text` (possibly empty); on failure the file is cut back to its last
    /// complete line, so a later append never continues a torn one.
    fn append(&self, st: &mut State, text: &str) -> Result<(), StoreError> {
        if text.is_empty() {
            return Ok(());
        }
        let written = st.file.write_all(text.as_bytes()).and_then(|()| {
            if self.durability == Durability::Full {
                st.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                st.file_bytes += text.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = st.file.set_len(st.file_bytes);
                Err(io(e))
            }
        }
    }

    /// Record one nonce, kept until `keep_until_ms`; `false` when it was already used.
    /// See [`NonceLog::record_batch`] for `durable`. Without the request's timestamp, a
    /// damaged log's bound is applied to the earliest timestamp the request can carry.
    pub fn record(
        &self,
        access_key_id: &str,
        nonce: &str,
        now_ms: i64,
        keep_until_ms: i64,
        durable: bool,
    ) -> Result<bool, StoreError> {
        // keep_until = max(now, signed_at) + window: signed_at is known when it is ahead of
        // now, else it is at least now - window (older is not accepted).
        let ahead = keep_until_ms.saturating_sub(self.window_ms);
        let earliest = if ahead > now_ms {
            ahead
        } else {
            now_ms.saturating_sub(self.window_ms)
        };
        self.record_signed(access_key_id, nonce, now_ms, earliest, keep_until_ms, durable)
    }

    /// [`NonceLog::record`] for a request signed at `signed_at_ms`: a write (`durable`)
    /// signed at or before a damaged log's bound is refused ([`StoreError::Unavailable`])
    /// and its nonce not recorded.
    pub fn record_signed(
        &self,
        access_key_id: &str,
        nonce: &str,
        now_ms: i64,
        signed_at_ms: i64,
        keep_until_ms: i64,
        durable: bool,
    ) -> Result<bool, StoreError> {
        if let Some(bound) = self.untrusted_before.filter(|b| durable && signed_at_ms <= *b) {
            return Err(StoreError::Unavailable(format!(
                "nonce log: damaged at start, so writes signed at or before {bound} ms (epoch) are \
                 refused (they may replay a lost nonce)"
            )));
        }
        Ok(self
            .record_batch(std::iter::once((access_key_id, nonce, now_ms, keep_until_ms)), durable)?
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

    /// Writes signed at or before this time (ms) are refused (a damaged log; see the
    /// module docs).
    pub fn untrusted_before(&self) -> Option<i64> {
        self.untrusted_before
    }
}

impl vpnroute_store::NonceStore for NonceLog {
    fn record(
        &self,
        access_key_id: &str,
        nonce: &str,
        now_ms: i64,
        keep_until_ms: i64,
        durable: bool,
    ) -> Result<bool, StoreError> {
        NonceLog::record(self, access_key_id, nonce, now_ms, keep_until_ms, durable)
    }

    fn record_signed(
        &self,
        access_key_id: &str,
        nonce: &str,
        now_ms: i64,
        signed_at_ms: i64,
        keep_until_ms: i64,
        durable: bool,
    ) -> Result<bool, StoreError> {
        NonceLog::record_signed(self, access_key_id, nonce, now_ms, signed_at_ms, keep_until_ms, durable)
    }

    fn remembered(&self) -> usize {
        self.len()
    }
}

/// Drop the remembered nonces whose keep-until time is before `now_ms`.
fn forget_before(st: &mut State, now_ms: i64) {
    while let Some(&Reverse((keep_until, h))) = st.expiry.peek() {
        if keep_until >= now_ms {
            break;
        }
        st.expiry.pop();
        if st.seen.get(&h) == Some(&keep_until) {
            st.seen.remove(&h);
        }
    }
}

/// Replace the log at `path` with a header, the damaged-log bound if any, and `entries`
/// (write, sync, atomic rename); returns the log opened for appending and its size.
fn write_log(
    path: &Path,
    entries: &[(i64, String, String)],
    untrusted_before: Option<i64>,
) -> Result<(File, u64), StoreError> {
    let tmp = path.with_extension("log.tmp");
    let mut text = format!("{HEADER}\n");
    if let Some(bound) = untrusted_before {
        text.push_str(&format!("{UNTRUSTED}{bound}\n"));
    }
    for (keep_until, key, nonce) in entries {
        log_line(*keep_until, key, nonce, &mut text);
    }
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    let file = OpenOptions::new().append(true).open(path).map_err(io)?;
    Ok((file, text.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 15 * 60 * 1000;

    fn batch<'a>(log: &NonceLog, items: &[(&'a str, &'a str, i64)]) -> Vec<bool> {
        log.record_batch(items.iter().map(|(k, n, t)| (*k, *n, *t, t + WINDOW)), true)
            .unwrap()
    }

    #[test]
    fn nonces_are_single_use_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 10).unwrap();
            let r = batch(&log, &[("k", "n1", 10), ("k", "n2", 10), ("k", "n1", 10)]);
            assert_eq!(r, vec![true, true, false]);
        }
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 11).unwrap();
        assert_eq!(batch(&log, &[("k", "n1", 11), ("k2", "n1", 11)]), vec![false, true]);
    }

    #[test]
    fn nonces_with_any_bytes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let odd = [
            "dur\nnl-1",
            "tab\there",
            "cr\rx",
            "pct%0A",
            "%",
            "uni\u{202e}code\u{7f}",
            "a\tb\tc",
        ];
        {
            let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 10).unwrap();
            for n in odd {
                assert!(log.record("k\tey", n, 10, 10 + WINDOW, true).unwrap(), "{n:?}");
            }
        }
        let (log, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, 11).unwrap();
        assert_eq!(damage, NonceLogDamage::default());
        for n in odd {
            assert!(
                !log.record("k\tey", n, 11, 11 + WINDOW, true).unwrap(),
                "{n:?} replayed"
            );
        }
        assert!(log.record("k\tey", "pct\n", 11, 11 + WINDOW, true).unwrap());
    }

    #[test]
    fn a_nonce_is_kept_until_its_timestamp_window_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 0).unwrap();
        // Seen at 0, signed 14.5 min in the future: refusable until 29.5 min.
        let keep = 14 * 60_000 + 30_000 + WINDOW;
        assert!(log.record("k", "future", 0, keep, true).unwrap());
        assert!(!log
            .record("k", "future", WINDOW + 1, WINDOW + 1 + WINDOW, true)
            .unwrap());
        drop(log);
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, keep - 1).unwrap();
        assert!(
            !log.record("k", "future", keep - 1, keep - 1 + WINDOW, true).unwrap(),
            "after restart too"
        );
        assert!(log.record("k", "other", keep + 1, keep + 1 + WINDOW, true).unwrap());
        assert!(
            log.record("k", "future", keep + 2, keep + 2 + WINDOW, true).unwrap(),
            "window passed"
        );
    }

    #[test]
    fn old_nonces_are_forgotten_and_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, 0).unwrap();
        batch(&log, &[("k", "old", 0)]);
        // Past the window the same nonce is accepted again (Alibaba: unique within 15 min).
        assert_eq!(batch(&log, &[("k", "new", WINDOW + 1)]), vec![true]);
        assert_eq!(log.len(), 1);
        drop(log);
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, WINDOW + 2).unwrap();
        assert_eq!(log.len(), 1);
        let text = std::fs::read_to_string(dir.path().join("nonces.log")).unwrap();
        assert!(!text.contains("old") && text.contains("new"), "{text}");
    }

    #[test]
    fn a_torn_line_is_ignored_and_a_version_1_log_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nonces.log"), "5\tk\tn1\n6\tk").unwrap();
        let (log, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, 10).unwrap();
        assert_eq!(
            damage,
            NonceLogDamage {
                malformed_lines: 0,
                torn_tail: true,
                ..NonceLogDamage::default()
            }
        );
        assert_eq!(batch(&log, &[("k", "n1", 10)]), vec![false]);
    }

    #[test]
    fn a_corrupt_log_is_reported_and_rewritten_with_its_valid_lines() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{HEADER}\n{}\tk\tgood\ngarbage\n\u{0}\u{0}\u{0}\n99\tk\tbad%zz\n",
            WINDOW
        );
        std::fs::write(dir.path().join("nonces.log"), text).unwrap();
        let (log, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, 10).unwrap();
        assert_eq!(damage.malformed_lines, 3);
        assert_eq!(batch(&log, &[("k", "good", 10)]), vec![false]);
        drop(log);
        // Lost nonces: writes signed up to a window after the start are refused.
        assert!(matches!(
            log_write(dir.path(), 10, 10 + WINDOW),
            Err(StoreError::Unavailable(_))
        ));
        let (_, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, 11).unwrap();
        assert_eq!(
            damage,
            NonceLogDamage {
                untrusted_before: Some(10 + WINDOW),
                ..NonceLogDamage::default()
            },
            "rewritten clean, the bound kept"
        );
    }

    /// One durable record (a write) signed at `signed_at` on the log in `dir`, opened at 10.
    fn log_write(dir: &Path, now: i64, signed_at: i64) -> Result<bool, StoreError> {
        let log = NonceLog::open(dir, Durability::Process, WINDOW, now)?;
        log.record_signed("k", "w", now, signed_at, signed_at.max(now) + WINDOW, true)
    }

    /// A version-2 log holding `nonces` (seen at 0), as the server writes it.
    fn v2_log(dir: &Path, nonces: &[&str]) -> Vec<u8> {
        let log = NonceLog::open(dir, Durability::Process, WINDOW, 0).unwrap();
        for n in nonces {
            assert!(log.record("k", n, 0, WINDOW, true).unwrap());
        }
        drop(log);
        std::fs::read(dir.join("nonces.log")).unwrap()
    }

    #[test]
    fn a_torn_last_line_is_reported_and_nothing_else_changes() {
        let dir = tempfile::tempdir().unwrap();
        let text = v2_log(dir.path(), &["n1", "n2"]);
        std::fs::write(dir.path().join("nonces.log"), &text[..text.len() - 3]).unwrap();
        let (log, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, 1).unwrap();
        assert_eq!(
            damage,
            NonceLogDamage {
                torn_tail: true,
                ..NonceLogDamage::default()
            }
        );
        assert!(!damage.loses_nonces());
        assert_eq!(log.untrusted_before(), None);
        assert_eq!(batch(&log, &[("k", "n1", 1)]), vec![false]);
        // The torn line's request never ran: its nonce is free, writes are not refused.
        assert!(log.record_signed("k", "n2", 1, 1, 1 + WINDOW, true).unwrap());
    }

    #[test]
    fn a_log_cut_in_its_header_refuses_writes_signed_within_a_window_of_the_start() {
        for cut in [0, 1, 5, HEADER.len()] {
            let dir = tempfile::tempdir().unwrap();
            let text = v2_log(dir.path(), &["dur\nnl-1"]);
            std::fs::write(dir.path().join("nonces.log"), &text[..cut]).unwrap();
            let now = 1_000;
            let (log, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, now).unwrap();
            assert!(damage.damaged_header, "cut at {cut}: {damage:?}");
            assert!(!damage.torn_tail, "cut at {cut}");
            assert_eq!(log.untrusted_before(), Some(now + WINDOW));
            // The lost nonce, replayed as a write signed before the start: refused, and
            // the refusal consumes nothing.
            for _ in 0..2 {
                let r = log.record_signed("k", "dur\nnl-1", now, 0, now + WINDOW, true);
                assert!(matches!(r, Err(StoreError::Unavailable(_))), "cut at {cut}: {r:?}");
            }
            // Also a fresh write signed now, or at the last timestamp a request seen before
            // the start could carry.
            for signed in [now, now + WINDOW] {
                let r = log.record_signed("k", "fresh", now, signed, signed + WINDOW, true);
                assert!(matches!(r, Err(StoreError::Unavailable(_))), "{signed}");
            }
            // Through the trait's record (no timestamp): refused as well.
            let r = log.record("k", "fresh", now, now + WINDOW, true);
            assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
            // A read is served; a write signed after the bound is accepted.
            assert!(log.record_signed("k", "read", now, now, now + WINDOW, false).unwrap());
            let after = now + WINDOW + 1;
            assert!(log
                .record_signed("k", "late", now, after, after + WINDOW, true)
                .unwrap());
        }
    }

    #[test]
    fn a_damaged_header_keeps_escaped_nonces_and_the_bound_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = v2_log(dir.path(), &["dur\nnl-1", "pct%41"]);
        text[2] = b'X';
        std::fs::write(dir.path().join("nonces.log"), &text).unwrap();
        let (log, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, 5).unwrap();
        assert!(damage.damaged_header && damage.malformed_lines == 0, "{damage:?}");
        // The entries are still read as version 2: the escaped nonces still match.
        assert_eq!(
            batch(&log, &[("k", "dur\nnl-1", 5), ("k", "pct%41", 5), ("k", "pctA", 5)]),
            vec![false, false, true]
        );
        drop(log);
        // A restart inside the window keeps the bound (from the rewritten log).
        let (log, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, 6).unwrap();
        assert!(!damage.loses_nonces(), "{damage:?}");
        assert_eq!(log.untrusted_before(), Some(5 + WINDOW));
        assert!(log.record_signed("k", "w", 6, 6, 6 + WINDOW, true).is_err());
        drop(log);
        // Once no timestamp at or before the bound is accepted, it is dropped.
        let later = 5 + 2 * WINDOW + 1;
        let log = NonceLog::open(dir.path(), Durability::Process, WINDOW, later).unwrap();
        assert_eq!(log.untrusted_before(), None);
        assert!(log.record_signed("k", "w", later, later, later + WINDOW, true).unwrap());
        let text = std::fs::read_to_string(dir.path().join("nonces.log")).unwrap();
        assert!(!text.contains("untrusted"), "{text}");
    }

    #[test]
    fn a_version_1_log_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nonces.log"), "5\tk\tn%41\n").unwrap();
        let (log, damage) = NonceLog::open_reporting(dir.path(), Durability::Process, WINDOW, 10).unwrap();
        assert_eq!(damage, NonceLogDamage::default());
        // Version 1 is unescaped: the nonce is the literal text.
        assert_eq!(batch(&log, &[("k", "n%41", 10), ("k", "nA", 10)]), vec![false, true]);
        assert!(log.record_signed("k", "w", 10, 10, 10 + WINDOW, true).unwrap());
    }

    #[test]
    fn escaping_round_trips() {
        for s in ["", "plain", "%", "%25", "\n\t\r", "\u{1}\u{1f}\u{7f}", "é\u{202e}"] {
            let mut e = String::new();
            escape_field(s, &mut e);
            assert!(!e.contains(['\n', '\t', '\r']), "{e:?}");
            assert_eq!(unescape_field(&e).as_deref(), Some(s));
        }
        assert_eq!(unescape_field("%G0"), None);
        assert_eq!(unescape_field("%4"), None);
        assert_eq!(unescape_field("a\tb"), None);
    }
}
