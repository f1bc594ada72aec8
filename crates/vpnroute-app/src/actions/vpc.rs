//! VPCs and their system route table as typed operations: CreateVpc, DescribeVpcs, DeleteVpc,
//! DescribeRouteTableList, DescribeRouteEntryList, CreateRouteEntry, DeleteRouteEntry, and the
//! attribute changes Terraform's alicloud_vpc Update makes: ModifyVpcAttribute,
//! ModifyRouteTableAttributes, MoveResourceGroup.
//!
//! Each VPC gets one system route table holding a `System` entry for `100.64.0.0/10`.
//! Routes published by VPN gateways appear there with NextHopType `VpnGateway` (stored with
//! the internal entry type `Published`, shown as Type `Custom`, Origin `VpnGateway`).

use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::{json, Value};
use vpnroute_domain::ids::{new_id, VpcId};
use vpnroute_domain::model::{Vpc, VpcRouteEntry, VpnGateway};
use vpnroute_domain::params::Paging;
use vpnroute_domain::status::VpcStatus;
use vpnroute_domain::tags::{self, TagParam, Tags};
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, opt_text, owned, owner_id, page_fields, page_of, params};
use crate::ops::{arn, check_dry_run, Deferred, Done};
use crate::reply::Reply;
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};
use crate::util::{iso_minute, iso_time};

pub const PUBLISHED: &str = "Published";

pub const DEPENDENCY_VSWITCH: ApiError = ApiError::new_static(
    "DependencyViolation.VSwitch",
    "The specified VPC still has vSwitches.",
    400,
);

/// `UserCidr`: up to three comma-separated blocks.
fn user_cidrs(text: &str) -> Result<Vec<String>, ApiError> {
    let blocks: Vec<String> = text
        .split(',')
        .map(str::trim)
        .map(|b| {
            validate::parse_cidr(b)
                .filter(|n| n.addr() == n.network())
                .map(|n| n.to_string())
                .ok_or_else(|| ApiError::invalid_parameter("UserCidr"))
        })
        .collect::<Result<_, _>>()?;
    if blocks.len() > 3 {
        return Err(ApiError::invalid_parameter("UserCidr"));
    }
    Ok(blocks)
}

