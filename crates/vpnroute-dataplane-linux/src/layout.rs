//! The kernel state one gateway should have, computed from its spec and its tunnels' state
//! (pure: no I/O), and the `ip -batch` lines that turn a read-back into it.
//!
//! Layout of the gateway namespace:
//!
//! | pref | rule | why |
//! |---|---|---|
//! | 0 | `lookup local` | the kernel's own |
//! | 100 | `fwmark PROBE(slot) lookup 1000+slot` | health probes leave through their tunnel |
//! | 100 | `fwmark NO_TUNNEL lookup 99` | policy routes to a connection without a tunnel |
//! | 1000 + rank | `from S to D iif VPC lookup 1000+slot` | policy mode `rules`: one per policy group, rank below |
//! | 110000 | `iif VPC lookup 100` | destination-based routes |
//! | 110001 | `iif VPC unreachable` | no match: never fall through to `main` |
//! | 120000 | `lookup main` | moved after the above (connected and underlay routes) |
//!
//! `rank = ((priority - 1) × 33 + (32 - dest len)) × 33 + (32 - source len)` encodes the
//! engine's order (priority ascending, longer destination, longer source) in the preference
//! itself, so adding a route never renumbers others. Groups equal on all three are disjoint
//! (same lengths, different prefixes), so their relative order never matters. A group (same
//! source and destination) ranks as its best member; only the member the engine selects
//! (rule 3: active if up, else the oldest up standby, else the active anyway) has a rule,
//! pointing at its tunnel.
//!
//! In policy mode `nftables` (the default) there are no per-group rules: module `nft` marks
//! policy-routed packets with their connection's probe mark, and the probe rules route them.
//!
//! Tunnels: one per single-tunnel connection, two per dual-tunnel connection (master and
//! slave, each with its own slot: interface, table, probe mark). Routes to a dual-tunnel
//! connection point at the tunnel in use ([`vpnroute_dataplane::tunnel_in_use`]: the master
//! while it is up, else the slave while it is up, else the master); the connection is up while
//! either is.
//!
//! Tables: 99 `unreachable default` (routes to a connection without a tunnel: "no route to
//! host", where a lookup without a match says "network is unreachable"), 100 the
//! destination-based routes, `1000 + slot` one `default via PEER dev TUNNEL onlink` per
//! connection.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::Value;
use vpnroute_dataplane::{tunnel_in_use, ConnectionSpec, GatewaySpec, RouteClass, RouteSpec, TunnelRole, TunnelState};

use crate::kernel::{Link, Neighbour, NsState, Route, Rule, RuleAction, Target, TABLE_LOCAL, TABLE_MAIN};
use crate::names::Names;
use crate::nft::{self, NftWant, Placed};
use crate::tunnel::{TunnelDriver, TunnelPlan, TunnelWant};

pub const TABLE_NO_TUNNEL: u32 = 99;
pub const TABLE_DESTINATION: u32 = 100;
pub const TABLE_CONNECTION_BASE: u32 = 1000;
pub const PREF_PROBE: u32 = 100;
pub const PREF_POLICY_BASE: u32 = 1000;
pub const PREF_DESTINATION: u32 = 110_000;
pub const PREF_UNREACHABLE: u32 = 110_001;
pub const PREF_MAIN: u32 = 120_000;
/// Probe packets of slot `n` carry mark `PROBE_MARK_BASE | n`.
pub const PROBE_MARK_BASE: u32 = 0x7672_0000;
/// Mark of packets policy-routed to a connection without a tunnel.
pub const NO_TUNNEL_MARK: u32 = PROBE_MARK_BASE | 0xffff;
/// Tunnel slots are below this (the /31s live in 169.254.0.0/16, the marks in 16 bits).
pub const MAX_SLOTS: u32 = 32_768;

/// The preference of a policy group's rule (see the module doc).
pub fn policy_pref(priority: u8, source: Ipv4Net, dest: Ipv4Net) -> u32 {
    let priority = u32::from(priority.clamp(1, 100)) - 1;
    let dest_rank = 32 - u32::from(dest.prefix_len());
    let source_rank = 32 - u32::from(source.prefix_len());
    PREF_POLICY_BASE + (priority * 33 + dest_rank) * 33 + source_rank
}

pub fn connection_table(slot: u32) -> u32 {
    TABLE_CONNECTION_BASE + slot
}

/// The gateway's address on the VPC side: the last usable address of the VPC CIDR.
/// The VPC router (the bridge namespace, holding published routes) takes the one before.
pub fn vpc_addresses(vpc_cidr: Ipv4Net) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    if vpc_cidr.prefix_len() > 30 {
        return Err(format!("VPC CIDR {vpc_cidr} is too small for a gateway (at most /30)"));
    }
    let last = u32::from(vpc_cidr.broadcast());
    Ok((Ipv4Addr::from(last - 1), Ipv4Addr::from(last - 2)))
}

