//! IPsec connections (the next hops of VPN routes) as typed operations: CreateVpnConnection,
//! DescribeVpnConnection, DescribeVpnConnections, ModifyVpnConnectionAttribute,
//! DeleteVpnConnection.
//!
//! IkeConfig / IpsecConfig / HealthCheckConfig / BgpConfig arrive as JSON strings, the
//! dual-tunnel `TunnelOptionsSpecification.N.*` as flattened parameters; both are validated and
//! completed by [`vpnroute_domain::ipsec`]. Creating a connection, and changing what a
//! connection puts in force, is a gateway task (the gateway shows `updating`).

use ipnet::Ipv4Net;
use serde::Serialize;
use serde_json::{json, Value};
use vpnroute_domain::ids::{new_id, new_secret, ConnectionId, CustomerGatewayId, GatewayId};
use vpnroute_domain::ipsec::{self, Object, Role, TunnelInput};
use vpnroute_domain::model::{CustomerGateway, Tunnel, VSwitch, VpnConnection, VpnGateway};
use vpnroute_domain::params::Paging;
use vpnroute_domain::status::{BusinessStatus, ConnectionState};
use vpnroute_domain::tags::{self, TagParam};
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx, WriteTxExt};

use super::{all_in_region, opt_text, owned, page_fields, page_of, params};
use crate::ops::{arn, check_dry_run, Deferred, Done};
use crate::reply::Reply;
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};
use crate::util::tags_json;

fn json_param(ctx: &Ctx<'_>, name: &str) -> Deferred<Object> {
    ipsec::parse_object(params(ctx).opt_str(name), name)
}

/// The four JSON configurations of a request (each validated later, against its base).
#[derive(Debug, Clone)]
pub struct ConfigInputs {
    pub ike: Deferred<Object>,
    pub ipsec: Deferred<Object>,
    pub health_check: Deferred<Object>,
    pub bgp: Deferred<Object>,
}

impl Default for ConfigInputs {
    /// No configuration given: Alibaba's defaults.
    fn default() -> Self {
        ConfigInputs {
            ike: Ok(Object::new()),
            ipsec: Ok(Object::new()),
            health_check: Ok(Object::new()),
            bgp: Ok(Object::new()),
        }
    }
}

impl ConfigInputs {
    fn from_rpc(ctx: &Ctx<'_>) -> ConfigInputs {
        ConfigInputs {
            ike: json_param(ctx, "IkeConfig"),
            ipsec: json_param(ctx, "IpsecConfig"),
            health_check: json_param(ctx, "HealthCheckConfig"),
            bgp: json_param(ctx, "BgpConfig"),
        }
    }
}

/// A connection's normalised configurations.
struct Configs {
    ike: Value,
    ipsec: Value,
    health: Value,
    bgp: Value,
}

/// Validate `inputs` onto `base` (the current connection on Modify, `None` on Create).
/// LocalId/RemoteId default to the gateway's and the customer gateway's addresses.
fn configs(
    inputs: ConfigInputs,
    base: Option<&VpnConnection>,
    local_id: &str,
    cgw: Option<&CustomerGateway>,
) -> Result<Configs, ApiError> {
    let remote_id = cgw.map(|c| c.ip_address.as_str()).unwrap_or("");
    let ike = ipsec::ike(
        &inputs.ike?,
        base.map(|b| &b.ike_config),
        local_id,
        remote_id,
        || new_secret(16),
        "IkeConfig",
    )?;
    let ipsec_cfg = ipsec::ipsec(&inputs.ipsec?, base.map(|b| &b.ipsec_config), "IpsecConfig")?;
    let health = ipsec::health_check(&inputs.health_check?, base.map(|b| &b.health_check))?;
    let (peer_asn, auth_key) = match (cgw, base) {
        (Some(c), _) => (c.asn, c.auth_key.clone()),
        (None, Some(b)) => (
            b.bgp_config.get("PeerAsn").and_then(Value::as_i64),
            b.bgp_config["AuthKey"].as_str().unwrap_or("").to_string(),
        ),
        (None, None) => (None, String::new()),
    };
    let bgp = ipsec::bgp(&inputs.bgp?, base.map(|b| &b.bgp_config), peer_asn, &auth_key)?;
    Ok(Configs {
        ike,
        ipsec: ipsec_cfg,
        health,
        bgp,
    })
}

