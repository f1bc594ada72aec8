//! `vpnroute admin`: operator commands working directly on the data directory (safe while
//! the server runs: SQLite serialises writers; the server reads gateway and connection
//! state per request, and its task worker re-reads due times at least once a second).
//! Every command prints JSON.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use rand::Rng;
use serde_json::{json, Value};
use vpnroute_domain::ids::new_secret;
use vpnroute_domain::model::{Vpc, VpnConnection, VpnGateway};
use vpnroute_domain::status::{BusinessStatus, VpcStatus};
use vpnroute_domain::ApiError;
use vpnroute_store::{AccessKey, Account, ReadTxExt, ResourceKind, Store, WriteTxExt};

use crate::cli::ExplainArgs;
use vpnroute_app::ram::{self, RamTx};
use vpnroute_app::state::{now_ms, TaskDuration};
use vpnroute_ram::ram_api::WireParams;

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[arg(long, env = "VPNROUTE_DATA_DIR", default_value = "./vpnroute-data")]
    pub data_dir: PathBuf,
    /// The store: `postgres://USER@HOST:PORT/DB` (one database shared by any number of
    /// replicas), or `sqlite:` / a directory (SQLite); default: SQLite in the data directory.
    #[arg(long, env = "VPNROUTE_STORE", value_parser = crate::backend::StoreSpec::parse)]
    pub store: Option<crate::backend::StoreSpec>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Accounts (tenants): every resource belongs to the account whose key created it.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Access keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Operator switches on a VPN gateway.
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// Operator switches on a VPC.
    #[command(subcommand)]
    Vpc(VpcCommand),
    /// IPsec connection tunnel state (what the route engine sees as up/down).
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Run a RAM API action (2015-05-01) as the account itself, e.g.
    /// `ram --account team-a CreateUser UserName=ci`: same parameters, rules and errors as the
    /// RAM API; prints its answer.
    Ram {
        /// Account id or name.
        #[arg(long)]
        account: String,
        /// RAM action: CreateUser, CreateAccessKey, CreatePolicy, AttachPolicyToUser, …
        action: String,
        /// Parameters as `Name=Value`.
        params: Vec<String>,
    },
    /// STS sessions.
    #[command(subcommand)]
    Sts(StsCommand),
    /// RAM users (shortcuts over `ram`).
    #[command(subcommand)]
    User(UserCommand),
    /// RAM custom policies (shortcuts over `ram`).
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a RAM user, attach policies and optionally make its access key, all or nothing.
    Create {
        #[arg(long)]
        account: String,
        name: String,
        /// A system or custom policy to attach (repeatable).
        #[arg(long)]
        policy: Vec<String>,
        /// Also create an access key (its secret is printed once).
        #[arg(long)]
        key: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Create a custom policy from a JSON document (`@FILE` reads it from a file).
    Create {
        #[arg(long)]
        account: String,
        name: String,
        document: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum StsCommand {
    /// Issue credentials for a session of a role directly (no caller, no trust check, any
    /// duration): for operators and tests.
    Assume {
        /// Account id or name (the role's).
        #[arg(long)]
        account: String,
        #[arg(long)]
        role: String,
        #[arg(long, default_value = "admin")]
        session: String,
        /// `1h`, `900s`, …
        #[arg(long, default_value = "1h")]
        duration: humantime::Duration,
        /// Inline session policy (JSON).
        #[arg(long)]
        policy: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    Create {
        #[arg(long)]
        name: String,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Create an access key for an account (id or name); prints the secret once.
    Create {
        #[arg(long)]
        account: String,
    },
    List {
        #[arg(long)]
        account: Option<String>,
    },
    Disable {
        id: String,
    },
    Enable {
        id: String,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GatewayCommand {
    /// `Normal` or `FinancialLocked`.
    SetBusinessStatus { id: String, status: String },
    /// Whether policy routes may carry a custom Priority (`true`/`false`).
    SetPbrPriority { id: String, enabled: String },
    /// Task duration override for this gateway (`0s`, `3s`, `manual`, or `default`).
    SetTaskDuration { id: String, duration: String },
    /// Make the gateway's pending tasks due now (manual mode).
    Advance { id: String },
}

#[derive(Subcommand, Debug)]
pub enum VpcCommand {
    /// `Available` or `Pending`.
    SetStatus { id: String, status: String },
}

#[derive(Subcommand, Debug)]
pub enum ConnectionCommand {
    /// `up` or `down`; `--tunnel tun-…` for one tunnel of a dual-tunnel connection.
    SetTunnel {
        id: String,
        state: String,
        #[arg(long)]
        tunnel: Option<String>,
    },
}

fn new_account_id() -> String {
    let mut rng = rand::rng();
    format!("1{:015}", rng.random_range(0..1_000_000_000_000_000u64))
}

fn new_access_key_id() -> String {
    format!("LTAI{}", new_secret(20))
}

/// Make sure the root account exists with the key from `VPNROUTE_ROOT_ACCESS_KEY_ID` /
/// `VPNROUTE_ROOT_ACCESS_KEY_SECRET`, or, on first start without them, a generated key that
/// is printed once.
pub fn ensure_root_account(store: &dyn Store, announce: bool) -> anyhow::Result<()> {
    let env_id = std::env::var("VPNROUTE_ROOT_ACCESS_KEY_ID")
        .ok()
        .filter(|s| !s.is_empty());
    let env_secret = std::env::var("VPNROUTE_ROOT_ACCESS_KEY_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    if env_id.is_some() != env_secret.is_some() {
        bail!("set both VPNROUTE_ROOT_ACCESS_KEY_ID and VPNROUTE_ROOT_ACCESS_KEY_SECRET, or neither");
    }
    let now = now_ms();
    let generated = store.write(|tx| {
        let root = match tx.root_account()? {
            Some(r) => r,
            None => {
                let a = Account {
                    id: new_account_id(),
                    name: "root".into(),
                    is_root: true,
                    created_at: now,
                };
                tx.insert_account(&a)?;
                a
            }
        };
        match (&env_id, &env_secret) {
            (Some(id), Some(secret)) => {
                let current = tx.access_key(id)?;
                if !current.is_some_and(|k| k.account_id == root.id && &k.secret == secret) {
                    // Absent, or another secret/account: the environment wins.
                    tx.delete_access_key(id)?;
                    tx.insert_access_key(&AccessKey {
                        id: id.clone(),
                        account_id: root.id.clone(),
                        secret: secret.clone(),
                        status: "Active".into(),
                        created_at: now,
                        ram_user_id: None,
                    })?;
                }
                Ok::<_, ApiError>(None)
            }
            _ => {
                if tx
                    .access_keys()?
                    .iter()
                    .any(|k| k.account_id == root.id && k.ram_user_id.is_none())
                {
                    return Ok(None);
                }
                let k = AccessKey {
                    id: new_access_key_id(),
                    account_id: root.id.clone(),
                    secret: new_secret(30),
                    status: "Active".into(),
                    created_at: now,
                    ram_user_id: None,
                };
                tx.insert_access_key(&k)?;
                Ok(Some(k))
            }
        }
    })?;
    if let Some(k) = generated {
        if announce {
            println!("vpnroute generated the root access key (shown once):");
            println!("  AccessKeyId:     {}", k.id);
            println!("  AccessKeySecret: {}", k.secret);
        }
    }
    Ok(())
}

fn print(v: Value) {
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

fn with_gateway(
    store: &dyn Store,
    id: &str,
    f: impl FnOnce(&mut VpnGateway) -> anyhow::Result<()>,
) -> anyhow::Result<VpnGateway> {
    // Read, change and write back in one transaction under the gateway's lock: a change the
    // server commits meanwhile (a reconcile setting the gateway `active`) is not overwritten
    // with an older copy of the document.
    store.write(|tx| -> anyhow::Result<VpnGateway> {
        tx.lock_gateway(id)?;
        let mut gw = tx
            .resource::<VpnGateway>(ResourceKind::VpnGateway, id)?
            .ok_or_else(|| anyhow!("no VPN gateway {id}"))?
            .doc;
        f(&mut gw)?;
        tx.update_resource(ResourceKind::VpnGateway, id, &gw)?;
        Ok(gw)
    })
}

/// `Name=Value` arguments as wire-order parameters.
fn parse_params(args: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow!("parameter {a:?} is not Name=Value"))
        })
        .collect()
}

fn account_of(store: &dyn Store, account: &str) -> anyhow::Result<Account> {
    store
        .read(|tx| tx.account(account).map_err(ApiError::from))?
        .ok_or_else(|| anyhow!("no account {account}"))
}

/// Runs changing RAM calls as the account, in one transaction (all or nothing); the answers
/// merged into one object.
fn ram_calls(
    store: &dyn Store,
    account_id: &str,
    calls: &[(&str, Vec<(String, String)>)],
    now: i64,
) -> anyhow::Result<Value> {
    let identity = vpnroute_ram::identity::Identity::root(account_id);
    let ctx = vpnroute_ram::RequestContext::at(time::OffsetDateTime::now_utc());
    store
        .write(|tx| {
            let mut merged = serde_json::Map::new();
            for (action, params) in calls {
                let body = ram::ram_call(RamTx::Write(tx), &identity, action, &WireParams(params), now, &ctx)?;
                if let Value::Object(fields) = body {
                    merged.extend(fields);
                }
            }
            Ok::<_, ApiError>(Value::Object(merged))
        })
        .map_err(api_failure)
}

/// An API error as the command's failure.
fn api_failure(e: ApiError) -> anyhow::Error {
    anyhow!("{} ({}): {}", e.code, e.status, e.message)
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let store = crate::backend::open_store(args.store.as_ref(), &args.data_dir)?;
    ensure_root_account(&*store, true)?;
    let now = now_ms();
    match args.command {
        AdminCommand::Ram {
            account,
            action,
            params,
        } => {
            let acct = account_of(&*store, &account)?;
            let params = parse_params(&params)?;
            if !vpnroute_ram::ram_api::is_action(&action) {
                bail!("unknown RAM action {action}");
            }
            let calls = [(action.as_str(), params)];
            let body = if vpnroute_ram::ram_api::mutates(&action) {
                ram_calls(&*store, &acct.id, &calls, now)?
            } else {
                let identity = vpnroute_ram::identity::Identity::root(&acct.id);
                let ctx = vpnroute_ram::RequestContext::at(time::OffsetDateTime::now_utc());
                let params = WireParams(&calls[0].1);
                store
                    .read(|tx| ram::ram_call(RamTx::Read(tx), &identity, &action, &params, now, &ctx))
                    .map_err(api_failure)?
            };
            print(body);
        }
        AdminCommand::User(UserCommand::Create {
            account,
            name,
            policy,
            key,
        }) => {
            let acct = account_of(&*store, &account)?;
            let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
                list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
            };
            let mut calls = vec![("CreateUser", pairs(&[("UserName", &name)]))];
            for p in &policy {
                let kind = if vpnroute_ram::system::find(p).is_some() {
                    "System"
                } else {
                    "Custom"
                };
                let params = pairs(&[("PolicyType", kind), ("PolicyName", p), ("UserName", &name)]);
                calls.push(("AttachPolicyToUser", params));
            }
            if key {
                calls.push(("CreateAccessKey", pairs(&[("UserName", &name)])));
            }
            print(ram_calls(&*store, &acct.id, &calls, now)?);
        }
        AdminCommand::Policy(PolicyCommand::Create {
            account,
            name,
            document,
        }) => {
            let acct = account_of(&*store, &account)?;
            let document = match document.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
                None => document,
            };
            let params = vec![
                ("PolicyName".to_string(), name),
                ("PolicyDocument".to_string(), document),
            ];
            print(ram_calls(&*store, &acct.id, &[("CreatePolicy", params)], now)?);
        }
        AdminCommand::Sts(StsCommand::Assume {
            account,
            role,
            session,
            duration,
            policy,
        }) => {
            let acct = account_of(&*store, &account)?;
            let directory = store.read(|tx| ram::load_directory(tx, &acct.id))?;
            let role = directory.role(&role).map_err(api_failure)?;
            if let Some(p) = &policy {
                vpnroute_ram::PolicyDocument::parse(p).map_err(|e| anyhow!("policy: {e}"))?;
            }
            let key = crate::sts_key::sts_key(&*store, &args.data_dir)?;
            let seconds = u32::try_from(duration.as_secs()).unwrap_or(u32::MAX).max(1);
            print(vpnroute_ram::sts_api::issue_session(
                &key,
                vpnroute_ram::token::SessionRequest {
                    account_id: acct.id.clone(),
                    role_id: role.id.clone(),
                    role_name: role.name.clone(),
                    session_name: session,
                    session_policy: policy,
                    duration_seconds: seconds,
                },
                time::OffsetDateTime::now_utc(),
            ));
        }
        AdminCommand::Account(AccountCommand::Create { name }) => {
            let a = Account {
                id: new_account_id(),
                name: name.clone(),
                is_root: false,
                created_at: now,
            };
            store
                .write(|tx| tx.insert_account(&a).map_err(ApiError::from))
                .map_err(|_| anyhow!("account {name} exists"))?;
            print(json!({"AccountId": a.id, "Name": a.name}));
        }
        AdminCommand::Account(AccountCommand::List) => {
            let accounts = store.read(|tx| tx.accounts().map_err(ApiError::from))?;
            print(
                json!({"Accounts": accounts.iter().map(|a| json!({"AccountId": a.id, "Name": a.name, "Root": a.is_root})).collect::<Vec<_>>()}),
            );
        }
        AdminCommand::Key(KeyCommand::Create { account }) => {
            let acct = store
                .read(|tx| tx.account(&account).map_err(ApiError::from))?
                .ok_or_else(|| anyhow!("no account {account}"))?;
            let k = AccessKey {
                id: new_access_key_id(),
                account_id: acct.id.clone(),
                secret: new_secret(30),
                status: "Active".into(),
                created_at: now,
                ram_user_id: None,
            };
            store.write(|tx| tx.insert_access_key(&k).map_err(ApiError::from))?;
            print(json!({"AccessKeyId": k.id, "AccessKeySecret": k.secret, "AccountId": acct.id}));
        }
        AdminCommand::Key(KeyCommand::List { account }) => {
            let keys = store.read(|tx| tx.access_keys().map_err(ApiError::from))?;
            let keys: Vec<Value> = keys
                .iter()
                .filter(|k| account.as_ref().is_none_or(|a| a == &k.account_id))
                .map(|k| json!({"AccessKeyId": k.id, "AccountId": k.account_id, "Status": k.status, "RamUserId": k.ram_user_id}))
                .collect();
            print(json!({"AccessKeys": keys}));
        }
        AdminCommand::Key(KeyCommand::Disable { id }) => {
            if !store.write(|tx| tx.set_access_key_status(&id, "Inactive").map_err(ApiError::from))? {
                bail!("no access key {id}");
            }
            print(json!({"AccessKeyId": id, "Status": "Inactive"}));
        }
        AdminCommand::Key(KeyCommand::Enable { id }) => {
            if !store.write(|tx| tx.set_access_key_status(&id, "Active").map_err(ApiError::from))? {
                bail!("no access key {id}");
            }
            print(json!({"AccessKeyId": id, "Status": "Active"}));
        }
        AdminCommand::Key(KeyCommand::Delete { id }) => {
            if !store.write(|tx| tx.delete_access_key(&id).map_err(ApiError::from))? {
                bail!("no access key {id}");
            }
            print(json!({"AccessKeyId": id, "Deleted": true}));
        }
        AdminCommand::Gateway(GatewayCommand::SetBusinessStatus { id, status }) => {
            let status =
                BusinessStatus::parse(&status).ok_or_else(|| anyhow!("status must be Normal or FinancialLocked"))?;
            let gw = with_gateway(&*store, &id, |g| {
                g.business_status = status;
                Ok(())
            })?;
            print(json!({"VpnGatewayId": gw.id, "BusinessStatus": gw.business_status}));
        }
        AdminCommand::Gateway(GatewayCommand::SetPbrPriority { id, enabled }) => {
            let on: bool = enabled.parse().map_err(|_| anyhow!("expected true or false"))?;
            let gw = with_gateway(&*store, &id, |g| {
                g.pbr_priority = on;
                Ok(())
            })?;
            print(json!({"VpnGatewayId": gw.id, "PbrPriority": gw.pbr_priority}));
        }
        AdminCommand::Gateway(GatewayCommand::SetTaskDuration { id, duration }) => {
            let value = if duration == "default" {
                None
            } else {
                TaskDuration::parse(&duration).ok_or_else(|| anyhow!("expected e.g. 0s, 3s, manual or default"))?;
                Some(duration.clone())
            };
            let gw = with_gateway(&*store, &id, |g| {
                g.task_duration = value.clone();
                Ok(())
            })?;
            print(json!({"VpnGatewayId": gw.id, "TaskDuration": gw.task_duration}));
        }
        AdminCommand::Gateway(GatewayCommand::Advance { id }) => {
            let n = store.write(|tx| tx.reschedule_tasks(&id, Some(now)).map_err(ApiError::from))?;
            print(json!({"VpnGatewayId": id, "TasksAdvanced": n}));
        }
        AdminCommand::Vpc(VpcCommand::SetStatus { id, status }) => {
            let status = VpcStatus::parse(&status).ok_or_else(|| anyhow!("status must be Available or Pending"))?;
            store.write(|tx| {
                let mut v = tx
                    .resource::<Vpc>(ResourceKind::Vpc, &id)?
                    .ok_or(ApiError::VPC_NOT_FOUND)?;
                v.doc.status = status;
                tx.update_resource(ResourceKind::Vpc, &id, &v.doc)?;
                Ok::<_, ApiError>(())
            })?;
            print(json!({"VpcId": id, "Status": status}));
        }
        AdminCommand::Connection(ConnectionCommand::SetTunnel { id, state, tunnel }) => {
            let up = match state.as_str() {
                "up" => true,
                "down" => false,
                _ => bail!("state must be up or down"),
            };
            vpnroute_app::engines::set_tunnel(&*store, &id, tunnel.as_deref(), up)?;
            print(json!({"VpnConnectionId": id, "Tunnel": state, "TunnelId": tunnel.unwrap_or_default()}));
        }
    }
    Ok(())
}

/// `vpnroute explain`: the decision of the gateway's route table as stored (the desired
/// state; the running server's `/_vpnroute/gateways/{id}/explain` answers for what is in force).
pub fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    let store = crate::backend::open_store(args.store.as_ref(), &args.data_dir)?;
    let (spec, conns) = store.read(|tx| {
        let (desired, _) = tx.gateway_versions(&args.gateway)?;
        let spec =
            vpnroute_app::reconcile::gateway_spec(tx, &args.gateway, desired)?.ok_or(ApiError::GATEWAY_NOT_FOUND)?;
        let conns: Vec<VpnConnection> = tx.children(ResourceKind::VpnConnection, &args.gateway)?;
        Ok::<_, ApiError>((spec, conns))
    })?;
    // The stored (desired) state in a sim data plane of its own.
    use vpnroute_dataplane::DataPlane;
    let sim = vpnroute_dataplane_sim::SimDataPlane::new();
    sim.apply(&spec).map_err(|e| anyhow!("{e}"))?;
    let tunnels = vpnroute_app::engines::tunnel_states(&conns);
    let mut v = sim
        .explain_with_tunnels(&args.gateway, &tunnels, args.source, args.dest)
        .map_err(|e| anyhow!("{e}"))?;
    v["VpnGatewayId"] = json!(args.gateway);
    print(v);
    Ok(())
}
