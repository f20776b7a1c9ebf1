"""Throttling: a vendor that answers 429 above N requests/s, and a daemon told its rate.

The sandbox throttles each account at N = 100 requests/s (a token bucket: bursts of up to N,
refilled at N/s; over it, 429 with Retry-After); the daemon has ``rate_limit = 100`` for the
account, ``keep_portal_settings = false`` (one request per warm registration) and 8 queues,
more than the rate needs (the sandbox answers in 20 ms: 8 queues could make 400 requests/s).
After a warm-up, 10,000 adds of distinct MACs are posted at once.

* registrations/s = 10,000 / (MAX(updated_at) - MIN(created_at)) of the done rows: from the
  first accept to the last outcome. Target ≥ 95% of N: the limiter keeps the account busy.
* share of requests answered 429: target < 1%: the limiter keeps under the vendor's rate,
  and the few 429s that jitter causes pause the whole account instead of piling up.
"""

from __future__ import annotations

import time

from bench.common import (
    Options,
    Row,
    add_event,
    daemon_with_sandbox,
    database,
    for_each_db,
    mac,
    post_events,
    utc_epoch,
    wait_until,
    workdir,
)

BENCH = "throttle"
RATE = 100.0  # the vendor's limit, requests/s per account
LATENCY_MS = 20.0
BATCH = 1000
RATE_TARGET = 0.95
THROTTLED_TARGET = 0.01


async def run(opts: Options) -> list[Row]:
    async def measure(kind: str) -> list[Row]:
        return await _throttle(kind, opts)

    return await for_each_db(BENCH, opts, measure)


async def _throttle(kind: str, opts: Options) -> list[Row]:
    count = 400 if opts.quick else 10_000
    with workdir(opts, f"throttle-{kind}") as folder, database(kind, folder, opts) as db:
        general = {"queuenum": 8, "queuecap": 200}
        snom = {"rate_limit": RATE, "keep_portal_settings": "false"}
        async with daemon_with_sandbox(folder, db, opts, general, latency_ms=LATENCY_MS,
                                       snom=snom) as (daemon, sandbox, session):
            warm = await post_events(session, daemon.url, [add_event(mac(0xFFFE, 0))])
            await wait_until(lambda: _finished(db, 0) >= 1, 60, what="warm-up")
            await sandbox.faults(session, throttle_rate=RATE)
            await sandbox.reset_counts(session)
            began = time.monotonic()
            for start in range(0, count, BATCH):
                await post_events(session, daemon.url, [
                    add_event(mac(0xC000, i)) for i in range(start, min(start + BATCH, count))])
            await wait_until(lambda: _finished(db, warm[0]) >= count,
                             within=count / RATE * 3 + 60, every=0.2,
                             what=f"{count} events finished")
            elapsed = time.monotonic() - began
            state = await sandbox.state(session)
        first, last, done = db.rows(
            "SELECT MIN(created_at), MAX(updated_at), COUNT(*) FROM rps_events"
            " WHERE id > ? AND state = 'done'", [warm[0]])[0]
    span = utc_epoch(last) - utc_epoch(first)
    rate = done / span if span > 0 else 0.0
    throttled = state["throttled"] / state["total"] if state["total"] else 0.0
    opts.note(f"throttle {kind}: {done} of {count} done in {span:.1f}s ({elapsed:.1f}s "
              f"wall); vendor requests {state['total']}, answered 429: {state['throttled']}")
    return [
        Row(BENCH, kind, f"registrations/s, {count} adds, vendor throttles at {RATE:g}/s, "
            f"rate_limit {RATE:g}", rate, "reg/s", RATE, rate / RATE,
            f"≥ {RATE_TARGET:.0%} of N", rate >= RATE_TARGET * RATE),
        Row(BENCH, kind, "requests answered 429", throttled * 100, "%",
            target=f"< {THROTTLED_TARGET:.0%}", ok=throttled < THROTTLED_TARGET),
        Row(BENCH, kind, "events not done", count - done, "events", target="= 0",
            ok=done == count),
    ]


def _finished(db: object, after: int) -> int:
    return int(db.scalar(  # type: ignore[attr-defined]
        "SELECT COUNT(*) FROM rps_events WHERE id > ? AND state IN"
        " ('done', 'failed', 'superseded')", [after]))
