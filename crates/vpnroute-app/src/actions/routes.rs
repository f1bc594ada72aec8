//! The eleven VPN route actions (destination-based `dbr` and policy-based `pbr`) as typed
//! operations: inputs ([`NewRoute`], [`RouteTarget`] in [`DeleteRoute`] and [`ModifyRoute`],
//! [`PublishRoute`], [`DescribeRoutes`]) with their RPC parsers, one [`Operation`] per Action,
//! and outputs ([`RouteEntry`], [`Done`], [`RoutesPage`]).
//!
//! Every change runs in the request's write transaction: checks (in the order of
//! `docs/compatibility.md`), the route rows, the VPC route-table entry when publishing, and
//! the gateway task that puts the change into force.
//!
//! Busy codes (a change while the gateway's previous task still runs): destination-based
//! actions get `VpnGateway.Configuring`, policy-based actions `TaskConflict`, and
//! PublishVpnRouteEntry `VpnTask.CONFLICT`.

use ipnet::Ipv4Net;
use vpnroute_domain::ids::{new_id, AccountId, ConnectionId, GatewayId};
use vpnroute_domain::model::{RouteKind, SslVpnServer, Vpc, VpcRouteEntry, VpnConnection, VpnGateway, VpnRoute};
use vpnroute_domain::rules::{self, PublishPlan, DEFAULT_PRIORITY};
use vpnroute_domain::status::VpcStatus;
use vpnroute_domain::validate;
use vpnroute_domain::ApiError;
use vpnroute_store::{ReadTx, ReadTxExt, ResourceKind, Tx};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use vpnroute_domain::params::Paging;

use super::{check_owned, check_owner, opt_text, owned, params};
use crate::actions::vpc::PUBLISHED;
use crate::ops::{arn, check_dry_run, Deferred, Done, Operation};
use crate::reply::{page_fields, List, Reply};
use crate::rpc::{self, FromRpc};
use crate::state::{Ctx, OpCtx};
use crate::tasks;

fn busy_code(kind: RouteKind) -> ApiError {
    match kind {
        RouteKind::Dbr => ApiError::GATEWAY_CONFIGURING,
        RouteKind::Pbr => ApiError::TASK_CONFLICT,
    }
}

/// The gateway a change applies to, after the gateway-level checks: exists for the caller
/// (404), not financially locked, its VPC available, not busy. The transaction holds the
/// gateway's lock from here on ([`vpnroute_store::WriteTx::lock_gateway`]): another writer of the gateway — a
/// request on another replica of a shared store — waits until it ends, so the route checks
/// that follow see every change committed before (two racing creates of one route: exactly
/// one wins, the other is told the route exists).
fn gateway_for_change(
    ctx: &OpCtx<'_>,
    tx: &Tx<'_>,
    region: &str,
    id: &str,
    busy: ApiError,
) -> Result<VpnGateway, ApiError> {
    // The caller's own, found with its lock (no lock rows for ids that do not exist; the
    // owner columns only, no document decoded), then read under the lock.
    check_owner::<VpnGateway>(ctx, region, tx.lock_existing_gateway(id)?)?;
    let gw: VpnGateway = owned(ctx, tx, region, id)?;
    gw.business_status.check_change()?;
    match tx.resource::<Vpc>(ResourceKind::Vpc, &gw.vpc_id)? {
        Some(vpc) if vpc.doc.status == VpcStatus::Available => {}
        _ => return Err(ApiError::INCORRECT_VPC_STATUS),
    }
    tasks::check_busy(ctx, &gw, busy)?;
    tasks::change_at_once(ctx, tx, &gw)?;
    Ok(gw)
}

/// The next hop must be an IPsec connection of this gateway.
fn check_next_hop(tx: &dyn ReadTx, ctx: &OpCtx<'_>, gw: &VpnGateway, next_hop: &str) -> Result<(), ApiError> {
    match tx.resource::<VpnConnection>(ResourceKind::VpnConnection, next_hop)? {
        Some(c) if c.account_id == ctx.account_id && c.doc.gateway_id == gw.id => Ok(()),
        _ => Err(ApiError::NEXT_HOP_NOT_FOUND),
    }
}

