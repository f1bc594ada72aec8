"""RAM authorization through the real RAM, STS and VPC SDKs (alibabacloud_ram20150501,
alibabacloud_sts20150401, alibabacloud_vpc20160428) against the real binary.

Covers: RAM user/key/group/policy/role management and its error codes; a user without
policy, read-only, resource-level, wildcard, explicit-deny, group and SourceIp policies; STS
AssumeRole with and without an inline session policy, GetCallerIdentity, expired, forged and
mismatched tokens; disabled and deleted keys; one allowed and one denied call for every VPC
action (from the server's operations table); root unaffected; other accounts' resources
still NotFound. NotResource, acs:CurrentTime and acs:MFAPresent conditions, resource ARN case,
Deny in a trust policy; cross-account AssumeRole; delete conflicts and cheap limits; RAM and STS
through the generic clients (call_api / callApi, CommonRequest, pop-core).

Scenarios taking ``sdk_root`` run twice: through the Python Tea SDKs and through the Node Tea
SDKs (@alicloud/vpc20160428, @alicloud/ram20150501, @alicloud/sts20150401 via the driver).
"""

from __future__ import annotations

import calendar
import json
import time
import uuid
from typing import Any, Callable, Dict, List, Optional

import pytest

from clients import ALL_VARIANTS, NODE_TEA_V2, NODE_TEA_V3, PY_TEA_V2, PY_TEA_V3, ApiError, SdkFailure
from helpers import REGION, assert_api_error, build_stack, call_retrying, create_connection, create_customer_gateway, \
    create_gateway, create_vpc, expect_error, Stack, wait_gateway_active

RAM_VERSION = "2015-05-01"
STS_VERSION = "2015-04-01"

TRUST_ACCOUNT = '{{"Statement":[{{"Action":"sts:AssumeRole","Effect":"Allow","Principal":{{"RAM":["acs:ram::{acct}:root"]}}}}],"Version":"1"}}'


def doc(*statements: Dict[str, Any]) -> str:
    return json.dumps({"Version": "1", "Statement": list(statements)})


def allow(action, resource="*", **extra) -> Dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action, resource="*", **extra) -> Dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- Tea clients


