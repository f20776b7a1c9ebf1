"""The sandbox's Pacer: answers leave, on average, exactly ``latency`` after arrival.

A fake clock and sleep stand in for the event loop: its timers always fire 0.3 ms late,
as uvloop's did on average on the build machine. The pacer must learn that and ask for
less.
"""

from __future__ import annotations

import pytest

from rps_service.sandbox import app


class FakeLoop:
    def __init__(self, late: float) -> None:
        self.now = 1000.0
        self.late = late
        self.asked: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self.now += seconds + self.late


@pytest.fixture
def loop() -> FakeLoop:
    return FakeLoop(late=0.0003)


async def test_learns_the_loops_lateness_and_answers_on_time(loop: FakeLoop) -> None:
    pacer = app.Pacer(loop.monotonic, loop.sleep)
    answered = []
    for _ in range(200):
        deadline = loop.now + 0.05
        await pacer.until(deadline)
        answered.append(loop.now - deadline)
    assert answered[0] == pytest.approx(0.0003)  # untrained: as late as the loop
    assert abs(answered[-1]) < 0.00001  # trained: on time
    assert pacer.late == pytest.approx(0.0003, rel=0.01)


async def test_a_deadline_already_past_does_not_sleep(loop: FakeLoop) -> None:
    pacer = app.Pacer(loop.monotonic, loop.sleep)
    await pacer.until(loop.now - 0.001)
    await pacer.until(loop.now)
    assert loop.asked == []
