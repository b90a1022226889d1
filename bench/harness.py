"""The pieces every section shares: `measure`, a keep-alive HTTP client, servers and scratch databases."""

from __future__ import annotations

import atexit
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fhirbill.cli import gunicorn_command

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
HOST = "127.0.0.1"  # every request of the bench goes to loopback


class BenchError(Exception):
    """One failed operation (counted, the first few messages kept; the run goes on)."""


@dataclass
class Result:
    """Throughput and latency of one measurement."""

    ops: int = 0
    units: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list)
    drain: float = 0.0  # seconds the machine kept working after the last response (see settle)
    cpu: float = 0.0  # CPU seconds the server's own processes spent, drain included (see server_cpu)

    @property
    def rate(self) -> float:
        """Units per second (requests, claims or resources, as the operation counts them)."""
        return self.units / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        """A latency percentile in milliseconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(q * len(s)))] * 1000

    @property
    def cpu_per_unit(self) -> float | None:
        """Server CPU microseconds per unit, where the server's CPU was measured."""
        return self.cpu / self.units * 1e6 if self.cpu and self.units else None

    @property
    def p50(self) -> float:
        return self.pct(0.50)

    @property
    def p99(self) -> float:
        return self.pct(0.99)


def measure(fn: Callable[[], int | None], threads: int, seconds: float, limit: int | None = None) -> Result:
    """Call `fn` from `threads` threads until `seconds` pass or `limit` calls were made.

    `fn` returns how many units one call did (None counts 1) and raises BenchError on failure;
    failed calls are counted, not timed.
    """
    res = Result()
    lock = threading.Lock()
    issued = 0
    start = time.perf_counter()
    deadline = start + seconds

    def worker() -> None:
        nonlocal issued
        lat: list[float] = []
        units = 0
        errs: list[str] = []
        while time.perf_counter() < deadline:
            with lock:
                if limit is not None and issued >= limit:
                    break
                issued += 1
            t0 = time.perf_counter()
            try:
                n = fn()
            except BenchError as exc:
                errs.append(str(exc))
                continue
            lat.append(time.perf_counter() - t0)
            units += 1 if n is None else n
        with lock:
            res.latencies.extend(lat)
            res.units += units
            res.errors.extend(errs)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    res.seconds = time.perf_counter() - start
    res.ops = len(res.latencies)
    res.drain = settle()
    return res


