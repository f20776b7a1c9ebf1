"""Fleet operations' queries (docs/fleet.md): durable jobs, servers' extra settings, replacements.

A job is leased like an event (``lease_owner``, ``lease_until``), so one instance runs it
and another resumes it when the first dies. Its progress and result are written as it goes.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import orjson

from rps_service.models import Job, NewEvent
from rps_service.store.devices import mark_accepted
from rps_service.store.sql import SqlBackend, Tx, device_slot

_JOB_COLUMNS = ("id, kind, provider, server, params, state, done, total, phase, result, error,"
                " runs, created_at, updated_at")
#: Seconds a server's extra settings are reused (every registration reads them).
SETTINGS_TTL = 5.0


class JobQueries(SqlBackend):
    """Queries on ``rps_jobs`` and ``rps_server_settings``."""

    lock_clause = ""

    def __init__(self) -> None:
        super().__init__()
        self._settings: dict[tuple[str, int], tuple[float, dict[str, str]]] = {}

    def _job(self, row: tuple[Any, ...]) -> Job:
        return Job(
            id=int(row[0]), kind=row[1], provider=row[2], server=int(row[3]),
            params=orjson.loads(row[4]), state=row[5], done=int(row[6]),
            total=None if row[7] is None else int(row[7]), phase=row[8],
            result=orjson.loads(row[9]) if row[9] else {}, error=row[10], runs=int(row[11]),
            created_at=self.convert_time(row[12]), updated_at=self.convert_time(row[13]),
        )

    async def create_job(self, kind: str, provider: str, server: int, params: dict[str, Any],
                         now: datetime) -> int:
        async with self._tx() as tx:
            return await tx.insert(
                "INSERT INTO rps_jobs (kind, provider, server, params, state, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                [kind, provider, server, orjson.dumps(params).decode(), now, now])

    async def get_job(self, job_id: int) -> Job | None:
        async with self._tx() as tx:
            row = await tx.fetchone(f"SELECT {_JOB_COLUMNS} FROM rps_jobs WHERE id = ?",
                                    [job_id])
        return self._job(row) if row else None

    async def list_jobs(self, limit: int = 50) -> list[Job]:
        async with self._tx() as tx:
            rows = await tx.fetchall(
                f"SELECT {_JOB_COLUMNS} FROM rps_jobs ORDER BY id DESC LIMIT ?", [limit])
        return [self._job(r) for r in rows]

    async def claim_job(self, owner: str, now: datetime, until: datetime) -> Job | None:
        """Take the oldest job that is waiting, or whose runner's lease ran out."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT {_JOB_COLUMNS} FROM rps_jobs WHERE state IN ('pending', 'running')"
                " AND (lease_until IS NULL OR lease_until < ?) ORDER BY id LIMIT 1"
                f"{self.lock_clause}", [now])
            if row is None:
                return None
            await tx.execute(
                "UPDATE rps_jobs SET state = 'running', runs = runs + 1, lease_owner = ?,"
                " lease_until = ?, updated_at = ? WHERE id = ?", [owner, until, now, row[0]])
        job = self._job(row)
        job.state, job.runs = "running", job.runs + 1
        return job

    async def job_progress(self, job: Job, owner: str, until: datetime, now: datetime) -> bool:
        """Write the job's progress and result, and extend its lease; False when another
        instance has taken it (this one must stop)."""
        async with self._tx() as tx:
            changed = await tx.execute(
                "UPDATE rps_jobs SET done = ?, total = ?, phase = ?, result = ?,"
                " lease_until = ?, updated_at = ? WHERE id = ? AND lease_owner = ?"
                " AND state = 'running'",
                [job.done, job.total, job.phase, orjson.dumps(job.result).decode(), until,
                 now, job.id, owner])
        return changed == 1

    async def finish_job(self, job: Job, owner: str, state: str, now: datetime,
                         error: str | None = None) -> bool:
        async with self._tx() as tx:
            changed = await tx.execute(
                "UPDATE rps_jobs SET state = ?, done = ?, total = ?, phase = ?, result = ?,"
                " error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ?"
                " WHERE id = ? AND lease_owner = ?",
                [state, job.done, job.total, job.phase, orjson.dumps(job.result).decode(),
                 error, now, job.id, owner])
        return changed == 1

    async def release_job(self, job_id: int, owner: str) -> None:
        """Give a running job back (a stop): another runner takes it at once."""
        async with self._tx() as tx:
            await tx.execute("UPDATE rps_jobs SET lease_owner = NULL, lease_until = NULL"
                             " WHERE id = ? AND lease_owner = ?", [job_id, owner])

    async def last_job_at(self, kind: str, provider: str, server: int) -> datetime | None:
        """When the newest job of this kind for the provider and server was created."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT MAX(created_at) FROM rps_jobs WHERE kind = ? AND provider = ?"
                " AND server = ?", [kind, provider, server])
        return self.convert_time(row[0]) if row else None

    async def events_by_key_prefix(self, prefix: str) -> dict[str, int]:
        """How many events whose idempotency key starts with ``prefix`` are in each state
        (a job's events are keyed ``<kind>-<job id>-<mac>``)."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT state, COUNT(*) FROM rps_events WHERE idempotency_key >= ?"
                " AND idempotency_key < ? GROUP BY state", [prefix, prefix + "\x7f"])
        return {str(state): int(count) for state, count in rows}

    async def job_fetches(self, prefix: str, since: datetime, after: str, limit: int
                          ) -> tuple[int, int, list[str]]:
        """Of the devices a job queued events for (keys starting with ``prefix``): how many
        phones fetched their bootstrap file at or after ``since``, how many did not, and up
        to ``limit`` MACs after ``after`` (in MAC order) of those that did not."""
        devices = (
            " FROM rps_events e JOIN rps_devices d ON d.provider = e.provider AND d.mac = e.mac"
            " WHERE e.idempotency_key >= ? AND e.idempotency_key < ?")
        keys = [prefix, prefix + "\x7f"]
        waiting = " AND (d.ztp_fetched_at IS NULL OR d.ztp_fetched_at < ?)"
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT COUNT(DISTINCT e.mac){devices} AND d.ztp_fetched_at >= ?",
                [*keys, since])
            left = await tx.fetchone(f"SELECT COUNT(DISTINCT e.mac){devices}{waiting}",
                                     [*keys, since])
            rows = await tx.fetchall(
                f"SELECT DISTINCT e.mac{devices}{waiting} AND e.mac > ? ORDER BY e.mac LIMIT ?",
                [*keys, since, after, limit])
        return (int(row[0]) if row else 0, int(left[0]) if left else 0,
                [str(r[0]) for r in rows])

    # -- a server's extra vendor settings -------------------------------------------------

    async def put_server_settings(self, provider: str, server: int, settings: dict[str, str],
                                  now: datetime) -> None:
        self._settings.pop((provider, server), None)
        async with self._tx() as tx:
            await tx.execute("DELETE FROM rps_server_settings WHERE provider = ? AND server = ?",
                             [provider, server])
            if settings:
                await tx.execute(
                    "INSERT INTO rps_server_settings (provider, server, settings, updated_at)"
                    " VALUES (?, ?, ?, ?)",
                    [provider, server, orjson.dumps(settings).decode(), now])

    async def get_server_settings(self, provider: str, server: int) -> dict[str, str]:
        """The settings pushed with every registration of the server's devices (cached
        for SETTINGS_TTL; a change through this instance applies at once)."""
        key = (provider, server)
        cached = self._settings.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT settings FROM rps_server_settings WHERE provider = ? AND server = ?",
                [provider, server])
        settings: dict[str, str] = orjson.loads(row[0]) if row else {}
        self._settings[key] = (time.monotonic() + SETTINGS_TTL, settings)
        return settings

    # -- replacing a phone ----------------------------------------------------------------

    async def insert_replacement(self, remove: NewEvent, add: NewEvent, now: datetime
                                 ) -> tuple[int, int]:
        """The old MAC's remove and the new MAC's add, the add waiting for the remove:
        both or neither (one transaction)."""
        async with self._tx() as tx:
            first = await self._insert_one(tx, remove, now, None)
            second = await self._insert_one(tx, add, now, first)
            await mark_accepted(self, tx, [remove, add], now)
        return first, second

    async def _insert_one(self, tx: Tx, event: NewEvent, now: datetime,
                          after: int | None) -> int:
        return await tx.insert(
            "INSERT INTO rps_events (created_at, action, provider, server, mac, payload,"
            " state, attempts, next_attempt_at, updated_at, idempotency_key, slot, after_id)"
            " VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?)",
            [now, event.action, event.provider, event.server, event.mac,
             orjson.dumps(event.payload).decode(), now, now, event.key,
             device_slot(event.provider, event.mac), after])

    # -- what reconcile and re-point read and write ---------------------------------------

    async def device_servers(self, provider: str) -> dict[str, int]:
        """Every device of a provider: MAC → server (any status)."""
        async with self._tx() as tx:
            rows = await tx.fetchall("SELECT mac, server FROM rps_devices WHERE provider = ?",
                                     [provider])
        return {str(mac): int(server) for mac, server in rows}

    async def servers_with_devices(self, provider: str) -> list[int]:
        """The servers that have registered devices of a provider."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT DISTINCT server FROM rps_devices WHERE provider = ?"
                " AND status = 'registered' ORDER BY server", [provider])
        return [int(row[0]) for row in rows]

    async def adopt_devices(self, provider: str, server: int, found: list[tuple[str, str | None]],
                            message: str, now: datetime) -> int:
        """Record devices a vendor holds that the database did not know (``mac, url``);
        one that appeared meanwhile is left as it is. How many were recorded."""
        adopted = 0
        async with self._tx() as tx:
            for mac, url in found:
                exists = await tx.fetchone(
                    "SELECT 1 FROM rps_devices WHERE provider = ? AND mac = ?", [provider, mac])
                if exists is None:
                    await tx.execute(
                        "INSERT INTO rps_devices (provider, mac, server, status, last_message,"
                        " registered_at, url, updated_at) VALUES (?, ?, ?, 'registered', ?, ?,"
                        " ?, ?)", [provider, mac, server, message, now, url, now])
                    adopted += 1
        return adopted
