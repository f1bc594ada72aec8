//! # vpnroute-dataplane
//!
//! The seam between the control plane and whatever forwards packets. It owns:
//!
//! * [`GatewaySpec`]: the desired state of one VPN gateway at one desired version, computed
//!   by the control plane from the store (routes, connections, tunnel overrides);
//! * [`DataPlane`]: the trait every data plane implements — the in-memory `sim` engine (the
//!   default) and the Linux kernel one. A reconciler calls [`DataPlane::observe`] to read
//!   back what is in force, [`DataPlane::apply`] to converge it to a spec (idempotent: applying
//!   the same spec twice changes nothing), and records the applied version only when apply
//!   succeeded and the read-back matches;
//! * [`DataPlaneEvent`]: what a data plane reports on its own (a tunnel went down, a link
//!   flapped, a drift was seen), so the reconciler looks again;
//! * [`Unsupported`]: an IKE/IPsec parameter a data plane cannot put in force, reported by
//!   [`DataPlane::unsupported_tunnel`] so that the API refuses it before any tunnel exists
//!   (the `sim` data plane accepts everything Alibaba accepts; the Linux one's `ipsec` driver
//!   refuses what strongSwan cannot do).
//!
//! Nothing here knows HTTP, SQL or netlink.

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Route kinds as the data plane sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RouteClass {
    /// Destination-based: longest prefix on the destination.
    Destination,
    /// Policy-based: source and destination, ordered by priority.
    Policy,
}

/// One route to put in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    /// Stable id of the route (the store's sequence number); also its age (smaller = older).
    pub id: u64,
    pub class: RouteClass,
    /// `None` for destination-based routes.
    pub source: Option<Ipv4Net>,
    pub dest: Ipv4Net,
    /// The VPN connection id the route sends packets to.
    pub next_hop: String,
    /// 100 active, 0 standby.
    pub weight: u8,
    /// Policy routes: 1..=100, smaller first. Destination routes: unused.
    pub priority: u8,
    /// Whether the route is published to the VPC route table.
    pub published: bool,
}

/// Health check of a connection, as configured through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheckSpec {
    pub sip: Ipv4Addr,
    pub dip: Ipv4Addr,
    pub interval_s: u32,
    pub retry: u32,
}

/// The role of one tunnel of a dual-tunnel connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TunnelRole {
    Master,
    Slave,
}

/// One tunnel of a dual-tunnel connection (a gateway created with a disaster-recovery
/// vswitch): its own ends and IKE/IPsec parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSpec {
    pub id: String,
    pub role: TunnelRole,
    /// The gateway's address for this role (tunnel local end).
    pub local_ip: Ipv4Addr,
    /// The tunnel's customer gateway address (tunnel remote end).
    pub remote_ip: Ipv4Addr,
    /// Operator override: `false` forces this tunnel administratively down.
    pub admin_up: bool,
    pub ike_config: serde_json::Value,
    pub ipsec_config: serde_json::Value,
    pub enable_dpd: bool,
    pub enable_nat_traversal: bool,
}

/// The tunnel a dual-tunnel connection sends through, an active/standby pair: the master
/// while it is up, else the slave while it is up, else the master. `up` tells a tunnel's
/// state by id.
pub fn tunnel_in_use(tunnels: &[TunnelSpec], up: impl Fn(&str) -> bool) -> Option<&TunnelSpec> {
    let master = tunnels.iter().find(|t| t.role == TunnelRole::Master);
    let slave = tunnels.iter().find(|t| t.role == TunnelRole::Slave);
    match (master, slave) {
        (Some(m), _) if up(&m.id) => Some(m),
        (_, Some(s)) if up(&s.id) => Some(s),
        (m, s) => m.or(s),
    }
}

/// One VPN (IPsec) connection of a gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSpec {
    pub id: String,
    /// The customer gateway's public address (tunnel remote end); for a dual-tunnel
    /// connection the master tunnel's.
    pub remote_ip: Ipv4Addr,
    pub local_subnets: Vec<Ipv4Net>,
    pub remote_subnets: Vec<Ipv4Net>,
    /// Operator override: `false` forces the tunnel administratively down.
    pub admin_up: bool,
    pub health_check: Option<HealthCheckSpec>,
    /// IKE/IPsec parameters in Alibaba's response shape (for tunnel drivers that need them).
    pub ike_config: serde_json::Value,
    pub ipsec_config: serde_json::Value,
    pub enable_dpd: bool,
    pub enable_nat_traversal: bool,
    /// A dual-tunnel connection's two tunnels, master first (routes to the connection use
    /// [`tunnel_in_use`]); empty for a single-tunnel connection.
    #[serde(default)]
    pub tunnels: Vec<TunnelSpec>,
}

/// Everything one gateway should have in force at `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySpec {
    pub gateway_id: String,
    pub version: i64,
    /// The gateway's public (underlay) address.
    pub internet_ip: Ipv4Addr,
    /// The VPC's CIDR block (the VPC side of the gateway).
    pub vpc_cidr: Ipv4Net,
    pub connections: Vec<ConnectionSpec>,
    pub routes: Vec<RouteSpec>,
}

