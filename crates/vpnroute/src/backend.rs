//! Which store the server and `vpnroute admin` use (`--store`, `VPNROUTE_STORE`): the
//! embedded SQLite database in the data directory (the default), or a PostgreSQL database
//! shared by any number of replicas. [`open`] opens the store with the state that goes with
//! it: the signature nonces and the rate limiter (on SQLite a nonce log in the data
//! directory and this process's own counters; on PostgreSQL tables shared by every replica)
//! and, through [`vpnroute_store::Store::change_feed`], the commit generation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use vpnroute_store::{Durability, FixedWindowLimiter, NonceStore, RateLimiter, Store};
use vpnroute_store_postgres::PgStore;
use vpnroute_store_sqlite::SqliteStore;

/// A `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// SQLite in this directory (`None`: the data directory).
    Sqlite(Option<PathBuf>),
    /// A PostgreSQL connection string.
    Postgres(String),
}

impl StoreSpec {
    /// `postgres://…` / `postgresql://…`; `sqlite:` (the data directory), `sqlite:DIR` or a
    /// directory path (SQLite in that directory). A malformed PostgreSQL string is refused
    /// here, so clap reports it as a usage error (exit status 2).
    pub fn parse(s: &str) -> Result<StoreSpec, String> {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            vpnroute_store_postgres::check_connection_string(s)?;
            return Ok(StoreSpec::Postgres(s.to_string()));
        }
        let path = s.strip_prefix("sqlite:").unwrap_or(s);
        if path.is_empty() {
            return Ok(StoreSpec::Sqlite(None));
        }
        if path.contains("://") {
            return Err(format!(
                "unknown store {s:?}: use postgres://USER@HOST:PORT/DB, sqlite: or a directory"
            ));
        }
        Ok(StoreSpec::Sqlite(Some(PathBuf::from(path))))
    }
}

/// An open store and the state that belongs with it.
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub nonces: Arc<dyn NonceStore>,
    pub rate_limiter: Box<dyn RateLimiter>,
}

/// Open the store of `spec` (`None`: SQLite in `data_dir`), its nonce store remembering
/// `nonce_window_ms` back from `now_ms`, and a rate limiter of `rps` calls per second per
/// (key, action).
pub fn open(
    spec: Option<&StoreSpec>,
    data_dir: &Path,
    durability: Durability,
    nonce_window_ms: i64,
    now_ms: i64,
    rps: u32,
) -> anyhow::Result<Backend> {
    match spec {
        Some(StoreSpec::Postgres(url)) => {
            let pg = PgStore::open(url).context("opening the PostgreSQL store")?;
            Ok(Backend {
                nonces: Arc::new(pg.nonces()),
                rate_limiter: Box::new(pg.rate_limiter(rps)),
                store: pg,
            })
        }
        Some(StoreSpec::Sqlite(dir)) => sqlite(
            dir.as_deref().unwrap_or(data_dir),
            durability,
            nonce_window_ms,
            now_ms,
            rps,
        ),
        None => sqlite(data_dir, durability, nonce_window_ms, now_ms, rps),
    }
}

fn sqlite(dir: &Path, durability: Durability, window_ms: i64, now_ms: i64, rps: u32) -> anyhow::Result<Backend> {
    let store =
        SqliteStore::open(dir, durability).with_context(|| format!("opening the data directory {}", dir.display()))?;
    let nonces = SqliteStore::open_nonces(dir, durability, window_ms, now_ms)?;
    Ok(Backend {
        store,
        nonces: Arc::new(nonces),
        rate_limiter: Box::new(FixedWindowLimiter::new(rps)),
    })
}

/// Only the store, for commands that need nothing else (`admin`, `explain`).
pub fn open_store(spec: Option<&StoreSpec>, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match spec {
        Some(StoreSpec::Postgres(url)) => PgStore::open(url).context("opening the PostgreSQL store")?,
        Some(StoreSpec::Sqlite(Some(dir))) => SqliteStore::open(dir, Durability::Process)
            .with_context(|| format!("opening the data directory {}", dir.display()))?,
        _ => SqliteStore::open(data_dir, Durability::Process)
            .with_context(|| format!("opening the data directory {}", data_dir.display()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs() {
        assert_eq!(StoreSpec::parse("sqlite:").unwrap(), StoreSpec::Sqlite(None));
        assert_eq!(
            StoreSpec::parse("sqlite:/var/lib/vr").unwrap(),
            StoreSpec::Sqlite(Some("/var/lib/vr".into()))
        );
        assert_eq!(
            StoreSpec::parse("./data").unwrap(),
            StoreSpec::Sqlite(Some("./data".into()))
        );
        assert_eq!(
            StoreSpec::parse("postgres://postgres@127.0.0.1:5432/vr").unwrap(),
            StoreSpec::Postgres("postgres://postgres@127.0.0.1:5432/vr".into())
        );
        assert!(StoreSpec::parse("postgres://u@h:notaport/db").is_err());
        assert!(StoreSpec::parse("mysql://u@h/db").is_err());
    }
}
