//! Tunnel drivers: how one connection becomes one interface in the gateway namespace.
//!
//! The rest of the crate only needs, per connection, an interface whose TX counters count
//! what is routed to the connection, and a route target for that interface. A driver says
//! how to create it, what it must look like when read back, and what a site needs to know to
//! terminate it. `plain` is VXLAN, unencrypted; `ipsec` (module `ipsec`) negotiates each
//! tunnel with strongSwan and keeps, beyond the gateway namespace, what that needs (hooks
//! [`TunnelDriver::prepare`], [`TunnelDriver::realize`], its own tunnel verdict).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use serde_json::{json, Value};
use vpnroute_dataplane::{GatewaySpec, TunnelRole, TunnelState};

use crate::kernel::{Link, Neighbour, Target, Vxlan};
use crate::layout::TunnelLayout;
use crate::names::{stable_hash, Names};

/// UDP port of the plain (VXLAN) tunnels (IANA's VXLAN port).
pub const VXLAN_PORT: u16 = 4789;

/// Which tunnel driver the data plane uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    /// Unencrypted VXLAN towards the connection's remote address.
    Plain,
    /// IKE/IPsec negotiated by strongSwan's charon (module `ipsec`).
    Ipsec,
}

impl std::str::FromStr for TunnelKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "plain" => Ok(TunnelKind::Plain),
            "ipsec" => Ok(TunnelKind::Ipsec),
            other => Err(format!("unknown tunnel driver {other:?} (known: plain, ipsec)")),
        }
    }
}

/// Everything a driver is told about one tunnel: a single-tunnel connection's, or one of
/// the two of a dual-tunnel connection (each its own interface, slot and, for `ipsec`, charon).
#[derive(Debug, Clone)]
pub struct TunnelPlan {
    /// The tunnel's own key: the connection id of a single-tunnel connection, the tunnel id
    /// (`TunnelOptions[].TunnelId`) of one tunnel of a dual-tunnel connection.
    pub id: String,
    /// The connection the tunnel belongs to.
    pub connection_id: String,
    /// `None` for a single-tunnel connection.
    pub role: Option<TunnelRole>,
    pub remote_ip: Ipv4Addr,
    /// Dense per-gateway number: interface name, routing table, probe mark.
    pub slot: u32,
    /// Driver-specific key, unique within the gateway (the VNI for VXLAN).
    pub key: u32,
    pub ifname: String,
    pub alias: String,
    pub underlay_if: String,
    /// The gateway's address for this tunnel (a dual-tunnel connection's slave: the
    /// gateway's DisasterRecoveryInternetIp when it has one).
    pub local_ip: Ipv4Addr,
}

/// What a driver wants in the kernel for one tunnel.
#[derive(Debug, Clone)]
pub struct TunnelWant {
    /// `ip -batch` line creating the interface.
    pub create: String,
    /// How the interface must read back (kind, state, alias, address, addresses).
    pub link: Link,
    pub neighbours: Vec<Neighbour>,
    /// Where routes to this connection point.
    pub target: Target,
    /// The kernel next hop (`None` for a point-to-point interface).
    pub next_hop: Option<Ipv4Addr>,
    /// What the other end needs to know, for introspection.
    pub details: Value,
}

pub trait TunnelDriver: Send + Sync {
    fn kind(&self) -> &'static str;
    /// The key a new tunnel of this connection prefers (the allocator probes on collision).
    fn preferred_key(&self, connection_id: &str) -> u32;
    /// The key of an existing interface, read back (to adopt it).
    fn key_of(&self, link: &Link) -> Option<u32>;
    /// What the tunnel needs. An existing interface whose kind or tunnel parameters differ
    /// from `link` is recreated.
    fn want(&self, plan: &TunnelPlan) -> TunnelWant;
    /// Before links are written: what they need to exist (the ipsec driver's namespaces).
    fn prepare(&self, _spec: &GatewaySpec, _tunnels: &BTreeMap<String, TunnelLayout>) -> Result<(), String> {
        Ok(())
    }
    /// After the gateway's namespaces are in sync: what lives beyond them (charon and its
    /// namespace), including removing what belongs to connections no longer in the spec.
    fn realize(&self, _spec: &GatewaySpec, _tunnels: &BTreeMap<String, TunnelLayout>) -> Result<(), String> {
        Ok(())
    }
    /// Whether what the driver keeps beyond the gateway's namespaces differs from what
    /// [`TunnelDriver::realize`] puts there (the watcher then repairs).
    fn drifted(&self, _spec: &GatewaySpec, _tunnels: &BTreeMap<String, TunnelLayout>) -> bool {
        false
    }
    /// The driver's own verdict on a tunnel, by its key ([`TunnelPlan::id`]; `None`: none,
    /// the interface is enough).
    fn state(&self, _gateway_id: &str, _tunnel_id: &str) -> Option<TunnelState> {
        None
    }
    /// Live introspection of a tunnel, by its key (SA state, SPIs, counters).
    fn live_details(&self, _gateway_id: &str, _tunnel_id: &str) -> Value {
        Value::Null
    }
    /// Removes what the driver keeps for a gateway beyond its namespaces.
    fn remove_gateway(&self, _gateway_id: &str) {}
    /// Where the driver reports that its verdict on a tunnel changed.
    fn listen(&self, _listener: ChangeListener) {}
    /// The first IkeConfig/IpsecConfig member the driver cannot put in force (what
    /// [`vpnroute_dataplane::DataPlane::unsupported_tunnel`] answers). Default: none (`plain`
    /// negotiates nothing).
    fn unsupported(&self, _ike_config: &Value, _ipsec_config: &Value) -> Option<vpnroute_dataplane::Unsupported> {
        None
    }
}

