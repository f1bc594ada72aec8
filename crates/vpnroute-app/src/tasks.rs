//! Asynchronous application of gateway changes.
//!
//! A mutating action commits the desired state (route rows) and, in the same transaction, a
//! task carrying the route-engine operations and the gateway's new desired version; the
//! gateway shows `updating` (or `provisioning`) until the worker applies the task to the route
//! engine, records the applied version and sets the gateway back to `active`. Applying is
//! idempotent (upsert/remove by route id), so a task interrupted by a crash is simply applied
//! again after restart; tasks are never lost because they are rows committed with the change.
//!
//! With a task duration of zero no gateway ever shows `updating`: the versions advance in the
//! same transaction and the engine is updated right after commit.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vpnroute_domain::model::{VpnGateway, VpnRoute};
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTxExt, ResourceKind, Task, Tx, WriteTxExt};

use crate::state::{now_ms, App, OpCtx, TaskDuration};

/// What a committed write leaves to do: engine changes applied at once (task duration 0),
/// engines of deleted gateways to drop, and whether a delayed task was enqueued (the worker
/// must look). Nothing here happens unless the transaction commits.
#[derive(Debug, Default)]
pub struct Effects {
    pub ops: Vec<EngineOp>,
    pub task_enqueued: bool,
    /// Gateways deleted: their engines are dropped once the deletion is committed.
    pub deleted_gateways: Vec<String>,
}

/// A change to one gateway's route engine. Each op carries what it replaces, so a pending
/// task can be undone (see [`EngineOp::inverse`]) when the engine is rebuilt after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineOp {
    /// A route created (`before` is `None`) or changed (`before` is the route as it was).
    Upsert { route: VpnRoute, before: Option<VpnRoute> },
    /// A route deleted.
    Remove { route: VpnRoute },
}

