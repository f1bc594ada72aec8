"""VPN gateway routes end to end through the real Alibaba SDK clients.

Covers (shared/spec/seeds/*.txt, alibaba-api-surface.md §2.1–2.11, §3, sdk-wire.md §5–§7):

1. every error code of the CreateVpnRouteEntry / CreateVpnPbrRouteEntry reference pages,
   triggered through real SDK clients (code, exact message from the seed page, HTTP status),
   plus MissingParameter and DryRunOperation, and the busy codes on a slow gateway
   (`--task-duration 3s`, reject and queue modes);
2. the seed pages' sample requests and the documented response fields / JSON types;
3. the other nine route actions, VPC publishing, ClientToken idempotency (incl. SIGKILL);
4. (test_routes_terraform.py) the Terraform flow;
5. an active/standby failover scenario through the HTTP introspection endpoint and the
   `vpnroute explain` CLI.

Every test works in its own account (``vpnroute admin account create``) so module-scoped
servers can be shared without tests seeing each other's resources or quotas.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest

from clients import (
    NODE_TEA_V2,
    NODE_TEA_V3,
    POP_GET,
    POP_POST,
    PY_LEGACY,
    PY_TEA_V2,
    PY_TEA_V3,
    ApiError,
    BaseClient,
)
from helpers import (
    LOCAL_SUBNET,
    REGION,
    Stack,
    assert_keys,
    assert_ms_timestamp,
    assert_no_unknown_keys,
    assert_success_body,
    assert_types,
    create_connection,
    create_customer_gateway,
    create_gateway,
    create_vpc,
    describe_gateway,
    expect_error,
    strip_volatile,
    unwrap,
    wait_for,
    wait_gateway_active,
)
from server import Server, operator_headers

# --------------------------------------------------------------------------- seed error table

# Code -> (HTTP status, message), verbatim from the two seed pages.
SEED_ERRORS: Dict[str, Tuple[int, str]] = {
    "Resource.QuotaFull": (400, "The quota of resource is full"),
    "VpnGateway.Configuring": (400, "The specified service is configuring."),
    "VpnGateway.FinancialLocked": (400, "The specified service is financial locked."),
    "VpnRouteEntry.AlreadyExists": (400, "The specified route entry is already exist."),
    "VpnRouteEntry.Conflict": (400, "The specified route entry has conflict."),
    "VpnRouteEntry.ConflictSSL": (400, "The specified route entry has conflict with SSL client."),
    "VpnRouteEntry.BackupRoute": (400, "Validate backup route entry failed."),
    "VpnRouteEntry.InvalidWeight": (400, "Invalid route entry weight value."),
    "InvalidNextHop.NotFound": (400, "The specified NextHop does not exist."),
    "IllegalParam.RouteDest": (400, "The specified RouteDest is invalid"),
    "OperationFailed.InvalidCidrBlock": (400, "Operation failed because the specified network block is invalid."),
    "QuotaExceeded.VpnRouteEntry": (
        400, "The number of route entries to the VPN gateway in the VPC routing table has reached the quota limit."),
    "TaskConflict": (400, "The operation is too frequent, please wait a moment and try again."),
    "VpnTask.CONFLICT": (400, "Vpn task has conflict."),
    "IncorrectVpcStatus": (400, "Current VPC status does not support this operation."),
    "VpnPbrRouteEntryPriority.NotSupport": (
        400, "Current version of the VPN does not support setting custom pbr route entry priority."),
    "InvalidVpnGatewayInstanceId.NotFound": (404, "The specified vpn gateway instance id does not exist."),
}
ROUTE_CONFLICT_VPN = ("Operation failed because there is already a route in VPC route table to another VPN "
                      "on the same network block.")
ROUTE_CONFLICT_OTHER = ("Operation failed because there is already a route in VPC route table to a non-RI and "
                        "non-VPN next hop on the same network block.")
DRY_RUN_MESSAGE = "Request validation has been passed with DryRun flag set."

# Error tests run through several real clients (ACS3 Python, v1 legacy Python, ACS3 Node,
# pop-core form-body POST).
ERROR_VARIANTS = [PY_TEA_V3, PY_LEGACY, NODE_TEA_V3, POP_POST]

CREATE = {"dbr": "CreateVpnRouteEntry", "pbr": "CreateVpnPbrRouteEntry"}
DELETE = {"dbr": "DeleteVpnRouteEntry", "pbr": "DeleteVpnPbrRouteEntry"}
DESCRIBE = {"dbr": "DescribeVpnRouteEntries", "pbr": "DescribeVpnPbrRouteEntries"}
WRAPPER = {"dbr": ("VpnRouteEntries", "VpnRouteEntry"), "pbr": ("VpnPbrRouteEntries", "VpnPbrRouteEntry")}
MODIFY_WEIGHT = {"dbr": "ModifyVpnRouteEntryWeight", "pbr": "ModifyVpnPbrRouteEntryWeight"}

DEST = "10.0.0.0/24"
SOURCE = "192.168.1.0/24"
SSL_POOL = "10.99.0.0/27"

# --------------------------------------------------------------------------- servers


def _start(tmp_path_factory, name: str, args: List[str]) -> Server:
    d = tmp_path_factory.mktemp(name)
    s = Server(d / "data", d / "server.log", args)
    try:
        s.start()
    except Exception as e:  # pragma: no cover - reported as a setup failure
        pytest.fail(str(e), pytrace=False)
    return s


@pytest.fixture(scope="module")
def srv0(tmp_path_factory):
    """Changes apply at once: back-to-back changes never hit a busy code."""
    s = _start(tmp_path_factory, "routes0", ["--task-duration", "0s"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def srv_quota(tmp_path_factory):
    s = _start(tmp_path_factory, "routesq", ["--task-duration", "0s", "--quota-dbr-routes", "2",
                                             "--quota-pbr-routes", "2", "--quota-vpc-routes", "1"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def srv_slow(tmp_path_factory):
    s = _start(tmp_path_factory, "routes3s", ["--task-duration", "3s"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def srv_queue(tmp_path_factory):
    s = _start(tmp_path_factory, "routesqueue", ["--task-duration", "3s", "--on-busy", "queue"])
    yield s
    s.stop()


# --------------------------------------------------------------------------- environments


@dataclass
class Env:
    """One account on a server with a VPC, a VPN gateway and IPsec connections."""

    srv: Server
    creds: Dict[str, str]
    adm: BaseClient  # py-tea-v3 of the account: setup and read-back
    vpc_id: str = ""
    rtb_id: str = ""
    gw_id: str = ""
    vcos: List[str] = field(default_factory=list)
    ssl_server_id: str = ""
    _stack: Stack = field(default_factory=Stack)
    _cgw_n: int = 0

    def client(self, make_client, variant: str) -> BaseClient:
        return make_client(variant, self.srv, self.creds["AccessKeyId"], self.creds["AccessKeySecret"])

    def add_connection(self, gateway_id: Optional[str] = None) -> str:
        self._cgw_n += 1
        st = Stack(vpc_id=self.vpc_id, gateway_id=gateway_id or self.gw_id)
        create_customer_gateway(self.adm, st, ip=f"1.2.3.{3 + self._cgw_n}")
        create_connection(self.adm, st)
        return st.connection_id

    def add_gateway(self) -> str:
        st = Stack(vpc_id=self.vpc_id)
        create_gateway(self.adm, st)
        return st.gateway_id

    # --- route helpers (through the setup client)
    def params(self, kind: str, dest: str = DEST, hop: Optional[str] = None, weight: int = 100,
               publish: bool = False, source: str = SOURCE, **extra) -> Dict[str, Any]:
        p: Dict[str, Any] = {"RegionId": REGION, "VpnGatewayId": self.gw_id, "RouteDest": dest,
                             "NextHop": hop or self.vcos[0], "Weight": weight, "PublishVpc": publish}
        if kind == "pbr":
            p["RouteSource"] = source
        p.update(extra)
        return p

    def create(self, kind: str, **kw) -> Dict[str, Any]:
        return self.adm.call(CREATE[kind], self.params(kind, **kw))

    def routes(self, kind: str, client: Optional[BaseClient] = None) -> List[Dict[str, Any]]:
        c = client or self.adm
        out: List[Dict[str, Any]] = []
        page = 1
        while True:
            body = c.call(DESCRIBE[kind], {"RegionId": REGION, "VpnGatewayId": self.gw_id,
                                           "PageNumber": page, "PageSize": 50})
            items = unwrap(body, *WRAPPER[kind])
            out += items
            if len(items) < 50:
                return out
            page += 1

    def route_count(self) -> Tuple[int, int]:
        return len(self.routes("dbr")), len(self.routes("pbr"))

    def vpc_entries(self, dest: Optional[str] = None) -> List[Dict[str, Any]]:
        q: Dict[str, Any] = {"RegionId": REGION, "RouteTableId": self.rtb_id, "MaxResult": 100}
        if dest:
            q["DestinationCidrBlock"] = dest
        out: List[Dict[str, Any]] = []
        while True:
            body = self.adm.call("DescribeRouteEntryList", q)
            out += unwrap(body, "RouteEntrys", "RouteEntry")
            if not body.get("NextToken"):
                return out
            q["NextToken"] = body["NextToken"]

    def vpn_entries(self, dest: Optional[str] = None) -> List[Dict[str, Any]]:
        """System-table entries whose next hop is this env's gateway."""
        out = []
        for e in self.vpc_entries(dest):
            hops = unwrap(e, "NextHops", "NextHop") if "NextHops" in e else []
            if any(h.get("NextHopType") == "VpnGateway" and h.get("NextHopId") == self.gw_id for h in hops):
                out.append(e)
        return out


