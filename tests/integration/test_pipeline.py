"""The whole pipeline in-process: listener → journal → distributor → workers → device rows,
with the test provider, on SQLite and on MariaDB."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from rps_service.access import AccessMode
from rps_service.config import Settings
from rps_service.service import Service
from rps_service.store import create_store
from tests.conftest import JSON_TYPE
from tests.fakes import ScriptedProvider, permanent, transient

Started = tuple[Service, ScriptedProvider, httpx.AsyncClient]


@pytest.fixture
async def start(make_settings: Any) -> AsyncIterator[Callable[..., Awaitable[Started]]]:
    running: list[tuple[Service, httpx.AsyncClient]] = []

    async def _start(general: dict[str, Any] | None = None, delay: float = 0.0) -> Started:
        settings: Settings = make_settings(general)
        provider = ScriptedProvider(delay)
        service = Service(settings, providers={"fake": provider})
        await service.start()
        client = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10)
        running.append((service, client))
        return service, provider, client

    yield _start
    for service, client in running:
        await client.aclose()
        await service.stop()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def event_state(client: httpx.AsyncClient, event_id: int) -> dict[str, Any]:
    response = await client.get(f"/events/{event_id}")
    assert response.status_code == 200
    return dict(response.json())


async def wait_events(client: httpx.AsyncClient, ids: list[int],
                      states: tuple[str, ...] = ("done", "failed")) -> list[dict[str, Any]]:
    async def finished() -> bool:
        rows = [await event_state(client, i) for i in ids]
        return all(r["state"] in states for r in rows)

    await wait_for(finished)
    return [await event_state(client, i) for i in ids]


def event(mac: str, action: str = "add", **extra: Any) -> dict[str, Any]:
    return {"action": action, "provider": "fake", "mac": mac, **extra}


async def test_add_registers_device(start: Callable[..., Awaitable[Started]]) -> None:
    _, provider, client = await start()
    response = await client.post("/events", json=event("00:04:13:ab:cd:ef", server=8,
                                                        model="D717", name="Reception"))
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 1
    assert body["events"][0]["mac"] == "000413ABCDEF" and body["events"][0]["server"] == 8
    [row] = await wait_events(client, [body["events"][0]["id"]])
    assert row["state"] == "done" and row["attempts"] == 1
    device = (await client.get("/devices/fake/000413abcdef")).json()
    assert device["status"] == "registered" and device["last_message"] == "-"
    assert device["server"] == 8 and device["name"] == "Reception"
    assert device["registered_at"] and device["url"] == "https://pbx.test/ztprov/8/"
    assert "http_password" not in device and device["http_password_set"] is True
    sent = provider.registered["000413ABCDEF"]
    assert sent.http_username == device["http_username"]
    assert len(sent.http_password) >= 20


async def test_readd_keeps_access_details_remove_revokes(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, provider, client = await start()
    ids = []
    for action in ("add", "add"):
        r = await client.post("/events", json=event("000413ABCDEF", action))
        ids.append(r.json()["events"][0]["id"])
        await wait_events(client, ids)
        ids_sent = provider.registered["000413ABCDEF"]
        if action == "add" and len(ids) == 1:
            first = ids_sent
    assert provider.registered["000413ABCDEF"].http_password == first.http_password
    r = await client.post("/events", json=event("000413ABCDEF", "remove"))
    await wait_events(client, [r.json()["events"][0]["id"]])
    device = (await client.get("/devices/fake/000413ABCDEF")).json()
    assert device["status"] == "unregistered" and device["http_username"] is None
    assert "000413ABCDEF" not in provider.registered


async def test_server_mode_devices_carry_their_current_servers_login(
    start: Callable[..., Awaitable[Started]],
) -> None:
    """AccessMode.SERVER (Poly profiles): a server's devices share one login; a device
    moved to another server carries that server's, also when the move needed a retry."""
    service, provider, client = await start()
    provider.access = AccessMode.SERVER  # type: ignore[misc]
    for mac, server in (("0004F2000001", 8), ("0004F2000002", 8), ("0004F2000003", 9)):
        r = await client.post("/events", json=event(mac, server=server))
        await wait_events(client, [r.json()["events"][0]["id"]])
    one, two, nine = (provider.registered[f"0004F200000{i}"] for i in (1, 2, 3))
    assert (one.http_username, one.http_password) == (two.http_username, two.http_password)
    assert nine.http_username != one.http_username
    provider.script["0004F2000001"] = [transient()]
    r = await client.post("/events", json=event("0004F2000001", server=9))
    [row] = await wait_events(client, [r.json()["events"][0]["id"]])
    assert row["state"] == "done" and row["attempts"] == 2
    moved = provider.registered["0004F2000001"]
    assert (moved.server, moved.http_username, moved.http_password) == (
        9, nine.http_username, nine.http_password)
    stored = await service.store.get_device("fake", "0004F2000001")
    assert stored is not None and (stored.http_username, stored.http_password) == (
        nine.http_username, nine.http_password)


