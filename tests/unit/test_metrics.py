"""Metrics without a service: the hooks, and the Snom provider's request observer."""

from __future__ import annotations

import httpx
import pytest

from rps_service.metrics import Metrics
from rps_service.providers.protocol import Device, ProviderError
from rps_service.providers.snom import SnomProvider
from rps_service.providers.vendor import ProviderContext
from tests.ops import scrape
from tests.unit.test_snom import (
    DEVICE,
    NOW,
    FakeCredentials,
    Sraps,
    fake,
    make_settings,
    sandbox,
    wire,
)

__all__ = ["fake", "sandbox", "wire"]  # the SRAPS emulator's fixtures


class Pipeline:
    lease_recoveries = 0

    def depths(self) -> list[int]:
        return [1, 0, 4]


class Journal:
    async def backlog(self) -> dict[str, int]:
        return {"pending": 7, "running": 2}


async def test_scrape_reads_queues_and_backlog_at_that_moment() -> None:
    pipeline = Pipeline()
    metrics = Metrics(pipeline, Journal())
    await metrics.refresh()
    pipeline.lease_recoveries = 3
    body, content_type = metrics.render()
    samples = scrape(body.decode())
    assert content_type.startswith("text/plain; version=0.0.4")
    assert [samples[f'rps_queue_depth{{queue="{i}"}}'] for i in range(3)] == [1, 0, 4]
    assert samples['rps_backlog{state="pending"}'] == 7
    assert samples["rps_lease_recoveries_total"] == 3


Observed = list[tuple[str, str, str, float]]


def observing_provider(handler: httpx.AsyncBaseTransport, seen: Observed,
                       api: str = "https://sraps.test/api/v1/") -> SnomProvider:
    context = ProviderContext(mode="master", retry_cap=300, credentials=FakeCredentials(),
                              transport=handler, clock=lambda: NOW,
                              observe=lambda *args: seen.append(args))
    return SnomProvider(make_settings(api), context)


async def test_snom_requests_are_observed_by_operation_and_status(fake: Sraps) -> None:
    seen: Observed = []
    provider = observing_provider(fake.front, seen, fake.api)
    await provider.register(DEVICE)
    await provider.lookup(Device(mac=DEVICE.mac, server=8))
    await provider.deregister(Device(mac=DEVICE.mac, server=8))
    assert [(p, op, status) for p, op, status, _ in seen] == [
        ("snom", "token", "200"), ("snom", "settings", "200"), ("snom", "lookup", "404"),
        ("snom", "register", "201"), ("snom", "lookup", "200"), ("snom", "deregister", "204"),
    ]
    assert all(seconds >= 0 for *_, seconds in seen)


@pytest.mark.parametrize(
    ("exc", "status"),
    [(httpx.ConnectTimeout("slow"), "timeout"), (httpx.ConnectError("refused"), "error")],
)
async def test_requests_without_an_answer_are_observed(exc: Exception, status: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    seen: Observed = []
    provider = observing_provider(httpx.MockTransport(fail), seen)
    with pytest.raises(ProviderError):
        await provider.register(DEVICE)
    assert [(op, s) for _, op, s, _ in seen] == [("token", status)]
