//! `vpnroute bench --scenario scale-routes|scale-gateways`: how create and Describe latency
//! evolve as one gateway's table, or the number of gateways, grows. Reports the latency of
//! the first 100 creates against the last 100 and Describe page latency (first and last
//! page) at the start against the end. Run the server with `--task-duration 0s` and raised
//! quotas (see BENCHMARKS.md).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use vpnroute_client::{Client, Scheme};

use crate::bench::{creds, BenchArgs, Scenario};

fn call(c: &mut Client, action: &str, params: &[(&str, &str)]) -> anyhow::Result<Value> {
    let r = c
        .call(action, params)
        .with_context(|| format!("{action}: connection"))?;
    if r.status != 200 {
        bail!("{action}: {} {}", r.status, r.body);
    }
    Ok(r.json())
}

/// Mean and percentiles (ms) of a set of latencies in µs.
fn summary(lat: &[u64]) -> Value {
    if lat.is_empty() {
        return json!(null);
    }
    let mut v = lat.to_vec();
    v.sort_unstable();
    let p = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    let mean = v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0;
    json!({"n": v.len(), "mean_ms": mean, "p50_ms": p(0.5), "p99_ms": p(0.99)})
}

fn mean_ms(lat: &[u64]) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0
}

/// Latency of `n` repetitions of one call.
fn time_calls(c: &mut Client, n: usize, action: &str, params: &[(&str, &str)]) -> anyhow::Result<Value> {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        call(c, action, params)?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    Ok(summary(&lat))
}

fn describe_pages(c: &mut Client, gw: &str, total: usize) -> anyhow::Result<Value> {
    let last = total.div_ceil(50).max(1).to_string();
    let first = time_calls(
        c,
        20,
        "DescribeVpnRouteEntries",
        &[
            ("RegionId", "cn-hangzhou"),
            ("VpnGatewayId", gw),
            ("PageSize", "50"),
            ("PageNumber", "1"),
        ],
    )?;
    let last = time_calls(
        c,
        20,
        "DescribeVpnRouteEntries",
        &[
            ("RegionId", "cn-hangzhou"),
            ("VpnGatewayId", gw),
            ("PageSize", "50"),
            ("PageNumber", &last),
        ],
    )?;
    Ok(json!({"first_page": first, "last_page": last}))
}

/// Run `count` creates over `workers` threads; `make(i)` gives the action and params of the
/// i-th; returns latency (µs) indexed by i.
fn run_indexed<F>(args: &BenchArgs, count: usize, make: F) -> anyhow::Result<Vec<u64>>
where
    F: Fn(usize) -> (String, Vec<(String, String)>) + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(vec![0u64; count]));
    let make = Arc::new(make);
    let mut handles = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (next, lat, make) = (next.clone(), lat.clone(), make.clone());
        let mut c = Client::new(args.target, creds(args), Scheme::V1);
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(());
                }
                let (action, params) = make(i);
                let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let t = Instant::now();
                call(&mut c, &action, &p)?;
                lat.lock().unwrap_or_else(|e| e.into_inner())[i] = t.elapsed().as_micros() as u64;
            }
        }));
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let v = lat.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(v)
}

