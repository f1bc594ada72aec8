//! # vpnroute-client
//!
//! Signs requests exactly like the real SDKs (v1 HMAC-SHA1 in the query, or ACS3-HMAC-SHA256
//! in the `Authorization` header, each with a fresh nonce and timestamp) and speaks minimal
//! HTTP/1.1 with keep-alive, synchronously ([`Client`]) or on tokio ([`AsyncClient`]). It
//! exists for vpnroute's load generator and end-to-end tests, where a full HTTP stack per
//! request would measure the client rather than the server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rand::Rng;
use vpnroute_wire::{acs3_sign, v1_signed_query, Acs3SignInput, Params};

pub const API_VERSION: &str = "2016-04-28";

/// Which signature scheme a request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    V1,
    Acs3,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
}

fn nonce() -> String {
    let b: [u8; 16] = rand::rng().random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

/// The bytes of a signed `POST /` request for `action` with `params`.
pub fn build_request(
    host: &str,
    creds: &Credentials,
    scheme: Scheme,
    action: &str,
    params: &[(&str, &str)],
) -> Vec<u8> {
    let mut p = Params::new();
    for (k, v) in params {
        p.push(*k, *v);
    }
    let (query, extra_headers) = match scheme {
        Scheme::V1 => {
            p.push("Action", action);
            p.push("Version", API_VERSION);
            p.push("Format", "JSON");
            p.push("AccessKeyId", creds.access_key_id.as_str());
            p.push("SignatureMethod", "HMAC-SHA1");
            p.push("SignatureVersion", "1.0");
            p.push("SignatureNonce", nonce());
            p.push("Timestamp", timestamp());
            (v1_signed_query("POST", &p, &creds.access_key_secret), vec![])
        }
        Scheme::Acs3 => {
            let headers = vec![
                ("host".to_string(), host.to_string()),
                ("x-acs-action".to_string(), action.to_string()),
                ("x-acs-version".to_string(), API_VERSION.to_string()),
            ];
            let date = timestamp();
            let n = nonce();
            let signed = acs3_sign(&Acs3SignInput {
                method: "POST",
                path: "/",
                query: &p,
                headers: &headers,
                body: b"",
                access_key_id: &creds.access_key_id,
                secret: &creds.access_key_secret,
                date: &date,
                nonce: &n,
                security_token: None,
                sign_all_headers: false,
            });
            let extra: Vec<(String, String)> = signed
                .headers
                .into_iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("host"))
                .collect();
            (signed.raw_query, extra)
        }
    };
    let mut out =
        format!("POST /?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nAccept: application/json\r\n");
    for (k, v) in extra_headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The error `Code`, if the body has one.
    pub fn code(&self) -> Option<String> {
        self.json().get("Code").and_then(|c| c.as_str()).map(str::to_string)
    }
}

/// Parse one complete response from the start of `buf`: `(response, bytes used)`.
pub fn parse_response(buf: &[u8]) -> Option<(Response, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    if buf.len() < head_end + len {
        return None;
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).into_owned();
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some((Response { status, headers, body }, head_end + len))
}

/// A blocking keep-alive client.
pub struct Client {
    addr: SocketAddr,
    host: String,
    creds: Credentials,
    scheme: Scheme,
    conn: Option<TcpStream>,
}

impl Client {
    pub fn new(addr: SocketAddr, creds: Credentials, scheme: Scheme) -> Self {
        Client {
            addr,
            host: addr.to_string(),
            creds,
            scheme,
            conn: None,
        }
    }

    /// Send one signed request and wait for its response.
    pub fn call(&mut self, action: &str, params: &[(&str, &str)]) -> std::io::Result<Response> {
        let req = build_request(&self.host, &self.creds, self.scheme, action, params);
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.set_nodelay(true)?;
            self.conn = Some(s);
        }
        let result = (|| {
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no connection"))?;
            conn.write_all(&req)?;
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = [0u8; 8192];
            loop {
                if let Some((resp, _)) = parse_response(&buf) {
                    return Ok(resp);
                }
                let n = conn.read(&mut chunk)?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        })();
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

/// A tokio keep-alive client (one connection, one request at a time).
pub struct AsyncClient {
    addr: SocketAddr,
    host: String,
    creds: Credentials,
    scheme: Scheme,
    conn: Option<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl AsyncClient {
    pub fn new(addr: SocketAddr, creds: Credentials, scheme: Scheme) -> Self {
        AsyncClient {
            addr,
            host: addr.to_string(),
            creds,
            scheme,
            conn: None,
            buf: Vec::with_capacity(16384),
        }
    }

    pub async fn call(&mut self, action: &str, params: &[(&str, &str)]) -> std::io::Result<Response> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let req = build_request(&self.host, &self.creds, self.scheme, action, params);
        if self.conn.is_none() {
            let s = tokio::net::TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.conn = Some(s);
        }
        self.buf.clear();
        let result = async {
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no connection"))?;
            conn.write_all(&req).await?;
            let mut chunk = [0u8; 16384];
            loop {
                if let Some((resp, _)) = parse_response(&self.buf) {
                    return Ok(resp);
                }
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
        .await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}extra";
        let (r, used) = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "{}");
        assert_eq!(used, raw.len() - 5);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}").is_none());
    }

    #[test]
    fn signed_requests_verify() {
        let creds = Credentials {
            access_key_id: "testid".into(),
            access_key_secret: "testsecret".into(),
        };
        for scheme in [Scheme::V1, Scheme::Acs3] {
            let raw = build_request(
                "127.0.0.1:1",
                &creds,
                scheme,
                "DescribeRegions",
                &[("RegionId", "cn-hangzhou")],
            );
            let text = String::from_utf8(raw).unwrap();
            let (head, _) = text.split_once("\r\n\r\n").unwrap();
            let mut lines = head.lines();
            let target = lines.next().unwrap().split(' ').nth(1).unwrap();
            let query = target.trim_start_matches("/?");
            let headers: Vec<(String, String)> = lines
                .map(|l| {
                    let (k, v) = l.split_once(": ").unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            let req = vpnroute_wire::RawRequest {
                method: "POST",
                path: "/",
                raw_query: query,
                headers: &headers,
                body: b"",
            };
            let parsed = vpnroute_wire::parse(&req).unwrap();
            assert_eq!(parsed.action.as_deref(), Some("DescribeRegions"));
            vpnroute_wire::verify(&req, &parsed, "testsecret").unwrap();
            assert!(vpnroute_wire::verify(&req, &parsed, "wrong").is_err());
        }
    }
}
