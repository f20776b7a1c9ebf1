"""``[general] retention_days``: old finished events are deleted in batches, never a
device's newest and never one still waiting or running; on SQLite and MariaDB alike."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from rps_service import logs
from rps_service.clock import utcnow
from rps_service.models import NewEvent
from rps_service.service import Service, delete_old_events
from rps_service.store import Store
from tests.fakes import ScriptedProvider

OLD = utcnow() - timedelta(days=40)
CUTOFF = utcnow() - timedelta(days=30)


async def journal(store: Store, rows: list[tuple[str, str, str, datetime]]) -> list[int]:
    """Events of (provider, mac, state, updated_at), in order; their ids."""
    stored = await store.insert_events(
        [NewEvent("add", provider, 1, mac, {}, None) for provider, mac, _, _ in rows], OLD)
    ids = [row.id for row in stored]
    async with store.transaction() as tx:
        for event_id, (_, _, state, when) in zip(ids, rows, strict=True):
            await tx.execute("UPDATE rps_events SET state = ?, updated_at = ? WHERE id = ?",
                             [state, when, event_id])
    return ids


async def remaining(store: Store) -> set[int]:
    return {e.id for e in await store.list_events(limit=5000)}


async def test_only_old_finished_events_that_are_not_a_devices_newest(store: Store) -> None:
    now = utcnow()
    ids = await journal(store, [
        ("snom", "000413000001", "done", OLD),        # 0 deleted
        ("snom", "000413000001", "failed", OLD),      # 1 deleted
        ("snom", "000413000001", "superseded", OLD),  # 2 deleted
        ("snom", "000413000001", "done", OLD),        # 3 kept: the device's newest
        ("snom", "000413000002", "done", OLD),        # 4 deleted
        ("snom", "000413000002", "pending", OLD),     # 5 kept: not finished
        ("snom", "000413000003", "running", OLD),     # 6 kept: not finished
        ("snom", "000413000003", "failed", OLD),      # 7 kept: newest
        ("snom", "000413000004", "done", now),        # 8 kept: recent
        ("snom", "000413000004", "done", now),        # 9 kept: recent (and newest)
        ("other", "000413000001", "done", OLD),       # 10 kept: newest of (other, mac)
    ])
    assert await store.delete_finished_events(CUTOFF, 500) == 4
    assert await remaining(store) == {ids[i] for i in (3, 5, 6, 7, 8, 9, 10)}
    assert await store.delete_finished_events(CUTOFF, 500) == 0


async def test_batches_oldest_first(store: Store) -> None:
    ids = await journal(store, [("snom", "000413000001", "done", OLD)] * 1203)
    assert await store.delete_finished_events(CUTOFF, 500) == 500
    assert min(await remaining(store)) == ids[500]  # the oldest went first
    assert [await store.delete_finished_events(CUTOFF, 500) for _ in range(3)] == [500, 202, 0]
    assert await remaining(store) == {ids[-1]}


async def test_delete_old_events_runs_batches_and_logs_once(store: Store, tmp_path: Path
                                                            ) -> None:
    await journal(store, [("snom", "000413000001", "superseded", OLD)] * 1001)
    sink = logs.configure(str(tmp_path / "rps.log"))
    try:
        assert await delete_old_events(store, 30, utcnow()) == 1000
        assert await delete_old_events(store, 30, utcnow()) == 0
    finally:
        sink.close()
        structlog.reset_defaults()
    lines = (tmp_path / "rps.log").read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "INFO (DATABASE): Old events deleted. Count=1000"]


async def test_the_daemon_deletes_at_start_and_then_every_interval(
    make_settings: Any, tmp_path: Path, store: Store,
) -> None:
    ids = await journal(store, [("fake", "000413000001", "done", OLD)] * 3)
    log_file = tmp_path / "daemon.log"
    sink = logs.configure(str(log_file))
    service = Service(make_settings({"retention_days": 30, "log_file": str(log_file)}),
                      providers={"fake": ScriptedProvider()})
    service.retention_every = 0.2
    try:
        await service.start()
        await _wait_for(lambda: "Old events deleted. Count=2" in log_file.read_text())
        assert await remaining(store) == {ids[-1]}
        # Later runs catch what has aged since.
        more = await journal(store, [("fake", "000413000002", "failed", OLD)] * 2)
        await _wait_for(lambda: "Old events deleted. Count=1" in log_file.read_text())
        assert await remaining(store) == {ids[-1], more[-1]}
        assert "retention" in [t.get_name() for t in service.ops_tasks]
    finally:
        await service.stop()
        sink.close()
        structlog.reset_defaults()


async def test_retention_days_0_keeps_everything(make_settings: Any, store: Store) -> None:
    ids = await journal(store, [("fake", "000413000001", "done", OLD)] * 3)
    service = Service(make_settings({"retention_days": 0}), providers={"fake": ScriptedProvider()})
    await service.start()
    try:
        assert "retention" not in [t.get_name() for t in service.ops_tasks]
    finally:
        await service.stop()
    assert await remaining(store) == set(ids)


async def _wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not reached in time"
        await asyncio.sleep(0.02)
