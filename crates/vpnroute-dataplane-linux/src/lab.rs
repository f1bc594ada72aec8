//! A lab for tests and benchmarks of the Linux data plane: a gateway applied by a real
//! [`LinuxDataPlane`], a VPC host and customer sites in namespaces carrying the lab's own
//! unique prefix, all deleted by the [`Lab`] guard; spec builders; bounded pings and
//! counters. Root only: [`ready`] says SKIPPED and returns `false` without root.
//!
//! The attach helpers are also the reference for attaching real hosts and sites (README).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::{kernel, LinuxConfig, LinuxDataPlane, PolicyMode, TunnelKind};
use serde_json::Value;
use vpnroute_dataplane::{ConnectionSpec, DataPlane, GatewaySpec, HealthCheckSpec, RouteClass, RouteSpec};

pub const GATEWAY: &str = "vpn-lab";
pub const INTERNET_IP: &str = "47.0.0.1";
pub const VPC_CIDR: &str = "10.0.0.0/24";
pub const VPC_HOST: &str = "10.0.0.5";

/// Runs a command, panicking with its stderr on failure.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn ip(args: &[&str]) -> String {
    sh("ip", args)
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-V").output().is_ok()
}

/// `apt-get install` of `packages` if `missing()` still holds once it is this call's turn:
/// one install at a time in a process (two tests installing at once would race for dpkg's
/// lock, and the loser would fail).
pub fn apt_install(packages: &[&str], missing: impl Fn() -> bool) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if !missing() {
        return;
    }
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
}

/// Installs (with apt) the packages of tools that are missing: `(tool, package)` pairs.
pub fn install_missing(tools: &[(&str, &str)]) {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| !have(tool))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return;
    }
    apt_install(&missing, || tools.iter().any(|(tool, _)| !have(tool)));
    for (tool, package) in tools {
        assert!(have(tool), "{tool} is missing and apt-get could not install {package}");
    }
}

/// Root and the tools the lab needs (installed with apt when missing); `false` = skip.
/// Without root the test is skipped loudly — or fails when the environment variable `CI` is
/// set (CI runs as root: a skip there would hide the data plane's tests).
pub fn ready(test: &str) -> bool {
    let missing = crate::missing_capabilities();
    if !missing.is_empty() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{test} needs root ({}): CI is set, so this fails instead of skipping",
                missing.join(", ")
            );
        }
        eprintln!("SKIPPED {test}: needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)");
        return false;
    }
    install_missing(&[("ping", "iputils-ping"), ("nft", "nftables")]);
    true
}

/// A prefix no other test (in this or another process) uses: `t` + 5 hex digits.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{:05x}", ((std::process::id() & 0xffff) << 4 | (n & 0xf)) & 0xfffff)
}

pub fn net(text: &str) -> ipnet::Ipv4Net {
    text.parse().unwrap()
}

