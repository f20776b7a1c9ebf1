"""The DISTRIBUTOR: leases due events from the journal into bounded per-device queues.

The journal is the source of truth; memory only ever holds what the queues can take
(``queuenum * queuecap`` events), however large the backlog. A device hashes to one queue,
and the store never leases a device's event while an earlier one is unfinished, so a
device's events run in order and never concurrently. The distributor wakes at once when
the listener stores events (unless every queue is full) or a finished event leaves its
queue half empty, and otherwise polls every ``poll_interval`` (other instances' events,
backoff timers, expired leases).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from rps_service.clock import utcnow
from rps_service.config import GeneralSettings
from rps_service.logs import get_logger
from rps_service.models import Event
from rps_service.pipeline.lease import Lease
from rps_service.store import Store, StoreUnavailable

log = get_logger()

LEASE_ROUND = 100  # events leased per journal round trip


class Distributor:
    """Fills the queues from the journal; keeps and renews the leases of what it holds."""

    def __init__(
        self,
        store: Store,
        settings: GeneralSettings,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.settings = settings
        self.owner = owner
        self.clock = clock
        self.queues: list[asyncio.Queue[Event]] = [
            asyncio.Queue(maxsize=settings.queuecap) for _ in range(settings.queuenum)
        ]
        # Leased by this instance and not yet finished: each event's lease as last confirmed.
        self.leases: dict[int, Lease] = {}
        self._margin = settings.lease_timeout / 10  # requests end that long before a lease
        self._wake = asyncio.Event()
        self._low_water = settings.queuecap // 2
        self._stopping = False
        self._next_due: datetime | None = None
        self._last_renew = time.monotonic()
        self._last_recovery = 0.0
        self.lease_recoveries = 0

    # -- signals from the listener and the workers ----------------------------------------

    def wake(self) -> None:
        """New work may be due: look at the journal now, unless every queue is full (nothing
        could be leased; the refill after finished events finds it)."""
        if not all(q.full() for q in self.queues):
            self._wake.set()

    def schedule(self, when: datetime) -> None:
        """An event was put back to wait until ``when`` (backoff)."""
        if self._next_due is None or when < self._next_due:
            self._next_due = when

    def finished(self, event: Event) -> None:
        """A worker is done with ``event``: its queue has room, its device may go on.

        The journal is looked at again once the queue is down to half its capacity, not
        after every event: while the queues are deep, a lease round per event costs the
        event loop more than the vendor call. The device's next event (held back until
        this one finished) comes with that refill, or with the next poll.
        """
        self.leases.pop(event.id, None)
        if self.queues[self.queue_of(event)].qsize() <= self._low_water:
            self._wake.set()

    def queue_of(self, event: Event) -> int:
        return event.slot % len(self.queues)

    def depths(self) -> list[int]:
        return [q.qsize() for q in self.queues]

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Lease and route until :meth:`stop`; database outages are waited out."""
        log.info("Distributing events", component="DISTRIBUTOR", num=len(self.queues))
        outage = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                await self._housekeeping()
                more = await self._fill()
                if outage:
                    log.info("Database available again", component="DATABASE")
                    outage = 0.0
            except StoreUnavailable as exc:
                outage = min(outage * 2 or 0.5, 30.0)
                log.error("Database unavailable", component="DATABASE", err=str(exc),
                          retry=f"{outage:g}s")
                await self._sleep(outage)
                continue
            if not more:
                await self._sleep(self._timeout())

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._wake.wait()

    def _timeout(self) -> float:
        timeout = self.settings.poll_interval
        if self._next_due is not None:
            due = (self._next_due - self.clock()).total_seconds()
            timeout = min(timeout, max(due, 0.0))
        return timeout

    def lease_of(self, event: Event) -> Lease | None:
        """This instance's view of the event's lease (None once it is finished)."""
        return self.leases.get(event.id)

    async def _housekeeping(self) -> None:
        mono = time.monotonic()
        if not self.leases:
            self._last_renew = mono  # fresh leases need no renewal yet
        elif mono - self._last_renew >= self.settings.lease_timeout / 3:
            await self._renew(mono)
        if mono - self._last_recovery >= self.settings.poll_interval:
            self._last_recovery = mono
            recovered = await self.store.release_expired_leases(self.clock())
            if recovered:
                self.lease_recoveries += len(recovered)
                log.warning("Lease expired, event taken again", component="DISTRIBUTOR",
                            ids=",".join(map(str, recovered)))

    async def _renew(self, started: float) -> None:
        """Extend the leases held; only a renewal that succeeded moves their deadline."""
        held = dict(self.leases)
        until = self.clock() + timedelta(seconds=self.settings.lease_timeout)
        renewed = set(await self.store.renew_leases(self.owner, sorted(held), until))
        self._last_renew = started
        for event_id, lease in held.items():
            if event_id in renewed:
                lease.expires = started + self.settings.lease_timeout
            elif not lease.lost:
                lease.lost = True
                log.warning("Lease lost", component="DISTRIBUTOR", id=event_id)

    async def _fill(self) -> bool:
        """Lease for the queues with room; True when more due work may be waiting."""
        now = self.clock()
        if self._next_due is not None and self._next_due <= now:
            # Due now: this round or the next refill leases it. Forgotten even when the
            # queues are full, or the sleep below would time out at once, over and over.
            self._next_due = None
        free = {i: q.maxsize - q.qsize() for i, q in enumerate(self.queues) if not q.full()}
        if not free:
            return False
        # In rounds of at most LEASE_ROUND: a burst's first events reach the workers after
        # a short transaction instead of one that reads and updates the whole burst.
        limit = min(sum(free.values()), LEASE_ROUND)
        started = time.monotonic()  # the lease runs from before it was taken
        until = now + timedelta(seconds=self.settings.lease_timeout)
        leased = await self.store.lease_events(
            self.owner, now, until, limit, len(self.queues), sorted(free)
        )
        for item in leased.superseded:
            log.info("Event superseded", component="DISTRIBUTOR", id=item.id, by=item.by)
        events = leased.events
        overflow = []
        for event in events:
            queue = self.queues[self.queue_of(event)]
            if queue.full():
                overflow.append(event.id)
                continue
            self.leases[event.id] = Lease(event.id, started + self.settings.lease_timeout,
                                          self._margin)
            queue.put_nowait(event)
        if overflow:
            # Several due devices hashed to one queue; they wait for the next round.
            await self.store.release_leases(self.owner, overflow, now)
        # Superseded events freed their device's next event: look again at once.
        return bool(leased.superseded) or (len(events) == limit and not overflow)

    def drain_queues(self) -> list[int]:
        """Take back what no worker has started (shutdown); their ids."""
        ids = []
        for queue in self.queues:
            while not queue.empty():
                event = queue.get_nowait()
                self.leases.pop(event.id, None)
                ids.append(event.id)
        return ids
