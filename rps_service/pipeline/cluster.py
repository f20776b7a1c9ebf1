"""Instances on one MySQL/MariaDB database share each vendor account's rate and pauses.

Each instance heartbeats a claim on the accounts it has work for (``rps_rate_claims``) every
``beat`` seconds (1 s, less for a ``lease_timeout`` under 5 s); the claim lives
``2·beat + 1`` seconds by the database's clock. From the live claims of an account, each
instance computes its own share of the account's ``rate_limit`` (whole requests per second,
the remainder and any fraction to the oldest claim, so the shares never add up to more than
the rate) and sets it on the account's :class:`~rps_service.providers.ratelimit.AccountGate`,
valid for ``2·beat`` seconds by this host's monotonic clock: an instance that stops
heartbeating (killed, frozen, cut off from the database) stops sending a second before its
claim expires for the others, and they take its share at their next heartbeat. A newcomer
sends only once every other instance has had time to see its claim (``settle``), unless it
holds the oldest claim. The database is read once per heartbeat, never per vendor call.

A throttling pause is written at once to ``rps_account_pauses`` and every instance reads
all pauses in one query every ``poll`` (at most 0.5 s). See docs/instances.md.

An account this instance no longer sends on is forgotten once its claim is given back and it
has been unused for a while (:meth:`Cluster.forget_idle`); if it comes back, it is claimed
like a new one, and the pauses last read hold its gate from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from rps_service.logs import get_logger
from rps_service.providers.ratelimit import AccountGate
from rps_service.store import Store, StoreUnavailable
from rps_service.store.cluster import Claim, Claims

log = get_logger()

#: An account is claimed while this instance made (or deferred) a call on it this recently
#: (seconds, plus two intervals of the account's rate).
HOLD_FOR = 3.0
#: An instance spaces its calls this much wider than its share asks (1.05 / share s): a call
#: delayed by up to 50 ms on its way never lets the calls of several instances (or the moment
#: one hands its share to another) bunch above ``rate_limit + 1`` at the receiver.
JITTER_MARGIN = 0.05
#: Heartbeats between two deletions of long-gone claims and pauses.
FORGET_EVERY = 100
#: Failed heartbeats in a row before one is logged (a deadlock is tried again at once).
FAILURES_LOGGED = 3


def split(rate: float, count: int, rank: int) -> float:
    """Share ``rank`` (0 = oldest) of ``rate`` split ``count`` ways, in whole requests per
    second; the shares of ranks 0…count-1 add up to ``rate`` exactly."""
    base = math.floor(rate / count)
    rest = rate - base * count
    extra = math.floor(rest)
    share: float = base + (1 if rank < extra else 0)
    if rank == 0:
        share += rest - extra  # a fraction of a request per second goes to one instance
    return share


@dataclass
class Tracked:
    """One account this instance sends on."""

    gate: AccountGate
    rate: float  # the account's whole rate_limit
    account_id: str  # its name in the shared tables
    used: float = 0.0
    claimed: bool = False
    share: float = -1.0
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class Cluster:
    """The heartbeat and pause tasks of one instance; the providers' ``RateShares``."""

    def __init__(self, store: Store, owner: str, lease_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock
        # Survivors take over within 3 beats and a second: within lease_timeout. At most a
        # second apart: a newcomer waits 2 beats and a second for its share, and two
        # statements a second per instance cost the database nothing.
        self.beat_every = min(max((lease_timeout - 1.0) / 4, 0.1), 1.0)
        self.valid_for = 2 * self.beat_every  # a share holds this long after its beat began
        # A claim outlives its share by a second, the window a receiver counts calls in: the
        # others take a share over only once its last calls are a second old.
        self.ttl = self.valid_for + 1.0
        # A newcomer waits until every other share in force was computed knowing its claim,
        # and one second more: a receiver counts calls per second.
        self.settle = self.valid_for + 1.0
        self.poll_every = min(0.5, self.beat_every)
        self.queries = 0  # statements spent on the shared rate and pauses (bench)
        self._tracked: dict[str, Tracked] = {}  # by account key
        self._wake = asyncio.Event()
        self._paused: dict[str, float] = {}  # account id -> seconds, to be written
        self._pause_wake = asyncio.Event()
        #: Every pause read at the last poll: account id -> until when (this clock).
        self._pauses_read: dict[str, float] = {}

    async def ready(self, account: str, gate: AccountGate, rate_limit: float) -> None:
        """Before each call: the account is marked busy; a new one waits for its share."""
        tracked = self._tracked.get(account)
        if tracked is None or tracked.gate is not gate:
            tracked = Tracked(gate, rate_limit, self.store.account_id(account))
            gate.set_rate(0)  # nothing is sent before the first heartbeat gives a share
            gate.on_pause = functools.partial(self._pause_seen, tracked.account_id)
            # A pause another instance took holds here at once, not at the next poll: the
            # first heartbeat may come before it (an account forgotten, then back).
            gate.hold(self._pauses_read.get(tracked.account_id, 0.0))
            self._tracked[account] = tracked
        tracked.used = self.clock()
        if not tracked.claimed:
            tracked.ready.clear()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracked.ready.wait(), self.valid_for)

    # -- the heartbeat -------------------------------------------------------------------

    async def run_heartbeat(self) -> None:
        """Beat every ``beat_every`` seconds, and at once when a new account needs a share;
        a beat that failed (a deadlock, an outage) is tried again within 0.2 s."""
        failures, beats = 0, 0
        while True:
            self._wake.clear()
            try:
                await self.beat()
                failures, beats = 0, beats + 1
                if beats % FORGET_EVERY == 0:
                    await self.store.forget_rate_claims()
                    await self.store.forget_pauses()
                    self.queries += 2
            except StoreUnavailable as exc:
                failures += 1
                if failures == FAILURES_LOGGED:  # shares lapse on their own (valid_for)
                    log.error("Heartbeat failed", component="CLUSTER", err=str(exc))
                await asyncio.sleep(random.uniform(0.02, 0.2))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.beat_every)

    async def beat(self) -> None:
        """Claim the busy accounts, read every live claim on them, set each gate's share."""
        started = self.clock()
        busy = {t.account_id: t for t in self._tracked.values()
                if started - t.used < HOLD_FOR + 2 / t.rate}
        dropped = sorted({t.account_id for t in self._tracked.values() if t.claimed} - set(busy))
        if not busy and not dropped:
            return  # an idle instance costs the database nothing
        claims = await self.store.beat_rate_claims(self.owner, sorted(busy), self.ttl, dropped)
        # The claims' upsert, the release of the dropped ones, the read.
        self.queries += (1 if busy else 0) + (1 if dropped else 0) + 1
        holders: dict[str, list[Claim]] = {}
        for claim in claims.claims:
            holders.setdefault(claim.account, []).append(claim)
        for tracked in self._tracked.values():
            if busy.get(tracked.account_id) is not tracked:
                tracked.claimed = False
                tracked.gate.set_rate(0)
                continue
            found = holders.get(tracked.account_id, [])
            share = self._share(tracked, found, claims)
            until = started + self.valid_for
            tracked.gate.set_rate(share, until, margin=JITTER_MARGIN)
            tracked.claimed = True
            tracked.ready.set()
            if share != tracked.share:
                log.info("Rate share", component="CLUSTER", account=tracked.account_id[:12],
                         share=f"{share:g}", rate_limit=f"{tracked.rate:g}",
                         instances=len(found))
                tracked.share = share

    def _share(self, tracked: Tracked, holders: list[Claim], claims: Claims) -> float:
        ranks = [c.owner for c in holders]
        if self.owner not in ranks:
            return 0.0  # our claim expired before it was read (a stall): the next beat
        rank = ranks.index(self.owner)
        age = (claims.now - holders[rank].since).total_seconds()
        if rank > 0 and age < self.settle:
            return 0.0  # the others may not have made room yet
        return split(tracked.rate, len(holders), rank)

    def forget_idle(self, quiet: float, keep: Collection[str] = ()) -> frozenset[str]:
        """Stop tracking the accounts unused for ``quiet`` seconds whose claim is given
        back, except those in ``keep`` (a lane of this instance still holds their gate);
        the accounts still tracked (their gates are in use by the heartbeat)."""
        now = self.clock()
        for account in [account for account, tracked in self._tracked.items()
                        if account not in keep and not tracked.claimed
                        and now - tracked.used >= quiet]:
            del self._tracked[account]
        return frozenset(self._tracked)

    async def leave(self) -> None:
        """A stopping instance gives its shares back at once."""
        with contextlib.suppress(StoreUnavailable):
            await self.store.drop_rate_claims(self.owner)

    # -- pauses --------------------------------------------------------------------------

    def _pause_seen(self, account_id: str, seconds: float) -> None:
        self._paused[account_id] = max(seconds, self._paused.get(account_id, 0.0))
        self._pause_wake.set()

    async def run_pauses(self) -> None:
        """Write this instance's pauses at once; read everyone's every ``poll_every``."""
        while True:
            self._pause_wake.clear()
            try:
                await self.exchange_pauses()
            except StoreUnavailable as exc:
                log.error("Pauses not shared", component="CLUSTER", err=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pause_wake.wait(), self.poll_every)

    async def exchange_pauses(self) -> None:
        """One round: write the pauses taken here since the last, read all in one query."""
        written, self._paused = self._paused, {}
        for account_id, seconds in written.items():
            try:
                await self.store.share_pause(account_id, seconds)
            except StoreUnavailable:
                self._pause_seen(account_id, seconds)  # written at the next round
                raise
            self.queries += 1
        started = self.clock()
        paused = dict(await self.store.account_pauses())
        self.queries += 1
        self._pauses_read = {account_id: started + left for account_id, left in paused.items()}
        for tracked in self._tracked.values():
            left = paused.get(tracked.account_id)
            if left is None:
                continue
            until = started + left
            if until > tracked.gate.paused_until + 0.5 and tracked.account_id not in written:
                log.warning("Account paused by another instance", component="CLUSTER",
                            account=tracked.account_id[:12], seconds=f"{left:.1f}")
            tracked.gate.hold(until)