/// One link to have: how to create it and how it must read back. Fields of `link` that are
/// `None` (kind, master, alias, mac) are not compared.
#[derive(Debug, Clone)]
pub struct LinkWant {
    pub create: Option<String>,
    pub link: Link,
    /// Compare addresses exactly (delete unknown ones).
    pub own_addresses: bool,
    /// Recreate when the read-back's kind or tunnel parameters differ.
    pub recreate_on_change: bool,
    /// Links of stage 0 are written before those of stage 1 (a tunnel names its underlay
    /// interface, a port its bridge: `ip` stops a batch at a name it cannot resolve).
    pub stage: u8,
}

/// What one namespace should hold.
#[derive(Debug, Clone, Default)]
pub struct NsWant {
    pub ns: String,
    pub links: BTreeMap<String, LinkWant>,
    /// Links present but not wanted that are ours to delete (by name).
    pub stale_link: Option<fn(&Names, &str) -> bool>,
    /// `None`: routes of this namespace are not managed.
    pub routes: Option<BTreeSet<Route>>,
    /// `None`: rules of this namespace are not managed.
    pub rules: Option<Vec<Rule>>,
    pub neighbours: Vec<Neighbour>,
    /// Set when the namespace or its links are created, and again whenever the read-back
    /// shows forwarding off (`ip netconf`; the others are not visible over netlink).
    pub sysctls: Vec<(String, String)>,
}

impl NsWant {
    /// Whether the namespace must forward (its sysctls say `ip_forward=1`).
    pub fn forwards(&self) -> bool {
        self.sysctls
            .iter()
            .any(|(key, value)| key == "net.ipv4.ip_forward" && value == "1")
    }
}

/// One tunnel of a gateway's spec: a single-tunnel connection's, or one of the two of a
/// dual-tunnel connection.
#[derive(Debug, Clone, Copy)]
pub struct TunnelEnd<'s> {
    /// Connection id (single tunnel) or tunnel id (dual tunnel).
    pub key: &'s str,
    pub connection: &'s ConnectionSpec,
    pub role: Option<TunnelRole>,
    pub remote_ip: Ipv4Addr,
    /// The gateway's address for the tunnel (the InternetIp unless the tunnel has its own).
    pub local_ip: Ipv4Addr,
}

/// Every tunnel of a spec, in connection order (master before slave).
pub fn tunnel_ends(spec: &GatewaySpec) -> Vec<TunnelEnd<'_>> {
    let mut ends = Vec::new();
    for connection in &spec.connections {
        if connection.tunnels.is_empty() {
            ends.push(TunnelEnd {
                key: &connection.id,
                connection,
                role: None,
                remote_ip: connection.remote_ip,
                local_ip: spec.internet_ip,
            });
            continue;
        }
        let mut tunnels: Vec<_> = connection.tunnels.iter().collect();
        tunnels.sort_by_key(|t| t.role != TunnelRole::Master);
        for t in tunnels {
            ends.push(TunnelEnd {
                key: &t.id,
                connection,
                role: Some(t.role),
                remote_ip: t.remote_ip,
                local_ip: if t.local_ip.is_unspecified() {
                    spec.internet_ip
                } else {
                    t.local_ip
                },
            });
        }
    }
    ends
}

/// The tunnel a connection's health check probes through: its own, or a dual-tunnel
/// connection's master (probing the tunnel in use would flap: a failed probe moves traffic to
/// the slave, where the next probe succeeds).
pub fn probe_key(connection: &ConnectionSpec) -> &str {
    connection
        .tunnels
        .iter()
        .find(|t| t.role == TunnelRole::Master)
        .map_or(connection.id.as_str(), |t| t.id.as_str())
}

/// One tunnel as laid out.
#[derive(Debug, Clone)]
pub struct TunnelLayout {
    pub plan: TunnelPlan,
    pub want: TunnelWant,
    pub state: TunnelState,
}

/// Everything one gateway should have in the kernel.
#[derive(Debug, Clone)]
pub struct Layout {
    pub gateway: NsWant,
    pub vpc: NsWant,
    pub underlay: NsWant,
    pub vpc_gateway: Ipv4Addr,
    pub vpc_router: Ipv4Addr,
    /// By tunnel key ([`TunnelEnd::key`]).
    pub tunnels: BTreeMap<String, TunnelLayout>,
    /// Connection id → the key of the tunnel its routes point at (absent: no tunnel).
    pub in_use: BTreeMap<String, String>,
    /// Connection id → its state (the state of the tunnel in use; down without a tunnel).
    pub connection_states: BTreeMap<String, TunnelState>,
    /// The nftables table (policy mode `nftables`); `None`: there must be none.
    pub nft: Option<NftWant>,
}

