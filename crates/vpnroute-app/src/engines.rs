//! Introspection of what is in force: `explain` (the data plane's decision for a packet, with
//! the operator's tunnel states), gateway status with versions, tasks, routes in force and the
//! last reconcile failure, and the operator's tunnel switch.

use std::net::Ipv4Addr;

use serde_json::{json, Value};
use vpnroute_dataplane::TunnelState;
use vpnroute_domain::model::{Tunnel, VpnConnection, VpnGateway};
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTxExt, ReconcileFailure, ResourceKind, Store, WriteTxExt};

use crate::state::App;

/// The operator's tunnel states of a gateway's connections, in creation order.
pub fn tunnel_states(connections: &[VpnConnection]) -> Vec<(String, TunnelState)> {
    connections
        .iter()
        .map(|c| {
            let state = if c.tunnel_up {
                TunnelState::Up
            } else {
                TunnelState::Down
            };
            (c.id.clone(), state)
        })
        .collect()
}

pub fn explain(app: &App, gateway_id: &str, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Value, ApiError> {
    let (gw, connections, versions) = app.store.read(|tx| {
        let gw = tx
            .resource::<VpnGateway>(ResourceKind::VpnGateway, gateway_id)?
            .ok_or(ApiError::GATEWAY_NOT_FOUND)?;
        let conns: Vec<VpnConnection> = tx.children(ResourceKind::VpnConnection, gateway_id)?;
        Ok::<_, ApiError>((gw.doc, conns, tx.gateway_versions(gateway_id)?))
    })?;
    let mut v = app
        .data_plane
        .explain_with_tunnels(&gw.id, &tunnel_states(&connections), src, dst)
        .map_err(|e| {
            tracing::error!(error = %e, gateway = %gw.id, "explain");
            ApiError::INTERNAL_ERROR
        })?;
    // The sim answers `Explanation.chosen`, the Linux data plane `EngineNextHop`.
    let chosen = v["Explanation"]["chosen"]["next_hop"]
        .as_str()
        .or(v["EngineNextHop"].as_str())
        .map(str::to_string);
    // A data plane that negotiates tunnels (Linux, `ipsec`) names the one the kernel uses;
    // otherwise the operator's tunnel states decide.
    let in_kernel = v["Kernel"]["TunnelId"].as_str().map(str::to_string);
    if let Some(t) = chosen
        .and_then(|hop| connections.iter().find(|c| c.id == hop))
        .and_then(|c| match &in_kernel {
            Some(id) => c.tunnels.iter().find(|t| &t.id == id),
            None => chosen_tunnel(c),
        })
    {
        v["ChosenTunnel"] = json!({"TunnelId": t.id, "Role": t.role});
    }
    v["VpnGatewayId"] = json!(gw.id);
    v["DesiredVersion"] = json!(versions.0);
    v["AppliedVersion"] = json!(versions.1);
    Ok(v)
}

/// `GET /_vpnroute/gateways/{id}/dataplane`: what the data plane reads back for a gateway
/// (for the Linux data plane: namespaces, interfaces, tunnels, rules, routes, nftables).
pub fn data_plane_status(app: &App, gateway_id: &str) -> Result<Value, ApiError> {
    let versions = app.store.read(|tx| {
        tx.resource::<VpnGateway>(ResourceKind::VpnGateway, gateway_id)?
            .ok_or(ApiError::GATEWAY_NOT_FOUND)?;
        Ok::<_, ApiError>(tx.gateway_versions(gateway_id)?)
    })?;
    let observed = app.data_plane.observe(gateway_id).map_err(|e| {
        tracing::error!(error = %e, gateway = %gateway_id, "reading the data plane back");
        ApiError::INTERNAL_ERROR
    })?;
    let mut v = match observed {
        Some(o) => {
            let mut details = if o.details.is_object() { o.details } else { json!({}) };
            details["InSync"] = json!(o.in_sync);
            details["AppliedVersion"] = json!(o.applied_version);
            details["Tunnels"] = json!(o
                .tunnels
                .iter()
                .map(|(id, state)| json!({"VpnConnectionId": id, "Up": *state == vpnroute_dataplane::TunnelState::Up}))
                .collect::<Vec<_>>());
            details
        }
        None => json!({"InSync": false, "AppliedVersion": null, "Connections": []}),
    };
    v["VpnGatewayId"] = json!(gateway_id);
    v["DataPlane"] = json!(app.data_plane.name());
    v["DesiredVersion"] = json!(versions.0);
    v["RecordedVersion"] = json!(versions.1);
    Ok(v)
}

fn status_json(
    app: &App,
    gw: &VpnGateway,
    versions: (i64, i64),
    pending: usize,
    failure: Option<ReconcileFailure>,
) -> Value {
    let routes_in_force = app.data_plane.routes_in_force(&gw.id).unwrap_or_else(|e| {
        tracing::warn!(error = %e, gateway = %gw.id, "reading routes in force");
        0
    });
    json!({
        "VpnGatewayId": gw.id,
        "Status": gw.status,
        "BusinessStatus": gw.business_status,
        "DesiredVersion": versions.0,
        "AppliedVersion": versions.1,
        "InSync": versions.0 == versions.1,
        "PendingTasks": pending,
        "RoutesInForce": routes_in_force,
        "TaskDuration": crate::tasks::effective_duration(app, gw).as_text(),
        "DataPlane": app.data_plane.name(),
        "ReconcileAttempts": failure.as_ref().map_or(0, |f| f.attempts),
        "LastReconcileError": failure.as_ref().map(|f| f.last_error.clone()),
        "NextReconcileRetry": failure.as_ref().and_then(|f| f.next_retry_ms),
    })
}

pub fn gateway_status(app: &App, gateway_id: &str) -> Result<Value, ApiError> {
    app.store.read(|tx| {
        let gw = tx
            .resource::<VpnGateway>(ResourceKind::VpnGateway, gateway_id)?
            .ok_or(ApiError::GATEWAY_NOT_FOUND)?;
        let pending = tx.pending_tasks(gateway_id)?.len();
        let failure = tx.reconcile_failure(gateway_id)?;
        Ok(status_json(
            app,
            &gw.doc,
            tx.gateway_versions(gateway_id)?,
            pending,
            failure,
        ))
    })
}

pub fn gateways_status(app: &App) -> Result<Value, ApiError> {
    app.store.read(|tx| {
        let mut out = Vec::new();
        for gw in tx.all_resources::<VpnGateway>(ResourceKind::VpnGateway)? {
            let pending = tx.pending_tasks(&gw.doc.id)?.len();
            let failure = tx.reconcile_failure(&gw.doc.id)?;
            out.push(status_json(
                app,
                &gw.doc,
                tx.gateway_versions(&gw.doc.id)?,
                pending,
                failure,
            ));
        }
        Ok(json!({"VpnGateways": out}))
    })
}

/// Set a connection's tunnel up or down (the operator's switch, `admin_up` of the data
/// plane's spec): `explain` uses it at once; the gateway's desired version moves so the data
/// plane gets it too (at once, behind any pending task). A dual-tunnel connection's tunnels are
/// set one by one (`tunnel` = its id) or both (`None`); the connection counts as up while
/// either tunnel is.
pub fn set_tunnel(store: &dyn Store, connection_id: &str, tunnel: Option<&str>, up: bool) -> Result<(), ApiError> {
    store.write(|tx| {
        let mut c = tx
            .resource::<VpnConnection>(ResourceKind::VpnConnection, connection_id)?
            .ok_or(ApiError::CONNECTION_NOT_FOUND)?;
        let doc = &mut c.doc;
        match tunnel {
            Some(id) => {
                let t = doc
                    .tunnels
                    .iter_mut()
                    .find(|t| t.id == id)
                    .ok_or_else(|| ApiError::invalid_parameter("tunnel"))?;
                t.up = up;
            }
            None => doc.tunnels.iter_mut().for_each(|t| t.up = up),
        }
        doc.tunnel_up = if doc.tunnels.is_empty() {
            up
        } else {
            doc.tunnels.iter().any(|t| t.up)
        };
        tx.update_resource(ResourceKind::VpnConnection, connection_id, doc)?;
        if tx.resource_owner(ResourceKind::VpnGateway, &doc.gateway_id)?.is_some() {
            let now = crate::state::now_ms();
            let due = crate::tasks::due_behind_pending(tx, &doc.gateway_id, now)?;
            tx.enqueue_version(&doc.gateway_id, Some(due), now)?;
        }
        Ok(())
    })
}

/// The tunnel a dual-tunnel connection sends through: the master while it is up, else the
/// slave while it is up, else the master.
pub fn chosen_tunnel(c: &VpnConnection) -> Option<&Tunnel> {
    let master = c.tunnels.iter().find(|t| t.role == "master");
    let slave = c.tunnels.iter().find(|t| t.role == "slave");
    match (master, slave) {
        (Some(m), _) if m.up => Some(m),
        (_, Some(s)) if s.up => Some(s),
        (m, s) => m.or(s),
    }
}