/// Refuses an IkeConfig / IpsecConfig (as completed) that the data plane cannot put in force
/// ([`vpnroute_dataplane::DataPlane::unsupported_tunnel`]: the Linux data plane's `ipsec`
/// driver has no ShangMi transforms), before any tunnel exists. `tunnel`: the
/// `TunnelOptionsSpecification.N` the configs came from (`None`: the connection's own).
/// `InvalidParameter` naming the member, as for a value outside Alibaba's lists.
fn check_supported(
    ctx: &OpCtx<'_>,
    ike: &Value,
    ipsec_cfg: &Value,
    tunnel: Option<&TunnelInput>,
) -> Result<(), ApiError> {
    let Some(refused) = ctx.app.data_plane.unsupported_tunnel(ike, ipsec_cfg) else {
        return Ok(());
    };
    let parameter = match tunnel {
        None => refused.parameter(),
        Some(t) => tunnel_param(t, &format!("{}.{}", refused.block.tunnel_name(), refused.member)),
    };
    Err(ApiError::invalid_parameter_msg(format!(
        "The specified parameter \"{parameter}\" is not valid: {:?} is not supported by this gateway's IPsec tunnels.",
        refused.value
    )))
}

/// The zone of one of the gateway's vswitches (`""` for a made-up one).
fn zone_of_vswitch(tx: &Tx<'_>, id: &str) -> Result<String, ApiError> {
    Ok(tx
        .resource::<VSwitch>(ResourceKind::VSwitch, id)?
        .map(|v| v.doc.zone_id)
        .unwrap_or_default())
}

fn tunnel_param(t: &TunnelInput, member: &str) -> String {
    format!("TunnelOptionsSpecification.{}.{member}", t.index)
}

/// Apply one `TunnelOptionsSpecification.N` to `base` (Modify) or build a new tunnel (Create,
/// `base` = `None`, with `role` and the gateway's address and zone for it).
fn tunnel(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    region: &str,
    gw: &VpnGateway,
    t: &TunnelInput,
    role: Role,
    base: Option<&Tunnel>,
) -> Result<Tunnel, ApiError> {
    let cgw_id = match (&t.customer_gateway_id, base) {
        (Some(id), _) => id.clone(),
        (None, Some(b)) => b.customer_gateway_id.clone(),
        (None, None) => return Err(ApiError::missing_parameter(&tunnel_param(t, "CustomerGatewayId"))),
    };
    let cgw: CustomerGateway = owned(ctx, tx, region, &cgw_id)?;
    let (internet_ip, zone_no) = match (base, role) {
        (Some(b), _) => (b.internet_ip.clone(), b.zone_no.clone()),
        (None, Role::Master) => (gw.internet_ip.clone(), zone_of_vswitch(tx, &gw.vswitch_id)?),
        (None, Role::Slave) => (
            gw.disaster_recovery_internet_ip.clone(),
            zone_of_vswitch(tx, &gw.disaster_recovery_vswitch_id)?,
        ),
    };
    let ike = ipsec::ike(
        &t.ike,
        base.map(|b| &b.ike_config),
        &internet_ip,
        &cgw.ip_address,
        || new_secret(16),
        &tunnel_param(t, "TunnelIkeConfig"),
    )?;
    let ipsec_cfg = ipsec::ipsec(
        &t.ipsec,
        base.map(|b| &b.ipsec_config),
        &tunnel_param(t, "TunnelIpsecConfig"),
    )?;
    if base.is_none_or(|b| b.ike_config != ike || b.ipsec_config != ipsec_cfg) {
        check_supported(ctx, &ike, &ipsec_cfg, Some(t))?;
    }
    let mut bgp = ipsec::tunnel_bgp(&t.bgp, base.map(|b| &b.bgp_config), &tunnel_param(t, "TunnelBgpConfig"))?;
    bgp["PeerAsn"] = cgw.asn.map(|a| json!(a)).unwrap_or_else(|| json!(""));
    Ok(Tunnel {
        id: base.map(|b| b.id.clone()).unwrap_or_else(|| new_id("tun")),
        role: role.as_str().to_string(),
        customer_gateway_id: cgw.id,
        enable_dpd: t.enable_dpd.or(base.map(|b| b.enable_dpd)).unwrap_or(true),
        enable_nat_traversal: t
            .enable_nat_traversal
            .or(base.map(|b| b.enable_nat_traversal))
            .unwrap_or(true),
        remote_ca_certificate: t
            .remote_ca_certificate
            .clone()
            .or(base.map(|b| b.remote_ca_certificate.clone()))
            .unwrap_or_default(),
        ike_config: ike,
        ipsec_config: ipsec_cfg,
        bgp_config: bgp,
        zone_no,
        internet_ip,
        up: base.map(|b| b.up).unwrap_or(true),
    })
}

