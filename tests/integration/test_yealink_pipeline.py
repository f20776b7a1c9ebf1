"""Daemon + Yealink provider + YMCS emulator + real MariaDB: what the shared contract does
not cover (tokens expiring mid-run, 800003, the add-by-MAC permission, sn at intake and on
re-registrations, the phone's CFG file)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.yealink import YealinkEmulator
from rps_service.sandbox.ymcs import DEMO_ORG, DEMO_SECRET, new_device
from rps_service.service import Service
from tests.conftest import JSON_TYPE, SECRETS
from tests.integration.daemons import Daemons
from tests.integration.test_pipeline import wait_events, wait_for

SN = "3012345678901234"
MAC = "001565ABC001"
TENANT_PASSWORD = "t3nant#pw = x"  # characters a CFG line must survive
SECRETS.update({DEMO_SECRET, TENANT_PASSWORD})


@dataclass
class Env:
    service: Service
    sandbox: RunningSandbox
    emulator: YealinkEmulator
    api: httpx.AsyncClient
    log_path: Path

    async def post(self, action: str, mac: str = MAC, **fields: Any) -> dict[str, Any]:
        r = await self.api.post("/events", json={"action": action, "provider": "yealink",
                                                 "mac": mac, "server": 8, **fields})
        assert r.status_code == 202, r.text
        [row] = await wait_events(self.api, [r.json()["events"][0]["id"]])
        return row

    async def device(self, mac: str = MAC) -> dict[str, Any]:
        r = await self.api.get(f"/devices/yealink/{mac}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def access(self, mac: str = MAC) -> dict[str, Any]:
        """What the database holds as sent to YMCS (url, username, password)."""
        row = await self.service.store.get_device("yealink", mac)
        assert row is not None
        return {"url": row.url, "username": row.http_username, "password": row.http_password}

    async def control(self, **switches: Any) -> None:
        r = await self.api.post(f"{self.sandbox.base_url}/_sandbox/yealink", json=switches)
        assert r.status_code == 200, r.text

    def sent(self, mac: str, path: str) -> int:
        """``Sending Request.`` lines of rps.log for ``mac`` to ``path``."""
        pattern = (rf"INFO \(Yealink\): Sending Request\. Mac={mac} "
                   rf"Url=http://\S+/yealink{path} Verb=POST$")
        return len(re.findall(pattern, self.log_path.read_text(), re.M))


@pytest.fixture
def env(daemons: Daemons) -> Iterator[Callable[..., Awaitable[Env]]]:
    async def _start(**section: Any) -> Env:
        d = await daemons.start("yealink", general={"retry_cap": 2}, **section)
        emulator = d.sandbox.state.emulators["yealink"]
        assert isinstance(emulator, YealinkEmulator)
        return Env(d.service, d.sandbox, emulator, d.api, d.log_path)

    yield _start
    for d in daemons.running:  # the access tokens YMCS issued
        emulator = d.sandbox.state.emulators["yealink"]
        assert isinstance(emulator, YealinkEmulator)
        SECRETS.update(emulator.ymcs.issued)


# -- tokens -------------------------------------------------------------------------------------


async def test_a_token_expired_early_gets_a_new_one_and_one_retry(
    env: Callable[..., Awaitable[Env]]
) -> None:
    e = await env()
    assert (await e.post("add", sn=SN))["state"] == "done"
    assert e.emulator.ymcs.token_calls == 1
    await e.control(expire_tokens=True)  # YMCS drops the token before its announced end

    other = "001565ABC002"
    row = await e.post("add", other, sn=SN)
    assert row["state"] == "done" and row["attempts"] == 1, row
    assert (e.emulator.ymcs.token_calls, e.emulator.ymcs.refused_tokens) == (2, 1)
    assert e.sent(other, "/v2/rps/devices") == 2  # refused once, then sent with the new one
    assert e.sent(other, "/v2/token") == 1
    assert (await e.device(other))["status"] == "registered"
    assert "Bearer " not in e.log_path.read_text()


async def test_a_token_is_renewed_a_minute_before_it_ends(
    env: Callable[..., Awaitable[Env]]
) -> None:
    e = await env()
    await e.control(token_lifetime=61)  # fresh for one second under the 60 s margin
    assert (await e.post("add", sn=SN))["state"] == "done"
    await asyncio.sleep(1.2)
    assert (await e.post("add", "001565ABC002", sn=SN))["state"] == "done"
    assert (e.emulator.ymcs.token_calls, e.emulator.ymcs.refused_tokens) == (2, 0)
    assert e.sent("001565ABC002", "/v2/token") == 1


# -- registrations ------------------------------------------------------------------------------


async def test_already_in_the_account_is_deleted_and_added(
    env: Callable[..., Awaitable[Env]]
) -> None:
    e = await env()
    # Added in the YMCS portal by hand, pointing elsewhere.
    e.emulator.ymcs.orgs[DEMO_ORG].devices[MAC.lower()] = new_device(
        MAC.lower(), SN, "https://elsewhere.example/", "admin", "portal-password")
    row = await e.post("add", sn=SN)
    assert row["state"] == "done" and row["attempts"] == 1, row
    access = await e.access()
    held = e.emulator.holds(MAC)
    assert held is not None
    assert (held.url, held.username, held.password) == (
        access["url"], access["username"], access["password"])
    assert e.sandbox.state.history[MAC.lower()] == [("DELETE", None), ("POST", access["url"])]
    assert (await e.device())["status"] == "registered"


async def test_reregistrations_keep_sn_and_credentials(
    env: Callable[..., Awaitable[Env]]
) -> None:
    e = await env()
    assert (await e.post("add", sn=SN))["state"] == "done"
    first = await e.access()
    row = await e.post("update")  # no sn: the device's stored one is sent
    assert row["state"] == "done", row
    row = await e.post("add", sn=SN, name="Reception")
    assert row["state"] == "done", row
    held = e.emulator.holds(MAC)
    assert held is not None and held.extra["device"]["sn"] == SN
    assert await e.access() == first
    assert (held.url, held.username, held.password) == (
        first["url"], first["username"], first["password"])
    assert [op for op, _ in e.sandbox.state.history[MAC.lower()]] == [
        "POST", "DELETE", "POST", "DELETE", "POST"]


async def test_a_missing_sn_is_refused_at_intake(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    r = await e.api.post("/events", json=[
        {"action": "add", "provider": "yealink", "mac": "001565ABC003", "sn": SN},
        {"action": "add", "provider": "yealink", "mac": MAC}])
    assert r.status_code == 400
    assert r.json()["details"] == [{"index": 1, "field": "sn", "message": (
        "required by Yealink YMCS unless add_by_mac = true")}]
    assert (await e.api.get("/devices/yealink/001565ABC003")).status_code == 404
    assert e.sandbox.state.total == 0


async def test_add_by_mac_without_then_with_the_permission(
    env: Callable[..., Awaitable[Env]]
) -> None:
    e = await env(add_by_mac=True)

    async def test() -> dict[str, Any]:
        r = await e.api.post("/providers/yealink/test", json={"server": 8})
        assert r.status_code == 200, r.text
        return dict(r.json())

    # Nothing shows the permission but an add: the Test says it did not check it.
    verdict = await test()
    assert verdict["ok"] is True
    assert verdict["message"].endswith(
        "adding by MAC (add_by_mac = true): whether Yealink enabled that permission for this "
        "account is not verified (YMCS shows it only by refusing an add with 900403: the "
        "first add by MAC tells, and this Test reports it from then on)")
    r = await e.api.post("/events", json={"action": "add", "provider": "yealink",
                                          "mac": MAC, "server": 8})
    assert r.status_code == 202, r.text  # no sn needed
    event_id = r.json()["events"][0]["id"]
    [row] = await wait_events(e.api, [event_id])
    assert row["state"] == "failed" and row["attempts"] == 1, row
    assert "900403" in row["last_error"] and "add-by-MAC permission" in row["last_error"]
    assert (await e.device())["status"] == "error"
    verdict = await test()  # now YMCS has told: the Test fails, saying what to do
    assert verdict["ok"] is False
    assert verdict["message"].startswith("the last add by MAC was refused (403: 900403")
    assert "Ask Yealink to enable it, or set add_by_mac = false" in verdict["message"]

    await e.control(add_by_mac=True)  # Yealink enabled it for the account
    assert (await e.api.post(f"/events/{event_id}/retry", headers=JSON_TYPE)).status_code == 202

    async def registered() -> bool:
        return bool((await e.device())["status"] == "registered")

    await wait_for(registered)
    assert (await test())["ok"] is True
    held, access = e.emulator.holds(MAC), await e.access()
    assert held is not None and held.url == access["url"]
    assert held.extra["device"]["sn"] is None
    counts = e.sandbox.state.counts
    assert (counts[("POST", "yealink-add-by-mac")], counts[("POST", "yealink-add")]) == (2, 0)


async def test_the_test_button(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add", sn=SN))["state"] == "done"
    r = await e.api.post("/providers/yealink/test", json={"server": 8})
    assert r.json() == {"ok": True, "message": (
        "YMCS accepted the AccessKey ymcs-demo-id; the account holds 1 RPS devices; adding "
        "with serial numbers (add_by_mac = false)")}


# -- the phone -----------------------------------------------------------------------------------


async def test_the_phone_gets_a_yealink_cfg(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add", sn=SN))["state"] == "done"
    r = await e.api.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/8/", "http_user": "tenant8",
        "http_password": TENANT_PASSWORD})
    assert r.status_code == 204
    held = e.emulator.holds(MAC)
    assert held is not None and held.url and held.username and held.password
    assert e.service.ztp is not None
    base = f"http://{e.service.ztp.address}{urlsplit(held.url).path}"
    agent = {"User-Agent": "Yealink SIP-T46U 108.86.0.20 00:15:65:ab:c0:01"}
    login = httpx.BasicAuth(held.username, held.password)
    async with httpx.AsyncClient(headers=agent, timeout=10) as phone:
        boot = [await phone.get(base + name) for name in ("001565abc001.boot",
                                                          "y000000000000.boot")]
        assert [r.status_code for r in boot] == [401, 401]
        probes = [await phone.get(base + name, auth=login) for name in (
            "001565abc001.boot", "y000000000000.boot", "y000000000028.cfg")]
        assert [r.status_code for r in probes] == [404, 404, 404]  # on to <mac>.cfg
        r = await phone.get(base + "001565abc001.cfg",
                            auth=httpx.DigestAuth(held.username, held.password))
        upper = await phone.get(base + "001565ABC001.cfg", auth=login)
        other = await phone.get(base + "001565abc001.cfg", auth=login,
                                headers={"User-Agent": "Yealink SIP-T46U 108.86.0.20 "
                                                       "00:15:65:ab:c0:02"})
    assert r.status_code == 200 and upper.status_code == 200 and other.status_code == 403
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["cache-control"] == "no-store" and "content-length" in r.headers
    assert r.text == (
        "#!version:1.0.0.1\n"
        "## Written by rps-service: on to the tenant's provisioning server.\n"
        "static.auto_provision.server.url = https://pbx.test/prov/8/\n"
        "static.auto_provision.server.username = tenant8\n"
        f"static.auto_provision.server.password = {TENANT_PASSWORD}\n")
    device = await e.device()
    assert device["ztp_fetched_at"] is not None
    assert (device["ztp_model"], device["ztp_firmware"]) == ("T46U", "108.86.0.20")
    text = e.log_path.read_text()
    assert re.search(rf"INFO \(ZTP\): GET {urlsplit(held.url).path}001565abc001\.cfg 200\. "
                     r"Ip=127\.0\.0\.1$", text, re.M)
    assert "User-Agent MAC differs from the path" in text


async def test_a_phone_whose_mac_is_all_digits(env: Callable[..., Awaitable[Env]]) -> None:
    """A file name of twelve decimal digits is taken as a MAC only when neither the name nor
    the User-Agent gives a better one (a build number could look like one): the device is
    found either way, and a User-Agent naming another phone is refused."""
    e = await env()
    mac = "001565000042"
    assert (await e.post("add", mac, sn=SN))["state"] == "done"
    r = await e.api.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/8/", "http_user": "tenant8",
        "http_password": TENANT_PASSWORD})
    assert r.status_code == 204
    held = e.emulator.holds(mac)
    assert held is not None and held.url and held.username and held.password
    assert e.service.ztp is not None
    url = f"http://{e.service.ztp.address}{urlsplit(held.url).path}001565000042.cfg"
    login = httpx.BasicAuth(held.username, held.password)
    async with httpx.AsyncClient(timeout=10) as phone:
        mine = await phone.get(url, auth=login, headers={
            "User-Agent": "Yealink SIP-T46U 108.86.0.20 00:15:65:00:00:42"})
        nameless = await phone.get(url, auth=login)
        other = await phone.get(url, auth=login, headers={
            "User-Agent": "Yealink SIP-T46U 108.86.0.20 00:15:65:00:00:43"})
    assert mine.status_code == 200 and "tenant8" in mine.text
    assert nameless.status_code == 200 and "tenant8" in nameless.text
    assert other.status_code == 401
