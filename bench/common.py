"""What every benchmark shares: processes, databases, the load generator, rows and the table.

Everything measured runs as its own process, started the way an operator starts it
(``python -m rps_service run -c rps.ini`` in a temporary folder), made ready by polling its
``/health`` (or the sandbox's ``/_sandbox/state``), and stopped with SIGTERM, then SIGKILL.
The harness only talks to the processes over HTTP and reads the database; it imports
nothing from the product, so it measures whatever the product is at the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LUA_SCRIPT = Path(__file__).with_name("post.lua")
SANDBOX_KEY_ID = "demo-key"  # the sandbox's seeded key with a Role (README, sandbox)
SANDBOX_SECRET = "demo-secret"  # noqa: S105 - a published fake demo key
UNREACHABLE_API = "http://127.0.0.1:9/api/v1/"  # discard port: connections are refused

MYSQL = {
    "host": os.environ.get("RPS_BENCH_MYSQL_HOST", os.environ.get("RPS_TEST_MYSQL_HOST",
                                                                  "127.0.0.1")),
    "port": int(os.environ.get("RPS_BENCH_MYSQL_PORT", os.environ.get("RPS_TEST_MYSQL_PORT",
                                                                      "3306"))),
    "user": os.environ.get("RPS_BENCH_MYSQL_USER", os.environ.get("RPS_TEST_MYSQL_USER",
                                                                  "root")),
    "password": os.environ.get("RPS_BENCH_MYSQL_PASSWORD",
                               os.environ.get("RPS_TEST_MYSQL_PASSWORD", "")),
}


# -- options, rows, the table ------------------------------------------------------------


@dataclass
class Options:
    """What the command line asked for; benchmarks add notes printed under the table."""

    dbs: list[str]
    quick: bool = False
    profile: Path | None = None  # py-spy raw stacks + summaries go here
    variant: str = ""  # "" or "trace": see bench/variant.py
    keep: bool = False  # keep the temporary folders (ini, rps.log, outputs)
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)  # --set SECTION.KEY=V
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if text and text not in self.notes:
            self.notes.append(text)


@dataclass
class Row:
    """One line of the table. ``ok`` None: information only (no target)."""

    bench: str
    db: str
    figure: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    status: str = ""  # SKIP or ERROR overrides PASS/FAIL; the reason goes in ``figure``

    @property
    def result(self) -> str:
        if self.status:
            return self.status
        if self.ok is None:
            return "-"
        return "PASS" if self.ok else "FAIL"


def error_row(bench: str, db: str, exc: BaseException) -> Row:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:110]
    return Row(bench, db, text, None, status="ERROR")


def number(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if magnitude >= 1 or value == 0 else f"{value:.3f}"


def table(rows: Sequence[Row]) -> str:
    """The one table ``python -m bench`` prints."""
    head = ("bench", "db", "figure", "value", "unit", "baseline", "ratio", "target", "result")
    cells = [
        (r.bench, r.db, r.figure, number(r.value), r.unit, number(r.baseline),
         "-" if r.ratio is None else f"{r.ratio * 100:.0f}%", r.target or "-", r.result)
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(head)]
    right = {3, 5, 6}

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), rule, *(line(c) for c in cells)])


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a child: no RPS_* overrides, this tree first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


class Proc:
    """A child process whose output goes to ``<folder>/<name>.out``."""

    def __init__(self, name: str, cmd: list[str], folder: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name, self.cmd, self.folder = name, cmd, folder
        self.env = env or child_env()
        self.popen: subprocess.Popen[bytes] | None = None
        self.started = 0.0  # time.monotonic() just before the fork

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"{self.name} not started")
        return self.popen.pid

    def start(self) -> None:
        with (self.folder / f"{self.name}.out").open("ab") as out:
            self.started = time.monotonic()
            # A session of its own: a Ctrl-C at the terminal reaches only the harness,
            # which then stops its children in order.
            self.popen = subprocess.Popen(  # noqa: S603 - our own command lines
                self.cmd, cwd=self.folder, env=self.env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def output(self, tail: int = 2000) -> str:
        path = self.folder / f"{self.name}.out"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop(self, timeout: float = 15.0) -> float | None:
        """SIGTERM, then SIGKILL after ``timeout``; seconds from SIGTERM to exit (None when
        it had to be killed or was not running)."""
        if self.popen is None or self.popen.poll() is not None:
            return None
        # A pidfd turns readable the moment the process exits: exact, unlike
        # Popen.wait(timeout), which polls with sleeps of up to 50 ms.
        pidfd = os.pidfd_open(self.popen.pid)
        try:
            sent = time.monotonic()
            self.popen.send_signal(signal.SIGTERM)
            exited = bool(select.select([pidfd], [], [], timeout)[0])
            took = time.monotonic() - sent
        finally:
            os.close(pidfd)
        if not exited:
            self.popen.kill()
        self.popen.wait()
        return took if exited else None

    def rss_mb(self) -> float:
        """Resident set size now, from /proc/<pid>/status (VmRSS), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for {self.name}")

    async def wait_http(self, session: aiohttp.ClientSession, url: str,
                        within: float = 30.0) -> float:
        """Poll ``url`` until it answers 200; seconds since the start."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited: {self.output()}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started
            await asyncio.sleep(0.01)
        raise RuntimeError(f"{self.name} not ready after {within:g}s: {self.output()}")


def ini_text(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


class Daemon(Proc):
    """``rps-service run`` with a generated rps.ini in ``folder``."""

    def __init__(self, folder: Path, database: str, opts: Options, *,
                 general: dict[str, Any] | None = None, snom: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None, name: str = "daemon") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"{name}.log"
        values: dict[str, Any] = {
            "listen": "127.0.0.1", "port": self.port, "database": database,
            "log_file": self.log, "log_level": "INFO", "queuenum": 4, "queuecap": 100,
            # One key for the daemons of a run, beside them (never /var/lib/rps for MySQL).
            "secret_key_file": folder / "secret.key",
        }
        values.update(general or {})
        keys = {"api_url": UNREACHABLE_API, "access_key_id": SANDBOX_KEY_ID,
                "access_key_secret": SANDBOX_SECRET, "timeout": 10}
        keys.update(snom or {})
        sections: dict[str, dict[str, Any]] = {"general": values, "snom": keys}
        for section, changes in opts.overrides.items():  # experiments: --set, last word
            sections.setdefault(section, {}).update(changes)
        self.ini = folder / f"{name}.ini"
        self.ini.write_text(ini_text(sections), encoding="utf-8")
        self.trace = folder / f"{name}.trace.json" if "trace" in opts.variant else None
        if self.trace is not None:
            env = {**(env or {}), "BENCH_TRACE": str(self.trace)}
        if opts.variant:
            cmd = [PYTHON, "-m", "bench.variant", opts.variant, "run", "-c", str(self.ini)]
        else:
            cmd = [PYTHON, "-m", "rps_service", "run", "-c", str(self.ini)]
        super().__init__(name, cmd, folder, child_env(env))

    async def ready(self, session: aiohttp.ClientSession, within: float = 30.0) -> float:
        return await self.wait_http(session, f"{self.url}/health", within)

    def output(self, tail: int = 2000) -> str:
        text = self.log.read_text(errors="replace")[-tail:] if self.log.exists() else ""
        return text + super().output(tail)

    def trace_report(self, what: str, per: int, unit: str = "event", top: int = 14) -> str:
        """With ``--variant trace`` (after the stop): wall time per ``unit`` by method."""
        if self.trace is None or not self.trace.exists() or per <= 0:
            return ""
        stats = json.loads(self.trace.read_text())
        ranked = sorted(stats.items(), key=lambda kv: -kv[1][1])
        ranked = [kv for kv in ranked if kv[0].split(".")[-1] not in ("run", "serve")]
        parts = [f"{name} {calls / per:.2g}x{1000 * total / calls:.2f}ms"
                 for name, (calls, total, _) in ranked[:top]]
        return f"trace {what}, calls per {unit} x mean wall time: " + "; ".join(parts)


class Sandbox(Proc):
    """``rps-service sandbox`` on a free port; its control API switches faults."""

    def __init__(self, folder: Path, latency_ms: float = 0.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api/v1/"
        cmd = [PYTHON, "-m", "rps_service", "sandbox", "--port", str(self.port),
               "--latency-ms", f"{latency_ms:g}"]
        super().__init__("sandbox", cmd, folder)

    async def ready(self, session: aiohttp.ClientSession) -> float:
        return await self.wait_http(session, f"{self.url}/_sandbox/state")

    async def faults(self, session: aiohttp.ClientSession, **switches: Any) -> None:
        async with session.post(f"{self.url}/_sandbox/faults", json=switches) as r:
            if r.status != 200:
                raise RuntimeError(f"sandbox refused {switches}: {await r.text()}")

    async def reset_counts(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{self.url}/_sandbox/reset-counts") as r:
            r.raise_for_status()

    async def state(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.url}/_sandbox/state") as r:
            r.raise_for_status()
            result: dict[str, Any] = await r.json()
            return result

    def snom(self) -> dict[str, Any]:
        """The [snom] keys pointing a daemon at this sandbox. The rate is unlimited and the
        endpoint is not read before each PUT: the benchmarks measure the daemon's pipeline
        at one vendor call per registration (``bench vendors`` counts both modes)."""
        return {"api_url": self.api_url, "rate_limit": 10_000,
                "keep_portal_settings": "false",
                "provisioning_url": "https://pbx.bench.test/ztprov/{server}/"}


@contextlib.contextmanager
def workdir(opts: Options, label: str) -> Iterator[Path]:
    """A temporary folder for one benchmark run (kept with ``--keep``)."""
    folder = Path(tempfile.mkdtemp(prefix=f"rps-bench-{label}-"))
    try:
        yield folder
    finally:
        if opts.keep:
            opts.note(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


async def init_db(daemon: Daemon) -> None:
    """Create the schema with the daemon's rps.ini (``rps-service init-db``), as an
    installed system has it before the daemon's first start."""
    cmd = [PYTHON, "-m", "rps_service", "init-db", "-c", str(daemon.ini)]
    result = await asyncio.to_thread(subprocess.run, cmd, cwd=daemon.folder,
                                     env=child_env(), capture_output=True, text=True,
                                     timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"init-db failed: {result.stderr or result.stdout}")


