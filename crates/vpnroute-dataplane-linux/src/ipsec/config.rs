//! A connection's Alibaba parameters (IkeConfig, IpsecConfig, subnets, DPD, NAT traversal)
//! as strongSwan configuration: the `load-conn` and `load-shared` messages, and the
//! `strongswan.conf` of one charon instance.
//!
//! Mapping (also in docs/compatibility.md):
//! * IkeVersion `ikev1`/`ikev2` → `version = 1/2`; IkeMode `aggressive` → `aggressive = yes`;
//! * IkeEncAlg/IpsecEncAlg `aes`/`aes192`/`aes256`/`des`/`3des` → `aes128`/`aes192`/`aes256`/
//!   `des`/`3des`; IkeAuthAlg/IpsecAuthAlg `md5`/`sha1`/`sha256`/`sha384`/`sha512` → the same
//!   names (the PRF follows the integrity algorithm); IkePfs/IpsecPfs `group1`/`group2`/
//!   `group5`/`group14`/`group24` → `modp768`/`modp1024`/`modp1536`/`modp2048`/`modp2048s256`;
//!   IpsecPfs `disabled` → no DH group in the ESP proposal;
//! * `sm4` and `sm3` (ShangMi) have no strongSwan transform: [`check`] refuses them;
//! * IkeLifetime/IpsecLifetime N s → the SA expires after N s, re-keyed at 90 % of it
//!   (`rekey_time`, with `over_time`/`life_time` up to N); 0 → never re-keyed;
//! * LocalId/RemoteId → `local.id`/`remote.id`; Psk → one IKE shared secret for both ids;
//! * LocalSubnet/RemoteSubnet → `local_ts`/`remote_ts` (empty: 0.0.0.0/0); IKEv2 negotiates
//!   one CHILD SA with all of them, IKEv1 (one subnet pair per SA) one CHILD SA per pair;
//! * EnableDpd → `dpd_delay` of [`DPD_DELAY_S`] s with `dpd_action = restart` (charon's
//!   retransmits bound detection, see [`StrongswanConf`]); without it, no DPD;
//! * EnableNatTraversal → `encap = yes` (UDP encapsulation forced). kernel-libipsec always
//!   encapsulates ESP in UDP, so `false` cannot mean raw ESP on this data plane.

use std::fmt::Write as _;
use std::path::Path;

use ipnet::Ipv4Net;
use serde_json::Value;
use vpnroute_dataplane::{ConnectionSpec, TunnelConfigBlock, TunnelRole, Unsupported};
use vpnroute_vici::Message;

/// Seconds of silence before a DPD probe.
pub const DPD_DELAY_S: u32 = 1;
/// charon's retransmission of an unanswered request: first after this many seconds …
pub const RETRANSMIT_TIMEOUT_S: f64 = 0.4;
/// … then this many more, each after the same delay (`retransmit_base = 1`): a dead peer is
/// declared after `RETRANSMIT_TIMEOUT_S * (RETRANSMIT_TRIES + 1)` = 1.2 s of silence.
pub const RETRANSMIT_TRIES: u32 = 2;

fn text(config: &Value, key: &str) -> Option<String> {
    match &config[key] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn enc_alg(name: &str) -> Option<&'static str> {
    Some(match name {
        "aes" => "aes128",
        "aes192" => "aes192",
        "aes256" => "aes256",
        "des" => "des",
        "3des" => "3des",
        _ => return None,
    })
}

fn auth_alg(name: &str) -> Option<&'static str> {
    Some(match name {
        "md5" => "md5",
        "sha1" => "sha1",
        "sha256" => "sha256",
        "sha384" => "sha384",
        "sha512" => "sha512",
        _ => return None,
    })
}

fn dh_group(name: &str) -> Option<&'static str> {
    Some(match name {
        "group1" => "modp768",
        "group2" => "modp1024",
        "group5" => "modp1536",
        "group14" => "modp2048",
        "group24" => "modp2048s256",
        _ => return None,
    })
}

