"""The embedded default backend: one SQLite file through aiosqlite.

One connection, transactions serialised by a lock (SQLite has one writer anyway), WAL
journal and ``synchronous=FULL`` so an acknowledged event survives a crash or power loss.
SQLite is for a single daemon instance; several instances need MySQL/MariaDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from rps_service.store.base import Store
from rps_service.store.schema import SQLITE
from rps_service.store.sql import DatabaseMissing, DuplicateKey, StoreUnavailable, Tx

_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


async def _rollback(conn: aiosqlite.Connection) -> None:
    # aiosqlite runs statements in order on its own thread, so a ROLLBACK queued here comes
    # after whatever this task left running, and before the next transaction's BEGIN, even
    # when the task is cancelled again while it waits (hence the shield).
    with contextlib.suppress(sqlite3.Error):  # no transaction left to roll back
        await asyncio.shield(conn.execute("ROLLBACK"))


def _make_folder(folder: Path, path: str, create: bool) -> None:
    """Create the database's folder; a missing permission or a file in the way, said so.

    With ``create`` false, nothing is created: a database file that does not exist yet is
    DatabaseMissing, unless the folder could not be made for it.
    """
    if not create and not Path(path).exists():
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if not existing.is_dir():
            raise StoreUnavailable(f"cannot create the folder {folder}: "
                                   f"{existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise StoreUnavailable(f"cannot create {path}: {existing} is not writable "
                                   "by this user")
        _probe(existing, folder)
        raise DatabaseMissing(f"{path} does not exist yet")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            reason = f"{blocker} is a file, not a folder"
        else:
            reason = (exc.strerror or str(exc)).lower()
        raise StoreUnavailable(f"cannot create the folder {folder}: {reason}") from exc


def _probe(existing: Path, folder: Path) -> None:
    """Make and remove a folder in ``existing``: permission bits alone miss a folder that
    takes no new entries (``/proc``, a read-only mount), where the start would then fail."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".rps-check-", dir=existing))
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise StoreUnavailable(f"cannot create the folder {folder}: {existing} takes no new "
                               f"folders ({reason})") from exc


def _try_open(path: str) -> None:
    if path != ":memory:":
        # Created 0600 before SQLite sees it (SQLite would make it 0644 under the usual
        # umask): it holds the journal and the device rows. SQLite gives the -wal and -shm
        # files the database file's mode. An existing file keeps the mode it has; a folder
        # that cannot take it is reported by SQLite's own connect, below.
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    sqlite3.connect(path, timeout=30).close()


def _param(value: Any) -> Any:
    # Fixed-width text sorts like time, which the due/lease comparisons rely on.
    return value.strftime(_TIME_FORMAT) if isinstance(value, datetime) else value


class _SqliteTx(Tx):
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cursor = await self.conn.execute(sql, [_param(p) for p in params])
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(str(exc)) from exc
        return cursor.rowcount

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            cursor = await self.conn.execute(sql, [_param(p) for p in params])
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(str(exc)) from exc
        return [tuple(row) for row in await cursor.fetchall()]

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cursor = await self.conn.execute(sql, [_param(p) for p in params])
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(str(exc)) from exc
        return int(cursor.lastrowid or 0)


class SqliteStore(Store):
    """The journal in a local SQLite file."""

    mod_function = "mod_slot"  # SQLite builds may lack MOD(); registered below.
    lane_index = " INDEXED BY ix_events_lane"
    # The shared-state tables hold times only these two write: fixed-width text, UTC.
    now_sql = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    later_sql = "strftime('%Y-%m-%d %H:%M:%f', 'now', ?)"
    greatest_function = "MAX"

    def _later(self, seconds: float) -> str:
        return f"{seconds:+.3f} seconds"

    def _on_claim_clash(self) -> str:
        return "ON CONFLICT (account, owner) DO UPDATE SET"

    def _on_pause_clash(self) -> str:
        return "ON CONFLICT (account) DO UPDATE SET"

    def _new(self, column: str) -> str:
        return f"excluded.{column}"

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self.path != ":memory:":
            _make_folder(Path(self.path).parent, self.path, self.create_missing)
        try:
            # Opened once on a thread of our own first: when aiosqlite's connect fails, its
            # worker thread outlives the failure and, if the loop closes (a failed start
            # exits), dumps "Event loop is closed" tracebacks on stderr.
            await asyncio.to_thread(_try_open, self.path)
            conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise StoreUnavailable(self._cannot_open(exc)) from exc
        try:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=FULL")
            await conn.execute("PRAGMA busy_timeout=30000")
            # What a delete or update frees is overwritten, so a value replaced by its
            # sealed form (or a removed device's) does not linger in the file's free space.
            await conn.execute("PRAGMA secure_delete=ON")
        except sqlite3.Error as exc:  # e.g. a read-only file, or not a database
            await conn.close()
            raise StoreUnavailable(self._cannot_open(exc)) from exc
        await conn.create_function("mod_slot", 2, lambda a, b: a % b, deterministic=True)
        self._conn = conn

    def _cannot_open(self, exc: sqlite3.Error) -> str:
        text = f"cannot open {self.path}: {exc}"
        if "unable to open" in str(exc) or "readonly" in str(exc):
            # SQLite writes the file and its -wal/-shm files beside it: the folder too.
            text += f" (the file and {Path(self.path).parent} must be writable by this user)"
        return text

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        if self._conn is None:
            raise StoreUnavailable("the SQLite database is not open")
        async with self._lock:
            conn = self._conn
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite: {exc}") from exc
            except asyncio.CancelledError:
                # The BEGIN still runs in aiosqlite's thread: undo it, or every later
                # transaction fails with "cannot start a transaction within a transaction".
                await _rollback(conn)
                raise
            try:
                yield _SqliteTx(conn)
            except BaseException:
                await _rollback(conn)
                raise
            try:
                await conn.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(conn)
                raise StoreUnavailable(f"SQLite commit failed: {exc}") from exc

    async def compact_log(self) -> None:
        """Copy the WAL into the database and empty it: after secrets were sealed, the old
        pages holding them in clear (or under a replaced key) leave the -wal file."""
        if self._conn is None:
            return
        async with self._lock:
            await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def migrate(self) -> int:
        async with self.transaction() as tx:
            await tx.execute("CREATE TABLE IF NOT EXISTS rps_schema (version INTEGER NOT NULL)")
            row = await tx.fetchone("SELECT MAX(version) FROM rps_schema")
            version = int(row[0]) if row and row[0] is not None else 0
            for number, statements in enumerate(SQLITE[version:], start=version + 1):
                for statement in statements:
                    await tx.execute(statement)
                await tx.execute("INSERT INTO rps_schema (version) VALUES (?)", [number])
        return len(SQLITE)
