"""The Terraform alicloud provider's request machinery, replayed through the real Python Tea SDK.

shared/spec/terraform-calls.md §1 describes what the provider (aliyun/terraform-provider-alicloud
1.289.0) does; this module does the same with ``alibabacloud_vpc20160428``'s client:

* ``Provider.rpc``: tea-rpc's ``DoRequest`` — v1 HMAC-SHA1 signature (``signature_algorithm='v2'``),
  ``POST /`` with the call's ``query`` map in the query string and its ``body`` map as a form body
  (sent even when empty), ``Format=json``; GET only where the provider uses ``RpcGet``. Values go
  out as Go's tea-rpc-utils writes them: booleans ``true``/``false``, integers in decimal.
  A 2xx body holding ``Code`` is an error, as the provider's ``formatError`` makes it.
* ``Provider.call``: ``resource.Retry`` around a call — retries the resource's expected codes
  (``IsExpectedErrors``: equal code, an expected code starting with the returned code, or an
  expected code anywhere in the error body) and ``NeedRetry`` (throttling, 5xx, ServiceUnavailable);
  ClientToken ``TF-<Action>-<unix>-<uuid>`` (≤64) fresh per attempt, fixed, or none (§1.4).
* ``Provider.wait``: ``BuildStateConf`` — Pending empty (any other value polls on), a refresh that
  returns ``None`` is "not found" (20 in a row fail a wait that has a target; with ``target=[]``
  ``None`` ends the wait). Terraform's delays (5–20 s) and 3–10 s poll intervals are scaled down
  to keep the suite fast; the order of calls is the provider's.
* ``not_found``: ``NotFoundError`` — HTTP 404 or ``NotFound`` in the message means "gone".

Every helper records the calls it made (``Provider.log``) so tests can assert on the sequence.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from clients import ApiError, SdkFailure, scrub_proxy_env

API_VERSION = "2016-04-28"

# NeedRetry (alicloud/errors.go L207–241) codes.
NEED_RETRY_CODES = ("ServiceUnavailable", "Rejected.Throttling")

# Poll interval standing in for the provider's 3–10 s (MinTimeout 3 s, back-off ≤ 10 s).
POLL = 0.1


def tf_token(action: str) -> str:
    """buildClientToken (common.go L724–730)."""
    return f"TF-{action}-{int(time.time())}-{uuid.uuid4()}"[:64]


def wire(value: Any) -> str:
    """A value as tea-rpc-utils ``Query`` puts it on the wire."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flat(params: Optional[Dict[str, Any]]) -> Dict[str, str]:
    return {k: wire(v) for k, v in (params or {}).items() if v is not None}


def tags_params(tags: Dict[str, str], prefix: str = "Tag") -> Dict[str, str]:
    """``Tag.N.Key``/``Tag.N.Value`` as the provider flattens a tags map (sorted by key, as Go
    ranges over the schema set here)."""
    out: Dict[str, str] = {}
    for n, (k, v) in enumerate(sorted(tags.items()), start=1):
        out[f"{prefix}.{n}.Key"] = k
        out[f"{prefix}.{n}.Value"] = v
    return out


def not_found(e: ApiError) -> bool:
    """NotFoundError (errors.go L83–115), Tea path."""
    return e.http_status == 404 or "NotFound" in (e.message or "") or "NotFound" in (e.code or "")


def need_retry(e: ApiError) -> bool:
    code = e.code or ""
    return (code in NEED_RETRY_CODES or "Throttling" in code or (e.http_status or 0) >= 500
            or (e.message or "").startswith("code: 5"))


def is_expected(e: ApiError, expected: Iterable[str]) -> bool:
    """IsExpectedErrors (errors.go L117–205), Tea path."""
    code = e.code or ""
    body = " ".join(str(v) for v in (e.data or {}).values()) + " " + (e.message or "")
    for want in expected:
        if code == want or want.startswith(code) or want in body:
            return True
    return False