/// The difference between two versions of one gateway's spec, for data planes that apply
/// changes incrementally ([`DataPlane::apply_changes`]): cheaper than a full [`GatewaySpec`]
/// when a gateway holds many routes and a change touches few.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecChanges {
    pub gateway_id: String,
    /// The version the changes start from: what the data plane must hold, in sync.
    pub from_version: i64,
    /// The version the changes lead to.
    pub version: i64,
    /// Routes added or changed, in their state at `version`.
    pub upserts: Vec<RouteSpec>,
    /// Ids of routes removed between the two versions.
    pub removed: Vec<u64>,
    /// Every connection at `version` (a gateway has few); `None` when they are those of
    /// `from_version` (the versions between changed routes only), so that a route change
    /// reads no connection.
    pub connections: Option<Vec<ConnectionSpec>>,
}

/// Tunnel state of a connection as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelState {
    Up,
    Down,
}

/// What a data plane reads back for one gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// The version of the last spec applied and verified, if any.
    pub applied_version: Option<i64>,
    /// Whether what is in force matches the last applied spec.
    pub in_sync: bool,
    /// Tunnel state per connection id.
    pub tunnels: Vec<(String, TunnelState)>,
    /// Data-plane specific read-back for introspection (rules, routes, nftables, …).
    pub details: serde_json::Value,
}

/// Something a data plane noticed on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataPlaneEvent {
    /// A tunnel changed state (health check, DPD, SA up/down).
    Tunnel {
        gateway_id: String,
        connection_id: String,
        state: TunnelState,
    },
    /// What is in force no longer matches the spec (a route deleted by hand, a link flap).
    Drift { gateway_id: String },
}

/// The configuration an [`Unsupported`] member belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelConfigBlock {
    /// `IkeConfig` (`TunnelIkeConfig` of a dual-tunnel connection's tunnel).
    Ike,
    /// `IpsecConfig` (`TunnelIpsecConfig`).
    Ipsec,
}

impl TunnelConfigBlock {
    /// The parameter's name on a single-tunnel connection.
    pub fn name(self) -> &'static str {
        match self {
            TunnelConfigBlock::Ike => "IkeConfig",
            TunnelConfigBlock::Ipsec => "IpsecConfig",
        }
    }

    /// The member's name in one `TunnelOptionsSpecification.N` of a dual-tunnel connection.
    pub fn tunnel_name(self) -> &'static str {
        match self {
            TunnelConfigBlock::Ike => "TunnelIkeConfig",
            TunnelConfigBlock::Ipsec => "TunnelIpsecConfig",
        }
    }
}

/// An IKE/IPsec parameter a data plane cannot put in force: `block`'s member `member`
/// (`IkeEncAlg`, …) with its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {value:?} is not supported by this data plane's tunnels", self.parameter())]
pub struct Unsupported {
    pub block: TunnelConfigBlock,
    pub member: String,
    pub value: String,
}

