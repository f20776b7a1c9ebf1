"""A wrong or missing secret key stops ``rps-service run`` (a subprocess) at start: exit 1 and
one line naming the file, on SQLite and MariaDB; nothing is made in the missing key's place."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rps_service import keyfile
from rps_service.clock import utcnow
from rps_service.config import parse_database_url
from rps_service.keyring import unlock
from rps_service.models import Credentials
from rps_service.store import create_store
from rps_service.store.secrets import SecretBox, new_key
from tests.acceptance.test_startup import assert_refused, run_daemon


async def _store_a_secret(database_url: str, key: Path) -> str:
    """What a first start and one credentials PUT leave: a key file and a sealed secret."""
    store = create_store(parse_database_url(database_url))
    await store.open()
    try:
        await store.migrate()
        unlocked = await unlock(store, key)
        unlocked.close()
        await store.put_credentials(
            Credentials("snom", 1, {"access_key_id": "kid", "access_key_secret": "sec-123456"}),
            utcnow(), "access_key_id", "access_key_secret")
        return unlocked.box.key_id
    finally:
        await store.close()


def test_a_wrong_key_stops_the_start(tmp_path: Path, database_url: str) -> None:
    key = tmp_path / "secret.key"  # where run_daemon's rps.ini names it
    sealed_with = asyncio.run(_store_a_secret(database_url, key))
    other = new_key()
    key.write_bytes(keyfile.encode(other))
    result = run_daemon(tmp_path, {"database": database_url})
    assert_refused(result, tmp_path, (
        f"[general] secret_key_file {key}: wrong key: the database's secrets are sealed with "
        f"key {sealed_with}, this file holds key {SecretBox(other).key_id} (restore the right "
        "file from its backup)"))
    assert keyfile.read_key(key) == other  # never overwritten


def test_a_missing_key_stops_the_start(tmp_path: Path, database_url: str) -> None:
    key = tmp_path / "secret.key"
    sealed_with = asyncio.run(_store_a_secret(database_url, key))
    key.unlink()
    result = run_daemon(tmp_path, {"database": database_url})
    assert_refused(result, tmp_path, (
        f"[general] secret_key_file {key}: missing, and the database holds secrets sealed "
        f"with key {sealed_with} (rps_credentials.access_key_secret): restore the file from "
        "its backup"))
    assert not key.exists()  # no new key that would make the old secrets unreadable


def test_a_key_file_that_is_not_one_stops_the_start(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    key.write_text("hunter2\n")
    result = run_daemon(tmp_path, {})
    assert_refused(result, tmp_path, (
        f"[general] secret_key_file {key}: not a key file (one line of 44 base64 characters "
        "expected)"))
