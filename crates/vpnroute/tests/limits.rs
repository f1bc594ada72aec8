//! Connection limits and shutdown against the real binary: idle and half-sent connections
//! are closed, a connection cap and descriptor exhaustion shed the oldest idle connections
//! instead of locking clients out, and SIGTERM drains in-flight requests and exits 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use vpnroute_client::Scheme;

/// Whether the server closed `s` within `within` (a read returning 0 or an error).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return false
            }
            Err(_) => return true,
        }
    }
}

fn describe_regions_ok(server: &Server) {
    let started = Instant::now();
    let r = server.client(Scheme::V1).call("DescribeRegions", &[]).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn idle_half_sent_and_slow_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--idle-timeout",
            "4s",
            "--header-read-timeout",
            "1s",
            "--request-timeout",
            "1s",
        ],
    );
    let mut idle = TcpStream::connect(server.addr).unwrap();
    let mut half_head = TcpStream::connect(server.addr).unwrap();
    half_head
        .write_all(b"GET /?Action=DescribeRegions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // The half-sent head goes after the header timeout; the quiet connection only after
    // the (longer) idle timeout.
    assert!(
        closed_within(&mut half_head, Duration::from_secs(3)),
        "half-sent head kept open"
    );
    assert!(
        !closed_within(&mut idle, Duration::from_millis(100)),
        "quiet connection closed early"
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(6)),
        "idle connection kept open"
    );

    // A body that never completes gets an answer when the request timeout passes.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let (resp, _) = vpnroute_client::parse_response(&buf).expect("an answer to the slow body");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.code().as_deref(), Some("InvalidParameter"), "{}", resp.body);

    // A keep-alive connection quiet for longer than the header timeout (but not the idle
    // one) is kept: its next request runs on it.
    let mut c = server.client(Scheme::V1);
    for _ in 0..3 {
        assert_eq!(c.call("DescribeRegions", &[]).unwrap().status, 200);
        std::thread::sleep(Duration::from_millis(1500));
    }
}

#[test]
fn the_connection_cap_sheds_the_oldest_idle_connections() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-connections", "32"]);
    let mut held: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    describe_regions_ok(&server);
    // The first connections were shed to make room; the newest are still open.
    assert!(
        closed_within(&mut held[0], Duration::from_secs(5)),
        "oldest idle connection kept"
    );
    let newest = held.last_mut().unwrap();
    assert!(
        !closed_within(newest, Duration::from_millis(200)),
        "newest connection shed"
    );
}

#[test]
fn descriptor_exhaustion_sheds_idle_connections_instead_of_wedging_accept() {
    let dir = tempfile::tempdir().unwrap();
    // 128 descriptors, and a cap that does not help: only the EMFILE path can save us.
    let server = Server::start_under(
        &["prlimit", "--nofile=128:128", "--"],
        dir.path(),
        &["--max-connections", "10000"],
    );
    let held: Vec<TcpStream> = (0..200).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    describe_regions_ok(&server);
    describe_regions_ok(&server);
    drop(held);
    describe_regions_ok(&server);
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    // A signed request whose (non-form) body is still arriving when SIGTERM comes.
    let request = vpnroute_client::build_request(
        &server.addr.to_string(),
        &vpnroute_client::Credentials {
            access_key_id: common::AK.into(),
            access_key_secret: common::SK.into(),
        },
        Scheme::V1,
        "CreateVpc",
        &[("RegionId", "cn-hangzhou")],
    );
    let text = String::from_utf8(request).unwrap();
    let text = text.replacen("Content-Length: 0", "Content-Length: 10", 1);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(text.as_bytes()).unwrap();
    s.write_all(b"01234").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let idle = TcpStream::connect(server.addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"56789").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let (resp, _) = vpnroute_client::parse_response(&buf).expect("the in-flight request is answered");
    assert_eq!(resp.status, 200, "{}", resp.body);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
    drop(idle);
    // The acknowledged create is there after a restart.
    server.kill9_and_restart();
    let r = server
        .client(Scheme::V1)
        .call("DescribeVpcs", &[("RegionId", "cn-hangzhou")])
        .unwrap();
    assert_eq!(r.json()["TotalCount"], 1, "{}", r.body);
}
