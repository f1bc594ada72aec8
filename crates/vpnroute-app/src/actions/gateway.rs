//! VPN gateways as typed operations: CreateVpnGateway, DescribeVpnGateway,
//! DescribeVpnGateways, DeleteVpnGateway (inputs with their RPC parsers, handlers, outputs).

use rand::Rng;
use vpnroute_domain::ids::{new_id, GatewayId, VpcId};
use vpnroute_domain::model::{CustomerGateway, SslVpnServer, VSwitch, Vpc, VpnConnection, VpnGateway};
use vpnroute_domain::status::{BusinessStatus, GatewayStatus, VpcStatus};
use vpnroute_domain::tags::{self, TagParam};
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use vpnroute_domain::params::Paging;

use super::{all_in_region, opt_text, owned, page_of, params};
use crate::ops::{arn, check_dry_run, Deferred, Done};
use crate::reply::{page_fields, List, Reply};
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};
use crate::util::TagList;

const BANDWIDTHS: &[i64] = &[5, 10, 20, 50, 100, 200, 500, 1000];
const SSL_CONNECTIONS: &[i64] = &[5, 10, 20, 50, 100, 200, 500, 1000];
/// Postpaid gateways never expire: Alibaba-style far-future EndTime (2099-12-31T23:59:59Z).
const NO_END_TIME: i64 = 4_102_415_999_000;

