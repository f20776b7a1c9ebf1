"""What every store backend shares: the transaction seam, errors, and the backend hooks.

All SQL is written once with ``?`` placeholders and a few dialect hooks: the journal's
queries in ``base.py``, the device and credentials queries in ``devices.py``, the DDL in
``schema.py``. A backend (``sqlite.py``, ``mysql.py``) only opens connections and runs
transactions.
"""

from __future__ import annotations

import abc
import re
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rps_service.models import AccessDetails

_NEW = re.compile(r"\bnew\.(\w+)")

EVENT_COLUMNS = (
    "id, action, provider, server, mac, payload, state, attempts, created_at, updated_at,"
    " next_attempt_at, lease_until, last_error, idempotency_key, slot"
)
DEVICE_COLUMNS = (
    "provider, mac, server, status, last_message, model, name, extension, registered_at,"
    " url, http_username, http_password, updated_at,"
    " ztp_fetched_at, ztp_model, ztp_firmware, ztp_ip, sn, mac_id, url_key, settled_status"
)


class StoreUnavailable(Exception):
    """The database cannot be reached or answered with a server error."""


class DatabaseMissing(StoreUnavailable):
    """The database does not exist yet, and the store was asked not to create it."""


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


def placeholders(count: int) -> str:
    return ", ".join("?" * count)


@dataclass(frozen=True)
class DeviceOutcome:
    """What an event did to its device row."""

    status: str
    message: str = "-"
    registered: bool = False  # set registered_at to now
    revoke: bool = False  # clear the access details (remove)
    access: tuple[str, AccessDetails] | None = None  # the URL and access details sent
    server: int | None = None  # the server the device is on, when not the event's


class SqlBackend(abc.ABC):
    """The hooks a backend implements, and the health queries on top of them."""

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

    #: open() creates a missing database (SQLite file and folder, MySQL database);
    #: ``check-config --connect`` turns it off and gets :class:`DatabaseMissing` instead.
    create_missing = True
    #: A query answering a row when the ``rps_schema`` table exists.
    schema_table_sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'rps_schema'"

    #: Upsert dialect: how to refer to the value being inserted, and the clash clause.
    inserted_value = r"excluded.\1"
    on_clash = "ON CONFLICT (provider, mac) DO UPDATE SET"

    def upsert_device_sql(self, insert_columns: str, updates: dict[str, str],
                          rows: int = 1) -> str:
        """An INSERT of ``rows`` device rows that, on a (provider, mac) clash, sets each
        column of ``updates`` to its expression (``new.col`` is the value being inserted, a
        bare column name the stored one)."""
        count = len(insert_columns.split(","))
        sets = ", ".join(f"{col} = {_NEW.sub(self.inserted_value, expr)}"
                         for col, expr in updates.items())
        values = ", ".join([f"({placeholders(count)})"] * rows)
        return (f"INSERT INTO rps_devices ({insert_columns}) VALUES {values}"
                f" {self.on_clash} {sets}")

    def convert_time(self, value: Any) -> datetime | None:
        """A time read from the database as a naive UTC datetime."""
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(str(value))

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Tx]:
        async with self.transaction() as tx:
            yield tx

    # -- health --------------------------------------------------------------------------

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        async with self._tx() as tx:
            await tx.fetchall("SELECT 1")

    async def schema_version(self) -> int:
        """The migration the database is at; 0 when it has no tables yet. Changes nothing."""
        async with self._tx() as tx:
            if not await tx.fetchall(self.schema_table_sql):
                return 0
            row = await tx.fetchone("SELECT MAX(version) FROM rps_schema")
        return int(row[0]) if row and row[0] is not None else 0

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

    async def backlog_by_server(self) -> dict[tuple[str, int], int]:
        """Unfinished events per (provider, server)."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT provider, server, COUNT(*) FROM rps_events"
                " WHERE state IN ('pending', 'running') GROUP BY provider, server")
        return {(str(p), int(s)): int(n) for p, s, n in rows}
