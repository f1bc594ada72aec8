"""Terraform's `alicloud_vpn_connection` (single- and dual-tunnel) and the routes on a dual-tunnel
connection, replayed through the Python Tea SDK as the provider makes the calls
(shared/spec/terraform-calls.md §5, §6; alibaba-api-surface.md §5.2).

* single tunnel: CreateVpnConnection (JSON configs, Tags.N) → wait State=active → the Update that
  follows Create (a written health_check_config → ModifyVpnConnectionAttribute, retried while the
  gateway is busy; tags) → Read → a change → Delete → wait gone. Unset numbers in the configs go out
  as 0, which means "default".
* dual tunnel: a gateway with VSwitchId + DisasterRecoveryVSwitchId, a connection with
  TunnelOptionsSpecification.N.* and no CustomerGatewayId, two tunnels in DescribeVpnConnection,
  Terraform's policy-route flow on it, and the standby tunnel in force when the master is down.
* asynchronous creation: CreateVpnConnection puts the gateway in `updating`; concurrent changes get
  the busy code.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from helpers import assert_types, expect_error, unwrap
from server import Server
from terraform import Provider, assert_no_diff, tags_of, tags_params
from test_routes import explain_http, set_tunnel_http
from test_terraform_gateway import create_gateway, describe_gateway, network

REGION = "cn-hangzhou"
CREATE_RETRY = ["Appliance.Configuring", "VpnGateway.Configuring", "VpnTask.CONFLICT", "VpnConnection.Configuring"]
MODIFY_RETRY = ["VpnGateway.Configuring", "VpnTask.CONFLICT"]
ROUTE_RETRY = ["VpnGateway.Configuring", "TaskConflict", "Appliance.Configuring", "VpnTask.CONFLICT",
               "VpnConnection.Configuring"]



def describe_connection(tf: Provider, vco: str):
    return tf.describe("DescribeVpnConnection", query={"VpnConnectionId": vco, "RegionId": REGION}, body={})


def create_cgw(tf: Provider, ip: str, asn: str = "") -> str:
    body = {"RegionId": REGION, "IpAddress": ip, "Name": "tf-cgw-" + ip.replace(".", "-")}
    if asn:
        body["Asn"] = asn
    return tf.call("CreateCustomerGateway", body=body, retry=["OperationConflict"], token="fresh")["CustomerGatewayId"]


# --------------------------------------------------------------------------- config → wire → state


def ike_json(c: Dict[str, Any]) -> str:
    """The provider's IkeConfig: empty strings dropped, unset numbers sent as 0."""
    m = {"Psk": c.get("psk", ""), "IkeVersion": c.get("ike_version", ""), "IkeMode": c.get("ike_mode", ""),
         "IkeEncAlg": c.get("ike_enc_alg", ""), "IkeAuthAlg": c.get("ike_auth_alg", ""),
         "IkePfs": c.get("ike_pfs", ""), "IkeLifetime": c.get("ike_lifetime", 0),
         "LocalId": c.get("ike_local_id", ""), "RemoteId": c.get("ike_remote_id", "")}
    return json.dumps({k: v for k, v in m.items() if v != ""})


def ipsec_json(c: Dict[str, Any]) -> str:
    m = {"IpsecEncAlg": c.get("ipsec_enc_alg", ""), "IpsecAuthAlg": c.get("ipsec_auth_alg", ""),
         "IpsecPfs": c.get("ipsec_pfs", ""), "IpsecLifetime": c.get("ipsec_lifetime", 0)}
    return json.dumps({k: v for k, v in m.items() if v != ""})


def health_json(c: Dict[str, Any]) -> str:
    m = {"enable": c.get("enable", False), "dip": c.get("dip", ""), "sip": c.get("sip", ""),
         "interval": c.get("interval", 0), "retry": c.get("retry", 0)}
    return json.dumps({k: v for k, v in m.items() if v != ""})


def bgp_json(c: Dict[str, Any]) -> str:
    m = {"LocalAsn": c.get("local_asn", ""), "TunnelCidr": c.get("tunnel_cidr", ""),
         "LocalBgpIp": c.get("local_bgp_ip", ""), "EnableBgp": c.get("enable", False)}
    return json.dumps({k: v for k, v in m.items() if v != ""})


def as_bool(v: Any) -> bool:
    """formatBool (common.go L1177): a bool or "true"/"false", nothing else."""
    if isinstance(v, bool):
        return v
    assert v in ("true", "false"), f"not a bool: {v!r} (the provider panics)"
    return v == "true"