@pytest.fixture
def new_env(make_client):
    def factory(srv: Server, connections: int = 1, ssl: bool = False) -> Env:
        creds = srv.create_account("routes-" + uuid.uuid4().hex[:10])
        adm = make_client(PY_TEA_V3, srv, creds["AccessKeyId"], creds["AccessKeySecret"])
        env = Env(srv=srv, creds=creds, adm=adm)
        st = env._stack
        create_vpc(adm, st)
        create_gateway(adm, st)
        env.vpc_id, env.rtb_id, env.gw_id = st.vpc_id, st.route_table_id, st.gateway_id
        for _ in range(connections):
            env.vcos.append(env.add_connection())
        if ssl:
            body = adm.call("CreateSslVpnServer", {"RegionId": REGION, "VpnGatewayId": env.gw_id,
                                                   "LocalSubnet": LOCAL_SUBNET, "ClientIpPool": SSL_POOL})
            env.ssl_server_id = body["SslVpnServerId"]
            wait_gateway_active(adm, env.gw_id)
        return env

    return factory


# --------------------------------------------------------------------------- assertions


def server_message(e: ApiError) -> Optional[str]:
    """The server's Message as the client surfaced it (legacy Python keeps only the text)."""
    if e.raw.get("variant") == PY_LEGACY:
        return e.message
    if isinstance(e.data, dict) and "Message" in e.data:
        return e.data["Message"]
    return e.message


def assert_seed_error(e: ApiError, code: str, message: Optional[str] = None, status: Optional[int] = None) -> None:
    s, m = SEED_ERRORS.get(code, (None, None))
    status = status if status is not None else s
    message = message if message is not None else m
    assert (e.http_status, e.code) == (status, code), f"expected {status} {code}, got {e}"
    if message is not None:
        assert server_message(e) == message, f"{code}: expected message {message!r}, got {e}"
        assert message in (e.message or ""), f"client message lacks the server message: {e}"


def call_error(client: BaseClient, action: str, params: Dict[str, Any]) -> ApiError:
    return expect_error(lambda: client.call(action, params))


def explain_http(srv: Server, gw: str, source: str, dest: str) -> Dict[str, Any]:
    conn = http.client.HTTPConnection(srv.endpoint.split(":")[0], srv.port, timeout=30)
    try:
        conn.request("GET", f"/_vpnroute/gateways/{gw}/explain?source={source}&dest={dest}",
                     headers=operator_headers())
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 200, f"explain: HTTP {r.status} {body[:500]!r}"
    return json.loads(body)


def introspect_gateway(srv: Server, gw: str) -> Dict[str, Any]:
    conn = http.client.HTTPConnection(srv.endpoint.split(":")[0], srv.port, timeout=30)
    try:
        conn.request("GET", f"/_vpnroute/gateways/{gw}", headers=operator_headers())
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 200, f"introspect: HTTP {r.status} {body[:500]!r}"
    return json.loads(body)


def set_tunnel_http(srv: Server, vco: str, state: str, tunnel: Optional[str] = None) -> None:
    """Set a connection's tunnel state (`tunnel`: one tunnel of a dual-tunnel connection)."""
    conn = http.client.HTTPConnection(srv.endpoint.split(":")[0], srv.port, timeout=30)
    query = f"state={state}" + (f"&tunnel={tunnel}" if tunnel else "")
    try:
        conn.request("PUT", f"/_vpnroute/connections/{vco}/tunnel?{query}", body=b"",
                     headers={"Content-Length": "0", **operator_headers()})
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 200, f"tunnel {vco} {state}: HTTP {r.status} {body[:500]!r}"


def explain_cli(srv: Server, gw: str, source: str, dest: str) -> Dict[str, Any]:
    r = subprocess.run([str(srv.binary), "explain", "--data-dir", str(srv.data_dir), "--gateway", gw,
                        "--source", source, "--dest", dest], capture_output=True, env=srv.env(), timeout=60,
                       stdin=subprocess.DEVNULL)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, f"vpnroute explain exited {r.returncode}: {out}\n{r.stderr.decode()}"
    return json.loads(out)


