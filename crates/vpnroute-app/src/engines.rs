//! The route engines in force: one [`vpnroute_engine::RouteTable`] per gateway, kept in
//! memory and changed only by applied tasks (never by the request that accepted a change;
//! after a restart it is rebuilt as of the last applied task),
//! plus the introspection answers built on them (explain, versions, tunnel state).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::RwLock;

use serde_json::{json, Value};
use vpnroute_domain::model::{RouteKind, VpnConnection, VpnGateway, VpnRoute};
use vpnroute_domain::ApiError;
use vpnroute_engine::{LinkState, Route, RouteTable};
use vpnroute_store::{ReadTxExt, ResourceKind, Store, StoreError, WriteTxExt};

use crate::state::App;
use crate::tasks::EngineOp;

#[derive(Default)]
pub struct Engines {
    tables: RwLock<HashMap<String, RouteTable>>,
}

/// The engine's view of a stored route.
pub fn engine_route(r: &VpnRoute) -> Option<Route> {
    let dest = r.dest.parse().ok()?;
    let seq = r.seq as u64;
    Some(match r.kind {
        RouteKind::Dbr => Route::destination(seq, dest, r.next_hop.clone(), r.weight as u8, seq),
        RouteKind::Pbr => Route::policy(
            seq,
            r.source.parse().ok()?,
            dest,
            r.next_hop.clone(),
            r.weight as u8,
            r.priority as u8,
            seq,
        ),
    })
}

impl Engines {
    /// Build every gateway's table from the stored routes (startup). Pending tasks are
    /// applied again by the worker; applying is idempotent.
    pub fn load(store: &dyn Store) -> Result<Engines, StoreError> {
        // One snapshot: the stored routes and the tasks not yet applied.
        let (tables, pending) = store.read(|tx| {
            let mut tables = HashMap::new();
            for gw in tx.all_resources::<VpnGateway>(ResourceKind::VpnGateway)? {
                tables.insert(gw.doc.id.clone(), build_table(&tx.gateway_routes(&gw.doc.id)?));
            }
            Ok::<_, StoreError>((tables, tx.all_pending_tasks()?))
        })?;
        let engines = Engines {
            tables: RwLock::new(tables),
        };
        // The stored routes are the desired state. Undo the changes of tasks that were not
        // applied before the restart (newest first): the engine then holds what was in force,
        // and the worker applies those tasks again in order.
        for task in pending.iter().rev() {
            let ops: Vec<EngineOp> =
                serde_json::from_str(&task.op).map_err(|e| StoreError::Other(format!("task {}: {e}", task.id)))?;
            let undo: Vec<EngineOp> = ops.iter().rev().map(EngineOp::inverse).collect();
            engines.apply(&undo);
        }
        Ok(engines)
    }

    pub fn apply(&self, ops: &[EngineOp]) {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        for op in ops {
            match op {
                EngineOp::Upsert { route: r, .. } => {
                    let table = tables.entry(r.gateway_id.clone()).or_default();
                    table.remove(r.seq as u64);
                    if let Some(route) = engine_route(r) {
                        if let Err(e) = table.insert(route) {
                            tracing::error!(error = %e, seq = r.seq, "engine rejected route");
                        }
                    }
                }
                EngineOp::Remove { route } => {
                    if let Some(t) = tables.get_mut(&route.gateway_id) {
                        t.remove(route.seq as u64);
                    }
                }
            }
        }
    }

    pub fn forget(&self, gateway_id: &str) {
        self.tables
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(gateway_id);
    }

    pub fn route_count(&self, gateway_id: &str) -> usize {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(gateway_id)
            .map_or(0, |t| t.len())
    }

    fn explain(&self, gateway_id: &str, connections: &[VpnConnection], src: Ipv4Addr, dst: Ipv4Addr) -> Value {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        match tables.get(gateway_id) {
            Some(t) => explain_table(t, connections, src, dst),
            None => explain_table(&RouteTable::new(), connections, src, dst),
        }
    }
}

