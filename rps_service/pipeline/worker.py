"""QUEUE workers: take an event, call its provider, record the outcome.

The retry policy lives here, once, above every provider and store backend: transient
failures come back after exponential backoff with full jitter (or the vendor's
Retry-After) until ``max_attempts``; permanent ones fail at once. The event's outcome and
its device row (with the access details sent) are written in one transaction.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rps_service import timeline
from rps_service.access import AccessMode, needs_generation, new_access, new_credentials
from rps_service.clock import utcnow
from rps_service.config import GeneralSettings
from rps_service.logs import get_logger
from rps_service.models import AccessDetails, Event
from rps_service.models import Device as DeviceRow
from rps_service.pipeline import lease as leases
from rps_service.pipeline.distributor import Distributor
from rps_service.providers.protocol import Device, Failure, Provider, ProviderError
from rps_service.store import DeviceOutcome, Store, StoreUnavailable

log = get_logger()
NOT_REGISTERED = "Device is not registered"


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base·2^(attempt-1))] (AWS architecture blog)."""
    return rng.uniform(0.0, min(cap, base * 2 ** max(attempt - 1, 0)))


class NotRegistered(ProviderError):
    """An ``update`` for a device that is removed or unknown: nothing is sent."""


class InPbxConflict(ProviderError):
    """The "other account" holding the MAC is another server's of this PBX."""

    def __init__(self, mac: str, server: int, owner: int) -> None:
        super().__init__(
            f"The MAC {mac} is registered to server {owner} of this PBX", Failure.OWNED,
            hint=f"to move it to server {server}, remove it there first (a remove of this MAC "
                 f"now acts on server {owner}), then add it to server {server} again")
        self.owner = owner


#: Servers whose accounts are searched for the MAC when a vendor says another holds it.
IN_PBX_LOOKUPS = 20


@dataclass(frozen=True)
class Outcome:
    """What handling an event decided, to be written to the journal."""

    state: str  # done, failed, pending (a retry), or running (nothing to write)
    error: str | None = None
    next_attempt_at: datetime | None = None
    device: DeviceOutcome | None = None
    uncount: bool = False  # nothing was sent: the attempt does not count


