"""Group commit for the listener: concurrent POST /events share one transaction.

A commit (an fsync on MySQL with ``innodb_flush_log_at_trx_commit = 1``) costs far more
than the inserts in it. Requests that arrive while a transaction is being written wait
and go together in the next one, so a burst of 64 single-event requests costs a few
commits instead of 64, with no added delay when requests come one at a time. Each
request's events still succeed or fail together; if a shared transaction fails, each
request is retried on its own so one request's problem never fails another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from rps_service.models import NewEvent
from rps_service.store.sql import Inserted

InsertFn = Callable[[Sequence[NewEvent], datetime], Awaitable[list[Inserted]]]
Waiting = tuple[Sequence[NewEvent], datetime, asyncio.Future[list[Inserted]]]
MAX_EVENTS_PER_COMMIT = 5000  # keeps one statement well under max_allowed_packet


class GroupCommit:
    """Coalesces concurrent inserts into one transaction per round."""

    def __init__(self, insert: InsertFn) -> None:
        self._insert = insert
        self._waiting: list[Waiting] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, events: Sequence[NewEvent], now: datetime) -> list[Inserted]:
        """Store ``events`` atomically, in the next shared transaction."""
        future: asyncio.Future[list[Inserted]] = asyncio.get_running_loop().create_future()
        self._waiting.append((events, now, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="intake-commit")
        return await future

    async def _write(self) -> None:
        while self._waiting:
            batch: list[Waiting] = []
            size = 0
            while self._waiting and (not batch or size + len(self._waiting[0][0])
                                     <= MAX_EVENTS_PER_COMMIT):
                item = self._waiting.pop(0)
                batch.append(item)
                size += len(item[0])
            # The newest request's time: no event is stamped before it arrived.
            await self._commit(batch, max(now for _, now, _ in batch))

    async def _commit(self, batch: list[Waiting], now: datetime) -> None:
        if len(batch) > 1:
            try:
                rows = await self._insert([e for events, _, _ in batch for e in events], now)
            except Exception:  # noqa: S110 - each request is retried alone below
                pass
            else:
                start = 0
                for events, _, future in batch:
                    if not future.done():
                        future.set_result(rows[start : start + len(events)])
                    start += len(events)
                return
        for events, when, future in batch:
            try:
                result = await self._insert(events, when)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