def chosen(explain: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return explain["Explanation"]["chosen"]


# =========================================================================== 1. error codes


@dataclass
class Case:
    id: str
    code: str
    setup: Callable[[Env, str], Dict[str, Any]]  # prepares state, returns the failing create params
    kinds: Tuple[str, ...] = ("dbr", "pbr")
    server: str = "srv0"
    connections: int = 1
    ssl: bool = False
    message: Optional[str] = None
    status: Optional[int] = None


def _quota_full(env: Env, kind: str):
    env.create(kind, dest="10.0.1.0/24")
    env.create(kind, dest="10.0.2.0/24")
    return env.params(kind, dest="10.0.3.0/24")


def _financial_locked(env: Env, kind: str):
    env.srv.admin("gateway", "set-business-status", env.gw_id, "FinancialLocked")
    gw = describe_gateway(env.adm, env.gw_id)
    assert gw["BusinessStatus"] == "FinancialLocked", gw
    return env.params(kind)


def _already_exists(env: Env, kind: str):
    env.create(kind)
    return env.params(kind)


def _conflict(env: Env, kind: str):
    env.create(kind, hop=env.vcos[0], weight=100)
    env.create(kind, hop=env.vcos[1], weight=0)
    return env.params(kind, hop=env.vcos[2], weight=0)


def _conflict_ssl_cover(env: Env, kind: str):
    return env.params(kind, dest="10.99.0.0/24")  # contains the client pool 10.99.0.0/27


def _conflict_ssl_inside(env: Env, kind: str):
    return env.params(kind, dest="10.99.0.16/28")  # inside the client pool


def _backup_route(env: Env, kind: str):
    env.create(kind, hop=env.vcos[0], weight=100)
    return env.params(kind, hop=env.vcos[1], weight=100)


def _invalid_weight(env: Env, kind: str):
    return env.params(kind, weight=50)


def _next_hop_missing(env: Env, kind: str):
    return env.params(kind, hop="vco-bp1doesnotexist00000")


def _next_hop_other_gateway(env: Env, kind: str):
    gw2 = env.add_gateway()
    vco2 = env.add_connection(gw2)
    return env.params(kind, hop=vco2)


def _dest(value: str):
    def setup(env: Env, kind: str):
        return env.params(kind, dest=value)
    return setup


def _vpc_entry(hop_type: str, hop_id: Optional[str]):
    def setup(env: Env, kind: str):
        hid = hop_id or env.add_gateway()
        env.adm.call("CreateRouteEntry", {"RegionId": REGION, "RouteTableId": env.rtb_id,
                                          "DestinationCidrBlock": DEST, "NextHopType": hop_type,
                                          "NextHopId": hid})
        return env.params(kind, publish=True)
    return setup


def _vpc_quota(env: Env, kind: str):
    env.create(kind, dest="10.0.1.0/24", publish=True)
    assert len(env.vpn_entries()) == 1
    return env.params(kind, dest="10.0.2.0/24", publish=True)


def _pbr_priority(env: Env, kind: str):
    env.srv.admin("gateway", "set-pbr-priority", env.gw_id, "false")
    tag = json.loads(describe_gateway(env.adm, env.gw_id)["Tag"])
    assert tag.get("PbrPriority") == "false", tag
    return env.params(kind, Priority=5)


def _vpc_pending(env: Env, kind: str):
    env.srv.admin("vpc", "set-status", env.vpc_id, "Pending")
    return env.params(kind)


def _gateway_missing(env: Env, kind: str):
    p = env.params(kind)
    p["VpnGatewayId"] = "vpn-bp1doesnotexist00000"
    return p


def _gateway_of_other_account(env: Env, kind: str):
    """Another account's gateway (and connection) do not exist for the caller."""
    from clients import make_client as raw_make_client  # py-tea needs no node driver

    creds = env.srv.create_account("routes-other-" + uuid.uuid4().hex[:8])
    oc = raw_make_client(PY_TEA_V3, env.srv.endpoint_fn(), creds["AccessKeyId"], creds["AccessKeySecret"])
    st = Stack()
    create_vpc(oc, st)
    create_gateway(oc, st)
    create_customer_gateway(oc, st, ip="1.2.3.200")
    create_connection(oc, st)
    p = env.params(kind, hop=st.connection_id)
    p["VpnGatewayId"] = st.gateway_id
    return p


CASES = [
    Case("quota_full", "Resource.QuotaFull", _quota_full, server="srv_quota"),
    Case("financial_locked", "VpnGateway.FinancialLocked", _financial_locked),
    Case("already_exists", "VpnRouteEntry.AlreadyExists", _already_exists),
    Case("conflict_third_route", "VpnRouteEntry.Conflict", _conflict, connections=3),
    Case("conflict_ssl_covering_pool", "VpnRouteEntry.ConflictSSL", _conflict_ssl_cover, ssl=True),
    Case("conflict_ssl_inside_pool", "VpnRouteEntry.ConflictSSL", _conflict_ssl_inside, ssl=True),
    Case("backup_route_two_actives", "VpnRouteEntry.BackupRoute", _backup_route, connections=2),
    Case("invalid_weight_50", "VpnRouteEntry.InvalidWeight", _invalid_weight),
    Case("next_hop_missing", "InvalidNextHop.NotFound", _next_hop_missing),
    Case("next_hop_of_other_gateway", "InvalidNextHop.NotFound", _next_hop_other_gateway),
    Case("route_dest_garbage", "IllegalParam.RouteDest", _dest("abc")),
    Case("route_dest_no_len", "IllegalParam.RouteDest", _dest("10.0.0.0")),
    Case("route_dest_len_33", "IllegalParam.RouteDest", _dest("10.0.0.0/33")),
    Case("route_dest_octet_256", "IllegalParam.RouteDest", _dest("10.0.0.256/24")),
    Case("cidr_default_route", "OperationFailed.InvalidCidrBlock", _dest("0.0.0.0/0")),
    Case("cidr_in_100_64", "OperationFailed.InvalidCidrBlock", _dest("100.64.1.0/24")),
    Case("cidr_covering_100_64", "OperationFailed.InvalidCidrBlock", _dest("100.0.0.0/8")),
    Case("cidr_host_bits", "OperationFailed.InvalidCidrBlock", _dest("10.0.0.10/24")),
    Case("vpc_route_to_other_vpn", "OperationFailed.RouteConflict", _vpc_entry("VpnGateway", None),
         message=ROUTE_CONFLICT_VPN, status=400),
    Case("vpc_route_to_instance", "OperationFailed.RouteConflict", _vpc_entry("Instance", "i-bp1abcdefghij0000000"),
         message=ROUTE_CONFLICT_OTHER, status=400),
    Case("vpc_quota", "QuotaExceeded.VpnRouteEntry", _vpc_quota, server="srv_quota"),
    Case("pbr_priority_not_supported", "VpnPbrRouteEntryPriority.NotSupport", _pbr_priority, kinds=("pbr",)),
    # IncorrectVpcStatus is listed on the CreateVpnRouteEntry page only.
    Case("vpc_pending", "IncorrectVpcStatus", _vpc_pending, kinds=("dbr",)),
    Case("gateway_missing", "InvalidVpnGatewayInstanceId.NotFound", _gateway_missing),
    Case("gateway_of_other_account", "InvalidVpnGatewayInstanceId.NotFound", _gateway_of_other_account),
]


def _error_params():
    out = []
    for case in CASES:
        for kind in case.kinds:
            for variant in ERROR_VARIANTS:
                out.append(pytest.param(case, kind, variant, id=f"{case.id}-{kind}-{variant}"))
    return out


@pytest.mark.parametrize("case,kind,variant", _error_params())
def test_create_error_codes(case: Case, kind: str, variant: str, request, new_env, make_client):
    srv = request.getfixturevalue(case.server)
    env = new_env(srv, connections=case.connections, ssl=case.ssl)
    params = case.setup(env, kind)
    before = env.route_count()
    vpn_before = len(env.vpn_entries())
    e = call_error(env.client(make_client, variant), CREATE[kind], params)
    assert_seed_error(e, case.code, message=case.message, status=case.status)
    assert env.route_count() == before, "a failed create must not create a route"
    assert len(env.vpn_entries()) == vpn_before, "a failed create must not touch the VPC route table"


# ---- the same checks through PublishVpnRouteEntry (publishing later instead of at create)


@pytest.mark.parametrize("variant", [PY_TEA_V3, POP_POST])
@pytest.mark.parametrize("kind", ["dbr", "pbr"])
@pytest.mark.parametrize("hop_type,message", [("VpnGateway", ROUTE_CONFLICT_VPN), ("Instance", ROUTE_CONFLICT_OTHER)])
def test_publish_route_conflict(hop_type, message, kind, variant, srv0, new_env, make_client):
    env = new_env(srv0)
    env.create(kind)  # not published
    hop_id = env.add_gateway() if hop_type == "VpnGateway" else "i-bp1abcdefghij0000000"
    env.adm.call("CreateRouteEntry", {"RegionId": REGION, "RouteTableId": env.rtb_id, "DestinationCidrBlock": DEST,
                                      "NextHopType": hop_type, "NextHopId": hop_id})
    e = call_error(env.client(make_client, variant), "PublishVpnRouteEntry", {
        "RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": DEST, "NextHop": env.vcos[0],
        "RouteType": kind, "PublishVpc": True})
    assert_seed_error(e, "OperationFailed.RouteConflict", message=message, status=400)
    assert [r["State"] for r in env.routes(kind)] == ["normal"]


def test_vpc_route_to_router_interface_is_no_conflict(srv0, new_env):
    """"non-RI and non-VPN next hop": a router-interface entry for the block does not conflict."""
    env = new_env(srv0)
    env.adm.call("CreateRouteEntry", {"RegionId": REGION, "RouteTableId": env.rtb_id, "DestinationCidrBlock": DEST,
                                      "NextHopType": "RouterInterface", "NextHopId": "ri-bp1abcdefghij0000000"})
    body = env.create("dbr", publish=True)
    assert body["State"] == "published"
    assert len(env.vpn_entries(DEST)) == 1


@pytest.mark.parametrize("variant", [PY_TEA_V3, POP_POST])
def test_publish_vpc_quota_exceeded(variant, srv_quota, new_env, make_client):
    env = new_env(srv_quota)
    env.create("dbr", dest="10.0.1.0/24", publish=True)
    env.create("dbr", dest="10.0.2.0/24", publish=False)
    e = call_error(env.client(make_client, variant), "PublishVpnRouteEntry", {
        "RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": "10.0.2.0/24", "NextHop": env.vcos[0],
        "RouteType": "dbr", "PublishVpc": True})
    assert_seed_error(e, "QuotaExceeded.VpnRouteEntry")
    assert len(env.vpn_entries()) == 1


def test_vpc_quota_counts_table_entries_not_routes(srv_quota, new_env):
    """A dbr and a pbr route for the same block share one VPC entry: quota 1 is enough."""
    env = new_env(srv_quota)
    env.create("dbr", publish=True)
    env.create("pbr", publish=True)
    assert len(env.vpn_entries()) == 1
    assert [r["State"] for r in env.routes("dbr") + env.routes("pbr")] == ["published", "published"]


def test_route_quota_is_per_kind_and_freed_by_delete(srv_quota, new_env, make_client):
    """--quota-dbr-routes 2 / --quota-pbr-routes 2: separate per kind; a delete frees a slot;
    failed, DryRun and replayed creates do not consume one; counts survive SIGKILL-free reads."""
    env = new_env(srv_quota)
    c = env.client(make_client, POP_POST)
    env.create("dbr", dest="10.0.1.0/24")
    env.create("dbr", dest="10.0.2.0/24")
    assert_seed_error(call_error(c, CREATE["dbr"], env.params("dbr", dest="10.0.3.0/24")), "Resource.QuotaFull")
    # the other kind has its own quota
    env.create("pbr", dest="10.0.1.0/24")
    tok = {"ClientToken": "q-" + uuid.uuid4().hex}
    c.call(CREATE["pbr"], env.params("pbr", dest="10.0.2.0/24", **tok))
    c.call(CREATE["pbr"], env.params("pbr", dest="10.0.2.0/24", **tok))  # replay: no new slot used
    assert_seed_error(call_error(c, CREATE["pbr"], env.params("pbr", dest="10.0.3.0/24")), "Resource.QuotaFull")
    # delete one dbr route: the slot is free again, TotalCount follows
    c.call("DeleteVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": "10.0.1.0/24",
                                   "NextHop": env.vcos[0], "Weight": 100})
    body = c.call("DescribeVpnRouteEntries", {"RegionId": REGION, "VpnGatewayId": env.gw_id})
    assert body["TotalCount"] == 1 and len(unwrap(body, "VpnRouteEntries", "VpnRouteEntry")) == 1, body
    assert unwrap(body, "VpnRouteCounts", "VpnRouteCount")[0]["RouteCount"] == 1, body
    e = call_error(c, CREATE["dbr"], env.params("dbr", dest="10.0.3.0/24", DryRun=True))
    assert e.code == "DryRunOperation", str(e)
    c.call(CREATE["dbr"], env.params("dbr", dest="10.0.3.0/24"))
    assert_seed_error(call_error(c, CREATE["dbr"], env.params("dbr", dest="10.0.4.0/24")), "Resource.QuotaFull")
    for kind in ("dbr", "pbr"):
        body = c.call(DESCRIBE[kind], {"RegionId": REGION, "VpnGatewayId": env.gw_id})
        assert body["TotalCount"] == 2 == len(unwrap(body, *WRAPPER[kind])), body


@pytest.mark.parametrize("variant", [PY_TEA_V3, POP_POST])
def test_description_and_priority_bounds(variant, srv0, new_env, make_client):
    """Description 1-100 chars, not starting with http:// or https://; Priority 1-100 (seed pages)."""
    env = new_env(srv0)
    c = env.client(make_client, variant)
    for kind in ("dbr", "pbr"):
        for bad in ("a" * 101, "http://x", "https://x"):
            e = call_error(c, CREATE[kind], env.params(kind, Description=bad))
            assert e.http_status == 400, f"Description {bad[:12]!r}: {e}"
        body = c.call(CREATE[kind], env.params(kind, Description="a" * 100))
        assert body["Description"] == "a" * 100
    for bad in (0, 101):
        e = call_error(c, CREATE["pbr"], env.params("pbr", dest="10.0.1.0/24", Priority=bad))
        assert e.http_status == 400, f"Priority {bad}: {e}"
    for ok in (1, 100):
        body = c.call(CREATE["pbr"], env.params("pbr", dest=f"10.0.{ok + 1}.0/24", Priority=ok))
        assert body["Priority"] == ok
    e = call_error(c, CREATE["dbr"], env.params("dbr", dest="10.0.9.0/24", OverlayMode="Gre"))
    assert e.http_status == 400, f"OverlayMode other than Ipsec: {e}"
    assert len(env.routes("dbr")) == 1 and len(env.routes("pbr")) == 3


# ---- IllegalParam / InvalidCidrBlock on the policy route's source block


@pytest.mark.parametrize("variant", [PY_TEA_V3, POP_POST])
def test_pbr_source_validation(variant, srv0, new_env, make_client):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    e = call_error(c, CREATE["pbr"], env.params("pbr", source="192.168.1.1/24"))
    assert_seed_error(e, "OperationFailed.InvalidCidrBlock")
    e = call_error(c, CREATE["pbr"], env.params("pbr", source="nonsense"))
    assert e.http_status == 400 and e.code.startswith("IllegalParam."), str(e)
    # "from anywhere" is a legitimate policy source (Terraform's examples use real subnets, but 0.0.0.0/0 is valid)
    body = c.call(CREATE["pbr"], env.params("pbr", source="0.0.0.0/0"))
    assert body["RouteSource"] == "0.0.0.0/0"


# ---- lookups canonicalise the caller's spelling of a block (issue 9)


@pytest.mark.parametrize("variant", [PY_TEA_V3, NODE_TEA_V3])
def test_lookups_canonicalise_host_bits(variant, srv0, new_env, make_client):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    for kind in ("dbr", "pbr"):
        env.create(kind)
        c.call(MODIFY_WEIGHT[kind], {k: v for k, v in env.params(kind, dest="10.0.0.10/24", source="192.168.1.7/24",
                                                                 NewWeight=0).items() if k != "PublishVpc"})
    c.call("PublishVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": "10.0.0.99/24",
                                    "NextHop": env.vcos[0], "RouteType": "dbr", "PublishVpc": True})
    assert [r["Weight"] for r in env.routes("dbr")] == [0]
    assert env.routes("dbr")[0]["State"] == "published"
    assert len(env.vpn_entries("10.0.0.5/24")) == 1, "DescribeRouteEntryList filter canonicalised"
    for kind in ("dbr", "pbr"):
        params = env.params(kind, dest="10.0.0.1/24", source="192.168.1.200/24", weight=0)
        params.pop("PublishVpc")
        c.call(DELETE[kind], params)
    assert env.route_count() == (0, 0)


