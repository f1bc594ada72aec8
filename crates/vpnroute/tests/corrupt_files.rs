//! Damaged files in the data directory at start: a corrupt nonce log and a truncated
//! generation file are reported in the log and recovered, never silently trusted.

mod common;

use std::io::Write;

use common::{Server, AK, SK};
use vpnroute_client::Scheme;
use vpnroute_wire::{v1_signed_query, Params};

fn signed_describe(nonce: &str) -> Vec<u8> {
    let mut p = Params::new();
    let ts = time::OffsetDateTime::now_utc()
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap();
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

    // Recovered: the valid entries are still refused, reads and writes work and agree.
    assert_eq!(send(&server, &used).code().as_deref(), Some("SignatureNonceUsed"));
    let mut c = server.client(Scheme::V1);
    assert_eq!(c.call("CreateVpc", &[("RegionId", "cn-hangzhou")]).unwrap().status, 200);
    let r = c.call("DescribeVpcs", &[("RegionId", "cn-hangzhou")]).unwrap();
    assert_eq!(r.json()["TotalCount"], 2, "{}", r.body);
    // The rewritten log is clean: a second start reports nothing.
    let before = std::fs::read_to_string(&log).unwrap().len();
    server.kill9_and_restart();
    let after = std::fs::read_to_string(&log).unwrap();
    assert!(!after[before..].contains("corrupt"), "{}", &after[before..]);
}
