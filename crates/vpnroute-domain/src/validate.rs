//! Validation of individual values: CIDR blocks, descriptions, names, IP addresses.
//!
//! CIDR rules for VPN routes (Alibaba documents the codes, not the exact split; this is
//! vpnroute's rule, recorded in `docs/compatibility.md`):
//! * text that is not `a.b.c.d/len` with `len` in 0..=32 → `IllegalParam.RouteDest`
//!   (`IllegalParam.RouteSource` for a policy route's source);
//! * a well-formed block with host bits set (`10.0.0.10/24`) → `OperationFailed.InvalidCidrBlock`;
//! * a destination that is `0.0.0.0/0`, overlaps `100.64.0.0/10`, or lies in loopback
//!   `127.0.0.0/8`, multicast `224.0.0.0/4` or reserved `240.0.0.0/4` →
//!   `OperationFailed.InvalidCidrBlock`. Sources may be any well-formed block (including
//!   `0.0.0.0/0`: "from anywhere").

use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::Ipv4Net;

use crate::error::{ApiError, Result};

/// Parse strict `a.b.c.d/len` text; `None` when malformed.
pub fn parse_cidr(text: &str) -> Option<Ipv4Net> {
    let (addr, len) = text.split_once('/')?;
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let addr = Ipv4Addr::from_str(addr).ok()?;
    let len: u8 = len.parse().ok()?;
    Ipv4Net::new(addr, len).ok()
}

/// The canonical spelling of a block for lookups: the network address and prefix of
/// `text` (`10.0.0.10/24` → `10.0.0.0/24`), the text itself when it is not a block (so it
/// matches nothing stored). Every lookup of a stored block by a caller's text goes through
/// this one function; stored blocks are canonical (creation refuses host bits).
pub fn canonical_cidr(text: &str) -> String {
    match parse_cidr(text) {
        Some(net) => net.trunc().to_string(),
        None => text.to_string(),
    }
}

fn has_host_bits(net: &Ipv4Net) -> bool {
    net.addr() != net.network()
}

const SHARED_SPACE: Ipv4Net = ipv4net(100, 64, 0, 0, 10);
const FORBIDDEN_DEST: [Ipv4Net; 3] = [
    ipv4net(127, 0, 0, 0, 8),
    ipv4net(224, 0, 0, 0, 4),
    ipv4net(240, 0, 0, 0, 4),
];

const fn ipv4net(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    match Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len) {
        Ok(n) => n,
        Err(_) => panic!("invalid constant prefix"),
    }
}

/// Whether two blocks share at least one address.
pub fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Validate a route destination (both route kinds).
pub fn route_dest(text: &str) -> Result<Ipv4Net> {
    let net = parse_cidr(text).ok_or(ApiError::ILLEGAL_ROUTE_DEST)?;
    if has_host_bits(&net)
        || net.prefix_len() == 0
        || overlaps(&net, &SHARED_SPACE)
        || FORBIDDEN_DEST.iter().any(|f| overlaps(&net, f))
    {
        return Err(ApiError::INVALID_CIDR_BLOCK);
    }
    Ok(net)
}

/// Validate a policy route's source block.
pub fn route_source(text: &str) -> Result<Ipv4Net> {
    let net = parse_cidr(text).ok_or(ApiError::ILLEGAL_ROUTE_SOURCE)?;
    if has_host_bits(&net) {
        return Err(ApiError::INVALID_CIDR_BLOCK);
    }
    Ok(net)
}

/// Description: 1–100 characters, must not start with `http://` or `https://`.
pub fn description(text: &str) -> Result<()> {
    let n = text.chars().count();
    if n == 0 || n > 100 || text.starts_with("http://") || text.starts_with("https://") {
        return Err(ApiError::INVALID_DESCRIPTION);
    }
    Ok(())
}

/// Resource name (VPN gateway rules): 1–100 characters (Alibaba: 2–128 for some
/// resources; vpnroute applies one rule to every resource), not `http://`/`https://`.
pub fn name(text: &str) -> Result<()> {
    let n = text.chars().count();
    if n == 0 || n > 128 || text.starts_with("http://") || text.starts_with("https://") {
        return Err(ApiError::INVALID_NAME);
    }
    Ok(())
}

