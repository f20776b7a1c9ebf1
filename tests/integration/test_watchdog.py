"""The watchdog goes quiet while a worker is wedged, so systemd restarts the daemon."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import structlog

from rps_service import logs
from rps_service.config import load_settings
from rps_service.notify import Notifier
from rps_service.service import Service
from tests.conftest import free_port, write_ini
from tests.fakes import ScriptedProvider
from tests.ops import FakeSystemd, fake_systemd


@pytest.fixture
async def systemd() -> AsyncIterator[FakeSystemd]:
    async with fake_systemd() as fake:
        yield fake


@pytest.fixture
async def log_path(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "rps.log"
    sink = logs.configure(str(path))
    yield path
    sink.close()
    structlog.reset_defaults()


async def test_wedged_worker_stops_the_watchdog_until_it_moves_again(
    tmp_path: Path, systemd: FakeSystemd, log_path: Path
) -> None:
    # wedge_after = lease_timeout + 5 * provider timeout = 0.3 + 0.5 s
    values = {"port": free_port(), "database": f"sqlite:///{tmp_path}/rps.db", "queuenum": 2,
              "lease_timeout": 0.3, "poll_interval": 0.1, "log_file": str(log_path)}
    settings = load_settings(write_ini(tmp_path / "rps.ini", values, {"timeout": 0.1}), env={})
    provider = ScriptedProvider()
    provider.gate = asyncio.Event()
    service = Service(settings, providers={"fake": provider},
                      notifier=Notifier(systemd.address, watchdog=0.1))
    await service.start()
    try:
        await systemd.wait_for("READY=1")
        async with httpx.AsyncClient(base_url=f"http://{service.address}") as client:
            r = await client.post("/events", json={"action": "add", "provider": "fake",
                                                   "mac": "000413DDDD01"})
            assert r.status_code == 202
            await systemd.wait_for("STATUS=Wedged: a worker is stuck; waiting for the watchdog",
                                   timeout=5)
            quiet_since = time.monotonic()
            await asyncio.sleep(0.5)
            late = [w for w, line in systemd.messages if line == "WATCHDOG=1" and w > quiet_since]
            assert late == []
            text = log_path.read_text()
            assert "ERROR (QUEUE): Worker wedged, watchdog stopped." in text
            assert "Mac=000413DDDD01 Queue=" in text
            # The worker moves again: the pings come back.
            provider.gate.set()
            resumed = asyncio.get_running_loop().time()
            while not [w for w, line in systemd.messages
                       if line == "WATCHDOG=1" and w > quiet_since + 0.5]:
                assert asyncio.get_running_loop().time() - resumed < 5, systemd.lines()
                await asyncio.sleep(0.05)
        assert "INFO (QUEUE): Workers alive again, watchdog resumed." in log_path.read_text()
    finally:
        await service.stop()
    await systemd.wait_for("STOPPING=1", timeout=2)

