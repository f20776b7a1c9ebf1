"""Issue 20, finding 4, end to end: a daemon whose vendor answers too much, or too slowly,
loses one call (transient), never its memory or an event's lease.

The vendor is a raw HTTP server on loopback standing in for SRAPS (the Snom provider, Hawk
signing and all, talks to it as to the real one); what it answers is the attack.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rps_service.config import load_settings
from rps_service.service import Service
from tests.conftest import JSON_TYPE, free_port, write_ini
from tests.integration.test_pipeline import wait_events

MAC = "000413ABCDEF"
Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


class Vendor:
    """Answers every request with ``answer``; counts the requests."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/api/v1/"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            await self.answer(writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def huge(writer: asyncio.StreamWriter) -> None:
    """A JSON answer that never ends (no Content-Length), 64 KB at a time."""
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n'
                 b'Connection: close\r\n\r\n{"id": "KEYID", "pad": "')
    for _ in range(400 * 16):  # 400 MB if anyone read it all
        writer.write(b"x" * 65_536)
        await writer.drain()


async def trickle(writer: asyncio.StreamWriter) -> None:
    """A byte every half second: no single read ever waits a whole second."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n")
    for _ in range(100):
        writer.write(b" ")
        await writer.drain()
        await asyncio.sleep(0.5)


Start = Callable[[Answer], Awaitable[tuple[Service, httpx.AsyncClient, Vendor]]]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    running: list[tuple[Service, httpx.AsyncClient, Vendor]] = []

    async def _start(answer: Answer) -> tuple[Service, httpx.AsyncClient, Vendor]:
        vendor = Vendor(answer)
        snom: dict[str, Any] = {
            "api_url": await vendor.start(), "access_key_id": "KEYID",
            "access_key_secret": "vendor-answers-secret", "timeout": 1, "max_answer": 20000,
            "provisioning_url": "https://pbx.test/ztprov/{server}/", "rate_limit": 1000}
        general = {"port": free_port(), "database": f"sqlite:///{tmp_path}/rps.db",
                   "log_file": "-", "max_attempts": 1, "poll_interval": 0.2}
        service = Service(load_settings(write_ini(tmp_path / "rps.ini", general, snom),
                                        env={}))
        await service.start()
        client = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10)
        running.append((service, client, vendor))
        return running[-1]

    yield _start
    for service, client, vendor in running:
        await client.aclose()
        await service.stop()
        await vendor.close()


async def test_an_endless_answer_fails_the_call_not_the_daemon(start: Start) -> None:
    _, client, vendor = await start(huge)
    r = await client.post("/providers/snom/test", headers=JSON_TYPE, json={"server": 1})
    assert r.status_code == 200
    assert r.json() == {"ok": False, "message": "SRAPS unreachable: Snom answer too large: "
                                                "more than 20000 bytes (max_answer)"}
    r = await client.post("/events", json={"action": "add", "provider": "snom", "mac": MAC})
    [row] = await wait_events(client, [r.json()["events"][0]["id"]], ("failed",))
    assert row["last_error"].startswith("Snom answer too large: more than 20000 bytes")
    assert (await client.get("/health")).json()["status"] == "ok"
    assert vendor.requests == 2


async def test_a_trickling_vendor_holds_an_event_no_longer_than_timeout(start: Start) -> None:
    _, client, _ = await start(trickle)
    r = await client.post("/events", json={"action": "add", "provider": "snom", "mac": MAC})
    # The vendor would take 50 s to finish its answer; timeout = 1 ends the call, and the
    # event (max_attempts = 1) fails, well within the wait below.
    [row] = await wait_events(client, [r.json()["events"][0]["id"]], ("failed",))
    assert row["last_error"].startswith("Timeout after 1s")
    device = (await client.get(f"/devices/snom/{MAC}")).json()
    assert device["status"] == "error"
