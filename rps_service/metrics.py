"""Prometheus metrics, served as ``GET /metrics`` on the event API.

Each :class:`~rps_service.service.Service` owns a :class:`Metrics` with its own
``CollectorRegistry`` (never the global one: the tests run many services in one process).
Counters are bumped by small hooks in the listener, the workers and the providers; values
that already live elsewhere (queue depths, lease recoveries, the journal's backlog) are read
when Prometheus scrapes, so they cannot drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from rps_service.models import Event
from rps_service.pipeline.report import LaneReport
from rps_service.store import StoreUnavailable

#: Vendor calls take milliseconds when warm and up to the provider timeout (30 s) when not.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"))
#: A worker's outcome (the journal state it writes) → the ``result`` label.
RESULTS = {"done": "done", "failed": "failed", "pending": "retry"}


class _Distributor(Protocol):
    lease_recoveries: int

    def depths(self) -> list[int]: ...


class _Timeline(Protocol):
    dropped: int
    written: int

    def pending(self) -> int: ...


class _TimelineCollector(Collector):
    """The timeline's buffer, read at scrape time."""

    def __init__(self, timeline: _Timeline) -> None:
        self.timeline = timeline

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "rps_timeline_dropped", "Timeline entries not recorded: the buffer was full or "
            "the database away.", value=self.timeline.dropped)
        yield CounterMetricFamily(
            "rps_timeline_written", "Timeline entries written to the database.",
            value=self.timeline.written)
        yield GaugeMetricFamily("rps_timeline_pending", "Timeline entries waiting to be "
                                "written.", value=self.timeline.pending())


class _Backlog(Protocol):
    async def backlog(self) -> dict[str, int]: ...


class _Outbox(Protocol):
    async def webhooks_pending(self) -> int: ...


class _PipelineCollector(Collector):
    """Queue depths, lease recoveries and the backlog, read at scrape time."""

    def __init__(self, distributor: _Distributor) -> None:
        self.distributor = distributor
        self.backlog: dict[str, int] = {}
        self.lanes: list[LaneReport] = []
        self.database_up = 0
        self.webhooks_pending = 0
        #: Statements spent sharing rates and pauses with other instances (MySQL only).
        self.cluster_queries: Callable[[], int] | None = None

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("rps_queue_depth",
                                  "Per worker: 1 while it has an event, else 0.",
                                  labels=["queue"])
        for index, size in enumerate(self.distributor.depths()):
            depth.add_metric([str(index)], size)
        yield depth
        backlog = GaugeMetricFamily(
            "rps_backlog", "Unfinished events: pending (in the journal), waiting (held by "
            "their lane), running (vendor call under way).", labels=["state"]
        )
        for state, count in sorted(self.backlog.items()):
            backlog.add_metric([state], count)
        yield backlog
        yield GaugeMetricFamily("rps_webhooks_pending",
                                "Webhook notifications stored and not yet delivered.",
                                value=self.webhooks_pending)
        yield from self._lanes()
        yield GaugeMetricFamily("rps_database_up", "1 if the database answered the last scrape.",
                                value=self.database_up)
        yield CounterMetricFamily(
            "rps_lease_recoveries", "Events taken again after their lease expired.",
            value=self.distributor.lease_recoveries,
        )
        if self.cluster_queries is not None:
            yield CounterMetricFamily(
                "rps_cluster_queries", "Database statements spent sharing vendor accounts'"
                " rates and pauses with the other instances.", value=self.cluster_queries())

    def _lanes(self) -> Iterator[Metric]:
        labels = ["provider", "account"]
        families = (
            GaugeMetricFamily("rps_lane_backlog", "Unfinished events per vendor account.",
                              labels=labels),
            GaugeMetricFamily("rps_lane_in_flight", "Vendor calls under way per vendor "
                              "account.", labels=labels),
            GaugeMetricFamily("rps_lane_paused", "1 while a throttling answer pauses the "
                              "vendor account, else 0.", labels=labels),
        )
        for lane in self.lanes:
            names = [lane.provider, lane.account]
            families[0].add_metric(names, lane.backlog)
            families[1].add_metric(names, lane.in_flight)
            families[2].add_metric(names, 0 if lane.paused_until is None else 1)
        yield from families


