//! `vpnroute-bench --scenario scale-routes|scale-gateways`: how create and Describe latency
//! evolve as one gateway's table, or the number of gateways, grows. Reports the latency of
//! the first 100 creates against the last 100 and Describe page latency (first and last
//! page) at the start against the end. Run the server with `--task-duration 0s` and raised
//! quotas (see BENCHMARKS.md).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::bail;
use serde_json::{json, Value};
use vpnroute_client::{Client, Scheme};

use crate::api::{
    call, create_connection, create_customer_gateway, create_gateway, create_vpc, creds, route_params, BenchArgs,
    Scenario,
};

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
    let lat = (0..n)
        .map(|_| timed_call(c, action, params))
        .collect::<anyhow::Result<Vec<_>>>()?;
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

/// Run `count` items over `--concurrency` threads, each with its own client. `item(client, i)`
/// does the i-th and returns its latency (µs) and result; both come back indexed by i.
fn run_indexed<T, F>(args: &BenchArgs, count: usize, item: F) -> anyhow::Result<Vec<(u64, T)>>
where
    T: Default + Clone + Send + 'static,
    F: Fn(&mut Client, usize) -> anyhow::Result<(u64, T)> + Send + Sync + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(Mutex::new(vec![(0u64, T::default()); count]));
    let item = Arc::new(item);
    let mut handles = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (next, done, item) = (next.clone(), done.clone(), item.clone());
        let mut c = Client::new(args.target, creds(args), Scheme::V1);
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok(());
                }
                let result = item(&mut c, i)?;
                done.lock().unwrap_or_else(|e| e.into_inner())[i] = result;
            }
        }));
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    let v = done.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(v)
}

/// Latency (µs) of one call.
fn timed_call(c: &mut Client, action: &str, params: &[(&str, &str)]) -> anyhow::Result<u64> {
    let t = Instant::now();
    call(c, action, params)?;
    Ok(t.elapsed().as_micros() as u64)
}

fn latencies<T>(items: &[(u64, T)]) -> Vec<u64> {
    items.iter().map(|(us, _)| *us).collect()
}

fn dest_for(i: usize) -> String {
    format!("10.{}.{}.{}/32", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// Create the route `dest_for(i)` on `gw` via `vco`: its latency (µs).
fn create_route(c: &mut Client, gw: &str, vco: &str, i: usize) -> anyhow::Result<(u64, ())> {
    let dest = dest_for(i);
    Ok((timed_call(c, "CreateVpnRouteEntry", &route_params(gw, vco, &dest))?, ()))
}

/// One gateway growing to `--routes` routes.
fn scale_routes(args: &BenchArgs) -> anyhow::Result<Value> {
    let mut setup_args = args.clone();
    setup_args.gateways = 1;
    setup_args.scenario = Scenario::CreateDelete; // setup without pre-created routes
    let gws = crate::api::setup(&setup_args)?;
    let (gw, vco) = gws[0].clone();
    let n = args.routes.max(200);
    let mut c = Client::new(args.target, creds(args), Scheme::V1);
    let started = Instant::now();
    let (g1, v1) = (gw.clone(), vco.clone());
    let first = latencies(&run_indexed(args, 100, move |c, i| create_route(c, &g1, &v1, i))?);
    let describe_start = describe_pages(&mut c, &gw, 100)?;
    let (g2, v2) = (gw.clone(), vco.clone());
    let rest = latencies(&run_indexed(args, n - 100, move |c, i| {
        create_route(c, &g2, &v2, i + 100)
    })?);
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
    let cgw = create_customer_gateway(&mut c, "203.0.113.7")?;
    let started = Instant::now();
    // Each item: VPC + gateway + connection; the latency recorded is the gateway's create.
    let created = run_indexed(args, g, move |c, _| {
        let vpc = create_vpc(c)?;
        let t = Instant::now();
        let gw = create_gateway(c, &vpc)?;
        let us = t.elapsed().as_micros() as u64;
        let vco = create_connection(c, &gw, &cgw)?;
        Ok((us, (gw, vco)))
    })?;
    let gateway_lat = latencies(&created);
    let created: Arc<Vec<(String, String)>> = Arc::new(created.into_iter().map(|(_, ids)| ids).collect());
    let c2 = created.clone();
    let route_lat = latencies(&run_indexed(args, g * per, move |c, i| {
        let (gw, vco) = &c2[i / per];
        create_route(c, gw, vco, i % per)
    })?);
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
