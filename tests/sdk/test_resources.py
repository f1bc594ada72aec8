"""VPC / VPN gateway / customer gateway / IPsec connection resources through all seven
real SDK variants: create → async activation → Describe* (fields, JSON types, list
wrappers, paging) → cross-variant consistency → SIGKILL restart → ordered deletion."""

from __future__ import annotations

from typing import Any, Dict

import pytest

from clients import (
    ALL_VARIANTS,
    POP_GET,
    PY_TEA_V3,
    RAW_BODY_VARIANTS,
    TYPED_MODEL_VARIANTS,
    ApiError,
    BaseClient,
)
from helpers import (
    CGW_IP,
    IKE_CONFIG,
    IPSEC_CONFIG,
    LOCAL_SUBNET,
    REGION,
    REMOTE_SUBNET,
    VPC_CIDR,
    Stack,
    assert_keys,
    assert_ms_timestamp,
    assert_success_body,
    build_stack,
    call_retrying,
    create_connection,
    create_customer_gateway,
    create_gateway,
    create_vpc,
    describe_connection,
    describe_gateway,
    expect_error,
    snapshot,
    type_problems,
    unknown_keys,
    unwrap,
    wait_for,
    wait_gateway_active,
)

EXPECTED_REGIONS = {"cn-hangzhou", "cn-shanghai", "ap-southeast-1", "us-west-1"}

GATEWAY_FIELDS = ["RequestId", "VpnGatewayId", "VpcId", "Name", "Status", "Spec", "IpsecVpn", "SslVpn",
                  "SslMaxConnections", "CreateTime", "BusinessStatus", "ChargeType", "EnableBgp", "InternetIp"]
CONNECTION_FIELDS = ["RequestId", "VpnConnectionId", "VpnGatewayId", "CustomerGatewayId", "Name", "LocalSubnet",
                     "RemoteSubnet", "CreateTime", "State", "IkeConfig", "IpsecConfig"]


def checked(client: BaseClient, schema, model: str, body: Any) -> Dict[str, Any]:
    """Success-body invariants + JSON types against the SDK model.

    Python Tea, legacy and pop return the server's JSON uncast, so their bodies show
    the exact wire types. Node Tea has already cast the body to its model: the check
    then only catches what the cast could not repair (e.g. "" for a number becomes NaN,
    which reaches Python as null)."""
    assert_success_body(body)
    problems = [f"type: {p}" for p in type_problems(body, schema(model))]
    if client.variant in RAW_BODY_VARIANTS:
        problems += [f"not in the SDK model (typed clients drop it): {k}" for k in unknown_keys(body, schema(model))]
    assert not problems, f"{model} via {client.variant}:\n  " + "\n  ".join(problems)
    return body


# --------------------------------------------------------------------------- regions


def test_describe_regions(client, schema):
    body = checked(client, schema, "DescribeRegionsResponseBody", client.call("DescribeRegions", {}))
    regions = unwrap(body, "Regions", "Region")
    ids = {r.get("RegionId") for r in regions}
    assert EXPECTED_REGIONS <= ids, f"missing default regions {EXPECTED_REGIONS - ids}; got {sorted(ids)}"
    for r in regions:
        assert_keys(r, ["RegionId", "LocalName", "RegionEndpoint"], f"Region {r.get('RegionId')}")