class Worker:
    """One worker: takes the events the distributor hands it, one at a time.

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
        #: The device timeline (docs/timeline.md): calls, retries and outcomes, if recorded.
        self.timeline: timeline.Timeline | None = None

    async def run(self) -> None:
        """Handle events until stopped; a stop lets the current event finish."""
        try:
            while not self.stopping:
                event = await self.distributor.take(self.index)
                self.current = event
                try:
                    outcome = await self.handle(event)
                    self.distributor.call_ended(event)  # its lane may start another call
                    # Still ``current`` while the previous outcome lands: a stop waits for
                    # this one too, or gives its lease back, but never drops it unwritten.
                    await self.flush()
                except BaseException:
                    self.current = None
                    self.distributor.call_ended(event, self.index)
                    self.distributor.finished(event)  # its lease runs out; it comes back
                    raise
                self.distributor.call_ended(event, self.index)
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
            lease = self.distributor.lease_of(event)
            token = leases.CURRENT.set(lease)
            subject = timeline.CALL.set(self._subject(event))
            try:
                device = await self._call(provider, event)
            finally:
                timeline.CALL.reset(subject)
                leases.CURRENT.reset(token)
        except ProviderError as err:
            if err.deferred:
                return self._deferred(event, err)
            if err.failure is Failure.OWNED and provider is not None:
                err = await self._in_pbx(provider, event) or err
            return self._failed(event, err)
        except leases.LeaseLost as exc:
            # Another worker may hold the event now: send nothing more, record nothing.
            log.warning("Lease lost, call stopped", component="QUEUE", err=str(exc),
                        id=event.id, mac=event.mac)
            return Outcome("running")
        except StoreUnavailable as exc:
            # Nothing can be decided or written; the lease runs out and the event comes back.
            log.error("Database unavailable", component="DATABASE", err=str(exc))
            return Outcome("running")
        except Exception as exc:  # a bug must not kill the queue: record and retry
            log.exception("Unexpected error", component="QUEUE", mac=event.mac)
            return self._failed(event, ProviderError(f"Internal error: {exc!r}",
                                                     Failure.TRANSIENT))
        return Outcome("done", device=device)

    def _subject(self, event: Event) -> timeline.CallSubject | None:
        if self.timeline is None or not self.timeline.enabled:
            return None
        return timeline.CallSubject(self.timeline, event.provider, event.mac, event.id,
                                    event.attempts)

    async def _in_pbx(self, provider: Provider, event: Event) -> InPbxConflict | None:
        """When each server has its own vendor account (tenant mode), whether the account
        holding the MAC is another server's of this PBX: looked up with their keys."""
        if self.settings.mode != "tenant" or not provider.can_lookup:
            return None
        servers = await self.store.servers_with_credentials(event.provider)
        for server in [s for s in servers if s != event.server][:IN_PBX_LOOKUPS]:
            try:
                found = await provider.lookup(Device(mac=event.mac, server=server))
            except ProviderError:
                continue  # that server's keys do not work: it tells nothing
            if found is not None and found.ours:
                return InPbxConflict(event.mac, event.server, server)
        return None

    async def _call(self, provider: Provider, event: Event) -> DeviceOutcome:
        stored = event.device if event.device_loaded else await self.store.get_device(
            event.provider, event.mac)
        if event.action == "remove":
            await provider.deregister(self._device(event, stored))
            return DeviceOutcome("unregistered", revoke=True)
        if event.action == "update" and (stored is None or stored.settled() == "unregistered"):
            # Pushing "current details" of a removed phone would register it again.
            raise NotRegistered(NOT_REGISTERED, Failure.PERMANENT)
        access = await self._access(provider, event, stored)
        url = await provider.device_url(event.server, access.url_key)
        device = self._device(event, stored, url, access)
        if provider.supports_settings:
            # The server's extra settings, then the event's own (docs/fleet.md).
            pushed = await self.store.get_server_settings(event.provider, event.server)
            if pushed:
                device = replace(device, settings={**pushed, **device.settings})
        await provider.register(device)
        return DeviceOutcome("registered", registered=True, access=(url, access))

    async def _access(self, provider: Provider, event: Event, stored: DeviceRow | None
                      ) -> AccessDetails:
        """The device's access details, stored *before* the vendor hears of them, so every
        retry (and a call that timed out but landed) sends the same ones (docs/database.md)."""
        mode = provider.access
        have = None if stored is None else AccessDetails(
            stored.http_username, stored.http_password, stored.url_key)
        if mode is AccessMode.SERVER:
            # Always the server's own login (stable, so retries still send the same): a
            # device that moved here from another server must not carry its old server's
            # login into this server's profile. The outcome stores it on the device row.
            shared = await self.store.ensure_server_access(
                event.provider, event.server, new_credentials(), utcnow())
            if needs_generation(mode, have):
                await self.store.ensure_access(event.provider, event.mac, event.server,
                                               shared, utcnow())
            return shared
        if not needs_generation(mode, have):
            return have or AccessDetails()
        return await self.store.ensure_access(event.provider, event.mac, event.server,
                                              new_access(mode), utcnow())

    @staticmethod
    def _device(event: Event, stored: DeviceRow | None, url: str = "",
                access: AccessDetails | None = None) -> Device:
        """The provider's view of the device: the event's details, else the stored ones."""
        payload = event.payload

        def detail(name: str) -> str | None:
            value = payload.get(name)
            return value if isinstance(value, str) and value else (
                getattr(stored, name, None) if stored else None)

        settings = payload.get("settings")
        return Device(
            mac=event.mac, server=event.server, url=url,
            http_username=(access.username or "") if access else "",
            http_password=(access.password or "") if access else "",
            model=detail("model"), name=detail("name"), sn=detail("sn"),
            mac_id=detail("mac_id"), settings=settings if isinstance(settings, dict) else {},
        )

    def _deferred(self, event: Event, err: ProviderError) -> Outcome:
        delay = err.retry_after or self.settings.retry_base
        when = utcnow() + timedelta(seconds=delay)
        log.info("Event deferred", component="QUEUE", delay=f"{delay:.2f}s", id=event.id,
                 mac=event.mac, reason=err.text)
        self.distributor.schedule(when)
        return Outcome("pending", err.text, when, uncount=True)

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
        if isinstance(err, NotRegistered):
            return Outcome("failed", message)  # the device row is not the event's to change
        # A MAC on another server of this PBX stays that server's device (a remove acts there).
        owner = err.owner if isinstance(err, InPbxConflict) else None
        return Outcome("failed", message, device=DeviceOutcome("error", message, server=owner))

    async def _write(self, event: Event, outcome: Outcome) -> None:
        try:
            if outcome.state != "running" and await self._record(event, outcome):
                self._on_timeline(event, outcome)
                device = outcome.device
                if device is not None and outcome.state == "done":
                    log.info("Device updated", component="DATABASE", mac=event.mac,
                             provider=event.provider, server=event.server,
                             status=device.status)
        finally:
            self.distributor.finished(event)

    def _on_timeline(self, event: Event, outcome: Outcome) -> None:
        """A retry (with when and why) or an outcome, once written."""
        if self.timeline is None:
            return
        if outcome.state == "pending":
            when = outcome.next_attempt_at
            self.timeline.record(event.provider, event.mac, "retry", event=event.id,
                                 at=None if when is None else timeline.iso_time(when),
                                 why=outcome.error or "")
            return
        status = outcome.device.status if outcome.device is not None else None
        self.timeline.record(event.provider, event.mac, "outcome", event=event.id,
                             state=outcome.state, status=status, message=outcome.error)

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
                    device=outcome.device, uncount=outcome.uncount,
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
