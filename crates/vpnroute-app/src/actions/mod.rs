//! Action handlers, one module per resource family, and the lookups they share. A converted
//! family (routes, gateways, connections) defines per Action a typed input (with its
//! [`crate::rpc::FromRpc`] parser), an [`crate::ops::Operation`] whose handler works on the
//! input and an [`crate::state::OpCtx`], and a typed output. The other families still read
//! their parameters through [`vpnroute_domain::params::Params`] inside the handler. Either way
//! a handler applies the domain rules in the store transaction it is given and returns the
//! body without `RequestId` (added by the HTTP layer).

pub mod connection;
pub mod customer_gateway;
pub mod gateway;
pub mod regions;
pub mod routes;
pub mod ssl;
pub mod tags;
pub mod vpc;
pub mod vswitch;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use vpnroute_domain::model::{CustomerGateway, SslVpnServer, VSwitch, Vpc, VpnConnection, VpnGateway};
use vpnroute_domain::params::{Paging, Params};
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind};

use crate::state::{Ctx, OpCtx};

pub fn params<'a>(ctx: &'a Ctx<'_>) -> Params<'a> {
    Params::new(ctx.params)
}

/// The `RegionId` parameter: required and one of the served regions.
pub fn region<'a>(ctx: &'a Ctx<'_>) -> Result<&'a str, ApiError> {
    let r = params(ctx).str("RegionId")?;
    if !ctx.app.config.regions.iter().any(|x| x.id == r) {
        return Err(ApiError::REGION_NOT_FOUND);
    }
    Ok(r)
}

/// Resources that live in one region.
pub trait Regional: DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: ResourceKind;
    const NOT_FOUND: ApiError;
    fn region(&self) -> &str;
}

macro_rules! regional {
    ($t:ty, $kind:expr, $nf:expr) => {
        impl Regional for $t {
            const KIND: ResourceKind = $kind;
            const NOT_FOUND: ApiError = $nf;
            fn region(&self) -> &str {
                &self.region_id
            }
        }
    };
}

regional!(Vpc, ResourceKind::Vpc, ApiError::VPC_NOT_FOUND);
regional!(VSwitch, ResourceKind::VSwitch, ApiError::VSWITCH_NOT_FOUND);
regional!(VpnGateway, ResourceKind::VpnGateway, ApiError::GATEWAY_NOT_FOUND);
regional!(
    CustomerGateway,
    ResourceKind::CustomerGateway,
    ApiError::CUSTOMER_GATEWAY_NOT_FOUND
);
regional!(
    VpnConnection,
    ResourceKind::VpnConnection,
    ApiError::CONNECTION_NOT_FOUND
);
regional!(SslVpnServer, ResourceKind::SslVpnServer, ApiError::SSL_SERVER_NOT_FOUND);

/// A resource of the caller's account in `region`; another account's resource, or one in
/// another region, does not exist for the caller.
pub fn owned<T: Regional>(ctx: &OpCtx<'_>, tx: &dyn ReadTx, region: &str, id: &str) -> Result<T, ApiError> {
    match tx.resource::<T>(T::KIND, id)? {
        Some(r) if r.account_id == ctx.account_id && r.doc.region() == region => Ok(r.doc),
        _ => Err(T::NOT_FOUND),
    }
}

/// Like [`owned`] when only existence matters: checks the owner and region columns without
/// decoding the document (Describe of a gateway's routes runs this on every call).
pub fn check_owned<T: Regional>(ctx: &OpCtx<'_>, tx: &dyn ReadTx, region: &str, id: &str) -> Result<(), ApiError> {
    check_owner::<T>(ctx, region, tx.resource_owner(T::KIND, id)?)
}

/// [`check_owned`] on the resource's (account id, region id) as read (`None`: no such
/// resource).
pub fn check_owner<T: Regional>(
    ctx: &OpCtx<'_>,
    region: &str,
    owner: Option<(String, String)>,
) -> Result<(), ApiError> {
    match owner {
        Some((account, res_region)) if account == ctx.account_id && res_region == region => Ok(()),
        _ => Err(T::NOT_FOUND),
    }
}

/// Every resource of a kind the caller owns in `region` (children of `parent` only, if
/// given), in creation order: for lists the Describe actions filter before paging.
pub fn all_in_region<T: Regional>(
    ctx: &OpCtx<'_>,
    tx: &dyn ReadTx,
    region: &str,
    parent: Option<&str>,
) -> Result<Vec<T>, ApiError> {
    Ok(tx
        .list_resources::<T>(T::KIND, &ctx.account_id, region, parent, 0, i64::MAX as u64)?
        .0)
}

/// The requested page of an already filtered list, with the list's total.
pub fn page_of<T>(items: Vec<T>, paging: Paging) -> (Vec<T>, u64) {
    let total = items.len() as u64;
    (
        items
            .into_iter()
            .skip(paging.offset() as usize)
            .take(paging.size as usize)
            .collect(),
        total,
    )
}

/// Paging fields of a list response.
pub fn page_fields(body: &mut Value, paging: Paging, total: u64) {
    if let Value::Object(m) = body {
        m.insert("PageNumber".into(), json!(paging.number));
        m.insert("PageSize".into(), json!(paging.size));
        m.insert("TotalCount".into(), json!(total));
    }
}

/// Optional `Name`/`Description`-style text validated by `check`.
pub fn opt_text(ctx: &Ctx<'_>, name: &str, check: fn(&str) -> Result<(), ApiError>) -> Result<String, ApiError> {
    match params(ctx).opt_str(name) {
        Some(v) => {
            check(v)?;
            Ok(v.to_string())
        }
        None => Ok(String::new()),
    }
}

/// The numeric owner id Alibaba returns in `OwnerId` fields.
pub fn owner_id(ctx: &OpCtx<'_>) -> i64 {
    ctx.account_id.parse().unwrap_or(0)
}