# --------------------------------------------------------------------------- full lifecycle


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_vpn_stack_lifecycle(variant, fresh_server, make_client, schema):
    c = make_client(variant, fresh_server)
    st = Stack()

    # --- VPC
    body = checked(c, schema, "CreateVpcResponseBody", create_vpc(c, st, variant))
    assert st.vrouter_id.startswith("vrt-"), body
    assert st.route_table_id.startswith("vtb-"), body

    # --- VPN gateway (async: provisioning -> active)
    body = checked(c, schema, "CreateVpnGatewayResponseBody", create_gateway(c, st, variant, wait=False))
    if "Name" in body:
        assert body["Name"] == st.names["gw"]
    first = describe_gateway(c, st.gateway_id)
    assert first.get("Status") in ("init", "provisioning", "active"), first
    gw = checked(c, schema, "DescribeVpnGatewayResponseBody", wait_gateway_active(c, st.gateway_id))
    assert_keys(gw, GATEWAY_FIELDS, "DescribeVpnGateway")
    assert gw["VpnGatewayId"] == st.gateway_id
    assert gw["VpcId"] == st.vpc_id
    assert gw["Name"] == st.names["gw"]
    assert gw["Spec"] == "10M"
    assert gw["IpsecVpn"] == "enable"
    assert gw["SslVpn"] == "enable"
    assert gw["SslMaxConnections"] == 5 and type(gw["SslMaxConnections"]) is int
    assert gw["BusinessStatus"] == "Normal"
    assert type(gw["EnableBgp"]) is bool
    assert isinstance(gw["InternetIp"], str) and gw["InternetIp"]
    assert_ms_timestamp(gw["CreateTime"], "DescribeVpnGateway.CreateTime")
    for wrapper, inner in (("Tags", "Tag"), ("EniInstanceIds", "EniInstanceId")):
        if wrapper in gw:
            unwrap(gw, wrapper, inner)

    # --- customer gateway
    cgw = checked(c, schema, "CreateCustomerGatewayResponseBody", create_customer_gateway(c, st, variant))
    assert cgw.get("IpAddress", CGW_IP) == CGW_IP
    if "CreateTime" in cgw:
        assert_ms_timestamp(cgw["CreateTime"], "CreateCustomerGateway.CreateTime")

    # --- IPsec connection (async: poll State == active)
    vco = checked(c, schema, "CreateVpnConnectionResponseBody", create_connection(c, st, variant, wait=False))
    if "Name" in vco:
        assert vco["Name"] == st.names["vco"]
    if "CreateTime" in vco:
        assert_ms_timestamp(vco["CreateTime"], "CreateVpnConnection.CreateTime")
    conn = wait_for(f"connection {st.connection_id} State=active", lambda: describe_connection(c, st.connection_id),
                    lambda b: b.get("State") == "active")
    checked(c, schema, "DescribeVpnConnectionResponseBody", conn)
    assert_keys(conn, CONNECTION_FIELDS, "DescribeVpnConnection")
    assert conn["VpnConnectionId"] == st.connection_id
    assert conn["VpnGatewayId"] == st.gateway_id
    assert conn["CustomerGatewayId"] == st.cgw_id
    assert conn["Name"] == st.names["vco"]
    assert conn["LocalSubnet"] == LOCAL_SUBNET
    assert conn["RemoteSubnet"] == REMOTE_SUBNET
    assert_ms_timestamp(conn["CreateTime"], "DescribeVpnConnection.CreateTime")
    ike, ipsec = conn["IkeConfig"], conn["IpsecConfig"]
    assert isinstance(ike, dict) and isinstance(ipsec, dict), (ike, ipsec)
    for k in ("IkeVersion", "IkeMode", "IkeEncAlg", "IkeAuthAlg", "IkePfs", "IkeLifetime", "Psk"):
        assert ike.get(k) == IKE_CONFIG[k], f"IkeConfig.{k}: {ike.get(k)!r} != {IKE_CONFIG[k]!r} ({ike})"
    for k in ("IpsecEncAlg", "IpsecAuthAlg", "IpsecPfs", "IpsecLifetime"):
        assert ipsec.get(k) == IPSEC_CONFIG[k], f"IpsecConfig.{k}: {ipsec.get(k)!r} != {IPSEC_CONFIG[k]!r}"
    assert type(ike["IkeLifetime"]) is int and type(ipsec["IpsecLifetime"]) is int
    wait_gateway_active(c, st.gateway_id)

    # --- Describe*s (list wrappers, paging fields)
    gws = checked(c, schema, "DescribeVpnGatewaysResponseBody",
                  c.call("DescribeVpnGateways", {"RegionId": REGION, "VpcId": st.vpc_id}))
    items = unwrap(gws, "VpnGateways", "VpnGateway")
    assert (gws.get("TotalCount"), gws.get("PageNumber"), gws.get("PageSize")) == (1, 1, 10), gws
    assert [i.get("VpnGatewayId") for i in items] == [st.gateway_id]
    for k in ("VpcId", "Name", "Status", "Spec", "SslMaxConnections", "CreateTime", "IpsecVpn", "SslVpn"):
        assert items[0].get(k) == gw[k], f"DescribeVpnGateways item {k}: {items[0].get(k)!r} != {gw[k]!r}"

    one = checked(c, schema, "DescribeCustomerGatewayResponseBody",
                  c.call("DescribeCustomerGateway", {"RegionId": REGION, "CustomerGatewayId": st.cgw_id}))
    assert_keys(one, ["CustomerGatewayId", "IpAddress", "Name", "CreateTime"], "DescribeCustomerGateway")
    assert (one["CustomerGatewayId"], one["IpAddress"], one["Name"]) == (st.cgw_id, CGW_IP, st.names["cgw"])
    assert_ms_timestamp(one["CreateTime"], "DescribeCustomerGateway.CreateTime")
    cgws = checked(c, schema, "DescribeCustomerGatewaysResponseBody",
                   c.call("DescribeCustomerGateways", {"RegionId": REGION}))
    assert cgws.get("TotalCount") == 1, cgws
    citems = unwrap(cgws, "CustomerGateways", "CustomerGateway")
    assert [(i.get("CustomerGatewayId"), i.get("IpAddress")) for i in citems] == [(st.cgw_id, CGW_IP)]

    conns = checked(c, schema, "DescribeVpnConnectionsResponseBody",
                    c.call("DescribeVpnConnections", {"RegionId": REGION, "VpnGatewayId": st.gateway_id}))
    assert conns.get("TotalCount") == 1, conns
    vitems = unwrap(conns, "VpnConnections", "VpnConnection")
    assert [i.get("VpnConnectionId") for i in vitems] == [st.connection_id]
    assert vitems[0].get("CustomerGatewayId") == st.cgw_id
    assert vitems[0].get("LocalSubnet") == LOCAL_SUBNET and vitems[0].get("RemoteSubnet") == REMOTE_SUBNET

    vpcs = checked(c, schema, "DescribeVpcsResponseBody",
                   c.call("DescribeVpcs", {"RegionId": REGION, "VpcId": st.vpc_id}))
    assert vpcs.get("TotalCount") == 1, vpcs
    [vpc] = unwrap(vpcs, "Vpcs", "Vpc")
    assert (vpc.get("VpcId"), vpc.get("CidrBlock"), vpc.get("Status")) == (st.vpc_id, VPC_CIDR, "Available"), vpc
    assert vpc.get("VpcName") == st.names["vpc"]
    assert vpc.get("VRouterId") == st.vrouter_id
    assert vpc.get("RegionId", REGION) == REGION

    rtl = checked(c, schema, "DescribeRouteTableListResponseBody",
                  c.call("DescribeRouteTableList", {"RegionId": REGION, "VpcId": st.vpc_id}))
    tables = unwrap(rtl, "RouterTableList", "RouterTableListType")
    assert isinstance(rtl.get("TotalCount"), int) and rtl["TotalCount"] == len(tables) >= 1, rtl
    system = [t for t in tables if t.get("RouteTableId") == st.route_table_id]
    assert system, f"CreateVpc RouteTableId {st.route_table_id} not listed: {tables}"
    assert system[0].get("RouteTableType") == "System", system[0]
    assert system[0].get("VpcId") == st.vpc_id
    assert system[0].get("RouterId", st.vrouter_id) == st.vrouter_id

    rel = checked(c, schema, "DescribeRouteEntryListResponseBody",
                  c.call("DescribeRouteEntryList", {"RegionId": REGION, "RouteTableId": st.route_table_id}))
    entries = unwrap(rel, "RouteEntrys", "RouteEntry")
    for e in entries:
        assert e.get("RouteTableId") == st.route_table_id, e
        if "NextHops" in e:
            unwrap(e, "NextHops", "NextHop")