@contextlib.asynccontextmanager
async def running(*procs: Proc) -> Any:
    """Stop ``procs`` (last first) however the block ends."""
    try:
        yield
    finally:
        for proc in reversed(procs):
            proc.stop()


def http_session(limit: int = 100) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit),
                                 timeout=aiohttp.ClientTimeout(total=60))


#: The daemon's settings when it is measured with its sandbox paused (intake, memory).
PAUSED_GENERAL: dict[str, Any] = {"queuenum": 4, "queuecap": 100, "drain_timeout": 0.5}


@contextlib.asynccontextmanager
async def daemon_with_sandbox(
    folder: Path, db: Database, opts: Options, general: dict[str, Any], *,
    latency_ms: float = 0.0, paused: bool = False, snom: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Daemon, Sandbox, aiohttp.ClientSession]]:
    """A ready daemon pointed at its own sandbox, both stopped when the block ends.

    ``paused``: the sandbox holds every request, so the queues fill and then nothing
    completes (intake and memory are measured without workers competing for the CPU).
    """
    sandbox = Sandbox(folder, latency_ms=latency_ms)
    daemon = Daemon(folder, db.dsn, opts, snom={**sandbox.snom(), **(snom or {})},
                    general=general)
    async with http_session() as session:
        sandbox.start()
        async with running(sandbox):
            await sandbox.ready(session)
            if paused:
                await sandbox.faults(session, paused=True)
            daemon.start()
            async with running(daemon):
                await daemon.ready(session)
                yield daemon, sandbox, session