impl Unsupported {
    /// `IkeConfig.IkeEncAlg` style path of the parameter.
    pub fn parameter(&self) -> String {
        format!("{}.{}", self.block.name(), self.member)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataPlaneError {
    /// Worth retrying (with backoff): the kernel was busy, a peer not yet there, …
    #[error("transient data-plane failure: {0}")]
    Transient(String),
    /// The spec cannot be put in force as it is.
    #[error("data-plane failure: {0}")]
    Permanent(String),
}

impl DataPlaneError {
    /// `true` for [`DataPlaneError::Transient`].
    pub fn is_transient(&self) -> bool {
        matches!(self, DataPlaneError::Transient(_))
    }
}

/// Called by a data plane when it has events to drain (see [`DataPlane::subscribe`]). Cheap
/// and non-blocking: it only wakes the reconciler, which then calls [`DataPlane::drain_events`].
pub type EventWaker = Arc<dyn Fn() + Send + Sync>;

/// A data plane: where gateways' routes are in force.
pub trait DataPlane: Send + Sync {
    /// Short name for logs and introspection (`sim`, `linux`).
    fn name(&self) -> &'static str;
    /// Converge the gateway to `spec`: read back what is in force, apply the difference.
    /// Idempotent; on error, part of the spec may be in force and the next apply converges.
    fn apply(&self, spec: &GatewaySpec) -> Result<(), DataPlaneError>;
    /// Read back what is in force for a gateway (`None`: the data plane has nothing of it).
    fn observe(&self, gateway_id: &str) -> Result<Option<Observed>, DataPlaneError>;
    /// Remove everything of a gateway (idempotent).
    fn remove(&self, gateway_id: &str) -> Result<(), DataPlaneError>;
    /// The route a packet takes and why, as JSON (what `explain` shows).
    fn explain(&self, gateway_id: &str, source: Ipv4Addr, dest: Ipv4Addr) -> Result<serde_json::Value, DataPlaneError>;
    /// Gateways the data plane holds state for (to adopt or clean up after a restart).
    fn gateways(&self) -> Result<Vec<String>, DataPlaneError>;
    /// Events since the last call (non-blocking). Default: none.
    fn drain_events(&self) -> Vec<DataPlaneEvent> {
        Vec::new()
    }
    /// Apply `changes` if the data plane holds `changes.from_version` in sync, and answer
    /// `true`; answer `false` (changing nothing) when it does not, or does not apply changes
    /// incrementally — the caller then applies the full spec. Default: `false`.
    fn apply_changes(&self, changes: &SpecChanges) -> Result<bool, DataPlaneError> {
        let _ = changes;
        Ok(false)
    }
    /// [`explain`](Self::explain) as though the tunnels were in the given states (the
    /// operator's tunnel overrides, shown before any apply). Data planes that explain only
    /// what really is in force may ignore `tunnels`, as the default does.
    fn explain_with_tunnels(
        &self,
        gateway_id: &str,
        tunnels: &[(String, TunnelState)],
        source: Ipv4Addr,
        dest: Ipv4Addr,
    ) -> Result<serde_json::Value, DataPlaneError> {
        let _ = tunnels;
        self.explain(gateway_id, source, dest)
    }
    /// How many routes of a gateway are in force. Default: `details["RoutesInForce"]` of
    /// [`observe`](Self::observe), 0 when the data plane has nothing of the gateway.
    fn routes_in_force(&self, gateway_id: &str) -> Result<usize, DataPlaneError> {
        Ok(self
            .observe(gateway_id)?
            .and_then(|o| o.details["RoutesInForce"].as_u64())
            .unwrap_or(0) as usize)
    }
    /// Whether [`apply`](Self::apply) and [`apply_changes`](Self::apply_changes) are in-memory
    /// updates of microseconds that never wait for anything, so that a change can be put in
    /// force on the thread that committed it (the `sim` data plane). Default: `false` (kernel
    /// and tunnel programming run on their own threads).
    fn applies_inline(&self) -> bool {
        false
    }
    /// Register the reconciler's waker: call it whenever an event is queued, so the
    /// reconciler drains events at once instead of at its next periodic pass. Default: never
    /// called (the reconciler still drains on every pass).
    fn subscribe(&self, wake: EventWaker) {
        let _ = wake;
    }
    /// Whether what this data plane holds belongs to this process alone (`sim`: every
    /// replica keeps its own copy in memory) rather than being shared with other processes
    /// (`linux`: the host's kernel). A reconciler puts the versions other replicas recorded
    /// into a per-process data plane itself, without a claim and without recording anything
    /// (mirroring); a shared data plane is only ever changed under a claim. Default: `false`.
    fn per_process(&self) -> bool {
        false
    }
    /// Tunnel state per connection of a gateway as the data plane itself finds it (health
    /// checks, DPD), cheap enough for every DescribeVpnConnection. Default: empty (the data
    /// plane does not probe tunnels; callers show the operator's state).
    fn tunnel_states(&self, gateway_id: &str) -> Vec<(String, TunnelState)> {
        let _ = gateway_id;
        Vec::new()
    }
    /// The first member of a tunnel's IkeConfig / IpsecConfig (in Alibaba's response shape,
    /// as CreateVpnConnection completes them) this data plane cannot put in force, checked by
    /// the API before any tunnel exists. Default: `None`, everything Alibaba accepts (the
    /// `sim` data plane).
    fn unsupported_tunnel(
        &self,
        ike_config: &serde_json::Value,
        ipsec_config: &serde_json::Value,
    ) -> Option<Unsupported> {
        let _ = (ike_config, ipsec_config);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel(id: &str, role: TunnelRole) -> TunnelSpec {
        TunnelSpec {
            id: id.into(),
            role,
            local_ip: Ipv4Addr::new(47, 0, 0, 1),
            remote_ip: Ipv4Addr::new(1, 2, 3, 4),
            admin_up: true,
            ike_config: serde_json::json!({}),
            ipsec_config: serde_json::json!({}),
            enable_dpd: true,
            enable_nat_traversal: true,
        }
    }

    #[test]
    fn an_unsupported_member_names_its_parameter() {
        let refused = Unsupported {
            block: TunnelConfigBlock::Ipsec,
            member: "IpsecAuthAlg".into(),
            value: "sm3".into(),
        };
        assert_eq!(refused.parameter(), "IpsecConfig.IpsecAuthAlg");
        assert_eq!(TunnelConfigBlock::Ike.tunnel_name(), "TunnelIkeConfig");
        assert_eq!(
            refused.to_string(),
            "IpsecConfig.IpsecAuthAlg \"sm3\" is not supported by this data plane's tunnels"
        );
    }

    #[test]
    fn the_slave_carries_traffic_only_while_the_master_is_down() {
        let pair = [tunnel("tun-s", TunnelRole::Slave), tunnel("tun-m", TunnelRole::Master)];
        let id = |up: &[&str]| tunnel_in_use(&pair, |t| up.contains(&t)).map(|t| t.id.clone());
        assert_eq!(id(&["tun-m", "tun-s"]).as_deref(), Some("tun-m"));
        assert_eq!(id(&["tun-s"]).as_deref(), Some("tun-s"));
        assert_eq!(id(&[]).as_deref(), Some("tun-m"), "both down: the master");
        assert!(tunnel_in_use(&[], |_| true).is_none());
    }
}