# --------------------------------------------------------------------------- paging


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_paging(variant, fresh_server, make_client, schema):
    c = make_client(variant, fresh_server)
    ids = []
    for i in range(3):
        st = Stack()
        create_customer_gateway(c, st, variant, ip=f"1.2.3.{10 + i}")
        ids.append(st.cgw_id)

    def page(n: int, size: int) -> Dict[str, Any]:
        return checked(c, schema, "DescribeCustomerGatewaysResponseBody", c.call(
            "DescribeCustomerGateways", {"RegionId": REGION, "PageNumber": n, "PageSize": size}))

    p1, p2, p3 = page(1, 2), page(2, 2), page(3, 2)
    for n, p, count in ((1, p1, 2), (2, p2, 1), (3, p3, 0)):
        assert (p.get("TotalCount"), p.get("PageNumber"), p.get("PageSize")) == (3, n, 2), p
        got = unwrap(p, "CustomerGateways", "CustomerGateway") if count or "CustomerGateways" in p else []
        assert len(got) == count, f"page {n}: {p}"
    seen = [i["CustomerGatewayId"] for p in (p1, p2) for i in unwrap(p, "CustomerGateways", "CustomerGateway")]
    assert sorted(seen) == sorted(ids), "pages must partition the result set without overlap"

    default = page(1, 50)
    assert (default.get("TotalCount"), default.get("PageSize")) == (3, 50)
    d = c.call("DescribeCustomerGateways", {"RegionId": REGION})
    assert (d.get("PageNumber"), d.get("PageSize")) == (1, 10), f"defaults PageNumber=1 PageSize=10: {d}"

    # PageSize is 1..50 (alibaba-api-surface.md §4.6); the server answers 400 InvalidParameter.
    for action in ("DescribeCustomerGateways", "DescribeVpnGateways", "DescribeVpcs"):
        e = expect_error(lambda: c.call(action, {"RegionId": REGION, "PageSize": 51}))
        assert (e.http_status, e.code) == (400, "InvalidParameter"), f"{action} PageSize=51: {e}"
        assert "PageSize" in (e.message or ""), f"message should name PageSize: {e}"


