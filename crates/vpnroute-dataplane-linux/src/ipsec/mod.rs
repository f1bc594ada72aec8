//! The `ipsec` tunnel driver: each connection an IKE/IPsec tunnel negotiated by strongSwan's
//! charon, controlled over VICI ([`vpnroute_vici`]).
//!
//! **Kernel modes.** At start the driver probes the kernel (in a namespace of its prefix):
//! with ESP and XFRM interfaces, `xfrm` mode (route-based `xfrm` interfaces with `if_id`)
//! would apply; without them (these machines) `libipsec` mode runs. Only `libipsec` mode is
//! implemented: on a kernel with ESP it is what runs too, and the log says so.
//!
//! **libipsec mode, per tunnel** — a single-tunnel connection has one, a dual-tunnel
//! connection two (master and slave, keyed by their tunnel ids, each with its own
//! parameters, customer gateway and gateway address; names with the data plane's prefix):
//! * a namespace `{prefix}c-<hash of the tunnel key>` holding one charon with the
//!   kernel-libipsec plugin (userspace ESP over its TUN `ipsec0`: one TUN per charon, so one
//!   charon per tunnel gives every tunnel an interface of its own — the two tunnels of a
//!   dual-tunnel connection have the same traffic selectors, which one charon could not tell
//!   apart);
//! * the connection's interface in the gateway namespace (`{prefix}t<slot>`, where the
//!   gateway's routes point) is a veth whose peer `{prefix}tun` sits in that namespace, over
//!   the tunnel's /31 with static neighbours (nothing waits on ARP);
//! * in the connection namespace, rules send what arrives from the gateway into charon's
//!   table (220: routes via `ipsec0` per CHILD SA, installed by charon) and drop it when no
//!   CHILD SA routes it (never back out in clear); what leaves `ipsec0` (decrypted) and
//!   charon's own IKE/ESP packets go back to the gateway; the local-table rule comes after
//!   them, so decrypted packets are forwarded even to the address charon needs inside the
//!   local traffic selector (kernel-libipsec refuses a CHILD SA without one);
//! * in the gateway namespace, table `ip vpnroute_ipsec` source-NATs charon's packets to the
//!   tunnel's gateway address on the underlay (the InternetIp; a slave's
//!   DisasterRecoveryInternetIp when it has one) and destination-NATs IKE/NAT-T from the
//!   customer gateway to that address to the tunnel's charon: the customer sees one peer per
//!   tunnel.
//!
//! **State.** A monitor thread per tunnel listens to `ike-updown`/`child-updown` and
//! reads `list-sas` (at least every second) into Alibaba's status
//! ([`charon::SaStatus`]); the tunnel is up only with every CHILD SA installed. A change
//! calls the data plane back, which re-programs the gateway's routes (failover) and reports
//! a tunnel event. When no IKE SA exists the monitor initiates again.
//!
//! **Restart.** Nothing is stopped when the data plane is dropped or killed: charons keep
//! their SAs and forward. A new instance finds each charon by the pid file in its directory
//! (checked against `/proc`: binary and network namespace), adopts it, and reloads its
//! configuration only when it changed (then the IKE SA is re-established: re-key in place).

pub mod charon;
pub mod config;
pub mod lab;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde_json::{json, Value};
use vpnroute_dataplane::{ConnectionSpec, GatewaySpec, TunnelState, Unsupported};

use self::charon::{Instance, Meta, SaState, SaStatus};
use self::config::{TunnelConfig, CHARON_TABLE};
use crate::kernel::{self, Link, Neighbour, Route, Rule, RuleAction, Target, TABLE_LOCAL, TABLE_MAIN};
use crate::layout::{self, LinkWant, NsWant, TunnelLayout};
use crate::names::{stable_hash, Names};
use crate::tunnel::{tunnel_addresses, ChangeListener, TunnelDriver, TunnelPlan, TunnelWant};