impl EngineOp {
    /// The op that undoes this one.
    pub fn inverse(&self) -> EngineOp {
        match self {
            EngineOp::Upsert { route, before: Some(b) } => EngineOp::Upsert {
                route: b.clone(),
                before: Some(route.clone()),
            },
            EngineOp::Upsert { route, before: None } => EngineOp::Remove { route: route.clone() },
            EngineOp::Remove { route } => EngineOp::Upsert {
                route: route.clone(),
                before: None,
            },
        }
    }
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

/// Commit a task for `gw` carrying `ops` (inside the action's transaction). Updates the
/// gateway document's status when the task is not applied at once.
pub fn schedule(ctx: &OpCtx<'_>, tx: &Tx<'_>, gw: &mut VpnGateway, ops: Vec<EngineOp>) -> Result<(), ApiError> {
    let duration = effective_duration(ctx.app, gw);
    if duration == TaskDuration::After(Duration::ZERO) {
        tx.advance_applied_version(&gw.id)?;
        ctx.effects.borrow_mut().ops.extend(ops);
        let status = gw.status.after_applied_at_once();
        if gw.status != status {
            gw.status = status;
            tx.update_resource(ResourceKind::VpnGateway, &gw.id, gw)?;
        }
        return Ok(());
    }
    let due = match duration {
        TaskDuration::Manual => None,
        TaskDuration::After(d) => {
            let start = tx
                .pending_tasks(&gw.id)?
                .iter()
                .filter_map(|t| t.due_at)
                .max()
                .unwrap_or(ctx.now_ms)
                .max(ctx.now_ms);
            Some(start + d.as_millis() as i64)
        }
    };
    let op_text = serde_json::to_string(&ops).map_err(|_| ApiError::INTERNAL_ERROR)?;
    tx.enqueue_task(&gw.id, &op_text, due, ctx.now_ms)?;
    ctx.effects.borrow_mut().task_enqueued = true;
    gw.status = gw.status.after_task_enqueued();
    tx.update_resource(ResourceKind::VpnGateway, &gw.id, gw)?;
    Ok(())
}

/// After a write transaction committed: apply immediate engine changes, wake the worker
/// when a delayed task was enqueued.
pub fn after_commit(app: &App, effects: Effects) {
    if !effects.ops.is_empty() {
        app.engines.apply(&effects.ops);
    }
    for gateway_id in &effects.deleted_gateways {
        app.engines.forget(gateway_id);
    }
    if effects.task_enqueued {
        app.task_notify.notify_one();
    }
}

/// Apply one task: engine first (idempotent), then record completion durably.
fn apply_task(app: &App, task: &Task) -> Result<(), ApiError> {
    let ops: Vec<EngineOp> = serde_json::from_str(&task.op).map_err(|_| ApiError::INTERNAL_ERROR)?;
    app.engines.apply(&ops);
    app.store.write(|tx| {
        tx.complete_task(task)?;
        if tx.pending_tasks(&task.gateway_id)?.is_empty() {
            if let Some(mut gw) = tx.resource::<VpnGateway>(ResourceKind::VpnGateway, &task.gateway_id)? {
                let status = gw.doc.status.after_last_task();
                if gw.doc.status != status {
                    gw.doc.status = status;
                    tx.update_resource(ResourceKind::VpnGateway, &task.gateway_id, &gw.doc)?;
                }
            }
        }
        Ok::<_, ApiError>(())
    })?;
    app.metrics
        .tasks_applied
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// The task worker: applies due tasks in order per gateway; sleeps until the next due time
/// or until woken.
pub async fn run_worker(app: crate::state::SharedApp) {
    loop {
        let app2 = app.clone();
        let next_due = tokio::task::spawn_blocking(move || run_due(&app2)).await.ok().flatten();
        let sleep = match next_due {
            Some(due) => Duration::from_millis((due - now_ms()).clamp(1, 1000) as u64),
            None => Duration::from_secs(1),
        };
        tokio::select! {
            _ = app.task_notify.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Apply every due task; returns the earliest due time still pending.
fn run_due(app: &App) -> Option<i64> {
    let tasks = match app.store.read(|tx| tx.all_pending_tasks()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "reading tasks");
            return Some(now_ms() + 100);
        }
    };
    let mut seen = std::collections::HashSet::new();
    let mut next: Option<i64> = None;
    let now = now_ms();
    for task in tasks {
        // Tasks of one gateway apply strictly in order: only the first pending one may run.
        if !seen.insert(task.gateway_id.clone()) {
            continue;
        }
        match task.due_at {
            Some(due) if due <= now => {
                if let Err(e) = apply_task(app, &task) {
                    tracing::error!(task = task.id, error = %e, "applying task");
                    next = Some(now + 100);
                } else {
                    tracing::debug!(task = task.id, gateway = %task.gateway_id, version = task.version, "task applied");
                    // The gateway's next task (if any) becomes first: check again soon.
                    next = Some(next.map_or(now, |n| n.min(now)));
                }
            }
            Some(due) => next = Some(next.map_or(due, |n| n.min(due))),
            None => {}
        }
    }
    next
}

/// Make every pending task of a gateway due now (manual mode's "advance").
pub fn advance(app: &App, gateway_id: &str) -> Result<Value, ApiError> {
    let n = app
        .store
        .write(|tx| tx.reschedule_tasks(gateway_id, Some(now_ms())).map_err(ApiError::from))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use vpnroute_domain::model::RouteKind;

    fn route(weight: i64) -> VpnRoute {
        VpnRoute {
            seq: 7,
            kind: RouteKind::Dbr,
            gateway_id: "vpn-1".into(),
            source: String::new(),
            dest: "10.0.0.0/24".into(),
            next_hop: "vco-1".into(),
            weight,
            priority: 10,
            published: false,
            description: String::new(),
            overlay_mode: "Ipsec".into(),
            create_time: 0,
        }
    }

    #[test]
    fn inverse_undoes_every_op() {
        let create = EngineOp::Upsert {
            route: route(100),
            before: None,
        };
        assert_eq!(create.inverse(), EngineOp::Remove { route: route(100) });
        let change = EngineOp::Upsert {
            route: route(0),
            before: Some(route(100)),
        };
        assert_eq!(
            change.inverse(),
            EngineOp::Upsert {
                route: route(100),
                before: Some(route(0))
            }
        );
        let remove = EngineOp::Remove { route: route(100) };
        assert_eq!(remove.inverse().inverse(), remove);
    }
}