class Tea:
    """One Python Tea client (VPC, RAM or STS) with optional STS credentials.

    ``call(action, params)`` returns the body as a dict and raises clients.ApiError
    (``raw['access_denied_detail']`` = what the SDK parsed) for API errors."""

    MODULES = {"vpc": "alibabacloud_vpc20160428", "ram": "alibabacloud_ram20150501", "sts": "alibabacloud_sts20150401"}

    def __init__(self, product: str, endpoint: str, ak: str, sk: str, token: Optional[str] = None,
                 v2: bool = False):
        import importlib

        from alibabacloud_tea_openapi import utils_models as om

        self.product = product
        self.variant = PY_TEA_V2 if v2 else PY_TEA_V3
        mod = importlib.import_module(self.MODULES[product] + ".client")
        self.models = importlib.import_module(self.MODULES[product] + ".models")
        cfg = om.Config(access_key_id=ak, access_key_secret=sk, security_token=token, region_id=REGION,
                        endpoint=endpoint, protocol="http", read_timeout=30000, connect_timeout=10000)
        if v2:
            cfg.signature_algorithm = "v2"
        self.client = mod.Client(cfg)

    def call(self, action: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        from alibabacloud_tea_openapi import exceptions as tea_exc
        from darabonba.runtime import RuntimeOptions

        # The SDK's snake case is irregular (`create_vswitch`): match ignoring underscores.
        wanted = (action + "withoptions").lower()
        method = next(getattr(self.client, n) for n in dir(self.client) if n.replace("_", "").lower() == wanted)
        req_cls = getattr(self.models, action + "Request", None)
        try:
            if req_cls is None:
                resp = method(RuntimeOptions())
            else:
                req = req_cls()
                req.from_map(dict(params or {}))
                sent = req.to_map()
                missing = [k for k in (params or {}) if k not in sent]
                assert not missing, f"{action}Request has no field(s) {missing}"
                resp = method(req, RuntimeOptions())
            return resp.body.to_map() if resp.body is not None else {}
        except tea_exc.AlibabaCloudException as e:
            raise ApiError(code=e.code, message=e.message, http_status=getattr(e, "status_code", None),
                           request_id=getattr(e, "request_id", None),
                           raw={"variant": self.variant, "data": getattr(e, "data", None),
                                "access_denied_detail": getattr(e, "access_denied_detail", None)}) from None
        except Exception as e:
            raise SdkFailure(self.variant, type(e).__name__, str(e)) from e


class Identity:
    """Credentials plus clients for each product."""

    def __init__(self, server, ak: str, sk: str, token: Optional[str] = None, v2: bool = False):
        self.server, self.ak, self.sk, self.token, self.v2 = server, ak, sk, token, v2

    def api(self, product: str) -> Tea:
        return Tea(product, self.server.endpoint, self.ak, self.sk, self.token, self.v2)

    def vpc(self, action: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return self.api("vpc").call(action, params)

    def ram(self, action: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return self.api("ram").call(action, params)

    def sts(self, action: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return self.api("sts").call(action, params)

    def signed_v2(self) -> "Identity":
        return Identity(self.server, self.ak, self.sk, self.token, v2=True)

    def derive(self, ak: str, sk: str, token: Optional[str] = None) -> "Identity":
        """Other credentials through the same kind of SDK (Python or Node, same signature)."""
        return Identity(self.server, ak, sk, token, self.v2)


class NodeTea:
    """The Node Tea clients (@alicloud/vpc20160428, ram20150501, sts20150401) through the
    driver, with the interface of :class:`Tea`."""

    def __init__(self, driver, product: str, endpoint: str, ak: str, sk: str, token: Optional[str], v2: bool):
        self.driver, self.product = driver, product
        self.variant = NODE_TEA_V2 if v2 else NODE_TEA_V3
        self.endpoint, self.ak, self.sk, self.token = endpoint, ak, sk, token

    def call(self, action: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        msg = self.driver.request({"variant": self.variant, "endpoint": self.endpoint, "ak": self.ak, "sk": self.sk,
                                   "action": action, "params": dict(params or {}), "product": self.product,
                                   "token": self.token})
        if msg.get("ok"):
            return msg.get("body") or {}
        if msg.get("kind") == "api":
            raise ApiError(code=msg.get("code"), message=msg.get("message"), http_status=msg.get("status"),
                           request_id=msg.get("request_id"),
                           raw={"variant": self.variant, "data": msg.get("data"),
                                "access_denied_detail": msg.get("access_denied_detail")})
        raise SdkFailure(self.variant, str(msg.get("name")), str(msg.get("message")), msg.get("stack"))


class NodeIdentity(Identity):
    def __init__(self, driver, server, ak: str, sk: str, token: Optional[str] = None, v2: bool = False):
        super().__init__(server, ak, sk, token, v2)
        self.driver = driver

    def api(self, product: str) -> NodeTea:  # type: ignore[override]
        return NodeTea(self.driver, product, self.server.endpoint, self.ak, self.sk, self.token, self.v2)

    def signed_v2(self) -> "NodeIdentity":
        return NodeIdentity(self.driver, self.server, self.ak, self.sk, self.token, v2=True)

    def derive(self, ak: str, sk: str, token: Optional[str] = None) -> "NodeIdentity":
        return NodeIdentity(self.driver, self.server, ak, sk, token, self.v2)


def vpc_client(identity: Identity):
    """An object with ``call(action, params)`` for the helpers module (VPC via Tea v3)."""
    return identity.api("vpc")


@pytest.fixture(scope="module")
def root(server) -> Identity:
    return Identity(server, server.root_ak, server.root_sk)


@pytest.fixture(params=["py", "node"])
def sdk_root(request, root) -> Identity:
    """The account's root through the Python Tea SDKs or the Node Tea SDKs (@alicloud/vpc20160428,
    @alicloud/ram20150501, @alicloud/sts20150401): a scenario taking it runs once per language,
    and every identity it derives (users, role sessions) uses the same SDKs."""
    if request.param == "py":
        return root
    return NodeIdentity(request.getfixturevalue("node_driver"), root.server, root.ak, root.sk)


@pytest.fixture(scope="module")
def root_account(root) -> str:
    return root.sts("GetCallerIdentity")["AccountId"]


@pytest.fixture(scope="module")
def stack(root) -> Stack:
    return build_stack(vpc_client(root))


def new_user(root: Identity, *policies: str, name: Optional[str] = None) -> Identity:
    """A RAM user with an access key and the given system policies attached."""
    user = name or uniq("u")
    root.ram("CreateUser", {"UserName": user})
    for p in policies:
        root.ram("AttachPolicyToUser", {"PolicyType": "System", "PolicyName": p, "UserName": user})
    key = root.ram("CreateAccessKey", {"UserName": user})["AccessKey"]
    ident = root.derive(key["AccessKeyId"], key["AccessKeySecret"])
    ident.user_name = user  # type: ignore[attr-defined]
    return ident


def custom_policy(root: Identity, document: str, *, user: Optional[str] = None, group: Optional[str] = None,
                  role: Optional[str] = None) -> str:
    name = uniq("p")
    root.ram("CreatePolicy", {"PolicyName": name, "PolicyDocument": document})
    for kind, target in (("User", user), ("Group", group), ("Role", role)):
        if target:
            root.ram(f"AttachPolicyTo{kind}", {"PolicyType": "Custom", "PolicyName": name, f"{kind}Name": target})
    return name


def denied(fn: Callable[[], Any], code: str = "Forbbiden.SubUser") -> ApiError:
    e = expect_error(fn)
    assert_api_error(e, 403, code)
    return e


def gateways(ident: Identity, stack: Stack) -> Dict[str, Any]:
    return ident.vpc("DescribeVpnGateways", {"RegionId": REGION, "VpcId": stack.vpc_id})


# --------------------------------------------------------------------------- identity basics


def test_root_caller_identity_and_is_never_limited(root, root_account, stack):
    me = root.sts("GetCallerIdentity")
    assert me["IdentityType"] == "Account"
    assert me["Arn"] == f"acs:ram::{root_account}:root"
    assert me["UserId"] == root_account
    # A Deny policy cannot be attached to root at all; root just works.
    assert gateways(root, stack)["VpnGateways"]["VpnGateway"][0]["VpnGatewayId"] == stack.gateway_id


def test_user_lifecycle_and_errors(root):
    name = uniq("alice")
    u = root.ram("CreateUser", {"UserName": name, "DisplayName": "Alice", "Email": "alice@example.com",
                                "MobilePhone": "86-18600000000", "Comments": "c"})["User"]
    assert u["UserName"] == name and u["DisplayName"] == "Alice" and len(u["UserId"]) == 16
    assert u["CreateDate"].endswith("Z") and "T" in u["CreateDate"]
    assert_api_error(expect_error(lambda: root.ram("CreateUser", {"UserName": name})), 409, "EntityAlreadyExists.User")
    assert_api_error(expect_error(lambda: root.ram("CreateUser", {"UserName": "bad name"})), 400,
                     "InvalidParameter.UserName.InvalidChars")
    assert_api_error(expect_error(lambda: root.ram("GetUser", {"UserName": uniq("nobody")})), 404, "EntityNotExist.User")
    assert root.ram("GetUser", {"UserName": name})["User"]["Email"] == "alice@example.com"
    listed = root.ram("ListUsers", {"MaxItems": 1000})
    assert listed["IsTruncated"] is False
    assert name in [x["UserName"] for x in listed["Users"]["User"]]
    page = root.ram("ListUsers", {"MaxItems": 1})
    if page["IsTruncated"]:
        assert page["Marker"]
    renamed = uniq("alice2")
    u2 = root.ram("UpdateUser", {"UserName": name, "NewUserName": renamed, "NewDisplayName": "A2"})["User"]
    assert (u2["UserName"], u2["DisplayName"], u2["UserId"]) == (renamed, "A2", u["UserId"])
    key = root.ram("CreateAccessKey", {"UserName": renamed})["AccessKey"]
    assert key["Status"] == "Active" and key["AccessKeySecret"]
    keys = root.ram("ListAccessKeys", {"UserName": renamed})["AccessKeys"]["AccessKey"]
    assert [k["AccessKeyId"] for k in keys] == [key["AccessKeyId"]]
    assert "AccessKeySecret" not in keys[0] or not keys[0]["AccessKeySecret"]
    assert_api_error(expect_error(lambda: root.ram("DeleteUser", {"UserName": renamed})), 409,
                     "DeleteConflict.User.AccessKey")
    root.ram("CreateAccessKey", {"UserName": renamed})
    assert_api_error(expect_error(lambda: root.ram("CreateAccessKey", {"UserName": renamed})), 409,
                     "LimitExceeded.User.AccessKey")
    for k in root.ram("ListAccessKeys", {"UserName": renamed})["AccessKeys"]["AccessKey"]:
        root.ram("DeleteAccessKey", {"UserName": renamed, "UserAccessKeyId": k["AccessKeyId"]})
    assert_api_error(expect_error(lambda: root.ram("DeleteAccessKey", {"UserName": renamed,
                                                                       "UserAccessKeyId": key["AccessKeyId"]})),
                     404, "EntityNotExist.User.AccessKey")
    root.ram("DeleteUser", {"UserName": renamed})
    assert_api_error(expect_error(lambda: root.ram("GetUser", {"UserName": renamed})), 404, "EntityNotExist.User")


def test_policies_groups_roles_management(root, root_account):
    good = doc(allow("vpc:Describe*"))
    assert_api_error(expect_error(lambda: root.ram("CreatePolicy", {"PolicyName": uniq("p"), "PolicyDocument": "{"})),
                     400, "MalformedPolicyDocument")
    assert_api_error(expect_error(lambda: root.ram("CreatePolicy", {
        "PolicyName": uniq("p"), "PolicyDocument": json.dumps({"Version": "1", "Statement": [{"Effect": "Maybe",
                                                                                               "Action": "*",
                                                                                               "Resource": "*"}]})})),
        400, "MalformedPolicyDocument")
    pname = uniq("read")
    p = root.ram("CreatePolicy", {"PolicyName": pname, "PolicyDocument": good, "Description": "d"})["Policy"]
    assert (p["PolicyType"], p["DefaultVersion"]) == ("Custom", "v1")
    assert_api_error(expect_error(lambda: root.ram("CreatePolicy", {"PolicyName": pname, "PolicyDocument": good})),
                     409, "EntityAlreadyExists.Policy")
    got = root.ram("GetPolicy", {"PolicyName": pname, "PolicyType": "Custom"})
    assert got["DefaultPolicyVersion"]["PolicyDocument"] == good
    v2 = root.ram("CreatePolicyVersion", {"PolicyName": pname, "PolicyDocument": doc(allow("vpc:*")),
                                          "SetAsDefault": True})["PolicyVersion"]
    assert (v2["VersionId"], v2["IsDefaultVersion"]) == ("v2", True)
    assert root.ram("GetPolicy", {"PolicyName": pname, "PolicyType": "Custom"})["Policy"]["DefaultVersion"] == "v2"
    system = root.ram("ListPolicies", {"PolicyType": "System", "MaxItems": 100})["Policies"]["Policy"]
    assert {"AdministratorAccess", "AliyunVPCFullAccess", "AliyunVPCReadOnlyAccess",
            "AliyunSTSAssumeRoleAccess"} <= {x["PolicyName"] for x in system}
    sysdoc = root.ram("GetPolicy", {"PolicyName": "AliyunVPCReadOnlyAccess", "PolicyType": "System"})
    assert "vpc:Describe*" in sysdoc["DefaultPolicyVersion"]["PolicyDocument"]

    group = uniq("ops")
    user = uniq("gu")
    root.ram("CreateUser", {"UserName": user})
    assert root.ram("CreateGroup", {"GroupName": group, "Comments": "c"})["Group"]["GroupName"] == group
    assert_api_error(expect_error(lambda: root.ram("CreateGroup", {"GroupName": group})), 409, "EntityAlreadyExists.Group")
    root.ram("AddUserToGroup", {"UserName": user, "GroupName": group})
    assert_api_error(expect_error(lambda: root.ram("AddUserToGroup", {"UserName": user, "GroupName": group})), 409,
                     "EntityAlreadyExists.User.Group")
    assert [g["GroupName"] for g in root.ram("ListGroupsForUser", {"UserName": user})["Groups"]["Group"]] == [group]
    assert [u["UserName"] for u in root.ram("ListUsersForGroup", {"GroupName": group})["Users"]["User"]] == [user]
    root.ram("AttachPolicyToGroup", {"PolicyType": "Custom", "PolicyName": pname, "GroupName": group})
    assert_api_error(expect_error(lambda: root.ram("AttachPolicyToGroup", {"PolicyType": "Custom", "PolicyName": pname,
                                                                           "GroupName": group})),
                     409, "EntityAlreadyExists.Group.Policy")
    assert [x["PolicyName"] for x in root.ram("ListPoliciesForGroup", {"GroupName": group})["Policies"]["Policy"]] == [pname]
    assert_api_error(expect_error(lambda: root.ram("DeletePolicy", {"PolicyName": pname})), 409, "DeleteConflict.Policy.Group")
    assert_api_error(expect_error(lambda: root.ram("DeleteGroup", {"GroupName": group})), 409, "DeleteConflict.Group.User")
    assert_api_error(expect_error(lambda: root.ram("DeleteUser", {"UserName": user})), 409, "DeleteConflict.User.Group")
    root.ram("DetachPolicyFromGroup", {"PolicyType": "Custom", "PolicyName": pname, "GroupName": group})
    assert_api_error(expect_error(lambda: root.ram("DetachPolicyFromGroup", {"PolicyType": "Custom", "PolicyName": pname,
                                                                             "GroupName": group})),
                     404, "EntityNotExist.Group.Policy")
    root.ram("RemoveUserFromGroup", {"UserName": user, "GroupName": group})
    root.ram("DeleteGroup", {"GroupName": group})
    root.ram("DeleteUser", {"UserName": user})
    assert_api_error(expect_error(lambda: root.ram("DeletePolicy", {"PolicyName": pname})), 409,
                     "DeleteConflict.Policy.Version")
    root.ram("DeletePolicy", {"PolicyName": pname, "CascadingDelete": True})
    assert_api_error(expect_error(lambda: root.ram("GetPolicy", {"PolicyName": pname, "PolicyType": "Custom"})), 404,
                     "EntityNotExist.Policy")

    role = uniq("Role")
    r = root.ram("CreateRole", {"RoleName": role, "AssumeRolePolicyDocument": TRUST_ACCOUNT.format(acct=root_account),
                                "MaxSessionDuration": 7200})["Role"]
    assert r["Arn"] == f"acs:ram::{root_account}:role/{role.lower()}"
    assert r["MaxSessionDuration"] == 7200
    assert_api_error(expect_error(lambda: root.ram("CreateRole", {"RoleName": role, "AssumeRolePolicyDocument":
                                                                  TRUST_ACCOUNT.format(acct=root_account)})),
                     409, "EntityAlreadyExists.Role")
    assert_api_error(expect_error(lambda: root.ram("CreateRole", {"RoleName": uniq("R"), "AssumeRolePolicyDocument": good})),
                     400, "MalformedPolicyDocument")
    root.ram("AttachPolicyToRole", {"PolicyType": "System", "PolicyName": "AliyunVPCFullAccess", "RoleName": role})
    assert root.ram("GetRole", {"RoleName": role})["Role"]["RoleName"] == role
    assert_api_error(expect_error(lambda: root.ram("DeleteRole", {"RoleName": role})), 409, "DeleteConflict.Role.Policy")
    root.ram("DetachPolicyFromRole", {"PolicyType": "System", "PolicyName": "AliyunVPCFullAccess", "RoleName": role})
    root.ram("DeleteRole", {"RoleName": role})
    assert_api_error(expect_error(lambda: root.ram("GetRole", {"RoleName": role})), 404, "EntityNotExist.Role")


def test_ram_calls_need_ram_permission(root):
    user = new_user(root)
    e = expect_error(lambda: user.ram("ListUsers"))
    assert_api_error(e, 403, "NoPermission")
    assert e.data["HostId"] == "ram.aliyuncs.com"
    assert e.raw["access_denied_detail"]["AuthAction"] == "ram:ListUsers"
    root.ram("AttachPolicyToUser", {"PolicyType": "System", "PolicyName": "AliyunRAMReadOnlyAccess",
                                    "UserName": user.user_name})
    assert user.ram("ListUsers")["Users"]["User"]
    assert_api_error(expect_error(lambda: user.ram("CreateUser", {"UserName": uniq("x")})), 403, "NoPermission")
    # A RAM user's own identity needs no permission.
    me = user.sts("GetCallerIdentity")
    assert me["IdentityType"] == "RAMUser" and me["Arn"].endswith(f":user/{user.user_name}")


# --------------------------------------------------------------------------- VPC enforcement


def test_user_without_policy_is_denied_with_detail(sdk_root, root_account, stack):
    root = sdk_root
    user = new_user(root)
    e = denied(lambda: gateways(user, stack))
    assert "User not authorized to operate on the specified resource" in (e.message or "")
    detail = e.raw["access_denied_detail"]
    assert detail["AuthAction"] == "vpc:DescribeVpnGateways"
    assert detail["AuthPrincipalType"] == "SubUser"
    assert detail["AuthPrincipalOwnerId"] == root_account
    assert detail["NoPermissionType"] == "ImplicitDeny"
    assert detail["PolicyType"] == "AccountLevelIdentityBasedPolicy"
    me = user.sts("GetCallerIdentity")
    assert detail["AuthPrincipalDisplayName"] == me["UserId"]


def test_read_only_user(sdk_root, stack):
    root = sdk_root
    user = new_user(root, "AliyunVPCReadOnlyAccess")
    assert gateways(user, stack)["VpnGateways"]["VpnGateway"]
    assert user.vpc("DescribeVpnRouteEntries", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id})
    e = denied(lambda: user.vpc("CreateVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id,
                                                        "RouteDest": "10.77.0.0/24", "NextHop": stack.connection_id,
                                                        "Weight": 0, "PublishVpc": False}))
    assert e.raw["access_denied_detail"]["AuthAction"] == "vpc:CreateVpnRouteEntry"


def test_resource_level_allow_on_one_gateway(sdk_root, root_account, stack):
    root = sdk_root
    other = Stack(vpc_id=stack.vpc_id)
    create_gateway(vpc_client(root), other)
    arn = f"acs:vpc:{REGION}:{root_account}:vpngateway/{stack.gateway_id}"
    user = new_user(root)
    custom_policy(root, doc(allow("vpc:*", arn)), user=user.user_name)
    assert user.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id})["VpnGatewayId"] == \
        stack.gateway_id
    denied(lambda: user.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": other.gateway_id}))
    q = {"RegionId": REGION, "VpnGatewayId": stack.gateway_id, "RouteDest": "10.78.0.0/24",
         "NextHop": stack.connection_id, "Weight": 0, "PublishVpc": False}
    call_retrying(user.api("vpc"), "CreateVpnRouteEntry", q)
    # The gateway list is "all resources" (vpngateway/*): not granted by a one-gateway ARN.
    denied(lambda: gateways(user, stack))
    wait_gateway_active(vpc_client(root), stack.gateway_id)
    call_retrying(user.api("vpc"), "DeleteVpnRouteEntry", {k: v for k, v in q.items() if k != "PublishVpc"})
    wait_gateway_active(vpc_client(root), stack.gateway_id)


def test_wildcard_and_case_insensitive_actions(root, stack):
    user = new_user(root)
    custom_policy(root, doc(allow(["VPC:describevpngateway", "vpc:*RouteEntries"])), user=user.user_name)
    assert user.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id})
    assert user.vpc("DescribeVpnPbrRouteEntries", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}) is not None
    denied(lambda: gateways(user, stack))