/// Where instance directories live unless `VPNROUTE_IPSEC_DIR` says otherwise (outside
/// `/run`, which each charon replaces by its own tmpfs).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vpnroute/ipsec";
/// Files the driver needs, with the Debian package that has each.
pub const REQUIRED_FILES: [(&str, &str); 3] = [
    (charon::CHARON, "strongswan-charon"),
    (
        "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so",
        "libcharon-extra-plugins",
    ),
    (
        "/usr/lib/ipsec/plugins/libstrongswan-openssl.so",
        "libstrongswan-standard-plugins",
    ),
];
/// The nftables table (gateway namespace) with the NAT of charon's packets.
pub const NAT_TABLE: &str = "vpnroute_ipsec";
/// Connection-namespace table of the routes back to the gateway.
const TABLE_TO_GATEWAY: u32 = 100;
/// How often a monitor reads `list-sas` without an event.
const POLL: Duration = Duration::from_millis(1000);
/// Connections realized at once (charon starts, VICI loads).
const PARALLEL_STARTS: usize = 8;
/// Shortest time between two initiations of a connection without an IKE SA.
const REINITIATE: Duration = Duration::from_secs(2);

/// What the kernel can do for IPsec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelMode {
    /// ESP and XFRM interfaces present.
    Xfrm,
    /// Neither: userspace ESP (kernel-libipsec).
    Libipsec,
}

/// What the start-up probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelProbe {
    /// `ip xfrm state add … proto esp` accepted.
    pub esp: bool,
    /// `ip link add … type xfrm` accepted.
    pub xfrm_interfaces: bool,
}

impl KernelProbe {
    pub fn mode(self) -> KernelMode {
        if self.esp && self.xfrm_interfaces {
            KernelMode::Xfrm
        } else {
            KernelMode::Libipsec
        }
    }

    /// The start-up log line: what was found, which mode runs and why.
    pub fn message(self) -> String {
        let found = |present: bool| if present { "present" } else { "missing" };
        let why = match self.mode() {
            KernelMode::Xfrm => "xfrm mode (route-based xfrm interfaces with if_id) would apply but is not implemented",
            KernelMode::Libipsec => "xfrm mode needs both",
        };
        format!(
            "ipsec tunnels: kernel ESP {}, XFRM interfaces {}; {why}: running kernel-libipsec mode \
             (userspace ESP, one charon per tunnel)",
            found(self.esp),
            found(self.xfrm_interfaces)
        )
    }
}

/// Probes ESP (`ip xfrm state add … proto esp`) and XFRM interfaces (`type xfrm`) in a
/// throw-away namespace `{prefix}xprobe` (neither, when the namespace cannot be made).
pub fn detect_kernel(names: &Names) -> KernelProbe {
    let ns = format!("{}xprobe", names.prefix());
    if kernel::ensure_netns(&ns).is_err() {
        return KernelProbe {
            esp: false,
            xfrm_interfaces: false,
        };
    }
    let xfrm_if = kernel::ip(&["-n", &ns, "link", "add", "xprobe0", "type", "xfrm", "if_id", "1"]).is_ok();
    let key16 = format!("0x{}", "00".repeat(16));
    let key32 = format!("0x{}", "00".repeat(32));
    let esp = kernel::ip(&[
        "-n",
        &ns,
        "xfrm",
        "state",
        "add",
        "src",
        "192.0.2.1",
        "dst",
        "192.0.2.2",
        "proto",
        "esp",
        "spi",
        "0x100",
        "mode",
        "tunnel",
        "enc",
        "cbc(aes)",
        &key16,
        "auth",
        "hmac(sha256)",
        &key32,
    ])
    .is_ok();
    let _ = kernel::delete_netns(&ns);
    KernelProbe {
        esp,
        xfrm_interfaces: xfrm_if,
    }
}

/// One connection's live state as the driver knows it.
#[derive(Debug, Clone)]
struct Live {
    state: SaState,
    /// Why the connection has no charon (a parameter refused, a start failure).
    error: Option<String>,
}

