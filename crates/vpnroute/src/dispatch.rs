//! Action dispatch: maps an Action name to its handler and runs it in the right kind of
//! transaction. Mutating actions run in one write transaction together with the ClientToken
//! check/save, so a change, its idempotency record and its task commit or vanish together.
//! (The signature nonce is recorded before, in the nonce store, for every request.)

use serde_json::Value;
use sha2::{Digest, Sha256};
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, Tx};

use crate::actions::{connection, customer_gateway, gateway, regions, routes, ssl, vpc};
use crate::app::Ctx;
use crate::reply::Reply;

/// A read handler that builds a `serde_json::Value`, as a [`ReadFn`].
macro_rules! value_read {
    ($f:path) => {
        |ctx: &Ctx<'_>, tx: &dyn ReadTx| $f(ctx, tx).map(Reply::Value)
    };
}

pub type ReadFn = fn(&Ctx<'_>, &dyn ReadTx) -> Result<Reply, ApiError>;
pub type WriteFn = fn(&Ctx<'_>, &Tx<'_>) -> Result<Value, ApiError>;

#[derive(Clone, Copy)]
pub enum Handler {
    Read(ReadFn),
    Write(WriteFn),
}

/// The handler of an action, `None` for an unknown action (`InvalidAction.NotFound`).
pub fn handler(action: &str) -> Option<Handler> {
    use Handler::{Read, Write};
    Some(match action {
        "DescribeRegions" => Read(value_read!(regions::describe_regions)),
        "CreateVpc" => Write(vpc::create_vpc),
        "DescribeVpcs" => Read(value_read!(vpc::describe_vpcs)),
        "DeleteVpc" => Write(vpc::delete_vpc),
        "DescribeRouteTableList" => Read(value_read!(vpc::describe_route_table_list)),
        "DescribeRouteEntryList" => Read(value_read!(vpc::describe_route_entry_list)),
        "CreateRouteEntry" => Write(vpc::create_route_entry),
        "DeleteRouteEntry" => Write(vpc::delete_route_entry),
        "CreateVpnGateway" => Write(gateway::create_vpn_gateway),
        "DescribeVpnGateway" => Read(gateway::describe_vpn_gateway),
        "DescribeVpnGateways" => Read(gateway::describe_vpn_gateways),
        "DeleteVpnGateway" => Write(gateway::delete_vpn_gateway),
        "CreateCustomerGateway" => Write(customer_gateway::create_customer_gateway),
        "DescribeCustomerGateway" => Read(value_read!(customer_gateway::describe_customer_gateway)),
        "DescribeCustomerGateways" => Read(value_read!(customer_gateway::describe_customer_gateways)),
        "DeleteCustomerGateway" => Write(customer_gateway::delete_customer_gateway),
        "CreateVpnConnection" => Write(connection::create_vpn_connection),
        "DescribeVpnConnection" => Read(value_read!(connection::describe_vpn_connection)),
        "DescribeVpnConnections" => Read(value_read!(connection::describe_vpn_connections)),
        "DeleteVpnConnection" => Write(connection::delete_vpn_connection),
        "CreateSslVpnServer" => Write(ssl::create_ssl_vpn_server),
        "DescribeSslVpnServers" => Read(value_read!(ssl::describe_ssl_vpn_servers)),
        "DeleteSslVpnServer" => Write(ssl::delete_ssl_vpn_server),
        "CreateVpnRouteEntry" => Write(routes::create_vpn_route_entry),
        "DeleteVpnRouteEntry" => Write(routes::delete_vpn_route_entry),
        "DescribeVpnRouteEntries" => Read(routes::describe_vpn_route_entries),
        "ModifyVpnRouteEntryWeight" => Write(routes::modify_vpn_route_entry_weight),
        "PublishVpnRouteEntry" => Write(routes::publish_vpn_route_entry),
        "CreateVpnPbrRouteEntry" => Write(routes::create_vpn_pbr_route_entry),
        "DeleteVpnPbrRouteEntry" => Write(routes::delete_vpn_pbr_route_entry),
        "DescribeVpnPbrRouteEntries" => Read(routes::describe_vpn_pbr_route_entries),
        "ModifyVpnPbrRouteEntryWeight" => Write(routes::modify_vpn_pbr_route_entry_weight),
        "ModifyVpnPbrRouteEntryPriority" => Write(routes::modify_vpn_pbr_route_entry_priority),
        "ModifyVpnPbrRouteEntryAttribute" => Write(routes::modify_vpn_pbr_route_entry_attribute),
        _ => return None,
    })
}

/// Parameters that are part of the transport, not of the operation: excluded from the
/// ClientToken comparison (a retry is re-signed with a new nonce and timestamp).
const TRANSPORT_PARAMS: &[&str] = &[
    "AccessKeyId",
    "Action",
    "Format",
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureType",
    "SignatureVersion",
    "SecurityToken",
    "Timestamp",
    "Version",
    "ClientToken",
];

/// Hash of the operation parameters, order-independent.
pub fn params_hash(params: &[(String, String)]) -> String {
    let mut ps: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| !TRANSPORT_PARAMS.contains(&k.as_str()))
        .collect();
    ps.sort();
    let mut h = Sha256::new();
    for (k, v) in ps {
        // Booleans arrive as `True` (Python SDKs) or `true` (Node, Go): the same value, so a
        // retry through another SDK is the same request.
        let v = if v.eq_ignore_ascii_case("true") {
            "true"
        } else if v.eq_ignore_ascii_case("false") {
            "false"
        } else {
            v.as_str()
        };
        h.update(k.as_bytes());
        h.update([0]);
        h.update(v.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// ClientTokens are remembered for 24 hours.
pub const CLIENT_TOKEN_TTL_MS: i64 = 24 * 3600 * 1000;

/// Run a mutating handler with ClientToken idempotency inside `tx`.
pub fn run_write(ctx: &Ctx<'_>, tx: &Tx<'_>, f: WriteFn) -> Result<Value, ApiError> {
    let token = ctx
        .params
        .iter()
        .find(|(k, _)| k == "ClientToken")
        .map(|(_, v)| v.as_str())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return f(ctx, tx);
    };
    if token.len() > 64 || !token.is_ascii() {
        return Err(ApiError::invalid_parameter("ClientToken"));
    }
    let hash = params_hash(ctx.params);
    if let Some((saved_hash, saved)) =
        tx.client_token(&ctx.account_id, ctx.action, token, ctx.now_ms - CLIENT_TOKEN_TTL_MS)?
    {
        if saved_hash != hash {
            return Err(ApiError::IDEMPOTENT_MISMATCH);
        }
        return serde_json::from_str(&saved).map_err(|_| ApiError::INTERNAL_ERROR);
    }
    let body = f(ctx, tx)?;
    tx.save_client_token(&ctx.account_id, ctx.action, token, &hash, &body.to_string(), ctx.now_ms)?;
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn hash_ignores_transport_and_order() {
        let a = p(&[("A", "1"), ("B", "2"), ("SignatureNonce", "x"), ("Timestamp", "t1")]);
        let b = p(&[("B", "2"), ("A", "1"), ("SignatureNonce", "y"), ("Timestamp", "t2")]);
        assert_eq!(params_hash(&a), params_hash(&b));
        let c = p(&[("A", "1"), ("B", "3")]);
        let py = p(&[("PublishVpc", "True")]);
        let node = p(&[("PublishVpc", "true")]);
        assert_eq!(params_hash(&py), params_hash(&node));
        assert_ne!(params_hash(&a), params_hash(&c));
    }

    #[test]
    fn every_seed_action_is_routed() {
        for a in [
            "CreateVpnRouteEntry",
            "CreateVpnPbrRouteEntry",
            "DescribeVpnGateway",
            "ModifyVpnPbrRouteEntryAttribute",
        ] {
            assert!(handler(a).is_some(), "{a}");
        }
        assert!(handler("Nope").is_none());
    }
}
