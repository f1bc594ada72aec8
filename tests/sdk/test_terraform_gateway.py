"""Terraform's `alicloud_vpn_gateway`, `alicloud_vpn_customer_gateway` and `alicloud_ssl_vpn_server`,
replayed through the Python Tea SDK as the provider makes the calls (shared/spec/terraform-calls.md
§3, §4, §7), plus the tag actions' limits and codes.

For each resource: Create → the Update that follows Create → Read (every attribute the provider
sets, compared with the configuration: an empty second plan) → a change → Delete and the wait
for absence. The server runs 300 ms tasks, so the provider's state waits really poll.
"""

from __future__ import annotations

from typing import Any, Dict, List

from clients import ApiError
from helpers import assert_types, expect_error, unwrap
from server import Server
from terraform import Provider, assert_no_diff, tags_of, tags_params
from test_terraform_vpc import create_vpc, create_vswitch, vpn_gateway_zones

REGION = "cn-hangzhou"



def describe_gateway(tf: Provider, gw: str):
    return tf.describe("DescribeVpnGateway", query={"VpnGatewayId": gw, "RegionId": REGION}, body={})


def gateway_state(g: Dict[str, Any]) -> Dict[str, Any]:
    """resourceAliCloudVPNGatewayVPNGatewayRead: what the provider puts into the state."""
    assert isinstance(g["CreateTime"], int) and isinstance(g["EndTime"], int), g
    assert isinstance(g["AutoPropagate"], bool), g
    charge = {"Prepay": "Subscription", "PostpayByFlow": "PayAsYouGo"}.get(g["ChargeType"], g["ChargeType"])
    return {
        "auto_propagate": g["AutoPropagate"], "description": g["Description"],
        "disaster_recovery_vswitch_id": g["DisasterRecoveryVSwitchId"],
        "disaster_recovery_internet_ip": g["DisasterRecoveryInternetIp"], "network_type": g["NetworkType"],
        "payment_type": charge, "resource_group_id": g["ResourceGroupId"],
        "ssl_connections": g["SslMaxConnections"], "status": g["Status"], "vswitch_id": g["VSwitchId"],
        "vpc_id": g["VpcId"], "vpn_gateway_name": g["Name"], "vpn_type": g["VpnType"],
        "internet_ip": g["InternetIp"], "ssl_vpn_internet_ip": g["SslVpnInternetIp"],
        "business_status": g["BusinessStatus"], "tags": tags_of(g),
        "bandwidth": g["Spec"].split("M")[0], "enable_ipsec": g["IpsecVpn"] == "enable",
        "enable_ssl": g["SslVpn"] == "enable",
    }


def create_gateway(tf: Provider, config: Dict[str, Any]) -> str:
    """resourceAliCloudVPNGatewayVPNGatewayCreate + its wait (Status=active, Delay 20 s)."""
    body: Dict[str, Any] = {"RegionId": REGION, "VpcId": config["vpc_id"], "Bandwidth": config["bandwidth"],
                            "AutoPay": True, "EnableIpsec": config.get("enable_ipsec", True),
                            "EnableSsl": config.get("enable_ssl", False), "InstanceChargeType": "POSTPAY"}
    for attr, param in (("vswitch_id", "VSwitchId"), ("vpn_gateway_name", "Name"), ("network_type", "NetworkType"),
                        ("vpn_type", "VpnType"), ("disaster_recovery_vswitch_id", "DisasterRecoveryVSwitchId"),
                        ("resource_group_id", "ResourceGroupId")):
        if config.get(attr):
            body[param] = config[attr]
    if config.get("ssl_connections") and config.get("enable_ssl"):
        body["SslConnections"] = config["ssl_connections"]
    out = tf.call("CreateVpnGateway", body=body, retry=["OperationFailed.SslNotSupport"], token="fresh")
    gw = out["VpnGatewayId"]
    assert isinstance(out.get("OrderId"), int), out
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])
    return gw


def modify_gateway(tf: Provider, gw: str, changes: Dict[str, Any]) -> Dict[str, Any]:
    out = tf.call("ModifyVpnGatewayAttribute", query={"VpnGatewayId": gw}, body={"RegionId": REGION, **changes},
                  token="fresh")
    tf.wait("gateway active after modify", lambda: describe_gateway(tf, gw), "Status", ["active"])
    return out


