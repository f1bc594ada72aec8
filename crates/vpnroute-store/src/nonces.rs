//! Signature nonces live in their own database file (`nonces.db`). Every signed request
//! records one, so keeping them out of `vpnroute.db` means the API's reads are not slowed by
//! a write per request: in WAL mode a reader drops its whole page cache whenever the
//! database changed since its last transaction.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection};

use crate::{Durability, StoreError};

pub struct NonceLog {
    conn: Mutex<Connection>,
}

impl NonceLog {
    pub fn open(data_dir: &Path, durability: Durability) -> Result<NonceLog, StoreError> {
        let conn = crate::open_conn(&data_dir.join("nonces.db"), durability)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS nonces (
                access_key_id TEXT NOT NULL,
                nonce         TEXT NOT NULL,
                seen_at       BIGINT NOT NULL,
                PRIMARY KEY (access_key_id, nonce)
            );
            CREATE INDEX IF NOT EXISTS nonces_seen_at ON nonces(seen_at);",
        )?;
        Ok(NonceLog { conn: Mutex::new(conn) })
    }

    /// Record a batch of nonces in one transaction; for each, whether it was new (`false`
    /// means a replay).
    pub fn record_batch<'a>(
        &self,
        batch: impl Iterator<Item = (&'a str, &'a str, i64)>,
    ) -> Result<Vec<bool>, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // Cached BEGIN/COMMIT: this runs for every signed request (in batches).
        let exec = |sql: &str| -> Result<(), StoreError> {
            conn.prepare_cached(sql)?.execute([])?;
            Ok(())
        };
        if !conn.is_autocommit() {
            exec("ROLLBACK")?;
        }
        exec("BEGIN IMMEDIATE")?;
        let inserted = (|| -> Result<Vec<bool>, StoreError> {
            let mut st = conn.prepare_cached(
                "INSERT INTO nonces(access_key_id, nonce, seen_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?;
            let mut out = Vec::new();
            for (key, nonce, now) in batch {
                out.push(st.execute(params![key, nonce, now])? == 1);
            }
            Ok(out)
        })();
        match inserted {
            Ok(out) => {
                if let Err(e) = exec("COMMIT") {
                    let _ = exec("ROLLBACK");
                    return Err(e);
                }
                Ok(out)
            }
            Err(e) => {
                let _ = exec("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Forget nonces older than `older_than_ms`.
    pub fn prune(&self, older_than_ms: i64) -> Result<usize, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(conn.execute("DELETE FROM nonces WHERE seen_at < ?1", params![older_than_ms])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_single_use_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = NonceLog::open(dir.path(), Durability::Process).unwrap();
            let r = log
                .record_batch([("k", "n1", 10), ("k", "n2", 10), ("k", "n1", 10)].into_iter())
                .unwrap();
            assert_eq!(r, vec![true, true, false]);
        }
        let log = NonceLog::open(dir.path(), Durability::Process).unwrap();
        assert_eq!(
            log.record_batch([("k", "n1", 11), ("k2", "n1", 11)].into_iter())
                .unwrap(),
            vec![false, true]
        );
        assert_eq!(log.prune(11).unwrap(), 2);
    }
}
