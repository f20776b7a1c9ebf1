"""Nothing lost under crashes, outages and vendor faults: the daemon as a subprocess against
the real MariaDB and the SRAPS sandbox. Each test asserts the final database rows and the
sandbox's state, and prints its figures (see docs/reliability.md)."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pymysql
import pytest

from rps_service.config import parse_database_url
from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import (
    DEMO_COMPANY_ID,
    DEMO_KEY_ID,
    DEMO_SECRET,
    SETTING_SERVER_UUID,
    SandboxState,
)
from tests.acceptance.test_daemon import Daemon
from tests.conftest import MYSQL_HOST, MYSQL_PORT, free_port, remember_secrets
from tests.proxy import TcpProxy

URL = "https://pbx.test/ztprov/{server}/"
Op = tuple[str, str | None]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxState())
    yield running
    remember_secrets(running.state)
    await running.close()


@pytest.fixture
def daemons() -> Iterable[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for daemon in made:
        daemon.kill()


def snom(sandbox: RunningSandbox, timeout: float = 5) -> dict[str, Any]:
    return {"api_url": sandbox.url, "access_key_id": DEMO_KEY_ID,
            "access_key_secret": DEMO_SECRET, "provisioning_url": URL, "timeout": timeout,
            "rate_limit": 1000}


def general(dsn: str, **extra: Any) -> dict[str, Any]:
    values = {"database": dsn, "queuenum": 4, "lease_timeout": 2, "poll_interval": 0.2,
              "retry_base": 0.05, "retry_cap": 0.5, "max_attempts": 8, "drain_timeout": 5}
    values.update(extra)
    return values


def query(dsn: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    url = parse_database_url(dsn)
    conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                           database=url.name)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


async def wait_settled(dsn: str, timeout: float = 90) -> None:
    """Until no event is pending or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(
            query, dsn, "SELECT COUNT(*) FROM rps_events WHERE state IN ('pending', 'running')")
        if rows[0][0] == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("events still pending or running")


async def wait_done_count(dsn: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(
            query, dsn, "SELECT COUNT(*) FROM rps_events WHERE state IN ('done', 'superseded')")
        if rows[0][0] >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} events finished")


def make_events(rng: random.Random, macs: list[str], count: int) -> list[dict[str, Any]]:
    return [{"action": rng.choice(["add", "add", "update", "remove"]), "provider": "snom",
             "mac": rng.choice(macs), "server": rng.randint(1, 4)} for _ in range(count)]


async def post_all(client: httpx.AsyncClient, url: str, events: list[dict[str, Any]],
                   accepted: list[tuple[int, dict[str, Any]]], batch: int = 50) -> None:
    for i in range(0, len(events), batch):
        chunk = events[i : i + batch]
        r = await client.post(f"{url}/events", json=chunk)
        assert r.status_code == 202, r.text
        accepted += [(e["id"], ev) for e, ev in zip(r.json()["events"], chunk, strict=True)]


def collapse(ops: Sequence[Op]) -> list[Op]:
    out: list[Op] = []
    for op in ops:
        if not out or out[-1] != op:
            out.append(op)
    return out


def is_subsequence(sub: Sequence[Op], seq: Sequence[Op]) -> bool:
    it = iter(seq)
    return all(any(op == other for other in it) for op in sub)


def expected_ops(events: list[dict[str, Any]]) -> tuple[list[Op], int | None, bool]:
    """What the vendor should see for one device's events (docs/api.md): ``update`` and
    ``remove`` act on the device's current server; an ``update`` of a device that is not
    registered is refused and sends nothing. The writes, the final server, registered?"""
    ops: list[Op] = []
    server: int | None = None
    known = registered = False
    for event in events:
        if event["action"] == "add":
            server, known, registered = event["server"], True, True
            ops.append(("PUT", URL.format(server=server)))
        elif event["action"] == "update":
            if known and registered:
                ops.append(("PUT", URL.format(server=server)))
        else:
            server = server or event["server"]
            known, registered = True, False
            ops.append(("DELETE", None))
    return ops, server, registered