async def test_per_device_order_many_devices_over_queues(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, provider, client = await start({"queuenum": 4, "queuecap": 5}, delay=0.002)
    rng = random.Random(7)
    macs = [f"0004130100{i:02X}" for i in range(30)]
    batch = [event(rng.choice(macs), rng.choice(["add", "remove", "update"]))
             for _ in range(240)]
    ids = []
    for i in range(0, len(batch), 60):  # several requests, devices interleaved
        r = await client.post("/events", json=batch[i : i + 60])
        assert r.status_code == 202
        ids += [e["id"] for e in r.json()["events"]]
    rows = await wait_events(client, ids, ("done", "failed", "superseded"))
    # Only updates of a device that is not registered fail (nothing is sent for them).
    failed = [r for r in rows if r["state"] == "failed"]
    assert failed and all(r["action"] == "update" and r["last_error"] ==
                          "Device is not registered" for r in failed)
    calls: dict[str, list[str]] = {m: [] for m in macs}
    for op, mac in provider.calls:
        calls[mac].append(op)
    expected: dict[str, list[str]] = {m: [] for m in macs}
    for row in rows:  # in posting order; superseded events are never sent
        if row["state"] == "done":
            expected[row["mac"]].append("deregister" if row["action"] == "remove" else "register")
    assert calls == expected
    # Coalescing never drops the decisive (last) event of a device.
    last = {r["mac"]: r for r in rows}
    assert all(r["state"] != "superseded" for r in last.values())
    assert provider.overlaps == 0


async def test_transient_failures_retried_then_done(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, provider, client = await start()
    provider.script["000413000001"] = [transient(), transient("429: Too Many Requests", 0.05)]
    r = await client.post("/events", json=event("000413000001"))
    [row] = await wait_events(client, [r.json()["events"][0]["id"]])
    assert row["state"] == "done" and row["attempts"] == 3
    assert row["last_error"] is None  # the last attempt succeeded


async def test_permanent_failure_fails_at_once_and_retry_requeues(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, provider, client = await start()
    provider.script["000413000002"] = [permanent()]
    r = await client.post("/events", json=event("000413000002"))
    event_id = r.json()["events"][0]["id"]
    [row] = await wait_events(client, [event_id])
    assert row["state"] == "failed" and row["attempts"] == 1
    assert row["last_error"] == "403: Forbidden"
    device = (await client.get("/devices/fake/000413000002")).json()
    assert device["status"] == "error" and device["last_message"] == "403: Forbidden"
    failed = (await client.get("/events", params={"state": "failed"})).json()["events"]
    assert [e["id"] for e in failed] == [event_id]
    again = await client.post(f"/events/{event_id}/retry", headers=JSON_TYPE)
    assert again.status_code == 202
    [row] = await wait_events(client, [event_id], ("done",))
    assert row["attempts"] == 1
    device = (await client.get("/devices/fake/000413000002")).json()
    assert device["status"] == "registered" and device["last_message"] == "-"
    assert (await client.post(f"/events/{event_id}/retry", headers=JSON_TYPE)).status_code == 409
    assert (await client.post("/events/999999/retry", headers=JSON_TYPE)).status_code == 404


async def test_transient_failures_exhaust_attempts(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, provider, client = await start({"max_attempts": 3})
    provider.script["000413000003"] = [transient() for _ in range(5)]
    r = await client.post("/events", json=event("000413000003"))
    [row] = await wait_events(client, [r.json()["events"][0]["id"]])
    assert row["state"] == "failed" and row["attempts"] == 3
    assert row["last_error"] == "503: Service Unavailable (gave up after 3 attempts)"


async def test_idempotency_key_over_http(start: Callable[..., Awaitable[Started]]) -> None:
    _, provider, client = await start()
    first = (await client.post("/events", json=event("000413000004", key="gui-4711"))).json()
    second = (await client.post("/events", json=event("000413000004", key="gui-4711"))).json()
    assert second["events"][0]["id"] == first["events"][0]["id"]
    assert second["events"][0]["duplicate"] is True
    await wait_events(client, [first["events"][0]["id"]])
    assert provider.calls == [("register", "000413000004")]
    # A repeat without "server" (in the same batch too) is answered with the server the
    # first event acted on, as the description says: an integer, never null.
    body = {"action": "add", "provider": "fake", "mac": "000413000005", "key": "gui-4712"}
    r = await client.post("/events", json=[{**body, "server": 7}])
    r = await client.post("/events", json=[body, body])
    assert [(e["server"], e["duplicate"]) for e in r.json()["events"]] == [(7, True)] * 2
    r = await client.post("/events", json=[{**body, "mac": "000413000006",
                                            "key": "gui-4713"}] * 2)
    assert [(e["server"], e.get("duplicate", False)) for e in r.json()["events"]] == [
        (1, False), (1, True)]


async def test_batch_with_invalid_event_stores_nothing(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, _, client = await start()
    r = await client.post("/events", json=[event("000413000005"), event("nope")])
    assert r.status_code == 400
    assert r.json()["details"] == [{"index": 1, "field": "mac", "message":
                                    "must be 12 hex digits, optionally separated by ':', '-' "
                                    "or '.'"}]
    assert (await client.get("/events")).json()["events"] == []


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"action": "add", "provider": "fake", "mac": "000413000006", "colour": "red"},
         "colour", 400),
        ({"action": "add", "provider": "fake", "mac": "000413000006", "server": "8"},
         "server", 400),
        ({"action": "add", "provider": "fake", "mac": "000413000006", "server": 0},
         "server", 400),
        ({"action": "move", "provider": "fake", "mac": "000413000006"}, "action", 400),
        ({"action": "add", "provider": "yealink", "mac": "000413000006"}, "provider", 400),
        ({"action": "add", "provider": "fake"}, "mac", 400),
        ({"action": "add", "provider": "fake", "mac": "000413000006", "key": "k" * 65},
         "key", 400),
    ],
)
async def test_invalid_events_400(start: Callable[..., Awaitable[Started]], body: Any,
                                  field: str, status: int) -> None:
    _, _, client = await start()
    r = await client.post("/events", json=body)
    assert r.status_code == status
    assert r.json()["details"][0]["field"] == field
    assert (await client.get("/events")).json()["events"] == []


async def test_a_disabled_or_unknown_provider_says_how_to_enable_one(
    start: Callable[..., Awaitable[Started]],
) -> None:
    """The refusal names the rps.ini section and the environment variable that enable a
    shipped vendor, and lists the known ones for a name that is none of them."""
    _, _, client = await start()
    how = ("provider yealink is disabled: set enabled = true in [yealink] of rps.ini (or "
           "RPS_YEALINK_ENABLED=true) and restart the daemon (enabled: fake)")
    r = await client.post("/events", json={"action": "add", "provider": "yealink",
                                           "mac": "000413000006", "sn": "1"})
    assert (r.status_code, r.json()["details"][0]["message"]) == (400, how)
    r = await client.post("/events", json={"action": "add", "provider": "snom-xmlrpc",
                                           "mac": "000413000006"})
    assert "RPS_SNOM_XMLRPC_ENABLED=true" in r.json()["details"][0]["message"]
    r = await client.get("/providers/yealink/credentials/1")
    assert (r.status_code, r.json()["error"]) == (404, how)
    r = await client.post("/servers/8/repoint", json={"provider": "yealink"})
    assert (r.status_code, r.json()["error"]) == (400, f"provider: {how}")
    r = await client.post("/events", json={"action": "add", "provider": "nope",
                                           "mac": "000413000006"})
    message = r.json()["details"][0]["message"]
    assert message.startswith("unknown provider 'nope' (providers: snom, yealink, ")
    assert message.endswith("; enabled: fake)")


async def test_http_refusals(start: Callable[..., Awaitable[Started]]) -> None:
    _, _, client = await start({"max_body": 2048})
    r = await client.post("/events", content=b"x" * 4096,
                          headers=JSON_TYPE)
    assert r.status_code == 413 and "max_body" in r.json()["error"]
    for raw in (b"{not json", b"", b"\xff\xfe", b"[1,", b"NaN"):
        r = await client.post("/events", content=raw,
                              headers=JSON_TYPE)
        assert r.status_code == 400, raw
        assert r.json()["error"].startswith("body is not valid JSON: "), raw
    r = await client.post("/events", content=b"action=add",
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert r.json()["error"].startswith("send Content-Type: application/json")
    r = await client.post("/events", json=[event(f"0004130001{i:02X}") for i in range(2)] * 0)
    assert r.status_code == 400
    r = await client.post("/events", json=[event("000413000007")] * 1001)
    assert r.status_code in (400, 413)
    assert (await client.get("/events/123456")).status_code == 404
    assert (await client.get("/events/abc")).status_code == 404
    assert (await client.get("/events", params={"state": "bogus"})).status_code == 400
    assert (await client.get("/devices/fake/000413000099")).status_code == 404
    assert (await client.get("/devices", params={"status": "x"})).status_code == 400
    assert (await client.get("/nowhere")).status_code == 404


async def test_api_token_required(start: Callable[..., Awaitable[Started]]) -> None:
    _, _, client = await start({"api_token": "s3cret-token"})
    assert (await client.post("/events", json=event("000413000008"))).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert (await client.get("/events", headers=bad)).status_code == 401
    good = {"Authorization": "Bearer s3cret-token"}
    assert (await client.post("/events", json=event("000413000008"),
                              headers=good)).status_code == 202
    assert (await client.get("/health")).status_code == 200


async def test_health_reports_database_and_queues(
    start: Callable[..., Awaitable[Started]],
) -> None:
    service, _, client = await start({"queuenum": 3})
    r = await client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["database"] == "ok" and body["queues"] == [0, 0, 0]
    assert body["backlog"] == {"pending": 0, "waiting": 0, "running": 0}
    assert body["lanes"] == []
    await service.store.close()  # the database goes away
    r = await client.get("/health")
    assert r.status_code == 503 and "unavailable" in r.json()["database"]
    r = await client.post("/events", json=event("000413000009"))
    assert r.status_code == 503


async def test_credentials_api_never_returns_secret(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, _, client = await start()
    r = await client.put("/providers/fake/credentials/8",
                         json={"access_key_id": "kid", "access_key_secret": "very-secret"})
    assert r.status_code == 204
    r = await client.get("/providers/fake/credentials/8")
    assert r.status_code == 200
    assert r.json() == {"provider": "fake", "server": 8, "access_key_id": "kid",
                        "access_key_secret_set": True, "provisioning_url": None}
    assert "very-secret" not in r.text
    assert (await client.get("/providers/fake/credentials/9")).status_code == 404
    r = await client.put("/providers/fake/credentials/8", json={"access_key_id": "kid"})
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "access_key_secret"
    # Another provider's keys are refused, naming them.
    r = await client.put("/providers/fake/credentials/8",
                         json={"access_key_id": "kid", "access_key_secret": "s", "api_key": "k"})
    assert r.status_code == 400
    assert r.json()["details"] == [{"index": 0, "field": "api_key", "message": "unknown field"}]
    assert (await client.put("/providers/nope/credentials/8",
                             json={})).status_code == 404
    r = await client.post("/providers/fake/test", json={"server": 8})
    assert r.json() == {"ok": True, "message": "fake provider accepts server 8"}


async def test_poison_event_cannot_loop_forever(
    make_settings: Any, database_url: str
) -> None:
    """An event whose handling kills the daemon every time (lease expires, never finished)
    is given up once its lease attempts pass max_attempts."""
    from datetime import timedelta

    from rps_service.clock import utcnow
    from rps_service.config import parse_database_url
    from rps_service.models import NewEvent
    from rps_service.store import create_store

    store = create_store(parse_database_url(database_url))
    await store.open()
    await store.migrate()
    [row] = await store.insert_events(
        [NewEvent("add", "fake", 1, "000413DEAD01", {})], utcnow())
    for _ in range(3):  # three crashed attempts
        await store.lease_events("crashed", utcnow(), utcnow() - timedelta(seconds=1), 1, 1, [0])
        await store.release_expired_leases(utcnow())
    await store.close()
    settings = make_settings({"max_attempts": 3})
    provider = ScriptedProvider()
    service = Service(settings, providers={"fake": provider})
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{service.address}") as client:
            [event] = await wait_events(client, [row.id])
    finally:
        await service.stop()
    assert event["state"] == "failed" and event["attempts"] == 4
    assert event["last_error"] == "Gave up after 3 attempts (leases expired)"
    assert provider.calls == []


async def test_stop_mid_burst_gives_every_lease_back(make_settings: Any) -> None:
    """A stop while the distributor is leasing a burst: afterwards no event is left
    ``running`` (held by a gone daemon until its lease expires); all are done or pending."""
    settings: Settings = make_settings({"queuenum": 2})
    service = Service(settings, providers={"fake": ScriptedProvider()})  # always leasing
    await service.start()
    async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10) as client:
        for start_at in (0, 500):
            r = await client.post("/events", json=[
                event(f"000413{i:06X}") for i in range(start_at, start_at + 500)])
            assert r.status_code == 202
        await service.stop()  # the distributor is still leasing the burst
    store = create_store(settings.general.database)
    await store.open()
    try:
        backlog = await store.backlog()
        done = len(await store.list_events("done", limit=1000))
    finally:
        await store.close()
    assert backlog["running"] == 0
    assert backlog["pending"] + done == 1000
