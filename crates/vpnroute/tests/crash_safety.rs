//! Crash safety: a stream of route changes while the server is killed with SIGKILL over a
//! hundred times at random moments (before, during or after commit and task application).
//! After the last restart every acknowledged change must be in force, no gateway may stay
//! `updating`, nothing is doubled and nothing unacknowledged appears.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{call_retrying, setup_gateway, Server};
use rand::Rng;
use vpnroute_client::Scheme;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Present,
    Absent,
    /// The request's answer was lost in a crash: either outcome is legal.
    Unknown,
}

const KILLS: usize = 110;
const GATEWAYS: usize = 3;
const DESTS: usize = 12;

#[test]
fn acknowledged_changes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--task-duration", "20ms", "--quota-dbr-routes", "100"]);
    let mut client = server.client(Scheme::V1);
    let gateways: Vec<(String, String)> = (0..GATEWAYS).map(|n| setup_gateway(&mut client, n)).collect();

    let mut model: HashMap<(usize, usize), Known> = HashMap::new();
    let mut rng = rand::rng();
    let mut acked = 0usize;
    // At least KILLS kills, and more (bounded) until enough changes were acknowledged to mean
    // anything: on a loaded machine a restart eats more of each round.
    for round in 0..4 * KILLS {
        if round >= KILLS && acked > 2 * KILLS {
            break;
        }
        // A killer fires at a random moment while requests are in flight.
        let pid = server.child.id();
        let delay = Duration::from_micros(rng.random_range(0..80_000));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status();
        });
        let mut client = server.client(if rng.random_bool(0.5) { Scheme::V1 } else { Scheme::Acs3 });
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let g = rng.random_range(0..GATEWAYS);
            let d = rng.random_range(0..DESTS);
            let (gw, vco) = &gateways[g];
            let dest = format!("10.{g}.{d}.0/24");
            let state = *model.get(&(g, d)).unwrap_or(&Known::Absent);
            let create = match state {
                Known::Absent => true,
                Known::Present => false,
                Known::Unknown => rng.random_bool(0.5),
            };
            let action = if create {
                "CreateVpnRouteEntry"
            } else {
                "DeleteVpnRouteEntry"
            };
            let mut params = vec![
                ("RegionId", "cn-hangzhou"),
                ("VpnGatewayId", gw.as_str()),
                ("RouteDest", dest.as_str()),
                ("NextHop", vco.as_str()),
                ("Weight", "100"),
            ];
            if create {
                params.push(("PublishVpc", "false"));
            }
            match call_retrying(&mut client, action, &params) {
                Err(_) => {
                    model.insert((g, d), Known::Unknown);
                    break; // the server is gone: restart it
                }
                Ok(r) => {
                    let now = match (r.status, r.code().as_deref()) {
                        (200, _) => {
                            acked += 1;
                            if create {
                                Known::Present
                            } else {
                                Known::Absent
                            }
                        }
                        (_, Some("VpnRouteEntry.AlreadyExists")) => Known::Present,
                        (_, Some("InvalidRouteEntry.NotFound")) => Known::Absent,
                        _ => panic!("unexpected answer to {action}: {} {}", r.status, r.body),
                    };
                    model.insert((g, d), now);
                }
            }
        }
        killer.join().unwrap();
        server.kill9_and_restart();
    }
    eprintln!("acknowledged changes: {acked}");
    assert!(
        acked > 2 * KILLS,
        "too few acknowledged changes ({acked}) to mean anything"
    );

    // Everything settles: gateways active, applied == desired.
    let mut client = server.client(Scheme::V1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = server.introspect("/_vpnroute/gateways");
        let all = status["VpnGateways"].as_array().unwrap();
        if all.iter().all(|g| g["Status"] == "active" && g["InSync"] == true) {
            break;
        }
        assert!(Instant::now() < deadline, "gateways did not settle: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (g, (gw, vco)) in gateways.iter().enumerate() {
        let r = client
            .call(
                "DescribeVpnRouteEntries",
                &[("RegionId", "cn-hangzhou"), ("VpnGatewayId", gw), ("PageSize", "50")],
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json();
        let entries = body["VpnRouteEntries"]["VpnRouteEntry"].as_array().unwrap().clone();
        let listed: Vec<String> = entries
            .iter()
            .map(|e| e["RouteDest"].as_str().unwrap().to_string())
            .collect();
        let mut unique = listed.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "duplicated routes on {gw}: {listed:?}");
        for e in &entries {
            assert_eq!(e["NextHop"], vco.as_str());
        }
        for d in 0..DESTS {
            let dest = format!("10.{g}.{d}.0/24");
            let present = listed.contains(&dest);
            match model.get(&(g, d)).copied().unwrap_or(Known::Absent) {
                Known::Present => assert!(present, "acknowledged route {dest} on {gw} lost"),
                Known::Absent => assert!(
                    !present,
                    "route {dest} on {gw} present though its deletion was acknowledged or it was never created"
                ),
                Known::Unknown => {}
            }
        }
        // What is in force equals what the API lists.
        let status = server.introspect(&format!("/_vpnroute/gateways/{gw}"));
        assert_eq!(
            status["RoutesInForce"].as_u64().unwrap() as usize,
            listed.len(),
            "{status}"
        );
    }
}
