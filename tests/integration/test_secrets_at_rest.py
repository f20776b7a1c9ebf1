"""Secrets at rest (docs/secrets.md), on SQLite and MariaDB, with daemons against the sandbox:
a raw read of the database (the SQLite files, a mysqldump) shows none of them; a database of
the previous version is upgraded and every phone still gets its file with what it was given;
a rotation keeps everything readable and the old key opens nothing; a sealed value moved to
another row is refused."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from rps_service import keyfile
from rps_service.config import parse_database_url
from rps_service.keyring import KeyringError, unlock
from rps_service.sandbox.state import DEMO_KEY_ID, DEMO_SECRET
from rps_service.store import create_store
from rps_service.store.secrets import Cell, ForeignKeyError, SecretBox
from tests.conftest import SECRETS
from tests.integration.daemons import Daemon, Daemons
from tests.integration.secrets_helpers import (
    access,
    add,
    leaked,
    phone_fetch,
    previous_schema,
    raw_dump,
    sealed_with,
)
from tests.integration.test_pipeline import wait_events

PROV_URL = "https://pbx.test/prov/?tenant=8"
TENANT_USER = "tenant8"


@pytest.fixture
async def daemons(tmp_path: Path, database_url: str) -> AsyncIterator[Daemons]:
    """Daemons of any vendor on the test's database (SQLite or MariaDB)."""
    started = Daemons(tmp_path, database_url)
    yield started
    await started.close()


async def stop(daemons: Daemons) -> None:
    """Stop the daemons (not their sandboxes)."""
    for daemon in daemons.running:
        await daemon.api.aclose()
        await daemon.service.stop()
        daemon.sink.close()
    daemons.running.clear()


