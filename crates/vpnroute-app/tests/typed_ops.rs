//! The application layer without Alibaba's protocol: a VPC, a gateway, a customer gateway, a
//! connection and a policy route created through typed inputs against a real store in a
//! temporary directory, the route read back through a typed Describe, put into force in the
//! route engine, and the ARNs the operations table derives from the inputs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use vpnroute_app::actions::connection::{CreateVpnConnection, CreateVpnConnectionInput};
use vpnroute_app::actions::customer_gateway::{CreateCustomerGateway, CreateCustomerGatewayInput};
use vpnroute_app::actions::gateway::{
    CreateVpnGateway, CreateVpnGatewayInput, DescribeVpnGateway, DescribeVpnGatewayInput,
};
use vpnroute_app::actions::routes::{
    CreateVpnPbrRouteEntry, DeleteRoute, DeleteVpnPbrRouteEntry, DescribeRoutes, DescribeVpnPbrRouteEntries, NewRoute,
    RouteTarget,
};
use vpnroute_app::actions::vpc::{CreateVpc, CreateVpcInput};
use vpnroute_app::ops::{operation, Access, Operation, ReadOperation, WriteOperation};
use vpnroute_app::state::{default_regions, now_ms, App, Config, OnBusy, OpCtx, SharedApp, TaskDuration};
use vpnroute_domain::ids::AccountId;
use vpnroute_domain::model::RouteKind;
use vpnroute_domain::params::Paging;
use vpnroute_domain::quotas::Quotas;
use vpnroute_domain::status::GatewayStatus;
use vpnroute_domain::ApiError;
use vpnroute_store::{Durability, Store};
use vpnroute_store_sqlite::SqliteStore;

const REGION: &str = "cn-hangzhou";
const ACCOUNT: &str = "1234567890123456";

fn start(dir: &std::path::Path) -> SharedApp {
    let store: Arc<dyn Store> = SqliteStore::open(dir, Durability::Process).unwrap();
    let nonce_log = Arc::new(SqliteStore::open_nonces(dir, Durability::Process, 15 * 60 * 1000, now_ms()).unwrap());
    let config = Config {
        regions: default_regions(),
        // Changes are put into force right after commit.
        task_duration: TaskDuration::After(Duration::ZERO),
        on_busy: OnBusy::Reject,
        quotas: Quotas::default(),
        throttle_rps: 0,
    };
    let data_plane = Arc::new(vpnroute_dataplane_sim::SimDataPlane::new());
    App::start(store, nonce_log, config, data_plane, "typed-ops-test".into()).unwrap()
}

/// Run a write operation in its own transaction and apply its effects after the commit, as
/// the server's writer does.
fn write<O: WriteOperation>(app: &App, input: O::Input) -> Result<O::Output, ApiError> {
    let ctx = OpCtx::new(app, AccountId::new(ACCOUNT), now_ms());
    let out = app.store.write(|tx| O::handle(&ctx, tx, input))?;
    vpnroute_app::tasks::after_commit_here(app, &ctx.take_effects());
    Ok(out)
}

fn read<O: ReadOperation>(app: &App, input: O::Input) -> Result<O::Output, ApiError> {
    let ctx = OpCtx::new(app, AccountId::new(ACCOUNT), now_ms());
    app.store.read(|tx| O::handle(&ctx, tx, input))
}

