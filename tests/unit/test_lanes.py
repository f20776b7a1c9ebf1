"""The lane scheduler: which waiting event a free worker gets, and when none does."""

from __future__ import annotations

import itertools
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from rps_service.models import Event
from rps_service.pipeline.lanes import LEAD, SLOW_CALL, LaneBoard, LaneId
from rps_service.providers.ratelimit import AccountGate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


_ids = iter(range(1, 10**9))


def event(provider: str = "snom", server: int = 1) -> Event:
    now = datetime(2026, 1, 1)
    return Event(id=next(_ids), action="add", provider=provider, server=server,
                 mac="000413000001", payload={}, state="running", attempts=1,
                 created_at=now, updated_at=now, next_attempt_at=now, lease_until=now,
                 last_error=None, idempotency_key=None, slot=0)


def lane(key: str, gate: AccountGate | None, provider: str = "snom") -> LaneId:
    return LaneId(key, provider, key, gate)


def test_an_account_waiting_for_its_slot_never_holds_back_another() -> None:
    clock = Clock()
    board = LaneBoard(workers=4, clock=clock)
    slow = AccountGate(5, cap=30, clock=clock)
    backlog = [event("panasonic") for _ in range(1000)]
    for item in backlog:
        board.add(lane("panasonic", slow, "panasonic"), item)
    first, _ = board.pick(4)
    assert first is backlog[0]
    # The account's next slot is 0.2 s away: nothing of it goes now, and the scheduler
    # says when to look again (a little ahead of the slot).
    assert board.pick(3) == (None, 100.2 - LEAD)
    single = event("snom")
    board.add(lane("snom", AccountGate(10, cap=30, clock=clock)), single)
    assert board.pick(3) == (single, None)
    assert board.waiting == 999 and board.in_flight == 2


def test_a_paused_account_waits_and_the_others_go_on() -> None:
    clock = Clock()
    board = LaneBoard(workers=2, clock=clock)
    paused = AccountGate(100, cap=300, clock=clock)
    paused.pause(60)
    for _ in range(10):
        board.add(lane("a", paused), event(server=1))
    other = event(server=2)
    board.add(lane("b", AccountGate(100, cap=300, clock=clock)), other)
    assert board.pick(2) == (other, None)
    assert board.pick(2) == (None, 160.0 - LEAD)


def test_servers_sharing_an_account_take_turns() -> None:
    """Tenant 1 has a backlog, tenants 2 and 3 one event each: they are served within
    as many calls as there are tenants with work, not behind the backlog."""
    clock = Clock()
    board = LaneBoard(workers=8, clock=clock)
    shared = lane("account", None)
    big = [event(server=1) for _ in range(100)]
    for item in big:
        board.add(shared, item)
    first, _ = board.pick(8)
    two, three = event(server=2), event(server=3)
    board.add(shared, two)
    board.add(shared, three)
    order = [board.pick(8)[0] for _ in range(4)]
    assert first is big[0]
    assert order == [big[1], two, three, big[2]]


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=60))
def test_each_server_keeps_its_arrival_order_and_none_waits_more_than_a_round(
        servers: list[int]) -> None:
    board = LaneBoard(workers=4, clock=Clock())
    shared = lane("account", None)
    added = [event(server=s) for s in servers]
    for item in added:
        board.add(shared, item)
    picked = [board.pick(4)[0] for _ in added]
    assert board.pick(4) == (None, None)
    for server in set(servers):
        mine = [e for e in picked if e is not None and e.server == server]
        assert mine == [e for e in added if e.server == server]
    # Round robin: between two events of one server, every other server with events
    # left gets at most one call.
    for server in set(servers):
        at = [i for i, e in enumerate(picked) if e is not None and e.server == server]
        for a, b in itertools.pairwise(at):
            between = [e.server for e in picked[a + 1:b] if e is not None]
            assert len(between) == len(set(between))