# --------------------------------------------------------------------------- consistency


def project(value: Any, like: Any) -> Any:
    """``value`` restricted to the keys present in ``like`` (recursively)."""
    if isinstance(like, dict) and isinstance(value, dict):
        return {k: project(value[k], like[k]) for k in like if k in value}
    if isinstance(like, list) and isinstance(value, list) and len(like) == len(value):
        return [project(v, l) for v, l in zip(value, like)]
    return value


def test_all_variants_see_the_same_resources(server, make_client):
    ref = make_client(PY_TEA_V3)
    st = build_stack(ref, "shared")
    reference = snapshot(ref, st)
    for variant in ALL_VARIANTS:
        other = snapshot(make_client(variant), st)
        for action, body in reference.items():
            got = other[action]
            if variant in TYPED_MODEL_VARIANTS:
                assert got == body, f"{variant} {action} differs from {PY_TEA_V3}:\n{got}\n!=\n{body}"
            else:
                assert project(got, body) == body, \
                    f"{variant} {action} differs from {PY_TEA_V3}:\n{got}\n!=\n{body}"


def test_resources_created_by_each_variant_are_visible_to_all(fresh_server, make_client):
    created = {}
    for i, variant in enumerate(ALL_VARIANTS):
        st = Stack()
        create_customer_gateway(make_client(variant, fresh_server), st, variant, ip=f"5.6.7.{i + 1}")
        created[st.cgw_id] = f"5.6.7.{i + 1}"
    for variant in ALL_VARIANTS:
        body = make_client(variant, fresh_server).call("DescribeCustomerGateways",
                                                       {"RegionId": REGION, "PageSize": 50})
        got = {i["CustomerGatewayId"]: i.get("IpAddress") for i in
               unwrap(body, "CustomerGateways", "CustomerGateway")}
        assert got == created, f"{variant} sees {got}, expected {created}"
        assert body.get("TotalCount") == len(created)