fn check_ssl(tx: &dyn ReadTx, gw: &VpnGateway, dest: &Ipv4Net) -> Result<(), ApiError> {
    let servers: Vec<SslVpnServer> = tx.children(ResourceKind::SslVpnServer, &gw.id)?;
    for s in &servers {
        rules::check_ssl_pool(dest, Some(&s.client_ip_pool))?;
    }
    Ok(())
}

fn overlay_mode(ctx: &Ctx<'_>) -> Result<String, ApiError> {
    match params(ctx).opt_str("OverlayMode") {
        None => Ok("Ipsec".into()),
        Some(m) if m.eq_ignore_ascii_case("ipsec") => Ok("Ipsec".into()),
        Some(_) => Err(ApiError::invalid_parameter("OverlayMode")),
    }
}

fn required_weight(ctx: &Ctx<'_>, name: &str) -> Result<i64, ApiError> {
    let text = params(ctx)
        .opt_str(name)
        .ok_or_else(|| ApiError::missing_parameter(name))?;
    rules::parse_weight(text)
}

fn optional_priority(ctx: &Ctx<'_>, name: &str) -> Result<Option<i64>, ApiError> {
    params(ctx)
        .opt_str(name)
        .map(|t| rules::parse_priority(t, name))
        .transpose()
}

fn vpc_of(tx: &dyn ReadTx, gw: &VpnGateway) -> Result<Vpc, ApiError> {
    Ok(tx
        .resource::<Vpc>(ResourceKind::Vpc, &gw.vpc_id)?
        .ok_or(ApiError::INCORRECT_VPC_STATUS)?
        .doc)
}

/// Check that `dest` can be published for `gw`; returns what publishing needs.
fn plan_publish(ctx: &OpCtx<'_>, tx: &dyn ReadTx, gw: &VpnGateway, dest: &str) -> Result<PublishPlan, ApiError> {
    let vpc = vpc_of(tx, gw)?;
    let same = tx.vpc_entries_for_dest(&vpc.route_table_id, dest)?;
    let to_gw = tx.count_vpc_entries_to(&vpc.route_table_id, &gw.id)?;
    rules::plan_publish(&gw.id, &same, to_gw, ctx.app.config.quotas.vpc_routes_per_gateway)
}

fn add_published_entry(ctx: &OpCtx<'_>, tx: &Tx<'_>, gw: &VpnGateway, dest: &str) -> Result<(), ApiError> {
    let vpc = vpc_of(tx, gw)?;
    tx.insert_vpc_entry(&VpcRouteEntry {
        id: new_id("rte"),
        route_table_id: vpc.route_table_id,
        dest: dest.to_string(),
        next_hop_type: "VpnGateway".into(),
        next_hop_id: gw.id.clone(),
        entry_type: PUBLISHED.into(),
        name: String::new(),
        description: String::new(),
        create_time: ctx.now_ms,
    })?;
    Ok(())
}

/// Remove the gateway's published VPC entry for `dest` if no published route still needs it.
fn withdraw_if_unused(tx: &Tx<'_>, gw: &VpnGateway, dest: &str) -> Result<(), ApiError> {
    if tx.routes_with_dest(&gw.id, dest)?.iter().any(|r| r.published) {
        return Ok(());
    }
    let vpc = vpc_of(tx, gw)?;
    for e in tx.vpc_entries_for_dest(&vpc.route_table_id, dest)? {
        if e.entry_type == PUBLISHED && e.next_hop_id == gw.id {
            tx.delete_vpc_entry(&e.id)?;
        }
    }
    Ok(())
}

/// A new route, as CreateVpnRouteEntry and CreateVpnPbrRouteEntry take it.
#[derive(Debug, Clone)]
pub struct NewRoute {
    pub region: String,
    pub gateway_id: GatewayId,
    /// Policy routes only.
    pub source: Option<Ipv4Net>,
    pub dest: Ipv4Net,
    pub next_hop: ConnectionId,
    pub weight: i64,
    pub publish_vpc: bool,
    pub description: String,
    /// Policy routes only; `None` = the default priority.
    pub priority: Option<i64>,
    pub dry_run: Deferred<bool>,
}

/// CreateVpnRouteEntry's input (`source` and `priority` are `None`).
pub type CreateVpnRouteEntryInput = NewRoute;
/// CreateVpnPbrRouteEntry's input.
pub type CreateVpnPbrRouteEntryInput = NewRoute;

