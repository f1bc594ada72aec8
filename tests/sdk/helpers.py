"""Test helpers: polling, error expectation, JSON-type checks, resource builders."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List

from clients import ApiError, BaseClient

REGION = "cn-hangzhou"
VPC_CIDR = "192.168.0.0/16"
LOCAL_SUBNET = "192.168.0.0/24"
REMOTE_SUBNET = "10.10.0.0/24"
CGW_IP = "1.2.3.4"

IKE_CONFIG = {
    "IkeVersion": "ikev2",
    "IkeMode": "main",
    "IkeEncAlg": "aes256",
    "IkeAuthAlg": "sha256",
    "IkePfs": "group14",
    "IkeLifetime": 86400,
    "Psk": "vpnroute-test-psk",
}
IPSEC_CONFIG = {
    "IpsecEncAlg": "aes256",
    "IpsecAuthAlg": "sha256",
    "IpsecPfs": "group14",
    "IpsecLifetime": 3600,
}

# Codes Terraform retries on while a gateway/connection is busy (alibaba-api-surface.md §3.1, §5.3).
BUSY_CODES = {
    "VpnGateway.Configuring", "TaskConflict", "VpnTask.CONFLICT", "Appliance.Configuring",
    "VpnConnection.Configuring", "VpnRouteEntry.Configuring", "OperationConflict", "IncorrectStatus.VpnGateway",
}

POLL_TIMEOUT = 30.0


def name(prefix: str, variant: str = "") -> str:
    """A valid Alibaba resource name (starts with a letter, [A-Za-z0-9_.-], <= 100 chars)."""
    tail = uuid.uuid4().hex[:6]
    v = re.sub(r"[^A-Za-z0-9_.-]", "-", variant)
    return f"{prefix}-{v}-{tail}" if v else f"{prefix}-{tail}"


def now_ms() -> int:
    return int(time.time() * 1000)


def expect_error(fn: Callable[[], Any]) -> ApiError:
    try:
        result = fn()
    except ApiError as e:
        return e
    raise AssertionError(f"expected an API error, got success: {json.dumps(result)[:1500]}")


def assert_api_error(e: ApiError, status: int, code: str) -> None:
    assert (e.http_status, e.code) == (status, code), f"expected {status} {code}, got {e}"


def wait_for(desc: str, fn: Callable[[], Any], cond: Callable[[Any], bool], timeout: float = POLL_TIMEOUT,
             interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = fn()
        if cond(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {desc}; last value: "
                                 f"{json.dumps(last, default=str)[:2000]}")
        time.sleep(interval)


def call_retrying(client: BaseClient, action: str, params: Dict[str, Any], timeout: float = POLL_TIMEOUT,
                  retry_codes: Iterable[str] = BUSY_CODES) -> Dict[str, Any]:
    """Like Terraform: retry while the server says the resource is busy."""
    codes = set(retry_codes)
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.call(action, params)
        except ApiError as e:
            if e.code not in codes or time.monotonic() > deadline:
                raise
            time.sleep(0.25)


# --------------------------------------------------------------------------- JSON types


def type_problems(value: Any, schema: Any, path: str = "$") -> List[str]:
    """Compare a JSON value with an SDK model type tree (NodeDriver.schema). Returns problems.

    Unknown keys are not problems (typed clients drop them); ``None`` never appears in
    valid JSON bodies from the server for declared fields, so it is reported."""
    problems: List[str] = []
    if isinstance(schema, dict) and "model" in schema:
        if not isinstance(value, dict):
            return [f"{path}: expected object ({schema['model']}), got {type(value).__name__} {value!r:.80}"]
        for k, v in value.items():
            if k in schema["fields"]:
                problems += type_problems(v, schema["fields"][k], f"{path}.{k}")
        return problems
    if isinstance(schema, dict) and "array" in schema:
        if not isinstance(value, list):
            return [f"{path}: expected array, got {type(value).__name__} {value!r:.80}"]
        for i, item in enumerate(value):
            problems += type_problems(item, schema["array"], f"{path}[{i}]")
        return problems
    if schema == "string":
        ok = isinstance(value, str)
    elif schema == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif schema == "boolean":
        ok = isinstance(value, bool)
    elif schema == "map":
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        problems.append(f"{path}: expected {schema}, got {type(value).__name__} {value!r:.80}")
    return problems


def unknown_keys(value: Any, schema: Any, path: str = "$") -> List[str]:
    """Keys in a raw JSON body that the SDK model does not know (typed clients would drop
    them silently, so they usually mean a misspelt field name)."""
    out: List[str] = []
    if isinstance(schema, dict) and "model" in schema and isinstance(value, dict):
        for k, v in value.items():
            if k not in schema["fields"]:
                out.append(f"{path}.{k}")
            else:
                out += unknown_keys(v, schema["fields"][k], f"{path}.{k}")
    elif isinstance(schema, dict) and "array" in schema and isinstance(value, list):
        for i, item in enumerate(value):
            out += unknown_keys(item, schema["array"], f"{path}[{i}]")
    return out


def assert_no_unknown_keys(body: Any, schema: Any) -> None:
    extra = unknown_keys(body, schema)
    assert not extra, "fields unknown to the SDK model (typed clients drop them):\n  " + "\n  ".join(extra)


def assert_types(body: Any, schema: Any) -> None:
    problems = type_problems(body, schema)
    assert not problems, "JSON type mismatches vs the SDK model:\n  " + "\n  ".join(problems)


def assert_keys(body: Dict[str, Any], keys: Iterable[str], where: str = "") -> None:
    missing = [k for k in keys if k not in body]
    assert not missing, f"{where or 'body'} lacks {missing}; has {sorted(body)}"


def assert_success_body(body: Any) -> None:
    assert isinstance(body, dict), f"success body is not an object: {body!r:.300}"
    assert isinstance(body.get("RequestId"), str) and body["RequestId"], f"no RequestId: {body!r:.300}"
    assert "Code" not in body and "code" not in body, f"success body contains a Code key: {body!r:.500}"


def assert_ms_timestamp(v: Any, what: str) -> None:
    assert isinstance(v, int) and not isinstance(v, bool), f"{what} must be an int (ms), got {v!r}"
    assert abs(v - now_ms()) < 24 * 3600 * 1000, f"{what}={v} is not a current epoch-ms timestamp"


def unwrap(body: Dict[str, Any], outer: str, inner: str) -> List[Any]:
    """``body[outer][inner]`` — Alibaba list wrapper, e.g. VpnGateways.VpnGateway."""
    assert outer in body, f"missing list wrapper {outer!r}: keys {sorted(body)}"
    w = body[outer]
    assert isinstance(w, dict), f"{outer} must be an object wrapping {inner!r}, got {type(w).__name__}: {w!r:.200}"
    items = w.get(inner, [])
    assert isinstance(items, list), f"{outer}.{inner} must be an array, got {type(items).__name__}"
    return items


def strip_volatile(body: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in body.items() if k != "RequestId"}


# --------------------------------------------------------------------------- resource builders


@dataclass
class Stack:
    vpc_id: str = ""
    vrouter_id: str = ""
    route_table_id: str = ""
    gateway_id: str = ""
    cgw_id: str = ""
    connection_id: str = ""
    names: Dict[str, str] = field(default_factory=dict)
    created: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # action -> create body


def create_vpc(client: BaseClient, stack: Stack, variant: str = "") -> Dict[str, Any]:
    stack.names["vpc"] = name("vpc", variant)
    body = client.call("CreateVpc", {"RegionId": REGION, "CidrBlock": VPC_CIDR, "VpcName": stack.names["vpc"]})
    assert_success_body(body)
    stack.created["CreateVpc"] = body
    stack.vpc_id = body.get("VpcId", "")
    stack.vrouter_id = body.get("VRouterId", "")
    stack.route_table_id = body.get("RouteTableId", "")
    assert stack.vpc_id.startswith("vpc-"), f"CreateVpc VpcId: {body!r}"
    wait_for(f"VPC {stack.vpc_id} Available",
             lambda: client.call("DescribeVpcs", {"RegionId": REGION, "VpcId": stack.vpc_id}),
             lambda b: any(v.get("Status") == "Available" for v in unwrap(b, "Vpcs", "Vpc")))
    return body


def describe_gateway(client: BaseClient, gw: str) -> Dict[str, Any]:
    return client.call("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": gw})


def wait_gateway_active(client: BaseClient, gw: str, timeout: float = POLL_TIMEOUT) -> Dict[str, Any]:
    return wait_for(f"gateway {gw} Status=active", lambda: describe_gateway(client, gw),
                    lambda b: b.get("Status") == "active", timeout=timeout)


def create_gateway(client: BaseClient, stack: Stack, variant: str = "", wait: bool = True) -> Dict[str, Any]:
    stack.names["gw"] = name("gw", variant)
    body = call_retrying(client, "CreateVpnGateway", {
        "RegionId": REGION, "VpcId": stack.vpc_id, "Bandwidth": 10, "EnableIpsec": True, "EnableSsl": True,
        "SslConnections": 5, "Name": stack.names["gw"],
    })
    assert_success_body(body)
    stack.created["CreateVpnGateway"] = body
    stack.gateway_id = body.get("VpnGatewayId", "")
    assert stack.gateway_id.startswith("vpn-"), f"CreateVpnGateway VpnGatewayId: {body!r}"
    if wait:
        wait_gateway_active(client, stack.gateway_id)
    return body


def create_customer_gateway(client: BaseClient, stack: Stack, variant: str = "", ip: str = CGW_IP) -> Dict[str, Any]:
    stack.names["cgw"] = name("cgw", variant)
    body = client.call("CreateCustomerGateway", {"RegionId": REGION, "IpAddress": ip, "Name": stack.names["cgw"]})
    assert_success_body(body)
    stack.created["CreateCustomerGateway"] = body
    stack.cgw_id = body.get("CustomerGatewayId", "")
    assert stack.cgw_id.startswith("cgw-"), f"CreateCustomerGateway CustomerGatewayId: {body!r}"
    return body


def describe_connection(client: BaseClient, vco: str) -> Dict[str, Any]:
    return client.call("DescribeVpnConnection", {"RegionId": REGION, "VpnConnectionId": vco})


def create_connection(client: BaseClient, stack: Stack, variant: str = "", wait: bool = True) -> Dict[str, Any]:
    stack.names["vco"] = name("vco", variant)
    body = call_retrying(client, "CreateVpnConnection", {
        "RegionId": REGION, "VpnGatewayId": stack.gateway_id, "CustomerGatewayId": stack.cgw_id,
        "LocalSubnet": LOCAL_SUBNET, "RemoteSubnet": REMOTE_SUBNET,
        "IkeConfig": json.dumps(IKE_CONFIG), "IpsecConfig": json.dumps(IPSEC_CONFIG),
        "Name": stack.names["vco"],
    })
    assert_success_body(body)
    stack.created["CreateVpnConnection"] = body
    stack.connection_id = body.get("VpnConnectionId", "")
    assert stack.connection_id.startswith("vco-"), f"CreateVpnConnection VpnConnectionId: {body!r}"
    if wait:
        wait_for(f"connection {stack.connection_id} State=active",
                 lambda: describe_connection(client, stack.connection_id),
                 lambda b: b.get("State") == "active")
        # the gateway may be 'updating' while the connection is configured
        wait_gateway_active(client, stack.gateway_id)
    return body


def build_stack(client: BaseClient, variant: str = "") -> Stack:
    st = Stack()
    create_vpc(client, st, variant)
    create_gateway(client, st, variant)
    create_customer_gateway(client, st, variant)
    create_connection(client, st, variant)
    return st


def snapshot(client: BaseClient, st: Stack) -> Dict[str, Dict[str, Any]]:
    """Describe everything of a stack (RequestId stripped) for before/after comparisons."""
    return {
        "DescribeVpcs": strip_volatile(client.call("DescribeVpcs", {"RegionId": REGION, "VpcId": st.vpc_id})),
        "DescribeVpnGateway": strip_volatile(describe_gateway(client, st.gateway_id)),
        "DescribeVpnGateways": strip_volatile(
            client.call("DescribeVpnGateways", {"RegionId": REGION, "VpcId": st.vpc_id})),
        "DescribeCustomerGateway": strip_volatile(
            client.call("DescribeCustomerGateway", {"RegionId": REGION, "CustomerGatewayId": st.cgw_id})),
        "DescribeVpnConnection": strip_volatile(describe_connection(client, st.connection_id)),
        "DescribeVpnConnections": strip_volatile(
            client.call("DescribeVpnConnections", {"RegionId": REGION, "VpnGatewayId": st.gateway_id})),
        "DescribeRouteTableList": strip_volatile(
            client.call("DescribeRouteTableList", {"RegionId": REGION, "VpcId": st.vpc_id})),
    }