def connection_state(c: Dict[str, Any]) -> Dict[str, Any]:
    """resourceAliCloudVPNGatewayVpnConnectionRead (L723–902)."""
    for block in ("IkeConfig", "IpsecConfig", "VpnBgpConfig", "VcoHealthCheck"):
        assert isinstance(c[block], dict), f"{block} must be an object (the provider panics): {c[block]!r}"
    assert isinstance(c["TunnelOptionsSpecification"]["TunnelOptions"], list), c["TunnelOptionsSpecification"]
    ike, ipsec, bgp, hc = c["IkeConfig"], c["IpsecConfig"], c["VpnBgpConfig"], c["VcoHealthCheck"]
    return {
        "customer_gateway_id": c["CustomerGatewayId"], "effect_immediately": c["EffectImmediately"],
        "enable_dpd": c["EnableDpd"], "enable_nat_traversal": c["EnableNatTraversal"],
        "enable_tunnels_bgp": c["EnableTunnelsBgp"], "vpn_connection_name": c["Name"],
        "vpn_gateway_id": c["VpnGatewayId"], "status": c["Status"], "resource_group_id": c["ResourceGroupId"],
        "local_subnet": sorted(c["LocalSubnet"].split(",")), "remote_subnet": sorted(c["RemoteSubnet"].split(",")),
        "tags": tags_of(c),
        "ike_config": {"psk": ike["Psk"], "ike_version": ike["IkeVersion"], "ike_mode": ike["IkeMode"],
                       "ike_enc_alg": ike["IkeEncAlg"], "ike_auth_alg": ike["IkeAuthAlg"], "ike_pfs": ike["IkePfs"],
                       "ike_lifetime": ike["IkeLifetime"], "ike_local_id": ike["LocalId"],
                       "ike_remote_id": ike["RemoteId"]},
        "ipsec_config": {"ipsec_enc_alg": ipsec["IpsecEncAlg"], "ipsec_auth_alg": ipsec["IpsecAuthAlg"],
                         "ipsec_pfs": ipsec["IpsecPfs"], "ipsec_lifetime": ipsec["IpsecLifetime"]},
        "health_check_config": {"enable": as_bool(hc["Enable"]), "dip": hc["Dip"], "sip": hc["Sip"],
                                "interval": hc["Interval"], "retry": hc["Retry"]},
        "bgp_config": {"enable": as_bool(bgp["EnableBgp"]), "local_asn": str(bgp["LocalAsn"]),
                       "tunnel_cidr": bgp["TunnelCidr"], "local_bgp_ip": bgp["LocalBgpIp"]},
        "tunnel_options_specification": [tunnel_state(t) for t in c["TunnelOptionsSpecification"]["TunnelOptions"]],
    }


def tunnel_state(t: Dict[str, Any]) -> Dict[str, Any]:
    ike, ipsec, bgp = t["TunnelIkeConfig"], t["TunnelIpsecConfig"], t["TunnelBgpConfig"]
    return {
        "customer_gateway_id": t["CustomerGatewayId"], "role": t["Role"], "enable_dpd": as_bool(t["EnableDpd"]),
        "enable_nat_traversal": as_bool(t["EnableNatTraversal"]),
        "tunnel_ike_config": {"ike_auth_alg": ike["IkeAuthAlg"], "ike_enc_alg": ike["IkeEncAlg"],
                              "ike_lifetime": int(ike["IkeLifetime"]), "ike_mode": ike["IkeMode"],
                              "ike_pfs": ike["IkePfs"], "ike_version": ike["IkeVersion"], "local_id": ike["LocalId"],
                              "psk": ike["Psk"], "remote_id": ike["RemoteId"]},
        "tunnel_ipsec_config": {"ipsec_auth_alg": ipsec["IpsecAuthAlg"], "ipsec_enc_alg": ipsec["IpsecEncAlg"],
                                "ipsec_lifetime": int(ipsec["IpsecLifetime"]), "ipsec_pfs": ipsec["IpsecPfs"]},
        "tunnel_bgp_config": {"local_asn": str(bgp["LocalAsn"]), "tunnel_cidr": bgp["TunnelCidr"],
                              "local_bgp_ip": bgp["LocalBgpIp"]},
    }