/// A created route, as the Create actions answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteEntry {
    pub vpn_instance_id: String,
    pub route_dest: String,
    pub next_hop: String,
    pub weight: i64,
    pub overlay_mode: String,
    pub description: String,
    pub state: &'static str,
    pub create_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

impl RouteEntry {
    fn of(r: &VpnRoute) -> RouteEntry {
        let pbr = r.kind == RouteKind::Pbr;
        RouteEntry {
            vpn_instance_id: r.gateway_id.clone(),
            route_dest: r.dest.clone(),
            next_hop: r.next_hop.clone(),
            weight: r.weight,
            overlay_mode: r.overlay_mode.clone(),
            description: r.description.clone(),
            state: r.state(),
            create_time: r.create_time,
            route_source: pbr.then(|| r.source.clone()),
            priority: pbr.then_some(r.priority),
        }
    }
}

fn new_route_from_rpc(ctx: &Ctx<'_>, kind: RouteKind) -> Result<NewRoute, ApiError> {
    let region = rpc::region(ctx)?;
    let p = params(ctx);
    let gateway_id = p.str("VpnGatewayId")?;
    let source_text = if kind == RouteKind::Pbr {
        Some(p.str("RouteSource")?)
    } else {
        None
    };
    let dest_text = p.str("RouteDest")?;
    let next_hop = p.str("NextHop")?;
    let weight = required_weight(ctx, "Weight")?;
    let publish_vpc = p.bool("PublishVpc")?;
    let description = opt_text(ctx, "Description", validate::description)?;
    overlay_mode(ctx)?;
    let priority = if kind == RouteKind::Pbr {
        optional_priority(ctx, "Priority")?
    } else {
        None
    };
    let dest = validate::route_dest(dest_text)?;
    let source = source_text.map(validate::route_source).transpose()?;
    Ok(NewRoute {
        region,
        gateway_id: gateway_id.into(),
        source,
        dest,
        next_hop: next_hop.into(),
        weight,
        publish_vpc,
        description,
        priority,
        dry_run: rpc::dry_run(ctx),
    })
}

fn create(ctx: &OpCtx<'_>, tx: &Tx<'_>, kind: RouteKind, input: NewRoute) -> Result<RouteEntry, ApiError> {
    let NewRoute {
        region,
        gateway_id,
        source,
        dest,
        next_hop,
        weight,
        publish_vpc: publish,
        description,
        priority,
        dry_run,
    } = input;
    let mut gw = gateway_for_change(ctx, tx, &region, &gateway_id, busy_code(kind))?;
    check_next_hop(tx, ctx, &gw, &next_hop)?;
    if priority.is_some() && !gw.pbr_priority {
        return Err(ApiError::PBR_PRIORITY_NOT_SUPPORTED);
    }
    check_ssl(tx, &gw, &dest)?;
    let source_str = source.map(|s| s.to_string()).unwrap_or_default();
    let dest_str = dest.to_string();
    let same_key = tx.routes_with_key(&gw.id, kind, &source_str, &dest_str)?;
    rules::check_group_add(&next_hop, weight, &same_key)?;
    let quota = match kind {
        RouteKind::Dbr => ctx.app.config.quotas.dbr_routes_per_gateway,
        RouteKind::Pbr => ctx.app.config.quotas.pbr_routes_per_gateway,
    };
    rules::check_route_quota(tx.count_routes(&gw.id, kind)?, quota)?;
    let plan = if publish {
        Some(plan_publish(ctx, tx, &gw, &dest_str)?)
    } else {
        None
    };
    check_dry_run(&dry_run)?;

    let mut route = VpnRoute {
        seq: 0,
        kind,
        gateway_id: gw.id.clone(),
        source: source_str,
        dest: dest_str,
        next_hop: next_hop.0,
        weight,
        priority: priority.unwrap_or(DEFAULT_PRIORITY),
        published: publish,
        description,
        overlay_mode: "Ipsec".into(),
        create_time: ctx.now_ms,
    };
    route.seq = tx.insert_route(&route)?;
    if plan == Some(PublishPlan::AddEntry) {
        add_published_entry(ctx, tx, &gw, &route.dest)?;
    }
    tasks::schedule_routes(ctx, tx, &mut gw)?;
    Ok(RouteEntry::of(&route))
}

