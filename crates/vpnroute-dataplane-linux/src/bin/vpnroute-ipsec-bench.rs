//! Benchmarks of the `ipsec` tunnel driver, each with its baseline in the same run (root
//! only; namespaces carry a unique prefix, every charon is stopped by its pid afterwards):
//!
//! * `setup`: tunnel setup time for 1 and N connections (default 50): from `apply` of a
//!   gateway with N new IPsec connections until every one reports `ipsec_sa_established`
//!   against a site whose charon answers them all (one underlay address per connection);
//! * `throughput`: iperf3 TCP from a VPC host to a site through one ESP tunnel
//!   (kernel-libipsec) against the unencrypted `plain` (VXLAN) driver;
//! * `failover`: active/standby connections, the active peer's charon killed while a VPC
//!   host pings: time until the standby carries the traffic (DPD settings of the driver);
//! * `dual-failover`: one dual-tunnel connection, the master's peer killed while a VPC host
//!   pings: time until the slave carries the traffic, against `failover` (two connections,
//!   active/standby routes) in the same run, samples interleaved.
//!
//! `vpnroute-ipsec-bench [setup|throughput|failover|dual-failover|all] [--connections N] [--seconds S]`
//! prints one JSON object per scenario.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vpnroute_dataplane::DataPlane;
use vpnroute_dataplane_linux::ipsec::lab::*;
use vpnroute_dataplane_linux::lab::*;
use vpnroute_dataplane_linux::PolicyMode;

const REPEATS: usize = 3;

fn main() {
    let args = BenchArgs::from_env();
    let what = args.what.as_str();
    let flag = |name: &str, default: usize| args.flag(name, default);
    let connections = flag("--connections", 50);
    let seconds = flag("--seconds", 5);
    if !ipsec_ready("vpnroute-ipsec-bench") {
        std::process::exit(2);
    }
    install_missing(&[("iperf3", "iperf3")]);
    if what == "all" || what == "setup" {
        println!("{}", setup(&[1, connections]));
    }
    if what == "all" || what == "throughput" {
        println!("{}", throughput(seconds));
    }
    if what == "all" || what == "failover" {
        println!("{}", failover());
    }
    if what == "all" || what == "dual-failover" {
        println!("{}", dual_failover());
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Connection `i`: customer gateway 203.0.113.(i+1) (198.51.100.x past 250), site network
/// 10.1.i.0/24 (10.2.… past 255).
fn nth(i: usize) -> (String, String, String) {
    let remote = if i < 250 {
        format!("203.0.113.{}", i + 1)
    } else {
        format!("198.51.100.{}", i - 249)
    };
    let net = format!("10.{}.{}.0/24", 1 + i / 256, i % 256);
    let host = format!("10.{}.{}.1", 1 + i / 256, i % 256);
    (remote, net, host)
}

fn setup(counts: &[usize]) -> Value {
    let mut results = Vec::new();
    for &n in counts {
        let lab_samples: Vec<(f64, f64)> = (0..REPEATS.min(if n > 10 { 1 } else { REPEATS }))
            .map(|_| setup_once(n))
            .collect();
        let apply = median(lab_samples.iter().map(|s| s.0).collect());
        let established = median(lab_samples.iter().map(|s| s.1).collect());
        results.push(json!({
            "connections": n,
            "runs": lab_samples.len(),
            "apply_ms": apply,
            "all_established_ms": established,
            "per_connection_ms": established / n as f64,
        }));
    }
    json!({"scenario": "setup", "results": results})
}

fn setup_once(n: usize) -> (f64, f64) {
    let mut lab = IpsecLab::new(false);
    lab.dp()
        .apply(&gateway_spec(vec![], vec![]))
        .expect("apply the empty gateway");
    let mut connections = Vec::new();
    let mut routes = Vec::new();
    let mut hosts = Vec::new();
    for i in 0..n {
        let (remote, net_text, host) = nth(i);
        let id = format!("vco-{i}");
        let mut c = ipsec_connection(&id, &remote, &format!("psk-{i}"));
        c.remote_subnets = vec![net(&net_text)];
        routes.push(dbr(i as u64 + 1, &net_text, &id, 100));
        connections.push((c, format!("psk-{i}")));
        hosts.push(host);
    }
    let host_refs: Vec<&str> = hosts.iter().map(String::as_str).collect();
    lab.attach_site_for("s", &connections, &host_refs);
    let mut spec = gateway_spec(connections.iter().map(|(c, _)| c.clone()).collect(), routes);
    spec.version = 2;
    let started = Instant::now();
    lab.dp().apply(&spec).expect("apply the connections");
    let apply_ms = started.elapsed().as_secs_f64() * 1e3;
    let ids: Vec<String> = (0..n).map(|i| format!("vco-{i}")).collect();
    let all_up = wait_for(Duration::from_secs(120), || {
        let details = lab.lab.details();
        ids.iter().all(|id| {
            details["Connections"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["VpnConnectionId"] == id.as_str() && c["TunnelLive"]["Status"] == "ipsec_sa_established")
        })
    });
    assert!(all_up, "not every tunnel came up within 120 s");
    (apply_ms, started.elapsed().as_secs_f64() * 1e3)
}

fn iperf(host: &str, site: &str, dest: &str, seconds: usize) -> f64 {
    let mut server = Command::new("ip")
        .args(["netns", "exec", site, "iperf3", "-s", "-1", "-B", dest])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("iperf3 server");
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
            dest,
        ])
        .args(["-t", &seconds.to_string()])
        .output()
        .expect("iperf3 client");
    let _ = server.kill();
    let _ = server.wait();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0)
}

