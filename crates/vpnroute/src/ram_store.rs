//! RAM state in the store, shared by the server and `vpnroute admin`: each account's RAM
//! directory document, its RAM users' access keys (rows of the key table naming their user),
//! RAM calls run in a transaction, and the STS token key in the data directory.

use std::path::Path;

use anyhow::Context;
use serde_json::Value;
use vpnroute_domain::ids::new_secret;
use vpnroute_domain::ApiError;
use vpnroute_ram::directory::{Directory, Limits};
use vpnroute_ram::identity::{Identity, Service};
use vpnroute_ram::ram_api::{self, Call, KeyInfo, Params, UserKeys};
use vpnroute_ram::token::TokenKey;
use vpnroute_ram::RequestContext;
use vpnroute_store::{AccessKey, ReadTx, WriteTx};

/// The file holding the STS token key (64 hex characters), in the data directory.
pub const STS_KEY_FILE: &str = "sts.key";

/// The data directory's STS token key, created (mode 0600) on first use.
pub fn sts_key(data_dir: &Path) -> anyhow::Result<TokenKey> {
    let path = data_dir.join(STS_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => TokenKey::from_hex(&text).with_context(|| format!("{} is not 64 hex characters", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key = TokenKey::generate();
            let tmp = data_dir.join(format!("{STS_KEY_FILE}.tmp"));
            {
                use std::io::Write;
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp)?;
                f.write_all(key.to_hex().as_bytes())?;
                f.sync_all()?;
            }
            // Two processes starting at once: the first rename wins, both then read it.
            if std::fs::hard_link(&tmp, &path).is_err() && !path.exists() {
                std::fs::rename(&tmp, &path)?;
            }
            let _ = std::fs::remove_file(&tmp);
            sts_key(data_dir)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The account's RAM directory (empty when it has none yet).
pub fn load_directory(tx: &dyn ReadTx, account_id: &str) -> Result<Directory, ApiError> {
    match tx.ram_directory(account_id)? {
        None => Ok(Directory::default()),
        // Written by this code only; unreadable means a corrupt database.
        Some(doc) => Directory::from_json(&doc).map_err(|_| ApiError::INTERNAL_ERROR),
    }
}

/// The transaction a RAM call runs in: reads (Get*/List*) or writes.
#[derive(Clone, Copy)]
pub enum RamTx<'a> {
    Read(&'a dyn ReadTx),
    Write(&'a dyn WriteTx),
}

impl RamTx<'_> {
    fn read(&self) -> &dyn ReadTx {
        match *self {
            RamTx::Read(tx) => tx,
            RamTx::Write(tx) => tx,
        }
    }

    fn write(&self) -> Result<&dyn WriteTx, ApiError> {
        match *self {
            RamTx::Write(tx) => Ok(tx),
            // `ram_api::mutates` routes every changing action to a write transaction.
            RamTx::Read(_) => Err(ApiError::INTERNAL_ERROR),
        }
    }
}

/// The account's RAM users' keys, in the key table.
struct TxUserKeys<'a> {
    tx: RamTx<'a>,
    account_id: &'a str,
}

fn key_info(k: AccessKey) -> KeyInfo {
    KeyInfo {
        id: k.id,
        secret: None,
        status: k.status,
        created: k.created_at / 1000,
    }
}

impl UserKeys for TxUserKeys<'_> {
    fn list(&mut self, user_id: &str) -> Result<Vec<KeyInfo>, ApiError> {
        let keys = self.tx.read().ram_user_access_keys(self.account_id, user_id)?;
        Ok(keys.into_iter().map(key_info).collect())
    }

    fn create(&mut self, user_id: &str, now: i64) -> Result<KeyInfo, ApiError> {
        let key = AccessKey {
            id: format!("LTAI{}", new_secret(20)),
            account_id: self.account_id.to_string(),
            secret: new_secret(30),
            status: "Active".into(),
            created_at: now * 1000,
            ram_user_id: Some(user_id.to_string()),
        };
        self.tx.write()?.insert_access_key(&key)?;
        let secret = key.secret.clone();
        Ok(KeyInfo {
            secret: Some(secret),
            ..key_info(key)
        })
    }

    fn set_status(&mut self, user_id: &str, key_id: &str, status: &str) -> Result<bool, ApiError> {
        if !self.owns(user_id, key_id)? {
            return Ok(false);
        }
        Ok(self.tx.write()?.set_access_key_status(key_id, status)?)
    }

    fn delete(&mut self, user_id: &str, key_id: &str) -> Result<bool, ApiError> {
        if !self.owns(user_id, key_id)? {
            return Ok(false);
        }
        Ok(self.tx.write()?.delete_access_key(key_id)?)
    }
}

impl TxUserKeys<'_> {
    fn owns(&self, user_id: &str, key_id: &str) -> Result<bool, ApiError> {
        Ok(self
            .tx
            .read()
            .access_key(key_id)?
            .is_some_and(|k| k.account_id == self.account_id && k.ram_user_id.as_deref() == Some(user_id)))
    }
}

/// Runs a RAM API call for `identity` in `tx`: authorizes `ram:<Action>` on the entities it
/// names, runs it on the caller's account and stores the directory back when it changed.
pub fn ram_call(
    tx: RamTx<'_>,
    identity: &Identity,
    action: &str,
    params: &dyn Params,
    now_ms: i64,
    context: &RequestContext,
) -> Result<Value, ApiError> {
    let account_id = identity.principal.account_id();
    let limits = Limits::default();
    let call = Call {
        action,
        params,
        caller: &identity.principal,
        now: now_ms / 1000,
        limits: &limits,
    };
    let (ram_action, resources) = ram_api::permission(&call)?;
    identity
        .check(Service::Ram, &ram_action, &resources, context)
        .map_err(|d| d.into_api_error())?;
    let mut directory = load_directory(tx.read(), account_id)?;
    let before = directory.clone();
    let mut keys = TxUserKeys { tx, account_id };
    let body = ram_api::handle(&call, &mut directory, &mut keys)?;
    if directory != before {
        tx.write()?.put_ram_directory(account_id, &directory.to_json())?;
    }
    Ok(body)
}