pub fn build_table(routes: &[VpnRoute]) -> RouteTable {
    let mut t = RouteTable::new();
    for r in routes {
        if let Some(route) = engine_route(r) {
            if let Err(e) = t.insert(route) {
                tracing::error!(error = %e, seq = r.seq, "engine rejected stored route");
            }
        }
    }
    t
}

/// Explain a lookup with the tunnel states of the gateway's connections.
pub fn explain_table(table: &RouteTable, connections: &[VpnConnection], src: Ipv4Addr, dst: Ipv4Addr) -> Value {
    let mut links = LinkState::all_up();
    for c in connections {
        table.set_link_up(&mut links, &c.id, c.tunnel_up);
    }
    let explanation = table.explain(src, dst, &links);
    json!({
        "Tunnels": connections.iter().map(|c| json!({"VpnConnectionId": c.id, "Up": c.tunnel_up})).collect::<Vec<_>>(),
        "Explanation": explanation,
    })
}

pub fn explain(app: &App, gateway_id: &str, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Value, ApiError> {
    let (gw, connections, versions) = app.store.read(|tx| {
        let gw = tx
            .resource::<VpnGateway>(ResourceKind::VpnGateway, gateway_id)?
            .ok_or(ApiError::GATEWAY_NOT_FOUND)?;
        let conns: Vec<VpnConnection> = tx.children(ResourceKind::VpnConnection, gateway_id)?;
        Ok::<_, ApiError>((gw.doc, conns, tx.gateway_versions(gateway_id)?))
    })?;
    let mut v = app.engines.explain(&gw.id, &connections, src, dst);
    v["VpnGatewayId"] = json!(gw.id);
    v["DesiredVersion"] = json!(versions.0);
    v["AppliedVersion"] = json!(versions.1);
    Ok(v)
}

fn status_json(app: &App, gw: &VpnGateway, versions: (i64, i64), pending: usize) -> Value {
    json!({
        "VpnGatewayId": gw.id,
        "Status": gw.status,
        "BusinessStatus": gw.business_status,
        "DesiredVersion": versions.0,
        "AppliedVersion": versions.1,
        "InSync": versions.0 == versions.1,
        "PendingTasks": pending,
        "RoutesInForce": app.engines.route_count(&gw.id),
        "TaskDuration": crate::tasks::effective_duration(app, gw).as_text(),
    })
}

pub fn gateway_status(app: &App, gateway_id: &str) -> Result<Value, ApiError> {
    app.store.read(|tx| {
        let gw = tx
            .resource::<VpnGateway>(ResourceKind::VpnGateway, gateway_id)?
            .ok_or(ApiError::GATEWAY_NOT_FOUND)?;
        let pending = tx.pending_tasks(gateway_id)?.len();
        Ok(status_json(app, &gw.doc, tx.gateway_versions(gateway_id)?, pending))
    })
}

pub fn gateways_status(app: &App) -> Result<Value, ApiError> {
    app.store.read(|tx| {
        let mut out = Vec::new();
        for gw in tx.all_resources::<VpnGateway>(ResourceKind::VpnGateway)? {
            let pending = tx.pending_tasks(&gw.doc.id)?.len();
            out.push(status_json(app, &gw.doc, tx.gateway_versions(&gw.doc.id)?, pending));
        }
        Ok(json!({"VpnGateways": out}))
    })
}

/// Set a connection's tunnel up or down (until a real data plane reports it).
pub fn set_tunnel(store: &dyn Store, connection_id: &str, up: bool) -> Result<(), ApiError> {
    store.write(|tx| {
        let mut c = tx
            .resource::<VpnConnection>(ResourceKind::VpnConnection, connection_id)?
            .ok_or(ApiError::CONNECTION_NOT_FOUND)?;
        c.doc.tunnel_up = up;
        tx.update_resource(ResourceKind::VpnConnection, connection_id, &c.doc)?;
        Ok(())
    })
}