def test_explicit_deny_beats_allow(sdk_root, stack):
    root = sdk_root
    user = new_user(root, "AdministratorAccess")
    custom_policy(root, doc(deny("vpc:Describe*Gateways")), user=user.user_name)
    e = denied(lambda: gateways(user, stack))
    assert e.raw["access_denied_detail"]["NoPermissionType"] == "ExplicitDeny"
    assert user.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id})


def test_group_policies_apply_immediately(sdk_root, stack):
    root = sdk_root
    user = new_user(root)
    group = uniq("g")
    root.ram("CreateGroup", {"GroupName": group})
    root.ram("AttachPolicyToGroup", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess", "GroupName": group})
    denied(lambda: gateways(user, stack))
    root.ram("AddUserToGroup", {"UserName": user.user_name, "GroupName": group})
    assert gateways(user, stack)["VpnGateways"]["VpnGateway"]
    root.ram("RemoveUserFromGroup", {"UserName": user.user_name, "GroupName": group})
    denied(lambda: gateways(user, stack))


def test_source_ip_condition(root, stack):
    inside = new_user(root)
    custom_policy(root, doc(allow("vpc:*", Condition={"IpAddress": {"acs:SourceIp": ["127.0.0.0/8"]}})),
                  user=inside.user_name)
    assert gateways(inside, stack)["VpnGateways"]["VpnGateway"]
    outside = new_user(root)
    custom_policy(root, doc(allow("vpc:*", Condition={"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}})),
                  user=outside.user_name)
    denied(lambda: gateways(outside, stack))
    plain_http = new_user(root)
    custom_policy(root, doc(allow("vpc:*", Condition={"Bool": {"acs:SecureTransport": "true"}})),
                  user=plain_http.user_name)
    denied(lambda: gateways(plain_http, stack))


def test_disabled_and_deleted_keys(sdk_root, stack):
    root = sdk_root
    user = new_user(root, "AliyunVPCReadOnlyAccess")
    assert gateways(user, stack)
    root.ram("UpdateAccessKey", {"UserName": user.user_name, "UserAccessKeyId": user.ak, "Status": "Inactive"})
    assert_api_error(expect_error(lambda: gateways(user, stack)), 400, "InvalidAccessKeyId.Inactive")
    root.ram("UpdateAccessKey", {"UserName": user.user_name, "UserAccessKeyId": user.ak, "Status": "Active"})
    assert gateways(user, stack)
    root.ram("DeleteAccessKey", {"UserName": user.user_name, "UserAccessKeyId": user.ak})
    e = expect_error(lambda: gateways(user, stack))
    assert e.code == "InvalidAccessKeyId.NotFound", e


def test_resources_created_by_a_ram_user_belong_to_its_account(root):
    user = new_user(root, "AliyunVPCFullAccess")
    st = Stack()
    create_vpc(vpc_client(user), st)
    listed = root.vpc("DescribeVpcs", {"RegionId": REGION, "VpcId": st.vpc_id})["Vpcs"]["Vpc"]
    assert [v["VpcId"] for v in listed] == [st.vpc_id]
    call_retrying(root.api("vpc"), "DeleteVpc", {"RegionId": REGION, "VpcId": st.vpc_id})


def test_other_accounts_resources_are_not_found_whatever_the_policy(server, sdk_root, stack):
    root = sdk_root
    other = server.create_account(uniq("acct"))
    other_root = root.derive(other["AccessKeyId"], other["AccessKeySecret"])
    admin = new_user(other_root, "AdministratorAccess")
    e = expect_error(lambda: admin.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}))
    assert e.http_status == 404 and e.code.endswith("NotFound"), e
    # And a user of the same account as the gateway, without rights, is told Forbidden, not NotFound.
    nobody = new_user(root)
    denied(lambda: nobody.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}))


# --------------------------------------------------------------------------- STS


@pytest.fixture(scope="module")
def ops_role(root, root_account) -> Dict[str, str]:
    role = uniq("Ops")
    r = root.ram("CreateRole", {"RoleName": role, "AssumeRolePolicyDocument": TRUST_ACCOUNT.format(acct=root_account),
                                "MaxSessionDuration": 7200})["Role"]
    root.ram("AttachPolicyToRole", {"PolicyType": "System", "PolicyName": "AliyunVPCFullAccess", "RoleName": role})
    return {"name": role, "arn": r["Arn"], "id": r["RoleId"]}


