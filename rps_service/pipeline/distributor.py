"""The DISTRIBUTOR: leases due events from the journal into lanes, and hands them to workers.

The journal is the source of truth; memory only ever holds ``queuenum * queuecap`` events,
however large the backlog. Events are leased per (provider, server), in arrival order, at
most what the server's lane can send in half a lease (``rate_limit * lease_timeout / 2``;
with a share of an account several instances share, ``share * SHARED_HOLD``; at most
``queuecap``): one server's backlog never fills the memory another server's events
need. Leased events wait in their lane (:mod:`rps_service.pipeline.lanes`); the dispatcher
hands one to an idle worker only when its account can send now, so no worker waits for one
account's rate slot or throttling pause while another account's event waits.

The store never leases a device's event while an earlier one is unfinished, so a device's
events run in order and never concurrently, whichever worker takes them. The distributor
wakes at once when the listener stores events or a server's waiting events run low, and
otherwise polls every ``poll_interval`` (other instances' events, backoff timers, expired
leases).

Accounts come and go (a tenant's credentials rotated, a server removed): every
``forget_every`` seconds the lease loop forgets the lanes, and through ``on_forget`` the
gates, cluster claims and vendor caches, of accounts unused for ``forget_after`` seconds
(:meth:`Distributor.forget_idle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from rps_service.clock import utcnow
from rps_service.config import GeneralSettings
from rps_service.logs import get_logger
from rps_service.models import Event
from rps_service.pipeline.lanes import Group, LaneBoard, LaneId
from rps_service.pipeline.lease import Lease
from rps_service.store import Store, StoreUnavailable

log = get_logger()

LEASE_ROUND = 100  # events leased per journal round trip
LANE_TTL = 5.0  # seconds a server's lane (its account) is trusted before it is looked up again
#: Seconds of calls a lane holds at most with its share of an account other instances share.
SHARED_HOLD = 2.0
#: An account unused this long (seconds) is forgotten: its lane, gate, claim and caches.
FORGET_AFTER = 600.0
#: How often (seconds) the lease loop looks for such accounts.
FORGET_EVERY = 60.0

#: Which lane a (provider, server)'s events ride: see :class:`LaneId`.
LaneResolver = Callable[[str, int], Awaitable[LaneId]]
#: Forgets the accounts unused for ``quiet`` seconds except those in ``keep`` (the accounts
#: the lanes still refer to): their gates, cluster claims and vendor caches.
AccountForgetter = Callable[[float, frozenset[str]], None]


async def server_lanes(provider: str, server: int) -> LaneId:
    """Every server its own lane, without pacing (when no providers tell their accounts)."""
    return LaneId(f"{provider}|{server}", provider, f"server {server}", None)


class Distributor:
    """Fills the lanes from the journal, hands ready events to the workers, and keeps and
    renews the leases of what it holds."""

    def __init__(
        self,
        store: Store,
        settings: GeneralSettings,
        owner: str,
        clock: Callable[[], datetime] = utcnow,
        lanes: LaneResolver = server_lanes,
        serves: Callable[[str], bool] = lambda provider: True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        #: Whether this instance handles a provider's events (it has it enabled): instances
        #: sharing a database may serve different providers, and each leases only its own.
        self.serves = serves
        self.settings = settings
        self.owner = owner
        self.clock = clock
        self.resolve = lanes
        self.capacity = settings.queuenum * settings.queuecap
        self.monotonic = monotonic  # the lanes' clock (rate slots, lane look-ups, forgetting)
        self.board = LaneBoard(settings.queuenum, clock=monotonic)
        self.handoff: asyncio.Queue[Event] = asyncio.Queue()
        self.idle = 0  # workers waiting for an event
        self.holding: dict[int, int] = {}  # worker index → id of the event it has
        # Leased by this instance and not yet finished: each event's lease as last confirmed.
        self.leases: dict[int, Lease] = {}
        self._margin = settings.lease_timeout / 10  # requests end that long before a lease
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()  # the dispatcher should look at the lanes
        self._stopping = False
        self._next_due: datetime | None = None
        self._last_renew = time.monotonic()
        self._last_recovery = 0.0
        self._discover_at = 0.0  # when to ask the journal which servers have work
        self._groups: dict[Group, None] = {}  # servers with work, least recently leased first
        self._lane_ids: dict[Group, tuple[float, LaneId]] = {}
        self.lease_recoveries = 0
        self.forget_after = FORGET_AFTER
        self.forget_every = FORGET_EVERY
        self._last_forget = monotonic()
        #: Set by the service: forgets the idle accounts' gates, claims and caches.
        self.on_forget: AccountForgetter | None = None

    # -- signals from the listener and the workers ----------------------------------------

    def wake(self, groups: list[Group] | None = None) -> None:
        """New work may be due (of these servers, when known): look at the journal now."""
        for group in groups or ():
            self._groups.setdefault(group)
        if groups is None:
            self._discover_at = 0.0
        self._wake.set()

    def schedule(self, when: datetime) -> None:
        """An event was put back to wait until ``when`` (backoff)."""
        if self._next_due is None or when < self._next_due:
            self._next_due = when

    async def take(self, worker: int) -> Event:
        """The next event for ``worker`` (waits until the dispatcher hands one over)."""
        self.idle += 1
        self._ready.set()
        try:
            event = await self.handoff.get()
        finally:
            self.idle -= 1
        self.holding[worker] = event.id
        return event

    def call_ended(self, event: Event, worker: int | None = None) -> None:
        """The event's vendor call is over: its lane may start another, the worker is free."""
        self.board.ended(event)
        if worker is not None:
            self.holding.pop(worker, None)
        self._ready.set()

    def finished(self, event: Event) -> None:
        """The event's outcome is written: it leaves memory, its device may go on.

        The journal is looked at again once the server's waiting events are down to half
        what it may hold, not after every event: while lanes are deep, a lease round per
        event costs the event loop more than the vendor call.
        """
        self.board.ended(event)
        self.leases.pop(event.id, None)
        group = (event.provider, event.server)
        self._groups.setdefault(group)
        if self.board.waiting_in(group) <= self._group_cap(group) // 2:
            self._wake.set()

    def depths(self) -> list[int]:
        """Per worker: 1 while it has an event, else 0."""
        return [1 if i in self.holding else 0 for i in range(self.settings.queuenum)]

    def lane_of(self, provider: str, server: int) -> LaneId | None:
        """The lane last resolved for a server (None: not looked up yet)."""
        known = self._lane_ids.get((provider, server))
        return known[1] if known else None

    async def lane_for(self, provider: str, server: int) -> LaneId:
        """The server's lane, looked up again after ``LANE_TTL`` (credentials may change)."""
        group = (provider, server)
        known = self._lane_ids.get(group)
        mono = self.monotonic()
        if known is None or known[0] < mono:
            known = (mono + LANE_TTL, await self.resolve(provider, server))
            self._lane_ids[group] = known
        return known[1]

    def _group_cap(self, group: Group) -> int:
        """Events of one server held at most: what its lane can send in half a lease (with
        its share of an account several instances share: in ``SHARED_HOLD`` seconds, so
        that one instance does not hold what the others' shares could send)."""
        cap = self.settings.queuecap
        lane = self.lane_of(*group)
        if lane is not None and lane.gate is not None:
            hold = self.settings.lease_timeout / 2
            if lane.gate.shared:
                hold = min(hold, SHARED_HOLD)
            cap = min(cap, math.ceil(lane.gate.rate * hold))
        return max(1, cap)

    # -- the loops -----------------------------------------------------------------------

    async def run(self) -> None:
        """Lease, route and dispatch until :meth:`stop`; database outages are waited out."""
        log.info("Distributing events", component="DISTRIBUTOR", num=self.settings.queuenum)
        loops = {asyncio.create_task(self._lease_loop(), name="leasing"),
                 asyncio.create_task(self._dispatch(), name="dispatcher")}
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # one died: the service stops (supervision)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _lease_loop(self) -> None:
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
                await self._sleep(self._wake, outage)
                continue
            if not more:
                await self._sleep(self._wake, self._timeout())

    async def _dispatch(self) -> None:
        """Hand ready events to idle workers; sleep until a slot, a worker or an event."""
        while not self._stopping:
            self._ready.clear()
            wait = self.dispatch_ready()
            await self._sleep(self._ready, self.settings.poll_interval if wait is None
                              else wait)

    def dispatch_ready(self) -> float | None:
        """Hand over what can go now; seconds until a lane's next slot (None: no wait)."""
        while self.idle - self.handoff.qsize() > 0 and not self._stopping:
            event, when = self.board.pick(self.idle - self.handoff.qsize())
            if event is None:
                return None if when is None else max(when - self.monotonic(), 0.001)
            self.handoff.put_nowait(event)
        return None

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._ready.set()

    @staticmethod
    async def _sleep(signal: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(seconds, 0.0)):
                await signal.wait()

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
        if self.monotonic() - self._last_forget >= self.forget_every:
            self.forget_idle()

    def forget_idle(self) -> None:
        """Forget the accounts unused for ``forget_after`` seconds: their lanes, the lane
        look-ups that name them, then (``on_forget``) their gates, cluster claims and
        vendor caches. What a lane or a look-up still names is kept, so nothing here ever
        holds a gate its provider has dropped (the one gate per account stays one)."""
        self._last_forget = mono = self.monotonic()
        self.board.forget_idle(self.forget_after)
        for group, (until, _) in list(self._lane_ids.items()):
            if until + self.forget_after <= mono and not self.board.waiting_in(group):
                del self._lane_ids[group]
        if self.on_forget is not None:
            keep = {lane.key for lane in self.board}
            keep.update(lane_id.key for _, lane_id in self._lane_ids.values())
            self.on_forget(self.forget_after, frozenset(keep))

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
        """Lease for the servers with room; True when more due work may be waiting."""
        now = self.clock()
        if self._next_due is not None and self._next_due <= now:
            # Due now: look for it. Forgotten even when memory is full, or the sleep
            # below would time out at once, over and over.
            self._next_due = None
            self._discover_at = 0.0
        room = min(self.capacity - len(self.leases), LEASE_ROUND)
        if room <= 0:
            return False
        mono = time.monotonic()
        if mono >= self._discover_at:
            self._discover_at = mono + self.settings.poll_interval
            for group in await self.store.pending_groups():
                if self.serves(group[0]):
                    self._groups.setdefault(group)
        wanted = self._wanted(room)
        if not wanted:
            return False
        started = time.monotonic()  # the lease runs from before it was taken
        until = now + timedelta(seconds=self.settings.lease_timeout)
        leased = await self.store.lease_groups(self.owner, now, until, wanted)
        for item in leased.superseded:
            log.info("Event superseded", component="DISTRIBUTOR", id=item.id, by=item.by)
        got: dict[Group, int] = {}
        # In arrival order: a server new to its lane queues behind those that came first.
        for event in sorted(leased.events, key=lambda e: e.id):
            group = (event.provider, event.server)
            got[group] = got.get(group, 0) + 1
            self.leases[event.id] = Lease(event.id, started + self.settings.lease_timeout,
                                          self._margin)
            self.board.add(await self.lane_for(*group), event)
        for provider, server, limit in wanted:
            self._groups.pop((provider, server), None)
            if got.get((provider, server), 0) >= limit:
                self._groups[(provider, server)] = None  # more may wait: last in turn
        self._ready.set()
        # Superseded events freed their device's next event: look again at once.
        return bool(leased.superseded) or (
            sum(got.values()) >= room and len(self.leases) < self.capacity)

    def _wanted(self, room: int) -> list[tuple[str, int, int]]:
        """(provider, server, how many) to lease this round, servers in turn."""
        wanted = []
        for group in list(self._groups):
            if room <= 0:
                break
            free = self._group_cap(group) - self.board.waiting_in(group)
            if free > 0:
                take = min(free, room)
                wanted.append((*group, take))
                room -= take
        return wanted

    def drain_queues(self) -> list[int]:
        """Take back what no worker has started (shutdown); their ids."""
        events = self.board.take_all()
        while not self.handoff.empty():
            events.append(self.handoff.get_nowait())
        for event in events:
            self.board.ended(event)
            self.leases.pop(event.id, None)
        return [e.id for e in events]
