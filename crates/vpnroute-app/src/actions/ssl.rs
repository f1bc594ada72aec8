//! SSL-VPN servers as typed operations: CreateSslVpnServer, DescribeSslVpnServers,
//! ModifySslVpnServer, DeleteSslVpnServer. Their ClientIpPool is what
//! `VpnRouteEntry.ConflictSSL` checks routes against. Creating a server, and changing anything
//! but its name, is a gateway task (the gateway shows `updating`).

use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::{json, Value};
use vpnroute_domain::ids::{new_id, GatewayId};
use vpnroute_domain::model::{SslVpnServer, Vpc, VpnGateway, VpnRoute};
use vpnroute_domain::params::Paging;
use vpnroute_domain::validate::{self, overlaps};
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, opt_text, owned, page_fields, page_of, params};
use crate::ops::{arn, check_dry_run, Deferred, Done};
use crate::reply::Reply;
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};

const FORBIDDEN_PORTS: &[i64] = &[
    22, 2222, 22222, 9000, 9001, 9002, 7505, 80, 443, 53, 68, 123, 4510, 4560, 500, 4500,
];

/// Largest client pool prefix for a number of SSL connections (4 addresses per client).
fn max_pool_prefix(connections: i64) -> u8 {
    match connections {
        ..=5 => 27,
        6..=10 => 26,
        11..=20 => 25,
        21..=50 => 24,
        51..=100 => 23,
        101..=200 => 22,
        201..=500 => 21,
        _ => 20,
    }
}

/// `LocalSubnet`: up to 5 blocks, each /8 or longer.
fn local_subnet(text: &str) -> Result<Vec<Ipv4Net>, ApiError> {
    let local = validate::cidr_list(text, "LocalSubnet")?;
    if local.len() > 5 || local.iter().any(|n| n.prefix_len() < 8) {
        return Err(ApiError::invalid_parameter("LocalSubnet"));
    }
    Ok(local)
}

/// `ClientIpPool`: a network /16–/29 outside the reserved ranges.
fn client_ip_pool(text: &str) -> Result<Ipv4Net, ApiError> {
    let pool = validate::parse_cidr(text).ok_or(ApiError::invalid_parameter("ClientIpPool"))?;
    if pool.addr() != pool.network() || !(16..=29).contains(&pool.prefix_len()) {
        return Err(ApiError::invalid_parameter("ClientIpPool"));
    }
    if validate::route_dest(text).is_err()
        || overlaps(&pool, &"169.254.0.0/16".parse().unwrap_or(pool)) && text.starts_with("169.254")
    {
        return Err(ApiError::invalid_parameter("ClientIpPool"));
    }
    Ok(pool)
}

fn cipher(text: &str) -> Result<String, ApiError> {
    if !["AES-128-CBC", "AES-192-CBC", "AES-256-CBC", "none"].contains(&text) {
        return Err(ApiError::invalid_parameter("Cipher"));
    }
    Ok(text.to_string())
}

fn proto(text: &str) -> Result<String, ApiError> {
    if text != "TCP" && text != "UDP" {
        return Err(ApiError::invalid_parameter("Proto"));
    }
    Ok(text.to_string())
}

/// `Port`: 1–65535 but not one of Alibaba's reserved ports.
fn port(p: &vpnroute_domain::params::Params<'_>) -> Result<Option<i64>, ApiError> {
    let port = p.opt_int_in("Port", 1, 65535)?;
    if port.is_some_and(|v| FORBIDDEN_PORTS.contains(&v)) {
        return Err(ApiError::invalid_parameter("Port"));
    }
    Ok(port)
}

/// The client pool fits the gateway's connection count and overlaps neither the local
/// subnets, the VPC, nor a route of the gateway.
fn check_pool(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    gw: &VpnGateway,
    local: &[Ipv4Net],
    pool: &Ipv4Net,
) -> Result<(), ApiError> {
    if pool.prefix_len() > max_pool_prefix(gw.ssl_connections) {
        return Err(ApiError::invalid_parameter("ClientIpPool"));
    }
    let vpc: Vpc = owned(ctx, tx, &gw.region_id, &gw.vpc_id)?;
    let vpc_cidr = validate::parse_cidr(&vpc.cidr_block);
    let routes: Vec<VpnRoute> = tx.gateway_routes(&gw.id)?;
    if local.iter().any(|l| overlaps(l, pool))
        || vpc_cidr.is_some_and(|c| overlaps(&c, pool))
        || routes
            .iter()
            .filter_map(|r| validate::parse_cidr(&r.dest))
            .any(|d| overlaps(&d, pool))
    {
        return Err(ApiError::SSL_CLIENT_POOL_CONFLICT);
    }
    Ok(())
}

