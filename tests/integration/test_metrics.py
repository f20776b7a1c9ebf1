"""GET /metrics after a run: the in-process service with the test provider, and with the Snom
provider against the SRAPS sandbox (vendor latency by operation and status)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rps_service.config import load_settings
from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import DEMO_KEY_ID, DEMO_SECRET
from rps_service.service import Service
from tests.conftest import free_port, write_ini
from tests.fakes import permanent, transient
from tests.integration import test_pipeline
from tests.integration.test_pipeline import Started, event, wait_events
from tests.ops import scrape

start = test_pipeline.start  # the pipeline tests' fixture, by name

TOKEN = {"Authorization": "Bearer metrics-token"}


async def metrics(client: httpx.AsyncClient, accept: str = "") -> dict[str, float]:
    headers = {**TOKEN, "Accept": accept} if accept else TOKEN
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return scrape(response.text)


async def test_metrics_count_events_outcomes_and_retries(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, provider, client = await start({"api_token": "metrics-token", "queuenum": 2})
    provider.script["000413000002"] = [transient()]
    provider.script["000413000003"] = [permanent()]
    batch = [event("000413000001"), event("000413000002"), event("000413000003"),
             event("000413000004", "update")]
    r = await client.post("/events", json=batch, headers=TOKEN)
    first = [e["id"] for e in r.json()["events"]]
    await wait_all(client, first)
    r = await client.post("/events", json=event("000413000001", "remove"), headers=TOKEN)
    await wait_all(client, [r.json()["events"][0]["id"]])
    # A repeated idempotency key is not a new event.
    for _ in range(2):
        r = await client.post("/events", json=event("000413000005", key="k-1"), headers=TOKEN)
    await wait_all(client, [r.json()["events"][0]["id"]])

    assert (await client.get("/metrics")).status_code == 401
    samples = await metrics(client)
    received = {k: v for k, v in samples.items() if k.startswith("rps_events_received_total")}
    assert received == {
        'rps_events_received_total{action="add",provider="fake"}': 4,
        'rps_events_received_total{action="remove",provider="fake"}': 1,
        'rps_events_received_total{action="update",provider="fake"}': 1,
    }
    processed = {k: v for k, v in samples.items() if k.startswith("rps_events_processed_total")}
    assert processed == {
        'rps_events_processed_total{action="add",provider="fake",result="done"}': 3,
        'rps_events_processed_total{action="add",provider="fake",result="retry"}': 1,
        'rps_events_processed_total{action="add",provider="fake",result="failed"}': 1,
        'rps_events_processed_total{action="remove",provider="fake",result="done"}': 1,
        # An update of a device never registered is refused (docs/api.md).
        'rps_events_processed_total{action="update",provider="fake",result="failed"}': 1,
    }
    assert samples['rps_retries_total{provider="fake"}'] == 1
    assert samples['rps_backlog{state="pending"}'] == 0
    assert samples['rps_backlog{state="running"}'] == 0
    assert samples['rps_queue_depth{queue="0"}'] == 0
    assert samples['rps_queue_depth{queue="1"}'] == 0
    assert samples["rps_lease_recoveries_total"] == 0
    assert samples["rps_database_up"] == 1
    assert "process_resident_memory_bytes" in samples

    openmetrics = await client.get("/metrics", headers={
        **TOKEN, "Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")


async def wait_all(client: httpx.AsyncClient, ids: list[int]) -> None:
    token_client = httpx.AsyncClient(base_url=str(client.base_url), headers=TOKEN, timeout=10)
    async with token_client:
        await wait_events(token_client, ids)


async def test_each_service_has_its_own_registry(
    start: Callable[..., Awaitable[Started]],
) -> None:
    _, _, one = await start({"api_token": "metrics-token"})
    _, _, two = await start({"api_token": "metrics-token"})
    r = await one.post("/events", json=event("000413000010"), headers=TOKEN)
    await wait_all(one, [r.json()["events"][0]["id"]])
    key = 'rps_events_received_total{action="add",provider="fake"}'
    assert (await metrics(one))[key] == 1
    assert key not in await metrics(two)


async def test_backlog_and_queue_depth_while_the_vendor_holds_events(
    start: Callable[..., Awaitable[Started]],
) -> None:
    service, provider, client = await start({"api_token": "metrics-token", "queuenum": 1,
                                             "queuecap": 2})
    provider.gate = asyncio.Event()
    r = await client.post("/events", json=[event(f"0004130000{i:02X}") for i in range(6)],
                          headers=TOKEN)
    ids = [e["id"] for e in r.json()["events"]]
    for _ in range(200):
        if provider.calls and service.distributor.board.waiting == 1:
            break
        await asyncio.sleep(0.02)
    samples = await metrics(client)
    # Memory holds two: one in the vendor call (running), one held by its lane (waiting);
    # the other four are pending in the journal.
    assert samples['rps_backlog{state="running"}'] == 1
    assert samples['rps_backlog{state="waiting"}'] == 1
    assert samples['rps_backlog{state="pending"}'] == 4
    assert samples['rps_queue_depth{queue="0"}'] == 1
    assert samples['rps_lane_backlog{account="server 1",provider="fake"}'] == 6
    assert samples['rps_lane_paused{account="server 1",provider="fake"}'] == 0
    provider.gate.set()
    await wait_all(client, ids)


# -- the Snom provider against the sandbox: vendor request latency ---------------------------


@pytest.fixture
async def snom_service(tmp_path: Path) -> AsyncIterator[tuple[Service, RunningSandbox,
                                                             httpx.AsyncClient]]:
    sandbox = await start_sandbox()
    values: dict[str, Any] = {"port": free_port(), "database": f"sqlite:///{tmp_path}/rps.db",
                              "log_file": "-", "poll_interval": 0.2, "retry_base": 0.01,
                              "retry_cap": 0.05, "api_token": "metrics-token"}
    snom = {"api_url": sandbox.url, "access_key_id": DEMO_KEY_ID,
            "access_key_secret": DEMO_SECRET, "timeout": 5,
            "rate_limit": 1000, "provisioning_url": "https://pbx.test/ztprov/{server}/"}
    service = Service(load_settings(write_ini(tmp_path / "rps.ini", values, snom), env={}))
    await service.start()
    client = httpx.AsyncClient(base_url=f"http://{service.address}", headers=TOKEN, timeout=10)
    yield service, sandbox, client
    await client.aclose()
    await service.stop()
    await sandbox.close()


async def test_vendor_request_seconds_by_operation_and_status(
    snom_service: tuple[Service, RunningSandbox, httpx.AsyncClient],
) -> None:
    _, sandbox, client = snom_service
    sandbox.state.fail_next = [503]  # the first request (the token lookup) fails once
    ids = []
    for action in ("add", "remove"):
        r = await client.post("/events", json={"action": action, "provider": "snom",
                                               "mac": "000413CCCC01"})
        ids.append(r.json()["events"][0]["id"])
        await wait_events(client, ids)
    samples = await metrics(client)
    counts = {k.removeprefix("rps_vendor_request_seconds_count"): v for k, v in samples.items()
              if k.startswith("rps_vendor_request_seconds_count")}
    assert counts['{operation="token",provider="snom",status="503"}'] == 1
    assert counts['{operation="token",provider="snom",status="200"}'] == 1
    assert counts['{operation="settings",provider="snom",status="200"}'] >= 1
    operations = {k.split('"')[1]: k.split('"')[5] for k in counts}
    assert operations["register"].startswith("2") and operations["deregister"].startswith("2")
    assert samples['rps_retries_total{provider="snom"}'] == 1
    buckets = [k for k in samples if k.startswith("rps_vendor_request_seconds_bucket")
               and 'operation="register"' in k]
    assert any('le="30.0"' in k for k in buckets)
