"""``[webhooks] repeat_after`` through the daemon, the SRAPS sandbox and real MariaDB: a phone
fetching in a loop tells the PBX once a window, a new firmware at once, and its timeline
keeps every fetch; ``repeat_after = 0`` tells every fetch."""

# Tests take the imported ``daemon`` fixture as a parameter: not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import free_port
from tests.integration.test_timeline import fetches, timeline
from tests.integration.test_ztp import (  # noqa: F401 (daemon: the fixture)
    MAC,
    Daemon,
    daemon,
    phone_client,
    post,
    put_tenant,
    sraps_phone,
    user_agent,
)


class Receiver:
    """Keeps the ``type`` and ``message`` of each notification that arrives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.arrived: list[tuple[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        notice = json.loads(await request.read())
        self.arrived.append((notice["type"], notice["message"]))
        return web.Response(status=204)

    def fetched(self) -> list[str]:
        return [message for kind, message in self.arrived if kind == "phone.fetched"]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", hook.port).start()
    yield hook
    await runner.cleanup()


async def fetch_loop(d: Daemon, firmwares: list[str]) -> None:
    phone = sraps_phone(d, MAC)
    async with phone_client(d, MAC) as client:
        for firmware in firmwares:
            client.headers["User-Agent"] = user_agent(MAC, firmware=firmware)
            r = await client.get(phone.path, auth=(phone.user, phone.password))
            assert r.status_code == 200, r.text


async def delivered(d: Daemon, receiver: Receiver, count: int) -> list[str]:
    """The phone.fetched messages, once ``count`` arrived and the outbox is empty."""
    for _ in range(200):
        if len(receiver.fetched()) >= count and await d.service.store.webhooks_pending() == 0:
            await asyncio.sleep(0.3)  # a surplus would arrive meanwhile
            return receiver.fetched()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} phone.fetched expected, got {receiver.arrived}")


async def start(daemon: Callable[..., Awaitable[Daemon]], receiver: Receiver,
                **hooks: Any) -> Daemon:
    d = await daemon(sections={"webhooks": {"url": receiver.url, "secret": "repeat-secret",
                                            **hooks}})
    await post(d, "add", MAC)
    await put_tenant(d)
    return d


async def test_a_phone_fetching_in_a_loop_is_told_once_a_window(
        daemon: Callable[..., Awaitable[Daemon]], receiver: Receiver) -> None:
    d = await start(daemon, receiver)
    await fetch_loop(d, ["10.1.54.13"] * 5 + ["10.1.60.1", "10.1.60.1"])
    messages = await delivered(d, receiver, 2)
    assert len(messages) == 2, messages
    assert "firmware 10.1.54.13" in messages[0] and "firmware 10.1.60.1" in messages[1]
    # The timeline keeps every fetch; only the PBX is spared the repeats.
    assert fetches(await timeline(d)) == [(200, None)] * 7


async def test_repeat_after_zero_tells_every_fetch(
        daemon: Callable[..., Awaitable[Daemon]], receiver: Receiver) -> None:
    d = await start(daemon, receiver, repeat_after=0)
    await fetch_loop(d, ["10.1.54.13"] * 4)
    assert len(await delivered(d, receiver, 4)) == 4