struct Monitor {
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Shared {
    live: Mutex<HashMap<(String, String), Live>>,
    monitors: Mutex<HashMap<(String, String), Monitor>>,
    listener: Mutex<Option<ChangeListener>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `ipsec` driver (see the module doc).
pub struct IpsecDriver {
    names: Names,
    state_dir: PathBuf,
    mode: KernelMode,
    shared: Arc<Shared>,
}

fn mac(kind: u8, key: u32) -> String {
    let [_, a, b, c] = key.to_be_bytes();
    format!("02:76:{kind:02x}:{a:02x}:{b:02x}:{c:02x}")
}

/// MAC kinds: the gateway end carries the key (read back to adopt the link).
const MAC_GATEWAY: u8 = 0x69;
const MAC_CHARON: u8 = 0x6a;

impl IpsecDriver {
    pub fn new(names: Names) -> Self {
        let base =
            std::env::var_os("VPNROUTE_IPSEC_DIR").map_or_else(|| PathBuf::from(DEFAULT_STATE_DIR), PathBuf::from);
        let state_dir = base.join(names.prefix());
        let probe = detect_kernel(&names);
        let mode = probe.mode();
        match mode {
            KernelMode::Xfrm => tracing::warn!("{}", probe.message()),
            KernelMode::Libipsec => tracing::info!("{}", probe.message()),
        }
        IpsecDriver {
            names,
            state_dir,
            mode,
            shared: Arc::default(),
        }
    }

    pub fn kernel_mode(&self) -> KernelMode {
        self.mode
    }

    /// The namespace of a connection's charon.
    pub fn connection_ns(&self, connection_id: &str) -> String {
        format!("{}c-{}", self.names.prefix(), Names::short(connection_id))
    }

    /// The veth end in the connection namespace.
    pub fn charon_side_if(&self) -> String {
        format!("{}tun", self.names.prefix())
    }

    fn instance(&self, connection_id: &str) -> Instance {
        Instance::new(&self.state_dir, &self.connection_ns(connection_id))
    }

    fn conn_ns_want(&self, plan: &TunnelPlan, config: &TunnelConfig) -> (NsWant, Vec<Route>) {
        let (gateway_end, charon_end) = tunnel_addresses(plan.slot);
        let tun = self.charon_side_if();
        let charon_net = Ipv4Net::new(charon_end, 31).expect("/31 is valid");
        // kernel-libipsec needs an address of ours inside each local selector.
        let mut lo_addrs: BTreeSet<Ipv4Net> = [Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).expect("valid")].into();
        for ts in &config.local_ts {
            if !ts.contains(&charon_end) {
                lo_addrs.insert(Ipv4Net::new(selector_address(*ts), 32).expect("valid"));
            }
        }
        let mut links = BTreeMap::new();
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
            tun.clone(),
            LinkWant {
                create: None,
                link: Link {
                    kind: Some("veth".into()),
                    up: true,
                    addrs: [charon_net].into(),
                    ..Link::default()
                },
                own_addresses: true,
                recreate_on_change: false,
                stage: 0,
            },
        );
        let rule = |pref, action, iif: Option<&str>, src: Option<Ipv4Addr>| {
            let mut rule = Rule::new(pref, action);
            rule.iif = iif.map(str::to_string);
            rule.src = src.map(|s| Ipv4Net::new(s, 32).expect("valid"));
            rule
        };
        let rules = vec![
            rule(80, RuleAction::Lookup(TABLE_TO_GATEWAY), Some("ipsec0"), None),
            rule(85, RuleAction::Lookup(TABLE_LOCAL), None, None),
            rule(90, RuleAction::Lookup(TABLE_TO_GATEWAY), None, Some(charon_end)),
            rule(200, RuleAction::Lookup(CHARON_TABLE), Some(&tun), None),
            rule(210, RuleAction::Unreachable, Some(&tun), None),
            rule(CHARON_TABLE, RuleAction::Lookup(CHARON_TABLE), None, None),
            rule(32766, RuleAction::Lookup(TABLE_MAIN), None, None),
            rule(32767, RuleAction::Lookup(kernel::TABLE_DEFAULT), None, None),
        ];
        let to_gateway = Target::Via {
            gateway: gateway_end,
            dev: tun.clone(),
        };
        let routes = vec![
            Route::new(TABLE_TO_GATEWAY, Ipv4Net::default(), to_gateway.clone()),
            Route::new(TABLE_MAIN, Ipv4Net::default(), to_gateway),
        ];
        let want = NsWant {
            ns: self.connection_ns(&plan.id),
            links,
            stale_link: None,
            routes: None,
            rules: Some(rules),
            neighbours: vec![Neighbour {
                dev: tun,
                dst: gateway_end,
                lladdr: mac(MAC_GATEWAY, plan.key),
                permanent: true,
            }],
            sysctls: Vec::new(),
        };
        (want, routes)
    }

