//! VPN gateways: CreateVpnGateway, DescribeVpnGateway, DescribeVpnGateways, DeleteVpnGateway.

use rand::Rng;
use serde_json::{json, Value};
use vpnroute_domain::ids::new_id;
use vpnroute_domain::model::{Vpc, VpnGateway};
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ResourceKind, Tx};

use super::{all_in_region, dry_run, opt_text, owned, page_fields, page_of, params, region};
use crate::app::Ctx;
use crate::util::tags_json;

const BANDWIDTHS: &[i64] = &[5, 10, 20, 50, 100, 200, 500, 1000];
const SSL_CONNECTIONS: &[i64] = &[5, 10, 20, 50, 100, 200, 500, 1000];
/// Postpaid gateways never expire: Alibaba-style far-future EndTime (2099-12-31T23:59:59Z).
const NO_END_TIME: i64 = 4_102_415_999_000;

pub fn create_vpn_gateway(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let vpc_id = p.str("VpcId")?;
    let bandwidth = p
        .opt_i64("Bandwidth")?
        .ok_or_else(|| ApiError::missing_parameter("Bandwidth"))?;
    if !BANDWIDTHS.contains(&bandwidth) {
        return Err(ApiError::invalid_parameter("Bandwidth"));
    }
    let name = opt_text(ctx, "Name", validate::name)?;
    let charge = match p
        .opt_str("InstanceChargeType")
        .unwrap_or("POSTPAY")
        .to_ascii_uppercase()
        .as_str()
    {
        "POSTPAY" | "POSTPAID" => "PostpayByFlow",
        "PREPAY" | "PREPAID" => "Prepay",
        _ => return Err(ApiError::invalid_parameter("InstanceChargeType")),
    };
    let enable_ipsec = p.bool_or("EnableIpsec", true)?;
    let enable_ssl = p.bool_or("EnableSsl", false)?;
    let ssl_connections = p.opt_i64("SslConnections")?.unwrap_or(5);
    if !SSL_CONNECTIONS.contains(&ssl_connections) {
        return Err(ApiError::invalid_parameter("SslConnections"));
    }
    let network_type = p.opt_str("NetworkType").unwrap_or("public");
    if network_type != "public" && network_type != "private" {
        return Err(ApiError::invalid_parameter("NetworkType"));
    }
    let vpn_type = p.opt_str("VpnType").unwrap_or("Normal");
    if vpn_type != "Normal" && vpn_type != "NationalStandard" {
        return Err(ApiError::invalid_parameter("VpnType"));
    }
    p.opt_bool("AutoPay")?;
    p.opt_int_in("Period", 1, 36)?;
    let vpc: Vpc = owned(ctx, tx, region, vpc_id)?;
    if vpc.status != "Available" {
        return Err(ApiError::INCORRECT_VPC_STATUS);
    }
    if tx.count_resources(ResourceKind::VpnGateway, &ctx.account_id, region)?
        >= ctx.app.config.quotas.gateways_per_region
    {
        return Err(ApiError::QUOTA_FULL);
    }
    dry_run(ctx)?;
    let id = new_id("vpn");
    let mut rng = rand::rng();
    let internet_ip = if network_type == "public" {
        format!(
            "47.{}.{}.{}",
            rng.random_range(0..=255),
            rng.random_range(0..=255),
            rng.random_range(1..=254)
        )
    } else {
        String::new()
    };
    let mut gw = VpnGateway {
        name: if name.is_empty() { id.clone() } else { name },
        id,
        region_id: region.to_string(),
        vpc_id: vpc.id.clone(),
        vswitch_id: p
            .opt_str("VSwitchId")
            .map(str::to_string)
            .unwrap_or_else(|| new_id("vsw")),
        description: String::new(),
        bandwidth,
        internet_ip,
        status: "provisioning".into(),
        business_status: "Normal".into(),
        charge_type: charge.into(),
        enable_ipsec,
        enable_ssl,
        ssl_connections,
        pbr_priority: true,
        network_type: network_type.into(),
        vpn_type: vpn_type.into(),
        create_time: ctx.now_ms,
        end_time: NO_END_TIME,
        resource_group_id: p.opt_str("ResourceGroupId").unwrap_or("rg-acfmdefault0001").to_string(),
        tags: vec![],
        auto_propagate: false,
        enable_bgp: false,
        task_duration: None,
    };
    tx.insert_resource(ResourceKind::VpnGateway, &gw.id, &ctx.account_id, region, &vpc.id, &gw)?;
    crate::tasks::schedule(ctx, tx, &mut gw, vec![])?;
    let order_id: i64 = rng.random_range(200_000_000_000..900_000_000_000);
    Ok(json!({"VpnGatewayId": gw.id, "Name": gw.name, "OrderId": order_id}))
}

/// Alibaba's system tags, JSON-encoded in the `Tag` field.
fn system_tag(gw: &VpnGateway) -> String {
    json!({
        "VpnEnableBgp": "true",
        "VisuallySsl": "true",
        "PbrPriority": if gw.pbr_priority { "true" } else { "false" },
        "VpnNewImage": "true",
        "description": "forwarding1.7.22",
        "VpnVersion": "v1.2.4",
        "IDaaSNewVersion": "true",
    })
    .to_string()
}

