//! IkeConfig / IpsecConfig through the real binary: values outside Alibaba's lists are
//! `InvalidParameter` on every data plane; values Alibaba accepts but the data plane cannot
//! put in force (ShangMi `sm4`/`sm3` under `--dataplane linux --tunnels ipsec`) are refused
//! by CreateVpnConnection and ModifyVpnConnectionAttribute before any tunnel exists, while
//! the `sim` data plane accepts them as Alibaba does. And a dual-tunnel connection through the
//! real binary with `--dataplane linux --tunnels ipsec`: both tunnels negotiated with two
//! customer-site charons configured from DescribeVpnConnection, each tunnel's Status reported,
//! the slave carrying the traffic once the master's peer is gone.

mod common;

use std::time::Duration;

use common::{call_retrying, Server};
use vpnroute_client::{Client, Scheme};

const REGION: &str = "cn-hangzhou";

/// VPC → gateway → customer gateway `ip`; returns (gateway id, customer gateway id).
fn gateway(c: &mut Client, ip: &str) -> (String, String) {
    let ok = |r: vpnroute_client::Response| {
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let vpc = ok(c
        .call("CreateVpc", &[("RegionId", REGION), ("CidrBlock", "192.168.0.0/16")])
        .unwrap())["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let gw = ok(c
        .call(
            "CreateVpnGateway",
            &[("RegionId", REGION), ("VpcId", &vpc), ("Bandwidth", "10")],
        )
        .unwrap())["VpnGatewayId"]
        .as_str()
        .unwrap()
        .to_string();
    let cgw = ok(c
        .call("CreateCustomerGateway", &[("RegionId", REGION), ("IpAddress", ip)])
        .unwrap())["CustomerGatewayId"]
        .as_str()
        .unwrap()
        .to_string();
    (gw, cgw)
}

fn create(c: &mut Client, gw: &str, cgw: &str, ike: &str, ipsec: &str) -> vpnroute_client::Response {
    call_retrying(
        c,
        "CreateVpnConnection",
        &[
            ("RegionId", REGION),
            ("VpnGatewayId", gw),
            ("CustomerGatewayId", cgw),
            ("LocalSubnet", "192.168.0.0/24"),
            ("RemoteSubnet", "10.0.0.0/8"),
            ("IkeConfig", ike),
            ("IpsecConfig", ipsec),
        ],
    )
    .unwrap()
}

fn modify(c: &mut Client, vco: &str, extra: &[(&str, &str)]) -> vpnroute_client::Response {
    let mut params = vec![("RegionId", REGION), ("VpnConnectionId", vco)];
    params.extend_from_slice(extra);
    call_retrying(c, "ModifyVpnConnectionAttribute", &params).unwrap()
}

fn describe(c: &mut Client, vco: &str) -> serde_json::Value {
    let r = c
        .call(
            "DescribeVpnConnection",
            &[("RegionId", REGION), ("VpnConnectionId", vco)],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// `r` is `InvalidParameter` 400 naming `parameter`.
fn assert_refused(r: &vpnroute_client::Response, parameter: &str) {
    assert_eq!(r.status, 400, "{parameter}: {}", r.body);
    assert_eq!(r.code().as_deref(), Some("InvalidParameter"), "{parameter}: {}", r.body);
    let message = r.json()["Message"].as_str().unwrap_or_default().to_string();
    assert!(
        message.starts_with(&format!("The specified parameter \"{parameter}\" is not valid")),
        "{parameter}: {message}"
    );
}

/// Values outside Alibaba's documented lists and ranges (surface §2.16), one member at a time.
const OUT_OF_LIST: &[(&str, &str, &str)] = &[
    ("IkeConfig", r#"{"IkeVersion":"ikev3"}"#, "IkeConfig.IkeVersion"),
    ("IkeConfig", r#"{"IkeMode":"quick"}"#, "IkeConfig.IkeMode"),
    ("IkeConfig", r#"{"IkeEncAlg":"aes128"}"#, "IkeConfig.IkeEncAlg"),
    ("IkeConfig", r#"{"IkeEncAlg":"AES"}"#, "IkeConfig.IkeEncAlg"),
    ("IkeConfig", r#"{"IkeAuthAlg":"sha224"}"#, "IkeConfig.IkeAuthAlg"),
    ("IkeConfig", r#"{"IkePfs":"group3"}"#, "IkeConfig.IkePfs"),
    ("IkeConfig", r#"{"IkePfs":"disabled"}"#, "IkeConfig.IkePfs"),
    ("IkeConfig", r#"{"IkeLifetime":86401}"#, "IkeConfig.IkeLifetime"),
    ("IkeConfig", r#"{"IkeLifetime":-1}"#, "IkeConfig.IkeLifetime"),
    ("IkeConfig", r#"{"IkeLifetime":"soon"}"#, "IkeConfig.IkeLifetime"),
    ("IkeConfig", r#"{"IkeEncAlg":5}"#, "IkeConfig.IkeEncAlg"),
    (
        "IpsecConfig",
        r#"{"IpsecEncAlg":"chacha20"}"#,
        "IpsecConfig.IpsecEncAlg",
    ),
    ("IpsecConfig", r#"{"IpsecAuthAlg":"sha3"}"#, "IpsecConfig.IpsecAuthAlg"),
    ("IpsecConfig", r#"{"IpsecPfs":"group19"}"#, "IpsecConfig.IpsecPfs"),
    ("IpsecConfig", r#"{"IpsecLifetime":90000}"#, "IpsecConfig.IpsecLifetime"),
    ("IkeConfig", "[]", "IkeConfig"),
    ("IpsecConfig", "not json", "IpsecConfig"),
];

#[test]
fn values_outside_alibabas_lists_are_refused_and_shangmi_is_accepted_by_the_sim() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--task-duration", "0s"]);
    let mut c = server.client(Scheme::Acs3);
    let (gw, cgw) = gateway(&mut c, "1.2.3.4");
    let r = create(&mut c, &gw, &cgw, "{}", "{}");
    assert_eq!(r.status, 200, "{}", r.body);
    let vco = r.json()["VpnConnectionId"].as_str().unwrap().to_string();
    for (param, value, refused) in OUT_OF_LIST {
        let (ike, ipsec) = if *param == "IkeConfig" {
            (*value, "{}")
        } else {
            ("{}", *value)
        };
        assert_refused(&create(&mut c, &gw, &cgw, ike, ipsec), refused);
        assert_refused(&modify(&mut c, &vco, &[(*param, *value)]), refused);
    }
    // Every documented value of each list is accepted (lifetime 0: the default).
    let r = modify(
        &mut c,
        &vco,
        &[
            (
                "IkeConfig",
                r#"{"IkeVersion":"ikev2","IkeMode":"aggressive","IkeEncAlg":"3des","IkeAuthAlg":"sha512","IkePfs":"group24","IkeLifetime":0}"#,
            ),
            ("IpsecConfig", r#"{"IpsecPfs":"disabled","IpsecLifetime":"3600"}"#),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = describe(&mut c, &vco);
    assert_eq!(v["IkeConfig"]["IkeLifetime"], 86400, "{v}");
    assert_eq!(v["IkeConfig"]["IkePfs"], "group24");
    assert_eq!(v["IpsecConfig"]["IpsecLifetime"], 3600);
    // ShangMi is in Alibaba's lists: the sim data plane takes it.
    let r = create(
        &mut c,
        &gw,
        &cgw,
        r#"{"IkeEncAlg":"sm4","IkeAuthAlg":"sm3"}"#,
        r#"{"IpsecEncAlg":"sm4","IpsecAuthAlg":"sm3"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Deletes what the test created under `prefix` if the server could not (it failed midway).
struct Cleanup {
    prefix: String,
    dir: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Charons of the prefix, by the pid each wrote (never by name).
        for pid_file in glob_pid_files(&self.dir) {
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                let _ = std::process::Command::new("kill").arg(pid.trim()).status();
            }
        }
        for ns in vpnroute_dataplane_linux::kernel::netns_with_prefix(&self.prefix) {
            let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn glob_pid_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path().join("charon.pid"))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn the_ipsec_data_plane_refuses_shangmi_at_the_api() {
    if !vpnroute_dataplane_linux::ipsec::lab::ipsec_ready("the_ipsec_data_plane_refuses_shangmi_at_the_api") {
        return;
    }
    let prefix = vpnroute_dataplane_linux::lab::unique_prefix();
    let base = std::path::PathBuf::from(vpnroute_dataplane_linux::ipsec::lab::TEST_BASE);
    // Every test of this binary that starts a Linux data plane sets the same value.
    std::env::set_var("VPNROUTE_IPSEC_DIR", &base);
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        dir: base.join(&prefix),
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--task-duration",
            "0s",
            "--dataplane",
            "linux",
            "--tunnels",
            "ipsec",
            "--netns-prefix",
            &prefix,
        ],
    );
    let mut c = server.client(Scheme::Acs3);
    // A documentation address: charon initiates towards it and never hears back.
    let (gw, cgw) = gateway(&mut c, "198.51.100.9");
    for (ike, ipsec, refused) in [
        (r#"{"IkeEncAlg":"sm4"}"#, "{}", "IkeConfig.IkeEncAlg"),
        (r#"{"IkeAuthAlg":"sm3"}"#, "{}", "IkeConfig.IkeAuthAlg"),
        ("{}", r#"{"IpsecEncAlg":"sm4"}"#, "IpsecConfig.IpsecEncAlg"),
        ("{}", r#"{"IpsecAuthAlg":"sm3"}"#, "IpsecConfig.IpsecAuthAlg"),
    ] {
        let r = create(&mut c, &gw, &cgw, ike, ipsec);
        assert_refused(&r, refused);
        assert!(
            r.body.contains("not supported by this gateway's IPsec tunnels"),
            "{}",
            r.body
        );
    }
    let r = c
        .call("DescribeVpnConnections", &[("RegionId", REGION), ("VpnGatewayId", &gw)])
        .unwrap();
    assert_eq!(r.json()["TotalCount"], 0, "a refused connection was stored: {}", r.body);

    let r = create(
        &mut c,
        &gw,
        &cgw,
        r#"{"IkeVersion":"ikev2","IkeAuthAlg":"sha256","IkePfs":"group14"}"#,
        "{}",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let vco = r.json()["VpnConnectionId"].as_str().unwrap().to_string();
    let r = modify(&mut c, &vco, &[("IpsecConfig", r#"{"IpsecAuthAlg":"sm3"}"#)]);
    assert_refused(&r, "IpsecConfig.IpsecAuthAlg");
    assert_eq!(describe(&mut c, &vco)["IpsecConfig"]["IpsecAuthAlg"], "md5");
    // What strongSwan can do is accepted; a name change needs no check.
    let r = modify(
        &mut c,
        &vco,
        &[("Name", "renamed"), ("IkeConfig", r#"{"IkeEncAlg":"aes256"}"#)],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(describe(&mut c, &vco)["IkeConfig"]["IkeEncAlg"], "aes256");

    // The connection reached the data plane: its charon runs in a namespace of the prefix.
    let dp = format!("/_vpnroute/gateways/{gw}/dataplane");
    let charon_up = || {
        let v = server.introspect(&dp);
        v["Connections"][0]["TunnelConfig"].is_object()
    };
    assert!(wait(Duration::from_secs(20), charon_up), "{}", server.introspect(&dp));

    // Clean up through the API: the data plane stops the charon and removes the namespaces.
    let r = call_retrying(
        &mut c,
        "DeleteVpnConnection",
        &[("RegionId", REGION), ("VpnConnectionId", &vco)],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call_retrying(
        &mut c,
        "DeleteVpnGateway",
        &[("RegionId", REGION), ("VpnGatewayId", &gw)],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    // Only the underlay, shared by the prefix's gateways, stays.
    let underlay = format!("{prefix}ul");
    let gone = || {
        vpnroute_dataplane_linux::kernel::netns_with_prefix(&prefix)
            .iter()
            .all(|ns| *ns == underlay)
    };
    assert!(
        wait(Duration::from_secs(20), gone),
        "{:?}",
        vpnroute_dataplane_linux::kernel::netns_with_prefix(&prefix)
    );
}

fn wait(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

/// What a customer reads from DescribeVpnConnection to configure one tunnel of a dual-tunnel
/// connection on their side: the tunnel's parameters, the gateway's address for it, their
/// own customer gateway address, the PSK.
fn site_end(
    connection: &serde_json::Value,
    tunnel: &serde_json::Value,
    customer_ip: &str,
) -> vpnroute_dataplane_linux::ipsec::lab::SiteEnd {
    use vpnroute_dataplane::{ConnectionSpec, TunnelRole, TunnelSpec};
    let role = if tunnel["Role"] == "slave" {
        TunnelRole::Slave
    } else {
        TunnelRole::Master
    };
    let subnets = |key: &str| -> Vec<ipnet::Ipv4Net> {
        connection[key]
            .as_str()
            .unwrap()
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect()
    };
    let gateway_ip: std::net::Ipv4Addr = tunnel["InternetIp"].as_str().unwrap().parse().unwrap();
    let spec = ConnectionSpec {
        id: connection["VpnConnectionId"].as_str().unwrap().to_string(),
        remote_ip: customer_ip.parse().unwrap(),
        local_subnets: subnets("LocalSubnet"),
        remote_subnets: subnets("RemoteSubnet"),
        admin_up: true,
        health_check: None,
        ike_config: serde_json::Value::Null,
        ipsec_config: serde_json::Value::Null,
        enable_dpd: true,
        enable_nat_traversal: true,
        tunnels: vec![TunnelSpec {
            id: tunnel["TunnelId"].as_str().unwrap().to_string(),
            role,
            local_ip: gateway_ip,
            remote_ip: customer_ip.parse().unwrap(),
            admin_up: true,
            ike_config: tunnel["TunnelIkeConfig"].clone(),
            ipsec_config: tunnel["TunnelIpsecConfig"].clone(),
            enable_dpd: true,
            enable_nat_traversal: true,
        }],
    };
    let psk = tunnel["TunnelIkeConfig"]["Psk"].as_str().unwrap();
    vpnroute_dataplane_linux::ipsec::lab::SiteEnd::of_tunnel(&spec, role, psk)
}

#[test]
fn a_dual_tunnel_connection_reports_both_tunnels_and_fails_over_to_the_slave() {
    use vpnroute_dataplane_linux::ipsec::lab::{attach_site_to, fast_ping, TEST_BASE};
    use vpnroute_dataplane_linux::lab::{attach_host_to, ping, unique_prefix};
    let test = "a_dual_tunnel_connection_reports_both_tunnels_and_fails_over_to_the_slave";
    if !vpnroute_dataplane_linux::ipsec::lab::ipsec_ready(test) {
        return;
    }
    let prefix = unique_prefix();
    let base = std::path::PathBuf::from(TEST_BASE);
    std::env::set_var("VPNROUTE_IPSEC_DIR", &base);
    let sites_dir = base.join(format!("{prefix}-sites"));
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
        dir: base.join(&prefix),
    };
    let _sites = Cleanup {
        prefix: prefix.clone(),
        dir: sites_dir.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--task-duration",
            "0s",
            "--dataplane",
            "linux",
            "--tunnels",
            "ipsec",
            "--netns-prefix",
            &prefix,
        ],
    );
    let mut c = server.client(Scheme::Acs3);
    let ok = |r: vpnroute_client::Response| {
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    // A gateway with a disaster-recovery vswitch: dual-tunnel connections.
    let vpc = ok(c
        .call("CreateVpc", &[("RegionId", REGION), ("CidrBlock", "10.0.0.0/24")])
        .unwrap())["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let zones = ok(c.call("DescribeZones", &[("RegionId", REGION)]).unwrap());
    let zone = |i: usize| zones["Zones"]["Zone"][i]["ZoneId"].as_str().unwrap().to_string();
    let mut vswitch = |cidr: &str, zone: &str| {
        let r = c
            .call(
                "CreateVSwitch",
                &[
                    ("RegionId", REGION),
                    ("VpcId", &vpc),
                    ("ZoneId", zone),
                    ("CidrBlock", cidr),
                ],
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["VSwitchId"].as_str().unwrap().to_string()
    };
    let (vsw1, vsw2) = (vswitch("10.0.0.0/26", &zone(0)), vswitch("10.0.0.64/26", &zone(1)));
    let gw = ok(c
        .call(
            "CreateVpnGateway",
            &[
                ("RegionId", REGION),
                ("VpcId", &vpc),
                ("Bandwidth", "10"),
                ("VSwitchId", &vsw1),
                ("DisasterRecoveryVSwitchId", &vsw2),
            ],
        )
        .unwrap())["VpnGatewayId"]
        .as_str()
        .unwrap()
        .to_string();
    let (master_ip, slave_ip) = ("203.0.113.1", "203.0.113.2");
    let mut cgw = |ip: &str| {
        let r = c
            .call("CreateCustomerGateway", &[("RegionId", REGION), ("IpAddress", ip)])
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["CustomerGatewayId"].as_str().unwrap().to_string()
    };
    let (cgw_m, cgw_s) = (cgw(master_ip), cgw(slave_ip));
    let ike = [
        ("TunnelIkeConfig.IkeVersion", "ikev2"),
        ("TunnelIkeConfig.IkeAuthAlg", "sha256"),
        ("TunnelIkeConfig.IkePfs", "group14"),
        ("TunnelIpsecConfig.IpsecAuthAlg", "sha256"),
        ("TunnelIpsecConfig.IpsecPfs", "group14"),
    ];
    let mut params: Vec<(String, String)> = [
        ("RegionId", REGION),
        ("VpnGatewayId", gw.as_str()),
        ("LocalSubnet", "10.0.0.0/24"),
        ("RemoteSubnet", "10.1.0.0/24"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (n, (role, cgw, enc)) in [(1, ("master", &cgw_m, "aes")), (2, ("slave", &cgw_s, "aes256"))] {
        let p = format!("TunnelOptionsSpecification.{n}.");
        params.push((format!("{p}Role"), role.to_string()));
        params.push((format!("{p}CustomerGatewayId"), cgw.clone()));
        params.push((format!("{p}EnableDpd"), "true".into()));
        params.push((format!("{p}TunnelIkeConfig.IkeEncAlg"), enc.into()));
        for (k, v) in ike {
            params.push((format!("{p}{k}"), v.into()));
        }
    }
    let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let vco = ok(call_retrying(&mut c, "CreateVpnConnection", &borrowed).unwrap())["VpnConnectionId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call_retrying(
        &mut c,
        "CreateVpnRouteEntry",
        &[
            ("RegionId", REGION),
            ("VpnGatewayId", &gw),
            ("RouteDest", "10.1.0.0/24"),
            ("NextHop", &vco),
            ("Weight", "100"),
            ("PublishVpc", "false"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // The customer configures both sites from DescribeVpnConnection.
    let described = describe(&mut c, &vco);
    let tunnels = described["TunnelOptionsSpecification"]["TunnelOptions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(tunnels.len(), 2, "{described:#}");
    let by_role = |role: &str| tunnels.iter().find(|t| t["Role"] == role).unwrap().clone();
    let (master, slave) = (by_role("master"), by_role("slave"));
    assert_ne!(master["InternetIp"], slave["InternetIp"], "{described:#}");
    let dp_path = format!("/_vpnroute/gateways/{gw}/dataplane");
    let laid_out = || {
        server.introspect(&dp_path)["Connections"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
    };
    assert!(
        wait(Duration::from_secs(20), laid_out),
        "{:#}",
        server.introspect(&dp_path)
    );
    let details = server.introspect(&dp_path);
    let host = attach_host_to(&details, &prefix, "h", "10.0.0.5");
    let (_, master_site) = attach_site_to(
        &details,
        &prefix,
        &sites_dir,
        "sm",
        &[site_end(&described, &master, master_ip)],
        &["10.1.0.1"],
    );
    let (site_s, slave_site) = attach_site_to(
        &details,
        &prefix,
        &sites_dir,
        "ss",
        &[site_end(&described, &slave, slave_ip)],
        &["10.1.0.1"],
    );
    let statuses = |c: &mut Client| {
        let v = describe(c, &vco);
        let status = |role: &str| {
            v["TunnelOptionsSpecification"]["TunnelOptions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["Role"] == role)
                .map(|t| t["Status"].as_str().unwrap().to_string())
                .unwrap()
        };
        (
            v["Status"].as_str().unwrap().to_string(),
            status("master"),
            status("slave"),
        )
    };
    let established = "ipsec_sa_established".to_string();
    let both_up = (established.clone(), established.clone(), established.clone());
    assert!(
        wait(Duration::from_secs(30), || statuses(&mut c) == both_up),
        "{:?} {:#}",
        statuses(&mut c),
        server.introspect(&dp_path)
    );
    assert!(
        wait(Duration::from_secs(10), || ping(&host, "10.1.0.1", 1)),
        "no encrypted ping through the master"
    );

    // The master's peer stopped: the master reports it, the slave carries the traffic.
    let pid = master_site.running_pid().expect("the master site's charon runs");
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    let stopped = std::time::Instant::now();
    let mut moved = false;
    while stopped.elapsed() < Duration::from_secs(10) {
        if fast_ping(&host, "10.1.0.1") {
            moved = true;
            break;
        }
    }
    assert!(
        moved,
        "the slave never carried the ping: {:#}",
        server.introspect(&dp_path)
    );
    let slave_rx = vpnroute_dataplane_linux::lab::rx_packets(&site_s, "ipsec0");
    assert!(ping(&host, "10.1.0.1", 2));
    assert!(vpnroute_dataplane_linux::lab::rx_packets(&site_s, "ipsec0") >= slave_rx + 2);
    let after = (
        established.clone(),
        "ike_sa_not_established".to_string(),
        established.clone(),
    );
    assert!(
        wait(Duration::from_secs(10), || statuses(&mut c) == after),
        "{:?}",
        statuses(&mut c)
    );
    master_site.stop();
    slave_site.stop();

    let r = call_retrying(
        &mut c,
        "DeleteVpnRouteEntry",
        &[
            ("RegionId", REGION),
            ("VpnGatewayId", &gw),
            ("RouteDest", "10.1.0.0/24"),
            ("NextHop", &vco),
            ("Weight", "100"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for (action, key, id) in [
        ("DeleteVpnConnection", "VpnConnectionId", &vco),
        ("DeleteVpnGateway", "VpnGatewayId", &gw),
    ] {
        let r = call_retrying(&mut c, action, &[("RegionId", REGION), (key, id)]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let underlay = format!("{prefix}ul");
    let ours = [underlay.clone(), host.clone(), format!("{prefix}sm"), site_s.clone()];
    let gone = || {
        vpnroute_dataplane_linux::kernel::netns_with_prefix(&prefix)
            .iter()
            .all(|ns| ours.contains(ns))
    };
    assert!(
        wait(Duration::from_secs(20), gone),
        "{:?}",
        vpnroute_dataplane_linux::kernel::netns_with_prefix(&prefix)
    );
}
