"""Real Alibaba Cloud SDK clients, wrapped behind one interface for the vpnroute tests.

Every variant exposes ``call(action, params) -> dict`` (the response body as a plain
dict with wire field names) and raises :class:`ApiError` when the *client* reports an
API error.  Anything else the client raises (transport errors, JSON/type-cast
failures, ...) surfaces as :class:`SdkFailure` so a broken response is never mistaken
for an API error.

Variants (see shared/spec/sdk-wire.md §2/§3/§5):

=============  =============================================================
py-tea-v3      alibabacloud_vpc20160428 (Python Tea), default ACS3-HMAC-SHA256
py-tea-v2      same, ``config.signature_algorithm = 'v2'`` (HMAC-SHA1 v1)
py-legacy      aliyunsdkcore AcsClient + aliyunsdkvpc typed request (v1)
node-tea-v3    @alicloud/vpc20160428 (Node Tea), default ACS3
node-tea-v2    same with ``signatureAlgorithm = 'v2'``
pop-get        @alicloud/pop-core RPCClient, GET (query)
pop-post       @alicloud/pop-core RPCClient, POST (form body)
=============  =============================================================

The Node variants go through ONE long-lived ``node/driver.js`` process (see
:class:`NodeDriver`).  ``RawClient`` hand-signs requests for protocol edge cases no
SDK can produce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import importlib
import json
import os
import queue
import subprocess
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

HERE = Path(__file__).resolve().parent
NODE_DIR = HERE / "node"

API_VERSION = "2016-04-28"

PY_TEA_V3 = "py-tea-v3"
PY_TEA_V2 = "py-tea-v2"
PY_LEGACY = "py-legacy"
NODE_TEA_V3 = "node-tea-v3"
NODE_TEA_V2 = "node-tea-v2"
POP_GET = "pop-get"
POP_POST = "pop-post"

ALL_VARIANTS: List[str] = [PY_TEA_V3, PY_TEA_V2, PY_LEGACY, NODE_TEA_V3, NODE_TEA_V2, POP_GET, POP_POST]
PY_VARIANTS = [PY_TEA_V3, PY_TEA_V2, PY_LEGACY]
NODE_VARIANTS = [NODE_TEA_V3, NODE_TEA_V2, POP_GET, POP_POST]
TEA_VARIANTS = [PY_TEA_V3, PY_TEA_V2, NODE_TEA_V3, NODE_TEA_V2]
ACS3_VARIANTS = [PY_TEA_V3, NODE_TEA_V3]
V1_VARIANTS = [PY_TEA_V2, PY_LEGACY, NODE_TEA_V2, POP_GET, POP_POST]
POP_VARIANTS = [POP_GET, POP_POST]
# Clients whose returned body is the server JSON untouched (JSON types preserved):
# Python Tea's from_map/to_map do no casting; legacy and pop return the parsed JSON.
# Node Tea casts the body into its model (numeric strings -> numbers etc.).
UNCAST_VARIANTS = [PY_TEA_V3, PY_TEA_V2, PY_LEGACY, POP_GET, POP_POST]
# Clients that hand back the whole server body (nothing dropped).
RAW_BODY_VARIANTS = [PY_LEGACY, POP_GET, POP_POST]
# Clients that drop fields unknown to the SDK model.
TYPED_MODEL_VARIANTS = [PY_TEA_V3, PY_TEA_V2, NODE_TEA_V3, NODE_TEA_V2]


# --------------------------------------------------------------------------- errors


class HarnessError(Exception):
    """The test asked for something the harness/SDK cannot express (bad action/param name)."""


class ApiError(Exception):
    """An API error exactly as the client surfaced it.

    ``message`` is the client's own message text (Tea: ``"code: 400, <Message> request id: …"``,
    legacy: ``<Message>``, pop: ``"<Message>, URL: …"``) – use substring checks.
    ``raw`` holds variant, exception type and the error body the client kept (``data``).
    """

    def __init__(self, code: Optional[str], message: Optional[str], http_status: Optional[int],
                 request_id: Optional[str], raw: Optional[Dict[str, Any]] = None):
        self.code = code
        self.message = message
        self.http_status = http_status
        self.request_id = request_id
        self.raw = dict(raw or {})
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"ApiError[{self.raw.get('variant')}] http={self.http_status} code={self.code!r} "
            f"message={self.message!r} request_id={self.request_id!r} data={self.raw.get('data')!r}"
        )

    @property
    def data(self) -> Optional[Dict[str, Any]]:
        return self.raw.get("data")


class SdkFailure(Exception):
    """The client failed without reporting an API error (transport, parse or cast error)."""

    def __init__(self, variant: str, name: str, message: str, detail: Any = None):
        self.variant = variant
        self.name = name
        self.message = message
        self.detail = detail
        super().__init__(f"SdkFailure[{variant}] {name}: {message}" + (f"\n{detail}" if detail else ""))


# --------------------------------------------------------------------------- helpers


def lower_first(s: str) -> str:
    return s[:1].lower() + s[1:]


def pe(value: Any) -> str:
    """RFC 3986 percent-encoding as used by both signature schemes (sdk-wire.md §4)."""
    return urllib.parse.quote(str(value), safe="-_.~")


def utc_timestamp(dt: Optional[datetime] = None) -> str:
    dt = dt or datetime.now(timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def wire_str(value: Any, style: str = "python") -> str:
    """Stringify a parameter value the way a client family would (bools differ)."""
    if isinstance(value, bool):
        if style == "python":
            return "True" if value else "False"
        return "true" if value else "false"
    return str(value)


def scrub_proxy_env(env: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Remove proxy variables (Python SDKs honour them even for 127.0.0.1)."""
    target = os.environ if env is None else env
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        target.pop(k, None)
    target["NO_PROXY"] = "127.0.0.1,localhost"
    target["no_proxy"] = "127.0.0.1,localhost"
    return target  # type: ignore[return-value]


