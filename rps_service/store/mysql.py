"""MySQL/MariaDB through an aiomysql pool: the backend for production and several instances.

Leases use ``SELECT … FOR UPDATE SKIP LOCKED`` so instances sharing the database never take
the same event. The pool is set up to survive a database restart: short connect timeout,
connections recycled before the server's ``wait_timeout``, a broken connection closed rather
than returned, and every transaction committed or rolled back before release.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiomysql
import pymysql

from rps_service.logs import get_logger
from rps_service.store.base import Store
from rps_service.store.schema import MYSQL
from rps_service.store.sql import DatabaseMissing, DuplicateKey, StoreUnavailable, Tx

if TYPE_CHECKING:  # config imports every vendor module: not at run time
    from rps_service.config import DatabaseUrl

log = get_logger()

_CONNECT_TIMEOUT = 5
_RECYCLE_SECONDS = 600  # well below the usual wait_timeout (28800) and proxies' idle limits
_DB_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError,
              asyncio.TimeoutError, pymysql.err.InternalError)


def _sql(sql: str) -> str:
    return sql.replace("?", "%s")


class _MysqlTx(Tx):
    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return int(await self.cursor.execute(_sql(sql), list(params)))
        except pymysql.err.IntegrityError as exc:
            raise DuplicateKey(str(exc)) from exc

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            await self.cursor.execute(_sql(sql), list(params))
        except pymysql.err.IntegrityError as exc:
            raise DuplicateKey(str(exc)) from exc
        return list(await self.cursor.fetchall())

    async def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        await self.execute(sql, params)
        return int(self.cursor.lastrowid)


class MysqlStore(Store):
    """The journal in a MySQL or MariaDB database."""

    lock_clause = " FOR UPDATE SKIP LOCKED"
    lane_index = " FORCE INDEX (ix_events_lane)"
    inserted_value = r"VALUES(\1)"
    inline_time = True
    on_clash = "ON DUPLICATE KEY UPDATE"
    schema_table_sql = ("SELECT 1 FROM information_schema.TABLES"
                        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'rps_schema'")

    def __init__(self, url: DatabaseUrl, maxsize: int = 10) -> None:
        super().__init__()
        self.url = url
        self.maxsize = maxsize
        self._pool: Any = None

    def _connect_args(self) -> dict[str, Any]:
        return {
            "host": self.url.host, "port": self.url.port, "user": self.url.user,
            "password": self.url.password, "charset": "utf8mb4",
            "connect_timeout": _CONNECT_TIMEOUT, "autocommit": False,
            # READ COMMITTED: no gap locks between instances leasing from the same index.
            # This statement, not the tx_isolation variable, which MySQL 8 removed. The
            # session time zone is left alone: every time column is DATETIME, written and
            # read as naive UTC, and no query calls NOW() or converts zones.
            "init_command": "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        }

    def _where(self) -> str:
        return f"MySQL at {self.url.host}:{self.url.port}"

    async def open(self) -> None:
        # The database first: a pool with db=<missing> fails with 1049 Unknown database.
        await self._create_database()
        try:
            self._pool = await aiomysql.create_pool(
                minsize=1, maxsize=self.maxsize, pool_recycle=_RECYCLE_SECONDS,
                db=self.url.name, **self._connect_args(),
            )
        except (*_DB_ERRORS, pymysql.err.MySQLError) as exc:
            raise StoreUnavailable(f"{self._where()}: {_describe(exc)}") from exc
        try:
            await self._check_returning()
        except BaseException:
            await self.close()  # a half-open store holds no connections
            raise

    async def _check_returning(self) -> None:
        async with self.transaction() as tx:
            row = await tx.fetchone("SELECT VERSION(), @@innodb_autoinc_lock_mode")
        # MariaDB ≥ 10.5 answers INSERT … RETURNING; MySQL does not.
        self.returning = bool(row and "mariadb" in str(row[0]).lower())
        # Lock modes 0 and 1 give a multi-row INSERT consecutive ids (mode 2 may not).
        self.consecutive_ids = bool(row and int(row[1]) <= 1)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        if self._pool is None:
            raise StoreUnavailable("the MySQL pool is not open")
        try:
            conn = await self._pool.acquire()
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._where()}: {_describe(exc)}") from exc
        try:
            async with conn.cursor() as cursor:
                yield _MysqlTx(cursor)
            await conn.commit()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                # A cancelled query leaves the wire mid-answer: never reuse the connection.
                conn.close()
            else:
                await _rollback(conn)
            if isinstance(exc, _DB_ERRORS):
                # The server may have restarted: drop idle connections, they are dead too.
                await self._pool.clear()
                raise StoreUnavailable(_describe(exc)) from exc
            raise
        finally:
            self._pool.release(conn)

    async def migrate(self) -> int:
        # One instance migrates at a time. GET_LOCK belongs to the connection, and each
        # version is committed before the lock is released, so the next instance to get
        # the lock sees it (MySQL DDL commits implicitly, the version row does not).
        async with self.transaction() as tx:
            # IF NOT EXISTS on an existing table leaves a note, which the driver turns into
            # a Python warning: silence notes on this connection while migrating only.
            await tx.execute("SET SESSION sql_notes = 0")
            await tx.fetchone("SELECT GET_LOCK('rps_migrate', 60)")
            try:
                await tx.execute("CREATE TABLE IF NOT EXISTS rps_schema (version INT NOT NULL)")
                row = await tx.fetchone("SELECT MAX(version) FROM rps_schema")
                version = int(row[0]) if row and row[0] is not None else 0
                for number, statements in enumerate(MYSQL[version:], start=version + 1):
                    for statement in statements:
                        await _run_ddl(tx, statement)
                    await tx.execute("INSERT INTO rps_schema (version) VALUES (?)", [number])
                    await tx.execute("COMMIT")
            finally:
                await tx.fetchone("SELECT RELEASE_LOCK('rps_migrate')")
                await tx.execute("SET SESSION sql_notes = DEFAULT")
        return len(MYSQL)

    async def _create_database(self) -> None:
        """Create the DSN's database when it does not exist yet (README: Configuration).

        Only when it is missing: a user granted rights on an existing database alone may
        not run CREATE DATABASE, even with IF NOT EXISTS.
        """
        try:
            conn = await aiomysql.connect(**self._connect_args())
        except _DB_ERRORS as exc:
            raise StoreUnavailable(f"{self._where()}: {_describe(exc)}") from exc
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(
                    "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                    [self.url.name],
                )
                missing = not await cursor.fetchall()
                if missing and not self.create_missing:
                    raise DatabaseMissing(f"{self._where()}: database {self.url.name} "
                                          "does not exist yet")
                if missing:
                    # IF NOT EXISTS: another instance may be creating it too (its note
                    # would become a Python warning: notes off on this connection).
                    await cursor.execute("SET SESSION sql_notes = 0")
                    name = self.url.name.replace("`", "``")
                    await cursor.execute(
                        f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
            await conn.commit()
        except pymysql.err.MySQLError as exc:
            raise StoreUnavailable(f"{self._where()}: {_describe(exc)}") from exc
        finally:
            conn.close()


_ALREADY_THERE = (1060, 1061, 1091)  # duplicate column, duplicate key, no such key to drop


async def _run_ddl(tx: Tx, statement: str) -> None:
    """A migration statement; one whose column or index exists already is done."""
    try:
        await tx.execute(statement)
    except pymysql.err.OperationalError as exc:
        if not exc.args or exc.args[0] not in _ALREADY_THERE:
            raise


async def _rollback(conn: Any) -> None:
    # The transaction's own error is what the caller raises; a failed rollback only means
    # the connection is broken, so it is closed (the pool then drops it) and said once.
    try:
        await conn.rollback()
    except Exception as exc:
        log.warning("Rollback failed, connection dropped", component="DATABASE",
                    err=_describe(exc))
        conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args:
        text = f"MySQL error {exc.args[0]}: {exc.args[-1]}"
        # 2003 "Can't connect" hides why (refused, timed out, unknown host) in its cause.
        cause = exc.__cause__
        why = ""
        if isinstance(cause, TimeoutError):
            why = "timed out"
        elif isinstance(cause, OSError) and cause.errno and cause.errno > 0:
            why = os.strerror(cause.errno).lower()  # asyncio's text is "Connect call failed"
        elif isinstance(cause, OSError) and cause.strerror:  # gaierror: negative errno
            why = cause.strerror.lower()
        return f"{text} ({why})" if why and why not in text.lower() else text
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
