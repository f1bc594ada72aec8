"""The Linux data plane end to end, driven by a real SDK (root only: network namespaces).

A server runs with ``--dataplane linux`` and a unique ``--netns-prefix``; resources and routes
are created through the Python Tea SDK; a VPC host and two customer sites are attached to the
namespaces the server made (as the README shows); pings from the host must arrive at the site
the route names (counted on the site's tunnel), follow a health-check failover, and keep flowing
while the server is killed with -9; the restarted server adopts the kernel state without
duplicating a rule, route or map element. Every ping is bounded; every namespace with the
test's prefix is deleted afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from typing import Any, Dict, List

import pytest

from clients import PY_TEA_V3
from helpers import REGION, assert_success_body, call_retrying, wait_for
from server import operator_headers

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (network namespaces)")

VPC_CIDR = "10.0.0.0/24"
HOST = "10.0.0.5"
SITE_A, SITE_B = "203.0.113.1", "203.0.113.2"


def sh(*args: str, check: bool = True) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def ping(ns: str, dest: str, count: int = 3) -> bool:
    r = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", dest],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def rx_packets(ns: str, dev: str) -> int:
    link = json.loads(sh("ip", "-j", "-s", "-n", ns, "link", "show", "dev", dev))
    return link[0]["stats64"]["rx"]["packets"]


def wait_carrier(ns: str, dev: str) -> None:
    wait_for(f"{dev} in {ns} has carrier",
             lambda: json.loads(sh("ip", "-j", "-n", ns, "link", "show", "dev", dev))[0]["operstate"],
             lambda state: state == "UP", timeout=5)


def http_get(srv, path: str) -> Dict[str, Any]:
    conn = http.client.HTTPConnection(srv.endpoint.split(":")[0], srv.port, timeout=30)
    try:
        conn.request("GET", path, headers=operator_headers())
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 200, f"GET {path}: HTTP {r.status} {body[:500]!r}"
    return json.loads(body)


def attach_host(prefix: str, dp: Dict[str, Any], name: str, address: str) -> str:
    """A VPC host: a veth into the VPC bridge namespace, default route via VpcGateway."""
    ns, port = f"{prefix}{name}", f"{prefix}{name}"
    vpc_ns, bridge = dp["VpcAttach"]["Namespace"], dp["VpcAttach"]["Bridge"]
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", vpc_ns)
    sh("ip", "-n", vpc_ns, "link", "set", port, "master", bridge, "up")
    sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "mtu", "1450", "up")
    sh("ip", "-n", ns, "route", "add", "default", "via", dp["VpcGateway"])
    wait_carrier(ns, "eth0")
    wait_carrier(vpc_ns, port)
    return ns


def attach_site(prefix: str, dp: Dict[str, Any], name: str, vco: str, underlay_ip: str, networks: List[str]) -> str:
    """A customer site: a veth into the underlay bridge, the other end of the connection's VXLAN."""
    ns, port = f"{prefix}{name}", f"{prefix}{name}"
    ul = dp["Underlay"]
    gw_ip = ul["InternetIp"]
    tunnel = next(c for c in dp["Connections"] if c["VpnConnectionId"] == vco)["TunnelConfig"]
    gw_end = tunnel["TunnelAddress"].split("/")[0]
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", ul["Namespace"])
    sh("ip", "-n", ul["Namespace"], "link", "set", port, "master", ul["Bridge"], "up")
    sh("ip", "-n", ns, "addr", "add", f"{underlay_ip}/32", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "route", "add", f"{gw_ip}/32", "dev", "eth0", "scope", "link")
    sh("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", str(tunnel["Vni"]), "remote", gw_ip,
       "local", underlay_ip, "dstport", str(tunnel["Port"]), "dev", "eth0", "nolearning")
    sh("ip", "-n", ns, "link", "set", "vx0", "address", tunnel["PeerMac"])
    sh("ip", "-n", ns, "addr", "add", tunnel["PeerTunnelAddress"], "dev", "vx0")
    sh("ip", "-n", ns, "link", "set", "vx0", "up")
    sh("ip", "-n", ns, "neigh", "replace", gw_end, "lladdr", tunnel["TunnelMac"], "dev", "vx0", "nud", "permanent")
    sh("ip", "-n", ns, "route", "add", VPC_CIDR, "via", gw_end, "dev", "vx0")
    for network in networks:
        sh("ip", "-n", ns, "addr", "add", network, "dev", "lo")
    wait_carrier(ns, "eth0")
    wait_carrier(ul["Namespace"], port)
    return ns


def kernel_snapshot(ns: str) -> Dict[str, str]:
    nft = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "ip", "vpnroute"],
                         capture_output=True, text=True, timeout=30).stdout
    return {"rules": sh("ip", "-n", ns, "rule", "show"), "routes": sh("ip", "-n", ns, "route", "show", "table", "all"),
            "nft": nft}