/// How policy-based routes are put in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    /// One `ip rule` per policy group (simple; the kernel walks rules linearly).
    Rules,
    /// nftables interval maps marking packets per connection (see module `nft`).
    Nftables,
}

impl std::str::FromStr for PolicyMode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "rules" => Ok(PolicyMode::Rules),
            "nftables" => Ok(PolicyMode::Nftables),
            other => Err(format!("unknown policy mode {other:?} (known: nftables, rules)")),
        }
    }
}

/// Slot and key per tunnel key ([`TunnelEnd::key`]): existing tunnels keep theirs
/// (adoption), new ones get the smallest free slot and their preferred key (probing on
/// collision).
pub fn allocate(
    existing: &BTreeMap<String, (u32, u32)>,
    tunnel_keys: &[&str],
    driver: &dyn TunnelDriver,
) -> Result<BTreeMap<String, (u32, u32)>, String> {
    let mut allocation: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for key in tunnel_keys {
        if let Some(found) = existing.get(*key) {
            allocation.insert(key.to_string(), *found);
        }
    }
    let mut slots: BTreeSet<u32> = allocation.values().map(|(slot, _)| *slot).collect();
    let mut keys: BTreeSet<u32> = allocation.values().map(|(_, key)| *key).collect();
    let mut next_slot = 0;
    for key in tunnel_keys {
        if allocation.contains_key(*key) {
            continue;
        }
        while slots.contains(&next_slot) {
            next_slot += 1;
        }
        if next_slot >= MAX_SLOTS {
            return Err(format!("more than {MAX_SLOTS} tunnels on one gateway"));
        }
        let mut driver_key = driver.preferred_key(key);
        while keys.contains(&driver_key) {
            driver_key = driver_key % 0x00ff_ffff + 1;
        }
        slots.insert(next_slot);
        keys.insert(driver_key);
        allocation.insert(key.to_string(), (next_slot, driver_key));
    }
    Ok(allocation)
}

/// Rule 3 of the engine within one group (same class and prefixes): returns the member.
pub fn select_member<'r>(group: &[&'r RouteSpec], is_up: impl Fn(&str) -> bool) -> Option<&'r RouteSpec> {
    let oldest = |filter: &dyn Fn(&RouteSpec) -> bool| group.iter().filter(|r| filter(r)).min_by_key(|r| r.id).copied();
    oldest(&|r| r.weight == 100 && is_up(&r.next_hop))
        .or_else(|| oldest(&|r| r.weight == 0 && is_up(&r.next_hop)))
        .or_else(|| oldest(&|r| r.weight == 100))
        .or_else(|| oldest(&|_| true))
}

/// Groups routes by (class, source, dest), prefixes normalised.
fn groups(routes: &[RouteSpec]) -> BTreeMap<(u8, Option<Ipv4Net>, Ipv4Net), Vec<&RouteSpec>> {
    let mut groups: BTreeMap<_, Vec<&RouteSpec>> = BTreeMap::new();
    for route in routes {
        let class = match route.class {
            RouteClass::Destination => 0,
            RouteClass::Policy => 1,
        };
        let source = match route.class {
            RouteClass::Destination => None,
            RouteClass::Policy => Some(route.source.unwrap_or_default().trunc()),
        };
        groups
            .entry((class, source, route.dest.trunc()))
            .or_default()
            .push(route);
    }
    groups
}

fn stale_gateway_link(names: &Names, ifname: &str) -> bool {
    names.tunnel_slot(ifname).is_some()
}

