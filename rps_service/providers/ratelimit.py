"""Per vendor account: requests paced evenly under the rate, and a pause when it throttles.

All workers of an instance share one :class:`AccountGate` per (provider, account), so the
limit holds however many call at once. ``rate_limit`` N means one request every ``1/N``
seconds, never a burst: vendors count arrivals in their own seconds, and a burst of N at
the edge of ours lands, with ordinary network jitter, as more than N in one of theirs.
Evenly spaced, a receiver counts at most N + 1 in any second.

Slots are *reserved*: a caller learns at once when it may send, so waiting callers are
served in order without a lock; a caller that got to send later than its slot (a busy
event loop) records when it really did, so that the next slot counts from then. The
scheduler (:mod:`rps_service.pipeline.lanes`) *claims* a slot when it hands an event to a
worker, so the worker's first request goes at once and never waits on the account while
another account's event waits. A throttling answer (429, Retry-After on 503, a vendor's own
throttle code) pauses every request of the account.

Several instances on one database share an account's rate and pauses
(:mod:`rps_service.pipeline.cluster`): it gives each gate its share with :meth:`set_rate`
(0: send nothing, until a new share comes), applies pauses seen elsewhere with :meth:`hold`,
and learns of this gate's own pauses through ``on_pause``. Each instance's scheduler paces
its lanes with its share of each account's rate.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

#: Pause after a throttling answer that gave no Retry-After; doubled while they repeat.
DEFAULT_PAUSE = 2.0
#: A claimed slot not used within this many seconds is dropped (its event sent nothing).
CLAIM_TTL = 1.0


class AccountGate:
    """The pacing and the throttle pause of one vendor account."""

    def __init__(self, rate: float, *, cap: float, gentle: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cap = cap  # the longest pause (retry_cap)
        self.clock = clock
        self.paused_until = 0.0
        #: Seconds after a pause during which the account's events go one at a time.
        self.gentle = gentle
        self.gentle_until = 0.0
        self.rate = rate
        self.interval = math.inf
        self.rate_until = math.inf  # the share of the rate lapses then (this clock)
        self.shared = False
        self._last: float | None = None  # the latest slot reserved
        self._claims: deque[float] = deque()  # slots reserved for a worker's next request
        self._throttles = 0  # throttling answers in a row
        self.used = clock()  # when a slot was last reserved, claimed, sent or paused in
        self.widest = 0.0  # the widest spacing the gate has paced with (see idle)
        #: Told of each pause this gate takes (its length in seconds): the cluster shares it.
        self.on_pause: Callable[[float], None] | None = None
        self.set_rate(rate)

    def set_rate(self, rate: float, until: float = math.inf, *, margin: float = 0.0) -> None:
        """Change the rate at run time (a share of an account's rate across instances): one
        request every ``(1 + margin) / rate`` seconds until ``until`` (this clock); the next
        slot counts from the last one with the new spacing. A rate of 0, or a time past
        ``until``, sends nothing (and claims nothing) until a new rate comes."""
        if rate < 0 or math.isnan(rate):
            raise ValueError("rate must not be negative")
        self.rate = rate
        self.rate_until = until
        #: The rate is this instance's share of the account's (it lapses at ``until``).
        self.shared = until != math.inf
        self.interval = (1.0 + margin) / rate if rate > 0 else math.inf
        if rate > 0:
            self.widest = max(self.widest, self.interval)
        if not rate:
            self._claims.clear()  # slots claimed under the last share are not to be used

    def hold(self, until: float) -> None:
        """A pause taken elsewhere (another instance) holds here too, until ``until``."""
        self.paused_until = max(self.paused_until, until)

    def held(self, now: float) -> bool:
        """Nothing may be sent at ``now``: paused, or no share of the rate."""
        return self.paused_until > now or not self._has_share(now)

    def _has_share(self, now: float) -> bool:
        return self.rate > 0 and now < self.rate_until

    def next_slot(self) -> float:
        """The earliest time a request could be sent (without reserving it).

        A caller up to half an interval late gets the slot it missed (a time just past):
        the slots stay on their grid, so the event loop's late wake-ups do not cost the
        account its rate, and sends still lie within half an interval after their slots.
        With a share of an account other instances share, there is no such grace: the
        others send beside this instance, and each keeps its calls a whole interval
        apart. ``inf`` while the gate has no share of the rate.
        """
        now = self.clock()
        if not self._has_share(now):
            return math.inf
        when = max(now, self.paused_until)
        if self._last is not None:
            due = max(self._last + self.interval, self.paused_until)
            if due >= now - self._grace():
                when = due
        return when

    def _grace(self) -> float:
        """How late a send may be and the slots still stay on their grid."""
        return 0.0 if self.shared else self.interval / 2

    def reserve(self) -> float:
        """Reserve the next slot; the time to send at (``inf``, reserving nothing, while
        the gate has no share of the rate)."""
        when = self.next_slot()
        if when != math.inf:
            self._last = when
            self.used = self.clock()
        return when

    def sent(self, reserved: float, actual: float) -> None:
        """The request of slot ``reserved`` went out at ``actual`` (later, if the caller
        was late). Up to half an interval late, the slots stay where they were: sends then
        lie within half an interval after slots spaced ``1/rate`` apart, and a receiver
        still counts at most ``rate + 1`` in any second (with up to half an interval of
        network jitter) without the account losing the rate to every late wake-up. Later
        than that, the next slot counts from half an interval before the send (with a
        share of an account other instances share: from the send)."""
        if self._last == reserved:
            self._last = max(reserved, actual - self._grace())
        self.used = max(self.used, actual)

    def claim(self) -> float:
        """Reserve the next slot for the next request made on the account (a worker about
        to get an event of it); the slot's time, ``inf`` (nothing claimed) without a share."""
        when = self.reserve()
        if when != math.inf:
            self._claims.append(when)
        return when

    def take_claim(self) -> float | None:
        """A claimed slot to send in, if one is waiting (stale ones are dropped: with a
        share of an account other instances share, those over half an interval old)."""
        self._drop_stale_claims(self.clock())
        return self._claims.popleft() if self._claims else None

    def _drop_stale_claims(self, now: float) -> None:
        stale = now - (self.interval / 2 if self.shared else CLAIM_TTL)
        while self._claims and self._claims[0] < stale:
            self._claims.popleft()

    def pause(self, retry_after: float | None) -> float:
        """Hold every request of the account; the pause's length (capped by ``cap``)."""
        if retry_after is None:
            retry_after = DEFAULT_PAUSE * 2 ** min(self._throttles, 16)
        self._throttles += 1
        seconds = min(max(retry_after, 0.0), self.cap)
        self.paused_until = max(self.paused_until, self.clock() + seconds)
        if self.gentle:
            self.gentle_until = max(self.gentle_until, self.paused_until + self.gentle)
        self._claims.clear()  # slots claimed before the pause are not to be used
        self.used = self.clock()
        if self.on_pause is not None:
            self.on_pause(seconds)
        return seconds

    def one_at_a_time(self) -> bool:
        """Whether the account's events go one at a time now: for ``gentle`` seconds after
        a pause, so that workers resuming together do not get the vendor to throttle them
        together again (the scheduler starts its next event once the last one ended)."""
        return self.clock() < self.gentle_until

    def succeeded(self) -> None:
        """A request went through: throttling no longer repeats."""
        self._throttles = 0

    @property
    def paused(self) -> bool:
        return self.paused_until > self.clock()

    def idle(self, quiet: float) -> bool:
        """Whether a fresh gate could take this one's place without changing what is sent:
        no pause and no one-at-a-time period in force, no slot claimed, and neither a slot
        nor any other use for ``quiet`` seconds, nor for the widest spacing it has paced
        with.

        Why a fresh gate is then safe: it starts unpaused, which is what this gate is once
        its pause is over; its first request may go at once, and the last one of this gate
        lies at least the longest interval it ever spaced requests by in the past, so the
        account's calls stay as far apart as its rate asks across the swap (a receiver
        still counts at most ``rate + 1`` in any second). Shared with other instances
        (:mod:`rps_service.pipeline.cluster`), a fresh gate sends nothing before a
        heartbeat gives it a share, as any account new to the instance, and a pause another
        instance took holds it from the start (the pauses last read). What is lost is
        the count of throttling answers in a row, which only doubles a pause without
        Retry-After while they repeat: after ``quiet`` seconds without one, they did not.
        """
        now = self.clock()
        self._drop_stale_claims(now)  # a claimed slot whose event sent nothing is no claim
        if self._claims or self.paused_until > now or self.gentle_until > now:
            return False
        last = self.used if self._last is None else max(self.used, self._last)
        return now - last >= max(quiet, self.widest)
