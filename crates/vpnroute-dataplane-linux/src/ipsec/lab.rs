//! The IPsec lab shared by the tests (`tests/ipsec.rs`) and the benchmark binary
//! (`vpnroute-ipsec-bench`): a gateway with `ipsec` tunnels, customer sites whose own charon
//! is configured from the connection as a customer would (`swanctl.conf`), a pcap reader for
//! underlay captures. Root only; every charon is stopped by its pid by the guard.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use std::net::Ipv4Addr;

use serde_json::{json, Value};
use vpnroute_dataplane::{ConnectionSpec, DataPlane, GatewaySpec, TunnelRole, TunnelSpec};

use super::charon::Instance;
use super::config::TunnelConfig;
use crate::lab::*;
use crate::{LinuxConfig, LinuxDataPlane, PolicyMode, TunnelKind};

pub const TEST_BASE: &str = "/tmp/vpnroute-ipsec-tests";
pub const SITE_NET: &str = "10.1.0.0/24";
pub const SITE_HOST: &str = "10.1.0.1";
/// The lab gateway's DisasterRecoveryInternetIp: a dual-tunnel connection's slave end.
pub const DR_INTERNET_IP: &str = "47.0.0.2";
pub const PACKAGES: [&str; 6] = [
    "strongswan-charon",
    "strongswan-swanctl",
    "libcharon-extra-plugins",
    "libstrongswan-standard-plugins",
    "iputils-ping",
    "tcpdump",
];

pub fn have_all() -> bool {
    let driver = super::REQUIRED_FILES.iter().map(|(path, _)| *path);
    driver
        .chain(["/usr/sbin/swanctl", "/usr/bin/tcpdump"])
        .all(|p| std::path::Path::new(p).exists())
}

/// Root, strongSwan and tcpdump (installed with apt when missing); `false` = skip.
pub fn ipsec_ready(test: &str) -> bool {
    if !ready(test) {
        return false;
    }
    if !have_all() {
        crate::lab::apt_install(&PACKAGES, || !have_all());
    }
    assert!(
        have_all(),
        "strongSwan/tcpdump missing and apt-get could not install {PACKAGES:?}"
    );
    true
}

/// The connection as a client creates it: IKEv2, AES/SHA-256/group 14, DPD on.
pub fn ipsec_connection(id: &str, remote: &str, psk: &str) -> ConnectionSpec {
    let mut c = connection(id, remote);
    c.local_subnets = vec![net(VPC_CIDR)];
    c.remote_subnets = vec![net(SITE_NET)];
    c.ike_config = json!({
        "IkeVersion": "ikev2", "IkeMode": "main", "IkeEncAlg": "aes", "IkeAuthAlg": "sha256",
        "IkePfs": "group14", "IkeLifetime": 86400, "LocalId": INTERNET_IP, "RemoteId": remote, "Psk": psk,
    });
    c.ipsec_config = json!({
        "IpsecEncAlg": "aes", "IpsecAuthAlg": "sha256", "IpsecPfs": "group14", "IpsecLifetime": 86400,
    });
    c.enable_dpd = true;
    c.enable_nat_traversal = true;
    c
}

/// A dual-tunnel connection as a client creates it on a gateway with a disaster-recovery
/// vswitch: the master towards `master_remote` (the gateway's InternetIp), the slave towards
/// `slave_remote` (its DisasterRecoveryInternetIp), each with its own PSK and the parameters
/// of [`ipsec_connection`] except the slave's IKE encryption (`aes256`: its own parameters).
pub fn dual_connection(id: &str, master_remote: &str, slave_remote: &str, psks: [&str; 2]) -> ConnectionSpec {
    let mut c = ipsec_connection(id, master_remote, psks[0]);
    let tunnel = |role, remote: &str, local: &str, psk: &str| {
        let mut ike = c.ike_config.clone();
        ike["LocalId"] = json!(local);
        ike["RemoteId"] = json!(remote);
        ike["Psk"] = json!(psk);
        if role == TunnelRole::Slave {
            ike["IkeEncAlg"] = json!("aes256");
        }
        TunnelSpec {
            id: format!("tun-{id}-{}", if role == TunnelRole::Master { "m" } else { "s" }),
            role,
            local_ip: addr(local),
            remote_ip: addr(remote),
            admin_up: true,
            ike_config: ike,
            ipsec_config: c.ipsec_config.clone(),
            enable_dpd: true,
            enable_nat_traversal: true,
        }
    };
    let tunnels = vec![
        tunnel(TunnelRole::Master, master_remote, INTERNET_IP, psks[0]),
        tunnel(TunnelRole::Slave, slave_remote, DR_INTERNET_IP, psks[1]),
    ];
    c.tunnels = tunnels;
    c
}