# --------------------------------------------------------------------------- base client


class BaseClient:
    variant: str = ""

    def __init__(self, endpoint_fn: Callable[[], str], ak: str, sk: str):
        # endpoint_fn returns "127.0.0.1:PORT"; it is re-read on each call so a client
        # keeps working after the server restarted on another port.
        self._endpoint_fn = endpoint_fn
        self.ak = ak
        self.sk = sk
        self.last_status: Optional[int] = None

    @property
    def endpoint(self) -> str:
        return self._endpoint_fn()

    def call(self, action: str, params: Optional[Dict[str, Any]] = None, *, generic: bool = False,
             version: Optional[str] = None) -> Dict[str, Any]:
        """Call ``action``.  ``generic=True`` (implied by ``version``) uses the client's
        untyped path (Tea ``call_api``/``callApi``, legacy ``CommonRequest``); pop-core is
        always generic."""
        raise NotImplementedError

    def with_credentials(self, ak: str, sk: str) -> "BaseClient":
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.variant} ak={self.ak}>"


# --------------------------------------------------------------------------- Python Tea


class PyTeaClient(BaseClient):
    def __init__(self, variant: str, endpoint_fn: Callable[[], str], ak: str, sk: str):
        super().__init__(endpoint_fn, ak, sk)
        assert variant in (PY_TEA_V3, PY_TEA_V2)
        self.variant = variant
        self._clients: Dict[str, Any] = {}

    def with_credentials(self, ak: str, sk: str) -> "PyTeaClient":
        return PyTeaClient(self.variant, self._endpoint_fn, ak, sk)

    def _client(self):
        endpoint = self.endpoint
        c = self._clients.get(endpoint)
        if c is None:
            from alibabacloud_tea_openapi import utils_models as open_api_models
            from alibabacloud_vpc20160428.client import Client

            cfg = open_api_models.Config(
                access_key_id=self.ak,
                access_key_secret=self.sk,
                region_id="cn-hangzhou",
                endpoint=endpoint,
                protocol="http",
                read_timeout=30000,
                connect_timeout=10000,
            )
            if self.variant == PY_TEA_V2:
                cfg.signature_algorithm = "v2"
            c = Client(cfg)
            self._clients[endpoint] = c
        return c

    @staticmethod
    def _method_index(client) -> Dict[str, str]:
        idx = getattr(type(client), "_vpnroute_method_index", None)
        if idx is None:
            idx = {
                name.replace("_", "").lower(): name
                for name in dir(type(client))
                if name.endswith("_with_options") and not name.endswith("_async")
            }
            type(client)._vpnroute_method_index = idx
        return idx

    def call(self, action, params=None, *, generic=False, version=None):
        from alibabacloud_tea_openapi import exceptions as tea_exc
        from alibabacloud_tea_openapi import utils_models as open_api_models
        from alibabacloud_tea_openapi.utils import Utils
        from alibabacloud_vpc20160428 import models
        from darabonba.runtime import RuntimeOptions

        params = dict(params or {})
        client = self._client()
        runtime = RuntimeOptions()
        self.last_status = None
        try:
            if generic or version:
                req = open_api_models.OpenApiRequest(query=Utils.query(params))
                p = open_api_models.Params(
                    action=action, version=version or API_VERSION, protocol="HTTP", pathname="/",
                    method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="json",
                )
                resp = client.call_api(p, req, runtime)
                self.last_status = resp.get("statusCode")
                return resp.get("body")
            req_cls = getattr(models, action + "Request", None)
            method_name = self._method_index(client).get((action + "withoptions").lower())
            if req_cls is None or method_name is None:
                raise HarnessError(f"alibabacloud_vpc20160428 has no typed {action}Request/_with_options")
            req = req_cls()
            req.from_map(params)
            sent = req.to_map()
            missing = [k for k in params if k not in sent]
            if missing:
                raise HarnessError(f"{action}Request has no field(s) {missing} (typed client would drop them)")
            resp = getattr(client, method_name)(req, runtime)
            self.last_status = resp.status_code
            return resp.body.to_map() if resp.body is not None else None
        except HarnessError:
            raise
        except tea_exc.AlibabaCloudException as e:
            status = getattr(e, "status_code", None)
            if status is None:
                status = getattr(e, "statusCode", None)
            self.last_status = status
            raise ApiError(
                code=e.code,
                message=e.message,
                http_status=status,
                request_id=getattr(e, "request_id", None),
                raw={"variant": self.variant, "exception": type(e).__name__, "data": getattr(e, "data", None),
                     "retry_after": getattr(e, "retry_after", None)},
            ) from None
        except Exception as e:  # darabonba UnretryableException, RuntimeError, requests errors, ...
            raise SdkFailure(self.variant, type(e).__name__, str(e)) from e


