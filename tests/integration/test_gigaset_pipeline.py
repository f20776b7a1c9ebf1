"""Daemon + Gigaset redirect provider + its emulator + MariaDB: what the vendor contract does
not cover (mac_id at intake, re-pointing, the stored MAC-ID, the phone's two formats)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rps_service.sandbox.gigaset import DEMO_PASSWORD, DEMO_USER, GigasetEmulator
from rps_service.sandbox.runner import RunningSandbox
from rps_service.service import Service
from tests.conftest import SECRETS
from tests.integration import test_vendor_contract as contract
from tests.integration.test_pipeline import wait_events, wait_for
from tests.integration.test_vendor_contract import Env

MAC = "7C2F80ABCDEF"
CODE = GigasetEmulator.label_code(MAC)
TENANT_PASSWORD = "gs-tenant-pw"
SECRETS.update({DEMO_PASSWORD, TENANT_PASSWORD})


@pytest.fixture
def vendor() -> str:
    return "gigaset"


env = contract.env  # the daemon with [gigaset] on MariaDB, pointed at the emulator


def parts(e: Env) -> tuple[Service, RunningSandbox, GigasetEmulator, httpx.AsyncClient, Path]:
    assert isinstance(e.emulator, GigasetEmulator)
    return e.service, e.sandbox, e.emulator, e.api, e.log_path


def event(action: str, mac: str = MAC, **extra: Any) -> dict[str, Any]:
    return {"action": action, "provider": "gigaset", "mac": mac, "server": 8, **extra}


async def post(client: httpx.AsyncClient, action: str, mac: str = MAC, **extra: Any
               ) -> dict[str, Any]:
    r = await client.post("/events", json=event(action, mac, **extra))
    assert r.status_code == 202, r.text
    [row] = await wait_events(client, [r.json()["events"][0]["id"]])
    return row


@pytest.mark.parametrize("extra, reason", [
    ({}, "required by the Gigaset redirect service"),
    ({"mac_id": "AB1"}, "must be the device label's MAC-ID"),
    ({"mac_id": "7C2F80ABCDE-AB12"}, "must be the device label's MAC-ID"),
])
async def test_an_add_without_a_usable_mac_id_is_refused(
    env: Callable[..., Awaitable[Env]], extra: dict[str, Any], reason: str
) -> None:
    _, sandbox, _, client, _ = parts(await env())
    # In a batch, one such event refuses the whole batch: nothing is stored.
    r = await client.post("/events", json=[event("add", "7C2F80000001", mac_id="AB12"),
                                           event("add", **extra)])
    assert r.status_code == 400
    [detail] = r.json()["details"]
    assert (detail["index"], detail["field"]) == (1, "mac_id")
    assert reason in detail["message"]
    assert (await client.get("/events")).json() == {"events": []}
    assert sandbox.state.total == 0


async def test_register_repoint_and_remove_use_the_stored_mac_id(
    env: Callable[..., Awaitable[Env]]
) -> None:
    _, sandbox, emulator, client, log_path = parts(await env())
    row = await post(client, "add", mac_id=f"{MAC.lower()}-{CODE.lower()}")  # any case
    assert row["state"] == "done", row
    device = (await client.get(f"/devices/gigaset/{MAC}")).json()
    assert device["mac_id"] == f"{MAC.lower()}-{CODE.lower()}" and device["url_key_set"]
    held = emulator.holds(MAC)
    assert held is not None and held.url and held.url.endswith("/%MACD.xml")
    assert held.extra == {"provider_name": "rps-service"}

    # update: no mac_id in the event; the stored one is used; re-point = deregister, register.
    assert (await post(client, "update"))["state"] == "done"
    assert sandbox.state.history[MAC.lower()] == [
        ("registerDevice", held.url), ("deregisterDevice", None), ("registerDevice", held.url)]

    assert (await post(client, "remove"))["state"] == "done"
    assert emulator.holds(MAC) is None
    assert sandbox.state.history[MAC.lower()][-1] == ("deregisterDevice", None)
    text = log_path.read_text()
    assert f"INFO (Gigaset): Sending Request. Mac={MAC} Url=" in text
    assert CODE not in text  # the label code is the phone's password at Gigaset


async def test_a_wrong_label_code_fails_at_once(env: Callable[..., Awaitable[Env]]) -> None:
    _, sandbox, emulator, client, _ = parts(await env())
    wrong = "ZZZZ" if CODE != "ZZZZ" else "YYYY"
    row = await post(client, "add", mac_id=wrong)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "refused the MAC-ID" in row["last_error"] and "label" in row["last_error"]
    device = (await client.get(f"/devices/gigaset/{MAC}")).json()
    assert device["status"] == "error"
    assert emulator.holds(MAC) is None and MAC.lower() not in sandbox.state.history


async def test_the_test_button(env: Callable[..., Awaitable[Env]]) -> None:
    _, _, _, client, _ = parts(await env())
    r = await client.post("/providers/gigaset/test", json={"server": 8})
    assert r.json() == {"ok": True, "message": (
        f"Gigaset redirect accepted the login {DEMO_USER} (autoprov.checkDevice answered a "
        "dummy MAC-ID with mac_not_exist:000000000000); whether the account may redirect "
        "phones is not verified: it shows only at the first add")}


@pytest.mark.parametrize("agent, root, model", [
    (f"Gigaset N870 IP PRO/83.V2.11.0+build.a546b91;{MAC}", "provisioning", "N870 IP PRO"),
    (f"N510 IP PRO/42.245.00.000.000;{MAC}", "ProviderFrame", "N510 IP PRO"),
])
async def test_the_phone_fetches_its_file_in_its_format(
    env: Callable[..., Awaitable[Env]], agent: str, root: str, model: str
) -> None:
    service, _, emulator, client, _ = parts(await env())
    assert (await post(client, "add", mac_id=CODE))["state"] == "done"
    r = await client.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/", "http_user": "t8",
        "http_password": TENANT_PASSWORD})
    assert r.status_code == 204
    held = emulator.holds(MAC)
    assert held is not None and held.url
    assert service.ztp is not None
    # What the service hands the phone: %MACD replaced by the MAC (lower case here).
    path = urlsplit(held.url).path.replace("%MACD", MAC.lower())
    async with httpx.AsyncClient(headers={"User-Agent": agent}, timeout=10) as phone:
        r = await phone.get(f"http://{service.ztp.address}{path}")
        probe = await phone.get(f"http://{service.ztp.address}{path.rsplit('/', 1)[0]}/"
                                "master.bin")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/xml")
    parsed = ET.fromstring(r.content)  # noqa: S314 - our own output
    assert parsed.tag == root
    assert f"https://t8:{TENANT_PASSWORD}@pbx.test/prov/" in r.text
    assert probe.status_code == 404

    async def fetched() -> bool:
        device = (await client.get(f"/devices/gigaset/{MAC}")).json()
        return bool(device["ztp_fetched_at"]) and device["ztp_model"] == model

    await wait_for(fetched)
