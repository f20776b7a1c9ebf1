"""What the secrets-at-rest tests share: a raw read of the database, a phone fetching its
file, and the schema and rows of the version before secrets were sealed."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from rps_service.config import parse_database_url
from rps_service.store import Store
from rps_service.store.schema import MYSQL, SQLITE
from rps_service.store.secrets import PREFIX
from rps_service.vendors import family_of
from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER
from tests.integration.daemons import Daemon
from tests.integration.test_pipeline import wait_events


def raw_dump(database_url: str) -> str:
    """Everything an attacker with the database alone reads: the SQLite file with its -wal
    and -shm files as bytes, or what ``mysqldump`` writes."""
    url = parse_database_url(database_url)
    if url.scheme == "sqlite":
        files = [Path(url.path + suffix) for suffix in ("", "-wal", "-shm")]
        return "".join(p.read_bytes().decode("latin-1") for p in files if p.exists())
    command = ["mysqldump", f"-u{MYSQL_USER}", f"-h{MYSQL_HOST}", f"-P{MYSQL_PORT}",
               "--skip-comments", url.name]
    if MYSQL_PASSWORD:
        command.insert(1, f"-p{MYSQL_PASSWORD}")
    return subprocess.run(command, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def leaked(dump: str, secrets: set[str]) -> list[str]:
    """The secrets found in ``dump`` (their first characters only)."""
    assert secrets and all(len(s) >= 8 for s in secrets), secrets
    return sorted(f"{s[:4]}…" for s in secrets if s in dump)


def sealed_with(dump: str, key_id: str) -> int:
    """How many values of ``dump`` are sealed with ``key_id``."""
    return dump.count(f"{PREFIX}{key_id}:")


async def add(d: Daemon, vendor: str, mac: str, server: int = 8) -> None:
    emulator = d.sandbox.state.emulators[vendor]
    r = await d.api.post("/events", json={"action": "add", "provider": vendor, "mac": mac,
                                          "server": server, **emulator.event_fields(mac)})
    assert r.status_code == 202, r.text
    [row] = await wait_events(d.api, [r.json()["events"][0]["id"]])
    assert row["state"] == "done", row


async def access(d: Daemon, vendor: str, mac: str) -> dict[str, Any]:
    """What the API says the vendor was given for the phone (url, username, password)."""
    r = await d.api.get(f"/devices/{vendor}/{mac}/access")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def phone_fetch(d: Daemon, vendor: str, mac: str, url: str, username: str | None,
                      password: str | None) -> httpx.Response:
    """The phone asks ``d``'s /ztprov/ for its first file, as the vendor sent it there."""
    family = family_of(vendor)
    assert family is not None
    name, agent = family.sample_request(mac, "T46U")
    assert d.service.ztp is not None
    folder = f"http://{d.service.ztp.address}{urlsplit(url).path}"
    if not folder.endswith("/"):
        folder = folder.rsplit("/", 1)[0] + "/"
    auth = httpx.BasicAuth(username, password) if username and password else None
    async with httpx.AsyncClient(headers={"User-Agent": agent}, timeout=10) as phone:
        return await phone.get(folder + name, auth=auth)


def _sealing_migration(steps: list[list[str]]) -> int:
    """The index of the migration that brought sealing (never a hard-coded version)."""
    return next(i for i, statements in enumerate(steps)
                if any("rps_secret_key" in statement for statement in statements))


async def previous_schema(store: Store, database_url: str) -> None:
    """The tables as the version before sealing left them (its migrations only)."""
    kind = parse_database_url(database_url).scheme
    steps = SQLITE if kind == "sqlite" else MYSQL
    async with store.transaction() as tx:
        if kind == "mysql":
            await tx.execute("SET SESSION sql_notes = 0")
        await tx.execute("CREATE TABLE rps_schema (version INTEGER NOT NULL)")
        for number, statements in enumerate(steps[:_sealing_migration(steps)], start=1):
            for statement in statements:
                await tx.execute(statement)
            await tx.execute("INSERT INTO rps_schema (version) VALUES (?)", [number])
