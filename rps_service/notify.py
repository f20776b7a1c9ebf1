"""systemd integration: ``sd_notify`` readiness, status, stopping and the watchdog.

systemd (``Type=notify``) gives the daemon ``NOTIFY_SOCKET``: a datagram socket path, or an
abstract socket name starting with ``@``. The protocol is one datagram of ``KEY=value``
lines, so a few lines of our own replace a binding library. Without ``NOTIFY_SOCKET`` (a
terminal, a container, the tests' in-process services) every call is a no-op.

With ``WatchdogSec=``, systemd also sets ``WATCHDOG_USEC`` and expects ``WATCHDOG=1`` more
often than that; we send it at half the interval, and only while the pipeline is alive: the
event loop runs (a blocked loop sends nothing, and its lag is measured and logged) and no
worker has been stuck on one event for longer than ``lease_timeout`` plus the provider
timeout, which no healthy call can take. When that happens the pings stop, an ERROR names
the worker and event, and systemd restarts the daemon; the event's lease runs out and
another instance (or the restarted one) takes it again.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from rps_service.logs import get_logger
from rps_service.models import Event
from rps_service.store import StoreUnavailable

log = get_logger()

STATUS_EVERY = 5.0  # seconds between STATUS= updates (shorter when the watchdog is)
STATUS_TIMEOUT = 5.0  # a hanging database must not hang the status task


class Notifier:
    """Sends ``sd_notify`` datagrams to ``address`` (``None``: does nothing).

    ``watchdog`` is the number of seconds between ``WATCHDOG=1`` pings, None when off.
    """

    def __init__(self, address: str | None, watchdog: float | None = None) -> None:
        self.address = address or None
        self.watchdog = watchdog
        self._sock: socket.socket | None = None
        self._warned = False
        if self.address and not self.address.startswith(("/", "@")):
            log.warning("Unsupported NOTIFY_SOCKET, not notifying systemd", component="MAIN",
                        address=self.address)
            self.address = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``)."""
        env = os.environ if env is None else env
        return cls(env.get("NOTIFY_SOCKET"), watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=…"``) as one message; True if sent."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            # Say it once: a missing systemd must not flood rps.log every few seconds.
            if not self._warned:
                log.warning("Cannot notify systemd", component="MAIN", address=self.address,
                            err=str(exc))
                self._warned = True
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None when off."""
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (e.g. our parent)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


class _Worker(Protocol):
    index: int
    current: Event | None


class _Distributor(Protocol):
    def depths(self) -> list[int]: ...


class _Backlog(Protocol):
    async def backlog(self) -> dict[str, int]: ...


class Monitor:
    """The daemon's side of systemd: READY, STATUS, WATCHDOG and STOPPING."""

    def __init__(
        self,
        notifier: Notifier,
        store: _Backlog,
        distributor: _Distributor,
        workers: Sequence[_Worker],
        *,
        wedge_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.store = store
        self.distributor = distributor
        self.workers = workers
        self.wedge_after = wedge_after
        self.watchdog = notifier.watchdog
        self.clock = clock
        self.lag = 0.0  # seconds the event loop woke the watchdog late, last round
        self._seen: dict[int, tuple[Event, float]] = {}  # worker index → (event, first seen)
        self._failing = False

    def start(self) -> list[asyncio.Task[None]]:
        """Say READY=1 and start the STATUS and watchdog tasks (none without systemd)."""
        if not self.notifier.enabled:
            return []
        self.notifier.notify("READY=1", "STATUS=Started")
        log.info("Notified systemd", component="MAIN", watchdog=_seconds(self.watchdog))
        tasks = [asyncio.create_task(self.report_status(), name="sd-status")]
        if self.watchdog:
            tasks.append(asyncio.create_task(self.feed_watchdog(), name="sd-watchdog"))
        return tasks

    def stopping(self) -> None:
        """Say STOPPING=1: the last message; the socket is closed after it."""
        self.notifier.notify("STOPPING=1", "STATUS=Stopping: draining in-flight events")
        self.notifier.close()

    # -- STATUS ---------------------------------------------------------------------------

    async def status_line(self) -> str:
        """``Backlog: 3 pending, 1 running. Queues: 0 1 0 2`` for ``systemctl status``."""
        queues = " ".join(map(str, self.distributor.depths()))
        try:
            backlog = await asyncio.wait_for(self.store.backlog(), STATUS_TIMEOUT)
        except (StoreUnavailable, TimeoutError) as exc:
            return f"Database unavailable ({str(exc) or 'timeout'}). Queues: {queues}"
        return (f"Backlog: {backlog.get('pending', 0)} pending, {backlog.get('running', 0)} "
                f"running. Queues: {queues}")

    async def report_status(self) -> None:
        every = min(STATUS_EVERY, self.watchdog or STATUS_EVERY)
        while True:
            self.notifier.notify(f"STATUS={await self.status_line()}")
            await asyncio.sleep(every)

    # -- WATCHDOG -------------------------------------------------------------------------

    def wedged(self, now: float) -> list[tuple[_Worker, Event, float]]:
        """Workers on the same event for longer than ``wedge_after``: (worker, event, age)."""
        stuck = []
        for worker in self.workers:
            event = worker.current
            if event is None:
                self._seen.pop(worker.index, None)
                continue
            seen = self._seen.get(worker.index)
            # Identity, not id: a retried event comes back as a new object from a new lease.
            if seen is None or seen[0] is not event:
                seen = self._seen[worker.index] = (event, now)
            age = now - seen[1]
            if age > self.wedge_after:
                stuck.append((worker, event, age))
        return stuck

    async def feed_watchdog(self) -> None:
        """Ping at half of WATCHDOG_USEC while alive; go quiet while a worker is wedged."""
        interval = self.watchdog or 1.0
        self.notifier.notify("WATCHDOG=1")
        last = self.clock()
        while True:
            await asyncio.sleep(interval)
            now = self.clock()
            self.lag, last = max(0.0, now - last - interval), now
            if self.lag > interval / 2:
                log.warning("Event loop lagging", component="MAIN", lag=_seconds(self.lag))
            if self._alive(now):
                self.notifier.notify("WATCHDOG=1")

    def _alive(self, now: float) -> bool:
        stuck = self.wedged(now)
        if stuck and not self._failing:
            for worker, event, age in stuck:
                log.error("Worker wedged, watchdog stopped", component="QUEUE",
                          age=_seconds(age), id=event.id, mac=event.mac, queue=worker.index)
            self.notifier.notify("STATUS=Wedged: a worker is stuck; waiting for the watchdog")
        elif not stuck and self._failing:
            log.info("Workers alive again, watchdog resumed", component="QUEUE")
        self._failing = bool(stuck)
        return not stuck


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}s"
