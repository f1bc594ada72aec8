//! RAM (2015-05-01) and STS (2015-04-01) on the RPC endpoint and RAM enforcement of the VPC
//! operations: the glue between [`vpnroute_ram`] (the rules, no I/O) and the store. Each
//! account's RAM directory is one document ([`ReadTx::ram_directory`]); its RAM users' access
//! keys are rows of the key table naming their user; STS sessions live only in their tokens.

use serde_json::Value;
use vpnroute_domain::ids::new_secret;
use vpnroute_domain::ApiError;
use vpnroute_ram::directory::{Directory, Limits};
use vpnroute_ram::identity::{Identity, Service};
use vpnroute_ram::ram_api::{self, Call, KeyInfo, Params, UserKeys, WireParams};
use vpnroute_ram::sts_api::{self, CallerPolicies};
use vpnroute_ram::token::TokenKey;
use vpnroute_ram::RequestContext;
use vpnroute_store::{AccessKey, ReadTx, WriteTx};

use crate::dispatch::Handler;
use crate::reply::Reply;
use crate::state::Ctx;

/// RAM's API version.
pub const RAM_VERSION: &str = "2015-05-01";
/// STS's API version.
pub const STS_VERSION: &str = "2015-04-01";

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

/// Who a request's AccessKeyId (and SecurityToken) names, and the secret its signature must
/// be made with.
pub struct KeyHolder {
    pub account_id: String,
    pub access_key_id: String,
    pub secret: String,
    pub identity: Identity,
}

/// Resolves an AccessKeyId: an account's or RAM user's key from the key table, or an STS
/// session (`STS.` prefix) from its SecurityToken, verified with the server's token key.
pub fn key_holder(
    tx: &dyn ReadTx,
    access_key_id: &str,
    security_token: Option<&str>,
    sts_key: &TokenKey,
    now_ms: i64,
) -> Result<KeyHolder, ApiError> {
    if vpnroute_ram::token::is_sts_access_key_id(access_key_id) {
        let now =
            time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000)).map_err(|_| ApiError::INTERNAL_ERROR)?;
        let verified = vpnroute_ram::token::verify(sts_key, access_key_id, security_token, now)?;
        let directory = load_directory(tx, &verified.claims.account_id)?;
        let session = vpnroute_ram::sts_api::session(&verified.claims, &directory)?;
        return Ok(KeyHolder {
            account_id: verified.claims.account_id,
            access_key_id: access_key_id.to_string(),
            secret: verified.access_key_secret,
            identity: Identity::session(session),
        });
    }
    let key = tx
        .access_key(access_key_id)?
        .ok_or(ApiError::INVALID_ACCESS_KEY_NOT_FOUND)?;
    if key.status != vpnroute_domain::status::KeyStatus::Active.as_str() {
        return Err(ApiError::INVALID_ACCESS_KEY_INACTIVE);
    }
    let identity = match &key.ram_user_id {
        None => Identity::root(&key.account_id),
        Some(user_id) => Identity::user(&key.account_id, user_id, &load_directory(tx, &key.account_id)?)?,
    };
    Ok(KeyHolder {
        account_id: key.account_id,
        access_key_id: key.id,
        secret: key.secret,
        identity,
    })
}

/// Refuses a VPC operation the caller's policies do not allow (root: never). Runs after
/// authentication and once the parameters parse (the ARNs come from the typed input), before
/// the handler looks at any resource.
pub fn enforce_vpc(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    if ctx.identity.principal.is_root() {
        return Ok(());
    }
    let op = crate::ops::operation(ctx.action).ok_or(ApiError::INVALID_ACTION)?;
    let resources = (op.resources)(ctx)?;
    ctx.identity
        .check(Service::Vpc, op.ram_action, &resources, &ctx.request_context())
        .map_err(|d| d.into_api_error())
}

/// The handler of a RAM action: Get*/List* read, the rest write.
pub fn ram_handler(action: &str) -> Option<Handler> {
    if !ram_api::is_action(action) {
        None
    } else if ram_api::mutates(action) {
        Some(Handler::Write(ram_write))
    } else {
        Some(Handler::Read(ram_read))
    }
}

fn ram_read(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Reply, ApiError> {
    rpc_ram_call(ctx, RamTx::Read(tx)).map(Reply::Value)
}

fn ram_write(ctx: &Ctx<'_>, tx: &dyn WriteTx) -> Result<Value, ApiError> {
    rpc_ram_call(ctx, RamTx::Write(tx))
}

fn rpc_ram_call(ctx: &Ctx<'_>, tx: RamTx<'_>) -> Result<Value, ApiError> {
    let context = ctx.request_context();
    ram_call(
        tx,
        &ctx.identity,
        ctx.action,
        &WireParams(ctx.params),
        ctx.now_ms,
        &context,
    )
}

/// The handler of an STS action (both only read).
pub fn sts_handler(action: &str) -> Option<Handler> {
    match action {
        "GetCallerIdentity" => Some(Handler::Read(get_caller_identity)),
        "AssumeRole" => Some(Handler::Read(assume_role)),
        _ => None,
    }
}

fn get_caller_identity(ctx: &Ctx<'_>, _tx: &dyn ReadTx) -> Result<Reply, ApiError> {
    Ok(Reply::Value(sts_api::get_caller_identity(&ctx.identity.principal)))
}

fn assume_role(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Reply, ApiError> {
    let params = WireParams(ctx.params);
    // The role may be another account's: its trust policy decides.
    let role_account = sts_api::assume_role_account(&params);
    let role_directory = match role_account {
        Ok(account) => load_directory(tx, &account)?,
        // A malformed RoleArn: assume_role reports it, after the root check.
        Err(_) => Directory::default(),
    };
    let now =
        time::OffsetDateTime::from_unix_timestamp(ctx.now_ms.div_euclid(1000)).map_err(|_| ApiError::INTERNAL_ERROR)?;
    let identity = &ctx.identity;
    sts_api::assume_role(
        &identity.principal,
        CallerPolicies {
            identity: &identity.identity_policies,
            session: identity.session_policy.as_ref(),
        },
        &role_directory,
        &params,
        &ctx.app.config.sts_key,
        &ctx.request_context(),
        now,
    )
    .map(Reply::Value)
}
