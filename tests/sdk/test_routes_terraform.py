"""The Terraform provider's flow for `alicloud_vpn_route_entry` and `alicloud_vpn_pbr_route_entry`
(alibaba-api-surface.md §5), on 60 routes of each kind sharing one gateway.

Terraform speaks v1 (HMAC-SHA1) with operation parameters in a form body, so this uses the
pop-core POST client (everything in the form body). Like Terraform it:

* creates with a fresh ClientToken `TF-<Action>-<unix>-<uuid>` (truncated to 64) on every retry,
  retrying VpnGateway.Configuring / TaskConflict / Appliance.Configuring / VpnTask.CONFLICT /
  VpnConnection.Configuring (plus Throttling / ServiceUnavailable); the retry sleep is shortened
  from Terraform's 3 s+ to keep the test fast;
* builds the dbr resource id from the Create *response* (VpnInstanceId:NextHop:RouteDest), the
  pbr id from the request;
* reads a route by paging DescribeVpn(Pbr)RouteEntries with PageSize 20 until a page is
  shorter than 20, matching NextHop+RouteDest (+RouteSource);
* publishes with PublishVpnRouteEntry (one ClientToken kept across retries; pbr adds the
  undocumented RouteSource), modifies weights with Weight/NewWeight (no ClientToken: the
  provider's bug), deletes with the current Weight and waits until the route is gone.

The server runs with the default task duration (200 ms), so back-to-back changes on the one
gateway really hit the busy codes and must be retried.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Tuple

import pytest

from clients import POP_POST, ApiError, BaseClient
from helpers import (
    REGION,
    Stack,
    create_connection,
    create_customer_gateway,
    create_gateway,
    create_vpc,
    unwrap,
    wait_for,
    wait_gateway_active,
)
from server import Server

N = 60
PAGE = 20
TF_CREATE_RETRY = {"VpnGateway.Configuring", "TaskConflict", "Appliance.Configuring", "VpnTask.CONFLICT",
                   "VpnConnection.Configuring"}
TF_DELETE_RETRY = TF_CREATE_RETRY | {"VpnRouteEntry.Configuring"}
SOURCE = "192.168.1.0/24"


def tf_token(action: str) -> str:
    return f"TF-{action}-{int(time.time())}-{uuid.uuid4()}"[:64]


def need_retry(e: ApiError) -> bool:
    return (e.code in ("ServiceUnavailable", "Rejected.Throttling") or "Throttling" in (e.code or "")
            or (e.http_status or 0) >= 500)


class TF:
    """The provider's request helpers, with counters of what happened."""

    def __init__(self, client: BaseClient, timeout: float = 300.0):
        self.c = client
        self.timeout = timeout
        self.retries: Counter = Counter()
        self.tokens_sent: List[str] = []

    def call(self, action: str, params: Dict[str, Any], retry: Iterable[str], token: str = "fresh") -> Dict[str, Any]:
        """token: 'fresh' (new per attempt), 'fixed' (one for all attempts) or 'none'."""
        codes = set(retry)
        fixed = tf_token(action)
        deadline = time.monotonic() + self.timeout
        while True:
            p = dict(params)
            if token == "fresh":
                p["ClientToken"] = tf_token(action)
            elif token == "fixed":
                p["ClientToken"] = fixed
            if "ClientToken" in p:
                assert len(p["ClientToken"]) <= 64
                self.tokens_sent.append(p["ClientToken"])
            try:
                return self.c.call(action, p)
            except ApiError as e:
                if (e.code in codes or need_retry(e)) and time.monotonic() < deadline:
                    self.retries[e.code] += 1
                    time.sleep(random.uniform(0.02, 0.08))
                    continue
                raise

    # ---- reads (service_alicloud_vpc.go DescribeVpnRouteEntry / DescribeVpnPbrRouteEntry)
    def read_pages(self, action: str, gw: str) -> Tuple[List[Dict[str, Any]], List[int]]:
        outer, inner = (("VpnRouteEntries", "VpnRouteEntry") if action == "DescribeVpnRouteEntries"
                        else ("VpnPbrRouteEntries", "VpnPbrRouteEntry"))
        items: List[Dict[str, Any]] = []
        sizes: List[int] = []
        page = 1
        while True:
            body = self.c.call(action, {"RegionId": REGION, "VpnGatewayId": gw, "PageNumber": page,
                                        "PageSize": PAGE})
            got = unwrap(body, outer, inner)
            sizes.append(len(got))
            items += got
            if len(got) < PAGE:
                return items, sizes
            page += 1
            assert page < 100, "paging does not end"

    def read_dbr(self, gw: str, next_hop: str, dest: str) -> Optional[Dict[str, Any]]:
        items, _ = self.read_pages("DescribeVpnRouteEntries", gw)
        found = [i for i in items if i["NextHop"] == next_hop and i["RouteDest"] == dest]
        assert len(found) <= 1, found
        return found[0] if found else None

    def read_pbr(self, gw: str, next_hop: str, source: str, dest: str) -> Optional[Dict[str, Any]]:
        items, _ = self.read_pages("DescribeVpnPbrRouteEntries", gw)
        found = [i for i in items
                 if i["NextHop"] == next_hop and i["RouteSource"] == source and i["RouteDest"] == dest]
        assert len(found) <= 1, found
        return found[0] if found else None


