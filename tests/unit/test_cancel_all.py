"""Stopping the daemon's tasks survives a lost cancellation (Python 3.11's wait_for race)."""

from __future__ import annotations

import asyncio

from rps_service.service import cancel_all


async def test_a_task_that_lost_its_cancel_is_cancelled_again() -> None:
    swallowed = []

    async def retention_like() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.append(True)  # as a cancel lost inside wait_for looks to the task
        await asyncio.sleep(3600)

    async def plain() -> None:
        await asyncio.sleep(3600)

    tasks = [asyncio.create_task(retention_like()), asyncio.create_task(plain())]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all(tasks), timeout=5)
    assert swallowed == [True] and all(task.cancelled() for task in tasks)