/// Computes the layout of one gateway.
pub fn layout(
    names: &Names,
    mode: PolicyMode,
    spec: &GatewaySpec,
    allocation: &BTreeMap<String, (u32, u32)>,
    states: &BTreeMap<String, TunnelState>,
    driver: &dyn TunnelDriver,
) -> Result<Layout, String> {
    let (vpc_gateway, vpc_router) = vpc_addresses(spec.vpc_cidr)?;
    if spec.internet_ip.is_unspecified() {
        return Err(format!("gateway {} has no InternetIp", spec.gateway_id));
    }
    let gateway_ns = names.gateway_ns(&spec.gateway_id);
    let vpc_ns = names.vpc_ns(&spec.gateway_id);
    let underlay_ns = names.underlay_ns();
    let (vpc_if, underlay_if, bridge) = (names.vpc_if(), names.underlay_if(), names.bridge());
    let vpc_len = spec.vpc_cidr.prefix_len();

    let mut tunnels = BTreeMap::new();
    // A tunnel without a remote address (its customer gateway is gone) is not laid out: routes
    // to a connection without a tunnel are unreachable.
    for end in tunnel_ends(spec).into_iter().filter(|e| !e.remote_ip.is_unspecified()) {
        let Some(&(slot, key)) = allocation.get(end.key) else {
            continue;
        };
        let plan = TunnelPlan {
            id: end.key.to_string(),
            connection_id: end.connection.id.clone(),
            role: end.role,
            remote_ip: end.remote_ip,
            slot,
            key,
            ifname: names.tunnel_if(slot),
            alias: match end.role {
                None => Names::connection_alias(end.key),
                Some(_) => Names::tunnel_alias(end.key),
            },
            underlay_if: underlay_if.clone(),
            local_ip: end.local_ip,
        };
        let want = driver.want(&plan);
        let state = states.get(end.key).copied().unwrap_or(TunnelState::Down);
        tunnels.insert(end.key.to_string(), TunnelLayout { plan, want, state });
    }
    let mut in_use = BTreeMap::new();
    let mut connection_states = BTreeMap::new();
    for connection in &spec.connections {
        let key = if connection.tunnels.is_empty() {
            tunnels.contains_key(&connection.id).then(|| connection.id.clone())
        } else {
            let laid: Vec<_> = connection
                .tunnels
                .iter()
                .filter(|t| tunnels.contains_key(&t.id))
                .cloned()
                .collect();
            tunnel_in_use(&laid, |id| tunnels.get(id).is_some_and(|t| t.state == TunnelState::Up)).map(|t| t.id.clone())
        };
        let state = key
            .as_ref()
            .and_then(|k| tunnels.get(k))
            .map_or(TunnelState::Down, |t| t.state);
        connection_states.insert(connection.id.clone(), state);
        if let Some(key) = key {
            in_use.insert(connection.id.clone(), key);
        }
    }
    let is_up = |id: &str| connection_states.get(id) == Some(&TunnelState::Up);
    let tunnel_of = |connection_id: &str| in_use.get(connection_id).and_then(|key| tunnels.get(key));

    // Gateway namespace: links.
    let mut links = BTreeMap::new();
    let mut lo_addrs: BTreeSet<Ipv4Net> = [Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).expect("valid")].into();
    for connection in &spec.connections {
        if let Some(check) = &connection.health_check {
            if check.sip != vpc_gateway && !check.sip.is_unspecified() {
                lo_addrs.insert(Ipv4Net::new(check.sip, 32).expect("valid"));
            }
        }
    }
    links.insert(
        "lo".to_string(),
        LinkWant {
            create: None,
            link: Link {
                up: true,
                addrs: lo_addrs,
                ..Link::default()
            },
            own_addresses: true,
            recreate_on_change: false,
            stage: 0,
        },
    );
    links.insert(
        vpc_if.clone(),
        LinkWant {
            create: Some(format!(
                "link add {vpc_if} type veth peer name {} netns {vpc_ns}",
                names.vpc_port()
            )),
            link: Link {
                kind: Some("veth".into()),
                up: true,
                alias: Some(Names::gateway_alias(&spec.gateway_id)),
                addrs: [Ipv4Net::new(vpc_gateway, vpc_len).expect("valid")].into(),
                ..Link::default()
            },
            own_addresses: true,
            recreate_on_change: false,
            stage: 0,
        },
    );
    links.insert(
        underlay_if.clone(),
        LinkWant {
            create: Some(format!(
                "link add {underlay_if} type veth peer name {} netns {underlay_ns}",
                names.underlay_port(&spec.gateway_id)
            )),
            link: Link {
                kind: Some("veth".into()),
                up: true,
                // A tunnel's own local address (a slave's DisasterRecoveryInternetIp) too.
                addrs: std::iter::once(spec.internet_ip)
                    .chain(tunnels.values().map(|t| t.plan.local_ip))
                    .map(|ip| Ipv4Net::new(ip, 32).expect("valid"))
                    .collect(),
                ..Link::default()
            },
            own_addresses: true,
            recreate_on_change: false,
            stage: 0,
        },
    );
    let mut neighbours = Vec::new();
    for tunnel in tunnels.values() {
        links.insert(
            tunnel.plan.ifname.clone(),
            LinkWant {
                create: Some(tunnel.want.create.clone()),
                link: tunnel.want.link.clone(),
                own_addresses: true,
                recreate_on_change: true,
                stage: 1,
            },
        );
        neighbours.extend(tunnel.want.neighbours.iter().cloned());
    }

    // Gateway namespace: routes.
    let mut routes = BTreeSet::new();
    routes.insert(Route::new(TABLE_NO_TUNNEL, Ipv4Net::default(), Target::Unreachable));
    let remotes: BTreeSet<Ipv4Addr> = tunnels.values().map(|t| t.plan.remote_ip).collect();
    for remote in remotes {
        let dst = Ipv4Net::new(remote, 32).expect("valid");
        routes.insert(Route::new(
            TABLE_MAIN,
            dst,
            Target::Dev {
                dev: underlay_if.clone(),
            },
        ));
    }
    for tunnel in tunnels.values() {
        routes.insert(Route::new(
            connection_table(tunnel.plan.slot),
            Ipv4Net::default(),
            tunnel.want.target.clone(),
        ));
    }

    // Gateway namespace: rules.
    let mut rules = vec![Rule::new(0, RuleAction::Lookup(TABLE_LOCAL))];
    let mut no_tunnel = Rule::new(PREF_PROBE, RuleAction::Lookup(TABLE_NO_TUNNEL));
    no_tunnel.fwmark = Some(NO_TUNNEL_MARK);
    rules.push(no_tunnel);
    let mut placed: Vec<Placed> = Vec::new();
    for tunnel in tunnels.values() {
        let mut probe = Rule::new(PREF_PROBE, RuleAction::Lookup(connection_table(tunnel.plan.slot)));
        probe.fwmark = Some(PROBE_MARK_BASE | tunnel.plan.slot);
        rules.push(probe);
    }
    for ((class, source, dest), group) in groups(&spec.routes) {
        let Some(member) = select_member(&group, is_up) else {
            continue;
        };
        let tunnel = tunnel_of(&member.next_hop);
        // A group ranks as its best member (smallest priority, then oldest), whichever member
        // carries the traffic.
        let group_priority = group.iter().map(|r| r.priority).min().unwrap_or(member.priority);
        let oldest = group.iter().map(|r| r.id).min().unwrap_or(member.id);
        if class == 0 {
            let target = tunnel.map_or(Target::Unreachable, |t| t.want.target.clone());
            routes.insert(Route::new(TABLE_DESTINATION, dest, target));
        } else if mode == PolicyMode::Nftables {
            let source = source.unwrap_or_default();
            let chain = tunnel.map_or(nft::NO_TUNNEL_CHAIN.to_string(), |t| format!("c{}", t.plan.slot));
            let rank = (group_priority, 32 - dest.prefix_len(), 32 - source.prefix_len(), oldest);
            placed.push((rank, source, dest, chain));
        } else {
            let source = source.unwrap_or_default();
            let table = tunnel.map_or(TABLE_NO_TUNNEL, |t| connection_table(t.plan.slot));
            let mut rule = Rule::new(policy_pref(group_priority, source, dest), RuleAction::Lookup(table));
            rule.src = (source.prefix_len() > 0).then_some(source);
            rule.dst = (dest.prefix_len() > 0).then_some(dest);
            rule.iif = Some(vpc_if.clone());
            rules.push(rule);
        }
    }
    let mut destination = Rule::new(PREF_DESTINATION, RuleAction::Lookup(TABLE_DESTINATION));
    destination.iif = Some(vpc_if.clone());
    let mut unreachable = Rule::new(PREF_UNREACHABLE, RuleAction::Unreachable);
    unreachable.iif = Some(vpc_if.clone());
    rules.extend([
        destination,
        unreachable,
        Rule::new(PREF_MAIN, RuleAction::Lookup(TABLE_MAIN)),
    ]);
    let nft_want = (mode == PolicyMode::Nftables).then(|| {
        let mut mark_chains: BTreeMap<String, u32> = tunnels
            .values()
            .map(|t| (format!("c{}", t.plan.slot), PROBE_MARK_BASE | t.plan.slot))
            .collect();
        mark_chains.insert(nft::NO_TUNNEL_CHAIN.to_string(), NO_TUNNEL_MARK);
        NftWant {
            vpc_if: vpc_if.clone(),
            mark_chains,
            levels: nft::levels(placed),
        }
    });

    let gateway = NsWant {
        ns: gateway_ns,
        links,
        stale_link: Some(stale_gateway_link),
        routes: Some(routes),
        rules: Some(rules),
        neighbours,
        sysctls: vec![
            ("net.ipv4.ip_forward".into(), "1".into()),
            ("net.ipv4.conf.all.rp_filter".into(), "0".into()),
            ("net.ipv4.conf.default.rp_filter".into(), "0".into()),
            // IPv4 only: no router solicitations or DAD crossing the tunnels' counters.
            ("net.ipv6.conf.all.disable_ipv6".into(), "1".into()),
            ("net.ipv6.conf.default.disable_ipv6".into(), "1".into()),
        ],
    };

    // VPC bridge namespace: the bridge (the VPC router's address) and the gateway's port;
    // published routes point at the gateway.
    let mut vpc_routes = BTreeSet::new();
    for route in spec.routes.iter().filter(|r| r.published) {
        vpc_routes.insert(Route::new(
            TABLE_MAIN,
            route.dest.trunc(),
            Target::Via {
                gateway: vpc_gateway,
                dev: bridge.clone(),
            },
        ));
    }
    let vpc = NsWant {
        ns: vpc_ns,
        links: bridge_links(
            &bridge,
            &names.vpc_port(),
            Some(Ipv4Net::new(vpc_router, vpc_len).expect("valid")),
        ),
        stale_link: None,
        routes: Some(vpc_routes),
        rules: None,
        neighbours: Vec::new(),
        sysctls: vec![
            ("net.ipv4.ip_forward".into(), "1".into()),
            ("net.ipv4.conf.all.send_redirects".into(), "0".into()),
            ("net.ipv4.conf.default.send_redirects".into(), "0".into()),
            (format!("net.ipv4.conf.{bridge}.send_redirects"), "0".into()),
        ],
    };
    let underlay = NsWant {
        ns: underlay_ns,
        links: bridge_links(&bridge, &names.underlay_port(&spec.gateway_id), None),
        stale_link: None,
        routes: None,
        rules: None,
        neighbours: Vec::new(),
        sysctls: Vec::new(),
    };
    Ok(Layout {
        gateway,
        vpc,
        underlay,
        vpc_gateway,
        vpc_router,
        tunnels,
        in_use,
        connection_states,
        nft: nft_want,
    })
}

