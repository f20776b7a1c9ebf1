"""Vendor calls per registration, for every provider against its own sandbox emulator.

Counts, not times: a daemon (in this process, SQLite) and the sandbox (in this process,
every emulator) with one provider enabled at a time. For each provider:

* cold: the first registration after the start, caches empty (tokens, catalogues,
  profiles, server objects: whatever the vendor needs before the device's own call);
* warm: a second device, the caches full;
* re-registration: the first device again (a re-push, e.g. after a re-point);
* remove: the first device removed.

Snom is counted twice: with ``keep_portal_settings = true`` (the default: the endpoint is
read before each PUT so that what the portal set survives) and ``false``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import Options, Row, free_port

BENCH = "vendors"


async def run(opts: Options) -> list[Row]:
    from rps_service.sandbox.registry import EMULATORS

    rows: list[Row] = []
    for cls in EMULATORS:
        variants: list[dict[str, Any]] = [{}]
        if cls.name == "snom":
            variants.append({"keep_portal_settings": "false"})
        for extra in variants:
            label = cls.name + ("" if not extra else " (keep_portal_settings=false)")
            try:
                counts = await _count(cls.name, extra)
            except Exception as exc:  # one vendor's failure must not hide the others
                rows.append(Row(BENCH, "sqlite", f"{label}: {type(exc).__name__}: {exc}"[:110],
                                None, status="ERROR"))
                continue
            rows += [Row(BENCH, "sqlite", f"{label}: calls per {what}", value, "calls")
                     for what, value in counts.items()]
    return rows


async def _count(name: str, extra: dict[str, Any]) -> dict[str, float]:
    async with _daemon(name, extra) as (client, state, emulator, _):
        first, second = emulator.sample_mac(1), emulator.sample_mac(2)
        counts = {}
        for what, action, mac in (("cold registration", "add", first),
                                  ("warm registration", "add", second),
                                  ("re-registration", "add", first),
                                  ("remove", "remove", first)):
            before = state.total
            event = {"action": action, "provider": name, "mac": mac, "server": 1}
            if action == "add":
                event |= emulator.event_fields(mac)
            r = await client.post("/events", json=event)
            r.raise_for_status()
            await _finished(client, r.json()["events"][0]["id"], what)
            counts[what] = float(state.total - before)
        return counts


@contextlib.asynccontextmanager
async def _daemon(name: str, extra: dict[str, Any]
                  ) -> AsyncIterator[tuple[Any, Any, Any, Any]]:
    """A daemon with only ``name`` enabled, pointed at the sandbox (both in this process):
    its API client, the sandbox's state, the emulator and the service."""
    from rps_service import logs
    from rps_service.config import load_settings
    from rps_service.sandbox import SandboxState, start_sandbox
    from rps_service.service import Service

    folder = Path(tempfile.mkdtemp(prefix="rps-bench-vendors-"))
    state = SandboxState()
    sandbox = await start_sandbox(state)
    emulator = state.emulators[name]
    values = {"enabled": "true", "api_url": emulator.api_url(sandbox.base_url),
              "provisioning_url": "https://pbx.bench.test/ztprov/{server}/",
              "rate_limit": 1000, **emulator.demo_credentials(), **extra}
    sections = {"general": {"port": free_port(), "database": f"sqlite:///{folder}/rps.db",
                            "log_file": str(folder / "rps.log"), "queuenum": 1,
                            "poll_interval": 0.05},
                name: values}
    if name != "snom":
        sections["snom"] = {"enabled": "false"}
    ini = folder / "rps.ini"
    ini.write_text("\n".join(f"[{s}]\n" + "".join(f"{k} = {_ini(v)}\n" for k, v in vals.items())
                             for s, vals in sections.items()), encoding="utf-8")
    sink = logs.configure(str(folder / "rps.log"), "WARNING")
    service = Service(load_settings(ini, env={}), log_sink=sink)
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=30) as c:
            yield c, state, emulator, service
    finally:
        await service.stop()
        await sandbox.close()
        sink.close()


def _ini(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


async def _finished(client: httpx.AsyncClient, event_id: int, what: str) -> None:
    for _ in range(600):
        row = (await client.get(f"/events/{event_id}")).json()
        if row["state"] == "done":
            return
        if row["state"] == "failed":
            raise RuntimeError(f"{what} failed: {row['last_error']}")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} not done in 30 s")
