"""Daemon + Grandstream provider + GDMS emulator + real MariaDB: what the contract leaves out.

Token expiry and refresh, the serial number GDMS needs (400 at intake, kept for later
events), the site (wrong site, a device moved to another site, per-tenant sites), the
"already exists" answers, an update that changes nothing, the experimental remove, and the
emulator's own strictness (signature, timestamp, secrets never sent).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rps_service.providers.auth_gdms import password_hash, signature
from rps_service.sandbox.grandstream import FOREIGN_MAC, GrandstreamEmulator, serial_for
from rps_service.sandbox.runner import RunningSandbox
from rps_service.service import Service
from tests.integration.daemons import Daemons
from tests.integration.test_pipeline import wait_events

MAC = "000B82000101"


@dataclass
class Env:
    service: Service
    sandbox: RunningSandbox
    gdms: GrandstreamEmulator
    api: httpx.AsyncClient
    log_path: Path

    async def post(self, action: str, mac: str = MAC, server: int | None = 8,
                   **extra: Any) -> dict[str, Any]:
        event: dict[str, Any] = {"action": action, "provider": "grandstream", "mac": mac}
        if server is not None:
            event["server"] = server
        if action == "add" and "sn" not in extra:
            event["sn"] = serial_for(mac)
        r = await self.api.post("/events", json={**event, **extra})
        assert r.status_code == 202, r.text
        [row] = await wait_events(self.api, [r.json()["events"][0]["id"]])
        return row

    async def device(self, mac: str = MAC) -> dict[str, Any]:
        r = await self.api.get(f"/devices/grandstream/{mac}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def env(daemons: Daemons) -> Callable[..., Awaitable[Env]]:
    async def _start(mode: str = "master", **section: Any) -> Env:
        d = await daemons.start("grandstream", credentials=None if mode == "master" else {},
                                general={"mode": mode}, ztp=False, **section)
        gdms = d.sandbox.state.emulators["grandstream"]
        assert isinstance(gdms, GrandstreamEmulator)
        return Env(d.service, d.sandbox, gdms, d.api, d.log_path)

    return _start


# -- tokens -----------------------------------------------------------------------------------


async def test_expired_tokens_are_refreshed_then_renewed_by_login(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add", "000B82000001"))["state"] == "done"
    assert (e.gdms.logins, e.gdms.refreshes) == (1, 0)

    e.gdms.expire()  # the access token ends before the daemon expected
    assert (await e.post("add", "000B82000002"))["state"] == "done"
    assert (e.gdms.logins, e.gdms.refreshes) == (1, 1)

    e.gdms.expire(refresh=True)  # and the refresh token too: a new login
    row = await e.post("add", "000B82000003")
    assert row["state"] == "done" and row["attempts"] == 1
    assert (e.gdms.logins, e.gdms.refreshes) == (2, 1)
    assert "Refresh token refused, logging in again" in e.log()
    assert e.gdms.holds("000B82000003") is not None


async def test_short_lived_tokens_are_renewed_before_they_expire(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    e.gdms.token_ttl = 200  # under the provider's margin: every call renews first
    for i in range(3):
        assert (await e.post("add", f"000B8200001{i}"))["state"] == "done"
    assert e.gdms.logins == 1 and e.gdms.refreshes == 2
    records = [r for r in e.sandbox.state.records if r.route.startswith("grandstream-device")]
    assert all(r.status == 200 for r in records)  # no call was refused for its token


# -- the serial number ------------------------------------------------------------------------


async def test_add_without_sn_is_refused_at_intake(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    r = await e.api.post("/events", json={"action": "add", "provider": "grandstream",
                                          "mac": MAC, "server": 8})
    assert r.status_code == 400
    [detail] = r.json()["details"]
    assert detail["field"] == "sn" and "Grandstream GDMS" in detail["message"]
    assert (await e.api.get("/events")).json()["events"] == []
    assert e.sandbox.state.total == 0


async def test_the_stored_sn_serves_later_events(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    e.gdms.demo.devices.pop(MAC)  # deleted in the portal behind the daemon's back
    row = await e.post("update", server=None)  # no sn in the event: the stored one is sent
    assert row["state"] == "done"
    held = e.gdms.holds(MAC)
    assert held is not None and held.extra["sn"] == serial_for(MAC)


async def test_a_serial_that_does_not_match_fails_naming_sn(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    row = await e.post("add", sn="GS000000000000")
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "SN do not match" in row["last_error"] and "check the event's sn" in row["last_error"]
    assert e.gdms.holds(MAC) is None


# -- sites ------------------------------------------------------------------------------------


async def test_a_wrong_site_is_a_clear_error(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env(site_id="9999")
    row = await e.post("add")
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "The site does not exist" in row["last_error"] and "check site_id" in row["last_error"]
    r = await e.api.post("/providers/grandstream/test", json={"server": 8})
    assert r.json() == {"ok": False, "message": "site_id 9999 is not a site of this GDMS "
                        "organisation (its sites: 3345 (Default), 3346 (Branch))"}


async def test_the_test_button_names_the_site(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    r = await e.api.post("/providers/grandstream/test", json={"server": 8})
    assert r.json()["ok"] is True and "site 3345 (Default)" in r.json()["message"]


async def test_a_device_moved_to_another_site_is_not_claimed_again(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    e.gdms.demo.devices[MAC]["siteId"] = 3346  # moved in the portal
    row = await e.post("add")
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "GDMS site 3346" in row["last_error"] and "site_id 3345" in row["last_error"]
    assert (await e.device())["status"] == "error"


async def test_tenants_claim_into_their_own_sites(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env(mode="tenant")
    for server, site in ((8, "3345"), (9, "3346")):
        keys = {**e.gdms.demo_credentials(), "site_id": site}
        r = await e.api.put(f"/providers/grandstream/credentials/{server}", json=keys)
        assert r.status_code == 204, r.text
    assert (await e.post("add", "000B82000008", server=8))["state"] == "done"
    assert (await e.post("add", "000B82000009", server=9))["state"] == "done"
    held8, held9 = e.gdms.holds("000B82000008"), e.gdms.holds("000B82000009")
    assert held8 is not None and held8.extra["site_id"] == 3345
    assert held9 is not None and held9.extra["site_id"] == 3346
    r = await e.api.get("/providers/grandstream/credentials/9")
    assert r.json()["site_id"] == "3346" and "gdms-demo-secret" not in r.text


# -- already there, update, remove ------------------------------------------------------------


async def test_an_update_changes_nothing_at_gdms(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add", name="Reception"))["state"] == "done"
    before = dict(e.gdms.demo.devices[MAC])
    row = await e.post("update", server=None, name="Front desk")
    assert row["state"] == "done"
    assert e.gdms.demo.devices[MAC] == before  # re-pointing is the site's template's job
    assert e.sandbox.state.history[MAC.lower()] == [("device/add", None)]
    assert "Device already in the site, nothing to change" in e.log()
    assert (await e.device())["status"] == "registered"


async def test_another_organisation_named_in_the_answer(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    e.gdms.foreign_answer = "bound"
    row = await e.post("add", FOREIGN_MAC)
    assert row["state"] == "failed"
    assert "The MAC belongs to another GDMS account" in row["last_error"]
    assert "added by another organization" in row["last_error"]
    assert e.sandbox.state.counts[("POST", "grandstream-device-list")] == 0


async def test_remove_is_marked_experimental(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add"))["state"] == "done"
    assert (await e.post("remove", server=None))["state"] == "done"
    assert e.gdms.holds(MAC) is None
    assert "Removing with an experimental call. Call=device/delete Mac=000B82000101" in e.log()
    # Already gone at GDMS (deleted in the portal): still a successful remove.
    assert (await e.post("add"))["state"] == "done"
    e.gdms.demo.devices.pop(MAC)
    assert (await e.post("remove", server=None))["state"] == "done"


# -- the emulator's strictness ----------------------------------------------------------------


async def _token(client: httpx.AsyncClient, gdms: GrandstreamEmulator, method: str = "POST"
                 ) -> httpx.Response:
    keys = gdms.demo_credentials()
    form = {"grant_type": "password", "username": str(keys["username"]),
            "password": password_hash(str(keys["password"])),
            "client_id": str(keys["client_id"]), "client_secret": str(keys["client_secret"])}
    if method == "GET":
        return await client.get("oapi/oauth/token", params=form)
    return await client.post("oapi/oauth/token", data=form)


async def test_the_emulator_checks_what_gdms_checks(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    keys = e.gdms.demo_credentials()
    secret = str(keys["client_secret"])
    async with httpx.AsyncClient(base_url=e.gdms.api_url(e.sandbox.base_url)) as client:
        assert (await _token(client, e.gdms, "GET")).status_code == 200  # GET works too
        token = (await _token(client, e.gdms)).json()["access_token"]
        raw = await client.post("oapi/oauth/token", data={
            "grant_type": "password", "username": "gdms-demo", "password": "gdms-demo-password",
            "client_id": "gdms-demo", "client_secret": secret})
        assert raw.json()["error"] == "invalid_grant"  # the password must be hashed

        def signed(body: bytes, **extra: str) -> dict[str, str]:
            query = {"access_token": token, "timestamp": str(int(time.time() * 1000)), **extra}
            return {**query, "signature": signature(query.items(), "gdms-demo", secret, body)}

        body = b'{"pageNum":1,"pageSize":10}'
        listed = await client.post("oapi/v1.0.0/device/list", params=signed(body), content=body,
                                   headers={"Content-Type": "application/json"})
        assert listed.json()["retCode"] == 0
        tampered = await client.post("oapi/v1.0.0/device/list", params=signed(body),
                                     content=body.replace(b"10", b"20"),
                                     headers={"Content-Type": "application/json"})
        assert tampered.json()["msg"] == "Signature error"
        stale = signed(body) | {"timestamp": str(int(time.time() * 1000) - 600_000)}
        late = await client.post("oapi/v1.0.0/device/list", params=stale, content=body,
                                 headers={"Content-Type": "application/json"})
        assert late.json()["msg"] == "The timestamp has expired"
        leaked = await client.get("oapi/v1.0.0/site/list",
                                  params=signed(b"", client_secret=secret))
        assert "never sent" in leaked.json()["msg"]
        unknown = await client.get("oapi/v1.0.0/site/list", params={"access_token": "x"})
        assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_token"


async def test_the_emulators_control_routes(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    assert (await e.post("add", "000B82000001"))["state"] == "done"
    async with httpx.AsyncClient(base_url=e.sandbox.control_url) as control:
        r = await control.post("grandstream/switches", json={"token_ttl": 120})
        assert r.json() == {"token_ttl": 120, "foreign_answer": "exists"}
        assert (await control.post("grandstream/switches",
                                   json={"foreign_answer": "maybe"})).status_code == 400
        r = await control.post("grandstream/expire-tokens", json={"refresh": True})
        assert r.status_code == 200
        assert (await control.post("grandstream/expire-tokens",
                                   json={"refresh": "yes"})).status_code == 400
        state = (await control.get("state")).json()["vendors"]["grandstream"]
    assert state["live_tokens"] == 0 and state["logins"] == 1
    assert [d["mac"] for d in state["orgs"]["52001"]["devices"]] == ["00:0B:82:00:00:01"]
    assert "gdms-demo-secret" not in str(state) and "gdms-demo-password" not in str(state)
    assert (await e.post("add", "000B82000002"))["state"] == "done"  # a new login
    assert e.gdms.logins == 2
