"""The webhooks' outbox (``rps_webhooks``, docs/webhooks.md): notifications not yet delivered.

A notification is stored in the transaction of the change it reports (a device's outcome)
or, for the phones' listener, in a small shared write of its own; it is deleted once
delivered or dropped, so the table only ever holds what is still to send. A device's
notifications go out one at a time in id order: only its oldest row can be leased, and a
row is leased by one instance at a time (``FOR UPDATE SKIP LOCKED`` on MySQL/MariaDB, as
the events are).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from rps_service.store.group import GroupCommit
from rps_service.store.sql import SqlBackend, Tx, placeholders


@dataclass(frozen=True)
class Notice:
    """One notification to store: what happened to which device."""

    type: str
    provider: str
    mac: str
    server: int
    status: str
    message: str


@dataclass(frozen=True)
class Outgoing:
    """A leased outbox row: its body as it is posted."""

    row: int
    body: bytes
    created_at: datetime
    attempts: int


def notice_body(notice: Notice, at: datetime) -> str:
    """The JSON posted for ``notice``; its ``id`` is new (unique per notification)."""
    return orjson.dumps({
        "id": uuid.uuid4().hex, "type": notice.type,
        "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "provider": notice.provider,
        "mac": notice.mac, "server": notice.server, "status": notice.status,
        "message": notice.message,
    }).decode()


class OutboxQueries(SqlBackend):
    """The outbox's queries."""

    lock_clause = ""
    #: The notification types to store (``[webhooks] events``); none while webhooks are off.
    webhook_types: frozenset[str] = frozenset()
    #: Called after a transaction stored notifications (wakes the sender).
    on_notices: Callable[[], None] | None = None

    def __init__(self) -> None:
        super().__init__()
        self._notices: GroupCommit[tuple[Notice, datetime], None] = GroupCommit(
            self._insert_notices_now, name="webhook-commit", limit=500)

    async def add_notices(self, tx: Tx, notices: Sequence[Notice], now: datetime) -> bool:
        """Store the wanted ones of ``notices`` within the caller's transaction ``tx``;
        whether there were any (then call :meth:`notices_stored` after the commit)."""
        wanted = [n for n in notices if n.type in self.webhook_types]
        if not wanted:
            return False
        params: list[Any] = []
        for notice in wanted:
            params += [f"{notice.provider}:{notice.mac}", notice_body(notice, now), now, now]
        rows = ", ".join(["(?, ?, ?, 0, ?)"] * len(wanted))
        await tx.execute("INSERT INTO rps_webhooks (device, body, created_at, attempts,"
                         f" next_attempt_at) VALUES {rows}", params)
        return True

    def notices_stored(self) -> None:
        if self.on_notices is not None:
            self.on_notices()

    async def insert_notice(self, notice: Notice, now: datetime) -> None:
        """Store one notification; concurrent calls share a transaction (the phones' side)."""
        if notice.type in self.webhook_types:
            await self._notices.submit((notice, now))

    async def _insert_notices_now(self, items: list[tuple[Notice, datetime]]) -> list[None]:
        async with self._tx() as tx:
            stored = await self.add_notices(tx, [n for n, _ in items], max(t for _, t in items))
        if stored:
            self.notices_stored()
        return [None] * len(items)

    async def lease_notices(self, owner: str, now: datetime, until: datetime,
                            limit: int) -> list[Outgoing]:
        """Take up to ``limit`` due notifications, each its device's oldest, leased until
        ``until`` (a crashed instance's leases run out and the rows come back)."""
        sql = (
            "SELECT w.id, w.body, w.created_at, w.attempts FROM rps_webhooks w"
            " WHERE w.next_attempt_at <= ? AND (w.lease_until IS NULL OR w.lease_until < ?)"
            " AND NOT EXISTS (SELECT 1 FROM rps_webhooks p WHERE p.device = w.device"
            f" AND p.id < w.id) ORDER BY w.id LIMIT ?{self.lock_clause}"
        )
        async with self._tx() as tx:
            rows = await tx.fetchall(sql, [now, now, limit])
            if not rows:
                return []
            ids = [int(r[0]) for r in rows]
            await tx.execute(
                "UPDATE rps_webhooks SET lease_owner = ?, lease_until = ?"
                f" WHERE id IN ({placeholders(len(ids))})", [owner, until, *ids])
        return [Outgoing(int(r[0]), str(r[1]).encode(), self.convert_time(r[2]) or now,
                         int(r[3])) for r in rows]

    async def settle_notices(self, owner: str, gone: Sequence[int],
                             retry: Sequence[tuple[int, datetime, str]]) -> None:
        """Delete the delivered (or dropped) rows ``gone``; put ``retry`` rows (id, when,
        why) back for a later attempt. Only rows this instance still holds."""
        async with self._tx() as tx:
            if gone:
                await tx.execute(
                    f"DELETE FROM rps_webhooks WHERE id IN ({placeholders(len(gone))})"
                    " AND lease_owner = ?", [*gone, owner])
            for row, when, why in retry:
                await tx.execute(
                    "UPDATE rps_webhooks SET attempts = attempts + 1, next_attempt_at = ?,"
                    " lease_owner = NULL, lease_until = NULL, last_error = ?"
                    " WHERE id = ? AND lease_owner = ?", [when, why[:1000], row, owner])

    async def release_notices(self, owner: str) -> int:
        """Give back every row ``owner`` holds (a stop): due again at once."""
        async with self._tx() as tx:
            return await tx.execute(
                "UPDATE rps_webhooks SET lease_owner = NULL, lease_until = NULL"
                " WHERE lease_owner = ?", [owner])

    async def webhooks_pending(self) -> int:
        """How many notifications wait to be delivered."""
        async with self._tx() as tx:
            row = await tx.fetchone("SELECT COUNT(*) FROM rps_webhooks")
        return int(row[0]) if row else 0

    async def next_notice_due(self) -> datetime | None:
        """When the earliest waiting notification is due."""
        async with self._tx() as tx:
            row = await tx.fetchone("SELECT MIN(next_attempt_at) FROM rps_webhooks")
        return self.convert_time(row[0]) if row else None
