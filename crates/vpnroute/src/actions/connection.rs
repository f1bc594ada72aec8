//! IPsec connections (the next hops of VPN routes): CreateVpnConnection,
//! DescribeVpnConnection, DescribeVpnConnections, DeleteVpnConnection.
//!
//! IkeConfig / IpsecConfig / HealthCheckConfig / BgpConfig arrive as JSON strings; they are
//! validated, completed with Alibaba's defaults and returned in Alibaba's response shape.

use serde_json::{json, Map, Value};
use vpnroute_domain::ids::{new_id, new_secret};
use vpnroute_domain::model::{CustomerGateway, VpnConnection, VpnGateway};
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, dry_run, opt_text, owned, page_fields, page_of, params, region};
use crate::app::Ctx;
use crate::util::tags_json;

fn json_param(ctx: &Ctx<'_>, name: &str) -> Result<Map<String, Value>, ApiError> {
    match params(ctx).opt_str(name) {
        None => Ok(Map::new()),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(ApiError::invalid_parameter(name)),
        },
    }
}

/// A string member restricted to `allowed`, defaulting to the first.
fn pick(m: &Map<String, Value>, key: &str, allowed: &[&str], param: &str) -> Result<String, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(allowed[0].to_string()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s.clone()),
        _ => Err(ApiError::invalid_parameter(&format!("{param}.{key}"))),
    }
}

fn int_member(
    m: &Map<String, Value>,
    key: &str,
    default: i64,
    min: i64,
    max: i64,
    param: &str,
) -> Result<i64, ApiError> {
    let v = match m.get(key) {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    };
    match v {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ApiError::invalid_parameter(&format!("{param}.{key}"))),
    }
}

fn str_member(m: &Map<String, Value>, key: &str) -> Option<String> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn bool_member(m: &Map<String, Value>, key: &str, default: bool) -> bool {
    match m.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => default,
    }
}

const ENC: &[&str] = &["aes", "aes192", "aes256", "des", "3des", "sm4"];
const AUTH: &[&str] = &["md5", "sha1", "sha256", "sha384", "sha512", "sm3"];
const PFS: &[&str] = &["group2", "group1", "group5", "group14", "group24"];