def assume(user: Identity, role_arn: str, **extra) -> Identity:
    creds = user.sts("AssumeRole", {"RoleArn": role_arn, "RoleSessionName": extra.pop("session", "ci"), **extra})
    c = creds["Credentials"]
    assert c["AccessKeyId"].startswith("STS.")
    assert c["Expiration"].endswith("Z")
    ident = user.derive(c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"])
    ident.assumed = creds  # type: ignore[attr-defined]
    return ident


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "v1"])
def test_assume_role_without_inline_policy(sdk_root, root_account, stack, ops_role, v2):
    root = sdk_root
    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    session = assume(user, ops_role["arn"], session="deploy", DurationSeconds=3600)
    assumed = session.assumed
    if v2:
        session = session.signed_v2()
    assert assumed["AssumedRoleUser"]["Arn"] == f"{ops_role['arn']}/deploy"
    assert assumed["AssumedRoleUser"]["AssumedRoleId"] == f"{ops_role['id']}:deploy"
    me = session.sts("GetCallerIdentity")
    assert (me["IdentityType"], me["Arn"], me["RoleId"]) == ("AssumedRoleUser", f"{ops_role['arn']}/deploy", ops_role["id"])
    assert gateways(session, stack)["VpnGateways"]["VpnGateway"]
    # The role has VPC rights only.
    assert_api_error(expect_error(lambda: session.ram("ListUsers")), 403, "NoPermission")


def test_assume_role_with_inline_policy_narrows(sdk_root, stack, ops_role):
    root = sdk_root
    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    session = assume(user, ops_role["arn"], Policy=doc(allow("vpc:DescribeVpnGateways")))
    assert gateways(session, stack)["VpnGateways"]["VpnGateway"]
    e = denied(lambda: session.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}),
               code="Forbidden")
    detail = e.raw["access_denied_detail"]
    assert detail["AuthPrincipalType"] == "AssumedRoleUser"
    assert detail["PolicyType"] == "SessionPolicy"
    assert detail["AuthPrincipalDisplayName"] == f"{ops_role['name']}:ci"
    # An inline policy cannot add what the role lacks.
    wide = assume(user, ops_role["arn"], Policy=doc(allow("*")))
    assert_api_error(expect_error(lambda: wide.ram("ListUsers")), 403, "NoPermission")


def test_assume_role_refusals(root, root_account, ops_role):
    no_sts = new_user(root)
    assert_api_error(expect_error(lambda: assume(no_sts, ops_role["arn"])), 403, "NoPermission")
    assert_api_error(expect_error(lambda: assume(root, ops_role["arn"])), 403, "NoPermission")
    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    assert_api_error(expect_error(lambda: assume(user, f"acs:ram::{root_account}:role/{uniq('nope')}")), 404,
                     "EntityNotExist.Role")
    assert_api_error(expect_error(lambda: assume(user, "not-an-arn")), 400, "InvalidParameter.RoleArn")
    assert_api_error(expect_error(lambda: assume(user, ops_role["arn"], session="x")), 400,
                     "InvalidParameter.RoleSessionName")
    assert_api_error(expect_error(lambda: assume(user, ops_role["arn"], DurationSeconds=899)), 400,
                     "InvalidParameter.DurationSeconds")
    assert_api_error(expect_error(lambda: assume(user, ops_role["arn"], DurationSeconds=7201)), 400,
                     "InvalidParameter.DurationSeconds")
    assert_api_error(expect_error(lambda: assume(user, ops_role["arn"], Policy="{}")), 400,
                     "InvalidParameter.PolicyGrammar")
    # A role that trusts only one other user.
    picky = uniq("Picky")
    root.ram("CreateRole", {"RoleName": picky, "AssumeRolePolicyDocument": json.dumps({
        "Version": "1", "Statement": [{"Action": "sts:AssumeRole", "Effect": "Allow",
                                       "Principal": {"RAM": [f"acs:ram::{root_account}:user/someone-else"]}}]})})
    assert_api_error(expect_error(lambda: assume(user, f"acs:ram::{root_account}:role/{picky.lower()}")), 403,
                     "NoPermission")


def test_expired_forged_and_mismatched_tokens(server, sdk_root, root_account, stack, ops_role):
    root = sdk_root
    issued = server.admin("sts", "assume", "--account", root_account, "--role", ops_role["name"],
                          "--session", "short", "--duration", "2s")
    c = issued["Credentials"]
    short = root.derive(c["AccessKeyId"], c["AccessKeySecret"], c["SecurityToken"])
    assert gateways(short, stack)
    # Expiration has whole seconds (the token's issue time is truncated): wait until past it.
    expires = calendar.timegm(time.strptime(c["Expiration"], "%Y-%m-%dT%H:%M:%SZ"))
    time.sleep(max(0.0, expires - time.time()) + 1.2)
    assert_api_error(expect_error(lambda: gateways(short, stack)), 400, "InvalidSecurityToken.Expired")

    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    good = assume(user, ops_role["arn"])
    t = good.token
    forged = t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB")
    bad = root.derive(good.ak, good.sk, forged)
    assert_api_error(expect_error(lambda: gateways(bad, stack)), 400, "InvalidSecurityToken.Malformed")
    other = assume(user, ops_role["arn"], session="other")
    mismatched = root.derive(good.ak, good.sk, other.token)
    assert_api_error(expect_error(lambda: gateways(mismatched, stack)), 400, "InvalidSecurityToken.MismatchWithAccessKey")
    missing = root.derive(good.ak, good.sk, None)
    assert_api_error(expect_error(lambda: gateways(missing, stack)), 400, "MissingSecurityToken")
    wrong_secret = root.derive(good.ak, "x" * 30, good.token)
    e = expect_error(lambda: gateways(wrong_secret, stack))
    assert e.code in ("SignatureDoesNotMatch", "IncompleteSignature"), e
    # Deleting the role voids its sessions.
    assert gateways(good, stack)


