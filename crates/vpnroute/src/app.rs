//! Shared server state ([`App`]) and the per-request context ([`Ctx`]).

use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use vpnroute_domain::quotas::Quotas;
use vpnroute_store::{NonceStore, Store};

use crate::engines::Engines;

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
        crate::cli::parse_task_duration(s).ok()
    }
}

/// What a mutating call on a gateway with a task in progress gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnBusy {
    /// Alibaba's behaviour: a busy error the client retries on.
    Reject,
    /// Queue the change behind the running task.
    Queue,
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
}

pub struct App {
    pub store: Arc<dyn Store>,
    pub nonce_log: Arc<dyn NonceStore>,
    pub config: Config,
    pub engines: Engines,
    /// Wakes the task worker when a task is enqueued or rescheduled.
    pub task_notify: tokio::sync::Notify,
    pub metrics: crate::http::Metrics,
    pub throttle: crate::auth::Throttle,
}

pub type SharedApp = Arc<App>;

/// Everything an action handler needs about the request.
pub struct Ctx<'a> {
    pub app: &'a App,
    pub account_id: String,
    pub action: &'a str,
    pub params: &'a [(String, String)],
    pub now_ms: i64,
    /// Route-engine changes to apply once the transaction commits (task duration 0).
    pub effects: std::cell::RefCell<crate::tasks::Effects>,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
