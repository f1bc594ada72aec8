"""Start/stop the real ``vpnroute`` binary for the SDK tests.

``VPNROUTE_SDK_STORE=postgres`` runs every server on PostgreSQL (127.0.0.1:5432, user
postgres, trust auth) instead of the SQLite file in its data dir: each :class:`Server`
creates a database of its own (``vpnroute_sdk_<pid>_<random>``), keeps it across restarts
and drops it when the test process exits. Default: ``sqlite``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, List, Optional, Sequence

from clients import scrub_proxy_env

REPO = Path(__file__).resolve().parents[2]

ROOT_ACCESS_KEY_ID = "testid-root"
ROOT_ACCESS_KEY_SECRET = "testsecret-root-0123456789abcdef"
# Bearer token of the operator endpoints (/_vpnroute/*, /metrics) of every test server.
OPERATOR_TOKEN = "testoperator-token-0123456789abcdef"


def operator_headers() -> dict:
    """Headers an operator request to a test server needs."""
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

LISTEN_RE = re.compile(r"listening on (?:http://)?(127\.0\.0\.1:\d+)")
STARTUP_TIMEOUT = 30.0

# Every Server ever started in this process (weak), for attaching logs to failures.
LIVE_SERVERS: "weakref.WeakSet[Server]" = weakref.WeakSet()


def vpnroute_bin() -> Path:
    b = os.environ.get("VPNROUTE_BIN")
    p = Path(b) if b else REPO / "target" / "debug" / "vpnroute"
    if not p.is_absolute():
        p = (REPO / p) if not p.exists() else p.resolve()
    return p


class ServerError(RuntimeError):
    pass


# --------------------------------------------------------------------------- store backend

SDK_STORE = os.environ.get("VPNROUTE_SDK_STORE", "sqlite").strip().lower() or "sqlite"
if SDK_STORE not in ("sqlite", "postgres"):
    raise ServerError(f"VPNROUTE_SDK_STORE={SDK_STORE!r}: expected sqlite or postgres")
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
# Databases this process created (dropped at exit; never any other).
_CREATED_DATABASES: List[str] = []
_DB_LOCK = threading.Lock()


def on_postgres() -> bool:
    """Whether this run's servers use PostgreSQL."""
    return SDK_STORE == "postgres"


def _psql(sql: str) -> None:
    cmd = ["psql", "-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER, "-d", "postgres", "-X", "-q",
           "-v", "ON_ERROR_STOP=1", "-c", sql]
    r = subprocess.run(cmd, capture_output=True, timeout=60, stdin=subprocess.DEVNULL,
                       env=scrub_proxy_env(dict(os.environ)))
    if r.returncode != 0:
        raise ServerError(f"psql {sql!r} exited {r.returncode}: {r.stderr.decode('utf-8', 'replace').strip()}")


def create_database() -> str:
    """A fresh PostgreSQL database for one server; returns its name."""
    name = f"vpnroute_sdk_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    _psql(f'CREATE DATABASE "{name}"')
    with _DB_LOCK:
        _CREATED_DATABASES.append(name)
    return name


def store_url(database: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def drop_created_databases() -> None:
    """Drop every database this process created (idempotent; errors are reported, not raised)."""
    with _DB_LOCK:
        names = list(_CREATED_DATABASES)
        _CREATED_DATABASES.clear()
    for name in names:
        try:
            _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as e:  # noqa: BLE001 - best effort at exit
            print(f"warning: could not drop test database {name}: {e}")


atexit.register(drop_created_databases)


class AdminError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str):
        self.args_ = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"`vpnroute admin {' '.join(args)}` exited {returncode}\n"
                         f"stdout: {stdout.strip()[:2000]}\nstderr: {stderr.strip()[:2000]}")