    /// Puts the connection namespace in shape (read back, write the difference).
    fn converge_conn_ns(&self, plan: &TunnelPlan, config: &TunnelConfig) -> Result<(), String> {
        let (want, routes) = self.conn_ns_want(plan, config);
        let mut last_error = String::new();
        for round in 0..3 {
            let found = kernel::read_ns(&want.ns)?;
            let mut lines = layout::diff(&self.names, &want, &found);
            lines.extend(routes.iter().filter(|r| !found.routes.contains(r)).map(Route::add_line));
            if lines.is_empty() {
                return Ok(());
            }
            last_error.clear();
            if round == 0 {
                kernel::netns_exec(
                    &want.ns,
                    "sysctl",
                    &["-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.disable_ipv6=1"],
                )?;
            }
            // `-force` goes on after a failed line (lo's address appears with `link set lo
            // up`): the read-back decides.
            if let Err(e) = kernel::batch(&want.ns, &lines) {
                last_error = format!("{e} (lines: {})", lines.join("; "));
            }
        }
        Err(format!(
            "connection namespace {} not in shape after 3 rounds: {last_error}",
            want.ns
        ))
    }

    /// Loads the configuration into the connection's (started or adopted) charon when it is
    /// new or changed, and initiates.
    fn converge_charon(
        &self,
        gateway_id: &str,
        plan: &TunnelPlan,
        config: &TunnelConfig,
        instance: &Instance,
        started: bool,
    ) -> Result<(), String> {
        let hash = stable_hash(&format!("{config:?}|{}", plan.remote_ip));
        let previous = instance.meta();
        let mut client = instance.client()?;
        let loaded = client.get_conns().map_err(|e| e.to_string())?.contains(&plan.id);
        let changed = previous.as_ref().is_some_and(|m| m.config_hash != hash);
        if started || !loaded || changed || previous.is_none() {
            client
                .load_shared(&format!("psk-{}", plan.id), "IKE", &config.psk, &config.secret_owners())
                .map_err(|e| e.to_string())?;
            client
                .load_conn(&plan.id, config.conn_message(&plan.remote_ip.to_string()))
                .map_err(|e| e.to_string())?;
            if changed && loaded {
                // Re-key in place: the new parameters apply from a fresh IKE SA.
                tracing::info!(connection_id = %plan.id, "ipsec parameters changed; re-establishing");
                let _ = client.terminate_ike(&plan.id, 2000);
            }
            instance.write_meta(&Meta {
                gateway_id: gateway_id.to_string(),
                connection_id: plan.id.clone(),
                config_hash: hash,
            })?;
            initiate(&mut client, &plan.id, config);
        }
        Ok(())
    }

