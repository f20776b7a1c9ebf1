"""Daemon + Fanvil provider + FDPS emulator + real MariaDB: what the vendor contract does not
cover -- the four calls in order, re-pointing, clean removal, and the phone's fetch under its
URL key in Fanvil's own format."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest

from rps_service.providers.fanvil import fdps_password
from rps_service.sandbox.fanvil import (
    DEMO_PASSWORD,
    DEMO_USER,
    FOREIGN_MAC,
    OTHER_PASSWORD,
    SERVER_IN_USE,
    FanvilEmulator,
)
from rps_service.sandbox.runner import RunningSandbox
from rps_service.service import Service
from tests.conftest import SECRETS
from tests.integration.daemons import Daemons
from tests.integration.test_pipeline import wait_events, wait_for

MAC = "0C383E0A0B0C"
PROV_URL = "https://pbx.test/prov/fanvil/"
TENANT_USER = "tenant8"
TENANT_PASSWORD = "tenant-8-secret"
AGENT = f"Fanvil X4U 2.12.1 {MAC.lower()}"
SECRETS.update({DEMO_PASSWORD, OTHER_PASSWORD, fdps_password(DEMO_PASSWORD), TENANT_PASSWORD})


@dataclass
class Env:
    service: Service
    sandbox: RunningSandbox
    api: httpx.AsyncClient
    log_path: Path

    @property
    def fdps(self) -> FanvilEmulator:
        emulator = self.sandbox.state.emulators["fanvil"]
        assert isinstance(emulator, FanvilEmulator)
        return emulator

    @property
    def ztp(self) -> str:
        assert self.service.ztp is not None
        return f"http://{self.service.ztp.address}"

    async def post(self, action: str, mac: str = MAC, server: int = 8) -> dict[str, Any]:
        r = await self.api.post("/events", json={"action": action, "provider": "fanvil",
                                                 "mac": mac, "server": server})
        assert r.status_code == 202, r.text
        [row] = await wait_events(self.api, [r.json()["events"][0]["id"]])
        return row

    async def stored(self, mac: str = MAC) -> tuple[str, str]:
        """The device's URL and URL key, as the database holds them."""
        row = await self.service.store.get_device("fanvil", mac)
        assert row is not None and row.url and row.url_key
        return row.url, row.url_key

    def history(self, mac: str = MAC) -> list[tuple[str, str | None]]:
        return list(self.sandbox.state.history[mac.lower()])

    def answers(self, mac: str = MAC) -> list[tuple[str, str]]:
        return [(method.removeprefix("redirect."), text)
                for user, method, subject, text in self.fdps.calls
                if user == DEMO_USER and subject == mac]


@pytest.fixture
def env(daemons: Daemons) -> Callable[..., Awaitable[Env]]:
    async def _start(**fanvil: Any) -> Env:
        d = await daemons.start("fanvil", general={"retry_cap": 0.05}, **fanvil)
        return Env(d.service, d.sandbox, d.api, d.log_path)

    return _start


async def put_tenant(e: Env) -> None:
    r = await e.api.put("/servers/8/provisioning", json={
        "prov_url": PROV_URL, "http_user": TENANT_USER, "http_password": TENANT_PASSWORD})
    assert r.status_code == 204, r.text


# -- the redirection ----------------------------------------------------------------------


