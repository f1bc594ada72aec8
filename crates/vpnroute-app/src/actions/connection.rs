//! IPsec connections (the next hops of VPN routes) as typed operations: CreateVpnConnection,
//! DescribeVpnConnection, DescribeVpnConnections, DeleteVpnConnection.
//!
//! IkeConfig / IpsecConfig / HealthCheckConfig / BgpConfig arrive as JSON strings; they are
//! validated, completed with Alibaba's defaults and returned in Alibaba's response shape.

use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::{json, Map, Value};
use vpnroute_domain::ids::{new_id, new_secret, ConnectionId, CustomerGatewayId, GatewayId};
use vpnroute_domain::model::{CustomerGateway, VpnConnection, VpnGateway};
use vpnroute_domain::params::Paging;
use vpnroute_domain::status::{BusinessStatus, ConnectionState};
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, opt_text, owned, page_fields, page_of, params};
use crate::ops::{arn, check_dry_run, Deferred, Done};
use crate::reply::Reply;
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};
use crate::util::tags_json;

fn json_param(ctx: &Ctx<'_>, name: &str) -> Deferred<Map<String, Value>> {
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

/// CreateVpnConnection's input. The JSON configurations are Alibaba's objects, validated
/// and completed by the handler (defaults come from the gateway and customer gateway), so
/// they and the flags read after them are [`Deferred`].
#[derive(Debug, Clone)]
pub struct CreateVpnConnectionInput {
    pub region: String,
    pub gateway_id: GatewayId,
    pub customer_gateway_id: CustomerGatewayId,
    pub local_subnet: Vec<Ipv4Net>,
    pub remote_subnet: Vec<Ipv4Net>,
    pub name: String,
    pub ike_config: Deferred<Map<String, Value>>,
    pub ipsec_config: Deferred<Map<String, Value>>,
    pub health_check_config: Deferred<Map<String, Value>>,
    pub bgp_config: Deferred<Map<String, Value>>,
    pub effect_immediately: Deferred<bool>,
    pub enable_dpd: Deferred<bool>,
    pub enable_nat_traversal: Deferred<bool>,
    pub enable_tunnels_bgp: Deferred<bool>,
    /// `AutoConfigRoute`: validated, not modelled.
    pub auto_config_route: Deferred<Option<bool>>,
    pub tags: Deferred<Vec<(String, String)>>,
    pub remote_ca_certificate: String,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for CreateVpnConnectionInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let gateway_id = p.str("VpnGatewayId")?;
        let cgw_id = p.str("CustomerGatewayId")?;
        let local = validate::cidr_list(p.str("LocalSubnet")?, "LocalSubnet")?;
        let remote = validate::cidr_list(p.str("RemoteSubnet")?, "RemoteSubnet")?;
        let name = opt_text(ctx, "Name", validate::name)?;
        Ok(CreateVpnConnectionInput {
            region,
            gateway_id: gateway_id.into(),
            customer_gateway_id: cgw_id.into(),
            local_subnet: local,
            remote_subnet: remote,
            name,
            ike_config: json_param(ctx, "IkeConfig"),
            ipsec_config: json_param(ctx, "IpsecConfig"),
            health_check_config: json_param(ctx, "HealthCheckConfig"),
            bgp_config: json_param(ctx, "BgpConfig"),
            effect_immediately: p.bool_or("EffectImmediately", false),
            enable_dpd: p.bool_or("EnableDpd", true),
            enable_nat_traversal: p.bool_or("EnableNatTraversal", true),
            enable_tunnels_bgp: p.bool_or("EnableTunnelsBgp", false),
            auto_config_route: p.opt_bool("AutoConfigRoute"),
            tags: p.tags("Tags"),
            remote_ca_certificate: p.opt_str("RemoteCaCertificate").unwrap_or("").to_string(),
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// CreateVpnConnection's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreatedConnection {
    pub vpn_connection_id: String,
    pub name: String,
    pub create_time: i64,
}

fn create_vpn_connection(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: CreateVpnConnectionInput,
) -> Result<CreatedConnection, ApiError> {
    let region = input.region.as_str();
    let local = input.local_subnet;
    let remote = input.remote_subnet;
    let name = input.name;
    let gw: VpnGateway = owned(ctx, tx, region, &input.gateway_id)?;
    let cgw: CustomerGateway = owned(ctx, tx, region, &input.customer_gateway_id)?;

    let ike_in = input.ike_config?;
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
    let ipsec_in = input.ipsec_config?;
    let mut ipsec_pfs = PFS.to_vec();
    ipsec_pfs.push("disabled");
    let ipsec = json!({
        "IpsecEncAlg": pick(&ipsec_in, "IpsecEncAlg", ENC, "IpsecConfig")?,
        "IpsecAuthAlg": pick(&ipsec_in, "IpsecAuthAlg", AUTH, "IpsecConfig")?,
        "IpsecPfs": pick(&ipsec_in, "IpsecPfs", &ipsec_pfs, "IpsecConfig")?,
        "IpsecLifetime": int_member(&ipsec_in, "IpsecLifetime", 86400, 0, 86400, "IpsecConfig")?,
    });
    let hc_in = input.health_check_config?;
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
    let bgp_in = input.bgp_config?;
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
    let effect_immediately = input.effect_immediately?;
    let enable_dpd = input.enable_dpd?;
    let enable_nat = input.enable_nat_traversal?;
    let enable_tunnels_bgp = input.enable_tunnels_bgp?;
    input.auto_config_route?;
    let tags = input.tags?;
    if !gw.enable_ipsec {
        return Err(ApiError::new(
            "VpnGateway.IpsecVpnDisabled",
            "The IPsec-VPN function of the specified VPN gateway is not enabled.",
            400,
        ));
    }
    gw.business_status.check_change()?;
    crate::tasks::check_busy(ctx, &gw, ApiError::GATEWAY_CONFIGURING)?;
    if tx.count_children(ResourceKind::VpnConnection, &gw.id)? >= ctx.app.config.quotas.connections_per_gateway {
        return Err(ApiError::QUOTA_FULL);
    }
    check_dry_run(&input.dry_run)?;
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
        state: ConnectionState::Active,
        tunnel_up: true,
        remote_ca_certificate: input.remote_ca_certificate,
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
    crate::tasks::bump_version(ctx, tx, &gw.id)?;
    Ok(CreatedConnection {
        vpn_connection_id: conn.id,
        name: conn.name,
        create_time: conn.create_time,
    })
}

operation!(
    /// CreateVpnConnection.
    CreateVpnConnection: Write, CreateVpnConnectionInput => CreatedConnection,
    resources(|input, account| vec![arn(&input.region, account, "vpnconnection", "*")]),
    handle(|ctx, tx, input| create_vpn_connection(ctx, tx, input)),
);

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

/// DescribeVpnConnection's input.
#[derive(Debug, Clone)]
pub struct DescribeVpnConnectionInput {
    pub region: String,
    pub connection_id: ConnectionId,
}

impl FromRpc for DescribeVpnConnectionInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let connection_id = params(ctx).str("VpnConnectionId")?.into();
        Ok(DescribeVpnConnectionInput { region, connection_id })
    }
}

/// A connection with its gateway's public address, as the Describe actions show it.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub connection: VpnConnection,
    pub gateway_ip: String,
}

