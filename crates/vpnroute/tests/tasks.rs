//! Asynchronous application end to end: manual task mode across a restart, versions in
//! introspection and metrics, throttling headers.

mod common;

use std::time::{Duration, Instant};

use common::{setup_gateway, Server};
use vpnroute_client::Scheme;

fn explain_next_hop(server: &Server, gw: &str) -> Option<String> {
    let v = server.introspect(&format!(
        "/_vpnroute/gateways/{gw}/explain?source=192.168.0.1&dest=10.0.0.5"
    ));
    v["Explanation"]["chosen"]["next_hop"].as_str().map(str::to_string)
}

fn wait_active(server: &Server, gw: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.introspect(&format!("/_vpnroute/gateways/{gw}"))["Status"] != "active" {
        assert!(Instant::now() < deadline, "gateway {gw} stayed busy");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn manual_tasks_come_into_force_only_when_advanced_even_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--task-duration", "0s"]);
    let mut c = server.client(Scheme::Acs3);
    let (gw, vco) = setup_gateway(&mut c, 0);
    drop(server);
    let mut server = Server::start(dir.path(), &["--task-duration", "manual"]);
    let mut c = server.client(Scheme::Acs3);
    let create = [
        ("RegionId", "cn-hangzhou"),
        ("VpnGatewayId", gw.as_str()),
        ("RouteDest", "10.0.0.0/24"),
        ("NextHop", vco.as_str()),
        ("Weight", "100"),
        ("PublishVpc", "false"),
    ];
    let r = c.call("CreateVpnRouteEntry", &create).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let status = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    assert_eq!(status["Status"], "updating");
    assert_eq!(status["InSync"], false);
    assert_eq!(
        explain_next_hop(&server, &gw),
        None,
        "not in force before the task is applied"
    );
    // A second change on the busy gateway gets Alibaba's busy code.
    let mut second = create;
    second[2] = ("RouteDest", "10.0.1.0/24");
    let r = c.call("CreateVpnRouteEntry", &second).unwrap();
    assert_eq!(
        (r.status, r.code().as_deref()),
        (400, Some("VpnGateway.Configuring")),
        "{}",
        r.body
    );

    server.kill9_and_restart();
    assert_eq!(
        explain_next_hop(&server, &gw),
        None,
        "a restart must not put a pending change in force"
    );
    assert_eq!(
        server.introspect(&format!("/_vpnroute/gateways/{gw}"))["Status"],
        "updating"
    );

    let out = std::process::Command::new(common::bin())
        .args(["admin", "--data-dir"])
        .arg(dir.path())
        .args(["gateway", "advance", &gw])
        .env("VPNROUTE_ROOT_ACCESS_KEY_ID", common::AK)
        .env("VPNROUTE_ROOT_ACCESS_KEY_SECRET", common::SK)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_active(&server, &gw);
    assert_eq!(explain_next_hop(&server, &gw).as_deref(), Some(vco.as_str()));
    let status = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    assert_eq!(status["InSync"], true, "{status}");

    // Metrics expose both versions.
    let text = server
        .operator_request("GET", "/metrics", Some(common::OPERATOR_TOKEN))
        .body;
    let desired = format!(
        "vpnroute_gateway_desired_version{{gateway=\"{gw}\"}} {}",
        status["DesiredVersion"]
    );
    let applied = format!(
        "vpnroute_gateway_applied_version{{gateway=\"{gw}\"}} {}",
        status["AppliedVersion"]
    );
    assert!(text.contains(&desired) && text.contains(&applied), "{text}");
}

#[test]
fn throttling_answers_with_sdk_recognisable_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--throttle-rps", "3"]);
    let mut c = server.client(Scheme::V1);
    let mut throttled = None;
    for _ in 0..10 {
        let r = c.call("DescribeRegions", &[]).unwrap();
        if r.status != 200 {
            throttled = Some(r);
            break;
        }
    }
    let r = throttled.expect("10 calls within a second at 3 rps must be throttled");
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("Throttling.User"));
    let retry_after: u64 = r
        .header("x-acs-retry-after")
        .expect("x-acs-retry-after")
        .parse()
        .unwrap();
    assert!(retry_after > 0);
    // Another action has its own budget.
    let r = c.call("DescribeVpcs", &[("RegionId", "cn-hangzhou")]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}
