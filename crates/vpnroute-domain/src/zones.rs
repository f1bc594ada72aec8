//! Zones of each served region (DescribeZones, DescribeVpnGatewayAvailableZones, the ZoneId of
//! CreateVSwitch) and the rules for a vswitch's CIDR block inside its VPC.
//!
//! Zone ids are real Alibaba zones of the 14 default regions (a subset: the ones that host VPN
//! gateways at the time of writing); a region given with `--regions` that is not in the table
//! gets the zones `<region>-a` and `<region>-b`. Every zone serves every gateway spec.

use ipnet::Ipv4Net;

use crate::error::{ApiError, Result};
use crate::validate::{overlaps, parse_cidr};

pub const ZONE_NOT_FOUND: ApiError =
    ApiError::new_static("InvalidZoneId.NotFound", "Specified zone does not exist.", 404);
pub const VSWITCH_CIDR_OVERLAPPED: ApiError = ApiError::new_static(
    "InvalidCidrBlock.Overlapped",
    "Specified CIDR block overlapped with other subnets.",
    400,
);
pub const VSWITCH_CIDR_NOT_IN_VPC: ApiError =
    ApiError::new_static("InvalidParameter", "Specified CIDR block is not valid in VPC.", 400);
pub const VSWITCH_CIDR_MALFORMED: ApiError =
    ApiError::new_static("InvalidCidrBlock.Malformed", "Specified CIDR block is not valid.", 400);

/// One availability zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: String,
    /// e.g. `China (Hangzhou) Zone H`.
    pub local_name: String,
}

const KNOWN: &[(&str, &[&str])] = &[
    ("cn-qingdao", &["b", "c"]),
    ("cn-beijing", &["h", "i", "j", "k", "l"]),
    ("cn-zhangjiakou", &["a", "b", "c"]),
    ("cn-hangzhou", &["h", "i", "j", "k"]),
    ("cn-shanghai", &["e", "f", "g", "l"]),
    ("cn-shenzhen", &["d", "e", "f"]),
    ("cn-hongkong", &["b", "c", "d"]),
    ("ap-southeast-1", &["a", "b", "c"]),
    ("ap-southeast-5", &["a", "b"]),
    ("ap-northeast-1", &["a", "b"]),
    ("eu-central-1", &["a", "b"]),
    ("eu-west-1", &["a", "b"]),
    ("us-west-1", &["a", "b"]),
    ("us-east-1", &["a", "b"]),
];

/// The zones of `region_id` (`region_name` is its LocalName), in id order.
pub fn zones(region_id: &str, region_name: &str) -> Vec<Zone> {
    let letters: &[&str] = KNOWN
        .iter()
        .find(|(r, _)| *r == region_id)
        .map(|(_, z)| *z)
        .unwrap_or(&["a", "b"]);
    letters
        .iter()
        .map(|l| Zone {
            id: format!("{region_id}-{l}"),
            local_name: format!("{region_name} Zone {}", l.to_ascii_uppercase()),
        })
        .collect()
}

/// A zone of the region, or `InvalidZoneId.NotFound`.
pub fn zone(region_id: &str, region_name: &str, zone_id: &str) -> Result<Zone> {
    zones(region_id, region_name)
        .into_iter()
        .find(|z| z.id == zone_id)
        .ok_or(ZONE_NOT_FOUND)
}

/// A vswitch CIDR block: a network address with a /16–/29 mask (`InvalidCidrBlock.Malformed`),
/// inside the VPC's block (`InvalidParameter`), overlapping none of `siblings`
/// (`InvalidCidrBlock.Overlapped`).
pub fn vswitch_cidr(text: &str, vpc_cidr: &str, siblings: &[String]) -> Result<Ipv4Net> {
    let net = parse_cidr(text).ok_or(VSWITCH_CIDR_MALFORMED)?;
    if net.addr() != net.network() || !(16..=29).contains(&net.prefix_len()) {
        return Err(VSWITCH_CIDR_MALFORMED);
    }
    match parse_cidr(vpc_cidr) {
        Some(vpc) if vpc.contains(&net) => {}
        _ => return Err(VSWITCH_CIDR_NOT_IN_VPC),
    }
    if siblings
        .iter()
        .filter_map(|s| parse_cidr(s))
        .any(|s| overlaps(&s, &net))
    {
        return Err(VSWITCH_CIDR_OVERLAPPED);
    }
    Ok(net)
}

/// Addresses of a vswitch that instances can use: Alibaba reserves the first and the last
/// three addresses of every vswitch.
pub fn available_ips(net: &Ipv4Net) -> i64 {
    (1i64 << (32 - net.prefix_len() as i64)) - 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_table() {
        let z = zones("cn-hangzhou", "China (Hangzhou)");
        assert_eq!(z[0].id, "cn-hangzhou-h");
        assert_eq!(z[0].local_name, "China (Hangzhou) Zone H");
        assert_eq!(zones("xx-test-1", "Test").len(), 2);
        assert!(zone("cn-hangzhou", "", "cn-hangzhou-i").is_ok());
        assert_eq!(zone("cn-hangzhou", "", "cn-shanghai-e").unwrap_err(), ZONE_NOT_FOUND);
    }

    #[test]
    fn vswitch_blocks() {
        let sib = vec!["172.16.1.0/24".to_string()];
        assert!(vswitch_cidr("172.16.2.0/24", "172.16.0.0/16", &sib).is_ok());
        assert_eq!(
            vswitch_cidr("172.16.1.128/25", "172.16.0.0/16", &sib).unwrap_err(),
            VSWITCH_CIDR_OVERLAPPED
        );
        assert_eq!(
            vswitch_cidr("10.0.0.0/24", "172.16.0.0/16", &sib).unwrap_err(),
            VSWITCH_CIDR_NOT_IN_VPC
        );
        assert_eq!(
            vswitch_cidr("172.16.2.3/24", "172.16.0.0/16", &sib).unwrap_err(),
            VSWITCH_CIDR_MALFORMED
        );
        assert_eq!(
            vswitch_cidr("172.16.0.0/30", "172.16.0.0/16", &sib).unwrap_err(),
            VSWITCH_CIDR_MALFORMED
        );
        assert_eq!(
            vswitch_cidr("x", "172.16.0.0/16", &sib).unwrap_err(),
            VSWITCH_CIDR_MALFORMED
        );
        assert_eq!(available_ips(&"10.0.0.0/24".parse().unwrap()), 252);
    }
}
