"""Webhooks to the PBX (``[webhooks]``, docs/webhooks.md): the outbox's sender.

Notifications are stored in the outbox by the change they report (:mod:`rps_service.store.outbox`);
this task leases due rows, posts them signed, and deletes each once the receiver answered
2xx. A failure (an error answer, a timeout, a refused connection) puts the row back with
exponential backoff and jitter, up to ``max_age`` after it was stored: then it is dropped
with an ERROR line. A device's next notification is leased only once the previous one is
gone, so each device's notifications arrive in order; a crash loses none (the rows stay,
their leases run out). The sender has its own HTTP client and task, and posts at most
:data:`CONCURRENCY` notifications at a time: a slow receiver never slows the pipeline. A
round leases up to :data:`ROUND` rows: the database's share of a notification (lease and
delete) is then a fraction of a statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

import aiohttp

from rps_service.clock import utcnow
from rps_service.config import WebhookSettings
from rps_service.logs import get_logger
from rps_service.store import Store, StoreUnavailable
from rps_service.store.outbox import Notice, Outgoing

log = get_logger()

CONCURRENCY = 16  # notifications posted at once (each its own device's oldest)
ROUND = 64  # notifications leased by one round (posted CONCURRENCY at a time)
RETRY_BASE = 1.0  # seconds before the first retry; doubling up to RETRY_CAP
RETRY_CAP = 300.0
IDLE_POLL = 1.0  # seconds between looks at the outbox when nothing woke the sender
GATHER = 0.1  # seconds between a wake and the round it starts


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-RPS-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256>`` of
    ``<t>.<body>``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def retry_delay(attempts: int, rng: random.Random) -> float:
    """Backoff after the ``attempts``-th failure: between half and all of
    min(cap, base·2^(attempts-1)) (jitter keeps instances from retrying in step)."""
    ceiling = min(RETRY_CAP, RETRY_BASE * 2 ** max(attempts - 1, 0))
    return rng.uniform(ceiling / 2, ceiling)


class Repeats:
    """The phones' notices told lately: the same one again (type, device and message
    alike) within ``window`` seconds is not told (``[webhooks] repeat_after``; 0: every
    one). A phone fetching in a loop then tells the PBX once a window, not each time; a new
    address, model, firmware or reason is a new message, told at once. Remembers at most
    ``limit`` notices (the oldest are forgotten first)."""

    def __init__(self, window: float, limit: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.limit = limit
        self._clock = clock
        self._told: OrderedDict[tuple[str, str, str, str], float] = OrderedDict()

    def fresh(self, notice: Notice) -> bool:
        """Whether to tell ``notice`` (then it counts as told now)."""
        if self.window <= 0:
            return True
        now = self._clock()
        key = (notice.type, notice.provider, notice.mac, notice.message)
        last = self._told.get(key)
        if last is not None and now - last < self.window:
            return False
        self._told[key] = now
        self._told.move_to_end(key)
        while self._told:  # oldest first: drop what the window no longer needs
            oldest = next(iter(self._told.values()))
            if now - oldest < self.window and len(self._told) <= self.limit:
                break
            self._told.popitem(last=False)
        return True


class WebhookSender:
    """Delivers the outbox's notifications until stopped."""

    def __init__(self, settings: WebhookSettings, store: Store, owner: str,
                 on_result: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.owner = owner
        # aiohttp's client: a post costs the event loop far less CPU than httpx's, and the
        # loop is the pipeline's too. The timeout covers all of a delivery, a trickle too.
        self.client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.timeout),
            connector=aiohttp.TCPConnector(limit=CONCURRENCY))
        self._secret = settings.secret.get_secret_value().encode()
        self._posting = asyncio.Semaphore(CONCURRENCY)  # the timeout starts inside
        self._wake = asyncio.Event()
        self._rng = random.Random()
        #: Told ``delivered`` or ``failed`` for each attempt (metrics).
        self.on_result = on_result

    def wake(self) -> None:
        """New notifications were stored: look now rather than at the next poll."""
        self._wake.set()

    async def close(self) -> None:
        """Give back what this instance holds (another instance, or the next start, posts
        it at once rather than when the lease runs out) and close the client."""
        with contextlib.suppress(Exception):
            await self.store.release_notices(self.owner)
        await self.client.close()

    async def run(self) -> None:
        """Lease, post and settle rounds of notifications until cancelled."""
        while True:
            try:
                sent = await self.round(utcnow())
            except StoreUnavailable as exc:
                log.error("Database unavailable", component="WEBHOOK", err=str(exc))
                sent = 0
            if sent >= ROUND:
                continue  # a backlog: straight on
            if not sent:  # nothing due: until a wake or the next poll
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_POLL)
            # (After a round that had rows, the devices it settled may have their next
            # notification due already: no waiting for a wake.)
            # Outcomes commit in bursts: gather a few before leasing (fewer, fuller rounds
            # of the database's time, which the pipeline needs more).
            await asyncio.sleep(GATHER)

    async def round(self, now: datetime) -> int:
        """One round: how many notifications were leased."""
        # Long enough for every wave of the round's posts, and one more timeout to spare.
        waves = -(-ROUND // CONCURRENCY)
        lease = timedelta(seconds=(waves + 1) * self.settings.timeout + 30)
        rows = await self.store.lease_notices(self.owner, now, now + lease, ROUND)
        if not rows:
            return 0
        results = await asyncio.gather(*(self._post_one(row) for row in rows))
        gone: list[int] = []
        retry: list[tuple[int, datetime, str]] = []
        max_age = timedelta(hours=self.settings.max_age)
        now = utcnow()
        for row, failure in zip(rows, results, strict=True):
            if failure is None:
                gone.append(row.row)
            elif now - row.created_at >= max_age:
                log.error("Webhook dropped", component="WEBHOOK", attempts=row.attempts + 1,
                          err=failure, id=_notice_id(row))
                gone.append(row.row)
            else:
                when = now + timedelta(seconds=retry_delay(row.attempts + 1, self._rng))
                retry.append((row.row, when, failure))
        await self.store.settle_notices(self.owner, gone, retry)
        return len(rows)

    async def _post_one(self, row: Outgoing) -> str | None:
        async with self._posting:
            return await self._post(row)

    async def _post(self, row: Outgoing) -> str | None:
        """Post one notification; None when delivered, else why not."""
        stamp = int(utcnow().timestamp())
        headers = {"Content-Type": "application/json",
                   "X-RPS-Signature": signature(self._secret, stamp, row.body),
                   "User-Agent": "rps-service-webhooks"}
        try:
            async with self.client.post(self.settings.url, data=row.body, headers=headers,
                                        allow_redirects=False) as answer:
                await answer.content.read(65536)  # keep-alive; a bigger answer is cut
                status = answer.status
        except TimeoutError:
            failure: str | None = f"no answer within {self.settings.timeout:g}s (timeout)"
        except aiohttp.ClientError as exc:
            failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            failure = None if 200 <= status < 300 else f"HTTP {status}"
        if failure is not None:
            log.warning("Webhook not delivered", component="WEBHOOK", attempt=row.attempts + 1,
                        err=failure, id=_notice_id(row))
        if self.on_result is not None:
            self.on_result("failed" if failure else "delivered")
        return failure


def _notice_id(row: Outgoing) -> str:
    # The body is ours (orjson, "id" first): its 32 hex digits follow the first quote pair.
    text = row.body.decode()
    start = text.find('"id":"') + 6
    return text[start:start + 32] if start >= 6 else "-"
