"""The actions added for Terraform (tags, attribute updates, vswitches, zones) through all seven
client variants: typed calls where the SDK models have scalar parameters, the untyped path
(flattened `Tag.N.*` / `ResourceId.N`) for the list parameters, and every answer's JSON types
checked against the SDK's response models."""

from __future__ import annotations

from helpers import REGION, Stack, create_customer_gateway, create_gateway, create_vpc, expect_error, unwrap
from test_resources import checked


def test_new_actions_through_every_client(client, schema):
    st = Stack()
    create_vpc(client, st, client.variant)
    zones = checked(client, schema, "DescribeVpnGatewayAvailableZonesResponseBody",
                    client.call("DescribeVpnGatewayAvailableZones", {"RegionId": REGION, "Spec": "10M"}))
    zone_ids = [z["ZoneId"] for z in zones["AvailableZoneIdList"]]
    listed = checked(client, schema, "DescribeZonesResponseBody", client.call("DescribeZones", {"RegionId": REGION}))
    assert [z["ZoneId"] for z in unwrap(listed, "Zones", "Zone")] == zone_ids

    vsw = checked(client, schema, "CreateVSwitchResponseBody", client.call("CreateVSwitch", {
        "RegionId": REGION, "VpcId": st.vpc_id, "ZoneId": zone_ids[0], "CidrBlock": "192.168.10.0/24",
        "VSwitchName": "vsw-" + client.variant.replace("-", "")}))["VSwitchId"]
    attr = checked(client, schema, "DescribeVSwitchAttributesResponseBody",
                   client.call("DescribeVSwitchAttributes", {"RegionId": REGION, "VSwitchId": vsw}))
    assert (attr["VpcId"], attr["ZoneId"], attr["CidrBlock"], attr["Status"]) == \
        (st.vpc_id, zone_ids[0], "192.168.10.0/24", "Available")
    vsws = checked(client, schema, "DescribeVSwitchesResponseBody",
                   client.call("DescribeVSwitches", {"RegionId": REGION, "VpcId": st.vpc_id}))
    assert [v["VSwitchId"] for v in unwrap(vsws, "VSwitches", "VSwitch")] == [vsw]
    vpc = checked(client, schema, "DescribeVpcAttributeResponseBody",
                  client.call("DescribeVpcAttribute", {"RegionId": REGION, "VpcId": st.vpc_id}))
    assert unwrap(vpc, "VSwitchIds", "VSwitchId") == [vsw]

    # tags: list parameters through each client's untyped path
    client.call("TagResources", {"RegionId": REGION, "ResourceType": "VSWITCH", "ResourceId.1": vsw,
                                 "Tag.1.Key": "k1", "Tag.1.Value": "v1", "Tag.2.Key": "k2", "Tag.2.Value": ""},
                generic=True)
    tags = checked(client, schema, "ListTagResourcesResponseBody", client.call(
        "ListTagResources", {"RegionId": REGION, "ResourceType": "VSWITCH", "ResourceId.1": vsw}, generic=True))
    assert [(t["TagKey"], t["TagValue"]) for t in unwrap(tags, "TagResources", "TagResource")] == \
        [("k1", "v1"), ("k2", "")]
    assert tags["NextToken"] == ""
    client.call("UnTagResources", {"RegionId": REGION, "ResourceType": "VSWITCH", "ResourceId.1": vsw,
                                   "TagKey.1": "k1"}, generic=True)
    e = expect_error(lambda: client.call("TagResources", {
        "RegionId": REGION, "ResourceType": "VSWITCH", "ResourceId.1": vsw, "Tag.1.Key": "acs:x"}, generic=True))
    assert (e.http_status, e.code) == (400, "InvalidTagKey.Malformed"), e

    # attribute updates
    create_gateway(client, st, client.variant)
    out = checked(client, schema, "ModifyVpnGatewayAttributeResponseBody", client.call(
        "ModifyVpnGatewayAttribute", {"RegionId": REGION, "VpnGatewayId": st.gateway_id, "Description": "d1",
                                      "AutoPropagate": True}))
    assert (out["Description"], out["AutoPropagate"]) == ("d1", True), out
    create_customer_gateway(client, st, client.variant, ip="9.9.9.9")
    out = checked(client, schema, "ModifyCustomerGatewayAttributeResponseBody", client.call(
        "ModifyCustomerGatewayAttribute", {"RegionId": REGION, "CustomerGatewayId": st.cgw_id, "Name": "renamed"}))
    assert out["Name"] == "renamed", out
    cgw = client.call("DescribeCustomerGateway", {"RegionId": REGION, "CustomerGatewayId": st.cgw_id})
    assert "Asn" not in cgw, f"no ASN: the key is absent, got {cgw.get('Asn')!r}"

    # clean up in dependency order
    client.call("DeleteCustomerGateway", {"RegionId": REGION, "CustomerGatewayId": st.cgw_id})
    client.call("DeleteVpnGateway", {"RegionId": REGION, "VpnGatewayId": st.gateway_id})
    client.call("DeleteVSwitch", {"RegionId": REGION, "VSwitchId": vsw})
    client.call("DeleteVpc", {"RegionId": REGION, "VpcId": st.vpc_id})