# --------------------------------------------------------------------------- Python legacy


class PyLegacyClient(BaseClient):
    variant = PY_LEGACY

    def __init__(self, endpoint_fn: Callable[[], str], ak: str, sk: str):
        super().__init__(endpoint_fn, ak, sk)
        from aliyunsdkcore.client import AcsClient

        self._acs = AcsClient(ak, sk, "cn-hangzhou", connect_timeout=10, timeout=30)

    def with_credentials(self, ak: str, sk: str) -> "PyLegacyClient":
        return PyLegacyClient(self._endpoint_fn, ak, sk)

    def call(self, action, params=None, *, generic=False, version=None):
        from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException

        params = dict(params or {})
        self.last_status = None
        if generic or version:
            from aliyunsdkcore.request import CommonRequest

            req = CommonRequest(domain=self.endpoint, version=version or API_VERSION, action_name=action,
                                product="Vpc")
            req.set_method("POST")
            for k, v in params.items():
                req.add_query_param(k, v)
        else:
            try:
                mod = importlib.import_module(f"aliyunsdkvpc.request.v20160428.{action}Request")
                req_cls = getattr(mod, f"{action}Request")
            except (ImportError, AttributeError):
                raise HarnessError(f"aliyunsdkvpc 3.0.48 has no {action}Request") from None
            req = req_cls()
            for k, v in params.items():
                setter = getattr(req, "set_" + k, None)
                if callable(setter):
                    setter(v)  # typed setter (flattens repeat lists, keeps Python value)
                else:
                    req.add_query_param(k, v)
        req.set_endpoint(self.endpoint)
        req.set_protocol_type("http")
        try:
            body = self._acs.do_action_with_exception(req)
        except ServerException as e:
            self.last_status = e.get_http_status()
            raise ApiError(
                code=e.get_error_code(),
                message=e.get_error_msg(),
                http_status=e.get_http_status(),
                request_id=e.get_request_id(),
                raw={"variant": self.variant, "exception": type(e).__name__, "data": None, "str": str(e)},
            ) from None
        except ClientException as e:
            raise SdkFailure(self.variant, f"ClientException({e.get_error_code()})", e.get_error_msg()) from e
        except Exception as e:
            raise SdkFailure(self.variant, type(e).__name__, str(e)) from e
        self.last_status = 200
        try:
            return json.loads(body)
        except ValueError as e:
            raise SdkFailure(self.variant, "JSONDecodeError", f"{e}: {body[:500]!r}") from e