class Server:
    """One ``vpnroute serve`` process on a data dir; restartable on the same dir."""

    def __init__(self, data_dir: Path, log_path: Path, extra_args: Sequence[str] = (),
                 binary: Optional[Path] = None):
        self.binary = Path(binary) if binary else vpnroute_bin()
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.extra_args = list(extra_args)
        self.proc: Optional[subprocess.Popen] = None
        self.address: Optional[str] = None  # "127.0.0.1:PORT"
        self.starts = 0
        self.root_ak = ROOT_ACCESS_KEY_ID
        self.root_sk = ROOT_ACCESS_KEY_SECRET
        self._log_lock = threading.Lock()
        # PostgreSQL run: a database of its own, the same across restarts.
        self.database: Optional[str] = create_database() if on_postgres() else None
        LIVE_SERVERS.add(self)

    @property
    def store_args(self) -> List[str]:
        """``--store …`` when this server runs on PostgreSQL (serve and admin take it)."""
        return ["--store", store_url(self.database)] if self.database else []

    # ------------------------------------------------------------------ env / log
    def env(self) -> dict:
        # Hermetic: every serve flag has a VPNROUTE_* env twin; don't inherit any.
        env = scrub_proxy_env({k: v for k, v in os.environ.items() if not k.startswith("VPNROUTE_")})
        env["VPNROUTE_ROOT_ACCESS_KEY_ID"] = self.root_ak
        env["VPNROUTE_ROOT_ACCESS_KEY_SECRET"] = self.root_sk
        env["VPNROUTE_OPERATOR_TOKEN"] = OPERATOR_TOKEN
        if self.database:
            # Every command of the binary (serve, admin, explain) opens the same store.
            env["VPNROUTE_STORE"] = store_url(self.database)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        return env

    def _log_write(self, text: str) -> None:
        with self._log_lock, open(self.log_path, "a", encoding="utf-8", errors="replace") as f:
            f.write(text)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_text(self, since: int = 0, max_lines: int = 300) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                data = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        lines = data.splitlines()
        if len(lines) > max_lines:
            lines = [f"... ({len(lines) - max_lines} earlier lines cut; full log: {self.log_path})"] + lines[-max_lines:]
        return "\n".join(lines)

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoint(self) -> str:
        if self.address is None:
            raise ServerError("server is not running")
        return self.address

    @property
    def url(self) -> str:
        return "http://" + self.endpoint

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def endpoint_fn(self):
        return lambda: self.endpoint

    def start(self) -> "Server":
        if not self.binary.exists():
            raise ServerError(f"vpnroute binary not found at {self.binary} "
                              f"(set VPNROUTE_BIN or run `cargo build --workspace --bins`)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir),
               *self.store_args, *self.extra_args]
        self.starts += 1
        self._log_write(f"\n===== start #{self.starts}: {' '.join(cmd)} =====\n")
        log_f = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_f, stdin=subprocess.DEVNULL,
                                         env=self.env(), cwd=str(self.data_dir))
        finally:
            log_f.close()
        found: List[str] = []
        ready = threading.Event()
        proc = self.proc

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace")
                self._log_write("[stdout] " + line)
                if not ready.is_set():
                    m = LISTEN_RE.search(line)
                    if m:
                        found.append(m.group(1))
                        ready.set()
            ready.set()  # EOF: process exited

        threading.Thread(target=pump, name=f"vpnroute-stdout-{proc.pid}", daemon=True).start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ready.wait(0.05):
            if time.monotonic() > deadline:
                break
        if not found:
            rc = proc.poll()
            self._kill_proc()
            log = self.log_text(max_lines=80)
            hint = ""
            if any(LISTEN_RE.search(ln) for ln in log.splitlines() if not ln.startswith("[stdout] ")):
                hint = "\n(the 'listening on' line seems to be on stderr; the contract puts it on stdout)"
            state = f"exited with {rc}" if rc is not None else f"no 'listening on 127.0.0.1:PORT' line within {STARTUP_TIMEOUT}s"
            raise ServerError(f"vpnroute serve {state}: {' '.join(cmd)}{hint}\n--- log ---\n{log}")
        self.address = found[0]
        return self

    def _kill_proc(self, sig: int = signal.SIGKILL) -> Optional[int]:
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            return p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            return p.wait()

    def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``); returns the exit code."""
        p = self.proc
        if p is None:
            return None
        rc: Optional[int]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._log_write(f"\n===== did not exit {timeout}s after SIGTERM; SIGKILL =====\n")
                rc = self._kill_proc()
        else:
            rc = p.returncode
        self._log_write(f"\n===== stopped (exit {rc}) =====\n")
        self.proc = None
        self.address = None
        return rc

    def restart(self) -> "Server":
        self.stop()
        return self.start()

    def kill9(self) -> "Server":
        """SIGKILL (no chance to flush) and start again on the same data dir."""
        rc = self._kill_proc(signal.SIGKILL)
        self._log_write(f"\n===== SIGKILL (exit {rc}) =====\n")
        self.proc = None
        self.address = None
        return self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ admin
    def admin(self, *args: str, check: bool = True) -> Any:
        cmd = [str(self.binary), "admin", "--data-dir", str(self.data_dir), *self.store_args, *map(str, args)]
        r = subprocess.run(cmd, capture_output=True, env=self.env(), timeout=60, stdin=subprocess.DEVNULL)
        out = r.stdout.decode("utf-8", errors="replace")
        err = r.stderr.decode("utf-8", errors="replace")
        self._log_write(f"\n[admin] {' '.join(args)} -> exit {r.returncode}\n[admin stdout] {out}\n[admin stderr] {err}\n")
        if r.returncode != 0:
            if check:
                raise AdminError(args, r.returncode, out, err)
            return None
        if not out.strip():
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise AdminError(args, r.returncode, out, err + "\n(stdout is not JSON)") from None

    def create_account(self, name: str) -> dict:
        """admin account create + key create → {AccountId, AccessKeyId, AccessKeySecret}."""
        acct = self.admin("account", "create", "--name", name)
        assert isinstance(acct, dict) and acct.get("AccountId"), f"account create output: {acct!r}"
        key = self.admin("key", "create", "--account", acct["AccountId"])
        assert isinstance(key, dict) and key.get("AccessKeyId") and key.get("AccessKeySecret"), \
            f"key create output: {key!r}"
        return {"AccountId": acct["AccountId"], **key}
