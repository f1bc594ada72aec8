"""The Linux data plane end to end, driven by a real SDK (root only: network namespaces).

A server runs with ``--dataplane linux`` and a unique ``--netns-prefix``; resources and routes
are created through the Python Tea SDK; a VPC host and two customer sites are attached to the
namespaces the server made (as the README shows); pings from the host must arrive at the site
the route names and at no other (counted at each site for the host's address), follow a
health-check failover (DescribeVpnConnection: ``ike_sa_not_established`` while the check fails), and
keep flowing — a ping every 50 ms, none lost — while the server is killed with -9, down, and
restarted; the restarted server adopts the kernel state without duplicating a rule, route or map
element. Every ping is bounded; every namespace with the test's prefix is deleted afterwards.

Without root the test is skipped — or fails when the environment variable ``CI`` is set (CI runs
as root: a skip there would hide the data plane's tests).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import time
from typing import Any, Dict, List

import pytest

from clients import PY_TEA_V3
from helpers import REGION, assert_success_body, call_retrying, wait_for
from server import operator_headers

NOT_ROOT = os.geteuid() != 0 or shutil.which("ip") is None
pytestmark = pytest.mark.skipif(NOT_ROOT and not os.environ.get("CI"),
                                reason="needs root and iproute2 (network namespaces)")

VPC_CIDR = "10.0.0.0/24"
HOST = "10.0.0.5"
SITE_A, SITE_B = "203.0.113.1", "203.0.113.2"


def sh(*args: str, check: bool = True) -> str:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def ping_args(ns: str, dest: str, count: int, interval: str) -> List[str]:
    """A bounded ping: ``count`` echoes ``interval`` s apart, each waiting at most 1 s."""
    return ["ip", "netns", "exec", ns, "ping", "-n", "-q", "-c", str(count), "-i", interval, "-W", "1", dest]


def ping_summary(output: str) -> tuple:
    """(transmitted, received) from ping's summary line; (0, 0) when there is none."""
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def ping(ns: str, dest: str, count: int = 3) -> bool:
    """True when every echo came back (ping itself exits 0 when any did)."""
    r = subprocess.run(ping_args(ns, dest, count, "0.2"), capture_output=True, text=True, timeout=30)
    return ping_summary(r.stdout) == (count, count)


def rx_packets(ns: str, dev: str) -> int:
    link = json.loads(sh("ip", "-j", "-s", "-n", ns, "link", "show", "dev", dev))
    return link[0]["stats64"]["rx"]["packets"]


def count_host_packets(ns: str) -> None:
    """Counts, in a site, what arrives through its tunnel from the VPC host (the health check's
    probes, from its own Sip, are not counted)."""
    sh("ip", "netns", "exec", ns, "nft", "add", "table", "ip", "sitecount")
    sh("ip", "netns", "exec", ns, "nft", "add", "chain", "ip", "sitecount", "pre",
       "{ type filter hook prerouting priority 0; }")
    sh("ip", "netns", "exec", ns, "nft", "add", "rule", "ip", "sitecount", "pre", "iifname", "vx0", "ip", "saddr",
       HOST, "counter")


def host_packets(ns: str) -> int:
    listed = sh("ip", "netns", "exec", ns, "nft", "list", "chain", "ip", "sitecount", "pre")
    m = re.search(r"counter packets (\d+)", listed)
    assert m, listed
    return int(m.group(1))


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
    count_host_packets(ns)
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
    if NOT_ROOT:
        pytest.fail("needs root and iproute2 (network namespaces): CI is set, so this fails instead of skipping")
    if shutil.which("nft") is None:
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "nftables")
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
        before = (host_packets(site), host_packets(other), rx_packets(site, "vx0"))
        assert ping(host, dest), f"ping {dest}"
        got = (host_packets(site) - before[0], host_packets(other) - before[1])
        assert got[0] >= 3 and rx_packets(site, "vx0") - before[2] >= 3, f"{dest}: expected at {site}, counts {got}"
        assert got[1] == 0, f"{dest}: the other site {other} got packets, counts {got}"

    arrives("192.168.2.1", site_b)   # destination route
    arrives("192.168.1.1", site_b)   # the policy route wins over the destination route
    arrives("192.168.50.1", site_a)  # active of an active/standby pair
    conn = c.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": a})
    assert conn["Status"] == "ipsec_sa_established" and conn["VcoHealthCheck"]["Status"] == "success", conn

    # Cut site A: the health check takes the tunnel down, the standby carries the pair.
    sh("ip", "-n", dp["Underlay"]["Namespace"], "link", "set", f"{prefix}sa", "down")
    wait_for("health check fails", lambda: c.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": a}),
             lambda v: v["VcoHealthCheck"]["Status"] == "failed", timeout=15)
    conn = c.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": a})
    assert conn["Status"] == "ike_sa_not_established", conn
    arrives("192.168.50.1", site_b)
    sh("ip", "-n", dp["Underlay"]["Namespace"], "link", "set", f"{prefix}sa", "up")
    wait_for("health check recovers",
             lambda: c.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": a}),
             lambda v: v["VcoHealthCheck"]["Status"] == "success", timeout=15)
    conn = c.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": a})
    assert conn["Status"] == "ipsec_sa_established", conn
    arrives("192.168.50.1", site_a)

    # kill -9, 1.5 s down, restart: a ping every 50 ms throughout loses nothing, all of it at
    # site B; the restarted server adopts without duplicates.
    before = kernel_snapshot(dp["Namespace"])
    count, at_b = 160, host_packets(site_b)
    pinger = subprocess.Popen(ping_args(host, "192.168.2.1", count, "0.05"), stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.5)
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(timeout=30)
        srv.proc, srv.address = None, None
        time.sleep(1.5)
        srv.start()
        wait_for("data plane in sync after restart", lambda: http_get(srv, f"/_vpnroute/gateways/{gw}/dataplane"),
                 lambda d: d.get("InSync") is True)
        assert pinger.poll() is None, "the ping ended before the restarted server was in sync"
        out, _ = pinger.communicate(timeout=30)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    assert ping_summary(out) == (count, count), f"packets lost across kill -9 and restart: {out}"
    assert host_packets(site_b) - at_b >= count
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
