"""The device timeline's queries (docs/timeline.md): entries written in batches, read per
device, trimmed with the events.

Each entry is one row of ``rps_timeline``: the device, the time, the kind and a small JSON
object of the kind's fields. The ``accepted`` entries and the outcome of a superseded event
are not stored twice: they are read from ``rps_events``, which holds them already.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from rps_service.store.sql import SqlBackend, placeholders

#: Rows of one INSERT at most (one statement stays far below max_allowed_packet).
MAX_ROWS_PER_INSERT = 500


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to a device."""

    provider: str
    mac: str
    at: datetime  # naive UTC
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventStep:
    """An event of a device as the journal holds it: when it came, what it asked, and how
    it ended when it ended superseded (a later event made it moot)."""

    id: int
    action: str
    server: int
    created_at: datetime
    state: str
    updated_at: datetime
    last_error: str | None


class TimelineQueries(SqlBackend):
    """Queries on ``rps_timeline``."""

    async def insert_timeline(self, entries: Sequence[TimelineEntry]) -> None:
        """Write ``entries`` (any number) in one transaction."""
        async with self._tx() as tx:
            for start in range(0, len(entries), MAX_ROWS_PER_INSERT):
                chunk = entries[start:start + MAX_ROWS_PER_INSERT]
                values = ", ".join([f"({placeholders(5)})"] * len(chunk))
                params: list[Any] = []
                for e in chunk:
                    params += [e.provider, e.mac, e.at, e.kind, orjson.dumps(e.data).decode()]
                await tx.execute(
                    f"INSERT INTO rps_timeline (provider, mac, at, kind, data) VALUES {values}",
                    params)

    async def device_timeline(self, provider: str, mac: str, limit: int
                              ) -> list[TimelineEntry]:
        """The device's newest ``limit`` stored entries, oldest first."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT at, kind, data FROM rps_timeline WHERE provider = ? AND mac = ?"
                " ORDER BY id DESC LIMIT ?", [provider, mac, limit])
        return [TimelineEntry(provider, mac, self.convert_time(r[0]) or datetime.min, r[1],
                              orjson.loads(r[2])) for r in reversed(rows)]

    async def device_events(self, provider: str, mac: str, limit: int) -> list[EventStep]:
        """The device's newest ``limit`` events, oldest first."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT id, action, server, created_at, state, updated_at, last_error"
                " FROM rps_events WHERE provider = ? AND mac = ? ORDER BY id DESC LIMIT ?",
                [provider, mac, limit])
        return [EventStep(int(r[0]), r[1], int(r[2]), self.convert_time(r[3]) or datetime.min,
                          r[4], self.convert_time(r[5]) or datetime.min, r[6])
                for r in reversed(rows)]

    async def delete_old_timeline(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` entries older than ``before``, oldest first; how many."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT id FROM rps_timeline WHERE at < ? ORDER BY at LIMIT ?", [before, limit])
            ids = [int(row[0]) for row in rows]
            if not ids:
                return 0
            return await tx.execute(
                f"DELETE FROM rps_timeline WHERE id IN ({placeholders(len(ids))})", ids)