@pytest.fixture(scope="module")
def srv_tf(tmp_path_factory):
    d = tmp_path_factory.mktemp("routestf")
    s = Server(d / "data", d / "server.log", ["--quota-dbr-routes", "100", "--quota-pbr-routes", "100",
                                              "--quota-vpc-routes", "200"])
    try:
        s.start()
    except Exception as e:  # pragma: no cover
        pytest.fail(str(e), pytrace=False)
    yield s
    s.stop()


def dbr_dest(i: int) -> str:
    return f"10.1.{i}.0/24"


def pbr_dest(i: int) -> str:
    return f"10.2.{i}.0/24"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_terraform_flow_60_routes_each(srv_tf: Server, make_client):
    creds = srv_tf.create_account("tf-" + uuid.uuid4().hex[:8])
    c = make_client(POP_POST, srv_tf, creds["AccessKeyId"], creds["AccessKeySecret"])
    tf = TF(c)

    # --- supporting resources (alicloud_vpc, alicloud_vpn_gateway, _customer_gateway, _connection)
    st = Stack()
    create_vpc(c, st)
    create_gateway(c, st)  # waits for Status=active like the provider
    create_customer_gateway(c, st, ip="192.168.1.1")  # the provider's acceptance test value
    create_connection(c, st)  # waits for State=active
    gw, vco = st.gateway_id, st.connection_id

    # --- create (interleaving both kinds on the one gateway, as a parallel apply would)
    dbr_ids: List[str] = []
    pbr_ids: List[str] = []
    for i in range(N):
        body = tf.call("CreateVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteDest": dbr_dest(i),
                                               "NextHop": vco, "Weight": 100, "PublishVpc": False},
                       TF_CREATE_RETRY)
        rid = f"{body.get('VpnInstanceId')}:{body.get('NextHop')}:{body.get('RouteDest')}"
        assert rid == f"{gw}:{vco}:{dbr_dest(i)}", f"resource id from the create response: {body}"
        dbr_ids.append(rid)
        # StateChangeConf Target published/normal (read by paging)
        r = wait_for(f"dbr {rid} readable", lambda: tf.read_dbr(gw, vco, dbr_dest(i)),
                     lambda x: x is not None and x["State"] in ("published", "normal"), timeout=60, interval=0.1)
        assert (r["Weight"], r["VpnInstanceId"], r["State"], r.get("RouteEntryType")) == (100, gw, "normal", "custom")

        tf.call("CreateVpnPbrRouteEntry", {"RegionId": REGION, "VpnGatewayId": gw, "RouteSource": SOURCE,
                                           "RouteDest": pbr_dest(i), "NextHop": vco, "Weight": 100,
                                           "PublishVpc": False}, TF_CREATE_RETRY)
        pbr_ids.append(f"{gw}:{vco}:{SOURCE}:{pbr_dest(i)}")
        r = wait_for(f"pbr {pbr_dest(i)} readable", lambda: tf.read_pbr(gw, vco, SOURCE, pbr_dest(i)),
                     lambda x: x is not None and x["State"] in ("published", "normal"), timeout=60, interval=0.1)
        assert (r["Weight"], r["VpnInstanceId"], r["State"]) == (100, gw, "normal")

    assert sum(tf.retries.values()) > 0, \
        "back-to-back changes on one gateway (200 ms tasks) should have hit a busy code at least once"
    assert set(tf.retries) <= TF_CREATE_RETRY, f"busy codes outside Terraform's retry list: {tf.retries}"
    assert len(set(tf.tokens_sent)) == len(tf.tokens_sent), "a fresh token per attempt"

    # --- read back everything by paging: each route exactly once
    wait_gateway_active(c, gw)
    items, sizes = tf.read_pages("DescribeVpnRouteEntries", gw)
    assert sizes == [20, 20, 20, 0], sizes
    seen = Counter(i["RouteDest"] for i in items)
    assert seen == Counter(dbr_dest(i) for i in range(N)), f"dbr routes seen: {seen}"
    items, sizes = tf.read_pages("DescribeVpnPbrRouteEntries", gw)
    assert sizes == [20, 20, 20, 0], sizes
    seen = Counter((i["RouteSource"], i["RouteDest"]) for i in items)
    assert seen == Counter((SOURCE, pbr_dest(i)) for i in range(N)), f"pbr routes seen: {seen}"

    # --- update publish_vpc=true (PublishVpnRouteEntry, token fixed across retries)
    for i in range(N):
        tf.call("PublishVpnRouteEntry", {"RegionId": REGION, "RouteDest": dbr_dest(i), "NextHop": vco,
                                         "VpnGatewayId": gw, "PublishVpc": True, "RouteType": "dbr"},
                TF_CREATE_RETRY, token="fixed")
        wait_for(f"dbr {dbr_dest(i)} published", lambda: tf.read_dbr(gw, vco, dbr_dest(i)),
                 lambda x: x is not None and x["State"] == "published", timeout=60, interval=0.1)
        tf.call("PublishVpnRouteEntry", {"RegionId": REGION, "RouteDest": pbr_dest(i), "NextHop": vco,
                                         "VpnGatewayId": gw, "PublishVpc": True, "RouteType": "pbr",
                                         "RouteSource": SOURCE}, TF_CREATE_RETRY, token="fixed")
    items, _ = tf.read_pages("DescribeVpnPbrRouteEntries", gw)
    assert Counter(i["State"] for i in items) == Counter({"published": N})

    # the VPC system table routes every published block to the gateway
    q: Dict[str, Any] = {"RegionId": REGION, "RouteTableId": st.route_table_id, "MaxResult": 100,
                         "NextHopId": gw}
    entries: List[Dict[str, Any]] = []
    while True:
        body = c.call("DescribeRouteEntryList", q)
        entries += unwrap(body, "RouteEntrys", "RouteEntry")
        if not body.get("NextToken"):
            break
        q["NextToken"] = body["NextToken"]
    blocks = Counter(e["DestinationCidrBlock"] for e in entries)
    assert blocks == Counter([dbr_dest(i) for i in range(N)] + [pbr_dest(i) for i in range(N)]), blocks
    for e in entries:
        [hop] = unwrap(e, "NextHops", "NextHop")
        assert (hop["NextHopType"], hop["NextHopId"]) == ("VpnGateway", gw), e

    # --- update weight 100 -> 0 (no ClientToken)
    for i in range(N):
        tf.call("ModifyVpnRouteEntryWeight", {"RegionId": REGION, "RouteDest": dbr_dest(i), "NextHop": vco,
                                              "VpnGatewayId": gw, "Weight": 100, "NewWeight": 0},
                TF_CREATE_RETRY, token="none")
        tf.call("ModifyVpnPbrRouteEntryWeight", {"RegionId": REGION, "RouteDest": pbr_dest(i), "NextHop": vco,
                                                 "VpnGatewayId": gw, "RouteSource": SOURCE, "Weight": 100,
                                                 "NewWeight": 0}, TF_CREATE_RETRY, token="none")
    wait_gateway_active(c, gw)
    items, _ = tf.read_pages("DescribeVpnRouteEntries", gw)
    assert Counter((i["Weight"], i["State"]) for i in items) == Counter({(0, "published"): N})
    items, _ = tf.read_pages("DescribeVpnPbrRouteEntries", gw)
    assert Counter((i["Weight"], i["State"], i["Priority"]) for i in items) == Counter({(0, "published", 10): N})

    # --- delete (current weight), then wait until the route is no longer listed
    for i in range(N):
        try:
            tf.call("DeleteVpnRouteEntry", {"RegionId": REGION, "RouteDest": dbr_dest(i), "NextHop": vco,
                                            "VpnGatewayId": gw, "Weight": 0}, TF_DELETE_RETRY)
        except ApiError as e:
            if e.code != "InvalidRouteEntry.NotFound":
                raise
            pytest.fail(f"route {dbr_dest(i)} vanished before its delete: {e}")
        wait_for(f"dbr {dbr_dest(i)} gone", lambda: tf.read_dbr(gw, vco, dbr_dest(i)), lambda x: x is None,
                 timeout=60, interval=0.1)
        tf.call("DeleteVpnPbrRouteEntry", {"RegionId": REGION, "RouteDest": pbr_dest(i), "RouteSource": SOURCE,
                                           "NextHop": vco, "VpnGatewayId": gw, "Weight": 0}, TF_CREATE_RETRY)
        wait_for(f"pbr {pbr_dest(i)} gone", lambda: tf.read_pbr(gw, vco, SOURCE, pbr_dest(i)), lambda x: x is None,
                 timeout=60, interval=0.1)

    wait_gateway_active(c, gw)
    for action in ("DescribeVpnRouteEntries", "DescribeVpnPbrRouteEntries"):
        body = c.call(action, {"RegionId": REGION, "VpnGatewayId": gw, "PageSize": PAGE})
        assert body["TotalCount"] == 0, body
    body = c.call("DescribeRouteEntryList", {"RegionId": REGION, "RouteTableId": st.route_table_id,
                                             "NextHopId": gw, "MaxResult": 100})
    assert unwrap(body, "RouteEntrys", "RouteEntry") == [], "every published entry withdrawn with its route"
    assert set(tf.retries) <= TF_DELETE_RETRY, tf.retries


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_terraform_multi_parallel_creates(srv_tf: Server, make_client):
    """The provider's "multi" acceptance test: two routes created at once on one gateway
    (10.1.0.0/24 and 10.1.0.0/32, same next hop, weight 0); the loser must get a code the
    provider retries, and both end up listed."""
    import threading

    creds = srv_tf.create_account("tfm-" + uuid.uuid4().hex[:8])
    from clients import PY_LEGACY  # thread-safe in-process v1 client for the second "goroutine"

    c1 = make_client(POP_POST, srv_tf, creds["AccessKeyId"], creds["AccessKeySecret"])
    c2 = make_client(PY_LEGACY, srv_tf, creds["AccessKeyId"], creds["AccessKeySecret"])
    st = Stack()
    create_vpc(c1, st)
    create_gateway(c1, st)
    create_customer_gateway(c1, st, ip="1.2.3.4")
    create_connection(c1, st)
    gw, vco = st.gateway_id, st.connection_id
    results: Dict[str, Any] = {}
    tfs = {"a": TF(c1), "b": TF(c2)}

    def run(name: str, dest: str) -> None:
        try:
            results[name] = tfs[name].call("CreateVpnRouteEntry", {
                "RegionId": REGION, "VpnGatewayId": gw, "RouteDest": dest, "NextHop": vco, "Weight": 0,
                "PublishVpc": False}, TF_CREATE_RETRY)
        except Exception as e:  # noqa: BLE001 - reported below
            results[name] = e

    threads = [threading.Thread(target=run, args=("a", "10.1.0.0/24")),
               threading.Thread(target=run, args=("b", "10.1.0.0/32"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for name in ("a", "b"):
        assert isinstance(results.get(name), dict), f"create {name}: {results.get(name)!r}"
    retried = tfs["a"].retries + tfs["b"].retries
    assert set(retried) <= TF_CREATE_RETRY, retried
    wait_gateway_active(c1, gw)
    items, _ = tfs["a"].read_pages("DescribeVpnRouteEntries", gw)
    assert sorted(i["RouteDest"] for i in items) == ["10.1.0.0/24", "10.1.0.0/32"]