# -- databases ---------------------------------------------------------------------------


@dataclass
class Database:
    """A benchmark's own database: its DSN for rps.ini and a way to query it."""

    kind: str  # sqlite | mysql
    dsn: str
    name: str
    path: Path | None = None

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one query (``?`` placeholders) on a fresh connection; all rows."""
        if self.path is not None:  # SQLite
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                return [tuple(r) for r in conn.execute(sql, list(params)).fetchall()]
            finally:
                conn.close()
        import pymysql

        mconn = pymysql.connect(database=self.name, autocommit=True, **MYSQL)
        try:
            with mconn.cursor() as cur:
                cur.execute(sql.replace("?", "%s"), list(params))
                return list(cur.fetchall())
        finally:
            mconn.close()

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None


def mysql_problem() -> str | None:
    """Why MariaDB cannot be used, or None when it answers."""
    try:
        import pymysql

        conn = pymysql.connect(connect_timeout=3, **MYSQL)
        conn.close()
    except Exception as exc:
        return f"MariaDB at {MYSQL['host']}:{MYSQL['port']} unreachable: {exc}"
    return None


def _mysql_admin(sql: str) -> list[tuple[Any, ...]]:
    import pymysql

    conn = pymysql.connect(autocommit=True, **MYSQL)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


@contextlib.contextmanager
def database(kind: str, folder: Path, opts: Options) -> Iterator[Database]:
    """SQLite: a file in ``folder``. MySQL: a fresh ``rps_bench_<random>``, dropped after,
    created once InnoDB has settled (not with ``--quick``: a smoke run only)."""
    if kind == "sqlite":
        path = folder / "rps.db"
        yield Database("sqlite", f"sqlite:///{path}", path.name, path)
        return
    name = f"rps_bench_{uuid.uuid4().hex[:12]}"
    if not opts.quick:
        settle_mysql()
    _mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    auth = f"{MYSQL['user']}:{MYSQL['password']}" if MYSQL["password"] else MYSQL["user"]
    try:
        yield Database("mysql", f"mysql://{auth}@{MYSQL['host']}:{MYSQL['port']}/{name}", name)
    finally:
        _mysql_admin(f"DROP DATABASE IF EXISTS `{name}`")


def settle_mysql(within: float = 30.0) -> float:
    """Flush InnoDB's dirty pages before a benchmark; seconds it took.

    With this server's defaults (128 MB buffer pool, 96 MB redo log, no idle flushing) the
    pages an earlier benchmark dirtied stay dirty until the redo log nears full, and then
    InnoDB flushes them in a hurry, stalling commits for 100+ ms in whatever runs next. So
    each MySQL benchmark starts from a clean pool: ``innodb_max_dirty_pages_pct`` is set
    to 0 until no dirty page is left (about 2 s), then put back.
    """
    import pymysql

    began = time.monotonic()
    try:
        conn = pymysql.connect(autocommit=True, **MYSQL)
    except pymysql.err.MySQLError:
        return 0.0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
            before = cur.fetchone()[0]
            try:
                cur.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")
            except pymysql.err.MySQLError:
                return 0.0  # no privilege: run unsettled
            try:
                while time.monotonic() - began < within:
                    cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
                    if int(cur.fetchone()[1]) == 0:
                        break
                    time.sleep(0.2)
            finally:
                cur.execute(f"SET GLOBAL innodb_max_dirty_pages_pct = {float(before)}")
    finally:
        conn.close()
    return time.monotonic() - began


def utc_epoch(value: Any) -> float:
    """A journal time (naive UTC, datetime or text) as Unix seconds."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC).timestamp()


