"""A device's timeline (docs/timeline.md): what happened to it, recorded off the hot path.

The workers, the shared vendor HTTP client and the phones' listener call
:meth:`Timeline.record`, which only appends to a bounded in-memory buffer; a background task
(``timeline``) writes the buffer in batches. A full buffer drops the entry and counts it
(``rps_timeline_dropped_total``) rather than make a worker or a phone wait for the database.
A stop writes what is left.

A vendor call knows neither its event nor its attempt: the worker sets :data:`CALL` around
the provider call, and the vendor HTTP client reads it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from rps_service.clock import utcnow
from rps_service.logs import get_logger
from rps_service.store import StoreUnavailable
from rps_service.store.timeline import TimelineEntry

log = get_logger()

CAPACITY = 20_000  # entries buffered at most
BATCH = 500  # entries per write
INTERVAL = 0.5  # seconds between writes when fewer than BATCH wait


def iso_time(value: datetime) -> str:
    """A naive UTC time as the timeline shows it: ISO 8601 to the millisecond, with ``Z``."""
    return value.isoformat(timespec="milliseconds") + "Z"


class _Writer(Protocol):
    async def insert_timeline(self, entries: list[TimelineEntry]) -> None: ...


class Timeline:
    """The buffer and its writer; ``enabled=False`` records nothing (``[general] timeline``)."""

    def __init__(self, store: _Writer, *, enabled: bool = True, capacity: int = CAPACITY,
                 batch: int = BATCH, interval: float = INTERVAL) -> None:
        self.store = store
        self.enabled = enabled
        self.capacity = capacity
        self.batch = batch
        self.interval = interval
        self.dropped = 0  # entries not recorded: the buffer was full or the database away
        self.written = 0
        self._buffer: collections.deque[TimelineEntry] = collections.deque()
        self._full = asyncio.Event()
        self._writing = asyncio.Lock()  # one writer at a time: rows go in recording order

    def record(self, provider: str, mac: str, kind: str, **data: Any) -> dict[str, Any]:
        """Buffer one entry stamped now; never waits. Its fields (changed in place until it
        is written: a vendor's code read from the answer after the call)."""
        if not self.enabled:
            return data
        if len(self._buffer) >= self.capacity:
            self.dropped += 1
            return data
        self._buffer.append(TimelineEntry(provider, mac, utcnow(), kind, data))
        if len(self._buffer) >= self.batch:
            self._full.set()
        return data

    def pending(self) -> int:
        """Entries buffered, not yet written."""
        return len(self._buffer)

    async def run(self) -> None:
        """Write the buffer every ``interval`` seconds, or as soon as a batch is full."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), self.interval)
            self._full.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered so far, a batch per transaction."""
        async with self._writing:
            await self._write_all()

    async def _write_all(self) -> None:
        while self._buffer:
            count = min(len(self._buffer), self.batch)
            entries = [self._buffer.popleft() for _ in range(count)]
            try:
                await self.store.insert_timeline(entries)
            except asyncio.CancelledError:
                self._buffer.extendleft(reversed(entries))  # the stop's flush writes them
                raise
            except StoreUnavailable as exc:
                # Nothing waits for these entries: they are counted and dropped, so a
                # database outage never grows the buffer past its bound.
                self.dropped += len(entries)
                log.warning("Timeline entries dropped", component="DATABASE",
                            count=len(entries), err=str(exc))
                return
            self.written += len(entries)


@dataclass
class CallSubject:
    """Whose vendor calls are being made: set by a worker around the provider call."""

    timeline: Timeline
    provider: str
    mac: str
    event: int
    attempt: int
    last: dict[str, Any] | None = None  # the last call's fields, until it is written

    def call(self, method: str, url: str, status: str, seconds: float) -> None:
        """Record one vendor request (``url`` already without secrets)."""
        self.last = self.timeline.record(
            self.provider, self.mac, "call", event=self.event, method=method, url=url,
            status=int(status) if status.isdigit() else status, ms=round(seconds * 1000),
            attempt=self.attempt)


#: The device and attempt of the vendor calls made in this task, if any.
CALL: contextvars.ContextVar[CallSubject | None] = contextvars.ContextVar("rps_timeline_call",
                                                                           default=None)


def vendor_code(code: str) -> None:
    """The vendor's own code for the answer of the call just made (an XML-RPC fault), as
    that call's ``status`` in the timeline instead of the HTTP status."""
    subject = CALL.get()
    if subject is not None and subject.last is not None:
        subject.last["status"] = code
