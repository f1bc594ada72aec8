//! Several `vpnroute serve` replicas on one PostgreSQL database behave as one service
//! (issue 11): conflicting creates racing on different replicas (exactly one wins), a
//! SignatureNonce refused by every replica (also after they all restarted), a ClientToken
//! replayed on another replica, throttling counted across replicas, every replica's data
//! plane following the others' records promptly (`explain`), and `kill -9` of replicas during
//! a stream of route changes, after which the acknowledged history is checked on every
//! replica.
//!
//! Each test creates its own database (`vpnroute_r_<random>`) on 127.0.0.1:5432 (user
//! postgres, trust auth) and drops it at the end. Without PostgreSQL the tests print
//! `SKIPPED: …` and pass — or fail when the environment variable `CI` is set.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{setup_gateway, Server, AK, SK};
use rand::Rng;
use serde_json::Value;
use vpnroute_client::{build_request, Client, Credentials, Response, Scheme};

const PG: &str = "127.0.0.1:5432";

/// A database of this test's own, dropped when the guard goes (even when the test fails).
/// One test of this file at a time: each runs two or three replicas, up to ~27 connections
/// each (docs/compatibility.md §7.1 "pools"), and PostgreSQL's default `max_connections` is
/// 100 (three tests at once ran out of connections while killed replicas' sessions ended).
struct Database {
    name: String,
    _turn: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn psql(sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-q",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl Database {
    /// A fresh database, or `None` (after saying SKIPPED) when PostgreSQL is unreachable
    /// outside CI.
    fn create() -> Option<Database> {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let reachable = PG
            .parse::<SocketAddr>()
            .ok()
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).ok())
            .is_some();
        let name = format!("vpnroute_r_{:016x}", rand::rng().random::<u64>());
        let created = if reachable {
            psql(&format!("CREATE DATABASE \"{name}\""))
        } else {
            Err(format!("nothing answers on {PG}"))
        };
        match created {
            Ok(()) => Some(Database { name, _turn: turn }),
            Err(e) if std::env::var_os("CI").is_some() => panic!("PostgreSQL unavailable (CI is set): {e}"),
            Err(e) => {
                eprintln!("SKIPPED: replica tests need PostgreSQL on {PG} (user postgres, trust auth): {e}");
                None
            }
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@{PG}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = psql(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)) {
            eprintln!("warning: dropping test database {}: {e}", self.name);
        }
    }
}

/// Replicas on one database, each with a data directory (and log) of its own. Declared
/// before the database guard in a test, so the servers are gone before it is dropped.
struct Replicas {
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
}

impl Replicas {
    fn start(db: &Database, n: usize, extra: &[&str]) -> Replicas {
        let dir = tempfile::tempdir().unwrap();
        let url = db.url();
        let servers = (0..n)
            .map(|i| {
                let data = dir.path().join(format!("replica-{i}"));
                std::fs::create_dir_all(&data).unwrap();
                let mut args = vec!["--store", url.as_str()];
                args.extend_from_slice(extra);
                Server::start_logging(&data, &args, &dir.path().join(format!("replica-{i}.log")))
            })
            .collect();
        Replicas { servers, _dir: dir }
    }

    fn client(&self, i: usize) -> Client {
        self.servers[i].client(if i.is_multiple_of(2) { Scheme::V1 } else { Scheme::Acs3 })
    }

    /// The tail of every replica's log (for failure messages).
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.servers.iter().enumerate() {
            let text = s
                .stderr
                .as_deref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            let metrics = TcpStream::connect_timeout(&s.addr, Duration::from_secs(1))
                .ok()
                .map(|_| s.operator_request("GET", "/metrics", Some(common::OPERATOR_TOKEN)).body)
                .unwrap_or_default();
            let reconcile: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("vpnroute_reconcile") || l.starts_with("vpnroute_gateway"))
                .collect();
            out.push_str(&format!(
                "\n--- replica {i}: {} ---\n--- replica {i} log (tail) ---\n{tail}\n",
                reconcile.join(", ")
            ));
        }
        out
    }
}

