"""DNS rebinding: without an api_token, the event API answers only requests whose Host is
this machine by a name it knows (loopback, ``listen``, ``[general] allowed_hosts``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from rps_service import logs
from rps_service.service import Service
from tests.fakes import ScriptedProvider

Start = Callable[[dict[str, Any]], Awaitable[tuple[Service, httpx.AsyncClient]]]
EVENT = {"action": "add", "provider": "fake", "mac": "000413ABCDEF"}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/rps.db"  # the Host check does not involve the database


@pytest.fixture
async def start(make_settings: Any, tmp_path: Path) -> AsyncIterator[Start]:
    running: list[tuple[Service, httpx.AsyncClient]] = []
    sink = logs.configure(str(tmp_path / "rps.log"))

    async def _start(general: dict[str, Any]) -> tuple[Service, httpx.AsyncClient]:
        service = Service(make_settings({**general, "log_file": str(tmp_path / "rps.log")}),
                          providers={"fake": ScriptedProvider()})
        await service.start()
        client = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10)
        running.append((service, client))
        return service, client

    yield _start
    for service, client in running:
        await client.aclose()
        await service.stop()
    sink.close()
    structlog.reset_defaults()


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:15777", "localhost.", "127.0.0.1",
                                  "127.0.0.1:15777", "127.8.9.10", "[::1]", "[::1]:15777",
                                  "[::ffff:127.0.0.1]:80"])
async def test_loopback_names_are_answered(start: Start, host: str) -> None:
    _, client = await start({})
    assert (await client.get("/events", headers={"Host": host})).status_code == 200
    assert (await client.get("/health", headers={"Host": host})).status_code == 200


async def test_other_hosts_are_refused_and_nothing_is_stored(start: Start,
                                                             tmp_path: Path) -> None:
    _, client = await start({})
    evil = {"Host": "rebind.attacker.example:15777"}
    r = await client.post("/events", json=EVENT, headers=evil)
    assert r.status_code == 403
    assert r.json()["error"].startswith("Host 'rebind.attacker.example:15777' is not allowed")
    for path in ("/events", "/health", "/devices", "/metrics"):
        assert (await client.get(path, headers=evil)).status_code == 403, path
    for host in ("10.0.0.5", "pbx.example.com", "127.0.0.1.attacker.example",
                 "0.0.0.0"):  # noqa: S104 (a Host header, nothing is bound)
        assert (await client.get("/events", headers={"Host": host})).status_code == 403, host
    assert (await client.get("/events")).json()["events"] == []  # the POST stored nothing
    log = (tmp_path / "rps.log").read_text()
    assert ("WARNING (LISTENER): Request refused: Host not allowed. "
            "Host=rebind.attacker.example:15777 Ip=127.0.0.1 Path=/events") in log


async def test_allowed_hosts_and_listen_address_are_answered(start: Start) -> None:
    _, client = await start({"listen": "127.0.0.2",
                             "allowed_hosts": "PBX.example.com, gui.local., [fd00::5]"})
    for host in ("pbx.example.com:15777", "gui.local", "[fd00::5]:15777", "127.0.0.2"):
        assert (await client.get("/events", headers={"Host": host})).status_code == 200, host
    assert (await client.get("/events", headers={"Host": "other.example"})).status_code == 403


async def test_with_a_token_the_host_is_not_checked(start: Start) -> None:
    _, client = await start({"api_token": "s3cret-token"})
    headers = {"Host": "rps.example.net", "Authorization": "Bearer s3cret-token"}
    assert (await client.get("/events", headers=headers)).status_code == 200
    assert (await client.get("/health", headers={"Host": "rps.example.net"})).status_code == 200
    assert (await client.get("/events", headers={"Host": "rps.example.net"})).status_code == 401