async def rotate_command(ini: Path) -> tuple[int, str, str]:
    """``rps-service secrets rotate`` as an operator runs it: exit code, stdout, stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPS_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rps_service", "secrets", "rotate", "-c", str(ini),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=ini.parent)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def put(d: Daemon, path: str, body: dict[str, object]) -> None:
    r = await d.api.put(path, json=body)
    assert r.status_code == 204, r.text


async def test_no_secret_in_a_raw_read_of_the_database(
        daemons: Daemons, database_url: str, tmp_path: Path) -> None:
    # Snom's keys only in the database (server 1 holds them in master mode).
    snom = await daemons.start("snom", credentials={})
    secrets = {DEMO_SECRET, "key-secret-of-server-9", "tenant-8-password-sealed",
               "poly-api-key-of-server-2"}
    SECRETS.update(secrets)
    await put(snom, "/providers/snom/credentials/1",
              {"access_key_id": DEMO_KEY_ID, "access_key_secret": DEMO_SECRET})
    await put(snom, "/providers/snom/credentials/9",
              {"access_key_id": "kid-9", "access_key_secret": "key-secret-of-server-9"})
    await put(snom, "/servers/8/provisioning", {"prov_url": PROV_URL, "http_user": TENANT_USER,
                                                "http_password": "tenant-8-password-sealed"})
    fanvil = await daemons.start("fanvil", sandbox=snom.sandbox)
    poly = await daemons.start("poly", sandbox=snom.sandbox)
    await put(poly, "/providers/poly/credentials/2", {"api_key": "poly-api-key-of-server-2"})
    devices: list[tuple[Daemon, str, str]] = []
    for d, vendor, count in ((snom, "snom", 3), (fanvil, "fanvil", 2), (poly, "poly", 2)):
        for i in range(count):
            mac = d.sandbox.state.emulators[vendor].sample_mac(i + 1)
            await add(d, vendor, mac)
            devices.append((d, vendor, mac))
    for d, vendor, mac in devices:
        given = await access(d, vendor, mac)
        secrets.add(given["password"] or given["url"].split("/")[-2])  # or the URL key
        r = await phone_fetch(snom, vendor, mac, given["url"], given["username"],
                              given["password"])
        assert r.status_code == 200 and "tenant-8-password-sealed" in r.text, r.text
    dump = raw_dump(database_url)
    key_id = snom.service.secrets.box.key_id if snom.service.secrets else ""
    assert leaked(dump, secrets) == []
    assert sealed_with(dump, key_id) >= len(devices) + 4
    # Created private: the key, the SQLite files, the log.
    key = Path(str(snom.service.settings.general.secret_key_path))
    private = [key] + [Path(f"{tmp_path}/rps.db{s}") for s in ("", "-wal", "-shm")
                       if database_url.startswith("sqlite")]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in private} == {
        p.name: 0o600 for p in private}
    assert stat.S_IMODE(snom.log_path.stat().st_mode) == 0o640 & ~_umask()


def _umask() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("Umask:")), 8)


OLD_SNOM = ("000413000001", "ztp-0123456789ab", "OldDevicePassword-0001")
OLD_KEY = "0123456789ab" + "OldUrlKeySecretPart00001"
OLD_FANVIL = "0C383E000001"
OLD_POLY = ("0004F2000001", "ztp-poly8shared", "OldPolySharedPassword-1")
OLD_TENANT = "OldTenantPassword-8"


async def _plaintext_rows(database_url: str) -> None:
    """A database of the version before sealing, with its rows in clear as it wrote them."""
    store = create_store(parse_database_url(database_url))
    await store.open()
    try:
        await previous_schema(store, database_url)
        now = "2026-01-01 00:00:00"
        async with store.transaction() as tx:
            devices = [
                ("snom", OLD_SNOM[0], "https://ztp.test/ztprov/8/", OLD_SNOM[1], OLD_SNOM[2],
                 None, None),
                ("fanvil", OLD_FANVIL, f"https://ztp.test/ztprov/8/{OLD_KEY}/$mac.cfg", None,
                 None, OLD_KEY, OLD_KEY[:12]),
                ("poly", OLD_POLY[0], "https://ztp.test/ztprov/8/", OLD_POLY[1], OLD_POLY[2],
                 None, None)]
            for provider, mac, url, user, password, key, selector in devices:
                await tx.execute(
                    "INSERT INTO rps_devices (provider, mac, server, status, last_message, url,"
                    " http_username, http_password, url_key, url_key_id, updated_at)"
                    " VALUES (?, ?, 8, 'registered', '-', ?, ?, ?, ?, ?, ?)",
                    [provider, mac, url, user, password, key, selector, now])
            await tx.execute(
                "INSERT INTO rps_server_access (provider, server, http_username, http_password,"
                " updated_at) VALUES ('poly', 8, ?, ?, ?)", [OLD_POLY[1], OLD_POLY[2], now])
            await tx.execute(
                "INSERT INTO rps_servers (server, prov_url, http_user, http_password,"
                " updated_at) VALUES (8, ?, ?, ?, ?)", [PROV_URL, TENANT_USER, OLD_TENANT, now])
            params = orjson.dumps({"access_key_id": DEMO_KEY_ID,
                                   "access_key_secret": DEMO_SECRET}).decode()
            await tx.execute(
                "INSERT INTO rps_credentials (provider, server, access_key_id, access_key_secret,"
                " params, updated_at) VALUES ('snom', 1, ?, ?, ?, ?)",
                [DEMO_KEY_ID, DEMO_SECRET, params, now])
    finally:
        await store.close()


async def test_an_upgraded_database_keeps_every_phone_working(
        daemons: Daemons, database_url: str) -> None:
    await _plaintext_rows(database_url)
    secrets = {OLD_SNOM[2], OLD_KEY, OLD_POLY[2], OLD_TENANT, DEMO_SECRET}
    SECRETS.update(secrets)
    assert leaked(raw_dump(database_url), secrets) != []  # the test can see them
    snom = await daemons.start("snom", credentials={})  # its keys: the old row's only
    log = snom.log_path.read_text()
    assert "INFO (DATABASE): Secrets sealed. Count=7 Key=" in log, log
    phones = [("snom", OLD_SNOM[0], "https://ztp.test/ztprov/8/", *OLD_SNOM[1:]),
              ("fanvil", OLD_FANVIL, f"https://ztp.test/ztprov/8/{OLD_KEY}/$mac.cfg", None,
               None),
              ("poly", OLD_POLY[0], "https://ztp.test/ztprov/8/", *OLD_POLY[1:])]
    for vendor, mac, url, user, password in phones:
        r = await phone_fetch(snom, vendor, mac, url, user, password)
        assert r.status_code == 200 and OLD_TENANT in r.text, (vendor, r.text)
        assert (await access(snom, vendor, mac)) == {
            "url": url, "username": user, "password": password}
    # The key secret opens too: the vendor takes a registration signed with it.
    await add(snom, "snom", snom.sandbox.state.emulators["snom"].sample_mac(7))
    assert leaked(raw_dump(database_url), secrets) == []
    # Recorded: a restart seals nothing again.
    await stop(daemons)
    again = await daemons.start("snom", credentials={}, sandbox=snom.sandbox)
    log = again.log_path.read_text()  # the same file: both starts
    assert log.count("Listening. Address") == 4, log
    assert log.count("Secrets sealed") == log.count("Secret key created") == 1, log
    r = await phone_fetch(again, "fanvil", OLD_FANVIL, phones[1][2], None, None)
    assert r.status_code == 200


async def test_rotation_keeps_everything_readable_and_the_old_key_opens_nothing(
        daemons: Daemons, database_url: str, tmp_path: Path) -> None:
    snom = await daemons.start("snom", credentials={})
    await put(snom, "/providers/snom/credentials/1",
              {"access_key_id": DEMO_KEY_ID, "access_key_secret": DEMO_SECRET})
    await put(snom, "/servers/8/provisioning", {"prov_url": PROV_URL, "http_user": TENANT_USER,
                                                "http_password": "tenant-8-password-rotated"})
    SECRETS.add("tenant-8-password-rotated")
    fanvil = await daemons.start("fanvil", sandbox=snom.sandbox)
    macs = [("snom", snom, snom.sandbox.state.emulators["snom"].sample_mac(i)) for i in (1, 2)]
    macs.append(("fanvil", fanvil, fanvil.sandbox.state.emulators["fanvil"].sample_mac(1)))
    before = {}
    for vendor, d, mac in macs:
        await add(d, vendor, mac)
        before[mac] = await access(d, vendor, mac)
    path = snom.service.settings.general.secret_key_path
    old_key = keyfile.read_key(path)
    old = SecretBox(old_key)
    ini = tmp_path / "rps.ini"

    # Refused while a daemon of this host uses the key file; nothing changed.
    code, out, err = await rotate_command(ini)
    assert code == 1 and err == (f"rps-service secrets rotate: [general] secret_key_file "
                                 f"{path}: in use by a running daemon: stop it first "
                                 "(systemctl stop rps-service)\n"), err
    assert keyfile.read_key(path) == old_key and not keyfile.old_path(path).exists()
    await stop(daemons)

    code, out, err = await rotate_command(ini)
    assert code == 0 and err == "", err
    new = SecretBox(keyfile.read_key(path))
    assert f"key {old.key_id} replaced by key {new.key_id}; " in out, out
    assert not keyfile.old_path(path).exists() and not keyfile.new_path(path).exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    dump = raw_dump(database_url)
    assert sealed_with(dump, old.key_id) == 0 and sealed_with(dump, new.key_id) >= 6

    # The old key opens nothing the database holds.
    store = create_store(parse_database_url(database_url))
    await store.open()
    try:
        async with store.transaction() as tx:
            row = await tx.fetchone("SELECT http_password FROM rps_devices WHERE mac = ?",
                                    [macs[0][2]])
        assert row is not None
        cell = Cell("rps_devices", "http_password", ("snom", macs[0][2]))
        with pytest.raises(ForeignKeyError):
            old.open(str(row[0]), cell)
        # And a daemon given the old key back refuses to start.
        stale = tmp_path / "old.key"
        stale.write_bytes(keyfile.encode(old_key))
        with pytest.raises(KeyringError, match=f"wrong key: .* key {new.key_id}, this file "
                                               f"holds key {old.key_id}"):
            await unlock(store, stale)
    finally:
        await store.close()

    # Everything reads as before: the API, the phones, the vendor keys.
    snom = await daemons.start("snom", credentials={}, sandbox=snom.sandbox)
    for vendor, _, mac in macs:
        given = await access(snom, vendor, mac)
        assert given == before[mac]
        r = await phone_fetch(snom, vendor, mac, given["url"], given["username"],
                              given["password"])
        assert r.status_code == 200 and "tenant-8-password-rotated" in r.text
    await add(snom, "snom", snom.sandbox.state.emulators["snom"].sample_mac(9))


async def test_a_sealed_value_moved_to_another_row_is_refused(daemons: Daemons) -> None:
    d = await daemons.start("snom")
    await put(d, "/servers/8/provisioning", {"prov_url": PROV_URL, "http_user": TENANT_USER,
                                             "http_password": "tenant-8-password-moved"})
    SECRETS.add("tenant-8-password-moved")
    emulator = d.sandbox.state.emulators["snom"]
    first, second = emulator.sample_mac(1), emulator.sample_mac(2)
    await add(d, "snom", first)
    await add(d, "snom", second)
    given = {mac: await access(d, "snom", mac) for mac in (first, second)}
    async with d.service.store.transaction() as tx:
        row = await tx.fetchone("SELECT http_password FROM rps_devices WHERE mac = ?", [first])
        assert row is not None
        await tx.execute("UPDATE rps_devices SET http_password = ? WHERE mac = ?",
                         [row[0], second])
    # The second phone cannot log in with the first one's password, nor with its own.
    for password in (given[first]["password"], given[second]["password"]):
        r = await phone_fetch(d, "snom", second, given[second]["url"],
                              given[second]["username"], password)
        assert r.status_code == 401, r.text
    r = await d.api.get(f"/devices/snom/{second}/access")
    assert r.status_code == 500 and "cannot be opened" in r.json()["error"]
    # The first phone, and the listing, are untouched.
    r = await phone_fetch(d, "snom", first, given[first]["url"], given[first]["username"],
                          given[first]["password"])
    assert r.status_code == 200
    listed = (await d.api.get("/devices?provider=snom")).json()["devices"]
    assert [(x["mac"], x["http_password_set"]) for x in listed] == [
        (first, True), (second, False)]
    log = d.log_path.read_text()
    assert (f"ERROR (DATABASE): Secret refused. Err=rps_devices.http_password of snom/{second}"
            " does not open: it was sealed for another row or column, or altered") in log
    # A re-add never sends what it cannot open: the event fails, saying why, and the
    # vendor keeps what it had.
    r = await d.api.post("/events", json={"action": "add", "provider": "snom", "mac": second,
                                          "server": 8})
    [row] = await wait_events(d.api, [r.json()["events"][0]["id"]])
    assert row["state"] == "failed" and "does not open" in row["last_error"], row
    held = emulator.holds(second)
    assert held is not None and held.password == given[second]["password"]
