"""Where the real vendor and real operators differ from a friendly sandbox:
daemon + SRAPS sandbox + real MariaDB."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from rps_service.sandbox.state import (
    DEMO_COMPANY_ID,
    HTTP_CLIENT_PASS_UUID,
    SETTING_SERVER_UUID,
    SandboxState,
    setting_uuid,
)
from tests.conftest import JSON_TYPE
from tests.integration.test_pipeline import wait_events, wait_for
from tests.integration.test_snom_pipeline import MAC, Env, env, post

__all__ = ["env"]  # the fixture, shared with the SRAPS pipeline tests

Start = Callable[..., Awaitable[Env]]


async def send(client: httpx.AsyncClient, **event: Any) -> dict[str, Any]:
    r = await client.post("/events", json={"provider": "snom", "mac": MAC, **event})
    assert r.status_code == 202, r.text
    [row] = await wait_events(client, [r.json()["events"][0]["id"]])
    return row


# -- 1. what is unconfirmed fails loudly ----------------------------------------------------


async def test_role_none_or_absent_is_no_role(env: Start) -> None:
    _, sandbox, client, _ = await env()
    sandbox.state.add_key("none-key", "none-secret", DEMO_COMPANY_ID, "None")
    r = await client.put("/providers/snom/credentials/1", json={
        "access_key_id": "none-key", "access_key_secret": "none-secret"})
    assert r.status_code == 204
    r = await client.post("/providers/snom/test", json={"server": 1})
    assert r.json()["ok"] is False and "has no Role" in r.json()["message"]
    sandbox.state.role_field = False  # a token object that shows no role at all
    r = await client.post("/providers/snom/test", json={"server": 1})
    assert r.json()["ok"] is False and "has no Role" in r.json()["message"]


async def test_catalogue_without_credential_settings_never_registers(env: Start) -> None:
    _, sandbox, client, _ = await env(state=SandboxState(credential_settings=False))
    row = await post(client, "add")
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "no http_client_user/http_client_pass" in row["last_error"]
    assert "no credentials" in row["last_error"]
    device = (await client.get(f"/devices/snom/{MAC}")).json()
    assert device["status"] == "error"  # never "registered"
    assert sandbox.state.endpoints(DEMO_COMPANY_ID) == {}
    r = await client.post("/providers/snom/test", json={"server": 8})
    assert r.json()["ok"] is False and "no credentials" in r.json()["message"]


async def test_clock_skew_found_in_the_date_header(env: Start) -> None:
    _, sandbox, client, log_path = await env()
    sandbox.state.clock_offset = 300  # SRAPS is 5 minutes ahead of us
    sandbox.state.stale_challenge = False  # its 401 names no ts/tsm, only a Date
    row = await post(client, "add")
    assert row["state"] == "done", row
    # The Date header has whole seconds: the skew found is 300 s give or take one.
    assert re.search(r"WARNING \(Snom\): Clock adjusted\. Offset=(299|300|301) "
                     r"Skew=clock skew of (299|300|301) s$", log_path.read_text(), re.M)


# -- 2. never lock a phone out --------------------------------------------------------------


async def test_a_put_that_timed_out_but_landed_keeps_its_password(env: Start) -> None:
    service, sandbox, client, _ = await env(snom={"timeout": 0.5,
                                                  "keep_portal_settings": False})
    assert (await post(client, "add", mac="000413000001"))["state"] == "done"  # warm caches
    sandbox.state.latency = 1.5  # the PUT lands, its answer comes too late
    r = await client.post("/events", json={"action": "add", "provider": "snom", "mac": MAC,
                                           "server": 8})
    event_id = r.json()["events"][0]["id"]

    async def landed() -> bool:
        return bool(sandbox.state.writes[MAC.lower()])

    await wait_for(landed)
    sandbox.state.latency = 0
    [row] = await wait_events(client, [event_id])
    assert row["state"] == "done" and row["attempts"] >= 2, row
    sent = {w["settings_manager"][HTTP_CLIENT_PASS_UUID]["value"]
            for w in sandbox.state.writes[MAC.lower()]}
    stored = await service.store.get_device("snom", MAC)
    assert stored is not None and sent == {stored.http_password}


async def test_update_of_an_unknown_or_removed_device_sends_nothing(env: Start) -> None:
    _, sandbox, client, _ = await env()
    row = await send(client, action="update")
    assert (row["state"], row["last_error"]) == ("failed", "Device is not registered")
    assert sandbox.state.total == 0
    assert (await client.get(f"/devices/snom/{MAC}")).status_code == 404
    assert (await post(client, "add"))["state"] == "done"
    assert (await post(client, "remove"))["state"] == "done"
    sandbox.state.reset_counts()
    row = await send(client, action="update")
    assert row["state"] == "failed" and sandbox.state.total == 0
    assert MAC.lower() not in sandbox.state.endpoints(DEMO_COMPANY_ID)


async def test_retry_of_an_event_a_newer_one_overtook_is_refused(env: Start) -> None:
    _, sandbox, client, _ = await env()
    sandbox.state.fail_next = [400]  # the add's first request is refused: it fails
    failed = await post(client, "add")
    assert failed["state"] == "failed"
    assert (await post(client, "remove"))["state"] == "done"
    r = await client.post(f"/events/{failed['id']}/retry", headers=JSON_TYPE)
    assert r.status_code == 409
    assert "newer event" in r.json()["error"] and "undo" in r.json()["error"]


async def test_events_without_server_stay_on_the_devices_server(env: Start) -> None:
    _, sandbox, client, _ = await env()
    assert (await send(client, action="add", server=8))["state"] == "done"
    for action in ("update", "add", "remove"):
        row = await send(client, action=action)
        assert row["state"] == "done" and row["server"] == 8, row
    puts = [url for op, url in sandbox.state.history[MAC.lower()] if op == "PUT"]
    assert puts == ["https://pbx.test/ztprov/8/"] * 3
    device = (await client.get(f"/devices/snom/{MAC}")).json()
    assert device["server"] == 8 and device["status"] == "unregistered"
    # An update naming another server still acts on the device's own (it never moves it).
    assert (await send(client, action="add", server=8))["state"] == "done"
    assert (await send(client, action="update", server=3))["server"] == 8


# -- 3. what an administrator set in the portal ---------------------------------------------


async def test_a_repush_keeps_portal_settings_profile_and_name(env: Start) -> None:
    _, sandbox, client, _ = await env()
    assert (await post(client, "add"))["state"] == "done"
    language = setting_uuid("language", "phone-settings")
    endpoint = dict(sandbox.state.endpoints(DEMO_COMPANY_ID)[MAC.lower()])
    endpoint["settings_manager"] = {**endpoint["settings_manager"],
                                    language: {"value": "Deutsch", "attrs": {"perm": "RW"}}}
    async with httpx.AsyncClient() as control:
        r = await control.put(f"{sandbox.control_url}endpoints/{DEMO_COMPANY_ID}/{MAC}",
                              json={**{k: v for k, v in endpoint.items() if k != "mac"},
                                    "name": "Front desk", "provisioning_profile": "p-42"})
        assert r.status_code == 200, r.text
    assert (await post(client, "add"))["state"] == "done"
    after = sandbox.state.endpoints(DEMO_COMPANY_ID)[MAC.lower()]
    assert after["settings_manager"][language]["value"] == "Deutsch"
    assert (after["name"], after["provisioning_profile"]) == ("Front desk", "p-42")
    assert after["settings_manager"][SETTING_SERVER_UUID]["value"] == \
        "https://pbx.test/ztprov/8/"


async def test_extra_settings_by_param_name(env: Start) -> None:
    _, sandbox, client, _ = await env()
    row = await send(client, action="add", server=8,
                     settings={"firmware_status": "https://fw.test/d785.xml",
                               "update_policy": "auto_update"})
    assert row["state"] == "done", row
    manager = sandbox.state.endpoints(DEMO_COMPANY_ID)[MAC.lower()]["settings_manager"]
    assert manager[setting_uuid("firmware_status", "phone-settings")]["value"] == \
        "https://fw.test/d785.xml"
    row = await send(client, action="add", server=8, settings={"no_such_setting": "1"})
    assert row["state"] == "failed" and "'no_such_setting'" in row["last_error"]


# -- 6. operator traps -----------------------------------------------------------------------


async def test_the_example_provisioning_url_fails_events_and_warns(env: Start) -> None:
    _, sandbox, client, log_path = await env(
        snom={"provisioning_url": "https://pbx.example.com/ztprov/{server}/"})
    row = await post(client, "add")
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "provisioning_url" in row["last_error"] and "pbx.example.com" in row["last_error"]
    assert sandbox.state.writes == {}
    text = log_path.read_text()
    assert "WARNING (MAIN): provisioning_url is the example host." in text
    assert "Provider=snom" in text


async def test_rate_limit_spreads_calls_across_queues(env: Start) -> None:
    _, sandbox, client, _ = await env(general={"queuenum": 4},
                                      snom={"rate_limit": 5, "keep_portal_settings": False})
    assert (await post(client, "add", mac="000413000001"))["state"] == "done"  # warm
    sandbox.state.reset_counts()
    started = asyncio.get_running_loop().time()
    r = await client.post("/events", json=[
        {"action": "add", "provider": "snom", "mac": f"0004130001{i:02X}", "server": 8}
        for i in range(15)])
    rows = await wait_events(client, [e["id"] for e in r.json()["events"]])
    assert all(row["state"] == "done" for row in rows)
    assert asyncio.get_running_loop().time() - started >= 2.0  # 15 calls at 5/s
    # No sliding second held more than 5 arrivals (a few ms of network jitter allowed).
    arrivals = sorted(record.at for record in sandbox.state.records)
    assert len(arrivals) == 15
    assert all(later - first >= 0.98
               for first, later in zip(arrivals, arrivals[5:], strict=False))
