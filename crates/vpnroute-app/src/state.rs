//! Shared server state ([`App`]: store, nonce store, data plane and reconciler, configuration, counters, throttle) and the
//! per-request context ([`Ctx`]).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use vpnroute_dataplane::DataPlane;
use vpnroute_domain::ids::AccountId;
use vpnroute_domain::quotas::Quotas;
use vpnroute_reconciler::{Reconciler, ReconcilerConfig};
use vpnroute_store::{NonceStore, Store, StoreError};

/// How long a gateway task takes before it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskDuration {
    After(Duration),
    /// Tasks wait for `vpnroute admin gateway advance` / `POST /_vpnroute/gateways/{id}/advance`.
    Manual,
}

impl TaskDuration {
    pub fn as_text(&self) -> String {
        match self {
            TaskDuration::Manual => "manual".into(),
            TaskDuration::After(d) => format!("{}ms", d.as_millis()),
        }
    }

    pub fn parse(s: &str) -> Option<TaskDuration> {
        parse_task_duration(s).ok()
    }
}

/// `0s`, `500ms`, `3s` or `manual` (the `--task-duration` flag and per-gateway overrides).
pub fn parse_task_duration(s: &str) -> Result<TaskDuration, String> {
    if s.eq_ignore_ascii_case("manual") {
        return Ok(TaskDuration::Manual);
    }
    if s == "0" {
        return Ok(TaskDuration::After(std::time::Duration::ZERO));
    }
    humantime::parse_duration(s)
        .map(TaskDuration::After)
        .map_err(|e| format!("{e}: expected e.g. 0s, 500ms, 3s or manual"))
}

/// What a mutating call on a gateway with a task in progress gets.
pub use vpnroute_domain::status::BusyPolicy as OnBusy;

/// Request counters exported on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Jobs handed to the store's write path (one per write request that passed
    /// authentication; a request refused before the writer never counts).
    pub write_jobs: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct Region {
    pub id: String,
    pub local_name: String,
}

pub fn default_regions() -> Vec<Region> {
    [
        ("cn-qingdao", "China (Qingdao)"),
        ("cn-beijing", "China (Beijing)"),
        ("cn-zhangjiakou", "China (Zhangjiakou)"),
        ("cn-hangzhou", "China (Hangzhou)"),
        ("cn-shanghai", "China (Shanghai)"),
        ("cn-shenzhen", "China (Shenzhen)"),
        ("cn-hongkong", "China (Hong Kong)"),
        ("ap-southeast-1", "Singapore"),
        ("ap-southeast-5", "Indonesia (Jakarta)"),
        ("ap-northeast-1", "Japan (Tokyo)"),
        ("eu-central-1", "Germany (Frankfurt)"),
        ("eu-west-1", "UK (London)"),
        ("us-west-1", "US (Silicon Valley)"),
        ("us-east-1", "US (Virginia)"),
    ]
    .into_iter()
    .map(|(id, name)| Region {
        id: id.into(),
        local_name: name.into(),
    })
    .collect()
}

#[derive(Debug, Clone)]
pub struct Config {
    pub regions: Vec<Region>,
    pub task_duration: TaskDuration,
    pub on_busy: OnBusy,
    pub quotas: Quotas,
    pub throttle_rps: u32,
    /// Signs and verifies STS SecurityTokens (the data directory's `sts.key`).
    pub sts_key: vpnroute_ram::token::TokenKey,
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub nonce_log: Arc<dyn NonceStore>,
    pub config: Config,
    /// Where gateways' routes are in force (the `sim` data plane by default).
    pub data_plane: Arc<dyn DataPlane>,
    /// Converges the data plane to the gateways' desired versions.
    pub reconciler: Arc<Reconciler>,
    pub metrics: Metrics,
    pub throttle: crate::throttle::Throttle,
}

pub type SharedApp = Arc<App>;

