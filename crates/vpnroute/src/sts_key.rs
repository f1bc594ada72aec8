//! The STS token key, kept in the store (setting `sts_key`) so that every replica signs and
//! verifies session tokens with the same key, and `vpnroute admin sts assume` issues tokens
//! every replica accepts. A data directory's `sts.key` file from an earlier version is
//! adopted as the key the first time (tokens issued before the upgrade stay valid).

use std::path::Path;

use anyhow::Context;
use vpnroute_ram::token::TokenKey;
use vpnroute_store::{Store, StoreError};

/// The store setting holding the key (64 hex characters).
const STS_KEY_SETTING: &str = "sts_key";
/// Where earlier versions kept the key, in the data directory.
const LEGACY_KEY_FILE: &str = "sts.key";

/// The service's STS token key, created on first use (by whichever process gets there first).
pub fn sts_key(store: &dyn Store, data_dir: &Path) -> anyhow::Result<TokenKey> {
    let stored = |store: &dyn Store| store.read(|tx| tx.setting(STS_KEY_SETTING));
    let hex = match stored(store)? {
        Some(hex) => hex,
        None => {
            let legacy = data_dir.join(LEGACY_KEY_FILE);
            let candidate = match std::fs::read_to_string(&legacy) {
                Ok(text) => TokenKey::from_hex(text.trim())
                    .with_context(|| format!("{} is not 64 hex characters", legacy.display()))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenKey::generate(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", legacy.display())),
            };
            store.write(|tx| tx.put_setting_if_absent(STS_KEY_SETTING, &candidate.to_hex()))?;
            stored(store)?.ok_or_else(|| StoreError::Other("the STS key setting vanished".into()))?
        }
    };
    TokenKey::from_hex(&hex).context("the stored STS key is not 64 hex characters")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vpnroute_store::{Durability, Store};
    use vpnroute_store_sqlite::SqliteStore;

    use super::*;

    #[test]
    fn one_key_per_store_and_a_legacy_file_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = SqliteStore::open(&dir.path().join("db"), Durability::Process).unwrap();
        let first = sts_key(&*store, dir.path()).unwrap().to_hex();
        assert_eq!(
            sts_key(&*store, dir.path()).unwrap().to_hex(),
            first,
            "the same key every time"
        );
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(
            sts_key(&*store, elsewhere.path()).unwrap().to_hex(),
            first,
            "whatever the data directory: the key is the store's"
        );

        let upgraded = tempfile::tempdir().unwrap();
        let legacy = TokenKey::generate().to_hex();
        std::fs::write(upgraded.path().join(LEGACY_KEY_FILE), format!("{legacy}\n")).unwrap();
        let store: Arc<dyn Store> = SqliteStore::open(&upgraded.path().join("db"), Durability::Process).unwrap();
        assert_eq!(
            sts_key(&*store, upgraded.path()).unwrap().to_hex(),
            legacy,
            "the old file's key is kept"
        );
    }
}
