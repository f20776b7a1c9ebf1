"""KeyedLocks: one caller per key at a time, and nothing kept for keys nobody uses."""

from __future__ import annotations

import asyncio

from rps_service.providers.keyed import KeyedLocks


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