/// A bridge (with an optional address) and one port of it.
fn bridge_links(bridge: &str, port: &str, address: Option<Ipv4Net>) -> BTreeMap<String, LinkWant> {
    let mut links = BTreeMap::new();
    links.insert(
        bridge.to_string(),
        LinkWant {
            create: Some(format!("link add {bridge} type bridge")),
            link: Link {
                kind: Some("bridge".into()),
                up: true,
                addrs: address.into_iter().collect(),
                ..Link::default()
            },
            own_addresses: address.is_some(),
            recreate_on_change: false,
            stage: 0,
        },
    );
    links.insert(
        port.to_string(),
        LinkWant {
            // Created from the gateway side (a veth pair): nothing to create here.
            create: None,
            link: Link {
                up: true,
                master: Some(bridge.to_string()),
                ..Link::default()
            },
            own_addresses: false,
            recreate_on_change: false,
            stage: 1,
        },
    );
    links
}

/// The `ip -batch` lines that make `found` what `want` says (empty: in sync).
pub fn diff(names: &Names, want: &NsWant, found: &NsState) -> Vec<String> {
    let mut lines = Vec::new();
    let mut later = Vec::new();
    for name in found.links.keys() {
        if !want.links.contains_key(name) && want.stale_link.is_some_and(|is_stale| is_stale(names, name)) {
            lines.push(format!("link del {name}"));
        }
    }
    let mut staged: Vec<(&String, &LinkWant)> = want.links.iter().collect();
    staged.sort_by_key(|(_, link_want)| link_want.stage);
    for (name, link_want) in staged {
        let wanted = &link_want.link;
        let current = match found.links.get(name) {
            Some(current)
                if !link_want.recreate_on_change || (current.kind == wanted.kind && current.vxlan == wanted.vxlan) =>
            {
                Some(current)
            }
            Some(_) => {
                lines.push(format!("link del {name}"));
                None
            }
            None => None,
        };
        if current.is_none() {
            // A port is created by its peer's namespace: wait for it.
            let Some(create) = &link_want.create else { continue };
            lines.push(create.clone());
        }
        let empty = Link::default();
        let current = current.unwrap_or(&empty);
        if let Some(mac) = &wanted.mac {
            if current.mac.as_ref() != Some(mac) {
                lines.push(format!("link set {name} address {mac}"));
            }
        }
        if let Some(alias) = &wanted.alias {
            if current.alias.as_ref() != Some(alias) {
                lines.push(format!("link set {name} alias {alias}"));
            }
        }
        if let Some(master) = &wanted.master {
            if current.master.as_ref() != Some(master) {
                lines.push(format!("link set {name} master {master}"));
            }
        }
        if wanted.up && !current.up {
            lines.push(format!("link set {name} up"));
        }
        for addr in wanted.addrs.difference(&current.addrs) {
            later.push(format!("addr add {addr} dev {name}"));
        }
        if link_want.own_addresses {
            for addr in current.addrs.difference(&wanted.addrs) {
                lines.push(format!("addr del {addr} dev {name}"));
            }
        }
    }
    lines.append(&mut later);
    for neighbour in &want.neighbours {
        if !found.neighbours.contains(neighbour) {
            lines.push(neighbour.add_line());
        }
    }
    if let Some(routes) = &want.routes {
        for route in found.routes.difference(routes) {
            lines.push(route.del_line());
        }
        for route in routes.difference(&found.routes) {
            lines.push(route.add_line());
        }
    }
    if let Some(rules) = &want.rules {
        // Multisets: a rule present twice is one too many.
        let mut wanted: BTreeMap<&Rule, usize> = BTreeMap::new();
        for rule in rules {
            *wanted.entry(rule).or_default() += 1;
        }
        let mut extra = Vec::new();
        for rule in &found.rules {
            match wanted.get_mut(rule) {
                Some(count) if *count > 0 => *count -= 1,
                _ => extra.push(rule),
            }
        }
        lines.extend(extra.iter().map(|r| r.del_line()));
        for (rule, missing) in wanted {
            lines.extend(std::iter::repeat_n(rule.add_line(), missing));
        }
    }
    lines
}

