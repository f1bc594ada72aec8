//! Damaged files in the data directory at start: a corrupt nonce log and a truncated
//! generation file are reported in the log and recovered, never silently trusted. A nonce
//! log that lost entries (malformed lines, a damaged or cut header) refuses writes signed
//! up to a window after the start (`ServiceUnavailable`): they may replay a lost nonce. A
//! torn last line (a crash during an append) is only reported.

mod common;

use std::io::Write;

use common::{Server, AK, SK};
use vpnroute_client::Scheme;
use vpnroute_wire::{v1_signed_query, Params};

fn timestamp(offset_s: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_s);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap()
}

/// A v1-signed `CreateVpc` (`POST`, everything in the query), signed `offset_s` from now.
fn signed_create(nonce: &str, offset_s: i64) -> Vec<u8> {
    let mut p = Params::new();
    let ts = timestamp(offset_s);
    for (k, v) in [
        ("Action", "CreateVpc"),
        ("RegionId", "cn-hangzhou"),
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
    let q = v1_signed_query("POST", &p, SK);
    format!("POST /?{q} HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Wait until a write signed `offset_s` ahead is past a damaged log's bound (start + 15
/// min): at least 2 s after the start for a timestamp 899 s ahead (second granularity).
const PAST_THE_BOUND_S: i64 = 899;

fn vpc_count(server: &Server) -> u64 {
    let r = server
        .client(Scheme::V1)
        .call("DescribeVpcs", &[("RegionId", "cn-hangzhou")])
        .unwrap();
    assert_eq!(r.status, 200, "reads are served: {}", r.body);
    r.json()["TotalCount"].as_u64().unwrap()
}

fn signed_describe(nonce: &str) -> Vec<u8> {
    let mut p = Params::new();
    let ts = timestamp(0);
    for (k, v) in [
        ("Action", "DescribeRegions"),
        ("Version", "2016-04-28"),
        ("AccessKeyId", AK),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", ts.as_str()),
    ] {
        p.push(k, v);
    }
    let q = v1_signed_query("GET", &p, SK);
    format!("GET /?{q} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").into_bytes()
}

fn send(server: &Server, req: &[u8]) -> vpnroute_client::Response {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.write_all(req).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    vpnroute_client::parse_response(&buf).expect("response").0
}

#[test]
fn a_corrupt_nonce_log_and_a_truncated_generation_file_are_reported_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut server = Server::start_logging(&data, &[], &log);
    let used = signed_describe("kept-nonce");
    assert_eq!(send(&server, &used).status, 200);
    let r = server
        .client(Scheme::V1)
        .call("CreateVpc", &[("RegionId", "cn-hangzhou")])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // Damage both files while the server is down: garbage in the middle of the nonce log,
    // the generation file cut to 3 bytes.
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("nonces.log"))
        .unwrap();
    f.write_all(b"\x00\x00garbage\tline\nnot-a-time\tk\tn\n123\tk\tbad%zz\n")
        .unwrap();
    f.write_all(format!("{}\tother\tlater-line\n", i64::MAX / 2).as_bytes())
        .unwrap();
    drop(f);
    std::fs::write(data.join("vpnroute.gen"), [1u8, 2, 3]).unwrap();

    server.kill9_and_restart();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("nonce log is corrupt") && text.contains("malformed_lines=3"),
        "nonce log damage not reported:\n{text}"
    );
    assert!(
        text.contains("generation file has the wrong size"),
        "generation damage not reported:\n{text}"
    );

    // Recovered: the valid entries are still refused, reads work. Nonces may have been
    // lost with the malformed lines: a write signed now is refused, one signed past the
    // bound succeeds.
    assert_eq!(send(&server, &used).code().as_deref(), Some("SignatureNonceUsed"));
    let mut c = server.client(Scheme::V1);
    let r = c.call("CreateVpc", &[("RegionId", "cn-hangzhou")]).unwrap();
    assert_eq!(
        (r.status, r.code().as_deref()),
        (503, Some("ServiceUnavailable")),
        "{}",
        r.body
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    let r = send(&server, &signed_create("past-the-bound", PAST_THE_BOUND_S));
    assert_eq!(r.status, 200, "signed past the bound: {}", r.body);
    assert_eq!(vpc_count(&server), 2);
    // The rewritten log is clean: a second start finds no damage, but keeps the bound.
    let before = std::fs::read_to_string(&log).unwrap().len();
    server.kill9_and_restart();
    let after = std::fs::read_to_string(&log).unwrap();
    assert!(!after[before..].contains("corrupt"), "{}", &after[before..]);
    assert!(
        after[before..].contains("damaged at an earlier start"),
        "{}",
        &after[before..]
    );
    let r = server
        .client(Scheme::V1)
        .call("CreateVpc", &[("RegionId", "cn-hangzhou")])
        .unwrap();
    assert_eq!(r.status, 503, "the bound survives a restart: {}", r.body);
}

/// Start a server, make one write with `nonce`, stop it; returns the server, its log file
/// and the write's request (for a replay).
fn one_write_then_stop(dir: &std::path::Path, nonce: &str) -> (Server, std::path::PathBuf, Vec<u8>) {
    let data = dir.join("data");
    let log = dir.join("server.log");
    let mut server = Server::start_logging(&data, &[], &log);
    let write = signed_create(nonce, 0);
    let r = send(&server, &write);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(send(&server, &signed_describe("a-read")).status, 200);
    let _ = server.child.kill();
    let _ = server.child.wait();
    (server, log, write)
}

#[test]
fn a_nonce_log_cut_mid_line_is_reported_and_its_other_nonces_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, log, write) = one_write_then_stop(dir.path(), "dur\nnl-1");
    let path = dir.path().join("data").join("nonces.log");
    let len = std::fs::metadata(&path).unwrap().len();
    // The last line is the read's: cut it in the middle.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 4)
        .unwrap();
    server.kill9_and_restart();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("torn last line dropped") && text.contains("torn_lines=1"),
        "torn line not reported:\n{text}"
    );
    assert!(!text.contains("nonce log is corrupt"), "{text}");
    // The write before it is still refused as a replay; new writes work at once.
    let r = send(&server, &write);
    assert_eq!(r.code().as_deref(), Some("SignatureNonceUsed"), "{}", r.body);
    let r = send(&server, &signed_create("fresh", 0));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(vpc_count(&server), 2);
}

#[test]
fn a_nonce_log_cut_in_its_header_refuses_replayed_writes() {
    for cut in [0u64, 7] {
        let dir = tempfile::tempdir().unwrap();
        let (mut server, log, write) = one_write_then_stop(dir.path(), "dur\nnl-1");
        let path = dir.path().join("data").join("nonces.log");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        server.kill9_and_restart();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("nonce log is corrupt") && text.contains("damaged_header=true"),
            "cut at {cut}: damaged header not reported:\n{text}"
        );
        // The lost nonce's write, replayed: refused (a log read as if it were intact
        // would accept it and create a second VPC), and its refusal consumes nothing.
        for _ in 0..2 {
            let r = send(&server, &write);
            assert_eq!(
                (r.status, r.code().as_deref()),
                (503, Some("ServiceUnavailable")),
                "cut at {cut}: {}",
                r.body
            );
        }
        assert_eq!(vpc_count(&server), 1, "cut at {cut}: the replay created a VPC");
        // Signed past the bound, writes work.
        std::thread::sleep(std::time::Duration::from_secs(3));
        let r = send(&server, &signed_create("past-the-bound", PAST_THE_BOUND_S));
        assert_eq!(r.status, 200, "cut at {cut}: {}", r.body);
        assert_eq!(vpc_count(&server), 2);
    }
}
