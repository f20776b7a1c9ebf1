"""A worker's hold on its event, as the vendor client sees it: fencing for vendor calls.

The journal's lease (``lease_owner``, ``lease_until``) is what other instances respect; this
is this instance's view of it. ``expires`` moves forward only when a renewal *succeeded*
(the distributor records the result, not the schedule), and a renewal that found the event
gone marks it ``lost``. Before every request the vendor client calls :meth:`Lease.check`, and
no request may outlive the lease: so once another instance may have taken the event, this
one never sends for it again, and a device never has two calls in flight.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from dataclasses import dataclass, field


class LeaseLost(Exception):
    """The event's lease ran out or was taken: stop, send nothing more, record nothing."""


@dataclass
class Lease:
    """One leased event's deadline on the local monotonic clock."""

    event_id: int
    expires: float  # when the lease runs out, as last confirmed by the journal
    margin: float  # kept free before ``expires``: requests end that much earlier
    lost: bool = False
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def remaining(self) -> float:
        """Seconds a request may still take."""
        return self.expires - self.margin - self.clock()

    def check(self) -> float:
        """Raise :class:`LeaseLost` unless the lease still holds; the seconds left."""
        left = self.remaining()
        if self.lost:
            raise LeaseLost(f"event {self.event_id}: lease taken by another worker")
        if left <= 0:
            raise LeaseLost(f"event {self.event_id}: lease not renewed in time")
        return left


#: The lease of the event whose vendor call is running in this task (set by the worker).
CURRENT: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("lease", default=None)