pub fn addr(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

pub fn connection(id: &str, remote: &str) -> ConnectionSpec {
    ConnectionSpec {
        id: id.into(),
        remote_ip: addr(remote),
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

pub fn health_check(sip: &str, dip: &str, interval_s: u32, retry: u32) -> Option<HealthCheckSpec> {
    Some(HealthCheckSpec {
        sip: addr(sip),
        dip: addr(dip),
        interval_s,
        retry,
    })
}

pub fn dbr(id: u64, dest: &str, hop: &str, weight: u8) -> RouteSpec {
    RouteSpec {
        id,
        class: RouteClass::Destination,
        source: None,
        dest: net(dest),
        next_hop: hop.into(),
        weight,
        priority: 0,
        published: false,
    }
}

pub fn pbr(id: u64, source: &str, dest: &str, hop: &str, weight: u8, priority: u8) -> RouteSpec {
    RouteSpec {
        id,
        class: RouteClass::Policy,
        source: Some(net(source)),
        dest: net(dest),
        next_hop: hop.into(),
        weight,
        priority,
        published: false,
    }
}

pub fn spec(version: i64, connections: Vec<ConnectionSpec>, routes: Vec<RouteSpec>) -> GatewaySpec {
    GatewaySpec {
        gateway_id: GATEWAY.into(),
        version,
        internet_ip: addr(INTERNET_IP),
        vpc_cidr: net(VPC_CIDR),
        connections,
        routes,
    }
}

/// Everything one test made; dropping it stops the data plane, then deletes every namespace
/// with the test's prefix.
pub struct Lab {
    pub prefix: String,
    pub policy: PolicyMode,
    pub dp: Option<LinuxDataPlane>,
}

/// Both ways of putting policy routes in force (tests run against each).
pub const POLICY_MODES: [PolicyMode; 2] = [PolicyMode::Nftables, PolicyMode::Rules];

impl Lab {
    /// A lab whose data plane has a watcher every 500 ms (`watch`) or none.
    pub fn new(policy: PolicyMode, watch: bool) -> Lab {
        Lab::with_watch(policy, watch.then(|| Duration::from_millis(500)))
    }

    pub fn with_watch(policy: PolicyMode, watch_interval: Option<Duration>) -> Lab {
        let prefix = unique_prefix();
        let dp = LinuxDataPlane::new(LinuxConfig {
            prefix: prefix.clone(),
            tunnels: TunnelKind::Plain,
            policy,
            watch_interval,
        })
        .expect("start the Linux data plane");
        Lab {
            prefix,
            policy,
            dp: Some(dp),
        }
    }

    pub fn dp(&self) -> &LinuxDataPlane {
        self.dp.as_ref().expect("data plane running")
    }

    /// Replaces the data plane by a new instance (a restart), leaving the kernel as it is.
    pub fn restart(&mut self, policy: PolicyMode) {
        drop(self.dp.take());
        self.policy = policy;
        self.dp = Some(
            LinuxDataPlane::new(LinuxConfig {
                prefix: self.prefix.clone(),
                tunnels: TunnelKind::Plain,
                policy,
                watch_interval: None,
            })
            .expect("restart the Linux data plane"),
        );
    }

    pub fn gw_ns(&self) -> String {
        self.dp().names().gateway_ns(GATEWAY)
    }

    pub fn details(&self) -> Value {
        self.dp().observe(GATEWAY).unwrap().expect("gateway observed").details
    }

    pub fn connection_details(&self, id: &str) -> Value {
        self.details()["Connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["VpnConnectionId"] == id)
            .unwrap_or_else(|| panic!("connection {id} in details"))
            .clone()
    }

    /// A VPC host namespace on the VPC bridge, default route via the gateway.
    pub fn attach_host(&self, name: &str, address: &str) -> String {
        attach_host_to(&self.details(), &self.prefix, name, address)
    }

    /// A customer site: underlay address `remote` on the underlay bridge, the other end of
    /// connection `connection`'s tunnel (`vx0`), `networks` answered on its loopback, and the
    /// VPC routed back through the tunnel.
    pub fn attach_site(&self, name: &str, connection: &str, remote: &str, networks: &[&str]) -> String {
        attach_plain_site_to(&self.details(), &self.prefix, name, connection, remote, networks)
    }

    /// Sets a site's underlay port down/up (cuts its path to the gateway).
    pub fn set_site_underlay(&self, name: &str, up: bool) {
        let underlay_ns = self.dp().names().underlay_ns();
        let port = format!("{}{name}", self.prefix);
        ip(&["-n", &underlay_ns, "link", "set", &port, if up { "up" } else { "down" }]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        drop(self.dp.take());
        for ns in kernel::netns_with_prefix(&self.prefix) {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// Waits (at most 3 s) until a new veth end reports its carrier: the kernel's link watch
/// turns carrier on up to a second late, and drops what is sent before.
pub fn wait_carrier(ns: &str, dev: &str) {
    let up = wait_for(Duration::from_secs(3), || {
        let out = ip(&["-j", "-n", ns, "link", "show", "dev", dev]);
        serde_json::from_str::<Value>(&out).is_ok_and(|v| v[0]["operstate"] == "UP")
    });
    assert!(up, "{dev} in {ns} has no carrier");
}

/// `count` pings, 0.2 s apart, each waiting at most 1 s; `true` when every one came back
/// (`ping` itself exits 0 when any reply came back).
pub fn ping(ns: &str, dest: &str, count: u32) -> bool {
    let (sent, received) = ping_counts(ns, dest, count, "0.2");
    sent == count && received == count
}

/// `count` pings `interval` seconds apart, each waiting at most 1 s (the run is bounded by
/// `count × interval + 1` s): (transmitted, received) as `ping` reports them, (0, 0) when it
/// reported nothing.
pub fn ping_counts(ns: &str, dest: &str, count: u32, interval: &str) -> (u32, u32) {
    let out = ping_command(ns, dest, count, interval).output();
    out.map_or((0, 0), |o| ping_summary(&String::from_utf8_lossy(&o.stdout)))
}

/// The bounded `ping` of [`ping_counts`], to run in the background (`spawn`, then
/// [`ping_summary`] of its stdout).
pub fn ping_command(ns: &str, dest: &str, count: u32, interval: &str) -> Command {
    let mut command = Command::new("ip");
    command.args([
        "netns",
        "exec",
        ns,
        "ping",
        "-n",
        "-q",
        "-c",
        &count.to_string(),
        "-i",
        interval,
        "-W",
        "1",
        dest,
    ]);
    command
}

/// (transmitted, received) from `ping`'s summary line (`5 packets transmitted, 4 received, …`).
pub fn ping_summary(output: &str) -> (u32, u32) {
    let Some(line) = output.lines().find(|l| l.contains("packets transmitted")) else {
        return (0, 0);
    };
    let number_before = |word: &str| -> u32 {
        line.split(',')
            .find(|part| part.contains(word))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (number_before("transmitted"), number_before("received"))
}

/// Packets received on a link.
pub fn rx_packets(ns: &str, dev: &str) -> u64 {
    let out = ip(&["-j", "-s", "-n", ns, "link", "show", "dev", dev]);
    let value: Value = serde_json::from_str(&out).unwrap();
    value[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
}

/// Pings `dest` from `host` and returns how many packets each site's tunnel received.
pub fn ping_and_count(host: &str, dest: &str, sites: &[&str]) -> (bool, Vec<u64>) {
    let before: Vec<u64> = sites.iter().map(|s| rx_packets(s, "vx0")).collect();
    let ok = ping(host, dest, 3);
    let after: Vec<u64> = sites.iter().map(|s| rx_packets(s, "vx0")).collect();
    (ok, after.iter().zip(&before).map(|(a, b)| a - b).collect())
}

/// Polls `condition` every 50 ms for at most `limit`.
pub fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The connection `explain` names (kernel side), asserting that kernel and engine agree.
pub fn explained(lab: &Lab, source: &str, dest: &str) -> Option<String> {
    let why = lab.dp().explain(GATEWAY, addr(source), addr(dest)).unwrap();
    assert_eq!(why["Agree"], true, "kernel and engine disagree: {why:#}");
    why["Kernel"]["VpnConnectionId"].as_str().map(str::to_string)
}

/// Command line of the data-plane benchmark binaries: `[WHAT] [--name N]…` (WHAT defaults to
/// `all`).
pub struct BenchArgs {
    pub what: String,
    args: Vec<String>,
}

impl BenchArgs {
    pub fn from_env() -> BenchArgs {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let what = args
            .first()
            .filter(|a| !a.starts_with("--"))
            .cloned()
            .unwrap_or_else(|| "all".into());
        BenchArgs { what, args }
    }

    /// The numeric value after `name`, or `default`.
    pub fn flag(&self, name: &str, default: usize) -> usize {
        self.args
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

/// A VPC host namespace `{prefix}{name}` on the VPC bridge of the gateway whose data-plane
/// details (`observe().details`, the introspection's `dataplane`) are `details`, with
/// `address`/24 and its default route via the gateway.
pub fn attach_host_to(details: &Value, prefix: &str, name: &str, address: &str) -> String {
    let vpc_ns = details["VpcAttach"]["Namespace"].as_str().unwrap().to_string();
    let bridge = details["VpcAttach"]["Bridge"].as_str().unwrap().to_string();
    let gateway = details["VpcGateway"].as_str().unwrap().to_string();
    let ns = format!("{prefix}{name}");
    let port = format!("{prefix}{name}");
    ip(&["netns", "add", &ns]);
    ip(&[
        "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &vpc_ns,
    ]);
    ip(&["-n", &vpc_ns, "link", "set", &port, "master", &bridge, "up"]);
    ip(&["-n", &ns, "addr", "add", &format!("{address}/24"), "dev", "eth0"]);
    // Room for the tunnels' VXLAN header: no fragmentation, no PMTU discovery.
    ip(&["-n", &ns, "link", "set", "eth0", "mtu", "1450", "up"]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&["-n", &ns, "route", "add", "default", "via", &gateway]);
    wait_carrier(&ns, "eth0");
    wait_carrier(&vpc_ns, &port);
    ns
}

/// A customer site `{prefix}{name}` of a plain-tunnel gateway whose data-plane details
/// (`observe().details`, the introspection's `dataplane`) are `details`: underlay address
/// `remote` on the underlay bridge, the other end of connection `connection`'s tunnel (`vx0`),
/// `networks` answered on its loopback, and the VPC (10.0.0.0/24) routed back through the
/// tunnel.
/// A site's namespace `{prefix}{name}` with its `eth0` joined (by a veth named like the
/// namespace) to the underlay bridge of a gateway whose data-plane details are `details`.
pub fn site_on_underlay(details: &Value, prefix: &str, name: &str) -> String {
    let underlay_ns = details["Underlay"]["Namespace"].as_str().unwrap();
    let bridge = details["Underlay"]["Bridge"].as_str().unwrap();
    let ns = format!("{prefix}{name}");
    ip(&["netns", "add", &ns]);
    ip(&[
        "-n",
        &ns,
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        &ns,
        "netns",
        underlay_ns,
    ]);
    ip(&["-n", underlay_ns, "link", "set", &ns, "master", bridge, "up"]);
    ns
}

pub fn attach_plain_site_to(
    details: &Value,
    prefix: &str,
    name: &str,
    connection: &str,
    remote: &str,
    networks: &[&str],
) -> String {
    let tunnel = details["Connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["VpnConnectionId"] == connection)
        .unwrap_or_else(|| panic!("connection {connection} in {details:#}"))["TunnelConfig"]
        .clone();
    let internet_ip = details["Underlay"]["InternetIp"].as_str().unwrap().to_string();
    let ns = site_on_underlay(details, prefix, name);
    ip(&["-n", &ns, "addr", "add", &format!("{remote}/32"), "dev", "eth0"]);
    ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        &ns,
        "route",
        "add",
        &format!("{internet_ip}/32"),
        "dev",
        "eth0",
        "scope",
        "link",
    ]);
    let vni = tunnel["Vni"].to_string();
    let port_number = tunnel["Port"].to_string();
    ip(&[
        "-n",
        &ns,
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        &vni,
        "remote",
        &internet_ip,
        "local",
        remote,
        "dstport",
        &port_number,
        "dev",
        "eth0",
        "nolearning",
    ]);
    ip(&[
        "-n",
        &ns,
        "link",
        "set",
        "vx0",
        "address",
        tunnel["PeerMac"].as_str().unwrap(),
    ]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        tunnel["PeerTunnelAddress"].as_str().unwrap(),
        "dev",
        "vx0",
    ]);
    ip(&["-n", &ns, "link", "set", "vx0", "up"]);
    let gateway_end = tunnel["TunnelAddress"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    ip(&[
        "-n",
        &ns,
        "neigh",
        "replace",
        &gateway_end,
        "lladdr",
        tunnel["TunnelMac"].as_str().unwrap(),
        "dev",
        "vx0",
        "nud",
        "permanent",
    ]);
    ip(&["-n", &ns, "route", "add", VPC_CIDR, "via", &gateway_end, "dev", "vx0"]);
    for network in networks {
        ip(&["-n", &ns, "addr", "add", network, "dev", "lo"]);
    }
    wait_carrier(&ns, "eth0");
    // The bridge's end of the veth is named like the site's namespace.
    wait_carrier(details["Underlay"]["Namespace"].as_str().unwrap(), &ns);
    ns
}