def tunnel_params(n: int, t: Dict[str, Any]) -> Dict[str, Any]:
    """TunnelOptionsSpecification.N.* as the provider flattens one block."""
    p = f"TunnelOptionsSpecification.{n}."
    out: Dict[str, Any] = {p + "CustomerGatewayId": t["customer_gateway_id"], p + "Role": t["role"],
                           p + "EnableDpd": t["enable_dpd"], p + "EnableNatTraversal": t["enable_nat_traversal"]}
    names = {"tunnel_ike_config": ("TunnelIkeConfig", {"ike_auth_alg": "IkeAuthAlg", "ike_enc_alg": "IkeEncAlg",
                                                        "ike_lifetime": "IkeLifetime", "ike_mode": "IkeMode",
                                                        "ike_pfs": "IkePfs", "ike_version": "IkeVersion",
                                                        "local_id": "LocalId", "psk": "Psk", "remote_id": "RemoteId"}),
             "tunnel_ipsec_config": ("TunnelIpsecConfig", {"ipsec_auth_alg": "IpsecAuthAlg",
                                                           "ipsec_enc_alg": "IpsecEncAlg",
                                                           "ipsec_lifetime": "IpsecLifetime", "ipsec_pfs": "IpsecPfs"}),
             "tunnel_bgp_config": ("TunnelBgpConfig", {"local_asn": "LocalAsn", "tunnel_cidr": "TunnelCidr",
                                                       "local_bgp_ip": "LocalBgpIp"})}
    for block, (wire_block, fields) in names.items():
        for attr, param in fields.items():
            out[f"{p}{wire_block}.{param}"] = t[block][attr]
    return out


def delete_connection(tf: Provider, vco: str) -> None:
    tf.call("DeleteVpnConnection", query={"VpnConnectionId": vco}, body={"RegionId": REGION}, token="fresh",
            retry=["VpnGateway.Configuring", "Appliance.Configuring", "VpnTask.CONFLICT", "VpnConnection.Configuring"])
    tf.wait("connection gone", lambda: describe_connection(tf, vco), "State", [])


# --------------------------------------------------------------------------- single tunnel