/// A VPC CIDR block: well-formed, prefix /8–/28, no host bits.
pub fn vpc_cidr(text: &str) -> Result<Ipv4Net> {
    let net = parse_cidr(text).ok_or(ApiError::INVALID_VPC_CIDR)?;
    if has_host_bits(&net) || !(8..=28).contains(&net.prefix_len()) {
        return Err(ApiError::INVALID_VPC_CIDR);
    }
    Ok(net)
}

/// A comma-separated list of CIDR blocks (connection subnets, SSL local subnets).
pub fn cidr_list(text: &str, param: &str) -> Result<Vec<Ipv4Net>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let net = parse_cidr(part).ok_or_else(|| ApiError::invalid_parameter(param))?;
        if has_host_bits(&net) {
            return Err(ApiError::invalid_parameter(param));
        }
        out.push(net);
    }
    if out.is_empty() {
        return Err(ApiError::missing_parameter(param));
    }
    Ok(out)
}

/// A customer gateway's IP address: a plain IPv4 address outside the ranges Alibaba rejects
/// (100.64.0.0/10, 127/8, 169.254/16, 224/4, 255/8, and 0.0.0.0).
pub fn customer_gateway_ip(text: &str) -> Result<Ipv4Addr> {
    let ip = Ipv4Addr::from_str(text).map_err(|_| ApiError::INVALID_IP_ADDRESS)?;
    let bad = [
        ipv4net(100, 64, 0, 0, 10),
        ipv4net(127, 0, 0, 0, 8),
        ipv4net(169, 254, 0, 0, 16),
        ipv4net(224, 0, 0, 0, 4),
        ipv4net(255, 0, 0, 0, 8),
        ipv4net(0, 0, 0, 0, 8),
    ];
    if bad.iter().any(|n| n.contains(&ip)) {
        return Err(ApiError::INVALID_IP_ADDRESS);
    }
    Ok(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_rules() {
        assert!(route_dest("10.0.0.0/24").is_ok());
        assert_eq!(route_dest("10.0.0.0").unwrap_err().code, "IllegalParam.RouteDest");
        assert_eq!(route_dest("10.0.0.0/33").unwrap_err().code, "IllegalParam.RouteDest");
        assert_eq!(route_dest("abc").unwrap_err().code, "IllegalParam.RouteDest");
        assert_eq!(route_dest("10.0.0.0/+4").unwrap_err().code, "IllegalParam.RouteDest");
        assert_eq!(
            route_dest("10.0.0.10/24").unwrap_err().code,
            "OperationFailed.InvalidCidrBlock"
        );
        assert_eq!(
            route_dest("0.0.0.0/0").unwrap_err().code,
            "OperationFailed.InvalidCidrBlock"
        );
        assert_eq!(
            route_dest("100.64.1.0/24").unwrap_err().code,
            "OperationFailed.InvalidCidrBlock"
        );
        assert_eq!(
            route_dest("100.0.0.0/8").unwrap_err().code,
            "OperationFailed.InvalidCidrBlock"
        );
        assert_eq!(
            route_dest("224.0.0.0/8").unwrap_err().code,
            "OperationFailed.InvalidCidrBlock"
        );
        assert!(route_dest("100.128.0.0/16").is_ok());
    }

    #[test]
    fn lookups_canonicalise_blocks() {
        assert_eq!(canonical_cidr("10.0.0.10/24"), "10.0.0.0/24");
        assert_eq!(canonical_cidr("10.0.0.0/24"), "10.0.0.0/24");
        assert_eq!(canonical_cidr("192.168.1.77/0"), "0.0.0.0/0");
        assert_eq!(canonical_cidr("not a block"), "not a block");
    }

    #[test]
    fn source_rules() {
        assert!(route_source("0.0.0.0/0").is_ok());
        assert_eq!(route_source("x/1").unwrap_err().code, "IllegalParam.RouteSource");
        assert_eq!(
            route_source("192.168.1.1/24").unwrap_err().code,
            "OperationFailed.InvalidCidrBlock"
        );
    }

    #[test]
    fn description_rules() {
        assert!(description("mytest").is_ok());
        assert!(description("").is_err());
        assert!(description("http://x").is_err());
        assert!(description(&"a".repeat(100)).is_ok());
        assert!(description(&"a".repeat(101)).is_err());
    }

    #[test]
    fn customer_gateway_ips() {
        assert!(customer_gateway_ip("1.2.3.4").is_ok());
        assert!(customer_gateway_ip("100.64.0.1").is_err());
        assert!(customer_gateway_ip("1.2.3").is_err());
    }
}
