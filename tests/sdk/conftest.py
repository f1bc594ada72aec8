"""Fixtures for the real-SDK compatibility tests of vpnroute.

* ``server`` (module scope): one ``vpnroute serve`` on a temp data dir (``--task-duration 500ms``).
* ``server_factory`` / ``fresh_server`` (function scope): private servers, e.g. for restarts.
* ``client``: parametrized over ALL_VARIANTS (override with
  ``@pytest.mark.parametrize('client', [...], indirect=True)``), bound to ``server``.
* ``clients``: dict variant -> client for ``server``.
* ``make_client(variant, server=None, ak=None, sk=None)``: any variant, any server/credentials.
* ``raw`` / ``make_raw``: hand-signed requests (clients.RawClient).
* ``node_driver`` (session): the single Node driver process, started on first use.
* ``tf_server`` (module scope, ``--task-duration 300ms``) and ``tf``: a fresh account on it
  behind the Terraform provider's request machinery (``terraform.Provider``).

On a test failure the part of each server's log (stderr + stdout) written during the test
is attached to the report.

``VPNROUTE_SDK_STORE=postgres``: every server runs on a PostgreSQL database of its own (see
``server.py``). No test depends on the SQLite files of the data dir, so the whole suite runs
on both stores.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Dict, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clients import (  # noqa: E402
    ALL_VARIANTS,
    NODE_VARIANTS,
    BaseClient,
    NodeDriver,
    RawClient,
    make_client as _make_client,
    scrub_proxy_env,
)
from server import LIVE_SERVERS, SDK_STORE, Server, drop_created_databases  # noqa: E402

# Python SDKs honour proxy variables even for 127.0.0.1 (sdk-wire.md §2, §7.14).
scrub_proxy_env()

DEFAULT_SERVER_ARGS = ["--task-duration", "500ms"]

_NODE_DRIVER: Optional[NodeDriver] = None


# --------------------------------------------------------------------------- log attachment


def pytest_runtest_setup(item):
    item._vpnroute_log_offsets = {id(s): s.log_size() for s in list(LIVE_SERVERS)}
    if _NODE_DRIVER is not None:
        item._vpnroute_node_offset = _node_log_size()


def _node_log_size() -> int:
    try:
        return _NODE_DRIVER.log_path.stat().st_size if _NODE_DRIVER else 0
    except OSError:
        return 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when in ("setup", "call") and rep.failed:
        offsets = getattr(item, "_vpnroute_log_offsets", {})
        for s in list(LIVE_SERVERS):
            since = offsets.get(id(s), 0)
            if s.log_size() > since:
                rep.sections.append((f"vpnroute log ({s.log_path})", s.log_text(since=since)))
        if _NODE_DRIVER is not None:
            since = getattr(item, "_vpnroute_node_offset", 0)
            if _node_log_size() > since:
                with open(_NODE_DRIVER.log_path, "rb") as f:
                    f.seek(since)
                    rep.sections.append(("node driver stderr", f.read().decode("utf-8", "replace")[-8000:]))


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="session", autouse=True)
def _test_databases():
    """PostgreSQL run: the databases the servers created are dropped at the end."""
    yield
    drop_created_databases()


@pytest.fixture(scope="session")
def node_driver(tmp_path_factory):
    global _NODE_DRIVER
    d = NodeDriver(tmp_path_factory.mktemp("node") / "driver.log")
    d.start()
    _NODE_DRIVER = d
    yield d
    d.close()
    _NODE_DRIVER = None


def _start(tmp_path_factory, name: str, extra_args) -> Server:
    d = tmp_path_factory.mktemp(name)
    s = Server(d / "data", d / "server.log", extra_args)
    try:
        s.start()
    except Exception as e:
        pytest.fail(str(e), pytrace=False)
    return s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = _start(tmp_path_factory, "srv", DEFAULT_SERVER_ARGS)
    yield s
    s.stop()


@pytest.fixture
def server_factory(tmp_path_factory):
    started = []

    def factory(extra_args=None) -> Server:
        s = _start(tmp_path_factory, "fresh", DEFAULT_SERVER_ARGS if extra_args is None else extra_args)
        started.append(s)
        return s

    yield factory
    for s in started:
        s.stop()


@pytest.fixture
def fresh_server(server_factory) -> Server:
    return server_factory()


@pytest.fixture(scope="module")
def tf_server(tmp_path_factory):
    s = _start(tmp_path_factory, "tf", ["--task-duration", "300ms"])
    yield s
    s.stop()


@pytest.fixture
def tf(tf_server):
    from terraform import Provider

    creds = tf_server.create_account("tf-" + uuid.uuid4().hex[:8])
    return Provider(tf_server, creds["AccessKeyId"], creds["AccessKeySecret"], "cn-hangzhou")


# --------------------------------------------------------------------------- clients


@pytest.fixture
def make_client(request):
    def factory(variant: str, srv: Optional[Server] = None, ak: Optional[str] = None,
                sk: Optional[str] = None) -> BaseClient:
        srv = srv or request.getfixturevalue("server")
        return _make_client(
            variant, srv.endpoint_fn(), ak or srv.root_ak, sk or srv.root_sk,
            node_driver=(lambda: request.getfixturevalue("node_driver")) if variant in NODE_VARIANTS else None,
        )

    return factory


@pytest.fixture(params=ALL_VARIANTS)
def client(request, make_client) -> BaseClient:
    return make_client(request.param)


@pytest.fixture
def clients(make_client) -> Dict[str, BaseClient]:
    return {v: make_client(v) for v in ALL_VARIANTS}


@pytest.fixture
def make_raw(request):
    def factory(srv: Optional[Server] = None, ak: Optional[str] = None, sk: Optional[str] = None) -> RawClient:
        srv = srv or request.getfixturevalue("server")
        return RawClient(srv.endpoint_fn(), ak or srv.root_ak, sk or srv.root_sk)

    return factory


@pytest.fixture
def raw(make_raw) -> RawClient:
    return make_raw()


def pytest_report_header(config):
    from server import vpnroute_bin

    return [f"vpnroute binary: {vpnroute_bin()} (exists: {vpnroute_bin().exists()})",
            f"proxy env scrubbed; NO_PROXY={os.environ.get('NO_PROXY')}",
            f"store: {SDK_STORE} (VPNROUTE_SDK_STORE)"]


@pytest.fixture
def schema(request):
    """schema('DescribeVpnGatewayResponseBody') -> JSON type tree from the Node SDK model."""

    def get(model: str):
        return request.getfixturevalue("node_driver").schema(model)

    return get
