//! The VPC pieces a Terraform configuration creates before its VPN gateway, as typed
//! operations: DescribeVpcAttribute, CreateVSwitch, DescribeVSwitchAttributes,
//! DescribeVSwitches, DeleteVSwitch, ModifyVSwitchAttribute, DescribeZones,
//! DescribeVpnGatewayAvailableZones.
//! Zones and the vswitch CIDR rules are [`vpnroute_domain::zones`].

use serde_json::{json, Value};
use vpnroute_domain::ids::{new_id, VpcId};
use vpnroute_domain::model::{VSwitch, Vpc, VpnGateway};
use vpnroute_domain::params::Paging;
use vpnroute_domain::status::VpcStatus;
use vpnroute_domain::tags::{self, TagParam, Tags};
use vpnroute_domain::zones::{self, Zone};
use vpnroute_domain::{validate, ApiError};
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, opt_text, owned, owner_id, page_fields, page_of, params};
use crate::ops::{arn, check_dry_run, Deferred, Done};
use crate::reply::Reply;
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};
use crate::util::{iso_time, tags_json};

/// Vswitches a VPC may hold (Alibaba's default quota).
const VSWITCHES_PER_VPC: u64 = 150;
const SPECS: &[&str] = &["5M", "10M", "20M", "50M", "100M", "200M", "500M", "1000M"];

pub const VSWITCH_QUOTA: ApiError =
    ApiError::new_static("QuotaExceeded.VSwitch", "Virtual switch quota exceeded.", 400);
pub const VSWITCH_IN_USE: ApiError = ApiError::new_static(
    "DependencyViolation.VpnGateway",
    "The specified vSwitch is used by a VPN gateway.",
    400,
);

/// The zones of a served region.
fn region_zones(ctx: &OpCtx<'_>, region: &str) -> Vec<Zone> {
    let name = ctx
        .app
        .config
        .regions
        .iter()
        .find(|r| r.id == region)
        .map(|r| r.local_name.as_str())
        .unwrap_or(region);
    zones::zones(region, name)
}

/// A zone of the region, or `InvalidZoneId.NotFound`.
pub fn zone_of(ctx: &OpCtx<'_>, region: &str, zone_id: &str) -> Result<Zone, ApiError> {
    region_zones(ctx, region)
        .into_iter()
        .find(|z| z.id == zone_id)
        .ok_or(zones::ZONE_NOT_FOUND)
}

// --------------------------------------------------------------------------- zones

/// DescribeZones' input.
#[derive(Debug, Clone)]
pub struct DescribeZonesInput {
    pub region: String,
}

impl FromRpc for DescribeZonesInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        if let Some(t) = params(ctx).opt_str("ZoneType") {
            if t != "AvailabilityZone" {
                return Err(ApiError::invalid_parameter("ZoneType"));
            }
        }
        Ok(DescribeZonesInput { region })
    }
}

/// The zones of one region, as a list answer.
#[derive(Debug, Clone)]
pub struct ZoneList(pub Vec<Zone>);

impl From<ZoneList> for Reply {
    fn from(z: ZoneList) -> Reply {
        let items: Vec<Value> =
            z.0.iter()
                .map(|z| json!({"ZoneId": z.id, "LocalName": z.local_name, "ZoneType": "AvailabilityZone"}))
                .collect();
        Reply::Value(json!({"Zones": {"Zone": items}}))
    }
}

operation!(
    /// DescribeZones: the region's zones.
    DescribeZones: Read, DescribeZonesInput => ZoneList,
    resources(|_input, _account| vec!["*".to_string()]),
    handle(|ctx, _tx, input| Ok(ZoneList(region_zones(ctx, &input.region)))),
);

/// DescribeVpnGatewayAvailableZones' input.
#[derive(Debug, Clone)]
pub struct DescribeVpnGatewayAvailableZonesInput {
    pub region: String,
    /// `5M` … `1000M`.
    pub spec: String,
}

