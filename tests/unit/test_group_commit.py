"""Group commit: concurrent writers share a transaction, each keeps its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from rps_service.store.group import GroupCommit
from rps_service.store.sql import StoreUnavailable


class Journal:
    """Stands in for a transaction: records each call; refuses item 'BAD', or every
    call while ``down``. A write of N items answers each with its position overall."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self.written = 0
        self.down = False

    async def write(self, items: list[list[str]]) -> list[list[int]]:
        await asyncio.sleep(0.01)  # a commit takes time; others queue meanwhile
        self.transactions.append([m for item in items for m in item])
        if self.down:
            raise StoreUnavailable("connection refused")
        if any("BAD" in item for item in items):
            raise RuntimeError("refused")
        out = []
        for item in items:
            out.append(list(range(self.written + 1, self.written + len(item) + 1)))
            self.written += len(item)
        return out


def group(journal: Journal, limit: int = 1000) -> GroupCommit[list[str], list[int]]:
    return GroupCommit(journal.write, name="test-commit", size=len, limit=limit)


async def test_concurrent_writes_share_commits() -> None:
    journal = Journal()
    commit = group(journal)
    results = await asyncio.gather(*(commit.submit([f"M{i}"]) for i in range(64)))
    assert len(journal.transactions) <= 3  # the first alone, then the rest together
    assert sorted(r[0] for r in results) == list(range(1, 65))
    assert sorted(m for t in journal.transactions for m in t) == sorted(f"M{i}" for i in range(64))


async def test_a_failing_write_does_not_fail_the_others() -> None:
    journal = Journal()
    commit = group(journal)
    first = asyncio.ensure_future(commit.submit(["A"]))
    await asyncio.sleep(0)
    others = [asyncio.ensure_future(commit.submit([m])) for m in ("B", "BAD", "C")]
    assert await first == [1]
    b, bad, c = await asyncio.gather(*others, return_exceptions=True)
    assert isinstance(bad, RuntimeError)
    assert isinstance(b, list) and isinstance(c, list)
    assert {b[0], c[0]} == {2, 3}
    # The shared round failed, then each was written alone.
    assert journal.transactions[1:] == [["B", "BAD", "C"], ["B"], ["BAD"], ["C"]]


async def test_database_away_fails_the_whole_round_at_once() -> None:
    journal = Journal()
    commit = group(journal)
    assert await commit.submit(["A"]) == [1]
    journal.down = True
    others = [asyncio.ensure_future(commit.submit([m])) for m in ("B", "C", "D")]
    results = await asyncio.gather(*others, return_exceptions=True)
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert journal.transactions[1:] == [["B", "C", "D"]]  # no retry one by one


async def test_one_write_alone_is_not_delayed() -> None:
    journal = Journal()
    commit = group(journal)
    assert await asyncio.wait_for(commit.submit(["A", "B"]), timeout=1) == [1, 2]
    assert journal.transactions == [["A", "B"]]


@pytest.mark.parametrize("count", [1, 7])
async def test_each_write_gets_its_own_slice(count: int) -> None:
    journal = Journal()
    commit = group(journal)
    results = await asyncio.gather(*(commit.submit([f"{n}-{i}" for i in range(count)])
                                     for n in range(5)))
    assert all(len(r) == count for r in results)
    assert sorted(i for r in results for i in r) == list(range(1, 5 * count + 1))


async def test_a_round_holds_at_most_the_limit() -> None:
    journal = Journal()
    commit = group(journal, limit=4)
    first = asyncio.ensure_future(commit.submit(["A"]))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(commit.submit([f"{n}a", f"{n}b", f"{n}c"])) for n in range(3)]
    rest.append(asyncio.ensure_future(commit.submit(list("0123456"))))  # heavier than limit
    await asyncio.gather(first, *rest)
    assert [len(t) for t in journal.transactions] == [1, 3, 3, 3, 7]