def test_deleting_the_role_voids_its_sessions(root, root_account, stack):
    role = uniq("Tmp")
    arn = root.ram("CreateRole", {"RoleName": role, "AssumeRolePolicyDocument":
                                  TRUST_ACCOUNT.format(acct=root_account)})["Role"]["Arn"]
    root.ram("AttachPolicyToRole", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess", "RoleName": role})
    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    session = assume(user, arn)
    assert gateways(session, stack)
    root.ram("DetachPolicyFromRole", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess", "RoleName": role})
    denied(lambda: gateways(session, stack), code="Forbidden")
    root.ram("DeleteRole", {"RoleName": role})
    assert_api_error(expect_error(lambda: gateways(session, stack)), 400, "InvalidSecurityToken.Expired")


def test_legacy_sdk_as_a_ram_user(root, stack):
    """The legacy Python SDK (v1 signatures) authenticates RAM users' keys the same way."""
    from aliyunsdkcore.client import AcsClient
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkvpc.request.v20160428.DescribeVpnGatewaysRequest import DescribeVpnGatewaysRequest

    user = new_user(root)
    req = DescribeVpnGatewaysRequest()
    req.set_endpoint(root.server.endpoint)
    req.set_protocol_type("http")
    with pytest.raises(ServerException) as e:
        AcsClient(user.ak, user.sk, REGION).do_action_with_exception(req)
    assert (e.value.get_http_status(), e.value.get_error_code()) == (403, "Forbbiden.SubUser")
    root.ram("AttachPolicyToUser", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess",
                                    "UserName": user.user_name})
    body = json.loads(AcsClient(user.ak, user.sk, REGION).do_action_with_exception(req))
    assert "VpnGateways" in body


# --------------------------------------------------------------------------- every VPC action


class TableEnv:
    """Resources (made by root) that each action's allowed call works on."""

    def __init__(self, root: Identity, account: str):
        self.root = root
        self.acct = account
        self.c = vpc_client(root)
        self.n = 0
        # Its own stack (customer gateway IPs are unique per account and region).
        self.st = Stack()
        create_vpc(self.c, self.st)
        create_gateway(self.c, self.st)
        create_customer_gateway(self.c, self.st, ip=self.next_ip())
        create_connection(self.c, self.st)

    def arn(self, kind: str, rid: str) -> str:
        return f"acs:vpc:{REGION}:{self.acct}:{kind}/{rid}"

    def next_cidr(self) -> str:
        self.n += 1
        return f"10.{100 + self.n // 250}.{self.n % 250}.0/24"

    def next_ip(self) -> str:
        self.n += 1
        return f"9.9.{self.n // 250}.{self.n % 250 + 1}"

    def fresh_vpc(self) -> str:
        st = Stack()
        create_vpc(self.c, st)
        return st.vpc_id

    def fresh_gateway(self) -> str:
        st = Stack(vpc_id=self.st.vpc_id)
        create_gateway(self.c, st)
        return st.gateway_id

    def fresh_cgw(self) -> str:
        st = Stack()
        create_customer_gateway(self.c, st, ip=self.next_ip())
        return st.cgw_id

    def fresh_connection(self) -> str:
        body = call_retrying(self.c, "CreateVpnConnection", {
            "RegionId": REGION, "VpnGatewayId": self.st.gateway_id, "CustomerGatewayId": self.fresh_cgw(),
            "LocalSubnet": "192.168.0.0/24", "RemoteSubnet": self.next_cidr()})
        wait_gateway_active(self.c, self.st.gateway_id)
        return body["VpnConnectionId"]

    def gw(self) -> Dict[str, Any]:
        return {"RegionId": REGION, "VpnGatewayId": self.st.gateway_id}

    def dbr(self, weight: int = 0) -> Dict[str, Any]:
        q = dict(self.gw(), RouteDest=self.next_cidr(), NextHop=self.st.connection_id)
        call_retrying(self.c, "CreateVpnRouteEntry", dict(q, Weight=weight, PublishVpc=False))
        wait_gateway_active(self.c, self.st.gateway_id)
        return q

    def pbr(self, weight: int = 0) -> Dict[str, Any]:
        q = dict(self.gw(), RouteSource="192.168.9.0/24", RouteDest=self.next_cidr(), NextHop=self.st.connection_id)
        call_retrying(self.c, "CreateVpnPbrRouteEntry", dict(q, Weight=weight, PublishVpc=False, Priority=10))
        wait_gateway_active(self.c, self.st.gateway_id)
        return q

    def vpc_entry(self) -> Dict[str, Any]:
        q = {"RegionId": REGION, "RouteTableId": self.st.route_table_id, "DestinationCidrBlock": self.next_cidr()}
        self.c.call("CreateRouteEntry", dict(q, NextHopType="VpnGateway", NextHopId=self.st.gateway_id))
        return q

    def ssl_server(self) -> str:
        gw = self.fresh_gateway()
        body = call_retrying(self.c, "CreateSslVpnServer", {"RegionId": REGION, "VpnGatewayId": gw,
                                                              "LocalSubnet": "192.168.0.0/24",
                                                              "ClientIpPool": "10.240.0.0/24"})
        wait_gateway_active(self.c, gw)
        return body["SslVpnServerId"]

    def zone(self) -> str:
        body = self.c.call("DescribeZones", {"RegionId": REGION})
        return body["Zones"]["Zone"][0]["ZoneId"]

    def vswitch_params(self) -> Dict[str, Any]:
        self.n += 1
        return {"RegionId": REGION, "VpcId": self.st.vpc_id, "ZoneId": self.zone(),
                "CidrBlock": f"192.168.{200 + self.n % 50}.0/24"}

    def fresh_vswitch(self) -> str:
        return self.c.call("CreateVSwitch", self.vswitch_params())["VSwitchId"]

    def tag_target(self) -> Dict[str, Any]:
        return {"RegionId": REGION, "ResourceType": "VPNGATEWAY", "ResourceId": [self.st.gateway_id]}


def _r(kind: str, key: Optional[str] = None):
    """Resources: `kind/<params[key]>`, or `kind/*`."""
    return lambda env, p: [env.arn(kind, p[key] if key else "*")]


def _tagged(env, p):
    """Tag actions: one ARN per `ResourceId.N`, of the `ResourceType`'s kind."""
    return [env.arn(p["ResourceType"].lower(), rid) for rid in p["ResourceId"]]


# Action -> (params built on the env, the ARNs Alibaba's table names for them)
VPC_ACTIONS: Dict[str, Any] = {
    "DescribeRegions": (lambda env: {}, lambda env, p: ["*"]),
    "CreateVpc": (lambda env: {"RegionId": REGION, "CidrBlock": "172.16.0.0/16"}, _r("vpc")),
    "DescribeVpcs": (lambda env: {"RegionId": REGION}, _r("vpc")),
    "DeleteVpc": (lambda env: {"RegionId": REGION, "VpcId": env.fresh_vpc()}, _r("vpc", "VpcId")),
    "DescribeRouteTableList": (lambda env: {"RegionId": REGION, "VpcId": env.st.vpc_id}, _r("routetable")),
    "DescribeRouteEntryList": (lambda env: {"RegionId": REGION, "RouteTableId": env.st.route_table_id},
                               _r("routetable", "RouteTableId")),
    "CreateRouteEntry": (lambda env: {"RegionId": REGION, "RouteTableId": env.st.route_table_id,
                                      "DestinationCidrBlock": env.next_cidr(), "NextHopType": "VpnGateway",
                                      "NextHopId": env.st.gateway_id}, _r("routetable", "RouteTableId")),
    "DeleteRouteEntry": (lambda env: env.vpc_entry(), _r("routetable", "RouteTableId")),
    "CreateVpnGateway": (lambda env: {"RegionId": REGION, "VpcId": env.st.vpc_id, "Bandwidth": 10}, _r("vpngateway")),
    "DescribeVpnGateway": (lambda env: env.gw(), _r("vpngateway", "VpnGatewayId")),
    "DescribeVpnGateways": (lambda env: {"RegionId": REGION, "VpcId": env.st.vpc_id}, _r("vpngateway")),
    "DeleteVpnGateway": (lambda env: {"RegionId": REGION, "VpnGatewayId": env.fresh_gateway()},
                         _r("vpngateway", "VpnGatewayId")),
    "CreateCustomerGateway": (lambda env: {"RegionId": REGION, "IpAddress": env.next_ip()}, _r("customergateway")),
    "DescribeCustomerGateway": (lambda env: {"RegionId": REGION, "CustomerGatewayId": env.st.cgw_id},
                                _r("customergateway", "CustomerGatewayId")),
    "DescribeCustomerGateways": (lambda env: {"RegionId": REGION}, _r("customergateway")),
    "DeleteCustomerGateway": (lambda env: {"RegionId": REGION, "CustomerGatewayId": env.fresh_cgw()},
                              _r("customergateway", "CustomerGatewayId")),
    "CreateVpnConnection": (lambda env: dict(env.gw(), CustomerGatewayId=env.fresh_cgw(), LocalSubnet="192.168.0.0/24",
                                             RemoteSubnet=env.next_cidr()), _r("vpnconnection")),
    "DescribeVpnConnection": (lambda env: {"RegionId": REGION, "VpnConnectionId": env.st.connection_id},
                              _r("vpnconnection", "VpnConnectionId")),
    "DescribeVpnConnections": (lambda env: {"RegionId": REGION}, _r("vpnconnection")),
    "DeleteVpnConnection": (lambda env: {"RegionId": REGION, "VpnConnectionId": env.fresh_connection()},
                            _r("vpnconnection", "VpnConnectionId")),
    "CreateSslVpnServer": (lambda env: {"RegionId": REGION, "VpnGatewayId": env.fresh_gateway(),
                                        "LocalSubnet": "192.168.0.0/24", "ClientIpPool": "10.241.0.0/24"},
                           lambda env, p: [env.arn("sslvpnserver", "*"), env.arn("vpngateway", p["VpnGatewayId"])]),
    "DescribeSslVpnServers": (lambda env: {"RegionId": REGION}, _r("sslvpnserver")),
    "DeleteSslVpnServer": (lambda env: {"RegionId": REGION, "SslVpnServerId": env.ssl_server()},
                           _r("sslvpnserver", "SslVpnServerId")),
    "CreateVpnRouteEntry": (lambda env: dict(env.gw(), RouteDest=env.next_cidr(), NextHop=env.st.connection_id,
                                             Weight=0, PublishVpc=False), _r("vpngateway", "VpnGatewayId")),
    "DeleteVpnRouteEntry": (lambda env: dict(env.dbr(), Weight=0), _r("vpngateway", "VpnGatewayId")),
    "DescribeVpnRouteEntries": (lambda env: env.gw(), _r("vpngateway", "VpnGatewayId")),
    "ModifyVpnRouteEntryWeight": (lambda env: dict(env.dbr(), Weight=0, NewWeight=100),
                                  _r("vpngateway", "VpnGatewayId")),
    "PublishVpnRouteEntry": (lambda env: dict(env.dbr(), RouteType="dbr", PublishVpc=True),
                             _r("vpngateway", "VpnGatewayId")),
    "CreateVpnPbrRouteEntry": (lambda env: dict(env.gw(), RouteSource="192.168.8.0/24", RouteDest=env.next_cidr(),
                                                NextHop=env.st.connection_id, Weight=0, PublishVpc=False),
                               _r("vpngateway", "VpnGatewayId")),
    "DeleteVpnPbrRouteEntry": (lambda env: dict(env.pbr(), Weight=0), _r("vpngateway", "VpnGatewayId")),
    "DescribeVpnPbrRouteEntries": (lambda env: env.gw(), _r("vpngateway", "VpnGatewayId")),
    "ModifyVpnPbrRouteEntryWeight": (lambda env: dict(env.pbr(), Weight=0, NewWeight=100),
                                     _r("vpngateway", "VpnGatewayId")),
    "ModifyVpnPbrRouteEntryPriority": (lambda env: dict(env.pbr(), Weight=0, Priority=10, NewPriority=5),
                                       _r("vpngateway", "VpnGatewayId")),
    "ModifyVpnPbrRouteEntryAttribute": (lambda env: dict(env.pbr(), Weight=0, Priority=10, NewWeight=100),
                                        _r("vpngateway", "VpnGatewayId")),
    # Issue 15 (Terraform surface).
    "TagResources": (lambda env: dict(env.tag_target(), Tag=[{"Key": "team", "Value": "ram"}]), _tagged),
    "UnTagResources": (lambda env: dict(env.tag_target(), TagKey=["team"]), _tagged),
    "ListTagResources": (lambda env: env.tag_target(), _tagged),
    "DescribeVpcAttribute": (lambda env: {"RegionId": REGION, "VpcId": env.st.vpc_id}, _r("vpc", "VpcId")),
    "CreateVSwitch": (lambda env: env.vswitch_params(),
                      lambda env, p: [env.arn("vswitch", "*"), env.arn("vpc", p["VpcId"])]),
    "DescribeVSwitchAttributes": (lambda env: {"RegionId": REGION, "VSwitchId": env.fresh_vswitch()},
                                  _r("vswitch", "VSwitchId")),
    "DescribeVSwitches": (lambda env: {"RegionId": REGION, "VpcId": env.st.vpc_id}, _r("vswitch")),
    "DeleteVSwitch": (lambda env: {"RegionId": REGION, "VSwitchId": env.fresh_vswitch()}, _r("vswitch", "VSwitchId")),
    "DescribeZones": (lambda env: {"RegionId": REGION}, lambda env, p: ["*"]),
    "DescribeVpnGatewayAvailableZones": (lambda env: {"RegionId": REGION, "Spec": "10M"}, lambda env, p: ["*"]),
    "ModifyVpnGatewayAttribute": (lambda env: dict(env.gw(), Name="ram-table-gw"), _r("vpngateway", "VpnGatewayId")),
    "MoveVpnResourceGroup": (lambda env: {"RegionId": REGION, "InstanceId": env.fresh_cgw(),
                                          "ResourceType": "CustomerGateway", "NewResourceGroupId": "rg-ramtable"},
                             _r("customergateway", "InstanceId")),
    "ModifyVpnConnectionAttribute": (lambda env: {"RegionId": REGION, "VpnConnectionId": env.st.connection_id,
                                                  "Name": "ram-table-conn"}, _r("vpnconnection", "VpnConnectionId")),
    "ModifyCustomerGatewayAttribute": (lambda env: {"RegionId": REGION, "CustomerGatewayId": env.st.cgw_id,
                                                    "Name": "ram-table-cgw"},
                                       _r("customergateway", "CustomerGatewayId")),
    "ModifySslVpnServer": (lambda env: {"RegionId": REGION, "SslVpnServerId": env.ssl_server(), "Name": "ram-table-ssl"},
                           _r("sslvpnserver", "SslVpnServerId")),
    # alicloud_vpc / alicloud_vswitch in-place updates.
    "ModifyVpcAttribute": (lambda env: {"RegionId": REGION, "VpcId": env.st.vpc_id, "VpcName": "ram-table-vpc"},
                           _r("vpc", "VpcId")),
    "ModifyVSwitchAttribute": (lambda env: {"RegionId": REGION, "VSwitchId": env.fresh_vswitch(),
                                            "VSwitchName": "ram-table-vsw"}, _r("vswitch", "VSwitchId")),
    "ModifyRouteTableAttributes": (lambda env: {"RegionId": REGION, "RouteTableId": env.st.route_table_id,
                                                "RouteTableName": "ram-table-rt"}, _r("routetable", "RouteTableId")),
    "MoveResourceGroup": (lambda env: {"RegionId": REGION, "ResourceId": env.fresh_vpc(), "ResourceType": "VPC",
                                       "NewResourceGroupId": "rg-ramtable"}, _r("vpc", "ResourceId")),
}


@pytest.fixture(scope="module")
def table_env(root, root_account) -> TableEnv:
    return TableEnv(root, root_account)


def test_every_served_action_is_in_the_table(server):
    import requests

    from server import operator_headers

    served = requests.get(f"{server.url}/_vpnroute/operations", headers=operator_headers(), timeout=10).json()
    served = served["Operations"]
    assert {o["Action"] for o in served} == set(VPC_ACTIONS)
    assert all(o["RamAction"] == f"vpc:{o['Action']}" for o in served)


@pytest.mark.parametrize("action", sorted(VPC_ACTIONS))
def test_every_vpc_action_allowed_and_denied(action, root, table_env):
    make_params, resources = VPC_ACTIONS[action]
    params = make_params(table_env)
    arns = resources(table_env, params)
    # Denied: everything but this action.
    others = new_user(root)
    custom_policy(root, doc({"Effect": "Allow", "NotAction": f"vpc:{action}", "Resource": "*"}), user=others.user_name)
    e = denied(lambda: others.vpc(action, params))
    assert e.raw["access_denied_detail"]["AuthAction"] == f"vpc:{action}"
    # A grant on other resources of the same type does not help (where resources are named).
    if arns != ["*"]:
        wrong = new_user(root)
        custom_policy(root, doc(allow(f"vpc:{action}", [a[:a.rindex("/") + 1] + "nope" for a in arns])),
                      user=wrong.user_name)
        denied(lambda: wrong.vpc(action, params))
    # Allowed: exactly this action on exactly the ARNs of Alibaba's table.
    only = new_user(root)
    custom_policy(root, doc(allow(f"vpc:{action}", arns)), user=only.user_name)
    body = call_retrying(only.api("vpc"), action, params)
    assert body.get("RequestId"), body
    # Let the gateway's task finish before the next action changes it (a connection's or SSL
    # server's change may keep the shared gateway busy too).
    if action.startswith(("Create", "Delete", "Modify", "Publish")):
        if "VpnGatewayId" in params and action != "DeleteVpnGateway":
            wait_gateway_active(table_env.c, params["VpnGatewayId"])
        wait_gateway_active(table_env.c, table_env.st.gateway_id)


# --------------------------------------------------------------------------- Node SDKs


@pytest.mark.parametrize("v2", [False, True], ids=["acs3", "v1"])
def test_node_sdks_manage_users_and_assume_roles(server, node_driver, root_account, stack, ops_role, v2):
    root = NodeIdentity(node_driver, server, server.root_ak, server.root_sk, v2=v2)
    name = uniq("node")
    assert root.ram("CreateUser", {"UserName": name})["User"]["UserName"] == name
    assert_api_error(expect_error(lambda: root.ram("CreateUser", {"UserName": name})), 409, "EntityAlreadyExists.User")
    root.ram("AttachPolicyToUser", {"PolicyType": "System", "PolicyName": "AliyunSTSAssumeRoleAccess", "UserName": name})
    key = root.ram("CreateAccessKey", {"UserName": name})["AccessKey"]
    user = NodeIdentity(node_driver, server, key["AccessKeyId"], key["AccessKeySecret"], v2=v2)
    e = denied(lambda: gateways(user, stack))
    assert e.raw["access_denied_detail"]["AuthAction"] == "vpc:DescribeVpnGateways"
    assert e.raw["access_denied_detail"]["NoPermissionType"] == "ImplicitDeny"
    creds = user.sts("AssumeRole", {"RoleArn": ops_role["arn"], "RoleSessionName": "node",
                                    "Policy": doc(allow("vpc:DescribeVpnGateways"))})["Credentials"]
    session = NodeIdentity(node_driver, server, creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"],
                           v2=v2)
    assert session.sts("GetCallerIdentity")["IdentityType"] == "AssumedRoleUser"
    assert gateways(session, stack)["VpnGateways"]["VpnGateway"]
    e = denied(lambda: session.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}),
               code="Forbidden")
    assert e.raw["access_denied_detail"]["PolicyType"] == "SessionPolicy"