/// CreateVpnGateway's input.
#[derive(Debug, Clone)]
pub struct CreateVpnGatewayInput {
    pub region: String,
    pub vpc_id: VpcId,
    /// Mbit/s: 5, 10, 20, 50, 100, 200, 500 or 1000.
    pub bandwidth: i64,
    /// Empty: the gateway's id.
    pub name: String,
    /// `PostpayByFlow` or `Prepay`.
    pub charge_type: String,
    pub enable_ipsec: bool,
    pub enable_ssl: bool,
    pub ssl_connections: i64,
    /// `public` or `private`.
    pub network_type: String,
    /// `Normal` or `NationalStandard`.
    pub vpn_type: String,
    pub vswitch_id: Option<String>,
    /// A second vswitch (another zone of the VPC): the gateway is dual-tunnel.
    pub disaster_recovery_vswitch_id: Option<String>,
    pub resource_group_id: Option<String>,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for CreateVpnGatewayInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
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
        let disaster_recovery_vswitch_id = p.opt_str("DisasterRecoveryVSwitchId").map(str::to_string);
        if disaster_recovery_vswitch_id.is_some() && p.opt_str("VSwitchId").is_none() {
            return Err(ApiError::missing_parameter("VSwitchId"));
        }
        Ok(CreateVpnGatewayInput {
            region,
            vpc_id: vpc_id.into(),
            bandwidth,
            name,
            charge_type: charge.into(),
            enable_ipsec,
            enable_ssl,
            ssl_connections,
            network_type: network_type.into(),
            vpn_type: vpn_type.into(),
            vswitch_id: p.opt_str("VSwitchId").map(str::to_string),
            disaster_recovery_vswitch_id,
            resource_group_id: p.opt_str("ResourceGroupId").map(str::to_string),
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// CreateVpnGateway's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedGateway {
    pub vpn_gateway_id: String,
    pub name: String,
    pub order_id: i64,
}

/// A vswitch of `vpc` the caller owns, else `InvalidVSwitchId.NotFound`.
fn vswitch_of(ctx: &OpCtx<'_>, tx: &Tx<'_>, vpc: &Vpc, id: &str) -> Result<VSwitch, ApiError> {
    let vsw: VSwitch = owned(ctx, tx, &vpc.region_id, id)?;
    if vsw.vpc_id != vpc.id {
        return Err(ApiError::VSWITCH_NOT_FOUND);
    }
    Ok(vsw)
}

/// A made-up public address for a gateway (`47.x.y.z`).
fn public_ip(rng: &mut impl Rng) -> String {
    format!(
        "47.{}.{}.{}",
        rng.random_range(0..=255),
        rng.random_range(0..=255),
        rng.random_range(1..=254)
    )
}

fn create_vpn_gateway(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: CreateVpnGatewayInput) -> Result<CreatedGateway, ApiError> {
    let region = input.region.as_str();
    let vpc: Vpc = owned(ctx, tx, region, &input.vpc_id)?;
    if vpc.status != VpcStatus::Available {
        return Err(ApiError::INCORRECT_VPC_STATUS);
    }
    let vswitch = input
        .vswitch_id
        .as_deref()
        .map(|id| vswitch_of(ctx, tx, &vpc, id))
        .transpose()?;
    if let (Some(dr_id), Some(vsw)) = (input.disaster_recovery_vswitch_id.as_deref(), &vswitch) {
        let dr = vswitch_of(ctx, tx, &vpc, dr_id)?;
        if dr.zone_id == vsw.zone_id {
            // The two tunnels must sit in two zones.
            return Err(ApiError::invalid_parameter("DisasterRecoveryVSwitchId"));
        }
    }
    if tx.count_resources(ResourceKind::VpnGateway, &ctx.account_id, region)?
        >= ctx.app.config.quotas.gateways_per_region
    {
        return Err(ApiError::QUOTA_FULL);
    }
    check_dry_run(&input.dry_run)?;
    let id = new_id("vpn");
    let mut rng = rand::rng();
    let public = input.network_type == "public";
    let dual = input.disaster_recovery_vswitch_id.is_some();
    let internet_ip = if public { public_ip(&mut rng) } else { String::new() };
    let disaster_recovery_internet_ip = if public && dual {
        public_ip(&mut rng)
    } else {
        String::new()
    };
    // A dual-tunnel gateway's IPsec addresses cannot serve SSL-VPN: it gets a third one.
    let ssl_vpn_internet_ip = if public && dual && input.enable_ssl {
        public_ip(&mut rng)
    } else {
        String::new()
    };
    let mut gw = VpnGateway {
        name: if input.name.is_empty() { id.clone() } else { input.name },
        id,
        region_id: region.to_string(),
        vpc_id: vpc.id.clone(),
        vswitch_id: input.vswitch_id.unwrap_or_else(|| new_id("vsw")),
        description: String::new(),
        bandwidth: input.bandwidth,
        internet_ip,
        status: GatewayStatus::Provisioning,
        business_status: BusinessStatus::Normal,
        charge_type: input.charge_type,
        enable_ipsec: input.enable_ipsec,
        enable_ssl: input.enable_ssl,
        ssl_connections: input.ssl_connections,
        pbr_priority: true,
        network_type: input.network_type,
        vpn_type: input.vpn_type,
        create_time: ctx.now_ms,
        end_time: NO_END_TIME,
        resource_group_id: input
            .resource_group_id
            .unwrap_or_else(|| "rg-acfmdefault0001".to_string()),
        tags: vec![],
        auto_propagate: false,
        enable_bgp: false,
        task_duration: None,
        disaster_recovery_vswitch_id: input.disaster_recovery_vswitch_id.unwrap_or_default(),
        disaster_recovery_internet_ip,
        ssl_vpn_internet_ip,
    };
    tx.insert_resource(ResourceKind::VpnGateway, &gw.id, &ctx.account_id, region, &vpc.id, &gw)?;
    crate::tasks::schedule(ctx, tx, &mut gw)?;
    let order_id: i64 = rng.random_range(200_000_000_000..900_000_000_000);
    Ok(CreatedGateway {
        vpn_gateway_id: gw.id,
        name: gw.name,
        order_id,
    })
}

operation!(
    /// CreateVpnGateway.
    CreateVpnGateway: Write, CreateVpnGatewayInput => CreatedGateway,
    resources(|input, account| vec![arn(&input.region, account, "vpngateway", "*")]),
    handle(|ctx, tx, input| create_vpn_gateway(ctx, tx, input)),
);

/// Alibaba's system tags, JSON-encoded in the `Tag` field (keys in sorted order, as
/// `serde_json` writes a map; only `PbrPriority` varies).
fn system_tag(gw: &VpnGateway) -> &'static str {
    if gw.pbr_priority {
        r#"{"IDaaSNewVersion":"true","PbrPriority":"true","VisuallySsl":"true","VpnEnableBgp":"true","VpnNewImage":"true","VpnVersion":"v1.2.4","description":"forwarding1.7.22"}"#
    } else {
        r#"{"IDaaSNewVersion":"true","PbrPriority":"false","VisuallySsl":"true","VpnEnableBgp":"true","VpnNewImage":"true","VpnVersion":"v1.2.4","description":"forwarding1.7.22"}"#
    }
}

/// The SSL-VPN address: the gateway's own on a single-tunnel gateway, a third one on a
/// dual-tunnel gateway; `""` without SSL-VPN.
pub fn ssl_vpn_ip(gw: &VpnGateway) -> &str {
    match (gw.enable_ssl, gw.ssl_vpn_internet_ip.is_empty()) {
        (false, _) => "",
        (true, true) => &gw.internet_ip,
        (true, false) => &gw.ssl_vpn_internet_ip,
    }
}

/// The fields DescribeVpnGateway(s) and ModifyVpnGatewayAttribute share.
fn identity_fields<S: SerializeStruct>(m: &mut S, gw: &VpnGateway) -> Result<(), S::Error> {
    m.serialize_field("VpnGatewayId", &gw.id)?;
    m.serialize_field("VpcId", &gw.vpc_id)?;
    m.serialize_field("VSwitchId", &gw.vswitch_id)?;
    m.serialize_field("InternetIp", &gw.internet_ip)?;
    m.serialize_field("DisasterRecoveryInternetIp", &gw.disaster_recovery_internet_ip)?;
    m.serialize_field("DisasterRecoveryVSwitchId", &gw.disaster_recovery_vswitch_id)?;
    m.serialize_field("SslVpnInternetIp", ssl_vpn_ip(gw))?;
    m.serialize_field("CreateTime", &gw.create_time)?;
    m.serialize_field("EndTime", &gw.end_time)?;
    m.serialize_field("Spec", &format_args!("{}M", gw.bandwidth))?;
    m.serialize_field("Name", &gw.name)?;
    m.serialize_field("Description", &gw.description)?;
    m.serialize_field("Status", &gw.status)?;
    m.serialize_field("BusinessStatus", &gw.business_status)?;
    Ok(())
}

/// A gateway as DescribeVpnGateway(s) shows it.
struct GatewayFields<'a> {
    gw: &'a VpnGateway,
    include_reservation: bool,
}

