//! The Linux data plane through the real binary (`--dataplane linux --tunnels plain`; root
//! only, see `vpnroute_dataplane_linux::lab::ready`): the operator's tunnel override moves an
//! active/standby pair to the standby and back, shown as the connection's `Tunnel` in the
//! introspection; a connection's `Interface` counts (TX) the packets routed to it when its
//! site is cut or never answers; a continuous ping loses nothing while the server is killed
//! with -9, down, and restarted; and without CAP_NET_ADMIN/CAP_SYS_ADMIN `serve` refuses to
//! start. Names carry a unique prefix; every ping is bounded.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{call_retrying, Server, OPERATOR_TOKEN};
use serde_json::Value;
use vpnroute_client::{Client, Scheme};
use vpnroute_dataplane_linux::lab::{
    attach_host_to, attach_plain_site_to, ip, ping, ping_command, ping_counts, ping_summary, ready, rx_packets,
    unique_prefix,
};

const REGION: &str = "cn-hangzhou";
const HOST: &str = "10.0.0.5";

/// Deletes every namespace with the test's prefix (after the server, declared later, is gone).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for ns in vpnroute_dataplane_linux::kernel::netns_with_prefix(&self.0) {
            let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

fn ok(r: vpnroute_client::Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn wait(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

fn connection<'a>(details: &'a Value, id: &str) -> &'a Value {
    details["Connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["VpnConnectionId"] == id)
        .unwrap_or_else(|| panic!("{id} in {details:#}"))
}

#[test]
fn operator_override_tx_counters_and_kill9_without_loss() {
    if !ready("operator_override_tx_counters_and_kill9_without_loss") {
        return;
    }
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        dir.path(),
        &[
            "--task-duration",
            "0s",
            "--dataplane",
            "linux",
            "--tunnels",
            "plain",
            "--netns-prefix",
            &prefix,
        ],
    );
    let mut c = server.client(Scheme::Acs3);
    let vpc = ok(c
        .call("CreateVpc", &[("RegionId", REGION), ("CidrBlock", "10.0.0.0/24")])
        .unwrap())["VpcId"]
        .as_str()
        .unwrap()
        .to_string();
    let gw = ok(call_retrying(
        &mut c,
        "CreateVpnGateway",
        &[("RegionId", REGION), ("VpcId", &vpc), ("Bandwidth", "10")],
    )
    .unwrap())["VpnGatewayId"]
        .as_str()
        .unwrap()
        .to_string();
    // Three sites; the third is never attached (its peer never answers).
    let mut vcos = Vec::new();
    for ip in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let cgw = ok(c
            .call("CreateCustomerGateway", &[("RegionId", REGION), ("IpAddress", ip)])
            .unwrap())["CustomerGatewayId"]
            .as_str()
            .unwrap()
            .to_string();
        let vco = ok(call_retrying(
            &mut c,
            "CreateVpnConnection",
            &[
                ("RegionId", REGION),
                ("VpnGatewayId", &gw),
                ("CustomerGatewayId", &cgw),
                ("LocalSubnet", "10.0.0.0/24"),
                ("RemoteSubnet", "192.168.0.0/16"),
            ],
        )
        .unwrap())["VpnConnectionId"]
            .as_str()
            .unwrap()
            .to_string();
        vcos.push(vco);
    }
    let (a, b, silent) = (vcos[0].clone(), vcos[1].clone(), vcos[2].clone());
    for (dest, hop, weight) in [
        ("192.168.50.0/24", &a, "100"),
        ("192.168.50.0/24", &b, "0"),
        ("192.168.1.0/24", &a, "100"),
        ("192.168.3.0/24", &silent, "100"),
    ] {
        ok(call_retrying(
            &mut c,
            "CreateVpnRouteEntry",
            &[
                ("RegionId", REGION),
                ("VpnGatewayId", &gw),
                ("RouteDest", dest),
                ("NextHop", hop),
                ("Weight", weight),
                ("PublishVpc", "false"),
            ],
        )
        .unwrap());
    }
    let dp_path = format!("/_vpnroute/gateways/{gw}/dataplane");
    let in_sync = |server: &Server| {
        let d = server.introspect(&dp_path);
        d["InSync"] == true && d["Connections"].as_array().is_some_and(|c| c.len() == 3)
    };
    assert!(
        wait(Duration::from_secs(20), || in_sync(&server)),
        "{:#}",
        server.introspect(&dp_path)
    );
    let details = server.introspect(&dp_path);
    let host = attach_host_to(&details, &prefix, "h", HOST);
    let site_a = attach_plain_site_to(
        &details,
        &prefix,
        "sa",
        &a,
        "203.0.113.1",
        &["192.168.50.1/32", "192.168.1.1/32"],
    );
    let site_b = attach_plain_site_to(&details, &prefix, "sb", &b, "203.0.113.2", &["192.168.50.1/32"]);
    let rx = || (rx_packets(&site_a, "vx0"), rx_packets(&site_b, "vx0"));
    // Pings to `dest` all come back, through site a (`true`) or b, and none reach the other.
    let arrives = |dest: &str, at_a: bool| {
        let before = rx();
        assert!(ping(&host, dest, 3), "ping {dest}");
        let after = rx();
        let (at, other) = if at_a {
            (after.0 - before.0, after.1 - before.1)
        } else {
            (after.1 - before.1, after.0 - before.0)
        };
        assert!(at >= 3 && other == 0, "{dest}: at {at}, other {other} (a: {at_a})");
    };
    let tx = |id: &str| {
        connection(&server.introspect(&dp_path), id)["TxPackets"]
            .as_u64()
            .unwrap()
    };
    let tunnel = |server: &Server, id: &str| connection(&server.introspect(&dp_path), id)["Tunnel"].clone();
    let status = |c: &mut Client, id: &str| {
        ok(c.call(
            "DescribeVpnConnection",
            &[("RegionId", REGION), ("VpnConnectionId", id)],
        )
        .unwrap())["Status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    arrives("192.168.50.1", true);
    assert_eq!(tunnel(&server, &a), "up");

    // The operator override: a administratively down, the standby carries the pair; up again,
    // back to a.
    for (state, on_a, described) in [
        ("down", false, "ike_sa_not_established"),
        ("up", true, "ipsec_sa_established"),
    ] {
        let r = server.operator_request(
            "POST",
            &format!("/_vpnroute/connections/{a}/tunnel?state={state}"),
            Some(OPERATOR_TOKEN),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let switched = || tunnel(&server, &a) == state && in_sync(&server);
        assert!(
            wait(Duration::from_secs(10), switched),
            "{:#}",
            server.introspect(&dp_path)
        );
        assert_eq!(tunnel(&server, &b), "up");
        arrives("192.168.50.1", on_a);
        assert_eq!(status(&mut c, &a), described);
    }
    let r = server.operator_request("POST", &format!("/_vpnroute/connections/{a}/tunnel?state=down"), None);
    assert_eq!(r.status, 401, "the override needs the operator token: {}", r.body);

    // Packets routed to a connection are counted on its Interface (TX) even when nothing
    // answers: a connection whose peer never answers, and a site whose underlay is cut.
    let before = tx(&silent);
    assert_eq!(ping_counts(&host, "192.168.3.1", 3, "0.2"), (3, 0));
    assert!(tx(&silent) >= before + 3, "{silent} TX {before} -> {}", tx(&silent));
    let underlay = details["Underlay"]["Namespace"].as_str().unwrap().to_string();
    let port = format!("{prefix}sa");
    ip(&["-n", &underlay, "link", "set", &port, "down"]);
    let (before, rx_before) = (tx(&a), rx());
    assert_eq!(ping_counts(&host, "192.168.1.1", 3, "0.2"), (3, 0));
    assert!(tx(&a) >= before + 3, "{a} TX {before} -> {}", tx(&a));
    assert_eq!(rx(), rx_before, "the cut site received nothing, nor did the other");
    ip(&["-n", &underlay, "link", "set", &port, "up"]);
    assert!(wait(Duration::from_secs(5), || ping(&host, "192.168.1.1", 1)));

    // kill -9, 1.5 s down, restart: a ping every 50 ms throughout loses nothing, and every
    // one of them arrived at site a.
    let count = 160; // 8 s
    let rx_before = rx_packets(&site_a, "vx0");
    let mut pinger = ping_command(&host, "192.168.50.1", count, "0.05")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    server.kill9_and_restart_after(Duration::from_millis(1500));
    assert!(
        wait(Duration::from_secs(5), || in_sync(&server)),
        "{:#}",
        server.introspect(&dp_path)
    );
    assert!(
        pinger.try_wait().unwrap().is_none(),
        "the ping ended before the restarted server was in sync"
    );
    let out = pinger.wait_with_output().expect("ping ran");
    let summary = String::from_utf8_lossy(&out.stdout);
    let (sent, received) = ping_summary(&summary);
    assert_eq!(
        (sent, received),
        (count, count),
        "packets lost across kill -9 and restart: {summary}"
    );
    assert!(rx_packets(&site_a, "vx0") >= rx_before + u64::from(count));
    arrives("192.168.50.1", true);
}

/// Without CAP_NET_ADMIN/CAP_SYS_ADMIN (dropped from the bounding set with `setpriv`),
/// `vpnroute serve --dataplane linux` exits non-zero with a message naming them.
#[test]
fn serve_refuses_to_start_without_capabilities() {
    if !ready("serve_refuses_to_start_without_capabilities") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("setpriv")
        .args(["--inh-caps=-all", "--bounding-set=-net_admin,-sys_admin", "--"])
        .arg(common::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--dataplane", "linux", "--tunnels", "plain", "--netns-prefix"])
        .arg(unique_prefix())
        .env("VPNROUTE_ROOT_ACCESS_KEY_ID", common::AK)
        .env("VPNROUTE_ROOT_ACCESS_KEY_SECRET", common::SK)
        .env("VPNROUTE_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve kept running without CAP_NET_ADMIN/CAP_SYS_ADMIN");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("--dataplane linux: the Linux data plane needs CAP_NET_ADMIN and CAP_SYS_ADMIN (run as root)"),
        "{stderr}"
    );
    assert!(stderr.contains("missing: CAP_NET_ADMIN, CAP_SYS_ADMIN"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