/// Alibaba's defaults (CreateVpnConnection fills them in; a spec from elsewhere may not).
const DEFAULTS: [(&str, &str, &str); 10] = [
    ("IkeConfig", "IkeVersion", "ikev1"),
    ("IkeConfig", "IkeMode", "main"),
    ("IkeConfig", "IkeEncAlg", "aes"),
    ("IkeConfig", "IkeAuthAlg", "md5"),
    ("IkeConfig", "IkePfs", "group2"),
    ("IkeConfig", "IkeLifetime", "86400"),
    ("IpsecConfig", "IpsecEncAlg", "aes"),
    ("IpsecConfig", "IpsecAuthAlg", "md5"),
    ("IpsecConfig", "IpsecPfs", "group2"),
    ("IpsecConfig", "IpsecLifetime", "86400"),
];

/// A connection's parameters, checked and in strongSwan's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    pub version: u8,
    pub aggressive: bool,
    pub ike_proposal: String,
    pub esp_proposal: String,
    pub ike_lifetime_s: u64,
    pub ipsec_lifetime_s: u64,
    pub local_id: String,
    pub remote_id: String,
    pub psk: String,
    pub local_ts: Vec<Ipv4Net>,
    pub remote_ts: Vec<Ipv4Net>,
    pub dpd: bool,
    pub force_encap: bool,
}

/// Checks a connection's parameters and maps them (see the module doc); for a dual-tunnel
/// connection, its master tunnel's ([`check_tunnel`]).
pub fn check(connection: &ConnectionSpec, local_address: &str) -> Result<TunnelConfig, Unsupported> {
    let role = (!connection.tunnels.is_empty()).then_some(TunnelRole::Master);
    check_tunnel(connection, role, local_address)
}

/// Checks the parameters of one tunnel and maps them: a single-tunnel connection's own
/// (`role` `None`), or one tunnel of a dual-tunnel connection with that tunnel's
/// TunnelIkeConfig / TunnelIpsecConfig, EnableDpd and EnableNatTraversal, towards its own
/// customer gateway (the RemoteId default). The connection's subnets are both tunnels'
/// selectors. `local_address`: the gateway's address for the tunnel (the LocalId default).
pub fn check_tunnel(
    connection: &ConnectionSpec,
    role: Option<TunnelRole>,
    local_address: &str,
) -> Result<TunnelConfig, Unsupported> {
    let tunnel = role.and_then(|role| connection.tunnels.iter().find(|t| t.role == role));
    let remote_ip = tunnel.map_or(connection.remote_ip, |t| t.remote_ip);
    let (ike, ipsec, dpd, encap) = match tunnel {
        Some(t) => (&t.ike_config, &t.ipsec_config, t.enable_dpd, t.enable_nat_traversal),
        None => (
            &connection.ike_config,
            &connection.ipsec_config,
            connection.enable_dpd,
            connection.enable_nat_traversal,
        ),
    };
    let get = |section: &str, key: &str| -> String {
        let config = if section == "IkeConfig" { ike } else { ipsec };
        text(config, key).unwrap_or_else(|| {
            DEFAULTS
                .iter()
                .find(|(s, k, _)| *s == section && *k == key)
                .map_or(String::new(), |(_, _, v)| v.to_string())
        })
    };
    let unsupported = |section: &str, key: &str| Unsupported {
        block: if section == "IkeConfig" {
            TunnelConfigBlock::Ike
        } else {
            TunnelConfigBlock::Ipsec
        },
        member: key.to_string(),
        value: get(section, key),
    };
    let mapped = |section: &str, key: &str, map: fn(&str) -> Option<&'static str>| {
        map(&get(section, key)).ok_or_else(|| unsupported(section, key))
    };
    let version = match get("IkeConfig", "IkeVersion").as_str() {
        "ikev1" => 1,
        "ikev2" => 2,
        _ => return Err(unsupported("IkeConfig", "IkeVersion")),
    };
    let aggressive = match get("IkeConfig", "IkeMode").as_str() {
        "main" => false,
        "aggressive" => true,
        _ => return Err(unsupported("IkeConfig", "IkeMode")),
    };
    let ike_proposal = format!(
        "{}-{}-{}",
        mapped("IkeConfig", "IkeEncAlg", enc_alg)?,
        mapped("IkeConfig", "IkeAuthAlg", auth_alg)?,
        mapped("IkeConfig", "IkePfs", dh_group)?
    );
    let mut esp_proposal = format!(
        "{}-{}",
        mapped("IpsecConfig", "IpsecEncAlg", enc_alg)?,
        mapped("IpsecConfig", "IpsecAuthAlg", auth_alg)?
    );
    if get("IpsecConfig", "IpsecPfs") != "disabled" {
        esp_proposal.push('-');
        esp_proposal.push_str(mapped("IpsecConfig", "IpsecPfs", dh_group)?);
    }
    let lifetime = |section: &str, key: &str| -> Result<u64, Unsupported> {
        get(section, key)
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= 86_400)
            .ok_or_else(|| unsupported(section, key))
    };
    let psk = get("IkeConfig", "Psk");
    if psk.is_empty() {
        return Err(unsupported("IkeConfig", "Psk"));
    }
    let or_any = |nets: &[Ipv4Net]| {
        if nets.is_empty() {
            vec![Ipv4Net::default()]
        } else {
            nets.iter().map(Ipv4Net::trunc).collect()
        }
    };
    let id_or = |key: &str, default: String| Some(get("IkeConfig", key)).filter(|s| !s.is_empty()).unwrap_or(default);
    Ok(TunnelConfig {
        version,
        aggressive,
        ike_proposal,
        esp_proposal,
        ike_lifetime_s: lifetime("IkeConfig", "IkeLifetime")?,
        ipsec_lifetime_s: lifetime("IpsecConfig", "IpsecLifetime")?,
        local_id: id_or("LocalId", local_address.to_string()),
        remote_id: id_or("RemoteId", remote_ip.to_string()),
        psk,
        local_ts: or_any(&connection.local_subnets),
        remote_ts: or_any(&connection.remote_subnets),
        dpd,
        force_encap: encap,
    })
}