# ---- MissingParameter


def _missing_params():
    out = []
    for kind, names in (("dbr", ["RegionId", "VpnGatewayId", "RouteDest", "NextHop", "Weight", "PublishVpc"]),
                        ("pbr", ["RegionId", "VpnGatewayId", "RouteSource", "RouteDest", "NextHop", "Weight",
                                 "PublishVpc"])):
        for name in names:
            for variant in (PY_TEA_V3, POP_POST, NODE_TEA_V2):
                out.append(pytest.param(kind, name, variant, id=f"{kind}-{name}-{variant}"))
    return out


@pytest.mark.parametrize("kind,missing,variant", _missing_params())
def test_create_missing_parameter(kind, missing, variant, srv0, new_env, make_client):
    env = new_env(srv0)
    params = env.params(kind)
    del params[missing]
    e = call_error(env.client(make_client, variant), CREATE[kind], params)
    assert (e.http_status, e.code) == (400, "MissingParameter"), str(e)
    assert missing in (server_message(e) or ""), f"MissingParameter message should name {missing}: {e}"
    assert env.route_count() == (0, 0)


# ---- DryRun


@pytest.mark.parametrize("variant", ERROR_VARIANTS)
@pytest.mark.parametrize("kind", ["dbr", "pbr"])
def test_create_dry_run(kind, variant, srv0, new_env, make_client):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    e = call_error(c, CREATE[kind], env.params(kind, publish=True, DryRun=True))
    assert (e.http_status, e.code) == (400, "DryRunOperation"), str(e)
    assert server_message(e) == DRY_RUN_MESSAGE, str(e)
    assert env.route_count() == (0, 0), "DryRun must not create anything"
    assert env.vpn_entries() == [], "DryRun must not publish anything"
    # validation still runs in DryRun mode: the real error wins
    e = call_error(c, CREATE[kind], env.params(kind, weight=50, DryRun=True))
    assert_seed_error(e, "VpnRouteEntry.InvalidWeight")
    env.create(kind)
    e = call_error(c, CREATE[kind], env.params(kind, DryRun=True))
    assert_seed_error(e, "VpnRouteEntry.AlreadyExists")
    # DryRun=false is an ordinary call
    body = c.call(CREATE[kind], env.params(kind, dest="10.0.1.0/24", DryRun=False))
    assert body["RouteDest"] == "10.0.1.0/24"


# ---- busy gateway: reject mode


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("variant", [PY_TEA_V3, POP_POST])
def test_busy_codes_reject(variant, srv_slow, new_env, make_client):
    env = new_env(srv_slow, connections=1)
    c = env.client(make_client, variant)
    gw = env.gw_id
    hop = env.vcos[0]
    assert describe_gateway(c, gw)["Status"] == "active"

    t0 = time.monotonic()
    body = c.call(CREATE["dbr"], env.params("dbr", dest="10.0.1.0/24"))
    assert time.monotonic() - t0 < 2.0, "CreateVpnRouteEntry must return at once (asynchronous task)"
    assert body["RouteDest"] == "10.0.1.0/24"
    assert describe_gateway(c, gw)["Status"] == "updating"

    # Any further change while the task runs gets a busy code.
    e = call_error(c, CREATE["dbr"], env.params("dbr", dest="10.0.2.0/24"))
    assert_seed_error(e, "VpnGateway.Configuring")
    e = call_error(c, CREATE["pbr"], env.params("pbr", dest="10.0.2.0/24"))
    assert_seed_error(e, "TaskConflict")
    e = call_error(c, "PublishVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": "10.0.1.0/24",
                                               "NextHop": hop, "RouteType": "dbr", "PublishVpc": True})
    assert_seed_error(e, "VpnTask.CONFLICT")
    e = call_error(c, "DeleteVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": "10.0.1.0/24",
                                              "NextHop": hop, "Weight": 100})
    assert e.code in ("VpnGateway.Configuring", "TaskConflict", "VpnTask.CONFLICT", "VpnRouteEntry.Configuring"), \
        f"delete on a busy gateway must get a code Terraform retries: {e}"
    assert e.http_status == 400
    assert len(env.routes("dbr")) == 1 and env.routes("pbr") == []

    gwb = wait_gateway_active(c, gw, timeout=15)
    assert time.monotonic() - t0 >= 2.5, "the 3s task finished too early"
    assert gwb["Status"] == "active"

    # Once active, the same changes succeed (each makes the gateway busy again).
    c.call(CREATE["dbr"], env.params("dbr", dest="10.0.2.0/24"))
    assert describe_gateway(c, gw)["Status"] == "updating"
    wait_gateway_active(c, gw, timeout=15)
    c.call(CREATE["pbr"], env.params("pbr", dest="10.0.2.0/24"))
    assert describe_gateway(c, gw)["Status"] == "updating"
    pq = {"RegionId": REGION, "VpnGatewayId": gw, "RouteSource": SOURCE, "RouteDest": "10.0.2.0/24", "NextHop": hop,
          "Weight": 100}
    for action, extra in (("ModifyVpnPbrRouteEntryWeight", {"NewWeight": 0}),
                          ("ModifyVpnPbrRouteEntryPriority", {"NewPriority": 5}),
                          ("ModifyVpnPbrRouteEntryAttribute", {"Priority": 10, "NewWeight": 0}),
                          ("DeleteVpnPbrRouteEntry", {})):
        assert_seed_error(call_error(c, action, dict(pq, **extra)), "TaskConflict")
    e = call_error(c, "ModifyVpnRouteEntryWeight", {"RegionId": REGION, "VpnGatewayId": gw,
                                                    "RouteDest": "10.0.2.0/24", "NextHop": hop, "Weight": 100,
                                                    "NewWeight": 0})
    assert_seed_error(e, "VpnGateway.Configuring")
    wait_gateway_active(c, gw, timeout=15)
    c.call("PublishVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": "10.0.1.0/24",
                                    "NextHop": hop, "RouteType": "dbr", "PublishVpc": True})
    wait_gateway_active(c, gw, timeout=15)
    states = {r["RouteDest"]: r["State"] for r in env.routes("dbr")}
    assert states == {"10.0.1.0/24": "published", "10.0.2.0/24": "normal"}, states
    assert len(env.routes("pbr")) == 1


