"""Fleet jobs (docs/fleet.md): reconcile a server's devices with the vendor, re-point a server.

A job is a row of ``rps_jobs``, created by the API (or every ``reconcile_interval`` hours)
and run by one instance's :class:`JobRunner`, which leases it like an event: progress and
partial results are written as the job goes (renewing the lease); an instance that dies
leaves the job to be run again by the next runner (a job is idempotent: the events it
queues carry keys ``<kind>-<job>-<mac>``, so a second run adds none twice). A job that
could not finish in :data:`MAX_RUNS` runs ends ``failed``.

Everything a job changes goes through the journal: ``repair`` and re-point queue events,
which the workers send under the same rate limits and per-device order as any other.
Vendor reads (listing, look-ups) go through the provider, under the account's rate limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from rps_service.clock import utcnow
from rps_service.config import GeneralSettings
from rps_service.logs import get_logger
from rps_service.models import Device as DeviceRow
from rps_service.models import Job, NewEvent
from rps_service.pipeline.distributor import Distributor
from rps_service.providers.protocol import Device, Provider, ProviderError, VendorRecord
from rps_service.store import Store, StoreUnavailable

log = get_logger()

MAX_RUNS = 3
SHOWN = 1000  # differences listed in a job's result (all are counted)
SAVE_EVERY = 1.0  # seconds between two progress writes
BATCH = 500  # events queued per insert


class JobLost(Exception):
    """Another instance took the job (this one's lease ran out): stop."""


def can_reconcile(provider: Provider) -> bool:
    """Whether the vendor's API can list the account's devices or look one up."""
    return provider.can_list or provider.can_lookup


@dataclass
class Progress:
    """Writes a running job's progress (at most every SAVE_EVERY s), renewing its lease."""

    store: Store
    job: Job
    owner: str
    lease: float
    _saved: float = field(default=0.0)

    async def step(self, count: int = 1, force: bool = False) -> None:
        self.job.done += count
        now = time.monotonic()
        if force or now - self._saved >= SAVE_EVERY:
            self._saved = now
            until = utcnow() + timedelta(seconds=self.lease)
            if not await self.store.job_progress(self.job, self.owner, until, utcnow()):
                raise JobLost(f"job {self.job.id} was taken by another instance")

    async def phase(self, name: str, total: int | None) -> None:
        self.job.phase, self.job.done, self.job.total = name, 0, total
        await self.step(0, force=True)


class JobRunner:
    """Runs this instance's share of the jobs, one at a time."""

    def __init__(self, store: Store, providers: Mapping[str, Provider],
                 settings: GeneralSettings, owner: str, distributor: Distributor,
                 on_difference: Callable[[str, str, int], None] | None = None) -> None:
        self.store = store
        self.providers = providers
        self.settings = settings
        self.owner = owner
        self.distributor = distributor
        self.on_difference = on_difference
        self.current: Job | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_schedule = 0.0

    def wake(self) -> None:
        """A job was created: look at once."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Claim and run jobs until stopped; database outages are waited out."""
        while not self._stopping:
            self._wake.clear()
            try:
                await self._schedule_periodic()
                job = await self.store.claim_job(self.owner, utcnow(), self._until())
            except StoreUnavailable:
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.poll_interval * 5):
                        await self._wake.wait()
                continue
            self.current = job
            try:
                await self._execute(job)
            except asyncio.CancelledError:
                # A stop: give the job back so that the next runner resumes it at once.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release_job(job.id, self.owner))
                raise
            finally:
                self.current = None

    def _until(self) -> Any:
        return utcnow() + timedelta(seconds=self.settings.lease_timeout)

    async def _execute(self, job: Job) -> None:
        provider = self.providers.get(job.provider)
        log.info("Job started", component="JOBS", id=job.id, kind=job.kind,
                 provider=job.provider, run=job.runs, server=job.server)
        if job.runs > MAX_RUNS:
            await self._finish(job, "failed", f"gave up after {MAX_RUNS} runs (the instances"
                                              " running it stopped before it ended)")
            return
        if provider is None:
            await self._finish(job, "failed", f"provider {job.provider} is not enabled")
            return
        progress = Progress(self.store, job, self.owner, self.settings.lease_timeout)
        work = {"reconcile": self._reconcile, "repoint": self._repoint}[job.kind]
        try:
            await work(job, provider, progress)
        except JobLost as exc:
            log.warning("Job lost", component="JOBS", err=str(exc), id=job.id)
            return
        except ProviderError as err:
            await self._finish(job, "failed", err.text)
            return
        except StoreUnavailable as exc:
            # Nothing can be written: the lease runs out and the job is run again.
            log.error("Database unavailable", component="JOBS", err=str(exc), id=job.id)
            return
        await self._finish(job, "done")

    async def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        await self.store.finish_job(job, self.owner, state, utcnow(), error)
        level = log.info if state == "done" else log.error
        level("Job finished", component="JOBS", err=error or "-", id=job.id, kind=job.kind,
              state=state)

    # -- reconcile --------------------------------------------------------------------------

    async def _reconcile(self, job: Job, provider: Provider, progress: Progress) -> None:
        known = await self.store.device_servers(job.provider)
        ours = await self.store.list_devices(job.server, job.provider, "registered", None,
                                             10_000_000)
        diff = Differences()
        listing = provider.list_devices(job.server)
        if listing is not None:
            await progress.phase("listing", None)
            held: dict[str, VendorRecord] = {}
            async for record in listing:
                held[record.mac] = record
                await progress.step()
            await progress.phase("comparing", len(ours))
            for device in ours:
                diff.compare(device, held.get(device.mac))
            await progress.step(len(ours))  # in memory: one step (a finished job shows it)
            diff.orphans = [r for mac, r in held.items() if mac not in known]
            diff.vendor_count = len(held)
        else:
            await progress.phase("looking up", len(ours))
            for device in ours:
                diff.compare(device, await provider.lookup(_as_sent(device)))
                await progress.step()
            diff.orphans_checked = False
        job.result = diff.result(len(ours))
        self._report(job, diff)
        await self._repair_and_adopt(job, diff, progress)

    def _report(self, job: Job, diff: Differences) -> None:
        for kind, count in (("missing", len(diff.missing_devices)), ("drift", len(diff.drift)),
                            ("orphan", len(diff.orphans))):
            if self.on_difference is not None:
                self.on_difference(job.provider, kind, count)
        if job.params.get("periodic"):
            for item in diff.drift:  # an operator greps for these
                log.warning("Drift found", component="RECONCILE", mac=item["mac"],
                            provider=job.provider, server=job.server,
                            expected=item["expected"], found=item["found"] or "-",
                            owner="ours" if item["ours"] else "another account")

    async def _repair_and_adopt(self, job: Job, diff: Differences, progress: Progress) -> None:
        if job.params.get("repair"):
            fix = diff.missing_devices + diff.drift_devices
            await progress.phase("repairing", len(fix))
            events = [_readd(job, device) for device in fix]
            for start in range(0, len(events), BATCH):
                await self.store.insert_events(events[start:start + BATCH], utcnow())
                await progress.step(len(events[start:start + BATCH]))
            self.distributor.wake()
            job.result["counts"]["repair_events"] = len(events)
        if job.params.get("adopt") and diff.orphans:
            adopted = await self.store.adopt_devices(
                job.provider, job.server, [(r.mac, r.url or None) for r in diff.orphans],
                f"adopted by reconcile job {job.id}", utcnow())
            job.result["counts"]["adopted"] = adopted

    # -- re-point ---------------------------------------------------------------------------

    async def _repoint(self, job: Job, provider: Provider, progress: Progress) -> None:
        devices = await self.store.list_devices(job.server, job.provider, "registered", None,
                                                10_000_000)
        await progress.phase("queueing", len(devices))
        events = [NewEvent("update", job.provider, job.server, d.mac, {},
                           f"repoint-{job.id}-{d.mac}") for d in devices]
        for start in range(0, len(events), BATCH):
            await self.store.insert_events(events[start:start + BATCH], utcnow())
            self.distributor.wake()
            await progress.step(len(events[start:start + BATCH]))
        job.result = {"counts": {"devices": len(devices), "queued": len(events)}}

    # -- every reconcile_interval hours -----------------------------------------------------

    async def _schedule_periodic(self) -> None:
        hours = self.settings.reconcile_interval
        # Looked at every minute (or every interval, when that is shorter).
        if not hours or time.monotonic() - self._last_schedule < min(60.0, hours * 3600):
            return
        self._last_schedule = time.monotonic()
        for name, provider in self.providers.items():
            if not can_reconcile(provider):
                continue
            for server in await self.store.servers_with_devices(name):
                last = await self.store.last_job_at("reconcile", name, server)
                if last is None or utcnow() - last >= timedelta(hours=hours):
                    await self.store.create_job("reconcile", name, server,
                                                {"periodic": True}, utcnow())