pub fn create_vpn_connection(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let gateway_id = p.str("VpnGatewayId")?;
    let cgw_id = p.str("CustomerGatewayId")?;
    let local = validate::cidr_list(p.str("LocalSubnet")?, "LocalSubnet")?;
    let remote = validate::cidr_list(p.str("RemoteSubnet")?, "RemoteSubnet")?;
    let name = opt_text(ctx, "Name", validate::name)?;
    // Before reading: the per-gateway checks below hold until commit.
    tx.lock_gateway(gateway_id)?;
    let gw: VpnGateway = owned(ctx, tx, region, gateway_id)?;
    let cgw: CustomerGateway = owned(ctx, tx, region, cgw_id)?;

    let ike_in = json_param(ctx, "IkeConfig")?;
    let psk = str_member(&ike_in, "Psk").unwrap_or_else(|| new_secret(16));
    if psk.chars().count() > 100 {
        return Err(ApiError::invalid_parameter("IkeConfig.Psk"));
    }
    let ike = json!({
        "IkeVersion": pick(&ike_in, "IkeVersion", &["ikev1", "ikev2"], "IkeConfig")?,
        "IkeMode": pick(&ike_in, "IkeMode", &["main", "aggressive"], "IkeConfig")?,
        "IkeEncAlg": pick(&ike_in, "IkeEncAlg", ENC, "IkeConfig")?,
        "IkeAuthAlg": pick(&ike_in, "IkeAuthAlg", AUTH, "IkeConfig")?,
        "IkePfs": pick(&ike_in, "IkePfs", PFS, "IkeConfig")?,
        "IkeLifetime": int_member(&ike_in, "IkeLifetime", 86400, 0, 86400, "IkeConfig")?,
        "LocalId": str_member(&ike_in, "LocalId").unwrap_or_else(|| gw.internet_ip.clone()),
        "RemoteId": str_member(&ike_in, "RemoteId").unwrap_or_else(|| cgw.ip_address.clone()),
        "Psk": psk,
    });
    let ipsec_in = json_param(ctx, "IpsecConfig")?;
    let mut ipsec_pfs = PFS.to_vec();
    ipsec_pfs.push("disabled");
    let ipsec = json!({
        "IpsecEncAlg": pick(&ipsec_in, "IpsecEncAlg", ENC, "IpsecConfig")?,
        "IpsecAuthAlg": pick(&ipsec_in, "IpsecAuthAlg", AUTH, "IpsecConfig")?,
        "IpsecPfs": pick(&ipsec_in, "IpsecPfs", &ipsec_pfs, "IpsecConfig")?,
        "IpsecLifetime": int_member(&ipsec_in, "IpsecLifetime", 86400, 0, 86400, "IpsecConfig")?,
    });
    let hc_in = json_param(ctx, "HealthCheckConfig")?;
    let hc_enabled = bool_member(&hc_in, "enable", false);
    let health = json!({
        "Enable": if hc_enabled { "true" } else { "false" },
        "Dip": str_member(&hc_in, "dip").unwrap_or_default(),
        "Sip": str_member(&hc_in, "sip").unwrap_or_default(),
        "Interval": int_member(&hc_in, "interval", 3, 1, 60, "HealthCheckConfig")?,
        "Retry": int_member(&hc_in, "retry", 3, 1, 100, "HealthCheckConfig")?,
        "Policy": "revoke_route",
        "Status": if hc_enabled { "success" } else { "" },
    });
    let bgp_in = json_param(ctx, "BgpConfig")?;
    let bgp_enabled = bool_member(&bgp_in, "EnableBgp", false);
    let bgp = json!({
        "EnableBgp": if bgp_enabled { "true" } else { "false" },
        "LocalAsn": int_member(&bgp_in, "LocalAsn", 45104, 1, 4_294_967_295, "BgpConfig")?,
        "TunnelCidr": str_member(&bgp_in, "TunnelCidr").unwrap_or_default(),
        "LocalBgpIp": str_member(&bgp_in, "LocalBgpIp").unwrap_or_default(),
        "PeerBgpIp": "",
        "Status": if bgp_enabled { "success" } else { "" },
        "AuthKey": cgw.auth_key,
    });
    let mut bgp = bgp;
    if let Some(asn) = cgw.asn {
        // Long in the SDK models; omitted when the customer gateway has no ASN.
        bgp["PeerAsn"] = json!(asn);
    }
    let effect_immediately = p.bool_or("EffectImmediately", false)?;
    let enable_dpd = p.bool_or("EnableDpd", true)?;
    let enable_nat = p.bool_or("EnableNatTraversal", true)?;
    let enable_tunnels_bgp = p.bool_or("EnableTunnelsBgp", false)?;
    p.opt_bool("AutoConfigRoute")?;
    let tags = p.tags("Tags")?;
    if !gw.enable_ipsec {
        return Err(ApiError::new(
            "VpnGateway.IpsecVpnDisabled",
            "The IPsec-VPN function of the specified VPN gateway is not enabled.",
            400,
        ));
    }
    if gw.business_status == "FinancialLocked" {
        return Err(ApiError::GATEWAY_FINANCIAL_LOCKED);
    }
    crate::tasks::check_busy(ctx, &gw, ApiError::GATEWAY_CONFIGURING)?;
    if tx.count_children(ResourceKind::VpnConnection, &gw.id)? >= ctx.app.config.quotas.connections_per_gateway {
        return Err(ApiError::QUOTA_FULL);
    }
    dry_run(ctx)?;
    let id = new_id("vco");
    let conn = VpnConnection {
        name: if name.is_empty() { id.clone() } else { name },
        id,
        region_id: region.to_string(),
        gateway_id: gw.id.clone(),
        customer_gateway_id: cgw.id.clone(),
        local_subnet: local.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        remote_subnet: remote.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        effect_immediately,
        enable_dpd,
        enable_nat_traversal: enable_nat,
        enable_tunnels_bgp,
        ike_config: ike,
        ipsec_config: ipsec,
        health_check: health,
        bgp_config: bgp,
        create_time: ctx.now_ms,
        state: "active".into(),
        tunnel_up: true,
        remote_ca_certificate: p.opt_str("RemoteCaCertificate").unwrap_or("").to_string(),
        resource_group_id: gw.resource_group_id.clone(),
        tags,
    };
    tx.insert_resource(
        ResourceKind::VpnConnection,
        &conn.id,
        &ctx.account_id,
        region,
        &gw.id,
        &conn,
    )?;
    Ok(json!({"VpnConnectionId": conn.id, "Name": conn.name, "CreateTime": conn.create_time}))
}

