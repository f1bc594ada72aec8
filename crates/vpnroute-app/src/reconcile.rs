//! The store side of reconciliation for the app: [`StoreReconcile`] implements
//! [`vpnroute_reconciler::ReconcileStore`] over any [`Store`] — claims, records and retry
//! times are the store's (each call's writes go through the store's write queue and share a
//! commit with the API's writes; the claims and records of one pass are one call), and the
//! desired [`GatewaySpec`] at a version
//! is built here from the stored documents (gateway, VPC, connections, customer gateways) and
//! the gateway's routes at that version. Recording a version also ends the gateway's busy
//! state (`updating`/`provisioning` → `active`) when no task remains, in the same transaction.
//! The store's [`Store::others_generation`] is the reconciler's generation (other replicas'
//! commits move it, so their recorded versions are mirrored).

use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;
use vpnroute_dataplane::{
    ConnectionSpec, GatewaySpec, HealthCheckSpec, RouteClass, RouteSpec, SpecChanges, TunnelRole, TunnelSpec,
};
use vpnroute_domain::model::{CustomerGateway, RouteKind, Vpc, VpnConnection, VpnGateway, VpnRoute};
use vpnroute_reconciler::{Claim, GatewayVersion, ReconcileStore, RecordDone, StoreFailure};
use vpnroute_store::{
    ReadAhead, ReadTx, ReadTxExt, ReconcileClaim, ResourceKind, Store, StoreError, WriteTx, WriteTxExt,
};

/// See the [module docs](self).
pub struct StoreReconcile {
    store: Arc<dyn Store>,
}

impl StoreReconcile {
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreReconcile { store }
    }
}

fn failure(e: StoreError) -> StoreFailure {
    StoreFailure(e.to_string())
}

pub(crate) fn to_claim(c: ReconcileClaim) -> Claim {
    Claim {
        gateway_id: c.gateway_id,
        owner: c.owner,
        token: c.token as u64,
        lease_until_ms: c.lease_until_ms,
        target_version: c.target_version,
        applied_version: c.applied_version,
        attempts: c.attempts,
    }
}

fn from_claim(c: &Claim) -> ReconcileClaim {
    ReconcileClaim {
        gateway_id: c.gateway_id.clone(),
        owner: c.owner.clone(),
        token: c.token as i64,
        lease_until_ms: c.lease_until_ms,
        target_version: c.target_version,
        applied_version: c.applied_version,
        attempts: c.attempts,
    }
}

/// What changed in a gateway's spec between versions `from` and `to`, in the state at `to`
/// (`None`: the gateway no longer exists). Also read inside the transaction that commits `to`,
/// whose reads see that state (see [`crate::tasks::Effects::claims`]).
pub fn spec_changes(tx: &dyn ReadTx, gateway_id: &str, from: i64, to: i64) -> Result<Option<SpecChanges>, StoreError> {
    // The changes are the before-images of the versions after `from`, kept until they are
    // applied: from below the applied version the store cannot tell.
    if tx.resource_owner(ResourceKind::VpnGateway, gateway_id)?.is_none() || from < tx.gateway_versions(gateway_id)?.1 {
        return Ok(None);
    }
    let mut changes = route_changes(tx, gateway_id, from, to)?;
    changes.connections = Some(connection_specs(tx, gateway_id)?);
    Ok(Some(changes))
}

/// The route changes of a gateway between versions `from` and `to`, for versions that changed
/// nothing else (`connections: None`), read where the gateway exists and `from` is its
/// applied version (in the transaction that commits `to`).
pub fn route_changes(tx: &dyn ReadTx, gateway_id: &str, from: i64, to: i64) -> Result<SpecChanges, StoreError> {
    let mut upserts = Vec::new();
    let mut removed = Vec::new();
    for (seq, state) in tx.route_changes(gateway_id, from, to)? {
        match state.as_ref().and_then(route_spec) {
            Some(spec) => upserts.push(spec),
            None => removed.push(seq as u64),
        }
    }
    Ok(SpecChanges {
        gateway_id: gateway_id.to_string(),
        from_version: from,
        version: to,
        upserts,
        removed,
        connections: None,
    })
}