impl Serialize for GatewayFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let gw = self.gw;
        let onoff = |on: bool| if on { "enable" } else { "disable" };
        let mut m = s.serialize_struct("VpnGateway", 29)?;
        identity_fields(&mut m, gw)?;
        m.serialize_field("ChargeType", &gw.charge_type)?;
        m.serialize_field("IpsecVpn", onoff(gw.enable_ipsec))?;
        m.serialize_field("SslVpn", onoff(gw.enable_ssl))?;
        m.serialize_field("SslMaxConnections", &gw.ssl_connections)?;
        m.serialize_field("Tag", system_tag(gw))?;
        m.serialize_field("EnableBgp", &gw.enable_bgp)?;
        m.serialize_field("AutoPropagate", &gw.auto_propagate)?;
        m.serialize_field("VpnType", &gw.vpn_type)?;
        m.serialize_field("GatewayType", "Traditional")?;
        m.serialize_field("NetworkType", &gw.network_type)?;
        m.serialize_field("ResourceGroupId", &gw.resource_group_id)?;
        m.serialize_field("Tags", &TagList(&gw.tags))?;
        m.serialize_field(
            "EniInstanceIds",
            &List {
                item_name: "EniInstanceId",
                // Always empty (no ENIs are modelled).
                items: &[] as &[u8],
                view: |n: &u8| *n,
            },
        )?;
        if self.include_reservation {
            m.serialize_field("ReservationData", &ReservationData)?;
        }
        m.end()
    }
}

/// `ReservationData` of a pay-as-you-go gateway: nothing reserved.
struct ReservationData;

impl Serialize for ReservationData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("ReservationData", 7)?;
        for f in ["ReservationEndTime", "ReservationIpsec"] {
            m.serialize_field(f, "")?;
        }
        m.serialize_field("ReservationMaxConnections", &0)?;
        for f in ["ReservationOrderType", "ReservationSpec", "ReservationSsl", "Status"] {
            m.serialize_field(f, "")?;
        }
        m.end()
    }
}

/// DescribeVpnGateway's answer.
#[derive(Debug, Clone)]
pub struct GatewayView {
    gw: VpnGateway,
    include_reservation: bool,
}

impl Serialize for GatewayView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        GatewayFields {
            gw: &self.gw,
            include_reservation: self.include_reservation,
        }
        .serialize(s)
    }
}

/// DescribeVpnGateways' answer.
#[derive(Debug, Clone)]
pub struct GatewaysPage {
    items: Vec<VpnGateway>,
    include_reservation: bool,
    paging: Paging,
    total: u64,
}

