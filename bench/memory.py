"""3. Memory: the daemon's RSS with a large backlog of pending events.

The sandbox is paused, so nothing completes: the 4 workers each hold one request and the
distributor fills the 400 queue places; the rest must wait in the journal, not in memory.
RSS (``VmRSS`` of ``/proc/<pid>/status``) is read idle 1 s after the start, after 10,000
events (the first 10 batches of 1,000), after all 100,000, and again 10 s later.

Targets: RSS with the backlog ≤ idle + 30 MB (both samples at 100,000), and no growth with
the backlog: RSS at 100,000 - RSS at 10,000 ≤ 5 MB (less than 60 bytes per extra pending
event; anything held per event costs more than that in Python).
"""

from __future__ import annotations

import asyncio
import time

from bench.common import (
    PAUSED_GENERAL,
    Options,
    Row,
    add_event,
    daemon_with_sandbox,
    database,
    for_each_db,
    mac,
    post_events,
    workdir,
)

BENCH = "memory"
BATCH = 1000
ABOVE_IDLE = 30.0  # MB
GROWTH = 5.0  # MB from 10% to 100% of the backlog


async def run(opts: Options) -> list[Row]:
    async def measure(kind: str) -> list[Row]:
        return await _memory(kind, opts)

    return await for_each_db(BENCH, opts, measure)


async def _memory(kind: str, opts: Options) -> list[Row]:
    total = 10_000 if opts.quick else 100_000
    tenth = total // 10
    settle = 1.0 if opts.quick else 10.0
    with workdir(opts, f"memory-{kind}") as folder, database(kind, folder, opts) as db:
        async with daemon_with_sandbox(folder, db, opts, PAUSED_GENERAL, paused=True) as (
                daemon, _, session):
            await asyncio.sleep(1.0)
            idle = daemon.rss_mb()
            began = time.monotonic()
            at_tenth = idle
            for start in range(0, total, BATCH):
                await post_events(session, daemon.url, [
                    add_event(mac(0xC000, i)) for i in range(start, start + BATCH)])
                if start + BATCH == tenth:
                    at_tenth = daemon.rss_mb()
            posting = time.monotonic() - began
            full = daemon.rss_mb()
            await asyncio.sleep(settle)
            later = daemon.rss_mb()
            async with session.get(f"{daemon.url}/health") as r:
                backlog = (await r.json()).get("backlog", {})
        stored = int(db.scalar("SELECT COUNT(*) FROM rps_events"))
    opts.note(f"memory {kind}: {total:,} posted in {posting:.1f}s ({total / posting:,.0f}"
              f" events/s); backlog {backlog}; {stored:,} rows")
    limit = idle + ABOVE_IDLE
    return [
        Row(BENCH, kind, "RSS idle after start", idle, "MB"),
        Row(BENCH, kind, f"RSS with {tenth:,} pending", at_tenth, "MB", idle),
        Row(BENCH, kind, f"RSS with {total:,} pending, after intake", full, "MB", idle,
            full / idle, f"≤ idle + {ABOVE_IDLE:g} MB", full <= limit),
        Row(BENCH, kind, f"RSS with {total:,} pending, {settle:g} s later", later, "MB", idle,
            later / idle, f"≤ idle + {ABOVE_IDLE:g} MB", later <= limit),
        Row(BENCH, kind, f"RSS growth {tenth:,} → {total:,} pending", later - at_tenth, "MB",
            target=f"≤ {GROWTH:g} MB", ok=later - at_tenth <= GROWTH),
    ]
