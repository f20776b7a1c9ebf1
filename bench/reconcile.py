"""Reconcile of 10,000 devices, within the vendor's rate limit.

A daemon (in this process, SQLite) and the sandbox (in this process) hold the same 10,000
registered devices; the sandbox throttles the account at the daemon's ``rate_limit``
(100 requests/s), so a single request over the rate would show as a 429. Two vendors:

* ``snom`` (SRAPS can list an account's endpoints: pages of 1000);
* ``snom-xmlrpc`` (no list: per device ``checkPhone``, then ``getPhoneRedirection`` for
  the URL it points at: 20,000 requests at the rate).

Reported: the job's time, the vendor requests, the most requests that arrived within any
0.99 s (target ≤ ``rate_limit``; 10 ms for the jitter between send and arrival), throttled
answers (target 0) and the differences found (target 0: database and vendor agree).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import Options, Row
from bench.vendors import _daemon

BENCH = "reconcile"
RATE = 100


async def run(opts: Options) -> list[Row]:
    count = 500 if opts.quick else 10_000
    rows: list[Row] = []
    for name in ("snom", "snom-xmlrpc"):
        try:
            rows += await _reconcile(name, count, opts)
        except Exception as exc:
            rows.append(Row(BENCH, "sqlite", f"{name}: {type(exc).__name__}: {exc}"[:110], None,
                            status="ERROR"))
    return rows


async def _reconcile(name: str, count: int, opts: Options) -> list[Row]:
    from rps_service.clock import utcnow

    async with _daemon(name, {"rate_limit": RATE}) as (client, state, emulator, service):
        url = "https://pbx.bench.test/ztprov/1/"
        macs = [f"0004132{i:05X}" for i in range(count)]
        await service.store.adopt_devices(name, 1, [(m, url) for m in macs], "bench",
                                          utcnow())
        _seed(name, emulator, state, macs, url)
        state.throttle_rate = RATE
        state.reset_counts()
        began = time.monotonic()
        r = await client.post(f"/providers/{name}/reconcile", json={"server": 1})
        r.raise_for_status()
        job = await _job(client, r.json()["job"], count / RATE * 3 + 60)
        elapsed = time.monotonic() - began
        arrivals = sorted(record.at for record in state.records)
        requests, throttled = state.total, state.throttled
    busiest = _busiest_second(arrivals)
    counts: dict[str, Any] = job["result"].get("counts", {})
    found = sum(counts.get(k) or 0 for k in ("missing", "drift", "orphan"))
    opts.note(f"reconcile {name}: {count} devices, job {job['state']} in {elapsed:.1f}s, "
              f"{requests} vendor requests, busiest second {busiest}, counts {counts}")
    return [
        Row(BENCH, "sqlite", f"{name}: reconcile of {count} devices, rate_limit {RATE}/s",
            elapsed, "s"),
        Row(BENCH, "sqlite", f"{name}: vendor requests", requests, "requests"),
        Row(BENCH, "sqlite", f"{name}: most requests in one second", busiest, "requests",
            target=f"≤ {RATE}", ok=busiest <= RATE),
        Row(BENCH, "sqlite", f"{name}: requests answered 429", throttled, "requests",
            target="= 0", ok=throttled == 0),
        Row(BENCH, "sqlite", f"{name}: differences found", found, "devices",
            target="= 0", ok=found == 0 and job["state"] == "done"),
    ]


def _seed(name: str, emulator: Any, state: Any, macs: list[str], url: str) -> None:
    if name == "snom":
        from rps_service.sandbox.control import portal_endpoint
        from rps_service.sandbox.state import DEMO_COMPANY_ID

        endpoints = state.endpoints(DEMO_COMPANY_ID)
        for mac in macs:
            endpoints[mac.lower()] = portal_endpoint(mac.lower(), url)
    else:
        from rps_service.sandbox.rpcredirect import DEMO_USER

        for mac in macs:
            emulator.register(DEMO_USER, mac, url)


def _busiest_second(arrivals: list[float]) -> int:
    """The most arrivals within any 0.99 s (the daemon spaces its sends by whole seconds;
    10 ms allow for the jitter between a send and its arrival)."""
    busiest, start = 0, 0
    for end, at in enumerate(arrivals):
        while at - arrivals[start] >= 0.99:
            start += 1
        busiest = max(busiest, end - start + 1)
    return busiest


async def _job(client: Any, job_id: int, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        job: dict[str, Any] = (await client.get(f"/jobs/{job_id}")).json()
        if job["state"] in ("done", "failed"):
            return job
        await asyncio.sleep(0.2)
    raise TimeoutError(f"reconcile job {job_id} not finished in {within:.0f}s")