# ---- busy gateway: queue mode


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_busy_queue_mode_applies_in_order(srv_queue, new_env, make_client):
    env = new_env(srv_queue, connections=2)
    c = env.client(make_client, POP_POST)
    gw = env.gw_id
    a, b = env.vcos
    base = introspect_gateway(srv_queue, gw)
    assert base["InSync"] is True and base["Status"] == "active", base
    v0 = base["AppliedVersion"]

    # Three back-to-back changes: all accepted at once, none rejected.
    t0 = time.monotonic()
    c.call(CREATE["dbr"], env.params("dbr", hop=a, weight=100))
    c.call(CREATE["dbr"], env.params("dbr", hop=b, weight=0))
    c.call(DELETE["dbr"], {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": DEST, "NextHop": a, "Weight": 100})
    assert time.monotonic() - t0 < 3.0, "queued changes must be accepted without waiting"
    st = introspect_gateway(srv_queue, gw)
    assert st["Status"] == "updating" and st["PendingTasks"] == 3, st
    assert describe_gateway(c, gw)["Status"] == "updating"
    # the API shows the desired state at once: only B remains
    assert [(r["NextHop"], r["Weight"]) for r in env.routes("dbr")] == [(b, 0)]
    # nothing in force yet
    assert chosen(explain_http(srv_queue, gw, "172.16.0.1", "10.0.0.5")) is None

    def applied(n):
        return wait_for(f"{n} task(s) applied", lambda: explain_http(srv_queue, gw, "172.16.0.1", "10.0.0.5"),
                        lambda x: x["AppliedVersion"] >= v0 + n, timeout=15, interval=0.1)

    x1 = applied(1)  # the create of A only
    assert x1["AppliedVersion"] == v0 + 1, x1
    assert chosen(x1)["next_hop"] == a and chosen(x1)["reason"] == "active_up", x1
    assert len(x1["Explanation"]["candidates"]) == 1, x1
    x2 = applied(2)  # A and B (standby)
    assert x2["AppliedVersion"] == v0 + 2, x2
    assert chosen(x2)["next_hop"] == a, x2
    assert sorted(cd["next_hop"] for cd in x2["Explanation"]["candidates"]) == sorted([a, b]), x2
    x3 = applied(3)  # A deleted: B takes over
    assert chosen(x3)["next_hop"] == b and chosen(x3)["reason"] == "standby_takeover", x3
    assert len(x3["Explanation"]["candidates"]) == 1, x3
    gwb = wait_gateway_active(c, gw, timeout=15)
    assert gwb["Status"] == "active"
    assert time.monotonic() - t0 >= 8.0, "three 3s tasks must run one after the other"
    assert introspect_gateway(srv_queue, gw)["InSync"] is True


# =========================================================================== 2. seed samples


DBR_RESPONSE_FIELDS = ["NextHop", "Weight", "RouteDest", "RequestId", "Description", "State", "CreateTime",
                       "OverlayMode", "VpnInstanceId"]
PBR_RESPONSE_FIELDS = DBR_RESPONSE_FIELDS + ["RouteSource", "Priority"]
INT_FIELDS = {"Weight", "Priority", "CreateTime"}


def assert_documented_types(body: Dict[str, Any], fields: List[str], where: str) -> None:
    for k in fields:
        v = body[k]
        if k in INT_FIELDS:
            assert type(v) is int, f"{where}.{k} must be a JSON integer, got {type(v).__name__} {v!r}"
        else:
            assert type(v) is str, f"{where}.{k} must be a JSON string, got {type(v).__name__} {v!r}"


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_TEA_V3])
def test_seed_sample_create_vpn_route_entry(variant, srv0, new_env, make_client, schema):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    # The page's sample request (ids replaced by this account's resources).
    body = c.call("CreateVpnRouteEntry", {
        "RegionId": "cn-hangzhou", "ClientToken": "d7d24a21-f4ba-4454-9173-b3828dae****",
        "VpnGatewayId": env.gw_id, "RouteDest": "10.0.0.0/24", "NextHop": env.vcos[0], "Weight": 0,
        "PublishVpc": True, "Description": "mytest", "OverlayMode": "Ipsec"})
    assert_success_body(body)
    assert_keys(body, DBR_RESPONSE_FIELDS, "CreateVpnRouteEntry response")
    assert_documented_types(body, DBR_RESPONSE_FIELDS, "CreateVpnRouteEntry")
    assert_types(body, schema("CreateVpnRouteEntryResponseBody"))
    # Terraform builds its resource id from these three response fields.
    assert (body["VpnInstanceId"], body["NextHop"], body["RouteDest"]) == (env.gw_id, env.vcos[0], "10.0.0.0/24")
    assert body["Weight"] == 0
    assert body["Description"] == "mytest"
    assert body["OverlayMode"] == "Ipsec"
    assert body["State"] == "published"  # the sample response for PublishVpc=true
    assert_ms_timestamp(body["CreateTime"], "CreateTime")

    listed = c.call("DescribeVpnRouteEntries", {"RegionId": REGION, "VpnGatewayId": env.gw_id})
    assert_success_body(listed)
    assert_types(listed, schema("DescribeVpnRouteEntriesResponseBody"))
    for k in ("PageNumber", "PageSize", "TotalCount"):
        assert type(listed[k]) is int, (k, listed)
    [item] = unwrap(listed, "VpnRouteEntries", "VpnRouteEntry")
    assert_keys(item, ["VpnInstanceId", "RouteDest", "NextHop", "Weight", "State", "CreateTime", "RouteEntryType"],
                "VpnRouteEntry")
    assert (item["VpnInstanceId"], item["RouteDest"], item["NextHop"], item["Weight"], item["State"],
            item["CreateTime"], item["RouteEntryType"]) == (env.gw_id, "10.0.0.0/24", env.vcos[0], 0, "published",
                                                            body["CreateTime"], "custom")
    assert type(item["Weight"]) is int and type(item["CreateTime"]) is int
    counts = unwrap(listed, "VpnRouteCounts", "VpnRouteCount")
    assert any(x.get("RouteEntryType") == "custom" and x.get("RouteCount") == 1 for x in counts), counts
    assert "Description" not in item and "OverlayMode" not in item  # write-only fields (§2.3)


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_TEA_V3])
def test_seed_sample_create_vpn_pbr_route_entry(variant, srv0, new_env, make_client, schema):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    body = c.call("CreateVpnPbrRouteEntry", {
        "RegionId": "cn-hangzhou", "ClientToken": "d7d24a21-f4ba-4454-9173-b3****",
        "VpnGatewayId": env.gw_id, "RouteSource": "192.168.1.0/24", "RouteDest": "10.0.0.0/24",
        "NextHop": env.vcos[0], "Weight": 0, "PublishVpc": True, "Description": "desctest",
        "OverlayMode": "Ipsec", "Priority": 10})
    assert_success_body(body)
    assert_keys(body, PBR_RESPONSE_FIELDS, "CreateVpnPbrRouteEntry response")
    assert_documented_types(body, PBR_RESPONSE_FIELDS, "CreateVpnPbrRouteEntry")
    assert_types(body, schema("CreateVpnPbrRouteEntryResponseBody"))
    assert (body["VpnInstanceId"], body["NextHop"], body["RouteSource"], body["RouteDest"]) == \
        (env.gw_id, env.vcos[0], "192.168.1.0/24", "10.0.0.0/24")
    assert (body["Weight"], body["Priority"], body["Description"], body["OverlayMode"]) == (0, 10, "desctest", "Ipsec")
    # The page's sample shows "normal" although its request says PublishVpc=true (asynchronous publishing);
    # either documented value is acceptable in the response, the Describe below must show "published".
    assert body["State"] in ("published", "normal"), body
    assert_ms_timestamp(body["CreateTime"], "CreateTime")

    listed = c.call("DescribeVpnPbrRouteEntries", {"RegionId": REGION, "VpnGatewayId": env.gw_id})
    assert_success_body(listed)
    assert_types(listed, schema("DescribeVpnPbrRouteEntriesResponseBody"))
    [item] = unwrap(listed, "VpnPbrRouteEntries", "VpnPbrRouteEntry")
    assert_keys(item, ["VpnInstanceId", "RouteSource", "RouteDest", "NextHop", "Weight", "Priority", "State",
                       "CreateTime"], "VpnPbrRouteEntry")
    assert (item["RouteSource"], item["RouteDest"], item["Weight"], item["Priority"], item["State"]) == \
        ("192.168.1.0/24", "10.0.0.0/24", 0, 10, "published")
    assert type(item["Priority"]) is int and type(item["Weight"]) is int and type(item["CreateTime"]) is int


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_TEA_V3, POP_GET])
def test_default_priority_and_unpublished_state(variant, srv0, new_env, make_client):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    body = c.call(CREATE["pbr"], env.params("pbr", weight=100, publish=False))
    assert body["Priority"] == 10, "Priority defaults to 10"
    assert body["State"] == "normal"
    body = c.call(CREATE["dbr"], env.params("dbr", weight=100, publish=False))
    assert body["State"] == "normal"
    assert body["OverlayMode"] == "Ipsec"


# =========================================================================== 3. the other actions


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_TEA_V3])
@pytest.mark.parametrize("kind", ["dbr", "pbr"])
def test_describe_paging(kind, variant, srv0, new_env, make_client):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    dests = [f"10.{i}.0.0/24" for i in range(1, 24)]  # 23 routes
    for d in dests:
        env.create(kind, dest=d)
    action, (outer, inner) = DESCRIBE[kind], WRAPPER[kind]

    def page(n=None, size=None):
        q: Dict[str, Any] = {"RegionId": REGION, "VpnGatewayId": env.gw_id}
        if n is not None:
            q["PageNumber"] = n
        if size is not None:
            q["PageSize"] = size
        return c.call(action, q)

    first = page()
    assert (first["PageNumber"], first["PageSize"], first["TotalCount"]) == (1, 10, 23), \
        {k: first.get(k) for k in ("PageNumber", "PageSize", "TotalCount")}
    seen: List[str] = []
    sizes = []
    for n in (1, 2, 3, 4):
        body = page(n, 10)
        assert (body["PageNumber"], body["PageSize"], body["TotalCount"]) == (n, 10, 23)
        items = unwrap(body, outer, inner)
        sizes.append(len(items))
        seen += [i["RouteDest"] for i in items]
        if kind == "dbr":
            counts = unwrap(body, "VpnRouteCounts", "VpnRouteCount")
            assert any(x.get("RouteCount") == 23 and x.get("RouteEntryType") == "custom" for x in counts), counts
    assert sizes == [10, 10, 3, 0]
    assert sorted(seen) == sorted(dests) and len(set(seen)) == 23, "every route exactly once"
    # stable order: a second pass and one big page give the same sequence
    again = []
    for n in (1, 2, 3):
        again += [i["RouteDest"] for i in unwrap(page(n, 10), outer, inner)]
    assert again == seen, "paging order must be stable"
    big = page(1, 50)
    assert big["PageSize"] == 50
    assert [i["RouteDest"] for i in unwrap(big, outer, inner)] == seen
    # PageSize above the documented maximum (50): rejected or capped, never more than 50 items
    try:
        over = page(1, 51)
    except ApiError as e:
        assert e.http_status == 400 and e.code.startswith("InvalidParameter"), str(e)
    else:
        assert over["PageSize"] <= 50 and len(unwrap(over, outer, inner)) <= 50, over


