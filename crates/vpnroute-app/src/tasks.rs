//! Asynchronous application of gateway changes.
//!
//! A mutating action commits the desired state (route rows, versioned by the store) and, in
//! the same transaction, bumps the gateway's desired version with a task that records only
//! `(gateway, version, due time)`; the gateway shows `updating` (or `provisioning`) until the
//! reconciler ([`vpnroute_reconciler`]) has that version in force in the data plane, records
//! it and sets the gateway back to `active`. A crash loses nothing: tasks are rows committed
//! with the change, and after a restart the reconciler converges the data plane to the
//! applied version and then to each task's version as it falls due — nothing is undone.
//!
//! With a task duration of zero no gateway ever shows `updating`: the task is due at once, the
//! request's transaction also claims the gateway for this process's reconciler, and the
//! request is answered once the reconciler has put the claimed version in force
//! ([`vpnroute_reconciler::Reconciler::when_in_force`]), before the record of it, which shares a
//! later commit. So the change is in force when the answer arrives, after one commit. When the
//! claim is taken (another replica, another request of the same batch), the request waits for
//! the pass that puts its version in force. On a data plane held in this process's memory
//! and applied inline (the `sim`), a route change on a gateway with nothing pending skips all
//! of that: its transaction records the version as applied ([`change_at_once`]) and the
//! writer puts the request's route writes in force right after the commit.

use std::time::Duration;

use serde_json::{json, Value};
use vpnroute_domain::model::VpnGateway;
use vpnroute_domain::ApiError;
use vpnroute_store::{ChangeAtOnce, ReconcileClaim, ResourceKind, Tx, WriteTxExt};

use crate::state::{now_ms, App, OpCtx, TaskDuration};

/// What a committed write leaves to do: the versions due at once (its request is answered
/// once they are in force) and the gateways it claimed for them, whether a delayed task was
/// enqueued (the reconciler must look), and engines of deleted gateways to drop. Nothing here happens unless
/// the transaction commits.
#[derive(Debug, Default)]
pub struct Effects {
    pub due_now: bool,
    /// (gateway, version) due at once: the request is answered once they are in force.
    pub in_force: Vec<(String, i64)>,
    /// Gateways this request's transaction claimed for this process's reconciler (at most one
    /// per gateway, its target the request's last version there).
    pub claims: Vec<ClaimedGateway>,
    pub task_enqueued: bool,
    /// Gateways deleted: removed from the data plane once the deletion is committed.
    pub deleted_gateways: Vec<String>,
    /// Gateways whose change this transaction recorded as applied at once
    /// ([`change_at_once`]), with the version.
    pub recorded_at_once: Vec<(String, i64)>,
    /// Those versions' changes, taken from the transaction at the end of the request
    /// ([`vpnroute_store::WriteTx::take_changes_at_once`]): put in force right after the commit.
    pub at_once: Vec<ChangeAtOnce>,
    /// For those whose gateway this process's data plane did not hold at the version before
    /// (another replica changed it since): the whole spec at the version, read at the end of
    /// the request's transaction, put in force instead of the changes.
    pub at_once_specs: Vec<vpnroute_dataplane::GatewaySpec>,
}

/// A gateway a request's transaction claimed (see [`Effects::claims`]).
#[derive(Debug)]
pub struct ClaimedGateway {
    pub claim: ReconcileClaim,
    /// The request's first version on the gateway: when it follows the claim's applied
    /// version directly, every version the claim covers is the request's own.
    pub first_version: i64,
    /// Whether the request changed only the gateway's routes (so its connections are those of
    /// the applied version when [`ClaimedGateway::first_version`] follows it).
    pub routes_only: bool,
    /// For a data plane that applies inline: the claim's changes, read at the end of the
    /// request's own transaction (so that putting them in force reads nothing more).
    pub changes: Option<vpnroute_dataplane::SpecChanges>,
}

/// The task duration that applies to a gateway (its override, else the server's).
pub fn effective_duration(app: &App, gw: &VpnGateway) -> TaskDuration {
    gw.task_duration
        .as_deref()
        .and_then(TaskDuration::parse)
        .unwrap_or(app.config.task_duration)
}

