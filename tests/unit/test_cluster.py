"""Shares of an account's rate across instances, and a gate's share and shared pauses."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from rps_service.pipeline.cluster import split
from rps_service.providers.ratelimit import AccountGate
from rps_service.ztp.auth import NonceBook


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@given(st.sampled_from([0.5, 1, 2, 2.5, 3, 5, 10, 17.25, 100]), st.integers(1, 7))
def test_shares_add_up_to_the_rate_and_are_whole_but_one(rate: float, count: int) -> None:
    shares = [split(rate, count, rank) for rank in range(count)]
    assert math.isclose(sum(shares), rate)
    assert all(s == int(s) for s in shares[1:])  # only the oldest gets a fraction
    assert max(shares[1:], default=0) <= shares[0]


def test_shares_examples() -> None:
    assert [split(10, 3, r) for r in range(3)] == [4, 3, 3]
    assert [split(5, 3, r) for r in range(3)] == [2, 2, 1]
    assert [split(2, 3, r) for r in range(3)] == [1, 1, 0]
    assert [split(0.5, 2, r) for r in range(2)] == [0.5, 0]


def test_a_gate_without_a_share_has_no_slot() -> None:
    clock = Clock()
    gate = AccountGate(10, cap=60, clock=clock)
    gate.set_rate(0)
    assert gate.next_slot() == math.inf and gate.held(clock.now)
    gate.set_rate(2, until=clock.now + 1.2, margin=0.05)
    assert not gate.held(clock.now)
    # One request every 1.05 s / 2.
    slots = [gate.reserve() for _ in range(3)]
    assert all(map(math.isclose, slots, [100.0, 100.525, 101.05]))
    clock.now += 1.5  # the share lapsed with its heartbeat
    assert gate.next_slot() == math.inf and gate.held(clock.now)
    assert gate.claim() == math.inf and gate.take_claim() is None  # nothing claimed
    gate.set_rate(2, until=clock.now + 1.2)
    assert math.isclose(gate.reserve(), 101.05 + 0.5)  # on from the last slot, not from inf


def test_a_smaller_share_spaces_from_the_last_slot() -> None:
    clock = Clock()
    gate = AccountGate(5, cap=60, clock=clock)
    for _ in range(5):
        gate.reserve()
        clock.now += 0.1
    gate.set_rate(2)
    assert math.isclose(gate.next_slot(), 100.8 + 0.5)  # the last slot, then 1/2 s


def test_no_share_drops_the_claimed_slots() -> None:
    clock = Clock()
    gate = AccountGate(5, cap=60, clock=clock)
    gate.claim()
    gate.set_rate(0)  # e.g. an instance that has not had its first heartbeat yet
    assert gate.take_claim() is None


def test_a_pause_from_elsewhere_holds_and_one_taken_here_is_told() -> None:
    clock = Clock()
    gate = AccountGate(5, cap=60, clock=clock)
    told: list[float] = []
    gate.on_pause = told.append
    gate.hold(clock.now + 3)
    assert gate.next_slot() == clock.now + 3 and told == []
    gate.pause(7)
    assert told == [7] and gate.paused_until == clock.now + 7


def test_nonces_of_every_accepted_key_verify_and_only_those() -> None:
    old, new, foreign = b"o" * 32, b"n" * 32, b"f" * 32
    book = NonceBook(300, key=old)
    issued = book.issue(1000.0)
    book.use_keys(new, [old, new])  # rotated: the previous key still verifies
    assert book.status(issued, 1001.0) == "fresh"
    assert book.status(book.issue(1001.0), 1002.0) == "fresh"
    other = NonceBook(300, key=foreign)
    assert book.status(other.issue(1000.0), 1001.0) == "invalid"
    book.use_keys(new, [new])  # the old key gone: its nonces are no longer ours
    assert book.status(issued, 1001.0) == "invalid"


def test_a_share_keeps_its_calls_a_whole_interval_apart() -> None:
    clock = Clock()
    gate = AccountGate(10, cap=60, clock=clock)
    gate.set_rate(4, until=clock.now + 10, margin=0.05)  # one call every 0.2625 s
    first = gate.reserve()
    clock.now += 0.1  # late: alone, it would keep its grid; shared, the next counts from it
    gate.sent(first, clock.now)
    assert math.isclose(gate.reserve(), 100.1 + 0.2625)
    clock.now = 100.3625 + 0.2625 + 0.05  # a slot missed by 50 ms is not handed out
    assert math.isclose(gate.next_slot(), clock.now)
    claimed = gate.claim()
    clock.now += 0.2  # a claim over half an interval old is dropped
    assert claimed == 100.675 and gate.take_claim() is None
