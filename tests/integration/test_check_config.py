"""``rps-service check-config --connect``: the database opened as a start would open it,
on SQLite and MariaDB, reporting success or one line, and creating or migrating nothing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pymysql
import pytest

from rps_service.cli import main
from rps_service.config import parse_database_url
from rps_service.store import create_store
from rps_service.store.schema import MYSQL
from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER, free_port, write_ini


def check(tmp_path: Path, database: str, capsys: pytest.CaptureFixture[str]
          ) -> tuple[int, str, str]:
    ini = write_ini(tmp_path / "rps.ini", {"database": database, "log_file": "-"})
    code = main(["check-config", "--connect", "-c", str(ini)])
    out, err = capsys.readouterr()
    return code, out, err


async def _migrate(database: str) -> None:
    store = create_store(parse_database_url(database))
    await store.open()
    try:
        await store.migrate()
    finally:
        await store.close()


def _tables(database: str) -> list[str]:
    name = parse_database_url(database).name
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD, database=name)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            return [str(row[0]) for row in cur.fetchall()]
    finally:
        conn.close()


def test_connects_to_a_migrated_database(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_migrate(database_url))
    code, out, err = check(tmp_path, database_url, capsys)
    assert (code, err) == (0, "")
    display = parse_database_url(database_url).display()
    latest = len(MYSQL)
    assert out == (f"{tmp_path}/rps.ini: OK (database {display}: connected, schema at version"
                   f" {latest})\n")


def test_an_empty_mysql_database_is_not_migrated(
    tmp_path: Path, mysql_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = check(tmp_path, mysql_database, capsys)
    assert code == 0 and out.endswith(": connected, no tables yet (made at start))\n")
    assert _tables(mysql_database) == []


def test_a_missing_sqlite_file_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "data" / "rps.db"
    code, out, err = check(tmp_path, f"sqlite:///{path}", capsys)
    assert (code, err) == (0, "")
    assert f": {path} does not exist yet; the daemon creates it at start)" in out
    assert not path.parent.exists()


def test_a_missing_mysql_database_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"rps_test_absent_{uuid.uuid4().hex[:10]}"
    dsn = f"mysql://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    if MYSQL_PASSWORD:
        dsn = f"mysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    code, out, _ = check(tmp_path, dsn, capsys)
    assert code == 0
    assert f"database {name} does not exist yet; the daemon creates it at start)" in out
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                        [name])
            assert cur.fetchall() == ()
    finally:
        conn.close()


def test_unreachable_mysql_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    dsn = f"mysql://rps:pw-not-shown@127.0.0.1:{port}/pbxware"
    code, out, err = check(tmp_path, dsn, capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"rps-service: check-config: [general] database mysql://rps:***@127.0.0.1:{port}/pbxware:"
        f" MySQL at 127.0.0.1:{port}: MySQL error 2003: Can't connect to MySQL server on"
        " '127.0.0.1' (connection refused)"]


def test_sqlite_under_a_regular_file_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data").write_text("a file")
    dsn = f"sqlite:///{tmp_path}/data/rps.db"
    code, out, err = check(tmp_path, dsn, capsys)
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        f"rps-service: check-config: [general] database {dsn}: cannot create the folder"
        f" {tmp_path}/data: {tmp_path}/data is a file, not a folder"]


def test_sqlite_folder_that_cannot_be_made_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/proc takes no new folders whoever asks (even root, for whom the permission bits say
    yes): the check says so, as the start would, instead of OK."""
    dsn = "sqlite:////proc/nope/rps.db"
    code, out, err = check(tmp_path, dsn, capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"rps-service: check-config: [general] database {dsn}: cannot create"
                          " the folder /proc/nope: /proc takes no new folders (")
    assert not Path("/proc/nope").exists()