/// CreateVpc's input.
#[derive(Debug, Clone)]
pub struct CreateVpcInput {
    pub region: String,
    /// Canonical; `172.16.0.0/12` when not given.
    pub cidr_block: String,
    pub name: String,
    pub description: String,
    pub resource_group_id: Option<String>,
    pub tags: Tags,
    /// `EnableDnsHostname`.
    pub dns_hostname: bool,
    pub user_cidrs: Vec<String>,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for CreateVpcInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let cidr_block = match p.opt_str("CidrBlock") {
            Some(c) => validate::vpc_cidr(c)?.to_string(),
            None => "172.16.0.0/12".to_string(),
        };
        let name = opt_text(ctx, "VpcName", validate::name)?;
        let description = opt_text(ctx, "Description", validate::description)?;
        Ok(CreateVpcInput {
            region,
            cidr_block,
            name,
            description,
            resource_group_id: p.opt_str("ResourceGroupId").map(str::to_string),
            tags: tags::tags_to_set(ctx.params, "Tag")?,
            dns_hostname: p.bool_or("EnableDnsHostname", false)?,
            user_cidrs: p.opt_str("UserCidr").map(user_cidrs).transpose()?.unwrap_or_default(),
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// CreateVpc's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedVpc {
    #[serde(rename = "VpcId")]
    pub vpc_id: String,
    #[serde(rename = "VRouterId")]
    pub vrouter_id: String,
    #[serde(rename = "RouteTableId")]
    pub route_table_id: String,
    #[serde(rename = "ResourceGroupId")]
    pub resource_group_id: String,
}

fn create_vpc(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: CreateVpcInput) -> Result<CreatedVpc, ApiError> {
    let region = input.region.as_str();
    if tx.count_resources(ResourceKind::Vpc, &ctx.account_id, region)? >= ctx.app.config.quotas.vpcs_per_region {
        return Err(ApiError::QUOTA_FULL);
    }
    check_dry_run(&input.dry_run)?;
    let vpc = Vpc {
        id: new_id("vpc"),
        region_id: region.to_string(),
        name: input.name,
        description: input.description,
        cidr_block: input.cidr_block,
        status: VpcStatus::Available,
        vrouter_id: new_id("vrt"),
        route_table_id: new_id("vtb"),
        create_time: ctx.now_ms,
        resource_group_id: input
            .resource_group_id
            .unwrap_or_else(|| "rg-acfmdefault0001".to_string()),
        tags: input.tags,
        dns_hostname: input.dns_hostname,
        user_cidrs: input.user_cidrs,
        route_table_name: String::new(),
        route_table_description: String::new(),
        route_propagation_disabled: false,
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
    Ok(CreatedVpc {
        vpc_id: vpc.id,
        vrouter_id: vpc.vrouter_id,
        route_table_id: vpc.route_table_id,
        resource_group_id: vpc.resource_group_id,
    })
}

operation!(
    /// CreateVpc.
    CreateVpc: Write, CreateVpcInput => CreatedVpc,
    resources(|input, account| vec![arn(&input.region, account, "vpc", "*")]),
    handle(|ctx, tx, input| create_vpc(ctx, tx, input)),
);

fn vpc_json(owner_id: i64, v: &Vpc, vswitch_ids: &[String]) -> Value {
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
        "OwnerId": owner_id,
        "EnabledIpv6": false,
        "CenStatus": "",
        "DhcpOptionsSetId": "",
        "DhcpOptionsSetStatus": "",
        "VSwitchIds": {"VSwitchId": vswitch_ids},
        "RouterTableIds": {"RouterTableIds": [v.route_table_id]},
        "UserCidrs": {"UserCidr": v.user_cidrs},
        "NatGatewayIds": {"NatGatewayIds": []},
        "SecondaryCidrBlocks": {"SecondaryCidrBlock": []},
        "Tags": crate::util::tags_json(&v.tags),
    })
}

/// DescribeVpcs' input.
#[derive(Debug, Clone)]
pub struct DescribeVpcsInput {
    pub region: String,
    pub paging: Paging,
    /// Only these VPCs (`VpcId`, comma-separated); `None` = all.
    pub vpc_ids: Option<Vec<String>>,
    pub resource_group_id: Option<String>,
    /// Every tag must be on the VPC (a key without value: any value).
    pub tags: Vec<TagParam>,
}

impl FromRpc for DescribeVpcsInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let paging = p.paging()?;
        let vpc_ids = p
            .opt_str("VpcId")
            .map(|ids| ids.split(',').map(|s| s.trim().to_string()).collect());
        Ok(DescribeVpcsInput {
            region,
            paging,
            vpc_ids,
            resource_group_id: p.opt_str("ResourceGroupId").map(str::to_string),
            tags: tags::tag_params(ctx.params, "Tag")?,
        })
    }
}

/// DescribeVpcs' answer.
#[derive(Debug, Clone)]
pub struct VpcsPage {
    /// Each VPC with the ids of its vswitches.
    pub items: Vec<(Vpc, Vec<String>)>,
    /// The caller's numeric account id (`OwnerId`).
    pub owner_id: i64,
    pub paging: Paging,
    pub total: u64,
}

impl From<VpcsPage> for Reply {
    fn from(page: VpcsPage) -> Reply {
        let items = page
            .items
            .iter()
            .map(|(v, vsw)| vpc_json(page.owner_id, v, vsw))
            .collect::<Vec<_>>();
        let mut body = json!({"Vpcs": {"Vpc": items}});
        page_fields(&mut body, page.paging, page.total);
        Reply::Value(body)
    }
}

