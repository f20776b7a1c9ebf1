"""A lost lease never sends: two instances share MariaDB and a slow vendor; one
loses its database (so its leases run out and the other takes its events). The one that
lost them must not send another request for them: no device ever has two calls in flight
or out of order, as the sandbox's per-MAC history shows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from rps_service.config import load_settings
from rps_service.sandbox import start_sandbox
from rps_service.sandbox.state import DEMO_COMPANY_ID, DEMO_KEY_ID, DEMO_SECRET, SandboxState
from rps_service.service import Service
from tests.conftest import MYSQL_HOST, MYSQL_PORT, free_port, remember_secrets, write_ini
from tests.integration.test_pipeline import wait_events, wait_for
from tests.proxy import TcpProxy

MACS = [f"0004130F00{i:02X}" for i in range(4)]


def make_service(tmp_path: Path, name: str, dsn: str, api_url: str) -> Service:
    general = {"port": free_port(), "database": dsn, "log_file": "-", "queuenum": 4,
               "lease_timeout": 1.5, "poll_interval": 0.1, "retry_base": 0.05,
               "retry_cap": 0.2, "drain_timeout": 1}
    snom = {"api_url": api_url, "access_key_id": DEMO_KEY_ID, "access_key_secret": DEMO_SECRET,
            "provisioning_url": "https://pbx.test/ztprov/{server}/", "timeout": 5,
            "rate_limit": 1000}
    return Service(load_settings(write_ini(tmp_path / f"{name}.ini", general, snom), env={}))


@pytest.mark.timeout(90)
async def test_an_instance_that_lost_its_leases_sends_nothing_more(
    tmp_path: Path, mysql_database: str
) -> None:
    sandbox = await start_sandbox(SandboxState())
    proxy = TcpProxy(MYSQL_HOST, MYSQL_PORT, free_port())
    await proxy.start()
    cut_off = mysql_database.replace(f"{MYSQL_HOST}:{MYSQL_PORT}", f"127.0.0.1:{proxy.port}")
    a = make_service(tmp_path, "a", cut_off, sandbox.url)
    b = make_service(tmp_path, "b", mysql_database, sandbox.url)
    try:
        await a.start()
        async with httpx.AsyncClient(base_url=f"http://{a.address}", timeout=10) as client:
            # Registered once: their access details exist, so a re-push needs no database
            # write before its calls (A could go on calling with its database gone).
            r = await client.post("/events", json=[
                {"action": "add", "provider": "snom", "mac": mac, "server": 1} for mac in MACS])
            await wait_events(client, [e["id"] for e in r.json()["events"]])
            # A re-pushes them; the vendor is slow to answer A's first calls (3 s, longer
            # than the lease) and quick for everything after.
            sandbox.state.latency = 3.0
            before = sandbox.state.arrivals
            r = await client.post("/events", json=[
                {"action": "add", "provider": "snom", "mac": mac, "server": 1} for mac in MACS])
            repushes = [e["id"] for e in r.json()["events"]]

        async def a_is_calling() -> bool:
            return sandbox.state.arrivals - before >= len(MACS)

        await wait_for(a_is_calling)
        sandbox.state.latency = 0.0
        await proxy.cut()  # A can no longer renew its leases, nor record anything
        await b.start()  # B takes A's events once their leases ran out, then the removes
        async with httpx.AsyncClient(base_url=f"http://{b.address}", timeout=10) as client:
            r = await client.post("/events", json=[
                {"action": "remove", "provider": "snom", "mac": mac} for mac in MACS])
            removes = [e["id"] for e in r.json()["events"]]
            rows = await wait_events(client, repushes + removes, ("done", "superseded"))
        assert all(row["state"] == "done" for row in rows[len(MACS):])
        await asyncio.sleep(3.5)  # A's slow answers are back: it would send its PUTs now
        endpoints = sandbox.state.endpoints(DEMO_COMPANY_ID)
        for mac in MACS:
            history = sandbox.state.history[mac.lower()]
            assert history[-1] == ("DELETE", None), (mac, history)
            assert mac.lower() not in endpoints, mac  # no stale PUT landed after the remove
        assert sandbox.state.overlaps == 0
    finally:
        await b.stop()
        await a.stop()
        await proxy.close()
        remember_secrets(sandbox.state)
        await sandbox.close()