def delete_gateway(tf: Provider, gw: str) -> None:
    try:
        tf.call("DeleteVpnGateway", query={"VpnGatewayId": gw}, body={"RegionId": REGION},
                retry=["VpnGateway.Configuring"], token="fresh")
    except ApiError as e:
        if e.code not in ("INSTANCE_NOT_EXISTS", "IncorrectStatus.VpnGateway", "InvalidVpnGatewayId.NotFound",
                          "InvalidRegionId.NotFound"):
            raise
    tf.wait("gateway gone", lambda: describe_gateway(tf, gw), "Status", [])


def network(tf: Provider, cidr_prefix: str = "172.16") -> Dict[str, Any]:
    vpc_id = create_vpc(tf, f"{cidr_prefix}.0.0/16", {})
    zones = vpn_gateway_zones(tf)
    vsw1 = create_vswitch(tf, vpc_id, f"{cidr_prefix}.1.0/24", zones[0], "tf-vsw-1")
    vsw2 = create_vswitch(tf, vpc_id, f"{cidr_prefix}.2.0/24", zones[1], "tf-vsw-2")
    return {"vpc_id": vpc_id, "vsw1": vsw1, "vsw2": vsw2, "zones": zones}


# --------------------------------------------------------------------------- alicloud_vpn_gateway


def test_terraform_vpn_gateway(tf: Provider, schema):
    net = network(tf)
    config = {"vpc_id": net["vpc_id"], "bandwidth": "10", "enable_ssl": True, "ssl_connections": 5,
              "vpn_gateway_name": "tf-gw", "vswitch_id": net["vsw1"], "description": "tf gateway",
              "auto_propagate": True, "payment_type": "PayAsYouGo", "network_type": "public", "vpn_type": "Normal",
              "tags": {"Created": "TF", "For": "Test"}}
    gw = create_gateway(tf, config)
    # Update at Create: description non-empty / auto_propagate true → ModifyVpnGatewayAttribute; tags.
    out = modify_gateway(tf, gw, {"Description": config["description"], "AutoPropagate": True})
    assert_types(out, schema("ModifyVpnGatewayAttributeResponseBody"))
    assert (out["VpnGatewayId"], out["Name"], out["Description"], out["AutoPropagate"]) == \
        (gw, "tf-gw", "tf gateway", True), out
    assert (out["VpcId"], out["VSwitchId"], out["Spec"]) == (net["vpc_id"], net["vsw1"], "10M"), out
    assert isinstance(out["CreateTime"], int) and isinstance(out["EndTime"], int), out
    tf.set_tags("VpnGateWay", gw, {}, config["tags"])

    g = describe_gateway(tf, gw)
    assert_types(g, schema("DescribeVpnGatewayResponseBody"))
    state = gateway_state(g)
    assert_no_diff({k: v for k, v in config.items() if k != "bandwidth"} | {"bandwidth": "10"}, state,
                   "alicloud_vpn_gateway")
    assert (state["status"], state["disaster_recovery_vswitch_id"], state["disaster_recovery_internet_ip"]) == \
        ("active", "", ""), state
    # single-tunnel gateway: its SSL address is the gateway's address
    assert state["ssl_vpn_internet_ip"] == state["internet_ip"] != "", state

    # data "alicloud_vpn_gateways" with the filters the provider sends, plus tag and resource group filters
    listed = tf.call("DescribeVpnGateways", body={"RegionId": REGION, "PageNumber": 1, "PageSize": 50,
                                                  "VpcId": net["vpc_id"], "Status": "active"})
    [item] = unwrap(listed, "VpnGateways", "VpnGateway")
    assert gateway_state(item) == state
    by_tag = tf.call("DescribeVpnGateways", body={"RegionId": REGION, **tags_params({"For": "Test"})})
    assert [x["VpnGatewayId"] for x in unwrap(by_tag, "VpnGateways", "VpnGateway")] == [gw]
    by_key = tf.call("DescribeVpnGateways", body={"RegionId": REGION, "Tag.1.Key": "Created"})
    assert [x["VpnGatewayId"] for x in unwrap(by_key, "VpnGateways", "VpnGateway")] == [gw], "key alone: any value"
    none = tf.call("DescribeVpnGateways", body={"RegionId": REGION, **tags_params({"For": "Prod"})})
    assert unwrap(none, "VpnGateways", "VpnGateway") == []

    # --- a change: name, description, auto_propagate, resource group, tags
    modify_gateway(tf, gw, {"Name": "tf-gw-renamed", "Description": "changed", "AutoPropagate": False})
    tf.call("MoveVpnResourceGroup", query={"InstanceId": gw},
            body={"RegionId": REGION, "NewResourceGroupId": "rg-tfmoved0001", "ResourceType": "VpnGateWay"})
    new_tags = {"Created": "TF-2", "Env": "prod"}
    tf.set_tags("VpnGateWay", gw, config["tags"], new_tags)
    config.update(vpn_gateway_name="tf-gw-renamed", description="changed", auto_propagate=False,
                  resource_group_id="rg-tfmoved0001", tags=new_tags)
    state = gateway_state(describe_gateway(tf, gw))
    assert_no_diff({k: v for k, v in config.items() if k != "bandwidth"}, state, "alicloud_vpn_gateway after change")
    moved = tf.call("DescribeVpnGateways", body={"RegionId": REGION, "ResourceGroupId": "rg-tfmoved0001"})
    assert [x["VpnGatewayId"] for x in unwrap(moved, "VpnGateways", "VpnGateway")] == [gw]
    listed_tags = tf.call("ListTagResources", body={"RegionId": REGION, "ResourceType": "vpngateway",
                                                    "ResourceId.1": gw})
    assert sorted((t["ResourceId"], t["ResourceType"], t["TagKey"], t["TagValue"])
                  for t in unwrap(listed_tags, "TagResources", "TagResource")) == \
        [(gw, "VPNGATEWAY", "Created", "TF-2"), (gw, "VPNGATEWAY", "Env", "prod")]

    # ModifyVpnGatewayAttribute validates what it changes
    e = expect_error(lambda: tf.rpc("ModifyVpnGatewayAttribute", query={"VpnGatewayId": gw},
                                    body={"RegionId": REGION, "Name": "http://bad"}))
    assert (e.http_status, e.code) == (400, "InvalidName.Malformed"), e
    e = expect_error(lambda: tf.rpc("ModifyVpnGatewayAttribute", query={"VpnGatewayId": "vpn-nope"},
                                    body={"RegionId": REGION, "Name": "x1"}))
    assert (e.http_status, e.code) == (404, "InvalidVpnGatewayInstanceId.NotFound"), e
    e = expect_error(lambda: tf.rpc("MoveVpnResourceGroup", query={"InstanceId": gw},
                                    body={"RegionId": REGION, "NewResourceGroupId": "rg-x", "ResourceType": "Vpc"}))
    assert (e.http_status, e.code) == (400, "InvalidParameter"), e

    # --- delete and wait for absence; the tags go with it
    delete_gateway(tf, gw)
    left = tf.call("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPNGATEWAY", "ResourceId.1": gw})
    assert unwrap(left, "TagResources", "TagResource") == []
    assert tf.actions().count("ModifyVpnGatewayAttribute") >= 2