def test_describe_bgp_route_entry_type(srv0, new_env, make_client):
    env = new_env(srv0)
    env.create("dbr")
    c = env.client(make_client, NODE_TEA_V3)
    body = c.call("DescribeVpnRouteEntries", {"RegionId": REGION, "VpnGatewayId": env.gw_id,
                                              "RouteEntryType": "bgp"})
    assert unwrap(body, "VpnRouteEntries", "VpnRouteEntry") == []
    body = c.call("DescribeVpnRouteEntries", {"RegionId": REGION, "VpnGatewayId": env.gw_id,
                                              "RouteEntryType": "custom"})
    assert len(unwrap(body, "VpnRouteEntries", "VpnRouteEntry")) == 1


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_LEGACY])
def test_delete_vpn_route_entry(variant, srv0, new_env, make_client):
    env = new_env(srv0, connections=2)
    c = env.client(make_client, variant)
    env.create("dbr", hop=env.vcos[0], weight=100, publish=True)
    env.create("dbr", hop=env.vcos[1], weight=0, publish=True)
    assert len(env.vpn_entries(DEST)) == 1
    q = {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": DEST, "NextHop": env.vcos[0]}
    # Weight must be the route's current weight
    e = call_error(c, "DeleteVpnRouteEntry", dict(q, Weight=0))
    assert e.http_status == 400, str(e)
    assert len(env.routes("dbr")) == 2
    body = c.call("DeleteVpnRouteEntry", dict(q, Weight=100))
    assert_success_body(body)
    assert [(r["NextHop"], r["Weight"]) for r in env.routes("dbr")] == [(env.vcos[1], 0)]
    assert len(env.vpn_entries(DEST)) == 1, "the other published route still needs the VPC entry"
    x = explain_http(env.srv, env.gw_id, "172.16.0.1", "10.0.0.9")
    assert chosen(x)["next_hop"] == env.vcos[1]
    # deleting again: Terraform treats InvalidRouteEntry.NotFound as "already deleted"
    e = call_error(c, "DeleteVpnRouteEntry", dict(q, Weight=100))
    assert e.code == "InvalidRouteEntry.NotFound", str(e)
    c.call("DeleteVpnRouteEntry", dict(q, NextHop=env.vcos[1], Weight=0))
    assert env.routes("dbr") == []
    assert env.vpn_entries(DEST) == [], "last published route deleted: VPC entry withdrawn"
    assert chosen(explain_http(env.srv, env.gw_id, "172.16.0.1", "10.0.0.9")) is None


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_LEGACY])
def test_modify_vpn_route_entry_weight(variant, srv0, new_env, make_client):
    env = new_env(srv0, connections=2)
    c = env.client(make_client, variant)
    a, b = env.vcos
    env.create("dbr", hop=a, weight=100)
    q = {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": DEST, "NextHop": a}
    body = c.call("ModifyVpnRouteEntryWeight", dict(q, Weight=100, NewWeight=0))
    assert_success_body(body)
    assert [r["Weight"] for r in env.routes("dbr")] == [0]
    e = call_error(c, "ModifyVpnRouteEntryWeight", dict(q, Weight=0, NewWeight=50))
    assert_seed_error(e, "VpnRouteEntry.InvalidWeight")
    c.call("ModifyVpnRouteEntryWeight", dict(q, Weight=0, NewWeight=100))
    assert [r["Weight"] for r in env.routes("dbr")] == [100]
    # active/standby pair: the two members cannot end up with the same weight
    env.create("dbr", hop=b, weight=0)
    e = call_error(c, "ModifyVpnRouteEntryWeight", dict(q, NextHop=b, Weight=0, NewWeight=100))
    assert_seed_error(e, "VpnRouteEntry.BackupRoute")
    assert sorted((r["NextHop"], r["Weight"]) for r in env.routes("dbr")) == sorted([(a, 100), (b, 0)])
    # wrong original weight / unknown route
    e = call_error(c, "ModifyVpnRouteEntryWeight", dict(q, Weight=0, NewWeight=100))
    assert e.http_status in (400, 404), str(e)
    e = call_error(c, "ModifyVpnRouteEntryWeight", dict(q, RouteDest="10.9.9.0/24", Weight=100, NewWeight=0))
    assert e.http_status in (400, 404), str(e)


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_LEGACY])
def test_pbr_modify_and_delete(variant, srv0, new_env, make_client):
    env = new_env(srv0, connections=2)
    c = env.client(make_client, variant)
    a, b = env.vcos
    env.create("pbr", hop=a, weight=100)
    q = {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteSource": SOURCE, "RouteDest": DEST, "NextHop": a}

    def only():
        [r] = [r for r in env.routes("pbr") if r["NextHop"] == a]
        return r["Weight"], r["Priority"]

    assert only() == (100, 10)
    assert_success_body(c.call("ModifyVpnPbrRouteEntryWeight", dict(q, Weight=100, NewWeight=0)))
    assert only() == (0, 10)
    assert_success_body(c.call("ModifyVpnPbrRouteEntryPriority", dict(q, Weight=0, Priority=10, NewPriority=5)))
    assert only() == (0, 5)
    e = call_error(c, "ModifyVpnPbrRouteEntryPriority", dict(q, Weight=0, Priority=5, NewPriority=101))
    assert e.http_status == 400, str(e)
    assert_success_body(c.call("ModifyVpnPbrRouteEntryAttribute",
                               dict(q, Weight=0, Priority=5, NewWeight=100, NewPriority=20)))
    assert only() == (100, 20)
    c.call("ModifyVpnPbrRouteEntryAttribute", dict(q, Weight=100, Priority=20, NewPriority=30))
    assert only() == (100, 30), "an omitted NewWeight leaves the weight unchanged"
    c.call("ModifyVpnPbrRouteEntryAttribute", dict(q, Weight=100, Priority=30, NewWeight=0))
    assert only() == (0, 30), "an omitted NewPriority leaves the priority unchanged"
    e = call_error(c, "ModifyVpnPbrRouteEntryAttribute", dict(q, Weight=0, Priority=30))
    assert e.http_status == 400, f"neither NewWeight nor NewPriority: {e}"
    e = call_error(c, "ModifyVpnPbrRouteEntryAttribute", dict(q, Weight=0, NewWeight=100))
    assert (e.http_status, e.code) == (400, "MissingParameter"), f"Priority is required: {e}"
    # a second pbr route in the same group (standby), then delete with/without Priority
    env.create("pbr", hop=b, weight=100)
    e = call_error(c, "ModifyVpnPbrRouteEntryWeight", dict(q, NextHop=b, Weight=100, NewWeight=0, Priority=29))
    assert e.http_status == 400, f"Priority given but different from the stored one (10): {e}"
    e = call_error(c, "DeleteVpnPbrRouteEntry", dict(q, Weight=0, Priority=29))
    assert e.http_status == 400, f"Priority given but different from the stored one: {e}"
    assert len(env.routes("pbr")) == 2
    assert_success_body(c.call("DeleteVpnPbrRouteEntry", dict(q, Weight=0, Priority=30)))
    assert_success_body(c.call("DeleteVpnPbrRouteEntry", dict(q, NextHop=b, Weight=100)))
    assert env.routes("pbr") == []


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_TEA_V3])
def test_pbr_priority_actions_not_supported(variant, srv0, new_env, make_client):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    env.create("pbr", weight=100)
    env.srv.admin("gateway", "set-pbr-priority", env.gw_id, "false")
    q = {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteSource": SOURCE, "RouteDest": DEST,
         "NextHop": env.vcos[0], "Weight": 100}
    e = call_error(c, "ModifyVpnPbrRouteEntryPriority", dict(q, Priority=10, NewPriority=5))
    assert_seed_error(e, "VpnPbrRouteEntryPriority.NotSupport")
    # without a Priority the policy route can still be created (default priority applies)
    body = c.call(CREATE["pbr"], env.params("pbr", dest="10.0.1.0/24"))
    assert body["Priority"] == 10


# ---- publishing


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_LEGACY, POP_POST])
@pytest.mark.parametrize("kind", ["dbr", "pbr"])
def test_publish_and_withdraw(kind, variant, srv0, new_env, make_client):
    env = new_env(srv0)
    c = env.client(make_client, variant)
    env.create(kind, publish=False)
    assert [r["State"] for r in env.routes(kind)] == ["normal"]
    assert env.vpn_entries(DEST) == []
    q = {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": DEST, "NextHop": env.vcos[0],
         "RouteType": kind}
    assert_success_body(c.call("PublishVpnRouteEntry", dict(q, PublishVpc=True)))
    assert [r["State"] for r in env.routes(kind)] == ["published"]
    [entry] = env.vpc_entries(DEST)
    [hop] = unwrap(entry, "NextHops", "NextHop")
    assert (hop["NextHopType"], hop["NextHopId"]) == ("VpnGateway", env.gw_id), entry
    assert entry["RouteTableId"] == env.rtb_id
    # publishing twice is harmless
    c.call("PublishVpnRouteEntry", dict(q, PublishVpc=True))
    assert len(env.vpc_entries(DEST)) == 1
    assert_success_body(c.call("PublishVpnRouteEntry", dict(q, PublishVpc=False)))
    assert [r["State"] for r in env.routes(kind)] == ["normal"]
    assert env.vpc_entries(DEST) == []
    e = call_error(c, "PublishVpnRouteEntry", dict(q, RouteDest="10.9.9.0/24", PublishVpc=True))
    assert e.http_status in (400, 404), str(e)


@pytest.mark.parametrize("withdraw_kind", ["dbr", "pbr"])
def test_withdraw_withdraws_both_kinds(withdraw_kind, srv0, new_env, make_client):
    """§2.5: same destination published by a dbr and a pbr route: withdrawing either withdraws both."""
    env = new_env(srv0)
    env.create("dbr", publish=True)
    env.create("pbr", publish=True)
    assert len(env.vpn_entries(DEST)) == 1
    c = env.client(make_client, POP_POST)  # untyped: carries Terraform's RouteSource for pbr
    q = {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": DEST, "NextHop": env.vcos[0],
         "RouteType": withdraw_kind, "PublishVpc": False}
    if withdraw_kind == "pbr":
        q["RouteSource"] = SOURCE
    c.call("PublishVpnRouteEntry", q)
    assert [r["State"] for r in env.routes("dbr")] == ["normal"]
    assert [r["State"] for r in env.routes("pbr")] == ["normal"]
    assert env.vpn_entries(DEST) == []


@pytest.mark.parametrize("variant", [POP_POST, PY_LEGACY])
def test_publish_pbr_accepts_terraform_route_source(variant, srv0, new_env, make_client):
    env = new_env(srv0)
    env.create("pbr", publish=False)
    c = env.client(make_client, variant)
    c.call("PublishVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": DEST,
                                    "NextHop": env.vcos[0], "RouteType": "pbr", "PublishVpc": True,
                                    "RouteSource": SOURCE, "ClientToken": "TF-PublishVpnRouteEntry-" + uuid.uuid4().hex})
    assert [r["State"] for r in env.routes("pbr")] == ["published"]
    assert len(env.vpn_entries(DEST)) == 1


# ---- ClientToken idempotency


@pytest.mark.parametrize("variant", [PY_TEA_V3, POP_POST, NODE_TEA_V3])
@pytest.mark.parametrize("kind", ["dbr", "pbr"])
def test_client_token_replay(kind, variant, srv0, new_env, make_client):
    env = new_env(srv0, connections=2)
    c = env.client(make_client, variant)
    token = "TF-" + CREATE[kind] + "-" + uuid.uuid4().hex
    p = env.params(kind, publish=True, ClientToken=token, Description="idem")
    first = c.call(CREATE[kind], p)
    second = c.call(CREATE[kind], p)
    assert strip_volatile(second) == strip_volatile(first), "a replay returns the same response"
    assert len(env.routes(kind)) == 1, "a replay creates nothing"
    assert len(env.vpn_entries(DEST)) == 1
    # same token, different parameters
    e = call_error(c, CREATE[kind], dict(p, NextHop=env.vcos[1], Weight=0))
    assert (e.http_status, e.code) == (400, "IdempotentParameterMismatch"), str(e)
    assert len(env.routes(kind)) == 1
    # the same parameters with another token: a real (rejected) second create
    e = call_error(c, CREATE[kind], dict(p, ClientToken=token + "-2"))
    assert_seed_error(e, "VpnRouteEntry.AlreadyExists")


