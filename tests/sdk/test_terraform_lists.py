"""The list filters Terraform's data sources and `terraform import` lean on, MoveVpnResourceGroup
carrying a gateway's connections and SSL-VPN server along, and a repeated DeleteVpnGateway, replayed
through the Python Tea SDK as the provider makes the calls (shared/spec/terraform-calls.md §3, §9).

* Tag.N (all must match, a key alone = any value) and ResourceGroupId on DescribeVpnConnections,
  DescribeCustomerGateways, DescribeVSwitches; ResourceGroupId on DescribeSslVpnServers (SSL-VPN
  servers carry no tags: TagResources has no type for them).
* MoveVpnResourceGroup `VpnGateWay`: the gateway's connections and SSL-VPN server show the new
  group and the filters follow; customer gateways keep theirs.
* DeleteVpnGateway twice: the SDK's own retry (same body and ClientToken) gets the stored success;
  a new call (new token) gets `InvalidVpnGatewayInstanceId.NotFound` (404).
"""

from __future__ import annotations

from typing import Any, Dict, List

from helpers import expect_error, unwrap
from terraform import Provider, tags_of, tags_params
from test_terraform_connection import CREATE_RETRY, create_cgw, delete_connection, describe_connection
from test_terraform_gateway import create_gateway, delete_gateway, describe_gateway, describe_ssl, network
from test_terraform_vpc import create_vpc, create_vswitch, vpc_attribute

REGION = "cn-hangzhou"


def ids(tf: Provider, action: str, wrapper: str, item: str, key: str, **filters: Any) -> List[str]:
    body = tf.call(action, body={"RegionId": REGION, "PageSize": 50, "PageNumber": 1, **filters})
    return [x[key] for x in unwrap(body, wrapper, item)]


def connections(tf: Provider, **f: Any) -> List[str]:
    return ids(tf, "DescribeVpnConnections", "VpnConnections", "VpnConnection", "VpnConnectionId", **f)


def cgws(tf: Provider, **f: Any) -> List[str]:
    return ids(tf, "DescribeCustomerGateways", "CustomerGateways", "CustomerGateway", "CustomerGatewayId", **f)


def vswitches(tf: Provider, **f: Any) -> List[str]:
    return ids(tf, "DescribeVSwitches", "VSwitches", "VSwitch", "VSwitchId", **f)


def ssl_servers(tf: Provider, **f: Any) -> List[str]:
    return ids(tf, "DescribeSslVpnServers", "SslVpnServers", "SslVpnServer", "SslVpnServerId", **f)


def connect(tf: Provider, gw: str, cgw: str, remote: str, tags: Dict[str, str]) -> str:
    body = {"RegionId": REGION, "VpnGatewayId": gw, "CustomerGatewayId": cgw, "LocalSubnet": "172.21.0.0/24",
            "RemoteSubnet": remote, "Name": "tf-list-" + remote.split("/")[0], **tags_params(tags, "Tags")}
    vco = tf.call("CreateVpnConnection", body=body, retry=CREATE_RETRY, token="fresh")["VpnConnectionId"]
    tf.wait("connection active", lambda: describe_connection(tf, vco), "State", ["active"])
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])
    return vco


def ssl_server(tf: Provider, gw: str, pool: str) -> str:
    sid = tf.call("CreateSslVpnServer", body={"RegionId": REGION, "VpnGatewayId": gw, "ClientIpPool": pool,
                                              "LocalSubnet": "172.21.0.0/16"},
                  retry=["VpnGateway.Configuring"], token="fixed", retry_need_retry=False)["SslVpnServerId"]
    tf.wait("ssl server listed", lambda: describe_ssl(tf, sid), "SslVpnServerId", [sid])
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])
    return sid


