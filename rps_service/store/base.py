"""The store interface and the SQL both backends share.

All SQL lives here (and the DDL in ``schema.py``), written once with ``?`` placeholders and
a few dialect hooks; a backend only opens connections and runs transactions. Queries are
named by what they do. Policy (what state follows what, when to retry) is not here: it is
in ``worker.py``.
"""

from __future__ import annotations

import abc
import json
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rps_service.models import Device, Event, NewEvent
from rps_service.providers.base import Credentials

EVENT_COLUMNS = (
    "id, action, provider, server, mac, payload, state, attempts, created_at, updated_at,"
    " next_attempt_at, lease_until, last_error, idempotency_key, slot"
)
DEVICE_COLUMNS = (
    "provider, mac, server, status, last_message, model, name, extension, registered_at,"
    " url, http_username, http_password, updated_at"
)


class StoreUnavailable(Exception):
    """The database cannot be reached or answered with a server error."""


class DuplicateKey(Exception):
    """A unique key refused an insert."""


class Tx(abc.ABC):
    """One open transaction: the few cursor operations the queries need."""

    @abc.abstractmethod
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows it changed."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a query and return all rows."""

    @abc.abstractmethod
    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT of one row; return its auto-increment id."""

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None


@dataclass(frozen=True)
class Inserted:
    """The journal's answer for one posted event."""

    id: int
    duplicate: bool  # an earlier event carried the same idempotency key


def device_slot(provider: str, mac: str) -> int:
    """A stable hash of provider+MAC; ``slot % queuenum`` picks the device's queue."""
    return zlib.crc32(f"{provider}:{mac}".encode()) & 0x7FFFFFFF


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


