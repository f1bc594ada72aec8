//! # vpnroute-dataplane-sim
//!
//! The `sim` data plane, vpnroute's default: every gateway's routes in force live in an
//! in-memory [`vpnroute_engine::RouteTable`], and tunnels are up or down as the operator set
//! them (`admin_up`). It owns:
//!
//! * [`SimDataPlane`]: the [`DataPlane`] implementation. [`DataPlane::apply`] diffs the
//!   table against the spec by route id (removing what the spec no longer has or has changed,
//!   inserting what is missing), so applying a spec twice changes nothing and an apply cut
//!   short converges on the next one; [`DataPlane::apply_changes`] applies the difference
//!   between two versions when the table holds the first one, in time proportional to the
//!   change rather than the table; [`DataPlane::observe`] reports the version last applied in
//!   full and whether the table is still exactly it; [`DataPlane::explain`] (and
//!   [`DataPlane::explain_with_tunnels`], with the operator's tunnel states) answers with the
//!   JSON shape of `explain` (`Tunnels`, `Explanation`);
//! * fault injection for tests: [`SimDataPlane::inject_failures`] makes applies fail part-way,
//!   [`SimDataPlane::inject_drift`] removes a route behind the control plane's back (and
//!   reports a [`DataPlaneEvent::Drift`]).
//!
//! Being in memory, the sim holds nothing after a restart: the reconciler re-applies every
//! gateway's applied version (observe answers `None`), which is how the tables are rebuilt.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard, RwLock};

use serde_json::{json, Value};
use vpnroute_dataplane::{
    ConnectionSpec, DataPlane, DataPlaneError, DataPlaneEvent, EventWaker, GatewaySpec, Observed, RouteClass,
    RouteSpec, SpecChanges, TunnelState,
};
use vpnroute_engine::{LinkState, Route, RouteTable};

/// Injected failures: the next `times` applies each fail after `after_routes` route changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimFault {
    /// Route changes (removals and insertions) an apply makes before it fails.
    pub after_routes: usize,
    /// How many applies fail; later ones succeed.
    pub times: u32,
}

/// What the sim holds for one gateway.
#[derive(Debug, Default)]
struct SimGateway {
    table: RouteTable,
    /// Tunnel state per connection, in the spec's connection order.
    tunnels: Vec<(String, TunnelState)>,
    /// The version of the last spec (or changes) applied in full.
    applied_version: Option<i64>,
    /// Whether the table is exactly that version's routes. The table changes only through
    /// this crate (apply, apply_changes, and the injection hooks), so every change keeps this
    /// flag exact instead of comparing route by route on each observe (tables hold 100,000s
    /// of routes; observe runs after every apply).
    in_sync: bool,
}

fn tunnel_states(connections: &[ConnectionSpec]) -> Vec<(String, TunnelState)> {
    connections
        .iter()
        .map(|c| {
            let state = if c.admin_up { TunnelState::Up } else { TunnelState::Down };
            (c.id.clone(), state)
        })
        .collect()
}

/// Routes of a spec in engine form, refused (before anything changes) when the engine could
/// not hold them.
fn engine_routes<'a>(
    gateway_id: &str,
    specs: impl IntoIterator<Item = &'a RouteSpec>,
) -> Result<BTreeMap<u64, Route>, DataPlaneError> {
    let mut routes = BTreeMap::new();
    for r in specs {
        let route = engine_route(r);
        vpnroute_engine::validate(&route)
            .map_err(|e| DataPlaneError::Permanent(format!("gateway {gateway_id}: {e}")))?;
        if routes.insert(route.id, route).is_some() {
            return Err(DataPlaneError::Permanent(format!(
                "gateway {gateway_id}: route {} appears twice",
                r.id
            )));
        }
    }
    Ok(routes)
}

/// Route changes left before an injected failure (`None`: no failure armed).
struct Budget<'a> {
    left: Option<usize>,
    gateway_id: &'a str,
}