def test_tag_and_resource_group_filters_and_moving_a_gateway(tf: Provider):
    net = network(tf, "172.21")
    team = {"Team": "a"}
    gw_a = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": "10", "vswitch_id": net["vsw1"],
                               "enable_ssl": True, "resource_group_id": "rg-tflista"})
    gw_b = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": "10", "vswitch_id": net["vsw2"],
                               "enable_ssl": True})
    # customer gateways: one tagged and in rg-tflista (Tags.N and ResourceGroupId on Create), one plain
    cgw_a = tf.call("CreateCustomerGateway", body={"RegionId": REGION, "IpAddress": "5.6.21.1", "Name": "tf-cgw-a",
                                                   "ResourceGroupId": "rg-tflista", **tags_params(team, "Tags")},
                    token="fresh")["CustomerGatewayId"]
    cgw_b = create_cgw(tf, "5.6.21.2")
    vco_a = connect(tf, gw_a, cgw_a, "10.21.1.0/24", team)
    vco_b = connect(tf, gw_b, cgw_b, "10.21.2.0/24", {})
    ssl_a = ssl_server(tf, gw_a, "10.121.1.0/24")
    ssl_b = ssl_server(tf, gw_b, "10.121.2.0/24")
    tf.set_tags("VSWITCH", net["vsw1"], {}, team)

    # --- Tag.N: all must match; a key alone matches any value; another value matches nothing
    assert connections(tf, **tags_params(team)) == [vco_a]
    assert connections(tf, **{"Tag.1.Key": "Team"}) == [vco_a]
    assert connections(tf, **tags_params({"Team": "b"})) == []
    assert connections(tf, **tags_params({"Team": "a", "Other": "x"})) == []
    assert cgws(tf, **tags_params(team)) == [cgw_a]
    assert cgws(tf, **{"Tag.1.Key": "Team"}) == [cgw_a]
    assert cgws(tf, **tags_params({"Team": "b"})) == []
    assert vswitches(tf, **tags_params(team)) == [net["vsw1"]]
    assert vswitches(tf, VpcId=net["vpc_id"], **{"Tag.1.Key": "Team"}) == [net["vsw1"]]
    assert vswitches(tf, **tags_params({"Team": "b"})) == []
    # the tags are shown where the data sources read them
    [item] = unwrap(tf.call("DescribeVpnConnections", body={"RegionId": REGION, **tags_params(team)}),
                    "VpnConnections", "VpnConnection")
    assert tags_of(item, "Tag") == team, item

    # --- ResourceGroupId: connections and SSL servers take their gateway's group
    assert connections(tf, ResourceGroupId="rg-tflista") == [vco_a]
    assert cgws(tf, ResourceGroupId="rg-tflista") == [cgw_a]
    assert ssl_servers(tf, ResourceGroupId="rg-tflista") == [ssl_a]
    assert ssl_servers(tf, ResourceGroupId="rg-nothing") == []
    default_rg = describe_gateway(tf, gw_b)["ResourceGroupId"]
    assert connections(tf, ResourceGroupId=default_rg) == [vco_b]
    assert ssl_servers(tf, ResourceGroupId=default_rg) == [ssl_b]
    # both filters together
    assert connections(tf, ResourceGroupId="rg-tflista", **tags_params(team)) == [vco_a]
    assert connections(tf, ResourceGroupId=default_rg, **tags_params(team)) == []
    # vswitches show (and filter on) their VPC's group: move the VPC, then compare with another VPC's
    other_vpc = create_vpc(tf, "172.22.0.0/16", {})
    other_vsw = create_vswitch(tf, other_vpc, "172.22.1.0/24", net["zones"][0])
    tf.call("MoveResourceGroup", body={"ResourceId": net["vpc_id"], "RegionId": REGION, "ResourceType": "VPC",
                                       "NewResourceGroupId": "rg-tflistv"})
    assert vpc_attribute(tf, net["vpc_id"])["ResourceGroupId"] == "rg-tflistv"
    assert sorted(vswitches(tf, ResourceGroupId="rg-tflistv")) == sorted([net["vsw1"], net["vsw2"]])
    assert vswitches(tf, ResourceGroupId="rg-tflistv", **tags_params(team)) == [net["vsw1"]]
    assert other_vsw in vswitches(tf, ResourceGroupId=default_rg)
    # the VPC's gateways keep their own groups
    assert describe_gateway(tf, gw_a)["ResourceGroupId"] == "rg-tflista"

    # --- MoveVpnResourceGroup of a gateway: its connections and SSL server move with it
    tf.call("MoveVpnResourceGroup", query={"InstanceId": gw_a},
            body={"RegionId": REGION, "NewResourceGroupId": "rg-tflistb", "ResourceType": "VpnGateWay"})
    assert describe_gateway(tf, gw_a)["ResourceGroupId"] == "rg-tflistb"
    assert describe_connection(tf, vco_a)["ResourceGroupId"] == "rg-tflistb"
    assert describe_ssl(tf, ssl_a)["ResourceGroupId"] == "rg-tflistb"
    assert connections(tf, ResourceGroupId="rg-tflistb") == [vco_a]
    assert ssl_servers(tf, ResourceGroupId="rg-tflistb") == [ssl_a]
    assert connections(tf, ResourceGroupId="rg-tflista") == []
    assert ssl_servers(tf, ResourceGroupId="rg-tflista") == []
    # the other gateway's resources and the customer gateway (not a child of the gateway) stay put
    assert describe_connection(tf, vco_b)["ResourceGroupId"] == default_rg
    assert cgws(tf, ResourceGroupId="rg-tflista") == [cgw_a]
    # a connection's own tags did not move anywhere
    assert tags_of(describe_connection(tf, vco_a)) == team

    # --- tear down; DeleteVpnGateway repeated
    for vco in (vco_a, vco_b):
        delete_connection(tf, vco)
    for sid in (ssl_a, ssl_b):
        tf.call("DeleteSslVpnServer", body={"RegionId": REGION, "SslVpnServerId": sid},
                retry=["VpnGateway.Configuring"], retry_need_retry=False)
        tf.wait("ssl server gone", lambda: describe_ssl(tf, sid), "SslVpnServerId", [])
    for gw in (gw_a, gw_b):
        tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])
    # The SDK's autoRetry after a lost answer resends the same body and ClientToken: the stored success.
    body = {"RegionId": REGION, "ClientToken": "TF-DeleteVpnGateway-repeat-" + gw_b[-12:]}
    first = tf.rpc("DeleteVpnGateway", query={"VpnGatewayId": gw_b}, body=body)
    again = tf.rpc("DeleteVpnGateway", query={"VpnGatewayId": gw_b}, body=body)
    assert first["RequestId"] != again["RequestId"] and set(again) == {"RequestId"}, again
    # A new call (the provider makes a new token per attempt) on a gone gateway: 404. The provider's
    # Delete does not list this code (it tolerates INSTANCE_NOT_EXISTS, IncorrectStatus.VpnGateway,
    # InvalidVpnGatewayId.NotFound), so `terraform destroy` reports it; its next refresh drops the
    # gateway (any 404 = gone) and the destroy after that succeeds.
    e = expect_error(lambda: tf.rpc("DeleteVpnGateway", query={"VpnGatewayId": gw_b}, body={"RegionId": REGION}))
    assert (e.http_status, e.code) == (404, "InvalidVpnGatewayInstanceId.NotFound"), e
    assert describe_gateway(tf, gw_b) is None
    delete_gateway(tf, gw_a)
    e = expect_error(lambda: tf.rpc("DeleteVpnGateway", query={"VpnGatewayId": gw_a},
                                    body={"RegionId": REGION, "ClientToken": "TF-DeleteVpnGateway-new"}))
    assert (e.http_status, e.code) == (404, "InvalidVpnGatewayInstanceId.NotFound"), e
    tf.call("DeleteCustomerGateway", body={"RegionId": REGION, "CustomerGatewayId": cgw_a}, token="fresh")
    tf.call("DeleteCustomerGateway", body={"RegionId": REGION, "CustomerGatewayId": cgw_b}, token="fresh")