def test_terraform_vpn_connection_single_tunnel(tf: Provider, schema):
    net = network(tf)
    gw = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": "10", "vswitch_id": net["vsw1"]})
    cgw = create_cgw(tf, "5.6.7.8", asn="65100")
    ike = {"ike_auth_alg": "md5", "ike_enc_alg": "aes", "ike_version": "ikev2", "ike_mode": "main",
           "ike_lifetime": 86400, "psk": "tf-test", "ike_pfs": "group1", "ike_remote_id": "testbob2",
           "ike_local_id": "testalice2"}
    ipsec = {"ipsec_pfs": "group5", "ipsec_enc_alg": "aes", "ipsec_auth_alg": "md5", "ipsec_lifetime": 8640}
    health = {"enable": True, "sip": "172.16.1.1", "dip": "10.0.0.1", "interval": 10, "retry": 10}
    bgp = {"enable": False, "local_asn": "45104", "tunnel_cidr": "", "local_bgp_ip": ""}
    config = {"vpn_gateway_id": gw, "customer_gateway_id": cgw, "vpn_connection_name": "tf-vco",
              "local_subnet": ["172.16.0.0/24", "172.16.1.0/24"], "remote_subnet": ["10.0.0.0/24", "10.0.1.0/24"],
              "effect_immediately": True, "enable_dpd": True, "enable_nat_traversal": True,
              "ike_config": ike, "ipsec_config": ipsec, "health_check_config": health, "bgp_config": bgp,
              "tags": {"Created": "TF"}, "tunnel_options_specification": []}
    body = {"RegionId": REGION, "VpnGatewayId": gw, "LocalSubnet": ",".join(config["local_subnet"]),
            "RemoteSubnet": ",".join(config["remote_subnet"]), "CustomerGatewayId": cgw, "Name": "tf-vco",
            "EffectImmediately": True, "EnableDpd": True, "EnableNatTraversal": True,
            "IkeConfig": ike_json(ike), "IpsecConfig": ipsec_json(ipsec), "HealthCheckConfig": health_json(health),
            "BgpConfig": bgp_json(bgp), **tags_params(config["tags"], "Tags")}
    out = tf.call("CreateVpnConnection", body=body, retry=CREATE_RETRY, token="fresh")
    vco = out["VpnConnectionId"]
    assert isinstance(out["CreateTime"], int) and out["Name"] == "tf-vco", out
    tf.wait("connection active", lambda: describe_connection(tf, vco), "State", ["active"])
    # Update at Create: health_check_config is written → ModifyVpnConnectionAttribute (gateway still busy
    # with the connection's task: retried), then tags although Create already sent them.
    out = tf.call("ModifyVpnConnectionAttribute", query={"VpnConnectionId": vco},
                  body={"RegionId": REGION, "LocalSubnet": body["LocalSubnet"], "RemoteSubnet": body["RemoteSubnet"],
                        "HealthCheckConfig": health_json(health)}, retry=MODIFY_RETRY, token="fresh")
    assert_types(out, schema("ModifyVpnConnectionAttributeResponseBody"))
    assert (out["VpnConnectionId"], out["Name"], out["VcoHealthCheck"]["Interval"]) == (vco, "tf-vco", 10), out
    tf.wait("connection active", lambda: describe_connection(tf, vco), "State", ["active"])
    tf.set_tags("VPNCONNECTION", vco, {}, config["tags"])

    c = describe_connection(tf, vco)
    assert_types(c, schema("DescribeVpnConnectionResponseBody"))
    state = connection_state(c)
    assert_no_diff(config, state, "alicloud_vpn_connection")
    assert state["status"] == "ipsec_sa_established", state

    # --- a change: name, a subnet, IKE psk + lifetime, health interval, dpd
    ike2 = dict(ike, psk="tf-test-2", ike_lifetime=3600)
    health2 = dict(health, interval=5)
    config.update(vpn_connection_name="tf-vco-2", local_subnet=["172.16.0.0/24"], ike_config=ike2,
                  health_check_config=health2, enable_dpd=False)
    tf.call("ModifyVpnConnectionAttribute", query={"VpnConnectionId": vco},
            body={"RegionId": REGION, "LocalSubnet": "172.16.0.0/24", "RemoteSubnet": body["RemoteSubnet"],
                  "Name": "tf-vco-2", "IkeConfig": ike_json(ike2), "HealthCheckConfig": health_json(health2),
                  "EnableDpd": False}, retry=MODIFY_RETRY, token="fresh")
    tf.wait("connection active", lambda: describe_connection(tf, vco), "State", ["active"])
    state = connection_state(describe_connection(tf, vco))
    assert_no_diff(config, state, "alicloud_vpn_connection after change")
    # the data source (DescribeVpnConnections, legacy list model) shows the same
    listed = tf.call("DescribeVpnConnections", body={"RegionId": REGION, "PageSize": 50, "PageNumber": 1,
                                                     "VpnGatewayId": gw})
    [item] = unwrap(listed, "VpnConnections", "VpnConnection")
    assert (item["Name"], item["LocalSubnet"], item["IkeConfig"]["Psk"]) == ("tf-vco-2", "172.16.0.0/24",
                                                                             "tf-test-2"), item
    assert tags_of(item, "Tag") == {"Created": "TF"}
    # validation of what is modified
    e = expect_error(lambda: tf.rpc("ModifyVpnConnectionAttribute", query={"VpnConnectionId": vco},
                                    body={"RegionId": REGION, "IkeConfig": json.dumps({"IkeEncAlg": "rot13"})}))
    assert (e.http_status, e.code) == (400, "InvalidParameter"), e
    e = expect_error(lambda: tf.rpc("ModifyVpnConnectionAttribute", query={"VpnConnectionId": "vco-nope"},
                                    body={"RegionId": REGION, "Name": "x"}))
    assert (e.http_status, e.code) == (404, "InvalidVpnConnectionInstanceId.NotFound"), e

    delete_connection(tf, vco)


def test_zero_means_default_in_connection_configs(tf: Provider):
    """Terraform sends 0 for every unset number: interval/retry 0 and lifetimes 0 are the defaults."""
    net = network(tf, "172.18")
    gw = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": "10", "vswitch_id": net["vsw1"]})
    cgw = create_cgw(tf, "5.6.7.9")
    out = tf.call("CreateVpnConnection", body={
        "RegionId": REGION, "VpnGatewayId": gw, "CustomerGatewayId": cgw, "LocalSubnet": "172.18.0.0/24",
        "RemoteSubnet": "10.1.0.0/24", "IkeConfig": ike_json({"psk": "p"}), "IpsecConfig": ipsec_json({}),
        "HealthCheckConfig": health_json({"enable": True, "sip": "172.18.1.1", "dip": "10.1.0.1"}),
    }, retry=CREATE_RETRY, token="fresh")
    c = tf.wait("active", lambda: describe_connection(tf, out["VpnConnectionId"]), "State", ["active"])
    assert (c["VcoHealthCheck"]["Interval"], c["VcoHealthCheck"]["Retry"]) == (3, 3), c["VcoHealthCheck"]
    assert c["IkeConfig"]["IkeLifetime"] == 86400 and c["IpsecConfig"]["IpsecLifetime"] == 86400, c
    assert c["Name"] == out["VpnConnectionId"] == out["Name"], "an unnamed connection is named after its id"
    delete_connection(tf, out["VpnConnectionId"])