/// The gateway's ARN: every route action names its gateway.
fn gateway_arn(region: &str, account: &AccountId, gateway_id: &GatewayId) -> Vec<String> {
    vec![arn(region, account, "vpngateway", gateway_id)]
}

impl FromRpc for NewRoute {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let kind = if ctx.action == CreateVpnPbrRouteEntry::NAME {
            RouteKind::Pbr
        } else {
            RouteKind::Dbr
        };
        new_route_from_rpc(ctx, kind)
    }
}

/// One route identified for a modify or delete: its gateway, key and current weight (and for
/// a policy route optionally its priority), as the caller spells them.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub region: String,
    pub gateway_id: GatewayId,
    /// Empty for destination-based routes.
    pub source: String,
    pub dest: String,
    pub next_hop: ConnectionId,
    pub weight: i64,
    /// Policy routes: must match the route's priority when given.
    pub priority: Deferred<Option<i64>>,
}

fn target_from_rpc(ctx: &Ctx<'_>, kind: RouteKind) -> Result<RouteTarget, ApiError> {
    let region = rpc::region(ctx)?;
    let p = params(ctx);
    let gateway_id = p.str("VpnGatewayId")?;
    let source = if kind == RouteKind::Pbr {
        p.str("RouteSource")?
    } else {
        ""
    };
    let dest = p.str("RouteDest")?;
    let next_hop = p.str("NextHop")?;
    let weight = required_weight(ctx, "Weight")?;
    let priority = if kind == RouteKind::Pbr {
        optional_priority(ctx, "Priority")
    } else {
        Ok(None)
    };
    Ok(RouteTarget {
        region,
        gateway_id: gateway_id.into(),
        source: source.to_string(),
        dest: dest.to_string(),
        next_hop: next_hop.into(),
        weight,
        priority,
    })
}

/// The identified route of a modify/delete call, after the gateway-level checks.
struct Target {
    gw: VpnGateway,
    route: VpnRoute,
}

fn find_target(ctx: &OpCtx<'_>, tx: &Tx<'_>, kind: RouteKind, t: &RouteTarget) -> Result<Target, ApiError> {
    let gw = gateway_for_change(ctx, tx, &t.region, &t.gateway_id, busy_code(kind))?;
    // Stored blocks are canonical; accept the caller's spelling of the same block.
    let (source, dest) = if kind == RouteKind::Pbr {
        (validate::canonical_cidr(&t.source), validate::canonical_cidr(&t.dest))
    } else {
        (String::new(), validate::canonical_cidr(&t.dest))
    };
    let route = tx
        .routes_with_key(&gw.id, kind, &source, &dest)?
        .into_iter()
        .find(|r| r.next_hop == *t.next_hop)
        .ok_or(ApiError::ROUTE_ENTRY_NOT_FOUND)?;
    if route.weight != t.weight {
        return Err(ApiError::ROUTE_INVALID_WEIGHT);
    }
    if kind == RouteKind::Pbr {
        if let Some(given) = t.priority.clone()? {
            if given != route.priority {
                return Err(ApiError::invalid_parameter_msg(
                    "The specified Priority does not match the priority of the route entry.",
                ));
            }
        }
    }
    Ok(Target { gw, route })
}

