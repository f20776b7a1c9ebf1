"""QUEUE workers: take an event, call its provider, record the outcome.

The retry policy lives here, once, above every provider and store backend: transient
failures come back after exponential backoff with full jitter (or the vendor's
Retry-After) until ``max_attempts``; permanent ones fail at once. The event's outcome and
its device row are written in one transaction.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from rps_service.config import GeneralSettings
from rps_service.distributor import Distributor, utcnow
from rps_service.logs import get_logger
from rps_service.models import Event
from rps_service.providers.base import Device, Failure, Provider, ProviderError
from rps_service.store import DeviceOutcome, Store, StoreUnavailable

log = get_logger()


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^(attempt-1))] (AWS architecture blog)."""
    return rng.uniform(0.0, min(cap, base * 2 ** max(attempt - 1, 0)))


def new_access_details() -> tuple[str, str]:
    """A fresh HTTP username and a random password (24 URL-safe characters)."""
    return f"ztp-{secrets.token_hex(6)}", secrets.token_urlsafe(18)


class Worker:
    """One queue's consumer."""

    def __init__(
        self,
        index: int,
        distributor: Distributor,
        store: Store,
        providers: Mapping[str, Provider],
        settings: GeneralSettings,
        rng: random.Random | None = None,
    ) -> None:
        self.index = index
        self.queue = distributor.queues[index]
        self.distributor = distributor
        self.store = store
        self.providers = providers
        self.settings = settings
        self.rng = rng or random.Random()
        self.current: Event | None = None
        self.stopping = False
        self.processed = 0
        # Told of each outcome (done, failed, pending = retry) before it is written: metrics.
        self.on_outcome: Callable[[Event, str], None] | None = None

    async def run(self) -> None:
        """Handle events until stopped; a stop lets the current event finish."""
        while not self.stopping:
            event = await self.queue.get()
            self.current = event
            try:
                await self.handle(event)
            finally:
                self.current = None
                self.processed += 1
                self.distributor.finished(event)

    async def handle(self, event: Event) -> None:
        """Run one event to an outcome recorded in the journal."""
        provider = self.providers.get(event.provider)
        try:
            if provider is None:
                raise ProviderError(
                    f"Provider {event.provider} is not enabled", Failure.PERMANENT
                )
            if event.attempts > self.settings.max_attempts:
                raise ProviderError(
                    f"Gave up after {event.attempts - 1} attempts (leases expired)",
                    Failure.PERMANENT,
                )
            outcome = await self._call(provider, event)
        except ProviderError as err:
            await self._failed(event, err)
            return
        except StoreUnavailable as exc:
            # The outcome cannot be written; the lease runs out and the event comes back.
            log.error("Database unavailable", component="DATABASE", err=str(exc))
            return
        except Exception as exc:  # a bug must not kill the queue: record and retry
            log.exception("Unexpected error", component="QUEUE", mac=event.mac)
            await self._failed(event, ProviderError(f"Internal error: {exc!r}", Failure.TRANSIENT))
            return
        await self._record(event, "done", device=outcome)
        log.info("Device updated", component="DATABASE", mac=event.mac,
                 provider=event.provider, server=event.server, status=outcome.status)

    async def _call(self, provider: Provider, event: Event) -> DeviceOutcome:
        if event.action == "remove":
            await provider.deregister(Device(mac=event.mac, server=event.server))
            return DeviceOutcome("unregistered", revoke=True)
        url = await provider.device_url(event.server)
        username, password = new_access_details()
        row = await self.store.prepare_device(event, url, username, password, utcnow())
        await provider.register(
            Device(
                mac=event.mac, server=event.server, url=url,
                http_username=row.http_username or username,
                http_password=row.http_password or password,
                model=row.model,
            )
        )
        return DeviceOutcome("registered", registered=True)

    async def _failed(self, event: Event, err: ProviderError) -> None:
        log.error("Error while handling Event", component="QUEUE", action=event.action,
                  err=err.text, mac=event.mac, provider=event.provider, server=event.server)
        if err.transient and event.attempts < self.settings.max_attempts:
            delay = err.retry_after
            if delay is None:
                delay = backoff_delay(event.attempts, self.settings.retry_base,
                                      self.settings.retry_cap, self.rng)
            when = utcnow() + timedelta(seconds=delay)
            log.info("Retrying Event", component="QUEUE", attempt=event.attempts,
                     delay=f"{delay:.2f}s", id=event.id, mac=event.mac)
            await self._record(event, "pending", error=err.text, next_attempt_at=when)
            self.distributor.schedule(when)
            return
        message = err.text
        if err.transient:
            message = f"{message} (gave up after {event.attempts} attempts)"
        await self._record(event, "failed", error=message,
                           device=DeviceOutcome("error", message))

    async def _record(
        self,
        event: Event,
        state: str,
        *,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        device: DeviceOutcome | None = None,
    ) -> None:
        if self.on_outcome is not None:
            self.on_outcome(event, state)
        # The outcome is written even through a database outage, until the lease would
        # have run out (then the event comes back and is handled again: at-least-once).
        deadline = asyncio.get_running_loop().time() + self.settings.lease_timeout
        pause = 0.25
        while True:
            # Shielded: a drain timeout must not cut the write of an outcome already reached.
            write = self.store.finish_event(
                event, self.distributor.owner, state, utcnow(), error=error,
                next_attempt_at=next_attempt_at, device=device,
            )
            try:
                kept = await asyncio.shield(write)
                break
            except StoreUnavailable as exc:
                if asyncio.get_running_loop().time() + pause > deadline:
                    log.error("Outcome not recorded", component="DATABASE", err=str(exc),
                              id=event.id, mac=event.mac)
                    return
                log.warning("Database unavailable, outcome kept", component="DATABASE",
                            err=str(exc), id=event.id, retry=f"{pause:g}s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        if not kept:
            log.warning("Lease lost, outcome dropped", component="QUEUE", id=event.id,
                        mac=event.mac)