impl Serialize for GatewaysPage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let include_reservation = self.include_reservation;
        let mut m = s.serialize_struct("DescribeVpnGateways", 4)?;
        m.serialize_field(
            "VpnGateways",
            &List {
                item_name: "VpnGateway",
                items: &self.items,
                view: |gw| GatewayFields {
                    gw,
                    include_reservation,
                },
            },
        )?;
        page_fields(&mut m, self.paging, self.total)?;
        m.end()
    }
}

/// DescribeVpnGateway's input.
#[derive(Debug, Clone)]
pub struct DescribeVpnGatewayInput {
    pub region: String,
    pub gateway_id: GatewayId,
    pub include_reservation: bool,
}

impl FromRpc for DescribeVpnGatewayInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let gateway_id = p.str("VpnGatewayId")?.into();
        let include_reservation = p.bool_or("IncludeReservationData", false)?;
        Ok(DescribeVpnGatewayInput {
            region,
            gateway_id,
            include_reservation,
        })
    }
}

impl From<GatewayView> for Reply {
    fn from(view: GatewayView) -> Reply {
        Reply::Gateway(Box::new(view))
    }
}

operation!(
    /// DescribeVpnGateway.
    DescribeVpnGateway: Read, DescribeVpnGatewayInput => GatewayView,
    resources(|input, account| vec![arn(&input.region, account, "vpngateway", &input.gateway_id)]),
    handle(|ctx, tx, input| {
        let gw: VpnGateway = owned(ctx, tx, &input.region, &input.gateway_id)?;
        Ok(GatewayView {
            gw,
            include_reservation: input.include_reservation,
        })
    }),
);

/// DescribeVpnGateways' filters: each given one must hold.
#[derive(Debug, Clone, Default)]
pub struct GatewayFilter {
    pub gateway_id: Option<String>,
    pub vpc_id: Option<String>,
    /// Compared ignoring case.
    pub status: Option<String>,
    pub business_status: Option<String>,
    /// Only `Traditional` gateways exist.
    pub gateway_type: Option<String>,
    pub resource_group_id: Option<String>,
    /// Every tag must be on the gateway (a key without value: any value).
    pub tags: Vec<TagParam>,
}

impl GatewayFilter {
    fn is_empty(&self) -> bool {
        self.gateway_id.is_none()
            && self.vpc_id.is_none()
            && self.status.is_none()
            && self.business_status.is_none()
            && self.gateway_type.is_none()
            && self.resource_group_id.is_none()
            && self.tags.is_empty()
    }

    fn matches(&self, g: &VpnGateway) -> bool {
        let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
        is(&self.gateway_id, &g.id)
            && is(&self.vpc_id, &g.vpc_id)
            && self
                .status
                .as_deref()
                .is_none_or(|v| v.eq_ignore_ascii_case(g.status.as_str()))
            && is(&self.business_status, g.business_status.as_str())
            && is(&self.gateway_type, "Traditional")
            && is(&self.resource_group_id, &g.resource_group_id)
            && tags::matches(&self.tags, &g.tags)
    }
}

/// DescribeVpnGateways' input.
#[derive(Debug, Clone)]
pub struct DescribeVpnGatewaysInput {
    pub region: String,
    pub paging: Paging,
    pub include_reservation: bool,
    pub filter: GatewayFilter,
}

impl FromRpc for DescribeVpnGatewaysInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let paging = p.paging()?;
        let include_reservation = p.bool_or("IncludeReservationData", false)?;
        let tags = tags::tag_params(ctx.params, "Tag")?;
        let text = |name: &str| p.opt_str(name).map(str::to_string);
        Ok(DescribeVpnGatewaysInput {
            region,
            paging,
            include_reservation,
            filter: GatewayFilter {
                gateway_id: text("VpnGatewayId"),
                vpc_id: text("VpcId"),
                status: text("Status"),
                business_status: text("BusinessStatus"),
                gateway_type: text("GatewayType"),
                resource_group_id: text("ResourceGroupId"),
                tags,
            },
        })
    }
}

impl From<GatewaysPage> for Reply {
    fn from(page: GatewaysPage) -> Reply {
        Reply::Gateways(page)
    }
}

