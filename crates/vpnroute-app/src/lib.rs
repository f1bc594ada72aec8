//! vpnroute's application layer: everything between a decoded request and the store, with no
//! HTTP and no process wiring (those stay in the `vpnroute` binary).
//!
//! - [`ops`]: the operations table (name, read or write, RAM action, resource ARNs, handler).
//! - [`actions`]: the handlers, one module per resource family, with their typed inputs and
//!   outputs where converted.
//! - [`rpc`]: Alibaba's RPC protocol for the typed operations (parameters → typed input).
//! - [`dispatch`]: Action name → handler, ClientToken idempotency.
//! - [`reply`]: typed read answers that serialise without a `serde_json::Value` tree.
//! - [`tasks`] / [`reconcile`] / [`engines`]: gateway versions and tasks, the reconciler's store
//!   side (claims, records, the desired spec at a version), and introspection of the data plane.
//! - [`writer`]: group commit of write requests.
//! - [`state`]: the shared [`state::App`] and the per-request [`state::Ctx`].
//! - [`throttle`]: the per key and action rate limiter.
//! - [`ram`]: the RAM and STS APIs and RAM enforcement of the operations (rules in `vpnroute-ram`).

#[macro_use]
mod macros;

pub mod actions;
pub mod dispatch;
pub mod engines;
pub mod ops;
pub mod ram;
pub mod reconcile;
pub mod reply;
pub mod rpc;
pub mod state;
pub mod tasks;
pub mod throttle;
pub mod util;
pub mod writer;