fn describe_vpcs(ctx: &OpCtx<'_>, tx: &dyn ReadTx, input: DescribeVpcsInput) -> Result<VpcsPage, ApiError> {
    let DescribeVpcsInput {
        region,
        paging,
        vpc_ids,
        resource_group_id,
        tags: tag_filters,
    } = input;
    let filtered = vpc_ids.is_some() || resource_group_id.is_some() || !tag_filters.is_empty();
    let (vpcs, total): (Vec<Vpc>, u64) = if filtered {
        let all = all_in_region::<Vpc>(ctx, tx, &region, None)?;
        let all: Vec<Vpc> = all
            .into_iter()
            .filter(|v| vpc_ids.as_ref().is_none_or(|w| w.contains(&v.id)))
            .filter(|v| resource_group_id.as_ref().is_none_or(|g| *g == v.resource_group_id))
            .filter(|v| tags::matches(&tag_filters, &v.tags))
            .collect();
        page_of(all, paging)
    } else {
        tx.list_resources(
            ResourceKind::Vpc,
            &ctx.account_id,
            &region,
            None,
            paging.offset(),
            paging.size as u64,
        )?
    };
    let items = vpcs
        .into_iter()
        .map(|v| {
            let ids = super::vswitch::vswitch_ids(tx, &v.id)?;
            Ok((v, ids))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(VpcsPage {
        items,
        owner_id: owner_id(ctx),
        paging,
        total,
    })
}

operation!(
    /// DescribeVpcs.
    DescribeVpcs: Read, DescribeVpcsInput => VpcsPage,
    resources(|input, account| vec![arn(&input.region, account, "vpc", "*")]),
    handle(|ctx, tx, input| describe_vpcs(ctx, tx, input)),
);

/// DeleteVpc's input.
#[derive(Debug, Clone)]
pub struct DeleteVpcInput {
    pub region: String,
    pub vpc_id: VpcId,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for DeleteVpcInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let vpc_id = params(ctx).str("VpcId")?.into();
        Ok(DeleteVpcInput {
            region,
            vpc_id,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

fn delete_vpc(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: DeleteVpcInput) -> Result<Done, ApiError> {
    let vpc: Vpc = owned(ctx, tx, &input.region, &input.vpc_id)?;
    if tx.count_children(ResourceKind::VpnGateway, &vpc.id)? > 0 {
        return Err(ApiError::DEPENDENCY_VPN_GATEWAY);
    }
    if tx.count_children(ResourceKind::VSwitch, &vpc.id)? > 0 {
        return Err(DEPENDENCY_VSWITCH);
    }
    if tx
        .vpc_entries(&vpc.route_table_id)?
        .iter()
        .any(|e| e.entry_type != "System")
    {
        return Err(ApiError::DEPENDENCY_ROUTE_TABLE_ENTRY);
    }
    check_dry_run(&input.dry_run)?;
    tx.delete_vpc_entries_of_table(&vpc.route_table_id)?;
    tx.delete_resource(ResourceKind::Vpc, &vpc.id)?;
    Ok(Done {})
}

operation!(
    /// DeleteVpc.
    DeleteVpc: Write, DeleteVpcInput => Done,
    resources(|input, account| vec![arn(&input.region, account, "vpc", &input.vpc_id)]),
    handle(|ctx, tx, input| delete_vpc(ctx, tx, input)),
);

/// The VPC owning a route table id, among the caller's VPCs in the region.
fn vpc_of_table(ctx: &OpCtx<'_>, tx: &dyn ReadTx, region: &str, table_id: &str) -> Result<Vpc, ApiError> {
    let vpcs = all_in_region::<Vpc>(ctx, tx, region, None)?;
    vpcs.into_iter()
        .find(|v| v.route_table_id == table_id)
        .ok_or(ApiError::ROUTE_TABLE_NOT_FOUND)
}

/// DescribeRouteTableList's input: filters (each given one must hold) and the page.
#[derive(Debug, Clone)]
pub struct DescribeRouteTableListInput {
    pub region: String,
    pub paging: Paging,
    pub vpc_id: Option<String>,
    pub route_table_id: Option<String>,
    pub router_id: Option<String>,
    /// Only `System` tables exist.
    pub route_table_type: Option<String>,
    /// `VRouter` or `VBR`; only `VRouter` tables exist.
    pub router_type: Option<String>,
}

impl FromRpc for DescribeRouteTableListInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let paging = p.paging()?;
        if let Some(t) = p.opt_str("RouterType") {
            if t != "VRouter" && t != "VBR" {
                return Err(ApiError::invalid_parameter("RouterType"));
            }
        }
        let text = |name: &str| p.opt_str(name).map(str::to_string);
        Ok(DescribeRouteTableListInput {
            region,
            paging,
            vpc_id: text("VpcId"),
            route_table_id: text("RouteTableId"),
            router_id: text("RouterId"),
            route_table_type: text("RouteTableType"),
            router_type: text("RouterType"),
        })
    }
}

/// DescribeRouteTableList's answer: the system tables of the listed VPCs.
#[derive(Debug, Clone)]
pub struct RouteTablesPage {
    pub vpcs: Vec<Vpc>,
    pub owner_id: i64,
    pub paging: Paging,
    pub total: u64,
}

impl From<RouteTablesPage> for Reply {
    fn from(page: RouteTablesPage) -> Reply {
        let items: Vec<Value> = page
            .vpcs
            .iter()
            .map(|v| {
                json!({
                    "RouteTableId": v.route_table_id,
                    "RouteTableName": v.route_table_name,
                    "RouteTableType": "System",
                    "RouterId": v.vrouter_id,
                    "RouterType": "VRouter",
                    "VpcId": v.id,
                    "Status": "Available",
                    "Description": v.route_table_description,
                    "CreationTime": iso_time(v.create_time),
                    "OwnerId": page.owner_id,
                    "ResourceGroupId": v.resource_group_id,
                    "AssociateType": "VSwitch",
                    "RoutePropagationEnable": !v.route_propagation_disabled,
                    "VSwitchIds": {"VSwitchId": []},
                    "GatewayIds": {"GatewayIds": []},
                    "Tags": {"Tag": []},
                })
            })
            .collect();
        let mut body = json!({"RouterTableList": {"RouterTableListType": items}});
        page_fields(&mut body, page.paging, page.total);
        Reply::Value(body)
    }
}

fn describe_route_table_list(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: DescribeRouteTableListInput,
) -> Result<RouteTablesPage, ApiError> {
    let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
    let vpcs = all_in_region::<Vpc>(ctx, tx, &input.region, None)?;
    let matching: Vec<Vpc> = vpcs
        .into_iter()
        .filter(|v| is(&input.vpc_id, &v.id))
        .filter(|v| is(&input.route_table_id, &v.route_table_id))
        .filter(|v| is(&input.router_id, &v.vrouter_id))
        .filter(|_| is(&input.route_table_type, "System"))
        .filter(|_| is(&input.router_type, "VRouter"))
        .collect();
    let (vpcs, total) = page_of(matching, input.paging);
    Ok(RouteTablesPage {
        vpcs,
        owner_id: owner_id(ctx),
        paging: input.paging,
        total,
    })
}

operation!(
    /// DescribeRouteTableList.
    DescribeRouteTableList: Read, DescribeRouteTableListInput => RouteTablesPage,
    resources(|input, account| vec![arn(&input.region, account, "routetable", "*")]),
    handle(|ctx, tx, input| describe_route_table_list(ctx, tx, input)),
);

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

/// DescribeRouteEntryList's input: the table, filters (each given one must hold) and the
/// page (`NextToken` is the offset of the first entry).
#[derive(Debug, Clone)]
pub struct DescribeRouteEntryListInput {
    pub region: String,
    pub route_table_id: String,
    pub max_results: usize,
    pub start: usize,
    pub route_entry_id: Option<String>,
    pub destination_cidr_block: Option<String>,
    pub next_hop_id: Option<String>,
    pub next_hop_type: Option<String>,
    /// `System` or `Custom` (published entries count as `Custom`).
    pub route_entry_type: Option<String>,
}

impl FromRpc for DescribeRouteEntryListInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let route_table_id = p.str("RouteTableId")?.to_string();
        let max_results = p.opt_int_in("MaxResult", 1, 100)?.unwrap_or(10) as usize;
        let start: usize = match p.opt_str("NextToken") {
            None => 0,
            Some(t) => t.parse().map_err(|_| ApiError::invalid_parameter("NextToken"))?,
        };
        let text = |name: &str| p.opt_str(name).map(str::to_string);
        Ok(DescribeRouteEntryListInput {
            region,
            route_table_id,
            max_results,
            start,
            route_entry_id: text("RouteEntryId"),
            // Lookups take any spelling of a block (`10.0.0.10/24` finds `10.0.0.0/24`).
            destination_cidr_block: p.opt_str("DestinationCidrBlock").map(validate::canonical_cidr),
            next_hop_id: text("NextHopId"),
            next_hop_type: text("NextHopType"),
            route_entry_type: text("RouteEntryType"),
        })
    }
}

/// DescribeRouteEntryList's answer.
#[derive(Debug, Clone)]
pub struct RouteEntriesPage {
    pub region: String,
    pub entries: Vec<VpcRouteEntry>,
    /// Empty on the last page.
    pub next_token: String,
    pub total: usize,
}

impl From<RouteEntriesPage> for Reply {
    fn from(page: RouteEntriesPage) -> Reply {
        let items: Vec<Value> = page.entries.iter().map(|e| entry_json(e, &page.region)).collect();
        Reply::Value(
            json!({"NextToken": page.next_token, "TotalCount": page.total, "RouteEntrys": {"RouteEntry": items}}),
        )
    }
}

fn describe_route_entry_list(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: DescribeRouteEntryListInput,
) -> Result<RouteEntriesPage, ApiError> {
    let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
    let table = input.route_table_id.as_str();
    vpc_of_table(ctx, tx, &input.region, table)?;
    let entries: Vec<VpcRouteEntry> = tx
        .vpc_entries(table)?
        .into_iter()
        .filter(|e| is(&input.route_entry_id, &e.id))
        .filter(|e| is(&input.destination_cidr_block, &e.dest))
        .filter(|e| is(&input.next_hop_id, &e.next_hop_id))
        .filter(|e| is(&input.next_hop_type, &e.next_hop_type))
        .filter(|e| {
            input
                .route_entry_type
                .as_deref()
                .is_none_or(|t| match e.entry_type.as_str() {
                    PUBLISHED => t == "Custom",
                    other => other == t,
                })
        })
        .collect();
    let (start, max) = (input.start, input.max_results);
    let total = entries.len();
    let entries: Vec<VpcRouteEntry> = entries.into_iter().skip(start).take(max).collect();
    let next_token = if start + max < total {
        (start + max).to_string()
    } else {
        String::new()
    };
    Ok(RouteEntriesPage {
        region: input.region,
        entries,
        next_token,
        total,
    })
}

operation!(
    /// DescribeRouteEntryList.
    DescribeRouteEntryList: Read, DescribeRouteEntryListInput => RouteEntriesPage,
    resources(|input, account| vec![arn(&input.region, account, "routetable", &input.route_table_id)]),
    handle(|ctx, tx, input| describe_route_entry_list(ctx, tx, input)),
);

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

/// CreateRouteEntry's input.
#[derive(Debug, Clone)]
pub struct CreateRouteEntryInput {
    pub region: String,
    pub route_table_id: String,
    pub destination_cidr_block: Ipv4Net,
    /// One of the next hop types Alibaba accepts; `Instance` when not given.
    pub next_hop_type: String,
    pub next_hop_id: String,
    pub name: String,
    pub description: String,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for CreateRouteEntryInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
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
        Ok(CreateRouteEntryInput {
            region,
            route_table_id: table.to_string(),
            destination_cidr_block: dest,
            next_hop_type: hop_type.to_string(),
            next_hop_id: hop_id.to_string(),
            name,
            description,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// CreateRouteEntry's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedRouteEntry {
    #[serde(rename = "RouteEntryId")]
    pub route_entry_id: String,
}

fn create_route_entry(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: CreateRouteEntryInput,
) -> Result<CreatedRouteEntry, ApiError> {
    let region = input.region.as_str();
    let table = input.route_table_id.as_str();
    let dest = input.destination_cidr_block;
    let vpc = vpc_of_table(ctx, tx, region, table)?;
    if input.next_hop_type == "VpnGateway" {
        let gw: VpnGateway = owned(ctx, tx, region, &input.next_hop_id).map_err(|_| ApiError::NEXT_HOP_NOT_FOUND)?;
        if gw.vpc_id != vpc.id {
            return Err(ApiError::NEXT_HOP_NOT_FOUND);
        }
    }
    if !tx.vpc_entries_for_dest(table, &dest.to_string())?.is_empty() {
        return Err(ApiError::ROUTE_ENTRY_CONFLICT_DUPLICATED);
    }
    check_dry_run(&input.dry_run)?;
    let entry = VpcRouteEntry {
        id: new_id("rte"),
        route_table_id: table.to_string(),
        dest: dest.to_string(),
        next_hop_type: input.next_hop_type,
        next_hop_id: input.next_hop_id,
        entry_type: "Custom".into(),
        name: input.name,
        description: input.description,
        create_time: ctx.now_ms,
    };
    tx.insert_vpc_entry(&entry)?;
    Ok(CreatedRouteEntry {
        route_entry_id: entry.id,
    })
}

operation!(
    /// CreateRouteEntry.
    CreateRouteEntry: Write, CreateRouteEntryInput => CreatedRouteEntry,
    resources(|input, account| vec![arn(&input.region, account, "routetable", &input.route_table_id)]),
    handle(|ctx, tx, input| create_route_entry(ctx, tx, input)),
);

/// Which entry DeleteRouteEntry deletes.
#[derive(Debug, Clone)]
pub enum RouteEntrySelector {
    /// `RouteEntryId`.
    Id(String),
    /// The entry of `table` for `dest` (with `next_hop_id`, if given).
    Match {
        table: String,
        dest: String,
        next_hop_id: Option<String>,
    },
}

/// DeleteRouteEntry's input.
#[derive(Debug, Clone)]
pub struct DeleteRouteEntryInput {
    pub region: String,
    pub entry: RouteEntrySelector,
    /// `RouteTableId` as given (the resource a policy names).
    pub route_table_id: Option<String>,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for DeleteRouteEntryInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let entry = match p.opt_str("RouteEntryId") {
            Some(id) => RouteEntrySelector::Id(id.to_string()),
            None => RouteEntrySelector::Match {
                table: p.str("RouteTableId")?.to_string(),
                dest: validate::canonical_cidr(p.str("DestinationCidrBlock")?),
                next_hop_id: p.opt_str("NextHopId").map(str::to_string),
            },
        };
        Ok(DeleteRouteEntryInput {
            region,
            entry,
            route_table_id: p.opt_str("RouteTableId").map(str::to_string),
            dry_run: rpc::dry_run(ctx),
        })
    }
}

fn delete_route_entry(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: DeleteRouteEntryInput) -> Result<Done, ApiError> {
    let entry = match &input.entry {
        RouteEntrySelector::Id(id) => tx.vpc_entry(id)?.ok_or(ApiError::ROUTE_ENTRY_NOT_FOUND)?,
        RouteEntrySelector::Match {
            table,
            dest,
            next_hop_id,
        } => tx
            .vpc_entries_for_dest(table, dest)?
            .into_iter()
            .find(|e| next_hop_id.as_deref().is_none_or(|h| h == e.next_hop_id))
            .ok_or(ApiError::ROUTE_ENTRY_NOT_FOUND)?,
    };
    vpc_of_table(ctx, tx, &input.region, &entry.route_table_id).map_err(|_| ApiError::ROUTE_ENTRY_NOT_FOUND)?;
    if entry.entry_type != "Custom" {
        return Err(ApiError::new(
            "OperationDenied.RouteEntryNotCustom",
            "Only custom route entries can be deleted; withdraw VPN-published routes with PublishVpnRouteEntry.",
            400,
        ));
    }
    check_dry_run(&input.dry_run)?;
    tx.delete_vpc_entry(&entry.id)?;
    Ok(Done {})
}

operation!(
    /// DeleteRouteEntry.
    DeleteRouteEntry: Write, DeleteRouteEntryInput => Done,
    resources(|input, account| {
        let table = input.route_table_id.as_deref().unwrap_or("*");
        vec![arn(&input.region, account, "routetable", table)]
    }),
    handle(|ctx, tx, input| delete_route_entry(ctx, tx, input)),
);

// --------------------------------------------------------------------------- attribute changes

/// An optional text parameter checked by `check`: `None` when absent (unchanged).
fn changed_text(
    ctx: &Ctx<'_>,
    name: &str,
    check: fn(&str) -> Result<(), ApiError>,
) -> Result<Option<String>, ApiError> {
    params(ctx)
        .opt_str(name)
        .map(|v| check(v).map(|_| v.to_string()))
        .transpose()
}

/// IPv6 is not served: `EnableIPv6=true` or an `Ipv6CidrBlock` → `InvalidParameter` naming it;
/// `EnableIPv6=false` (Terraform's default) and `Ipv6Isp` alone are accepted and change nothing.
pub(crate) fn refuse_ipv6(ctx: &Ctx<'_>) -> Result<(), ApiError> {
    let p = params(ctx);
    if p.opt_bool("EnableIPv6")? == Some(true) {
        return Err(ApiError::invalid_parameter_msg(
            "The specified parameter \"EnableIPv6\" is not valid: vpnroute does not serve IPv6.",
        ));
    }
    if p.opt_str("Ipv6CidrBlock").is_some() {
        return Err(ApiError::invalid_parameter_msg(
            "The specified parameter \"Ipv6CidrBlock\" is not valid: vpnroute does not serve IPv6.",
        ));
    }
    Ok(())
}

/// ModifyVpcAttribute's input: what to change (`None`: unchanged).
#[derive(Debug, Clone)]
pub struct ModifyVpcAttributeInput {
    pub region: String,
    pub vpc_id: VpcId,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Canonical; only the VPC's current block is accepted.
    pub cidr_block: Option<String>,
    pub dns_hostname: Option<bool>,
}

impl FromRpc for ModifyVpcAttributeInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let vpc_id = p.str("VpcId")?.into();
        let name = changed_text(ctx, "VpcName", validate::name)?;
        let description = changed_text(ctx, "Description", validate::description)?;
        let cidr_block = p
            .opt_str("CidrBlock")
            .map(|c| validate::vpc_cidr(c).map(|n| n.to_string()))
            .transpose()?;
        let dns_hostname = p.opt_bool("EnableDnsHostname")?;
        refuse_ipv6(ctx)?;
        Ok(ModifyVpcAttributeInput {
            region,
            vpc_id,
            name,
            description,
            cidr_block,
            dns_hostname,
        })
    }
}