async def for_each_db(bench: str, opts: Options,
                      measure: Callable[[str], Awaitable[list[Row]]]) -> list[Row]:
    """Run ``measure(kind)`` per database; an unreachable MariaDB or a crash becomes a row."""
    rows: list[Row] = []
    for kind in opts.dbs:
        if kind == "mysql" and (problem := mysql_problem()):
            rows.append(Row(bench, kind, problem[:110], None, status="SKIP"))
            continue
        try:
            rows += await measure(kind)
        except Exception as exc:
            rows.append(error_row(bench, kind, exc))
    return rows


# -- events ------------------------------------------------------------------------------


def mac(prefix: int, number: int) -> str:
    """A distinct MAC per (prefix, number): 12 hex digits, Snom's OUI not needed."""
    return f"{prefix:04x}{number:08x}"


def add_event(address: str) -> dict[str, Any]:
    return {"action": "add", "provider": "snom", "mac": address, "server": 1}


async def post_events(session: aiohttp.ClientSession, url: str,
                      events: list[dict[str, Any]]) -> list[int]:
    """POST a batch; the ids of the 202's events (anything else raises)."""
    async with session.post(f"{url}/events", json=events) as r:
        body = await r.text()
        if r.status != 202:
            raise RuntimeError(f"POST /events answered {r.status}: {body[:200]}")
    return [int(e["id"]) for e in json.loads(body)["events"]]