# --------------------------------------------------------------------------- admin, ExternalId


def test_admin_ram_commands_manage_users_for_operators(server, root, stack):
    name = uniq("op")
    created = server.admin("ram", "--account", "root", "CreateUser", f"UserName={name}", "DisplayName=Operator")
    assert created["User"]["UserName"] == name
    server.admin("ram", "--account", "root", "AttachPolicyToUser", "PolicyType=System",
                 "PolicyName=AliyunVPCReadOnlyAccess", f"UserName={name}")
    key = server.admin("ram", "--account", "root", "CreateAccessKey", f"UserName={name}")["AccessKey"]
    user = Identity(server, key["AccessKeyId"], key["AccessKeySecret"])
    assert gateways(user, stack)["VpnGateways"]["VpnGateway"]
    # The API sees what admin made, and admin reports the API's errors.
    assert root.ram("GetUser", {"UserName": name})["User"]["DisplayName"] == "Operator"
    failed = server.admin("ram", "--account", "root", "CreateUser", f"UserName={name}", check=False)
    assert failed is None
    keys = server.admin("key", "list")["AccessKeys"]
    assert any(k["AccessKeyId"] == key["AccessKeyId"] and k["RamUserId"] for k in keys)
    # Shortcuts: a custom policy, then a user with it and a key in one transaction.
    pname = uniq("gw-read")
    server.admin("policy", "create", "--account", "root", pname, doc(allow("vpc:DescribeVpnGateways")))
    quick = server.admin("user", "create", "--account", "root", uniq("quick"), "--policy", pname, "--key")
    quick_user = Identity(server, quick["AccessKey"]["AccessKeyId"], quick["AccessKey"]["AccessKeySecret"])
    assert gateways(quick_user, stack)["VpnGateways"]["VpnGateway"]
    denied(lambda: quick_user.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}))
    half = uniq("half")
    assert server.admin("user", "create", "--account", "root", half, "--policy", "NoSuchPolicy", check=False) is None
    assert_api_error(expect_error(lambda: root.ram("GetUser", {"UserName": half})), 404, "EntityNotExist.User")