# --------------------------------------------------------------------------- asynchronous creation


def test_create_connection_is_asynchronous(tf_server: Server, tf: Provider):
    net = network(tf, "172.19")
    gw = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": "10", "vswitch_id": net["vsw1"]})
    cgw = create_cgw(tf, "5.6.7.10")
    tf_server.admin("gateway", "set-task-duration", gw, "manual")
    base = {"RegionId": REGION, "VpnGatewayId": gw, "CustomerGatewayId": cgw, "LocalSubnet": "172.19.0.0/24",
            "RemoteSubnet": "10.2.0.0/24"}
    vco = tf.rpc("CreateVpnConnection", body=base)["VpnConnectionId"]
    assert describe_gateway(tf, gw)["Status"] == "updating"
    assert describe_connection(tf, vco)["State"] == "active", "the connection itself is visible at once"
    for action, body in (("CreateVpnConnection", {**base, "RemoteSubnet": "10.3.0.0/24"}),
                         ("DeleteVpnConnection", {"RegionId": REGION, "VpnConnectionId": vco}),
                         ("ModifyVpnConnectionAttribute", {"RegionId": REGION, "VpnConnectionId": vco,
                                                           "LocalSubnet": "172.19.1.0/24",
                                                           "RemoteSubnet": "10.2.0.0/24"}),
                         ("CreateVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": "10.9.0.0/24",
                                                  "NextHop": vco, "Weight": 100, "PublishVpc": False})):
        e = expect_error(lambda: tf.rpc(action, body=body))
        assert (e.http_status, e.code) == (400, "VpnGateway.Configuring"), (action, e)
    # attribute-only changes are not queued behind the task
    tf.rpc("ModifyVpnConnectionAttribute", body={"RegionId": REGION, "VpnConnectionId": vco, "Name": "renamed"})
    tf.rpc("ModifyVpnGatewayAttribute", body={"RegionId": REGION, "VpnGatewayId": gw, "Description": "d"})
    tf_server.admin("gateway", "advance", gw)
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])
    tf_server.admin("gateway", "set-task-duration", gw, "default")
    delete_connection(tf, vco)


# --------------------------------------------------------------------------- dual tunnel


