//! VPCs and their system route table: CreateVpc, DescribeVpcs, DeleteVpc,
//! DescribeRouteTableList, DescribeRouteEntryList, CreateRouteEntry, DeleteRouteEntry.
//!
//! Each VPC gets one system route table holding a `System` entry for `100.64.0.0/10`.
//! Routes published by VPN gateways appear there with NextHopType `VpnGateway` (stored with
//! the internal entry type `Published`, shown as Type `Custom`, Origin `VpnGateway`).

use serde_json::{json, Value};
use vpnroute_domain::ids::new_id;
use vpnroute_domain::model::{Vpc, VpcRouteEntry, VpnGateway};
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, dry_run, opt_text, owned, owner_id, page_fields, page_of, params, region};
use crate::app::Ctx;
use crate::util::{iso_minute, iso_time};

pub const PUBLISHED: &str = "Published";

pub fn create_vpc(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let cidr = match p.opt_str("CidrBlock") {
        Some(c) => validate::vpc_cidr(c)?.to_string(),
        None => "172.16.0.0/12".to_string(),
    };
    let name = opt_text(ctx, "VpcName", validate::name)?;
    let description = opt_text(ctx, "Description", validate::description)?;
    if tx.count_resources(ResourceKind::Vpc, &ctx.account_id, region)? >= ctx.app.config.quotas.vpcs_per_region {
        return Err(ApiError::QUOTA_FULL);
    }
    dry_run(ctx)?;
    let vpc = Vpc {
        id: new_id("vpc"),
        region_id: region.to_string(),
        name,
        description,
        cidr_block: cidr,
        status: "Available".into(),
        vrouter_id: new_id("vrt"),
        route_table_id: new_id("vtb"),
        create_time: ctx.now_ms,
        resource_group_id: p.opt_str("ResourceGroupId").unwrap_or("rg-acfmdefault0001").to_string(),
    };
    tx.insert_resource(ResourceKind::Vpc, &vpc.id, &ctx.account_id, region, "", &vpc)?;
    tx.insert_vpc_entry(&VpcRouteEntry {
        id: new_id("rte"),
        route_table_id: vpc.route_table_id.clone(),
        dest: "100.64.0.0/10".into(),
        next_hop_type: "local".into(),
        next_hop_id: String::new(),
        entry_type: "System".into(),
        name: String::new(),
        description: String::new(),
        create_time: ctx.now_ms,
    })?;
    Ok(json!({
        "VpcId": vpc.id,
        "VRouterId": vpc.vrouter_id,
        "RouteTableId": vpc.route_table_id,
        "ResourceGroupId": vpc.resource_group_id,
    }))
}

fn vpc_json(ctx: &Ctx<'_>, v: &Vpc) -> Value {
    json!({
        "VpcId": v.id,
        "RegionId": v.region_id,
        "Status": v.status,
        "VpcName": v.name,
        "Description": v.description,
        "CreationTime": iso_time(v.create_time),
        "CidrBlock": v.cidr_block,
        "Ipv6CidrBlock": "",
        "VRouterId": v.vrouter_id,
        "IsDefault": false,
        "ResourceGroupId": v.resource_group_id,
        "OwnerId": owner_id(ctx),
        "EnabledIpv6": false,
        "CenStatus": "",
        "DhcpOptionsSetId": "",
        "DhcpOptionsSetStatus": "",
        "VSwitchIds": {"VSwitchId": []},
        "RouterTableIds": {"RouterTableIds": [v.route_table_id]},
        "UserCidrs": {"UserCidr": []},
        "NatGatewayIds": {"NatGatewayIds": []},
        "SecondaryCidrBlocks": {"SecondaryCidrBlock": []},
        "Tags": {"Tag": []},
    })
}

pub fn describe_vpcs(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let paging = p.paging()?;
    let (items, total): (Vec<Vpc>, u64) = match p.opt_str("VpcId") {
        Some(ids) => {
            let wanted: Vec<&str> = ids.split(',').map(str::trim).collect();
            let all = all_in_region::<Vpc>(ctx, tx, region, None)?;
            let all: Vec<Vpc> = all.into_iter().filter(|v| wanted.contains(&v.id.as_str())).collect();
            page_of(all, paging)
        }
        None => tx.list_resources(
            ResourceKind::Vpc,
            &ctx.account_id,
            region,
            None,
            paging.offset(),
            paging.size as u64,
        )?,
    };
    let items = items.iter().map(|v| vpc_json(ctx, v)).collect::<Vec<_>>();
    let mut body = json!({"Vpcs": {"Vpc": items}});
    page_fields(&mut body, paging, total);
    Ok(body)
}

