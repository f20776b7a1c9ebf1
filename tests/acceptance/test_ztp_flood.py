"""Issue 20, finding 2, as an attacker on the Internet would do it: hundreds of idle and
trickling connections on the phones' listener of a daemon started with a 256-file limit
(``ulimit -n 256``), while the PBX keeps using the event API and a phone comes to fetch
its file.

Before the fix, 200 such connections under a 200-file limit made ``/health`` and
``POST /events`` fail (the daemon ran out of descriptors), and trickling connections stayed
open as long as they trickled. Now the listener admits at most ``max_connections`` (and
``max_connections_per_ip`` from one address), closes the rest at once, and drops whoever
has not sent its headers within ``header_timeout``.

The event API's latency under the flood is measured and printed (run with ``-s`` to see
it); SPEC §13 asks for a p99 of 100 ms at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import (
    DEMO_COMPANY_ID,
    HTTP_CLIENT_PASS_UUID,
    HTTP_CLIENT_USER_UUID,
    SandboxState,
)
from tests.acceptance.test_daemon import Daemon, snom_keys
from tests.conftest import JSON_TYPE, free_port, remember_secrets

FILE_LIMIT = 256
MAC = "000413ABCDEF"
HEADER_TIMEOUT = 2
ZTP = {"enabled": "true", "listen": "127.0.0.1", "header_timeout": HEADER_TIMEOUT,
       "max_connections": 150, "max_connections_per_ip": 100}
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LimitedDaemon(Daemon):
    """``rps-service run`` under ``ulimit -n 256``, with the phones' listener on."""

    def __init__(self, folder: Path, snom: dict[str, Any]) -> None:
        super().__init__(folder, {"queuenum": 2}, snom)
        self.ztp_port = free_port()
        values = {**ZTP, "port": self.ztp_port}
        with self.ini.open("a") as ini:
            ini.write("\n[ztp]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RPS_")}
        with (self.folder / "stderr.txt").open("ab") as err:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", f'ulimit -n {FILE_LIMIT} && exec "$0" -m rps_service run '
                                  '-c "$1"', sys.executable, str(self.ini)],
                cwd=self.folder, env=env, stdout=err, stderr=err)


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxState(50))
    yield running
    remember_secrets(running.state)
    await running.close()


@pytest.fixture
async def daemon(tmp_path: Path, sandbox: RunningSandbox) -> AsyncIterator[LimitedDaemon]:
    made = LimitedDaemon(tmp_path, snom_keys(sandbox))
    made.start()
    yield made
    made.kill()


async def open_flood(port: int, source: str, count: int) -> list[Conn]:
    conns = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            conns.append(await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0)))
    return conns


async def trickle(conns: list[Conn], stop: asyncio.Event) -> None:
    """A header byte on each connection every half second, never the blank line."""
    line = b"GET /ztprov/8/x.htm HTTP/1.1\r\nX-Slow: " + b"a" * 1000
    for i in range(len(line)):
        for _, writer in conns:
            if not writer.is_closing():
                writer.write(line[i:i + 1])
        await asyncio.sleep(0.5)
        if stop.is_set():
            return


async def closed(conns: list[Conn], within: float) -> int:
    """How many of ``conns`` the server closed within ``within`` seconds."""
    async def one(reader: asyncio.StreamReader) -> bool:
        try:
            return await asyncio.wait_for(reader.read(1), within) == b""
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return sum(await asyncio.gather(*(one(r) for r, _ in conns)))


async def api_latencies(url: str, count: int) -> list[float]:
    """The PBX at work: a status look and an event, alternately, each on a new connection
    (as the GUI's PHP makes them); every answer right."""
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(
            max_keepalive_connections=0)) as client:
        return [await _timed(client, url, i) for i in range(count)]