/// Wanted veths and bridges that are up but not yet running (carrier not yet seen).
pub fn carrier_pending(want: &NsWant, found: &NsState) -> bool {
    want.links.iter().any(|(name, link_want)| {
        matches!(link_want.link.kind.as_deref(), Some("veth" | "bridge"))
            && found.links.get(name).is_some_and(|link| link.up && !link.running)
    })
}

/// The routes and rules lines that move a namespace from one wanted state to another
/// (links, addresses and neighbours are assumed unchanged: a tunnel state change moves only
/// routes and rules).
pub fn diff_wanted(old: &NsWant, new: &NsWant) -> Vec<String> {
    let assumed = NsState {
        rules: old.rules.clone().unwrap_or_default(),
        routes: old.routes.clone().unwrap_or_default(),
        ..NsState::default()
    };
    let only_routes_and_rules = NsWant {
        ns: new.ns.clone(),
        routes: new.routes.clone(),
        rules: new.rules.clone(),
        ..NsWant::default()
    };
    diff(&Names::new(""), &only_routes_and_rules, &assumed)
}

/// A namespace's read-back as JSON (for introspection).
pub fn state_json(state: &NsState) -> Value {
    let links: serde_json::Map<String, Value> = state
        .links
        .iter()
        .map(|(name, link)| {
            (
                name.clone(),
                serde_json::json!({
                    "Kind": link.kind,
                    "Up": link.up,
                    "Master": link.master,
                    "Alias": link.alias,
                    "Address": link.mac,
                    "Addresses": link.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "TxPackets": link.tx_packets,
                    "RxPackets": link.rx_packets,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "Links": links,
        "Rules": state.rules.iter().map(Rule::to_json).collect::<Vec<_>>(),
        "Routes": state.routes.iter().map(Route::to_json).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tunnel::PlainVxlan;

    fn route(
        id: u64,
        class: RouteClass,
        source: Option<&str>,
        dest: &str,
        hop: &str,
        weight: u8,
        priority: u8,
    ) -> RouteSpec {
        RouteSpec {
            id,
            class,
            source: source.map(|s| s.parse().unwrap()),
            dest: dest.parse().unwrap(),
            next_hop: hop.into(),
            weight,
            priority,
            published: false,
        }
    }

    #[test]
    fn policy_prefs_follow_the_engine_order() {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        let p = |prio, src, dst| policy_pref(prio, net(src), net(dst));
        assert!(p(1, "10.0.0.0/8", "0.0.0.0/0") < p(2, "10.0.0.0/32", "1.2.3.4/32"));
        assert!(p(5, "10.0.0.0/8", "1.2.3.0/24") < p(5, "10.0.0.0/24", "1.2.0.0/16"));
        assert!(p(5, "10.0.0.0/24", "1.2.0.0/16") < p(5, "10.0.0.0/8", "1.2.0.0/16"));
        assert!(p(100, "0.0.0.0/0", "0.0.0.0/0") < PREF_DESTINATION);
    }

    #[test]
    fn group_selection_is_rule_3() {
        let a = route(1, RouteClass::Destination, None, "10.0.0.0/8", "a", 100, 0);
        let b = route(2, RouteClass::Destination, None, "10.0.0.0/8", "b", 0, 0);
        let c = route(3, RouteClass::Destination, None, "10.0.0.0/8", "c", 0, 0);
        let group = [&a, &b, &c];
        assert_eq!(select_member(&group, |_| true).unwrap().id, 1);
        assert_eq!(select_member(&group, |h| h != "a").unwrap().id, 2);
        assert_eq!(select_member(&group, |h| h == "c").unwrap().id, 3);
        assert_eq!(select_member(&group, |_| false).unwrap().id, 1);
        assert_eq!(select_member(&[&b, &c], |_| false).unwrap().id, 2);
    }

    fn connection(id: &str) -> ConnectionSpec {
        ConnectionSpec {
            id: id.into(),
            remote_ip: "203.0.113.1".parse().unwrap(),
            local_subnets: vec![],
            remote_subnets: vec![],
            admin_up: true,
            health_check: None,
            ike_config: Value::Null,
            ipsec_config: Value::Null,
            enable_dpd: false,
            enable_nat_traversal: false,
            tunnels: vec![],
        }
    }

    #[test]
    fn allocation_keeps_existing_and_fills_gaps() {
        let existing: BTreeMap<String, (u32, u32)> = [("b".to_string(), (0, 7))].into();
        let got = allocate(&existing, &["a", "b", "c"], &PlainVxlan).unwrap();
        assert_eq!(got["b"], (0, 7));
        assert_eq!(got["a"].0, 1);
        assert_eq!(got["c"].0, 2);
        assert_ne!(got["a"].1, got["c"].1);
    }

    #[test]
    fn a_dual_tunnel_connection_routes_through_the_master_then_the_slave() {
        let tunnel = |id: &str, role, remote: &str, local: &str| vpnroute_dataplane::TunnelSpec {
            id: id.into(),
            role,
            local_ip: local.parse().unwrap(),
            remote_ip: remote.parse().unwrap(),
            admin_up: true,
            ike_config: Value::Null,
            ipsec_config: Value::Null,
            enable_dpd: true,
            enable_nat_traversal: true,
        };
        let mut dual = connection("vco-d");
        // Slave listed first: the order of the spec does not decide the roles.
        dual.tunnels = vec![
            tunnel("tun-s", TunnelRole::Slave, "203.0.113.2", "47.0.0.2"),
            tunnel("tun-m", TunnelRole::Master, "203.0.113.1", "0.0.0.0"),
        ];
        let spec = GatewaySpec {
            gateway_id: "vpn-1".into(),
            version: 1,
            internet_ip: "47.0.0.1".parse().unwrap(),
            vpc_cidr: "10.0.0.0/24".parse().unwrap(),
            connections: vec![dual],
            routes: vec![route(1, RouteClass::Destination, None, "10.1.0.0/24", "vco-d", 100, 0)],
        };
        let ends = tunnel_ends(&spec);
        let keys: Vec<&str> = ends.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["tun-m", "tun-s"]);
        assert_eq!(
            ends[0].local_ip.to_string(),
            "47.0.0.1",
            "no address of its own: the InternetIp"
        );
        assert_eq!(probe_key(&spec.connections[0]), "tun-m");
        let names = Names::new("vr-");
        let allocation = allocate(&BTreeMap::new(), &keys, &PlainVxlan).unwrap();
        let plan = |states: &[(&str, TunnelState)]| {
            let states = states.iter().map(|(k, s)| (k.to_string(), *s)).collect();
            layout(&names, PolicyMode::Rules, &spec, &allocation, &states, &PlainVxlan).unwrap()
        };
        let target_dev = |l: &Layout| {
            let route = l
                .gateway
                .routes
                .as_ref()
                .unwrap()
                .iter()
                .find(|r| r.table == TABLE_DESTINATION && r.dst.to_string() == "10.1.0.0/24")
                .cloned()
                .unwrap();
            match route.target {
                Target::Via { dev, .. } => dev,
                other => panic!("{other:?}"),
            }
        };
        let up = TunnelState::Up;
        let down = TunnelState::Down;
        let both = plan(&[("tun-m", up), ("tun-s", up)]);
        assert_eq!(both.in_use["vco-d"], "tun-m");
        assert_eq!(target_dev(&both), names.tunnel_if(allocation["tun-m"].0));
        assert_eq!(both.tunnels["tun-s"].plan.alias, "vpnroute.tunnel=tun-s");
        assert_eq!(both.tunnels["tun-s"].plan.local_ip.to_string(), "47.0.0.2");
        let underlay = &both.gateway.links[&names.underlay_if()].link.addrs;
        assert!(underlay.contains(&"47.0.0.2/32".parse().unwrap()), "{underlay:?}");
        let slave = plan(&[("tun-m", down), ("tun-s", up)]);
        assert_eq!(slave.in_use["vco-d"], "tun-s");
        assert_eq!(slave.connection_states["vco-d"], up);
        assert_eq!(target_dev(&slave), names.tunnel_if(allocation["tun-s"].0));
        let none = plan(&[]);
        assert_eq!(none.in_use["vco-d"], "tun-m", "both down: the master");
        assert_eq!(none.connection_states["vco-d"], down);
    }
}