def test_trust_policy_external_id(root, root_account, stack):
    role = uniq("Ext")
    arn = root.ram("CreateRole", {"RoleName": role, "AssumeRolePolicyDocument": json.dumps({
        "Version": "1", "Statement": [{
            "Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"RAM": [f"acs:ram::{root_account}:root"]},
            "Condition": {"StringEquals": {"sts:ExternalId": "abcd-1234"}}}]})})["Role"]["Arn"]
    root.ram("AttachPolicyToRole", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess", "RoleName": role})
    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    assert_api_error(expect_error(lambda: assume(user, arn)), 403, "NoPermission")
    assert_api_error(expect_error(lambda: assume(user, arn, ExternalId="wrong-id")), 403, "NoPermission")
    session = assume(user, arn, ExternalId="abcd-1234")
    assert gateways(session, stack)["VpnGateways"]["VpnGateway"]


# --------------------------------------------------------------------------- policy language edges


def test_root_unaffected_by_what_denies_a_user(sdk_root, stack):
    root = sdk_root
    user = new_user(root, "AdministratorAccess")
    custom_policy(root, doc(deny("*")), user=user.user_name)
    e = denied(lambda: gateways(user, stack))
    assert e.raw["access_denied_detail"]["NoPermissionType"] == "ExplicitDeny"
    assert_api_error(expect_error(lambda: user.ram("ListUsers")), 403, "NoPermission")
    # The same calls, same test, as the account: allowed.
    assert gateways(root, stack)["VpnGateways"]["VpnGateway"]
    assert user.user_name in [u["UserName"] for u in root.ram("ListUsers", {"MaxItems": 1000})["Users"]["User"]]


def test_not_resource(root, root_account, stack):
    gw_arn = f"acs:vpc:{REGION}:{root_account}:vpngateway/{stack.gateway_id}"
    one = {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}
    # Allow everything but one gateway: that gateway is denied, the lists ("all resources") are not.
    user = new_user(root)
    custom_policy(root, doc({"Effect": "Allow", "Action": "vpc:*", "NotResource": gw_arn}), user=user.user_name)
    e = denied(lambda: user.vpc("DescribeVpnGateway", one))
    assert e.raw["access_denied_detail"]["NoPermissionType"] == "ImplicitDeny"
    assert gateways(user, stack)["VpnGateways"]["VpnGateway"]
    assert user.vpc("DescribeVpcs", {"RegionId": REGION, "VpcId": stack.vpc_id})["Vpcs"]["Vpc"]
    # Deny everything but VPCs: an explicit deny for the gateway, VPCs still allowed.
    only_vpcs = new_user(root, "AliyunVPCFullAccess")
    custom_policy(root, doc({"Effect": "Deny", "Action": "vpc:*", "NotResource": "acs:vpc:*:*:vpc/*"}),
                  user=only_vpcs.user_name)
    e = denied(lambda: only_vpcs.vpc("DescribeVpnGateway", one))
    assert e.raw["access_denied_detail"]["NoPermissionType"] == "ExplicitDeny"
    assert only_vpcs.vpc("DescribeVpcs", {"RegionId": REGION, "VpcId": stack.vpc_id})["Vpcs"]["Vpc"]


def test_resource_arns_are_case_sensitive_but_the_service_prefix(root, root_account, stack):
    one = {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}
    arn = f"acs:vpc:{REGION}:{root_account}:vpngateway/{stack.gateway_id}"

    def user_with(resource: str) -> Identity:
        u = new_user(root)
        custom_policy(root, doc(allow("vpc:DescribeVpnGateway", resource)), user=u.user_name)
        return u

    assert user_with(arn).vpc("DescribeVpnGateway", one)["VpnGatewayId"] == stack.gateway_id
    upper_prefix = "ACS:VPC" + arn[len("acs:vpc"):]
    assert user_with(upper_prefix).vpc("DescribeVpnGateway", one)["VpnGatewayId"] == stack.gateway_id
    for wrong in (arn.replace(stack.gateway_id, stack.gateway_id.upper()),
                  arn.replace(":vpngateway/", ":VpnGateway/"),
                  arn.replace(f":{REGION}:", f":{REGION.upper()}:")):
        assert wrong != arn
        u = user_with(wrong)
        denied(lambda: u.vpc("DescribeVpnGateway", one))


def test_current_time_conditions(root, stack):
    def user_with(*statements) -> Identity:
        u = new_user(root)
        custom_policy(root, doc(*statements), user=u.user_name)
        return u

    future, past = "2999-01-01T00:00:00Z", "2000-01-01T00:00:00+08:00"
    assert gateways(user_with(allow("vpc:*", Condition={"DateLessThan": {"acs:CurrentTime": future}})), stack)
    assert gateways(user_with(allow("vpc:*", Condition={"DateGreaterThan": {"acs:CurrentTime": past}})), stack)
    # A window: after `past` and before `future`, both in one condition block.
    window = {"DateGreaterThanEquals": {"acs:CurrentTime": past}, "DateLessThanEquals": {"acs:CurrentTime": future}}
    assert gateways(user_with(allow("vpc:*", Condition=window)), stack)
    expired = user_with(allow("vpc:*", Condition={"DateLessThan": {"acs:CurrentTime": past}}))
    assert denied(lambda: gateways(expired, stack)).raw["access_denied_detail"]["NoPermissionType"] == "ImplicitDeny"
    not_yet = user_with(allow("vpc:*", Condition={"DateGreaterThan": {"acs:CurrentTime": future}}))
    denied(lambda: gateways(not_yet, stack))
    # A time-conditioned Deny beats an unconditional Allow.
    frozen = user_with(allow("vpc:*"), deny("vpc:*", Condition={"DateGreaterThan": {"acs:CurrentTime": past}}))
    assert denied(lambda: gateways(frozen, stack)).raw["access_denied_detail"]["NoPermissionType"] == "ExplicitDeny"
    assert_api_error(expect_error(lambda: custom_policy(root, doc(allow("vpc:*", Condition={
        "DateLessThan": {"acs:CurrentTime": "next tuesday"}})))), 400, "MalformedPolicyDocument")


def test_mfa_present_is_false_for_access_key_callers(root, stack, ops_role):
    needs_mfa = new_user(root, "AliyunSTSAssumeRoleAccess")
    custom_policy(root, doc(allow("vpc:*", Condition={"Bool": {"acs:MFAPresent": "true"}})), user=needs_mfa.user_name)
    denied(lambda: gateways(needs_mfa, stack))
    no_mfa = new_user(root)
    custom_policy(root, doc(allow("vpc:*", Condition={"Bool": {"acs:MFAPresent": "false"}})), user=no_mfa.user_name)
    assert gateways(no_mfa, stack)["VpnGateways"]["VpnGateway"]
    json_bool = new_user(root)  # a JSON boolean reads as its text
    custom_policy(root, doc(allow("vpc:*", Condition={"Bool": {"acs:MFAPresent": False}})), user=json_bool.user_name)
    assert gateways(json_bool, stack)["VpnGateways"]["VpnGateway"]
    # The usual "deny without MFA" guard denies access-key callers, role sessions included.
    guarded = new_user(root, "AliyunVPCFullAccess")
    custom_policy(root, doc(deny("vpc:*", Condition={"Bool": {"acs:MFAPresent": "false"}})), user=guarded.user_name)
    assert denied(lambda: gateways(guarded, stack)).raw["access_denied_detail"]["NoPermissionType"] == "ExplicitDeny"
    session = assume(needs_mfa, ops_role["arn"], Policy=doc(allow("vpc:*", Condition={
        "Bool": {"acs:MFAPresent": "true"}})))
    denied(lambda: gateways(session, stack), code="Forbidden")


def test_deny_statement_in_a_trust_policy(sdk_root, root_account, stack):
    root = sdk_root
    blocked = new_user(root, "AliyunSTSAssumeRoleAccess")
    welcome = new_user(root, "AliyunSTSAssumeRoleAccess")
    role = uniq("Guarded")
    arn = root.ram("CreateRole", {"RoleName": role, "AssumeRolePolicyDocument": json.dumps({
        "Version": "1", "Statement": [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"RAM": [f"acs:ram::{root_account}:root"]}},
            {"Action": "sts:AssumeRole", "Effect": "Deny",
             "Principal": {"RAM": [f"acs:ram::{root_account}:user/{blocked.user_name}"]}}]})})["Role"]["Arn"]
    root.ram("AttachPolicyToRole", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess", "RoleName": role})
    assert_api_error(expect_error(lambda: assume(blocked, arn)), 403, "NoPermission")
    assert gateways(assume(welcome, arn), stack)["VpnGateways"]["VpnGateway"]
    # A Deny with a condition denies only when it holds.
    cond_role = uniq("NoExt")
    cond_arn = root.ram("CreateRole", {"RoleName": cond_role, "AssumeRolePolicyDocument": json.dumps({
        "Version": "1", "Statement": [
            {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"RAM": [f"acs:ram::{root_account}:root"]}},
            {"Action": "sts:AssumeRole", "Effect": "Deny", "Principal": {"RAM": [f"acs:ram::{root_account}:root"]},
             "Condition": {"StringEquals": {"sts:ExternalId": "revoked"}}}]})})["Role"]["Arn"]
    assert_api_error(expect_error(lambda: assume(welcome, cond_arn, ExternalId="revoked")), 403, "NoPermission")
    assert assume(welcome, cond_arn, ExternalId="current").assumed["Credentials"]["SecurityToken"]


# --------------------------------------------------------------------------- generic OpenAPI client


@pytest.mark.parametrize("client", ALL_VARIANTS, indirect=True)
def test_generic_client_calls_ram_and_sts(client, make_client, root, root_account, ops_role):
    """Tea call_api / callApi (and legacy CommonRequest, pop-core) with Version 2015-05-01 / 2015-04-01."""
    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    got = client.call("GetUser", {"UserName": user.user_name}, version=RAM_VERSION)
    assert got["User"]["UserName"] == user.user_name
    me = client.call("GetCallerIdentity", {}, version=STS_VERSION)
    assert (me["IdentityType"], me["AccountId"]) == ("Account", root_account)
    as_user = make_client(client.variant, ak=user.ak, sk=user.sk)
    me = as_user.call("GetCallerIdentity", {}, version=STS_VERSION)
    assert me["IdentityType"] == "RAMUser" and me["Arn"].endswith(f":user/{user.user_name}")
    assert_api_error(expect_error(lambda: as_user.call("ListUsers", {}, version=RAM_VERSION)), 403, "NoPermission")
    creds = as_user.call("AssumeRole", {"RoleArn": ops_role["arn"], "RoleSessionName": "generic"},
                         version=STS_VERSION)["Credentials"]
    assert creds["AccessKeyId"].startswith("STS.") and creds["SecurityToken"]


