"""Several instances on one MariaDB: scale-out, and what sharing the rate costs the database.

One sandbox (its own process) answers every ``/api/v1/`` request after 50 ms; one, two and
three daemons (``queuenum = 8`` each) share a fresh database and the sandbox's one SRAPS
account. Each run warms every daemon (its provider caches, and its claim on the account's
rate, which a newcomer waits two heartbeats and a second to use), resets the sandbox's
counters, posts adds of distinct MACs round-robin to the daemons and waits until all are
finished.

* registrations/s with N instances = done / (last outcome - first accept), from the journal;
  the ratio column compares it with one instance's figure from the same run.
* database statements per vendor call spent on the shared rate and pauses = the sum of the
  daemons' ``rps_cluster_queries_total`` (heartbeats, pause writes and polls) / the
  sandbox's request total. It is time-driven (a heartbeat every second, a pause poll every
  0.5 s per instance), not per call, so it falls as the call rate rises.
* the same with ``rate_limit`` binding (20/s for the account): the rate shared by the
  instances, as at a vendor that throttles. An instance idle for 3 s gives up its claim; one
  that joins a busy account waits about 3 s for its share while the others already make
  room, so a short run shows that transition too.

MariaDB only (SQLite is one instance).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp

from bench.common import (
    Daemon,
    Database,
    Options,
    Row,
    Sandbox,
    add_event,
    database,
    for_each_db,
    http_session,
    mac,
    post_events,
    running,
    utc_epoch,
    wait_until,
    workdir,
)

BENCH = "instances"
LATENCY_MS = 50.0
QUEUENUM = 8
WARM_UP = 8
BOUND_RATE = 20  # rate_limit of the rate-bound run
BATCH = 10  # events per POST, round-robin over the daemons
_QUERIES = re.compile(r"^rps_cluster_queries_total ([0-9.e+]+)$", re.MULTILINE)


async def run(opts: Options) -> list[Row]:
    async def measure(kind: str) -> list[Row]:
        if kind != "mysql":
            return []
        rows: list[Row] = []
        one = 0.0
        for count in (1, 2, 3):
            rate, per_call = await _scale(opts, count, rate_limit=1000)
            one = one or rate
            rows += [
                Row(BENCH, kind, f"registrations/s, {count} instance(s), 50 ms vendor", rate,
                    "reg/s", one, rate / one if one else None),
                Row(BENCH, kind, f"shared-rate statements per vendor call, {count} "
                    "instance(s)", per_call, "stmt/call"),
            ]
        rate, per_call = await _scale(opts, 3, rate_limit=BOUND_RATE)
        rows += [
            # A warm registration is one call (the PUT): the ideal is rate_limit.
            Row(BENCH, kind, f"registrations/s, 3 instances, rate_limit {BOUND_RATE}/s", rate,
                "reg/s", BOUND_RATE, rate / BOUND_RATE),
            Row(BENCH, kind, f"shared-rate statements per vendor call, rate_limit "
                f"{BOUND_RATE}/s", per_call, "stmt/call"),
        ]
        return rows

    return await for_each_db(BENCH, opts, measure)


async def _scale(opts: Options, count: int, rate_limit: float) -> tuple[float, float]:
    """Registrations/s and shared-rate statements per vendor call with ``count`` daemons."""
    events = (60 if opts.quick else 600) if rate_limit >= 1000 else (40 if opts.quick else 200)
    label = f"instances-{count}-{rate_limit:g}"
    with workdir(opts, label) as folder, database("mysql", folder, opts) as db:
        sandbox = Sandbox(folder, latency_ms=LATENCY_MS)
        daemons = [Daemon(folder, db.dsn, opts, name=f"daemon{n}",
                          general={"queuenum": QUEUENUM, "queuecap": 50},
                          snom={**sandbox.snom(), "rate_limit": rate_limit})
                   for n in range(count)]
        async with http_session() as session:
            sandbox.start()
            async with running(sandbox):
                await sandbox.ready(session)
                for daemon in daemons:  # one at a time: the first migrates the schema
                    daemon.start()
                    await daemon.ready(session)
                async with running(*daemons):
                    return await _measure(opts, session, db, sandbox, daemons, events,
                                          label, folder)
    raise AssertionError("unreachable")


async def _measure(opts: Options, session: aiohttp.ClientSession, db: Database,
                   sandbox: Sandbox, daemons: list[Daemon], events: int, label: str,
                   folder: Path) -> tuple[float, float]:
    # Every instance warms its caches and claims the account (a newcomer's claim waits two
    # heartbeats and a second before it sends): the figure is the steady state.
    warm = [0]
    for n, daemon in enumerate(daemons):
        warm += await post_events(session, daemon.url, [
            add_event(mac(0xFFF0 + n, i)) for i in range(WARM_UP)])
    await wait_until(lambda: _finished(db, 0) >= WARM_UP * len(daemons), 60, what="warm-up")
    await sandbox.reset_counts(session)
    before = [await _queries(session, d) for d in daemons]
    began = time.monotonic()
    for start in range(0, events, BATCH):
        batch = [add_event(mac(0xC000, i)) for i in range(start, min(start + BATCH, events))]
        await post_events(session, daemons[(start // BATCH) % len(daemons)].url, batch)
    await wait_until(lambda: _finished(db, max(warm)) >= events, within=events + 60,
                     what=f"{events} events finished")
    spent = sum([await _queries(session, d) for d in daemons]) - sum(before)
    state = await sandbox.state(session)
    first, last, done = db.rows(
        "SELECT MIN(created_at), MAX(updated_at), COUNT(*) FROM rps_events"
        " WHERE id > ? AND state = 'done'", [max(warm)])[0]
    span = utc_epoch(last) - utc_epoch(first)
    calls = int(state["total"])
    opts.note(f"{label}: {done} of {events} done in {span:.2f}s (posting took "
              f"{time.monotonic() - began:.1f}s overall); vendor requests {calls}; shared-rate "
              f"statements {spent:g}; folder {folder.name}")
    return (done / span if span > 0 else 0.0), (spent / calls if calls else float("nan"))


async def _queries(session: aiohttp.ClientSession, daemon: Daemon) -> float:
    async with session.get(f"{daemon.url}/metrics") as r:
        text = await r.text()
    found = _QUERIES.search(text)
    return float(found.group(1)) if found else 0.0


def _finished(db: Database, after: int) -> int:
    return int(db.scalar("SELECT COUNT(*) FROM rps_events WHERE id > ? AND state IN"
                         " ('done', 'failed', 'superseded')", [after]))
