"""A device's timeline end to end (docs/timeline.md): daemon + SRAPS sandbox + real MariaDB,
a vendor call that fails once, a phone refused then served, the command line."""

# Tests take the imported ``daemon`` fixture as a parameter: not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rps_service.api import answers
from rps_service.cli import main
from rps_service.clock import utcnow
from rps_service.config import parse_database_url
from rps_service.sandbox.state import DEMO_SECRET
from rps_service.service import delete_old_timeline
from rps_service.store import Store, create_store
from rps_service.store.timeline import TimelineEntry
from tests.integration.test_ztp import (  # noqa: F401 (daemon: the fixture)
    MAC,
    OTHER_MAC,
    Daemon,
    daemon,
    phone_client,
    post,
    put_tenant,
    sraps_phone,
)


async def timeline(d: Daemon, mac: str = MAC) -> list[dict[str, Any]]:
    r = await d.api.get(f"/devices/snom/{mac}/timeline")
    assert r.status_code == 200, r.text
    answers.Timeline.model_validate(r.json())  # the OpenAPI description's shape
    entries: list[dict[str, Any]] = r.json()["entries"]
    for entry in entries:
        assert entry["at"].endswith("Z")
    return entries


def kinds(entries: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in entries]


def fetches(entries: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
    return [(e["result"], e["reason"]) for e in entries if e["kind"] == "fetch"]


async def test_an_add_that_failed_once_then_succeeded(
        daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon()
    d.sandbox.state.fail_next = [503]  # the add's first vendor request
    await post(d, "add", MAC)
    entries = await timeline(d)
    phone = sraps_phone(d, MAC)

    assert entries[0]["kind"] == "accepted"
    assert entries[0]["action"] == "add" and entries[0]["server"] == 8
    event = entries[0]["event"]
    failed = entries[1]
    assert failed["kind"] == "call" and failed["status"] == 503 and failed["attempt"] == 1
    assert failed["event"] == event and failed["method"] in ("GET", "PUT", "POST")
    assert failed["url"].startswith(d.sandbox.url) and isinstance(failed["ms"], int)
    retry = entries[2]
    assert retry["kind"] == "retry" and retry["event"] == event
    assert "503" in retry["why"] and retry["at"] >= failed["at"]
    calls = entries[3:-1]
    assert calls and kinds(calls) == ["call"] * len(calls)
    assert all(c["attempt"] == 2 and c["event"] == event for c in calls)
    assert calls[-1]["method"] == "PUT" and calls[-1]["status"] == 201
    assert entries[-1] == {"at": entries[-1]["at"], "kind": "outcome", "event": event,
                           "state": "done", "status": "registered", "message": None}
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)

    text = json.dumps(entries)
    for secret in (DEMO_SECRET, phone.password, "Hawk "):
        assert secret not in text
    metrics = (await d.api.get("/metrics")).text
    assert "rps_timeline_dropped_total 0.0" in metrics
    assert "rps_timeline_written_total" in metrics and "rps_timeline_pending" in metrics


async def test_a_phone_refused_then_served(daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon()
    await post(d, "add", MAC)
    await post(d, "add", OTHER_MAC)
    await put_tenant(d)
    phone, other = sraps_phone(d, MAC), sraps_phone(d, OTHER_MAC)
    async with phone_client(d, MAC, ip="203.0.113.7") as client:
        assert (await client.get(phone.path)).status_code == 401
        assert (await client.get(phone.path, auth=(phone.user, "wrong"))).status_code == 401
        r = await client.get(phone.path, auth=(other.user, other.password))
        assert r.status_code == 401
        assert (await client.get(phone.path, auth=(phone.user, phone.password))).status_code \
            == 200
    entries = await timeline(d)
    assert fetches(entries) == [(401, "no credentials"), (401, "wrong password"),
                                (401, "unknown user"), (200, None)]
    served = [e for e in entries if e["kind"] == "fetch"][-1]
    assert served == {"at": served["at"], "kind": "fetch", "ip": "203.0.113.7",
                      "file": phone.path, "model": "D717", "firmware": "10.1.54.13",
                      "result": 200, "reason": None}
    # The other phone's login was tried on this MAC's file: not the other's timeline.
    assert fetches(await timeline(d, OTHER_MAC)) == []
    text = json.dumps(entries)
    for secret in (phone.password, other.password, DEMO_SECRET):
        assert secret not in text


async def test_mac_mismatch_and_a_removed_device(
        daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon()
    await post(d, "add", MAC)
    await put_tenant(d)
    phone = sraps_phone(d, MAC)
    async with phone_client(d, OTHER_MAC) as client:  # its User-Agent names another MAC
        r = await client.get(phone.path, auth=(phone.user, phone.password))
        assert r.status_code == 403
    await post(d, "remove", MAC)
    async with phone_client(d, MAC) as client:
        r = await client.get(phone.path, auth=(phone.user, phone.password))
        assert r.status_code == 401
    entries = await timeline(d)
    assert fetches(entries) == [(403, "MAC mismatch"), (401, "device removed")]
    assert [e["model"] for e in entries if e["kind"] == "fetch"] == ["D717", "D717"]
    outcomes = [(e["state"], e["status"]) for e in entries if e["kind"] == "outcome"]
    assert outcomes == [("done", "registered"), ("done", "unregistered")]
    assert kinds(entries).count("accepted") == 2


async def test_throttled_phone(daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon({"fail_limit": 2})
    await post(d, "add", MAC)
    phone = sraps_phone(d, MAC)
    async with phone_client(d, MAC) as client:
        statuses = [(await client.get(phone.path, auth=(phone.user, "wrong"))).status_code
                    for _ in range(3)]
    assert statuses[-1] == 429
    assert fetches(await timeline(d))[-1] == (429, "throttled")


async def test_unknown_device_and_bad_query(daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon()
    r = await d.api.get("/devices/snom/000413999999/timeline")
    assert r.status_code == 404 and r.json() == {"error": "no such device"}
    r = await d.api.get("/devices/snom/not-a-mac/timeline")
    assert r.status_code == 404 and r.json() == {"error": "no such device"}
    await post(d, "add", MAC)
    r = await d.api.get(f"/devices/snom/{MAC}/timeline", params={"limit": "0"})
    assert r.status_code == 400 and "limit" in r.json()["error"]
    r = await d.api.get(f"/devices/snom/{MAC}/timeline", params={"limit": "2"})
    assert len(r.json()["entries"]) == 2


async def test_retention_trims_entries(daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon()
    await post(d, "add", MAC)
    store, now = d.service.store, utcnow()
    await store.insert_timeline([
        TimelineEntry("snom", MAC, now - timedelta(days=40), "fetch",
                      {"ip": "192.0.2.1", "file": "/old", "model": None, "firmware": None,
                       "result": 401, "reason": "no credentials"}),
    ])
    assert "/old" in json.dumps(await timeline(d))
    assert await delete_old_timeline(store, 30, now) == 1
    entries = await timeline(d)
    assert "/old" not in json.dumps(entries) and kinds(entries)[-1] == "outcome"
    assert "INFO (DATABASE): Old timeline entries deleted. Count=1" in d.log_path.read_text()


async def test_command_line(daemon: Callable[..., Awaitable[Daemon]], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    d = await daemon()
    d.sandbox.state.fail_next = [503]
    await post(d, "add", MAC)
    ini = str(tmp_path / "rps.ini")
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["-c", ini, "timeline", "snom", MAC.lower()])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["AT", "KIND", "WHAT"]
    assert lines[1].split()[2:] == ["accepted", "event", "1:", "add", "for", "server", "8"]
    assert "-> 503 in" in lines[2] and "attempt 1)" in lines[2]
    assert lines[3].split()[2] == "retry" and "503" in lines[3]
    assert lines[-1].split()[2:] == ["outcome", "event", "1", "done,", "device", "registered"]
    code = await asyncio.to_thread(main, ["-c", ini, "timeline", "snom", MAC, "--json"])
    body = json.loads(capsys.readouterr().out)
    assert code == 0 and body == {"entries": await timeline(d)}
    code = await asyncio.to_thread(main, ["-c", ini, "timeline", "snom", "000413999999"])
    assert code == 1 and "no such device" in capsys.readouterr().err


async def test_store_writes_reads_and_trims_on_both_databases(store: Store) -> None:
    now = utcnow()
    entries = [TimelineEntry("snom", MAC, now - timedelta(days=40), "fetch", {"result": 401}),
               *(TimelineEntry("snom", MAC, now, "call", {"status": n}) for n in range(600)),
               TimelineEntry("snom", OTHER_MAC, now, "retry", {"why": "ünïcode ✓"})]
    await store.insert_timeline(entries)  # more rows than one INSERT takes
    mine = await store.device_timeline("snom", MAC, 10_000)
    assert [e.kind for e in mine] == ["fetch"] + ["call"] * 600
    assert [e.data["status"] for e in mine[1:]] == list(range(600))
    assert abs((mine[1].at - now).total_seconds()) < 0.001  # to the microsecond
    newest = await store.device_timeline("snom", MAC, 2)
    assert [e.data["status"] for e in newest] == [598, 599]
    other = await store.device_timeline("snom", OTHER_MAC, 10)
    assert other[0].data == {"why": "ünïcode ✓"}
    assert await store.delete_old_timeline(now - timedelta(days=30), 500) == 1
    assert len(await store.device_timeline("snom", MAC, 10_000)) == 600


async def test_switched_off_only_the_events_show(
        daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon(more={"timeline": "false"})
    d.sandbox.state.fail_next = [503]
    await post(d, "add", MAC)
    await put_tenant(d)
    phone = sraps_phone(d, MAC)
    async with phone_client(d, MAC) as client:
        r = await client.get(phone.path, auth=(phone.user, phone.password))
        assert r.status_code == 200
    assert kinds(await timeline(d)) == ["accepted"]
    assert d.service.timeline.written == 0


async def test_a_stop_writes_what_is_buffered(daemon: Callable[..., Awaitable[Daemon]],
                                              mysql_database: str) -> None:
    d = await daemon()
    await post(d, "add", MAC)
    d.service.timeline.interval = 3600  # only the stop can write it now
    await asyncio.sleep(0.6)  # a write cycle with the old interval passes
    d.service.timeline.record("snom", MAC, "fetch", ip="192.0.2.9", file="/last",
                              model=None, firmware=None, result=401, reason="no credentials")
    await d.service.stop()
    store = create_store(parse_database_url(mysql_database))
    await store.open()
    try:
        stored = await store.device_timeline("snom", MAC, 100)
    finally:
        await store.close()
    assert stored[-1].data["file"] == "/last"