/// What a customer site's charon needs to answer one tunnel: its parameters, the site's and
/// the gateway's addresses, the PSK the customer typed.
#[derive(Debug, Clone)]
pub struct SiteEnd {
    pub config: TunnelConfig,
    pub site_ip: Ipv4Addr,
    pub gateway_ip: Ipv4Addr,
    pub psk: String,
}

impl SiteEnd {
    /// The end of a single-tunnel connection (towards the InternetIp).
    pub fn of_connection(connection: &ConnectionSpec, psk: &str) -> SiteEnd {
        SiteEnd {
            config: super::config::check(connection, INTERNET_IP).expect("supported parameters"),
            site_ip: connection.remote_ip,
            gateway_ip: addr(INTERNET_IP),
            psk: psk.to_string(),
        }
    }

    /// The end of one tunnel of a dual-tunnel connection (towards that tunnel's address).
    pub fn of_tunnel(connection: &ConnectionSpec, role: TunnelRole, psk: &str) -> SiteEnd {
        let tunnel = connection.tunnels.iter().find(|t| t.role == role).expect("the tunnel");
        let local = tunnel.local_ip.to_string();
        SiteEnd {
            config: super::config::check_tunnel(connection, Some(role), &local).expect("supported parameters"),
            site_ip: tunnel.remote_ip,
            gateway_ip: tunnel.local_ip,
            psk: psk.to_string(),
        }
    }
}

pub fn ipsec_dp(prefix: &str, watch: bool) -> LinuxDataPlane {
    LinuxDataPlane::new(LinuxConfig {
        prefix: prefix.to_string(),
        tunnels: TunnelKind::Ipsec,
        policy: PolicyMode::Nftables,
        watch_interval: watch.then(|| Duration::from_millis(500)),
    })
    .expect("start the Linux data plane with ipsec tunnels")
}

/// A customer site: its namespace on the underlay, its charon, its network on loopback.
pub struct Site {
    pub charon: Instance,
}

pub struct IpsecLab {
    pub lab: Lab,
    pub sites: Vec<Site>,
    pub dir: PathBuf,
}

impl IpsecLab {
    pub fn new(watch: bool) -> IpsecLab {
        let prefix = unique_prefix();
        // The same base for every test (tests run in parallel threads of one process); the
        // driver keeps its instances under `<base>/<prefix>`.
        std::env::set_var("VPNROUTE_IPSEC_DIR", TEST_BASE);
        let dir = PathBuf::from(TEST_BASE).join(format!("{prefix}-test"));
        let dp = ipsec_dp(&prefix, watch);
        IpsecLab {
            lab: Lab {
                prefix,
                policy: PolicyMode::Nftables,
                dp: Some(dp),
            },
            sites: Vec::new(),
            dir,
        }
    }

    pub fn dp(&self) -> &LinuxDataPlane {
        self.lab.dp()
    }

    /// A site whose charon answers `connection` (with `psk`), holding `SITE_HOST`.
    pub fn attach_site(&mut self, name: &str, connection: &ConnectionSpec, psk: &str) -> String {
        self.attach_site_for(name, &[(connection.clone(), psk.to_string())], &[SITE_HOST])
    }

    /// A site with one charon answering several connections (one underlay address each,
    /// as separate customer gateways would have), `hosts` answered on its loopback.
    pub fn attach_site_for(&mut self, name: &str, connections: &[(ConnectionSpec, String)], hosts: &[&str]) -> String {
        let ends: Vec<SiteEnd> = connections
            .iter()
            .map(|(connection, psk)| SiteEnd::of_connection(connection, psk))
            .collect();
        self.attach_site_ends(name, &ends, hosts)
    }