/// Refuse a change on a gateway whose previous task is still running (reject mode).
pub fn check_busy(ctx: &OpCtx<'_>, gw: &VpnGateway, busy: ApiError) -> Result<(), ApiError> {
    gw.status.check_change(ctx.app.config.on_busy, busy)
}

/// The earliest due time a new task of a gateway may have: `now_ms`, but not before the
/// gateway's pending tasks (versions come into force in order).
pub(crate) fn due_behind_pending(tx: &Tx<'_>, gateway_id: &str, now_ms: i64) -> Result<i64, ApiError> {
    Ok(tx
        .pending_tasks(gateway_id)?
        .iter()
        .filter_map(|t| t.due_at)
        .max()
        .unwrap_or(now_ms)
        .max(now_ms))
}

/// What a change touches, for the data plane: a change of routes only needs no connection read
/// to put it in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touches {
    Routes,
    Anything,
}

/// Bump `gw`'s desired version with a task (inside the action's transaction, after its
/// writes). Updates the gateway document's status when the task is not due at once.
pub fn schedule(ctx: &OpCtx<'_>, tx: &Tx<'_>, gw: &mut VpnGateway) -> Result<(), ApiError> {
    schedule_change(ctx, tx, gw, Touches::Anything)
}

/// [`schedule`] for a change of the gateway's routes only.
pub fn schedule_routes(ctx: &OpCtx<'_>, tx: &Tx<'_>, gw: &mut VpnGateway) -> Result<(), ApiError> {
    schedule_change(ctx, tx, gw, Touches::Routes)
}

/// Record the coming change of `gw`'s routes as applied in this transaction, when its data
/// plane allows it and nothing is pending for the gateway ([`vpnroute_store::WriteTx::change_at_once`]):
/// a change due at once on a data plane held in this process's memory and applied inline
/// (the `sim`) needs no task, no claim and no later record — the version is put in force
/// from the request's own route writes right after the commit. Call it under the gateway's
/// lock, before the route writes; [`schedule_routes`] then adds nothing.
pub fn change_at_once(ctx: &OpCtx<'_>, tx: &Tx<'_>, gw: &VpnGateway) -> Result<(), ApiError> {
    let data_plane = &ctx.app.data_plane;
    if !(data_plane.per_process() && data_plane.applies_inline())
        || effective_duration(ctx.app, gw) != TaskDuration::After(Duration::ZERO)
    {
        return Ok(());
    }
    if let Some(version) = tx.change_at_once(&gw.id, ctx.now_ms)? {
        ctx.effects.borrow_mut().recorded_at_once.push((gw.id.clone(), version));
    }
    Ok(())
}

fn schedule_change(ctx: &OpCtx<'_>, tx: &Tx<'_>, gw: &mut VpnGateway, touches: Touches) -> Result<(), ApiError> {
    let at_once = touches == Touches::Routes && {
        let effects = ctx.effects.borrow();
        effects.recorded_at_once.iter().any(|(id, _)| *id == gw.id)
    };
    if at_once {
        ctx.effects.borrow_mut().due_now = true;
        let status = gw.status.after_applied_at_once();
        if gw.status != status {
            gw.status = status;
            tx.update_resource(ResourceKind::VpnGateway, &gw.id, gw)?;
        }
        return Ok(());
    }
    let duration = effective_duration(ctx.app, gw);
    if duration == TaskDuration::After(Duration::ZERO) {
        bump_version_of(ctx, tx, &gw.id, touches)?;
        // Not busy, unless earlier tasks still are pending.
        let status = gw.status.after_applied_at_once();
        if gw.status != status && tx.pending_tasks(&gw.id)?.len() == 1 {
            gw.status = status;
            tx.update_resource(ResourceKind::VpnGateway, &gw.id, gw)?;
        }
        return Ok(());
    }
    let due = match duration {
        TaskDuration::Manual => None,
        TaskDuration::After(d) => Some(due_behind_pending(tx, &gw.id, ctx.now_ms)? + d.as_millis() as i64),
    };
    tx.enqueue_version(&gw.id, due, ctx.now_ms)?;
    ctx.effects.borrow_mut().task_enqueued = true;
    gw.status = gw.status.after_task_enqueued();
    tx.update_resource(ResourceKind::VpnGateway, &gw.id, gw)?;
    Ok(())
}

