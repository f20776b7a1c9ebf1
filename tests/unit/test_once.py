"""CreatedOnce: a creation runs once per key, concurrent callers wait for it, failures retry."""

from __future__ import annotations

import asyncio

import pytest

from rps_service.providers.once import CreatedOnce


async def test_concurrent_callers_of_a_key_create_once() -> None:
    once, runs, gate = CreatedOnce(), [], asyncio.Event()

    async def create() -> None:
        runs.append(1)
        await gate.wait()

    callers = [asyncio.create_task(once.ensure("a", create)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*callers)
    await once.ensure("a", create)
    assert runs == [1]
    assert once._locks == {}  # no lock kept for a key that is done


async def test_a_failure_is_not_remembered_and_forget_creates_again() -> None:
    once, runs = CreatedOnce(), []

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
