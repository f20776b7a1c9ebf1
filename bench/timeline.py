"""The cost of telling what happens: the pipeline and the phones' listener with
``[general] timeline = true`` and ``[webhooks]`` posting every notification to a receiver in
this process (answers 204 at once), side by side with both off.

* pipeline: ``bench pipeline``'s registrations/s (2,000 adds, queuenum 8, a 50 ms vendor)
  with both off, then on; each vendor call, retry and outcome is an entry, each outcome a
  ``device.*`` notification.
* phones' listener: ``/ztprov/`` settings files served per second to 16 phones fetching in
  loops (Basic login, a User-Agent with their MAC) for 10 s, after 200 adds; each fetch is
  an entry and a ``phone.fetched`` notification (and, as always, an update of the device
  row's arrival).

Target: with both on, ≥ 95% of the rate with both off. Nothing else differs between the
two runs of a pair (each on a fresh database and daemon). A full run measures each twice, in
the order off, on, on, off, and keeps the best of each: other load on the machine then
lowers both alike rather than whichever ran second (``--quick``: once each).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from typing import Any

import aiohttp

from bench.common import (
    CpuMeter,
    Options,
    Row,
    add_event,
    daemon_with_sandbox,
    database,
    for_each_db,
    free_port,
    mac,
    post_events,
    wait_until,
    workdir,
)
from bench.pipeline import Receiver, measure_pipeline

BENCH = "timeline"
TARGET = 0.95
PHONES = 16  # phones fetching at once
FIRMWARE = "10.1.54.13"


#: Where ``[webhooks]`` posts while a run has them on (set by :func:`run`).
HOOKS: dict[str, Any] = {}


def _switched(opts: Options, on: bool, **sections: dict[str, Any]) -> Options:
    """``opts`` with ``[general] timeline`` and ``[webhooks]`` on or off (and more sections),
    notes shared."""
    overrides = {name: dict(values) for name, values in opts.overrides.items()}
    overrides.setdefault("general", {})["timeline"] = "true" if on else "false"
    if on:
        overrides["webhooks"] = dict(HOOKS)
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return dataclasses.replace(opts, overrides=overrides, notes=opts.notes)


async def run(opts: Options) -> list[Row]:
    async def measure(kind: str) -> list[Row]:
        return await _pipeline_pair(kind, opts) + await _phones_pair(kind, opts)

    async with Receiver() as receiver:
        HOOKS.update({"url": receiver.url, "secret": "bench-webhook-secret"})
        rows = await for_each_db(BENCH, opts, measure)
    opts.note(f"timeline: {receiver.count} webhook notifications received")
    return rows


def _pair(kind: str, what: str, unit: str, off: float, on: float) -> list[Row]:
    ratio = on / off if off else 0.0
    return [
        Row(BENCH, kind, f"{what}, timeline and webhooks off", off, unit),
        Row(BENCH, kind, f"{what}, timeline and webhooks on", on, unit, off, ratio,
            f"≥ {TARGET:.0%} of off", ratio >= TARGET),
    ]


def _order(opts: Options) -> list[bool]:
    """Off and on, then (a full run) on and off again."""
    return [False, True] if opts.quick else [False, True, True, False]


async def _pipeline_pair(kind: str, opts: Options) -> list[Row]:
    best = {False: 0.0, True: 0.0}
    for on in _order(opts):
        rows, rate = await measure_pipeline(kind, _switched(opts, on),
                                            label=f"timeline-{'on' if on else 'off'}")
        best[on] = max(best[on], rate)
        opts.note(f"timeline {kind}: pipeline with timeline {'on' if on else 'off'}: "
                  f"{rate:.1f} reg/s, {rows[-1].value:g} events not done")
    return _pair(kind, "pipeline registrations/s", "reg/s", best[False], best[True])


async def _phones_pair(kind: str, opts: Options) -> list[Row]:
    best = {False: 0.0, True: 0.0}
    cpu = {False: float("inf"), True: float("inf")}  # the daemon's CPU ms per file served
    for on in _order(opts):
        rate, ms = await _phones(kind, opts, on)
        best[on], cpu[on] = max(best[on], rate), min(cpu[on], ms)
    # CPU per file is what recording adds to the daemon; a busy machine moves it least.
    return [
        *_pair(kind, f"phones' listener files served/s, {PHONES} phones", "files/s",
               best[False], best[True]),
        Row(BENCH, kind, "phones' listener: daemon CPU per file, both off", cpu[False], "ms"),
        Row(BENCH, kind, "phones' listener: daemon CPU per file, both on", cpu[True], "ms",
            cpu[False], cpu[True] / cpu[False] if cpu[False] else None),
    ]


async def _phones(kind: str, opts: Options, on: bool) -> tuple[float, float]:
    """Settings files served per second by ``/ztprov/``, timeline on or off, and the
    daemon's CPU milliseconds per file."""
    count = 32 if opts.quick else 200
    seconds = 2.0 if opts.quick else 10.0
    port = free_port()
    ztp = {"enabled": "true", "listen": "127.0.0.1", "port": port,
           "fail_limit_per_ip": 1_000_000}
    switched = _switched(opts, on, ztp=ztp)
    label = f"timeline-phones-{kind}-{'on' if on else 'off'}"
    with workdir(opts, label) as folder, database(kind, folder, switched) as db:
        async with daemon_with_sandbox(folder, db, switched, {"queuenum": 8}) as (
                daemon, _, session):
            macs = [mac(0xD000, i).upper() for i in range(count)]
            await post_events(session, daemon.url, [add_event(m) for m in macs])
            await wait_until(lambda: _done(db) >= count, 120, what=f"{count} adds done")
            await _put_tenant(session, daemon.url)
            logins = [await _login(session, daemon.url, m) for m in macs]
            meter = CpuMeter({"daemon": daemon.pid})
            meter.start()
            served = await _fetch_loops(session, f"http://127.0.0.1:{port}", logins, seconds)
            used = meter.stop()["daemon"] / 100 * seconds
    opts.note(f"timeline {kind}: phones' listener with timeline {'on' if on else 'off'}: "
              f"{served} files in {seconds:g}s, CPU of one core: {meter.text()}")
    return served / seconds, 1000 * used / served if served else 0.0