def test_gateway_vswitch_validation(tf: Provider):
    net = network(tf, "10.30")
    base = {"RegionId": REGION, "VpcId": net["vpc_id"], "Bandwidth": 10, "AutoPay": True}
    e = expect_error(lambda: tf.rpc("CreateVpnGateway", body={**base, "VSwitchId": "vsw-doesnotexist"}))
    assert (e.http_status, e.code) == (404, "InvalidVSwitchId.NotFound"), e
    e = expect_error(lambda: tf.rpc("CreateVpnGateway", body={**base, "VSwitchId": net["vsw1"],
                                                              "DisasterRecoveryVSwitchId": net["vsw1"]}))
    assert (e.http_status, e.code) == (400, "InvalidParameter"), "the two vswitches must be in two zones"
    e = expect_error(lambda: tf.rpc("CreateVpnGateway", body={**base, "DisasterRecoveryVSwitchId": net["vsw2"]}))
    assert (e.http_status, e.code) == (400, "MissingParameter"), "a disaster-recovery vswitch needs VSwitchId"
    other = network(tf, "10.31")
    e = expect_error(lambda: tf.rpc("CreateVpnGateway", body={**base, "VSwitchId": other["vsw1"]}))
    assert (e.http_status, e.code) == (404, "InvalidVSwitchId.NotFound"), "a vswitch of another VPC"
    # a vswitch in use by a gateway cannot be deleted (Terraform retries DependencyViolation*)
    gw = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": 10, "vswitch_id": net["vsw1"],
                             "disaster_recovery_vswitch_id": net["vsw2"]})
    g = describe_gateway(tf, gw)
    assert (g["VSwitchId"], g["DisasterRecoveryVSwitchId"]) == (net["vsw1"], net["vsw2"])
    assert g["DisasterRecoveryInternetIp"] not in ("", g["InternetIp"]), g
    for vsw in (net["vsw1"], net["vsw2"]):
        e = expect_error(lambda: tf.rpc("DeleteVSwitch", query={"VSwitchId": vsw}, body={"RegionId": REGION}))
        assert e.code.startswith("DependencyViolation") and e.http_status == 400, e
    delete_gateway(tf, gw)
    tf.call("DeleteVSwitch", query={"VSwitchId": net["vsw1"]}, body={"RegionId": REGION})