impl FromRpc for DescribeVpnGatewayAvailableZonesInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let spec = params(ctx).str("Spec")?;
        if !SPECS.contains(&spec) {
            return Err(ApiError::invalid_parameter("Spec"));
        }
        Ok(DescribeVpnGatewayAvailableZonesInput {
            region,
            spec: spec.to_string(),
        })
    }
}

/// The zones where gateways of a spec can be created.
#[derive(Debug, Clone)]
pub struct AvailableZones {
    pub region: String,
    pub zones: Vec<Zone>,
}

impl From<AvailableZones> for Reply {
    fn from(z: AvailableZones) -> Reply {
        let items: Vec<Value> = z
            .zones
            .iter()
            .map(|z| json!({"ZoneId": z.id, "ZoneName": z.local_name}))
            .collect();
        Reply::Value(json!({"RegionId": z.region, "AvailableZoneIdList": items}))
    }
}

operation!(
    /// DescribeVpnGatewayAvailableZones: every zone of the region serves every spec.
    DescribeVpnGatewayAvailableZones: Read, DescribeVpnGatewayAvailableZonesInput => AvailableZones,
    resources(|_input, _account| vec!["*".to_string()]),
    handle(|ctx, _tx, input| {
        let zones = region_zones(ctx, &input.region);
        Ok(AvailableZones { region: input.region, zones })
    }),
);

// --------------------------------------------------------------------------- vswitches