/// Called with (gateway id, tunnel key — [`TunnelPlan::id`]) when a driver's tunnel verdict
/// changes.
pub type ChangeListener = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// The tunnel's own /31 for a slot: the gateway end (even) and the peer end (odd).
pub fn tunnel_addresses(slot: u32) -> (Ipv4Addr, Ipv4Addr) {
    let third = ((slot / 128) % 256) as u8;
    let fourth = ((slot % 128) * 2) as u8;
    (
        Ipv4Addr::new(169, 254, third, fourth),
        Ipv4Addr::new(169, 254, third, fourth + 1),
    )
}

fn mac(kind: u8, key: u32) -> String {
    let [_, a, b, c] = key.to_be_bytes();
    format!("02:76:{kind:02x}:{a:02x}:{b:02x}:{c:02x}")
}

/// VXLAN, one interface and VNI per connection, point-to-point over a /31 with a static
/// neighbour: nothing ever waits on ARP, so packets routed to the connection leave (and are
/// counted) even when the peer never answers.
pub struct PlainVxlan;

impl TunnelDriver for PlainVxlan {
    fn kind(&self) -> &'static str {
        "plain"
    }

    fn preferred_key(&self, connection_id: &str) -> u32 {
        // 24-bit VNI, never 0.
        ((stable_hash(connection_id) % 0x00ff_ffff) + 1) as u32
    }

    fn key_of(&self, link: &Link) -> Option<u32> {
        link.vxlan.as_ref().map(|v| v.vni)
    }

    fn want(&self, plan: &TunnelPlan) -> TunnelWant {
        let (local_addr, peer_addr) = tunnel_addresses(plan.slot);
        let (own_mac, peer_mac) = (mac(0x72, plan.key), mac(0x73, plan.key));
        let vxlan = Vxlan {
            vni: plan.key,
            remote: Some(plan.remote_ip),
            local: Some(plan.local_ip),
            port: VXLAN_PORT,
            dev: Some(plan.underlay_if.clone()),
        };
        let link = Link {
            kind: Some("vxlan".into()),
            up: true,
            alias: Some(plan.alias.clone()),
            mac: Some(own_mac.clone()),
            vxlan: Some(vxlan),
            addrs: [Ipv4Net::new(local_addr, 31).expect("/31 is valid")].into(),
            ..Link::default()
        };
        TunnelWant {
            create: format!(
                "link add {} type vxlan id {} remote {} local {} dstport {VXLAN_PORT} dev {} nolearning",
                plan.ifname, plan.key, plan.remote_ip, plan.local_ip, plan.underlay_if
            ),
            link,
            neighbours: vec![Neighbour {
                dev: plan.ifname.clone(),
                dst: peer_addr,
                lladdr: peer_mac.clone(),
                permanent: true,
            }],
            target: Target::Via {
                gateway: peer_addr,
                dev: plan.ifname.clone(),
            },
            next_hop: Some(peer_addr),
            details: json!({
                "Driver": "plain",
                "Vni": plan.key,
                "Port": VXLAN_PORT,
                "Remote": plan.remote_ip,
                "Local": plan.local_ip,
                "TunnelAddress": format!("{local_addr}/31"),
                "TunnelMac": own_mac,
                "PeerTunnelAddress": format!("{peer_addr}/31"),
                "PeerMac": peer_mac,
            }),
        }
    }
}

pub fn driver(kind: TunnelKind, names: &Names) -> Box<dyn TunnelDriver> {
    match kind {
        TunnelKind::Plain => Box::new(PlainVxlan),
        TunnelKind::Ipsec => Box::new(crate::ipsec::IpsecDriver::new(names.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_addresses_are_distinct_31s() {
        assert_eq!(
            tunnel_addresses(0),
            ("169.254.0.0".parse().unwrap(), "169.254.0.1".parse().unwrap())
        );
        assert_eq!(
            tunnel_addresses(129),
            ("169.254.1.2".parse().unwrap(), "169.254.1.3".parse().unwrap())
        );
        assert_eq!(mac(0x72, 0x0004d2), "02:76:72:00:04:d2");
        let key = PlainVxlan.preferred_key("vco-1");
        assert!((1..=0x00ff_ffff).contains(&key));
        assert_eq!("ipsec".parse::<TunnelKind>(), Ok(TunnelKind::Ipsec));
        assert!("gre".parse::<TunnelKind>().is_err());
        assert_eq!("plain".parse::<TunnelKind>(), Ok(TunnelKind::Plain));
    }
}
