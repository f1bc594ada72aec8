//! The resources. Field names follow Alibaba's response fields; the store keeps each
//! resource as one row (routes and VPC route entries in typed tables, the rest as JSON
//! documents), so these types are also the storage format: change them only with a
//! migration in mind (new fields must be `#[serde(default)]`).

use serde::{Deserialize, Serialize};

use crate::status::{BusinessStatus, ConnectionState, GatewayStatus, VpcStatus};

/// The kind of a VPN route: destination-based (`dbr`) or policy-based (`pbr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteKind {
    Dbr,
    Pbr,
}

impl RouteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Dbr => "dbr",
            RouteKind::Pbr => "pbr",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "dbr" => Some(RouteKind::Dbr),
            "pbr" => Some(RouteKind::Pbr),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub region_id: String,
    pub name: String,
    pub description: String,
    pub cidr_block: String,
    /// `Pending` while being created, then `Available`.
    pub status: VpcStatus,
    pub vrouter_id: String,
    pub route_table_id: String,
    pub create_time: i64,
    #[serde(default)]
    pub resource_group_id: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// Created with `EnableDnsHostname=true` (DescribeVpcAttribute `DnsHostnameStatus`).
    #[serde(default)]
    pub dns_hostname: bool,
    /// `UserCidr` blocks given at creation.
    #[serde(default)]
    pub user_cidrs: Vec<String>,
    /// The system route table's `RouteTableName` (ModifyRouteTableAttributes).
    #[serde(default)]
    pub route_table_name: String,
    /// The system route table's `Description` (ModifyRouteTableAttributes).
    #[serde(default)]
    pub route_table_description: String,
    /// `RoutePropagationEnable=false` given to ModifyRouteTableAttributes: shown, no effect.
    #[serde(default)]
    pub route_propagation_disabled: bool,
}

/// A vswitch: a subnet of a VPC in one zone (`Available` from creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VSwitch {
    pub id: String,
    pub region_id: String,
    pub vpc_id: String,
    pub zone_id: String,
    pub cidr_block: String,
    pub name: String,
    pub description: String,
    pub create_time: i64,
    pub resource_group_id: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnGateway {
    pub id: String,
    pub region_id: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub name: String,
    pub description: String,
    pub bandwidth: i64,
    pub internet_ip: String,
    pub status: GatewayStatus,
    pub business_status: BusinessStatus,
    pub charge_type: String,
    pub enable_ipsec: bool,
    pub enable_ssl: bool,
    pub ssl_connections: i64,
    /// Whether policy routes may carry a custom Priority (`"PbrPriority":"true"` in Tag).
    pub pbr_priority: bool,
    pub network_type: String,
    pub vpn_type: String,
    pub create_time: i64,
    pub end_time: i64,
    #[serde(default)]
    pub resource_group_id: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    #[serde(default)]
    pub auto_propagate: bool,
    #[serde(default)]
    pub enable_bgp: bool,
    /// Per-gateway task duration override (`manual`, `0s`, `3s`, …); `None` = server default.
    #[serde(default)]
    pub task_duration: Option<String>,
    /// The second vswitch of a dual-tunnel gateway (`""`: single-tunnel).
    #[serde(default)]
    pub disaster_recovery_vswitch_id: String,
    /// The second (slave tunnels') address of a dual-tunnel gateway.
    #[serde(default)]
    pub disaster_recovery_internet_ip: String,
    /// The SSL-VPN address of a dual-tunnel gateway (`""`: the gateway's `internet_ip`).
    #[serde(default)]
    pub ssl_vpn_internet_ip: String,
}

impl VpnGateway {
    /// Created with a disaster-recovery vswitch: its connections have two tunnels.
    pub fn is_dual_tunnel(&self) -> bool {
        !self.disaster_recovery_vswitch_id.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerGateway {
    pub id: String,
    pub region_id: String,
    pub ip_address: String,
    pub name: String,
    pub description: String,
    pub asn: Option<i64>,
    pub auth_key: String,
    pub create_time: i64,
    #[serde(default)]
    pub resource_group_id: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnConnection {
    pub id: String,
    pub region_id: String,
    pub gateway_id: String,
    pub customer_gateway_id: String,
    pub name: String,
    pub local_subnet: String,
    pub remote_subnet: String,
    pub effect_immediately: bool,
    pub enable_dpd: bool,
    pub enable_nat_traversal: bool,
    pub enable_tunnels_bgp: bool,
    /// Normalised JSON objects in Alibaba's response shape.
    pub ike_config: serde_json::Value,
    pub ipsec_config: serde_json::Value,
    pub health_check: serde_json::Value,
    pub bgp_config: serde_json::Value,
    pub create_time: i64,
    /// Binding state: `active` once created.
    pub state: ConnectionState,
    /// Tunnel state used by the route engine (set by the admin/introspection API until a
    /// real data plane reports it).
    pub tunnel_up: bool,
    #[serde(default)]
    pub remote_ca_certificate: String,
    #[serde(default)]
    pub resource_group_id: String,
    #[serde(default)]
    pub tags: Vec<(String, String)>,
    /// The two tunnels of a connection on a dual-tunnel gateway, master first; empty for a
    /// single-tunnel connection.
    #[serde(default)]
    pub tunnels: Vec<Tunnel>,
}

/// One tunnel of a dual-tunnel IPsec connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    pub id: String,
    /// `master` or `slave`.
    pub role: String,
    pub customer_gateway_id: String,
    pub enable_dpd: bool,
    pub enable_nat_traversal: bool,
    pub remote_ca_certificate: String,
    /// Normalised like the connection's configs (`IkeConfig`/`IpsecConfig` shapes; BGP:
    /// `{LocalAsn, TunnelCidr, LocalBgpIp}`); shown with every member as a string.
    pub ike_config: serde_json::Value,
    pub ipsec_config: serde_json::Value,
    pub bgp_config: serde_json::Value,
    /// The zone of the gateway's vswitch for the role.
    pub zone_no: String,
    /// The gateway's address for the role.
    pub internet_ip: String,
    /// Tunnel state used by the route engine.
    pub up: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SslVpnServer {
    pub id: String,
    pub region_id: String,
    pub gateway_id: String,
    pub name: String,
    pub local_subnet: String,
    pub client_ip_pool: String,
    pub cipher: String,
    pub proto: String,
    pub port: i64,
    pub compress: bool,
    pub create_time: i64,
    #[serde(default)]
    pub enable_multi_factor_auth: bool,
    #[serde(default)]
    pub resource_group_id: String,
}

/// A VPN route entry (either kind), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnRoute {
    /// Store-assigned id, increasing with creation (the stable Describe order).
    pub seq: i64,
    pub kind: RouteKind,
    pub gateway_id: String,
    /// Empty for destination-based routes.
    pub source: String,
    pub dest: String,
    pub next_hop: String,
    pub weight: i64,
    pub priority: i64,
    pub published: bool,
    pub description: String,
    pub overlay_mode: String,
    pub create_time: i64,
}

impl VpnRoute {
    pub fn state(&self) -> &'static str {
        if self.published {
            "published"
        } else {
            "normal"
        }
    }
}

/// An entry of a VPC route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcRouteEntry {
    pub id: String,
    pub route_table_id: String,
    pub dest: String,
    /// `VpnGateway`, `RouterInterface`, `Instance`, `local`, …
    pub next_hop_type: String,
    pub next_hop_id: String,
    /// `System` or `Custom`.
    pub entry_type: String,
    pub name: String,
    pub description: String,
    pub create_time: i64,
}
