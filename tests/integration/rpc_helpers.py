"""Steps the XML-RPC redirection vendors' pipeline tests share (daemon + emulator + MariaDB).

Each pipeline module picks its vendor with a ``vendor`` fixture and uses the contract's
``env`` fixture (one daemon with that vendor enabled, pointed at its emulator).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.conftest import SECRETS
from tests.integration.test_vendor_contract import PROV_URL, TENANT_PASSWORD, TENANT_USER, Env


async def tenant(e: Env) -> None:
    """Server 8's regular provisioning, where the bootstrap file points the phone."""
    r = await e.api.put("/servers/8/provisioning", json={
        "prov_url": PROV_URL, "http_user": TENANT_USER, "http_password": TENANT_PASSWORD})
    assert r.status_code == 204, r.text
    SECRETS.add(TENANT_PASSWORD)


def folder(url: str) -> str:
    """The path of the folder a device URL names (its key is the last segment)."""
    path = urlsplit(url).path
    return path if path.endswith("/") else path.rsplit("/", 1)[0] + "/"


async def phone_get(e: Env, path: str, agent: str) -> httpx.Response:
    """A GET at /ztprov/ as a phone sends it (no credentials: the URL key is the login)."""
    assert e.service.ztp is not None
    async with httpx.AsyncClient(base_url=f"http://{e.service.ztp.address}",
                                 headers={"User-Agent": agent}, timeout=10) as phone:
        return await phone.get(path)


def wrong_secret(url: str, key: str) -> str:
    """``url`` with the key's selector kept and its secret changed (one character)."""
    last = "A" if key[-1] != "A" else "B"
    return url.replace(key, key[:-1] + last)


async def key_of(e: Env, mac: str) -> tuple[str, str]:
    """The device's URL as sent to the vendor, and its key (from the database)."""
    row = await e.service.store.get_device(e.name, mac)
    assert row is not None and row.url and row.url_key and row.url_key in row.url
    return row.url, row.url_key


async def store_provisioning_url(e: Env, url: str) -> None:
    """A per-server ``provisioning_url`` for server 8 (with the demo login)."""
    body: dict[str, Any] = {**e.emulator.demo_credentials(), "provisioning_url": url}
    r = await e.api.put(f"/providers/{e.name}/credentials/8", json=body)
    assert r.status_code == 204, r.text


def log_text(e: Env) -> str:
    return e.log_path.read_text()
