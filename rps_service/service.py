"""Wiring and lifecycle: store, providers, distributor, workers and listener.

Start: open the database and migrate, load the secret key and seal what is in clear
(:mod:`rps_service.keyring`), build the shared HTTP client and providers, bind the
event listener and the phones' listener, and only then start the distributor and one worker
per queue: a start that fails (a port in use) has leased nothing. A failure that names a
setting is a :class:`StartError`. Stop (first SIGTERM or
SIGINT): stop leasing, give back queued events, let in-flight ones finish for up to
``drain_timeout``, give back the rest, close everything; exit 0. A second signal exits at
once. A background task that dies unexpectedly stops the daemon with exit code 1, so
systemd restarts it rather than letting it limp on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from aiohttp import web

from rps_service.access import AccessMode
from rps_service.api.app import Api, create_app
from rps_service.clock import utcnow
from rps_service.config import DatabaseUrl, Settings
from rps_service.keyring import KeyringError, Unlocked, unlock
from rps_service.logs import LogFile, get_logger, http_server_logger
from rps_service.metrics import Metrics
from rps_service.notify import Monitor, Notifier
from rps_service.pipeline.cluster import Cluster
from rps_service.pipeline.distributor import Distributor, server_lanes
from rps_service.pipeline.jobs import JobRunner
from rps_service.pipeline.lanes import LaneId, LaneSource
from rps_service.pipeline.report import pipeline_report
from rps_service.pipeline.worker import Worker
from rps_service.providers.http import VendorHttp
from rps_service.providers.protocol import Provider
from rps_service.providers.section import PLACEHOLDER_HOST
from rps_service.providers.transport import AiohttpTransport
from rps_service.store import Store, StoreUnavailable, create_store
from rps_service.timeline import Timeline
from rps_service.vendors import PROVIDERS, build_providers
from rps_service.webhooks import Repeats, WebhookSender
from rps_service.ztp.app import ZtpListener

log = get_logger()

RETENTION_BATCH = 500  # events deleted per transaction: short locks, whatever the backlog


async def _in_batches(delete: Callable[[datetime, int], Awaitable[int]],
                      before: datetime) -> int:
    total = 0
    while True:
        count = await delete(before, RETENTION_BATCH)
        total += count
        if count < RETENTION_BATCH:
            return total
        await asyncio.sleep(0)  # the intake and the leases get the database in between


async def delete_old_events(store: Store, days: int, now: datetime) -> int:
    """Delete the finished events of more than ``days`` days ago (not a device's newest),
    a batch per transaction; how many went."""
    total = await _in_batches(store.delete_finished_events, now - timedelta(days=days))
    if total:
        log.info("Old events deleted", component="DATABASE", count=total)
    return total


async def delete_old_timeline(store: Store, days: int, now: datetime) -> int:
    """Delete the timeline entries of more than ``days`` days ago, a batch per
    transaction; how many went."""
    total = await _in_batches(store.delete_old_timeline, now - timedelta(days=days))
    if total:
        log.info("Old timeline entries deleted", component="DATABASE", count=total)
    return total


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until each has ended.

    A cancellation can be lost on Python 3.11: ``asyncio.wait_for`` (which the MySQL driver
    uses to connect) returns its result when the inner call finishes as the cancel comes,
    and the task goes on (to a sleep of an hour, for the retention task). So a task still
    running a second after its cancel is cancelled again.
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)


class StartError(Exception):
    """The daemon cannot start; the message names the setting behind it, e.g.
    ``[general] port 15777: address already in use``."""


def database_error(url: DatabaseUrl, exc: BaseException) -> StartError:
    """``[general] database <dsn>: <reason>`` (the password masked)."""
    return StartError(f"[general] database {url.display()}: {_reason(exc)}")


def bind_error(section: str, listen: str, port: int, exc: OSError) -> StartError:
    """A listener that could not bind, named by the setting to change."""
    reason = _reason(exc)
    if exc.errno == errno.EADDRNOTAVAIL:  # the address is not one of this host's
        return StartError(f"[{section}] listen {listen}: {reason}")
    return StartError(f"[{section}] port {port}: {reason}")


def _reason(exc: BaseException) -> str:
    # "[Errno 98] error while attempting to bind on address (…): address already in use"
    # says less than the errno's own text; OSError from a file names the path already.
    if isinstance(exc, OSError) and exc.errno and not exc.filename:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, OSError) and exc.errno and exc.strerror:
        return f"{exc.strerror.lower()}: {exc.filename}"
    return str(exc) or type(exc).__name__


def instance_id() -> str:
    """Who holds a lease: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Service:
    """One daemon instance."""

    def __init__(
        self,
        settings: Settings,
        *,
        providers: Mapping[str, Provider] | None = None,
        store: Store | None = None,
        log_sink: LogFile | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.owner = instance_id()
        self.store = store or create_store(settings.general.database)
        self._given_providers = providers
        self.providers: Mapping[str, Provider] = {}
        self.log_sink = log_sink
        self.distributor = Distributor(self.store, settings.general, self.owner,
                                       lanes=self._lane,
                                       serves=lambda provider: provider in self.providers)
        self.workers: list[Worker] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.address = ""
        self.ztp: ZtpListener | None = None  # the phones' /ztprov/ listener, if [ztp] enabled
        #: What a person starting the daemon by hand must see besides rps.log (serve()).
        self.start_warnings: list[str] = []
        self._stack = AsyncExitStack()
        self._stop = asyncio.Event()
        #: A device's timeline (docs/timeline.md), written in batches by the ``timeline`` task.
        self.timeline = Timeline(self.store, enabled=settings.general.timeline)
        self.metrics = Metrics(self.distributor, self.store, self.timeline,
                               lambda: pipeline_report(self.distributor, self.store))
        self.notifier = notifier or Notifier(None)  # systemd: only when serve() passes one
        self.monitor: Monitor | None = None
        self.jobs: JobRunner | None = None  # fleet operations (docs/fleet.md)
        self.ops_tasks: list[asyncio.Task[None]] = []  # sd_notify, watchdog, retention
        self.retention_every = 3600.0  # seconds between two retention runs
        self.secrets: Unlocked | None = None  # the key the database's secrets are sealed with
        self.webhooks: WebhookSender | None = None  # [webhooks] url set
        #: Shares each vendor account's rate and pauses with the other instances (MySQL).
        self.cluster: Cluster | None = None
        self.cluster_tasks: list[asyncio.Task[None]] = []
        self.distributor.on_forget = self._forget_accounts

    async def _lane(self, provider: str, server: int) -> LaneId:
        """The lane of a server's events: its provider's account, when the provider says."""
        source = self.providers.get(provider)
        if isinstance(source, LaneSource):
            return await source.lane(server)
        return await server_lanes(provider, server)

    def _forget_accounts(self, quiet: float, keep: frozenset[str]) -> None:
        """The accounts unused for ``quiet`` seconds, which no lane holds (``keep``), are
        forgotten: first the cluster's claims on them, then the providers' gates and caches,
        keeping those the heartbeat still holds a gate of."""
        if self.cluster is not None:
            keep = keep | self.cluster.forget_idle(quiet, keep)
        for provider in self.providers.values():
            if isinstance(provider, LaneSource):
                provider.forget_idle(quiet, keep)

    async def start(self) -> None:
        """Open everything; on a failure, close what was opened and raise."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        general = self.settings.general
        await self._open_store()
        if self._given_providers is None:
            transport = AiohttpTransport(limit=max(general.queuenum * 2, 10))
            self._stack.push_async_callback(transport.aclose)
            self.providers = build_providers(self.settings, self.store, transport,
                                             observe=self.metrics.vendor_request)
        else:
            self.providers = self._given_providers
        for provider in self.providers.values():
            self._stack.push_async_callback(provider.close)
        self._join_cluster()
        self._warn_example_urls()
        self._setup_webhooks()
        self.workers = [
            Worker(i, self.distributor, self.store, self.providers, general)
            for i in range(general.queuenum)
        ]
        for worker in self.workers:
            worker.on_outcome = self.metrics.event_outcome
            worker.timeline = self.timeline
        self.jobs = JobRunner(self.store, self.providers, general, self.owner, self.distributor,
                              on_difference=self.metrics.reconcile_found)
        # Both ports first: nothing is leased (or sent) by a start that then fails.
        await self._start_listener()
        await self._start_ztp()
        await self.store.ping()  # READY=1 (below) only once the database answers too
        self.tasks = [asyncio.create_task(self.distributor.run(), name="distributor")]
        self.tasks += [
            asyncio.create_task(w.run(), name=f"queue-{w.index}") for w in self.workers
        ]
        if self.cluster is not None:
            self.cluster_tasks = [
                asyncio.create_task(self.cluster.run_heartbeat(), name="cluster-heartbeat"),
                asyncio.create_task(self.cluster.run_pauses(), name="cluster-pauses"),
            ]
        await self._notify_ready()
        # Written by now: what the workers, the vendor calls and the phones record (a stop
        # writes the rest, after the workers' last outcomes, before the store closes).
        self.ops_tasks.append(asyncio.create_task(self.timeline.run(), name="timeline"))
        if general.retention_days:
            self.ops_tasks.append(asyncio.create_task(self._retention(), name="retention"))
        # Fleet jobs are idempotent: a stop may cancel one; it is run again later.
        self.ops_tasks.append(asyncio.create_task(self.jobs.run(), name="jobs"))
        if self.webhooks is not None:  # at-least-once: a stop mid-post sends it again later
            self.ops_tasks.append(asyncio.create_task(self.webhooks.run(), name="webhooks"))

    def _setup_webhooks(self) -> None:
        settings = self.settings.webhooks
        if not settings.enabled:
            return
        self.store.webhook_types = frozenset(settings.events)
        self.webhooks = WebhookSender(settings, self.store, self.owner,
                                      on_result=self.metrics.webhook_result)
        self._stack.push_async_callback(self.webhooks.close)
        self.store.on_notices = self.webhooks.wake
        self.metrics.outbox = self.store
        log.info("Webhooks on", component="WEBHOOK", events=",".join(settings.events),
                 url=_shown_url(settings.url))

    async def _open_store(self) -> None:
        url = self.settings.general.database
        try:
            await self.store.open()
            self._stack.push_async_callback(self.store.close)
            self._stack.push_async_callback(self.timeline.flush)
            await self.store.migrate()
            # The key before anything is served: a wrong or missing one stops the start.
            self.secrets = await unlock(self.store, self.settings.general.secret_key_path)
            self._stack.callback(self.secrets.close)
        except KeyringError as exc:
            raise StartError(str(exc)) from exc
        except (StoreUnavailable, OSError) as exc:
            raise database_error(url, exc) from exc

    def _join_cluster(self) -> None:
        """On MySQL/MariaDB, where several instances may run: each account's rate and pauses
        are shared through the database (SQLite is one instance: its gates stand alone)."""
        if self.settings.general.database.scheme != "mysql":
            return
        self.cluster = cluster = Cluster(self.store, self.owner,
                                         self.settings.general.lease_timeout)
        self.metrics.count_cluster_queries(lambda: cluster.queries)
        for provider in self.providers.values():
            http = getattr(provider, "http", None)
            if isinstance(http, VendorHttp):
                http.shares = self.cluster

    def _warn_example_urls(self) -> None:
        """Phones sent to the shipped example host never arrive: say so at start (events
        of servers without their own provisioning_url fail, naming the setting)."""
        for name in self.providers:
            cls = PROVIDERS.get(name)
            url = self.settings.provider(name).provisioning_url if cls else ""
            if cls is not None and cls.access is not AccessMode.NONE \
                    and urlsplit(url).hostname == PLACEHOLDER_HOST:
                log.warning("provisioning_url is the example host", component="MAIN",
                            provider=name, url=url,
                            hint=f"set [{name}] provisioning_url to the URL your phones reach")
                self.start_warnings.append(
                    f"[{name}] provisioning_url is the example host {PLACEHOLDER_HOST}: its "
                    "events fail until it is the URL your phones reach (e.g. "
                    f"RPS_{name.upper().replace('-', '_')}_PROVISIONING_URL=…)")

    async def _start_listener(self) -> None:
        general = self.settings.general
        api = Api(self.settings, self.store, self.distributor, self.providers, self.metrics,
                  self.jobs, self.timeline)
        runner = web.AppRunner(create_app(api), access_log=None, handle_signals=False,
                               logger=http_server_logger("LISTENER"))
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, general.listen, general.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise bind_error("general", general.listen, general.port, exc) from exc
        sockets = getattr(site._server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else general.port
        self.address = f"{general.listen}:{port}"
        log.info("Listening", component="LISTENER", address=self.address)

    async def _start_ztp(self) -> None:
        if not self.settings.ztp.enabled:
            return
        settings = self.settings.ztp
        ztp = ZtpListener(settings, self.store, timeline=self.timeline,
                          repeats=Repeats(self.settings.webhooks.repeat_after))
        try:
            await ztp.start()
        except OSError as exc:
            raise bind_error("ztp", settings.listen, settings.port, exc) from exc
        self._stack.push_async_callback(ztp.close)
        self.ztp = ztp

    async def _notify_ready(self) -> None:
        # A cold add makes up to five vendor requests (token, two settings pages, PUT, a
        # clock-skew retry), each bounded by the timeout, and may wait out a database outage
        # for a lease time to record its outcome: longer than that, the worker is wedged.
        timeout = max((self.settings.provider(name).timeout
                       for name in self.settings.enabled_providers()), default=30.0)
        wedge_after = self.settings.general.lease_timeout + 5 * timeout
        self.monitor = Monitor(self.notifier, self.store, self.distributor, self.workers,
                               wedge_after=wedge_after)
        self.ops_tasks = self.monitor.start()

    async def _retention(self) -> None:
        """``[general] retention_days``: at start, then every ``retention_every`` seconds."""
        while True:
            days = self.settings.general.retention_days
            try:
                await delete_old_events(self.store, days, utcnow())
                await delete_old_timeline(self.store, days, utcnow())
            except StoreUnavailable as exc:  # the next run catches up
                log.error("Old events not deleted", component="DATABASE", err=str(exc))
            await asyncio.sleep(self.retention_every)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Serve until a stop is requested or a background task dies; the exit code."""
        stopper = asyncio.create_task(self._stop.wait(), name="stop-request")
        done, _ = await asyncio.wait([stopper, *self.tasks, *self.ops_tasks,
                                      *self.cluster_tasks],
                                     return_when=asyncio.FIRST_COMPLETED)
        code = 0
        for task in done:
            if task is not stopper:
                exc = task.exception() if not task.cancelled() else None
                log.error("Background task stopped", component="MAIN", task=task.get_name(),
                          err=repr(exc))
                code = 1
        stopper.cancel()
        await self.stop()
        return code

    async def stop(self) -> None:
        """Drain and close (idempotent)."""
        general = self.settings.general
        log.info("Stopping", component="MAIN", timeout=f"{general.drain_timeout:g}s")
        if self.monitor is not None:
            self.monitor.stopping()
        await cancel_all(self.ops_tasks)
        self.distributor.stop()
        for worker in self.workers:
            worker.stopping = True
        # Let a lease round in progress finish rather than cancel it halfway: what it leased
        # is then in the queues, and given back below, instead of held until it expires.
        if self.tasks:
            await asyncio.wait(self.tasks[:1], timeout=general.drain_timeout)
        queued = self.distributor.drain_queues()
        busy = {t for t, w in zip(self.tasks[1:], self.workers, strict=True) if w.current}
        idle = [t for t in self.tasks if t not in busy]
        for task in idle:
            task.cancel()
        if busy:
            await asyncio.wait(busy, timeout=general.drain_timeout)
        unfinished = [w.current.id for w in self.workers if w.current]
        await cancel_all(self.tasks)
        # Outcomes already reached are still being written: let them land.
        writes = [w.writing for w in self.workers if w.writing is not None]
        if writes:
            await asyncio.wait(writes, timeout=general.drain_timeout)
        with contextlib.suppress(Exception):
            await self.store.release_leases(self.owner, queued + unfinished, utcnow())
        for task in self.cluster_tasks:  # kept until the last call: it needed its share
            task.cancel()
        await asyncio.gather(*self.cluster_tasks, return_exceptions=True)
        if self.cluster is not None:
            await self.cluster.leave()
        log.info("Stopped", component="MAIN", finished=len(busy) - len(unfinished),
                 returned=len(queued) + len(unfinished))
        await self._stack.aclose()


async def serve(settings: Settings, log_sink: LogFile | None = None) -> int:
    """Run the daemon with signal handling: the ``rps-service run`` command."""
    service = Service(settings, log_sink=log_sink, notifier=Notifier.from_env())
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(signame: str) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("Second signal, stopping at once", component="MAIN", signal=signame)
            os._exit(1)
        log.info("Signal received", component="MAIN", signal=signame)
        service.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig.name)
    if log_sink is not None:
        loop.add_signal_handler(signal.SIGHUP, _reopen_log, log_sink)
    await service.start()
    if settings.general.log_file != "-":  # else rps.log's own lines are on the terminal
        _say_started(service)
    return await service.run()


def _shown_url(url: str) -> str:
    """A URL as rps.log shows it: no user info or query (either may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _say_started(service: Service) -> None:
    """A person starting the daemon by hand sees it is up, where, and what stops its events
    (the same as rps.log says, which they may not be reading yet)."""
    settings = service.settings
    console = service.address.replace("0.0.0.0:", "127.0.0.1:", 1)  # reachable from here
    lines = [f"listening on {service.address} (web console http://{console}/ui/); "
             f"log in {settings.general.log_file}"]
    if service.ztp is not None:
        lines.append(f"phones' listener on {service.ztp.address}, path {settings.ztp.path}")
    lines += [f"WARNING: {text}" for text in service.start_warnings]
    for line in lines:
        print(f"rps-service: {line}", file=sys.stderr, flush=True)


def _reopen_log(sink: LogFile) -> None:
    """SIGHUP (logrotate's postrotate, ``systemctl reload``): write to the file now at the path."""
    try:
        sink.reopen()
    except OSError as exc:  # the old file stays open: lines go on landing somewhere
        log.error("Cannot reopen log file", component="MAIN", err=str(exc), path=sink.path)
        return
    log.info("Log file reopened", component="MAIN", path=sink.path)
