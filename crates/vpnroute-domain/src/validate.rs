//! Validation of individual values: CIDR blocks, descriptions, names, IP addresses.
//!
//! CIDR rules for VPN routes (Alibaba documents the codes, not the exact split; this is
//! vpnroute's rule, recorded in `docs/compatibility.md`):
//! * text that is not `a.b.c.d/len` with `len` in 0..=32 → `IllegalParam.RouteDest`
//!   (`IllegalParam.RouteSource` for a policy route's source);
//! * a well-formed block with host bits set (`10.0.0.10/24`) → `OperationFailed.InvalidCidrBlock`;
//! * a destination that is `0.0.0.0/0`, overlaps `100.64.0.0/10`, "this network"
//!   `0.0.0.0/8`, link-local `169.254.0.0/16`, loopback `127.0.0.0/8`, multicast
//!   `224.0.0.0/4` or reserved `240.0.0.0/4` → `OperationFailed.InvalidCidrBlock`. Sources may be any well-formed block (including
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
const FORBIDDEN_DEST: [Ipv4Net; 5] = [
    ipv4net(0, 0, 0, 0, 8),
    ipv4net(169, 254, 0, 0, 16),
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

/// Whether `c` may not appear in a name or description: control characters (C0, DEL,
/// C1), bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069:
/// they make a name display as something else), and Unicode non-characters.
fn forbidden_char(c: char) -> bool {
    let cp = c as u32;
    c.is_control()
        || (0x202A..=0x202E).contains(&cp)
        || (0x2066..=0x2069).contains(&cp)
        || (0xFDD0..=0xFDEF).contains(&cp)
        || (cp & 0xFFFE) == 0xFFFE
}

/// The shared text rule of names and descriptions: `1..=max` characters, none of
/// [`forbidden_char`], and not starting (after leading whitespace, in any letter case)
/// with `http://` or `https://`.
fn display_text(text: &str, max: usize) -> bool {
    let n = text.chars().count();
    let head = text.trim_start();
    let starts_with_ci = |prefix: &str| head.get(..prefix.len()).is_some_and(|h| h.eq_ignore_ascii_case(prefix));
    (1..=max).contains(&n)
        && !text.chars().any(forbidden_char)
        && !starts_with_ci("http://")
        && !starts_with_ci("https://")
}

/// Description: 1–100 characters, and the text rule of `display_text` (module docs).
pub fn description(text: &str) -> Result<()> {
    if !display_text(text, 100) {
        return Err(ApiError::INVALID_DESCRIPTION);
    }
    Ok(())
}

/// Resource name: 1–128 characters (Alibaba: 2–128 for some resources; vpnroute applies
/// one rule to every resource), and the text rule of `display_text`.
pub fn name(text: &str) -> Result<()> {
    if !display_text(text, 128) {
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
        for reserved in [
            "0.0.0.0/8",
            "0.1.0.0/16",
            "169.254.0.0/16",
            "169.254.1.0/24",
            "169.0.0.0/8",
        ] {
            assert_eq!(
                route_dest(reserved).unwrap_err().code,
                "OperationFailed.InvalidCidrBlock",
                "{reserved}"
            );
        }
        assert!(route_dest("1.0.0.0/8").is_ok());
        assert!(route_dest("169.253.0.0/16").is_ok());
        assert!(route_source("0.0.0.0/8").is_ok() && route_source("169.254.0.0/16").is_ok());
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
        assert!(description("é".repeat(100).as_str()).is_ok(), "characters, not bytes");
    }

    #[test]
    fn hostile_text_in_names_and_descriptions() {
        for bad in [
            "a\nb",
            "a\tb",
            "a\rb",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}",
            "rlo\u{202e}txt.exe",
            "lri\u{2066}x",
            "pdi\u{2069}",
            "nc\u{fdd0}",
            "nc\u{fffe}",
            "nc\u{1ffff}",
            "nc\u{10ffff}",
        ] {
            assert_eq!(
                description(bad).unwrap_err().code,
                "InvalidDescription.Malformed",
                "{bad:?}"
            );
            assert_eq!(name(bad).unwrap_err().code, "InvalidName.Malformed", "{bad:?}");
        }
        for bad in ["HTTP://x", "Https://x", "  http://x", "\u{3000}https://x", "hTtP://"] {
            assert!(description(bad).is_err() && name(bad).is_err(), "{bad:?}");
        }
        for good in [
            "http:/x",
            "see http://x",
            " leading space",
            "zh 中文 ñ",
            "emoji 🚀",
            "zwj a\u{200d}b",
            "x http",
        ] {
            assert!(description(good).is_ok() && name(good).is_ok(), "{good:?}");
        }
        assert!(name(&"n".repeat(128)).is_ok() && name(&"n".repeat(129)).is_err());
    }

    #[test]
    fn customer_gateway_ips() {
        assert!(customer_gateway_ip("1.2.3.4").is_ok());
        assert!(customer_gateway_ip("100.64.0.1").is_err());
        assert!(customer_gateway_ip("1.2.3").is_err());
    }
}