#[test]
fn policy_route_through_typed_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path());

    let vpc = write::<CreateVpc>(
        &app,
        CreateVpcInput {
            region: REGION.into(),
            cidr_block: "192.168.0.0/16".into(),
            name: "typed".into(),
            description: String::new(),
            resource_group_id: None,
            dry_run: Ok(false),
        },
    )
    .unwrap();
    let gw = write::<CreateVpnGateway>(
        &app,
        CreateVpnGatewayInput {
            region: REGION.into(),
            vpc_id: vpc.vpc_id.as_str().into(),
            bandwidth: 10,
            name: String::new(),
            charge_type: "PostpayByFlow".into(),
            enable_ipsec: true,
            enable_ssl: false,
            ssl_connections: 5,
            network_type: "public".into(),
            vpn_type: "Normal".into(),
            vswitch_id: None,
            resource_group_id: None,
            dry_run: Ok(false),
        },
    )
    .unwrap();
    let gateway_id = gw.vpn_gateway_id.as_str();
    let view = read::<DescribeVpnGateway>(
        &app,
        DescribeVpnGatewayInput {
            region: REGION.into(),
            gateway_id: gateway_id.into(),
            include_reservation: false,
        },
    )
    .unwrap();
    let shown = serde_json::to_value(&view).unwrap();
    assert_eq!(
        shown["Status"],
        GatewayStatus::Active.as_str(),
        "task duration 0: active at once"
    );

    let cgw = write::<CreateCustomerGateway>(
        &app,
        CreateCustomerGatewayInput {
            region: REGION.into(),
            ip_address: "47.100.1.2".into(),
            name: String::new(),
            description: String::new(),
            asn: None,
            auth_key: String::new(),
            tags: vec![],
            resource_group_id: None,
            dry_run: Ok(false),
        },
    )
    .unwrap();
    let conn = write::<CreateVpnConnection>(
        &app,
        CreateVpnConnectionInput {
            region: REGION.into(),
            gateway_id: gateway_id.into(),
            customer_gateway_id: cgw.customer_gateway_id.as_str().into(),
            local_subnet: vec!["192.168.0.0/16".parse().unwrap()],
            remote_subnet: vec!["10.0.0.0/8".parse().unwrap()],
            name: String::new(),
            ike_config: Ok(Default::default()),
            ipsec_config: Ok(Default::default()),
            health_check_config: Ok(Default::default()),
            bgp_config: Ok(Default::default()),
            effect_immediately: Ok(false),
            enable_dpd: Ok(true),
            enable_nat_traversal: Ok(true),
            enable_tunnels_bgp: Ok(false),
            auto_config_route: Ok(None),
            tags: Ok(vec![]),
            remote_ca_certificate: String::new(),
            dry_run: Ok(false),
        },
    )
    .unwrap();
    let connection_id = conn.vpn_connection_id.as_str();

    let route = NewRoute {
        region: REGION.into(),
        gateway_id: gateway_id.into(),
        source: Some("192.168.1.0/24".parse().unwrap()),
        dest: "10.1.0.0/16".parse().unwrap(),
        next_hop: connection_id.into(),
        weight: 100,
        publish_vpc: false,
        description: "typed".into(),
        priority: Some(5),
        dry_run: Ok(false),
    };
    assert_eq!(
        CreateVpnPbrRouteEntry::resources(&route, &AccountId::new(ACCOUNT)),
        vec![format!("acs:vpc:{REGION}:{ACCOUNT}:vpngateway/{gateway_id}")]
    );
    let created = write::<CreateVpnPbrRouteEntry>(&app, route.clone()).unwrap();
    assert_eq!(created.route_source.as_deref(), Some("192.168.1.0/24"));
    assert_eq!(created.priority, Some(5));
    assert_eq!(created.state, "normal");
    // The same route again: Alibaba's conflict code, from the typed handler too.
    assert_eq!(
        write::<CreateVpnPbrRouteEntry>(&app, route).unwrap_err().code,
        "VpnRouteEntry.AlreadyExists"
    );

    let page = read::<DescribeVpnPbrRouteEntries>(
        &app,
        DescribeRoutes {
            region: REGION.into(),
            gateway_id: gateway_id.into(),
            paging: Paging { number: 1, size: 10 },
            bgp: false,
        },
    )
    .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.routes[0].kind, RouteKind::Pbr);
    assert_eq!(page.routes[0].next_hop, connection_id);

    // In force: the engine sends a packet from the source block to the destination block
    // through the connection.
    let explained = vpnroute_app::engines::explain(
        &app,
        gateway_id,
        Ipv4Addr::new(192, 168, 1, 7),
        Ipv4Addr::new(10, 1, 2, 3),
    )
    .unwrap();
    assert_eq!(explained["Explanation"]["chosen"]["next_hop"], connection_id);

    write::<DeleteVpnPbrRouteEntry>(
        &app,
        DeleteRoute {
            target: RouteTarget {
                region: REGION.into(),
                gateway_id: gateway_id.into(),
                source: "192.168.1.0/24".into(),
                dest: "10.1.0.0/16".into(),
                next_hop: connection_id.into(),
                weight: 100,
                priority: Ok(Some(5)),
            },
            dry_run: Ok(false),
        },
    )
    .unwrap();
    let explained = vpnroute_app::engines::explain(
        &app,
        gateway_id,
        Ipv4Addr::new(192, 168, 1, 7),
        Ipv4Addr::new(10, 1, 2, 3),
    )
    .unwrap();
    assert!(explained["Explanation"]["chosen"].is_null(), "{explained}");
}

#[test]
fn another_account_sees_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path());
    let vpc = write::<CreateVpc>(
        &app,
        CreateVpcInput {
            region: REGION.into(),
            cidr_block: "172.16.0.0/12".into(),
            name: String::new(),
            description: String::new(),
            resource_group_id: None,
            dry_run: Ok(true),
        },
    );
    assert_eq!(vpc.unwrap_err().code, "DryRunOperation");
    let other = OpCtx::new(&app, AccountId::new("999"), now_ms());
    let err = app
        .store
        .read(|tx| {
            DescribeVpnGateway::handle(
                &other,
                tx,
                DescribeVpnGatewayInput {
                    region: REGION.into(),
                    gateway_id: "vpn-nope".into(),
                    include_reservation: false,
                },
            )
        })
        .unwrap_err();
    assert_eq!(err.code, "InvalidVpnGatewayInstanceId.NotFound");
}

#[test]
fn table_names_ram_actions_and_access() {
    let row = operation("CreateVpnPbrRouteEntry").unwrap();
    assert_eq!(row.ram_action, "vpc:CreateVpnPbrRouteEntry");
    assert_eq!(row.access, Access::Write);
    assert_eq!(operation("DescribeVpnGateways").unwrap().access, Access::Read);
    assert_eq!(CreateVpnPbrRouteEntry::NAME, "CreateVpnPbrRouteEntry");
}