pub const CIDR_CHANGE_UNSUPPORTED: ApiError = ApiError::new_static(
    "OperationUnsupported.CidrBlock",
    "vpnroute does not change the CIDR block of an existing VPC.",
    400,
);

fn modify_vpc_attribute(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: ModifyVpcAttributeInput) -> Result<Done, ApiError> {
    let mut vpc: Vpc = owned(ctx, tx, &input.region, &input.vpc_id)?;
    if input.cidr_block.as_deref().is_some_and(|c| c != vpc.cidr_block) {
        return Err(CIDR_CHANGE_UNSUPPORTED);
    }
    let before = vpc.clone();
    if let Some(n) = input.name {
        vpc.name = n;
    }
    if let Some(d) = input.description {
        vpc.description = d;
    }
    if let Some(h) = input.dns_hostname {
        vpc.dns_hostname = h;
    }
    if vpc != before {
        tx.update_resource(ResourceKind::Vpc, &vpc.id, &vpc)?;
    }
    Ok(Done {})
}

operation!(
    /// ModifyVpcAttribute: VpcName, Description, EnableDnsHostname at once (Status stays
    /// `Available`); CidrBlock only unchanged; IPv6 refused.
    ModifyVpcAttribute: Write, ModifyVpcAttributeInput => Done,
    resources(|input, account| vec![arn(&input.region, account, "vpc", &input.vpc_id)]),
    handle(|ctx, tx, input| modify_vpc_attribute(ctx, tx, input)),
);