fn ok(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Send prepared request bytes to `addr` on a connection of their own.
fn send_raw(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some((r, _)) = vpnroute_client::parse_response(&buf) {
            return r;
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before a response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn root() -> Credentials {
    Credentials {
        access_key_id: AK.into(),
        access_key_secret: SK.into(),
    }
}

/// The codes a client retries (the gateway busy with a task, the store busy).
fn busy(r: &Response) -> bool {
    matches!(
        r.code().as_deref(),
        Some("VpnGateway.Configuring" | "TaskConflict" | "VpnTask.CONFLICT" | "ServiceUnavailable")
    )
}

/// Call, retrying busy answers until `deadline`; `None`: the connection failed (the replica
/// is gone), or still busy at the deadline (nothing was done).
fn call_until(c: &mut Client, action: &str, params: &[(&str, &str)], deadline: Instant) -> Option<Response> {
    loop {
        let r = c.call(action, params).ok()?;
        if !busy(&r) {
            return Some(r);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a replica lists: DBR and PBR routes of a gateway, in a canonical order.
fn listed_routes(c: &mut Client, gw: &str) -> (Vec<Value>, Vec<Value>) {
    let canon = |mut v: Vec<Value>| {
        v.sort_by_key(|e| e.to_string());
        v
    };
    let r = c
        .call(
            "DescribeVpnRouteEntries",
            &[("RegionId", "cn-hangzhou"), ("VpnGatewayId", gw), ("PageSize", "50")],
        )
        .unwrap();
    let dbr = ok(&r)["VpnRouteEntries"]["VpnRouteEntry"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let r = c
        .call(
            "DescribeVpnPbrRouteEntries",
            &[("RegionId", "cn-hangzhou"), ("VpnGatewayId", gw), ("PageSize", "50")],
        )
        .unwrap();
    let pbr = ok(&r)["VpnPbrRouteEntries"]["VpnPbrRouteEntry"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (canon(dbr), canon(pbr))
}

/// What `explain` answers for a packet (the data plane's decision and the versions).
fn explain(s: &Server, gw: &str, source: &str, dest: &str) -> Value {
    let v = s.introspect(&format!("/_vpnroute/gateways/{gw}/explain?source={source}&dest={dest}"));
    serde_json::json!({
        "Explanation": v["Explanation"],
        "ChosenTunnel": v["ChosenTunnel"],
        "AppliedVersion": v["AppliedVersion"],
    })
}

/// Wait (bounded) until every replica's `explain` agrees on every probe; returns how long
/// it took.
fn until_explain_agrees(replicas: &Replicas, probes: &[(String, String, String)], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let answers: Vec<Vec<Value>> = replicas
            .servers
            .iter()
            .map(|s| probes.iter().map(|(gw, src, dst)| explain(s, gw, src, dst)).collect())
            .collect();
        if answers.windows(2).all(|w| w[0] == w[1]) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "replicas' explain still differ after {within:?}: {}{}",
            serde_json::to_string_pretty(&answers).unwrap(),
            replicas.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait (bounded) until every replica reports every gateway `active` and in sync.
fn until_settled(replicas: &Replicas, within: Duration) {
    let deadline = Instant::now() + within;
    for s in &replicas.servers {
        loop {
            let status = s.introspect("/_vpnroute/gateways");
            let all = status["VpnGateways"].as_array().cloned().unwrap_or_default();
            if all.iter().all(|g| g["Status"] == "active" && g["InSync"] == true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gateways did not settle: {status}{}",
                replicas.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

const THROTTLE_RPS: usize = 30;

#[test]
fn replicas_act_as_one_service() {
    let Some(db) = Database::create() else { return };
    let rps = THROTTLE_RPS.to_string();
    let mut replicas = Replicas::start(&db, 3, &["--task-duration", "0s", "--throttle-rps", &rps]);
    let mut c0 = replicas.client(0);
    let (gw, vco) = setup_gateway(&mut c0, 0);

    // What one replica commits and puts in force, the others' data planes follow promptly
    // (well within the 10 s drift interval).
    let mut took = Vec::new();
    for i in 0..3 {
        let dest = format!("10.8.{i}.0/24");
        let mut c = replicas.client(i);
        let params = [
            ("RegionId", "cn-hangzhou"),
            ("VpnGatewayId", gw.as_str()),
            ("RouteDest", dest.as_str()),
            ("NextHop", vco.as_str()),
            ("Weight", "100"),
            ("PublishVpc", "false"),
        ];
        ok(&call_until(
            &mut c,
            "CreateVpnRouteEntry",
            &params,
            Instant::now() + Duration::from_secs(10),
        )
        .unwrap());
        let probe = [(gw.clone(), "192.168.0.1".to_string(), format!("10.8.{i}.9"))];
        took.push(until_explain_agrees(&replicas, &probe, Duration::from_secs(3)));
        for s in &replicas.servers {
            let v = explain(s, &gw, "192.168.0.1", &format!("10.8.{i}.9"));
            assert_eq!(v["Explanation"]["chosen"]["next_hop"], vco.as_str(), "{v}");
        }
    }
    eprintln!("explain agreed on every replica after {took:?}");

    // Conflicting creates racing on two replicas: exactly one wins, the other is told the
    // route exists; every replica then lists it once.
    const RACES: usize = 12;
    for i in 0..RACES {
        let dest = format!("10.9.{i}.0/24");
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [i % 3, (i + 1) % 3]
            .into_iter()
            .map(|r| {
                let (mut c, barrier, gw, vco, dest) = (
                    replicas.client(r),
                    barrier.clone(),
                    gw.clone(),
                    vco.clone(),
                    dest.clone(),
                );
                std::thread::spawn(move || {
                    let params = [
                        ("RegionId", "cn-hangzhou"),
                        ("VpnGatewayId", gw.as_str()),
                        ("RouteDest", dest.as_str()),
                        ("NextHop", vco.as_str()),
                        ("Weight", "100"),
                        ("PublishVpc", "false"),
                    ];
                    // Connected before the barrier, so both requests leave together.
                    let _ = c.call("DescribeRegions", &[]);
                    barrier.wait();
                    call_until(
                        &mut c,
                        "CreateVpnRouteEntry",
                        &params,
                        Instant::now() + Duration::from_secs(10),
                    )
                    .expect("an answer")
                })
            })
            .collect();
        let answers: Vec<Response> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let won = answers.iter().filter(|r| r.status == 200).count();
        let lost: Vec<Option<String>> = answers.iter().filter(|r| r.status != 200).map(|r| r.code()).collect();
        assert_eq!(
            won,
            1,
            "race {i}: {:?}",
            answers.iter().map(|r| &r.body).collect::<Vec<_>>()
        );
        assert_eq!(
            lost,
            vec![Some("VpnRouteEntry.AlreadyExists".to_string())],
            "race {i}{}",
            replicas.logs()
        );
    }
    for i in 0..3 {
        let (dbr, _) = listed_routes(&mut replicas.client(i), &gw);
        let raced = dbr
            .iter()
            .filter(|e| e["RouteDest"].as_str().is_some_and(|d| d.starts_with("10.9.")))
            .count();
        assert_eq!(raced, RACES, "replica {i} lists each raced route once: {dbr:?}");
    }

    // A ClientToken replayed on another replica answers the first result; nothing doubles.
    let vpcs =
        |c: &mut Client| ok(&c.call("DescribeVpcs", &[("RegionId", "cn-hangzhou")]).unwrap())["TotalCount"].clone();
    let before = vpcs(&mut c0);
    let token = format!("tok-{:x}", rand::rng().random::<u64>());
    let create = [
        ("RegionId", "cn-hangzhou"),
        ("CidrBlock", "172.16.0.0/12"),
        ("ClientToken", token.as_str()),
    ];
    let first = ok(&c0.call("CreateVpc", &create).unwrap());
    for i in 1..3 {
        let again = ok(&replicas.client(i).call("CreateVpc", &create).unwrap());
        assert_eq!(again["VpcId"], first["VpcId"], "replica {i} replays the token");
    }
    assert_eq!(
        vpcs(&mut c0).as_u64(),
        before.as_u64().map(|n| n + 1),
        "one VPC for one token"
    );

    // A SignatureNonce used on one replica is refused by every other one — a read's and a
    // write's — and still after every replica restarted.
    let host = replicas.servers[0].addr.to_string();
    let read = build_request(
        &host,
        &root(),
        Scheme::V1,
        "DescribeVpcs",
        &[("RegionId", "cn-hangzhou")],
    );
    let write = build_request(
        &host,
        &root(),
        Scheme::V1,
        "CreateVpc",
        &[("RegionId", "cn-hangzhou"), ("CidrBlock", "10.0.0.0/8")],
    );
    for request in [&read, &write] {
        ok(&send_raw(replicas.servers[0].addr, request));
    }
    let replayed = |replicas: &Replicas, when: &str| {
        for (i, s) in replicas.servers.iter().enumerate() {
            for (what, request) in [("read", &read), ("write", &write)] {
                let r = send_raw(s.addr, request);
                assert_eq!(
                    (r.status, r.code().as_deref()),
                    (400, Some("SignatureNonceUsed")),
                    "{what} nonce replayed on replica {i} {when}: {}",
                    r.body
                );
            }
        }
    };
    replayed(&replicas, "while they run");
    for s in &mut replicas.servers {
        s.kill9_and_restart();
    }
    replayed(&replicas, "after every replica was killed and restarted");

    // Throttling counts every replica's calls: a burst spread over three replicas inside one
    // second is admitted about once, not three times.
    let until_next_second = 1000 - (vpnroute_reconciler::now_ms() % 1000) as u64;
    std::thread::sleep(Duration::from_millis(until_next_second + 20));
    let burst_start = Instant::now();
    let callers: Vec<_> = (0..3)
        .map(|i| {
            let mut c = replicas.client(i);
            std::thread::spawn(move || {
                (0..THROTTLE_RPS)
                    .map(|_| c.call("DescribeRegions", &[]).unwrap())
                    .map(|r| match (r.status, r.code().as_deref()) {
                        (200, _) => 1,
                        (_, Some("Throttling.User")) => 0,
                        _ => panic!("unexpected answer: {} {}", r.status, r.body),
                    })
                    .sum::<usize>()
            })
        })
        .collect();
    let admitted: usize = callers.into_iter().map(|t| t.join().unwrap()).sum();
    let burst = burst_start.elapsed();
    eprintln!(
        "throttling: {admitted} of {} calls admitted in {burst:?} (limit {THROTTLE_RPS}/s)",
        3 * THROTTLE_RPS
    );
    // Counted per replica, up to 3 × the limit would pass in one window.
    let windows = (burst.as_millis() as usize + 20) / 1000 + 1;
    assert!(
        admitted <= THROTTLE_RPS * windows + THROTTLE_RPS / 2,
        "{admitted} admitted in {burst:?}: throttling is not counted across replicas"
    );
    assert!(
        admitted >= THROTTLE_RPS.min(3 * THROTTLE_RPS),
        "{admitted} admitted: the limit is {THROTTLE_RPS}/s"
    );
    drop(replicas);
    drop(db);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Present,
    Absent,
    /// The request's answer was lost with its replica: either outcome is legal.
    Unknown,
}

const KILLS: usize = 54;
const GATEWAYS: usize = 2;
const DESTS: usize = 8;

/// A v1-signed `DescribeVpcs` with this secret, nonce and timestamp offset (seconds).
fn describe_signed(secret: &str, nonce: &str, offset_s: i64) -> Vec<u8> {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_s);
    let ts = t
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap();
    let mut p = vpnroute_wire::Params::new();
    for (k, v) in [
        ("RegionId", "cn-hangzhou"),
        ("Action", "DescribeVpcs"),
        ("Version", "2016-04-28"),
        ("Format", "JSON"),
        ("AccessKeyId", AK),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", ts.as_str()),
    ] {
        p.push(k, v);
    }
    let query = vpnroute_wire::v1_signed_query("POST", &p, secret);
    format!("POST /?{query} HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A read's nonce travels with the read's generation query on PostgreSQL (the caller
/// authenticated first on the replica's cache): a read failing authentication still records
/// no nonce, whichever replica it reaches, and a replay is refused by every replica.
#[test]
fn a_read_failing_authentication_records_no_nonce_on_any_replica() {
    let Some(db) = Database::create() else { return };
    let replicas = Replicas::start(&db, 2, &[]);
    let code = |i: usize, request: &[u8]| {
        let r = send_raw(replicas.servers[i].addr, request);
        (r.status, r.code())
    };
    // Both replicas have the key cached.
    for i in 0..2 {
        assert_eq!(code(i, &describe_signed(SK, &format!("warm-{i}"), 0)).0, 200);
    }
    let nonce = format!("n-{:016x}", rand::rng().random::<u64>());
    let forged = describe_signed("not-the-secret", &nonce, 0);
    let expired = describe_signed(SK, &nonce, -20 * 60);
    for i in [1, 0, 1] {
        assert_eq!(
            code(i, &forged),
            (400, Some("SignatureDoesNotMatch".into())),
            "replica {i}"
        );
        assert_eq!(
            code(i, &expired),
            (400, Some("InvalidTimeStamp.Expired".into())),
            "replica {i}"
        );
    }
    let good = describe_signed(SK, &nonce, 0);
    assert_eq!(code(1, &good).0, 200, "the nonce was never recorded");
    for i in [0, 1] {
        assert_eq!(
            code(i, &good),
            (400, Some("SignatureNonceUsed".into())),
            "replayed on replica {i}"
        );
        // Authentication still comes first.
        assert_eq!(
            code(i, &forged),
            (400, Some("SignatureDoesNotMatch".into())),
            "replica {i}"
        );
    }
}

/// One route the stream creates and deletes: DBR `10.{g}.{d}.0/24`, or PBR from
/// `192.168.{d}.0/24` to `10.{g}.{d}.0/24` for odd `d`.
fn route_params<'a>(
    gw: &'a str,
    vco: &'a str,
    dest: &'a str,
    source: &'a str,
    pbr: bool,
    create: bool,
) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("RegionId", "cn-hangzhou"),
        ("VpnGatewayId", gw),
        ("RouteDest", dest),
        ("NextHop", vco),
        ("Weight", "100"),
    ];
    if pbr {
        p.push(("RouteSource", source));
    }
    if create {
        p.push(("PublishVpc", "false"));
    }
    p
}

#[test]
fn acknowledged_history_survives_kill9_of_replicas() {
    let Some(db) = Database::create() else { return };
    let mut replicas = Replicas::start(&db, 3, &["--task-duration", "20ms", "--quota-dbr-routes", "100"]);
    let gateways: Vec<(String, String)> = (0..GATEWAYS)
        .map(|n| setup_gateway(&mut replicas.client(n % 3), n))
        .collect();
    let mut model: HashMap<(usize, usize), Known> = HashMap::new();
    let mut rng = rand::rng();
    let (mut acked, mut kills) = (0usize, 0usize);
    let started = Instant::now();
    while kills < KILLS {
        // A killer fires at a random moment while requests go to every replica.
        let victim = rng.random_range(0..replicas.servers.len());
        let pid = replicas.servers[victim].child.id();
        let delay = Duration::from_micros(rng.random_range(0..120_000));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        });
        let mut clients: Vec<Client> = (0..replicas.servers.len()).map(|i| replicas.client(i)).collect();
        let round_end = Instant::now() + delay + Duration::from_millis(150);
        while Instant::now() < round_end {
            let target = rng.random_range(0..clients.len());
            let (g, d) = (rng.random_range(0..GATEWAYS), rng.random_range(0..DESTS));
            let (gw, vco) = &gateways[g];
            let dest = format!("10.{g}.{d}.0/24");
            let source = format!("192.168.{d}.0/24");
            let pbr = d % 2 == 1;
            let state = *model.get(&(g, d)).unwrap_or(&Known::Absent);
            let create = match state {
                Known::Absent => true,
                Known::Present => false,
                Known::Unknown => rng.random_bool(0.5),
            };
            let action = match (pbr, create) {
                (false, true) => "CreateVpnRouteEntry",
                (false, false) => "DeleteVpnRouteEntry",
                (true, true) => "CreateVpnPbrRouteEntry",
                (true, false) => "DeleteVpnPbrRouteEntry",
            };
            let params = route_params(gw, vco, &dest, &source, pbr, create);
            let answer = match clients[target].call(action, &params) {
                Err(_) => {
                    // The replica died with the request in flight: it may have committed.
                    model.insert((g, d), Known::Unknown);
                    continue;
                }
                Ok(r) => r,
            };
            if busy(&answer) {
                continue; // refused: nothing done
            }
            let now = match (answer.status, answer.code().as_deref()) {
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
                _ => panic!(
                    "unexpected answer to {action}: {} {}{}",
                    answer.status,
                    answer.body,
                    replicas.logs()
                ),
            };
            model.insert((g, d), now);
        }
        killer.join().unwrap();
        replicas.servers[victim].kill9_and_restart();
        kills += 1;
    }
    eprintln!(
        "{kills} replicas killed and restarted, {acked} changes acknowledged in {:?}",
        started.elapsed()
    );
    assert!(acked > KILLS, "too few acknowledged changes ({acked}) to mean anything");

    // Settled everywhere: every gateway active, and every replica lists the same routes,
    // which are what the acknowledged history says, each once.
    until_settled(&replicas, Duration::from_secs(60));
    let mut probes = Vec::new();
    for (g, (gw, vco)) in gateways.iter().enumerate() {
        let views: Vec<(Vec<Value>, Vec<Value>)> = (0..replicas.servers.len())
            .map(|i| listed_routes(&mut replicas.client(i), gw))
            .collect();
        for (i, view) in views.iter().enumerate().skip(1) {
            assert_eq!(view, &views[0], "replica {i} lists other routes than replica 0 on {gw}");
        }
        let (dbr, pbr) = &views[0];
        let mut listed: BTreeMap<String, usize> = BTreeMap::new();
        for e in dbr.iter().chain(pbr) {
            assert_eq!(e["NextHop"], vco.as_str());
            *listed.entry(e["RouteDest"].as_str().unwrap().to_string()).or_default() += 1;
        }
        assert!(listed.values().all(|n| *n == 1), "doubled routes on {gw}: {listed:?}");
        for d in 0..DESTS {
            let dest = format!("10.{g}.{d}.0/24");
            let present = listed.contains_key(&dest);
            match model.get(&(g, d)).copied().unwrap_or(Known::Absent) {
                Known::Present => assert!(present, "acknowledged route {dest} on {gw} lost"),
                Known::Absent => assert!(!present, "route {dest} on {gw} present though absent in the history"),
                Known::Unknown => {}
            }
            probes.push((gw.clone(), format!("192.168.{d}.7"), format!("10.{g}.{d}.9")));
        }
        for s in &replicas.servers {
            let status = s.introspect(&format!("/_vpnroute/gateways/{gw}"));
            assert_eq!(status["RoutesInForce"].as_u64(), Some(listed.len() as u64), "{status}");
        }
    }
    // And every replica's data plane decides every packet alike.
    let took = until_explain_agrees(&replicas, &probes, Duration::from_secs(5));
    eprintln!("explain agreed on every replica {took:?} after the gateways settled");
    drop(replicas);
    drop(db);
}

/// SIGTERM on a replica: it drains and exits 0, without a panic on the way out (the store's
/// own runtime is dropped by the last owner, a task of the server's runtime ending).
#[test]
fn a_replica_on_postgres_exits_cleanly_on_sigterm() {
    let Some(db) = Database::create() else { return };
    let mut replicas = Replicas::start(&db, 1, &["--task-duration", "0s"]);
    let mut c = replicas.client(0);
    ok(&c.call("CreateVpc", &[("RegionId", "cn-hangzhou")]).unwrap());
    for _ in 0..50 {
        ok(&c.call("DescribeVpcs", &[("RegionId", "cn-hangzhou")]).unwrap());
    }
    let server = &mut replicas.servers[0];
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the replica did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(server.stderr.as_ref().unwrap()).unwrap();
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(!log.contains("panicked"), "a panic on the way out:\n{log}");
}

/// What a mirroring replica reads for several gateways at once (`load_specs`, read ahead on
/// PostgreSQL) is what it reads for each alone (`load_spec`), for gateways that share a VPC
/// and a customer gateway: rows named twice in one read ahead.
#[test]
fn specs_read_together_are_the_specs_read_alone() {
    use vpnroute_reconciler::ReconcileStore;
    use vpnroute_store::Store;

    let Some(db) = Database::create() else { return };
    let replicas = Replicas::start(&db, 1, &["--task-duration", "0s"]);
    let mut c = replicas.client(0);
    // Each call waits out the gateway's busy time; the answer's `field`.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut create = |action: &str, params: &[(&str, &str)], field: &str| -> String {
        let r = call_until(&mut c, action, params, deadline).unwrap_or_else(|| panic!("{action}: still busy"));
        ok(&r)[field].as_str().unwrap_or_default().to_string()
    };
    let region = ("RegionId", "cn-hangzhou");
    let vpc = create("CreateVpc", &[region, ("CidrBlock", "172.16.0.0/12")], "VpcId");
    let peer = create(
        "CreateCustomerGateway",
        &[region, ("IpAddress", "1.2.3.9")],
        "CustomerGatewayId",
    );
    let mut gateways = Vec::new();
    for (i, dest) in ["10.1.0.0/16", "10.2.0.0/16"].into_iter().enumerate() {
        let gw = create(
            "CreateVpnGateway",
            &[region, ("VpcId", &vpc), ("Bandwidth", "10")],
            "VpnGatewayId",
        );
        let local = format!("172.16.{i}.0/24");
        let conn = create(
            "CreateVpnConnection",
            &[
                region,
                ("VpnGatewayId", &gw),
                ("CustomerGatewayId", &peer),
                ("LocalSubnet", &local),
                ("RemoteSubnet", dest),
            ],
            "VpnConnectionId",
        );
        let params = [
            region,
            ("VpnGatewayId", &gw),
            ("RouteDest", dest),
            ("NextHop", &conn),
            ("Weight", "100"),
            ("PublishVpc", "false"),
        ];
        create("CreateVpnRouteEntry", &params, "RequestId");
        gateways.push(gw);
    }
    let store = vpnroute_store_postgres::PgStore::open(&db.url()).expect("the test's database");
    let store: std::sync::Arc<dyn Store> = store;
    let wanted: Vec<(String, i64)> = gateways
        .iter()
        .map(|g| (g.clone(), store.read(|tx| tx.gateway_versions(g)).unwrap().1))
        .collect();
    let reconcile = vpnroute_app::reconcile::StoreReconcile::new(store);
    let together: Vec<_> = reconcile
        .load_specs(&wanted)
        .into_iter()
        .map(|s| s.unwrap().expect("the gateway exists"))
        .collect();
    let alone: Vec<_> = wanted
        .iter()
        .map(|(g, v)| reconcile.load_spec(g, *v).unwrap().expect("the gateway exists"))
        .collect();
    assert_eq!(together, alone);
    for spec in &together {
        assert_eq!(spec.vpc_cidr.to_string(), "172.16.0.0/12", "{spec:?}");
        assert_eq!(spec.connections.len(), 1, "{spec:?}");
        assert_eq!(spec.connections[0].remote_ip.to_string(), "1.2.3.9", "{spec:?}");
        assert_eq!(spec.routes.len(), 1, "{spec:?}");
    }
    drop(replicas);
}
