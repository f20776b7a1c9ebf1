"""Per vendor account: a request rate never exceeded, and a pause when the vendor throttles.

All queues of an instance share one :class:`AccountGate` per (provider, account), so the
limit holds however many workers call at once. ``rate_limit`` N (≥ 1) means at most
``floor(N)`` requests in any sliding second (no bursts above it); a rate below 1 means one
request every ``1/N`` seconds. Slots are *reserved*: a caller learns at once when it may
send, so waiting callers are served in order without a lock; a caller that got to send
later than its slot (a busy event loop) records when it really did, so that the next slots
count from then. A throttling answer (429, Retry-After on 503, a vendor's own throttle
code) pauses every request of the account.

Several instances on one database share an account's rate and pauses
(:mod:`rps_service.pipeline.cluster`): it gives each gate its share with :meth:`set_rate`
(0: send nothing, until a new share comes), applies pauses seen elsewhere with :meth:`hold`,
and learns of this gate's own pauses through ``on_pause``.
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
        self.cap = cap  # the longest pause (retry_cap)
        self.clock = clock
        self.paused_until = 0.0
        self._sent: list[float] = []  # the last ``capacity`` send times, in order
        self._throttles = 0  # throttling answers in a row
        #: Told of each pause this gate takes (its length in seconds): the cluster shares it.
        self.on_pause: Callable[[float], None] | None = None
        self.set_rate(rate)

    def set_rate(self, rate: float, until: float = math.inf, *, margin: float = 0.0) -> None:
        """Send at ``rate`` per second from now on (at most ``floor(rate)`` in any window of
        ``1 + margin`` seconds), until ``until`` (this clock); a rate of 0, or a time past
        ``until``, sends nothing. A lower rate counts the sends already made: the window
        never holds more than the new rate allows."""
        self.rate = rate
        self.rate_until = until
        self.capacity = max(1, math.floor(rate)) if rate > 0 else 0
        self.window = (self.capacity / rate if 0 < rate < 1 else 1.0) * (1 + margin)
        if self.capacity:
            del self._sent[:-self.capacity]

    def hold(self, until: float) -> None:
        """A pause taken elsewhere (another instance) holds here too, until ``until``."""
        self.paused_until = max(self.paused_until, until)

    def held(self, now: float) -> bool:
        """Nothing may be sent at ``now``: paused, or no share of the rate."""
        return self.paused_until > now or not self.capacity or now >= self.rate_until

    def next_slot(self) -> float:
        """The earliest time a request could be sent (without reserving it); ``inf`` while
        the gate has no share of the rate."""
        now = self.clock()
        if not self.capacity or now >= self.rate_until:
            return math.inf
        when = max(now, self.paused_until)
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
        if math.isinf(when):
            return
        bisect.insort(self._sent, when)
        del self._sent[:-self.capacity]

    def pause(self, retry_after: float | None) -> float:
        """Hold every request of the account; the pause's length (capped by ``cap``)."""
        if retry_after is None:
            retry_after = DEFAULT_PAUSE * 2 ** min(self._throttles, 16)
        self._throttles += 1
        seconds = min(max(retry_after, 0.0), self.cap)
        self.paused_until = max(self.paused_until, self.clock() + seconds)
        if self.on_pause is not None:
            self.on_pause(seconds)
        return seconds

    def succeeded(self) -> None:
        """A request went through: throttling no longer repeats."""
        self._throttles = 0
