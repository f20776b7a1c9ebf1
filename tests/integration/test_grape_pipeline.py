"""Daemon + GRAPE provider + GRAPE emulator + MariaDB: what the vendor contract does not
cover (cold and warm call counts, the ProvisioningServer setting, the URL key at /ztprov/)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rps_service.guesses import forget_guesses
from rps_service.sandbox.grape import DEMO_SECRET, URL_SETTING_UUID, GrapeEmulator
from rps_service.sandbox.runner import RunningSandbox
from rps_service.service import Service
from tests.conftest import SECRETS
from tests.integration import test_vendor_contract as contract
from tests.integration.test_pipeline import wait_events
from tests.integration.test_vendor_contract import Env

MAC = "7C2F80ABCDEF"
TENANT_PASSWORD = "grape-tenant-pw"
SECRETS.update({DEMO_SECRET, TENANT_PASSWORD})


@pytest.fixture
def vendor() -> str:
    return "gigaset-grape"


env = contract.env  # the daemon with [gigaset-grape] on MariaDB, pointed at the emulator


def parts(e: Env) -> tuple[Service, RunningSandbox, GrapeEmulator, httpx.AsyncClient]:
    assert isinstance(e.emulator, GrapeEmulator)
    return e.service, e.sandbox, e.emulator, e.api


async def post(client: httpx.AsyncClient, action: str, mac: str = MAC, **extra: Any
               ) -> dict[str, Any]:
    r = await client.post("/events", json={"action": action, "provider": "gigaset-grape",
                                           "mac": mac, "server": 8, **extra})
    assert r.status_code == 202, r.text
    [row] = await wait_events(client, [r.json()["events"][0]["id"]])
    return row


def grape_calls(sandbox: RunningSandbox) -> dict[str, int]:
    return {f"{m} {r.removeprefix('gigaset-grape-')}": n
            for (m, r), n in sandbox.state.counts.items() if r.startswith("gigaset-grape")}


async def test_cold_then_warm_registration(env: Callable[[], Awaitable[Env]]) -> None:
    _, sandbox, emulator, client = parts(await env())
    assert (await post(client, "add"))["state"] == "done"
    # Cold: token, company (for links.endpoints), two catalogue pages, the read, the PUT.
    assert grape_calls(sandbox) == {"GET token": 1, "GET company": 1, "GET settings": 2,
                                    "GET endpoint": 1, "PUT endpoint": 1}
    sandbox.state.reset_counts()

    assert (await post(client, "add", mac="7C2F80000001"))["state"] == "done"
    assert grape_calls(sandbox) == {"GET endpoint": 1, "PUT endpoint": 1}  # warm

    held = emulator.holds(MAC)
    assert held is not None
    row = (await client.get(f"/devices/gigaset-grape/{MAC}")).json()
    assert row["status"] == "registered" and row["url_key_set"] is True
    # The ProvisioningServer setting holds the device's URL: its key is a folder of it.
    manager = held.extra["endpoint"]["settings_manager"]
    assert list(manager) == [URL_SETTING_UUID]
    url = manager[URL_SETTING_UUID]["value"]
    assert url.startswith("https://ztp.test/ztprov/8/") and url.endswith("/")
    assert row["url"] == url[: len("https://ztp.test/ztprov/8/") + 12] + "***/"


async def test_the_phone_under_its_key(env: Callable[[], Awaitable[Env]]) -> None:
    forget_guesses()  # as in a freshly started daemon
    e = await env()
    service, _, emulator, client = parts(e)
    assert (await post(client, "add"))["state"] == "done"
    r = await client.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/", "http_user": "t8",
        "http_password": TENANT_PASSWORD})
    assert r.status_code == 204
    held = emulator.holds(MAC)
    assert held is not None and held.url
    assert service.ztp is not None
    folder = f"http://{service.ztp.address}{urlsplit(held.url).path}"
    agent = f"Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 {MAC} SXM:0 UXM:0)"
    async with httpx.AsyncClient(headers={"User-Agent": agent}, timeout=10) as phone:
        settings = await phone.get(f"{folder}snomD785-{MAC}.htm")
        model_file = await phone.get(f"{folder}snomD785.htm")
        wrong_key = await phone.get(folder[:-3] + "xx/" + f"snomD785-{MAC}.htm")
    assert settings.status_code == 200
    assert "<setting_server perm=\"R\">https://pbx.test/prov/</setting_server>" in settings.text
    assert model_file.status_code == 404  # known key, but not the device's settings file
    assert wrong_key.status_code == 403
    async with httpx.AsyncClient(headers={"User-Agent": agent}, timeout=10) as phone:
        assert (await phone.get(f"{folder}snomD785-{MAC}.htm")).status_code == 200
    # Served twice, said once: GRAPE's phones are taken to be Snom hardware.
    assert e.log_path.read_text().count(
        "WARNING (ZTP): Relying on a guess. Guess=Gigaset IP PRO phones sent by GRAPE ask "
        "for Snom's file names and read Snom's settings XML (they are Snom hardware)") == 1

    assert (await post(client, "remove"))["state"] == "done"
    assert emulator.holds(MAC) is None
    async with httpx.AsyncClient(headers={"User-Agent": agent}, timeout=10) as phone:
        assert (await phone.get(f"{folder}snomD785-{MAC}.htm")).status_code == 403