/// The first IkeConfig/IpsecConfig parameter this driver cannot put in force, for the API
/// to refuse at CreateVpnConnection/ModifyVpnConnectionAttribute (before any tunnel exists;
/// [`vpnroute_dataplane::DataPlane::unsupported_tunnel`] of the Linux data plane with this
/// driver). A missing Psk is not a refusal: the API generates one.
pub fn unsupported(ike_config: &Value, ipsec_config: &Value) -> Option<Unsupported> {
    let mut ike = ike_config.clone();
    if text(&ike, "Psk").is_none_or(|psk| psk.is_empty()) {
        if let Some(object) = ike.as_object_mut() {
            object.insert("Psk".into(), Value::String("generated".into()));
        } else {
            ike = serde_json::json!({"Psk": "generated"});
        }
    }
    let connection = ConnectionSpec {
        id: String::new(),
        remote_ip: std::net::Ipv4Addr::UNSPECIFIED,
        local_subnets: Vec::new(),
        remote_subnets: Vec::new(),
        admin_up: true,
        health_check: None,
        ike_config: ike,
        ipsec_config: ipsec_config.clone(),
        enable_dpd: true,
        enable_nat_traversal: true,
        tunnels: Vec::new(),
    };
    check(&connection, "0.0.0.0").err()
}

fn joined(nets: &[Ipv4Net]) -> Vec<String> {
    nets.iter().map(ToString::to_string).collect()
}

impl TunnelConfig {
    /// CHILD SA names and their (local, remote) selectors.
    pub fn children(&self) -> Vec<(String, Vec<Ipv4Net>, Vec<Ipv4Net>)> {
        if self.version == 2 {
            return vec![("ipsec".into(), self.local_ts.clone(), self.remote_ts.clone())];
        }
        let mut children = Vec::new();
        for local in &self.local_ts {
            for remote in &self.remote_ts {
                let name = format!("ipsec{}", children.len());
                children.push((name, vec![*local], vec![*remote]));
            }
        }
        children
    }