fn dest_for(i: usize) -> String {
    format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

fn route_params(gw: &str, vco: &str, dest: String) -> Vec<(String, String)> {
    vec![
        ("RegionId".into(), "cn-hangzhou".into()),
        ("VpnGatewayId".into(), gw.into()),
        ("RouteDest".into(), dest),
        ("NextHop".into(), vco.into()),
        ("Weight".into(), "100".into()),
        ("PublishVpc".into(), "false".into()),
    ]
}

/// One gateway growing to `--routes` routes.
fn scale_routes(args: &BenchArgs) -> anyhow::Result<Value> {
    let mut setup_args = args.clone();
    setup_args.gateways = 1;
    setup_args.scenario = Scenario::CreateDelete; // setup without pre-created routes
    let gws = crate::bench::setup(&setup_args)?;
    let (gw, vco) = gws[0].clone();
    let n = args.routes.max(200);
    let mut c = Client::new(args.target, creds(args), Scheme::V1);
    let started = Instant::now();
    let (g1, v1) = (gw.clone(), vco.clone());
    let first = run_indexed(args, 100, move |i| {
        ("CreateVpnRouteEntry".into(), route_params(&g1, &v1, dest_for(i)))
    })?;
    let describe_start = describe_pages(&mut c, &gw, 100)?;
    let (g2, v2) = (gw.clone(), vco.clone());
    let rest = run_indexed(args, n - 100, move |i| {
        ("CreateVpnRouteEntry".into(), route_params(&g2, &v2, dest_for(i + 100)))
    })?;
    let describe_end = describe_pages(&mut c, &gw, n)?;
    let last = &rest[rest.len() - 100..];
    Ok(json!({
        "scenario": "scale-routes",
        "routes": n,
        "seconds": started.elapsed().as_secs_f64(),
        "create_first_100": summary(&first),
        "create_last_100": summary(last),
        "create_ratio_last_to_first": mean_ms(last) / mean_ms(&first).max(1e-9),
        "describe_at_100_routes": describe_start,
        "describe_at_end": describe_end,
    }))
}

/// `--gateways` gateways with `--routes` routes each.
fn scale_gateways(args: &BenchArgs) -> anyhow::Result<Value> {
    let g = args.gateways.max(200);
    let per = args.routes.max(1);
    let mut c = Client::new(args.target, creds(args), Scheme::V1);
    let cgw = call(
        &mut c,
        "CreateCustomerGateway",
        &[("RegionId", "cn-hangzhou"), ("IpAddress", "203.0.113.7")],
    )?;
    let cgw = cgw["CustomerGatewayId"].as_str().unwrap_or_default().to_string();
    let started = Instant::now();
    // Each item: VPC + gateway + connection (the latency recorded is the whole chain).
    let created: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(vec![(String::new(), String::new()); g]));
    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(vec![0u64; g]));
    let mut handles = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (next, lat, created, cgw) = (next.clone(), lat.clone(), created.clone(), cgw.clone());
        let mut c = Client::new(args.target, creds(args), Scheme::V1);
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= g {
                    return Ok(());
                }
                let vpc = call(
                    &mut c,
                    "CreateVpc",
                    &[("RegionId", "cn-hangzhou"), ("CidrBlock", "192.168.0.0/16")],
                )?;
                let vpc = vpc["VpcId"].as_str().unwrap_or_default().to_string();
                let t = Instant::now();
                let gw = call(
                    &mut c,
                    "CreateVpnGateway",
                    &[("RegionId", "cn-hangzhou"), ("VpcId", &vpc), ("Bandwidth", "10")],
                )?;
                lat.lock().unwrap_or_else(|e| e.into_inner())[i] = t.elapsed().as_micros() as u64;
                let gw = gw["VpnGatewayId"].as_str().unwrap_or_default().to_string();
                let vco = call(
                    &mut c,
                    "CreateVpnConnection",
                    &[
                        ("RegionId", "cn-hangzhou"),
                        ("VpnGatewayId", &gw),
                        ("CustomerGatewayId", &cgw),
                        ("LocalSubnet", "192.168.0.0/24"),
                        ("RemoteSubnet", "10.0.0.0/8"),
                    ],
                )?;
                let vco = vco["VpnConnectionId"].as_str().unwrap_or_default().to_string();
                created.lock().unwrap_or_else(|e| e.into_inner())[i] = (gw, vco);
            }
        }));
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let gateway_lat = lat.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let created = Arc::new(created.lock().unwrap_or_else(|e| e.into_inner()).clone());
    let c2 = created.clone();
    let route_lat = run_indexed(args, g * per, move |i| {
        let (gw, vco) = &c2[i / per];
        ("CreateVpnRouteEntry".into(), route_params(gw, vco, dest_for(i % per)))
    })?;
    let last_page = g.div_ceil(50).to_string();
    let gw_first_page = time_calls(
        &mut c,
        20,
        "DescribeVpnGateways",
        &[("RegionId", "cn-hangzhou"), ("PageSize", "50")],
    )?;
    let gw_last_page = time_calls(
        &mut c,
        20,
        "DescribeVpnGateways",
        &[
            ("RegionId", "cn-hangzhou"),
            ("PageSize", "50"),
            ("PageNumber", &last_page),
        ],
    )?;
    let first_gw = created[0].0.clone();
    let last_gw = created[g - 1].0.clone();
    Ok(json!({
        "scenario": "scale-gateways",
        "gateways": g,
        "routes_per_gateway": per,
        "seconds": started.elapsed().as_secs_f64(),
        "create_gateway_first_100": summary(&gateway_lat[..100]),
        "create_gateway_last_100": summary(&gateway_lat[g - 100..]),
        "create_gateway_ratio_last_to_first": mean_ms(&gateway_lat[g - 100..]) / mean_ms(&gateway_lat[..100]).max(1e-9),
        "create_route_first_100": summary(&route_lat[..100]),
        "create_route_last_100": summary(&route_lat[route_lat.len() - 100..]),
        "create_route_ratio_last_to_first": mean_ms(&route_lat[route_lat.len() - 100..]) / mean_ms(&route_lat[..100]).max(1e-9),
        "describe_gateways_first_page": gw_first_page,
        "describe_gateways_last_page": gw_last_page,
        "describe_routes_first_gateway": describe_pages(&mut c, &first_gw, per)?,
        "describe_routes_last_gateway": describe_pages(&mut c, &last_gw, per)?,
    }))
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let out = match args.scenario {
        Scenario::ScaleRoutes => scale_routes(args)?,
        Scenario::ScaleGateways => scale_gateways(args)?,
        _ => bail!("not a scale scenario"),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
