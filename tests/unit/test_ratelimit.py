"""The per-account gate: even pacing (never a burst), the throttle pause, late senders."""

from __future__ import annotations

import itertools
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


def arrivals_in_any_second(times: list[float]) -> int:
    """The most of ``times`` a receiver counts in any one second (a sliding window)."""
    times = sorted(times)
    most, first = 0, 0
    for last, when in enumerate(times):
        while when - times[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


@given(rate=st.integers(min_value=1, max_value=50), calls=st.integers(min_value=1, max_value=200))
def test_slots_are_evenly_spaced_never_a_burst(rate: int, calls: int) -> None:
    clock = Clock()
    gate = AccountGate(rate, cap=300, clock=clock)
    slots = [gate.reserve() for _ in range(calls)]
    assert all(later - first >= 1 / rate - 1e-9
               for first, later in itertools.pairwise(slots))
    assert arrivals_in_any_second(slots) <= rate + 1


@given(rate=st.integers(min_value=1, max_value=200),
       lateness=st.lists(st.floats(min_value=0, max_value=0.3), min_size=1, max_size=300),
       jitter=st.lists(st.floats(min_value=0, max_value=0.4999), min_size=300, max_size=300))
def test_late_senders_and_claims_keep_the_receivers_count(
        rate: int, lateness: list[float], jitter: list[float]) -> None:
    """Callers woken late, slots claimed by the scheduler, and network jitter of up to half
    an interval that only delays: a receiver never counts more than rate + 1 in any
    second."""
    clock = Clock()
    gate = AccountGate(rate, cap=300, clock=clock)
    arrivals = []
    for i, late in enumerate(lateness):
        when = gate.claim() if i % 2 else gate.reserve()
        if i % 2:
            assert gate.take_claim() == when
        clock.now = max(clock.now, when + late)
        gate.sent(when, clock.now)
        arrivals.append(clock.now + jitter[i] / rate)
    assert arrivals_in_any_second(arrivals) <= rate + 1


def test_a_rate_below_one_spaces_single_requests() -> None:
    clock = Clock()
    gate = AccountGate(0.5, cap=300, clock=clock)
    assert [gate.reserve() for _ in range(3)] == [100.0, 102.0, 104.0]


def test_a_late_sender_moves_the_next_slot() -> None:
    clock = Clock()
    gate = AccountGate(2, cap=300, clock=clock)
    first = gate.reserve()
    gate.sent(first, 100.7)  # the event loop woke the caller 0.7 s late
    assert (gate.reserve(), gate.reserve()) == (100.95, 101.45)


def test_a_little_late_sender_keeps_the_slots() -> None:
    clock = Clock()
    gate = AccountGate(10, cap=300, clock=clock)
    first = gate.reserve()
    gate.sent(first, 100.03)  # 30 ms late: under half the 100 ms interval
    assert gate.reserve() == 100.1


def test_the_rate_can_change_at_run_time() -> None:
    clock = Clock()
    gate = AccountGate(10, cap=300, clock=clock)
    assert gate.reserve() == 100.0
    gate.set_rate(2)  # e.g. a share of the account's rate across instances
    assert (gate.reserve(), gate.reserve()) == (100.5, 101.0)


def test_a_claim_is_used_once_and_dropped_when_stale_or_paused() -> None:
    clock = Clock()
    gate = AccountGate(1, cap=300, clock=clock)
    assert gate.claim() == 100.0 and gate.take_claim() == 100.0
    assert gate.take_claim() is None
    gate.claim()  # 101
    clock.now = 103.0  # its event sent nothing; later callers reserve anew
    assert gate.take_claim() is None
    gate.claim()
    gate.pause(5)
    assert gate.take_claim() is None and gate.next_slot() == 108.0


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