/// ModifyRouteTableAttributes' input.
#[derive(Debug, Clone)]
pub struct ModifyRouteTableAttributesInput {
    pub region: String,
    pub route_table_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub route_propagation: Option<bool>,
}

impl FromRpc for ModifyRouteTableAttributesInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        Ok(ModifyRouteTableAttributesInput {
            route_table_id: p.str("RouteTableId")?.to_string(),
            name: changed_text(ctx, "RouteTableName", validate::name)?,
            description: changed_text(ctx, "Description", validate::description)?,
            route_propagation: p.opt_bool("RoutePropagationEnable")?,
            region,
        })
    }
}

fn modify_route_table_attributes(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: ModifyRouteTableAttributesInput,
) -> Result<Done, ApiError> {
    let mut vpc = vpc_of_table(ctx, tx, &input.region, &input.route_table_id)?;
    let before = vpc.clone();
    if let Some(n) = input.name {
        vpc.route_table_name = n;
    }
    if let Some(d) = input.description {
        vpc.route_table_description = d;
    }
    if let Some(e) = input.route_propagation {
        vpc.route_propagation_disabled = !e;
    }
    if vpc != before {
        tx.update_resource(ResourceKind::Vpc, &vpc.id, &vpc)?;
    }
    Ok(Done {})
}

