"""KeyedLocks: one caller per key at a time, nothing kept for keys nobody uses; CreatedOnce:
a creation runs once per key, concurrent callers wait for it, failures retry."""

from __future__ import annotations

import asyncio

import pytest

from rps_service.providers.keyed import CreatedOnce, KeyedLocks


async def test_callers_of_one_key_take_turns_and_other_keys_do_not_wait() -> None:
    locks: KeyedLocks[str] = KeyedLocks()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}

    async def work(key: str) -> None:
        async with locks(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            await asyncio.sleep(0.01)
            inside[key] -= 1

    started = asyncio.get_running_loop().time()
    await asyncio.gather(*(work("a") for _ in range(5)), work("b"))
    assert most == {"a": 1, "b": 1}
    assert asyncio.get_running_loop().time() - started < 0.2  # "b" never waited for "a"


async def test_a_lock_nobody_holds_is_forgotten() -> None:
    locks: KeyedLocks[tuple[str, int]] = KeyedLocks()
    async with locks(("account", 1)):
        assert len(locks) == 1
        assert locks(("account", 1)) is locks(("account", 1))
    assert len(locks) == 0




async def test_concurrent_callers_of_a_key_create_once() -> None:
    once: CreatedOnce[str] = CreatedOnce()
    runs: list[int] = []
    gate = asyncio.Event()

    async def create() -> None:
        runs.append(1)
        await gate.wait()

    callers = [asyncio.create_task(once.ensure("a", create)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*callers)
    await once.ensure("a", create)
    assert runs == [1]
    assert len(once._locks) == 0  # no lock kept for a key that is done


async def test_a_failure_is_not_remembered_and_forget_creates_again() -> None:
    once: CreatedOnce[str] = CreatedOnce()
    runs: list[str] = []

    async def fail() -> None:
        runs.append("fail")
        raise RuntimeError("refused")

    async def create() -> None:
        runs.append("ok")

    with pytest.raises(RuntimeError):
        await once.ensure("a", fail)
    await once.ensure("a", create)
    once.forget("a")
    await once.ensure("a", create)
    await once.ensure("b", create)
    assert runs == ["fail", "ok", "ok", "ok"]
