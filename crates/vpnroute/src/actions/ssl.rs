//! SSL-VPN servers: CreateSslVpnServer, DescribeSslVpnServers, DeleteSslVpnServer. Their
//! ClientIpPool is what `VpnRouteEntry.ConflictSSL` checks routes against.

use serde_json::{json, Value};
use vpnroute_domain::ids::new_id;
use vpnroute_domain::model::{SslVpnServer, Vpc, VpnGateway, VpnRoute};
use vpnroute_domain::validate::{self, overlaps};
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, dry_run, opt_text, owned, page_fields, page_of, params, region};
use crate::app::Ctx;

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

pub fn create_ssl_vpn_server(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let gateway_id = p.str("VpnGatewayId")?;
    let local = validate::cidr_list(p.str("LocalSubnet")?, "LocalSubnet")?;
    if local.len() > 5 || local.iter().any(|n| n.prefix_len() < 8) {
        return Err(ApiError::invalid_parameter("LocalSubnet"));
    }
    let pool_text = p.str("ClientIpPool")?;
    let pool = validate::parse_cidr(pool_text).ok_or(ApiError::invalid_parameter("ClientIpPool"))?;
    if pool.addr() != pool.network() || !(16..=29).contains(&pool.prefix_len()) {
        return Err(ApiError::invalid_parameter("ClientIpPool"));
    }
    if validate::route_dest(pool_text).is_err()
        || overlaps(&pool, &"169.254.0.0/16".parse().unwrap_or(pool)) && pool_text.starts_with("169.254")
    {
        return Err(ApiError::invalid_parameter("ClientIpPool"));
    }
    let name = opt_text(ctx, "Name", validate::name)?;
    let cipher = p.opt_str("Cipher").unwrap_or("AES-128-CBC");
    if !["AES-128-CBC", "AES-192-CBC", "AES-256-CBC", "none"].contains(&cipher) {
        return Err(ApiError::invalid_parameter("Cipher"));
    }
    let proto = p.opt_str("Proto").unwrap_or("TCP");
    if proto != "TCP" && proto != "UDP" {
        return Err(ApiError::invalid_parameter("Proto"));
    }
    let port = p.opt_int_in("Port", 1, 65535)?.unwrap_or(1194);
    if FORBIDDEN_PORTS.contains(&port) {
        return Err(ApiError::invalid_parameter("Port"));
    }
    let compress = p.bool_or("Compress", false)?;
    let mfa = p.bool_or("EnableMultiFactorAuth", false)?;
    // Before reading: "one SSL server per gateway" holds until commit.
    tx.lock_gateway(gateway_id)?;
    let gw: VpnGateway = owned(ctx, tx, region, gateway_id)?;
    if !gw.enable_ssl {
        return Err(ApiError::SSL_NOT_ENABLED);
    }
    if pool.prefix_len() > max_pool_prefix(gw.ssl_connections) {
        return Err(ApiError::invalid_parameter("ClientIpPool"));
    }
    if tx.count_children(ResourceKind::SslVpnServer, &gw.id)? > 0 {
        return Err(ApiError::SSL_SERVER_EXISTS);
    }
    let vpc: Vpc = owned(ctx, tx, region, &gw.vpc_id)?;
    let vpc_cidr = validate::parse_cidr(&vpc.cidr_block);
    let routes: Vec<VpnRoute> = tx.gateway_routes(&gw.id)?;
    if local.iter().any(|l| overlaps(l, &pool))
        || vpc_cidr.is_some_and(|c| overlaps(&c, &pool))
        || routes
            .iter()
            .filter_map(|r| validate::parse_cidr(&r.dest))
            .any(|d| overlaps(&d, &pool))
    {
        return Err(ApiError::SSL_CLIENT_POOL_CONFLICT);
    }
    crate::tasks::check_busy(ctx, &gw, ApiError::GATEWAY_CONFIGURING)?;
    dry_run(ctx)?;
    let id = new_id("vss");
    let server = SslVpnServer {
        name: if name.is_empty() { id.clone() } else { name },
        id,
        region_id: region.to_string(),
        gateway_id: gw.id.clone(),
        local_subnet: local.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        client_ip_pool: pool.to_string(),
        cipher: cipher.into(),
        proto: proto.into(),
        port,
        compress,
        create_time: ctx.now_ms,
        enable_multi_factor_auth: mfa,
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
    Ok(json!({"SslVpnServerId": server.id, "Name": server.name}))
}

pub fn describe_ssl_vpn_servers(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let paging = p.paging()?;
    let all = all_in_region::<SslVpnServer>(ctx, tx, region, p.opt_str("VpnGatewayId"))?;
    let all: Vec<SslVpnServer> = all
        .into_iter()
        .filter(|s| p.opt_str("SslVpnServerId").is_none_or(|v| v == s.id))
        .filter(|s| p.opt_str("Name").is_none_or(|v| v == s.name))
        .filter(|s| p.opt_str("ResourceGroupId").is_none_or(|v| v == s.resource_group_id))
        .collect();
    let (page, total) = page_of(all, paging);
    let mut items = Vec::new();
    for s in &page {
        let gw = tx
            .resource::<VpnGateway>(ResourceKind::VpnGateway, &s.gateway_id)?
            .map(|g| g.doc);
        items.push(json!({
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
            "MaxConnections": gw.as_ref().map(|g| g.ssl_connections).unwrap_or(0),
            "InternetIp": gw.as_ref().map(|g| g.internet_ip.clone()).unwrap_or_default(),
            "CreateTime": s.create_time,
            "EnableMultiFactorAuth": s.enable_multi_factor_auth,
            "IDaaSInstanceId": "",
            "IDaaSRegionId": "",
            "IDaaSApplicationId": "",
            "ResourceGroupId": s.resource_group_id,
        }));
    }
    let mut body = json!({"SslVpnServers": {"SslVpnServer": items}});
    page_fields(&mut body, paging, total);
    Ok(body)
}

pub fn delete_ssl_vpn_server(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let id = params(ctx).str("SslVpnServerId")?;
    let s: SslVpnServer = owned(ctx, tx, region, id)?;
    dry_run(ctx)?;
    tx.delete_resource(ResourceKind::SslVpnServer, &s.id)?;
    Ok(json!({}))
}
