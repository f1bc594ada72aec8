//! Alibaba's RPC protocol for the typed operations: each typed input is parsed from the
//! request's parameters ([`FromRpc`], in the validation order and with the error codes of
//! `docs/compatibility.md`), and each typed output becomes the reply body: a
//! `serde_json::Value` for writes (it is also what a ClientToken replays), a [`Reply`] for
//! reads (typed views serialise without a `Value` tree).

use serde::Serialize;
use serde_json::Value;
use vpnroute_domain::params::Params;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, WriteTx};

use crate::ops::{Operation, ReadOperation, WriteOperation};
use crate::reply::Reply;
use crate::state::Ctx;

/// A typed input read from Alibaba parameters.
pub trait FromRpc: Sized {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError>;
}

/// The request's parameters.
pub fn params<'a>(ctx: &'a Ctx<'_>) -> Params<'a> {
    Params::new(ctx.params)
}

/// The `RegionId` parameter: required and one of the served regions.
pub fn region(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    crate::actions::region(ctx).map(str::to_string)
}

/// The `DryRun` parameter, whose error is reported after the resource checks.
pub fn dry_run(ctx: &Ctx<'_>) -> crate::ops::Deferred<bool> {
    params(ctx).bool_or("DryRun", false)
}

/// A write operation as an RPC handler.
pub fn write<O>(ctx: &Ctx<'_>, tx: &dyn WriteTx) -> Result<Value, ApiError>
where
    O: WriteOperation,
    O::Input: FromRpc,
    O::Output: Serialize,
{
    let input = O::Input::from_rpc(ctx)?;
    let output = O::handle(ctx, tx, input)?;
    serde_json::to_value(output).map_err(|_| ApiError::INTERNAL_ERROR)
}

/// A read operation as an RPC handler.
pub fn read<O>(ctx: &Ctx<'_>, tx: &dyn ReadTx) -> Result<Reply, ApiError>
where
    O: ReadOperation,
    O::Input: FromRpc,
    O::Output: Into<Reply>,
{
    let input = O::Input::from_rpc(ctx)?;
    O::handle(ctx, tx, input).map(Into::into)
}

/// The ARNs a request for `O` names (parsing its input).
pub fn resources<O>(ctx: &Ctx<'_>) -> Result<Vec<String>, ApiError>
where
    O: Operation,
    O::Input: FromRpc,
{
    let input = O::Input::from_rpc(ctx)?;
    Ok(O::resources(&input, &ctx.account_id))
}