pub fn delete_vpc(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let id = params(ctx).str("VpcId")?;
    let vpc: Vpc = owned(ctx, tx, region, id)?;
    if tx.count_children(ResourceKind::VpnGateway, &vpc.id)? > 0 {
        return Err(ApiError::DEPENDENCY_VPN_GATEWAY);
    }
    if tx
        .vpc_entries(&vpc.route_table_id)?
        .iter()
        .any(|e| e.entry_type != "System")
    {
        return Err(ApiError::DEPENDENCY_ROUTE_TABLE_ENTRY);
    }
    dry_run(ctx)?;
    tx.delete_vpc_entries_of_table(&vpc.route_table_id)?;
    tx.delete_resource(ResourceKind::Vpc, &vpc.id)?;
    Ok(json!({}))
}

/// The VPC owning a route table id, among the caller's VPCs in the region.
fn vpc_of_table(ctx: &Ctx<'_>, tx: &dyn ReadTx, region: &str, table_id: &str) -> Result<Vpc, ApiError> {
    let vpcs = all_in_region::<Vpc>(ctx, tx, region, None)?;
    vpcs.into_iter()
        .find(|v| v.route_table_id == table_id)
        .ok_or(ApiError::ROUTE_TABLE_NOT_FOUND)
}

pub fn describe_route_table_list(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let paging = p.paging()?;
    if let Some(t) = p.opt_str("RouterType") {
        if t != "VRouter" && t != "VBR" {
            return Err(ApiError::invalid_parameter("RouterType"));
        }
    }
    let vpcs = all_in_region::<Vpc>(ctx, tx, region, None)?;
    let matching: Vec<Vpc> = vpcs
        .into_iter()
        .filter(|v| p.opt_str("VpcId").is_none_or(|id| id == v.id))
        .filter(|v| p.opt_str("RouteTableId").is_none_or(|id| id == v.route_table_id))
        .filter(|v| p.opt_str("RouterId").is_none_or(|id| id == v.vrouter_id))
        .filter(|_| p.opt_str("RouteTableType").is_none_or(|t| t == "System"))
        .filter(|_| p.opt_str("RouterType").is_none_or(|t| t == "VRouter"))
        .collect();
    let (page, total) = page_of(matching, paging);
    let page: Vec<Value> = page
        .iter()
        .map(|v| {
            json!({
                "RouteTableId": v.route_table_id,
                "RouteTableName": "",
                "RouteTableType": "System",
                "RouterId": v.vrouter_id,
                "RouterType": "VRouter",
                "VpcId": v.id,
                "Status": "Available",
                "Description": "",
                "CreationTime": iso_time(v.create_time),
                "OwnerId": owner_id(ctx),
                "ResourceGroupId": v.resource_group_id,
                "AssociateType": "VSwitch",
                "RoutePropagationEnable": true,
                "VSwitchIds": {"VSwitchId": []},
                "GatewayIds": {"GatewayIds": []},
                "Tags": {"Tag": []},
            })
        })
        .collect();
    let mut body = json!({"RouterTableList": {"RouterTableListType": page}});
    page_fields(&mut body, paging, total);
    Ok(body)
}

fn entry_json(e: &VpcRouteEntry, region: &str) -> Value {
    let (entry_type, origin) = match e.entry_type.as_str() {
        PUBLISHED => ("Custom", "VpnGateway"),
        "System" => ("System", "System"),
        _ => ("Custom", "Custom"),
    };
    let next_hops = if e.next_hop_id.is_empty() {
        vec![]
    } else {
        vec![json!({
            "NextHopType": e.next_hop_type,
            "NextHopId": e.next_hop_id,
            "NextHopRegionId": region,
            "Enabled": 1,
            "Weight": 0,
            "NextHopRelatedInfo": {"InstanceId": "", "InstanceType": "", "RegionId": ""},
        })]
    };
    json!({
        "RouteEntryId": e.id,
        "RouteEntryName": e.name,
        "RouteTableId": e.route_table_id,
        "DestinationCidrBlock": e.dest,
        "IpVersion": "ipv4",
        "Type": entry_type,
        "Status": "Available",
        "Origin": origin,
        "Description": e.description,
        "ServiceType": "",
        "GmtModified": iso_minute(e.create_time),
        "NextHops": {"NextHop": next_hops},
    })
}

