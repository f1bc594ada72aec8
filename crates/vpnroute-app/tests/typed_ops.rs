//! The application layer without Alibaba's protocol: a VPC, a gateway, a customer gateway, a
//! connection and a policy route created through typed inputs against a real store in a
//! temporary directory, the route read back through a typed Describe, put into force in the
//! route engine, and the ARNs the operations table derives from the inputs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use vpnroute_app::actions::connection::{ConfigInputs, CreateVpnConnection, CreateVpnConnectionInput};
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
        sts_key: vpnroute_ram::token::TokenKey::generate(),
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

/// CreateVpc's input for `cidr`, everything else unset.
fn vpc_input(cidr: &str) -> CreateVpcInput {
    CreateVpcInput {
        region: REGION.into(),
        cidr_block: cidr.into(),
        name: String::new(),
        description: String::new(),
        resource_group_id: None,
        tags: vec![],
        dns_hostname: false,
        user_cidrs: vec![],
        dry_run: Ok(false),
    }
}

#[test]
fn policy_route_through_typed_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path());

    let vpc = write::<CreateVpc>(
        &app,
        CreateVpcInput {
            name: "typed".into(),
            ..vpc_input("192.168.0.0/16")
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
            disaster_recovery_vswitch_id: None,
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
            customer_gateway_id: Some(cgw.customer_gateway_id.as_str().into()),
            local_subnet: vec!["192.168.0.0/16".parse().unwrap()],
            remote_subnet: vec!["10.0.0.0/8".parse().unwrap()],
            name: String::new(),
            configs: ConfigInputs::default(),
            tunnels: vec![],
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
            dry_run: Ok(true),
            ..vpc_input("172.16.0.0/12")
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

/// Tags and vswitches through typed inputs: what a console would call without Alibaba
/// parameters.
#[test]
fn tags_and_vswitches_through_typed_inputs() {
    use vpnroute_app::actions::tags::{ListTagResources, ListTagResourcesInput, TagResources, TagResourcesInput};
    use vpnroute_app::actions::vswitch::{
        CreateVSwitch, CreateVSwitchInput, DescribeVpcAttribute, DescribeVpcAttributeInput,
    };
    use vpnroute_domain::tags::TagResourceType;

    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path());
    let vpc = write::<CreateVpc>(
        &app,
        CreateVpcInput {
            tags: vec![("env".into(), "test".into())],
            dns_hostname: true,
            ..vpc_input("10.0.0.0/16")
        },
    )
    .unwrap();
    let vsw_input = |cidr: &str| CreateVSwitchInput {
        region: REGION.into(),
        vpc_id: vpc.vpc_id.as_str().into(),
        zone_id: "cn-hangzhou-h".into(),
        cidr_block: cidr.into(),
        name: String::new(),
        description: String::new(),
        tags: vec![],
        dry_run: Ok(false),
    };
    let vsw = write::<CreateVSwitch>(&app, vsw_input("10.0.1.0/24")).unwrap();
    let overlap = write::<CreateVSwitch>(&app, vsw_input("10.0.1.0/25")).unwrap_err();
    assert_eq!(overlap.code, "InvalidCidrBlock.Overlapped");
    write::<TagResources>(
        &app,
        TagResourcesInput {
            region: REGION.into(),
            resource_type: TagResourceType::VSwitch,
            resource_ids: vec![vsw.vswitch_id.clone()],
            tags: vec![("role".into(), "vpn".into())],
        },
    )
    .unwrap();
    let page = read::<ListTagResources>(
        &app,
        ListTagResourcesInput {
            region: REGION.into(),
            resource_type: TagResourceType::VSwitch,
            resource_ids: vec![vsw.vswitch_id.clone()],
            filters: vec![],
            max_results: 50,
            offset: 0,
        },
    )
    .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        (page.items[0].tag_key.as_str(), page.items[0].resource_type),
        ("role", "VSWITCH")
    );
    assert_eq!(page.next_token, "");
    let attr = read::<DescribeVpcAttribute>(
        &app,
        DescribeVpcAttributeInput {
            region: REGION.into(),
            vpc_id: vpc.vpc_id.as_str().into(),
        },
    )
    .unwrap();
    assert_eq!(attr.vswitch_ids, vec![vsw.vswitch_id]);
    assert_eq!(attr.vpc.tags, vec![("env".to_string(), "test".to_string())]);
    for (name, access) in [("TagResources", Access::Write), ("ListTagResources", Access::Read)] {
        let row = operation(name).unwrap();
        assert_eq!(row.access, access);
        assert_eq!(row.ram_action, format!("vpc:{name}"));
    }
}

