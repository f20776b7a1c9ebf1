"""Lanes: leased events wait per vendor account, and go to a worker only when they can be sent.

A *lane* is one vendor account (provider + the credentials its calls are made with). Leased
events wait here, per lane and, inside a lane, per server (tenant) in arrival order; no
worker holds an event that waits for its account's rate slot or throttling pause. The
scheduler (:meth:`LaneBoard.pick`) hands a worker the next event of a lane whose gate has a
slot now (or within ``LEAD``), and claims that slot for it, so the worker's first request
goes at its slot:

* lanes take turns, the one served longest ago first;
* inside a lane, servers take turns the same way (the server that has waited longest gets
  the next call), so one tenant's backlog on a shared account delays another tenant's
  event by at most one call per tenant with work;
* a lane whose calls may hang (one under way and none ended yet, calls that take
  ``SLOW_CALL`` seconds or more, or one under way that long) never takes the last free
  worker, which stays for the other lanes; a lane of quick calls may use every worker;
* for a while after a throttling pause, a lane whose provider asks for it
  (``gentle_after_throttle``) has one event under way at a time;
* several instances on one database each pace a lane with their share of the account's
  rate (:mod:`rps_service.pipeline.cluster`). A lane with no share here claims no slot and
  has one event under way at a time: its call asks for a share and, without one, is
  deferred (nothing sent), the event going back to the journal for the other instances.

A lane with nothing waiting or under way for a while is forgotten
(:meth:`LaneBoard.forget_idle`): accounts come and go as tenants' credentials rotate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from rps_service.models import Event
from rps_service.providers.ratelimit import AccountGate

#: A call under way this long (seconds) makes its lane "slow": it keeps off the last worker.
SLOW_CALL = 0.5

#: How long (seconds) before its account's slot an event may go to a worker: what the
#: worker does before the request (its device row, write-ahead access details) overlaps
#: the wait, and the request goes at its slot rather than that much after it.
LEAD = 0.05

Group = tuple[str, int]  # (provider, server): the unit leased from the journal


@dataclass(frozen=True)
class LaneId:
    """Which account a server's events are sent with: a stable key (never a secret), the
    label the operator sees, and the account's gate (None: no usable credentials, the
    events fail at once without a call)."""

    key: str
    provider: str
    account: str
    gate: AccountGate | None


@runtime_checkable
class LaneSource(Protocol):
    """A provider that tells which account a server's events are sent with, and forgets the
    accounts gone quiet."""

    async def lane(self, server: int) -> LaneId: ...

    def forget_idle(self, quiet: float, keep: Collection[str] = ()) -> frozenset[str]:
        """Drop the gates (and caches) of accounts unused for ``quiet`` seconds, except
        those in ``keep``; the accounts dropped."""


@dataclass
class Lane:
    """One account's waiting events (per server, in arrival order) and calls under way."""

    key: str
    provider: str
    account: str
    gate: AccountGate | None
    servers: OrderedDict[int, deque[Event]] = field(default_factory=OrderedDict)
    started: dict[int, float] = field(default_factory=dict)  # event id → call start
    waiting: int = 0
    latency: float | None = None  # moving average of its events' call time
    used: float = 0.0  # when an event last came, started or ended (the board's clock)

    @property
    def in_flight(self) -> int:
        return len(self.started)

    def slow(self, now: float) -> bool:
        """Calls under way, and not known to be quick: none has ended yet, they took
        ``SLOW_CALL`` or more on average, or one has run that long."""
        if not self.started:
            return False
        if self.latency is None or self.latency >= SLOW_CALL:
            return True
        return min(self.started.values()) < now - SLOW_CALL

    def ended(self, event_id: int, now: float) -> None:
        began = self.started.pop(event_id, None)
        if began is not None:
            took = now - began
            self.latency = took if self.latency is None else self.latency * 0.8 + took * 0.2

    def pop(self) -> Event:
        """The next event of the server that has waited longest; that server goes last."""
        server, events = next(iter(self.servers.items()))
        event = events.popleft()
        del self.servers[server]
        if events:
            self.servers[server] = events
        self.waiting -= 1
        return event


