//! Starting the real `vpnroute` binary for end-to-end tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vpnroute_client::{Client, Credentials, Scheme};

pub const AK: &str = "e2e-test-key";
pub const SK: &str = "e2e-test-secret";
/// The operator token every test server runs with (`/_vpnroute/*`, `/metrics`).
pub const OPERATOR_TOKEN: &str = "e2e-operator-token";

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    pub wrapper: Vec<String>,
    /// Where the server's stderr goes (its log), if kept.
    pub stderr: Option<PathBuf>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vpnroute")
}

impl Server {
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        Self::start_under(&[], data_dir, args)
    }

    /// Start the server with its log (stderr, level `info`) appended to `log`.
    pub fn start_logging(data_dir: &Path, args: &[&str], log: &Path) -> Server {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn(&[], data_dir, &args, Some(log));
        Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            args,
            wrapper: Vec::new(),
            stderr: Some(log.to_path_buf()),
        }
    }

    /// Start the server as the last argument of `wrapper` (e.g. `prlimit --nofile=…`).
    pub fn start_under(wrapper: &[&str], data_dir: &Path, args: &[&str]) -> Server {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        let (child, addr) = spawn(&wrapper, data_dir, &args, None);
        Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            args,
            wrapper,
            stderr: None,
        }
    }

    /// SIGKILL the server and start it again on the same data directory.
    pub fn kill9_and_restart(&mut self) {
        self.kill9_and_restart_after(Duration::ZERO);
    }

    /// SIGKILL the server, leave it down for `downtime`, then start it again on the same
    /// data directory.
    pub fn kill9_and_restart_after(&mut self, downtime: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(downtime);
        let (child, addr) = spawn(&self.wrapper, &self.data_dir, &self.args, self.stderr.as_deref());
        self.child = child;
        self.addr = addr;
    }

    pub fn client(&self, scheme: Scheme) -> Client {
        Client::new(
            self.addr,
            Credentials {
                access_key_id: AK.into(),
                access_key_secret: SK.into(),
            },
            scheme,
        )
    }

    /// GET an introspection path with the operator token; returns the JSON body.
    pub fn introspect(&self, path: &str) -> serde_json::Value {
        let resp = self.operator_request("GET", path, Some(OPERATOR_TOKEN));
        serde_json::from_str(&resp.body).expect("json")
    }

    /// One request to an operator endpoint, with `Authorization: Bearer <token>` if given.
    pub fn operator_request(&self, method: &str, path: &str, token: Option<&str>) -> vpnroute_client::Response {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.addr).expect("connect");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read");
        vpnroute_client::parse_response(&buf).expect("response").0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// The child is returned to the caller, whose `Drop` kills and waits for it; the panics
// on the way only fire when the test has already failed.
#[allow(clippy::zombie_processes)]
fn spawn(wrapper: &[String], data_dir: &Path, args: &[String], log: Option<&Path>) -> (Child, SocketAddr) {
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    let mut child = command
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("VPNROUTE_ROOT_ACCESS_KEY_ID", AK)
        .env("VPNROUTE_ROOT_ACCESS_KEY_SECRET", SK)
        .env("VPNROUTE_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("VPNROUTE_LOG", if log.is_some() { "info" } else { "warn" })
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(match log {
            Some(path) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("server log file"),
            ),
            None => Stdio::null(),
        })
        .spawn()
        .expect("spawn vpnroute");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(Instant::now() < deadline, "server did not start");
        if reader.read_line(&mut line).expect("read stdout") == 0 {
            panic!("server exited before listening");
        }
        if let Some(rest) = line.trim().strip_prefix("vpnroute listening on http://") {
            let addr = rest.parse().expect("address");
            // Keep draining stdout so the server never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut sink = String::new();
                while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                    sink.clear();
                }
            });
            return (child, addr);
        }
    }
}

/// Call until the answer is not one of the busy codes (as Terraform does).
pub fn call_retrying(
    c: &mut Client,
    action: &str,
    params: &[(&str, &str)],
) -> std::io::Result<vpnroute_client::Response> {
    loop {
        let r = c.call(action, params)?;
        match r.code().as_deref() {
            Some("VpnGateway.Configuring") | Some("TaskConflict") | Some("VpnTask.CONFLICT") => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return Ok(r),
        }
    }
}

/// VPC → gateway → customer gateway → connection; returns (gateway id, connection id).
pub fn setup_gateway(c: &mut Client, n: usize) -> (String, String) {
    let r = c
        .call(
            "CreateVpc",
            &[("RegionId", "cn-hangzhou"), ("CidrBlock", "192.168.0.0/16")],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let vpc = r.json()["VpcId"].as_str().unwrap().to_string();
    let r = c
        .call(
            "CreateVpnGateway",
            &[("RegionId", "cn-hangzhou"), ("VpcId", &vpc), ("Bandwidth", "10")],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let gw = r.json()["VpnGatewayId"].as_str().unwrap().to_string();
    let ip = format!("1.2.3.{}", n + 1);
    let r = c
        .call(
            "CreateCustomerGateway",
            &[("RegionId", "cn-hangzhou"), ("IpAddress", &ip)],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let cgw = r.json()["CustomerGatewayId"].as_str().unwrap().to_string();
    let r = call_retrying(
        c,
        "CreateVpnConnection",
        &[
            ("RegionId", "cn-hangzhou"),
            ("VpnGatewayId", &gw),
            ("CustomerGatewayId", &cgw),
            ("LocalSubnet", "192.168.0.0/24"),
            ("RemoteSubnet", "10.0.0.0/8"),
        ],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    (gw, r.json()["VpnConnectionId"].as_str().unwrap().to_string())
}
