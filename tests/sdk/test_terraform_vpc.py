"""Terraform's `alicloud_vpc`, `alicloud_vswitch` and the zone data sources, replayed through the
Python Tea SDK as the provider makes the calls (shared/spec/terraform-calls.md §8, §9).

alicloud_vpc: CreateVpc (Tag.N, EnableDnsHostname) → wait DescribeVpcAttribute Status=Available →
the Update that follows Create (DescribeRouteTableList, tags) → Read (DescribeVpcAttribute +
DescribeRouteTableList) → a tags change → DeleteVpc (retrying DependencyViolation.VSwitch while a
vswitch exists) → wait until DescribeVpcAttribute says gone.
alicloud_vswitch: CreateVSwitch in a zone from alicloud_vpn_gateway_zones (DescribeVpnGatewayAvailableZones,
GET) → wait DescribeVSwitchAttributes Status=Available → tags → Read → tags change → DeleteVSwitch
(retried while a VPN gateway uses it) → wait gone.
"""

from __future__ import annotations

import uuid
from typing import Dict

from helpers import assert_types, expect_error, unwrap
from server import Server
from terraform import Provider, assert_no_diff, tags_of, tags_params

REGION = "cn-hangzhou"



def vpc_attribute(tf: Provider, vpc_id: str):
    return tf.describe("DescribeVpcAttribute", body={"VpcId": vpc_id, "RegionId": REGION},
                       gone=lambda b: b.get("VpcId") == "")


def vswitch_attribute(tf: Provider, vsw_id: str):
    return tf.describe("DescribeVSwitchAttributes", query={"VSwitchId": vsw_id}, body={"RegionId": REGION},
                       gone=lambda b: b.get("VSwitchId") == "")


def vpn_gateway_zones(tf: Provider, spec: str = "10M"):
    """data "alicloud_vpn_gateway_zones": RpcGet, query RegionId + Spec; the top-level array is required."""
    body = tf.call("DescribeVpnGatewayAvailableZones", query={"RegionId": REGION, "Spec": spec}, method="GET")
    zones = body["AvailableZoneIdList"]
    assert isinstance(zones, list) and zones, body
    for z in zones:
        assert isinstance(z["ZoneId"], str) and z["ZoneId"].startswith(REGION + "-"), z
        assert isinstance(z["ZoneName"], str) and z["ZoneName"], z
    assert body["RegionId"] == REGION
    return [z["ZoneId"] for z in zones]


def create_vpc(tf: Provider, cidr: str, tags: Dict[str, str]) -> str:
    body = tf.call("CreateVpc", body={"RegionId": REGION, "CidrBlock": cidr, "VpcName": "tf-vpc",
                                      "Description": "tf vpc", "EnableDnsHostname": False, **tags_params(tags)},
                   retry=["TaskConflict", "UnknownError"], token="fixed")
    vpc_id = body["VpcId"]
    tf.wait("vpc Available", lambda: vpc_attribute(tf, vpc_id), "Status", ["Available"])
    return vpc_id


def create_vswitch(tf: Provider, vpc_id: str, cidr: str, zone: str, name: str = "tf-vsw") -> str:
    body = tf.call("CreateVSwitch", body={"RegionId": REGION, "CidrBlock": cidr, "VpcId": vpc_id,
                                          "VSwitchName": name, "Description": "tf vswitch", "ZoneId": zone},
                   retry=["TaskConflict", "IncorrectStatus", "IncorrectVSwitchStatus", "OperationConflict",
                          "IncorrectRouteEntryStatus", "InvalidStatus.RouteEntry", "Throttling",
                          "OperationFailed.IdempotentTokenProcessing", "ServiceUnavailable"],
                   token="fresh")
    vsw = body["VSwitchId"]
    assert vsw.startswith("vsw-"), body
    tf.wait("vswitch Available", lambda: vswitch_attribute(tf, vsw), "Status", ["Available"])
    return vsw