class Store(abc.ABC):
    """The event journal, device table and credentials, over one SQL backend."""

    #: SQL fragments that differ between dialects.
    mod_function = "MOD"
    lock_clause = ""
    returning = True

    # -- backend hooks -------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (or open the file)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close all connections."""

    @abc.abstractmethod
    def transaction(self) -> Any:
        """An async context manager yielding a :class:`Tx`, committed on success."""

    @abc.abstractmethod
    async def migrate(self) -> int:
        """Create or upgrade the schema; return the version reached."""

    @abc.abstractmethod
    def upsert_device_sql(self, insert_columns: str, updates: dict[str, str]) -> str:
        """An INSERT of one device row that, on a (provider, mac) clash, sets each column of
        ``updates`` to its expression (``new.col`` is the value being inserted, a bare
        column name the stored one)."""

    @abc.abstractmethod
    def convert_time(self, value: Any) -> datetime | None:
        """A time read from the database as a naive UTC datetime."""

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Tx]:
        async with self.transaction() as tx:
            yield tx

    # -- health --------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        async with self._tx() as tx:
            await tx.fetchall("SELECT 1")

    async def backlog(self) -> dict[str, int]:
        """How many events wait (``pending``) or are being handled (``running``)."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT state, COUNT(*) FROM rps_events"
                " WHERE state IN ('pending', 'running') GROUP BY state"
            )
        counts = {"pending": 0, "running": 0}
        counts.update({str(state): int(n) for state, n in rows})
        return counts

    # -- intake --------------------------------------------------------------------------

    async def insert_events(self, events: Sequence[NewEvent], now: datetime) -> list[Inserted]:
        """Store a batch atomically; a repeated idempotency key yields the first event's id."""
        try:
            return await self._insert_events(events, now)
        except DuplicateKey:
            # A concurrent request stored the same key between our check and insert.
            return await self._insert_events(events, now)

    async def _insert_events(self, events: Sequence[NewEvent], now: datetime) -> list[Inserted]:
        async with self._tx() as tx:
            known = await self._known_keys(tx, [e.key for e in events if e.key])
            fresh, seen = [], set()
            for event in events:
                if event.key and (event.key in known or event.key in seen):
                    continue
                if event.key:
                    seen.add(event.key)
                fresh.append(event)
            new_ids = iter(await self._insert_rows(tx, fresh, now) if fresh else [])
        out: list[Inserted] = []
        for event in events:
            if event.key and event.key in known:
                out.append(Inserted(known[event.key], True))
                continue
            event_id = next(new_ids)
            if event.key:
                known[event.key] = event_id
            out.append(Inserted(event_id, False))
        return out

    async def _known_keys(self, tx: Tx, keys: list[str]) -> dict[str, int]:
        if not keys:
            return {}
        rows = await tx.fetchall(
            f"SELECT idempotency_key, id FROM rps_events"
            f" WHERE idempotency_key IN ({_placeholders(len(set(keys)))})",
            sorted(set(keys)),
        )
        return {str(key): int(event_id) for key, event_id in rows}

    async def _insert_rows(self, tx: Tx, events: list[NewEvent], now: datetime) -> list[int]:
        columns = (
            "created_at, action, provider, server, mac, payload, state, attempts,"
            " next_attempt_at, updated_at, idempotency_key, slot"
        )
        row = "(?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"
        params: list[Any] = []
        for e in events:
            params += [now, e.action, e.provider, e.server, e.mac, json.dumps(e.payload), now,
                       now, e.key, device_slot(e.provider, e.mac)]
        if not self.returning:
            width = len(params) // len(events)
            sql = f"INSERT INTO rps_events ({columns}) VALUES {row}"
            return [
                await tx.insert(sql, params[i * width : (i + 1) * width])
                for i in range(len(events))
            ]
        sql = f"INSERT INTO rps_events ({columns}) VALUES {', '.join([row] * len(events))}"
        rows = await tx.fetchall(sql + " RETURNING id", params)
        # Ids grow in row order within one statement; RETURNING order is not promised.
        return sorted(int(r[0]) for r in rows)

    # -- reading events ------------------------------------------------------------------

    def _event(self, row: tuple[Any, ...]) -> Event:
        return Event(
            id=int(row[0]),
            action=row[1],
            provider=row[2],
            server=int(row[3]),
            mac=row[4],
            payload=json.loads(row[5]) if row[5] else {},
            state=row[6],
            attempts=int(row[7]),
            created_at=self.convert_time(row[8]),  # type: ignore[arg-type]
            updated_at=self.convert_time(row[9]),  # type: ignore[arg-type]
            next_attempt_at=self.convert_time(row[10]),
            lease_until=self.convert_time(row[11]),
            last_error=row[12],
            idempotency_key=row[13],
            slot=int(row[14]),
        )

    async def get_event(self, event_id: int) -> Event | None:
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT {EVENT_COLUMNS} FROM rps_events WHERE id = ?", [event_id]
            )
        return self._event(row) if row else None

    async def list_events(
        self, state: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[Event]:
        """Newest first; ``before_id`` pages backwards."""
        where: list[str] = []
        params: list[Any] = []
        if state:
            where.append("state = ?")
            params.append(state)
        if before_id:
            where.append("id < ?")
            params.append(before_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                f"SELECT {EVENT_COLUMNS} FROM rps_events{clause} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            )
        return [self._event(r) for r in rows]

    async def retry_event(self, event_id: int, now: datetime) -> str:
        """Re-queue a failed event: ``ok``, ``not_found`` or the state that forbids it."""
        async with self._tx() as tx:
            row = await tx.fetchone("SELECT state FROM rps_events WHERE id = ?", [event_id])
            if row is None:
                return "not_found"
            if row[0] != "failed":
                return str(row[0])
            await tx.execute(
                "UPDATE rps_events SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                " updated_at = ? WHERE id = ? AND state = 'failed'",
                [now, now, event_id],
            )
        return "ok"

    # -- leasing -------------------------------------------------------------------------

    async def lease_events(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        queuenum: int,
        queues: Sequence[int],
    ) -> list[Event]:
        """Take up to ``limit`` due events whose device has nothing earlier unfinished.

        Only the oldest unfinished event of a device is ever eligible, so a device's events
        run one at a time, in order, whichever instance takes them. ``queues`` limits the
        choice to devices that hash to queues with room.
        """
        where = ["e.state = 'pending'", "e.next_attempt_at <= ?"]
        params: list[Any] = [now]
        if len(queues) < queuenum:
            where.append(f"{self.mod_function}(e.slot, ?) IN ({_placeholders(len(queues))})")
            params += [queuenum, *queues]
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM rps_events e WHERE {' AND '.join(where)}"
            " AND NOT EXISTS (SELECT 1 FROM rps_events p WHERE p.provider = e.provider"
            " AND p.mac = e.mac AND p.state IN ('pending', 'running') AND p.id < e.id)"
            f" ORDER BY e.id LIMIT ?{self.lock_clause}"
        )
        async with self._tx() as tx:
            rows = await tx.fetchall(sql, [*params, limit])
            if not rows:
                return []
            events = [self._event(r) for r in rows]
            ids = [e.id for e in events]
            await tx.execute(
                "UPDATE rps_events SET state = 'running', attempts = attempts + 1,"
                f" lease_owner = ?, lease_until = ?, updated_at = ?"
                f" WHERE id IN ({_placeholders(len(ids))})",
                [owner, lease_until, now, *ids],
            )
        for event in events:
            event.state, event.lease_until = "running", lease_until
            event.attempts += 1
        return events

    async def renew_leases(self, owner: str, ids: Sequence[int], lease_until: datetime) -> int:
        """Extend this instance's leases on events it still holds."""
        if not ids:
            return 0
        async with self._tx() as tx:
            return await tx.execute(
                f"UPDATE rps_events SET lease_until = ? WHERE lease_owner = ?"
                f" AND state = 'running' AND id IN ({_placeholders(len(ids))})",
                [lease_until, owner, *ids],
            )

    async def release_leases(self, owner: str, ids: Sequence[int], now: datetime) -> int:
        """Give events back untouched (shutdown, queue full): the lease attempt is not counted."""
        if not ids:
            return 0
        async with self._tx() as tx:
            return await tx.execute(
                "UPDATE rps_events SET state = 'pending', attempts = attempts - 1,"
                " lease_owner = NULL, lease_until = NULL, updated_at = ?"
                f" WHERE lease_owner = ? AND state = 'running'"
                f" AND id IN ({_placeholders(len(ids))})",
                [now, owner, *ids],
            )

    async def release_expired_leases(self, now: datetime) -> list[int]:
        """Make events whose lease ran out (a crashed worker) pending again; their ids."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT id FROM rps_events WHERE state = 'running' AND lease_until < ?"
                f"{self.lock_clause}",
                [now],
            )
            ids = [int(r[0]) for r in rows]
            if ids:
                await tx.execute(
                    "UPDATE rps_events SET state = 'pending', lease_owner = NULL,"
                    " lease_until = NULL, next_attempt_at = ?, updated_at = ?"
                    f" WHERE state = 'running' AND id IN ({_placeholders(len(ids))})",
                    [now, now, *ids],
                )
        return ids

    async def next_due(self) -> datetime | None:
        """When the earliest waiting event becomes due (backoff timers)."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT MIN(next_attempt_at) FROM rps_events WHERE state = 'pending'"
            )
        return self.convert_time(row[0]) if row else None

    # -- finishing -----------------------------------------------------------------------

    async def finish_event(
        self,
        event: Event,
        owner: str,
        state: str,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        device: DeviceOutcome | None = None,
    ) -> bool:
        """Record an outcome (``done``, ``failed``, or ``pending`` again for a retry) and the
        device row in one transaction. False when the lease was lost to another worker."""
        async with self._tx() as tx:
            changed = await tx.execute(
                "UPDATE rps_events SET state = ?, last_error = ?, next_attempt_at = ?,"
                " lease_owner = NULL, lease_until = NULL, updated_at = ?"
                " WHERE id = ? AND lease_owner = ? AND state = 'running'",
                [state, error, next_attempt_at or now, now, event.id, owner],
            )
            if changed and device is not None:
                await self._save_device_outcome(tx, event, device, now)
        return bool(changed)

    async def _save_device_outcome(
        self, tx: Tx, event: Event, outcome: DeviceOutcome, now: datetime
    ) -> None:
        columns = ["server", "status", "last_message", "updated_at"]
        if outcome.registered:
            columns.append("registered_at")
        if outcome.revoke:
            columns += ["url", "http_username", "http_password"]
        updates = {column: f"new.{column}" for column in columns}
        sql = self.upsert_device_sql(
            "provider, mac, server, status, last_message, registered_at, updated_at,"
            " model, name, extension, url, http_username, http_password",
            updates,
        )
        payload = event.payload
        await tx.execute(
            sql,
            [event.provider, event.mac, event.server, outcome.status, outcome.message,
             now if outcome.registered else None, now, payload.get("model"),
             payload.get("name"), payload.get("extension"), None, None, None],
        )

    # -- devices -------------------------------------------------------------------------

    def _device(self, row: tuple[Any, ...]) -> Device:
        return Device(
            provider=row[0], mac=row[1], server=int(row[2]), status=row[3],
            last_message=row[4], model=row[5], name=row[6], extension=row[7],
            registered_at=self.convert_time(row[8]), url=row[9], http_username=row[10],
            http_password=row[11], updated_at=self.convert_time(row[12]),
        )

    async def prepare_device(
        self, event: Event, url: str, username: str, password: str, now: datetime
    ) -> Device:
        """Create or refresh the device row before a registration and return it.

        Access details already stored are kept (a re-register sends the same ones); the
        given ``username``/``password`` are used only when the device has none.
        """
        sql = self.upsert_device_sql(
            "provider, mac, server, status, last_message, registered_at, updated_at,"
            " model, name, extension, url, http_username, http_password",
            {
                "server": "new.server", "url": "new.url", "updated_at": "new.updated_at",
                "model": "COALESCE(new.model, model)", "name": "COALESCE(new.name, name)",
                "extension": "COALESCE(new.extension, extension)",
                "http_username": "COALESCE(http_username, new.http_username)",
                "http_password": "COALESCE(http_password, new.http_password)",
            },
        )
        payload = event.payload
        async with self._tx() as tx:
            await tx.execute(
                sql,
                [event.provider, event.mac, event.server, "pending", "-", None, now,
                 payload.get("model"), payload.get("name"), payload.get("extension"), url,
                 username, password],
            )
            row = await tx.fetchone(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices WHERE provider = ? AND mac = ?",
                [event.provider, event.mac],
            )
        assert row is not None  # noqa: S101 - just upserted in this transaction
        return self._device(row)

    async def get_device(self, provider: str, mac: str) -> Device | None:
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices WHERE provider = ? AND mac = ?",
                [provider, mac],
            )
        return self._device(row) if row else None

    async def list_devices(
        self,
        server: int | None = None,
        provider: str | None = None,
        status: str | None = None,
        mac: str | None = None,
        limit: int = 1000,
    ) -> list[Device]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("server", server), ("provider", provider), ("status", status),
                              ("mac", mac)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices{clause}"
                " ORDER BY server, provider, mac LIMIT ?",
                [*params, limit],
            )
        return [self._device(r) for r in rows]

    # -- credentials ---------------------------------------------------------------------

    async def put_credentials(self, creds: Credentials, now: datetime) -> None:
        async with self._tx() as tx:
            await tx.execute(
                "DELETE FROM rps_credentials WHERE provider = ? AND server = ?",
                [creds.provider, creds.server],
            )
            await tx.execute(
                "INSERT INTO rps_credentials (provider, server, access_key_id,"
                " access_key_secret, provisioning_url, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                [creds.provider, creds.server, creds.access_key_id, creds.access_key_secret,
                 creds.provisioning_url, now],
            )

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT access_key_id, access_key_secret, provisioning_url FROM rps_credentials"
                " WHERE provider = ? AND server = ?",
                [provider, server],
            )
        if row is None:
            return None
        return Credentials(provider, server, row[0], row[1], row[2])


@dataclass(frozen=True)
class DeviceOutcome:
    """What an event did to its device row."""

    status: str
    message: str = "-"
    registered: bool = False  # set registered_at to now
    revoke: bool = False  # clear the access details (remove)
