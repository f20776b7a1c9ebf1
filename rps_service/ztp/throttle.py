"""Slow down password guessing without locking out the phones behind a guesser's address.

``/ztprov/`` faces the Internet, and whole offices of phones reach it from one NAT address.
So only failed authentications count, per (IP, user name) and per IP, and they change only
what a failed attempt is answered: past ``[ztp] fail_limit`` failures of one user name from
one address, or ``fail_limit_per_ip`` failures from the address in all, within a minute, a
failure is answered 429 (``Retry-After``) instead of 401. A request with valid credentials
is checked first and served, however many failures its address has: a phone behind an
address that just sent 100 wrong guesses gets its file at once. fail2ban, reading the
WARNING lines, bans at the firewall; this is the daemon's own brake for setups without it.

Memory stays bounded: per key only the last ``limit`` failure times are kept, and keys whose
window has passed are dropped once the table is full.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW_SECONDS = 60.0
_MAX_KEYS = 100_000
_USER_LENGTH = 64  # a user name is the attacker's to choose: keep the key short


class SlidingCount:
    """Events per key within a sliding window, at most ``limit`` remembered per key."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._times: dict[str, deque[float]] = {}

    def retry_after(self, key: str, now: float) -> int | None:
        """Seconds until ``key`` is under its limit again, or None when it is."""
        times = self._times.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._times[key]
            return None
        if len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window - now))

    def record(self, key: str, now: float) -> None:
        """Count one."""
        times = self._times.get(key)
        if times is None:
            if len(self._times) >= _MAX_KEYS:
                self._forget_expired(now)
            times = self._times[key] = deque(maxlen=self.limit)
        times.append(now)

    def _forget_expired(self, now: float) -> None:
        cutoff = now - self.window
        self._times = {k: t for k, t in self._times.items() if t and t[-1] > cutoff}
        while len(self._times) >= _MAX_KEYS:  # a distributed flood: forget the oldest keys
            del self._times[next(iter(self._times))]


class FailureThrottle:
    """Failed authentications per (IP, user name) and per IP (see the module's text)."""

    def __init__(self, limit: int, limit_per_ip: int, window: float = WINDOW_SECONDS) -> None:
        self.per_user = SlidingCount(limit, window)
        self.per_ip = SlidingCount(limit_per_ip, window)
        self.window = window

    def failed(self, ip: str, user: str, now: float) -> tuple[int | None, list[str]]:
        """Count a failed authentication of ``user`` (``-``: none) from ``ip``.

        Returns the ``Retry-After`` for a 429 when the key was already over its limit
        (else None), and which limits this failure just reached (``"user"``, ``"ip"``),
        each to be logged once.
        """
        key = f"{ip}\n{user[:_USER_LENGTH]}"
        counts = (("user", self.per_user, key), ("ip", self.per_ip, ip))
        before = {name: count.retry_after(k, now) for name, count, k in counts}
        for _, count, k in counts:
            count.record(k, now)
        reached = [name for name, count, k in counts
                   if before[name] is None and count.retry_after(k, now) is not None]
        waits = [wait for wait in before.values() if wait is not None]
        return (max(waits) if waits else None), reached
