"""IkeConfig / IpsecConfig through the real Python Tea SDK (docs/compatibility.md §4.9
"unsupported", §3.1 InvalidParameter).

* any data plane: a value outside Alibaba's lists is `InvalidParameter` 400 naming the member;
* `--dataplane sim`: ShangMi (`sm4`/`sm3`, in Alibaba's lists) is accepted, as Alibaba does;
* `--dataplane linux --tunnels ipsec` (root only): ShangMi is refused by CreateVpnConnection and
  ModifyVpnConnectionAttribute before anything is stored (strongSwan has no ShangMi transform).
  No connection of that server is ever accepted, so no charon runs; the namespaces of the
  test's prefix are deleted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from clients import PY_TEA_V3
from helpers import REGION, assert_api_error, call_retrying, expect_error

SHANGMI = [({"IkeEncAlg": "sm4"}, {}, "IkeConfig.IkeEncAlg"),
           ({"IkeAuthAlg": "sm3"}, {}, "IkeConfig.IkeAuthAlg"),
           ({}, {"IpsecEncAlg": "sm4"}, "IpsecConfig.IpsecEncAlg"),
           ({}, {"IpsecAuthAlg": "sm3"}, "IpsecConfig.IpsecAuthAlg")]


def gateway_and_cgw(c, ip: str):
    vpc = c.call("CreateVpc", {"RegionId": REGION, "CidrBlock": "10.0.0.0/16"})["VpcId"]
    gw = call_retrying(c, "CreateVpnGateway", {"RegionId": REGION, "VpcId": vpc, "Bandwidth": 10})["VpnGatewayId"]
    cgw = c.call("CreateCustomerGateway", {"RegionId": REGION, "IpAddress": ip})["CustomerGatewayId"]
    return gw, cgw


def create(c, gw: str, cgw: str, ike: dict, ipsec: dict):
    return call_retrying(c, "CreateVpnConnection", {
        "RegionId": REGION, "VpnGatewayId": gw, "CustomerGatewayId": cgw, "LocalSubnet": "10.0.0.0/24",
        "RemoteSubnet": "192.168.0.0/16", "IkeConfig": json.dumps(ike), "IpsecConfig": json.dumps(ipsec)})


def refused(fn, parameter: str) -> str:
    e = expect_error(fn)
    assert_api_error(e, 400, "InvalidParameter")
    assert parameter in e.message, e
    return e.message


def test_outside_the_lists_refused_and_shangmi_accepted_by_the_sim(server, make_client):
    c = make_client(PY_TEA_V3, server)
    gw, cgw = gateway_and_cgw(c, "1.2.3.40")
    for ike, ipsec, parameter in [({"IkeEncAlg": "aes128"}, {}, "IkeConfig.IkeEncAlg"),
                                  ({"IkePfs": "group19"}, {}, "IkeConfig.IkePfs"),
                                  ({"IkeLifetime": 86401}, {}, "IkeConfig.IkeLifetime"),
                                  ({"IkeMode": "Main"}, {}, "IkeConfig.IkeMode"),
                                  ({}, {"IpsecLifetime": -5}, "IpsecConfig.IpsecLifetime"),
                                  ({}, {"IpsecPfs": "group3"}, "IpsecConfig.IpsecPfs")]:
        refused(lambda: create(c, gw, cgw, ike, ipsec), parameter)
    for ike, ipsec, _ in SHANGMI:
        assert create(c, gw, cgw, ike, ipsec)["VpnConnectionId"].startswith("vco-")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or not os.path.exists("/usr/lib/ipsec/charon"),
                    reason="needs root, iproute2 and strongSwan's charon")
def test_shangmi_refused_at_the_api_by_the_ipsec_data_plane(server_factory, make_client):
    prefix = f"p{os.getpid() % 0xfffff:05x}"
    srv = None
    try:
        srv = server_factory(["--task-duration", "0s", "--dataplane", "linux", "--tunnels", "ipsec",
                              "--netns-prefix", prefix])
        c = make_client(PY_TEA_V3, srv)
        gw, cgw = gateway_and_cgw(c, "198.51.100.40")
        for ike, ipsec, parameter in SHANGMI:
            message = refused(lambda: create(c, gw, cgw, ike, ipsec), parameter)
            assert "not supported by this gateway's IPsec tunnels" in message, message
        listed = c.call("DescribeVpnConnections", {"RegionId": REGION, "VpnGatewayId": gw})
        assert listed["TotalCount"] == 0, listed
    finally:
        # Stopped first: a running server's repair would put its namespaces back.
        if srv is not None:
            srv.stop()
        for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                 timeout=30).stdout.split():
            if ns.startswith(prefix):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