operation!(
    /// ModifyRouteTableAttributes: name, description and the propagation flag of a VPC's
    /// system route table (the flag is shown, it changes nothing: published routes stay).
    ModifyRouteTableAttributes: Write, ModifyRouteTableAttributesInput => Done,
    resources(|input, account| vec![arn(&input.region, account, "routetable", &input.route_table_id)]),
    handle(|ctx, tx, input| modify_route_table_attributes(ctx, tx, input)),
);

/// MoveResourceGroup's input: only `ResourceType` `Vpc` (any case) is served.
#[derive(Debug, Clone)]
pub struct MoveResourceGroupInput {
    pub region: String,
    pub resource_id: String,
    pub new_resource_group_id: String,
}

pub const ILLEGAL_RESOURCE_TYPE: ApiError =
    ApiError::new_static("IllegalParam.ResourceType", "Invalid Resource Type value.", 400);
pub const MOVE_RESOURCE_NOT_FOUND: ApiError = ApiError::new_static(
    "InvalidResourceId.NotFound",
    "The specified ResourceId does not exist.",
    400,
);

impl FromRpc for MoveResourceGroupInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let resource_id = p.str("ResourceId")?.to_string();
        let resource_type = p.str("ResourceType")?;
        let new_resource_group_id = super::gateway::resource_group_id(p.str("NewResourceGroupId")?)?;
        if !resource_type.eq_ignore_ascii_case("vpc") {
            return Err(ILLEGAL_RESOURCE_TYPE);
        }
        Ok(MoveResourceGroupInput {
            region,
            resource_id,
            new_resource_group_id,
        })
    }
}

