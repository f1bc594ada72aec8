//! Quotas. Alibaba's defaults (2020 limits page: 20 destination-based and 20 policy-based
//! routes per gateway, 10 IPsec connections per gateway, 100 customer gateways per region)
//! are adjustable "via Quota Management"; vpnroute's defaults are the documented values of
//! `docs/compatibility.md` and every one is configurable (`vpnroute serve --quota-…`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    /// Destination-based routes per VPN gateway (`Resource.QuotaFull` beyond).
    pub dbr_routes_per_gateway: u64,
    /// Policy-based routes per VPN gateway (`Resource.QuotaFull` beyond).
    pub pbr_routes_per_gateway: u64,
    /// Entries pointing to one VPN gateway in its VPC's system route table
    /// (`QuotaExceeded.VpnRouteEntry` beyond).
    pub vpc_routes_per_gateway: u64,
    /// VPN gateways per account and region.
    pub gateways_per_region: u64,
    /// IPsec connections per VPN gateway.
    pub connections_per_gateway: u64,
    /// Customer gateways per account and region.
    pub customer_gateways_per_region: u64,
    /// VPCs per account and region.
    pub vpcs_per_region: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            dbr_routes_per_gateway: 100,
            pbr_routes_per_gateway: 100,
            vpc_routes_per_gateway: 200,
            gateways_per_region: 100,
            connections_per_gateway: 10,
            customer_gateways_per_region: 100,
            vpcs_per_region: 100,
        }
    }
}
