"""The cost of recording devices' timelines: the pipeline and the phones' listener with
``[general] timeline = true``, side by side with ``false``.

* pipeline: ``bench pipeline``'s registrations/s (2,000 adds, queuenum 8, a 50 ms vendor)
  with recording off, then on; each vendor call, retry and outcome is an entry.
* phones' listener: ``/ztprov/`` settings files served per second to 16 phones fetching in
  loops (Basic login, a User-Agent with their MAC) for 10 s, after 200 adds; each fetch is
  an entry (and, as always, an update of the device row's arrival).

Target: with recording on, ≥ 95% of the rate with it off. Nothing else differs between the
two runs of a pair (each on a fresh database and daemon).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from typing import Any

import aiohttp

from bench.common import (
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
from bench.pipeline import measure_pipeline

BENCH = "timeline"
TARGET = 0.95
PHONES = 16  # phones fetching at once
FIRMWARE = "10.1.54.13"


def _switched(opts: Options, on: bool, **sections: dict[str, Any]) -> Options:
    """``opts`` with ``[general] timeline`` set (and more sections), notes shared."""
    overrides = {name: dict(values) for name, values in opts.overrides.items()}
    overrides.setdefault("general", {})["timeline"] = "true" if on else "false"
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return dataclasses.replace(opts, overrides=overrides, notes=opts.notes)


async def run(opts: Options) -> list[Row]:
    async def measure(kind: str) -> list[Row]:
        return await _pipeline_pair(kind, opts) + await _phones_pair(kind, opts)

    return await for_each_db(BENCH, opts, measure)


def _pair(kind: str, what: str, unit: str, off: float, on: float) -> list[Row]:
    ratio = on / off if off else 0.0
    return [
        Row(BENCH, kind, f"{what}, timeline off", off, unit),
        Row(BENCH, kind, f"{what}, timeline on", on, unit, off, ratio, f"≥ {TARGET:.0%} of off",
            ratio >= TARGET),
    ]


async def _pipeline_pair(kind: str, opts: Options) -> list[Row]:
    rates = []
    for on in (False, True):
        rows = await measure_pipeline(kind, _switched(opts, on))
        rate = rows[0].value or 0.0
        rates.append(rate)
        opts.note(f"timeline {kind}: pipeline with timeline {'on' if on else 'off'}: "
                  f"{rate:.1f} reg/s, {rows[-1].value:g} events not done")
    return _pair(kind, "pipeline registrations/s", "reg/s", *rates)


async def _phones_pair(kind: str, opts: Options) -> list[Row]:
    rates = []
    for on in (False, True):
        rates.append(await _phones(kind, opts, on))
    return _pair(kind, f"phones' listener files served/s, {PHONES} phones", "files/s",
                 *rates)


async def _phones(kind: str, opts: Options, on: bool) -> float:
    """Settings files served per second by ``/ztprov/``, timeline on or off."""
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
            served = await _fetch_loops(session, f"http://127.0.0.1:{port}", logins, seconds)
    rate = served / seconds
    opts.note(f"timeline {kind}: phones' listener with timeline {'on' if on else 'off'}: "
              f"{served} files in {seconds:g}s")
    return rate


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
