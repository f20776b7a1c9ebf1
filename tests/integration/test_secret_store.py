"""The store's sealed secrets on SQLite and MariaDB: values refused where they do not belong,
the data step and a rotation each cut short by a crash and finished by running again."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rps_service import keyfile
from rps_service.clock import utcnow
from rps_service.config import parse_database_url
from rps_service.keyring import SECRET_KEYS, KeyringError, rotate, unlock
from rps_service.models import AccessDetails, Credentials, ServerProvisioning
from rps_service.store import Store, create_store
from rps_service.store.sealing import BATCH, SEAL_STEP
from rps_service.store.secrets import Cell, SecretBox, SecretError, sealed_key_id
from tests.integration.secrets_helpers import previous_schema, raw_dump, sealed_with

MAC, OTHER = "000413ABCDEF", "000413ABCDE0"


class Crash(BaseException):
    """The process dies here (nothing after it runs, the open transaction is lost)."""


async def test_values_are_refused_where_they_do_not_belong(store: Store) -> None:
    now = utcnow()
    await store.ensure_access("snom", MAC, 1, AccessDetails("ua", "password-of-a-0001"), now)
    await store.ensure_access("snom", OTHER, 1, AccessDetails("ub", "password-of-b-0001"), now)
    await store.put_credentials(Credentials("snom", 1, {"access_key_id": "k1",
                                                        "access_key_secret": "secret-one"}),
                                now, "access_key_id", "access_key_secret")
    await store.put_credentials(Credentials("snom", 2, {"access_key_id": "k2",
                                                        "access_key_secret": "secret-two"}),
                                now, "access_key_id", "access_key_secret")
    await store.put_server_provisioning(ServerProvisioning(8, "https://p/", "u", "tenant-8"), now)
    await store.put_server_provisioning(ServerProvisioning(9, "https://p/", "u", "tenant-9"), now)
    async with store.transaction() as tx:
        [(moved,)] = await tx.fetchall("SELECT http_password FROM rps_devices WHERE mac = ?",
                                       [MAC])
        await tx.execute("UPDATE rps_devices SET http_password = ? WHERE mac = ?",
                         [moved, OTHER])
        [(params,)] = await tx.fetchall(
            "SELECT params FROM rps_credentials WHERE provider = 'snom' AND server = 1")
        await tx.execute("UPDATE rps_credentials SET params = ? WHERE server = 2", [params])
        [(tenant,)] = await tx.fetchall("SELECT http_password FROM rps_servers WHERE server = 8")
        await tx.execute("UPDATE rps_servers SET http_password = ? WHERE server = 9", [tenant])
    # A device row reads without the value (a listing, a lease go on); the others fail.
    device = await store.get_device("snom", OTHER)
    assert device is not None and device.http_password is None
    assert device.refused == ("http_password",)
    assert [d.http_password for d in await store.list_devices(provider="snom")] == [
        None, "password-of-a-0001"]
    with pytest.raises(SecretError, match=re.escape(
            f"rps_devices.http_password of snom/{OTHER} does not open")):
        await store.ensure_access("snom", OTHER, 1, AccessDetails("uc", "fresh"), now)
    with pytest.raises(SecretError,
                       match=re.escape("params.access_key_secret of snom/2 does not open")):
        await store.get_credentials("snom", 2)
    with pytest.raises(SecretError,
                       match=re.escape("rps_servers.http_password of 9 does not open")):
        await store.get_server_provisioning(9)
    first = await store.get_credentials("snom", 1)
    assert first is not None and first.text("access_key_secret") == "secret-one"
    # A value in clear, put there behind the daemon's back, is refused like a forgery.
    async with store.transaction() as tx:
        await tx.execute("UPDATE rps_devices SET http_password = 'planted-in-clear'"
                         " WHERE mac = ?", [MAC])
    planted = await store.get_device("snom", MAC)
    assert planted is not None and planted.http_password is None and planted.refused


async def _old_database_with_devices(database_url: str, count: int) -> list[str]:
    """The previous version's tables with ``count`` device passwords in clear."""
    store = create_store(parse_database_url(database_url))
    await store.open()
    try:
        await previous_schema(store, database_url)
        passwords = [f"old-password-{i:05d}" for i in range(count)]
        async with store.transaction() as tx:
            for i, password in enumerate(passwords):
                await tx.execute(
                    "INSERT INTO rps_devices (provider, mac, server, status, last_message,"
                    " http_username, http_password, updated_at)"
                    " VALUES ('snom', ?, 1, 'registered', '-', ?, ?, ?)",
                    [f"000413{i:06X}", f"ztp-{i:012x}", password, utcnow()])
        return passwords
    finally:
        await store.close()


