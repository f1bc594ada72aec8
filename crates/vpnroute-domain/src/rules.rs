//! Route rules: the checks a route change must pass, in the order vpnroute applies them.
//! The action layer fetches the relevant state inside the write transaction and calls these
//! pure functions, so concurrent requests can never both pass (the store serialises writers).
//!
//! Rules (Alibaba's codes; the exact triggers are vpnroute's documented choices):
//! * A route's *key* is (gateway, dest) for destination-based routes and
//!   (gateway, source, dest) for policy-based routes. Routes that share a key form an
//!   active/standby group of at most two members with different next hops and weights 100/0.
//! * Same key and same next hop → `VpnRouteEntry.AlreadyExists` (whatever the weight).
//! * A third route for a key → `VpnRouteEntry.Conflict`.
//! * A second route whose weight equals the first one's → `VpnRouteEntry.BackupRoute`.
//! * Weight outside {0, 100} → `VpnRouteEntry.InvalidWeight`.
//! * Destination overlapping the gateway's SSL-VPN client pool → `VpnRouteEntry.ConflictSSL`.
//! * Per-gateway route count at quota → `Resource.QuotaFull`.
//! * Publishing into the VPC system route table: an entry for the same block to another VPN
//!   gateway → `OperationFailed.RouteConflict` (VPN variant); to a next hop that is neither a
//!   router interface nor a VPN gateway → `OperationFailed.RouteConflict` (other variant); the
//!   gateway's entries at quota → `QuotaExceeded.VpnRouteEntry`.

use ipnet::Ipv4Net;

use crate::error::{ApiError, Result};
use crate::model::{VpcRouteEntry, VpnRoute};
use crate::validate::{overlaps, parse_cidr};

pub const WEIGHT_ACTIVE: i64 = 100;
pub const WEIGHT_STANDBY: i64 = 0;
pub const DEFAULT_PRIORITY: i64 = 10;

/// Parse a Weight parameter: an integer (as every integer parameter: optional `+`, leading
/// zeros, surrounding whitespace, as Alibaba's Java `Integer` parsing), and anything but
/// `0` or `100` is `VpnRouteEntry.InvalidWeight`.
pub fn parse_weight(text: &str) -> Result<i64> {
    match text.trim().parse::<i64>() {
        Ok(WEIGHT_STANDBY) => Ok(WEIGHT_STANDBY),
        Ok(WEIGHT_ACTIVE) => Ok(WEIGHT_ACTIVE),
        _ => Err(ApiError::ROUTE_INVALID_WEIGHT),
    }
}

/// Parse a Priority parameter (1–100).
pub fn parse_priority(text: &str, param: &str) -> Result<i64> {
    match text.trim().parse::<i64>() {
        Ok(p) if (1..=100).contains(&p) => Ok(p),
        _ => Err(ApiError::invalid_parameter(param)),
    }
}

/// Check a new route against the existing routes with the same key.
pub fn check_group_add(next_hop: &str, weight: i64, same_key: &[VpnRoute]) -> Result<()> {
    if same_key.iter().any(|r| r.next_hop == next_hop) {
        return Err(ApiError::ROUTE_ALREADY_EXISTS);
    }
    if same_key.len() >= 2 {
        return Err(ApiError::ROUTE_CONFLICT);
    }
    if let Some(other) = same_key.first() {
        if other.weight == weight {
            return Err(ApiError::ROUTE_BACKUP);
        }
    }
    Ok(())
}

/// Check a weight change of `route` to `new_weight`; `siblings` are the other members of its
/// active/standby group.
pub fn check_group_reweight(new_weight: i64, siblings: &[VpnRoute]) -> Result<()> {
    if siblings.iter().any(|s| s.weight == new_weight) {
        return Err(ApiError::ROUTE_BACKUP);
    }
    Ok(())
}

/// `VpnRouteEntry.ConflictSSL` when `dest` overlaps the SSL-VPN client pool.
pub fn check_ssl_pool(dest: &Ipv4Net, client_ip_pool: Option<&str>) -> Result<()> {
    if let Some(pool) = client_ip_pool.and_then(parse_cidr) {
        if overlaps(dest, &pool) {
            return Err(ApiError::ROUTE_CONFLICT_SSL);
        }
    }
    Ok(())
}

/// `Resource.QuotaFull` when the gateway already has `count` ≥ `quota` routes of the kind.
pub fn check_route_quota(count: u64, quota: u64) -> Result<()> {
    if count >= quota {
        return Err(ApiError::QUOTA_FULL);
    }
    Ok(())
}

/// What publishing a destination to the VPC system route table requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishPlan {
    /// The table already routes the block to this gateway: nothing to add.
    AlreadyPresent,
    /// A new entry to this gateway must be added.
    AddEntry,
}