/// The VPC moves with its vswitches (their ResourceGroupId is the VPC's, §2.4) and its
/// system route table; its VPN gateways keep theirs (MoveVpnResourceGroup moves them).
fn move_resource_group(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: MoveResourceGroupInput) -> Result<Done, ApiError> {
    let mut vpc: Vpc = owned(ctx, tx, &input.region, &input.resource_id).map_err(|_| MOVE_RESOURCE_NOT_FOUND)?;
    let rg = input.new_resource_group_id;
    for mut v in tx.children::<vpnroute_domain::model::VSwitch>(ResourceKind::VSwitch, &vpc.id)? {
        if v.resource_group_id != rg {
            v.resource_group_id = rg.clone();
            tx.update_resource(ResourceKind::VSwitch, &v.id, &v)?;
        }
    }
    if vpc.resource_group_id != rg {
        vpc.resource_group_id = rg;
        tx.update_resource(ResourceKind::Vpc, &vpc.id, &vpc)?;
    }
    Ok(Done {})
}

operation!(
    /// MoveResourceGroup (VPC only).
    MoveResourceGroup: Write, MoveResourceGroupInput => Done,
    resources(|input, account| vec![arn(&input.region, account, "vpc", &input.resource_id)]),
    handle(|ctx, tx, input| move_resource_group(ctx, tx, input)),
);