class Http:
    """A keep-alive HTTP/1.1 client to one loopback port: one connection per calling thread."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = dict(headers or {})  # sent with every request (Authorization)
        self.renew: Callable[[], None] | None = (
            None  # called on a 401 to get a fresh token (they live 5 minutes)
        )
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
            self._local.conn = conn
        return conn

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request; a 401 renews the token once (backend-services tokens last 5 minutes)."""
        got = self._send(method, path, body, headers)
        if got[0] == 401 and self.renew is not None and path.startswith("/fhir/"):
            self.renew()
            got = self._send(method, path, body, headers)
        return got

    def _send(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request (reconnecting once if the server closed the idle connection)."""
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers={**self.headers, **(headers or {})})
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionError, http.client.BadStatusLine):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def expect(
        self, method: str, path: str, status: int, body: bytes | None = None, ctype: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """A request that must answer `status`; anything else raises BenchError."""
        headers = {"Content-Type": ctype} if ctype else None
        got, hdrs, data = self.request(method, path, body, headers)
        if got != status:
            raise BenchError(f"{method} {path.split('?')[0]}: {got} {data[:300]!r}")
        return hdrs, data


def authorize(client: Http, database_url: str) -> str:
    """Give `client` a bearer token when the server enforces SMART authorization; a description.

    Registers a backend-services client (client_secret_basic, `system/*.cruds`) straight in the
    database, as an administrator would, then asks POST /oauth/token for a client_credentials token.
    """
    if client.request("GET", "/fhir/Patient/john-carter")[0] != 401:
        return "no authorization enforced"
    import base64
    from urllib.parse import urlencode

    from fhirbill.auth.clients import add_client
    from fhirbill.store.db import make_engine, write_tx

    engine = make_engine(database_url)
    with write_tx(engine) as conn:
        reg = add_client(
            conn, name="bench", grant_type="client_credentials", secret=True, scope="system/*.cruds"
        )
    engine.dispose()
    basic = base64.b64encode(f"{reg['client_id']}:{reg['client_secret']}".encode()).decode()
    form = urlencode({"grant_type": "client_credentials", "scope": "system/*.cruds"}).encode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"}

    def renew() -> None:
        status, _, data = client._send("POST", "/oauth/token", form, headers)
        if status != 200:
            raise RuntimeError(f"token request failed: {status} {data[:300]!r}")
        client.headers["Authorization"] = "Bearer " + json.loads(data)["access_token"]

    renew()
    client.renew = renew
    return "SMART backend-services bearer token (system/*.cruds) on every request"


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


_RUNNING: list[subprocess.Popen[bytes]] = []


def _stop_all() -> None:
    for proc in list(_RUNNING):
        stop(proc)


atexit.register(_stop_all)


def start(
    args: list[str], env: dict[str, str], log: Path, ready_path: str, port: int
) -> subprocess.Popen[bytes]:
    """Start a server in its own process group and wait until `ready_path` answers 200."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            args,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _RUNNING.append(proc)
    client = Http(port)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[0]} exited with {proc.returncode}; see {log}")
        try:
            if client.request("GET", ready_path)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{' '.join(args)} not ready after 60 s; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started by `start` (its process group: the gunicorn master and workers)."""
    if proc in _RUNNING:
        _RUNNING.remove(proc)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


def _busy_ticks() -> int:
    """CPU time the whole machine has spent busy (not idle or waiting for I/O), in clock ticks."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return user + nice + system + irq + softirq + steal


def settle(timeout: float = 60.0) -> float:
    """Wait until the machine is idle, so that work left by a measurement (batched AuditEvents,
    WAL checkpoints, PostgreSQL's autovacuum after many inserts) does not run into the next one
    and count against it; the seconds waited."""
    start = time.monotonic()
    last, quiet = _busy_ticks(), 0
    while quiet < 2 and time.monotonic() - start < timeout:
        time.sleep(0.25)
        now = _busy_ticks()
        quiet = quiet + 1 if now - last <= 5 else 0  # at most ~10% of one core
        last = now
    return max(0.0, time.monotonic() - start - 0.5)


def server_cpu(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user and system) spent so far by a server started by `start`: the live
    processes of its group, the gunicorn master and its workers. A database server's own
    processes (PostgreSQL's backends) are not in the group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[2]) == proc.pid:  # pgrp: `start` makes each server a session leader
            total += int(fields[11]) + int(fields[12])
    return total / tick


def gunicorn_args(app: str, port: int, workers: int, threads: int) -> list[str]:
    """The gunicorn command line `fhirbill serve` uses, for another WSGI app (the floor)."""
    return gunicorn_command(app, HOST, port, workers, threads)


def fhirbill(*args: str, env: dict[str, str]) -> None:
    """Run a `fhirbill` CLI command (migrate, seed) and fail loudly if it fails."""
    out = subprocess.run(
        [str(BIN / "fhirbill"), *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode:
        raise RuntimeError(f"fhirbill {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")


def pg_create(name: str) -> str:
    """A fresh scratch PostgreSQL database (dropped first if a previous run left it); its URL."""
    from sqlalchemy import create_engine, text

    eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def pg_drop(name: str) -> None:
    """Drop a scratch database made by `pg_create`."""
    from sqlalchemy import create_engine, text

    eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def pg_analyze(*urls: str) -> None:
    """Fresh planner statistics, as autovacuum would give a production server (it is off on this
    machine's PostgreSQL, so tables filled during a run would otherwise have none)."""
    from sqlalchemy import create_engine

    for url in urls:
        eng = create_engine(url, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
        eng.dispose()


def pg_available() -> bool:
    """True when the local PostgreSQL answers."""
    try:
        from sqlalchemy import create_engine, text

        eng = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:
        return False
