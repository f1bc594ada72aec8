//! Benchmarks of the Linux data plane, each against its baseline measured in the same run
//! (root only; namespaces carry a unique prefix and are deleted afterwards):
//!
//! * `program`: putting N destination routes and N policy routes in force with `apply`
//!   (read back, diff, write, verify) against `ip -batch` writing the same routes (and, for
//!   policy routes, one `ip rule` each) into a bare namespace;
//! * `throughput`: iperf3 TCP from a VPC host through the gateway to a site, with 10 and with
//!   N policy routes, in policy mode `rules` and `nftables`;
//! * `failover`: health check Interval 1 s, Retry 3; a site's underlay is cut while a host
//!   pings through an active/standby pair: time until the standby's site sees the traffic,
//!   and the time the kernel took to follow the detection.
//!
//! `vpnroute-dataplane-bench [program|throughput|failover|all] [--routes N] [--seconds S]`
//! prints one JSON object per scenario.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vpnroute_dataplane::{DataPlane, GatewaySpec, RouteSpec};
use vpnroute_dataplane_linux::lab::*;
use vpnroute_dataplane_linux::PolicyMode;

const REPEATS: usize = 3;

fn main() {
    let args = BenchArgs::from_env();
    let what = args.what.as_str();
    let flag = |name: &str, default: usize| args.flag(name, default);
    let routes = flag("--routes", 10_000);
    let seconds = flag("--seconds", 3);
    if !ready("vpnroute-dataplane-bench") {
        std::process::exit(2);
    }
    install_missing(&[("iperf3", "iperf3")]);
    if what == "all" || what == "program" {
        println!("{}", program(routes));
    }
    if what == "all" || what == "throughput" {
        println!("{}", throughput(routes, seconds));
    }
    if what == "all" || what == "failover" {
        println!("{}", failover());
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// The n-th distinct /24 outside the lab's other networks: 172.16.0.0/24, 172.16.1.0/24, …
fn nth_prefix(n: usize) -> String {
    format!("172.{}.{}.0/24", 16 + n / 256, n % 256)
}

fn destination_routes(n: usize) -> Vec<RouteSpec> {
    (0..n)
        .map(|i| dbr(i as u64 + 1, &nth_prefix(i), "vco-a", 100))
        .collect()
}

/// `n - 1` policy routes that a packet to 192.168.1.1 does not match (evaluated first), and
/// the one it matches, last.
fn policy_routes(n: usize) -> Vec<RouteSpec> {
    let mut routes: Vec<RouteSpec> = (0..n.saturating_sub(1))
        .map(|i| pbr(i as u64 + 1, VPC_CIDR, &nth_prefix(i), "vco-a", 100, (i % 99) as u8 + 1))
        .collect();
    routes.push(pbr(n as u64, VPC_CIDR, "192.168.1.0/24", "vco-a", 100, 100));
    routes
}

fn with_routes(base: &GatewaySpec, version: i64, routes: Vec<RouteSpec>) -> GatewaySpec {
    GatewaySpec {
        version,
        routes,
        ..base.clone()
    }
}

/// Times `ip -batch` of `lines` in a fresh namespace holding one veth pair named like a
/// tunnel (the routes' device), after `setup` lines.
fn ip_batch_baseline(prefix: &str, setup: &[String], lines: &[String]) -> f64 {
    let ns = format!("{prefix}base");
    let _ = vpnroute_dataplane_linux::kernel::delete_netns(&ns);
    ip(&["netns", "add", &ns]);
    ip(&["-n", &ns, "link", "add", "tun", "type", "veth", "peer", "name", "peer"]);
    ip(&["-n", &ns, "addr", "add", "169.254.0.0/31", "dev", "tun"]);
    ip(&["-n", &ns, "link", "set", "tun", "up"]);
    ip(&["-n", &ns, "link", "set", "peer", "up"]);
    vpnroute_dataplane_linux::kernel::batch(&ns, setup).expect("baseline setup");
    let started = Instant::now();
    vpnroute_dataplane_linux::kernel::batch(&ns, lines).expect("baseline batch");
    let took = ms(started);
    ip(&["netns", "del", &ns]);
    took
}

fn program(n: usize) -> Value {
    let lab = Lab::new(PolicyMode::Nftables, false);
    let base = spec(1, vec![connection("vco-a", "203.0.113.1")], vec![]);
    lab.dp().apply(&base).expect("topology");
    let mut version = 1;
    let mut timed_apply = |routes: &[RouteSpec]| {
        version += 1;
        lab.dp().apply(&with_routes(&base, version, vec![])).expect("empty");
        version += 1;
        let full = with_routes(&base, version, routes.to_vec());
        let started = Instant::now();
        lab.dp().apply(&full).expect("apply");
        let took = ms(started);
        assert!(lab.dp().observe(GATEWAY).unwrap().unwrap().in_sync);
        took
    };
    let (destination, policy) = (destination_routes(n), policy_routes(n));
    let route_lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "route replace {} via 169.254.0.1 dev tun onlink table 100",
                nth_prefix(i)
            )
        })
        .collect();
    let rule_lines: Vec<String> = policy
        .iter()
        .map(|r| {
            let pref = vpnroute_dataplane_linux::layout::policy_pref(r.priority, r.source.unwrap(), r.dest);
            format!(
                "rule add pref {pref} from {} to {} iif tun lookup 1000",
                r.source.unwrap(),
                r.dest
            )
        })
        .collect();
    let table_line = vec!["route replace default via 169.254.0.1 dev tun onlink table 1000".to_string()];
    // Interleaved, so that the machine's load varies alike for both sides.
    let mut samples: [Vec<f64>; 4] = Default::default();
    for _ in 0..REPEATS {
        samples[0].push(timed_apply(&destination));
        samples[1].push(ip_batch_baseline(&lab.prefix, &[], &route_lines));
        samples[2].push(timed_apply(&policy));
        samples[3].push(ip_batch_baseline(&lab.prefix, &table_line, &rule_lines));
    }
    let [ours_destination, base_destination, ours_policy, base_policy] = samples.map(median);
    json!({
        "scenario": "program",
        "routes": n,
        "destination": {"apply_ms": ours_destination, "ip_batch_ms": base_destination, "ratio": ours_destination / base_destination},
        "policy": {"apply_nftables_ms": ours_policy, "ip_batch_rules_ms": base_policy, "ratio": ours_policy / base_policy},
        "target": "apply at most 1.5x ip -batch",
    })
}