def test_terraform_vpc_and_vswitch(tf: Provider, schema):
    # --- alicloud_vpc Create
    tags = {"Created": "TF", "For": "acceptance"}
    vpc_id = create_vpc(tf, "172.16.0.0/16", tags)
    # Update after Create: always DescribeRouteTableList, then tags.
    rt = tf.call("DescribeRouteTableList", body={"VpcId": vpc_id, "RegionId": REGION})
    system = [t for t in unwrap(rt, "RouterTableList", "RouterTableListType")
              if t["RouteTableType"] == "System" and t["VpcId"] == vpc_id]
    assert len(system) == 1, rt
    tf.set_tags("VPC", vpc_id, {}, tags)

    # --- Read
    v = vpc_attribute(tf, vpc_id)
    assert v is not None
    assert_types(v, schema("DescribeVpcAttributeResponseBody"))
    state = {
        "cidr_block": v["CidrBlock"], "vpc_name": v["VpcName"], "description": v["Description"],
        "status": v["Status"], "tags": tags_of(v), "region_id": v["RegionId"], "is_default": v["IsDefault"],
        "router_id": v["VRouterId"], "resource_group_id": v["ResourceGroupId"],
        "user_cidrs": unwrap(v, "UserCidrs", "UserCidr"),
        "secondary_cidr_blocks": unwrap(v, "SecondaryCidrBlocks", "SecondaryCidrBlock"),
        "enable_ipv6": v["EnabledIpv6"], "classic_link_enabled": v["ClassicLinkEnabled"],
    }
    assert isinstance(v["CreationTime"], str) and v["CreationTime"].endswith("Z"), v
    assert v["DnsHostnameStatus"] in ("DISABLED", "ENABLED"), v
    assert_no_diff({"cidr_block": "172.16.0.0/16", "vpc_name": "tf-vpc", "description": "tf vpc", "tags": tags,
                    "status": "Available", "region_id": REGION, "is_default": False, "user_cidrs": [],
                    "secondary_cidr_blocks": [], "enable_ipv6": False, "classic_link_enabled": False},
                   state, "alicloud_vpc")
    assert state["router_id"].startswith("vrt-") and state["resource_group_id"], state
    # DescribeVpcs and its Tag.N filter see the tags too.
    found = tf.call("DescribeVpcs", body={"RegionId": REGION, **tags_params({"Created": "TF"})})
    assert [x["VpcId"] for x in unwrap(found, "Vpcs", "Vpc")] == [vpc_id]
    assert tags_of(unwrap(found, "Vpcs", "Vpc")[0]) == tags

    # --- alicloud_vswitch in a zone where VPN gateways can be created
    zones = vpn_gateway_zones(tf)
    assert len(zones) >= 2, "dual-tunnel gateways need two zones"
    zlist = tf.call("DescribeZones", body={"RegionId": REGION})
    assert [z["ZoneId"] for z in unwrap(zlist, "Zones", "Zone")] == zones, zlist
    for z in unwrap(zlist, "Zones", "Zone"):
        assert z["ZoneType"] == "AvailabilityZone" and isinstance(z["LocalName"], str), z
    vsw = create_vswitch(tf, vpc_id, "172.16.1.0/24", zones[0])
    vtags = {"Role": "vpn"}
    tf.set_tags("VSWITCH", vsw, {}, vtags)
    a = vswitch_attribute(tf, vsw)
    assert a is not None
    assert_types(a, schema("DescribeVSwitchAttributesResponseBody"))
    vstate = {"cidr_block": a["CidrBlock"], "vpc_id": a["VpcId"], "zone_id": a["ZoneId"],
              "vswitch_name": a["VSwitchName"], "description": a["Description"], "status": a["Status"],
              "tags": tags_of(a), "is_default": a["IsDefault"]}
    assert_no_diff({"cidr_block": "172.16.1.0/24", "vpc_id": vpc_id, "zone_id": zones[0], "vswitch_name": "tf-vsw",
                    "description": "tf vswitch", "status": "Available", "tags": vtags, "is_default": False},
                   vstate, "alicloud_vswitch")
    # enable_ipv6 is computed from Ipv6CidrBlock != "": the key must be present and empty.
    assert a.get("Ipv6CidrBlock") == "", a
    assert isinstance(a["AvailableIpAddressCount"], int) and a["AvailableIpAddressCount"] > 0, a
    listed = tf.call("DescribeVSwitches", body={"RegionId": REGION, "VpcId": vpc_id})
    [item] = unwrap(listed, "VSwitches", "VSwitch")
    assert (item["VSwitchId"], item["ZoneId"], item["CidrBlock"]) == (vsw, zones[0], "172.16.1.0/24")
    assert unwrap(vpc_attribute(tf, vpc_id), "VSwitchIds", "VSwitchId") == [vsw]

    # --- vswitch rules: inside the VPC, no overlap, a served zone
    e = expect_error(lambda: tf.rpc("CreateVSwitch", body={"RegionId": REGION, "VpcId": vpc_id,
                                                           "CidrBlock": "172.16.1.128/25", "ZoneId": zones[1]}))
    assert (e.http_status, e.code) == (400, "InvalidCidrBlock.Overlapped"), e
    e = expect_error(lambda: tf.rpc("CreateVSwitch", body={"RegionId": REGION, "VpcId": vpc_id,
                                                           "CidrBlock": "10.9.0.0/24", "ZoneId": zones[1]}))
    assert (e.http_status, e.code) == (400, "InvalidParameter"), e
    e = expect_error(lambda: tf.rpc("CreateVSwitch", body={"RegionId": REGION, "VpcId": vpc_id,
                                                           "CidrBlock": "172.16.2.0/24", "ZoneId": "cn-hangzhou-zz"}))
    assert (e.http_status, e.code) == (404, "InvalidZoneId.NotFound"), e
    e = expect_error(lambda: tf.rpc("CreateVSwitch", body={"RegionId": REGION, "VpcId": vpc_id,
                                                           "CidrBlock": "172.16.2.3/24", "ZoneId": zones[1]}))
    assert (e.http_status, e.code) == (400, "InvalidCidrBlock.Malformed"), e

    # --- a change: tags on both
    new_tags = {"Created": "TF-changed", "Env": "test"}
    tf.set_tags("VPC", vpc_id, tags, new_tags)
    assert tags_of(vpc_attribute(tf, vpc_id)) == new_tags
    tf.set_tags("VSWITCH", vsw, vtags, {})  # all removed: UnTagResources only
    assert tags_of(vswitch_attribute(tf, vsw)) == {}

    # --- delete: the VPC waits for its vswitch (DependencyViolation.VSwitch is retried)
    e = expect_error(lambda: tf.rpc("DeleteVpc", body={"VpcId": vpc_id, "RegionId": REGION}))
    assert (e.http_status, e.code) == (400, "DependencyViolation.VSwitch"), e
    tf.call("DeleteVSwitch", query={"VSwitchId": vsw}, body={"RegionId": REGION}, retry=["DependencyViolation"])
    tf.wait("vswitch gone", lambda: vswitch_attribute(tf, vsw), "Status", [])
    e = expect_error(lambda: tf.rpc("DeleteVSwitch", query={"VSwitchId": vsw}, body={"RegionId": REGION}))
    assert e.code in ("InvalidVSwitchId.NotFound", "InvalidVswitchID.NotFound") and e.http_status == 404, e
    tf.call("DeleteVpc", body={"VpcId": vpc_id, "RegionId": REGION}, token="fresh",
            retry=["DependencyViolation.VSwitch", "DependencyViolation.SecurityGroup", "IncorrectVpcStatus"])
    tf.wait("vpc gone", lambda: vpc_attribute(tf, vpc_id), "Status", [])
    # tags go with the resource
    left = tf.call("ListTagResources", body={"RegionId": REGION, "ResourceType": "VPC", "ResourceId.1": vpc_id})
    assert unwrap(left, "TagResources", "TagResource") == []


