"""MySQL/MariaDB set-up as an operator meets it: a database not created yet, the session
settings every pooled connection runs with, an address where no server answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from rps_service.clock import utcnow
from rps_service.config import parse_database_url
from rps_service.models import NewEvent
from rps_service.store import StoreUnavailable, create_store
from rps_service.store.sql import Tx
from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER, free_port


def _server() -> Any:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD)


def _exists(name: str) -> bool:
    conn = _server()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                        [name])
            return bool(cur.fetchall())
    finally:
        conn.close()


@pytest.fixture
def missing_database() -> Iterator[str]:
    """The DSN of a database that does not exist yet (dropped after the test)."""
    name = f"rps_test_new_{uuid.uuid4().hex[:10]}"
    assert not _exists(name)
    auth = f"{MYSQL_USER}:{MYSQL_PASSWORD}" if MYSQL_PASSWORD else MYSQL_USER
    try:
        yield f"mysql://{auth}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    finally:
        conn = _server()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


async def test_open_creates_a_missing_database(missing_database: str) -> None:
    url = parse_database_url(missing_database)
    store = create_store(url)
    await store.open()  # used to fail: 1049 Unknown database
    try:
        assert _exists(url.name)
        await store.migrate()
        [row] = await store.insert_events(
            [NewEvent("add", "snom", 1, "000413ABCDEF", {}, None)], utcnow())
        event = await store.get_event(row.id)
        assert event is not None and event.mac == "000413ABCDEF"
    finally:
        await store.close()


async def _session(tx: Tx, name: str) -> str:
    row = await tx.fetchone(f"SELECT @@session.{name}")
    assert row is not None
    return str(row[0])


async def _isolation(tx: Tx) -> str:
    # MySQL 8 and MariaDB ≥ 11.1 name it transaction_isolation; older MariaDB tx_isolation.
    try:
        return await _session(tx, "transaction_isolation")
    except pymysql.err.MySQLError:
        return await _session(tx, "tx_isolation")


async def test_every_pooled_connection_is_read_committed_with_notes_on(
    mysql_database: str,
) -> None:
    store = create_store(parse_database_url(mysql_database))
    await store.open()
    try:
        await store.migrate()
        await store.migrate()  # IF NOT EXISTS notes: no Python warning (they are errors here)
        seen: list[tuple[str, str]] = []

        async def look() -> None:
            async with store.transaction() as tx:
                seen.append((await _isolation(tx), await _session(tx, "sql_notes")))
                await asyncio.sleep(0.05)  # hold it, so the others open connections of their own

        await asyncio.gather(*(look() for _ in range(4)))
    finally:
        await store.close()
    # Notes are silenced while migrating only, not on the connections doing the work.
    assert seen == [("READ-COMMITTED", "1")] * 4


async def test_unreachable_server_is_named_by_host_and_port() -> None:
    port = free_port()  # nothing listens there
    store = create_store(parse_database_url(f"mysql://rps@127.0.0.1:{port}/pbxware"))
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    assert str(caught.value).startswith(f"MySQL at 127.0.0.1:{port}: ")
    await store.close()
