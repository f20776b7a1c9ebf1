"""Slow down password guessing: too many failed authentications from one IP answer 429.

``/ztprov/`` faces the Internet. fail2ban (reading the WARNING lines) bans at the firewall;
this is the daemon's own brake for setups without it. Memory stays bounded: per IP only the
last ``limit`` failure times are kept, and IPs whose window has passed are dropped.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW_SECONDS = 60.0
_MAX_IPS = 100_000


class FailureThrottle:
    """Counts failed authentications per client IP within a sliding window."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, ip: str, now: float) -> int | None:
        """Seconds until ``ip`` may try again, or ``None`` when it is not throttled."""
        times = self._failures.get(ip)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[ip]
            return None
        if len(times) < self.limit:
            return None
        return max(1, math.ceil(times[0] + self.window - now))

    def record(self, ip: str, now: float) -> bool:
        """Count one failure; True when this one reached the limit (the IP is now throttled)."""
        times = self._failures.get(ip)
        if times is None:
            if len(self._failures) >= _MAX_IPS:
                self._forget_expired(now)
            times = self._failures[ip] = deque(maxlen=self.limit)
        times.append(now)
        return len(times) >= self.limit and self.retry_after(ip, now) is not None

    def _forget_expired(self, now: float) -> None:
        cutoff = now - self.window
        self._failures = {ip: t for ip, t in self._failures.items() if t and t[-1] > cutoff}
        while len(self._failures) >= _MAX_IPS:  # a distributed flood: forget the oldest IPs
            del self._failures[next(iter(self._failures))]