async def _put_tenant(session: aiohttp.ClientSession, url: str) -> None:
    body = {"prov_url": "https://pbx.bench.test/prov/", "http_user": "tenant",
            "http_password": "bench-tenant-password"}
    async with session.put(f"{url}/servers/1/provisioning", json=body) as r:
        if r.status != 204:
            raise RuntimeError(f"PUT provisioning answered {r.status}: {await r.text()}")


async def _login(session: aiohttp.ClientSession, url: str, address: str
                 ) -> tuple[str, dict[str, str]]:
    """The phone's path and headers: its file, its Basic login, its User-Agent."""
    async with session.get(f"{url}/devices/snom/{address}/access") as r:
        if r.status != 200:
            raise RuntimeError(f"access of {address} answered {r.status}: {await r.text()}")
        access = await r.json()
    token = base64.b64encode(f"{access['username']}:{access['password']}".encode()).decode()
    return f"/ztprov/1/snomD717-{address}.htm", {
        "Authorization": f"Basic {token}",
        "User-Agent": f"Mozilla/4.0 (compatible; snomD717-SIP {FIRMWARE} {address} SXM:0)"}


async def _fetch_loops(session: aiohttp.ClientSession, base: str,
                       logins: list[tuple[str, dict[str, str]]], seconds: float) -> int:
    served = 0
    deadline = time.monotonic() + seconds

    async def phone(index: int) -> None:
        nonlocal served
        turn = index
        while time.monotonic() < deadline:
            path, headers = logins[turn % len(logins)]
            turn += PHONES
            async with session.get(base + path, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{path} answered {r.status}")
            served += 1

    await asyncio.gather(*(phone(i) for i in range(PHONES)))
    return served


def _done(db: Any) -> int:
    return int(db.scalar("SELECT COUNT(*) FROM rps_events WHERE state = 'done'"))