    fn ensure_monitor(&self, gateway_id: &str, connection_id: &str, children: Vec<String>) {
        let key = (gateway_id.to_string(), connection_id.to_string());
        let mut monitors = lock(&self.shared.monitors);
        if monitors.contains_key(&key) {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let context = MonitorContext {
            gateway_id: gateway_id.to_string(),
            connection_id: connection_id.to_string(),
            children,
            instance: self.instance(connection_id),
            shared: self.shared.clone(),
            stop: stop.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("ipsec-{connection_id}"))
            .spawn(move || context.run());
        if spawned.is_ok() {
            monitors.insert(key, Monitor { stop });
        }
    }

    fn stop_monitor(&self, gateway_id: &str, connection_id: &str) {
        let key = (gateway_id.to_string(), connection_id.to_string());
        if let Some(monitor) = lock(&self.shared.monitors).remove(&key) {
            // Not joined: it may be calling the data plane back, which may be waiting for us.
            monitor.stop.store(true, Ordering::Relaxed);
        }
        lock(&self.shared.live).remove(&key);
    }

    /// Removes the charon and namespace of a connection.
    fn remove_connection(&self, gateway_id: &str, connection_id: &str) {
        self.stop_monitor(gateway_id, connection_id);
        let instance = self.instance(connection_id);
        instance.stop();
        let _ = kernel::delete_netns(&instance.ns);
    }

    /// Connection namespaces of this prefix, and instance directories (a charon may outlive
    /// its namespace), with the (gateway, connection) they serve.
    fn instances(&self) -> Vec<(String, Option<Meta>)> {
        let prefix = format!("{}c-", self.names.prefix());
        let mut names: BTreeSet<String> = kernel::netns_with_prefix(&prefix).into_iter().collect();
        if let Ok(entries) = std::fs::read_dir(&self.state_dir) {
            names.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| name.starts_with(&prefix)),
            );
        }
        names
            .into_iter()
            .map(|ns| {
                let meta = Instance::new(&self.state_dir, &ns).meta();
                (ns, meta)
            })
            .collect()
    }

    fn converge_nat(&self, spec: &GatewaySpec, tunnels: &BTreeMap<String, TunnelLayout>) -> Result<(), String> {
        let ns = self.names.gateway_ns(&spec.gateway_id);
        let Some(any) = tunnels.values().next() else {
            // No tunnel left: no NAT towards charons that are gone.
            if kernel::netns_exec(&ns, "nft", &["list", "table", "ip", NAT_TABLE]).is_ok() {
                return nft_script(&ns, &format!("delete table ip {NAT_TABLE}\n"));
            }
            return Ok(());
        };
        let underlay = &any.plan.underlay_if;
        // A tunnel with an address of its own (a slave's DisasterRecoveryInternetIp) first:
        // the first matching NAT statement wins.
        let mut snat: Vec<String> = tunnels
            .values()
            .filter(|t| t.plan.local_ip != spec.internet_ip)
            .map(|t| {
                let (_, charon_end) = tunnel_addresses(t.plan.slot);
                format!(
                    "oifname \"{underlay}\" ip saddr {charon_end} snat to {}",
                    t.plan.local_ip
                )
            })
            .collect();
        snat.push(format!(
            "oifname \"{underlay}\" ip saddr 169.254.0.0/16 snat to {}",
            spec.internet_ip
        ));
        let mut dnat = Vec::new();
        let mut seen = BTreeSet::new();
        for tunnel in tunnels.values() {
            // One (customer gateway, gateway address) pair, one charon (the first tunnel's):
            // the master and slave of one customer gateway differ by the gateway's address.
            if seen.insert((tunnel.plan.remote_ip, tunnel.plan.local_ip)) {
                let (_, charon_end) = tunnel_addresses(tunnel.plan.slot);
                dnat.push(format!(
                    "iifname \"{underlay}\" ip saddr {} ip daddr {} udp dport {{ 500, 4500 }} dnat to {charon_end}",
                    tunnel.plan.remote_ip, tunnel.plan.local_ip
                ));
            }
        }
        dnat.sort();
        let listed = kernel::netns_exec(&ns, "nft", &["list", "table", "ip", NAT_TABLE]).unwrap_or_default();
        let lines = |pattern: &str| -> Vec<String> {
            listed
                .lines()
                .map(str::trim)
                .filter(|l| l.contains(pattern))
                .map(str::to_string)
                .collect()
        };
        let mut found_dnat = lines(" dnat to ");
        found_dnat.sort();
        if lines(" snat to ") == snat
            && found_dnat == dnat
            && listed.contains("hook postrouting")
            && listed.contains("hook prerouting")
        {
            return Ok(());
        }
        let mut script = format!("table ip {NAT_TABLE} {{}}\ndelete table ip {NAT_TABLE}\ntable ip {NAT_TABLE} {{\n");
        script.push_str(" chain post {\n  type nat hook postrouting priority srcnat; policy accept;\n");
        for line in snat {
            script.push_str(&format!("  {line}\n"));
        }
        script.push_str(" }\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n");
        for line in dnat {
            script.push_str(&format!("  {line}\n"));
        }
        script.push_str(" }\n}\n");
        nft_script(&ns, &script)
    }
}