async def wait_until(check: Callable[[], bool], within: float, every: float = 0.1,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {within:g}s")
        await asyncio.sleep(every)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- load generator ----------------------------------------------------------------------


@dataclass
class Load:
    """What one fixed-duration load run achieved."""

    requests: int  # completed responses
    accepted: int  # of them 2xx
    duration: float  # seconds
    batch: int
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors and timeouts
    tool: str
    client_cpu: float = 0.0  # % of one core used by the load generator (wrk only)

    @property
    def events_per_s(self) -> float:
        return self.accepted * self.batch / self.duration if self.duration else 0.0


_PREFIX = iter(range(1, 0xFFFF))  # a MAC prefix per load run: MACs never repeat in a run


def wrk_version() -> str | None:
    exe = shutil.which("wrk")
    if exe is None:
        return None
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    first = (out.stdout or out.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


async def load(url: str, *, batch: int, connections: int, seconds: int,
               opts: Options) -> Load:
    """POST add events to ``url`` for ``seconds`` from ``connections`` clients.

    wrk (C, one thread) when installed; an aiohttp client otherwise, which on two cores
    is itself the bottleneck (noted under the table).
    """
    prefix = next(_PREFIX)
    exe = shutil.which("wrk")
    if exe is None:
        opts.note("load generator: wrk NOT FOUND, using the aiohttp fallback client; intake "
                  "figures are limited by the client (apt-get install wrk)")
        return await _python_load(url, batch, connections, seconds, prefix)
    cmd = [exe, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
           "-s", str(LUA_SCRIPT), f"{url}/events", "--", f"{prefix:04x}", str(batch)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    cpu_pct = 100 * cpu / max(time.monotonic() - began, 1e-9)
    text = out.decode(errors="replace")
    found = re.search(r"^BENCH_JSON (\{.*\})$", text, re.M)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-500:]}")
    data = json.loads(found.group(1))
    return Load(requests=data["requests"], accepted=data["requests"] - data["status_errors"],
                duration=data["duration_us"] / 1e6, batch=batch,
                p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
                errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
                tool="wrk", client_cpu=cpu_pct)


async def _python_load(url: str, batch: int, connections: int, seconds: int,
                       prefix: int) -> Load:
    counter = iter(range(1, 2**32))
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    errors = 0

    async def client(session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            body = [add_event(mac(prefix, next(counter))) for _ in range(batch)]
            data = json.dumps(body[0] if batch == 1 else body)
            began = time.monotonic()
            try:
                async with session.post(f"{url}/events", data=data,
                                        headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    statuses[r.status] += 1
            except (TimeoutError, aiohttp.ClientError):
                errors += 1
                continue
            latencies.append(time.monotonic() - began)

    async with http_session(connections) as session:
        began = time.monotonic()
        deadline = began + seconds
        await asyncio.gather(*(client(session, deadline) for _ in range(connections)))
        duration = time.monotonic() - began
    ok = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return Load(requests=sum(statuses.values()), accepted=ok, duration=duration, batch=batch,
                p50_ms=percentile(latencies, 50) * 1000 if latencies else 0.0,
                p99_ms=percentile(latencies, 99) * 1000 if latencies else 0.0,
                errors=errors, tool="aiohttp")


# -- CPU accounting ------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def database_server_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in ("mariadbd", "mysqld"):
                    return int(entry.name)
    return None


class CpuMeter:
    """CPU used by some processes between ``start()`` and ``stop()``, as % of one core."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self._before: dict[str, float] = {}
        self._began = 0.0
        self.usage: dict[str, float] = {}

    def start(self) -> None:
        self._began = time.monotonic()
        self._before = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._began
        self.usage = {
            name: 100 * (_cpu_seconds(pid) - self._before[name]) / elapsed
            for name, pid in self.pids.items()
        }
        return self.usage

    def text(self) -> str:
        return ", ".join(f"{name} {pct:.0f}%" for name, pct in self.usage.items())


# -- profiling ---------------------------------------------------------------------------


class Profiler:
    """``py-spy record`` on a pid while a block runs (only with ``--profile DIR``).

    Writes ``DIR/<name>.txt`` (raw collapsed stacks: feed them to flamegraph.pl or
    speedscope) and ``DIR/<name>.summary.txt`` (time by category and by function).
    """

    def __init__(self, opts: Options, name: str, pid: int) -> None:
        self.opts, self.name, self.pid = opts, name, pid
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Profiler:
        if self.opts.profile is None:
            return self
        exe = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(PYTHON).parent))
        if exe is None:
            self.opts.note("--profile: py-spy not found (pip install py-spy)")
            return self
        self.opts.profile.mkdir(parents=True, exist_ok=True)
        raw = self.opts.profile / f"{self.name}.txt"
        self.proc = await asyncio.create_subprocess_exec(
            exe, "record", "--pid", str(self.pid), "--format", "raw", "--rate", "250",
            "--nonblocking", "--output", str(raw),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(0.5)  # attach before the load starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is None or self.opts.profile is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        await self.proc.wait()
        raw = self.opts.profile / f"{self.name}.txt"
        if raw.exists():
            summary = self.opts.profile / f"{self.name}.summary.txt"
            summary.write_text(summarize_stacks(raw.read_text()), encoding="utf-8")
            self.opts.note(f"profile: {summary}")


# Innermost frame first: a sample is charged to the category of the innermost frame that
# matches one (a json.loads called from aiohttp is JSON, not aiohttp).
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (structlog, rps logs.py)", ("structlog/", "rps_service/logs.py", "logging/")),
    ("JSON encode/decode", ("json/", "orjson")),
    ("validation (pydantic, models.py)", ("pydantic", "rps_service/models.py")),
    ("MySQL driver (aiomysql, pymysql)", ("aiomysql/", "pymysql/")),
    ("SQLite driver (aiosqlite, sqlite3)", ("aiosqlite/", "sqlite3/")),
    ("Hawk signing (hawk.py, hmac, hashlib)", ("providers/hawk.py", "mohawk", "hmac.py",
                                               "hashlib.py")),
    ("HTTP client (httpx, httpcore, h11)", ("httpx/", "httpcore/", "h11/", "anyio/")),
    ("metrics (prometheus_client)", ("prometheus_client/", "rps_service/metrics.py")),
    ("HTTP server (aiohttp, multidict, yarl)", ("aiohttp/", "multidict/", "yarl/")),
    ("store: SQL building, row mapping", ("rps_service/store/",)),
    ("other rps_service code", ("rps_service/",)),
    ("event loop (asyncio, selectors, uvloop)", ("asyncio/", "selectors.py", "uvloop")),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        found = _FRAME.match(frame.strip())
        out.append((found.group("func"), found.group("file")) if found else (frame, ""))
    return out


def summarize_stacks(raw: str, top: int = 25) -> str:
    """Time by category (innermost matching frame) and by rps_service function (inclusive)."""
    by_category: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = _frames(stack)
        leaf_func, leaf_file = frames[-1]
        self_time[f"{leaf_func} ({leaf_file})"] += count
        category = "other (stdlib, C code)"
        for _func, file in reversed(frames):
            hit = next((name for name, keys in CATEGORIES if any(k in file for k in keys)),
                       None)
            if hit:
                category = hit
                break
        by_category[category] += count
        for func, file in {(f, fl) for f, fl in frames if "rps_service/" in fl}:
            inclusive[f"{func} ({file})"] += count
    if not total:
        return "no samples\n"

    def block(title: str, counts: Counter[str]) -> list[str]:
        lines = [title]
        lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in counts.most_common(top)]
        return [*lines, ""]

    return "\n".join([
        f"{total} samples (busy time only; idle waits in epoll are not sampled)", "",
        *block("Time by category (innermost matching frame):", by_category),
        *block("rps_service functions, inclusive:", inclusive),
        *block("Leaf functions, self time:", self_time),
    ])


# -- the machine -------------------------------------------------------------------------


def _fsync_ms(folder: Path, rounds: int = 30) -> float:
    path = folder / "fsync.probe"
    times = []
    with path.open("wb") as fh:
        for _ in range(rounds):
            fh.write(b"x" * 4096)
            fh.flush()
            began = time.perf_counter()
            os.fsync(fh.fileno())
            times.append(time.perf_counter() - began)
    path.unlink()
    return statistics.median(times) * 1000


def machine() -> list[str]:
    """Lines describing the machine, for the head of the output and docs/performance.md."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    tmp = Path(tempfile.gettempdir())
    fsync = _fsync_ms(tmp)
    lines = [
        f"machine: {os.cpu_count()} CPUs ({cpu}), RAM {mem}, Python "
        f"{platform.python_version()}, aiohttp {aiohttp.__version__}",
        f"disk: {tmp} fsync of 4 KiB median {fsync:.2f} ms",
    ]
    if mysql_problem() is None:
        version = _mysql_admin("SELECT VERSION()")[0][0]
        flush = _mysql_admin("SELECT @@innodb_flush_log_at_trx_commit, @@sync_binlog,"
                             " @@log_bin")[0]
        lines.append(f"database: MariaDB {version}, innodb_flush_log_at_trx_commit={flush[0]}"
                     f", sync_binlog={flush[1]}, log_bin={flush[2]}; SQLite "
                     f"{sqlite3.sqlite_version} (WAL, synchronous=FULL)")
    lines.append(f"load generator: {wrk_version() or 'aiohttp fallback (wrk not installed)'}")
    lines.append(f"product: {_revision()}")
    return lines


def _revision() -> str:
    """The commit measured, and whether the work tree differed from it."""
    def git(*args: str) -> str:
        try:
            result = subprocess.run(["git", *args], cwd=ROOT,  # noqa: S603, S607
                                    capture_output=True, text=True, check=False)
        except OSError:
            return ""
        return result.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown commit"
    changed = git("status", "--porcelain", "--", "rps_service")
    return f"{head}{' + uncommitted changes in rps_service/' if changed else ''}"


def busy_elsewhere(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over ``seconds`` before the run (others' load skews figures)."""

    def sample() -> tuple[int, int]:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = values[3] + values[4]
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return (busy1 - busy0) / max(total1 - total0, 1)
