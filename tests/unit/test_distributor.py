"""The distributor's loop against a stand-in journal: when it looks, and when it does not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from rps_service.clock import utcnow
from rps_service.config import GeneralSettings
from rps_service.models import Event
from rps_service.pipeline.distributor import Distributor
from rps_service.pipeline.lanes import LaneId
from rps_service.pipeline.lease import Lease
from rps_service.providers.ratelimit import AccountGate
from rps_service.store.base import Leased


class Journal:
    """Counts lease rounds; one server has work, but nothing more to lease."""

    def __init__(self) -> None:
        self.rounds = 0

    async def pending_groups(self) -> list[tuple[str, int]]:
        return [("snom", 1)]

    async def lease_groups(self, *args: Any) -> Leased:
        self.rounds += 1
        return Leased([], [])

    async def renew_leases(self, *args: Any) -> None:
        pass

    async def release_expired_leases(self, now: datetime) -> list[int]:
        return []


def event(event_id: int) -> Event:
    now = datetime(2026, 1, 1)
    return Event(id=event_id, action="add", provider="snom", server=1, mac="000413000001",
                 payload={}, state="running", attempts=1, created_at=now, updated_at=now,
                 next_attempt_at=now, lease_until=now, last_error=None, idempotency_key=None,
                 slot=0)


def full_distributor(journal: Journal) -> Distributor:
    """Room for two events, both held; its clock counts the loop's turns (one read per
    turn)."""
    settings = GeneralSettings.model_validate({"queuenum": 1, "queuecap": 2,
                                               "poll_interval": 0.5})
    distributor = Distributor(journal, settings, "me")  # type: ignore[arg-type]
    for held in (event(1), event(2)):
        distributor.leases[held.id] = Lease(held.id, time.monotonic() + 60, 6)
    distributor.clock = CountingClock(distributor.clock)
    return distributor


class CountingClock:
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return self.clock()


async def settle() -> None:
    """Let every task that can run, run (no wall-clock wait: the poll interval is long)."""
    for _ in range(50):
        await asyncio.sleep(0)


def turns(distributor: Distributor) -> int:
    assert isinstance(distributor.clock, CountingClock)
    return distributor.clock.reads


async def test_full_queues_and_a_retry_due_do_not_spin() -> None:
    """A backoff that came due while every queue was full used to make each sleep time out
    at once: the loop spun at 100% CPU until a queue had room."""
    journal = Journal()
    distributor = full_distributor(journal)
    distributor.schedule(utcnow() - timedelta(seconds=1))  # a retry, already due
    task = asyncio.create_task(distributor.run())
    await asyncio.sleep(0.3)
    distributor.stop()
    await task
    assert turns(distributor) < 10
    assert journal.rounds == 0  # nothing can be leased while memory is full


async def test_intake_wakes_the_distributor_but_it_leases_only_with_room() -> None:
    journal = Journal()
    distributor = full_distributor(journal)
    task = asyncio.create_task(distributor.run())
    await settle()
    distributor.wake([("snom", 1)])  # memory full: no lease round
    await settle()
    assert journal.rounds == 0
    distributor.finished(event(1))  # an outcome written: now there is room
    distributor.wake([("snom", 1)])
    await settle()
    assert journal.rounds == 1  # looked at the journal at once, not at the next poll
    distributor.stop()
    await task


async def test_a_server_holds_what_its_lane_sends_and_with_a_share_what_it_sends_in_2s() -> None:
    settings = GeneralSettings.model_validate({"queuenum": 4, "queuecap": 50,
                                               "lease_timeout": 60})
    gate = AccountGate(1, cap=30)

    async def lanes(provider: str, server: int) -> LaneId:
        return LaneId("snom|1", provider, "server 1", gate)

    distributor = Distributor(Journal(), settings, "me", lanes=lanes)  # type: ignore[arg-type]
    await distributor.lane_for("snom", 1)
    assert distributor._group_cap(("snom", 1)) == 30  # half a lease at 1/s
    gate.set_rate(7, until=time.monotonic() + 2)  # a share of an account's rate
    assert distributor._group_cap(("snom", 1)) == 14  # other instances' shares send the rest
    gate.set_rate(0)  # no share here: one event, whose call asks for one
    assert distributor._group_cap(("snom", 1)) == 1


async def test_an_instance_leases_only_the_providers_it_serves() -> None:
    class Mixed(Journal):
        def __init__(self) -> None:
            super().__init__()
            self.wanted: list[Any] = []

        async def pending_groups(self) -> list[tuple[str, int]]:
            return [("fanvil", 8), ("snom", 8)]

        async def lease_groups(self, *args: Any) -> Leased:
            self.wanted.append(args[-1])
            return await super().lease_groups(*args)

    journal = Mixed()
    settings = GeneralSettings.model_validate({"queuenum": 1, "queuecap": 2})
    distributor = Distributor(journal, settings, "me",  # type: ignore[arg-type]
                              serves=lambda provider: provider == "snom")
    await distributor._fill()
    assert [[group[:2] for group in wanted] for wanted in journal.wanted] == [[("snom", 8)]]