pub fn gateway_json(gw: &VpnGateway, include_reservation: bool) -> Value {
    let mut v = json!({
        "VpnGatewayId": gw.id,
        "VpcId": gw.vpc_id,
        "VSwitchId": gw.vswitch_id,
        "InternetIp": gw.internet_ip,
        "DisasterRecoveryInternetIp": "",
        "DisasterRecoveryVSwitchId": "",
        "SslVpnInternetIp": if gw.enable_ssl { gw.internet_ip.clone() } else { String::new() },
        "CreateTime": gw.create_time,
        "EndTime": gw.end_time,
        "Spec": format!("{}M", gw.bandwidth),
        "Name": gw.name,
        "Description": gw.description,
        "Status": gw.status,
        "BusinessStatus": gw.business_status,
        "ChargeType": gw.charge_type,
        "IpsecVpn": if gw.enable_ipsec { "enable" } else { "disable" },
        "SslVpn": if gw.enable_ssl { "enable" } else { "disable" },
        "SslMaxConnections": gw.ssl_connections,
        "Tag": system_tag(gw),
        "EnableBgp": gw.enable_bgp,
        "AutoPropagate": gw.auto_propagate,
        "VpnType": gw.vpn_type,
        "GatewayType": "Traditional",
        "NetworkType": gw.network_type,
        "ResourceGroupId": gw.resource_group_id,
        "Tags": tags_json(&gw.tags),
        "EniInstanceIds": {"EniInstanceId": []},
    });
    if include_reservation {
        v["ReservationData"] = json!({
            "ReservationEndTime": "",
            "ReservationIpsec": "",
            "ReservationMaxConnections": 0,
            "ReservationOrderType": "",
            "ReservationSpec": "",
            "ReservationSsl": "",
            "Status": "",
        });
    }
    v
}

pub fn describe_vpn_gateway(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let id = p.str("VpnGatewayId")?;
    let include = p.bool_or("IncludeReservationData", false)?;
    let gw: VpnGateway = owned(ctx, tx, region, id)?;
    Ok(gateway_json(&gw, include))
}

pub fn describe_vpn_gateways(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let paging = p.paging()?;
    let include = p.bool_or("IncludeReservationData", false)?;
    let tags = p.tags("Tag")?;
    let filtered = p.opt_str("VpnGatewayId").is_some()
        || p.opt_str("VpcId").is_some()
        || p.opt_str("Status").is_some()
        || p.opt_str("BusinessStatus").is_some()
        || p.opt_str("GatewayType").is_some()
        || p.opt_str("ResourceGroupId").is_some()
        || !tags.is_empty();
    let (items, total) = if filtered {
        let all = all_in_region::<VpnGateway>(ctx, tx, region, None)?;
        let all: Vec<VpnGateway> = all
            .into_iter()
            .filter(|g| p.opt_str("VpnGatewayId").is_none_or(|v| v == g.id))
            .filter(|g| p.opt_str("VpcId").is_none_or(|v| v == g.vpc_id))
            .filter(|g| p.opt_str("Status").is_none_or(|v| v.eq_ignore_ascii_case(&g.status)))
            .filter(|g| p.opt_str("BusinessStatus").is_none_or(|v| v == g.business_status))
            .filter(|_| p.opt_str("GatewayType").is_none_or(|v| v == "Traditional"))
            .filter(|g| p.opt_str("ResourceGroupId").is_none_or(|v| v == g.resource_group_id))
            .filter(|g| tags.iter().all(|t| g.tags.contains(t)))
            .collect();
        page_of(all, paging)
    } else {
        tx.list_resources(
            ResourceKind::VpnGateway,
            &ctx.account_id,
            region,
            None,
            paging.offset(),
            paging.size as u64,
        )?
    };
    let items: Vec<Value> = items.iter().map(|g| gateway_json(g, include)).collect();
    let mut body = json!({"VpnGateways": {"VpnGateway": items}});
    page_fields(&mut body, paging, total);
    Ok(body)
}

pub fn delete_vpn_gateway(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let id = params(ctx).str("VpnGatewayId")?;
    let gw: VpnGateway = owned(ctx, tx, region, id)?;
    crate::tasks::check_busy(ctx, &gw, ApiError::GATEWAY_CONFIGURING)?;
    if tx.count_children(ResourceKind::VpnConnection, &gw.id)? > 0 {
        return Err(ApiError::DEPENDENCY_VPN_CONNECTION);
    }
    if tx.count_children(ResourceKind::SslVpnServer, &gw.id)? > 0 {
        return Err(ApiError::DEPENDENCY_SSL_SERVER);
    }
    if tx.count_vpc_entries_via(&gw.id)? > 0 {
        return Err(ApiError::new(
            "DependencyViolation.RouteEntry",
            "Route entries in the VPC route table still point to the specified VPN gateway.",
            400,
        ));
    }
    dry_run(ctx)?;
    tx.delete_resource(ResourceKind::VpnGateway, &gw.id)?;
    tx.delete_gateway_state(&gw.id)?;
    ctx.effects.borrow_mut().deleted_gateways.push(gw.id);
    Ok(json!({}))
}