fn describe_vpn_gateways(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: DescribeVpnGatewaysInput,
) -> Result<GatewaysPage, ApiError> {
    let DescribeVpnGatewaysInput {
        region,
        paging,
        include_reservation,
        filter,
    } = input;
    let (items, total) = if !filter.is_empty() {
        let all = all_in_region::<VpnGateway>(ctx, tx, &region, None)?;
        page_of(all.into_iter().filter(|g| filter.matches(g)).collect(), paging)
    } else {
        tx.list_resources(
            ResourceKind::VpnGateway,
            &ctx.account_id,
            &region,
            None,
            paging.offset(),
            paging.size as u64,
        )?
    };
    Ok(GatewaysPage {
        items,
        include_reservation,
        paging,
        total,
    })
}

operation!(
    /// DescribeVpnGateways.
    DescribeVpnGateways: Read, DescribeVpnGatewaysInput => GatewaysPage,
    resources(|input, account| {
        let mut arns = vec![arn(&input.region, account, "vpngateway", "*")];
        if let Some(id) = &input.filter.gateway_id {
            arns.push(arn(&input.region, account, "vpngateway", id));
        }
        arns
    }),
    handle(|ctx, tx, input| describe_vpn_gateways(ctx, tx, input)),
);

/// DeleteVpnGateway's input.
#[derive(Debug, Clone)]
pub struct DeleteVpnGatewayInput {
    pub region: String,
    pub gateway_id: GatewayId,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for DeleteVpnGatewayInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let gateway_id = params(ctx).str("VpnGatewayId")?.into();
        Ok(DeleteVpnGatewayInput {
            region,
            gateway_id,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

fn delete_vpn_gateway(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: DeleteVpnGatewayInput) -> Result<Done, ApiError> {
    let gw: VpnGateway = owned(ctx, tx, &input.region, &input.gateway_id)?;
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
    check_dry_run(&input.dry_run)?;
    tx.delete_resource(ResourceKind::VpnGateway, &gw.id)?;
    tx.delete_gateway_state(&gw.id)?;
    ctx.effects.borrow_mut().deleted_gateways.push(gw.id);
    Ok(Done {})
}

operation!(
    /// DeleteVpnGateway.
    DeleteVpnGateway: Write, DeleteVpnGatewayInput => Done,
    resources(|input, account| vec![arn(&input.region, account, "vpngateway", &input.gateway_id)]),
    handle(|ctx, tx, input| delete_vpn_gateway(ctx, tx, input)),
);

/// ModifyVpnGatewayAttribute's input: what to change (`None`: unchanged).
#[derive(Debug, Clone)]
pub struct ModifyVpnGatewayAttributeInput {
    pub region: String,
    pub gateway_id: GatewayId,
    pub name: Option<String>,
    pub description: Option<String>,
    pub auto_propagate: Option<bool>,
}

impl FromRpc for ModifyVpnGatewayAttributeInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let gateway_id = p.str("VpnGatewayId")?.into();
        let name = p
            .opt_str("Name")
            .map(|n| validate::name(n).map(|_| n.to_string()))
            .transpose()?;
        let description = p
            .opt_str("Description")
            .map(|d| validate::description(d).map(|_| d.to_string()))
            .transpose()?;
        let auto_propagate = p.opt_bool("AutoPropagate")?;
        Ok(ModifyVpnGatewayAttributeInput {
            region,
            gateway_id,
            name,
            description,
            auto_propagate,
        })
    }
}

/// ModifyVpnGatewayAttribute's answer: the gateway after the change, with exactly the fields
/// of Alibaba's answer model.
#[derive(Debug, Clone)]
pub struct ModifiedGateway(pub VpnGateway);

impl Serialize for ModifiedGateway {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let gw = &self.0;
        let mut m = s.serialize_struct("ModifyVpnGatewayAttribute", 19)?;
        identity_fields(&mut m, gw)?;
        m.serialize_field("IntranetIp", "")?;
        m.serialize_field("EnableBgp", &gw.enable_bgp)?;
        m.serialize_field("AutoPropagate", &gw.auto_propagate)?;
        m.serialize_field("ResourceGroupId", &gw.resource_group_id)?;
        m.end()
    }
}