class Provider:
    """One configured alicloud provider (static keys, ``region``, ``endpoints { vpc = host:port }``,
    ``protocol = "HTTP"``, ``account_type = "Domestic"``)."""

    def __init__(self, server, ak: str, sk: str, region: str = "cn-hangzhou", timeout: float = 60.0):
        self.server = server
        self.ak = ak
        self.sk = sk
        self.region = region
        self.timeout = timeout
        self._clients: Dict[str, Any] = {}
        self.log: List[Tuple[str, str, Dict[str, str], Dict[str, str]]] = []  # (method, action, query, body)
        self.errors: List[Tuple[str, str]] = []  # (action, code) of every error seen, retried or not
        scrub_proxy_env()

    # ------------------------------------------------------------------ transport
    def _client(self):
        endpoint = self.server.endpoint
        c = self._clients.get(endpoint)
        if c is None:
            from alibabacloud_tea_openapi import utils_models as open_api_models
            from alibabacloud_vpc20160428.client import Client

            cfg = open_api_models.Config(access_key_id=self.ak, access_key_secret=self.sk, region_id=self.region,
                                         endpoint=endpoint, protocol="http", read_timeout=30000,
                                         connect_timeout=10000)
            cfg.signature_algorithm = "v2"  # tea-rpc signs v1 HMAC-SHA1
            c = Client(cfg)
            self._clients[endpoint] = c
        return c

    def rpc(self, action: str, query: Optional[Dict[str, Any]] = None, body: Optional[Dict[str, Any]] = None,
            method: str = "POST") -> Dict[str, Any]:
        from alibabacloud_tea_openapi import exceptions as tea_exc
        from alibabacloud_tea_openapi import utils_models as open_api_models
        from darabonba.runtime import RuntimeOptions

        q, b = flat(query), flat(body)
        self.log.append((method, action, q, b))
        req = open_api_models.OpenApiRequest(query=q, body=None if method == "GET" else b)
        params = open_api_models.Params(action=action, version=API_VERSION, protocol="HTTP", pathname="/",
                                        method=method, auth_type="AK", style="RPC", req_body_type="formData",
                                        body_type="json")
        try:
            resp = self._client().call_api(params, req, RuntimeOptions())
        except tea_exc.AlibabaCloudException as e:
            status = getattr(e, "status_code", None) or getattr(e, "statusCode", None)
            err = ApiError(code=e.code, message=e.message, http_status=status,
                           request_id=getattr(e, "request_id", None),
                           raw={"variant": "terraform", "exception": type(e).__name__,
                                "data": getattr(e, "data", None)})
            self.errors.append((action, err.code or ""))
            raise err from None
        except Exception as e:  # transport, JSON
            raise SdkFailure("terraform", type(e).__name__, str(e)) from e
        out = resp.get("body")
        assert isinstance(out, dict), f"{action}: body is not a JSON object: {out!r:.300}"
        # formatError (client.go L2885): a success body with Code/Success=false is an error.
        assert "Code" not in out and out.get("Success", True) is not False, f"{action}: error-shaped 200 body {out}"
        return out

    # ------------------------------------------------------------------ resource.Retry
    def call(self, action: str, query: Optional[Dict[str, Any]] = None, body: Optional[Dict[str, Any]] = None,
             retry: Iterable[str] = (), token: str = "none", method: str = "POST",
             retry_need_retry: bool = True, timeout: Optional[float] = None) -> Dict[str, Any]:
        """token: ``fresh`` (new per attempt), ``fixed`` (one for all attempts) or ``none``;
        the ClientToken goes into the body, as the provider puts it into its request map."""
        codes = list(retry)
        fixed = tf_token(action)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            b = dict(body or {})
            if token == "fresh":
                b["ClientToken"] = tf_token(action)
            elif token == "fixed":
                b["ClientToken"] = fixed
            try:
                return self.rpc(action, query, b, method)
            except ApiError as e:
                retryable = is_expected(e, codes) or (retry_need_retry and need_retry(e))
                if retryable and time.monotonic() < deadline:
                    time.sleep(random.uniform(0.02, 0.08))
                    continue
                raise

    # ------------------------------------------------------------------ BuildStateConf
    def wait(self, desc: str, refresh: Callable[[], Optional[Dict[str, Any]]], field: str, target: List[str],
             timeout: Optional[float] = None, not_found_checks: int = 20) -> Optional[Dict[str, Any]]:
        deadline = time.monotonic() + (timeout or self.timeout)
        misses = 0
        last: Any = None
        while True:
            obj = refresh()
            if obj is None:
                if not target:
                    return None
                misses += 1
                assert misses < not_found_checks, f"{desc}: not found {misses} times in a row"
            else:
                misses = 0
                last = obj.get(field)
                if not isinstance(last, str):
                    last = str(last)
                if target and last in target:
                    return obj
            assert time.monotonic() < deadline, f"{desc}: timed out, last {field}={last!r}"
            time.sleep(POLL)

    def describe(self, action: str, query: Optional[Dict[str, Any]] = None,
                 body: Optional[Dict[str, Any]] = None, gone: Callable[[Dict[str, Any]], bool] = lambda b: False,
                 method: str = "POST") -> Optional[Dict[str, Any]]:
        """A Describe wrapper: ``None`` when the resource is gone (any 404 / NotFound, or ``gone(body)``),
        retried on NeedRetry for a minute like the provider's Read."""
        deadline = time.monotonic() + 60
        while True:
            try:
                b = self.rpc(action, query, body, method)
            except ApiError as e:
                if not_found(e):
                    return None
                if need_retry(e) and time.monotonic() < deadline:
                    time.sleep(POLL)
                    continue
                raise
            return None if gone(b) else b

    # ------------------------------------------------------------------ SetResourceTags
    def set_tags(self, resource_type: str, resource_id: str, old: Dict[str, str], new: Dict[str, str]) -> None:
        """service_alicloud_*_v2.go SetResourceTags: UnTagResources for removed keys (``aliyun*``/``acs:*``
        skipped), then TagResources with every current tag. No ClientToken."""
        removed = [k for k in old if k not in new and not k.startswith("aliyun") and not k.startswith("acs:")]
        if removed:
            body: Dict[str, Any] = {"RegionId": self.region, "ResourceType": resource_type,
                                    "ResourceId.1": resource_id}
            for n, k in enumerate(removed, start=1):
                body[f"TagKey.{n}"] = k
            self.call("UnTagResources", body=body)
        if new:
            body = {"RegionId": self.region, "ResourceType": resource_type, "ResourceId.1": resource_id,
                    **tags_params(new)}
            self.call("TagResources", body=body)

    def actions(self) -> List[str]:
        return [a for _, a, _, _ in self.log]


def tags_of(body: Dict[str, Any], wrapper: str = "Tags") -> Dict[str, str]:
    """``Tags.Tag[]`` as the provider reads it (tagsToMap): every Key/Value must be a string."""
    w = body.get(wrapper)
    assert isinstance(w, dict) and isinstance(w.get("Tag"), list), f"{wrapper}.Tag must be a list: {w!r:.200}"
    out: Dict[str, str] = {}
    for t in w["Tag"]:
        assert isinstance(t.get("Key"), str) and isinstance(t.get("Value"), str), t
        out[t["Key"]] = t["Value"]
    return out


def assert_no_diff(config: Dict[str, Any], state: Dict[str, Any], what: str) -> None:
    """A second ``terraform plan`` is empty iff every configured attribute reads back unchanged."""
    diff = {k: (v, state.get(k)) for k, v in config.items() if state.get(k) != v}
    assert not diff, f"{what}: plan would show a diff (config, state): {diff}"