/// Bump a gateway's desired version with a task due at once (behind any pending one) that
/// leaves its status alone: a change of its connections, which the data plane needs (tunnel
/// ends, subnets, IKE/IPsec settings) but which is no route task. The request is answered
/// after the reconciler's next pass.
pub fn bump_version(ctx: &OpCtx<'_>, tx: &Tx<'_>, gateway_id: &str) -> Result<(), ApiError> {
    bump_version_of(ctx, tx, gateway_id, Touches::Anything)
}

fn bump_version_of(ctx: &OpCtx<'_>, tx: &Tx<'_>, gateway_id: &str, touches: Touches) -> Result<(), ApiError> {
    let due = due_behind_pending(tx, gateway_id, ctx.now_ms)?;
    let version = tx.enqueue_version(gateway_id, Some(due), ctx.now_ms)?;
    let mut effects = ctx.effects.borrow_mut();
    effects.due_now = true;
    effects.task_enqueued = true;
    if due > ctx.now_ms {
        // Behind a pending delayed task: answered after the next pass, as it always was.
        return Ok(());
    }
    effects.in_force.push((gateway_id.to_string(), version));
    if let Some(claimed) = effects.claims.iter_mut().find(|c| c.claim.gateway_id == gateway_id) {
        claimed.claim.target_version = version;
        claimed.routes_only &= touches == Touches::Routes;
        return Ok(());
    }
    let config = ctx.app.reconciler.config();
    let lease_ms = config.lease.as_millis() as i64;
    if let Some(claim) = tx.claim_gateway(gateway_id, &config.owner, ctx.now_ms, lease_ms)? {
        effects.claims.push(ClaimedGateway {
            claim,
            first_version: version,
            routes_only: touches == Touches::Routes,
            changes: None,
        });
    }
    Ok(())
}

/// After a write transaction committed: drop deleted gateways from the data plane, wake the
/// reconciler for enqueued tasks. Returns whether the request must wait for the reconciler's
/// next pass before it is answered (a change due at once).
pub fn after_commit(app: &App, effects: &Effects) -> bool {
    for gateway_id in &effects.deleted_gateways {
        if let Err(e) = app.data_plane.remove(gateway_id) {
            // The reconciler's periodic check removes it later.
            tracing::warn!(gateway = %gateway_id, error = %e, "removing a deleted gateway from the data plane");
        }
    }
    if effects.task_enqueued && !effects.due_now {
        app.reconciler.wake();
    }
    effects.due_now
}

/// [`after_commit`] for a caller that does not answer through the writer (a console, a
/// test): a change due at once is put in force by a reconciler pass run here, before this
/// returns.
pub fn after_commit_here(app: &App, effects: &Effects) {
    if !effects.recorded_at_once.is_empty() {
        // Their changes stayed in the transaction: the drift check of the pass below puts
        // the recorded versions in force.
        app.reconciler.check_all_on_next_pass();
    }
    if after_commit(app, effects) {
        for claimed in &effects.claims {
            app.reconciler
                .reconcile_claimed(&crate::reconcile::to_claim(claimed.claim.clone()), now_ms());
        }
        app.reconciler.run_pass_and_callbacks(now_ms());
    }
}

/// Make every pending task of a gateway due now (manual mode's "advance").
pub fn advance(app: &App, gateway_id: &str) -> Result<Value, ApiError> {
    let n = app
        .store
        .write(|tx| tx.reschedule_tasks(gateway_id, Some(now_ms())).map_err(ApiError::from))?;
    app.reconciler.wake();
    Ok(json!({"VpnGatewayId": gateway_id, "TasksAdvanced": n}))
}

/// Periodic clean-up of expired nonces and ClientTokens.
pub async fn run_janitor(app: crate::state::SharedApp) {
    loop {
        let app2 = app.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            app2.store.write(|tx| {
                tx.prune_client_tokens(now - crate::dispatch::CLIENT_TOKEN_TTL_MS)?;
                Ok::<_, ApiError>(())
            })
        })
        .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}