@pytest.fixture
async def opened(database_url: str) -> AsyncIterator[Store]:
    store = create_store(parse_database_url(database_url))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _key_ids(store: Store) -> dict[str | None, int]:
    """How many device secrets each key sealed (None: in clear), as the tables hold them."""
    async with store.transaction() as tx:
        rows = await tx.fetchall("SELECT http_password FROM rps_devices WHERE http_password"
                                 " IS NOT NULL UNION ALL SELECT url_key FROM rps_devices"
                                 " WHERE url_key IS NOT NULL")
    return dict(Counter(sealed_key_id(str(value)) for (value,) in rows))


async def _passwords(store: Store) -> list[str | None]:
    return [d.http_password for d in await store.list_devices(limit=100_000)]


async def test_the_data_step_cut_short_is_finished_by_the_next_start(
        database_url: str, tmp_path: Path) -> None:
    passwords = await _old_database_with_devices(database_url, BATCH + 100)
    store = create_store(parse_database_url(database_url))
    await store.open()
    try:
        await store.migrate()
        # The first start dies in its second batch: the first one is sealed, the rest not.
        box = SecretBox(keyfile.create_key(tmp_path / "secret.key"))
        store.use_secrets(box, SECRET_KEYS)
        sealed = 0

        def crash_after_a_batch(value: str, cell: Cell) -> str:
            nonlocal sealed
            sealed += 1
            if sealed > BATCH:
                raise Crash
            return value

        with pytest.raises(Crash):
            await store.reseal(crash_after_a_batch)
        assert not await store.data_step_done(SEAL_STEP)
        assert await _key_ids(store) == {box.key_id: BATCH, None: len(passwords) - BATCH}
        # The next start seals the rest, and records the step.
        unlocked = await unlock(store, tmp_path / "secret.key")
        unlocked.close()
        assert await store.data_step_done(SEAL_STEP)
        assert await _passwords(store) == passwords
        dump = raw_dump(database_url)
        assert sealed_with(dump, box.key_id) == len(passwords)
        assert not any(password in dump for password in passwords)
    finally:
        await store.close()


async def test_a_rotation_cut_short_is_finished_by_running_it_again(
        database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    passwords = await _old_database_with_devices(database_url, BATCH + 100)
    store = create_store(parse_database_url(database_url))
    await store.open()
    try:
        await store.migrate()
        unlocked = await unlock(store, path)
        unlocked.close()
        url_key = "0123456789ab" + "k" * 24
        await store.ensure_access("fanvil", "0C383E000001", 1, AccessDetails(url_key=url_key),
                                  utcnow())
        old = unlocked.box
        # The rotation dies in its second batch: new key in place, the database half done.
        keyfile.stage_new_key(path)
        keyfile.swap_in_new_key(path)
        new = SecretBox(keyfile.read_key(path))
        await store.register_key(new.key_id, previous=old.key_id)
        store.use_secrets(new, SECRET_KEYS)
        opened = 0

        def crash_after_a_batch(value: str, cell: Cell) -> str:
            nonlocal opened
            opened += 1
            if opened > BATCH:
                raise Crash
            return old.open(value, cell)

        with pytest.raises(Crash):
            await store.reseal(crash_after_a_batch)
        assert await _key_ids(store) == {new.key_id: BATCH,
                                         old.key_id: len(passwords) + 1 - BATCH}
        # No daemon starts in the middle of it.
        with pytest.raises(KeyringError, match=r"a key rotation did not finish \(.*secret\.key"
                                               r"\.old exists\): run 'rps-service secrets "
                                               r"rotate' again"):
            await unlock(store, path)
        done = await rotate(store, path)
        assert (done.old, done.new, done.refused) == (old.key_id, new.key_id, [])
        assert done.count == len(passwords) + 1 - BATCH
        dump = raw_dump(database_url)
        assert sealed_with(dump, old.key_id) == 0
        assert sealed_with(dump, new.key_id) == len(passwords) + 1
        assert not keyfile.old_path(path).exists()
        unlocked = await unlock(store, path)
        unlocked.close()
        assert unlocked.box.key_id == new.key_id
        assert await store.registered_key() == (new.key_id, None)
        assert (await _passwords(store))[1:] == passwords  # the fanvil device first
        found = await store.device_by_url_key(url_key)  # its keyed hash follows the key
        assert found is not None and found.url_key == url_key
    finally:
        await store.close()


async def test_two_instances_starting_together_share_one_new_key(
        database_url: str, tmp_path: Path) -> None:
    stores = [create_store(parse_database_url(database_url)) for _ in range(2)]
    for store in stores:
        await store.open()
    try:
        await stores[0].migrate()
        held = await asyncio.gather(*(unlock(s, tmp_path / "secret.key") for s in stores))
        assert held[0].box.key_id == held[1].box.key_id
        for unlocked in held:
            unlocked.close()
    finally:
        for store in stores:
            await store.close()


async def test_a_rotation_without_a_key_file_says_so(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    with pytest.raises(KeyringError, match=re.escape(
            f"[general] secret_key_file {path}: missing: nothing to rotate")):
        await rotate(store, path)
    assert not path.exists()