fn nft_script(ns: &str, script: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft in {ns}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The address kernel-libipsec uses inside a local selector: its first host (the network
/// address of a /31 or /32).
pub fn selector_address(ts: Ipv4Net) -> Ipv4Addr {
    if ts.prefix_len() >= 31 {
        ts.network()
    } else {
        Ipv4Addr::from(u32::from(ts.network()) + 1)
    }
}

/// Asks charon to bring every CHILD SA up, without waiting.
fn initiate(client: &mut vpnroute_vici::Client, connection_id: &str, config: &TunnelConfig) {
    for (child, _, _) in config.children() {
        if let Err(e) = client.initiate(connection_id, &child, -1) {
            tracing::debug!(connection_id, %e, "initiate");
        }
    }
}

fn tunnel_state(status: SaStatus) -> TunnelState {
    if status == SaStatus::IpsecSaEstablished {
        TunnelState::Up
    } else {
        TunnelState::Down
    }
}

struct MonitorContext {
    gateway_id: String,
    connection_id: String,
    children: Vec<String>,
    instance: Instance,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl MonitorContext {
    fn run(self) {
        let mut events: Option<vpnroute_vici::Client> = None;
        let mut last_poll = Instant::now() - POLL;
        let mut last_initiate = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if events.is_none() {
                events = self.instance.client().ok().and_then(|mut client| {
                    client.set_timeout(Some(Duration::from_millis(200))).ok()?;
                    client.register("ike-updown").ok()?;
                    client.register("child-updown").ok()?;
                    Some(client)
                });
                if events.is_none() {
                    self.record(None);
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
            let got_event = match events.as_mut().map(vpnroute_vici::Client::next_event) {
                Some(Ok(event)) => event.is_some(),
                Some(Err(_)) | None => {
                    events = None;
                    false
                }
            };
            if !got_event && last_poll.elapsed() < POLL {
                continue;
            }
            last_poll = Instant::now();
            let sas = self
                .instance
                .client()
                .and_then(|mut c| c.list_sas(Some(&self.connection_id)).map_err(|e| e.to_string()));
            match sas {
                Ok(sas) => {
                    let state = charon::sa_state(&sas, &self.connection_id, &self.children);
                    let no_ike = state.details["Ike"].is_null();
                    self.record(Some(state));
                    if no_ike && last_initiate.elapsed() >= REINITIATE {
                        last_initiate = Instant::now();
                        if let Ok(mut client) = self.instance.client() {
                            for child in &self.children {
                                let _ = client.initiate(&self.connection_id, child, -1);
                            }
                        }
                    }
                }
                Err(_) => {
                    events = None;
                    self.record(None);
                }
            }
        }
    }

    /// Stores the state; on a change of the tunnel's up/down, calls the data plane back.
    fn record(&self, state: Option<SaState>) {
        if self.stop.load(Ordering::Relaxed) {
            return;
        }
        let key = (self.gateway_id.clone(), self.connection_id.clone());
        let state = state.unwrap_or(SaState {
            status: SaStatus::IkeSaNotEstablished,
            details: json!({"Ike": null, "Children": [], "Error": "charon not answering"}),
        });
        let changed = {
            let mut live = lock(&self.shared.live);
            let before = live.get(&key).map(|l| tunnel_state(l.state.status));
            let after = tunnel_state(state.status);
            let status_before = live.get(&key).map(|l| l.state.status);
            if status_before != Some(state.status) {
                tracing::info!(
                    gateway_id = %self.gateway_id,
                    connection_id = %self.connection_id,
                    status = state.status.as_str(),
                    "ipsec tunnel status"
                );
            }
            live.insert(key, Live { state, error: None });
            before != Some(after)
        };
        if changed {
            let listener = lock(&self.shared.listener).clone();
            if let Some(listener) = listener {
                listener(&self.gateway_id, &self.connection_id);
            }
        }
    }
}

impl TunnelDriver for IpsecDriver {
    fn kind(&self) -> &'static str {
        "ipsec"
    }

    fn preferred_key(&self, connection_id: &str) -> u32 {
        ((stable_hash(connection_id) % 0x00ff_ffff) + 1) as u32
    }

    fn key_of(&self, link: &Link) -> Option<u32> {
        let mac = link.mac.as_deref()?;
        let bytes: Vec<u8> = mac.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
        match bytes.as_slice() {
            [0x02, 0x76, MAC_GATEWAY, a, b, c] if link.kind.as_deref() == Some("veth") => {
                Some(u32::from_be_bytes([0, *a, *b, *c]))
            }
            _ => None,
        }
    }

    fn want(&self, plan: &TunnelPlan) -> TunnelWant {
        let (gateway_end, charon_end) = tunnel_addresses(plan.slot);
        let (own_mac, charon_mac) = (mac(MAC_GATEWAY, plan.key), mac(MAC_CHARON, plan.key));
        let conn_ns = self.connection_ns(&plan.id);
        let link = Link {
            kind: Some("veth".into()),
            up: true,
            alias: Some(plan.alias.clone()),
            mac: Some(own_mac.clone()),
            addrs: [Ipv4Net::new(gateway_end, 31).expect("/31 is valid")].into(),
            ..Link::default()
        };
        TunnelWant {
            create: format!(
                "link add {} address {own_mac} type veth peer name {} address {charon_mac} netns {conn_ns}",
                plan.ifname,
                self.charon_side_if()
            ),
            link,
            neighbours: vec![Neighbour {
                dev: plan.ifname.clone(),
                dst: charon_end,
                lladdr: charon_mac.clone(),
                permanent: true,
            }],
            target: Target::Via {
                gateway: charon_end,
                dev: plan.ifname.clone(),
            },
            next_hop: Some(charon_end),
            details: json!({
                "Driver": "ipsec",
                "Mode": "libipsec",
                "Tunnel": plan.id,
                "Namespace": conn_ns,
                "Remote": plan.remote_ip,
                "Local": plan.local_ip,
                "TunnelAddress": format!("{gateway_end}/31"),
                "CharonAddress": format!("{charon_end}/31"),
                "Vici": self.instance(&plan.id).socket(),
            }),
        }
    }

    fn prepare(&self, _spec: &GatewaySpec, tunnels: &BTreeMap<String, TunnelLayout>) -> Result<(), String> {
        for id in tunnels.keys() {
            kernel::ensure_netns(&self.connection_ns(id))?;
        }
        Ok(())
    }

    fn realize(&self, spec: &GatewaySpec, tunnels: &BTreeMap<String, TunnelLayout>) -> Result<(), String> {
        let mut errors = Vec::new();
        for (ns, meta) in self.instances() {
            let Some(meta) = meta else { continue };
            if meta.gateway_id == spec.gateway_id && !tunnels.contains_key(&meta.connection_id) {
                tracing::info!(tunnel = %meta.connection_id, %ns, "removing the tunnel of a deleted connection or tunnel");
                self.remove_connection(&meta.gateway_id, &meta.connection_id);
            }
        }
        if let Err(e) = self.converge_nat(spec, tunnels) {
            errors.push(e);
        }
        // Starting a charon waits for its socket (~0.1-0.3 s): several at a time.
        let work: Vec<(&ConnectionSpec, &TunnelPlan)> = tunnels
            .values()
            .filter_map(|t| {
                let connection = spec.connections.iter().find(|c| c.id == t.plan.connection_id)?;
                Some((connection, &t.plan))
            })
            .collect();
        for batch in work.chunks(PARALLEL_STARTS) {
            let results: Vec<(String, Result<(), String>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(connection, plan)| {
                        let id = plan.id.clone();
                        (id, scope.spawn(move || self.realize_one(spec, connection, plan)))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(id, h)| (id, h.join().unwrap_or_else(|_| Err("panicked".into()))))
                    .collect()
            });
            for (id, result) in results {
                if let Err(e) = result {
                    tracing::warn!(tunnel = %id, error = %e, "ipsec tunnel");
                    errors.push(format!("{id}: {e}"));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn drifted(&self, spec: &GatewaySpec, tunnels: &BTreeMap<String, TunnelLayout>) -> bool {
        tunnels.iter().any(|(id, tunnel)| {
            let plan = &tunnel.plan;
            let Some(connection) = spec.connections.iter().find(|c| c.id == plan.connection_id) else {
                return false;
            };
            let Ok(config) = config::check_tunnel(connection, plan.role, &plan.local_ip.to_string()) else {
                return false;
            };
            if self.instance(id).running_pid().is_none() {
                return true;
            }
            let (want, routes) = self.conn_ns_want(&tunnel.plan, &config);
            kernel::read_ns(&want.ns).map_or(true, |found| {
                !layout::diff(&self.names, &want, &found).is_empty() || routes.iter().any(|r| !found.routes.contains(r))
            })
        })
    }

    fn state(&self, gateway_id: &str, connection_id: &str) -> Option<TunnelState> {
        let live = lock(&self.shared.live);
        let state = live
            .get(&(gateway_id.to_string(), connection_id.to_string()))
            .map_or(TunnelState::Down, |l| tunnel_state(l.state.status));
        Some(state)
    }

    fn live_details(&self, gateway_id: &str, connection_id: &str) -> Value {
        let live = lock(&self.shared.live);
        match live.get(&(gateway_id.to_string(), connection_id.to_string())) {
            Some(l) => json!({
                "Status": l.state.status.as_str(),
                "Sa": l.state.details,
                "Error": l.error,
            }),
            None => json!({"Status": SaStatus::IkeSaNotEstablished.as_str(), "Sa": null, "Error": null}),
        }
    }

    fn remove_gateway(&self, gateway_id: &str) {
        for (_, meta) in self.instances() {
            if let Some(meta) = meta.filter(|m| m.gateway_id == gateway_id) {
                self.remove_connection(&meta.gateway_id, &meta.connection_id);
            }
        }
    }

    fn listen(&self, listener: ChangeListener) {
        *lock(&self.shared.listener) = Some(listener);
    }

    fn unsupported(&self, ike_config: &Value, ipsec_config: &Value) -> Option<Unsupported> {
        config::unsupported(ike_config, ipsec_config)
    }
}

impl IpsecDriver {
    fn realize_one(&self, spec: &GatewaySpec, connection: &ConnectionSpec, plan: &TunnelPlan) -> Result<(), String> {
        let key = (spec.gateway_id.clone(), plan.id.clone());
        let config = match config::check_tunnel(connection, plan.role, &plan.local_ip.to_string()) {
            Ok(config) => config,
            Err(unsupported) => {
                self.record_error(&key, &unsupported);
                return Err(unsupported.to_string());
            }
        };
        // charon first: its `ipsec0` must exist for the rules that name it to read back.
        let instance = self.instance(&plan.id);
        let started = instance.ensure_running()?;
        if instance.meta().is_none() {
            // Named at once: a gateway removed after a failed load still finds its charon.
            instance.write_meta(&Meta {
                gateway_id: spec.gateway_id.clone(),
                connection_id: plan.id.clone(),
                config_hash: 0,
            })?;
        }
        self.converge_conn_ns(plan, &config)?;
        self.converge_charon(&spec.gateway_id, plan, &config, &instance, started)?;
        let children = config.children().into_iter().map(|c| c.0).collect();
        self.ensure_monitor(&spec.gateway_id, &plan.id, children);
        Ok(())
    }

    fn record_error(&self, key: &(String, String), unsupported: &Unsupported) {
        self.stop_monitor(&key.0, &key.1);
        let state = SaState {
            status: SaStatus::IkeSaNotEstablished,
            details: json!({"Ike": null, "Children": []}),
        };
        lock(&self.shared.live).insert(
            key.clone(),
            Live {
                state,
                error: Some(unsupported.to_string()),
            },
        );
    }

    /// The state directory of this driver's instances.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

impl Drop for IpsecDriver {
    /// Stops the monitors (threads of this process), never the charons: tunnels outlive the
    /// data plane.
    fn drop(&mut self) {
        for monitor in lock(&self.shared.monitors).values() {
            monitor.stop.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_back_from_the_gateway_end_mac() {
        let driver = IpsecDriver {
            names: Names::new("vr-"),
            state_dir: PathBuf::from("/nonexistent"),
            mode: KernelMode::Libipsec,
            shared: Arc::default(),
        };
        let key = driver.preferred_key("vco-1");
        let link = Link {
            kind: Some("veth".into()),
            mac: Some(mac(MAC_GATEWAY, key)),
            ..Link::default()
        };
        assert_eq!(driver.key_of(&link), Some(key));
        let vxlan = Link {
            kind: Some("vxlan".into()),
            ..link.clone()
        };
        assert_eq!(driver.key_of(&vxlan), None, "a plain tunnel is not adopted as ipsec");
        assert!(driver.connection_ns("vco-1").len() <= 15);
        assert_eq!(selector_address("10.0.0.0/24".parse().unwrap()).to_string(), "10.0.0.1");
        assert_eq!(selector_address("10.0.0.7/32".parse().unwrap()).to_string(), "10.0.0.7");
    }

    #[test]
    fn the_start_up_log_says_what_was_found_and_what_runs() {
        let probe = |esp, xfrm_interfaces| KernelProbe { esp, xfrm_interfaces };
        let here = probe(false, false);
        assert_eq!(here.mode(), KernelMode::Libipsec);
        assert!(
            here.message().contains("ESP missing, XFRM interfaces missing"),
            "{}",
            here.message()
        );
        assert!(probe(true, false)
            .message()
            .contains("ESP present, XFRM interfaces missing"));
        let full = probe(true, true);
        assert_eq!(full.mode(), KernelMode::Xfrm);
        assert!(full.message().contains("not implemented: running kernel-libipsec mode"));
    }
}
