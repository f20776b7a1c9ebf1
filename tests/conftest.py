"""Shared fixtures: stores on SQLite and on the real MariaDB, settings, a test provider."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from rps_service.config import Settings, load_settings, parse_database_url
from rps_service.keyring import SECRET_KEYS
from rps_service.store import Store, create_store
from rps_service.store.secrets import SecretBox, new_key

MYSQL_HOST = os.environ.get("RPS_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("RPS_TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("RPS_TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("RPS_TEST_MYSQL_PASSWORD", "")
#: What every state-changing request to the event API needs, even one without a body.
JSON_TYPE = {"Content-Type": "application/json"}


#: Secrets used anywhere in the suite; none may appear in any log file it leaves behind.
SECRETS: set[str] = {"demo-secret", "norole-secret", "other-secret", "very-secret",
                     "tok-123456", "s3cret-token", "hostile-test-token", "not-the-secret",
                     "gdms-demo-password", "gdms-demo-secret", "not-the-password",
                     "yealink-demo-password", "yealink-other-password",
                     "yealink-rps-demo-secret", "yealink-rps-other-secret"}


def remember_secrets(state: Any) -> None:
    """Add the device passwords a sandbox received to the secrets checked at the end."""
    SECRETS.update(state.received_passwords)


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole run: no secret, and no Authorization header, in any log written."""
    yield
    leaks = []
    for path in tmp_path_factory.getbasetemp().rglob("*"):
        if path.suffix not in (".log", ".txt") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        leaks += [f"{path}: {secret[:4]}…" for secret in SECRETS if secret in text]
        if "Hawk id=" in text or "Bearer " in text:
            leaks.append(f"{path}: an Authorization header")
    assert leaks == [], leaks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mysql_database() -> Iterator[str]:
    """A fresh, empty MariaDB database for one test (dropped afterwards); its DSN."""
    name = f"rps_test_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
        auth = f"{MYSQL_USER}:{MYSQL_PASSWORD}" if MYSQL_PASSWORD else MYSQL_USER
        yield f"mysql://{auth}@{MYSQL_HOST}:{MYSQL_PORT}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture(params=["sqlite", "mysql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded SQLite default and on MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/rps.db"
    return str(request.getfixturevalue("mysql_database"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = create_store(parse_database_url(database_url))
    await store.open()
    await store.migrate()
    await use_new_key(store)
    try:
        yield store
    finally:
        await store.close()


async def use_new_key(store: Store) -> SecretBox:
    """Seal with a fresh key, as a start does (the data step run, found values strict)."""
    box = SecretBox(new_key())
    store.use_secrets(box, SECRET_KEYS)
    await store.seal_plaintext()
    return box


def write_ini(path: Path, general: dict[str, Any] | None = None,
              snom: dict[str, Any] | None = None, extra: str = "") -> Path:
    """An rps.ini for a test; values as given, everything else default. The secret key
    file is beside the ini unless given (never the MySQL default in /var/lib/rps)."""
    lines = ["[general]"]
    general = {"secret_key_file": str(path.parent / "secret.key"), **(general or {})}
    lines += [f"{k} = {v}" for k, v in general.items()]
    lines += ["", "[snom]"]
    lines += [f"{k} = {v}" for k, v in (snom or {}).items()]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Any:
    """Settings for an in-process daemon on a free loopback port."""

    def make(general: dict[str, Any] | None = None, snom: dict[str, Any] | None = None
             ) -> Settings:
        values = {"port": free_port(), "database": database_url, "log_file": "-",
                  "poll_interval": 0.2, "retry_base": 0.01, "retry_cap": 0.05,
                  "drain_timeout": 5}
        values.update(general or {})
        return load_settings(write_ini(tmp_path / "rps.ini", values, snom), env={})

    return make