/// Decide how `dest` is published for `gateway_id`, given the system table's entries for
/// exactly that block and the number of entries already pointing to the gateway.
pub fn plan_publish(
    gateway_id: &str,
    same_block: &[VpcRouteEntry],
    entries_to_gateway: u64,
    quota: u64,
) -> Result<PublishPlan> {
    let mut present = false;
    for e in same_block {
        match e.next_hop_type.as_str() {
            "VpnGateway" if e.next_hop_id == gateway_id => present = true,
            "VpnGateway" => return Err(ApiError::VPC_ROUTE_CONFLICT_VPN),
            "RouterInterface" => {}
            _ => return Err(ApiError::VPC_ROUTE_CONFLICT_OTHER),
        }
    }
    if present {
        return Ok(PublishPlan::AlreadyPresent);
    }
    if entries_to_gateway >= quota {
        return Err(ApiError::VPC_ROUTE_QUOTA);
    }
    Ok(PublishPlan::AddEntry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RouteKind;

    fn route(next_hop: &str, weight: i64) -> VpnRoute {
        VpnRoute {
            seq: 1,
            kind: RouteKind::Dbr,
            gateway_id: "vpn-1".into(),
            source: String::new(),
            dest: "10.0.0.0/24".into(),
            next_hop: next_hop.into(),
            weight,
            priority: 10,
            published: false,
            description: String::new(),
            overlay_mode: "Ipsec".into(),
            create_time: 0,
        }
    }

    fn entry(kind: &str, id: &str) -> VpcRouteEntry {
        VpcRouteEntry {
            id: "rte-1".into(),
            route_table_id: "vtb-1".into(),
            dest: "10.0.0.0/24".into(),
            next_hop_type: kind.into(),
            next_hop_id: id.into(),
            entry_type: "Custom".into(),
            name: String::new(),
            description: String::new(),
            create_time: 0,
        }
    }

    #[test]
    fn weights() {
        assert_eq!(parse_weight("0").unwrap(), 0);
        assert_eq!(parse_weight("100").unwrap(), 100);
        for bad in ["50", "-1", "x", "", "1000", "1e2", "100.0", "0x64", "++100"] {
            assert_eq!(parse_weight(bad).unwrap_err().code, "VpnRouteEntry.InvalidWeight");
        }
        // Integers as Java parses them: sign, leading zeros.
        for (text, w) in [("+100", 100), ("0100", 100), ("00", 0), ("-0", 0), (" 100 ", 100)] {
            assert_eq!(parse_weight(text).unwrap(), w, "{text:?}");
        }
        assert_eq!(parse_priority("+5", "Priority").unwrap(), 5);
        assert_eq!(parse_priority("05", "Priority").unwrap(), 5);
        assert_eq!(parse_priority("+-5", "Priority").unwrap_err().code, "InvalidParameter");
    }

    #[test]
    fn active_standby_group() {
        assert!(check_group_add("vco-a", 100, &[]).is_ok());
        assert_eq!(
            check_group_add("vco-a", 0, &[route("vco-a", 100)]).unwrap_err().code,
            "VpnRouteEntry.AlreadyExists"
        );
        assert_eq!(
            check_group_add("vco-b", 100, &[route("vco-a", 100)]).unwrap_err().code,
            "VpnRouteEntry.BackupRoute"
        );
        assert!(check_group_add("vco-b", 0, &[route("vco-a", 100)]).is_ok());
        assert_eq!(
            check_group_add("vco-c", 0, &[route("vco-a", 100), route("vco-b", 0)])
                .unwrap_err()
                .code,
            "VpnRouteEntry.Conflict"
        );
        assert_eq!(
            check_group_reweight(100, &[route("vco-b", 100)]).unwrap_err().code,
            "VpnRouteEntry.BackupRoute"
        );
        assert!(check_group_reweight(0, &[route("vco-b", 100)]).is_ok());
    }

    #[test]
    fn ssl_pool_overlap() {
        let d: Ipv4Net = "10.0.0.0/24".parse().unwrap();
        assert!(check_ssl_pool(&d, None).is_ok());
        assert!(check_ssl_pool(&d, Some("10.1.0.0/24")).is_ok());
        assert_eq!(
            check_ssl_pool(&d, Some("10.0.0.0/16")).unwrap_err().code,
            "VpnRouteEntry.ConflictSSL"
        );
    }

    #[test]
    fn publish_plans() {
        assert_eq!(plan_publish("vpn-1", &[], 0, 10).unwrap(), PublishPlan::AddEntry);
        assert_eq!(
            plan_publish("vpn-1", &[entry("VpnGateway", "vpn-1")], 10, 10).unwrap(),
            PublishPlan::AlreadyPresent
        );
        assert_eq!(
            plan_publish("vpn-1", &[entry("VpnGateway", "vpn-2")], 0, 10)
                .unwrap_err()
                .message,
            ApiError::VPC_ROUTE_CONFLICT_VPN.message
        );
        assert_eq!(
            plan_publish("vpn-1", &[entry("Instance", "i-1")], 0, 10)
                .unwrap_err()
                .message,
            ApiError::VPC_ROUTE_CONFLICT_OTHER.message
        );
        assert!(plan_publish("vpn-1", &[entry("RouterInterface", "ri-1")], 0, 10).is_ok());
        assert_eq!(
            plan_publish("vpn-1", &[], 10, 10).unwrap_err().code,
            "QuotaExceeded.VpnRouteEntry"
        );
    }
}
