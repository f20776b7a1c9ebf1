"""The per-account gate: no sliding second over the rate, the throttle pause, late senders."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from types import SimpleNamespace

import httpx
from hypothesis import given
from hypothesis import strategies as st

from rps_service.providers.http import VendorHttp
from rps_service.providers.ratelimit import DEFAULT_PAUSE, AccountGate
from rps_service.providers.tokens import Token, TokenAuth, TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@given(rate=st.integers(min_value=1, max_value=50), calls=st.integers(min_value=1, max_value=200))
def test_no_sliding_second_holds_more_than_the_rate(rate: int, calls: int) -> None:
    clock = Clock()
    gate = AccountGate(rate, cap=300, clock=clock)
    slots = [gate.reserve() for _ in range(calls)]
    assert slots == sorted(slots)
    assert all(later - first >= 1.0 for first, later in zip(slots, slots[rate:], strict=False))
    assert slots[:rate] == [100.0] * min(rate, calls)  # a full second's worth at once


def test_a_rate_below_one_spaces_single_requests() -> None:
    clock = Clock()
    gate = AccountGate(0.5, cap=300, clock=clock)
    assert [gate.reserve() for _ in range(3)] == [100.0, 102.0, 104.0]


def test_a_late_sender_moves_the_window() -> None:
    clock = Clock()
    gate = AccountGate(2, cap=300, clock=clock)
    first, second = gate.reserve(), gate.reserve()
    gate.sent(first, 100.7)  # the event loop woke the first caller 0.7 s late
    # Two per second: the third may not go before a second after the *earliest* of the two
    # it follows, which is now the second one (100.0), then 100.7 + 1 for the fourth.
    assert (second, gate.reserve(), gate.reserve()) == (100.0, 101.0, 101.7)


def test_a_pause_holds_every_slot_and_is_capped() -> None:
    clock = Clock()
    gate = AccountGate(10, cap=30, clock=clock)
    assert gate.pause(12) == 12 and gate.next_slot() == 112.0
    assert gate.pause(500) == 30 and gate.next_slot() == 130.0
    gate.succeeded()
    clock.now = 200.0
    # Without a Retry-After: the default, doubled while throttling answers repeat.
    assert gate.pause(None) == DEFAULT_PAUSE
    assert gate.pause(None) == DEFAULT_PAUSE * 2


async def test_a_token_fetched_for_a_request_never_shares_its_turn() -> None:
    """One request a second: a call on a cold token cache sends the token request, then
    itself a second later (not both at once after its own turn went by unused)."""
    clock = Clock()

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    sent: list[tuple[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, clock.now))
        return httpx.Response(200, json={})

    http = VendorHttp(name="v", label="V", transport=httpx.MockTransport(handler), timeout=5,
                      rate_limit=1, retry_cap=30, monotonic=clock, sleep=sleep)

    async def fetch(account: SimpleNamespace, previous: Token | None, mac: str) -> Token:
        await http.send(httpx.Request("POST", "https://v.test/token"), account=account.key,
                        operation="token")
        return Token("t0ken", expires=clock.now + 3600)

    class Signed(TokenAuth):
        async def async_auth_flow(self, request: httpx.Request
                                  ) -> AsyncGenerator[httpx.Request, httpx.Response]:
            token = await self.token()
            request.headers["Authorization"] = f"Bearer {token.value}"
            yield request

    tokens = TokenCache(fetch, clock=clock)
    await http.send(httpx.Request("POST", "https://v.test/api"), account="a", operation="x",
                    auth=Signed(tokens, SimpleNamespace(key="a")))
    assert sent == [("/token", 100.0), ("/api", 101.0)]