/// The two tunnels of a new connection on a dual-tunnel gateway: exactly two specifications,
/// one `master` and one `slave`; master first.
fn new_tunnels(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    region: &str,
    gw: &VpnGateway,
    inputs: &[TunnelInput],
) -> Result<Vec<Tunnel>, ApiError> {
    if inputs.is_empty() {
        return Err(ApiError::missing_parameter(
            "TunnelOptionsSpecification.1.CustomerGatewayId",
        ));
    }
    if inputs.len() != 2 {
        return Err(ApiError::invalid_parameter("TunnelOptionsSpecification"));
    }
    let mut roles = Vec::with_capacity(2);
    for t in inputs {
        let text = t
            .role
            .as_deref()
            .ok_or_else(|| ApiError::missing_parameter(&tunnel_param(t, "Role")))?;
        let role = Role::parse(text, &tunnel_param(t, "Role"))?;
        if roles.contains(&role) {
            return Err(ApiError::invalid_parameter(&tunnel_param(t, "Role")));
        }
        roles.push(role);
    }
    let mut tunnels = inputs
        .iter()
        .zip(roles)
        .map(|(t, role)| tunnel(ctx, tx, region, gw, t, role, None))
        .collect::<Result<Vec<_>, _>>()?;
    tunnels.sort_by_key(|t| t.role != Role::Master.as_str());
    Ok(tunnels)
}

/// The tunnels after ModifyVpnConnectionAttribute: each specification changes the tunnel
/// its `TunnelId` (else its `Role`) names.
fn modified_tunnels(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    region: &str,
    gw: &VpnGateway,
    current: &[Tunnel],
    inputs: &[TunnelInput],
) -> Result<Vec<Tunnel>, ApiError> {
    let mut tunnels = current.to_vec();
    for t in inputs {
        let pos = match (&t.tunnel_id, &t.role) {
            (Some(id), _) => tunnels.iter().position(|x| &x.id == id),
            (None, Some(role)) => tunnels.iter().position(|x| &x.role == role),
            (None, None) => return Err(ApiError::missing_parameter(&tunnel_param(t, "TunnelId"))),
        }
        .ok_or_else(|| ApiError::invalid_parameter(&tunnel_param(t, "TunnelId")))?;
        let role = Role::parse(&tunnels[pos].role, "Role")?;
        tunnels[pos] = tunnel(ctx, tx, region, gw, t, role, Some(&tunnels[pos]))?;
    }
    Ok(tunnels)
}

/// The IPsec-VPN function is on, the gateway is not locked.
fn check_gateway_takes_connections(gw: &VpnGateway) -> Result<(), ApiError> {
    if !gw.enable_ipsec {
        return Err(ApiError::new(
            "VpnGateway.IpsecVpnDisabled",
            "The IPsec-VPN function of the specified VPN gateway is not enabled.",
            400,
        ));
    }
    gw.business_status.check_change()
}

