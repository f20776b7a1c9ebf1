"""Daemon + Yealink RPS JSON provider + emulator + real MariaDB: beyond the contract.

``device.mac.existed`` turned into ``device/edit`` (a MAC added in the portal, a re-add),
another enterprise's MAC in both known answers, one server per URL with a short name found
again after a restart, removal by id (and of what RPS no longer holds), the phone's fetch
with its per-device credentials, a clock too far off, the Test button, and the emulator's
signature, nonce and timestamp checks over HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rps_service.providers.auth_xca import XcaAuth
from rps_service.providers.yealink_rps import server_name
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.yealink_rps import API, FOREIGN_MAC, YealinkRpsEmulator
from rps_service.service import Service
from tests.conftest import SECRETS
from tests.integration.daemons import Daemons
from tests.integration.test_pipeline import wait_events

MAC = "805EC0000301"
ZTP_URL = "https://ztp.test/ztprov/{server}/"


@dataclass
class Env:
    service: Service
    sandbox: RunningSandbox
    rps: YealinkRpsEmulator
    api: httpx.AsyncClient
    log_path: Path

    async def post(self, action: str, mac: str = MAC, server: int = 8) -> dict[str, Any]:
        r = await self.api.post("/events", json={"action": action, "provider": "yealink-rps",
                                                 "mac": mac, "server": server})
        assert r.status_code == 202, r.text
        [row] = await wait_events(self.api, [r.json()["events"][0]["id"]])
        return row

    async def device(self, mac: str = MAC) -> dict[str, Any]:
        r = await self.api.get(f"/devices/yealink-rps/{mac}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def count(self, route: str) -> int:
        return self.sandbox.state.counts[("POST", f"yealink-rps-{route}")]

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def env(daemons: Daemons) -> Callable[..., Awaitable[Env]]:
    SECRETS.update({"yealink-rps-demo-secret", "yealink-rps-other-secret"})

    async def _start(sandbox: RunningSandbox | None = None, **section: Any) -> Env:
        d = await daemons.start("yealink-rps", sandbox=sandbox, **section)
        rps = d.sandbox.state.emulators["yealink-rps"]
        assert isinstance(rps, YealinkRpsEmulator)
        return Env(d.service, d.sandbox, rps, d.api, d.log_path)

    return _start


# -- device.mac.existed -----------------------------------------------------------------------


async def test_a_mac_added_in_the_portal_is_edited_to_ours(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    server = e.rps.add_server(e.rps.demo, "portal-server", "https://old.example/")
    e.rps.add_device(e.rps.demo, MAC.lower(), server["id"], "https://old.example/x/",
                      "admin", "old-password-123")
    row = await e.post("add")
    assert row["state"] == "done" and row["attempts"] == 1, row
    stored = await e.service.store.get_device("yealink-rps", MAC)
    held = e.rps.holds(MAC)
    assert stored is not None and held is not None
    assert (held.url, held.username, held.password) == (
        stored.url, stored.http_username, stored.http_password)
    assert len(e.rps.demo.devices) == 1  # the same device, edited
    assert (e.count("device-add"), e.count("device-edit")) == (1, 1)
    assert "INFO (Yealink): Device re-pointed. Mac=805EC0000301" in e.log()


async def test_a_readd_sends_the_same_credentials_through_an_edit(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    first = e.rps.holds(MAC)
    assert (await e.post("add", server=9))["state"] == "done"
    moved = e.rps.holds(MAC)
    assert first is not None and moved is not None
    assert (moved.username, moved.password) == (first.username, first.password)
    assert moved.url == "https://ztp.test/ztprov/9/" and moved.extra["id"] == first.extra["id"]
    assert [op for op, _ in e.sandbox.state.history[MAC.lower()]] == ["device/add",
                                                                      "device/edit"]


@pytest.mark.parametrize(("answer", "key"), [("added.by.other", "device.mac.added.by.other"),
                                             ("forbidden", "device.operate.forbidden")])
async def test_another_enterprises_mac_fails(env: Callable[..., Awaitable[Env]], answer: str,
                                             key: str) -> None:
    e = await env()
    async with httpx.AsyncClient(base_url=e.sandbox.base_url) as control:
        r = await control.post("/_sandbox/yealink-rps/switches",
                               json={"foreign_answer": answer})
        assert r.status_code == 200
    row = await e.post("add", FOREIGN_MAC)
    assert row["state"] == "failed" and row["attempts"] == 1, row
    assert row["last_error"].startswith("The MAC belongs to another Yealink RPS account")
    assert key in row["last_error"]
    assert e.rps.holds(FOREIGN_MAC) is None and e.count("device-edit") == 0


# -- servers, removal -------------------------------------------------------------------------


async def test_one_server_per_url_found_again_after_a_restart(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    for i in range(3):
        assert (await e.post("add", f"805EC000040{i}"))["state"] == "done"
    assert (await e.post("add", "805EC0000410", server=9))["state"] == "done"
    names = {s["serverName"]: s["url"] for s in e.rps.demo.servers.values()}
    key_id = e.rps.demo.key_id
    assert names == {server_name(key_id, ZTP_URL.format(server=s)): ZTP_URL.format(server=s)
                     for s in (8, 9)}
    assert all(len(n) <= 20 for n in names) and e.count("server-add") == 2

    await e.service.stop()
    again = await env(sandbox=e.sandbox)
    assert (await again.post("add", "805EC0000403"))["state"] == "done"
    assert e.count("server-add") == 2  # found with server/list, not added twice
    assert len(e.rps.demo.servers) == 2


async def test_remove_deletes_by_id_and_what_is_gone_is_done(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    assert (await e.post("remove"))["state"] == "done"
    assert e.rps.holds(MAC) is None and dict(e.rps.deletions) == {"ids": 1}
    assert (await e.device())["status"] == "unregistered"

    assert (await e.post("add"))["state"] == "done"
    e.rps.demo.devices.clear()  # deleted in the portal
    assert (await e.post("remove"))["state"] == "done"
    assert dict(e.rps.deletions) == {"ids": 1} and "Nothing to remove" in e.log()


# -- the phone --------------------------------------------------------------------------------


async def test_the_phone_logs_in_with_its_own_credentials(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    other = "805EC0000302"
    for mac in (MAC, other):
        assert (await e.post("add", mac))["state"] == "done"
    r = await e.api.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/", "http_user": "tenant8",
        "http_password": "tenant-secret-8"})
    assert r.status_code == 204
    SECRETS.add("tenant-secret-8")
    held, theirs = e.rps.holds(MAC), e.rps.holds(other)
    assert held is not None and held.url and held.username and held.password
    assert theirs is not None and theirs.username and theirs.password
    assert e.service.ztp is not None
    url = f"http://{e.service.ztp.address}{urlsplit(held.url).path}805ec0000301.cfg"
    agent = {"User-Agent": "Yealink SIP-T46U 108.86.0.20 80:5e:c0:00:03:01"}
    async with httpx.AsyncClient(headers=agent, timeout=10) as phone:
        assert (await phone.get(url)).status_code == 401
        wrong = httpx.BasicAuth(theirs.username, theirs.password)  # another phone's login
        assert (await phone.get(url, auth=wrong)).status_code == 401
        r = await phone.get(url, auth=httpx.DigestAuth(held.username, held.password))
        assert r.status_code == 200, r.text
        assert "static.auto_provision.server.username = tenant8" in r.text
    assert (await e.post("remove"))["state"] == "done"
    async with httpx.AsyncClient(headers=agent, timeout=10) as phone:
        r = await phone.get(url, auth=httpx.BasicAuth(held.username, held.password))
        assert r.status_code == 401


# -- signing, clock, Test button --------------------------------------------------------------


async def test_a_clock_far_off_fails_as_a_bad_login_naming_the_clock(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    e.sandbox.state.clock_offset = 3600  # Yealink's clock an hour ahead of ours
    row = await e.post("add")
    assert row["state"] == "failed" and row["attempts"] == 1, row
    assert "api.timestamp.expired" in row["last_error"] and "clock" in row["last_error"]


async def test_the_test_button(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    r = await e.api.post("/providers/yealink-rps/test", json={"server": 8})
    assert r.json()["ok"] is True and "yealink-rps-demo" in r.json()["message"], r.json()
    bad = await env(access_key_secret="not-the-secret")
    r = await bad.api.post("/providers/yealink-rps/test", json={"server": 8})
    assert r.json()["ok"] is False and "access_key_secret" in r.json()["message"]
    assert "api.signature.invalid" in r.json()["message"]


async def test_the_emulator_refuses_replays_and_tampering_over_http(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    # Everything the daemon sent passed: none of its calls was refused.
    assert all(r.status == 200 for r in e.sandbox.state.records), e.sandbox.state.records
    auth = XcaAuth(e.rps.demo.key_id, e.rps.demo.secret)
    body = json.dumps({"key": "805ec0", "skip": 0, "limit": 10}).encode()
    request = httpx.Request("POST", f"{e.sandbox.base_url}{API}/device/list", content=body,
                            headers={"Content-Type": "application/json;charset=UTF-8"})
    auth.sign(request)
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.send(request)
        assert r.status_code == 200 and r.json()["data"]["total"] == 1, r.text
        r = await client.send(request)  # the same nonce once more
        assert (r.status_code, r.json()["error"]["msg"]) == (401, "api.nonce.used")
        auth.sign(request)
        request.headers["X-Ca-Key"] = "yealink-rps-other"  # another key, this signature
        r = await client.send(request)
        assert r.json()["error"]["msg"] == "api.signature.invalid"
        stale = XcaAuth(e.rps.demo.key_id, e.rps.demo.secret, clock=lambda: time.time() - 3600)
        stale.sign(request)
        request.headers["X-Ca-Key"] = e.rps.demo.key_id
        r = await client.send(request)
        assert r.json()["error"]["msg"] == "api.timestamp.expired"