fn throughput(seconds: usize) -> Value {
    let plain = {
        let lab = Lab::new(PolicyMode::Nftables, false);
        let spec = spec(
            1,
            vec![connection("vco-a", "203.0.113.1")],
            vec![dbr(1, SITE_NET, "vco-a", 100)],
        );
        lab.dp().apply(&spec).expect("apply");
        let host = lab.attach_host("h", VPC_HOST);
        let site = lab.attach_site("sa", "vco-a", "203.0.113.1", &[&format!("{SITE_HOST}/32")]);
        assert!(ping(&host, SITE_HOST, 2), "plain path through the gateway");
        iperf(&host, &site, SITE_HOST, seconds)
    };
    let esp = {
        let mut lab = IpsecLab::new(false);
        let a = ipsec_connection("vco-a", "203.0.113.1", "psk-a");
        lab.dp()
            .apply(&gateway_spec(vec![a.clone()], vec![dbr(1, SITE_NET, "vco-a", 100)]))
            .expect("apply");
        let host = lab.lab.attach_host("h", VPC_HOST);
        let site = lab.attach_site("sa", &a, "psk-a");
        assert!(lab.wait_status("vco-a", "ipsec_sa_established", Duration::from_secs(20)));
        assert!(ping(&host, SITE_HOST, 2), "ESP path through the gateway");
        iperf(&host, &site, SITE_HOST, seconds)
    };
    json!({
        "scenario": "throughput",
        "seconds": seconds,
        "plain_gbit_s": plain / 1e9,
        "esp_gbit_s": esp / 1e9,
        "esp_over_plain": esp / plain,
        "esp": "aes128-sha256 (CBC + HMAC), kernel-libipsec: userspace ESP, one TUN read/write per packet",
    })
}

fn failover() -> Value {
    let samples: Vec<f64> = (0..REPEATS).map(|_| failover_once()).collect();
    json!({
        "scenario": "failover",
        "samples_ms": samples,
        "median_ms": median(samples.clone()),
        "max_ms": samples.iter().cloned().fold(0.0, f64::max),
        "settings": "dpd_delay 1 s, retransmit_timeout 0.4 s x 3 (base 1.0); target <= 3000 ms",
    })
}