fn subnet_text(nets: &[Ipv4Net]) -> String {
    nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
}

/// CreateVpnConnection's input. The JSON configurations are Alibaba's objects, validated
/// and completed by the handler (defaults come from the gateway and customer gateway), so
/// they and the flags read after them are [`Deferred`].
#[derive(Debug, Clone)]
pub struct CreateVpnConnectionInput {
    pub region: String,
    pub gateway_id: GatewayId,
    /// Required on a single-tunnel gateway, refused on a dual-tunnel one.
    pub customer_gateway_id: Option<CustomerGatewayId>,
    pub local_subnet: Vec<Ipv4Net>,
    pub remote_subnet: Vec<Ipv4Net>,
    pub name: String,
    pub configs: ConfigInputs,
    /// Dual-tunnel gateways: the two tunnels.
    pub tunnels: Vec<TunnelInput>,
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
        let cgw_id = p.opt_str("CustomerGatewayId");
        let local = validate::cidr_list(p.str("LocalSubnet")?, "LocalSubnet")?;
        let remote = validate::cidr_list(p.str("RemoteSubnet")?, "RemoteSubnet")?;
        let name = opt_text(ctx, "Name", validate::name)?;
        let tunnels = ipsec::tunnel_inputs(ctx.params)?;
        Ok(CreateVpnConnectionInput {
            region,
            gateway_id: gateway_id.into(),
            customer_gateway_id: cgw_id.map(Into::into),
            local_subnet: local,
            remote_subnet: remote,
            name,
            configs: ConfigInputs::from_rpc(ctx),
            tunnels,
            effect_immediately: p.bool_or("EffectImmediately", false),
            enable_dpd: p.bool_or("EnableDpd", true),
            enable_nat_traversal: p.bool_or("EnableNatTraversal", true),
            enable_tunnels_bgp: p.bool_or("EnableTunnelsBgp", false),
            auto_config_route: p.opt_bool("AutoConfigRoute"),
            tags: tags::tags_to_set(ctx.params, "Tags"),
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
    owned::<VpnGateway>(ctx, tx, region, &input.gateway_id)?;
    // The connection quota and the busy check hold against writers on other replicas too.
    tx.lock_gateway(&input.gateway_id)?;
    let mut gw: VpnGateway = owned(ctx, tx, region, &input.gateway_id)?;
    let (cgw, tunnels) = if gw.is_dual_tunnel() {
        if input.customer_gateway_id.is_some() {
            // Dual tunnel: the customer gateways are per tunnel.
            return Err(ApiError::invalid_parameter("CustomerGatewayId"));
        }
        (None, new_tunnels(ctx, tx, region, &gw, &input.tunnels)?)
    } else {
        if !input.tunnels.is_empty() {
            return Err(ApiError::invalid_parameter("TunnelOptionsSpecification"));
        }
        let id = input
            .customer_gateway_id
            .as_ref()
            .ok_or_else(|| ApiError::missing_parameter("CustomerGatewayId"))?;
        let cgw: CustomerGateway = owned(ctx, tx, region, id)?;
        (Some(cgw), vec![])
    };
    let cfg = configs(input.configs, None, &gw.internet_ip, cgw.as_ref())?;
    if tunnels.is_empty() {
        // A dual-tunnel connection puts its tunnels' configs in force (checked in `tunnel`).
        check_supported(ctx, &cfg.ike, &cfg.ipsec, None)?;
    }
    let effect_immediately = input.effect_immediately?;
    let enable_dpd = input.enable_dpd?;
    let enable_nat = input.enable_nat_traversal?;
    let enable_tunnels_bgp = input.enable_tunnels_bgp?;
    input.auto_config_route?;
    let tags = input.tags?;
    check_gateway_takes_connections(&gw)?;
    crate::tasks::check_busy(ctx, &gw, ApiError::GATEWAY_CONFIGURING)?;
    if tx.count_children(ResourceKind::VpnConnection, &gw.id)? >= ctx.app.config.quotas.connections_per_gateway {
        return Err(ApiError::QUOTA_FULL);
    }
    check_dry_run(&input.dry_run)?;
    let id = new_id("vco");
    let conn = VpnConnection {
        name: if input.name.is_empty() { id.clone() } else { input.name },
        id,
        region_id: region.to_string(),
        gateway_id: gw.id.clone(),
        customer_gateway_id: cgw.map(|c| c.id).unwrap_or_default(),
        local_subnet: subnet_text(&input.local_subnet),
        remote_subnet: subnet_text(&input.remote_subnet),
        effect_immediately,
        enable_dpd,
        enable_nat_traversal: enable_nat,
        enable_tunnels_bgp,
        ike_config: cfg.ike,
        ipsec_config: cfg.ipsec,
        health_check: cfg.health,
        bgp_config: cfg.bgp,
        create_time: ctx.now_ms,
        state: ConnectionState::Active,
        tunnel_up: true,
        remote_ca_certificate: input.remote_ca_certificate,
        resource_group_id: gw.resource_group_id.clone(),
        tags,
        tunnels,
    };
    tx.insert_resource(
        ResourceKind::VpnConnection,
        &conn.id,
        &ctx.account_id,
        region,
        &gw.id,
        &conn,
    )?;
    // Asynchronous, as Alibaba documents: the gateway configures the tunnel (its version
    // moves, so the data plane gets the connection).
    crate::tasks::schedule(ctx, tx, &mut gw)?;
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

/// `"true"` / `"false"`, as the tunnel models want their flags.
fn flag(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn tunnel_status(up: bool) -> &'static str {
    if up {
        "ipsec_sa_established"
    } else {
        "ike_sa_not_established"
    }
}

/// One tunnel as DescribeVpnConnection(s) shows it: every config member a string. `found`:
/// the data plane's own finding on the tunnel (its SA), if it has one; the tunnel's Status is
/// up when the operator's switch and that finding both say so.
fn tunnel_json(index: usize, t: &Tunnel, found: Option<bool>) -> Value {
    let mut bgp = ipsec::as_strings(&t.bgp_config);
    bgp["PeerBgpIp"] = json!("");
    bgp["BgpStatus"] = json!("");
    json!({
        "TunnelId": t.id,
        "TunnelIndex": index + 1,
        "Role": t.role,
        "State": "active",
        "Status": tunnel_status(t.up && found.unwrap_or(true)),
        "InternetIp": t.internet_ip,
        "ZoneNo": t.zone_no,
        "CustomerGatewayId": t.customer_gateway_id,
        "EnableDpd": flag(t.enable_dpd),
        "EnableNatTraversal": flag(t.enable_nat_traversal),
        "RemoteCaCertificate": t.remote_ca_certificate,
        "TunnelIkeConfig": ipsec::as_strings(&t.ike_config),
        "TunnelIpsecConfig": ipsec::as_strings(&t.ipsec_config),
        "TunnelBgpConfig": bgp,
    })
}

/// One tunnel as ModifyVpnConnectionAttribute answers it (that model types the members).
fn modified_tunnel_json(t: &Tunnel) -> Value {
    let mut bgp = t.bgp_config.clone();
    if bgp.get("PeerAsn").is_some_and(|a| !a.is_i64()) {
        if let Some(m) = bgp.as_object_mut() {
            m.remove("PeerAsn");
        }
    }
    bgp["PeerBgpIp"] = json!("");
    json!({
        "TunnelId": t.id,
        "Role": t.role,
        "State": "active",
        "InternetIp": t.internet_ip,
        "ZoneNo": t.zone_no,
        "CustomerGatewayId": t.customer_gateway_id,
        "EnableDpd": t.enable_dpd,
        "EnableNatTraversal": t.enable_nat_traversal,
        "RemoteCaCertificate": t.remote_ca_certificate,
        "TunnelIkeConfig": t.ike_config,
        "TunnelIpsecConfig": t.ipsec_config,
        "TunnelBgpConfig": bgp,
    })
}

/// `tunnel`: the data plane's own finding (its health check), if it has one; the connection
/// is up when the operator's switch and that finding both say so. `tunnels`: its findings on a
/// dual-tunnel connection's tunnels, by tunnel id.
fn connection_json(
    c: &VpnConnection,
    gw_ip: &str,
    tunnel: Option<bool>,
    tunnels: &[(String, bool)],
    list_item: bool,
) -> Value {
    let found = |id: &str| tunnels.iter().find(|(t, _)| t == id).map(|(_, up)| *up);
    let up = c.tunnel_up && tunnel.unwrap_or(true);
    let mut health_check = c.health_check.clone();
    if health_check["Enable"] == "true" && tunnel.is_some() {
        health_check["Status"] = json!(if up { "success" } else { "failed" });
    }
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
        "Status": tunnel_status(up),
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
        "VcoHealthCheck": health_check,
        "VpnBgpConfig": c.bgp_config,
        "TunnelOptionsSpecification": {
            "TunnelOptions": c.tunnels.iter().enumerate().map(|(i, t)| tunnel_json(i, t, found(&t.id))).collect::<Vec<_>>(),
        },
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
    /// The data plane's tunnel finding (`None`: it has none for this connection).
    pub tunnel: Option<bool>,
    /// Its findings on the connection's tunnels (dual tunnel), by tunnel id.
    pub tunnels: Vec<(String, bool)>,
}

impl ConnectionView {
    fn of(ctx: &OpCtx<'_>, tx: &dyn ReadTx, connection: VpnConnection) -> Result<ConnectionView, ApiError> {
        let gateway_ip = gateway_ip(tx, &connection.gateway_id)?;
        let states = ctx.app.data_plane.tunnel_states(&connection.gateway_id);
        let up = |id: &str| {
            states
                .iter()
                .find(|(key, _)| key == id)
                .map(|(_, state)| *state == vpnroute_dataplane::TunnelState::Up)
        };
        let tunnel = up(&connection.id);
        let tunnels = connection
            .tunnels
            .iter()
            .filter_map(|t| Some((t.id.clone(), up(&t.id)?)))
            .collect();
        Ok(ConnectionView {
            connection,
            gateway_ip,
            tunnel,
            tunnels,
        })
    }
}

impl From<ConnectionView> for Reply {
    fn from(v: ConnectionView) -> Reply {
        Reply::Value(connection_json(
            &v.connection,
            &v.gateway_ip,
            v.tunnel,
            &v.tunnels,
            false,
        ))
    }
}

operation!(
    /// DescribeVpnConnection.
    DescribeVpnConnection: Read, DescribeVpnConnectionInput => ConnectionView,
    resources(|input, account| vec![arn(&input.region, account, "vpnconnection", &input.connection_id)]),
    handle(|ctx, tx, input| {
        let c: VpnConnection = owned(ctx, tx, &input.region, &input.connection_id)?;
        ConnectionView::of(ctx, tx, c)
    }),
);

/// DescribeVpnConnections' input: filters (each given one must hold) and the page.
#[derive(Debug, Clone)]
pub struct DescribeVpnConnectionsInput {
    pub region: String,
    pub paging: Paging,
    pub tags: Vec<TagParam>,
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
        let tags = tags::tag_params(ctx.params, "Tag")?;
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
            .map(|v| connection_json(&v.connection, &v.gateway_ip, v.tunnel, &v.tunnels, true))
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
        .filter(|c| tags::matches(&input.tags, &c.tags))
        .collect();
    let (page, total) = page_of(all, input.paging);
    let items = page
        .into_iter()
        .map(|c| ConnectionView::of(ctx, tx, c))
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

/// ModifyVpnConnectionAttribute's input: what to change (`None` / empty: unchanged).
#[derive(Debug, Clone)]
pub struct ModifyVpnConnectionAttributeInput {
    pub region: String,
    pub connection_id: ConnectionId,
    pub local_subnet: Option<Vec<Ipv4Net>>,
    pub remote_subnet: Option<Vec<Ipv4Net>>,
    pub name: Option<String>,
    /// Merged onto the current configurations.
    pub configs: ConfigInputs,
    /// Dual tunnel: the tunnels to change, by `TunnelId` (else `Role`).
    pub tunnels: Vec<TunnelInput>,
    pub effect_immediately: Option<bool>,
    pub enable_dpd: Option<bool>,
    pub enable_nat_traversal: Option<bool>,
    pub enable_tunnels_bgp: Option<bool>,
    /// `AutoConfigRoute`: validated, not modelled.
    pub auto_config_route: Option<bool>,
    pub remote_ca_certificate: Option<String>,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for ModifyVpnConnectionAttributeInput {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let connection_id = p.str("VpnConnectionId")?.into();
        let subnets = |name: &str| p.opt_str(name).map(|t| validate::cidr_list(t, name)).transpose();
        let local_subnet = subnets("LocalSubnet")?;
        let remote_subnet = subnets("RemoteSubnet")?;
        let name = p
            .opt_str("Name")
            .map(|n| validate::name(n).map(|_| n.to_string()))
            .transpose()?;
        Ok(ModifyVpnConnectionAttributeInput {
            region,
            connection_id,
            local_subnet,
            remote_subnet,
            name,
            configs: ConfigInputs::from_rpc(ctx),
            tunnels: ipsec::tunnel_inputs(ctx.params)?,
            effect_immediately: p.opt_bool("EffectImmediately")?,
            enable_dpd: p.opt_bool("EnableDpd")?,
            enable_nat_traversal: p.opt_bool("EnableNatTraversal")?,
            enable_tunnels_bgp: p.opt_bool("EnableTunnelsBgp")?,
            auto_config_route: p.opt_bool("AutoConfigRoute")?,
            remote_ca_certificate: p.opt_str("RemoteCaCertificate").map(str::to_string),
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// ModifyVpnConnectionAttribute's answer: the connection after the change, with the fields
/// of Alibaba's answer model (the tunnels' members typed as that model has them: booleans,
/// numbers).
#[derive(Debug, Clone)]
pub struct ModifiedConnection {
    pub connection: VpnConnection,
    pub gateway_ip: String,
}

/// The fields of ModifyVpnConnectionAttribute's answer model, with the members its
/// health-check and BGP objects have.
const MODIFIED_FIELDS: &[&str] = &[
    "VpnConnectionId",
    "VpnGatewayId",
    "CustomerGatewayId",
    "Name",
    "Description",
    "LocalSubnet",
    "RemoteSubnet",
    "CreateTime",
    "EffectImmediately",
    "EnableDpd",
    "EnableNatTraversal",
    "EnableTunnelsBgp",
    "ResourceGroupId",
    "IkeConfig",
    "IpsecConfig",
    "VcoHealthCheck",
    "VpnBgpConfig",
    "TunnelOptionsSpecification",
];
const MODIFIED_HEALTH_FIELDS: &[&str] = &["Dip", "Enable", "Interval", "Retry", "Sip"];
const MODIFIED_BGP_FIELDS: &[&str] = &[
    "EnableBgp",
    "LocalAsn",
    "LocalBgpIp",
    "PeerAsn",
    "PeerBgpIp",
    "Status",
    "TunnelCidr",
];

impl Serialize for ModifiedConnection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = &self.connection;
        let mut v = connection_json(c, &self.gateway_ip, None, &[], false);
        v["Description"] = json!("");
        v["TunnelOptionsSpecification"] =
            json!({"TunnelOptions": c.tunnels.iter().map(modified_tunnel_json).collect::<Vec<_>>()});
        let keep = |v: &mut Value, fields: &[&str]| {
            if let Some(m) = v.as_object_mut() {
                m.retain(|k, _| fields.contains(&k.as_str()));
            }
        };
        keep(&mut v, MODIFIED_FIELDS);
        keep(&mut v["VcoHealthCheck"], MODIFIED_HEALTH_FIELDS);
        keep(&mut v["VpnBgpConfig"], MODIFIED_BGP_FIELDS);
        v.serialize(s)
    }
}

/// Whether `after` differs from `before` in what the gateway puts in force (anything but
/// the name and EffectImmediately).
fn changes_in_force(before: &VpnConnection, after: &VpnConnection) -> bool {
    let mut same_labels = after.clone();
    same_labels.name.clone_from(&before.name);
    same_labels.effect_immediately = before.effect_immediately;
    &same_labels != before
}

fn modify_vpn_connection_attribute(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    input: ModifyVpnConnectionAttributeInput,
) -> Result<ModifiedConnection, ApiError> {
    let region = input.region.as_str();
    let c: VpnConnection = owned(ctx, tx, region, &input.connection_id)?;
    let mut gw: VpnGateway = owned(ctx, tx, region, &c.gateway_id)?;
    let cgw = if c.customer_gateway_id.is_empty() {
        None
    } else {
        tx.resource::<CustomerGateway>(ResourceKind::CustomerGateway, &c.customer_gateway_id)?
            .map(|r| r.doc)
    };
    let mut next = c.clone();
    if let Some(l) = &input.local_subnet {
        next.local_subnet = subnet_text(l);
    }
    if let Some(r) = &input.remote_subnet {
        next.remote_subnet = subnet_text(r);
    }
    if let Some(n) = input.name {
        next.name = n;
    }
    let cfg = configs(input.configs, Some(&c), &gw.internet_ip, cgw.as_ref())?;
    if c.tunnels.is_empty() && (cfg.ike != c.ike_config || cfg.ipsec != c.ipsec_config) {
        // Only a change is checked: a connection made under another data plane keeps
        // its name and other attributes editable.
        check_supported(ctx, &cfg.ike, &cfg.ipsec, None)?;
    }
    next.ike_config = cfg.ike;
    next.ipsec_config = cfg.ipsec;
    next.health_check = cfg.health;
    next.bgp_config = cfg.bgp;
    if !input.tunnels.is_empty() {
        if c.tunnels.is_empty() {
            return Err(ApiError::invalid_parameter("TunnelOptionsSpecification"));
        }
        next.tunnels = modified_tunnels(ctx, tx, region, &gw, &c.tunnels, &input.tunnels)?;
    }
    next.effect_immediately = input.effect_immediately.unwrap_or(c.effect_immediately);
    next.enable_dpd = input.enable_dpd.unwrap_or(c.enable_dpd);
    next.enable_nat_traversal = input.enable_nat_traversal.unwrap_or(c.enable_nat_traversal);
    next.enable_tunnels_bgp = input.enable_tunnels_bgp.unwrap_or(c.enable_tunnels_bgp);
    if let Some(r) = input.remote_ca_certificate {
        next.remote_ca_certificate = r;
    }
    let in_force = changes_in_force(&c, &next);
    if in_force {
        gw.business_status.check_change()?;
        crate::tasks::check_busy(ctx, &gw, ApiError::GATEWAY_CONFIGURING)?;
    }
    check_dry_run(&input.dry_run)?;
    if next != c {
        tx.update_resource(ResourceKind::VpnConnection, &next.id, &next)?;
    }
    if in_force {
        crate::tasks::schedule(ctx, tx, &mut gw)?;
    }
    Ok(ModifiedConnection {
        connection: next,
        gateway_ip: gw.internet_ip,
    })
}

operation!(
    /// ModifyVpnConnectionAttribute: a change of what is in force is a gateway task.
    ModifyVpnConnectionAttribute: Write, ModifyVpnConnectionAttributeInput => ModifiedConnection,
    resources(|input, account| vec![arn(&input.region, account, "vpnconnection", &input.connection_id)]),
    handle(|ctx, tx, input| modify_vpn_connection_attribute(ctx, tx, input)),
);
