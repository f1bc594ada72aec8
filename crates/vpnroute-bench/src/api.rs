//! The API throughput scenarios of `vpnroute-bench`: signed requests like the real SDKs (v1
//! or ACS3, a fresh nonce and timestamp per request) against a running server over keep-alive
//! connections; reports throughput, latency percentiles and errors (text or JSON). Also the
//! flags and the setup calls (VPCs, gateways, connections, routes) the scale scenarios share.
//!
//! Scenarios:
//! * `health` — unsigned `GET /_vpnroute/health` (with the operator token): the HTTP stack's ceiling, the baseline the
//!   other scenarios are compared with in the same run (`--baseline`).
//! * `describe` — DescribeVpnRouteEntries and DescribeVpnGateway, alternating.
//! * `create-delete` — CreateVpnRouteEntry + DeleteVpnRouteEntry pairs spread over the
//!   gateways (run the server with `--task-duration 0s`).
//!
//! `--also-target` spreads the connections over several replicas of one service.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::json;
use vpnroute_client::{AsyncClient, Client, Credentials, Scheme};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Server address (setup calls go here).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub target: SocketAddr,
    /// More replicas of the same service (comma-separated): the load's connections are spread
    /// over `--target` and these, round-robin.
    #[arg(long, value_delimiter = ',')]
    pub also_target: Vec<SocketAddr>,
    #[arg(long, env = "VPNROUTE_ROOT_ACCESS_KEY_ID")]
    pub access_key_id: String,
    #[arg(long, env = "VPNROUTE_ROOT_ACCESS_KEY_SECRET")]
    pub access_key_secret: String,
    /// The server's operator token (the `health` scenario's endpoint needs it).
    #[arg(long, env = "VPNROUTE_OPERATOR_TOKEN", default_value = "", hide_env_values = true)]
    pub operator_token: String,
    #[arg(long, value_enum, default_value = "describe")]
    pub scenario: Scenario,
    /// Concurrent connections.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Threads of the load generator. One thread drives all connections by default: on a
    /// machine shared with the server, every core the generator occupies is taken from it.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// How long to measure.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Gateways to create and spread the load over.
    #[arg(long, default_value_t = 8)]
    pub gateways: usize,
    /// Routes to pre-create per gateway (describe scenario).
    #[arg(long, default_value_t = 20)]
    pub routes: usize,
    #[arg(long, value_enum, default_value = "mixed")]
    pub scheme: SchemeChoice,
    /// Also run the `health` baseline first and report the ratio.
    #[arg(long)]
    pub baseline: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// The replica connection `worker` goes to.
    pub fn target_for(&self, worker: usize) -> SocketAddr {
        let n = 1 + self.also_target.len();
        match worker % n {
            0 => self.target,
            i => self.also_target[i - 1],
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Health,
    Describe,
    CreateDelete,
    /// One gateway growing to `--routes` routes (see `scale`).
    ScaleRoutes,
    /// `--gateways` gateways with `--routes` routes each (see `scale`).
    ScaleGateways,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemeChoice {
    V1,
    Acs3,
    Mixed,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    latencies_us: Vec<u32>,
    create_latencies_us: Vec<u32>,
    errors: u64,
    error_codes: std::collections::BTreeMap<String, u64>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.latencies_us.extend(other.latencies_us);
        self.create_latencies_us.extend(other.create_latencies_us);
        self.errors += other.errors;
        for (k, v) in other.error_codes {
            *self.error_codes.entry(k).or_default() += v;
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

pub fn creds(args: &BenchArgs) -> Credentials {
    Credentials {
        access_key_id: args.access_key_id.clone(),
        access_key_secret: args.access_key_secret.clone(),
    }
}

fn scheme_for(choice: SchemeChoice, i: usize) -> Scheme {
    match choice {
        SchemeChoice::V1 => Scheme::V1,
        SchemeChoice::Acs3 => Scheme::Acs3,
        SchemeChoice::Mixed if i.is_multiple_of(2) => Scheme::V1,
        SchemeChoice::Mixed => Scheme::Acs3,
    }
}

/// One setup call: the answer's JSON. Retried while the gateway is busy (a change still
/// being applied); any other error ends the bench.
pub(crate) fn call(c: &mut Client, action: &str, params: &[(&str, &str)]) -> anyhow::Result<serde_json::Value> {
    loop {
        let r = c
            .call(action, params)
            .with_context(|| format!("{action}: connection"))?;
        match r.code().as_deref() {
            None if r.status == 200 => return Ok(r.json()),
            Some("VpnGateway.Configuring") | Some("TaskConflict") | Some("VpnTask.CONFLICT") => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => bail!("{action}: {} {}", r.status, r.body),
        }
    }
}

/// Create a resource; returns the id in field `id_field` of the answer.
pub(crate) fn create(c: &mut Client, action: &str, params: &[(&str, &str)], id_field: &str) -> anyhow::Result<String> {
    Ok(call(c, action, params)?[id_field]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

pub(crate) fn create_vpc(c: &mut Client) -> anyhow::Result<String> {
    create(
        c,
        "CreateVpc",
        &[("RegionId", "cn-hangzhou"), ("CidrBlock", "192.168.0.0/16")],
        "VpcId",
    )
}

pub(crate) fn create_gateway(c: &mut Client, vpc: &str) -> anyhow::Result<String> {
    create(
        c,
        "CreateVpnGateway",
        &[("RegionId", "cn-hangzhou"), ("VpcId", vpc), ("Bandwidth", "10")],
        "VpnGatewayId",
    )
}

pub(crate) fn create_customer_gateway(c: &mut Client, ip: &str) -> anyhow::Result<String> {
    create(
        c,
        "CreateCustomerGateway",
        &[("RegionId", "cn-hangzhou"), ("IpAddress", ip)],
        "CustomerGatewayId",
    )
}

pub(crate) fn create_connection(c: &mut Client, gw: &str, cgw: &str) -> anyhow::Result<String> {
    create(
        c,
        "CreateVpnConnection",
        &[
            ("RegionId", "cn-hangzhou"),
            ("VpnGatewayId", gw),
            ("CustomerGatewayId", cgw),
            ("LocalSubnet", "192.168.0.0/24"),
            ("RemoteSubnet", "10.0.0.0/8"),
        ],
        "VpnConnectionId",
    )
}

/// Parameters of CreateVpnRouteEntry (the first five also of DeleteVpnRouteEntry).
pub(crate) fn route_params<'a>(gw: &'a str, vco: &'a str, dest: &'a str) -> [(&'a str, &'a str); 6] {
    [
        ("RegionId", "cn-hangzhou"),
        ("VpnGatewayId", gw),
        ("RouteDest", dest),
        ("NextHop", vco),
        ("Weight", "100"),
        ("PublishVpc", "false"),
    ]
}

/// Create `n` gateways with one connection each (and `routes` routes each); returns
/// (gateway id, connection id) pairs.
pub fn setup(args: &BenchArgs) -> anyhow::Result<Vec<(String, String)>> {
    let mut c = Client::new(args.target, creds(args), Scheme::V1);
    let mut out = Vec::new();
    for _ in 0..args.gateways {
        let vpc = create_vpc(&mut c)?;
        let gw = create_gateway(&mut c, &vpc)?;
        // Random public addresses: customer gateway IPs are unique per account and region,
        // and the bench may run repeatedly against one server.
        let ip = {
            use rand::Rng;
            let mut r = rand::rng();
            format!(
                "{}.{}.{}.{}",
                r.random_range(1..=99),
                r.random_range(0..=255),
                r.random_range(0..=255),
                r.random_range(1..=254)
            )
        };
        let cgw = create_customer_gateway(&mut c, &ip)?;
        let vco = create_connection(&mut c, &gw, &cgw)?;
        if args.scenario == Scenario::Describe {
            for r in 0..args.routes {
                let dest = format!("10.{}.{}.0/24", r / 256, r % 256);
                call(&mut c, "CreateVpnRouteEntry", &route_params(&gw, &vco, &dest))?;
            }
        }
        out.push((gw, vco));
    }
    Ok(out)
}

async fn health_worker(addr: SocketAddr, operator_token: String, stop: Arc<AtomicBool>) -> Stats {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stats = Stats::default();
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        stats.errors += 1;
        return stats;
    };
    let _ = s.set_nodelay(true);
    let req =
        format!("GET /_vpnroute/health HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {operator_token}\r\n\r\n");
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        if s.write_all(req.as_bytes()).await.is_err() {
            stats.errors += 1;
            break;
        }
        buf.clear();
        loop {
            if let Some((resp, _)) = vpnroute_client::parse_response(&buf) {
                if resp.status != 200 {
                    stats.errors += 1;
                }
                break;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    stats.errors += 1;
                    return stats;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        stats
            .latencies_us
            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    stats
}

async fn api_worker(
    args: Arc<BenchArgs>,
    worker: usize,
    gateways: Arc<Vec<(String, String)>>,
    stop: Arc<AtomicBool>,
) -> Stats {
    let mut stats = Stats::default();
    let mut client = AsyncClient::new(args.target_for(worker), creds(&args), scheme_for(args.scheme, worker));
    let mut i: usize = 0;
    let record = |stats: &mut Stats, r: std::io::Result<vpnroute_client::Response>, t: Instant, create: bool| {
        let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        match r {
            Ok(resp) if resp.status == 200 => {
                stats.latencies_us.push(us);
                if create {
                    stats.create_latencies_us.push(us);
                }
            }
            Ok(resp) => {
                stats.errors += 1;
                *stats
                    .error_codes
                    .entry(resp.code().unwrap_or_else(|| resp.status.to_string()))
                    .or_default() += 1;
            }
            Err(e) => {
                stats.errors += 1;
                *stats.error_codes.entry(format!("io: {e}")).or_default() += 1;
            }
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let (gw, vco) = &gateways[(worker + i) % gateways.len()];
        match args.scenario {
            Scenario::Describe => {
                let t = Instant::now();
                let r = if i.is_multiple_of(2) {
                    client
                        .call(
                            "DescribeVpnRouteEntries",
                            &[("RegionId", "cn-hangzhou"), ("VpnGatewayId", gw)],
                        )
                        .await
                } else {
                    client
                        .call(
                            "DescribeVpnGateway",
                            &[("RegionId", "cn-hangzhou"), ("VpnGatewayId", gw)],
                        )
                        .await
                };
                record(&mut stats, r, t, false);
            }
            Scenario::CreateDelete => {
                // Each worker owns its destinations: 10.<worker>.<n>.0/24 style blocks.
                let dest = format!("10.{}.{}.{}/32", worker % 256, (i / 256) % 256, i % 256);
                let params = route_params(gw, vco, &dest);
                let t = Instant::now();
                let r = client.call("CreateVpnRouteEntry", &params).await;
                record(&mut stats, r, t, true);
                let t = Instant::now();
                let r = client.call("DeleteVpnRouteEntry", &params[..5]).await;
                record(&mut stats, r, t, false);
            }
            Scenario::Health | Scenario::ScaleRoutes | Scenario::ScaleGateways => {
                unreachable!("these scenarios have their own drivers")
            }
        }
        i += 1;
    }
    stats
}

struct Report {
    scenario: Scenario,
    elapsed: Duration,
    stats: Stats,
}

impl Report {
    fn throughput(&self) -> f64 {
        self.stats.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn to_json(&self) -> serde_json::Value {
        let mut lat = self.stats.latencies_us.clone();
        lat.sort_unstable();
        let mut create = self.stats.create_latencies_us.clone();
        create.sort_unstable();
        json!({
            "scenario": format!("{:?}", self.scenario),
            "seconds": self.elapsed.as_secs_f64(),
            "requests_ok": lat.len(),
            "errors": self.stats.errors,
            "error_codes": self.stats.error_codes,
            "requests_per_second": self.throughput(),
            "pairs_per_second": if self.scenario == Scenario::CreateDelete { self.throughput() / 2.0 } else { 0.0 },
            "latency_ms": {"p50": percentile(&lat, 0.50), "p99": percentile(&lat, 0.99), "p999": percentile(&lat, 0.999), "max": percentile(&lat, 1.0)},
            "create_latency_ms": {"p50": percentile(&create, 0.50), "p99": percentile(&create, 0.99), "p999": percentile(&create, 0.999)},
        })
    }
}

fn measure(args: &BenchArgs, scenario: Scenario, gateways: Arc<Vec<(String, String)>>) -> anyhow::Result<Report> {
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    let args = Arc::new(BenchArgs {
        scenario,
        ..args.clone()
    });
    rt.block_on(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut handles = Vec::new();
        for w in 0..args.concurrency {
            let stop = stop.clone();
            if scenario == Scenario::Health {
                handles.push(tokio::spawn(health_worker(
                    args.target_for(w),
                    args.operator_token.clone(),
                    stop,
                )));
            } else {
                handles.push(tokio::spawn(api_worker(args.clone(), w, gateways.clone(), stop)));
            }
        }
        tokio::time::sleep(args.duration).await;
        stop.store(true, Ordering::Relaxed);
        let mut stats = Stats::default();
        for h in handles {
            stats.merge(h.await.unwrap_or_default());
        }
        Ok(Report {
            scenario,
            elapsed: started.elapsed(),
            stats,
        })
    })
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if matches!(args.scenario, Scenario::ScaleRoutes | Scenario::ScaleGateways) {
        return crate::scale::run(&args);
    }
    let gateways = if args.scenario == Scenario::Health {
        vec![]
    } else {
        setup(&args)?
    };
    let gateways = Arc::new(gateways);
    let baseline = if args.baseline && args.scenario != Scenario::Health {
        Some(measure(&args, Scenario::Health, gateways.clone())?)
    } else {
        None
    };
    let report = measure(&args, args.scenario, gateways)?;
    let mut out = report.to_json();
    if let Some(b) = &baseline {
        out["baseline"] = b.to_json();
        out["ratio_to_baseline"] = json!(report.throughput() / b.throughput().max(1e-9));
    }
    out["concurrency"] = json!(args.concurrency);
    out["replicas"] = json!(1 + args.also_target.len());
    out["gateways"] = json!(args.gateways);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("scenario            {:?}", args.scenario);
        println!("requests ok         {}", out["requests_ok"]);
        println!("errors              {} {}", out["errors"], out["error_codes"]);
        println!("throughput          {:.0} req/s", report.throughput());
        if args.scenario == Scenario::CreateDelete {
            println!("pairs               {:.0} pairs/s", report.throughput() / 2.0);
            println!(
                "create latency      p50 {} ms  p99 {} ms  p99.9 {} ms",
                out["create_latency_ms"]["p50"], out["create_latency_ms"]["p99"], out["create_latency_ms"]["p999"]
            );
        }
        println!(
            "latency             p50 {} ms  p99 {} ms  p99.9 {} ms",
            out["latency_ms"]["p50"], out["latency_ms"]["p99"], out["latency_ms"]["p999"]
        );
        if let Some(b) = &baseline {
            println!(
                "baseline (health)   {:.0} req/s; ratio {:.3}",
                b.throughput(),
                out["ratio_to_baseline"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