def test_client_token_replay_across_sdks(srv0, new_env, make_client):
    """The same request (same ClientToken, same parameter values) retried through another SDK:
    Python sends PublishVpc=True, Node and pop-core send true (sdk-wire.md §0.5, §7.2: the same
    boolean). It is still the same request, so the replay must answer the original response
    instead of IdempotentParameterMismatch."""
    env = new_env(srv0)
    token = "x-sdk-" + uuid.uuid4().hex
    p = env.params("dbr", publish=True, ClientToken=token)
    first = env.client(make_client, PY_TEA_V3).call(CREATE["dbr"], p)
    for variant in (PY_LEGACY, NODE_TEA_V3, POP_POST):
        try:
            again = env.client(make_client, variant).call(CREATE["dbr"], p)
        except ApiError as e:
            pytest.fail(f"{variant}: replay of an identical request (booleans spelt true instead of True) "
                        f"rejected: {e.code} {server_message(e)!r}")
        assert strip_volatile(again) == strip_volatile(first), variant
    assert len(env.routes("dbr")) == 1


def test_client_token_replay_of_other_actions(srv0, new_env, make_client):
    env = new_env(srv0)
    c = env.client(make_client, PY_TEA_V3)
    env.create("dbr")
    q = {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": DEST, "NextHop": env.vcos[0],
         "RouteType": "dbr", "PublishVpc": True, "ClientToken": "pub-" + uuid.uuid4().hex}
    a = c.call("PublishVpnRouteEntry", q)
    b = c.call("PublishVpnRouteEntry", q)
    assert strip_volatile(a) == strip_volatile(b)
    d = {"RegionId": REGION, "VpnGatewayId": env.gw_id, "RouteDest": DEST, "NextHop": env.vcos[0], "Weight": 100,
         "ClientToken": "del-" + uuid.uuid4().hex}
    c.call("DeleteVpnRouteEntry", d)
    c.call("DeleteVpnRouteEntry", d)  # replay of a successful delete succeeds again
    assert env.routes("dbr") == []


def test_client_token_failed_attempt_is_not_remembered(srv0, new_env, make_client):
    """Terraform keeps the token of PublishVpnRouteEntry across retries: a failed attempt must not
    pin the token to an error."""
    env = new_env(srv0)
    c = env.client(make_client, POP_POST)
    token = "TF-CreateVpnRouteEntry-" + uuid.uuid4().hex
    p = env.params("dbr", weight=100, ClientToken=token)
    env.srv.admin("gateway", "set-business-status", env.gw_id, "FinancialLocked")
    assert_seed_error(call_error(c, CREATE["dbr"], p), "VpnGateway.FinancialLocked")
    env.srv.admin("gateway", "set-business-status", env.gw_id, "Normal")
    body = c.call(CREATE["dbr"], p)
    assert body["RouteDest"] == DEST
    assert len(env.routes("dbr")) == 1


@pytest.mark.parametrize("kind", ["dbr", "pbr"])
def test_client_token_replay_after_sigkill(kind, server_factory, new_env, make_client):
    srv = server_factory(["--task-duration", "0s"])
    env = new_env(srv)
    c = env.client(make_client, POP_POST)
    token = "tok-" + uuid.uuid4().hex
    p = env.params(kind, publish=True, ClientToken=token)
    first = c.call(CREATE[kind], p)
    srv.kill9()
    second = c.call(CREATE[kind], p)
    assert strip_volatile(second) == strip_volatile(first)
    assert len(env.routes(kind)) == 1
    assert len(env.vpn_entries(DEST)) == 1
    e = call_error(c, CREATE[kind], dict(p, Weight=0))
    assert e.code == "IdempotentParameterMismatch", str(e)
    # the route is in force after the restart
    src = "192.168.1.7" if kind == "pbr" else "172.16.0.1"
    x = explain_http(srv, env.gw_id, src, "10.0.0.7")
    assert chosen(x) is not None and chosen(x)["next_hop"] == env.vcos[0], x


@pytest.mark.parametrize("variant", [PY_LEGACY, POP_POST])
def test_raw_bodies_use_sdk_field_names(variant, srv0, new_env, make_client, schema):
    """Clients that return the whole body: every field the server sends is one the SDK model
    knows (a misspelt name would silently vanish in the typed clients)."""
    env = new_env(srv0)
    c = env.client(make_client, variant)
    for kind, model in (("dbr", "CreateVpnRouteEntryResponseBody"), ("pbr", "CreateVpnPbrRouteEntryResponseBody")):
        body = c.call(CREATE[kind], env.params(kind, publish=True, Description="d", OverlayMode="Ipsec"))
        assert_no_unknown_keys(body, schema(model))
        assert_types(body, schema(model))
    for action, model in (("DescribeVpnRouteEntries", "DescribeVpnRouteEntriesResponseBody"),
                          ("DescribeVpnPbrRouteEntries", "DescribeVpnPbrRouteEntriesResponseBody")):
        body = c.call(action, {"RegionId": REGION, "VpnGatewayId": env.gw_id})
        assert_no_unknown_keys(body, schema(model))
        assert_types(body, schema(model))
    body = c.call("DescribeRouteEntryList", {"RegionId": REGION, "RouteTableId": env.rtb_id})
    assert_no_unknown_keys(body, schema("DescribeRouteEntryListResponseBody"))
    assert_types(body, schema("DescribeRouteEntryListResponseBody"))


def test_pending_change_and_token_replay_across_sigkill(server_factory, new_env, make_client):
    """A change accepted but not yet applied (gateway task in `manual` mode) survives SIGKILL:
    the replayed ClientToken answers the original response (not a busy code), the engine keeps
    the old state in force until the task is applied (compatibility.md §4.6), then the route is in force."""
    srv = server_factory(["--task-duration", "0s"])
    env = new_env(srv)
    gw = env.gw_id
    srv.admin("gateway", "set-task-duration", gw, "manual")
    c = env.client(make_client, PY_TEA_V3)
    p = env.params("dbr", ClientToken="tok-" + uuid.uuid4().hex)
    first = c.call(CREATE["dbr"], p)
    assert describe_gateway(c, gw)["Status"] == "updating"
    assert_seed_error(call_error(c, CREATE["dbr"], env.params("dbr", dest="10.0.1.0/24")), "VpnGateway.Configuring")
    assert strip_volatile(c.call(CREATE["dbr"], p)) == strip_volatile(first), "replay while busy"
    before = explain_http(srv, gw, "172.16.0.1", "10.0.0.1")
    assert chosen(before) is None and before["AppliedVersion"] < before["DesiredVersion"], before

    srv.kill9()
    assert describe_gateway(c, gw)["Status"] == "updating", "the pending task survives the crash"
    assert strip_volatile(c.call(CREATE["dbr"], p)) == strip_volatile(first), "replay after SIGKILL"
    assert len(env.routes("dbr")) == 1
    after = explain_http(srv, gw, "172.16.0.1", "10.0.0.1")
    assert after["AppliedVersion"] < after["DesiredVersion"], after
    assert chosen(after) is None, \
        f"a change whose task is not applied must not be in force after restart: {after['Explanation']}"

    srv.admin("gateway", "advance", gw)
    wait_gateway_active(c, gw, timeout=15)
    done = explain_http(srv, gw, "172.16.0.1", "10.0.0.1")
    assert done["AppliedVersion"] == done["DesiredVersion"], done
    assert chosen(done)["next_hop"] == env.vcos[0], done