# --------------------------------------------------------------------------- alicloud_vpn_customer_gateway


def describe_cgw(tf: Provider, cgw: str):
    return tf.describe("DescribeCustomerGateway", query={"CustomerGatewayId": cgw}, body={"RegionId": REGION})


def cgw_state(c: Dict[str, Any]) -> Dict[str, Any]:
    state = {"customer_gateway_name": c["Name"], "description": c["Description"], "ip_address": c["IpAddress"],
             "tags": tags_of(c)}
    # asn is an Optional ForceNew string: a returned number becomes its decimal text.
    if "Asn" in c:
        state["asn"] = str(c["Asn"])
    assert isinstance(c["CreateTime"], int), c
    return state


def test_terraform_vpn_customer_gateway(tf: Provider, schema):
    config = {"customer_gateway_name": "tf-cgw", "description": "tf cgw", "ip_address": "4.3.2.1",
              "tags": {"Created": "TF"}}
    out = tf.call("CreateCustomerGateway", body={"RegionId": REGION, "IpAddress": config["ip_address"],
                                                 "Description": config["description"],
                                                 "Name": config["customer_gateway_name"]},
                  retry=["OperationConflict"], token="fresh")
    cgw = out["CustomerGatewayId"]
    tf.set_tags("CUSTOMERGATEWAY", cgw, {}, config["tags"])
    c = describe_cgw(tf, cgw)
    assert_types(c, schema("DescribeCustomerGatewayResponseBody"))
    assert "Asn" not in c, f"no asn configured: Asn must be absent, not {c.get('Asn')!r} (forces replacement)"
    assert_no_diff(config, cgw_state(c), "alicloud_vpn_customer_gateway")
    listed = tf.call("DescribeCustomerGateways", body={"RegionId": REGION, "PageSize": 50, "PageNumber": 1})
    [item] = [x for x in unwrap(listed, "CustomerGateways", "CustomerGateway") if x["CustomerGatewayId"] == cgw]
    assert "Asn" not in item, item

    # --- a change: name, description (ModifyCustomerGatewayAttribute), tags
    out = tf.call("ModifyCustomerGatewayAttribute", body={"CustomerGatewayId": cgw, "RegionId": REGION,
                                                          "Description": "changed", "Name": "tf-cgw-2"},
                  token="fresh")
    assert_types(out, schema("ModifyCustomerGatewayAttributeResponseBody"))
    assert (out["CustomerGatewayId"], out["Name"], out["Description"], out["IpAddress"]) == \
        (cgw, "tf-cgw-2", "changed", "4.3.2.1"), out
    assert out["CreateTime"] == c["CreateTime"], out
    tf.set_tags("CUSTOMERGATEWAY", cgw, config["tags"], {"Created": "TF", "Env": "x"})
    config.update(customer_gateway_name="tf-cgw-2", description="changed", tags={"Created": "TF", "Env": "x"})
    assert_no_diff(config, cgw_state(describe_cgw(tf, cgw)), "after change")
    e = expect_error(lambda: tf.rpc("ModifyCustomerGatewayAttribute",
                                    body={"CustomerGatewayId": cgw, "RegionId": REGION, "Description": "https://x"}))
    assert (e.http_status, e.code) == (400, "InvalidDescription"), "ModifyCustomerGatewayAttribute's own code"
    e = expect_error(lambda: tf.rpc("ModifyCustomerGatewayAttribute",
                                    body={"CustomerGatewayId": cgw, "RegionId": REGION, "Name": "x" * 129}))
    assert (e.http_status, e.code) == (400, "InvalidName"), e
    e = expect_error(lambda: tf.rpc("ModifyCustomerGatewayAttribute",
                                    body={"CustomerGatewayId": "cgw-nope", "RegionId": REGION, "Name": "n"}))
    assert (e.http_status, e.code) == (404, "InvalidCustomerGatewayInstanceId.NotFound"), e

    # with an asn: echoed as a number whose text is the configured string
    out = tf.call("CreateCustomerGateway", body={"RegionId": REGION, "IpAddress": "4.3.2.2", "Asn": "65010"},
                  token="fresh")
    c2 = describe_cgw(tf, out["CustomerGatewayId"])
    assert cgw_state(c2)["asn"] == "65010", c2

    # --- delete (no wait)
    for cid in (cgw, out["CustomerGatewayId"]):
        tf.call("DeleteCustomerGateway", body={"CustomerGatewayId": cid, "RegionId": REGION},
                retry=["VpnGateway.Configuring"], token="fresh")
        assert describe_cgw(tf, cid) is None


