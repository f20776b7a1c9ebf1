"""4. Latency: accept-to-done of single events at a steady 50 events/s, 0 ms sandbox.

The client posts one add (distinct MAC) every 20 ms on a fixed schedule, without waiting
for earlier answers (open loop), 1,000 events (``--quick``: 100), after a warm-up of 10.
Per event: done time - accept time, where

* accept time = when the 202 arrived at the client (``time.time()``), and
* done time = the journal's ``updated_at`` of the ``done`` row (naive UTC, the same
  machine clock); the worker stamps it just before the transaction that records the
  outcome, so it is early by that one commit (~0.2 ms on this disk).

Target: p99 ≤ 20 ms. Also reported: the same span measured inside the daemon (journal
``created_at`` → ``updated_at``), and the POST's own round trip.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.common import (
    Database,
    Options,
    Row,
    add_event,
    daemon_with_sandbox,
    database,
    for_each_db,
    mac,
    percentile,
    post_events,
    utc_epoch,
    wait_until,
    workdir,
)

BENCH = "latency"
RATE = 50.0  # events/s
P99_TARGET = 20.0  # ms


async def run(opts: Options) -> list[Row]:
    async def measure(kind: str) -> list[Row]:
        return await _latency(kind, opts)

    return await for_each_db(BENCH, opts, measure)


async def _post_at(session: aiohttp.ClientSession, url: str, when: float, address: str,
                   accepted: dict[int, tuple[float, float]]) -> None:
    await asyncio.sleep(max(0.0, when - time.monotonic()))
    sent = time.monotonic()
    ids = await post_events(session, url, [add_event(address)])
    accepted[ids[0]] = (time.time(), time.monotonic() - sent)


async def _latency(kind: str, opts: Options) -> list[Row]:
    count = 100 if opts.quick else 1000
    accepted: dict[int, tuple[float, float]] = {}
    with workdir(opts, f"latency-{kind}") as folder, database(kind, folder, opts) as db:
        async with daemon_with_sandbox(folder, db, opts, {"queuenum": 4, "queuecap": 100},
                                       latency_ms=0) as (
                daemon, _, session):
            warm = await post_events(session, daemon.url,
                                     [add_event(mac(0xFFFE, i)) for i in range(10)])
            await wait_until(lambda: _done_after(db, 0) >= len(warm), 30,
                             what="warm-up")
            start = time.monotonic() + 0.1
            await asyncio.gather(*(
                _post_at(session, daemon.url, start + i / RATE, mac(0xD000, i),
                         accepted)
                for i in range(count)))
            pace = (time.monotonic() - start) / count
            await wait_until(lambda: _done_after(db, max(warm)) >= count, 30,
                             what=f"{count} events done")
        opts.note(daemon.trace_report(f"latency {kind}", count + len(warm)))
        rows = db.rows("SELECT id, created_at, updated_at FROM rps_events"
                       " WHERE id > ? AND state = 'done'", [max(warm)])
    done = {int(i): (utc_epoch(c), utc_epoch(u)) for i, c, u in rows}
    spans = [(done[i][1] - accepted[i][0]) * 1000 for i in accepted if i in done]
    inside = [(u - c) * 1000 for c, u in done.values()]
    round_trips = [rt * 1000 for _, rt in accepted.values()]
    negative = sum(1 for s in spans if s < 0)
    opts.note(f"latency {kind}: {count} events at {1 / pace:.1f}/s; {len(spans)} done; "
              f"{negative} finished before their 202 arrived (counted as negative spans); "
              f"max {max(spans):.1f} ms")
    p99 = percentile(spans, 99)
    return [
        Row(BENCH, kind, f"accept→done p50 ({count} events at 50/s)", percentile(spans, 50),
            "ms"),
        Row(BENCH, kind, f"accept→done p99 ({count} events at 50/s)", p99, "ms",
            target=f"≤ {P99_TARGET:g} ms", ok=p99 <= P99_TARGET),
        Row(BENCH, kind, "in the daemon: created_at→updated_at p99", percentile(inside, 99),
            "ms"),
        Row(BENCH, kind, "POST /events round trip p99", percentile(round_trips, 99), "ms"),
    ]


def _done_after(db: Database, after: int) -> int:
    return int(db.scalar("SELECT COUNT(*) FROM rps_events WHERE id > ? AND state = 'done'",
                         [after]))