    /// The `load-conn` body of the connection `name`, towards `remote` (the customer gateway).
    pub fn conn_message(&self, remote: &str) -> Message {
        let (ike_rekey, ike_over) = rekey_split(self.ike_lifetime_s);
        let mut conn = Message::new()
            .kv("version", self.version)
            .list("remote_addrs", [remote])
            .list("proposals", [&self.ike_proposal])
            .kv("aggressive", yes_no(self.aggressive))
            .kv("encap", yes_no(self.force_encap))
            .kv("mobike", "no")
            .kv("rekey_time", format!("{ike_rekey}s"))
            .kv("over_time", format!("{ike_over}s"))
            .kv("rand_time", "0s")
            .kv("keyingtries", 0)
            .kv("unique", "replace")
            .kv("dpd_delay", format!("{}s", if self.dpd { DPD_DELAY_S } else { 0 }))
            .section("local", Message::new().kv("auth", "psk").kv("id", &self.local_id))
            .section("remote", Message::new().kv("auth", "psk").kv("id", &self.remote_id));
        let (child_rekey, _) = rekey_split(self.ipsec_lifetime_s);
        let mut children = Message::new();
        for (name, local, remote) in self.children() {
            let child = Message::new()
                .list("local_ts", joined(&local))
                .list("remote_ts", joined(&remote))
                .list("esp_proposals", [&self.esp_proposal])
                .kv("rekey_time", format!("{child_rekey}s"))
                .kv("life_time", format!("{}s", self.ipsec_lifetime_s))
                .kv("rand_time", "0s")
                .kv("mode", "tunnel")
                .kv("start_action", "start")
                .kv("dpd_action", if self.dpd { "restart" } else { "clear" })
                .kv("close_action", "start");
            children = children.section(&name, child);
        }
        conn = conn.section("children", children);
        conn
    }