# --------------------------------------------------------------------------- alicloud_ssl_vpn_server


def describe_ssl(tf: Provider, sid: str):
    """DescribeSslVpnServers by SslVpnServerId alone; gone on an empty list."""
    body = tf.describe("DescribeSslVpnServers", body={"RegionId": REGION, "SslVpnServerId": sid})
    if body is None:
        return None
    items = unwrap(body, "SslVpnServers", "SslVpnServer")
    if not items or items[0]["SslVpnServerId"] != sid:
        return None
    return items[0]


def ssl_state(s: Dict[str, Any]) -> Dict[str, Any]:
    return {"vpn_gateway_id": s["VpnGatewayId"], "name": s["Name"], "local_subnet": s["LocalSubnet"],
            "client_ip_pool": s["ClientIpPool"], "cipher": s["Cipher"], "protocol": s["Proto"], "port": s["Port"],
            "compress": s["Compress"]}


def test_terraform_ssl_vpn_server(tf_server: Server, tf: Provider, schema):
    net = network(tf, "172.20")
    gw = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": 10, "enable_ssl": True, "ssl_connections": 5,
                             "vswitch_id": net["vsw1"]})
    # The gateway's tasks wait for `advance`, so "updating" is observed deterministically.
    tf_server.admin("gateway", "set-task-duration", gw, "manual")
    # name not set: Name omitted from the request, and it must stay empty (Optional, not Computed).
    config = {"vpn_gateway_id": gw, "name": "", "local_subnet": "172.20.0.0/16", "client_ip_pool": "10.8.0.0/24",
              "cipher": "AES-128-CBC", "protocol": "UDP", "port": 1194, "compress": False}
    out = tf.call("CreateSslVpnServer", body={"RegionId": REGION, "VpnGatewayId": gw,
                                              "ClientIpPool": config["client_ip_pool"],
                                              "LocalSubnet": config["local_subnet"], "Proto": "UDP",
                                              "Cipher": "AES-128-CBC", "Port": 1194, "Compress": False},
                  retry=["VpnGateway.Configuring"], token="fixed", retry_need_retry=False)
    sid = out["SslVpnServerId"]
    assert out["Name"] == "", out
    # CreateSslVpnServer is asynchronous: the gateway is updating and refuses a concurrent change.
    g = describe_gateway(tf, gw)
    assert g["Status"] == "updating", g
    e = expect_error(lambda: tf.rpc("DeleteVpnGateway", query={"VpnGatewayId": gw}, body={"RegionId": REGION}))
    assert (e.http_status, e.code) == (400, "VpnGateway.Configuring"), e
    tf.wait("ssl server listed", lambda: describe_ssl(tf, sid), "SslVpnServerId", [sid])
    tf_server.admin("gateway", "advance", gw)
    tf_server.admin("gateway", "set-task-duration", gw, "default")
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])
    s = describe_ssl(tf, sid)
    assert_no_diff(config, ssl_state(s), "alicloud_ssl_vpn_server")
    assert isinstance(s["Connections"], int) and s["MaxConnections"] == 5 and s["InternetIp"], s

    # --- a change: ModifySslVpnServer with ClientIpPool + LocalSubnet always, plus what changed
    body = {"RegionId": REGION, "SslVpnServerId": sid, "ClientIpPool": "10.9.0.0/24",
            "LocalSubnet": "172.20.0.0/16", "Name": "tf-ssl", "Port": 1195, "Compress": True}
    out = tf.call("ModifySslVpnServer", body=body, retry=["VpnGateway.Configuring"], retry_need_retry=False)
    assert_types(out, schema("ModifySslVpnServerResponseBody"))
    assert (out["SslVpnServerId"], out["Name"], out["ClientIpPool"], out["Port"], out["Compress"]) == \
        (sid, "tf-ssl", "10.9.0.0/24", 1195, True), out
    config.update(name="tf-ssl", client_ip_pool="10.9.0.0/24", port=1195, compress=True)
    assert_no_diff(config, ssl_state(describe_ssl(tf, sid)), "after ModifySslVpnServer")
    e = expect_error(lambda: tf.rpc("ModifySslVpnServer", body={**body, "Port": 443}))
    assert (e.http_status, e.code) == (400, "InvalidParameter"), e
    e = expect_error(lambda: tf.rpc("ModifySslVpnServer", body={**body, "SslVpnServerId": "vss-nope"}))
    assert (e.http_status, e.code) == (404, "InvalidSslVpnServerId.NotFound"), e

    # --- delete, then poll until gone
    tf.call("DeleteSslVpnServer", body={"RegionId": REGION, "SslVpnServerId": sid},
            retry=["VpnGateway.Configuring"], retry_need_retry=False)
    tf.wait("ssl server gone", lambda: describe_ssl(tf, sid), "SslVpnServerId", [])
    delete_gateway(tf, gw)