/// The changes of a version recorded at once ([`crate::tasks::change_at_once`]), from the
/// version before it: each route's last state in the version.
pub fn changes_at_once(change: vpnroute_store::ChangeAtOnce) -> SpecChanges {
    let mut last: std::collections::BTreeMap<i64, Option<VpnRoute>> = std::collections::BTreeMap::new();
    for (seq, state) in change.routes {
        last.insert(seq, state);
    }
    let mut upserts = Vec::new();
    let mut removed = Vec::new();
    for (seq, state) in last {
        match state.as_ref().and_then(route_spec) {
            Some(spec) => upserts.push(spec),
            None => removed.push(seq as u64),
        }
    }
    SpecChanges {
        gateway_id: change.gateway_id,
        from_version: change.version - 1,
        version: change.version,
        upserts,
        removed,
        connections: None,
    }
}

/// The data plane's form of a stored route (`None` for a route the API would never have
/// accepted: it is logged and left out).
pub fn route_spec(r: &VpnRoute) -> Option<RouteSpec> {
    let parsed = (|| {
        let dest: Ipv4Net = r.dest.parse().ok()?;
        let source = match r.kind {
            RouteKind::Dbr => None,
            RouteKind::Pbr => Some(r.source.parse::<Ipv4Net>().ok()?),
        };
        Some(RouteSpec {
            id: u64::try_from(r.seq).ok()?,
            class: match r.kind {
                RouteKind::Dbr => RouteClass::Destination,
                RouteKind::Pbr => RouteClass::Policy,
            },
            source,
            dest,
            next_hop: r.next_hop.clone(),
            weight: u8::try_from(r.weight).ok()?,
            priority: u8::try_from(r.priority).ok()?,
            published: r.published,
        })
    })();
    if parsed.is_none() {
        tracing::error!(seq = r.seq, gateway = %r.gateway_id, "stored route the data plane cannot take");
    }
    parsed
}

fn subnets(list: &str) -> Vec<Ipv4Net> {
    list.split(',').filter_map(|s| s.trim().parse().ok()).collect()
}

/// A customer gateway's address (unspecified when it is gone or unparsable).
fn peer_ip(tx: &dyn ReadTx, customer_gateway_id: &str) -> Result<Ipv4Addr, StoreError> {
    Ok(tx
        .resource::<CustomerGateway>(ResourceKind::CustomerGateway, customer_gateway_id)?
        .and_then(|g| g.doc.ip_address.parse().ok())
        .unwrap_or(Ipv4Addr::UNSPECIFIED))
}

/// The two tunnels of a dual-tunnel connection, master first, as the data plane takes them.
fn tunnel_specs(tx: &dyn ReadTx, c: &VpnConnection) -> Result<Vec<TunnelSpec>, StoreError> {
    c.tunnels
        .iter()
        .map(|t| {
            Ok(TunnelSpec {
                id: t.id.clone(),
                role: if t.role == "slave" {
                    TunnelRole::Slave
                } else {
                    TunnelRole::Master
                },
                local_ip: t.internet_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                remote_ip: peer_ip(tx, &t.customer_gateway_id)?,
                admin_up: t.up,
                ike_config: t.ike_config.clone(),
                ipsec_config: t.ipsec_config.clone(),
                enable_dpd: t.enable_dpd,
                enable_nat_traversal: t.enable_nat_traversal,
            })
        })
        .collect()
}