def test_vpn_gateway_zones_and_zone_errors(tf: Provider):
    zones = vpn_gateway_zones(tf, "5M")
    assert zones == vpn_gateway_zones(tf, "1000M"), "every zone serves every spec"
    e = expect_error(lambda: tf.rpc("DescribeVpnGatewayAvailableZones", query={"RegionId": REGION}, method="GET"))
    assert (e.http_status, e.code) == (400, "MissingParameter"), e
    e = expect_error(lambda: tf.rpc("DescribeVpnGatewayAvailableZones", query={"RegionId": REGION, "Spec": "7M"},
                                    method="GET"))
    assert (e.http_status, e.code) == (400, "InvalidParameter"), e
    other = tf.call("DescribeZones", body={"RegionId": "cn-shanghai"})
    assert all(z["ZoneId"].startswith("cn-shanghai-") for z in unwrap(other, "Zones", "Zone"))


def test_vswitch_not_visible_to_other_accounts(tf_server: Server, tf: Provider):
    vpc_id = create_vpc(tf, "10.20.0.0/16", {})
    zone = vpn_gateway_zones(tf)[0]
    vsw = create_vswitch(tf, vpc_id, "10.20.0.0/24", zone)
    creds = tf_server.create_account("tfvpc-other-" + uuid.uuid4().hex[:6])
    other = Provider(tf_server, creds["AccessKeyId"], creds["AccessKeySecret"], REGION)
    assert vswitch_attribute(other, vsw) is None
    e = expect_error(lambda: other.rpc("DeleteVSwitch", query={"VSwitchId": vsw}, body={"RegionId": REGION}))
    assert (e.http_status, e.code) == (404, "InvalidVSwitchId.NotFound"), e
    e = expect_error(lambda: other.rpc("TagResources", body={"RegionId": REGION, "ResourceType": "VSWITCH",
                                                             "ResourceId.1": vsw, "Tag.1.Key": "k",
                                                             "Tag.1.Value": "v"}))
    assert (e.http_status, e.code) == (404, "InvalidResourceId.NotFound"), e
    tf.call("DeleteVSwitch", query={"VSwitchId": vsw}, body={"RegionId": REGION})
    tf.call("DeleteVpc", body={"VpcId": vpc_id, "RegionId": REGION})