# --------------------------------------------------------------------------- tags: limits and codes


def tag(tf: Provider, rtype: str, ids: List[str], tags: Dict[str, str]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"RegionId": REGION, "ResourceType": rtype, **tags_params(tags)}
    for n, i in enumerate(ids, start=1):
        body[f"ResourceId.{n}"] = i
    return tf.rpc("TagResources", body=body)


def code_of(fn) -> tuple:
    e = expect_error(fn)
    return e.http_status, e.code


def test_tag_limits_codes_and_paging(tf: Provider):
    vpc_ids = [create_vpc(tf, f"10.{40 + i}.0.0/16", {}) for i in range(3)]
    # 20 tags per resource
    twenty = {f"k{n:02d}": f"v{n}" for n in range(20)}
    tag(tf, "VPC", vpc_ids, twenty)
    assert code_of(lambda: tag(tf, "VPC", [vpc_ids[0]], {"one-more": "x"})) == (400, "OperationDenied.QuotaExceed")
    tag(tf, "VPC", [vpc_ids[0]], {"k00": "overwritten"})  # an existing key is updated, not added
    assert code_of(lambda: tag(tf, "VPC", [vpc_ids[0]], {f"n{n}": "" for n in range(21)})) == \
        (400, "NumberExceed.Tags")
    # key and value rules
    for bad in ("aliyun-key", "acs:key", "x" * 129, "has http://inside"):
        assert code_of(lambda: tag(tf, "VPC", [vpc_ids[1]], {bad: "v"})) == (400, "InvalidTagKey.Malformed"), bad
    for bad in ("aliyun-v", "acs:v", "y" * 129, "https://v"):
        assert code_of(lambda: tag(tf, "VPC", [vpc_ids[1]], {"k": bad})) == (400, "InvalidTagValue.Malformed"), bad
    assert code_of(lambda: tf.rpc("TagResources", body={"RegionId": REGION, "ResourceType": "VPC",
                                                        "ResourceId.1": vpc_ids[1], "Tag.1.Value": "v"})) == \
        (400, "InvalidTagKey.Malformed")
    assert code_of(lambda: tf.rpc("TagResources", body={"RegionId": REGION, "ResourceType": "VPC",
                                                        "ResourceId.1": vpc_ids[1], "Tag.1.Key": "a",
                                                        "Tag.1.Value": "1", "Tag.2.Key": "a", "Tag.2.Value": "2"})) \
        == (400, "Duplicate.TagKey")
    assert code_of(lambda: tf.rpc("TagResources", body={"RegionId": REGION, "ResourceType": "VPC",
                                                        "ResourceId.1": vpc_ids[1]})) == (400, "MissingParameter")
    assert code_of(lambda: tag(tf, "VPC", [], {"a": "b"})) == (400, "MissingParameter")
    assert code_of(lambda: tag(tf, "NATGATEWAY", [vpc_ids[1]], {"a": "b"})) == (404, "InvalidResourceType.NotFound")
    assert code_of(lambda: tag(tf, "VPNGATEWAY", [vpc_ids[1]], {"a": "b"})) == (404, "InvalidResourceId.NotFound")
    assert code_of(lambda: tag(tf, "VPC", [f"vpc-{n}" for n in range(51)], {"a": "b"})) == \
        (400, "NumberExceed.ResourceIds")
    # one unknown id: nothing is tagged (all or nothing)
    assert code_of(lambda: tag(tf, "VPC", [vpc_ids[1], "vpc-nope"], {"atomic": "1"})) == \
        (404, "InvalidResourceId.NotFound")
    got = tf.rpc("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPC", "ResourceId.1": vpc_ids[1]})
    assert all(t["TagKey"] != "atomic" for t in unwrap(got, "TagResources", "TagResource"))

    # ListTagResources: NextToken paging over 60 (resource, tag) pairs
    seen: List[tuple] = []
    token = None
    pages = []
    while True:
        body: Dict[str, Any] = {"RegionId": REGION, "ResourceType": "VPC", "MaxResults": 25}
        for n, i in enumerate(vpc_ids, start=1):
            body[f"ResourceId.{n}"] = i
        if token:
            body["NextToken"] = token
        page = tf.rpc("ListTagResources", body=body)
        items = unwrap(page, "TagResources", "TagResource")
        pages.append(len(items))
        seen += [(t["ResourceId"], t["TagKey"], t["TagValue"], t["ResourceType"]) for t in items]
        token = page["NextToken"]
        assert isinstance(token, str)
        if not token:
            break
    assert pages == [25, 25, 10], pages
    assert len(set(seen)) == 60 and {s[3] for s in seen} == {"VPC"}
    assert (vpc_ids[0], "k00", "overwritten", "VPC") in seen
    # by tag, without ids: every resource of the type carrying it
    by_tag = tf.rpc("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPC", "Tag.1.Key": "k05",
                                              "Tag.1.Value": "v5"})
    assert sorted(t["ResourceId"] for t in unwrap(by_tag, "TagResources", "TagResource")) == sorted(vpc_ids)
    assert code_of(lambda: tf.rpc("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPC"})) == \
        (400, "MissingParameter")
    assert code_of(lambda: tf.rpc("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPC",
                                                            "ResourceId.1": vpc_ids[0], "NextToken": "garbage"})) \
        == (400, "InvalidParameter")
    assert code_of(lambda: tf.rpc("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPC",
                                                            "ResourceId.1": vpc_ids[0], "MaxResults": 51})) == \
        (400, "InvalidParameter")

    # UnTagResources: named keys (unknown keys are fine), then All
    tf.rpc("UnTagResources", body={"RegionId": REGION, "ResourceType": "VPC", "ResourceId.1": vpc_ids[0],
                                   "TagKey.1": "k00", "TagKey.2": "never-there"})
    got = tf.rpc("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPC", "ResourceId.1": vpc_ids[0]})
    assert len(unwrap(got, "TagResources", "TagResource")) == 19
    assert code_of(lambda: tf.rpc("UnTagResources", body={"RegionId": REGION, "ResourceType": "VPC",
                                                          "ResourceId.1": vpc_ids[0]})) == (400, "MissingParameter")
    assert code_of(lambda: tf.rpc("UnTagResources", body={"RegionId": REGION, "ResourceType": "VPC",
                                                          "ResourceId.1": vpc_ids[0], "TagKey.1": "acs:x"})) == \
        (400, "InvalidTagKey.Malformed")
    tf.rpc("UnTagResources", body={"RegionId": REGION, "ResourceType": "VPC", "ResourceId.1": vpc_ids[0],
                                   "ResourceId.2": vpc_ids[1], "All": True})
    got = tf.rpc("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPC", "ResourceId.1": vpc_ids[0],
                                           "ResourceId.2": vpc_ids[1]})
    assert unwrap(got, "TagResources", "TagResource") == []
    # Tag.N on CreateVpc counts against the same limit and the same rules
    e = expect_error(lambda: tf.rpc("CreateVpc", body={"RegionId": REGION, "CidrBlock": "10.60.0.0/16",
                                                       **tags_params({"aliyun": "x"})}))
    assert (e.http_status, e.code) == (400, "InvalidTagKey.Malformed"), e