    /// A site whose charon answers one tunnel of a dual-tunnel connection, holding
    /// `SITE_HOST` (each tunnel's customer gateway is a site of its own).
    pub fn attach_tunnel_site(
        &mut self,
        name: &str,
        connection: &ConnectionSpec,
        role: TunnelRole,
        psk: &str,
    ) -> String {
        self.attach_site_ends(name, &[SiteEnd::of_tunnel(connection, role, psk)], &[SITE_HOST])
    }

    /// A site with one charon answering `ends`, `hosts` answered on its loopback.
    pub fn attach_site_ends(&mut self, name: &str, ends: &[SiteEnd], hosts: &[&str]) -> String {
        let (ns, charon) = attach_site_to(
            &self.lab.details(),
            &self.lab.prefix,
            &self.dir.join("sites"),
            name,
            ends,
            hosts,
        );
        self.sites.push(Site { charon });
        ns
    }

    pub fn live(&self, connection: &str) -> Value {
        self.lab.connection_details(connection)["TunnelLive"].clone()
    }

    /// One tunnel of a dual-tunnel connection in the data plane's details.
    pub fn tunnel_details(&self, tunnel_id: &str) -> Value {
        self.lab.details()["Connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["TunnelId"] == tunnel_id)
            .unwrap_or_else(|| panic!("tunnel {tunnel_id} in details"))
            .clone()
    }

    pub fn tunnel_status(&self, tunnel_id: &str) -> String {
        self.tunnel_details(tunnel_id)["TunnelLive"]["Status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn wait_tunnel_status(&self, tunnel_id: &str, status: &str, limit: Duration) -> bool {
        wait_for(limit, || self.tunnel_status(tunnel_id) == status)
    }

    pub fn status(&self, connection: &str) -> String {
        self.live(connection)["Status"].as_str().unwrap_or_default().to_string()
    }

    pub fn wait_status(&self, connection: &str, status: &str, limit: Duration) -> bool {
        wait_for(limit, || self.status(connection) == status)
    }
}

impl Drop for IpsecLab {
    fn drop(&mut self) {
        if let Some(dp) = &self.lab.dp {
            let _ = dp.remove(GATEWAY);
        }
        for site in &self.sites {
            site.charon.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(PathBuf::from(TEST_BASE).join(&self.lab.prefix));
    }
}

/// Loads a site's `swanctl.conf` (in its charon's directory) with `swanctl`.
pub fn load_swanctl(charon: &Instance) {
    let conf = charon.dir.join("swanctl.conf");
    let uri = format!("unix://{}", charon.socket().display());
    sh(
        "swanctl",
        &[
            "--load-all",
            "--noprompt",
            "--file",
            conf.to_str().unwrap(),
            "--uri",
            &uri,
        ],
    );
}

/// What a customer writes for their side from each connection's IkeConfig/IpsecConfig
/// (the same mapping as the driver's: aes/sha256/group14 → aes128-sha256-modp2048), with
/// the connection's subnets mirrored as their traffic selectors.
pub fn customer_swanctl_conf(connections: &[(ConnectionSpec, String)]) -> String {
    let ends: Vec<SiteEnd> = connections
        .iter()
        .map(|(connection, psk)| SiteEnd::of_connection(connection, psk))
        .collect();
    customer_swanctl_conf_for(&ends)
}

/// [`customer_swanctl_conf`] for any tunnel ends (one tunnel of a dual-tunnel connection
/// towards its own gateway address).
pub fn customer_swanctl_conf_for(ends: &[SiteEnd]) -> String {
    let mut conns = String::new();
    let mut secrets = String::new();
    for (i, end) in ends.iter().enumerate() {
        let (config, psk) = (&end.config, &end.psk);
        let remote = end.site_ip;
        let gateway = end.gateway_ip;
        let list = |nets: &[ipnet::Ipv4Net]| nets.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        conns.push_str(&format!(
            "  alibaba{i} {{
    version = {version}
    aggressive = {aggressive}
    local_addrs = {remote}
    remote_addrs = {gateway}
    proposals = {ike}
    dpd_delay = 1s
    local {{
      auth = psk
      id = {remote_id}
    }}
    remote {{
      auth = psk
      id = {local_id}
    }}
    children {{
      vpc{i} {{
        local_ts = {site_ts}
        remote_ts = {vpc_ts}
        esp_proposals = {esp}
        dpd_action = clear
      }}
    }}
  }}
",
            version = config.version,
            aggressive = if config.aggressive { "yes" } else { "no" },
            ike = config.ike_proposal,
            esp = config.esp_proposal,
            remote_id = config.remote_id,
            local_id = config.local_id,
            site_ts = list(&config.remote_ts),
            vpc_ts = list(&config.local_ts),
        ));
        secrets.push_str(&format!(
            "  ike-alibaba{i} {{\n    id-1 = {}\n    id-2 = {}\n    secret = \"{psk}\"\n  }}\n",
            config.local_id, config.remote_id
        ));
    }
    format!("connections {{\n{conns}}}\nsecrets {{\n{secrets}}}\n")
}

pub fn gateway_spec(connections: Vec<ConnectionSpec>, routes: Vec<vpnroute_dataplane::RouteSpec>) -> GatewaySpec {
    spec(1, connections, routes)
}

/// One IPv4 packet of a capture: its protocol and, for UDP-encapsulated ESP (port 4500, a
/// non-zero first word), the SPI.
#[derive(Debug)]
pub struct Captured {
    pub protocol: u8,
    pub esp_spi: Option<u32>,
}

/// Reads a pcap file (Ethernet, IPv4 only; what tcpdump -w wrote).
pub fn read_pcap(path: &std::path::Path) -> Vec<Captured> {
    let bytes = std::fs::read(path).unwrap();
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &bytes[at + 16..(at + 16 + len).min(bytes.len())];
        at += 16 + len;
        if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let (protocol, header) = (ip[9], usize::from(ip[0] & 0x0f) * 4);
        let udp = &ip[header.min(ip.len())..];
        let esp_spi = (protocol == 17 && udp.len() >= 12 && udp[2..4] == [0x11, 0x94])
            .then(|| u32::from_be_bytes(udp[8..12].try_into().unwrap()))
            .filter(|spi| *spi != 0);
        packets.push(Captured { protocol, esp_spi });
    }
    packets
}