fn connection_spec(tx: &dyn ReadTx, c: &VpnConnection) -> Result<ConnectionSpec, StoreError> {
    let tunnels = tunnel_specs(tx, c)?;
    // A dual-tunnel connection has no customer gateway of its own: its master tunnel's peer.
    let remote_ip = match tunnels.first() {
        Some(master) => master.remote_ip,
        None => peer_ip(tx, &c.customer_gateway_id)?,
    };
    let hc = &c.health_check;
    let health_check = (hc["Enable"] == "true").then(|| HealthCheckSpec {
        sip: hc["Sip"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED),
        dip: hc["Dip"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(Ipv4Addr::UNSPECIFIED),
        interval_s: hc["Interval"].as_u64().unwrap_or(3) as u32,
        retry: hc["Retry"].as_u64().unwrap_or(3) as u32,
    });
    Ok(ConnectionSpec {
        id: c.id.clone(),
        remote_ip,
        local_subnets: subnets(&c.local_subnet),
        remote_subnets: subnets(&c.remote_subnet),
        admin_up: c.tunnel_up,
        health_check,
        ike_config: c.ike_config.clone(),
        ipsec_config: c.ipsec_config.clone(),
        enable_dpd: c.enable_dpd,
        enable_nat_traversal: c.enable_nat_traversal,
        tunnels,
    })
}

fn connection_specs(tx: &dyn ReadTx, gateway_id: &str) -> Result<Vec<ConnectionSpec>, StoreError> {
    let conns: Vec<VpnConnection> = tx.children(ResourceKind::VpnConnection, gateway_id)?;
    conns.iter().map(|c| connection_spec(tx, c)).collect()
}

/// The spec of a gateway whose version this transaction recorded at once
/// ([`vpnroute_store::WriteTx::change_at_once`]): its current state, under its lock (nothing
/// newer than `version` exists, so the current routes are those at `version`).
pub fn spec_recorded_at_once(
    tx: &dyn ReadTx,
    gateway_id: &str,
    version: i64,
) -> Result<Option<GatewaySpec>, StoreError> {
    gateway_spec_with(tx, gateway_id, version, false)
}

/// The desired spec of a gateway at `version` (`None`: no such gateway).
pub fn gateway_spec(tx: &dyn ReadTx, gateway_id: &str, version: i64) -> Result<Option<GatewaySpec>, StoreError> {
    gateway_spec_with(tx, gateway_id, version, true)
}

/// [`gateway_spec`], refused below the applied version: the before-images of versions up to
/// the applied one are gone, so an older version cannot be rebuilt (another replica recorded
/// a newer one meanwhile).
fn spec_not_below_applied(tx: &dyn ReadTx, gateway_id: &str, version: i64) -> Result<Option<GatewaySpec>, StoreError> {
    let applied = tx.gateway_versions(gateway_id)?.1;
    if version < applied {
        return Err(StoreError::Other(format!(
            "gateway {gateway_id}: version {version} is below the applied version {applied}"
        )));
    }
    gateway_spec(tx, gateway_id, version)
}

/// Tell the store what [`gateway_spec`] of each gateway of `wanted` (at its version, or its
/// applied one if later, as `load_specs` asks) will read: versions, gateways and their
/// children first, then the VPCs, customer gateways and routes those name. Two round trips
/// for all on a store that reads ahead, instead of some six per gateway.
fn read_specs_ahead(tx: &dyn ReadTx, wanted: &[(String, i64)]) -> Result<(), StoreError> {
    let ids: Vec<String> = wanted.iter().map(|(id, _)| id.clone()).collect();
    let first = [
        ReadAhead::GatewayVersions(ids.clone()),
        ReadAhead::Resources(ResourceKind::VpnGateway, ids.clone()),
        ReadAhead::Children(ids),
    ];
    if !tx.read_ahead(&first)? {
        return Ok(());
    }
    let (mut vpcs, mut peers, mut routes_at) = (Vec::new(), Vec::new(), Vec::new());
    for (gateway_id, version) in wanted {
        routes_at.push((gateway_id.clone(), tx.gateway_versions(gateway_id)?.1.max(*version)));
        // A document that does not decode is that gateway's error, met again by its own
        // `gateway_spec`; the others are read ahead all the same.
        if let Ok(Some(gw)) = tx.resource::<VpnGateway>(ResourceKind::VpnGateway, gateway_id) {
            vpcs.push(gw.doc.vpc_id.clone());
        }
        let conns = tx.children::<VpnConnection>(ResourceKind::VpnConnection, gateway_id);
        for c in conns.unwrap_or_default() {
            peers.push(c.customer_gateway_id.clone());
            peers.extend(c.tunnels.iter().map(|t| t.customer_gateway_id.clone()));
        }
    }
    tx.read_ahead(&[
        ReadAhead::Resources(ResourceKind::Vpc, vpcs),
        ReadAhead::Resources(ResourceKind::CustomerGateway, peers),
        ReadAhead::RoutesAtVersion(routes_at),
    ])?;
    Ok(())
}

/// [`gateway_spec`]; `at_version`: the routes as at `version` (else the current ones).
fn gateway_spec_with(
    tx: &dyn ReadTx,
    gateway_id: &str,
    version: i64,
    at_version: bool,
) -> Result<Option<GatewaySpec>, StoreError> {
    let Some(gw) = tx.resource::<VpnGateway>(ResourceKind::VpnGateway, gateway_id)? else {
        return Ok(None);
    };
    let vpc_cidr = tx
        .resource::<Vpc>(ResourceKind::Vpc, &gw.doc.vpc_id)?
        .and_then(|v| v.doc.cidr_block.parse().ok())
        .unwrap_or_default();
    Ok(Some(GatewaySpec {
        gateway_id: gateway_id.to_string(),
        version,
        internet_ip: gw.doc.internet_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
        vpc_cidr,
        connections: connection_specs(tx, gateway_id)?,
        routes: if at_version {
            tx.routes_at_version(gateway_id, version)?
        } else {
            tx.gateway_routes(gateway_id)?
        }
        .iter()
        .filter_map(route_spec)
        .collect(),
    }))
}

/// Record `version` in force for `claim`; the gateway is no longer busy once no task remains.
/// The store's record takes the gateway's lock first, so the status is a read-modify-write of
/// the gateway's document that a concurrent change of the gateway (on another replica, or
/// `vpnroute admin`) does not overwrite with an older copy.
fn record_applied(tx: &dyn WriteTx, claim: &Claim, version: i64) -> Result<bool, StoreError> {
    if !tx.record_applied(&from_claim(claim), version)? {
        return Ok(false);
    }
    if tx.pending_tasks(&claim.gateway_id)?.is_empty() {
        if let Some(mut gw) = tx.resource::<VpnGateway>(ResourceKind::VpnGateway, &claim.gateway_id)? {
            let status = gw.doc.status.after_last_task();
            if gw.doc.status != status {
                gw.doc.status = status;
                tx.update_resource(ResourceKind::VpnGateway, &claim.gateway_id, &gw.doc)?;
            }
        }
    }
    Ok(true)
}

impl ReconcileStore for StoreReconcile {
    fn claim_due(&self, owner: &str, now_ms: i64, lease_ms: i64) -> Result<Option<Claim>, StoreFailure> {
        Ok(self.claim_due_many(owner, now_ms, lease_ms, 1)?.pop())
    }

    fn claim_due_many(&self, owner: &str, now_ms: i64, lease_ms: i64, max: usize) -> Result<Vec<Claim>, StoreFailure> {
        // Most passes find nothing due (a wake-up for a delayed task, a poll): a read says so
        // without taking the write lock the API's writes need.
        let due = self.next_wake(now_ms)?;
        if due.is_none_or(|t| t > now_ms) {
            return Ok(Vec::new());
        }
        let owner = owner.to_string();
        self.store
            .write_queued(move |tx| tx.claim_due_gateways(&owner, now_ms, lease_ms, max))
            .map(|claims| claims.into_iter().map(to_claim).collect())
            .map_err(failure)
    }

    fn release_owner(&self, owner: &str) -> Result<usize, StoreFailure> {
        let owner = owner.to_string();
        self.store
            .write_queued(move |tx| tx.release_owner_claims(&owner))
            .map_err(failure)
    }

    fn claim_gateway(
        &self,
        gateway_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<Claim>, StoreFailure> {
        let (gateway_id, owner) = (gateway_id.to_string(), owner.to_string());
        self.store
            .write_queued(move |tx| tx.claim_gateway(&gateway_id, &owner, now_ms, lease_ms))
            .map(|c| c.map(to_claim))
            .map_err(failure)
    }

    fn load_spec(&self, gateway_id: &str, version: i64) -> Result<Option<GatewaySpec>, StoreFailure> {
        self.store
            .read(|tx| spec_not_below_applied(tx, gateway_id, version))
            .map_err(failure)
    }

    fn load_specs(&self, wanted: &[(String, i64)]) -> Vec<Result<Option<GatewaySpec>, StoreFailure>> {
        // One snapshot for all: on PostgreSQL one transaction, not one each. A gateway
        // applied further since it was asked for: its applied version (the trait allows it).
        let read = self.store.read(|tx| {
            read_specs_ahead(tx, wanted)?;
            Ok(wanted
                .iter()
                .map(|(gateway_id, version)| {
                    let applied = tx.gateway_versions(gateway_id)?.1;
                    gateway_spec(tx, gateway_id, applied.max(*version))
                })
                .map(|spec| spec.map_err(failure))
                .collect::<Vec<_>>())
        });
        read.unwrap_or_else(|e| {
            let e = failure(e);
            wanted.iter().map(|_| Err(e.clone())).collect()
        })
    }

    fn load_changes(&self, gateway_id: &str, from: i64, to: i64) -> Result<Option<SpecChanges>, StoreFailure> {
        self.store
            .read(|tx| spec_changes(tx, gateway_id, from, to))
            .map_err(failure)
    }

    fn record_applied(&self, claim: &Claim, version: i64, now_ms: i64) -> Result<bool, StoreFailure> {
        Ok(self.record_applied_many(&[(claim.clone(), version)], now_ms)?[0])
    }

    fn record_applied_deferred(&self, claim: &Claim, version: i64, _now_ms: i64) -> Result<bool, StoreFailure> {
        let claim = claim.clone();
        self.store
            .write_queued_deferred(move |tx| record_applied(tx, &claim, version))
            .map_err(failure)
    }

    fn record_applied_then(&self, claim: &Claim, version: i64, _now_ms: i64, done: RecordDone) {
        let claim = claim.clone();
        self.store.write_then(
            true,
            move |tx| record_applied(tx, &claim, version),
            Box::new(move |recorded| done(recorded.map_err(failure))),
        );
    }

    fn record_applied_many(&self, records: &[(Claim, i64)], _now_ms: i64) -> Result<Vec<bool>, StoreFailure> {
        let records = records.to_vec();
        self.store
            .write_queued(move |tx| {
                records
                    .iter()
                    .map(|(claim, version)| record_applied(tx, claim, *version))
                    .collect()
            })
            .map_err(failure)
    }

    fn record_failure(
        &self,
        claim: &Claim,
        error: &str,
        next_retry_ms: i64,
        _now_ms: i64,
    ) -> Result<Option<u32>, StoreFailure> {
        let (claim, error) = (from_claim(claim), error.to_string());
        self.store
            .write_queued(move |tx| tx.record_failure(&claim, &error, next_retry_ms))
            .map_err(failure)
    }

    fn release(&self, claim: &Claim) -> Result<(), StoreFailure> {
        let claim = from_claim(claim);
        self.store
            .write_queued(move |tx| tx.release_claim(&claim))
            .map_err(failure)
    }

    fn gateway_versions(&self) -> Result<Vec<GatewayVersion>, StoreFailure> {
        // Every gateway has a version row from its creation (its provisioning task) until it
        // is deleted.
        self.store
            .read(|tx| {
                Ok(tx
                    .all_gateway_versions()?
                    .into_iter()
                    .map(|(gateway_id, _, applied_version)| GatewayVersion {
                        gateway_id,
                        applied_version,
                    })
                    .collect())
            })
            .map_err(failure)
    }

    fn generation(&self) -> Option<u64> {
        Some(self.store.others_generation())
    }

    fn next_wake(&self, now_ms: i64) -> Result<Option<i64>, StoreFailure> {
        self.store.read(|tx| tx.next_reconcile_wake(now_ms)).map_err(failure)
    }
}
