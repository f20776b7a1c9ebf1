"""Helpers for the console and OpenAPI tests: a daemon with test providers, in this event
loop or in a thread of its own (for clients that block, such as schemathesis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx

from rps_service.config import Settings
from rps_service.service import Service
from tests.fakes import ScriptedProvider


class OtherProvider(ScriptedProvider):
    """A second test vendor, so filters and the Test buttons have a choice."""

    name = "other"


def providers() -> dict[str, ScriptedProvider]:
    return {"fake": ScriptedProvider(), "other": OtherProvider()}


@asynccontextmanager
async def running(settings: Settings, token: str = ""
                  ) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """A started daemon with the test providers, and a client of its API."""
    service = Service(settings, providers=providers())
    await service.start()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = httpx.AsyncClient(base_url=f"http://{service.address}", headers=headers,
                               timeout=10)
    try:
        yield service, client
    finally:
        await client.aclose()
        await service.stop()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def add_devices(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    """Post add events and wait until every one of them is finished."""
    ids: list[int] = []
    for start in range(0, len(events), 1000):
        r = await client.post("/events", json=events[start : start + 1000])
        assert r.status_code == 202, r.text
        ids += [e["id"] for e in r.json()["events"]]

    async def finished() -> bool:
        r = await client.get("/events", params={"state": "pending", "limit": 1})
        r2 = await client.get("/events", params={"state": "running", "limit": 1})
        return not r.json()["events"] and not r2.json()["events"]

    await wait_for(finished)


@contextmanager
def in_thread(settings: Settings) -> Iterator[Service]:
    """A daemon on an event loop in its own thread, for a blocking client in this one."""
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop

        async def main() -> None:
            service = Service(settings, providers=providers())
            holder["stop"] = asyncio.Event()
            try:
                await service.start()
                holder["service"] = service
            except BaseException as exc:
                holder["error"] = exc
                ready.set()
                raise
            ready.set()
            try:
                await holder["stop"].wait()
            finally:
                await service.stop()

        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="daemon", daemon=True)
    thread.start()
    ready.wait(30)
    if "service" not in holder:
        raise RuntimeError(f"daemon did not start: {holder.get('error')!r}")
    try:
        yield holder["service"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(30)