@dataclass
class Differences:
    """What reconcile found."""

    missing_devices: list[DeviceRow] = field(default_factory=list)
    drift_devices: list[DeviceRow] = field(default_factory=list)
    drift: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[VendorRecord] = field(default_factory=list)
    orphans_checked: bool = True
    vendor_count: int | None = None

    def compare(self, device: DeviceRow, found: VendorRecord | None) -> None:
        """A registered device against what the vendor holds for its MAC."""
        if found is None:
            self.missing_devices.append(device)
            return
        # found.url "" (held, sending the phone nowhere) differs from any URL we sent.
        other_url = found.url is not None and bool(device.url) and found.url != device.url
        if other_url or not found.ours:
            self.drift.append({"mac": device.mac, "expected": device.shown_url(),
                               "found": _shown(found.url, device) or None,
                               "ours": found.ours})
            if found.ours:
                self.drift_devices.append(device)

    def result(self, compared: int) -> dict[str, Any]:
        return {
            "counts": {"database": compared, "vendor": self.vendor_count,
                       "missing": len(self.missing_devices), "drift": len(self.drift),
                       "orphan": len(self.orphans)},
            "missing": [d.mac for d in self.missing_devices[:SHOWN]],
            "drift": self.drift[:SHOWN],
            "orphan": [{"mac": r.mac, "url": r.url or None} for r in self.orphans[:SHOWN]],
            "orphans_checked": self.orphans_checked,
            "truncated": max(len(self.missing_devices), len(self.drift),
                             len(self.orphans)) > SHOWN,
        }


def _shown(url: str | None, device: DeviceRow) -> str | None:
    """A URL found at the vendor, its URL key masked as the API shows it."""
    if url and device.url_key and device.url_key in url:
        return url.replace(device.url_key, device.url_key[:12] + "***")
    return url


def _as_sent(device: DeviceRow) -> Device:
    """A device row as the provider was given it (a look-up may need its serial number or
    MAC-ID)."""
    return Device(device.mac, device.server, device.url or "", model=device.model,
                  name=device.name, sn=device.sn, mac_id=device.mac_id)


def _readd(job: Job, device: DeviceRow) -> NewEvent:
    payload = {k: v for k, v in (("model", device.model), ("name", device.name),
                                 ("extension", device.extension), ("sn", device.sn),
                                 ("mac_id", device.mac_id)) if v}
    return NewEvent("add", job.provider, device.server, device.mac, payload,
                    f"reconcile-{job.id}-{device.mac}")

