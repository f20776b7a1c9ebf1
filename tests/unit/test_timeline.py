"""The timeline's recorder (docs/timeline.md): bounded, batched, never waiting; and what a
vendor call records (its URL without secrets, status, attempt)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from rps_service import timeline
from rps_service.providers.http import VendorHttp
from rps_service.providers.protocol import ProviderError
from rps_service.store import StoreUnavailable
from rps_service.store.timeline import TimelineEntry


class Written:
    """What a store was asked to write, batch by batch; ``down`` refuses like an outage."""

    def __init__(self) -> None:
        self.batches: list[list[TimelineEntry]] = []
        self.down = False

    async def insert_timeline(self, entries: list[TimelineEntry]) -> None:
        if self.down:
            raise StoreUnavailable("gone")
        self.batches.append(list(entries))

    def entries(self) -> list[TimelineEntry]:
        return [e for batch in self.batches for e in batch]


async def test_entries_are_written_in_batches_in_order() -> None:
    store = Written()
    recorder = timeline.Timeline(store, batch=3)
    for n in range(7):
        recorder.record("snom", "000413ABCDEF", "fetch", result=n)
    assert recorder.pending() == 7 and store.batches == []  # recording never writes
    await recorder.flush()
    assert [len(b) for b in store.batches] == [3, 3, 1]
    assert [e.data["result"] for e in store.entries()] == list(range(7))
    assert recorder.written == 7 and recorder.pending() == 0


async def test_a_full_buffer_drops_and_counts() -> None:
    store = Written()
    recorder = timeline.Timeline(store, capacity=2)
    for n in range(5):
        recorder.record("snom", "000413ABCDEF", "fetch", result=n)
    assert recorder.dropped == 3
    await recorder.flush()
    assert [e.data["result"] for e in store.entries()] == [0, 1]


async def test_a_database_outage_drops_rather_than_grows() -> None:
    store = Written()
    recorder = timeline.Timeline(store)
    store.down = True
    recorder.record("snom", "000413ABCDEF", "retry", why="x")
    await recorder.flush()
    assert recorder.dropped == 1 and recorder.pending() == 0


async def test_switched_off_records_nothing() -> None:
    store = Written()
    recorder = timeline.Timeline(store, enabled=False)
    recorder.record("snom", "000413ABCDEF", "fetch", result=200)
    assert recorder.pending() == 0


async def test_the_writer_task_writes_a_full_batch_at_once() -> None:
    store = Written()
    recorder = timeline.Timeline(store, batch=2, interval=60)
    task = asyncio.create_task(recorder.run())
    recorder.record("snom", "000413ABCDEF", "fetch", result=1)
    recorder.record("snom", "000413ABCDEF", "fetch", result=2)
    for _ in range(100):
        if store.batches:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert [e.data["result"] for e in store.entries()] == [1, 2]


async def test_a_vendor_call_records_its_url_without_secrets() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503 if "fail" in request.url.path else 201)

    http = VendorHttp(name="v", label="V", transport=httpx.MockTransport(handler), timeout=5,
                      rate_limit=1000, retry_cap=30)
    store = Written()
    recorder = timeline.Timeline(store)
    token = timeline.CALL.set(timeline.CallSubject(recorder, "v", "000413ABCDEF", 7, 2))
    try:
        await http.send(httpx.Request("PUT", "https://v.test/ok?access_token=s3cr3t&x=1"),
                        account="a", operation="register")
        await http.send(httpx.Request("GET", "https://v.test/fail"), account="a",
                        operation="lookup")
    finally:
        timeline.CALL.reset(token)
    await http.send(httpx.Request("GET", "https://v.test/ok"), account="a", operation="x")
    await recorder.flush()
    calls = [(e.kind, e.data["method"], e.data["url"], e.data["status"], e.data["attempt"],
              e.data["event"]) for e in store.entries()]
    assert calls == [
        ("call", "PUT", "https://v.test/ok?access_token=***&x=1", 201, 2, 7),
        ("call", "GET", "https://v.test/fail", 503, 2, 7),
    ]  # the call made outside an event's handling is nobody's
    assert all(isinstance(e.data["ms"], int) for e in store.entries())


async def test_a_call_without_answer_records_why() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    http = VendorHttp(name="v", label="V", transport=httpx.MockTransport(handler), timeout=5,
                      rate_limit=1000, retry_cap=30)
    store = Written()
    recorder = timeline.Timeline(store)
    token = timeline.CALL.set(timeline.CallSubject(recorder, "v", "000413ABCDEF", 1, 1))
    try:
        with pytest.raises(ProviderError):
            await http.send(httpx.Request("GET", "https://v.test/x"), account="a",
                            operation="lookup")
    finally:
        timeline.CALL.reset(token)
    await recorder.flush()
    assert [e.data["status"] for e in store.entries()] == ["error"]


async def test_a_vendor_code_replaces_the_http_status_of_the_call() -> None:
    store = Written()
    recorder = timeline.Timeline(store)
    timeline.vendor_code("fault 1")  # outside an event's handling: nothing to change
    token = timeline.CALL.set(timeline.CallSubject(recorder, "v", "000413ABCDEF", 1, 1))
    try:
        timeline.vendor_code("fault 1")  # no call yet: nothing to change
        timeline.CALL.get().call("POST", "https://v.test/RPC2", "200", 0.01)  # type: ignore[union-attr]
        timeline.vendor_code("fault 305")
    finally:
        timeline.CALL.reset(token)
    await recorder.flush()
    assert [e.data["status"] for e in store.entries()] == ["fault 305"]
