//! # vpnroute-reconciler
//!
//! Version-driven reconciliation of gateways' data-plane state. It owns:
//!
//! * [`ReconcileStore`]: what the store must offer — every change bumps the gateway's
//!   desired version and commits a task `(gateway, version, due time)` in the same
//!   transaction; a reconciler *claims* a gateway (an owner id and a lease, so several
//!   replicas share the work), loads the desired [`GatewaySpec`](vpnroute_dataplane::GatewaySpec)
//!   at the claim's target version, and records the applied version with a compare-and-set
//!   (never backwards, never from a lost claim) or a failure with its attempt count, last
//!   error and retry time;
//! * [`Reconciler`]: one pass claims each gateway with due work, asks the data plane what is in
//!   force, applies the spec when that differs, reads it back, and records the version only
//!   when the read-back is in sync; failures are retried with exponential [`Backoff`] and
//!   jitter, and are visible (counters in [`ReconcileMetrics`], the store's last error,
//!   `tracing` logs). Each pass also observes the gateways the data plane reported events for,
//!   and periodically every gateway, and repairs drift. A per-process data plane (the sim)
//!   also gets, without a claim, every version another replica recorded once the store's
//!   commit generation moves (mirroring; see the `reconciler` module). [`Reconciler::run`]
//!   loops passes, woken by [`Reconciler::wake`], data-plane events, the generation and a timer;
//! * [`memory::MemoryReconcileStore`]: the in-memory reference store.
//!
//! Nothing is undone at a restart: the data plane either still holds what it held (kernel)
//! or holds nothing (sim), and the next pass converges it to the recorded or due version.

#![forbid(unsafe_code)]

mod backoff;
pub mod memory;
mod reconciler;
mod store;
#[cfg(test)]
mod tests;

pub use backoff::Backoff;
pub use reconciler::{
    now_ms, AfterPass, MetricsSnapshot, Outcome, PassReport, ReconcileMetrics, Reconciler, ReconcilerConfig,
};
pub use store::{Claim, GatewayVersion, ReconcileStore, RecordDone, StoreFailure};