    /// The ids the shared secret is for.
    pub fn secret_owners(&self) -> Vec<String> {
        vec![self.local_id.clone(), self.remote_id.clone()]
    }
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

/// (rekey_time, the rest up to the lifetime): re-key at 90 %; 0 → never.
fn rekey_split(lifetime_s: u64) -> (u64, u64) {
    let rekey = lifetime_s * 9 / 10;
    (rekey, lifetime_s - rekey)
}

/// The `strongswan.conf` of one charon instance: only the plugins it needs, userspace ESP
/// (kernel-libipsec), its VICI socket and log in its own directory, the routing layout the
/// connection namespace expects (table 220, rule at 220), and the retransmission that bounds
/// dead-peer detection.
pub struct StrongswanConf;

/// charon's routing table for kernel-libipsec's routes (via `ipsec0`).
pub const CHARON_TABLE: u32 = 220;

impl StrongswanConf {
    pub fn render(dir: &Path) -> String {
        let dir = dir.display();
        let mut out = String::new();
        let _ = write!(
            out,
            "# Written by vpnroute's ipsec tunnel driver; rewritten on every start.\n\
charon {{\n\
  load = random nonce openssl aes sha1 sha2 md5 hmac gcm kdf pem pkcs1 pubkey x509 kernel-libipsec kernel-netlink socket-default vici\n\
  install_routes = yes\n\
  install_virtual_ip = no\n\
  routing_table = {CHARON_TABLE}\n\
  routing_table_prio = {CHARON_TABLE}\n\
  retransmit_timeout = {RETRANSMIT_TIMEOUT_S}\n\
  retransmit_tries = {RETRANSMIT_TRIES}\n\
  retransmit_base = 1.0\n\
  i_dont_care_about_security_and_use_aggressive_mode_psk = yes\n\
  port = 500\n\
  port_nat_t = 4500\n\
  plugins {{\n\
    vici {{\n\
      socket = unix://{dir}/charon.vici\n\
    }}\n\
    kernel-libipsec {{\n\
      allow_peer_ts = yes\n\
    }}\n\
  }}\n\
  filelog {{\n\
    log {{\n\
      path = {dir}/charon.log\n\
      time_format = %F %T\n\
      default = 1\n\
      ike = 1\n\
      knl = 1\n\
    }}\n\
  }}\n\
}}\n"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connection(ike: Value, ipsec: Value) -> ConnectionSpec {
        ConnectionSpec {
            id: "vco-1".into(),
            remote_ip: "198.51.100.7".parse().unwrap(),
            local_subnets: vec!["10.0.0.0/16".parse().unwrap()],
            remote_subnets: vec!["192.168.1.0/24".parse().unwrap(), "192.168.2.9/24".parse().unwrap()],
            admin_up: true,
            health_check: None,
            ike_config: ike,
            ipsec_config: ipsec,
            enable_dpd: true,
            enable_nat_traversal: true,
            tunnels: Vec::new(),
        }
    }

    #[test]
    fn alibaba_parameters_map_to_proposals() {
        let c = connection(
            json!({"IkeVersion": "ikev2", "IkeMode": "main", "IkeEncAlg": "aes256", "IkeAuthAlg": "sha256",
                   "IkePfs": "group14", "IkeLifetime": 3600, "LocalId": "gw.example", "RemoteId": "", "Psk": "s3cret"}),
            json!({"IpsecEncAlg": "3des", "IpsecAuthAlg": "md5", "IpsecPfs": "disabled", "IpsecLifetime": 0}),
        );
        let config = check(&c, "47.0.0.1").unwrap();
        assert_eq!(config.ike_proposal, "aes256-sha256-modp2048");
        assert_eq!(config.esp_proposal, "3des-md5");
        assert_eq!((config.version, config.aggressive), (2, false));
        assert_eq!(config.local_id, "gw.example");
        assert_eq!(
            config.remote_id, "198.51.100.7",
            "empty RemoteId: the customer gateway's address"
        );
        assert_eq!(
            config.remote_ts[1].to_string(),
            "192.168.2.0/24",
            "selectors are truncated"
        );
        let message = config.conn_message("198.51.100.7");
        assert_eq!(message.str("rekey_time").as_deref(), Some("3240s"));
        assert_eq!(message.str("over_time").as_deref(), Some("360s"));
        assert_eq!(message.str("dpd_delay").as_deref(), Some("1s"));
        let child = message.sub("children").unwrap().sub("ipsec").unwrap();
        assert_eq!(child.strings("remote_ts"), ["192.168.1.0/24", "192.168.2.0/24"]);
        assert_eq!(
            child.str("rekey_time").as_deref(),
            Some("0s"),
            "lifetime 0: never re-keyed"
        );
        assert_eq!(child.str("dpd_action").as_deref(), Some("restart"));
    }

    #[test]
    fn defaults_are_alibabas_and_ikev1_gets_a_child_per_subnet_pair() {
        let mut c = connection(json!({"Psk": "x"}), Value::Null);
        c.enable_dpd = false;
        let config = check(&c, "47.0.0.1").unwrap();
        assert_eq!(config.ike_proposal, "aes128-md5-modp1024");
        assert_eq!(config.esp_proposal, "aes128-md5-modp1024");
        assert_eq!(config.version, 1);
        assert_eq!(config.local_id, "47.0.0.1");
        let names: Vec<_> = config.children().into_iter().map(|c| c.0).collect();
        assert_eq!(names, ["ipsec0", "ipsec1"]);
        let message = config.conn_message("198.51.100.7");
        assert_eq!(message.str("dpd_delay").as_deref(), Some("0s"));
        c.local_subnets.clear();
        assert_eq!(check(&c, "47.0.0.1").unwrap().local_ts, [Ipv4Net::default()]);
    }

    #[test]
    fn shangmi_and_unknown_values_are_refused_with_the_parameter() {
        for (ike, ipsec, parameter) in [
            (
                json!({"IkeEncAlg": "sm4", "Psk": "x"}),
                json!({}),
                "IkeConfig.IkeEncAlg",
            ),
            (
                json!({"IkeAuthAlg": "sm3", "Psk": "x"}),
                json!({}),
                "IkeConfig.IkeAuthAlg",
            ),
            (
                json!({"Psk": "x"}),
                json!({"IpsecEncAlg": "sm4"}),
                "IpsecConfig.IpsecEncAlg",
            ),
            (
                json!({"Psk": "x"}),
                json!({"IpsecPfs": "group3"}),
                "IpsecConfig.IpsecPfs",
            ),
            (json!({"IkePfs": "disabled", "Psk": "x"}), json!({}), "IkeConfig.IkePfs"),
            (
                json!({"IkeVersion": "ikev3", "Psk": "x"}),
                json!({}),
                "IkeConfig.IkeVersion",
            ),
            (
                json!({"IkeLifetime": 86401, "Psk": "x"}),
                json!({}),
                "IkeConfig.IkeLifetime",
            ),
            (json!({}), json!({}), "IkeConfig.Psk"),
        ] {
            let error = check(&connection(ike, ipsec), "47.0.0.1").unwrap_err();
            assert_eq!(error.parameter(), parameter);
        }
    }

    #[test]
    fn the_api_check_names_the_first_unsupported_parameter() {
        assert_eq!(unsupported(&json!({}), &json!({})), None, "defaults, Psk generated");
        let refused = unsupported(&json!({"IkeEncAlg": "aes"}), &json!({"IpsecAuthAlg": "sm3"})).unwrap();
        assert_eq!(refused.parameter(), "IpsecConfig.IpsecAuthAlg");
        assert_eq!(refused.value, "sm3");
        assert!(unsupported(
            &json!({"IkeVersion": "ikev2", "IkePfs": "group14"}),
            &json!({"IpsecPfs": "disabled"})
        )
        .is_none());
    }

    #[test]
    fn a_dual_tunnel_connection_uses_its_master_tunnels_parameters() {
        let mut c = connection(json!({"Psk": "connection-level"}), json!({}));
        let tunnel = |role, psk: &str, enc: &str| vpnroute_dataplane::TunnelSpec {
            id: format!("tun-{psk}"),
            role,
            local_ip: "47.0.0.1".parse().unwrap(),
            remote_ip: "198.51.100.7".parse().unwrap(),
            admin_up: true,
            ike_config: json!({"IkeVersion": "ikev2", "IkeEncAlg": enc, "Psk": psk}),
            ipsec_config: json!({"IpsecAuthAlg": "sha256"}),
            enable_dpd: false,
            enable_nat_traversal: true,
        };
        c.tunnels = vec![
            tunnel(TunnelRole::Slave, "slave", "sm4"),
            tunnel(TunnelRole::Master, "master", "aes256"),
        ];
        let config = check(&c, "47.0.0.1").unwrap();
        assert_eq!(config.psk, "master");
        assert_eq!(config.ike_proposal, "aes256-md5-modp1024");
        assert_eq!(config.esp_proposal, "aes128-sha256-modp1024");
        assert_eq!((config.version, config.dpd), (2, false));
        // The slave: its own parameters, customer gateway and local address.
        let refused = check_tunnel(&c, Some(TunnelRole::Slave), "47.0.0.2").unwrap_err();
        assert_eq!(refused.parameter(), "IkeConfig.IkeEncAlg");
        c.tunnels[0].ike_config["IkeEncAlg"] = serde_json::json!("aes192");
        c.tunnels[0].remote_ip = "198.51.100.8".parse().unwrap();
        c.tunnels[0].enable_dpd = true;
        let slave = check_tunnel(&c, Some(TunnelRole::Slave), "47.0.0.2").unwrap();
        assert_eq!(slave.psk, "slave");
        assert_eq!(slave.ike_proposal, "aes192-md5-modp1024");
        assert_eq!(
            (slave.local_id.as_str(), slave.remote_id.as_str()),
            ("47.0.0.2", "198.51.100.8")
        );
        assert!(slave.dpd);
        assert_eq!(slave.remote_ts, config.remote_ts, "one connection: the same selectors");
    }

    #[test]
    fn strongswan_conf_names_its_own_socket_and_log() {
        let text = StrongswanConf::render(Path::new("/var/lib/x/c1"));
        assert!(text.contains("socket = unix:///var/lib/x/c1/charon.vici"));
        assert!(text.contains("path = /var/lib/x/c1/charon.log"));
        assert!(text.contains("kernel-libipsec"));
        assert!(text.contains("retransmit_tries = 2"));
    }
}
