"""Several instances on one MariaDB act as one toward the vendor: together they never send an
account more than ``rate_limit`` calls a second (counted where the calls arrive, the
sandbox), the survivors take over the whole rate within ``lease_timeout`` when one is
killed or frozen (SIGSTOP), and a throttling answer one instance gets holds them all."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import SandboxState
from tests.acceptance.test_daemon import Daemon
from tests.acceptance.test_reliability import general, snom, wait_settled
from tests.conftest import remember_secrets

RATE = 10  # rate_limit: calls per second of the one SRAPS account
LEASE = 3.0  # lease_timeout: survivors reach the full rate within this


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxState())
    running.state.latency = 0.005
    yield running
    remember_secrets(running.state)
    await running.close()


@pytest.fixture
def daemons() -> Iterable[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for daemon in made:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.proc.send_signal(signal.SIGCONT)  # a frozen one must be able to die
        daemon.kill()


async def start(tmp_path: Path, dsn: str, sandbox: RunningSandbox, made: list[Daemon],
                count: int, client: httpx.AsyncClient, **extra: Any) -> list[Daemon]:
    for n in range(count):
        folder = tmp_path / f"instance{n}"
        folder.mkdir()
        made.append(Daemon(folder, general(dsn, queuenum=4, queuecap=5, lease_timeout=LEASE,
                                           secret_key_file=tmp_path / "secret.key", **extra),
                           {**snom(sandbox), "rate_limit": RATE}))
    for daemon in made:
        daemon.start()
    for daemon in made:
        await daemon.ready(client)
    return made


async def post_adds(client: httpx.AsyncClient, daemons: list[Daemon], count: int,
                    first: int = 0) -> None:
    """``count`` adds of new phones, spread over the instances (two calls each)."""
    for i in range(first, first + count, 20):
        events = [{"action": "add", "provider": "snom", "mac": f"0004139{j:05X}", "server": 1}
                  for j in range(i, min(i + 20, first + count))]
        r = await client.post(f"{daemons[(i // 20) % len(daemons)].url}/events", json=events)
        assert r.status_code == 202, r.text


def arrivals(sandbox: RunningSandbox) -> list[float]:
    return sorted(r.at for r in sandbox.state.records)


def most_in_a_second(times: list[float]) -> int:
    """The most calls that arrived within any one second (a sliding window)."""
    return busiest_second(times)[0]


def busiest_second(times: list[float]) -> tuple[int, float]:
    """The most calls that arrived within one second, and when that second began."""
    most, start, began = 0, 0, 0.0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        if end - start + 1 > most:
            most, began = end - start + 1, times[start]
    return most, began


def count_between(times: list[float], start: float, end: float) -> int:
    return sum(start <= t < end for t in times)


def senders(daemons: list[Daemon]) -> list[int]:
    return [d.log.read_text().count("Sending Request.") for d in daemons]


async def until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(240)
async def test_three_instances_keep_the_rate_and_survivors_take_over_a_killed_one(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        started = await start(tmp_path, mysql_database, sandbox, daemons, 3, client)
        await post_adds(client, started, 300)
        await until(lambda: len(sandbox.state.records) >= 200)
        assert all(n > 0 for n in senders(started)), senders(started)  # all three sent
        victim = started[0]
        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        killed = time.monotonic()
        await asyncio.sleep(LEASE + 1.5)
        await wait_settled(mysql_database)
        for daemon in started[1:]:
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
            assert await daemon.wait_exit() == 0
    times = arrivals(sandbox)
    print("calls:", len(times), "most in a second:", most_in_a_second(times),
          "after the kill:", [count_between(times, killed + s, killed + s + 1)
                              for s in range(4)])
    assert len(times) >= 400
    most, began = busiest_second(times)
    assert most <= RATE + 1, f"{most} calls in the second from {began - killed:.2f}s after the kill"
    # Within lease_timeout of the kill, the two survivors send at the whole rate (less the
    # 5 % each instance keeps for jitter).
    assert count_between(times, killed + LEASE, killed + LEASE + 1) >= RATE - 2


@pytest.mark.timeout(240)
async def test_a_frozen_instance_gives_its_share_to_the_other(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        started = await start(tmp_path, mysql_database, sandbox, daemons, 2, client)
        await post_adds(client, started, 240)
        await until(lambda: len(sandbox.state.records) >= 120)
        frozen = started[0]
        assert frozen.proc is not None
        frozen.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        await asyncio.sleep(LEASE + 2)
        frozen.proc.send_signal(signal.SIGCONT)  # it comes back without its share
        resumed = time.monotonic()
        await wait_settled(mysql_database)
        for daemon in started:
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
            assert await daemon.wait_exit() == 0
    times = arrivals(sandbox)
    print("calls:", len(times), "most in a second:", most_in_a_second(times),
          "while frozen:", [count_between(times, stopped + s, stopped + s + 1)
                            for s in range(4)],
          "after SIGCONT:", [count_between(times, resumed + s, resumed + s + 1)
                             for s in range(3)])
    most, began = busiest_second(times)
    assert most <= RATE + 1, (  # also right after SIGCONT
        f"{most} calls in the second from {began - stopped:.2f}s after SIGSTOP "
        f"(SIGCONT at {resumed - stopped:.2f}s)")
    assert count_between(times, stopped + LEASE, stopped + LEASE + 1) >= RATE - 2


@pytest.mark.timeout(240)
async def test_a_throttling_answer_to_one_instance_holds_the_others(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        # retry_cap: the longest pause, so Retry-After is honoured whole.
        started = await start(tmp_path, mysql_database, sandbox, daemons, 2, client,
                              retry_cap=10)
        await post_adds(client, started, 200)
        await until(lambda: len(sandbox.state.records) >= 60)
        sandbox.state.retry_after = 4
        sandbox.state.fail_next = [429]
        await until(lambda: any(r.status == 429 for r in sandbox.state.records))
        await asyncio.sleep(5)
        await wait_settled(mysql_database)
        for daemon in started:
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGTERM)
            assert await daemon.wait_exit() == 0
    [throttled] = [r.at for r in sandbox.state.records if r.status == 429]
    times = arrivals(sandbox)
    print("429 at", throttled, "calls in the next 5 s:",
          [count_between(times, throttled + s / 2, throttled + (s + 1) / 2)
           for s in range(10)])
    # Both instances hold from 1 s after the 429 until its Retry-After ran out.
    assert count_between(times, throttled + 1.0, throttled + 3.5) == 0
    assert "Account paused by another instance." in "".join(
        d.log.read_text() for d in started)