@pytest.mark.timeout(120)
def test_queued_changes_survive_sigkill_in_order(server_factory, new_env, make_client):
    """Queue mode, tasks held (`manual`): three queued changes (delete the active, promote the
    standby, publish it) survive SIGKILL; until they are applied the engine keeps the applied
    state in force, afterwards the final state, and the gateway is active again."""
    srv = server_factory(["--task-duration", "0s", "--on-busy", "queue"])
    env = new_env(srv, connections=2)
    gw = env.gw_id
    a, b = env.vcos
    c = env.client(make_client, NODE_TEA_V3)
    c.call(CREATE["dbr"], env.params("dbr", hop=a, weight=100))
    c.call(CREATE["dbr"], env.params("dbr", hop=b, weight=0))
    x = explain_http(srv, gw, "172.16.0.1", "10.0.0.1")
    assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (a, "active_up"), x

    srv.admin("gateway", "set-task-duration", gw, "manual")
    q = {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": DEST}
    c.call("DeleteVpnRouteEntry", dict(q, NextHop=a, Weight=100))
    c.call("ModifyVpnRouteEntryWeight", dict(q, NextHop=b, Weight=0, NewWeight=100))
    c.call("PublishVpnRouteEntry", dict(q, NextHop=b, RouteType="dbr", PublishVpc=True))
    assert introspect_gateway(srv, gw)["PendingTasks"] == 3
    assert [(r["NextHop"], r["Weight"], r["State"]) for r in env.routes("dbr")] == [(b, 100, "published")]

    for restart in (False, True):
        if restart:
            srv.kill9()
        st = introspect_gateway(srv, gw)
        assert st["Status"] == "updating" and st["PendingTasks"] == 3, st
        x = explain_http(srv, gw, "172.16.0.1", "10.0.0.1")
        assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (a, "active_up"), \
            f"applied state must stay in force (restart={restart}): {x['Explanation']}"
        assert len(x["Explanation"]["candidates"]) == 2, x
        assert [(r["NextHop"], r["Weight"], r["State"]) for r in env.routes("dbr")] == [(b, 100, "published")]

    srv.admin("gateway", "advance", gw)
    wait_gateway_active(c, gw, timeout=15)
    x = explain_http(srv, gw, "172.16.0.1", "10.0.0.1")
    assert x["AppliedVersion"] == x["DesiredVersion"], x
    assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (b, "active_up"), x
    assert len(x["Explanation"]["candidates"]) == 1, x
    assert len(env.vpn_entries(DEST)) == 1


def test_describe_unknown_or_foreign_gateway(srv0, new_env, make_client):
    env = new_env(srv0)
    env.create("dbr")
    for variant in (PY_TEA_V3, POP_POST):
        c = env.client(make_client, variant)
        for action in ("DescribeVpnRouteEntries", "DescribeVpnPbrRouteEntries"):
            e = call_error(c, action, {"RegionId": REGION, "VpnGatewayId": "vpn-bp1doesnotexist00000"})
            assert_seed_error(e, "InvalidVpnGatewayInstanceId.NotFound")
            # the gateway lives in cn-hangzhou: another region does not know it
            e = call_error(c, action, {"RegionId": "cn-shanghai", "VpnGatewayId": env.gw_id})
            assert_seed_error(e, "InvalidVpnGatewayInstanceId.NotFound")


# =========================================================================== 5. failover


def _both(srv: Server, gw: str, source: str, dest: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The running server's decision (HTTP) and the stored state's decision (CLI)."""
    return explain_http(srv, gw, source, dest), explain_cli(srv, gw, source, dest)


def test_active_standby_failover(srv0, new_env, make_client):
    env = new_env(srv0, connections=2)
    c = env.client(make_client, NODE_TEA_V3)
    a, b = env.vcos
    gw = env.gw_id
    c.call(CREATE["dbr"], env.params("dbr", hop=a, weight=100))
    c.call(CREATE["dbr"], env.params("dbr", hop=b, weight=0))
    src, dst = "172.16.5.5", "10.0.0.77"

    for x in _both(srv0, gw, src, dst):
        ch = chosen(x)
        assert (ch["next_hop"], ch["reason"], ch["kind"]) == (a, "active_up", "destination"), x
        assert len(x["Explanation"]["candidates"]) == 2, x
        assert x["Explanation"]["summary"], x
    assert {t["VpnConnectionId"]: t["Up"] for t in explain_http(srv0, gw, src, dst)["Tunnels"]} == {a: True, b: True}

    # A's tunnel goes down: the standby takes over
    set_tunnel_http(srv0, a, "down")
    for x in _both(srv0, gw, src, dst):
        ch = chosen(x)
        assert (ch["next_hop"], ch["reason"]) == (b, "standby_takeover"), x
    # both down: the active route is used anyway (DOC-PBR: "if both fail, the active one is used")
    srv0.admin("connection", "set-tunnel", b, "down")
    for x in _both(srv0, gw, src, dst):
        ch = chosen(x)
        assert (ch["next_hop"], ch["reason"]) == (a, "all_down_active"), x
    # A back up: A again
    set_tunnel_http(srv0, b, "up")
    srv0.admin("connection", "set-tunnel", a, "up")
    for x in _both(srv0, gw, src, dst):
        assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (a, "active_up"), x

    # a destination outside every route: nothing chosen
    for x in _both(srv0, gw, src, "10.55.0.1"):
        assert chosen(x) is None, x

    # A policy route (via B) beats the destination route for a matching source only.
    c.call(CREATE["pbr"], env.params("pbr", hop=b, weight=100, source="192.168.1.0/24"))
    for x in _both(srv0, gw, "192.168.1.20", dst):
        ch = chosen(x)
        assert (ch["next_hop"], ch["kind"], ch["reason"]) == (b, "policy", "active_up"), x
        verdicts = {(cd["kind"], cd["next_hop"]): cd["verdict"] for cd in x["Explanation"]["candidates"]}
        assert verdicts[("destination", a)] == "policy_route_matched", x
    for x in _both(srv0, gw, "192.168.2.20", dst):
        assert (chosen(x)["next_hop"], chosen(x)["kind"]) == (a, "destination"), x

    # Priority: a second policy route with a smaller priority value wins.
    c.call(CREATE["pbr"], env.params("pbr", hop=a, weight=100, source="192.168.0.0/16", Priority=5))
    for x in _both(srv0, gw, "192.168.1.20", dst):
        assert (chosen(x)["next_hop"], chosen(x)["kind"]) == (a, "policy"), x
    c.call("ModifyVpnPbrRouteEntryPriority", {"RegionId": REGION, "VpnGatewayId": gw, "RouteSource": "192.168.0.0/16",
                                              "RouteDest": DEST, "NextHop": a, "Weight": 100, "Priority": 5,
                                              "NewPriority": 50})
    for x in _both(srv0, gw, "192.168.1.20", dst):
        assert (chosen(x)["next_hop"], chosen(x)["kind"]) == (b, "policy"), x

    # Swapping the roles of the dbr pair (the members may never share a weight): delete the
    # active, promote the standby, re-add the old active as standby.
    c.call("DeleteVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": DEST, "NextHop": a,
                                   "Weight": 100})
    for x in _both(srv0, gw, src, dst):
        assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (b, "standby_takeover"), x
    c.call("ModifyVpnRouteEntryWeight", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": DEST, "NextHop": b,
                                         "Weight": 0, "NewWeight": 100})
    c.call(CREATE["dbr"], env.params("dbr", hop=a, weight=0))
    for x in _both(srv0, gw, src, dst):
        assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (b, "active_up"), x
    set_tunnel_http(srv0, b, "down")
    for x in _both(srv0, gw, src, dst):
        assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (a, "standby_takeover"), x


def test_failover_for_policy_routes(srv0, new_env, make_client):
    env = new_env(srv0, connections=2)
    c = env.client(make_client, PY_TEA_V2)
    a, b = env.vcos
    gw = env.gw_id
    c.call(CREATE["pbr"], env.params("pbr", hop=a, weight=100))
    c.call(CREATE["pbr"], env.params("pbr", hop=b, weight=0))
    s, d = "192.168.1.9", "10.0.0.9"
    assert (chosen(explain_http(srv0, gw, s, d))["next_hop"], chosen(explain_http(srv0, gw, s, d))["reason"]) == \
        (a, "active_up")
    set_tunnel_http(srv0, a, "down")
    for x in _both(srv0, gw, s, d):
        assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (b, "standby_takeover"), x
    set_tunnel_http(srv0, b, "down")
    for x in _both(srv0, gw, s, d):
        assert (chosen(x)["next_hop"], chosen(x)["reason"]) == (a, "all_down_active"), x
    # a source outside the policy: no route at all (no destination route exists)
    assert chosen(explain_http(srv0, gw, "172.16.0.1", d)) is None


def test_destination_routes_longest_prefix(srv0, new_env, make_client):
    """§3.2: destination-based routes match by longest prefix; policy routes only for their sources."""
    env = new_env(srv0, connections=2)
    c = env.client(make_client, POP_GET)
    a, b = env.vcos
    gw = env.gw_id
    c.call(CREATE["dbr"], env.params("dbr", dest="10.0.0.0/16", hop=b, weight=100))
    c.call(CREATE["dbr"], env.params("dbr", dest="10.0.0.0/24", hop=a, weight=100))
    c.call(CREATE["dbr"], env.params("dbr", dest="10.0.0.128/25", hop=b, weight=100))
    for dst, hop, n in (("10.0.0.5", a, 2), ("10.0.0.200", b, 3), ("10.0.9.1", b, 1)):
        for x in _both(srv0, gw, "172.16.0.1", dst):
            assert chosen(x)["next_hop"] == hop, (dst, x)
            assert len(x["Explanation"]["candidates"]) == n, (dst, x)
    # a policy route covering only part of the sources
    c.call(CREATE["pbr"], env.params("pbr", source="172.16.0.0/24", dest="10.0.0.0/8", hop=a, weight=100))
    assert (chosen(explain_http(srv0, gw, "172.16.0.1", "10.0.0.200"))["next_hop"],
            chosen(explain_http(srv0, gw, "172.16.0.1", "10.0.0.200"))["kind"]) == (a, "policy")
    assert (chosen(explain_http(srv0, gw, "172.16.1.1", "10.0.0.200"))["next_hop"],
            chosen(explain_http(srv0, gw, "172.16.1.1", "10.0.0.200"))["kind"]) == (b, "destination")


@pytest.mark.parametrize("variant", [NODE_TEA_V3, PY_TEA_V2])
def test_optional_params_of_other_actions(variant, srv0, new_env, make_client):
    """Optional parameters of §2.2–2.11 are accepted: OverlayMode on Delete/ModifyWeight,
    Priority omitted on ModifyVpnPbrRouteEntryPriority (optional in META), RouteType in the
    2019 docs' upper case, RouteEntryType=custom."""
    env = new_env(srv0)
    c = env.client(make_client, variant)
    gw, hop = env.gw_id, env.vcos[0]
    env.create("dbr")
    env.create("pbr")
    c.call("ModifyVpnRouteEntryWeight", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": DEST, "NextHop": hop,
                                         "Weight": 100, "NewWeight": 0, "OverlayMode": "Ipsec"})
    pq = {"RegionId": REGION, "VpnGatewayId": gw, "RouteSource": SOURCE, "RouteDest": DEST, "NextHop": hop}
    c.call("ModifyVpnPbrRouteEntryWeight", dict(pq, Weight=100, NewWeight=0, OverlayMode="Ipsec"))
    c.call("ModifyVpnPbrRouteEntryPriority", dict(pq, Weight=0, NewPriority=7))
    assert [(r["Weight"], r["Priority"]) for r in env.routes("pbr")] == [(0, 7)]
    c.call("PublishVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": DEST, "NextHop": hop,
                                    "RouteType": "PBR", "PublishVpc": True})
    assert [r["State"] for r in env.routes("pbr")] == ["published"]
    body = c.call("DescribeVpnRouteEntries", {"RegionId": REGION, "VpnGatewayId": gw, "RouteEntryType": "custom"})
    assert [(i["Weight"], i["State"]) for i in unwrap(body, "VpnRouteEntries", "VpnRouteEntry")] == [(0, "normal")]
    c.call("DeleteVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": DEST, "NextHop": hop,
                                   "Weight": 0, "OverlayMode": "Ipsec"})
    c.call("DeleteVpnPbrRouteEntry", dict(pq, Weight=0, OverlayMode="Ipsec"))
    assert env.route_count() == (0, 0)
    assert env.vpn_entries(DEST) == []