fn connection_json(c: &VpnConnection, gw_ip: &str, list_item: bool) -> Value {
    let mut v = json!({
        "VpnConnectionId": c.id,
        "VpnGatewayId": c.gateway_id,
        "CustomerGatewayId": c.customer_gateway_id,
        "Name": c.name,
        "LocalSubnet": c.local_subnet,
        "RemoteSubnet": c.remote_subnet,
        "CreateTime": c.create_time,
        "EffectImmediately": c.effect_immediately,
        "EnableDpd": c.enable_dpd,
        "EnableNatTraversal": c.enable_nat_traversal,
        "EnableTunnelsBgp": c.enable_tunnels_bgp,
        "Status": if c.tunnel_up { "ipsec_sa_established" } else { "ike_sa_not_established" },
        "State": c.state,
        "AttachType": "VPNGW",
        "AttachInstanceId": c.gateway_id,
        "TransitRouterId": "",
        "TransitRouterName": "",
        "CrossAccountAuthorized": false,
        "NetworkType": "public",
        "InternetIp": gw_ip,
        "Spec": "",
        "TunnelBandwidth": "",
        "ZoneNo": "",
        "ResourceGroupId": c.resource_group_id,
        "RemoteCaCertificate": c.remote_ca_certificate,
        "IkeConfig": c.ike_config,
        "IpsecConfig": c.ipsec_config,
        "VcoHealthCheck": c.health_check,
        "VpnBgpConfig": c.bgp_config,
        "TunnelOptionsSpecification": {"TunnelOptions": []},
    });
    // Alibaba's quirk: list items carry user tags under `Tag`, the single Describe under `Tags`.
    v[if list_item { "Tag" } else { "Tags" }] = tags_json(&c.tags);
    if list_item {
        // The list item model has neither ZoneNo nor VpnBgpConfig.EnableBgp.
        if let Some(m) = v.as_object_mut() {
            m.remove("ZoneNo");
        }
        if let Some(m) = v["VpnBgpConfig"].as_object_mut() {
            m.remove("EnableBgp");
        }
    }
    v
}

fn gateway_ip(tx: &dyn ReadTx, gateway_id: &str) -> Result<String, ApiError> {
    Ok(tx
        .resource::<VpnGateway>(ResourceKind::VpnGateway, gateway_id)?
        .map(|g| g.doc.internet_ip)
        .unwrap_or_default())
}

pub fn describe_vpn_connection(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let id = params(ctx).str("VpnConnectionId")?;
    let c: VpnConnection = owned(ctx, tx, region, id)?;
    Ok(connection_json(&c, &gateway_ip(tx, &c.gateway_id)?, false))
}

pub fn describe_vpn_connections(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let paging = p.paging()?;
    let tags = p.tags("Tag")?;
    let all = all_in_region::<VpnConnection>(ctx, tx, region, p.opt_str("VpnGatewayId"))?;
    let all: Vec<VpnConnection> = all
        .into_iter()
        .filter(|c| p.opt_str("VpnConnectionId").is_none_or(|v| v == c.id))
        .filter(|c| {
            p.opt_str("CustomerGatewayId")
                .is_none_or(|v| v == c.customer_gateway_id)
        })
        .filter(|c| p.opt_str("ResourceGroupId").is_none_or(|v| v == c.resource_group_id))
        .filter(|c| tags.iter().all(|t| c.tags.contains(t)))
        .collect();
    let (page, total) = page_of(all, paging);
    let items = page
        .iter()
        .map(|c| Ok(connection_json(c, &gateway_ip(tx, &c.gateway_id)?, true)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let mut body = json!({"VpnConnections": {"VpnConnection": items}});
    page_fields(&mut body, paging, total);
    Ok(body)
}

pub fn delete_vpn_connection(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let id = params(ctx).str("VpnConnectionId")?;
    let c: VpnConnection = owned(ctx, tx, region, id)?;
    // "No route uses it" holds until commit (a connection's gateway never changes).
    tx.lock_gateway(&c.gateway_id)?;
    if let Some(gw) = tx.resource::<VpnGateway>(ResourceKind::VpnGateway, &c.gateway_id)? {
        if gw.doc.business_status == "FinancialLocked" {
            return Err(ApiError::new(
                "FinancialLocked",
                "The specified service is financial locked.",
                400,
            ));
        }
        crate::tasks::check_busy(ctx, &gw.doc, ApiError::GATEWAY_CONFIGURING)?;
    }
    if tx.count_routes_via(&c.id)? > 0 {
        return Err(ApiError::DEPENDENCY_ROUTE_ENTRY);
    }
    dry_run(ctx)?;
    tx.delete_resource(ResourceKind::VpnConnection, &c.id)?;
    Ok(json!({}))
}