@pytest.fixture
def prefix():
    p = f"s{os.getpid() % 0xfffff:05x}"
    yield p
    for ns in sh("ip", "netns", "list").split():
        if ns.startswith(p):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def test_linux_dataplane_end_to_end(prefix, server_factory, make_client):
    srv = server_factory(["--task-duration", "0s", "--dataplane", "linux", "--tunnels", "plain",
                          "--netns-prefix", prefix])
    c = make_client(PY_TEA_V3, srv)
    vpc = c.call("CreateVpc", {"RegionId": REGION, "CidrBlock": VPC_CIDR, "VpcName": "dp"})
    wait_for("VPC Available", lambda: c.call("DescribeVpcs", {"RegionId": REGION, "VpcId": vpc["VpcId"]}),
             lambda b: b["Vpcs"]["Vpc"][0]["Status"] == "Available")
    gw = call_retrying(c, "CreateVpnGateway", {"RegionId": REGION, "VpcId": vpc["VpcId"], "Bandwidth": 10,
                                               "EnableIpsec": True, "Name": "dp"})["VpnGatewayId"]
    wait_for("gateway active", lambda: c.call("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": gw}),
             lambda b: b["Status"] == "active")
    vcos = []
    for ip, health in ((SITE_A, {"enable": True, "sip": "10.0.0.250", "dip": "192.168.100.1", "interval": 1,
                                 "retry": 2}), (SITE_B, None)):
        cgw = c.call("CreateCustomerGateway", {"RegionId": REGION, "IpAddress": ip})["CustomerGatewayId"]
        params = {"RegionId": REGION, "VpnGatewayId": gw, "CustomerGatewayId": cgw, "LocalSubnet": VPC_CIDR,
                  "RemoteSubnet": "192.168.0.0/16"}
        if health:
            params["HealthCheckConfig"] = json.dumps(health)
        vcos.append(call_retrying(c, "CreateVpnConnection", params)["VpnConnectionId"])
    a, b = vcos
    routes = [
        ("CreateVpnRouteEntry", {"RouteDest": "192.168.1.0/24", "NextHop": a, "Weight": 100}),
        ("CreateVpnRouteEntry", {"RouteDest": "192.168.2.0/24", "NextHop": b, "Weight": 100}),
        ("CreateVpnRouteEntry", {"RouteDest": "192.168.50.0/24", "NextHop": a, "Weight": 100}),
        ("CreateVpnRouteEntry", {"RouteDest": "192.168.50.0/24", "NextHop": b, "Weight": 0}),
        ("CreateVpnPbrRouteEntry", {"RouteSource": "10.0.0.0/24", "RouteDest": "192.168.1.0/24", "NextHop": b,
                                    "Weight": 100, "Priority": 5}),
    ]
    for action, params in routes:
        body = call_retrying(c, action, {"RegionId": REGION, "VpnGatewayId": gw, "PublishVpc": False, **params})
        assert_success_body(body)

    dp = wait_for("data plane in sync", lambda: http_get(srv, f"/_vpnroute/gateways/{gw}/dataplane"),
                  lambda d: d.get("InSync") is True and len(d.get("Connections", [])) == 2)
    assert dp["Namespace"].startswith(prefix)
    host = attach_host(prefix, dp, "h1", HOST)
    site_a = attach_site(prefix, dp, "sa", a, SITE_A, ["192.168.100.1/32", "192.168.1.1/32", "192.168.50.1/32"])
    site_b = attach_site(prefix, dp, "sb", b, SITE_B, ["192.168.1.1/32", "192.168.2.1/32", "192.168.50.1/32"])

    def arrives(dest: str, site: str) -> None:
        other = site_b if site == site_a else site_a
        before = (rx_packets(site, "vx0"), rx_packets(other, "vx0"))
        assert ping(host, dest), f"ping {dest}"
        got = (rx_packets(site, "vx0") - before[0], rx_packets(other, "vx0") - before[1])
        assert got[0] >= 3, f"{dest}: expected at {site}, counts {got}"

    arrives("192.168.2.1", site_b)   # destination route
    arrives("192.168.1.1", site_b)   # the policy route wins over the destination route
    arrives("192.168.50.1", site_a)  # active of an active/standby pair
    conn = c.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": a})
    assert conn["Status"] == "ipsec_sa_established" and conn["VcoHealthCheck"]["Status"] == "success", conn

    # Cut site A: the health check takes the tunnel down, the standby carries the pair.
    sh("ip", "-n", dp["Underlay"]["Namespace"], "link", "set", f"{prefix}sa", "down")
    wait_for("health check fails", lambda: c.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": a}),
             lambda v: v["VcoHealthCheck"]["Status"] == "failed", timeout=15)
    arrives("192.168.50.1", site_b)
    sh("ip", "-n", dp["Underlay"]["Namespace"], "link", "set", f"{prefix}sa", "up")
    wait_for("health check recovers",
             lambda: c.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": a}),
             lambda v: v["VcoHealthCheck"]["Status"] == "success", timeout=15)
    arrives("192.168.50.1", site_a)

    # kill -9: forwarding continues; the restarted server adopts without duplicates.
    before = kernel_snapshot(dp["Namespace"])
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(timeout=30)
    srv.proc, srv.address = None, None
    assert ping(host, "192.168.2.1"), "forwarding with the server down"
    srv.start()
    wait_for("data plane in sync after restart", lambda: http_get(srv, f"/_vpnroute/gateways/{gw}/dataplane"),
             lambda d: d.get("InSync") is True)
    assert kernel_snapshot(dp["Namespace"]) == before
    arrives("192.168.2.1", site_b)

    # Deleting the gateway removes its namespaces.
    for action, params in routes:
        call_retrying(c, action.replace("Create", "Delete"), {"RegionId": REGION, "VpnGatewayId": gw, **params})
    for vco in vcos:
        call_retrying(c, "DeleteVpnConnection", {"RegionId": REGION, "VpnConnectionId": vco})
    call_retrying(c, "DeleteVpnGateway", {"RegionId": REGION, "VpnGatewayId": gw})
    wait_for("gateway namespace removed", lambda: sh("ip", "netns", "list"),
             lambda names: dp["Namespace"] not in names and dp["VpcAttach"]["Namespace"] not in names)