#: Reads the backlog (pending, waiting, running) and the lanes at scrape time.
Report = Callable[[], Awaitable[tuple[dict[str, int], list[LaneReport]]]]


class Metrics:
    """The service's metrics and the ``/metrics`` handler."""

    def __init__(self, distributor: _Distributor, store: _Backlog,
                 timeline: _Timeline | None = None, report: Report | None = None) -> None:
        self.store = store
        self.report = report
        self.registry = CollectorRegistry()
        registry = self.registry
        self.received = Counter(
            "rps_events_received", "Events accepted by the listener (duplicates not counted).",
            ["action", "provider"], registry=registry,
        )
        self.processed = Counter(
            "rps_events_processed", "Event attempts by outcome: done, failed or retry.",
            ["action", "provider", "result"], registry=registry,
        )
        self.retries = Counter(
            "rps_retries", "Attempts that failed transiently and were scheduled again.",
            ["provider"], registry=registry,
        )
        self.vendor_seconds = Histogram(
            "rps_vendor_request_seconds", "Time of each HTTP request to a vendor API.",
            ["provider", "operation", "status"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.differences = Counter(
            "rps_reconcile_differences", "Differences reconcile found between the database "
            "and a vendor: missing, drift, orphan.",
            ["provider", "kind"], registry=registry,
        )
        self.webhooks_delivered = Counter(
            "rps_webhooks_delivered", "Webhook notifications the receiver accepted (2xx).",
            registry=registry,
        )
        self.webhooks_failed = Counter(
            "rps_webhooks_failed", "Webhook deliveries that failed (each is retried until "
            "max_age).", registry=registry,
        )
        #: The outbox whose backlog is read at scrape time, while webhooks are on.
        self.outbox: _Outbox | None = None
        self._pipeline = _PipelineCollector(distributor)
        registry.register(self._pipeline)
        if timeline is not None:
            registry.register(_TimelineCollector(timeline))
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)

    def count_cluster_queries(self, read: Callable[[], int]) -> None:
        """Export ``rps_cluster_queries_total``, read from ``read`` at each scrape."""
        self._pipeline.cluster_queries = read

    # -- hooks ---------------------------------------------------------------------------

    def event_received(self, action: str, provider: str, count: int = 1) -> None:
        self.received.labels(action, provider).inc(count)

    def event_outcome(self, event: Event, state: str) -> None:
        """A worker wrote ``state`` for ``event`` (``pending`` means: will retry)."""
        result = RESULTS.get(state, state)
        self.processed.labels(event.action, event.provider, result).inc()
        if result == "retry":
            self.retries.labels(event.provider).inc()

    def webhook_result(self, result: str) -> None:
        """One delivery attempt: ``delivered`` or ``failed``."""
        (self.webhooks_delivered if result == "delivered" else self.webhooks_failed).inc()

    def reconcile_found(self, provider: str, kind: str, count: int) -> None:
        if count:
            self.differences.labels(provider, kind).inc(count)

    def vendor_request(self, provider: str, operation: str, status: str, seconds: float) -> None:
        self.vendor_seconds.labels(provider, operation, status).observe(seconds)

    # -- scrape --------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the backlog from the journal (kept at its last value if the database is away)."""
        try:
            if self.report is None:
                self._pipeline.backlog = await self.store.backlog()
            else:
                self._pipeline.backlog, self._pipeline.lanes = await self.report()
            if self.outbox is not None:
                self._pipeline.webhooks_pending = await self.outbox.webhooks_pending()
            self._pipeline.database_up = 1
        except StoreUnavailable:
            # No log line: the distributor already reports the outage, once, not per scrape.
            self._pipeline.database_up = 0

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition in the format ``accept`` asks for (Prometheus text by default)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /metrics``."""
        await self.refresh()
        body, content_type = self.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})
