"""Group commit: concurrent writers share one transaction.

A commit (an fsync on MySQL with ``innodb_flush_log_at_trx_commit = 1``) and the round
trips around it cost far more than the rows in it. Writes that arrive while a transaction
is being written wait and go together in the next one, so a burst of 64 single-event POST
requests, or 8 workers' outcomes landing together, costs a few commits instead of one
each, with no added delay when writes come one at a time.

Each write keeps its own result. If a shared transaction fails, each write is retried on
its own, so one writer's problem never fails another's; but when the database is away
(:class:`StoreUnavailable`) every writer of the round is told at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from rps_service.store.sql import StoreUnavailable

Item = TypeVar("Item")
Result = TypeVar("Result")


def _one(item: object) -> int:
    return 1


class GroupCommit(Generic[Item, Result]):
    """Coalesces concurrent writes into one ``write(items) -> results`` call per round.

    ``size`` weighs an item (e.g. the events of a request); a round holds at most
    ``limit`` of that weight, or one item when a single item is heavier.
    """

    def __init__(
        self,
        write: Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        name: str,
        size: Callable[[Item], int] = _one,
        limit: int = 1000,
    ) -> None:
        self._write_items = write
        self._name = name
        self._size = size
        self._limit = limit
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Write ``item`` in the next shared transaction; its own result."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._run(), name=self._name)
        return await future

    async def _run(self) -> None:
        while self._waiting:
            batch: list[tuple[Item, asyncio.Future[Result]]] = []
            weight = 0
            while self._waiting and (
                not batch or weight + self._size(self._waiting[0][0]) <= self._limit
            ):
                batch.append(self._waiting.pop(0))
                weight += self._size(batch[-1][0])
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        if len(batch) > 1:
            try:
                results = await self._write_items([item for item, _ in batch])
            except StoreUnavailable as exc:
                for _, future in batch:
                    _fail(future, exc)
                return
            except Exception:  # noqa: S110 - each write is retried alone below
                pass
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    _resolve(future, result)
                return
        for item, future in batch:
            try:
                (result,) = await self._write_items([item])
            except Exception as exc:
                _fail(future, exc)
            else:
                _resolve(future, result)


# A future is done already when its writer stopped waiting (cancelled).


def _resolve(future: asyncio.Future[Result], result: Result) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Result], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
