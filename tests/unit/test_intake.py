"""Group commit: concurrent requests share a transaction, each keeps its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

import pytest

from rps_service.models import NewEvent
from rps_service.store.base import Inserted
from rps_service.store.intake import GroupCommit


class Journal:
    """Stands in for a transaction: records each call; refuses MAC 'BAD'."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self.next_id = 1

    async def insert(self, events: Sequence[NewEvent], now: datetime) -> list[Inserted]:
        await asyncio.sleep(0.01)  # a commit takes time; others queue meanwhile
        self.transactions.append([e.mac for e in events])
        if any(e.mac == "BAD" for e in events):
            raise RuntimeError("refused")
        out = [Inserted(self.next_id + i, False) for i in range(len(events))]
        self.next_id += len(events)
        return out


def ev(mac: str) -> NewEvent:
    return NewEvent("add", "snom", 1, mac, {})


async def test_concurrent_requests_share_commits() -> None:
    journal = Journal()
    intake = GroupCommit(journal.insert)
    now = datetime(2026, 1, 1)
    results = await asyncio.gather(*(intake.insert([ev(f"M{i}")], now) for i in range(64)))
    assert len(journal.transactions) <= 3  # the first alone, then the rest together
    ids = [r[0].id for r in results]
    assert sorted(ids) == list(range(1, 65))
    by_mac = {m: i for t in journal.transactions for i, m in enumerate(t)}
    assert len(by_mac) == 64


async def test_a_failing_request_does_not_fail_the_others() -> None:
    journal = Journal()
    intake = GroupCommit(journal.insert)
    now = datetime(2026, 1, 1)
    first = asyncio.ensure_future(intake.insert([ev("A")], now))
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(intake.insert([ev(m)], now)) for m in ("B", "BAD", "C")]
    assert (await first)[0].id == 1
    b, bad, c = await asyncio.gather(*others, return_exceptions=True)
    assert isinstance(bad, RuntimeError)
    assert isinstance(b, list) and isinstance(c, list)
    assert {b[0].id, c[0].id} == {2, 3}


async def test_one_request_alone_is_not_delayed() -> None:
    journal = Journal()
    intake = GroupCommit(journal.insert)
    result = await asyncio.wait_for(intake.insert([ev("A"), ev("B")], datetime(2026, 1, 1)),
                                    timeout=1)
    assert [r.id for r in result] == [1, 2]
    assert journal.transactions == [["A", "B"]]


@pytest.mark.parametrize("count", [1, 7])
async def test_each_request_gets_its_own_slice(count: int) -> None:
    journal = Journal()
    intake = GroupCommit(journal.insert)
    now = datetime(2026, 1, 1)
    results = await asyncio.gather(*(intake.insert([ev(f"{n}-{i}") for i in range(count)], now)
                                     for n in range(5)))
    assert all(len(r) == count for r in results)
    flat = [i.id for r in results for i in r]
    assert sorted(flat) == list(range(1, 5 * count + 1))