# --------------------------------------------------------------------------- restarts


def test_state_survives_sigkill(fresh_server, make_client):
    c = make_client(PY_TEA_V3, fresh_server)
    st = build_stack(c, "kill9")
    before = snapshot(c, st)
    before_pop = snapshot(make_client(POP_GET, fresh_server), st)
    fresh_server.kill9()
    after = snapshot(c, st)
    assert after == before, f"state changed across SIGKILL restart:\n{after}\n!=\n{before}"
    assert snapshot(make_client(POP_GET, fresh_server), st) == before_pop
    # and the restarted server still accepts writes on the recovered resources
    st2 = Stack()
    create_customer_gateway(c, st2, "after-kill9", ip="9.9.9.9")
    assert st2.cgw_id not in (st.cgw_id,)


def test_gateway_provisioning_resumes_after_sigkill(server_factory, make_client):
    srv = server_factory(["--task-duration", "2s"])
    c = make_client(PY_TEA_V3, srv)
    st = Stack()
    create_vpc(c, st, "resume")
    create_gateway(c, st, "resume", wait=False)
    assert describe_gateway(c, st.gateway_id).get("Status") != "active", \
        "with --task-duration 2s the gateway must not be active immediately"
    srv.kill9()
    gw = wait_gateway_active(c, st.gateway_id)
    assert gw["VpnGatewayId"] == st.gateway_id


# --------------------------------------------------------------------------- deletion


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_delete_in_dependency_order(variant, fresh_server, make_client):
    c = make_client(variant, fresh_server)
    st = build_stack(c, variant)

    # a gateway that still has an IPsec connection cannot be deleted
    e = expect_error(lambda: c.call("DeleteVpnGateway", {"RegionId": REGION, "VpnGatewayId": st.gateway_id}))
    assert e.http_status is not None and 400 <= e.http_status < 500, f"dependency error must be 4xx: {e}"
    assert e.code and e.code not in ("InvalidAction.NotFound", "InvalidVpnGatewayInstanceId.NotFound"), e
    assert describe_gateway(c, st.gateway_id)["VpnGatewayId"] == st.gateway_id
    assert describe_connection(c, st.connection_id)["VpnConnectionId"] == st.connection_id

    # right order: connection, then gateway, then customer gateway
    body = call_retrying(c, "DeleteVpnConnection", {"RegionId": REGION, "VpnConnectionId": st.connection_id})
    assert_success_body(body)
    e = wait_for(f"connection {st.connection_id} gone",
                 lambda: _error_of(lambda: describe_connection(c, st.connection_id)),
                 lambda err: err is not None)
    assert (e.http_status, e.code) == (404, "InvalidVpnConnectionInstanceId.NotFound"), e

    body = call_retrying(c, "DeleteVpnGateway", {"RegionId": REGION, "VpnGatewayId": st.gateway_id})
    assert_success_body(body)
    e = wait_for(f"gateway {st.gateway_id} gone",
                 lambda: _error_of(lambda: describe_gateway(c, st.gateway_id)),
                 lambda err: err is not None)
    assert (e.http_status, e.code) == (404, "InvalidVpnGatewayInstanceId.NotFound"), e
    gws = c.call("DescribeVpnGateways", {"RegionId": REGION, "VpcId": st.vpc_id})
    assert gws.get("TotalCount") == 0, gws
    if "VpnGateways" in gws:
        assert unwrap(gws, "VpnGateways", "VpnGateway") == [], gws

    body = call_retrying(c, "DeleteCustomerGateway", {"RegionId": REGION, "CustomerGatewayId": st.cgw_id})
    assert_success_body(body)
    e = expect_error(lambda: c.call("DescribeCustomerGateway", {"RegionId": REGION, "CustomerGatewayId": st.cgw_id}))
    assert (e.http_status, e.code) == (404, "InvalidCustomerGatewayInstanceId.NotFound"), e


def _error_of(fn):
    try:
        fn()
    except ApiError as e:
        return e
    return None