class LaneBoard:
    """Every lane of this instance: what waits where, and who is served next."""

    def __init__(self, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = workers
        self.clock = clock
        self.lanes: OrderedDict[str, Lane] = OrderedDict()  # least recently served first
        self._group_waiting: dict[Group, int] = {}
        self._running: dict[int, Lane] = {}  # event id → its lane, while its call runs

    def lane(self, lane_id: LaneId) -> Lane:
        lane = self.lanes.get(lane_id.key)
        if lane is None:
            lane = self.lanes[lane_id.key] = Lane(lane_id.key, lane_id.provider,
                                                  lane_id.account, lane_id.gate,
                                                  used=self.clock())
        elif lane_id.gate is not None:
            lane.gate = lane_id.gate
        return lane

    def add(self, lane_id: LaneId, event: Event) -> None:
        """A leased event waits in its lane, behind its server's earlier ones."""
        lane = self.lane(lane_id)
        lane.servers.setdefault(event.server, deque()).append(event)
        lane.waiting += 1
        lane.used = self.clock()
        group = (event.provider, event.server)
        self._group_waiting[group] = self._group_waiting.get(group, 0) + 1

    def waiting_in(self, group: Group) -> int:
        """Events of one (provider, server) waiting here (not yet with a worker)."""
        return self._group_waiting.get(group, 0)

    @property
    def waiting(self) -> int:
        return sum(lane.waiting for lane in self.lanes.values())

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def pick(self, free: int) -> tuple[Event | None, float | None]:
        """The event to hand to one of ``free`` idle workers now, if any; else when to look
        again (the earliest slot of a lane that has events, None: nothing waits)."""
        now = self.clock()
        wake: float | None = None
        for lane in self.lanes.values():
            if not lane.waiting:
                continue
            if free <= 1 < self.workers and lane.slow(now):
                continue  # the last worker stays free for the other lanes
            if lane.gate is not None and lane.in_flight and lane.gate.one_at_a_time():
                continue  # looked at again when its event ends
            if lane.gate is not None:
                slot = lane.gate.next_slot() - LEAD
                if math.isinf(slot):
                    if lane.in_flight:
                        continue  # no share here: one event at a time asks for one
                elif slot > now:
                    wake = slot if wake is None else min(wake, slot)
                    continue
                else:
                    lane.gate.claim()
            return self._start(lane, now), None
        return None, wake

    def _start(self, lane: Lane, now: float) -> Event:
        event = lane.pop()
        self.lanes.move_to_end(lane.key)
        group = (event.provider, event.server)
        self._group_waiting[group] -= 1
        if not self._group_waiting[group]:
            del self._group_waiting[group]
        lane.started[event.id] = now
        lane.used = now
        self._running[event.id] = lane
        return event

    def ended(self, event: Event) -> None:
        """The event's call is over (idempotent)."""
        lane = self._running.pop(event.id, None)
        if lane is not None:
            lane.used = self.clock()
            lane.ended(event.id, lane.used)

    def forget_idle(self, quiet: float) -> None:
        """Drop the lanes with no event waiting or under way for ``quiet`` seconds: an
        account whose credentials were rotated away, a server removed. A lane that comes
        back starts afresh (last in the lanes' turns); its gate is the provider's."""
        now = self.clock()
        for key in [key for key, lane in self.lanes.items()
                    if not lane.waiting and not lane.started and now - lane.used >= quiet]:
            del self.lanes[key]

    def take_all(self) -> list[Event]:
        """Every waiting event, removed (shutdown)."""
        out = []
        for lane in self.lanes.values():
            while lane.waiting:
                out.append(lane.pop())
        self._group_waiting.clear()
        return out

    def __iter__(self) -> Iterator[Lane]:
        return iter(self.lanes.values())