fn dual_failover() -> Value {
    let mut dual = Vec::new();
    let mut pair = Vec::new();
    for _ in 0..REPEATS {
        dual.push(dual_failover_once());
        pair.push(failover_once());
    }
    let (dual_median, pair_median) = (median(dual.clone()), median(pair.clone()));
    json!({
        "scenario": "dual-failover",
        "dual_samples_ms": dual,
        "dual_median_ms": dual_median,
        "dual_max_ms": dual.iter().cloned().fold(0.0, f64::max),
        "pair_samples_ms": pair,
        "pair_median_ms": pair_median,
        "dual_over_pair": dual_median / pair_median,
        "settings": "dpd_delay 1 s, retransmit_timeout 0.4 s x 3 (base 1.0) on both tunnels; target <= 3000 ms",
    })
}

/// Master and slave of one connection, each towards its own site charon; the master's
/// killed: time until a ping crosses the slave.
fn dual_failover_once() -> f64 {
    let mut lab = IpsecLab::new(false);
    let d = dual_connection("vco-d", "203.0.113.1", "203.0.113.2", ["psk-m", "psk-s"]);
    lab.dp()
        .apply(&gateway_spec(vec![d.clone()], vec![dbr(1, SITE_NET, "vco-d", 100)]))
        .expect("apply");
    let host = lab.lab.attach_host("h", VPC_HOST);
    lab.attach_tunnel_site("sm", &d, vpnroute_dataplane::TunnelRole::Master, "psk-m");
    lab.attach_tunnel_site("ss", &d, vpnroute_dataplane::TunnelRole::Slave, "psk-s");
    for tunnel in ["tun-vco-d-m", "tun-vco-d-s"] {
        assert!(lab.wait_tunnel_status(tunnel, "ipsec_sa_established", Duration::from_secs(20)));
    }
    assert!(wait_for(Duration::from_secs(5), || ping(&host, SITE_HOST, 1)));
    let pid = lab.sites[0].charon.running_pid().expect("the master site's charon");
    let stopped = Instant::now();
    sh("kill", &["-KILL", &pid.to_string()]);
    while stopped.elapsed() < Duration::from_secs(15) {
        if fast_ping(&host, SITE_HOST) {
            return stopped.elapsed().as_secs_f64() * 1e3;
        }
    }
    panic!("traffic never reached the slave tunnel");
}

fn failover_once() -> f64 {
    let mut lab = IpsecLab::new(false);
    let a = ipsec_connection("vco-a", "203.0.113.1", "psk-a");
    let b = ipsec_connection("vco-b", "203.0.113.2", "psk-b");
    let routes = vec![dbr(1, SITE_NET, "vco-a", 100), dbr(2, SITE_NET, "vco-b", 0)];
    lab.dp()
        .apply(&gateway_spec(vec![a.clone(), b.clone()], routes))
        .expect("apply");
    let host = lab.lab.attach_host("h", VPC_HOST);
    lab.attach_site("sa", &a, "psk-a");
    lab.attach_site("sb", &b, "psk-b");
    assert!(lab.wait_status("vco-a", "ipsec_sa_established", Duration::from_secs(20)));
    assert!(lab.wait_status("vco-b", "ipsec_sa_established", Duration::from_secs(20)));
    assert!(wait_for(Duration::from_secs(5), || ping(&host, SITE_HOST, 1)));
    let pid = lab.sites[0].charon.running_pid().expect("site A's charon");
    let stopped = Instant::now();
    sh("kill", &["-KILL", &pid.to_string()]);
    while stopped.elapsed() < Duration::from_secs(15) {
        if fast_ping(&host, SITE_HOST) {
            return stopped.elapsed().as_secs_f64() * 1e3;
        }
    }
    panic!("traffic never reached the standby");
}
