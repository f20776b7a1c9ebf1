"""1. Intake: events/s accepted (202, committed) by ``POST /events``.

Two shapes, each for a fixed time after a short warm-up, with the same client (wrk, one
thread) against the bare aiohttp baseline (:mod:`bench.bare`) and against the daemon:
single-event requests from 64 connections, and arrays of 500 events from 8 connections.

The daemon runs with ``queuenum = 4``, ``queuecap = 100``, INFO to a file, against a
sandbox that is *paused*: the first 4 events are held in flight and the distributor fills
the 400 queue places, then has nothing to do (full queues need no journal query), so the
listener has the process to itself, as on a real burst that outruns the vendor. Pointing
the provider at a dead API instead would make the workers fail, back off and re-lease all
through the run. ``drain_timeout = 0.5`` so the stop does not wait on the held requests.

Targets on MariaDB: single-event ≥ 60% of bare; batches ≥ 40,000 events/s.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.common import (
    PAUSED_GENERAL,
    PYTHON,
    CpuMeter,
    Database,
    Load,
    Options,
    Proc,
    Profiler,
    Row,
    daemon_with_sandbox,
    database,
    database_server_pid,
    for_each_db,
    free_port,
    http_session,
    load,
    running,
    workdir,
)

BENCH = "intake"
# (key, label, events per request, connections)
SHAPES = (("single", "single events, 64 clients", 1, 64),
          ("batch", "batches of 500, 8 clients", 500, 8))
SINGLE_TARGET = 0.60  # of the bare handler's rate, MariaDB
BATCH_TARGET = 40_000.0  # events/s, MariaDB


def _times(opts: Options) -> tuple[int, int]:
    """(warm-up, measured) seconds per shape."""
    return (1, 1) if opts.quick else (2, 10)



async def run(opts: Options) -> list[Row]:
    rows: list[Row] = []
    with workdir(opts, "intake-bare") as folder:
        baseline = await _bare(opts, folder)
    for key, label, _, _ in SHAPES:
        rows.append(Row(BENCH, "-", f"bare aiohttp, {label}", baseline[key].events_per_s,
                        "events/s", target="baseline"))

    async def measure(kind: str) -> list[Row]:
        return await _daemon(kind, opts, baseline)

    return rows + await for_each_db(BENCH, opts, measure)


async def _bare(opts: Options, folder: Path) -> dict[str, Load]:
    port = free_port()
    cmd = [PYTHON, "-m", "bench.bare", "--port", str(port)]
    bare = Proc("bare", cmd, folder)
    url = f"http://127.0.0.1:{port}"
    results: dict[str, Load] = {}
    async with http_session() as session:
        bare.start()
        async with running(bare):
            await bare.wait_http(session, f"{url}/health")
            for key, _, batch, connections in SHAPES:
                results[key], _ = await _measure(opts, url, batch, connections, "bare",
                                                 {"bare": bare.pid}, f"intake-bare-{key}")
    return results


async def _measure(opts: Options, url: str, batch: int, connections: int, who: str,
                   pids: dict[str, int | None], profile: str,
                   db: Database | None = None) -> tuple[Load, int]:
    """The measured run, and all events answered 202 (the warm-up's included)."""
    warm, seconds = _times(opts)
    warm_up = await load(url, batch=batch, connections=connections, seconds=warm, opts=opts)
    meter = CpuMeter(pids)
    async with Profiler(opts, profile, pids[who] or 0):
        meter.start()
        stored: list[int] = []
        sampler = asyncio.create_task(_per_second(db, stored)) if db is not None else None
        try:
            result = await load(url, batch=batch, connections=connections,
                                seconds=seconds, opts=opts)
        finally:
            if sampler is not None:
                sampler.cancel()
        meter.stop()
    bad = result.requests - result.accepted
    rates = "; stored per second: " + " ".join(f"{n:,}" for n in stored) if stored else ""
    opts.note(
        f"intake {profile.removeprefix('intake-')}: {result.requests:,} requests in "
        f"{result.duration:.1f}s ({bad} not 2xx, {result.errors} socket errors), latency "
        f"p50 {result.p50_ms:.1f} ms p99 {result.p99_ms:.1f} ms; CPU of one core: "
        f"{meter.text()}, {result.tool} {result.client_cpu:.0f}%{rates}")
    return result, (warm_up.accepted + result.accepted) * batch


async def _per_second(db: Database, samples: list[int]) -> None:
    """Events stored in each second of the run (MAX(id) is an index lookup): shows whether
    the rate holds, climbs or decays as the journal grows."""
    query = "SELECT MAX(id) FROM rps_events"
    last = int(await asyncio.to_thread(db.scalar, query) or 0)
    while True:
        await asyncio.sleep(1.0)
        now = int(await asyncio.to_thread(db.scalar, query) or 0)
        samples.append(now - last)
        last = now


async def _daemon(kind: str, opts: Options, baseline: dict[str, Load]) -> list[Row]:
    rows: list[Row] = []
    acknowledged = 0
    with workdir(opts, f"intake-{kind}") as folder, database(kind, folder, opts) as db:
        async with daemon_with_sandbox(folder, db, opts, PAUSED_GENERAL,
                                       paused=True) as (daemon, _, _):
            pids = {"daemon": daemon.pid,
                    "mariadbd": database_server_pid() if kind == "mysql" else None}
            for key, label, batch, connections in SHAPES:
                result, answered = await _measure(
                    opts, daemon.url, batch, connections, "daemon", pids,
                    f"intake-{kind}-{key}", db)
                acknowledged += answered
                rows.append(_row(kind, key, label, result, baseline[key]))
        opts.note(daemon.trace_report(f"intake {kind} (both shapes)", acknowledged))
        # After the stop: every event answered 202 must be in the journal (requests still
        # in flight when wrk stopped may be stored without being counted, hence ≥).
        stored = int(db.scalar("SELECT COUNT(*) FROM rps_events"))
    rows.append(Row(BENCH, kind, "events stored / answered 202", stored, "events",
                    acknowledged, stored / acknowledged if acknowledged else None,
                    "≥ 100%", stored >= acknowledged))
    return rows


def _row(kind: str, key: str, label: str, result: Load, bare: Load) -> Row:
    value = result.events_per_s
    ratio = value / bare.events_per_s if bare.events_per_s else None
    if kind != "mysql":
        return Row(BENCH, kind, label, value, "events/s", bare.events_per_s, ratio)
    if key == "single":
        return Row(BENCH, kind, label, value, "events/s", bare.events_per_s, ratio,
                   f"≥ {SINGLE_TARGET:.0%} of bare", ratio is not None and ratio >= SINGLE_TARGET)
    return Row(BENCH, kind, label, value, "events/s", bare.events_per_s, ratio,
               f"≥ {BATCH_TARGET:,.0f}/s", value >= BATCH_TARGET)