# --------------------------------------------------------------------------- role sessions, cross-account


def test_role_session_denied_on_a_vpc_action(sdk_root, root_account, stack):
    root = sdk_root
    role = uniq("Reader")
    root.ram("CreateRole", {"RoleName": role, "AssumeRolePolicyDocument": TRUST_ACCOUNT.format(acct=root_account)})
    arn = f"acs:ram::{root_account}:role/{role.lower()}"
    root.ram("AttachPolicyToRole", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess", "RoleName": role})
    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    session = assume(user, arn, session="reader")
    assert gateways(session, stack)["VpnGateways"]["VpnGateway"]
    e = denied(lambda: session.vpc("CreateVpnRouteEntry", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id,
                                                           "RouteDest": "10.79.0.0/24", "NextHop": stack.connection_id,
                                                           "Weight": 0, "PublishVpc": False}), code="Forbidden")
    assert "User not authorized to operate on the specified resource" in (e.message or "")
    detail = e.raw["access_denied_detail"]
    assert detail["AuthAction"] == "vpc:CreateVpnRouteEntry"
    assert detail["AuthPrincipalType"] == "AssumedRoleUser"
    assert detail["AuthPrincipalOwnerId"] == root_account
    assert detail["AuthPrincipalDisplayName"] == f"{role}:reader"
    assert detail["NoPermissionType"] == "ImplicitDeny"
    assert detail["PolicyType"] == "AccountLevelIdentityBasedPolicy"
    # A Deny attached to the role: ExplicitDeny for its (existing) session at once.
    custom_policy(root, doc(deny("vpc:DescribeVpnGateways")), role=role)
    e = denied(lambda: gateways(session, stack), code="Forbidden")
    assert e.raw["access_denied_detail"]["NoPermissionType"] == "ExplicitDeny"


def test_cross_account_assume_role(server, sdk_root, root_account, stack):
    root = sdk_root
    b = server.create_account(uniq("acct-b"))
    b_root = root.derive(b["AccessKeyId"], b["AccessKeySecret"])
    b_acct = b["AccountId"]
    b_stack = Stack()
    create_vpc(vpc_client(b_root), b_stack)
    # B's role trusts account A; another of B's roles trusts only B.
    role = uniq("Partner")
    arn = b_root.ram("CreateRole", {"RoleName": role,
                                    "AssumeRolePolicyDocument": TRUST_ACCOUNT.format(acct=root_account)})["Role"]["Arn"]
    assert arn == f"acs:ram::{b_acct}:role/{role.lower()}"
    b_root.ram("AttachPolicyToRole", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess",
                                      "RoleName": role})
    own = uniq("Own")
    own_arn = b_root.ram("CreateRole", {"RoleName": own,
                                        "AssumeRolePolicyDocument": TRUST_ACCOUNT.format(acct=b_acct)})["Role"]["Arn"]

    user = new_user(root, "AliyunSTSAssumeRoleAccess")
    assert_api_error(expect_error(lambda: assume(user, own_arn)), 403, "NoPermission")
    no_sts = new_user(root)
    assert_api_error(expect_error(lambda: assume(no_sts, arn)), 403, "NoPermission")
    session = assume(user, arn, session="partner")
    assert session.assumed["AssumedRoleUser"]["Arn"] == f"{arn}/partner"
    me = session.sts("GetCallerIdentity")
    assert (me["IdentityType"], me["AccountId"]) == ("AssumedRoleUser", b_acct)
    # The session acts in B: B's VPC is there, A's gateway is not, B's role bounds it.
    assert [v["VpcId"] for v in session.vpc("DescribeVpcs", {"RegionId": REGION, "VpcId": b_stack.vpc_id})
            ["Vpcs"]["Vpc"]] == [b_stack.vpc_id]
    e = expect_error(lambda: session.vpc("DescribeVpnGateway", {"RegionId": REGION, "VpnGatewayId": stack.gateway_id}))
    assert e.http_status == 404 and e.code.endswith("NotFound"), e
    assert not session.vpc("DescribeVpcs", {"RegionId": REGION, "VpcId": stack.vpc_id})["Vpcs"]["Vpc"]
    e = denied(lambda: session.vpc("CreateVpc", {"RegionId": REGION, "CidrBlock": "172.16.0.0/16"}), code="Forbidden")
    assert e.raw["access_denied_detail"]["AuthPrincipalOwnerId"] == b_acct
    # The caller's sts:AssumeRole grant names the role's ARN in B, not an ARN of its own account.
    to_b = new_user(root)
    custom_policy(root, doc(allow("sts:AssumeRole", f"acs:ram:*:{b_acct}:role/{role.lower()}")), user=to_b.user_name)
    assert assume(to_b, arn).sts("GetCallerIdentity")["AccountId"] == b_acct
    own_only = new_user(root)
    custom_policy(root, doc(allow("sts:AssumeRole", f"acs:ram:*:{root_account}:role/*")), user=own_only.user_name)
    assert_api_error(expect_error(lambda: assume(own_only, arn)), 403, "NoPermission")


# --------------------------------------------------------------------------- delete conflicts, limits


def test_delete_conflicts_of_attached_policies(root, root_account):
    user = uniq("att")
    root.ram("CreateUser", {"UserName": user})
    pname = custom_policy(root, doc(allow("vpc:Describe*")), user=user)
    assert_api_error(expect_error(lambda: root.ram("DeletePolicy", {"PolicyName": pname})), 409,
                     "DeleteConflict.Policy.User")
    assert_api_error(expect_error(lambda: root.ram("DeleteUser", {"UserName": user})), 409, "DeleteConflict.User.Policy")
    root.ram("DetachPolicyFromUser", {"PolicyType": "Custom", "PolicyName": pname, "UserName": user})
    # A system policy attached blocks the delete too.
    root.ram("AttachPolicyToUser", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess", "UserName": user})
    assert_api_error(expect_error(lambda: root.ram("DeleteUser", {"UserName": user})), 409, "DeleteConflict.User.Policy")
    root.ram("DetachPolicyFromUser", {"PolicyType": "System", "PolicyName": "AliyunVPCReadOnlyAccess", "UserName": user})
    root.ram("DeleteUser", {"UserName": user})
    role = uniq("Att")
    root.ram("CreateRole", {"RoleName": role, "AssumeRolePolicyDocument": TRUST_ACCOUNT.format(acct=root_account)})
    root.ram("AttachPolicyToRole", {"PolicyType": "Custom", "PolicyName": pname, "RoleName": role})
    assert_api_error(expect_error(lambda: root.ram("DeletePolicy", {"PolicyName": pname})), 409,
                     "DeleteConflict.Policy.Role")
    root.ram("DetachPolicyFromRole", {"PolicyType": "Custom", "PolicyName": pname, "RoleName": role})
    root.ram("DeletePolicy", {"PolicyName": pname})
    root.ram("DeleteRole", {"RoleName": role})


def test_cheap_limits(root):
    """LimitExceeded.Policy.Version (5 versions) and LimitExceeded.User.Group (5 groups per user);
    the account-wide quotas (1000 users, 50 groups, ...) are left to the unit tests."""
    pname = custom_policy(root, doc(allow("vpc:Describe*")))
    for _ in range(4):
        root.ram("CreatePolicyVersion", {"PolicyName": pname, "PolicyDocument": doc(allow("vpc:*"))})
    e = expect_error(lambda: root.ram("CreatePolicyVersion", {"PolicyName": pname, "PolicyDocument": doc(allow("vpc:*"))}))
    assert_api_error(e, 409, "LimitExceeded.Policy.Version")
    v6 = root.ram("CreatePolicyVersion", {"PolicyName": pname, "PolicyDocument": doc(allow("vpc:*")),
                                          "RotateStrategy": "DeleteOldestNonDefaultVersionWhenLimitExceeded"})
    assert v6["PolicyVersion"]["VersionId"] == "v6"
    versions = root.ram("ListPolicyVersions", {"PolicyName": pname, "PolicyType": "Custom"})
    assert sorted((v["VersionId"] for v in versions["PolicyVersions"]["PolicyVersion"]), key=lambda v: int(v[1:])) == \
        ["v1", "v3", "v4", "v5", "v6"]
    root.ram("DeletePolicy", {"PolicyName": pname, "CascadingDelete": True})

    user = uniq("many")
    root.ram("CreateUser", {"UserName": user})
    groups = [uniq("lg") for _ in range(6)]
    for g in groups:
        root.ram("CreateGroup", {"GroupName": g})
    for g in groups[:5]:
        root.ram("AddUserToGroup", {"UserName": user, "GroupName": g})
    assert_api_error(expect_error(lambda: root.ram("AddUserToGroup", {"UserName": user, "GroupName": groups[5]})), 409,
                     "LimitExceeded.User.Group")
    for g in groups[:5]:
        root.ram("RemoveUserFromGroup", {"UserName": user, "GroupName": g})
    for g in groups:
        root.ram("DeleteGroup", {"GroupName": g})
    root.ram("DeleteUser", {"UserName": user})
