"""A re-point verified by the phones that came to fetch their bootstrap file, and a MAC held
by another server's account of this PBX named as such (docs/fleet.md): the daemon, the SRAPS
sandbox and real MariaDB, the phones played over HTTP against /ztprov/."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from rps_service.sandbox.state import (
    DEMO_COMPANY_ID,
    DEMO_KEY_ID,
    DEMO_SECRET,
    HTTP_CLIENT_PASS_UUID,
    HTTP_CLIENT_USER_UUID,
    OTHER_COMPANY_ID,
    OTHER_KEY_ID,
    OTHER_SECRET,
    TAKEN_MAC,
)
from tests.conftest import SECRETS
from tests.integration.daemons import Daemon, Daemons
from tests.integration.test_pipeline import wait_events, wait_for

MACS = ["000413C00001", "000413C00002", "000413C00003"]


async def post(d: Daemon, action: str, mac: str, server: int = 8) -> dict[str, Any]:
    r = await d.api.post("/events", json={"action": action, "provider": "snom", "mac": mac,
                                          "server": server})
    assert r.status_code == 202, r.text
    [row] = await wait_events(d.api, [r.json()["events"][0]["id"]])
    return row


async def phone_fetches(d: Daemon, mac: str) -> int:
    """The phone asks /ztprov/ for its file with what SRAPS (the sandbox) handed it."""
    settings = d.sandbox.state.endpoints(DEMO_COMPANY_ID)[mac.lower()]["settings_manager"]
    auth = (settings[HTTP_CLIENT_USER_UUID]["value"], settings[HTTP_CLIENT_PASS_UUID]["value"])
    agent = f"Mozilla/4.0 (compatible; snomD717-SIP 10.1.54.13 {mac} SXM:0 UXM:0)"
    assert d.service.ztp is not None
    async with httpx.AsyncClient(base_url=f"http://{d.service.ztp.address}", timeout=10,
                                 headers={"User-Agent": agent}) as phone:
        r = await phone.get(f"/ztprov/8/snomD717-{mac}.htm", auth=auth)
    return r.status_code


async def test_a_repoint_reports_which_phones_fetched_since(daemons: Daemons) -> None:
    d = await daemons.start("snom")
    r = await d.api.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/", "http_user": "t8", "http_password": "t8-pw-x"})
    assert r.status_code == 204
    SECRETS.add("t8-pw-x")
    for mac in MACS:
        assert (await post(d, "add", mac))["state"] == "done"
    assert await phone_fetches(d, MACS[1]) == 200  # before the re-point: not counted
    await asyncio.sleep(1.1)  # the device row keeps fetch times to the second

    r = await d.api.post("/servers/8/repoint", json={"provider": "snom"})
    assert r.status_code == 202
    job_id = r.json()["job"]

    async def pushed() -> bool:
        job = (await d.api.get(f"/jobs/{job_id}")).json()
        return bool(job["state"] == "done" and job["events"] == {"done": 3})

    await wait_for(pushed)
    job = (await d.api.get(f"/jobs/{job_id}")).json()
    assert (job["fetched"], job["not_fetched_total"], job["not_fetched"]) == (0, 3, MACS)
    assert await phone_fetches(d, MACS[0]) == 200
    job = (await d.api.get(f"/jobs/{job_id}")).json()
    assert (job["fetched"], job["not_fetched_total"]) == (1, 2)
    assert job["not_fetched"] == MACS[1:] and "not_fetched_next" not in job
    # Paged: one MAC at a time.
    page = (await d.api.get(f"/jobs/{job_id}", params={"not_fetched_limit": 1})).json()
    assert (page["not_fetched"], page["not_fetched_next"]) == ([MACS[1]], MACS[1])
    page = (await d.api.get(f"/jobs/{job_id}", params={
        "not_fetched_limit": 1, "not_fetched_after": MACS[1]})).json()
    assert page["not_fetched"] == [MACS[2]] and "not_fetched_next" not in page
    r = await d.api.get(f"/jobs/{job_id}", params={"not_fetched_limit": 0})
    assert r.status_code == 400


async def keys(d: Daemon, server: int, key: str, secret: str) -> None:
    r = await d.api.put(f"/providers/snom/credentials/{server}", json={
        "access_key_id": key, "access_key_secret": secret,
        "provisioning_url": f"https://pbx.test/ztprov/{server}/"})
    assert r.status_code == 204


async def test_a_mac_of_another_server_of_this_pbx_is_named(daemons: Daemons) -> None:
    """Tenant mode, servers 8 and 9 with SRAPS accounts of their own: an add on 8 of a MAC
    that server 9's account holds says so and how to move it; the move then works."""
    d = await daemons.start("snom", general={"mode": "tenant"})
    await keys(d, 8, DEMO_KEY_ID, DEMO_SECRET)
    # The MAC of an account that is none of this PBX's servers' stays "another account".
    row = await post(d, "add", TAKEN_MAC, server=8)
    assert row["state"] == "failed" and "another SRAPS account" in row["last_error"]
    assert "of this PBX" not in row["last_error"]

    await keys(d, 9, OTHER_KEY_ID, OTHER_SECRET)
    mac = MACS[0]
    assert (await post(d, "add", mac, server=9))["state"] == "done"
    assert mac.lower() in d.sandbox.state.endpoints(OTHER_COMPANY_ID)

    row = await post(d, "add", mac, server=8)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert re.fullmatch(
        rf"The MAC {mac} is registered to server 9 of this PBX \(to move it to server 8, "
        r"remove it there first \(a remove of this MAC now acts on server 9\), then add it "
        r"to server 8 again\)", row["last_error"]), row["last_error"]
    device = (await d.api.get(f"/devices/snom/{mac}")).json()
    assert (device["server"], device["status"]) == (9, "error")
    assert "server 9 of this PBX" in device["last_message"]

    # As the message says: remove (from server 9's account), then add to server 8.
    assert (await post(d, "remove", mac))["state"] == "done"
    assert mac.lower() not in d.sandbox.state.endpoints(OTHER_COMPANY_ID)
    assert (await post(d, "add", mac, server=8))["state"] == "done"
    assert mac.lower() in d.sandbox.state.endpoints(DEMO_COMPANY_ID)