def test_terraform_dual_tunnel_connection_and_policy_routes(tf_server: Server, tf: Provider, schema):
    net = network(tf, "172.21")
    gw = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": "10", "vswitch_id": net["vsw1"],
                             "disaster_recovery_vswitch_id": net["vsw2"]})
    g = describe_gateway(tf, gw)
    cgw1, cgw2 = create_cgw(tf, "6.6.6.1", "65201"), create_cgw(tf, "6.6.6.2", "65202")

    def tunnel(role: str, cgw: str, n: int) -> Dict[str, Any]:
        return {"customer_gateway_id": cgw, "role": role, "enable_dpd": True, "enable_nat_traversal": True,
                "tunnel_ike_config": {"ike_auth_alg": "md5", "ike_enc_alg": "aes256", "ike_lifetime": 3600,
                                      "ike_mode": "aggressive", "ike_pfs": "group5", "ike_version": "ikev1",
                                      "local_id": f"localid_tunnel{n}", "psk": "12345678", "remote_id": f"remote{n}"},
                "tunnel_ipsec_config": {"ipsec_auth_alg": "md5", "ipsec_enc_alg": "aes256", "ipsec_lifetime": 16400,
                                        "ipsec_pfs": "group5"},
                "tunnel_bgp_config": {"local_asn": "1219002", "tunnel_cidr": f"169.254.{30 + n}.0/30",
                                      "local_bgp_ip": f"169.254.{30 + n}.1"}}

    tunnels = [tunnel("master", cgw1, 1), tunnel("slave", cgw2, 2)]
    body: Dict[str, Any] = {"RegionId": REGION, "VpnGatewayId": gw, "LocalSubnet": "3.0.0.0/24",
                            "RemoteSubnet": "10.0.0.0/24,10.0.1.0/24", "Name": "tf-dual", "EffectImmediately": True,
                            "EnableTunnelsBgp": True}
    for n, t in enumerate(tunnels, start=1):
        body.update(tunnel_params(n, t))
    out = tf.call("CreateVpnConnection", body=body, retry=CREATE_RETRY, token="fresh")
    vco = out["VpnConnectionId"]
    c = tf.wait("connection active", lambda: describe_connection(tf, vco), "State", ["active"])
    assert_types(c, schema("DescribeVpnConnectionResponseBody"))
    state = connection_state(c)
    assert state["customer_gateway_id"] == "", "dual-tunnel: the customer gateways are per tunnel"
    assert_no_diff({"tunnel_options_specification": tunnels, "enable_tunnels_bgp": True, "vpn_gateway_id": gw,
                    "local_subnet": ["3.0.0.0/24"], "remote_subnet": ["10.0.0.0/24", "10.0.1.0/24"]},
                   state, "dual-tunnel alicloud_vpn_connection")
    # the data source (DescribeVpnConnections) shows the same tunnels, typed as its list model
    listed = tf.call("DescribeVpnConnections", body={"RegionId": REGION, "VpnGatewayId": gw})
    assert_types(listed, schema("DescribeVpnConnectionsResponseBody"))
    [item] = unwrap(listed, "VpnConnections", "VpnConnection")
    assert [tunnel_state(t) for t in item["TunnelOptionsSpecification"]["TunnelOptions"]] == tunnels
    opts = c["TunnelOptionsSpecification"]["TunnelOptions"]
    assert [t["Role"] for t in opts] == ["master", "slave"]
    assert [t["ZoneNo"] for t in opts] == net["zones"][:2], "each tunnel in its vswitch's zone"
    assert [t["InternetIp"] for t in opts] == [g["InternetIp"], g["DisasterRecoveryInternetIp"]]
    assert all(t["TunnelId"].startswith("tun-") and t["State"] == "active" for t in opts), opts
    assert [t["Status"] for t in opts] == ["ipsec_sa_established"] * 2
    assert [t["TunnelBgpConfig"]["PeerAsn"] for t in opts] in ([65201, 65202], ["65201", "65202"]), opts
    master, slave = opts[0]["TunnelId"], opts[1]["TunnelId"]
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])

    # validation: dual-tunnel gateways need two tunnels (master + slave); single-tunnel ones take none
    half = {k: v for k, v in body.items() if not k.startswith("TunnelOptionsSpecification.2.")}
    e = expect_error(lambda: tf.rpc("CreateVpnConnection", body=half))
    assert (e.http_status, e.code) == (400, "InvalidParameter"), e
    e = expect_error(lambda: tf.rpc("CreateVpnConnection", body={**body, "TunnelOptionsSpecification.2.Role": "master"}))
    assert (e.http_status, e.code) == (400, "InvalidParameter"), e
    e = expect_error(lambda: tf.rpc("CreateVpnConnection", body={
        k: v for k, v in body.items() if not k.startswith("TunnelOptionsSpecification.")}))
    assert (e.http_status, e.code) == (400, "MissingParameter"), e
    e = expect_error(lambda: tf.rpc("CreateVpnConnection", body={**body, "TunnelOptionsSpecification.1.CustomerGatewayId":
                                                                 "cgw-nope"}))
    assert (e.http_status, e.code) == (404, "InvalidCustomerGatewayInstanceId.NotFound"), e

    # Terraform's policy-route acceptance flow on the dual-tunnel connection (weight ignored for forwarding)
    pbr = {"RegionId": REGION, "VpnGatewayId": gw, "RouteSource": "192.168.1.0/24", "RouteDest": "10.0.0.0/24",
           "NextHop": vco}
    tf.call("CreateVpnPbrRouteEntry", body={**pbr, "Weight": 100, "PublishVpc": False}, retry=ROUTE_RETRY,
            token="fresh")

    def read_pbr():
        items = unwrap(tf.rpc("DescribeVpnPbrRouteEntries", body={"RegionId": REGION, "VpnGatewayId": gw,
                                                                   "PageNumber": 1, "PageSize": 20}),
                       "VpnPbrRouteEntries", "VpnPbrRouteEntry")
        found = [i for i in items if (i["NextHop"], i["RouteSource"], i["RouteDest"]) ==
                 (vco, "192.168.1.0/24", "10.0.0.0/24")]
        return found[0] if found else None

    r = tf.wait("pbr listed", read_pbr, "State", ["published", "normal"])
    assert (r["Weight"], r["State"]) == (100, "normal"), r
    tf.call("PublishVpnRouteEntry", body={"RegionId": REGION, "RouteDest": "10.0.0.0/24", "NextHop": vco,
                                          "VpnGatewayId": gw, "PublishVpc": True, "RouteType": "pbr",
                                          "RouteSource": "192.168.1.0/24"}, retry=ROUTE_RETRY, token="fixed")
    tf.call("ModifyVpnPbrRouteEntryWeight", body={**pbr, "Weight": 100, "NewWeight": 0}, retry=ROUTE_RETRY)
    r = tf.wait("pbr published", read_pbr, "State", ["published"])
    assert r["Weight"] == 0, "the weight is echoed as set (no diff), though it has no effect on dual tunnels"
    tf.wait("gateway active", lambda: describe_gateway(tf, gw), "Status", ["active"])

    # forwarding: the master tunnel carries the traffic; with the master down, the slave does
    x = explain_http(tf_server, gw, "192.168.1.5", "10.0.0.9")
    assert x["Explanation"]["chosen"]["next_hop"] == vco, x
    assert x["ChosenTunnel"] == {"TunnelId": master, "Role": "master"}, x
    set_tunnel_http(tf_server, vco, "down", tunnel=master)
    x = explain_http(tf_server, gw, "192.168.1.5", "10.0.0.9")
    assert x["Explanation"]["chosen"]["next_hop"] == vco, "the connection stays up while one tunnel is"
    assert x["ChosenTunnel"] == {"TunnelId": slave, "Role": "slave"}, x
    c = describe_connection(tf, vco)
    assert [t["Status"] for t in c["TunnelOptionsSpecification"]["TunnelOptions"]] == \
        ["ike_sa_not_established", "ipsec_sa_established"], c
    set_tunnel_http(tf_server, vco, "up", tunnel=master)
    x = explain_http(tf_server, gw, "192.168.1.5", "10.0.0.9")
    assert x["ChosenTunnel"] == {"TunnelId": master, "Role": "master"}, x

    # a change on the tunnels: ModifyVpnConnectionAttribute with TunnelOptionsSpecification (by TunnelId)
    tunnels[1]["tunnel_ike_config"]["psk"] = "87654321"
    mod: Dict[str, Any] = {"RegionId": REGION, "LocalSubnet": "3.0.0.0/24", "RemoteSubnet": body["RemoteSubnet"]}
    for n, (t, tid) in enumerate(zip(tunnels, (master, slave)), start=1):
        mod.update(tunnel_params(n, t))
        mod[f"TunnelOptionsSpecification.{n}.TunnelId"] = tid
    tf.call("ModifyVpnConnectionAttribute", query={"VpnConnectionId": vco}, body=mod, retry=MODIFY_RETRY,
            token="fresh")
    tf.wait("connection active", lambda: describe_connection(tf, vco), "State", ["active"])
    state = connection_state(describe_connection(tf, vco))
    assert state["tunnel_options_specification"] == tunnels, state

    # delete the route, then the connection
    tf.call("DeleteVpnPbrRouteEntry", body={**pbr, "Weight": 0}, retry=ROUTE_RETRY, token="fresh")
    tf.wait("pbr gone", read_pbr, "State", [])
    delete_connection(tf, vco)


