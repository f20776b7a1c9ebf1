"""The webhooks' outbox in the store, on SQLite and on MariaDB: written with an event's
outcome (not with a retry), leased one row per device in order, by one owner at a time,
backed off, given back, deleted once settled; a device's backlog drains round after round."""

# Tests take the imported ``receiver`` fixture as a parameter: not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
from datetime import timedelta

import orjson
import pytest

from rps_service import webhooks
from rps_service.clock import utcnow
from rps_service.config import WEBHOOK_TYPES, WebhookSettings
from rps_service.models import NewEvent
from rps_service.store import DeviceOutcome, Store
from rps_service.store.outbox import Notice
from rps_service.webhooks import WebhookSender
from tests.integration.test_webhook_repeats import Receiver, receiver  # noqa: F401

LEASE = timedelta(seconds=60)


def notice(mac: str, kind: str = "phone.fetched") -> Notice:
    return Notice(kind, "snom", mac, 8, "registered", f"{kind} of {mac}")


async def test_an_outcome_writes_its_notice_in_its_transaction(store: Store) -> None:
    store.webhook_types = frozenset(WEBHOOK_TYPES)
    await store.insert_events([NewEvent("add", "snom", 8, "000413000001", {}),
                               NewEvent("add", "snom", 8, "000413000002", {})], utcnow())
    first, second = (await store.lease_events("me", utcnow(), utcnow() + LEASE, 10, 1,
                                              [0])).events
    await store.finish_event(first, "me", "done", utcnow(),
                             device=DeviceOutcome("registered", registered=True))
    await store.finish_event(second, "me", "pending", utcnow(), error="503",
                             device=DeviceOutcome("pending", "503 (attempt 1 of 8, retrying)"))
    [row] = await store.lease_notices("me", utcnow(), utcnow() + LEASE, 10)
    body = orjson.loads(row.body)
    assert {k: body[k] for k in ("type", "provider", "mac", "server", "status", "message")} == {
        "type": "device.registered", "provider": "snom", "mac": "000413000001", "server": 8,
        "status": "registered", "message": "-"}
    assert await store.webhooks_pending() == 1  # a retry sends nothing


async def test_one_row_per_device_in_order_one_owner_at_a_time(store: Store) -> None:
    store.webhook_types = frozenset(WEBHOOK_TYPES)
    now = utcnow()
    for item in (notice("A"), notice("A", "phone.refused"), notice("B")):
        await store.insert_notice(item, now)
    assert await store.webhooks_pending() == 3
    leased = await store.lease_notices("one", now, now + LEASE, 10)
    assert [orjson.loads(r.body)["mac"] for r in leased] == ["A", "B"]  # A's second waits
    assert await store.lease_notices("two", now, now + LEASE, 10) == []  # held by "one"
    a1, b1 = leased
    later = now + timedelta(seconds=30)
    await store.settle_notices("one", [a1.row], [(b1.row, later, "HTTP 500")])
    [a2] = await store.lease_notices("two", now, now + LEASE, 10)  # B1 backs off
    assert orjson.loads(a2.body)["type"] == "phone.refused"
    await store.settle_notices("one", [a2.row], [])  # not "one"'s any more: kept
    assert await store.release_notices("two") == 1
    [again] = await store.lease_notices("one", now, now + LEASE, 10)
    assert again.row == a2.row
    [b_again] = await store.lease_notices("one", later, later + LEASE, 10)
    assert (b_again.row, b_again.attempts) == (b1.row, 1)
    # Leases that ran out (a killed instance) are taken again.
    taken = await store.lease_notices("two", now + 2 * LEASE, now + 3 * LEASE, 10)
    assert [t.row for t in taken] == [a2.row, b1.row]
    await store.settle_notices("two", [a2.row], [])
    assert await store.webhooks_pending() == 1


async def test_off_or_unwanted_types_store_nothing(store: Store) -> None:
    await store.insert_notice(notice("A"), utcnow())  # webhooks off
    store.webhook_types = frozenset({"device.failed"})
    await store.insert_notice(notice("A"), utcnow())
    assert await store.webhooks_pending() == 0


async def test_a_device_backlog_drains_without_waiting_for_polls(
        store: Store, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten notifications of one device, stored while nothing woke the sender, go out one
    round after another: the sender does not wait for a wake (here: an hour) between them."""
    monkeypatch.setattr(webhooks, "IDLE_POLL", 3600.0)
    store.webhook_types = frozenset(WEBHOOK_TYPES)
    for n in range(10):
        await store.insert_notice(Notice("phone.refused", "snom", "A", 8, "registered",
                                         f"refusal {n}"), utcnow())
    sender = WebhookSender(WebhookSettings(url=receiver.url, secret="s"), store, "me")
    task = asyncio.create_task(sender.run())
    try:
        for _ in range(300):
            if len(receiver.arrived) == 10:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sender.close()
    assert [message for _, message in receiver.arrived] == [f"refusal {n}" for n in range(10)]
    assert await store.webhooks_pending() == 0