async def _timed(client: httpx.AsyncClient, url: str, i: int) -> float:
    started = time.perf_counter()
    if i % 2:
        r = await client.post(f"{url}/events", headers=JSON_TYPE, json={
            "action": "update", "provider": "snom", "mac": f"0004130F{i:04X}"})
        assert r.status_code == 202, r.text
    else:
        r = await client.get(f"{url}/health")
        assert r.status_code == 200 and r.json()["database"] == "ok", r.text
    return time.perf_counter() - started


def p99(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[max(0, int(len(ordered) * 0.99) - 1)]


async def phone_gets_its_file(daemon: LimitedDaemon, user: str, password: str) -> int:
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.9")
    async with httpx.AsyncClient(transport=transport, timeout=5) as phone:
        r = await phone.get(f"http://127.0.0.1:{daemon.ztp_port}/ztprov/8/snomD717-{MAC}.htm",
                            auth=(user, password))
        return r.status_code


async def test_a_flooded_phones_listener_takes_nothing_else_down(
        daemon: LimitedDaemon, sandbox: RunningSandbox) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await daemon.ready(client)
        r = await client.post(f"{daemon.url}/events", headers=JSON_TYPE,
                              json={"action": "add", "provider": "snom", "mac": MAC,
                                    "server": 8})
        event_id = r.json()["events"][0]["id"]
        for _ in range(200):
            if (await client.get(f"{daemon.url}/events/{event_id}")).json()["state"] == "done":
                break
            await asyncio.sleep(0.05)
        r = await client.put(f"{daemon.url}/servers/8/provisioning", headers=JSON_TYPE, json={
            "prov_url": "https://pbx.test/prov/", "http_user": "t8", "http_password": "pw"})
        assert r.status_code == 204
        settings = sandbox.state.endpoints(DEMO_COMPANY_ID)[MAC.lower()]["settings_manager"]
        user = settings[HTTP_CLIENT_USER_UUID]["value"]
        password = settings[HTTP_CLIENT_PASS_UUID]["value"]

        # One address: 100 silent and 100 trickling connections (only 100 are admitted).
        stop = asyncio.Event()
        first = await open_flood(daemon.ztp_port, "127.0.0.1", 200)
        trickling = asyncio.create_task(trickle(first[100:], stop))
        await asyncio.sleep(0.3)
        assert await phone_gets_its_file(daemon, user, password) == 200
        busy = await api_latencies(daemon.url, 200)
        assert await phone_gets_its_file(daemon, user, password) == 200

        # More addresses: now max_connections (150) is full and the file limit (256) is
        # what the daemon lives with. The event API does not notice.
        more = [*await open_flood(daemon.ztp_port, "127.0.0.2", 100),
                *await open_flood(daemon.ztp_port, "127.0.0.3", 100)]
        trickling_more = asyncio.create_task(trickle(more[100:], stop))
        full = await api_latencies(daemon.url, 200)
        # Everyone who did not send headers is gone after header_timeout: the phone gets in.
        everyone = [*first, *more]
        assert await closed(everyone, within=HEADER_TIMEOUT + 5) == len(everyone)
        assert await phone_gets_its_file(daemon, user, password) == 200
        stop.set()
        await asyncio.gather(trickling, trickling_more, return_exceptions=True)
        for _, writer in everyone:
            writer.close()

    figures = {"one address": p99(busy), "caps reached": p99(full)}
    print("\nevent API under a /ztprov/ flood (ulimit -n 256): " + ", ".join(
        f"{name}: p99 {seconds * 1000:.1f} ms" for name, seconds in figures.items()))
    assert max(figures.values()) <= 0.100, figures  # SPEC §13
    log = daemon.output()
    assert "Connection refused: too many connections. Ip=127.0.0.1 " \
           "Limit=max_connections_per_ip=100" in log
    assert "Limit=max_connections=150" in log
    assert "Connection closed: request headers too slow." in log
    assert "Too many open files" not in log
    for component in ("MAIN", "LISTENER", "ZTP", "DATABASE"):
        assert f"ERROR ({component})" not in log, log
