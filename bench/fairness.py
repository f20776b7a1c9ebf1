"""Fair share: single events of one account or tenant while another holds a backlog.

The sandbox answers in 20 ms; the daemon has ``rate_limit = 50`` for Snom (one request per
warm registration, ``keep_portal_settings = false``), 4 queues and ``mode = tenant``: server
1 and server 3 store the same keys (one SRAPS account, one lane), server 2 another
account's. Server 1 gets a backlog of 10,000 adds posted at once (it needs 200 s at its
rate); then, one after another, single adds for server 2 and server 3 (after a warm-up add
each), each timed from its 202 to ``done`` (the API is polled every 10 ms):

* idle account (server 2): target p99 ≤ 1 s plus the vendor's latency.
* shared account (server 3): servers take turns on the account, so the single add waits
  for at most one call of server 1: same target.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bench.common import (
    SANDBOX_KEY_ID,
    SANDBOX_SECRET,
    Options,
    Row,
    daemon_with_sandbox,
    database,
    for_each_db,
    mac,
    percentile,
    post_events,
    workdir,
)

#: The sandbox's seeded key of another SRAPS company (README, sandbox).
OTHER_KEY_ID = "other-key"
OTHER_SECRET = "other-secret"  # noqa: S105 - a published fake demo key

BENCH = "fairness"
RATE = 50.0
LATENCY_MS = 20.0
BATCH = 1000
TARGET = 1.0 + LATENCY_MS / 1000  # seconds, p99 from 202 to done


async def run(opts: Options) -> list[Row]:
    async def measure(kind: str) -> list[Row]:
        return await _fairness(kind, opts)

    return await for_each_db(BENCH, opts, measure)


async def _fairness(kind: str, opts: Options) -> list[Row]:
    backlog = 200 if opts.quick else 10_000
    singles = 3 if opts.quick else 40
    times: dict[int, list[float]] = {2: [], 3: []}
    with workdir(opts, f"fairness-{kind}") as folder, database(kind, folder, opts) as db:
        general = {"queuenum": 4, "queuecap": 100, "mode": "tenant"}
        async with daemon_with_sandbox(folder, db, opts, general, latency_ms=LATENCY_MS,
                                       snom={"rate_limit": RATE}) as (daemon, _, session):
            for server, key, secret in ((1, SANDBOX_KEY_ID, SANDBOX_SECRET),
                                        (2, OTHER_KEY_ID, OTHER_SECRET),
                                        (3, SANDBOX_KEY_ID, SANDBOX_SECRET)):
                await _credentials(session, daemon.url, server, key, secret)
            for server in times:  # warm: token, catalogue
                await _single(session, daemon.url, mac(0xF000 + server, 0), server)
            for start in range(0, backlog, BATCH):
                await post_events(session, daemon.url, [
                    _add(mac(0xF001, i), 1) for i in range(start, min(start + BATCH, backlog))])
            for i in range(1, singles + 1):
                for server, took in times.items():
                    took.append(await _single(session, daemon.url, mac(0xF000 + server, i),
                                              server))
    rows = []
    for server, label in ((2, "idle account"), (3, "shared account")):
        p50, p99 = percentile(times[server], 50), percentile(times[server], 99)
        opts.note(f"fairness {kind} {label}: {singles} single adds behind a backlog of "
                  f"{backlog}: " + ", ".join(f"{t * 1000:.0f}" for t in times[server]) + " ms")
        figure = f"202→done of a single add, {label}, behind {backlog} adds at {RATE:g}/s"
        rows += [
            Row(BENCH, kind, f"{figure}, p50", p50 * 1000, "ms"),
            Row(BENCH, kind, f"{figure}, p99", p99 * 1000, "ms",
                target=f"≤ {TARGET * 1000:.0f} ms", ok=p99 <= TARGET),
        ]
    return rows


def _add(address: str, server: int) -> dict[str, Any]:
    return {"action": "add", "provider": "snom", "mac": address, "server": server}


async def _credentials(session: aiohttp.ClientSession, url: str, server: int, key: str,
                       secret: str) -> None:
    body = {"access_key_id": key, "access_key_secret": secret}
    async with session.put(f"{url}/providers/snom/credentials/{server}", json=body) as r:
        if r.status != 204:
            raise RuntimeError(f"credentials of server {server}: {r.status} {await r.text()}")


async def _single(session: aiohttp.ClientSession, url: str, address: str, server: int
                  ) -> float:
    """Seconds from the 202 of one add for ``server`` to its ``done``."""
    [event_id] = await post_events(session, url, [_add(address, server)])
    began = time.monotonic()
    deadline = began + 60
    while time.monotonic() < deadline:
        async with session.get(f"{url}/events/{event_id}") as r:
            state = (await r.json())["state"]
        if state == "done":
            return time.monotonic() - began
        if state in ("failed", "superseded"):
            raise RuntimeError(f"event {event_id} ended {state}")
        await asyncio.sleep(0.01)
    raise TimeoutError(f"event {event_id} not done after 60 s")
