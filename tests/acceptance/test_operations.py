"""Operations, with the daemon as a subprocess: sd_notify against a socket standing in for
systemd, SIGHUP after logrotate moved rps.log, and lease recoveries in /metrics."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rps_service.sandbox.runner import RunningSandbox
from tests.acceptance import test_daemon
from tests.acceptance.test_daemon import Daemon, snom_keys
from tests.ops import FakeSystemd, fake_systemd, scrape

# The daemon tests' fixtures, by name.
sandbox = test_daemon.sandbox
daemons = test_daemon.daemons

WATCHDOG_USEC = 400_000  # pings every 0.2 s
BACKLOG = re.compile(r"^STATUS=Backlog: (\d+) pending, (\d+) running\. Queues: [\d ]+$")


class NotifiedDaemon(Daemon):
    """A Daemon started with extra environment (systemd's variables)."""

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RPS_")}
        env.update(extra_env or {})
        with (self.folder / "stderr.txt").open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rps_service", "run", "-c", str(self.ini)],
                cwd=self.folder, env=env, stdout=err, stderr=err,
            )


@pytest.fixture
async def systemd() -> AsyncIterator[FakeSystemd]:
    async with fake_systemd() as fake:
        yield fake


async def test_sd_notify_ready_status_watchdog_stopping(
    tmp_path: Path, sandbox: RunningSandbox, daemons: list[Daemon], systemd: FakeSystemd
) -> None:
    daemon = NotifiedDaemon(tmp_path, {"queuenum": 2}, snom_keys(sandbox))
    daemons.append(daemon)
    daemon.start({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    ready = await systemd.wait_for("READY=1")
    # READY means usable: the port answers at once and the database is up.
    async with httpx.AsyncClient(timeout=10) as client:
        health = await client.get(f"{daemon.url}/health")
        assert health.status_code == 200 and health.json()["database"] == "ok"
        assert "INFO (LISTENER): Listening. Address=127.0.0.1:" in daemon.output()
        assert systemd.lines()[0] == "READY=1"  # nothing before it, no watchdog either
        await systemd.wait_for("STATUS=Backlog: 0 pending, 0 running. Queues: 0 0")

        # WATCHDOG=1 at half of WATCHDOG_USEC, steadily.
        await asyncio.sleep(1.6)
        pings = [when for when, line in systemd.messages if line == "WATCHDOG=1"]
        assert 4 <= len(pings) <= 11, pings
        assert pings[0] - ready < 0.2
        # Arrival times: a busy test process reads two pings late and close together, so
        # the median is checked against half of WATCHDOG_USEC, and no gap may be huge.
        gaps = sorted(b - a for a, b in itertools.pairwise(pings))
        assert 0.15 < gaps[len(gaps) // 2] < 0.3, gaps
        assert gaps[-1] < 1.0, gaps

        # STATUS follows the backlog while the vendor holds the events.
        sandbox.state.paused = True
        macs = [f"0004130100{i:02X}" for i in range(3)]
        r = await client.post(f"{daemon.url}/events",
                              json=[{"action": "add", "provider": "snom", "mac": m}
                                    for m in macs])
        assert r.status_code == 202
        busy = re.compile(r"^STATUS=Backlog: (?!0 pending, 0 running)\d+ pending, \d+ running")
        await systemd.wait_for(busy)
        sandbox.state.paused = False

        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit() == 0
    await systemd.wait_for("STOPPING=1", timeout=5)
    lines = systemd.lines()
    assert lines.index("STOPPING=1") > lines.index("READY=1")
    assert all(BACKLOG.match(line) for line in lines
               if line.startswith("STATUS=Backlog")), lines


async def test_abstract_notify_socket(
    tmp_path: Path, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    async with fake_systemd(abstract=True) as fake:
        assert fake.address.startswith("@")
        daemon = NotifiedDaemon(tmp_path, {}, snom_keys(sandbox))
        daemons.append(daemon)
        daemon.start({"NOTIFY_SOCKET": fake.address})
        await fake.wait_for("READY=1")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit() == 0
        await fake.wait_for("STOPPING=1", timeout=5)
        assert "WATCHDOG=1" not in fake.lines()  # no WATCHDOG_USEC: no pings


async def test_no_ready_when_the_database_does_not_answer(
    tmp_path: Path, daemons: list[Daemon], systemd: FakeSystemd
) -> None:
    daemon = NotifiedDaemon(tmp_path, {"database": "mysql://root@127.0.0.1:9/rps"}, {})
    daemons.append(daemon)
    daemon.start({"NOTIFY_SOCKET": systemd.address})
    assert await daemon.wait_exit() == 1
    await asyncio.sleep(0.1)
    assert "READY=1" not in systemd.lines()


async def test_sighup_reopens_the_moved_log(
    tmp_path: Path, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, {}, snom_keys(sandbox))
    daemons.append(daemon)
    daemon.start()
    rotated = tmp_path / "rps.log.1"
    async with httpx.AsyncClient(timeout=10) as client:
        await daemon.ready(client)
        daemon.log.rename(rotated)  # what logrotate does (no copytruncate)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        for _ in range(200):
            if daemon.log.exists():
                break
            await asyncio.sleep(0.02)
        r = await client.post(f"{daemon.url}/events",
                              json={"action": "add", "provider": "snom", "mac": "000413AAAA01"})
        event_id = r.json()["events"][0]["id"]
        for _ in range(200):
            if (await client.get(f"{daemon.url}/events/{event_id}")).json()["state"] == "done":
                break
            await asyncio.sleep(0.05)
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit() == 0
    old, new = rotated.read_text(), daemon.log.read_text()
    assert "INFO (LISTENER): Listening." in old
    assert "Mac=000413AAAA01" not in old
    assert new.startswith("[")  # the first line is whole
    assert "INFO (MAIN): Log file reopened. Path=" in new
    assert f"INFO (LISTENER): Event accepted. Action=add Id={event_id} Mac=000413AAAA01" in new
    assert "Status=registered" in new and "INFO (MAIN): Stopped." in new


async def test_lease_recovery_after_kill_9_shows_in_metrics(
    tmp_path: Path, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    general = {"lease_timeout": 1, "api_token": "tok-ops"}
    headers = {"Authorization": "Bearer tok-ops"}
    first = Daemon(tmp_path, general, snom_keys(sandbox))
    daemons.append(first)
    first.start()
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        await first.ready(client)
        sandbox.state.paused = True
        r = await client.post(f"{first.url}/events",
                              json={"action": "add", "provider": "snom", "mac": "000413BBBB01"})
        event_id = r.json()["events"][0]["id"]
        await asyncio.wait_for(sandbox.state.wait_held(1), 10)
        first.kill()  # kill -9 with the event leased
        sandbox.state.paused = False
        second = Daemon(tmp_path, general, snom_keys(sandbox))  # same database, new port
        daemons.append(second)
        second.start()
        await second.ready(client)
        for _ in range(300):
            row = (await client.get(f"{second.url}/events/{event_id}")).json()
            if row["state"] == "done":
                break
            await asyncio.sleep(0.05)
        assert row["state"] == "done"
        assert (await client.get(f"{second.url}/metrics", headers={"Authorization": ""})
                ).status_code == 401
        page = await client.get(f"{second.url}/metrics")
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/plain")
    samples = scrape(page.text)
    assert samples["rps_lease_recoveries_total"] == 1
    assert samples['rps_events_processed_total{action="add",provider="snom",result="done"}'] == 1
    # Received by the first instance, not this one: counters are per process.
    assert 'rps_events_received_total{action="add",provider="snom"}' not in samples
