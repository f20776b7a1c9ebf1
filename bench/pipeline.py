"""2. Pipeline efficiency: how close the daemon keeps the vendor to the configured concurrency.

The sandbox (its own process) answers every ``/api/v1/`` request after 50 ms; the daemon has
``queuenum = 8``, so the ideal is 8 / 0.05 s = 160 registrations/s. A warm-up of 16 adds
fills the provider's caches (token, settings catalogue), then the sandbox's counters are
reset and 2,000 adds of distinct MACs are posted in batches of 500, all within a fraction
of a second, so the backlog is there from the start.

* registrations/s = 2,000 / (MAX(updated_at) - MIN(created_at)) over the 2,000 done rows,
  read from the journal: from the first accept to the last outcome. Target ≥ 95% of ideal.
* vendor calls per registration = the sandbox's request total / 2,000. Target ≤ 1.02.
* with webhooks: the same run again with ``[webhooks]`` posting every notification to a
  receiver in this process (answers 204 at once); its registrations/s against the run
  without. Target ≥ 0.95 of it: the outbox rows ride on the outcome's transaction, and the
  sender has its own task and HTTP client.

Also reported: the ceiling, a plain client (aiohttp, Hawk-signed by mohawk) running 8
loops of PUTs against its own sandbox with the same latency and nothing else to do, which
shows what the sandbox and loopback cost before the daemon adds anything; the bound that
routing by hash sets (a device's queue is fixed, so the queue that drew the most of the
2,000 MACs finishes last; computed with the product's own ``device_slot`` when it is
importable); and events not done (must be 0).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import aiohttp
import mohawk
from aiohttp import web

from bench.common import (
    SANDBOX_KEY_ID,
    SANDBOX_SECRET,
    CpuMeter,
    Database,
    Options,
    Profiler,
    Row,
    Sandbox,
    add_event,
    daemon_with_sandbox,
    database,
    database_server_pid,
    for_each_db,
    free_port,
    http_session,
    mac,
    post_events,
    running,
    utc_epoch,
    wait_until,
    workdir,
)

BENCH = "pipeline"
LATENCY = 0.050  # seconds per vendor request
QUEUENUM = 8
WARM_UP = 16
BATCH = 500
RATE_TARGET = 0.95
CALLS_TARGET = 1.02
WEBHOOKS_TARGET = 0.95


async def run(opts: Options) -> list[Row]:
    with workdir(opts, "pipeline-ceiling") as folder:
        ceiling = await _ceiling(opts, folder)
    ideal = QUEUENUM / LATENCY
    rows = [Row(BENCH, "-", "ceiling: plain client, 8 loops of signed PUTs, same sandbox",
                ceiling, "reg/s", ideal, ceiling / ideal)]

    async def measure(kind: str) -> list[Row]:
        plain, rate = await measure_pipeline(kind, opts)
        return plain + await _with_webhooks(kind, opts, rate)

    return rows + await for_each_db(BENCH, opts, measure)


class Receiver:
    """A webhook receiver in this process: counts what arrives, answers 204."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.count = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.count += 1
        return web.Response(status=204)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def _with_webhooks(kind: str, opts: Options, without: float) -> list[Row]:
    """The pipeline again, every notification posted to a receiver; rate against ``without``."""
    async with Receiver() as receiver:
        hooks = {"url": receiver.url, "secret": "bench-webhook-secret"}
        with_opts = replace(opts, overrides={**opts.overrides, "webhooks": hooks})
        _, rate = await measure_pipeline(kind, with_opts, label="webhooks")
        count = receiver.count
    ratio = rate / without if without else 0.0
    opts.note(f"pipeline {kind} with webhooks: {rate:.1f} reg/s against {without:.1f} without;"
              f" {count} notifications received")
    return [Row(BENCH, kind, "registrations/s with a webhook receiver attached (vs without)",
                rate, "reg/s", without, ratio, f"≥ {WEBHOOKS_TARGET:.0%} of without",
                ratio >= WEBHOOKS_TARGET)]


