//! Action dispatch: maps an Action name to its handler (through the [`crate::ops`] table) and
//! runs it in the right kind of transaction. Mutating actions run in one write transaction together with the ClientToken
//! check/save, so a change, its idempotency record and its task commit or vanish together.
//! (The signature nonce is recorded before, in the nonce store, for every request.)

use serde_json::Value;
use sha2::{Digest, Sha256};
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, Tx};

use crate::reply::Reply;
use crate::state::Ctx;

/// An RPC read handler: parses its input from the request and answers a [`Reply`].
pub type ReadFn = fn(&Ctx<'_>, &dyn ReadTx) -> Result<Reply, ApiError>;
/// An RPC write handler: parses its input and answers the body (replayed for a ClientToken).
pub type WriteFn = fn(&Ctx<'_>, &Tx<'_>) -> Result<Value, ApiError>;

#[derive(Clone, Copy)]
pub enum Handler {
    Read(ReadFn),
    Write(WriteFn),
}

/// The handler of an action, `None` for an unknown action (`InvalidAction.NotFound`).
pub fn handler(action: &str) -> Option<Handler> {
    crate::ops::operation(action).map(|o| o.handler)
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

/// Hash of the operation parameters, order-independent. Each name and value enters the
/// hash length-prefixed (8-byte little-endian length, then the bytes), so no choice of
/// bytes inside a value can imitate a parameter boundary.
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
        for field in [k.as_bytes(), v.as_bytes()] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field);
        }
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
    fn hash_cannot_be_imitated_by_separators_inside_values() {
        let two = p(&[("Description", "x"), ("Foo", "bar")]);
        let one = p(&[("Description", "x\0Foo\0bar")]);
        assert_ne!(params_hash(&two), params_hash(&one));
        let shifted = p(&[("Description", "x\0Foo"), ("", "bar")]);
        assert_ne!(params_hash(&two), params_hash(&shifted));
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