impl ConnectionView {
    fn of(tx: &dyn ReadTx, connection: VpnConnection) -> Result<ConnectionView, ApiError> {
        let gateway_ip = gateway_ip(tx, &connection.gateway_id)?;
        Ok(ConnectionView { connection, gateway_ip })
    }
}

impl From<ConnectionView> for Reply {
    fn from(v: ConnectionView) -> Reply {
        Reply::Value(connection_json(&v.connection, &v.gateway_ip, false))
    }
}

operation!(
    /// DescribeVpnConnection.
    DescribeVpnConnection: Read, DescribeVpnConnectionInput => ConnectionView,
    resources(|input, account| vec![arn(&input.region, account, "vpnconnection", &input.connection_id)]),
    handle(|ctx, tx, input| {
        let c: VpnConnection = owned(ctx, tx, &input.region, &input.connection_id)?;
        ConnectionView::of(tx, c)
    }),
);

/// DescribeVpnConnections' input: filters (each given one must hold) and the page.
#[derive(Debug, Clone)]
pub struct DescribeVpnConnectionsInput {
    pub region: String,
    pub paging: Paging,
    pub tags: Vec<(String, String)>,
    pub gateway_id: Option<GatewayId>,
    pub connection_id: Option<ConnectionId>,
    pub customer_gateway_id: Option<CustomerGatewayId>,
    pub resource_group_id: Option<String>,
}

impl FromRpc for DescribeVpnConnectionsInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let paging = p.paging()?;
        let tags = p.tags("Tag")?;
        Ok(DescribeVpnConnectionsInput {
            region,
            paging,
            tags,
            gateway_id: p.opt_str("VpnGatewayId").map(Into::into),
            connection_id: p.opt_str("VpnConnectionId").map(Into::into),
            customer_gateway_id: p.opt_str("CustomerGatewayId").map(Into::into),
            resource_group_id: p.opt_str("ResourceGroupId").map(str::to_string),
        })
    }
}

/// DescribeVpnConnections' answer.
#[derive(Debug, Clone)]
pub struct ConnectionsPage {
    pub items: Vec<ConnectionView>,
    pub paging: Paging,
    pub total: u64,
}

impl From<ConnectionsPage> for Reply {
    fn from(page: ConnectionsPage) -> Reply {
        let items: Vec<Value> = page
            .items
            .iter()
            .map(|v| connection_json(&v.connection, &v.gateway_ip, true))
            .collect();
        let mut body = json!({"VpnConnections": {"VpnConnection": items}});
        page_fields(&mut body, page.paging, page.total);
        Reply::Value(body)
    }
}

fn describe_vpn_connections(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    input: DescribeVpnConnectionsInput,
) -> Result<ConnectionsPage, ApiError> {
    let is = |f: &Option<String>, v: &str| f.as_deref().is_none_or(|f| f == v);
    let all = all_in_region::<VpnConnection>(ctx, tx, &input.region, input.gateway_id.as_deref())?;
    let all: Vec<VpnConnection> = all
        .into_iter()
        .filter(|c| input.connection_id.as_deref().is_none_or(|v| v == c.id))
        .filter(|c| {
            input
                .customer_gateway_id
                .as_deref()
                .is_none_or(|v| v == c.customer_gateway_id)
        })
        .filter(|c| is(&input.resource_group_id, &c.resource_group_id))
        .filter(|c| input.tags.iter().all(|t| c.tags.contains(t)))
        .collect();
    let (page, total) = page_of(all, input.paging);
    let items = page
        .into_iter()
        .map(|c| ConnectionView::of(tx, c))
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(ConnectionsPage {
        items,
        paging: input.paging,
        total,
    })
}

operation!(
    /// DescribeVpnConnections.
    DescribeVpnConnections: Read, DescribeVpnConnectionsInput => ConnectionsPage,
    resources(|input, account| vec![arn(&input.region, account, "vpnconnection", "*")]),
    handle(|ctx, tx, input| describe_vpn_connections(ctx, tx, input)),
);

/// DeleteVpnConnection's input.
#[derive(Debug, Clone)]
pub struct DeleteVpnConnectionInput {
    pub region: String,
    pub connection_id: ConnectionId,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for DeleteVpnConnectionInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let connection_id = params(ctx).str("VpnConnectionId")?.into();
        Ok(DeleteVpnConnectionInput {
            region,
            connection_id,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

fn delete_vpn_connection(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: DeleteVpnConnectionInput) -> Result<Done, ApiError> {
    let c: VpnConnection = owned(ctx, tx, &input.region, &input.connection_id)?;
    if let Some(gw) = tx.resource::<VpnGateway>(ResourceKind::VpnGateway, &c.gateway_id)? {
        if gw.doc.business_status == BusinessStatus::FinancialLocked {
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
    check_dry_run(&input.dry_run)?;
    tx.delete_resource(ResourceKind::VpnConnection, &c.id)?;
    if tx.resource_owner(ResourceKind::VpnGateway, &c.gateway_id)?.is_some() {
        crate::tasks::bump_version(ctx, tx, &c.gateway_id)?;
    }
    Ok(Done {})
}

operation!(
    /// DeleteVpnConnection.
    DeleteVpnConnection: Write, DeleteVpnConnectionInput => Done,
    resources(|input, account| vec![arn(&input.region, account, "vpnconnection", &input.connection_id)]),
    handle(|ctx, tx, input| delete_vpn_connection(ctx, tx, input)),
);