def route_tables(tf: Provider, vpc_id: str):
    rt = tf.call("DescribeRouteTableList", body={"VpcId": vpc_id, "RegionId": REGION})
    [system] = [t for t in unwrap(rt, "RouterTableList", "RouterTableListType")
                if t["RouteTableType"] == "System" and t["VpcId"] == vpc_id]
    return system


def vpc_state(tf: Provider, vpc_id: str) -> Dict[str, object]:
    """resourceAliCloudVpcVpcRead: DescribeVpcAttribute, then the System table of DescribeRouteTableList."""
    v = vpc_attribute(tf, vpc_id)
    assert v is not None
    t = route_tables(tf, vpc_id)
    return {"vpc_name": v["VpcName"], "description": v["Description"], "cidr_block": v["CidrBlock"],
            "resource_group_id": v["ResourceGroupId"], "enable_dns_hostname": v["DnsHostnameStatus"] == "ENABLED",
            "tags": tags_of(v), "status": v["Status"], "creation_time": v["CreationTime"],
            "route_table_id": t["RouteTableId"], "system_route_table_name": t["RouteTableName"],
            "system_route_table_description": t["Description"],
            "system_route_table_route_propagation_enable": t["RoutePropagationEnable"]}


def vswitch_state(tf: Provider, vsw: str) -> Dict[str, object]:
    a = vswitch_attribute(tf, vsw)
    assert a is not None
    return {"vswitch_name": a["VSwitchName"], "description": a["Description"], "cidr_block": a["CidrBlock"],
            "zone_id": a["ZoneId"], "status": a["Status"], "tags": tags_of(a), "creation_time": a["CreationTime"],
            "resource_group_id": a["ResourceGroupId"]}


def update_vpc(tf: Provider, vpc_id: str, body: Dict[str, object]) -> None:
    """resourceAliCloudVpcVpcUpdate's ModifyVpcAttribute: changed attributes only, no ClientToken,
    retried on the status codes, then a wait for Available."""
    tf.call("ModifyVpcAttribute", body={"VpcId": vpc_id, "RegionId": REGION, **body},
            retry=["IncorrectStatus", "IncorrectVpcStatus", "OperationConflict", "OperationFailed.LastTokenProcessing",
                   "LastTokenProcessing", "OperationFailed.QueryCenIpv6Status", "SystemBusy", "ServiceUnavailable"])
    tf.wait("vpc Available", lambda: vpc_attribute(tf, vpc_id), "Status", ["Available"])


