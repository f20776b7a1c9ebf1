"""QUEUE workers: take an event, call its provider, record the outcome.

The retry policy lives here, once, above every provider and store backend: transient
failures come back after exponential backoff with full jitter (or the vendor's
Retry-After) until ``max_attempts``; permanent ones fail at once. The event's outcome and
its device row (with the access details sent) are written in one transaction.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Outcome:
    """What handling an event decided, to be written to the journal."""

    state: str  # done, failed, or pending (a retry)
    error: str | None = None
    next_attempt_at: datetime | None = None
    device: DeviceOutcome | None = None


class Worker:
    """One queue's consumer.

    An event's outcome is written while the worker already calls the vendor for the next
    one (at most one write outstanding): the commit is off the worker's path. Order is
    safe: the store leases a device's next event only once this outcome is committed.
    """

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
        self.writing: asyncio.Task[None] | None = None  # the previous event's outcome
        self.stopping = False
        # Told of each outcome (done, failed, pending = retry) before it is written: metrics.
        self.on_outcome: Callable[[Event, str], None] | None = None

    async def run(self) -> None:
        """Handle events until stopped; a stop lets the current event finish."""
        try:
            while not self.stopping:
                event = await self.queue.get()
                self.current = event
                try:
                    outcome = await self.handle(event)
                    # Still ``current`` while the previous outcome lands: a stop waits for
                    # this one too, or gives its lease back, but never drops it unwritten.
                    await self.flush()
                except BaseException:
                    self.current = None
                    self.distributor.finished(event)  # its lease runs out; it comes back
                    raise
                self.writing = asyncio.create_task(self._write(event, outcome),
                                                   name=f"queue-{self.index}-write")
                self.current = None
        finally:
            await self.flush()

    async def flush(self) -> None:
        """Wait until the last outcome is written."""
        if self.writing is not None:
            await asyncio.shield(self.writing)
            self.writing = None

    async def handle(self, event: Event) -> Outcome:
        """Call the provider for one event and decide its outcome."""
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
            device = await self._call(provider, event)
        except ProviderError as err:
            return self._failed(event, err)
        except StoreUnavailable as exc:
            # Nothing can be decided or written; the lease runs out and the event comes back.
            log.error("Database unavailable", component="DATABASE", err=str(exc))
            return Outcome("running")
        except Exception as exc:  # a bug must not kill the queue: record and retry
            log.exception("Unexpected error", component="QUEUE", mac=event.mac)
            return self._failed(event, ProviderError(f"Internal error: {exc!r}",
                                                     Failure.TRANSIENT))
        return Outcome("done", device=device)

    async def _call(self, provider: Provider, event: Event) -> DeviceOutcome:
        if event.action == "remove":
            await provider.deregister(Device(mac=event.mac, server=event.server))
            return DeviceOutcome("unregistered", revoke=True)
        url = await provider.device_url(event.server)
        stored = event.device if event.device_loaded else await self.store.get_device(
            event.provider, event.mac)
        if stored is not None and stored.http_username and stored.http_password:
            username, password = stored.http_username, stored.http_password
        else:
            username, password = new_access_details()
        model = event.payload.get("model") or (stored.model if stored else None)
        await provider.register(Device(mac=event.mac, server=event.server, url=url,
                                       http_username=username, http_password=password,
                                       model=model))
        # The access details are written with the outcome: if this daemon dies before
        # that, the event runs again and PUTs fresh ones, replacing these at the vendor.
        return DeviceOutcome("registered", registered=True, access=(url, username, password))

    def _failed(self, event: Event, err: ProviderError) -> Outcome:
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
            self.distributor.schedule(when)
            # The GUI shows the device pending, with why, until the retry settles it.
            retrying = f"{err.text} (attempt {event.attempts} of " \
                       f"{self.settings.max_attempts}, retrying)"
            return Outcome("pending", err.text, when, DeviceOutcome("pending", retrying))
        message = err.text
        if err.transient:
            message = f"{message} (gave up after {event.attempts} attempts)"
        return Outcome("failed", message, device=DeviceOutcome("error", message))

    async def _write(self, event: Event, outcome: Outcome) -> None:
        try:
            if outcome.state != "running" and await self._record(event, outcome):
                device = outcome.device
                if device is not None and outcome.state == "done":
                    log.info("Device updated", component="DATABASE", mac=event.mac,
                             provider=event.provider, server=event.server,
                             status=device.status)
        finally:
            self.distributor.finished(event)

    async def _record(self, event: Event, outcome: Outcome) -> bool:
        """Write the outcome; False when it could not be (lease lost, database away)."""
        if self.on_outcome is not None:
            self.on_outcome(event, outcome.state)
        # The outcome is written even through a database outage, until the lease would
        # have run out (then the event comes back and is handled again: at-least-once).
        deadline = asyncio.get_running_loop().time() + self.settings.lease_timeout
        pause = 0.25
        while True:
            try:
                kept = await self.store.finish_event(
                    event, self.distributor.owner, outcome.state, utcnow(),
                    error=outcome.error, next_attempt_at=outcome.next_attempt_at,
                    device=outcome.device,
                )
                break
            except StoreUnavailable as exc:
                if asyncio.get_running_loop().time() + pause > deadline:
                    log.error("Outcome not recorded", component="DATABASE", err=str(exc),
                              id=event.id, mac=event.mac)
                    return False
                log.warning("Database unavailable, outcome kept", component="DATABASE",
                            err=str(exc), id=event.id, retry=f"{pause:g}s")
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
        if not kept:
            log.warning("Lease lost, outcome dropped", component="QUEUE", id=event.id,
                        mac=event.mac)
        return kept
