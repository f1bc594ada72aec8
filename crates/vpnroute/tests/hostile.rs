//! Hostile clients against the real binary (issue 9): replays through odd nonces, restarts
//! and future timestamps, CIDR spellings in lookups, ClientToken look-alikes, junk bodies,
//! and the operator token on `/_vpnroute/*` and `/metrics`.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{setup_gateway, Server, AK, OPERATOR_TOKEN, SK};
use vpnroute_client::{Response, Scheme};
use vpnroute_wire::{v1_signed_query, Params};

/// Send raw request bytes on a fresh connection; the parsed response.
fn send(server: &Server, request: &[u8]) -> Response {
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
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

fn timestamp(offset_s: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_s);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap()
}

/// A v1-signed `POST /` with the given nonce and timestamp (the query carries everything).
fn signed_v1(action: &str, params: &[(&str, &str)], nonce: &str, ts: &str) -> Vec<u8> {
    let mut p = Params::new();
    for (k, v) in params {
        p.push(*k, *v);
    }
    for (k, v) in [
        ("Action", action),
        ("Version", "2016-04-28"),
        ("Format", "JSON"),
        ("AccessKeyId", AK),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", ts),
    ] {
        p.push(k, v);
    }
    let query = v1_signed_query("POST", &p, SK);
    format!("POST /?{query} HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

fn vpc_count(server: &Server) -> u64 {
    let r = server
        .client(Scheme::V1)
        .call("DescribeVpcs", &[("RegionId", "cn-hangzhou")])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["TotalCount"].as_u64().unwrap()
}

/// `vpnroute_write_jobs_total` from `/metrics`: write requests handed to the writer.
fn write_jobs(server: &Server) -> u64 {
    let r = server.operator_request("GET", "/metrics", Some(OPERATOR_TOKEN));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .find_map(|l| l.strip_prefix("vpnroute_write_jobs_total "))
        .unwrap_or_else(|| panic!("no vpnroute_write_jobs_total in {}", r.body))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn nonces_with_control_characters_are_refused_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let ts = timestamp(0);
    for nonce in ["dur\nnl-1", "tab\tn-2", "cr\rn-3"] {
        let req = signed_v1("CreateVpc", &[("RegionId", "cn-hangzhou")], nonce, &ts);
        let r = send(&server, &req);
        assert_eq!(r.status, 200, "{nonce:?}: {}", r.body);
        server.kill9_and_restart();
        let r = send(&server, &req);
        assert_eq!(r.code().as_deref(), Some("SignatureNonceUsed"), "{nonce:?}: {}", r.body);
    }
    assert_eq!(vpc_count(&server), 3, "each request created exactly one VPC");
}

#[test]
fn a_future_timestamp_keeps_its_nonce_for_its_whole_window() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let ahead_s = 14 * 60 + 30;
    let req = signed_v1(
        "CreateVpc",
        &[("RegionId", "cn-hangzhou")],
        "future-1",
        &timestamp(ahead_s),
    );
    let before_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    assert_eq!(send(&server, &req).status, 200);
    server.kill9_and_restart();
    assert_eq!(send(&server, &req).code().as_deref(), Some("SignatureNonceUsed"));
    // The log keeps it until the timestamp's own window ends (not 15 min after it was seen),
    // so the replay ~15 min later is refused as well.
    let log = std::fs::read_to_string(dir.path().join("nonces.log")).unwrap();
    let keep_until: i64 = log
        .lines()
        .find(|l| l.ends_with("\tfuture-1"))
        .and_then(|l| l.split('\t').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("nonce not in the log: {log}"));
    let window_ms = 15 * 60 * 1000;
    assert!(
        keep_until >= before_ms + (ahead_s - 2) * 1000 + window_ms,
        "kept until {keep_until}, seen ≥ {before_ms}"
    );
    assert_eq!(vpc_count(&server), 1);
}

#[test]
fn route_lookups_accept_any_spelling_of_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--task-duration", "0s"]);
    let mut c = server.client(Scheme::V1);
    let (gw, vco) = setup_gateway(&mut c, 0);
    let base = [
        ("RegionId", "cn-hangzhou"),
        ("VpnGatewayId", gw.as_str()),
        ("NextHop", vco.as_str()),
    ];
    let call = |c: &mut vpnroute_client::Client, action: &str, extra: &[(&str, &str)]| {
        let params: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        common::call_retrying(c, action, &params).unwrap()
    };
    let dbr = [("RouteDest", "10.0.0.0/24"), ("Weight", "100"), ("PublishVpc", "false")];
    assert_eq!(call(&mut c, "CreateVpnRouteEntry", &dbr).status, 200);
    let host_bits = [("RouteDest", "10.0.0.10/24"), ("Weight", "100")];
    let r = call(
        &mut c,
        "ModifyVpnRouteEntryWeight",
        &[host_bits[0], host_bits[1], ("NewWeight", "0")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &mut c,
        "PublishVpnRouteEntry",
        &[
            ("RouteDest", "10.0.0.77/24"),
            ("RouteType", "dbr"),
            ("PublishVpc", "true"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &mut c,
        "DeleteVpnRouteEntry",
        &[("RouteDest", "10.0.0.1/24"), ("Weight", "0")],
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let pbr = [
        ("RouteSource", "192.168.1.0/24"),
        ("RouteDest", "10.1.0.0/16"),
        ("Weight", "100"),
        ("PublishVpc", "false"),
    ];
    assert_eq!(call(&mut c, "CreateVpnPbrRouteEntry", &pbr).status, 200);
    let r = call(
        &mut c,
        "ModifyVpnPbrRouteEntryPriority",
        &[
            ("RouteSource", "192.168.1.5/24"),
            ("RouteDest", "10.1.2.3/16"),
            ("Weight", "100"),
            ("NewPriority", "5"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call(
        &mut c,
        "DeleteVpnPbrRouteEntry",
        &[
            ("RouteSource", "192.168.1.9/24"),
            ("RouteDest", "10.1.0.0/16"),
            ("Weight", "100"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // A block that really is absent is still not found.
    let r = call(
        &mut c,
        "DeleteVpnRouteEntry",
        &[("RouteDest", "10.9.0.0/24"), ("Weight", "0")],
    );
    assert_eq!(r.code().as_deref(), Some("InvalidRouteEntry.NotFound"));
}

#[test]
fn client_token_look_alikes_are_different_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = server.client(Scheme::V1);
    let first = [
        ("RegionId", "cn-hangzhou"),
        ("ClientToken", "look-alike"),
        ("Description", "x"),
        ("Foo", "bar"),
    ];
    let r = c.call("CreateVpc", &first).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let second = [
        ("RegionId", "cn-hangzhou"),
        ("ClientToken", "look-alike"),
        ("Description", "x\0Foo\0bar"),
    ];
    let r = c.call("CreateVpc", &second).unwrap();
    assert_eq!(r.code().as_deref(), Some("IdempotentParameterMismatch"), "{}", r.body);
    assert_eq!(c.call("CreateVpc", &first).unwrap().status, 200, "the true retry");
    assert_eq!(vpc_count(&server), 1);
}

#[test]
fn junk_bodies_are_refused_before_the_writer_and_do_not_slow_creates() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // 1.3 M empty parameters in 4 MB less a little.
    let body = "&".repeat(1_300_000);
    let junk = format!(
        "POST /?Action=CreateVpc&Version=2016-04-28&RegionId=cn-hangzhou&AccessKeyId={AK}&Signature=bad\
         &SignatureMethod=HMAC-SHA1&SignatureVersion=1.0&SignatureNonce=j&Timestamp={} HTTP/1.1\r\nHost: h\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        timestamp(0),
        body.len()
    );
    let jobs_at_start = write_jobs(&server);
    let r = send(&server, junk.as_bytes());
    assert_eq!(r.status, 400);
    assert_eq!(r.code().as_deref(), Some("InvalidParameter"), "{}", r.body);
    assert!(r.body.contains("too many parameters"), "{}", r.body);
    // A wrong signature on a write is answered without the writer: SignatureDoesNotMatch,
    // and the nonce it carried is not consumed.
    let mut req = signed_v1("CreateVpc", &[("RegionId", "cn-hangzhou")], "sig-1", &timestamp(0));
    let text = String::from_utf8(req.clone()).unwrap();
    let forged = text.replacen("RegionId=cn-hangzhou", "RegionId=cn-shanghai", 1);
    let r = send(&server, forged.as_bytes());
    assert_eq!(r.code().as_deref(), Some("SignatureDoesNotMatch"), "{}", r.body);
    // A big body under the parameter cap (980 parameters, ~3.8 MB of values) with a wrong
    // signature: refused before the writer too.
    let value = "x".repeat(3_900);
    let big = (0..980).map(|i| format!("P{i}={value}")).collect::<Vec<_>>().join("&");
    let big = format!(
        "POST /?Action=CreateVpc&Version=2016-04-28&RegionId=cn-hangzhou&AccessKeyId={AK}&Signature=bad\
         &SignatureMethod=HMAC-SHA1&SignatureVersion=1.0&SignatureNonce=j2&Timestamp={} HTTP/1.1\r\nHost: h\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{big}",
        timestamp(0),
        big.len(),
    );
    let r = send(&server, big.as_bytes());
    assert_eq!(r.code().as_deref(), Some("SignatureDoesNotMatch"), "{}", r.body);
    // An unknown access key and an expired timestamp: the same.
    let unknown = String::from_utf8(signed_v1(
        "CreateVpc",
        &[("RegionId", "cn-hangzhou")],
        "uk-1",
        &timestamp(0),
    ))
    .unwrap()
    .replacen(&format!("AccessKeyId={AK}"), "AccessKeyId=NoSuchKey", 1);
    assert_eq!(send(&server, unknown.as_bytes()).status / 100, 4);
    let stale = signed_v1("CreateVpc", &[("RegionId", "cn-hangzhou")], "old-1", &timestamp(-3600));
    assert_eq!(send(&server, &stale).status / 100, 4);
    // None of these reached the writer: its job counter did not move (it would, were the
    // signature checked in the write transaction again).
    assert_eq!(
        write_jobs(&server),
        jobs_at_start,
        "a refused request was queued on the writer"
    );
    assert_eq!(send(&server, &std::mem::take(&mut req)).status, 200);
    assert_eq!(write_jobs(&server), jobs_at_start + 1, "the counter counts writes");
    // Junk senders in parallel with ordinary creates: every create still succeeds.
    let junk = std::sync::Arc::new(junk);
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let (junk, addr) = (junk.clone(), server.addr);
            std::thread::spawn(move || {
                for _ in 0..3 {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    let _ = s.write_all(junk.as_bytes());
                    let mut sink = Vec::new();
                    let _ = s.read_to_end(&mut sink);
                }
            })
        })
        .collect();
    let mut c = server.client(Scheme::Acs3);
    for _ in 0..10 {
        let r = c.call("CreateVpc", &[("RegionId", "cn-hangzhou")]).unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    for s in senders {
        s.join().unwrap();
    }
    assert_eq!(vpc_count(&server), 11);
    assert_eq!(
        write_jobs(&server),
        jobs_at_start + 11,
        "junk senders queued writer jobs"
    );
}

#[test]
fn operator_endpoints_need_the_token_and_change_nothing_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--task-duration", "0s"]);
    let mut c = server.client(Scheme::V1);
    let (gw, vco) = setup_gateway(&mut c, 0);
    let tunnel = format!("/_vpnroute/connections/{vco}/tunnel?state=down");
    for token in [None, Some("wrong"), Some("e2e-operator-token-but-longer")] {
        for (method, path) in [
            ("GET", "/_vpnroute/gateways".to_string()),
            ("GET", format!("/_vpnroute/gateways/{gw}")),
            (
                "GET",
                format!("/_vpnroute/gateways/{gw}/explain?source=1.1.1.1&dest=10.0.0.1"),
            ),
            ("POST", format!("/_vpnroute/gateways/{gw}/advance")),
            ("PUT", tunnel.clone()),
            ("POST", tunnel.clone()),
            ("GET", "/metrics".to_string()),
            ("GET", "/_vpnroute/health".to_string()),
        ] {
            let r = server.operator_request(method, &path, token);
            assert_eq!(r.status, 401, "{method} {path} with {token:?}: {}", r.body);
            assert_eq!(r.json()["Code"], "InvalidOperatorToken");
            assert!(r.header("www-authenticate").is_some());
        }
    }
    // A cross-site form post (text/plain, no preflight) cannot carry the header either.
    let r = send(
        &server,
        format!(
            "POST {tunnel} HTTP/1.1\r\nHost: h\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\nx"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 401);
    let r = c
        .call(
            "DescribeVpnConnection",
            &[("RegionId", "cn-hangzhou"), ("VpnConnectionId", &vco)],
        )
        .unwrap();
    assert_eq!(r.json()["Status"], "ipsec_sa_established", "the tunnel is still up");
    // With the token it works.
    let r = server.operator_request("PUT", &tunnel, Some(OPERATOR_TOKEN));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        server.introspect(&format!("/_vpnroute/gateways/{gw}"))["VpnGatewayId"],
        gw
    );
}

#[test]
fn metrics_public_opens_metrics_alone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--metrics-public"]);
    let r = server.operator_request("GET", "/metrics", None);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("vpnroute_requests_total"));
    assert_eq!(server.operator_request("GET", "/_vpnroute/gateways", None).status, 401);
}

#[test]
fn a_generated_operator_token_is_stored_private_and_printed_once() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = std::process::Command::new(common::bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env_remove("VPNROUTE_OPERATOR_TOKEN")
            .env("VPNROUTE_ROOT_ACCESS_KEY_ID", AK)
            .env("VPNROUTE_ROOT_ACCESS_KEY_SECRET", SK)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 || line.contains("listening on") {
                lines.push(line);
                break;
            }
            lines.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        lines.concat()
    };
    let first = start();
    let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap();
    let token = token.trim();
    assert!(first.contains(token), "printed on first start: {first}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("operator.token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let second = start();
    assert!(!second.contains(token), "not printed again: {second}");
}

#[test]
fn an_unauthenticated_advance_changes_no_task_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--task-duration", "0s"]);
    let (gw, vco) = setup_gateway(&mut server.client(Scheme::V1), 0);
    drop(server);
    let server = Server::start(dir.path(), &["--task-duration", "manual"]);
    let r = server
        .client(Scheme::V1)
        .call(
            "CreateVpnRouteEntry",
            &[
                ("RegionId", "cn-hangzhou"),
                ("VpnGatewayId", gw.as_str()),
                ("RouteDest", "10.0.0.0/24"),
                ("NextHop", vco.as_str()),
                ("Weight", "100"),
                ("PublishVpc", "false"),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let status = || server.introspect(&format!("/_vpnroute/gateways/{gw}"));
    let before = status();
    assert_eq!(before["Status"], "updating", "{before}");
    let advance = format!("/_vpnroute/gateways/{gw}/advance");
    for token in [
        None,
        Some("wrong"),
        Some("e2e-operator-toke"),
        Some("E2E-OPERATOR-TOKEN"),
    ] {
        let r = server.operator_request("POST", &advance, token);
        assert_eq!(r.status, 401, "{token:?}: {}", r.body);
    }
    // Give a (wrongly) started task time to be applied, then compare the whole task state.
    std::thread::sleep(Duration::from_millis(500));
    let after = status();
    for field in ["Status", "DesiredVersion", "AppliedVersion", "PendingTasks", "InSync"] {
        assert_eq!(after[field], before[field], "{field} changed: {before} → {after}");
    }
    // With the token the same call applies the task.
    let r = server.operator_request("POST", &advance, Some(OPERATOR_TOKEN));
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while status()["Status"] != "active" {
        assert!(std::time::Instant::now() < deadline, "not applied: {}", status());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_operator_token_flag_sets_the_token() {
    let dir = tempfile::tempdir().unwrap();
    // The flag wins over VPNROUTE_OPERATOR_TOKEN (which every test server also gets).
    let server = Server::start(dir.path(), &["--operator-token", "token-from-the-flag"]);
    let r = server.operator_request("GET", "/_vpnroute/gateways", Some("token-from-the-flag"));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server.operator_request("GET", "/metrics", Some("token-from-the-flag"));
    assert_eq!(r.status, 200, "{}", r.body);
    for token in [None, Some(OPERATOR_TOKEN)] {
        let r = server.operator_request("GET", "/_vpnroute/gateways", token);
        assert_eq!(r.status, 401, "{token:?}: {}", r.body);
    }
    assert!(
        !dir.path().join("operator.token").exists(),
        "no token generated when one is given"
    );
}