/// Name, Description and AutoPropagate change nothing in force: applied at once, also on a
/// busy gateway (Terraform retries this call only on throttling and 5xx).
fn modify_vpn_gateway_attribute(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: ModifyVpnGatewayAttributeInput,
) -> Result<ModifiedGateway, ApiError> {
    let mut gw: VpnGateway = owned(ctx, tx, &input.region, &input.gateway_id)?;
    let before = gw.clone();
    if let Some(n) = input.name {
        gw.name = n;
    }
    if let Some(d) = input.description {
        gw.description = d;
    }
    if let Some(a) = input.auto_propagate {
        gw.auto_propagate = a;
    }
    if gw != before {
        tx.update_resource(ResourceKind::VpnGateway, &gw.id, &gw)?;
    }
    Ok(ModifiedGateway(gw))
}

operation!(
    /// ModifyVpnGatewayAttribute.
    ModifyVpnGatewayAttribute: Write, ModifyVpnGatewayAttributeInput => ModifiedGateway,
    resources(|input, account| vec![arn(&input.region, account, "vpngateway", &input.gateway_id)]),
    handle(|ctx, tx, input| modify_vpn_gateway_attribute(ctx, tx, input)),
);

/// The resources MoveVpnResourceGroup moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpnResourceType {
    VpnGateway,
    CustomerGateway,
}

/// MoveVpnResourceGroup's input.
#[derive(Debug, Clone)]
pub struct MoveVpnResourceGroupInput {
    pub region: String,
    pub instance_id: String,
    pub resource_type: VpnResourceType,
    pub new_resource_group_id: String,
}

/// A resource group id: `rg-` and letters or digits, at most 64 characters.
pub(crate) fn resource_group_id(text: &str) -> Result<String, ApiError> {
    match text.strip_prefix("rg-") {
        Some(rest) if !rest.is_empty() && text.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok(text.to_string())
        }
        _ => Err(ApiError::invalid_parameter("NewResourceGroupId")),
    }
}

impl FromRpc for MoveVpnResourceGroupInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let instance_id = p.str("InstanceId")?.to_string();
        let new_resource_group_id = resource_group_id(p.str("NewResourceGroupId")?)?;
        let resource_type = match p.str("ResourceType")?.to_ascii_lowercase().as_str() {
            "vpngateway" => VpnResourceType::VpnGateway,
            "customergateway" => VpnResourceType::CustomerGateway,
            _ => return Err(ApiError::invalid_parameter("ResourceType")),
        };
        Ok(MoveVpnResourceGroupInput {
            region,
            instance_id,
            resource_type,
            new_resource_group_id,
        })
    }
}

/// A gateway moves with its IPsec connections and SSL-VPN server (Alibaba's SDK doc).
fn move_vpn_resource_group(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: MoveVpnResourceGroupInput) -> Result<Done, ApiError> {
    let rg = input.new_resource_group_id;
    match input.resource_type {
        VpnResourceType::CustomerGateway => {
            let mut c: CustomerGateway = owned(ctx, tx, &input.region, &input.instance_id)?;
            c.resource_group_id = rg;
            tx.update_resource(ResourceKind::CustomerGateway, &c.id, &c)?;
        }
        VpnResourceType::VpnGateway => {
            let mut gw: VpnGateway = owned(ctx, tx, &input.region, &input.instance_id)?;
            for mut c in tx.children::<VpnConnection>(ResourceKind::VpnConnection, &gw.id)? {
                c.resource_group_id = rg.clone();
                tx.update_resource(ResourceKind::VpnConnection, &c.id, &c)?;
            }
            for mut s in tx.children::<SslVpnServer>(ResourceKind::SslVpnServer, &gw.id)? {
                s.resource_group_id = rg.clone();
                tx.update_resource(ResourceKind::SslVpnServer, &s.id, &s)?;
            }
            gw.resource_group_id = rg;
            tx.update_resource(ResourceKind::VpnGateway, &gw.id, &gw)?;
        }
    }
    Ok(Done {})
}