fn subnet_text(nets: &[Ipv4Net]) -> String {
    nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

/// CreateSslVpnServer's input.
#[derive(Debug, Clone)]
pub struct CreateSslVpnServerInput {
    pub region: String,
    pub gateway_id: GatewayId,
    pub local_subnet: Vec<Ipv4Net>,
    pub client_ip_pool: Ipv4Net,
    pub name: String,
    /// `AES-128-CBC`, `AES-192-CBC`, `AES-256-CBC` or `none`.
    pub cipher: String,
    /// `TCP` or `UDP`.
    pub proto: String,
    pub port: i64,
    pub compress: bool,
    pub enable_multi_factor_auth: bool,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for CreateSslVpnServerInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let gateway_id = p.str("VpnGatewayId")?;
        let local = local_subnet(p.str("LocalSubnet")?)?;
        let pool = client_ip_pool(p.str("ClientIpPool")?)?;
        let name = opt_text(ctx, "Name", validate::name)?;
        let cipher = cipher(p.opt_str("Cipher").unwrap_or("AES-128-CBC"))?;
        let proto = proto(p.opt_str("Proto").unwrap_or("TCP"))?;
        let port = port(&p)?.unwrap_or(1194);
        let compress = p.bool_or("Compress", false)?;
        let mfa = p.bool_or("EnableMultiFactorAuth", false)?;
        Ok(CreateSslVpnServerInput {
            region,
            gateway_id: gateway_id.into(),
            local_subnet: local,
            client_ip_pool: pool,
            name,
            cipher,
            proto,
            port,
            compress,
            enable_multi_factor_auth: mfa,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// CreateSslVpnServer's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedSslVpnServer {
    pub ssl_vpn_server_id: String,
    pub name: String,
}

fn create_ssl_vpn_server(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: CreateSslVpnServerInput,
) -> Result<CreatedSslVpnServer, ApiError> {
    let region = input.region.as_str();
    let local = input.local_subnet;
    let pool = input.client_ip_pool;
    let mut gw: VpnGateway = owned(ctx, tx, region, &input.gateway_id)?;
    if !gw.enable_ssl {
        return Err(ApiError::SSL_NOT_ENABLED);
    }
    if pool.prefix_len() > max_pool_prefix(gw.ssl_connections) {
        return Err(ApiError::invalid_parameter("ClientIpPool"));
    }
    if tx.count_children(ResourceKind::SslVpnServer, &gw.id)? > 0 {
        return Err(ApiError::SSL_SERVER_EXISTS);
    }
    check_pool(ctx, tx, &gw, &local, &pool)?;
    crate::tasks::check_busy(ctx, &gw, ApiError::GATEWAY_CONFIGURING)?;
    check_dry_run(&input.dry_run)?;
    let id = new_id("vss");
    let server = SslVpnServer {
        // Unnamed stays unnamed: Terraform's `name` is Optional, not Computed.
        name: input.name,
        id,
        region_id: region.to_string(),
        gateway_id: gw.id.clone(),
        local_subnet: subnet_text(&local),
        client_ip_pool: pool.to_string(),
        cipher: input.cipher,
        proto: input.proto,
        port: input.port,
        compress: input.compress,
        create_time: ctx.now_ms,
        enable_multi_factor_auth: input.enable_multi_factor_auth,
        resource_group_id: gw.resource_group_id.clone(),
    };
    tx.insert_resource(
        ResourceKind::SslVpnServer,
        &server.id,
        &ctx.account_id,
        region,
        &gw.id,
        &server,
    )?;
    // Asynchronous, as Alibaba documents: the gateway configures the server.
    crate::tasks::schedule(ctx, tx, &mut gw)?;
    Ok(CreatedSslVpnServer {
        ssl_vpn_server_id: server.id,
        name: server.name,
    })
}

operation!(
    /// CreateSslVpnServer: names the new server and the gateway it is created on.
    CreateSslVpnServer: Write, CreateSslVpnServerInput => CreatedSslVpnServer,
    resources(|input, account| vec![
        arn(&input.region, account, "sslvpnserver", "*"),
        arn(&input.region, account, "vpngateway", &input.gateway_id),
    ]),
    handle(|ctx, tx, input| create_ssl_vpn_server(ctx, tx, input)),
);

/// DescribeSslVpnServers' input: filters (each given one must hold) and the page.
#[derive(Debug, Clone)]
pub struct DescribeSslVpnServersInput {
    pub region: String,
    pub paging: Paging,
    pub gateway_id: Option<GatewayId>,
    pub ssl_vpn_server_id: Option<String>,
    pub name: Option<String>,
    pub resource_group_id: Option<String>,
}

impl FromRpc for DescribeSslVpnServersInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let paging = p.paging()?;
        let text = |name: &str| p.opt_str(name).map(str::to_string);
        Ok(DescribeSslVpnServersInput {
            region,
            paging,
            gateway_id: p.opt_str("VpnGatewayId").map(Into::into),
            ssl_vpn_server_id: text("SslVpnServerId"),
            name: text("Name"),
            resource_group_id: text("ResourceGroupId"),
        })
    }
}

/// A server with its gateway (for `MaxConnections` and `InternetIp`), if it still exists.
#[derive(Debug, Clone)]
pub struct SslVpnServerView {
    pub server: SslVpnServer,
    pub gateway: Option<VpnGateway>,
}

/// A server as DescribeSslVpnServers and ModifySslVpnServer show it.
fn server_json(s: &SslVpnServer, gw: Option<&VpnGateway>) -> Value {
    json!({
        "SslVpnServerId": s.id,
        "VpnGatewayId": s.gateway_id,
        "RegionId": s.region_id,
        "Name": s.name,
        "LocalSubnet": s.local_subnet,
        "ClientIpPool": s.client_ip_pool,
        "Cipher": s.cipher,
        "Proto": s.proto,
        "Port": s.port,
        "Compress": s.compress,
        "Connections": 0,
        "MaxConnections": gw.map(|g| g.ssl_connections).unwrap_or(0),
        "InternetIp": gw.map(|g| super::gateway::ssl_vpn_ip(g).to_string()).unwrap_or_default(),
        "CreateTime": s.create_time,
        "EnableMultiFactorAuth": s.enable_multi_factor_auth,
        "IDaaSInstanceId": "",
        "IDaaSRegionId": "",
        "IDaaSApplicationId": "",
        "ResourceGroupId": s.resource_group_id,
    })
}

/// DescribeSslVpnServers' answer.
#[derive(Debug, Clone)]
pub struct SslVpnServersPage {
    pub items: Vec<SslVpnServerView>,
    pub paging: Paging,
    pub total: u64,
}

impl From<SslVpnServersPage> for Reply {
    fn from(page: SslVpnServersPage) -> Reply {
        let items: Vec<Value> = page
            .items
            .iter()
            .map(|v| server_json(&v.server, v.gateway.as_ref()))
            .collect();
        let mut body = json!({"SslVpnServers": {"SslVpnServer": items}});
        page_fields(&mut body, page.paging, page.total);
        Reply::Value(body)
    }
}

fn describe_ssl_vpn_servers(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: DescribeSslVpnServersInput,
) -> Result<SslVpnServersPage, ApiError> {
    let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
    let all = all_in_region::<SslVpnServer>(ctx, tx, &input.region, input.gateway_id.as_deref())?;
    let all: Vec<SslVpnServer> = all
        .into_iter()
        .filter(|s| is(&input.ssl_vpn_server_id, &s.id))
        .filter(|s| is(&input.name, &s.name))
        .filter(|s| is(&input.resource_group_id, &s.resource_group_id))
        .collect();
    let (page, total) = page_of(all, input.paging);
    let mut items = Vec::with_capacity(page.len());
    for server in page {
        let gateway = tx
            .resource::<VpnGateway>(ResourceKind::VpnGateway, &server.gateway_id)?
            .map(|g| g.doc);
        items.push(SslVpnServerView { server, gateway });
    }
    Ok(SslVpnServersPage {
        items,
        paging: input.paging,
        total,
    })
}

operation!(
    /// DescribeSslVpnServers.
    DescribeSslVpnServers: Read, DescribeSslVpnServersInput => SslVpnServersPage,
    resources(|input, account| vec![arn(&input.region, account, "sslvpnserver", "*")]),
    handle(|ctx, tx, input| describe_ssl_vpn_servers(ctx, tx, input)),
);

/// DeleteSslVpnServer's input.
#[derive(Debug, Clone)]
pub struct DeleteSslVpnServerInput {
    pub region: String,
    pub ssl_vpn_server_id: String,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for DeleteSslVpnServerInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let ssl_vpn_server_id = params(ctx).str("SslVpnServerId")?.to_string();
        Ok(DeleteSslVpnServerInput {
            region,
            ssl_vpn_server_id,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

operation!(
    /// DeleteSslVpnServer.
    DeleteSslVpnServer: Write, DeleteSslVpnServerInput => Done,
    resources(|input, account| vec![arn(&input.region, account, "sslvpnserver", &input.ssl_vpn_server_id)]),
    handle(|ctx, tx, input| {
        let s: SslVpnServer = owned(ctx, tx, &input.region, &input.ssl_vpn_server_id)?;
        check_dry_run(&input.dry_run)?;
        tx.delete_resource(ResourceKind::SslVpnServer, &s.id)?;
        Ok(Done {})
    }),
);

/// ModifySslVpnServer's input: what to change (`None`: unchanged).
#[derive(Debug, Clone)]
pub struct ModifySslVpnServerInput {
    pub region: String,
    pub ssl_vpn_server_id: String,
    pub local_subnet: Option<Vec<Ipv4Net>>,
    pub client_ip_pool: Option<Ipv4Net>,
    pub name: Option<String>,
    pub cipher: Option<String>,
    pub proto: Option<String>,
    pub port: Option<i64>,
    pub compress: Option<bool>,
    pub enable_multi_factor_auth: Option<bool>,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for ModifySslVpnServerInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let ssl_vpn_server_id = p.str("SslVpnServerId")?.to_string();
        Ok(ModifySslVpnServerInput {
            region,
            ssl_vpn_server_id,
            local_subnet: p.opt_str("LocalSubnet").map(local_subnet).transpose()?,
            client_ip_pool: p.opt_str("ClientIpPool").map(client_ip_pool).transpose()?,
            name: p
                .opt_str("Name")
                .map(|n| validate::name(n).map(|_| n.to_string()))
                .transpose()?,
            cipher: p.opt_str("Cipher").map(cipher).transpose()?,
            proto: p.opt_str("Proto").map(proto).transpose()?,
            port: port(&p)?,
            compress: p.opt_bool("Compress")?,
            enable_multi_factor_auth: p.opt_bool("EnableMultiFactorAuth")?,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// ModifySslVpnServer's answer: the server after the change.
#[derive(Debug, Clone)]
pub struct ModifiedSslVpnServer(pub SslVpnServer, pub VpnGateway);

impl Serialize for ModifiedSslVpnServer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        server_json(&self.0, Some(&self.1)).serialize(s)
    }
}

fn modify_ssl_vpn_server(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: ModifySslVpnServerInput,
) -> Result<ModifiedSslVpnServer, ApiError> {
    let s: SslVpnServer = owned(ctx, tx, &input.region, &input.ssl_vpn_server_id)?;
    let mut gw: VpnGateway = owned(ctx, tx, &input.region, &s.gateway_id)?;
    let mut next = s.clone();
    if let Some(n) = input.name {
        next.name = n;
    }
    if let Some(l) = &input.local_subnet {
        next.local_subnet = subnet_text(l);
    }
    if let Some(pool) = input.client_ip_pool {
        next.client_ip_pool = pool.to_string();
    }
    if let Some(c) = input.cipher {
        next.cipher = c;
    }
    if let Some(p) = input.proto {
        next.proto = p;
    }
    if let Some(p) = input.port {
        next.port = p;
    }
    if let Some(c) = input.compress {
        next.compress = c;
    }
    if let Some(m) = input.enable_multi_factor_auth {
        next.enable_multi_factor_auth = m;
    }
    if next.local_subnet != s.local_subnet || next.client_ip_pool != s.client_ip_pool {
        let local = local_subnet(&next.local_subnet)?;
        let pool = client_ip_pool(&next.client_ip_pool)?;
        check_pool(ctx, tx, &gw, &local, &pool)?;
    }
    let mut relabelled = next.clone();
    relabelled.name.clone_from(&s.name);
    let in_force = relabelled != s;
    if in_force {
        crate::tasks::check_busy(ctx, &gw, ApiError::GATEWAY_CONFIGURING)?;
    }
    check_dry_run(&input.dry_run)?;
    if next != s {
        tx.update_resource(ResourceKind::SslVpnServer, &next.id, &next)?;
    }
    if in_force {
        crate::tasks::schedule(ctx, tx, &mut gw)?;
    }
    Ok(ModifiedSslVpnServer(next, gw))
}

operation!(
    /// ModifySslVpnServer: anything but the name is a gateway task.
    ModifySslVpnServer: Write, ModifySslVpnServerInput => ModifiedSslVpnServer,
    resources(|input, account| vec![arn(&input.region, account, "sslvpnserver", &input.ssl_vpn_server_id)]),
    handle(|ctx, tx, input| modify_ssl_vpn_server(ctx, tx, input)),
);