/// DeleteVpnRouteEntry's and DeleteVpnPbrRouteEntry's input.
#[derive(Debug, Clone)]
pub struct DeleteRoute {
    pub target: RouteTarget,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for DeleteRoute {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let kind = if ctx.action == DeleteVpnPbrRouteEntry::NAME {
            RouteKind::Pbr
        } else {
            RouteKind::Dbr
        };
        overlay_mode(ctx)?;
        Ok(DeleteRoute {
            target: target_from_rpc(ctx, kind)?,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

fn delete(ctx: &OpCtx<'_>, tx: &Tx<'_>, kind: RouteKind, input: DeleteRoute) -> Result<Done, ApiError> {
    let Target { mut gw, route } = find_target(ctx, tx, kind, &input.target)?;
    check_dry_run(&input.dry_run)?;
    tx.delete_route(&route)?;
    if route.published {
        withdraw_if_unused(tx, &gw, &route.dest)?;
    }
    tasks::schedule_routes(ctx, tx, &mut gw)?;
    Ok(Done {})
}

/// The Modify actions' input: the route and what changes (at least one of the two).
#[derive(Debug, Clone)]
pub struct ModifyRoute {
    pub target: RouteTarget,
    pub new_weight: Option<i64>,
    pub new_priority: Option<i64>,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for ModifyRoute {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let p = params(ctx);
        let (kind, new_weight, new_priority) = match ctx.action {
            "ModifyVpnRouteEntryWeight" | "ModifyVpnPbrRouteEntryWeight" => {
                overlay_mode(ctx)?;
                let kind = if ctx.action == ModifyVpnRouteEntryWeight::NAME {
                    RouteKind::Dbr
                } else {
                    RouteKind::Pbr
                };
                (kind, Some(required_weight(ctx, "NewWeight")?), None)
            }
            "ModifyVpnPbrRouteEntryPriority" => {
                let new_priority =
                    optional_priority(ctx, "NewPriority")?.ok_or_else(|| ApiError::missing_parameter("NewPriority"))?;
                (RouteKind::Pbr, None, Some(new_priority))
            }
            _ => {
                if p.opt_str("Priority").is_none() {
                    return Err(ApiError::missing_parameter("Priority"));
                }
                let new_weight = p.opt_str("NewWeight").map(rules::parse_weight).transpose()?;
                let new_priority = optional_priority(ctx, "NewPriority")?;
                if new_weight.is_none() && new_priority.is_none() {
                    return Err(ApiError::missing_parameter("NewWeight"));
                }
                (RouteKind::Pbr, new_weight, new_priority)
            }
        };
        Ok(ModifyRoute {
            target: target_from_rpc(ctx, kind)?,
            new_weight,
            new_priority,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

/// Apply new weight and/or priority to the target route.
fn modify(ctx: &OpCtx<'_>, tx: &Tx<'_>, kind: RouteKind, input: ModifyRoute) -> Result<Done, ApiError> {
    let ModifyRoute {
        target,
        new_weight,
        new_priority,
        dry_run,
    } = input;
    let Target { mut gw, mut route } = find_target(ctx, tx, kind, &target)?;
    if new_priority.is_some() && !gw.pbr_priority {
        return Err(ApiError::PBR_PRIORITY_NOT_SUPPORTED);
    }
    if let Some(w) = new_weight {
        if w != route.weight {
            let siblings: Vec<VpnRoute> = tx
                .routes_with_key(&gw.id, kind, &route.source, &route.dest)?
                .into_iter()
                .filter(|r| r.seq != route.seq)
                .collect();
            rules::check_group_reweight(w, &siblings)?;
        }
    }
    check_dry_run(&dry_run)?;
    let before = route.clone();
    if let Some(w) = new_weight {
        route.weight = w;
    }
    if let Some(pr) = new_priority {
        route.priority = pr;
    }
    if route != before {
        tx.update_route(&route)?;
        tasks::schedule_routes(ctx, tx, &mut gw)?;
    }
    Ok(Done {})
}

/// PublishVpnRouteEntry's input.
#[derive(Debug, Clone)]
pub struct PublishRoute {
    pub region: String,
    pub gateway_id: GatewayId,
    pub dest: String,
    pub next_hop: ConnectionId,
    pub kind: RouteKind,
    /// Publish (`true`) or withdraw.
    pub publish_vpc: bool,
    pub dry_run: Deferred<bool>,
}

impl FromRpc for PublishRoute {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let gateway_id = p.str("VpnGatewayId")?;
        let dest = p.str("RouteDest")?;
        let next_hop = p.str("NextHop")?;
        let kind = RouteKind::parse(p.str("RouteType")?).ok_or_else(|| ApiError::invalid_parameter("RouteType"))?;
        let publish_vpc = p.bool("PublishVpc")?;
        // Terraform sends an undocumented RouteSource for pbr routes: accepted and ignored, so
        // every pbr route with this destination and next hop is published or withdrawn.
        let dest = validate::canonical_cidr(dest);
        Ok(PublishRoute {
            region,
            gateway_id: gateway_id.into(),
            dest,
            next_hop: next_hop.into(),
            kind,
            publish_vpc,
            dry_run: rpc::dry_run(ctx),
        })
    }
}

fn publish(ctx: &OpCtx<'_>, tx: &Tx<'_>, input: PublishRoute) -> Result<Done, ApiError> {
    let PublishRoute {
        region,
        gateway_id,
        dest,
        next_hop,
        kind,
        publish_vpc: publish,
        dry_run,
    } = input;
    let mut gw = gateway_for_change(ctx, tx, &region, &gateway_id, ApiError::VPN_TASK_CONFLICT)?;
    let targets: Vec<VpnRoute> = tx
        .routes_with_dest(&gw.id, &dest)?
        .into_iter()
        .filter(|r| r.kind == kind && r.next_hop == *next_hop)
        .collect();
    if targets.is_empty() {
        return Err(ApiError::ROUTE_ENTRY_NOT_FOUND);
    }
    let mut changed = false;
    if publish {
        let plan = plan_publish(ctx, tx, &gw, &dest)?;
        check_dry_run(&dry_run)?;
        if plan == PublishPlan::AddEntry {
            add_published_entry(ctx, tx, &gw, &dest)?;
        }
        for mut r in targets.into_iter().filter(|r| !r.published) {
            r.published = true;
            tx.update_route(&r)?;
            changed = true;
        }
    } else {
        check_dry_run(&dry_run)?;
        // Withdrawing a destination withdraws every route of the gateway published for it,
        // of both kinds (Alibaba: "withdrawing either one also withdraws the other").
        for mut r in tx.routes_with_dest(&gw.id, &dest)?.into_iter().filter(|r| r.published) {
            r.published = false;
            tx.update_route(&r)?;
            changed = true;
        }
        withdraw_if_unused(tx, &gw, &dest)?;
    }
    if changed {
        tasks::schedule_routes(ctx, tx, &mut gw)?;
    }
    Ok(Done {})
}

/// DescribeVpnRouteEntries' and DescribeVpnPbrRouteEntries' input.
#[derive(Debug, Clone)]
pub struct DescribeRoutes {
    pub region: String,
    pub gateway_id: GatewayId,
    pub paging: Paging,
    /// `RouteEntryType=bgp` (destination routes): BGP routes are not modelled, none listed.
    pub bgp: bool,
}

impl FromRpc for DescribeRoutes {
    fn from_rpc(ctx: &Ctx<'_>) -> Result<Self, ApiError> {
        let region = rpc::region(ctx)?;
        let p = params(ctx);
        let gateway_id = p.str("VpnGatewayId")?;
        let paging = p.paging()?;
        let bgp = if ctx.action == DescribeVpnRouteEntries::NAME {
            match p.opt_str("RouteEntryType").unwrap_or("custom") {
                t if t.eq_ignore_ascii_case("custom") => false,
                t if t.eq_ignore_ascii_case("bgp") => true,
                _ => return Err(ApiError::invalid_parameter("RouteEntryType")),
            }
        } else {
            false
        };
        Ok(DescribeRoutes {
            region,
            gateway_id: gateway_id.into(),
            paging,
            bgp,
        })
    }
}

fn describe(ctx: &OpCtx<'_>, tx: &dyn ReadTx, kind: RouteKind, input: DescribeRoutes) -> Result<RoutesPage, ApiError> {
    let DescribeRoutes {
        region,
        gateway_id,
        paging,
        bgp,
    } = input;
    check_owned::<VpnGateway>(ctx, tx, &region, &gateway_id)?;
    let total = tx.count_routes(&gateway_id, kind)?;
    let routes = if bgp {
        vec![]
    } else {
        tx.list_routes(&gateway_id, kind, paging.offset(), paging.size as u64)?
    };
    let shown_total = if bgp { 0 } else { total };
    Ok(RoutesPage {
        kind,
        routes,
        total,
        paging,
        shown_total,
    })
}

impl From<RoutesPage> for Reply {
    fn from(page: RoutesPage) -> Reply {
        Reply::Routes(page)
    }
}

operation!(
    /// CreateVpnRouteEntry.
    CreateVpnRouteEntry: Write, NewRoute => RouteEntry,
    resources(|input, account| gateway_arn(&input.region, account, &input.gateway_id)),
    handle(|ctx, tx, input| create(ctx, tx, RouteKind::Dbr, input)),
);

operation!(
    /// CreateVpnPbrRouteEntry.
    CreateVpnPbrRouteEntry: Write, NewRoute => RouteEntry,
    resources(|input, account| gateway_arn(&input.region, account, &input.gateway_id)),
    handle(|ctx, tx, input| create(ctx, tx, RouteKind::Pbr, input)),
);

operation!(
    /// DeleteVpnRouteEntry.
    DeleteVpnRouteEntry: Write, DeleteRoute => Done,
    resources(|input, account| gateway_arn(&input.target.region, account, &input.target.gateway_id)),
    handle(|ctx, tx, input| delete(ctx, tx, RouteKind::Dbr, input)),
);

operation!(
    /// DeleteVpnPbrRouteEntry.
    DeleteVpnPbrRouteEntry: Write, DeleteRoute => Done,
    resources(|input, account| gateway_arn(&input.target.region, account, &input.target.gateway_id)),
    handle(|ctx, tx, input| delete(ctx, tx, RouteKind::Pbr, input)),
);

operation!(
    /// ModifyVpnRouteEntryWeight.
    ModifyVpnRouteEntryWeight: Write, ModifyRoute => Done,
    resources(|input, account| gateway_arn(&input.target.region, account, &input.target.gateway_id)),
    handle(|ctx, tx, input| modify(ctx, tx, RouteKind::Dbr, input)),
);

operation!(
    /// ModifyVpnPbrRouteEntryWeight.
    ModifyVpnPbrRouteEntryWeight: Write, ModifyRoute => Done,
    resources(|input, account| gateway_arn(&input.target.region, account, &input.target.gateway_id)),
    handle(|ctx, tx, input| modify(ctx, tx, RouteKind::Pbr, input)),
);

operation!(
    /// ModifyVpnPbrRouteEntryPriority.
    ModifyVpnPbrRouteEntryPriority: Write, ModifyRoute => Done,
    resources(|input, account| gateway_arn(&input.target.region, account, &input.target.gateway_id)),
    handle(|ctx, tx, input| modify(ctx, tx, RouteKind::Pbr, input)),
);

operation!(
    /// ModifyVpnPbrRouteEntryAttribute.
    ModifyVpnPbrRouteEntryAttribute: Write, ModifyRoute => Done,
    resources(|input, account| gateway_arn(&input.target.region, account, &input.target.gateway_id)),
    handle(|ctx, tx, input| modify(ctx, tx, RouteKind::Pbr, input)),
);

operation!(
    /// PublishVpnRouteEntry.
    PublishVpnRouteEntry: Write, PublishRoute => Done,
    resources(|input, account| gateway_arn(&input.region, account, &input.gateway_id)),
    handle(|ctx, tx, input| publish(ctx, tx, input)),
);

operation!(
    /// DescribeVpnRouteEntries.
    DescribeVpnRouteEntries: Read, DescribeRoutes => RoutesPage,
    resources(|input, account| gateway_arn(&input.region, account, &input.gateway_id)),
    handle(|ctx, tx, input| describe(ctx, tx, RouteKind::Dbr, input)),
);

operation!(
    /// DescribeVpnPbrRouteEntries.
    DescribeVpnPbrRouteEntries: Read, DescribeRoutes => RoutesPage,
    resources(|input, account| gateway_arn(&input.region, account, &input.gateway_id)),
    handle(|ctx, tx, input| describe(ctx, tx, RouteKind::Pbr, input)),
);

/// DescribeVpnRouteEntries' or DescribeVpnPbrRouteEntries' answer: one page of routes.
#[derive(Debug, Clone)]
pub struct RoutesPage {
    pub kind: RouteKind,
    pub routes: Vec<VpnRoute>,
    /// Routes of the kind on the gateway (`VpnRouteCounts`).
    pub total: u64,
    pub paging: Paging,
    /// `TotalCount`: 0 when BGP routes were asked for.
    pub shown_total: u64,
}

/// One route as the Describe actions list it.
struct RouteFields<'a>(&'a VpnRoute);

impl Serialize for RouteFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_struct("VpnRouteEntry", 11)?;
        m.serialize_field("VpnInstanceId", &r.gateway_id)?;
        m.serialize_field("RouteDest", &r.dest)?;
        m.serialize_field("NextHop", &r.next_hop)?;
        m.serialize_field("NextHopTunnelId", "")?;
        m.serialize_field("Weight", &r.weight)?;
        m.serialize_field("State", r.state())?;
        m.serialize_field("CreateTime", &r.create_time)?;
        if r.kind == RouteKind::Pbr {
            m.serialize_field("RouteSource", &r.source)?;
            m.serialize_field("Priority", &r.priority)?;
        } else {
            m.serialize_field("RouteEntryType", "custom")?;
            m.serialize_field("Source", "CUSTOM")?;
            m.serialize_field("AsPath", "")?;
            m.serialize_field("Community", "")?;
        }
        m.end()
    }
}

/// `VpnRouteCounts.VpnRouteCount[]`: custom routes only (BGP routes are not modelled).
struct RouteCount(u64);

impl Serialize for RouteCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("VpnRouteCount", 3)?;
        m.serialize_field("RouteCount", &self.0)?;
        m.serialize_field("RouteEntryType", "custom")?;
        m.serialize_field("Source", "CUSTOM")?;
        m.end()
    }
}

impl Serialize for RoutesPage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("DescribeVpnRouteEntries", 5)?;
        if self.kind == RouteKind::Dbr {
            m.serialize_field(
                "VpnRouteEntries",
                &List {
                    item_name: "VpnRouteEntry",
                    items: &self.routes,
                    view: RouteFields,
                },
            )?;
            m.serialize_field(
                "VpnRouteCounts",
                &List {
                    item_name: "VpnRouteCount",
                    items: &[RouteCount(self.total)],
                    view: |c| c,
                },
            )?;
        } else {
            m.serialize_field(
                "VpnPbrRouteEntries",
                &List {
                    item_name: "VpnPbrRouteEntry",
                    items: &self.routes,
                    view: RouteFields,
                },
            )?;
        }
        page_fields(&mut m, self.paging, self.shown_total)?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn route(kind: RouteKind) -> VpnRoute {
        VpnRoute {
            seq: 1,
            kind,
            gateway_id: "vpn-1".into(),
            source: if kind == RouteKind::Pbr {
                "192.168.0.0/24".into()
            } else {
                String::new()
            },
            dest: "10.0.0.0/24".into(),
            next_hop: "vco-1".into(),
            weight: 100,
            priority: 10,
            published: true,
            description: String::new(),
            overlay_mode: "Ipsec".into(),
            create_time: 1_700_000_000_000,
        }
    }

    /// The typed page answers exactly the documented fields, names and JSON types.
    #[test]
    fn destination_route_pages() {
        let page = RoutesPage {
            kind: RouteKind::Dbr,
            routes: vec![route(RouteKind::Dbr)],
            total: 7,
            paging: Paging { number: 1, size: 10 },
            shown_total: 7,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({
                "VpnRouteEntries": {"VpnRouteEntry": [{
                    "VpnInstanceId": "vpn-1", "RouteDest": "10.0.0.0/24", "NextHop": "vco-1", "NextHopTunnelId": "",
                    "Weight": 100, "State": "published", "CreateTime": 1_700_000_000_000i64,
                    "RouteEntryType": "custom", "Source": "CUSTOM", "AsPath": "", "Community": "",
                }]},
                "VpnRouteCounts": {"VpnRouteCount": [{"RouteCount": 7, "RouteEntryType": "custom", "Source": "CUSTOM"}]},
                "PageNumber": 1, "PageSize": 10, "TotalCount": 7,
            })
        );
    }

    #[test]
    fn policy_route_pages() {
        let page = RoutesPage {
            kind: RouteKind::Pbr,
            routes: vec![route(RouteKind::Pbr)],
            total: 1,
            paging: Paging { number: 1, size: 10 },
            shown_total: 1,
        };
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({
                "VpnPbrRouteEntries": {"VpnPbrRouteEntry": [{
                    "VpnInstanceId": "vpn-1", "RouteDest": "10.0.0.0/24", "NextHop": "vco-1", "NextHopTunnelId": "",
                    "Weight": 100, "State": "published", "CreateTime": 1_700_000_000_000i64,
                    "RouteSource": "192.168.0.0/24", "Priority": 10,
                }]},
                "PageNumber": 1, "PageSize": 10, "TotalCount": 1,
            })
        );
        let (_, xml) =
            vpnroute_wire::encode_reply("DescribeVpnPbrRouteEntries", "r", &page, vpnroute_wire::Format::Xml);
        assert!(xml.contains("<VpnPbrRouteEntries><VpnPbrRouteEntry><CreateTime>1700000000000</CreateTime>"));
        assert!(xml.contains("<RequestId>r</RequestId>"));
    }
}