def test_a_hanging_account_never_takes_the_last_worker() -> None:
    clock = Clock()
    board = LaneBoard(workers=3, clock=clock)
    hanging = lane("a", None)
    for _ in range(10):
        board.add(hanging, event(server=1))
    first, _ = board.pick(3)
    assert first is not None
    clock.now += 0.01
    board.ended(first)  # quick so far
    assert board.pick(3)[0] is not None and board.pick(2)[0] is not None
    clock.now += SLOW_CALL + 0.1  # now its calls hang
    assert board.pick(1) == (None, None)
    other = event(server=2)
    board.add(lane("b", None), other)
    assert board.pick(1) == (other, None)


def test_an_account_not_yet_known_quick_keeps_off_the_last_worker() -> None:
    board = LaneBoard(workers=2, clock=Clock())
    for _ in range(3):
        board.add(lane("a", None), event())
    assert board.pick(2)[0] is not None
    assert board.pick(1) == (None, None)  # its first call may hang


def test_a_quick_account_may_use_every_worker() -> None:
    clock = Clock()
    board = LaneBoard(workers=2, clock=clock)
    for _ in range(4):
        board.add(lane("a", None), event())
    first, _ = board.pick(2)
    assert first is not None
    clock.now += 0.05
    board.ended(first)  # a 50 ms call
    assert board.pick(2)[0] is not None and board.pick(1)[0] is not None


def test_ended_calls_and_shutdown_take_back_what_waits() -> None:
    board = LaneBoard(workers=2, clock=Clock())
    items = [event(server=s) for s in (1, 1, 2)]
    for item in items:
        board.add(lane("a", None), item)
    started, _ = board.pick(2)
    assert started is not None
    board.ended(started)
    board.ended(started)  # idempotent
    assert board.in_flight == 0 and board.waiting_in(("snom", 1)) == 1
    assert sorted(e.id for e in board.take_all()) == sorted(e.id for e in items[1:])
    assert board.waiting == 0 and board.waiting_in(("snom", 1)) == 0


def test_a_gentle_account_has_one_event_under_way_for_a_while_after_a_pause() -> None:
    clock = Clock()
    board = LaneBoard(workers=4, clock=clock)
    gentle = AccountGate(100, cap=300, gentle=60, clock=clock)
    events = [event("fanvil") for _ in range(6)]
    for item in events:
        board.add(lane("fanvil", gentle, "fanvil"), item)
    first, _ = board.pick(4)
    clock.now += 0.02
    second, _ = board.pick(3)
    assert (first, second) == (events[0], events[1])  # unthrottled: side by side
    gentle.pause(1.0)
    board.ended(first)
    board.ended(second)
    clock.now += 1.0
    third, _ = board.pick(4)
    clock.now += 0.02
    assert third is events[2] and board.pick(3) == (None, None)  # one at a time
    board.ended(third)
    clock.now += 0.02
    assert board.pick(4)[0] is events[3]
    clock.now += 60  # a quiet minute later: side by side again
    board.ended(events[3])
    assert board.pick(4)[0] is events[4]
    clock.now += 0.02
    assert board.pick(3)[0] is events[5]


def test_an_account_without_a_share_here_claims_nothing_and_sends_one_event_at_a_time() -> None:
    clock = Clock()
    board = LaneBoard(workers=4, clock=clock)
    gate = AccountGate(5, cap=30, clock=clock)
    gate.set_rate(0)  # other instances hold the whole rate of the account
    items = [event("sraps") for _ in range(3)]
    for item in items:
        board.add(lane("sraps", gate, "sraps"), item)
    # One event goes to a worker: its call asks for a share and, without one, is deferred
    # back to the journal. No slot is claimed, and the gate's next slot stays unknown.
    assert board.pick(4) == (items[0], None)
    assert gate.take_claim() is None
    assert board.pick(3) == (None, None)  # no wake-up time: an ended call wakes it
    other = event("snom")
    board.add(lane("snom", AccountGate(10, cap=30, clock=clock)), other)
    assert board.pick(3) == (other, None)
    board.ended(items[0])
    gate.set_rate(5)  # a share came
    assert board.pick(2) == (items[1], None) and gate.take_claim() == clock.now