/// The alicloud_vpc / alicloud_vswitch in-place updates through typed inputs: the changes land
/// in the documents the Describe actions show; an unchanged CidrBlock is accepted, another is not.
#[test]
fn vpc_and_vswitch_attribute_changes_through_typed_inputs() {
    use vpnroute_app::actions::vpc::{
        ModifyRouteTableAttributes, ModifyRouteTableAttributesInput, ModifyVpcAttribute, ModifyVpcAttributeInput,
        MoveResourceGroup, MoveResourceGroupInput,
    };
    use vpnroute_app::actions::vswitch::{
        CreateVSwitch, CreateVSwitchInput, DescribeVSwitchAttributes, DescribeVpcAttribute, DescribeVpcAttributeInput,
        ModifyVSwitchAttribute, ModifyVSwitchAttributeInput, VSwitchRef,
    };

    let dir = tempfile::tempdir().unwrap();
    let app = start(dir.path());
    let vpc = write::<CreateVpc>(&app, vpc_input("10.30.0.0/16")).unwrap();
    let vsw = write::<CreateVSwitch>(
        &app,
        CreateVSwitchInput {
            region: REGION.into(),
            vpc_id: vpc.vpc_id.as_str().into(),
            zone_id: "cn-hangzhou-h".into(),
            cidr_block: "10.30.1.0/24".into(),
            name: "a".into(),
            description: String::new(),
            tags: vec![],
            dry_run: Ok(false),
        },
    )
    .unwrap();
    let modify = |name: Option<&str>, cidr: Option<&str>| ModifyVpcAttributeInput {
        region: REGION.into(),
        vpc_id: vpc.vpc_id.as_str().into(),
        name: name.map(str::to_string),
        description: Some("changed".into()),
        cidr_block: cidr.map(str::to_string),
        dns_hostname: Some(true),
    };
    write::<ModifyVpcAttribute>(&app, modify(Some("renamed"), Some("10.30.0.0/16"))).unwrap();
    let e = write::<ModifyVpcAttribute>(&app, modify(Some("other"), Some("10.30.0.0/15"))).unwrap_err();
    assert_eq!(e.code, "OperationUnsupported.CidrBlock");
    write::<ModifyVSwitchAttribute>(
        &app,
        ModifyVSwitchAttributeInput {
            region: REGION.into(),
            vswitch_id: vsw.vswitch_id.clone(),
            name: Some("b".into()),
            description: None,
        },
    )
    .unwrap();
    write::<MoveResourceGroup>(
        &app,
        MoveResourceGroupInput {
            region: REGION.into(),
            resource_id: vpc.vpc_id.clone(),
            new_resource_group_id: "rg-typed".into(),
        },
    )
    .unwrap();
    write::<ModifyRouteTableAttributes>(
        &app,
        ModifyRouteTableAttributesInput {
            region: REGION.into(),
            route_table_id: vpc.route_table_id.clone(),
            name: Some("rt".into()),
            description: None,
            route_propagation: Some(false),
        },
    )
    .unwrap();

    let a = read::<DescribeVpcAttribute>(
        &app,
        DescribeVpcAttributeInput {
            region: REGION.into(),
            vpc_id: vpc.vpc_id.as_str().into(),
        },
    )
    .unwrap();
    let v = &a.vpc;
    assert_eq!(
        (
            v.name.as_str(),
            v.description.as_str(),
            v.dns_hostname,
            v.cidr_block.as_str()
        ),
        ("renamed", "changed", true, "10.30.0.0/16")
    );
    assert_eq!(
        (
            v.resource_group_id.as_str(),
            v.route_table_name.as_str(),
            v.route_propagation_disabled
        ),
        ("rg-typed", "rt", true)
    );
    let s = read::<DescribeVSwitchAttributes>(
        &app,
        VSwitchRef {
            region: REGION.into(),
            vswitch_id: vsw.vswitch_id.clone(),
            dry_run: Ok(false),
        },
    )
    .unwrap();
    assert_eq!(
        (s.vswitch.name.as_str(), s.vswitch.resource_group_id.as_str()),
        ("b", "rg-typed")
    );
    // The operations table names the resources Alibaba's authorization pages give.
    let arns = <ModifyRouteTableAttributes as Operation>::resources(
        &ModifyRouteTableAttributesInput {
            region: REGION.into(),
            route_table_id: "vtb-1".into(),
            name: None,
            description: None,
            route_propagation: None,
        },
        &AccountId::new(ACCOUNT),
    );
    assert_eq!(arns, vec![format!("acs:vpc:{REGION}:{ACCOUNT}:routetable/vtb-1")]);
}
