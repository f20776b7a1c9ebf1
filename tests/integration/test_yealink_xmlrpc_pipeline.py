"""Daemon + legacy Yealink RPS provider + XML-RPC emulator + real MariaDB: beyond the contract.

Another customer's MAC (refused without ``override``, taken with it, in both of the
answer's known forms), the server objects (one per URL, names of at most 20 characters,
reused across a restart and after "already exists"), a re-point keeping the URL key, a
removal of what RPS no longer holds, the phone's fetch with its URL key, the Test button,
and the emulator's own strictness over HTTP.
"""

from __future__ import annotations

import base64
import xmlrpc.client
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rps_service.providers.yealink_xmlrpc import SERVER_NAME, server_name
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.yealink_xmlrpc import (
    DEMO_PASSWORD,
    DEMO_USER,
    FOREIGN_MAC,
    NAME_LENGTH,
    OTHER_USER,
    YealinkXmlrpcEmulator,
)
from rps_service.service import Service
from tests.conftest import SECRETS
from tests.integration.daemons import Daemons
from tests.integration.test_pipeline import wait_events

MAC = "805EC0000101"
ZTP_URL = "https://ztp.test/ztprov/{server}/"


@dataclass
class Env:
    service: Service
    sandbox: RunningSandbox
    rps: YealinkXmlrpcEmulator
    api: httpx.AsyncClient
    log_path: Path

    async def post(self, action: str, mac: str = MAC, server: int = 8) -> dict[str, Any]:
        r = await self.api.post("/events", json={"action": action, "provider": "yealink-xmlrpc",
                                                 "mac": mac, "server": server})
        assert r.status_code == 202, r.text
        [row] = await wait_events(self.api, [r.json()["events"][0]["id"]])
        return row

    async def device(self, mac: str = MAC) -> dict[str, Any]:
        r = await self.api.get(f"/devices/yealink-xmlrpc/{mac}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def env(daemons: Daemons) -> Callable[..., Awaitable[Env]]:
    SECRETS.update({DEMO_PASSWORD, "yealink-other-password"})

    async def _start(sandbox: RunningSandbox | None = None, **section: Any) -> Env:
        d = await daemons.start("yealink-xmlrpc", sandbox=sandbox, **section)
        rps = d.sandbox.state.emulators["yealink-xmlrpc"]
        assert isinstance(rps, YealinkXmlrpcEmulator)
        return Env(d.service, d.sandbox, rps, d.api, d.log_path)

    return _start


# -- another customer's MAC -------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["prompt", "code"])
async def test_another_customers_mac_fails_without_override(
        env: Callable[..., Awaitable[Env]], answer: str) -> None:
    e = await env()
    async with httpx.AsyncClient(base_url=e.sandbox.base_url) as control:
        r = await control.post("/_sandbox/yealink-xmlrpc/switches",
                               json={"foreign_answer": answer})
        assert r.json() == {"foreign_answer": answer}
    row = await e.post("add", FOREIGN_MAC)
    assert row["state"] == "failed" and row["attempts"] == 1, row
    assert row["last_error"].startswith("The MAC belongs to another Yealink RPS account")
    assert "override = true" in row["last_error"]
    assert e.rps.devices[FOREIGN_MAC].owner == OTHER_USER
    assert (await e.device(FOREIGN_MAC))["status"] == "error"
    assert e.rps.calls["redirect.registerDeviceWithUniqueUrl"] == 1  # never with the flag


async def test_override_true_takes_the_mac_and_says_so(env: Callable[..., Awaitable[Env]]
                                                       ) -> None:
    e = await env(override=True)
    row = await e.post("add", FOREIGN_MAC)
    assert row["state"] == "done", row
    held, stored = e.rps.holds(FOREIGN_MAC), await e.service.store.get_device(
        "yealink-xmlrpc", FOREIGN_MAC)
    assert held is not None and stored is not None and held.url == stored.url
    assert e.rps.devices[FOREIGN_MAC].owner == DEMO_USER
    assert ("WARNING (Yealink): Taking the MAC from another Yealink RPS account "
            f"(override = true). Mac={FOREIGN_MAC} Server=8") in e.log()


# -- servers ----------------------------------------------------------------------------------


async def test_one_server_per_url_with_a_short_name_reused_after_a_restart(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    for i in range(3):
        assert (await e.post("add", f"805EC000020{i}"))["state"] == "done"
    assert (await e.post("add", "805EC0000210", server=9))["state"] == "done"
    ours = {n: u for n, (owner, u) in e.rps.servers.items() if owner == DEMO_USER}
    expected = {server_name(DEMO_USER, ZTP_URL.format(server=s)): ZTP_URL.format(server=s)
                for s in (8, 9)}
    assert ours == expected
    assert all(len(n) <= 20 and SERVER_NAME.fullmatch(n) for n in ours)
    assert e.rps.calls["redirect.addServer"] == 2
    assert e.rps.holds("805EC0000202").extra["server"] in ours  # type: ignore[union-attr]

    await e.service.stop()  # a restart: the daemon no longer knows its servers
    again = await env(sandbox=e.sandbox)
    assert (await again.post("add", "805EC0000203"))["state"] == "done"
    assert e.rps.calls["redirect.addServer"] == 3  # answered "already exists": ours
    assert "Server already exists" in again.log()
    assert len([o for o, _ in e.rps.servers.values() if o == DEMO_USER]) == 2


async def test_a_server_name_taken_by_another_customer_fails_clearly(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    name = server_name(DEMO_USER, ZTP_URL.format(server=8))
    e.rps.servers[name] = (OTHER_USER, "https://other.example/")  # a one-in-2^64 clash
    row = await e.post("add")
    assert row["state"] == "failed" and row["attempts"] == 1, row
    assert "Error: Invalid server" in row["last_error"]
    assert "another customer's" in row["last_error"]


# -- re-point, remove -------------------------------------------------------------------------


async def test_readd_to_another_server_repoints_and_keeps_the_key(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    first = await e.service.store.get_device("yealink-xmlrpc", MAC)
    row = await e.post("add", server=9)
    assert row["state"] == "done" and row["attempts"] == 1, row
    moved = await e.service.store.get_device("yealink-xmlrpc", MAC)
    assert first is not None and moved is not None and first.url_key == moved.url_key
    assert moved.url == f"https://ztp.test/ztprov/9/{moved.url_key}/"
    held = e.rps.holds(MAC)
    assert held is not None and held.url == moved.url
    assert [op for op, _ in e.sandbox.state.history[MAC.lower()]] == [
        "registerDeviceWithUniqueUrl", "registerDeviceWithUniqueUrl"]


async def test_removing_what_rps_no_longer_holds_is_done(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    del e.rps.devices[MAC]  # removed in the RPS portal
    row = await e.post("remove")
    assert row["state"] == "done", row
    assert (await e.device())["status"] == "unregistered"
    assert "Nothing to remove" in e.log() and "Status=unregistered" in e.log()


# -- the phone --------------------------------------------------------------------------------


async def test_the_phone_fetches_its_cfg_with_its_url_key(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    r = await e.api.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/", "http_user": "tenant8",
        "http_password": "tenant-secret-8"})
    assert r.status_code == 204
    SECRETS.add("tenant-secret-8")
    held = e.rps.holds(MAC)
    assert held is not None and held.url
    assert e.service.ztp is not None
    folder = f"http://{e.service.ztp.address}{urlsplit(held.url).path}"
    agent = {"User-Agent": "Yealink SIP-T46U 108.86.0.20 80:5e:c0:00:01:01"}
    async with httpx.AsyncClient(headers=agent, timeout=10) as phone:
        r = await phone.get(folder + "805ec0000101.cfg")  # no login: the key is the secret
        assert r.status_code == 200, r.text
        assert r.text.splitlines()[0] == "#!version:1.0.0.1"
        assert "static.auto_provision.server.url = https://pbx.test/prov/" in r.text
        assert (await phone.get(folder + "y000000000108.cfg")).status_code == 404
        key = folder.rstrip("/").rsplit("/", 1)[1]
        guessed = folder.replace(key, key[:12] + "A" * 24)
        assert (await phone.get(guessed + "805ec0000101.cfg")).status_code == 403
    assert (await e.device())["ztp_fetched_at"] is not None
    assert key not in e.log()  # URL keys are cut to their selector in rps.log

    assert (await e.post("remove"))["state"] == "done"
    async with httpx.AsyncClient(headers=agent, timeout=10) as phone:
        assert (await phone.get(folder + "805ec0000101.cfg")).status_code == 403


# -- the Test button and the emulator's strictness --------------------------------------------


async def test_the_test_button(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    r = await e.api.post("/providers/yealink-xmlrpc/test", json={"server": 8})
    assert r.json()["ok"] is True and DEMO_USER in r.json()["message"], r.json()
    bad = await env(password="not-the-password")
    r = await bad.api.post("/providers/yealink-xmlrpc/test", json={"server": 8})
    assert r.json()["ok"] is False and "username and password" in r.json()["message"]


async def test_the_emulator_is_strict_over_http(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    url = e.rps.api_url(e.sandbox.base_url)
    login = base64.b64encode(f"{DEMO_USER}:{DEMO_PASSWORD}".encode()).decode()
    xml = {"Content-Type": "text/xml", "Authorization": f"Basic {login}"}

    def body(method: str, *params: str) -> bytes:
        return xmlrpc.client.dumps(params, method).encode()

    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(url, content=body("redirect.checkDevice", MAC))
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        r = await client.post(url, content=body("redirect.checkDevice", MAC),
                              headers={**xml, "Content-Type": "application/json"})
        assert r.status_code == 415
        r = await client.post(url, content=body("redirect.addServer", "x" * 21,
                                                "https://pbx.test/"), headers=xml)
        assert b"<value>" + NAME_LENGTH.encode() + b"</value>" in r.content  # untyped
        assert xmlrpc.client.loads(r.content)[0][0] == [False, NAME_LENGTH]
        r = await client.post(url, content=body("redirect.registerDeviceWithUniqueUrl",
                                                MAC, "x", "https://pbx.test/"), headers=xml)
        with pytest.raises(xmlrpc.client.Fault):
            xmlrpc.client.loads(r.content)
        r = await client.post(url, content=body("redirect.checkDevice", "80-5E-C0-00-01-01"),
                              headers=xml)
        assert xmlrpc.client.loads(r.content)[0][0] == [True, "unregistered"]