def test_terraform_connection_flag_and_config_changes(tf: Provider, schema):
    """In-place changes of effect_immediately, enable_nat_traversal, ipsec_config and bgp_config: each
    is one ModifyVpnConnectionAttribute as the provider sends it (subnets always, the changed
    attribute), DescribeVpnConnection echoes it and a second plan shows no diff; the other
    attributes stay as they were."""
    net = network(tf, "172.19")
    gw = create_gateway(tf, {"vpc_id": net["vpc_id"], "bandwidth": "10", "vswitch_id": net["vsw1"]})
    cgw = create_cgw(tf, "5.6.7.19", asn="65119")
    ike = {"ike_auth_alg": "sha1", "ike_enc_alg": "aes", "ike_version": "ikev2", "ike_mode": "main",
           "ike_lifetime": 86400, "psk": "tf-flags", "ike_pfs": "group2", "ike_remote_id": "5.6.7.19",
           "ike_local_id": "tf-local"}
    ipsec = {"ipsec_pfs": "group2", "ipsec_enc_alg": "aes", "ipsec_auth_alg": "sha1", "ipsec_lifetime": 86400}
    bgp = {"enable": False, "local_asn": "45104", "tunnel_cidr": "", "local_bgp_ip": ""}
    subnets = {"LocalSubnet": "172.19.0.0/24", "RemoteSubnet": "10.19.0.0/24"}
    body = {"RegionId": REGION, "VpnGatewayId": gw, "CustomerGatewayId": cgw, "Name": "tf-flags", **subnets,
            "EffectImmediately": True, "EnableDpd": True, "EnableNatTraversal": True,
            "IkeConfig": ike_json(ike), "IpsecConfig": ipsec_json(ipsec), "BgpConfig": bgp_json(bgp)}
    vco = tf.call("CreateVpnConnection", body=body, retry=CREATE_RETRY, token="fresh")["VpnConnectionId"]
    tf.wait("connection active", lambda: describe_connection(tf, vco), "State", ["active"])
    config = {"effect_immediately": True, "enable_dpd": True, "enable_nat_traversal": True, "ike_config": ike,
              "ipsec_config": ipsec, "bgp_config": bgp, "vpn_connection_name": "tf-flags",
              "local_subnet": ["172.19.0.0/24"], "remote_subnet": ["10.19.0.0/24"]}
    assert_no_diff(config, connection_state(describe_connection(tf, vco)), "alicloud_vpn_connection")

    def change(what: str, params: Dict[str, Any], **attrs: Any) -> Dict[str, Any]:
        before = connection_state(describe_connection(tf, vco))
        out = tf.call("ModifyVpnConnectionAttribute", query={"VpnConnectionId": vco},
                      body={"RegionId": REGION, **subnets, **params}, retry=MODIFY_RETRY, token="fresh")
        assert_types(out, schema("ModifyVpnConnectionAttributeResponseBody"))
        tf.wait("connection active", lambda: describe_connection(tf, vco), "State", ["active"])
        config.update(attrs)
        c = describe_connection(tf, vco)
        assert_types(c, schema("DescribeVpnConnectionResponseBody"))
        state = connection_state(c)
        assert_no_diff(config, state, f"alicloud_vpn_connection after {what}")
        # the second plan: nothing else moved
        assert_no_diff({k: v for k, v in before.items() if k not in attrs}, state, f"{what}: untouched attributes")
        return out

    out = change("effect_immediately", {"EffectImmediately": False}, effect_immediately=False)
    assert out["EffectImmediately"] is False, out
    out = change("enable_nat_traversal", {"EnableNatTraversal": False}, enable_nat_traversal=False)
    assert out["EnableNatTraversal"] is False, out
    ipsec2 = {"ipsec_pfs": "group5", "ipsec_enc_alg": "aes256", "ipsec_auth_alg": "sha256", "ipsec_lifetime": 3600}
    out = change("ipsec_config", {"IpsecConfig": ipsec_json(ipsec2)}, ipsec_config=ipsec2)
    assert out["IpsecConfig"]["IpsecEncAlg"] == "aes256" and out["IpsecConfig"]["IpsecLifetime"] == 3600, out
    bgp2 = {"enable": True, "local_asn": "65010", "tunnel_cidr": "169.254.19.0/30", "local_bgp_ip": "169.254.19.1"}
    out = change("bgp_config", {"BgpConfig": bgp_json(bgp2)}, bgp_config=bgp2)
    assert str(out["VpnBgpConfig"]["LocalAsn"]) == "65010", out
    # back again, all in one call, and the ipsec lifetime unset (0 = the default 86400). BGP off keeps the
    # tunnel addresses: the provider drops empty members from the JSON and an absent member is unchanged.
    ipsec3 = dict(ipsec2, ipsec_lifetime=0)
    bgp3 = dict(bgp2, enable=False, local_asn="45104")
    change("all four", {"EffectImmediately": True, "EnableNatTraversal": True, "IpsecConfig": ipsec_json(ipsec3),
                        "BgpConfig": bgp_json(bgp3)},
           effect_immediately=True, enable_nat_traversal=True, ipsec_config=dict(ipsec2, ipsec_lifetime=86400),
           bgp_config=bgp3)
    # the legacy list model (data source) shows the same
    [item] = unwrap(tf.call("DescribeVpnConnections", body={"RegionId": REGION, "VpnGatewayId": gw}),
                    "VpnConnections", "VpnConnection")
    assert (item["EffectImmediately"], item["EnableNatTraversal"], item["IpsecConfig"]["IpsecEncAlg"]) == \
        (True, True, "aes256"), item
    delete_connection(tf, vco)
