"""RPC protocol behaviour (authentication, replay protection, versions, actions,
validation, tenancy, response formats) as seen by the real SDK clients, plus
hand-signed raw requests for what no SDK can produce.

Codes/statuses follow Alibaba's gateway-level errors (alibaba-api-surface.md §4.5,
sdk-wire.md §4/§5)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest

from clients import (
    PY_LEGACY,
    PY_TEA_V3,
    ApiError,
    RawResponse,
    stale_timestamp,
    utc_timestamp,
    v1_string_to_sign,
)
from helpers import REGION, build_stack, expect_error

MISSING_SIGNATURE_CODES = {"MissingParameter", "IncompleteSignature"}


def assert_error(e: ApiError, status: int, code: str) -> None:
    assert (e.http_status, e.code) == (status, code), f"expected HTTP {status} {code}, got {e}"
    assert e.request_id and e.request_id != "None", f"error without RequestId: {e}"


def assert_raw_error(r: RawResponse, status: int, code=None, codes=None) -> dict:
    assert r.status == status, f"expected HTTP {status}, got {r}"
    assert r.content_type.replace(" ", "").lower().startswith("application/json"), r
    body = r.json()
    for k in ("RequestId", "HostId", "Code", "Message", "Recommend"):
        assert k in body, f"error body lacks {k}: {body}"
    if code is not None:
        assert body["Code"] == code, f"expected {code}, got {body}"
    if codes is not None:
        assert body["Code"] in codes or body["Code"].startswith("Missing"), f"expected one of {codes}: {body}"
    return body


def assert_raw_ok(r: RawResponse) -> dict:
    assert r.status == 200, f"expected 200, got {r}"
    assert r.content_type.replace(" ", "").lower().startswith("application/json"), r
    body = r.json()
    assert isinstance(body.get("RequestId"), str) and body["RequestId"], body
    assert "Code" not in body and "code" not in body, f"success body has a Code key: {body}"
    return body


@pytest.fixture(scope="module")
def root_stack(server):
    """One VPC + active gateway + customer gateway + connection owned by the root account."""
    from clients import make_client

    c = make_client(PY_TEA_V3, server.endpoint_fn(), server.root_ak, server.root_sk)
    return build_stack(c, "proto")


@pytest.fixture(scope="module")
def other_account(server):
    return server.create_account("other")


# --------------------------------------------------------------------------- authentication


def test_unknown_access_key_id(client):
    c = client.with_credentials("LTAI5tNoSuchKey0000000000", "doesnotmatter")
    assert_error(expect_error(lambda: c.call("DescribeRegions", {})), 404, "InvalidAccessKeyId.NotFound")


def test_wrong_secret(client):
    c = client.with_credentials(client.ak, client.sk + "-wrong")
    e = expect_error(lambda: c.call("DescribeRegions", {}))
    if client.variant == PY_LEGACY:
        # aliyunsdkcore compares "server string to sign is:<sts>" with its own string to
        # sign and, when equal, rewrites the error (sdk-wire.md §4, observed).
        assert_error(e, 400, "InvalidAccessKeySecret")
    else:
        assert_error(e, 400, "SignatureDoesNotMatch")


def test_wrong_secret_raw_message_carries_string_to_sign(raw):
    ts, nonce = utc_timestamp(), uuid.uuid4().hex
    r = raw.v1("DescribeRegions", {}, sk="wrong-secret", timestamp=ts, nonce=nonce)
    body = assert_raw_error(r, 400, "SignatureDoesNotMatch")
    sent = {"Action": "DescribeRegions", "Version": "2016-04-28", "Format": "JSON", "AccessKeyId": raw.ak,
            "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": nonce, "Timestamp": ts}
    sts = v1_string_to_sign("POST", sent)
    assert body["Message"].endswith(":" + sts), \
        f"message must end with 'server string to sign is:<StringToSign>' (docs; legacy SDK parses it): {body}"


def test_disabled_and_deleted_keys(server, make_client):
    acct = server.create_account("keys")
    c = make_client(PY_TEA_V3, ak=acct["AccessKeyId"], sk=acct["AccessKeySecret"])
    c.call("DescribeRegions", {})
    listed = server.admin("key", "list")
    assert acct["AccessKeyId"] in str(listed), f"key list does not show the new key: {listed}"
    server.admin("key", "disable", acct["AccessKeyId"])
    e = expect_error(lambda: c.call("DescribeRegions", {}))
    assert e.http_status is not None and 400 <= e.http_status < 500, e
    server.admin("key", "delete", acct["AccessKeyId"])
    assert_error(expect_error(lambda: c.call("DescribeRegions", {})), 404, "InvalidAccessKeyId.NotFound")


def test_missing_signature_v1(raw):
    r = raw.v1("DescribeRegions", {}, sign=False)
    assert_raw_error(r, 400, codes=MISSING_SIGNATURE_CODES)


def test_missing_authorization_acs3(raw):
    r = raw.acs3("DescribeRegions", {}, sign=False)
    assert_raw_error(r, 400, codes=MISSING_SIGNATURE_CODES)


def test_raw_signers_are_accepted(raw):
    """Sanity for the raw helper itself: correctly signed v1 (query, form body, GET) and ACS3."""
    assert_raw_ok(raw.v1("DescribeRegions", {}))
    assert_raw_ok(raw.v1("DescribeRegions", {}, method="GET"))
    assert_raw_ok(raw.v1("DescribeRegions", {}, in_body=True))
    assert_raw_ok(raw.acs3("DescribeRegions", {}))


# --------------------------------------------------------------------------- replay protection


def test_stale_timestamp_v1(raw):
    r = raw.v1("DescribeRegions", {}, timestamp=stale_timestamp(20))
    assert_raw_error(r, 400, "InvalidTimeStamp.Expired")


def test_stale_date_acs3(raw):
    r = raw.acs3("DescribeRegions", {}, date=stale_timestamp(20))
    assert_raw_error(r, 400, "InvalidTimeStamp.Expired")


def test_recent_timestamp_within_window_is_accepted(raw):
    assert_raw_ok(raw.v1("DescribeRegions", {}, timestamp=stale_timestamp(5)))


def test_nonce_reuse_v1(raw):
    nonce = uuid.uuid4().hex
    assert_raw_ok(raw.v1("DescribeRegions", {}, nonce=nonce))
    assert_raw_error(raw.v1("DescribeRegions", {}, nonce=nonce), 400, "SignatureNonceUsed")


def test_nonce_reuse_acs3(raw):
    nonce = uuid.uuid4().hex
    assert_raw_ok(raw.acs3("DescribeRegions", {}, nonce=nonce))
    assert_raw_error(raw.acs3("DescribeRegions", {}, nonce=nonce), 400, "SignatureNonceUsed")


@pytest.mark.parametrize("how", ["restart", "kill9"])
def test_nonce_reuse_rejected_after_restart(how, fresh_server, make_raw):
    raw = make_raw(fresh_server)
    nonce = uuid.uuid4().hex
    assert_raw_ok(raw.v1("DescribeRegions", {}, nonce=nonce))
    getattr(fresh_server, how)()
    assert_raw_error(raw.v1("DescribeRegions", {}, nonce=nonce), 400, "SignatureNonceUsed")


# --------------------------------------------------------------------------- version / action


def test_invalid_version(client):
    e = expect_error(lambda: client.call("DescribeRegions", {}, version="2014-01-01"))
    assert_error(e, 400, "InvalidVersion")


def test_invalid_version_raw(raw):
    assert_raw_error(raw.v1("DescribeRegions", {}, version="2014-01-01"), 400, "InvalidVersion")


def test_unknown_action(client):
    e = expect_error(lambda: client.call("DescribeNoSuchThing", {"RegionId": REGION}, generic=True))
    assert_error(e, 404, "InvalidAction.NotFound")


def test_unknown_action_raw(raw):
    assert_raw_error(raw.v1("DescribeNoSuchThing", {}), 404, "InvalidAction.NotFound")
    assert_raw_error(raw.acs3("DescribeNoSuchThing", {}), 404, "InvalidAction.NotFound")


# --------------------------------------------------------------------------- validation


def test_missing_required_parameter(client):
    e = expect_error(lambda: client.call("DescribeVpnGateway", {"RegionId": REGION}))
    assert e.http_status == 400 and e.code and e.code.startswith("Missing"), \
        f"DescribeVpnGateway without VpnGatewayId must be 400 Missing*: {e}"
    assert "VpnGatewayId" in (e.message or ""), f"message should name the parameter: {e}"


def test_unknown_region(client):
    e = expect_error(lambda: client.call("DescribeVpnGateways", {"RegionId": "xx-nowhere-1"}))
    assert_error(e, 404, "InvalidRegionId.NotFound")


def test_unknown_gateway(client):
    e = expect_error(lambda: client.call("DescribeVpnGateway",
                                         {"RegionId": REGION, "VpnGatewayId": "vpn-doesnotexist000000"}))
    assert_error(e, 404, "InvalidVpnGatewayInstanceId.NotFound")


@pytest.mark.parametrize("value", ["True", "true", "TRUE", "False", "false"])
def test_boolean_spellings_accepted(raw, root_stack, value):
    body = assert_raw_ok(raw.v1("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": root_stack.gateway_id,
                                                       "IncludeReservationData": value}))
    assert body["VpnGatewayId"] == root_stack.gateway_id


@pytest.mark.parametrize("value,expected", [("True", "enable"), ("true", "enable"),
                                            ("False", "disable"), ("false", "disable")])
def test_boolean_spellings_take_effect(raw, root_stack, value, expected):
    body = assert_raw_ok(raw.v1("CreateVpnGateway", {
        "RegionId": REGION, "VpcId": root_stack.vpc_id, "Bandwidth": 10, "EnableSsl": value,
        "SslConnections": 5, "Name": "gw-bool-" + value.lower() + "-" + uuid.uuid4().hex[:4]}))
    gw = assert_raw_ok(raw.v1("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": body["VpnGatewayId"]}))
    assert gw["SslVpn"] == expected, f"EnableSsl={value} -> SslVpn={gw.get('SslVpn')}"


# --------------------------------------------------------------------------- tenancy


def test_other_accounts_gateway_is_not_found(client, root_stack, other_account):
    c = client.with_credentials(other_account["AccessKeyId"], other_account["AccessKeySecret"])
    e = expect_error(lambda: c.call("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": root_stack.gateway_id}))
    assert_error(e, 404, "InvalidVpnGatewayInstanceId.NotFound")
    listed = c.call("DescribeVpnGateways", {"RegionId": REGION})
    assert listed.get("TotalCount") == 0, f"other account must not list root's gateways: {listed}"
    e = expect_error(lambda: c.call("DeleteVpnGateway", {"RegionId": REGION, "VpnGatewayId": root_stack.gateway_id}))
    assert_error(e, 404, "InvalidVpnGatewayInstanceId.NotFound")
    e = expect_error(lambda: c.call("DescribeVpnConnection",
                                    {"RegionId": REGION, "VpnConnectionId": root_stack.connection_id}))
    assert_error(e, 404, "InvalidVpnConnectionInstanceId.NotFound")
    # still there for its owner
    assert client.call("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": root_stack.gateway_id})[
        "VpnGatewayId"] == root_stack.gateway_id


# --------------------------------------------------------------------------- response formats


@pytest.mark.parametrize("action,params", [
    ("DescribeRegions", {}),
    ("DescribeVpcs", {"RegionId": REGION}),
    ("DescribeVpnGateways", {"RegionId": REGION}),
    ("DescribeCustomerGateways", {"RegionId": REGION}),
    ("DescribeVpnConnections", {"RegionId": REGION}),
])
def test_success_bodies_never_contain_code(raw, root_stack, action, params):
    assert_raw_ok(raw.v1(action, params))
    assert_raw_ok(raw.acs3(action, params))


def test_format_case_and_default_are_json(raw):
    for fmt in ("JSON", "json", None):
        assert_raw_ok(raw.v1("DescribeRegions", {}, fmt=fmt))


def test_xml_success(raw):
    r = raw.v1("DescribeRegions", {}, fmt="XML")
    assert r.status == 200, r
    ct = r.content_type.replace(" ", "").lower()
    assert ct.startswith("text/xml") or ct.startswith("application/xml"), r
    root = ET.fromstring(r.body)
    assert root.tag == "DescribeRegionsResponse", r.text[:300]
    assert root.findtext("RequestId"), r.text[:300]
    assert root.find("Code") is None
    ids = {e.findtext("RegionId") for e in root.findall("./Regions/Region")}
    assert "cn-hangzhou" in ids, f"XML list must be <Regions><Region>…: {r.text[:500]}"


def test_xml_error(raw):
    r = raw.v1("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": "vpn-doesnotexist000000"}, fmt="XML")
    assert r.status == 404, r
    assert r.headers.get("content-type") == "text/xml;charset=utf-8", \
        f"XML errors need Content-Type exactly text/xml;charset=utf-8 (Tea clients): {r.headers}"
    root = ET.fromstring(r.body)
    assert root.tag == "Error", r.text[:300]
    assert root.findtext("Code") == "InvalidVpnGatewayInstanceId.NotFound"
    assert root.findtext("RequestId") and root.findtext("Message") is not None


def test_error_bodies_are_json_with_all_fields(raw):
    body = assert_raw_error(raw.v1("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": "vpn-nope"}), 404,
                            "InvalidVpnGatewayInstanceId.NotFound")
    assert body["Code"] in body["Recommend"] or body["Recommend"].startswith("http"), body


def test_error_exposed_uniformly_by_all_clients(clients):
    """Every client reports the same Code, HTTP status and a RequestId for one error."""
    seen = {}
    for v, c in clients.items():
        e = expect_error(lambda: c.call("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": "vpn-none"}))
        seen[v] = (e.http_status, e.code, bool(e.request_id))
    assert set(seen.values()) == {(404, "InvalidVpnGatewayInstanceId.NotFound", True)}, seen


# --------------------------------------------------------------------------- hostile input (issue 9)


@pytest.mark.parametrize("params,code", [
    ({"Description": "rlo\u202etxt.exe"}, "InvalidDescription.Malformed"),
    ({"Description": "line\nbreak"}, "InvalidDescription.Malformed"),
    ({"Description": "nonchar\ufdd0"}, "InvalidDescription.Malformed"),
    ({"Description": "  HTTPS://phish"}, "InvalidDescription.Malformed"),
    ({"VpcName": "HTTP://x"}, "InvalidName.Malformed"),
    ({"VpcName": "tab\there"}, "InvalidName.Malformed"),
])
def test_hostile_names_and_descriptions_are_malformed(client, params, code):
    e = expect_error(lambda: client.call("CreateVpc", {"RegionId": REGION, **params}))
    assert_error(e, 400, code)


@pytest.mark.parametrize("dest", ["0.0.0.0/8", "169.254.0.0/16", "169.254.10.0/24"])
def test_reserved_route_destinations_are_invalid(client, root_stack, dest):
    e = expect_error(lambda: client.call("CreateVpnRouteEntry", {
        "RegionId": REGION, "VpnGatewayId": root_stack.gateway_id, "RouteDest": dest,
        "NextHop": root_stack.connection_id, "Weight": 100, "PublishVpc": False}))
    assert_error(e, 400, "OperationFailed.InvalidCidrBlock")


def test_integers_take_a_plus_sign_and_leading_zeros(raw):
    body = assert_raw_ok(raw.v1("DescribeVpcs", {"RegionId": REGION, "PageSize": "+5", "PageNumber": "01"}))
    assert (body["PageSize"], body["PageNumber"]) == (5, 1), body


def test_nonce_with_control_characters_is_refused_after_restart(fresh_server, make_raw):
    raw = make_raw(fresh_server)
    nonce = "dur\nnl-" + uuid.uuid4().hex
    assert_raw_ok(raw.v1("DescribeRegions", {}, nonce=nonce))
    fresh_server.kill9()
    assert_raw_error(raw.v1("DescribeRegions", {}, nonce=nonce), 400, "SignatureNonceUsed")


def test_operator_endpoints_require_the_token(server):
    import http.client

    from server import operator_headers

    def get(path, headers):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    for path in ("/_vpnroute/gateways", "/metrics"):
        status, body = get(path, {})
        assert status == 401, (path, body)
        status, body = get(path, {"Authorization": "Bearer wrong"})
        assert status == 401, (path, body)
        status, body = get(path, operator_headers())
        assert status == 200, (path, body)


def test_client_token_look_alikes_differ(client):
    token = uuid.uuid4().hex
    first = client.call("CreateVpc", {"RegionId": REGION, "ClientToken": token, "Description": "x",
                                      "VpcName": "bar"})
    e = expect_error(lambda: client.call("CreateVpc", {"RegionId": REGION, "ClientToken": token,
                                                       "Description": "x\0VpcName\0bar"}))
    assert_error(e, 400, "IdempotentParameterMismatch")
    again = client.call("CreateVpc", {"RegionId": REGION, "ClientToken": token, "Description": "x",
                                      "VpcName": "bar"})
    assert again["VpcId"] == first["VpcId"]