/// Kills a background process by its pid when dropped.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iperf(host: &str, site: &str, seconds: usize) -> f64 {
    let _server = Background(
        Command::new("ip")
            .args(["netns", "exec", site, "iperf3", "-s", "-1", "-B", "192.168.1.1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = Command::new("timeout")
        .args([
            &(seconds + 10).to_string(),
            "ip",
            "netns",
            "exec",
            host,
            "iperf3",
            "-J",
            "-c",
            "192.168.1.1",
        ])
        .args(["-t", &seconds.to_string()])
        .output()
        .expect("iperf3 client");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0)
}

fn throughput(n: usize, seconds: usize) -> Value {
    let mut results = serde_json::Map::new();
    for mode in [PolicyMode::Rules, PolicyMode::Nftables] {
        let lab = Lab::new(mode, false);
        let base = spec(1, vec![connection("vco-a", "203.0.113.1")], policy_routes(10));
        lab.dp().apply(&base).expect("apply");
        let host = lab.attach_host("h1", VPC_HOST);
        let site = lab.attach_site("sa", "vco-a", "203.0.113.1", &["192.168.1.1/32"]);
        // Interleaved 10 / n / 10 / n …: the machine's load varies alike for both.
        let mut samples: [Vec<f64>; 2] = Default::default();
        let mut version = 1;
        for _ in 0..REPEATS {
            for (i, count) in [10, n].into_iter().enumerate() {
                version += 1;
                lab.dp()
                    .apply(&with_routes(&base, version, policy_routes(count)))
                    .expect("apply");
                assert!(ping(&host, "192.168.1.1", 2), "path through the gateway");
                samples[i].push(iperf(&host, &site, seconds));
            }
        }
        let [small, large] = samples.map(median);
        let name = if mode == PolicyMode::Rules { "rules" } else { "nftables" };
        results.insert(
            name.into(),
            json!({"gbit_s_10_routes": small / 1e9, "gbit_s_many_routes": large / 1e9, "ratio": large / small}),
        );
    }
    json!({
        "scenario": "throughput",
        "routes": n,
        "seconds": seconds,
        "repeats": REPEATS,
        "modes": results,
        "target": "nftables ratio >= 0.5",
    })
}

fn failover() -> Value {
    let lab = Lab::new(PolicyMode::Nftables, false);
    let mut a = connection("vco-a", "203.0.113.1");
    a.health_check = health_check("10.0.0.250", "192.168.100.1", 1, 3);
    let routes = vec![
        dbr(1, "192.168.50.0/24", "vco-a", 100),
        dbr(2, "192.168.50.0/24", "vco-b", 0),
    ];
    lab.dp()
        .apply(&spec(1, vec![a, connection("vco-b", "203.0.113.2")], routes))
        .expect("apply");
    let host = lab.attach_host("h1", VPC_HOST);
    let _site_a = lab.attach_site("sa", "vco-a", "203.0.113.1", &["192.168.100.1/32", "192.168.50.1/32"]);
    let site_b = lab.attach_site("sb", "vco-b", "203.0.113.2", &["192.168.50.1/32"]);
    assert!(ping(&host, "192.168.50.1", 2));
    std::thread::sleep(Duration::from_millis(1500));
    // 20 ms apart for at most 15 s.
    let _pinger = Background(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &host,
                "ping",
                "-q",
                "-i",
                "0.02",
                "-c",
                "750",
                "-W",
                "1",
                "192.168.50.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ping"),
    );
    std::thread::sleep(Duration::from_millis(200));
    let before = rx_packets(&site_b, "vx0");
    let cut = Instant::now();
    lab.set_site_underlay("sa", false);
    let moved = wait_for(Duration::from_secs(10), || rx_packets(&site_b, "vx0") > before + 2);
    let on_standby_ms = ms(cut);
    let switch = lab.details()["LastTunnelSwitch"].clone();
    json!({
        "scenario": "failover",
        "interval_s": 1,
        "retry": 3,
        "traffic_on_standby_after_ms": moved.then_some(on_standby_ms),
        "kernel_update_after_detection_ms": switch["KernelUpdateMs"],
        "target": "standby within 4000 ms of the cut; kernel within 50 ms of detection",
    })
}
