//! Reconciliation end to end: a change accepted with a task duration, the server killed with
//! SIGKILL while its task is pending, and after the restart the gateway converges to `active`
//! with every route in force — what was in force before stays (nothing is undone) and the
//! pending change comes into force when its task is due.

mod common;

use std::time::{Duration, Instant};

use common::{setup_gateway, Server};
use vpnroute_client::Scheme;

fn chosen_hop(server: &Server, gw: &str, dest: &str) -> Option<String> {
    let v = server.introspect(&format!(
        "/_vpnroute/gateways/{gw}/explain?source=192.168.0.1&dest={dest}"
    ));
    v["Explanation"]["chosen"]["next_hop"].as_str().map(str::to_string)
}

fn create_route(c: &mut vpnroute_client::Client, gw: &str, dest: &str, hop: &str) {
    let r = c
        .call(
            "CreateVpnRouteEntry",
            &[
                ("RegionId", "cn-hangzhou"),
                ("VpnGatewayId", gw),
                ("RouteDest", dest),
                ("NextHop", hop),
                ("Weight", "100"),
                ("PublishVpc", "false"),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_task_pending_at_sigkill_converges_after_restart_and_nothing_is_undone() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--task-duration", "0s"]);
    let mut c = server.client(Scheme::Acs3);
    let (gw, vco) = setup_gateway(&mut c, 0);
    create_route(&mut c, &gw, "10.0.0.0/24", &vco);
    assert_eq!(chosen_hop(&server, &gw, "10.0.0.5").as_deref(), Some(vco.as_str()));

    // A slow task: accepted, pending, then the process dies.
    server.args = vec!["--task-duration".into(), "2s".into()];
    server.kill9_and_restart();
    let mut c = server.client(Scheme::Acs3);
    create_route(&mut c, &gw, "10.0.1.0/24", &vco);
    let status = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    assert_eq!(status["Status"], "updating", "{status}");
    assert_eq!(status["PendingTasks"], 1, "{status}");
    assert_eq!(status["RoutesInForce"], 1, "{status}");
    server.kill9_and_restart();

    // After the restart: what was in force is in force again at once.
    let status = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    assert_eq!(
        chosen_hop(&server, &gw, "10.0.0.5").as_deref(),
        Some(vco.as_str()),
        "{status}"
    );
    // The pending change converges: the gateway becomes active with both routes in force.
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        let status = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
        if status["Status"] == "active" {
            break status;
        }
        assert!(status["Status"] == "updating", "{status}");
        assert!(Instant::now() < deadline, "gateway did not converge: {status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["InSync"], true, "{status}");
    assert_eq!(status["PendingTasks"], 0, "{status}");
    assert_eq!(status["RoutesInForce"], 2, "{status}");
    assert_eq!(status["DesiredVersion"], status["AppliedVersion"], "{status}");
    assert_eq!(status["ReconcileAttempts"], 0, "{status}");
    assert!(status["LastReconcileError"].is_null(), "{status}");
    assert_eq!(chosen_hop(&server, &gw, "10.0.0.5").as_deref(), Some(vco.as_str()));
    assert_eq!(chosen_hop(&server, &gw, "10.0.1.5").as_deref(), Some(vco.as_str()));

    let text = server
        .operator_request("GET", "/metrics", Some(common::OPERATOR_TOKEN))
        .body;
    assert!(text.contains("vpnroute_reconcile_failures_total 0"), "{text}");
}

/// CreateVpnConnection is asynchronous (issue 15, as Alibaba documents): the gateway is
/// `updating` until the connection's version is in force, and a concurrent change gets the busy
/// code. The operator's tunnel switch reaches the data plane without making the gateway busy.
#[test]
fn connection_changes_reach_the_data_plane() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--task-duration", "3s"]);
    let mut c = server.client(Scheme::Acs3);
    let (gw, vco) = setup_gateway(&mut c, 0);
    let status = |server: &Server| server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    while status(&server)["Status"] != "active" {
        assert!(Instant::now() < deadline, "gateway stayed busy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = status(&server);
    let r = c
        .call(
            "CreateCustomerGateway",
            &[("RegionId", "cn-hangzhou"), ("IpAddress", "1.2.3.200")],
        )
        .unwrap();
    let cgw = r.json()["CustomerGatewayId"].as_str().unwrap().to_string();
    let r = c
        .call(
            "CreateVpnConnection",
            &[
                ("RegionId", "cn-hangzhou"),
                ("VpnGatewayId", gw.as_str()),
                ("CustomerGatewayId", cgw.as_str()),
                ("LocalSubnet", "192.168.1.0/24"),
                ("RemoteSubnet", "10.1.0.0/16"),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let after = status(&server);
    assert_eq!(after["Status"], "updating", "{after}");
    assert_eq!(
        after["DesiredVersion"].as_i64().unwrap(),
        before["DesiredVersion"].as_i64().unwrap() + 1,
        "{after}"
    );
    let busy = c
        .call(
            "DeleteVpnConnection",
            &[("RegionId", "cn-hangzhou"), ("VpnConnectionId", vco.as_str())],
        )
        .unwrap();
    assert_eq!(busy.code().as_deref(), Some("VpnGateway.Configuring"), "{}", busy.body);
    let r = server.operator_request(
        "POST",
        &format!("/_vpnroute/gateways/{gw}/advance"),
        Some(common::OPERATOR_TOKEN),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(15);
    let settled = loop {
        let s = status(&server);
        if s["Status"] == "active" {
            break s;
        }
        assert!(Instant::now() < deadline, "gateway did not converge: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(settled["AppliedVersion"], settled["DesiredVersion"], "{settled}");
    assert_eq!(settled["PendingTasks"], 0, "{settled}");

    // The tunnel switch: a new version at once, in force without a busy state.
    let r = server.operator_request(
        "PUT",
        &format!("/_vpnroute/connections/{vco}/tunnel?state=down"),
        Some(common::OPERATOR_TOKEN),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = status(&server);
        assert_eq!(s["Status"], "active", "{s}");
        if s["AppliedVersion"] == s["DesiredVersion"]
            && s["DesiredVersion"].as_i64().unwrap() == settled["DesiredVersion"].as_i64().unwrap() + 1
        {
            break;
        }
        assert!(Instant::now() < deadline, "tunnel switch not in force: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn delete_route(c: &mut vpnroute_client::Client, gw: &str, dest: &str, hop: &str) {
    let r = c
        .call(
            "DeleteVpnRouteEntry",
            &[
                ("RegionId", "cn-hangzhou"),
                ("VpnGatewayId", gw),
                ("RouteDest", dest),
                ("NextHop", hop),
                ("Weight", "100"),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A route change due at once on the `sim` is recorded as applied by its own transaction
/// (docs/compatibility.md §4.6, "route change recorded at once"): every answer finds its change
/// in force, no task or record is left behind, the versions move together, and after kill -9
/// the restarted server has exactly the recorded routes in force.
#[test]
fn route_changes_due_at_once_are_in_force_when_answered_and_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--task-duration", "0s"]);
    let mut c = server.client(Scheme::Acs3);
    let (gw, vco) = setup_gateway(&mut c, 0);
    let before = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    let v0 = before["DesiredVersion"].as_i64().unwrap();
    for i in 0..20 {
        let dest = format!("10.0.{i}.0/24");
        create_route(&mut c, &gw, &dest, &vco);
        assert_eq!(
            chosen_hop(&server, &gw, &format!("10.0.{i}.7")).as_deref(),
            Some(vco.as_str()),
            "route {i} in force when its create was answered"
        );
        if i % 2 == 1 {
            delete_route(&mut c, &gw, &dest, &vco);
            assert_eq!(
                chosen_hop(&server, &gw, &format!("10.0.{i}.7")),
                None,
                "route {i} gone when answered"
            );
        }
    }
    let status = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    assert_eq!(status["Status"], "active", "{status}");
    assert_eq!(status["PendingTasks"], 0, "{status}");
    assert_eq!(status["InSync"], true, "{status}");
    assert_eq!(status["RoutesInForce"], 10, "{status}");
    assert_eq!(status["DesiredVersion"], status["AppliedVersion"], "{status}");
    assert_eq!(
        status["AppliedVersion"].as_i64().unwrap(),
        v0 + 30,
        "one version per change: {status}"
    );

    server.kill9_and_restart();
    let status = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    assert_eq!(status["RoutesInForce"], 10, "{status}");
    assert_eq!(status["AppliedVersion"].as_i64().unwrap(), v0 + 30, "{status}");
    for i in 0..20 {
        let want = (i % 2 == 0).then(|| vco.clone());
        assert_eq!(
            chosen_hop(&server, &gw, &format!("10.0.{i}.7")),
            want,
            "route {i} after restart"
        );
    }
}