# --------------------------------------------------------------------------- Node driver


class NodeDriver:
    """One long-lived ``node driver.js`` process; JSON lines in, JSON lines out."""

    def __init__(self, log_path: Path, node: str = "node"):
        self.log_path = Path(log_path)
        self.node = node
        self.proc: Optional[subprocess.Popen] = None
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._lock = threading.Lock()
        self._next_id = 0
        self.versions: Dict[str, Any] = {}

    def start(self, timeout: float = 30.0) -> None:
        driver = NODE_DIR / "driver.js"
        if not (NODE_DIR / "node_modules").is_dir():
            raise RuntimeError(
                f"{NODE_DIR}/node_modules is missing: run scripts/test (or `npm ci` in {NODE_DIR})")
        env = scrub_proxy_env(dict(os.environ))
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.node, str(driver)], cwd=str(NODE_DIR), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, env=env,
        )
        t = threading.Thread(target=self._reader, name="node-driver-reader", daemon=True)
        t.start()
        ready = self._read_line(timeout)
        if ready is None:
            raise RuntimeError(f"node driver did not start:\n{self.log_tail()}")
        msg = json.loads(ready)
        if msg.get("id") != "ready":
            raise RuntimeError(f"unexpected first line from node driver: {ready!r}")
        self.versions = msg.get("versions", {})

    def _reader(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self._lines.put(line.decode("utf-8"))
        self._lines.put(None)

    def _read_line(self, timeout: float) -> Optional[str]:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, payload: Dict[str, Any], timeout: float = 90.0) -> Dict[str, Any]:
        with self._lock:
            if not self.alive():
                raise RuntimeError(f"node driver is not running:\n{self.log_tail()}")
            self._next_id += 1
            rid = self._next_id
            payload = dict(payload, id=rid)
            assert self.proc and self.proc.stdin
            self.proc.stdin.write((json.dumps(payload) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                line = self._read_line(max(left, 0.01)) if left > 0 else None
                if line is None:
                    raise RuntimeError(
                        f"node driver gave no answer to request {rid} within {timeout}s "
                        f"({payload.get('variant')} {payload.get('action')}):\n{self.log_tail()}")
                msg = json.loads(line)
                if msg.get("id") == rid:
                    return msg
                # stale answer to an earlier (timed-out) request: skip it

    def schema(self, model: str) -> Dict[str, Any]:
        """JSON type tree of an SDK model (e.g. ``DescribeVpnGatewayResponseBody``), wire names."""
        cache = self.__dict__.setdefault("_schemas", {})
        if model not in cache:
            msg = self.request({"op": "schema", "model": model})
            if not msg.get("ok"):
                raise HarnessError(msg.get("message"))
            cache[model] = msg["body"]
        return cache[model]

    def close(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        finally:
            self._log.close()


class NodeClient(BaseClient):
    def __init__(self, variant: str, driver: NodeDriver, endpoint_fn: Callable[[], str], ak: str, sk: str):
        super().__init__(endpoint_fn, ak, sk)
        assert variant in NODE_VARIANTS
        self.variant = variant
        self.driver = driver

    def with_credentials(self, ak: str, sk: str) -> "NodeClient":
        return NodeClient(self.variant, self.driver, self._endpoint_fn, ak, sk)

    def call(self, action, params=None, *, generic=False, version=None):
        msg = self.driver.request({
            "variant": self.variant, "endpoint": self.endpoint, "ak": self.ak, "sk": self.sk,
            "action": action, "params": dict(params or {}), "generic": bool(generic), "version": version,
        })
        self.last_status = msg.get("status")
        if msg.get("ok"):
            return msg.get("body")
        kind = msg.get("kind")
        if kind == "api":
            raise ApiError(
                code=msg.get("code"), message=msg.get("message"), http_status=msg.get("status"),
                request_id=msg.get("request_id"),
                raw={"variant": self.variant, "exception": msg.get("name"), "data": msg.get("data")},
            )
        if kind == "harness":
            raise HarnessError(msg.get("message"))
        raise SdkFailure(self.variant, str(msg.get("name")), str(msg.get("message")), msg.get("stack"))


def make_client(variant: str, endpoint_fn: Callable[[], str], ak: str, sk: str,
                node_driver: Optional[Callable[[], NodeDriver]] = None) -> BaseClient:
    if variant in (PY_TEA_V3, PY_TEA_V2):
        return PyTeaClient(variant, endpoint_fn, ak, sk)
    if variant == PY_LEGACY:
        return PyLegacyClient(endpoint_fn, ak, sk)
    if variant in NODE_VARIANTS:
        if node_driver is None:
            raise HarnessError("node variants need the node driver")
        return NodeClient(variant, node_driver(), endpoint_fn, ak, sk)
    raise HarnessError(f"unknown variant {variant!r}")


# --------------------------------------------------------------------------- raw requests


@dataclass
class RawResponse:
    status: int
    headers: Dict[str, str]  # lower-cased names
    body: bytes
    request_line: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"body is not JSON ({e}): status={self.status} ct={self.content_type!r} "
                                 f"body={self.text[:800]!r}") from None

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.content_type!r} {self.text[:300]!r}>"


def v1_string_to_sign(method: str, params: Dict[str, str]) -> str:
    items = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(f"{pe(k)}={pe(v)}" for k, v in items)
    return f"{method.upper()}&{pe('/')}&{pe(canonical)}"


def v1_signature(secret: str, string_to_sign: str) -> str:
    mac = hmac.new((secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def acs3_canonical_request(method: str, path: str, query: Dict[str, str], headers: Dict[str, str],
                           signed_headers: Iterable[str], body: bytes) -> str:
    cq = "&".join(f"{k}={pe(v)}" for k, v in sorted(query.items()))
    lower = {k.lower(): v for k, v in headers.items()}
    names = sorted(h.lower() for h in signed_headers)
    ch = "".join(f"{n}:{lower[n].strip()}\n" for n in names)
    return "\n".join([method.upper(), path, cq, ch, ";".join(names), hashlib.sha256(body).hexdigest()])


def acs3_signature(secret: str, canonical_request: str) -> str:
    sts = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), sts.encode("utf-8"), hashlib.sha256).hexdigest()


class RawClient:
    """Hand-built, hand-signed requests (v1 HMAC-SHA1 or ACS3) for protocol edge cases."""

    def __init__(self, endpoint_fn: Callable[[], str], ak: str, sk: str):
        self._endpoint_fn = endpoint_fn
        self.ak = ak
        self.sk = sk

    @property
    def endpoint(self) -> str:
        return self._endpoint_fn()

    def send(self, method: str, path: str, body: bytes = b"", headers: Optional[Dict[str, str]] = None,
             timeout: float = 30.0) -> RawResponse:
        host, port = self.endpoint.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
        hdrs = {"Host": self.endpoint, "Accept-Encoding": "identity"}
        hdrs.update(headers or {})
        if method.upper() == "POST" and "Content-Length" not in hdrs:
            hdrs["Content-Length"] = str(len(body))
        try:
            conn.request(method.upper(), path, body=body if body else None, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data,
                               f"{method} {path}")
        finally:
            conn.close()

    def v1(self, action: Optional[str], params: Optional[Dict[str, Any]] = None, *, method: str = "POST",
           in_body: bool = False, sign: bool = True, version: Optional[str] = API_VERSION,
           fmt: Optional[str] = "JSON", timestamp: Optional[str] = None, nonce: Optional[str] = None,
           ak: Optional[str] = None, sk: Optional[str] = None, bool_style: str = "python",
           omit: Iterable[str] = (), signature: Optional[str] = None,
           headers: Optional[Dict[str, str]] = None) -> RawResponse:
        """Send a v1 (HMAC-SHA1) RPC request.

        ``None`` for action/version/fmt omits that parameter; ``omit`` drops any common
        parameter (e.g. ``SignatureNonce``); ``sign=False`` sends no ``Signature``;
        ``signature`` forces a given value.  ``in_body`` puts everything in a form body
        (like pop-core POST)."""
        p: Dict[str, str] = {}
        if action is not None:
            p["Action"] = action
        if version is not None:
            p["Version"] = version
        if fmt is not None:
            p["Format"] = fmt
        p.update({
            "AccessKeyId": ak or self.ak,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": nonce or uuid.uuid4().hex,
            "Timestamp": timestamp or utc_timestamp(),
        })
        for k, v in (params or {}).items():
            if v is None:
                p.pop(k, None)
            else:
                p[k] = wire_str(v, bool_style)
        for k in omit:
            p.pop(k, None)
        if signature is not None:
            p["Signature"] = signature
        elif sign:
            p["Signature"] = v1_signature(sk or self.sk, v1_string_to_sign(method, p))
        encoded = "&".join(f"{pe(k)}={pe(v)}" for k, v in p.items())
        hdrs = dict(headers or {})
        if in_body:
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
            return self.send(method, "/", encoded.encode("utf-8"), hdrs)
        return self.send(method, "/?" + encoded, b"", hdrs)

    def acs3(self, action: Optional[str], params: Optional[Dict[str, Any]] = None, *,
             version: Optional[str] = API_VERSION, date: Optional[str] = None, nonce: Optional[str] = None,
             ak: Optional[str] = None, sk: Optional[str] = None, sign: bool = True,
             bool_style: str = "python", extra_headers: Optional[Dict[str, str]] = None,
             authorization: Optional[str] = None) -> RawResponse:
        """Send an ACS3-HMAC-SHA256 request the way the Tea SDKs do (POST, params in query)."""
        query = {k: wire_str(v, bool_style) for k, v in (params or {}).items() if v is not None}
        body = b""
        headers: Dict[str, str] = {
            "host": self.endpoint,
            "x-acs-date": date or utc_timestamp(),
            "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
            "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
            "accept": "application/json",
        }
        if action is not None:
            headers["x-acs-action"] = action
        if version is not None:
            headers["x-acs-version"] = version
        headers.update(extra_headers or {})
        signed = sorted(h for h in headers if h == "host" or h.startswith("x-acs-"))
        if authorization is not None:
            headers["Authorization"] = authorization
        elif sign:
            cr = acs3_canonical_request("POST", "/", query, headers, signed, body)
            sig = acs3_signature(sk or self.sk, cr)
            headers["Authorization"] = (f"ACS3-HMAC-SHA256 Credential={ak or self.ak},"
                                        f"SignedHeaders={';'.join(signed)},Signature={sig}")
        path = "/"
        if query:
            path += "?" + "&".join(f"{pe(k)}={pe(v)}" for k, v in sorted(query.items()))
        hdrs = {k: v for k, v in headers.items() if k != "host"}
        return self.send("POST", path, body, hdrs)


def stale_timestamp(minutes: int = 20) -> str:
    return utc_timestamp(datetime.now(timezone.utc) - timedelta(minutes=minutes))
