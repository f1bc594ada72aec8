//! Command-line interface: every flag has a matching `VPNROUTE_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vpnroute_domain::quotas::Quotas;

use vpnroute_app::state::{parse_task_duration, OnBusy, TaskDuration};

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
    /// The store: `postgres://USER@HOST:PORT/DB` (one database shared by any number of
    /// replicas), or `sqlite:` / a directory (SQLite); default: SQLite in the data directory.
    #[arg(long, env = "VPNROUTE_STORE", value_parser = crate::backend::StoreSpec::parse)]
    pub store: Option<crate::backend::StoreSpec>,
    /// Regions served (comma-separated). Default: a realistic subset of Alibaba's regions.
    #[arg(long, env = "VPNROUTE_REGIONS", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// How long a gateway stays `updating` after a change: `0s`, `500ms`, `3s`, or `manual`.
    #[arg(long, env = "VPNROUTE_TASK_DURATION", default_value = "200ms", value_parser = parse_task_duration)]
    pub task_duration: TaskDuration,
    /// What a change on a busy gateway gets: Alibaba's busy error (`reject`) or a queue slot.
    #[arg(long, env = "VPNROUTE_ON_BUSY", default_value = "reject", value_parser = OnBusy::parse)]
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
    /// Where gateways' routes are in force: `sim` (in memory) or `linux` (network namespaces;
    /// needs CAP_NET_ADMIN and CAP_SYS_ADMIN).
    #[arg(long, env = "VPNROUTE_DATAPLANE", value_enum, default_value = "sim")]
    pub dataplane: DataPlaneKind,
    /// Prefix of every network namespace (and link) the Linux data plane creates or touches.
    #[arg(long, env = "VPNROUTE_NETNS_PREFIX", default_value = "vr-")]
    pub netns_prefix: String,
    /// Tunnel driver of the Linux data plane: `ipsec` (IKE/IPsec by strongSwan's charon; the
    /// default) or `plain` (VXLAN, unencrypted, for labs).
    #[arg(long, env = "VPNROUTE_TUNNELS", value_parser = parse_tunnels)]
    pub tunnels: Option<vpnroute_dataplane_linux::TunnelKind>,
    /// How the Linux data plane puts policy routes in force: `nftables` or `rules` (`ip rule`).
    #[arg(long, env = "VPNROUTE_POLICY_ROUTES", default_value = "nftables", value_parser = parse_policy_routes)]
    pub policy_routes: vpnroute_dataplane_linux::PolicyMode,
    /// Log format.
    #[arg(long, env = "VPNROUTE_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Bearer token for `/_vpnroute/*` and `/metrics`; default: the one stored in the data
    /// directory (`operator.token`), generated and printed on first start.
    #[arg(long, env = "VPNROUTE_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// Serve `/metrics` without the operator token (the introspection API still needs it).
    #[arg(long, env = "VPNROUTE_METRICS_PUBLIC")]
    pub metrics_public: bool,
    /// Most open client connections; beyond, the longest-idle one is closed. 0: derived from
    /// the open-file limit (three quarters of it, less 64).
    #[arg(long, env = "VPNROUTE_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// A request head must arrive within this time.
    #[arg(long, env = "VPNROUTE_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: std::time::Duration,
    /// A connection without a request in flight for this long is closed.
    #[arg(long, env = "VPNROUTE_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// A request body must arrive within this time of its head.
    #[arg(long, env = "VPNROUTE_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: std::time::Duration,
}

impl ServeArgs {
    pub fn limits(&self) -> crate::limits::Limits {
        crate::limits::Limits {
            max_connections: if self.max_connections == 0 {
                crate::limits::automatic_max_connections()
            } else {
                self.max_connections
            },
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            request_timeout: self.request_timeout,
            drain_timeout: std::time::Duration::from_secs(30),
        }
    }
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

/// `--dataplane`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataPlaneKind {
    Sim,
    Linux,
}

fn parse_tunnels(s: &str) -> Result<vpnroute_dataplane_linux::TunnelKind, String> {
    s.parse()
}

fn parse_policy_routes(s: &str) -> Result<vpnroute_dataplane_linux::PolicyMode, String> {
    s.parse()
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

#[derive(Args, Debug)]
pub struct ExplainArgs {
    #[arg(long, env = "VPNROUTE_DATA_DIR", default_value = "./vpnroute-data")]
    pub data_dir: PathBuf,
    /// The store: `postgres://USER@HOST:PORT/DB` (one database shared by any number of
    /// replicas), or `sqlite:` / a directory (SQLite); default: SQLite in the data directory.
    #[arg(long, env = "VPNROUTE_STORE", value_parser = crate::backend::StoreSpec::parse)]
    pub store: Option<crate::backend::StoreSpec>,
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