def check_outcome(dsn: str, sandbox: RunningSandbox,
                  accepted: list[tuple[int, dict[str, Any]]]) -> dict[str, int]:
    """Every accepted event settled, devices match the last event, order held; figures."""
    rows = {int(r[0]): (r[1], r[2]) for r in query(
        dsn, "SELECT id, state, last_error FROM rps_events")}
    lost = [i for i, _ in accepted if i not in rows]
    assert lost == []
    states = {rows[i][0] for i, _ in accepted}
    assert states <= {"done", "failed", "superseded"}, states
    failed = [(i, rows[i][1]) for i, _ in accepted if rows[i][0] == "failed"]
    assert all(reason for _, reason in failed)
    # Updates of a device that is not registered are refused by contract (docs/api.md).
    refused = [i for i, reason in failed if reason == "Device is not registered"]
    failed = [(i, reason) for i, reason in failed if i not in refused]
    per_mac: dict[str, list[dict[str, Any]]] = {}
    for _, event in accepted:
        per_mac.setdefault(event["mac"], []).append(event)
    devices = {r[0]: (r[1], r[2]) for r in query(
        dsn, "SELECT mac, status, server FROM rps_devices WHERE provider = 'snom'")}
    endpoints = sandbox.state.endpoints(DEMO_COMPANY_ID)
    writes = 0
    for mac, events in per_mac.items():
        ops, server, registered = expected_ops(events)
        endpoint = endpoints.get(mac.lower())
        if not ops:
            assert endpoint is None and mac not in devices, mac
        elif not registered:
            assert endpoint is None, mac
            assert devices[mac][0] == "unregistered", mac
        else:
            assert endpoint is not None, mac
            value = endpoint["settings_manager"][SETTING_SERVER_UUID]["value"]
            assert value == URL.format(server=server), mac
            assert devices[mac] == ("registered", server), mac
        history = sandbox.state.history[mac.lower()]
        assert is_subsequence(collapse(history), collapse(ops)), mac
        writes += len(history)
    done = sum(1 for i, _ in accepted if rows[i][0] == "done")
    return {"accepted": len(accepted), "lost": len(lost), "failed": len(failed),
            "refused_updates": len(refused),
            "superseded": sum(1 for i, _ in accepted if rows[i][0] == "superseded"),
            # Writes the vendor saw beyond one per done event: re-sends after a crash.
            "duplicates": writes - done}