async def test_first_registration_is_four_calls_two_of_them_answered_not_exist(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    row = await e.post("add")
    assert row["state"] == "done" and row["attempts"] == 1, row
    url, key = await e.stored()
    assert url == f"https://ztp.test/ztprov/8/{key}/$mac.cfg"

    assert e.answers() == [("deRegisterDevice", "Error:device_not_exist"),
                           ("deleteServer", "Error:server_not_exist"),
                           ("addMaterialServer", "success"),
                           ("registerDevice", "success")]
    assert e.history() == [("addMaterialServer", url), ("registerDevice", url)]
    server = e.fdps.accounts[DEMO_USER].servers[MAC]
    assert (server["cfgPfSrv"], server["cfgPfName"], server["cfgPfProt"]) == (
        "ztp.test", f"ztprov/8/{key}/$mac.cfg", "5")

    text = e.log_path.read_text()
    sent = re.findall(r"INFO \(Fanvil\): Sending Request\. Mac=0C383E0A0B0C "
                      r"Url=http://127\.0\.0\.1:\d+/fanvil/xmlrpc\.php Verb=POST "
                      r"Xmlrpc=(\S+)$", text, re.M)
    # Each line names its XML-RPC method (they all go to one URL).
    assert sent == ["redirect.deRegisterDevice", "redirect.deleteServer",
                    "redirect.addMaterialServer", "redirect.registerDevice"]
    assert key not in text and key[12:] not in text


async def test_a_url_fdps_cannot_keep_is_refused_by_the_api(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    r = await e.api.put("/providers/fanvil/credentials/8",
                        json={"provisioning_url": "https://ztp.test/ztprov/8/?tenant=8"})
    assert r.status_code == 400, r.text
    [detail] = r.json()["details"]
    assert detail["field"] == "provisioning_url"
    assert "without user, query (?...) or fragment (#...)" in detail["message"]


async def test_repoint_after_the_provisioning_url_changed(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    old_url, key = await e.stored()

    r = await e.api.put("/providers/fanvil/credentials/8", json={
        "username": DEMO_USER, "password": DEMO_PASSWORD,
        "provisioning_url": "https://new.test:8443/phones/{server}/"})
    assert r.status_code == 204, r.text
    row = await e.post("update")
    assert row["state"] == "done", row

    url, same_key = await e.stored()
    assert same_key == key  # the phone's key is kept; only where it points changed
    assert url == f"https://new.test:8443/phones/8/{key}/$mac.cfg"
    assert e.history()[2:] == [("deRegisterDevice", None), ("deleteServer", None),
                               ("addMaterialServer", url), ("registerDevice", url)]
    assert e.fdps.holds(MAC).url == url  # type: ignore[union-attr]
    assert old_url != url


async def test_remove_leaves_no_server_behind(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    assert (await e.post("remove"))["state"] == "done"
    assert e.history()[-2:] == [("deRegisterDevice", None), ("deleteServer", None)]
    async with httpx.AsyncClient(timeout=10) as client:
        state = (await client.get(f"{e.sandbox.control_url}state")).json()
    assert state["vendors"]["fanvil"]["accounts"][DEMO_USER] == {"servers": {}, "devices": {}}

    # Nor does a MAC another account holds: the server made for it is deleted again.
    row = await e.post("add", FOREIGN_MAC)
    assert row["state"] == "failed" and "another FDPS account" in row["last_error"]
    assert e.fdps.accounts[DEMO_USER].servers == {}


async def test_the_test_button_names_the_login(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    r = await e.api.post("/providers/fanvil/test", json={"server": 8})
    assert r.json() == {"ok": True, "message": (
        "FDPS accepted the login demo-fanvil (0 servers); whether the account may redirect "
        "phones is not verified: it shows only at the first add")}
    bad = await env(password="not-the-password")
    r = await bad.api.post("/providers/fanvil/test", json={"server": 8})
    assert r.json()["ok"] is False
    assert r.json()["message"].startswith("FDPS rejected the login: 401")


# -- the phone ----------------------------------------------------------------------------


async def test_the_phone_fetches_its_file_under_its_key(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    await put_tenant(e)
    url, key = await e.stored()
    folder = e.ztp + urlsplit(url).path.rsplit("/", 1)[0] + "/"

    async with httpx.AsyncClient(headers={"User-Agent": AGENT}, timeout=10) as phone:
        r = await phone.get(folder + f"{MAC.lower()}.cfg")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        assert r.text == (
            "<<VOIP CONFIG FILE>>Version:2.0000000000\n"
            f"--ZTP Prov URL--   :{PROV_URL}\n"
            "\n"
            "<AUTOUPDATE CONFIG MODULE>\n"
            f"Download Username  :{TENANT_USER}\n"
            f"Download Password  :{TENANT_PASSWORD}\n"
            "Download Server IP :pbx.test\n"
            "Config File Name   :prov/fanvil/$mac.cfg\n"
            "Download Protocol  :5\n"
            "Download Mode      :1\n"
            "Download Interval  :1\n"
            "DHCP Option        :0\n"
            "PNP Enable         :0\n"
            "<<END OF FILE>>\n")
        # A phone that did not expand the placeholder gets the same file; a model file
        # under the key is nothing of ours.
        assert (await phone.get(folder + quote("$mac.cfg"))).text == r.text
        assert (await phone.get(folder + "f0X4hw1.100.cfg")).status_code == 404

    async def fetched() -> bool:
        device = (await e.api.get(f"/devices/fanvil/{MAC}")).json()
        return device["ztp_fetched_at"] is not None

    await wait_for(fetched)
    device = (await e.api.get(f"/devices/fanvil/{MAC}")).json()
    assert (device["ztp_model"], device["ztp_firmware"]) == ("X4U", "2.12.1")
    assert key not in e.log_path.read_text()


async def test_a_wrong_key_is_403_and_logged_without_the_key(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    await put_tenant(e)
    _, key = await e.stored()
    wrong = key[:12] + "Z" * 24

    async with httpx.AsyncClient(headers={"User-Agent": AGENT}, timeout=10) as phone:
        r = await phone.get(f"{e.ztp}/ztprov/8/{wrong}/{MAC.lower()}.cfg")
        assert r.status_code == 403
        # Another phone's MAC in the User-Agent under this phone's key: refused too.
        other = {"User-Agent": "Fanvil X4U 2.12.1 0c383e999999"}
        r = await phone.get(f"{e.ztp}/ztprov/8/{key}/{MAC.lower()}.cfg", headers=other)
        assert r.status_code == 403

    text = e.log_path.read_text()
    assert re.search(rf"WARNING \(ZTP\): Authentication failed\. Ip=127\.0\.0\.1 User=- "
                     rf"File=/ztprov/8/{wrong[:12]}\*\*\*/0c383e0a0b0c\.cfg "
                     rf"Key={wrong[:12]}\*\*\* Reason=unknown or revoked URL key", text), text
    assert re.search(rf"INFO \(ZTP\): GET /ztprov/8/{key[:12]}\*\*\*/0c383e0a0b0c\.cfg 403\. "
                     rf"Ip=127\.0\.0\.1", text), text
    assert wrong[12:] not in text and key[12:] not in text

    # After a remove, the right key is refused as well.
    assert (await e.post("remove"))["state"] == "done"
    async with httpx.AsyncClient(headers={"User-Agent": AGENT}, timeout=10) as phone:
        r = await phone.get(f"{e.ztp}/ztprov/8/{key}/{MAC.lower()}.cfg")
    assert r.status_code == 403


# -- the emulator is as strict as FDPS ----------------------------------------------------


async def test_emulator_refuses_what_fdps_would(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    endpoint = f"{e.sandbox.base_url}/fanvil/xmlrpc.php"
    body = b"<?xml version='1.0'?><methodCall><methodName>redirect.listDevices</methodName>" \
           b"<params></params></methodCall>"
    headers = {"Content-Type": "text/xml"}
    async with httpx.AsyncClient(timeout=10) as client:
        plain = await client.post(endpoint, content=body, headers=headers,
                                  auth=(DEMO_USER, DEMO_PASSWORD))
        assert plain.status_code == 401  # the password itself is not the login
        hashed = (DEMO_USER, fdps_password(DEMO_PASSWORD))
        assert (await client.post(endpoint, content=body, headers=headers,
                                  auth=hashed)).status_code == 200
        assert (await client.get(endpoint, auth=hashed)).status_code == 405
        assert (await client.post(endpoint, content=body, auth=hashed,
                                  headers={"Content-Type": "text/plain"})).status_code == 415

    fdps = e.fdps
    assert fdps.call(DEMO_USER, "redirect.registerDevice", (MAC, MAC)) == (
        False, "Error:server_not_exist")
    assert fdps.call(DEMO_USER, "redirect.addMaterialServer", (
        [f"cfgName={MAC}", "cfgPfSrv=ztp.test", "cfgPfName=x/", "cfgPfProt=4"],)) == (
        True, "success")
    assert fdps.call(DEMO_USER, "redirect.registerDevice", (MAC.lower(), MAC)) == (
        False, "Error: mac_format_error")
    assert fdps.call(DEMO_USER, "redirect.registerDevice", (MAC, MAC)) == (True, "success")
    assert fdps.call(DEMO_USER, "redirect.deleteServer", (MAC,)) == (False, SERVER_IN_USE)
    assert fdps.call(DEMO_USER, "redirect.registerDevice", (MAC, MAC)) == (
        False, "Error: device_had_existed")
    assert fdps.call(DEMO_USER, "redirect.addMaterialServer", (
        ["cfgName=B", "cfgPfSrv=https://ztp.test", "cfgPfName=x/", "cfgPfProt=5"],)) == (
        False, "Error: url_format_error")
    assert fdps.call(DEMO_USER, "redirect.addMaterialServer", (
        ["cfgName=B", "cfgPfSrv=ztp.test", "cfgPfName=x/", "cfgPfProt=5", "colour=red"],)) \
        == (False, "Error: param_error")