operation!(
    /// MoveVpnResourceGroup.
    MoveVpnResourceGroup: Write, MoveVpnResourceGroupInput => Done,
    resources(|input, account| {
        let kind = match input.resource_type {
            VpnResourceType::VpnGateway => "vpngateway",
            VpnResourceType::CustomerGateway => "customergateway",
        };
        vec![arn(&input.region, account, kind, &input.instance_id)]
    }),
    handle(|ctx, tx, input| move_vpn_resource_group(ctx, tx, input)),
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gateway() -> VpnGateway {
        VpnGateway {
            id: "vpn-1".into(),
            region_id: "cn-hangzhou".into(),
            vpc_id: "vpc-1".into(),
            vswitch_id: "vsw-1".into(),
            name: "gw <1>".into(),
            description: "d".into(),
            bandwidth: 10,
            internet_ip: "47.1.2.3".into(),
            status: GatewayStatus::Active,
            business_status: BusinessStatus::Normal,
            charge_type: "PostpayByFlow".into(),
            enable_ipsec: true,
            enable_ssl: true,
            ssl_connections: 5,
            pbr_priority: true,
            network_type: "public".into(),
            vpn_type: "Normal".into(),
            create_time: 1_700_000_000_000,
            end_time: NO_END_TIME,
            resource_group_id: "rg-1".into(),
            tags: vec![("k".into(), "v".into())],
            auto_propagate: false,
            enable_bgp: false,
            task_duration: None,
            disaster_recovery_vswitch_id: String::new(),
            disaster_recovery_internet_ip: String::new(),
            ssl_vpn_internet_ip: String::new(),
        }
    }

    /// The typed view answers exactly the fields, names and JSON types Alibaba documents.
    #[test]
    fn the_gateway_view_has_every_documented_field() {
        let gw = gateway();
        let v = serde_json::to_value(GatewayView {
            gw: gw.clone(),
            include_reservation: true,
        })
        .unwrap();
        let expected = json!({
            "VpnGatewayId": "vpn-1", "VpcId": "vpc-1", "VSwitchId": "vsw-1", "InternetIp": "47.1.2.3",
            "DisasterRecoveryInternetIp": "", "DisasterRecoveryVSwitchId": "", "SslVpnInternetIp": "47.1.2.3",
            "CreateTime": 1_700_000_000_000i64, "EndTime": NO_END_TIME, "Spec": "10M", "Name": "gw <1>",
            "Description": "d", "Status": "active", "BusinessStatus": "Normal", "ChargeType": "PostpayByFlow",
            "IpsecVpn": "enable", "SslVpn": "enable", "SslMaxConnections": 5,
            "Tag": json!({"VpnEnableBgp": "true", "VisuallySsl": "true", "PbrPriority": "true", "VpnNewImage": "true",
                          "description": "forwarding1.7.22", "VpnVersion": "v1.2.4", "IDaaSNewVersion": "true"}).to_string(),
            "EnableBgp": false, "AutoPropagate": false, "VpnType": "Normal", "GatewayType": "Traditional",
            "NetworkType": "public", "ResourceGroupId": "rg-1",
            "Tags": {"Tag": [{"Key": "k", "Value": "v"}]},
            "EniInstanceIds": {"EniInstanceId": []},
            "ReservationData": {"ReservationEndTime": "", "ReservationIpsec": "", "ReservationMaxConnections": 0,
                                "ReservationOrderType": "", "ReservationSpec": "", "ReservationSsl": "", "Status": ""},
        });
        assert_eq!(v, expected);
        let mut plain = gw;
        plain.pbr_priority = false;
        plain.enable_ssl = false;
        let v = serde_json::to_value(GatewayView {
            gw: plain,
            include_reservation: false,
        })
        .unwrap();
        assert!(v.get("ReservationData").is_none());
        assert_eq!(v["SslVpnInternetIp"], "");
        assert_eq!(v["SslVpn"], "disable");
        assert!(v["Tag"].as_str().unwrap().contains(r#""PbrPriority":"false""#));
    }

    #[test]
    fn the_gateway_list_pages() {
        let page = GatewaysPage {
            items: vec![gateway(), gateway()],
            include_reservation: false,
            paging: Paging { number: 2, size: 2 },
            total: 5,
        };
        let v = serde_json::to_value(&page).unwrap();
        assert_eq!(v["VpnGateways"]["VpnGateway"].as_array().unwrap().len(), 2);
        assert_eq!(v["VpnGateways"]["VpnGateway"][1]["VpnGatewayId"], "vpn-1");
        assert_eq!(
            (&v["PageNumber"], &v["PageSize"], &v["TotalCount"]),
            (&json!(2), &json!(2), &json!(5))
        );
        // JSON straight from the view and XML through a Value carry the same content.
        let (_, json_text) =
            vpnroute_wire::encode_reply("DescribeVpnGateways", "r", &page, vpnroute_wire::Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(parsed["RequestId"], "r");
        assert_eq!(parsed["VpnGateways"], v["VpnGateways"]);
    }
}