impl Budget<'_> {
    fn spend(&mut self) -> Result<(), DataPlaneError> {
        match &mut self.left {
            Some(0) => Err(DataPlaneError::Transient(format!(
                "gateway {}: injected failure part-way through apply",
                self.gateway_id
            ))),
            Some(n) => {
                *n -= 1;
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl SimGateway {
    /// Remove `remove`, then insert every route of `insert` the table lacks; the gateway is
    /// out of sync until the caller marks the new version in force.
    fn change(
        &mut self,
        remove: &[u64],
        insert: &BTreeMap<u64, Route>,
        budget: &mut Budget<'_>,
    ) -> Result<(), DataPlaneError> {
        self.in_sync = false;
        for id in remove {
            if self.table.contains(*id) {
                budget.spend()?;
                self.table.remove(*id);
            }
        }
        for route in insert.values() {
            if !self.table.contains(route.id) {
                budget.spend()?;
                self.table
                    .insert(route.clone())
                    .map_err(|e| DataPlaneError::Permanent(format!("gateway {}: {e}", budget.gateway_id)))?;
            }
        }
        Ok(())
    }

    fn mark_in_force(&mut self, version: i64) {
        self.applied_version = Some(version);
        self.in_sync = true;
    }
}

/// The in-memory data plane (see the [crate docs](crate)).
#[derive(Default)]
pub struct SimDataPlane {
    gateways: RwLock<HashMap<String, SimGateway>>,
    events: Mutex<Vec<DataPlaneEvent>>,
    waker: Mutex<Option<EventWaker>>,
    fault: Mutex<Option<SimFault>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The engine's form of a route spec: prefixes normalised as the engine stores them, so a
/// route read back from the table compares equal to the one put in.
pub fn engine_route(spec: &RouteSpec) -> Route {
    match spec.class {
        RouteClass::Destination => {
            Route::destination(spec.id, spec.dest.trunc(), spec.next_hop.clone(), spec.weight, spec.id)
        }
        RouteClass::Policy => Route {
            id: spec.id,
            kind: vpnroute_engine::RouteKind::Policy,
            source: spec.source.map(|s| s.trunc()),
            dest: spec.dest.trunc(),
            next_hop: spec.next_hop.clone(),
            weight: spec.weight,
            priority: spec.priority,
            seq: spec.id,
        },
    }
}

/// Explain a lookup on `table` with the given tunnel states, in the JSON shape `explain`
/// answers: `{"Tunnels": [{"VpnConnectionId", "Up"}], "Explanation": …}`.
pub fn explain_table(table: &RouteTable, tunnels: &[(String, TunnelState)], source: Ipv4Addr, dest: Ipv4Addr) -> Value {
    let mut links = LinkState::all_up();
    for (id, state) in tunnels {
        table.set_link_up(&mut links, id, *state == TunnelState::Up);
    }
    json!({
        "Tunnels": tunnels
            .iter()
            .map(|(id, state)| json!({"VpnConnectionId": id, "Up": *state == TunnelState::Up}))
            .collect::<Vec<_>>(),
        "Explanation": table.explain(source, dest, &links),
    })
}

impl SimDataPlane {
    /// An empty data plane.
    pub fn new() -> Self {
        Self::default()
    }

    /// Make the next `fault.times` applies fail after `fault.after_routes` route changes
    /// each (with a transient error), leaving what they changed so far in force.
    pub fn inject_failures(&self, fault: SimFault) {
        *lock(&self.fault) = (fault.times > 0).then_some(fault);
    }

    /// Remove a route from a gateway's table behind the control plane's back, as a hand-made
    /// change to a kernel would, and report the drift. Returns whether the route was there.
    pub fn inject_drift(&self, gateway_id: &str, route_id: u64) -> bool {
        let removed = self
            .gateways
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(gateway_id)
            .and_then(|g| {
                let removed = g.table.remove(route_id)?;
                g.in_sync = false;
                Some(removed)
            })
            .is_some();
        if removed {
            self.push_event(DataPlaneEvent::Drift {
                gateway_id: gateway_id.to_string(),
            });
        }
        removed
    }

    /// Number of routes in force on a gateway (0 when the sim holds nothing of it).
    pub fn route_count(&self, gateway_id: &str) -> usize {
        self.gateways
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(gateway_id)
            .map_or(0, |g| g.table.len())
    }

    /// Run `f` on a gateway's table (e.g. a lookup), `None` when the sim holds nothing of it.
    pub fn with_table<T>(&self, gateway_id: &str, f: impl FnOnce(&RouteTable) -> T) -> Option<T> {
        self.gateways
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(gateway_id)
            .map(|g| f(&g.table))
    }

    fn push_event(&self, event: DataPlaneEvent) {
        lock(&self.events).push(event);
        let waker = lock(&self.waker).clone();
        if let Some(wake) = waker {
            wake();
        }
    }

    /// Take one injected failure, if any is armed: the number of route changes allowed.
    fn take_fault(&self) -> Option<usize> {
        let mut fault = lock(&self.fault);
        let f = (*fault)?;
        *fault = (f.times > 1).then_some(SimFault {
            times: f.times - 1,
            ..f
        });
        Some(f.after_routes)
    }
}

impl DataPlane for SimDataPlane {
    fn name(&self) -> &'static str {
        "sim"
    }

    /// In memory: each process (replica) holds its own copy.
    fn per_process(&self) -> bool {
        true
    }

    fn applies_inline(&self) -> bool {
        true
    }

    fn apply(&self, spec: &GatewaySpec) -> Result<(), DataPlaneError> {
        let desired = engine_routes(&spec.gateway_id, &spec.routes)?;
        let mut budget = Budget {
            left: self.take_fault(),
            gateway_id: &spec.gateway_id,
        };
        let mut gateways = self.gateways.write().unwrap_or_else(|p| p.into_inner());
        let gw = gateways.entry(spec.gateway_id.clone()).or_default();
        gw.tunnels = tunnel_states(&spec.connections);
        let stale: Vec<u64> = gw
            .table
            .routes()
            .filter(|r| desired.get(&r.id) != Some(r))
            .map(|r| r.id)
            .collect();
        gw.change(&stale, &desired, &mut budget)?;
        gw.mark_in_force(spec.version);
        Ok(())
    }

    fn apply_changes(&self, changes: &SpecChanges) -> Result<bool, DataPlaneError> {
        let upserts = engine_routes(&changes.gateway_id, &changes.upserts)?;
        let mut gateways = self.gateways.write().unwrap_or_else(|p| p.into_inner());
        let Some(gw) = gateways
            .get_mut(&changes.gateway_id)
            .filter(|g| g.in_sync && g.applied_version == Some(changes.from_version))
        else {
            return Ok(false);
        };
        let mut budget = Budget {
            left: self.take_fault(),
            gateway_id: &changes.gateway_id,
        };
        if let Some(connections) = &changes.connections {
            gw.tunnels = tunnel_states(connections);
        }
        // A changed route is removed and inserted again (the engine has no in-place update).
        let remove: Vec<u64> = changes
            .removed
            .iter()
            .copied()
            .chain(
                upserts
                    .values()
                    .filter(|r| gw.table.get(r.id).is_some_and(|held| held != **r))
                    .map(|r| r.id),
            )
            .collect();
        gw.change(&remove, &upserts, &mut budget)?;
        gw.mark_in_force(changes.version);
        Ok(true)
    }

    fn observe(&self, gateway_id: &str) -> Result<Option<Observed>, DataPlaneError> {
        let gateways = self.gateways.read().unwrap_or_else(|p| p.into_inner());
        Ok(gateways.get(gateway_id).map(|g| Observed {
            applied_version: g.applied_version,
            in_sync: g.in_sync,
            tunnels: g.tunnels.clone(),
            details: json!({"RoutesInForce": g.table.len()}),
        }))
    }

    fn remove(&self, gateway_id: &str) -> Result<(), DataPlaneError> {
        self.gateways
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(gateway_id);
        Ok(())
    }

    fn explain(&self, gateway_id: &str, source: Ipv4Addr, dest: Ipv4Addr) -> Result<Value, DataPlaneError> {
        let gateways = self.gateways.read().unwrap_or_else(|p| p.into_inner());
        Ok(match gateways.get(gateway_id) {
            Some(g) => explain_table(&g.table, &g.tunnels, source, dest),
            None => explain_table(&RouteTable::new(), &[], source, dest),
        })
    }

    fn explain_with_tunnels(
        &self,
        gateway_id: &str,
        tunnels: &[(String, TunnelState)],
        source: Ipv4Addr,
        dest: Ipv4Addr,
    ) -> Result<Value, DataPlaneError> {
        let gateways = self.gateways.read().unwrap_or_else(|p| p.into_inner());
        let empty = RouteTable::new();
        let table = gateways.get(gateway_id).map_or(&empty, |g| &g.table);
        Ok(explain_table(table, tunnels, source, dest))
    }

    fn routes_in_force(&self, gateway_id: &str) -> Result<usize, DataPlaneError> {
        Ok(self.route_count(gateway_id))
    }

    fn gateways(&self) -> Result<Vec<String>, DataPlaneError> {
        let mut ids: Vec<String> = self
            .gateways
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn drain_events(&self) -> Vec<DataPlaneEvent> {
        std::mem::take(&mut *lock(&self.events))
    }

    fn subscribe(&self, wake: EventWaker) {
        *lock(&self.waker) = Some(wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn net(s: &str) -> ipnet::Ipv4Net {
        s.parse().unwrap()
    }

    fn dbr(id: u64, dest: &str, hop: &str, weight: u8) -> RouteSpec {
        RouteSpec {
            id,
            class: RouteClass::Destination,
            source: None,
            dest: net(dest),
            next_hop: hop.into(),
            weight,
            priority: 0,
            published: false,
        }
    }

    fn conn(id: &str, admin_up: bool) -> ConnectionSpec {
        ConnectionSpec {
            id: id.into(),
            remote_ip: Ipv4Addr::new(1, 2, 3, 4),
            local_subnets: vec![net("10.0.0.0/8")],
            remote_subnets: vec![net("172.16.0.0/12")],
            admin_up,
            health_check: None,
            ike_config: json!({}),
            ipsec_config: json!({}),
            enable_dpd: true,
            enable_nat_traversal: true,
            tunnels: vec![],
        }
    }

    fn spec(version: i64, routes: Vec<RouteSpec>) -> GatewaySpec {
        GatewaySpec {
            gateway_id: "vpn-1".into(),
            version,
            internet_ip: Ipv4Addr::new(8, 8, 8, 8),
            vpc_cidr: net("172.16.0.0/12"),
            connections: vec![conn("vco-a", true), conn("vco-b", true)],
            routes,
        }
    }

    fn chosen_hop(dp: &SimDataPlane, dest: &str) -> Option<String> {
        let v = dp
            .explain("vpn-1", "172.16.0.1".parse().unwrap(), dest.parse().unwrap())
            .unwrap();
        v["Explanation"]["chosen"]["next_hop"].as_str().map(str::to_string)
    }

    #[test]
    fn apply_converges_by_route_id_and_is_idempotent() {
        let dp = SimDataPlane::new();
        assert_eq!(dp.observe("vpn-1").unwrap(), None);
        dp.apply(&spec(
            1,
            vec![dbr(1, "10.0.0.0/24", "vco-a", 100), dbr(2, "10.0.1.0/24", "vco-a", 100)],
        ))
        .unwrap();
        assert_eq!(dp.route_count("vpn-1"), 2);
        // Route 1 changes next hop, route 2 goes, route 3 comes.
        let v2 = spec(
            2,
            vec![dbr(1, "10.0.0.0/24", "vco-b", 100), dbr(3, "10.0.2.7/24", "vco-a", 100)],
        );
        dp.apply(&v2).unwrap();
        dp.apply(&v2).unwrap();
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!((o.applied_version, o.in_sync), (Some(2), true));
        assert_eq!(o.details["RoutesInForce"], 2);
        assert_eq!(chosen_hop(&dp, "10.0.0.5").as_deref(), Some("vco-b"));
        assert_eq!(chosen_hop(&dp, "10.0.1.5"), None);
        assert_eq!(chosen_hop(&dp, "10.0.2.5").as_deref(), Some("vco-a"));
        assert_eq!(dp.gateways().unwrap(), vec!["vpn-1".to_string()]);
        dp.remove("vpn-1").unwrap();
        assert_eq!(dp.observe("vpn-1").unwrap(), None);
        dp.remove("vpn-1").unwrap();
    }

    #[test]
    fn explain_has_the_tunnels_from_admin_up() {
        let dp = SimDataPlane::new();
        let mut s = spec(
            1,
            vec![dbr(1, "10.0.0.0/24", "vco-a", 100), dbr(2, "10.0.0.0/24", "vco-b", 0)],
        );
        s.connections[0].admin_up = false;
        dp.apply(&s).unwrap();
        let v = dp
            .explain("vpn-1", "172.16.0.1".parse().unwrap(), "10.0.0.9".parse().unwrap())
            .unwrap();
        assert_eq!(
            v["Tunnels"],
            json!([{"VpnConnectionId": "vco-a", "Up": false}, {"VpnConnectionId": "vco-b", "Up": true}])
        );
        assert_eq!(v["Explanation"]["chosen"]["next_hop"], "vco-b");
        assert_eq!(v["Explanation"]["chosen"]["reason"], "standby_takeover");
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!(
            o.tunnels,
            vec![("vco-a".into(), TunnelState::Down), ("vco-b".into(), TunnelState::Up)]
        );
        // A gateway the sim does not hold explains as an empty table.
        let v = dp
            .explain("vpn-x", "172.16.0.1".parse().unwrap(), "10.0.0.9".parse().unwrap())
            .unwrap();
        assert_eq!(v["Tunnels"], json!([]));
        assert!(v["Explanation"]["chosen"].is_null(), "{v}");
    }

    #[test]
    fn a_failed_apply_leaves_part_in_force_and_the_next_converges() {
        let dp = SimDataPlane::new();
        dp.apply(&spec(1, vec![dbr(1, "10.0.0.0/24", "vco-a", 100)])).unwrap();
        dp.inject_failures(SimFault {
            after_routes: 2,
            times: 1,
        });
        let v2 = spec(
            2,
            (10..14)
                .map(|i| dbr(i, &format!("10.0.{i}.0/24"), "vco-a", 100))
                .collect(),
        );
        let e = dp.apply(&v2).unwrap_err();
        assert!(e.is_transient(), "{e}");
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!(
            (o.applied_version, o.in_sync),
            (Some(1), false),
            "half-way: old version, out of sync"
        );
        assert_eq!(dp.route_count("vpn-1"), 1, "route 1 removed, one new route inserted");
        dp.apply(&v2).unwrap();
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!((o.applied_version, o.in_sync), (Some(2), true));
        assert_eq!(dp.route_count("vpn-1"), 4);
    }

    /// The table holds exactly the spec's routes (what the in-sync flag claims).
    fn holds_exactly(dp: &SimDataPlane, spec: &GatewaySpec) -> bool {
        let want: BTreeMap<u64, Route> = spec.routes.iter().map(|r| (r.id, engine_route(r))).collect();
        dp.with_table(&spec.gateway_id, |t| {
            t.len() == want.len() && want.iter().all(|(id, r)| t.get(*id).as_ref() == Some(r))
        })
        .unwrap_or(false)
    }

    fn changes(from: i64, version: i64, upserts: Vec<RouteSpec>, removed: Vec<u64>) -> SpecChanges {
        SpecChanges {
            gateway_id: "vpn-1".into(),
            from_version: from,
            version,
            upserts,
            removed,
            connections: Some(vec![conn("vco-a", true), conn("vco-b", false)]),
        }
    }

    #[test]
    fn route_only_changes_keep_the_tunnels_in_force() {
        let dp = SimDataPlane::new();
        let mut v1 = spec(1, vec![dbr(1, "10.0.0.0/24", "vco-a", 100)]);
        v1.connections[0].admin_up = false;
        dp.apply(&v1).unwrap();
        let mut change = changes(1, 2, vec![dbr(2, "10.0.1.0/24", "vco-b", 100)], vec![]);
        change.connections = None;
        assert!(dp.apply_changes(&change).unwrap());
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!((o.applied_version, o.in_sync), (Some(2), true));
        assert_eq!(o.tunnels[0], ("vco-a".into(), TunnelState::Down), "kept from version 1");
        // With connections, they replace the held ones.
        assert!(dp.apply_changes(&changes(2, 3, vec![], vec![])).unwrap());
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!(o.tunnels[0], ("vco-a".into(), TunnelState::Up));
    }

    #[test]
    fn changes_apply_only_on_top_of_the_version_they_start_from() {
        let dp = SimDataPlane::new();
        let change = changes(1, 2, vec![dbr(1, "10.0.0.0/24", "vco-b", 100)], vec![]);
        assert!(!dp.apply_changes(&change).unwrap(), "nothing held yet");
        let v1 = spec(
            1,
            vec![dbr(1, "10.0.0.0/24", "vco-a", 100), dbr(2, "10.0.1.0/24", "vco-a", 100)],
        );
        dp.apply(&v1).unwrap();
        assert!(
            !dp.apply_changes(&changes(0, 2, vec![], vec![2])).unwrap(),
            "wrong base version"
        );
        assert!(holds_exactly(&dp, &v1));

        let change = changes(
            1,
            2,
            vec![dbr(1, "10.0.0.0/24", "vco-b", 100), dbr(3, "10.0.3.0/24", "vco-a", 100)],
            vec![2],
        );
        assert!(dp.apply_changes(&change).unwrap());
        let v2 = spec(
            2,
            vec![dbr(1, "10.0.0.0/24", "vco-b", 100), dbr(3, "10.0.3.0/24", "vco-a", 100)],
        );
        assert!(holds_exactly(&dp, &v2));
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!((o.applied_version, o.in_sync), (Some(2), true));
        assert_eq!(o.tunnels[1], ("vco-b".into(), TunnelState::Down));

        // Cut short: out of sync, and further changes are refused until a full apply.
        dp.inject_failures(SimFault {
            after_routes: 1,
            times: 1,
        });
        let cut = changes(2, 3, vec![dbr(4, "10.0.4.0/24", "vco-a", 100)], vec![1, 3]);
        assert!(dp.apply_changes(&cut).is_err());
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!((o.applied_version, o.in_sync), (Some(2), false));
        assert!(!holds_exactly(&dp, &v2));
        assert!(!dp.apply_changes(&cut).unwrap());
        let v3 = spec(3, vec![dbr(4, "10.0.4.0/24", "vco-a", 100)]);
        dp.apply(&v3).unwrap();
        assert!(holds_exactly(&dp, &v3));
        assert!(dp.observe("vpn-1").unwrap().unwrap().in_sync);
    }

    #[test]
    fn explain_with_tunnels_uses_the_given_states() {
        let dp = SimDataPlane::new();
        dp.apply(&spec(
            1,
            vec![dbr(1, "10.0.0.0/24", "vco-a", 100), dbr(2, "10.0.0.0/24", "vco-b", 0)],
        ))
        .unwrap();
        let down = [("vco-a".to_string(), TunnelState::Down)];
        let v = dp
            .explain_with_tunnels(
                "vpn-1",
                &down,
                "172.16.0.1".parse().unwrap(),
                "10.0.0.9".parse().unwrap(),
            )
            .unwrap();
        assert_eq!(v["Tunnels"], json!([{"VpnConnectionId": "vco-a", "Up": false}]));
        assert_eq!(v["Explanation"]["chosen"]["next_hop"], "vco-b");
        assert_eq!(dp.routes_in_force("vpn-1").unwrap(), 2);
        assert_eq!(dp.routes_in_force("vpn-x").unwrap(), 0);
    }

    #[test]
    fn invalid_specs_are_refused_before_anything_changes() {
        let dp = SimDataPlane::new();
        dp.apply(&spec(1, vec![dbr(1, "10.0.0.0/24", "vco-a", 100)])).unwrap();
        let bad_weight = spec(2, vec![dbr(5, "10.0.5.0/24", "vco-a", 50)]);
        assert!(matches!(dp.apply(&bad_weight), Err(DataPlaneError::Permanent(_))));
        let twice = spec(
            2,
            vec![dbr(5, "10.0.5.0/24", "vco-a", 100), dbr(5, "10.0.6.0/24", "vco-a", 100)],
        );
        assert!(matches!(dp.apply(&twice), Err(DataPlaneError::Permanent(_))));
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!((o.applied_version, o.in_sync), (Some(1), true));
    }

    #[test]
    fn drift_is_seen_by_observe_and_reported() {
        let dp = SimDataPlane::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        dp.subscribe(Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        let policy = RouteSpec {
            id: 2,
            class: RouteClass::Policy,
            source: Some(net("172.16.0.0/16")),
            dest: net("10.1.0.0/16"),
            next_hop: "vco-b".into(),
            weight: 100,
            priority: 5,
            published: true,
        };
        dp.apply(&spec(3, vec![dbr(1, "10.0.0.0/24", "vco-a", 100), policy]))
            .unwrap();
        assert!(dp.observe("vpn-1").unwrap().unwrap().in_sync);
        assert_eq!(chosen_hop(&dp, "10.1.0.1").as_deref(), Some("vco-b"));
        assert!(dp.inject_drift("vpn-1", 2));
        assert!(!dp.inject_drift("vpn-1", 2));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        assert_eq!(
            dp.drain_events(),
            vec![DataPlaneEvent::Drift {
                gateway_id: "vpn-1".into()
            }]
        );
        assert!(dp.drain_events().is_empty());
        let o = dp.observe("vpn-1").unwrap().unwrap();
        assert_eq!((o.applied_version, o.in_sync), (Some(3), false));
    }
}