def test_terraform_vpc_and_vswitch_in_place_update(tf: Provider, schema):
    """A changed vpc_name / description / enable_dns_hostname / resource_group_id / system route table
    name, description and propagation, and a changed vswitch_name / description: the provider's Update
    (ModifyVpcAttribute, MoveResourceGroup, ModifyRouteTableAttributes, ModifyVSwitchAttribute), then
    the Read of a second plan shows no diff and nothing else moved."""
    vpc_id = create_vpc(tf, "172.18.0.0/16", {"k": "v"})
    zone = vpn_gateway_zones(tf)[0]
    vsw = create_vswitch(tf, vpc_id, "172.18.1.0/24", zone)
    before, vbefore = vpc_state(tf, vpc_id), vswitch_state(tf, vsw)
    assert before["system_route_table_name"] == "" and before["system_route_table_description"] == ""
    assert before["system_route_table_route_propagation_enable"] is True

    # --- alicloud_vpc Update: the DescribeRouteTableList it always starts with, then each changed group.
    route_tables(tf, vpc_id)
    update_vpc(tf, vpc_id, {"VpcName": "tf-vpc-renamed", "Description": "tf vpc, changed"})
    update_vpc(tf, vpc_id, {"EnableDnsHostname": True})
    tf.call("MoveResourceGroup", body={"ResourceId": vpc_id, "RegionId": REGION, "ResourceType": "VPC",
                                       "NewResourceGroupId": "rg-tfmoved01"})
    tf.call("ModifyRouteTableAttributes", body={"RouteTableId": before["route_table_id"], "RegionId": REGION,
                                                "RouteTableName": "tf-system-table",
                                                "Description": "system table", "RoutePropagationEnable": False})
    # --- alicloud_vswitch Update
    tf.call("ModifyVSwitchAttribute", query={"VSwitchId": vsw},
            body={"RegionId": REGION, "VSwitchName": "tf-vsw-renamed", "Description": "tf vswitch, changed"})
    tf.wait("vswitch Available", lambda: vswitch_attribute(tf, vsw), "Status", ["Available"])

    # --- the second plan: every changed attribute reads back, the rest is as before
    config = {"vpc_name": "tf-vpc-renamed", "description": "tf vpc, changed", "enable_dns_hostname": True,
              "resource_group_id": "rg-tfmoved01", "system_route_table_name": "tf-system-table",
              "system_route_table_description": "system table", "system_route_table_route_propagation_enable": False}
    after = vpc_state(tf, vpc_id)
    assert_no_diff(config, after, "alicloud_vpc")
    assert_no_diff({k: v for k, v in before.items() if k not in config}, after, "alicloud_vpc (untouched)")
    vconfig = {"vswitch_name": "tf-vsw-renamed", "description": "tf vswitch, changed",
               "resource_group_id": "rg-tfmoved01"}  # a vswitch shows its VPC's group
    vafter = vswitch_state(tf, vsw)
    assert_no_diff(vconfig, vafter, "alicloud_vswitch")
    assert_no_diff({k: v for k, v in vbefore.items() if k not in vconfig}, vafter, "alicloud_vswitch (untouched)")
    assert_types(vpc_attribute(tf, vpc_id), schema("DescribeVpcAttributeResponseBody"))
    # DescribeVpcs / DescribeVSwitches see the new names and group.
    [listed] = unwrap(tf.call("DescribeVpcs", body={"RegionId": REGION, "ResourceGroupId": "rg-tfmoved01"}),
                      "Vpcs", "Vpc")
    assert (listed["VpcId"], listed["VpcName"]) == (vpc_id, "tf-vpc-renamed"), listed
    [item] = unwrap(tf.call("DescribeVSwitches", body={"RegionId": REGION, "VSwitchName": "tf-vsw-renamed"}),
                    "VSwitches", "VSwitch")
    assert item["VSwitchId"] == vsw and item["ResourceGroupId"] == "rg-tfmoved01", item
    # Nothing given: nothing changes. The VPC's own CidrBlock is accepted (Terraform sends it on a change
    # that normalises to the same block); EnableIPv6=false is Terraform's default.
    update_vpc(tf, vpc_id, {})
    update_vpc(tf, vpc_id, {"CidrBlock": "172.18.0.0/16", "EnableIPv6": False})
    tf.call("ModifyVSwitchAttribute", query={"VSwitchId": vsw}, body={"RegionId": REGION, "EnableIPv6": False})
    assert vpc_state(tf, vpc_id) == after and vswitch_state(tf, vsw) == vafter

    # --- refusals, with Alibaba's codes
    def err(action, body, query=None):
        return expect_error(lambda: tf.rpc(action, query=query, body={"RegionId": REGION, **body}))

    e = err("ModifyVpcAttribute", {"VpcId": "vpc-nope000000000000000", "VpcName": "x"})
    assert (e.http_status, e.code) == (404, "InvalidVpcId.NotFound"), e
    e = err("ModifyVpcAttribute", {"VpcId": vpc_id, "VpcName": "http://x"})
    assert (e.http_status, e.code) == (400, "InvalidName.Malformed"), e
    e = err("ModifyVpcAttribute", {"VpcId": vpc_id, "Description": "d" * 300})
    assert (e.http_status, e.code) == (400, "InvalidDescription.Malformed"), e
    e = err("ModifyVpcAttribute", {"VpcId": vpc_id, "CidrBlock": "172.18.0.0/15"})
    assert (e.http_status, e.code) == (400, "OperationUnsupported.CidrBlock"), e
    e = err("ModifyVpcAttribute", {"VpcId": vpc_id, "CidrBlock": "172.18.0.1/33"})
    assert (e.http_status, e.code) == (400, "InvalidCidrBlock.Malformed"), e
    e = err("ModifyVpcAttribute", {"VpcId": vpc_id, "EnableIPv6": True})
    assert (e.http_status, e.code) == (400, "InvalidParameter") and "EnableIPv6" in e.message, e
    e = err("ModifyVpcAttribute", {"VpcName": "x"})
    assert (e.http_status, e.code) == (400, "MissingParameter"), e
    e = err("ModifyVSwitchAttribute", {"VSwitchName": "x"}, {"VSwitchId": "vsw-nope0000000000000000"})
    assert (e.http_status, e.code) == (404, "InvalidVSwitchId.NotFound"), e
    e = err("ModifyVSwitchAttribute", {"VSwitchName": "https://x"}, {"VSwitchId": vsw})
    assert (e.http_status, e.code) == (400, "InvalidName.Malformed"), e
    e = err("ModifyVSwitchAttribute", {"Ipv6CidrBlock": "10"}, {"VSwitchId": vsw})
    assert (e.http_status, e.code) == (400, "InvalidParameter") and "Ipv6CidrBlock" in e.message, e
    e = err("MoveResourceGroup", {"ResourceId": vsw, "ResourceType": "VSwitch", "NewResourceGroupId": "rg-x1"})
    assert (e.http_status, e.code) == (400, "IllegalParam.ResourceType"), e
    e = err("MoveResourceGroup", {"ResourceId": "vpc-nope000000000000000", "ResourceType": "vpc",
                                  "NewResourceGroupId": "rg-x1"})
    assert (e.http_status, e.code) == (400, "InvalidResourceId.NotFound"), e
    e = err("MoveResourceGroup", {"ResourceId": vpc_id, "ResourceType": "Vpc", "NewResourceGroupId": "group-1"})
    assert (e.http_status, e.code) == (400, "InvalidParameter"), e
    e = err("ModifyRouteTableAttributes", {"RouteTableId": "vtb-nope00000000000000", "RouteTableName": "x"})
    assert (e.http_status, e.code) == (404, "InvalidRouteTableId.NotFound"), e
    e = err("ModifyRouteTableAttributes", {"RouteTableId": before["route_table_id"], "RouteTableName": "http://x"})
    assert (e.http_status, e.code) == (400, "InvalidName.Malformed"), e
    # Another account's VPC, vswitch and table do not exist for the caller.
    creds = tf.server.create_account("tfupd-" + uuid.uuid4().hex[:6])
    other = Provider(tf.server, creds["AccessKeyId"], creds["AccessKeySecret"], REGION)
    e = expect_error(lambda: other.rpc("ModifyVpcAttribute", body={"RegionId": REGION, "VpcId": vpc_id,
                                                                   "VpcName": "stolen"}))
    assert (e.http_status, e.code) == (404, "InvalidVpcId.NotFound"), e
    e = expect_error(lambda: other.rpc("ModifyVSwitchAttribute", query={"VSwitchId": vsw},
                                       body={"RegionId": REGION, "VSwitchName": "stolen"}))
    assert (e.http_status, e.code) == (404, "InvalidVSwitchId.NotFound"), e
    e = expect_error(lambda: other.rpc("MoveResourceGroup", body={"RegionId": REGION, "ResourceId": vpc_id,
                                                                  "ResourceType": "VPC", "NewResourceGroupId": "rg-x"}))
    assert (e.http_status, e.code) == (400, "InvalidResourceId.NotFound"), e
    assert vpc_state(tf, vpc_id) == after and vswitch_state(tf, vsw) == vafter

    # --- delete as usual
    tf.call("DeleteVSwitch", query={"VSwitchId": vsw}, body={"RegionId": REGION}, retry=["DependencyViolation"])
    tf.wait("vswitch gone", lambda: vswitch_attribute(tf, vsw), "Status", [])
    tf.call("DeleteVpc", body={"VpcId": vpc_id, "RegionId": REGION}, token="fresh")
    tf.wait("vpc gone", lambda: vpc_attribute(tf, vpc_id), "Status", [])