pub fn fast_ping(ns: &str, dest: &str) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-n", "-q", "-c", "1", "-W", "0.2", dest])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A customer site `{prefix}{name}` on the underlay bridge of the gateway whose data-plane
/// details are `details`: one underlay address per customer gateway of `ends`, a route to
/// each gateway address, `hosts` on its loopback, and its own charon (its directory under
/// `sites_dir`; the caller stops it) loaded with the `swanctl.conf` a customer writes for
/// `ends`.
pub fn attach_site_to(
    details: &Value,
    prefix: &str,
    sites_dir: &std::path::Path,
    name: &str,
    ends: &[SiteEnd],
    hosts: &[&str],
) -> (String, Instance) {
    let ns = site_on_underlay(details, prefix, name);
    let mut site_ips: Vec<Ipv4Addr> = ends.iter().map(|e| e.site_ip).collect();
    site_ips.dedup();
    for site_ip in site_ips {
        ip(&["-n", &ns, "addr", "add", &format!("{site_ip}/32"), "dev", "eth0"]);
    }
    ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    let mut gateway_ips: Vec<Ipv4Addr> = ends.iter().map(|e| e.gateway_ip).collect();
    gateway_ips.sort();
    gateway_ips.dedup();
    for gateway_ip in gateway_ips {
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            &format!("{gateway_ip}/32"),
            "dev",
            "eth0",
            "scope",
            "link",
        ]);
    }
    for host in hosts {
        ip(&["-n", &ns, "addr", "add", &format!("{host}/32"), "dev", "lo"]);
    }
    wait_carrier(&ns, "eth0");
    let charon = Instance::new(sites_dir, &ns);
    charon.ensure_running().expect("site charon starts");
    let conf = charon.dir.join("swanctl.conf");
    std::fs::write(&conf, customer_swanctl_conf_for(ends)).unwrap();
    load_swanctl(&charon);
    (ns, charon)
}
