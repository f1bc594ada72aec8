//! Command-line interface: every flag has a matching `VPNROUTE_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vpnroute_domain::quotas::Quotas;

use crate::app::{OnBusy, TaskDuration};

#[derive(Parser, Debug)]
#[command(name = "vpnroute", version, about = "Alibaba-compatible VPN gateway routing service")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the Alibaba VPC API (2016-04-28).
    Serve(ServeArgs),
    /// Operator commands on a data directory (works while the server runs).
    Admin(crate::admin::AdminArgs),
    /// Explain which route a packet takes on a gateway (reads the data directory).
    Explain(ExplainArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "VPNROUTE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory holding the embedded database.
    #[arg(long, env = "VPNROUTE_DATA_DIR", default_value = "./vpnroute-data")]
    pub data_dir: PathBuf,
    /// Regions served (comma-separated). Default: a realistic subset of Alibaba's regions.
    #[arg(long, env = "VPNROUTE_REGIONS", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// How long a gateway stays `updating` after a change: `0s`, `500ms`, `3s`, or `manual`.
    #[arg(long, env = "VPNROUTE_TASK_DURATION", default_value = "200ms", value_parser = parse_task_duration)]
    pub task_duration: TaskDuration,
    /// What a change on a busy gateway gets: Alibaba's busy error (`reject`) or a queue slot.
    #[arg(long, env = "VPNROUTE_ON_BUSY", value_enum, default_value = "reject")]
    pub on_busy: OnBusy,
    /// Commit durability: `process` survives kill -9, `full` also power loss.
    #[arg(long, env = "VPNROUTE_SYNC", value_enum, default_value = "process")]
    pub sync: SyncMode,
    /// Per (access key, action) rate limit in requests per second; 0 = off.
    #[arg(long, env = "VPNROUTE_THROTTLE_RPS", default_value_t = 0)]
    pub throttle_rps: u32,
    /// Destination-based routes per gateway.
    #[arg(long, env = "VPNROUTE_QUOTA_DBR_ROUTES", default_value_t = Quotas::default().dbr_routes_per_gateway)]
    pub quota_dbr_routes: u64,
    /// Policy-based routes per gateway.
    #[arg(long, env = "VPNROUTE_QUOTA_PBR_ROUTES", default_value_t = Quotas::default().pbr_routes_per_gateway)]
    pub quota_pbr_routes: u64,
    /// VPC system route table entries pointing to one gateway.
    #[arg(long, env = "VPNROUTE_QUOTA_VPC_ROUTES", default_value_t = Quotas::default().vpc_routes_per_gateway)]
    pub quota_vpc_routes: u64,
    /// VPN gateways per account and region.
    #[arg(long, env = "VPNROUTE_QUOTA_GATEWAYS", default_value_t = Quotas::default().gateways_per_region)]
    pub quota_gateways: u64,
    /// IPsec connections per gateway.
    #[arg(long, env = "VPNROUTE_QUOTA_CONNECTIONS", default_value_t = Quotas::default().connections_per_gateway)]
    pub quota_connections: u64,
    /// Customer gateways per account and region.
    #[arg(long, env = "VPNROUTE_QUOTA_CUSTOMER_GATEWAYS", default_value_t = Quotas::default().customer_gateways_per_region)]
    pub quota_customer_gateways: u64,
    /// VPCs per account and region.
    #[arg(long, env = "VPNROUTE_QUOTA_VPCS", default_value_t = Quotas::default().vpcs_per_region)]
    pub quota_vpcs: u64,
    /// Log format.
    #[arg(long, env = "VPNROUTE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    pub fn quotas(&self) -> Quotas {
        Quotas {
            dbr_routes_per_gateway: self.quota_dbr_routes,
            pbr_routes_per_gateway: self.quota_pbr_routes,
            vpc_routes_per_gateway: self.quota_vpc_routes,
            gateways_per_region: self.quota_gateways,
            connections_per_gateway: self.quota_connections,
            customer_gateways_per_region: self.quota_customer_gateways,
            vpcs_per_region: self.quota_vpcs,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Process,
    Full,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

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

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[arg(long, env = "VPNROUTE_DATA_DIR", default_value = "./vpnroute-data")]
    pub data_dir: PathBuf,
    /// The VPN gateway id.
    #[arg(long)]
    pub gateway: String,
    /// Source address of the packet.
    #[arg(long)]
    pub source: std::net::Ipv4Addr,
    /// Destination address of the packet.
    #[arg(long)]
    pub dest: std::net::Ipv4Addr,
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::http::serve(args),
        Command::Admin(args) => crate::admin::run(args),
        Command::Explain(args) => crate::admin::explain(args),
    }
}