async def _ceiling(opts: Options, folder: Path) -> float:
    """PUT endpoint rate of 8 loops of Hawk-signed requests (mohawk, aiohttp client) with
    nothing else to do: what the sandbox and loopback allow before the daemon adds any."""
    seconds = 1.0 if opts.quick else 4.0
    sandbox = Sandbox(folder, latency_ms=LATENCY * 1000)
    done = 0

    async def loop(session: aiohttp.ClientSession, index: int, deadline: float) -> None:
        nonlocal done
        number = 0
        while time.monotonic() < deadline:
            address = mac(0xA000 + index, number)
            number += 1
            url = f"{sandbox.api_url}companies/1001/endpoints/{address}"
            body = json.dumps({"mac": address, "autoprovisioning_enabled": True})
            sender = mohawk.Sender({"id": SANDBOX_KEY_ID, "key": SANDBOX_SECRET,
                                    "algorithm": "sha256"}, url, "PUT", content=body,
                                   content_type="application/json")
            async with session.put(url, data=body, headers={
                    "Authorization": sender.request_header,
                    "Content-Type": "application/json"}) as r:
                await r.read()
                if r.status >= 300:
                    raise RuntimeError(f"sandbox answered {r.status}: {await r.text()}")
            done += 1

    async with http_session() as session:
        sandbox.start()
        async with running(sandbox):
            await sandbox.ready(session)
            began = time.monotonic()
            await asyncio.gather(*(loop(session, i, began + seconds)
                                   for i in range(QUEUENUM)))
            return done / (time.monotonic() - began)


def hash_bound(macs: list[str]) -> float | None:
    """Ideal share reachable when each device is pinned to ``slot % queuenum``."""
    try:
        from rps_service.store.base import device_slot
    except ImportError:
        return None
    per_queue = Counter(device_slot("snom", m.upper()) % QUEUENUM for m in macs)
    return len(macs) / QUEUENUM / max(per_queue.values())


async def measure_pipeline(kind: str, opts: Options, label: str = ""
                           ) -> tuple[list[Row], float]:
    """The rows of one run, and its registrations/s."""
    count = 200 if opts.quick else 2000
    ideal = QUEUENUM / LATENCY
    name = f"pipeline-{kind}" + (f"-{label}" if label else "")
    with workdir(opts, name) as folder, database(kind, folder, opts) as db:
        general = {"queuenum": QUEUENUM, "queuecap": 100}
        async with daemon_with_sandbox(folder, db, opts, general,
                                       latency_ms=LATENCY * 1000) as (
                daemon, sandbox, session):
            warm = await post_events(session, daemon.url, [
                add_event(mac(0xFFFF, i)) for i in range(WARM_UP)])
            last_warm = max(warm)
            await wait_until(lambda: _done(db, 0) >= WARM_UP, 60, what="warm-up")
            await sandbox.reset_counts(session)
            macs = [mac(0xB000, i) for i in range(count)]
            meter = CpuMeter({"daemon": daemon.pid, "sandbox": sandbox.pid,
                              "mariadbd": database_server_pid()
                              if kind == "mysql" else None})
            async with Profiler(opts, name, daemon.pid):
                meter.start()
                began = time.monotonic()
                for start in range(0, count, BATCH):
                    await post_events(session, daemon.url, [
                        add_event(m) for m in macs[start:start + BATCH]])
                posted = time.monotonic() - began
                await wait_until(lambda: _finished(db, last_warm) >= count,
                                 within=count / ideal * 4 + 30, every=0.1,
                                 what=f"{count} events finished")
                meter.stop()
            state = await sandbox.state(session)
        opts.note(daemon.trace_report(name.replace("-", " "), count + WARM_UP))
        first, last, done = db.rows(
            "SELECT MIN(created_at), MAX(updated_at), COUNT(*) FROM rps_events"
            " WHERE id > ? AND state = 'done'", [last_warm])[0]
    span = utc_epoch(last) - utc_epoch(first)
    rate = done / span if span > 0 else 0.0
    calls = state["total"] / done if done else float("inf")
    opts.note(f"{name.replace('-', ' ')}: {count} posted in {posted:.2f}s; {done} done in"
              f" {span:.2f}s; vendor requests {state['total']} {state['counts']}; CPU of one core: "
              f"{meter.text()}")
    rows = [
        Row(BENCH, kind, f"registrations/s, {count} adds, queuenum 8, 50 ms vendor", rate,
            "reg/s", ideal, rate / ideal, f"≥ {RATE_TARGET:.0%} of ideal",
            rate >= RATE_TARGET * ideal),
        Row(BENCH, kind, "vendor calls per registration (warm)", calls, "calls",
            target=f"≤ {CALLS_TARGET}", ok=calls <= CALLS_TARGET),
        Row(BENCH, kind, "events not done", count - done, "events", target="= 0",
            ok=done == count),
    ]
    bound = hash_bound(macs)
    if bound is not None:
        rows.insert(1, Row(BENCH, kind, "bound set by hash routing (mean/max queue load)",
                           bound * ideal, "reg/s", ideal, bound))
    return rows, rate


def _done(db: Database, after: int) -> int:
    return int(db.scalar("SELECT COUNT(*) FROM rps_events WHERE id > ? AND state = 'done'",
                         [after]))


def _finished(db: Database, after: int) -> int:
    return int(db.scalar("SELECT COUNT(*) FROM rps_events WHERE id > ? AND state IN"
                         " ('done', 'failed', 'superseded')", [after]))