impl App {
    /// An application around an open store and a data plane, with a reconciler claiming as
    /// `owner` (unique among running instances, the same across restarts of one). Before it
    /// returns, one reconcile pass brings the data plane to every gateway's applied version
    /// (and to tasks already due). The reconciler's loop and the janitor
    /// ([`Reconciler::run`], [`crate::tasks::run_janitor`]) are the caller's to spawn.
    pub fn start(
        store: Arc<dyn Store>,
        nonce_log: Arc<dyn NonceStore>,
        config: Config,
        data_plane: Arc<dyn DataPlane>,
        owner: String,
    ) -> Result<SharedApp, StoreError> {
        let limiter = Box::new(vpnroute_store::FixedWindowLimiter::new(config.throttle_rps));
        Self::start_with(store, nonce_log, limiter, config, data_plane, owner)
    }

    /// Like [`App::start`], with the rate limiter of the store (one shared by every replica
    /// on a shared database) instead of this process's own counters.
    pub fn start_with(
        store: Arc<dyn Store>,
        nonce_log: Arc<dyn NonceStore>,
        rate_limiter: Box<dyn vpnroute_store::RateLimiter>,
        config: Config,
        data_plane: Arc<dyn DataPlane>,
        owner: String,
    ) -> Result<SharedApp, StoreError> {
        let reconciler = Arc::new(Reconciler::new(
            Arc::new(crate::reconcile::StoreReconcile::new(store.clone())),
            data_plane.clone(),
            ReconcilerConfig::new(owner),
        ));
        let startup = reconciler.run_pass(now_ms());
        tracing::info!(
            gateways = startup.outcomes.len(),
            data_plane = data_plane.name(),
            "data plane reconciled"
        );
        Ok(Arc::new(App {
            store,
            nonce_log,
            throttle: crate::throttle::Throttle::with_limiter(rate_limiter),
            config,
            data_plane,
            reconciler,
            metrics: Metrics::default(),
        }))
    }
}

/// What an operation handler knows of its call: the caller, the time, the server (its
/// configuration, engines) and the effects to run once the transaction commits. Nothing of
/// the protocol: a console or another API builds one with [`OpCtx::new`] and calls the
/// typed handlers of [`crate::ops`] directly.
pub struct OpCtx<'a> {
    pub app: &'a App,
    /// The caller's account: every resource lookup is scoped to it.
    pub account_id: AccountId,
    pub now_ms: i64,
    /// What to do once the transaction commits (see [`crate::tasks::Effects`]).
    pub effects: std::cell::RefCell<crate::tasks::Effects>,
}

impl<'a> OpCtx<'a> {
    pub fn new(app: &'a App, account_id: AccountId, now_ms: i64) -> Self {
        OpCtx {
            app,
            account_id,
            now_ms,
            effects: Default::default(),
        }
    }

    /// The effects collected so far, leaving none behind (the caller runs them after commit
    /// with [`crate::tasks::after_commit`], or [`crate::tasks::after_commit_here`] outside the
    /// writer).
    pub fn take_effects(&self) -> crate::tasks::Effects {
        std::mem::take(&mut *self.effects.borrow_mut())
    }
}

/// An RPC call: the operation context plus the Action name and Alibaba parameters the RPC
/// layer parses the typed input from. Derefs to its [`OpCtx`].
pub struct Ctx<'a> {
    pub op: OpCtx<'a>,
    pub action: &'a str,
    pub params: &'a [(String, String)],
    /// Who is calling (root, RAM user, role session) and the policies in force for it.
    pub identity: vpnroute_ram::identity::Identity,
    /// The client's address (policy key `acs:SourceIp`).
    pub source_ip: Option<std::net::IpAddr>,
}

impl Ctx<'_> {
    /// What a policy's `Condition` sees of this call (plain HTTP, no MFA).
    pub fn request_context(&self) -> vpnroute_ram::RequestContext {
        let now = time::OffsetDateTime::from_unix_timestamp(self.now_ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let ctx = vpnroute_ram::RequestContext::at(now);
        match self.source_ip {
            Some(ip) => ctx.with_source_ip(ip),
            None => ctx,
        }
    }
}

impl<'a> std::ops::Deref for Ctx<'a> {
    type Target = OpCtx<'a>;
    fn deref(&self) -> &OpCtx<'a> {
        &self.op
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
