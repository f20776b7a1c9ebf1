"""Per vendor account: a request rate never exceeded, and a pause when the vendor throttles.

All queues of an instance share one :class:`AccountGate` per (provider, account), so the
limit holds however many workers call at once. ``rate_limit`` N (≥ 1) means at most
``floor(N)`` requests in any sliding second (no bursts above it); a rate below 1 means one
request every ``1/N`` seconds. Slots are *reserved*: a caller learns at once when it may
send, so waiting callers are served in order without a lock; a caller that got to send
later than its slot (a busy event loop) records when it really did, so that the next slots
count from then. A throttling answer (429, Retry-After on 503, a vendor's own throttle
code) pauses every request of the account.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable

#: Pause after a throttling answer that gave no Retry-After; doubled while they repeat.
DEFAULT_PAUSE = 2.0


class AccountGate:
    """The rate limit and the throttle pause of one vendor account."""

    def __init__(self, rate: float, *, cap: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = max(1, math.floor(rate))
        self.window = self.capacity / rate if rate < 1 else 1.0
        self.cap = cap  # the longest pause (retry_cap)
        self.clock = clock
        self.paused_until = 0.0
        self._sent: list[float] = []  # the last ``capacity`` send times, in order
        self._throttles = 0  # throttling answers in a row

    def next_slot(self) -> float:
        """The earliest time a request could be sent (without reserving it)."""
        when = max(self.clock(), self.paused_until)
        if len(self._sent) == self.capacity:
            when = max(when, self._sent[0] + self.window)
        return when

    def reserve(self) -> float:
        """Reserve the next slot; the time to send at."""
        when = self.next_slot()
        self._record(when)
        return when

    def sent(self, reserved: float, actual: float) -> None:
        """The request of slot ``reserved`` went out at ``actual`` (later, if the caller
        was late): the window counts from then."""
        if actual > reserved and reserved in self._sent:
            self._sent.remove(reserved)
            self._record(actual)

    def _record(self, when: float) -> None:
        bisect.insort(self._sent, when)
        del self._sent[:-self.capacity]

    def pause(self, retry_after: float | None) -> float:
        """Hold every request of the account; the pause's length (capped by ``cap``)."""
        if retry_after is None:
            retry_after = DEFAULT_PAUSE * 2 ** min(self._throttles, 16)
        self._throttles += 1
        seconds = min(max(retry_after, 0.0), self.cap)
        self.paused_until = max(self.paused_until, self.clock() + seconds)
        return seconds

    def succeeded(self) -> None:
        """A request went through: throttling no longer repeats."""
        self._throttles = 0
