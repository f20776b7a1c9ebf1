"""TokenCache: one fetch per account for a burst, the last token handed to the next fetch."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rps_service.providers.tokens import Token, TokenCache


@dataclass(frozen=True)
class Acct:
    key: str


class Vendor:
    def __init__(self) -> None:
        self.now = 0.0
        self.fetched: list[tuple[str, str | None, str]] = []

    async def fetch(self, account: Acct, previous: Token | None, mac: str) -> Token:
        self.fetched.append((account.key, previous.value if previous else None, mac))
        n = len(self.fetched)
        await asyncio.sleep(0)
        return Token(f"t{n}", self.now + 100, refresh=f"r{n}")


async def test_a_burst_on_a_cold_cache_fetches_once_per_account() -> None:
    vendor = Vendor()
    cache: TokenCache[Acct] = TokenCache(vendor.fetch, refresh_before=10, clock=lambda: vendor.now)
    a, b = Acct("a"), Acct("b")
    tokens = await asyncio.gather(*(cache.get(a, "MAC1") for _ in range(5)), cache.get(b))
    assert [t.value for t in tokens] == ["t1"] * 5 + ["t2"]
    assert vendor.fetched == [("a", None, "MAC1"), ("b", None, "-")]


async def test_the_next_fetch_is_given_the_last_token_even_once_dropped() -> None:
    vendor = Vendor()
    cache: TokenCache[Acct] = TokenCache(vendor.fetch, refresh_before=10, clock=lambda: vendor.now)
    a = Acct("a")
    first = await cache.get(a)
    cache.drop(a, Token("someone else's", 0))  # not the current one: kept
    assert await cache.get(a) is first
    cache.drop(a, first)  # refused by the vendor
    assert cache.latest(a) is first  # its refresh token can still be masked, and used
    second = await cache.get(a)
    assert vendor.fetched[-1] == ("a", "t1", "-")
    vendor.now += 95  # inside refresh_before: refreshed with the current one as previous
    await cache.get(a)
    assert vendor.fetched[-1] == ("a", second.value, "-")
    cache.forget(a)
    assert cache.latest(a) is None
    await cache.get(a)
    assert vendor.fetched[-1] == ("a", None, "-")