def test_attribute_update_rules(tf_server: Server, tf: Provider):
    """What the attribute updates refuse, and which of them wait for a busy gateway."""
    vpc_id = create_vpc(tf, "10.70.0.0/16", {})
    v = tf.rpc("CreateVpc", body={"RegionId": REGION, "CidrBlock": "10.71.0.0/16",
                                  "UserCidr": "10.100.0.0/16,10.101.0.0/16", "EnableDnsHostname": True})
    attr = tf.rpc("DescribeVpcAttribute", body={"RegionId": REGION, "VpcId": v["VpcId"]})
    assert (unwrap(attr, "UserCidrs", "UserCidr"), attr["DnsHostnameStatus"]) == \
        (["10.100.0.0/16", "10.101.0.0/16"], "ENABLED"), attr
    assert code_of(lambda: tf.rpc("CreateVpc", body={"RegionId": REGION, "UserCidr": "10.1.0.0/33"})) == \
        (400, "InvalidParameter")
    assert code_of(lambda: tf.rpc("DescribeZones", body={"RegionId": REGION, "ZoneType": "EdgeZone"})) == \
        (400, "InvalidParameter")

    gw = create_gateway(tf, {"vpc_id": vpc_id, "bandwidth": 10, "enable_ssl": True})
    cgw = tf.rpc("CreateCustomerGateway", body={"RegionId": REGION, "IpAddress": "8.8.4.4"})["CustomerGatewayId"]
    for bad in ("rg", "rg-", "rg-has space", "x-abc"):
        assert code_of(lambda: tf.rpc("MoveVpnResourceGroup", query={"InstanceId": gw}, body={
            "RegionId": REGION, "NewResourceGroupId": bad, "ResourceType": "VpnGateway"})) == \
            (400, "InvalidParameter"), bad
    tf.rpc("MoveVpnResourceGroup", query={"InstanceId": cgw},
           body={"RegionId": REGION, "NewResourceGroupId": "rg-cgw01", "ResourceType": "customergateway"})
    assert describe_cgw(tf, cgw)["ResourceGroupId"] == "rg-cgw01"
    assert code_of(lambda: tf.rpc("MoveVpnResourceGroup", query={"InstanceId": "cgw-nope"}, body={
        "RegionId": REGION, "NewResourceGroupId": "rg-x1", "ResourceType": "CustomerGateway"})) == \
        (404, "InvalidCustomerGatewayInstanceId.NotFound")

    # SSL server: with the gateway busy, a rename goes through, a port change waits
    sid = tf.call("CreateSslVpnServer", body={"RegionId": REGION, "VpnGatewayId": gw, "ClientIpPool": "10.9.0.0/24",
                                              "LocalSubnet": "10.70.0.0/16"}, retry=["VpnGateway.Configuring"])[
        "SslVpnServerId"]
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])
    tf_server.admin("gateway", "set-task-duration", gw, "manual")
    tf.rpc("ModifySslVpnServer", body={"RegionId": REGION, "SslVpnServerId": sid, "Port": 1195})
    assert describe_gateway(tf, gw)["Status"] == "updating"
    renamed = tf.rpc("ModifySslVpnServer", body={"RegionId": REGION, "SslVpnServerId": sid, "Name": "ssl-1"})
    assert (renamed["Name"], renamed["Port"]) == ("ssl-1", 1195), renamed
    assert code_of(lambda: tf.rpc("ModifySslVpnServer", body={"RegionId": REGION, "SslVpnServerId": sid,
                                                              "Proto": "UDP"})) == (400, "VpnGateway.Configuring")
    assert code_of(lambda: tf.rpc("ModifySslVpnServer", body={"RegionId": REGION, "SslVpnServerId": sid,
                                                              "ClientIpPool": "10.70.1.0/24"})) == \
        (400, "SslVpnServer.ClientIpPoolConflict"), "a pool inside the VPC"
    tf_server.admin("gateway", "advance", gw)
    tf_server.admin("gateway", "set-task-duration", gw, "default")
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])