@pytest.mark.timeout(240)
async def test_kill9_twice_mid_flight_loses_nothing(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    sandbox.state.latency = 0.03  # a slow vendor, so kills land mid-request
    rng = random.Random(42)
    macs = [f"0004135{i:05X}" for i in range(300)]
    daemon = Daemon(tmp_path, general(mysql_database), snom(sandbox))
    daemons.append(daemon)
    accepted: list[tuple[int, dict[str, Any]]] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for part, (count, kill_after) in enumerate([(400, 150), (300, 450), (300, None)]):
            daemon.start()
            await daemon.ready(client)
            await post_all(client, daemon.url, make_events(rng, macs, count), accepted)
            if kill_after is not None:
                await wait_done_count(mysql_database, kill_after)
                assert daemon.proc is not None
                daemon.proc.send_signal(signal.SIGKILL)
                daemon.proc.wait()
                assert daemon.proc.returncode == -signal.SIGKILL, part
        await wait_settled(mysql_database)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit() == 0
    figures = check_outcome(mysql_database, sandbox, accepted)
    print("kill -9 x2:", figures)
    assert figures["accepted"] == 1000 and figures["failed"] == 0


@pytest.mark.timeout(180)
async def test_database_outage(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    proxy = TcpProxy(MYSQL_HOST, MYSQL_PORT, free_port())
    await proxy.start()
    through_proxy = mysql_database.replace(f"{MYSQL_HOST}:{MYSQL_PORT}",
                                           f"127.0.0.1:{proxy.port}")
    daemon = Daemon(tmp_path, general(through_proxy), snom(sandbox))
    daemons.append(daemon)
    rng = random.Random(7)
    macs = [f"0004136{i:05X}" for i in range(50)]
    accepted: list[tuple[int, dict[str, Any]]] = []
    try:
        daemon.start()
        async with httpx.AsyncClient(timeout=30) as client:
            await daemon.ready(client)
            await post_all(client, daemon.url, make_events(rng, macs, 200), accepted, batch=10)
            await proxy.cut()
            refused = 0
            for event in make_events(rng, macs, 20):
                r = await client.post(f"{daemon.url}/events", json=event)
                assert r.status_code == 503, r.text  # never 202 for what was not stored
                assert "database unavailable" in r.json()["error"]
                refused += 1
            health = await client.get(f"{daemon.url}/health")
            assert health.status_code == 503
            assert health.json()["database"].startswith("unavailable:")
            await asyncio.sleep(2)  # workers and distributor back off meanwhile
            assert daemon.proc is not None and daemon.proc.poll() is None
            await proxy.restore()
            for _ in range(100):  # the pool reconnects
                if (await client.get(f"{daemon.url}/health")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            await post_all(client, daemon.url, make_events(rng, macs, 100), accepted, batch=10)
            await wait_settled(mysql_database)
            daemon.proc.send_signal(signal.SIGTERM)
            assert await daemon.wait_exit() == 0
    finally:
        await proxy.close()
    figures = check_outcome(mysql_database, sandbox, accepted)
    print("database outage:", figures, "refused while down:", refused)
    assert figures["failed"] == 0
    log = daemon.log.read_text()
    assert "ERROR (DATABASE): Database unavailable." in log


@pytest.mark.timeout(180)
async def test_vendor_faults_all_complete(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    sandbox.state.error_rate = 0.3
    sandbox.state.rate_limit_rate = 0.1
    sandbox.state.retry_after = 0
    # An add is two or three requests, each answered 503 or 429 four times in ten: an
    # attempt gets through about one time in three. With 15 attempts, one event of the
    # ~150 that reach the vendor ran out of them in about one run in six (0.64^15 each);
    # with 40 none does (0.64^40 ~ 2e-8), and the backoff (at most retry_cap) keeps it short.
    daemon = Daemon(tmp_path, general(mysql_database, max_attempts=40, retry_cap=0.2),
                    snom(sandbox, timeout=0.5))
    daemons.append(daemon)
    rng = random.Random(3)
    macs = [f"0004137{i:05X}" for i in range(100)]
    accepted: list[tuple[int, dict[str, Any]]] = []
    daemon.start()
    async with httpx.AsyncClient(timeout=30) as client:
        await daemon.ready(client)
        await post_all(client, daemon.url, make_events(rng, macs, 300), accepted)
        await wait_settled(mysql_database)
        faults = figures = check_outcome(mysql_database, sandbox, accepted)
        assert figures["failed"] == 0
        retried = query(mysql_database, "SELECT COUNT(*) FROM rps_events WHERE attempts > 1")
        assert retried[0][0] > 0

        # Retry-After is honoured even when the backoff would be far shorter (at most 0.05 s
        # here), up to retry_cap (0.2 s here): the account pauses that long.
        sandbox.state.error_rate = sandbox.state.rate_limit_rate = 0
        sandbox.state.retry_after = 1
        sandbox.state.fail_next = [429]
        started = time.monotonic()
        one = {"action": "add", "provider": "snom", "mac": "000413800001", "server": 1}
        await post_all(client, daemon.url, [one], accepted)
        await wait_settled(mysql_database)
        assert 0.2 <= time.monotonic() - started < 1.0

        # A hung vendor: the per-request timeout turns it into a retry, not a stuck queue.
        sandbox.state.hang = True
        two = {"action": "add", "provider": "snom", "mac": "000413800002", "server": 2}
        await post_all(client, daemon.url, [two], accepted)
        event_id = accepted[-1][0]
        for _ in range(100):
            row = (await client.get(f"{daemon.url}/events/{event_id}")).json()
            if row["attempts"] >= 2:
                break
            await asyncio.sleep(0.1)
        assert row["last_error"] == "Timeout after 0.5s"
        sandbox.state.hang = False
        await wait_settled(mysql_database)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit() == 0
    figures = check_outcome(mysql_database, sandbox, accepted)
    print("vendor faults:", faults, "after Retry-After and hang:", figures)
    assert figures["failed"] == 0


@pytest.mark.timeout(240)
async def test_several_instances_share_work(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    sandbox.state.latency = 0.01
    rng = random.Random(11)
    macs = [f"0004138{i:05X}" for i in range(100)]
    for n in range(3):
        folder = tmp_path / f"instance{n}"
        folder.mkdir()
        # Small queues, so no instance can lease everything a POST brings.
        # Instances sharing a database share its secret key too.
        daemons.append(Daemon(folder, general(mysql_database, queuenum=2, queuecap=5,
                                              secret_key_file=tmp_path / "secret.key"),
                              snom(sandbox)))
    accepted: list[tuple[int, dict[str, Any]]] = []
    async with httpx.AsyncClient(timeout=30) as client:
        for daemon in daemons:
            daemon.start()
        for daemon in daemons:
            await daemon.ready(client)
        events = make_events(rng, macs, 600)
        alive = list(daemons)
        for i in range(0, 600, 50):  # spread over the instances
            await post_all(client, alive[(i // 50) % len(alive)].url, events[i : i + 50],
                           accepted)
            if i == 300:  # kill one instance mid-way, events of its own in flight
                victim = alive.pop(0).proc
                assert victim is not None
                victim.send_signal(signal.SIGKILL)
                victim.wait()
        await wait_settled(mysql_database)
        owners = query(mysql_database, "SELECT COUNT(DISTINCT lease_owner) FROM rps_events")
        for daemon in alive:
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
            assert await daemon.wait_exit() == 0
    figures = check_outcome(mysql_database, sandbox, accepted)
    print("three instances, one killed:", figures, "overlaps:", sandbox.state.overlaps)
    assert figures["failed"] == 0
    assert sandbox.state.overlaps == 0  # no device was ever written by two at once
    assert owners[0][0] == 0  # every lease was released
    logs = [d.log.read_text() for d in daemons]  # the killed one's included
    assert sum("Device updated" in text for text in logs) >= 2  # the work was shared