pub fn describe_route_entry_list(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let table = p.str("RouteTableId")?;
    let max = p.opt_int_in("MaxResult", 1, 100)?.unwrap_or(10) as usize;
    let start: usize = match p.opt_str("NextToken") {
        None => 0,
        Some(t) => t.parse().map_err(|_| ApiError::invalid_parameter("NextToken"))?,
    };
    vpc_of_table(ctx, tx, region, table)?;
    let entries: Vec<VpcRouteEntry> = tx
        .vpc_entries(table)?
        .into_iter()
        .filter(|e| p.opt_str("RouteEntryId").is_none_or(|id| id == e.id))
        .filter(|e| p.opt_str("DestinationCidrBlock").is_none_or(|d| d == e.dest))
        .filter(|e| p.opt_str("NextHopId").is_none_or(|h| h == e.next_hop_id))
        .filter(|e| p.opt_str("NextHopType").is_none_or(|h| h == e.next_hop_type))
        .filter(|e| {
            p.opt_str("RouteEntryType").is_none_or(|t| match e.entry_type.as_str() {
                PUBLISHED => t == "Custom",
                other => other == t,
            })
        })
        .collect();
    let total = entries.len();
    let page: Vec<Value> = entries
        .iter()
        .skip(start)
        .take(max)
        .map(|e| entry_json(e, region))
        .collect();
    let next = if start + max < total {
        (start + max).to_string()
    } else {
        String::new()
    };
    Ok(json!({"NextToken": next, "TotalCount": total, "RouteEntrys": {"RouteEntry": page}}))
}

/// Next hop types a custom entry may use. `VpnGateway` next hops must be gateways of the
/// same VPC; the others are accepted as opaque ids.
const NEXT_HOP_TYPES: &[&str] = &[
    "Instance",
    "HaVip",
    "VpnGateway",
    "NatGateway",
    "NetworkInterface",
    "RouterInterface",
    "IPv6Gateway",
    "Attachment",
    "Ipv4Gateway",
    "GatewayEndpoint",
    "Ecr",
];

pub fn create_route_entry(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let table = p.str("RouteTableId")?;
    let dest = p.str("DestinationCidrBlock")?;
    let dest = validate::parse_cidr(dest).ok_or(ApiError::invalid_parameter("DestinationCidrBlock"))?;
    if dest.addr() != dest.network() {
        return Err(ApiError::invalid_parameter("DestinationCidrBlock"));
    }
    let hop_type = p.opt_str("NextHopType").unwrap_or("Instance");
    if !NEXT_HOP_TYPES.contains(&hop_type) {
        return Err(ApiError::INVALID_NEXT_HOP_TYPE);
    }
    let hop_id = p.str("NextHopId")?;
    let name = opt_text(ctx, "RouteEntryName", validate::name)?;
    let description = opt_text(ctx, "Description", validate::description)?;
    let vpc = vpc_of_table(ctx, tx, region, table)?;
    if hop_type == "VpnGateway" {
        let gw: VpnGateway = owned(ctx, tx, region, hop_id).map_err(|_| ApiError::NEXT_HOP_NOT_FOUND)?;
        if gw.vpc_id != vpc.id {
            return Err(ApiError::NEXT_HOP_NOT_FOUND);
        }
    }
    if !tx.vpc_entries_for_dest(table, &dest.to_string())?.is_empty() {
        return Err(ApiError::ROUTE_ENTRY_CONFLICT_DUPLICATED);
    }
    dry_run(ctx)?;
    let entry = VpcRouteEntry {
        id: new_id("rte"),
        route_table_id: table.to_string(),
        dest: dest.to_string(),
        next_hop_type: hop_type.to_string(),
        next_hop_id: hop_id.to_string(),
        entry_type: "Custom".into(),
        name,
        description,
        create_time: ctx.now_ms,
    };
    tx.insert_vpc_entry(&entry)?;
    Ok(json!({"RouteEntryId": entry.id}))
}

pub fn delete_route_entry(ctx: &Ctx<'_>, tx: &Tx<'_>) -> Result<Value, ApiError> {
    let region = region(ctx)?;
    let p = params(ctx);
    let entry = match p.opt_str("RouteEntryId") {
        Some(id) => tx.vpc_entry(id)?.ok_or(ApiError::ROUTE_ENTRY_NOT_FOUND)?,
        None => {
            let table = p.str("RouteTableId")?;
            let dest = p.str("DestinationCidrBlock")?;
            let hop = p.opt_str("NextHopId");
            tx.vpc_entries_for_dest(table, dest)?
                .into_iter()
                .find(|e| hop.is_none_or(|h| h == e.next_hop_id))
                .ok_or(ApiError::ROUTE_ENTRY_NOT_FOUND)?
        }
    };
    vpc_of_table(ctx, tx, region, &entry.route_table_id).map_err(|_| ApiError::ROUTE_ENTRY_NOT_FOUND)?;
    if entry.entry_type != "Custom" {
        return Err(ApiError::new(
            "OperationDenied.RouteEntryNotCustom",
            "Only custom route entries can be deleted; withdraw VPN-published routes with PublishVpnRouteEntry.",
            400,
        ));
    }
    dry_run(ctx)?;
    tx.delete_vpc_entry(&entry.id)?;
    Ok(json!({}))
}