/// CreateVSwitch's input.
#[derive(Debug, Clone)]
pub struct CreateVSwitchInput {
    pub region: String,
    pub vpc_id: VpcId,
    pub zone_id: String,
    pub cidr_block: String,
    pub name: String,
    pub description: String,
    pub tags: Tags,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for CreateVSwitchInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let vpc_id = p.str("VpcId")?.into();
        let zone_id = p.str("ZoneId")?.to_string();
        let cidr_block = p.str("CidrBlock")?.to_string();
        let name = opt_text(ctx, "VSwitchName", validate::name)?;
        let description = opt_text(ctx, "Description", validate::description)?;
        let tags = tags::tags_to_set(ctx.params, "Tag")?;
        Ok(CreateVSwitchInput {
            region,
            vpc_id,
            zone_id,
            cidr_block,
            name,
            description,
            tags,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// CreateVSwitch's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreatedVSwitch {
    #[serde(rename = "VSwitchId")]
    pub vswitch_id: String,
}

fn create_vswitch(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: CreateVSwitchInput) -> Result<CreatedVSwitch, ApiError> {
    let region = input.region.as_str();
    let zone = zone_of(ctx, region, &input.zone_id)?;
    let vpc: Vpc = owned(ctx, tx, region, &input.vpc_id)?;
    if vpc.status != VpcStatus::Available {
        return Err(ApiError::INCORRECT_VPC_STATUS);
    }
    let siblings: Vec<VSwitch> = tx.children(ResourceKind::VSwitch, &vpc.id)?;
    let blocks: Vec<String> = siblings.iter().map(|s| s.cidr_block.clone()).collect();
    let net = zones::vswitch_cidr(&input.cidr_block, &vpc.cidr_block, &blocks)?;
    if siblings.len() as u64 >= VSWITCHES_PER_VPC {
        return Err(VSWITCH_QUOTA);
    }
    check_dry_run(&input.dry_run)?;
    let vsw = VSwitch {
        id: new_id("vsw"),
        region_id: region.to_string(),
        vpc_id: vpc.id.clone(),
        zone_id: zone.id,
        cidr_block: net.to_string(),
        name: input.name,
        description: input.description,
        create_time: ctx.now_ms,
        resource_group_id: vpc.resource_group_id.clone(),
        tags: input.tags,
    };
    tx.insert_resource(ResourceKind::VSwitch, &vsw.id, &ctx.account_id, region, &vpc.id, &vsw)?;
    Ok(CreatedVSwitch { vswitch_id: vsw.id })
}

operation!(
    /// CreateVSwitch: a subnet of a VPC in one zone, `Available` at once.
    CreateVSwitch: Write, CreateVSwitchInput => CreatedVSwitch,
    resources(|input, account| vec![
        arn(&input.region, account, "vswitch", "*"),
        arn(&input.region, account, "vpc", &input.vpc_id),
    ]),
    handle(|ctx, tx, input| create_vswitch(ctx, tx, input)),
);

/// A vswitch with what its answer shows of its VPC.
#[derive(Debug, Clone)]
pub struct VSwitchView {
    pub vswitch: VSwitch,
    pub route_table_id: String,
    pub owner_id: i64,
}

impl VSwitchView {
    fn of(ctx: &OpCtx<'_>, tx: &dyn ReadTx, vswitch: VSwitch) -> Result<VSwitchView, ApiError> {
        let route_table_id = tx
            .resource::<Vpc>(ResourceKind::Vpc, &vswitch.vpc_id)?
            .map(|v| v.doc.route_table_id)
            .unwrap_or_default();
        Ok(VSwitchView {
            vswitch,
            route_table_id,
            owner_id: owner_id(ctx),
        })
    }

    fn json(&self) -> Value {
        let v = &self.vswitch;
        let available = validate::parse_cidr(&v.cidr_block)
            .map(|n| zones::available_ips(&n))
            .unwrap_or(0);
        json!({
            "VSwitchId": v.id,
            "VpcId": v.vpc_id,
            "ZoneId": v.zone_id,
            "CidrBlock": v.cidr_block,
            "Ipv6CidrBlock": "",
            "VSwitchName": v.name,
            "Description": v.description,
            "Status": "Available",
            "CreationTime": iso_time(v.create_time),
            "IsDefault": false,
            "AvailableIpAddressCount": available,
            "NetworkAclId": "",
            "ShareType": "Sole",
            "OwnerId": self.owner_id,
            "ResourceGroupId": v.resource_group_id,
            "RouteTable": {"RouteTableId": self.route_table_id, "RouteTableType": "System"},
            "Tags": tags_json(&v.tags),
        })
    }
}

impl From<VSwitchView> for Reply {
    fn from(v: VSwitchView) -> Reply {
        Reply::Value(v.json())
    }
}

/// The input of the actions that name one vswitch.
#[derive(Debug, Clone)]
pub struct VSwitchRef {
    pub region: String,
    pub vswitch_id: String,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for VSwitchRef {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let vswitch_id = params(ctx).str("VSwitchId")?.to_string();
        Ok(VSwitchRef {
            region,
            vswitch_id,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

operation!(
    /// DescribeVSwitchAttributes.
    DescribeVSwitchAttributes: Read, VSwitchRef => VSwitchView,
    resources(|input, account| vec![arn(&input.region, account, "vswitch", &input.vswitch_id)]),
    handle(|ctx, tx, input| {
        let v: VSwitch = owned(ctx, tx, &input.region, &input.vswitch_id)?;
        VSwitchView::of(ctx, tx, v)
    }),
);

/// DescribeVSwitches' input: filters (each given one must hold) and the page.
#[derive(Debug, Clone)]
pub struct DescribeVSwitchesInput {
    pub region: String,
    pub paging: Paging,
    pub vpc_id: Option<String>,
    pub vswitch_id: Option<String>,
    pub zone_id: Option<String>,
    pub name: Option<String>,
    pub resource_group_id: Option<String>,
    pub is_default: Option<bool>,
    pub tags: Vec<TagParam>,
}

impl FromRpc for DescribeVSwitchesInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let text = |name: &str| p.opt_str(name).map(str::to_string);
        Ok(DescribeVSwitchesInput {
            paging: p.paging()?,
            is_default: p.opt_bool("IsDefault")?,
            tags: tags::tag_params(ctx.params, "Tag")?,
            region,
            vpc_id: text("VpcId"),
            vswitch_id: text("VSwitchId"),
            zone_id: text("ZoneId"),
            name: text("VSwitchName"),
            resource_group_id: text("ResourceGroupId"),
        })
    }
}

/// A page of vswitches.
#[derive(Debug, Clone)]
pub struct VSwitchesPage {
    pub items: Vec<VSwitchView>,
    pub paging: Paging,
    pub total: u64,
}

impl From<VSwitchesPage> for Reply {
    fn from(page: VSwitchesPage) -> Reply {
        let items: Vec<Value> = page.items.iter().map(VSwitchView::json).collect();
        let mut body = json!({"VSwitches": {"VSwitch": items}});
        page_fields(&mut body, page.paging, page.total);
        Reply::Value(body)
    }
}

fn describe_vswitches(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: DescribeVSwitchesInput,
) -> Result<VSwitchesPage, ApiError> {
    let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
    let all: Vec<VSwitch> = all_in_region::<VSwitch>(ctx, tx, &input.region, input.vpc_id.as_deref())?
        .into_iter()
        .filter(|v| is(&input.vswitch_id, &v.id) && is(&input.zone_id, &v.zone_id) && is(&input.name, &v.name))
        .filter(|v| is(&input.resource_group_id, &v.resource_group_id))
        .filter(|_| input.is_default != Some(true))
        .filter(|v| tags::matches(&input.tags, &v.tags))
        .collect();
    let (page, total) = page_of(all, input.paging);
    let items = page
        .into_iter()
        .map(|v| VSwitchView::of(ctx, tx, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(VSwitchesPage {
        items,
        paging: input.paging,
        total,
    })
}

operation!(
    /// DescribeVSwitches.
    DescribeVSwitches: Read, DescribeVSwitchesInput => VSwitchesPage,
    resources(|input, account| vec![arn(&input.region, account, "vswitch", "*")]),
    handle(|ctx, tx, input| describe_vswitches(ctx, tx, input)),
);

fn delete_vswitch(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: VSwitchRef) -> Result<Done, ApiError> {
    let v: VSwitch = owned(ctx, tx, &input.region, &input.vswitch_id)?;
    let gateways: Vec<VpnGateway> = tx.children(ResourceKind::VpnGateway, &v.vpc_id)?;
    if gateways
        .iter()
        .any(|g| g.vswitch_id == v.id || g.disaster_recovery_vswitch_id == v.id)
    {
        return Err(VSWITCH_IN_USE);
    }
    check_dry_run(&input.dry_run)?;
    tx.delete_resource(ResourceKind::VSwitch, &v.id)?;
    Ok(Done {})
}

operation!(
    /// DeleteVSwitch: refused while a VPN gateway sits in it.
    DeleteVSwitch: Write, VSwitchRef => Done,
    resources(|input, account| vec![arn(&input.region, account, "vswitch", &input.vswitch_id)]),
    handle(|ctx, tx, input| delete_vswitch(ctx, tx, input)),
);

// --------------------------------------------------------------------------- DescribeVpcAttribute

/// DescribeVpcAttribute's input.
#[derive(Debug, Clone)]
pub struct DescribeVpcAttributeInput {
    pub region: String,
    pub vpc_id: VpcId,
}

impl FromRpc for DescribeVpcAttributeInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let vpc_id = params(ctx).str("VpcId")?.into();
        Ok(DescribeVpcAttributeInput { region, vpc_id })
    }
}

/// A VPC with its vswitches, as DescribeVpcAttribute shows it.
#[derive(Debug, Clone)]
pub struct VpcAttribute {
    pub vpc: Vpc,
    pub vswitch_ids: Vec<String>,
    pub owner_id: i64,
}

impl From<VpcAttribute> for Reply {
    fn from(a: VpcAttribute) -> Reply {
        let v = &a.vpc;
        Reply::Value(json!({
            "VpcId": v.id,
            "RegionId": v.region_id,
            "Status": v.status,
            "VpcName": v.name,
            "Description": v.description,
            "CreationTime": iso_time(v.create_time),
            "CidrBlock": v.cidr_block,
            "Ipv6CidrBlock": "",
            "Ipv6CidrBlocks": {"Ipv6CidrBlock": []},
            "VRouterId": v.vrouter_id,
            "IsDefault": false,
            "ResourceGroupId": v.resource_group_id,
            "OwnerId": a.owner_id,
            "EnabledIpv6": false,
            "ClassicLinkEnabled": false,
            "DhcpOptionsSetId": "",
            "DhcpOptionsSetStatus": "",
            "DnsHostnameStatus": if v.dns_hostname { "ENABLED" } else { "DISABLED" },
            "VSwitchIds": {"VSwitchId": a.vswitch_ids},
            "UserCidrs": {"UserCidr": v.user_cidrs},
            "SecondaryCidrBlocks": {"SecondaryCidrBlock": []},
            "AssociatedCens": {"AssociatedCen": []},
            "CloudResources": {"CloudResourceSetType": []},
            "Tags": tags_json(&v.tags),
        }))
    }
}

/// The ids of a VPC's vswitches, in creation order.
pub fn vswitch_ids(tx: &dyn ReadTx, vpc_id: &str) -> Result<Vec<String>, ApiError> {
    Ok(tx
        .children::<VSwitch>(ResourceKind::VSwitch, vpc_id)?
        .into_iter()
        .map(|v| v.id)
        .collect())
}

operation!(
    /// DescribeVpcAttribute.
    DescribeVpcAttribute: Read, DescribeVpcAttributeInput => VpcAttribute,
    resources(|input, account| vec![arn(&input.region, account, "vpc", &input.vpc_id)]),
    handle(|ctx, tx, input| {
        let vpc: Vpc = owned(ctx, tx, &input.region, &input.vpc_id)?;
        let vswitch_ids = vswitch_ids(tx, &vpc.id)?;
        Ok(VpcAttribute { vpc, vswitch_ids, owner_id: owner_id(ctx) })
    }),
);

// --------------------------------------------------------------------------- ModifyVSwitchAttribute

/// ModifyVSwitchAttribute's input: what to change (`None`: unchanged).
#[derive(Debug, Clone)]
pub struct ModifyVSwitchAttributeInput {
    pub region: String,
    pub vswitch_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
}

impl FromRpc for ModifyVSwitchAttributeInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let vswitch_id = p.str("VSwitchId")?.to_string();
        let text = |name: &str, check: fn(&str) -> Result<(), ApiError>| {
            p.opt_str(name).map(|v| check(v).map(|_| v.to_string())).transpose()
        };
        let name = text("VSwitchName", validate::name)?;
        let description = text("Description", validate::description)?;
        super::vpc::refuse_ipv6(ctx)?;
        Ok(ModifyVSwitchAttributeInput {
            region,
            vswitch_id,
            name,
            description,
        })
    }
}

fn modify_vswitch_attribute(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: ModifyVSwitchAttributeInput,
) -> Result<Done, ApiError> {
    let mut v: VSwitch = owned(ctx, tx, &input.region, &input.vswitch_id)?;
    let before = v.clone();
    if let Some(n) = input.name {
        v.name = n;
    }
    if let Some(d) = input.description {
        v.description = d;
    }
    if v != before {
        tx.update_resource(ResourceKind::VSwitch, &v.id, &v)?;
    }
    Ok(Done {})
}

operation!(
    /// ModifyVSwitchAttribute: VSwitchName and Description at once (Alibaba: asynchronous,
    /// `Pending` for a while; here the vswitch stays `Available`); IPv6 refused.
    ModifyVSwitchAttribute: Write, ModifyVSwitchAttributeInput => Done,
    resources(|input, account| vec![arn(&input.region, account, "vswitch", &input.vswitch_id)]),
    handle(|ctx, tx, input| modify_vswitch_attribute(ctx, tx, input)),
);
