"""Fleet operations (docs/fleet.md) through the daemon, the SRAPS sandbox and real MariaDB:
reconcile (report, repair, adopt, paging, a restart in the middle), re-point, extra
settings, replacing a phone, the periodic reconcile."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rps_service.config import load_settings
from rps_service.sandbox.control import portal_endpoint
from rps_service.sandbox.state import DEMO_COMPANY_ID, SETTING_SERVER_UUID, setting_uuid
from rps_service.service import Service
from tests.integration.test_pipeline import wait_events, wait_for
from tests.integration.test_snom_pipeline import Env, env, post
from tests.ops import scrape

__all__ = ["env"]  # the fixture, shared with the SRAPS pipeline tests

Start = Callable[..., Awaitable[Env]]
URL8 = "https://pbx.test/ztprov/8/"
MACS = ["000413F00001", "000413F00002", "000413F00003"]


async def job_done(client: httpx.AsyncClient, job_id: int, timeout: float = 30
                   ) -> dict[str, Any]:
    async def finished() -> bool:
        r = await client.get(f"/jobs/{job_id}")
        return r.json()["state"] in ("done", "failed")

    await wait_for(finished, timeout)
    return dict((await client.get(f"/jobs/{job_id}")).json())


async def reconcile(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    r = await client.post("/providers/snom/reconcile", json={"server": 8, **body})
    assert r.status_code == 202, r.text
    return await job_done(client, r.json()["job"])


async def registered(client: httpx.AsyncClient, macs: list[str]) -> None:
    for mac in macs:
        assert (await post(client, "add", mac=mac))["state"] == "done"


def behind_our_back(env: Env) -> dict[str, Any]:
    """Delete one endpoint, re-point another, add one we never made, in the vendor."""
    endpoints = env[1].state.endpoints(DEMO_COMPANY_ID)
    del endpoints[MACS[0].lower()]
    endpoints[MACS[1].lower()]["settings_manager"][SETTING_SERVER_UUID]["value"] = \
        "https://elsewhere.test/"
    endpoints["000413f0ffff"] = portal_endpoint("000413f0ffff", "https://someone.test/")
    return endpoints


async def test_reconcile_reports_missing_drift_and_orphans(env: Start) -> None:
    e = await env()
    client = e[2]
    await registered(client, MACS)
    behind_our_back(e)
    job = await reconcile(client)
    assert job["state"] == "done", job
    result = job["result"]
    assert result["missing"] == [MACS[0]]
    assert result["drift"] == [{"mac": MACS[1], "expected": URL8,
                                "found": "https://elsewhere.test/", "ours": True}]
    assert result["orphan"] == [{"mac": "000413F0FFFF", "url": "https://someone.test/"}]
    assert result["counts"] == {"database": 3, "vendor": 3, "missing": 1, "drift": 1,
                                "orphan": 1}
    # A finished job shows its last phase complete (it showed "comparing 0 / 3").
    assert job["progress"] == {"phase": "comparing", "done": 3, "total": 3}
    # A report only: nothing was queued, the vendor is as it was.
    events = (await client.get("/events?limit=100")).json()["events"]
    assert len(events) == 3
    samples = scrape((await client.get("/metrics")).text)
    assert samples['rps_reconcile_differences_total{kind="drift",provider="snom"}'] == 1


async def test_repair_and_adopt(env: Start) -> None:
    e = await env()
    client = e[2]
    await registered(client, MACS)
    endpoints = behind_our_back(e)
    job = await reconcile(client, repair=True, adopt=True)
    assert job["result"]["counts"]["repair_events"] == 2
    assert job["result"]["counts"]["adopted"] == 1

    async def repaired() -> bool:
        events = (await client.get(f"/jobs/{job['id']}")).json()["events"]
        return events == {"done": 2}

    await wait_for(repaired)
    for mac in MACS[:2]:
        value = endpoints[mac.lower()]["settings_manager"][SETTING_SERVER_UUID]["value"]
        assert value == URL8
    orphan = (await client.get("/devices/snom/000413F0FFFF")).json()
    assert (orphan["status"], orphan["server"], orphan["url"]) == (
        "registered", 8, "https://someone.test/")
    assert orphan["last_message"] == f"adopted by reconcile job {job['id']}"
    again = await reconcile(client)
    assert again["result"]["counts"] == {"database": 4, "vendor": 4, "missing": 0,
                                         "drift": 0, "orphan": 0}


async def test_reconcile_pages_through_5000_endpoints(env: Start) -> None:
    _, sandbox, client, _ = await env()
    endpoints = sandbox.state.endpoints(DEMO_COMPANY_ID)
    for i in range(5000):
        mac = f"000413a{i:05x}"
        endpoints[mac] = portal_endpoint(mac, URL8)
    sandbox.state.reset_counts()
    job = await reconcile(client)
    assert job["result"]["counts"]["vendor"] == 5000
    assert job["result"]["counts"]["orphan"] == 5000
    assert len(job["result"]["orphan"]) == 1000 and job["result"]["truncated"] is True
    assert sandbox.state.counts[("GET", "endpoints")] == 5  # pages of 1000


async def test_a_job_survives_a_restart(env: Start, tmp_path: Path) -> None:
    first, sandbox, client, _ = await env()
    endpoints = sandbox.state.endpoints(DEMO_COMPANY_ID)
    for i in range(3000):
        mac = f"000413b{i:05x}"
        endpoints[mac] = portal_endpoint(mac, URL8)
    sandbox.state.latency = 0.5  # the listing takes a few pages' time
    r = await client.post("/providers/snom/reconcile", json={"server": 8})
    job_id = r.json()["job"]

    async def listing() -> bool:
        job = (await client.get(f"/jobs/{job_id}")).json()
        return job["progress"]["phase"] == "listing" and job["progress"]["done"] > 0

    await wait_for(listing)
    await first.stop()  # the job is cancelled mid-way; its lease will run out
    # A new instance on the same database (another process in real life) runs it again.
    settings = load_settings(tmp_path / "rps.ini", env={})
    second = Service(settings)
    await second.start()
    try:
        sandbox.state.latency = 0
        async with httpx.AsyncClient(base_url=f"http://{second.address}") as api:
            job = await job_done(api, job_id, timeout=60)
        assert job["state"] == "done" and job["runs"] == 2
        assert job["result"]["counts"]["orphan"] == 3000
    finally:
        await second.stop()


async def test_reconcile_needs_a_vendor_that_can_list_or_look_up(env: Start) -> None:
    from rps_service.providers.snom import SnomProvider

    _, _, client, _ = await env()
    SnomProvider.can_list = SnomProvider.can_lookup = False
    try:
        r = await client.post("/providers/snom/reconcile", json={"server": 8})
    finally:
        SnomProvider.can_list = SnomProvider.can_lookup = True
    assert r.status_code == 400 and "cannot reconcile" in r.json()["error"]
    r = await client.post("/providers/nope/reconcile", json={"server": 8})
    assert r.status_code == 404


async def test_reconcile_reports_a_wiped_setting_server_as_drift(env: Start) -> None:
    """The endpoint is there and ours, but its setting_server was wiped (or emptied) in the
    portal: the phone would be sent nowhere. A drift, which a repair fixes."""
    _, sandbox, client, _ = await env()
    await registered(client, MACS)
    portal = httpx.AsyncClient(base_url=sandbox.base_url)
    try:
        for mac, manager in ((MACS[0], {}),
                             (MACS[1], {SETTING_SERVER_UUID: {"value": "",
                                                              "attrs": {"perm": "RW"}}})):
            r = await portal.put(f"/_sandbox/endpoints/{DEMO_COMPANY_ID}/{mac.lower()}",
                                 json={"autoprovisioning_enabled": True,
                                       "settings_manager": manager})
            assert r.status_code == 200, r.text
    finally:
        await portal.aclose()
    job = await reconcile(client, repair=True)
    result = job["result"]
    assert result["drift"] == [{"mac": mac, "expected": URL8, "found": None, "ours": True}
                               for mac in MACS[:2]]
    assert result["counts"]["drift"] == 2 and result["missing"] == []
    assert result["counts"]["repair_events"] == 2

    async def repaired() -> bool:
        return (await client.get(f"/jobs/{job['id']}")).json()["events"] == {"done": 2}

    await wait_for(repaired)
    endpoints = sandbox.state.endpoints(DEMO_COMPANY_ID)
    assert [endpoints[m.lower()]["settings_manager"][SETTING_SERVER_UUID]["value"]
            for m in MACS] == [URL8] * 3


async def test_repoint_a_server(env: Start) -> None:
    _, sandbox, client, _ = await env()
    await registered(client, MACS)
    r = await client.put("/providers/snom/credentials/8", json={
        "access_key_id": "demo-key", "access_key_secret": "demo-secret",
        "provisioning_url": "https://new.test/ztprov/{server}/"})
    assert r.status_code == 204
    r = await client.post("/servers/8/repoint", json={"provider": "snom"})
    assert r.status_code == 202
    job = await job_done(client, r.json()["job"])
    assert job["result"]["counts"] == {"devices": 3, "queued": 3}

    async def pushed() -> bool:
        events = (await client.get(f"/jobs/{job['id']}")).json()["events"]
        return events == {"done": 3}

    await wait_for(pushed)
    endpoints = sandbox.state.endpoints(DEMO_COMPANY_ID)
    assert {endpoints[m.lower()]["settings_manager"][SETTING_SERVER_UUID]["value"]
            for m in MACS} == {"https://new.test/ztprov/8/"}
    r = await client.post("/servers/8/repoint", json={"provider": "nope"})
    assert r.status_code == 400


async def test_repoint_a_tenant_with_only_its_url_in_master_mode(env: Start) -> None:
    """In master mode a server's ``provisioning_url`` is stored on its own (server 1's keys,
    here rps.ini's, serve every server); a server's stored keys are kept by such a PUT."""
    _, sandbox, client, _ = await env()
    assert (await post(client, "add", mac=MACS[0], server=11))["state"] == "done"
    r = await client.put("/providers/snom/credentials/11",
                         json={"provisioning_url": "https://t11.test/ztprov/{server}/"})
    assert r.status_code == 204, r.text
    r = await client.get("/providers/snom/credentials/11")
    assert r.json() == {"provider": "snom", "server": 11, "access_key_id": None,
                        "access_key_secret_set": False,
                        "provisioning_url": "https://t11.test/ztprov/{server}/"}
    r = await client.post("/servers/11/repoint", json={"provider": "snom"})
    job = await job_done(client, r.json()["job"])

    async def pushed() -> bool:
        return (await client.get(f"/jobs/{job['id']}")).json()["events"] == {"done": 1}

    await wait_for(pushed)
    endpoint = sandbox.state.endpoints(DEMO_COMPANY_ID)[MACS[0].lower()]
    assert endpoint["settings_manager"][SETTING_SERVER_UUID]["value"] == \
        "https://t11.test/ztprov/11/"
    # Stored keys stay when only the URL changes; a bad URL is refused, naming the field.
    r = await client.put("/providers/snom/credentials/1", json={
        "access_key_id": "demo-key", "access_key_secret": "demo-secret"})
    assert r.status_code == 204
    r = await client.put("/providers/snom/credentials/1",
                         json={"provisioning_url": "https://t1.test/ztprov/"})
    assert r.status_code == 204
    r = await client.get("/providers/snom/credentials/1")
    assert (r.json()["access_key_id"], r.json()["access_key_secret_set"],
            r.json()["provisioning_url"]) == ("demo-key", True, "https://t1.test/ztprov/")
    r = await client.put("/providers/snom/credentials/11", json={"provisioning_url": "nope"})
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "provisioning_url"


async def test_extra_settings_of_a_server(env: Start) -> None:
    _, sandbox, client, _ = await env()
    r = await client.put("/servers/8/settings/snom", json={"settings": {
        "firmware_status": "https://fw.test/d7.xml", "update_policy": "auto_update"}})
    assert r.status_code == 204
    r = await client.get("/servers/8/settings/snom")
    assert r.json()["settings"]["update_policy"] == "auto_update"
    # The event's own settings win over the server's.
    r = await client.post("/events", json={"action": "add", "provider": "snom",
                                           "mac": MACS[0], "server": 8,
                                           "settings": {"update_policy": "settings_only"}})
    [row] = await wait_events(client, [r.json()["events"][0]["id"]])
    assert row["state"] == "done", row
    manager = sandbox.state.endpoints(DEMO_COMPANY_ID)[MACS[0].lower()]["settings_manager"]
    assert manager[setting_uuid("firmware_status", "phone-settings")]["value"] == \
        "https://fw.test/d7.xml"
    assert manager[setting_uuid("update_policy", "phone-settings")]["value"] == \
        "settings_only"
    r = await client.put("/servers/8/settings/snom", json={"settings": {"bogus_name": "1"}})
    assert r.status_code == 204  # names are checked against the catalogue when pushed
    row = await post(client, "add", mac=MACS[1])
    assert row["state"] == "failed" and "'bogus_name'" in row["last_error"]
    r = await client.put("/servers/8/settings/snom", json={"settings": {"a": 1}})
    assert r.status_code == 400


async def test_replace_a_phone(env: Start) -> None:
    _, sandbox, client, _ = await env()
    r = await client.post("/events", json={"action": "add", "provider": "snom", "mac": MACS[0],
                                           "server": 8, "model": "D785", "name": "Reception",
                                           "extension": "101"})
    await wait_events(client, [r.json()["events"][0]["id"]])
    sandbox.state.reset_counts()
    r = await client.post(f"/devices/snom/{MACS[0]}/replace", json={"new_mac": MACS[1]})
    assert r.status_code == 202, r.text
    events = r.json()["events"]
    assert [(e["action"], e["mac"], e["server"]) for e in events] == [
        ("remove", MACS[0], 8), ("add", MACS[1], 8)]
    rows = await wait_events(client, [e["id"] for e in events])
    assert [row["state"] for row in rows] == ["done", "done"]
    new = (await client.get(f"/devices/snom/{MACS[1]}")).json()
    assert (new["name"], new["model"], new["extension"], new["server"]) == (
        "Reception", "D785", "101", 8)
    old = (await client.get(f"/devices/snom/{MACS[0]}")).json()
    assert old["status"] == "unregistered"
    endpoints = sandbox.state.endpoints(DEMO_COMPANY_ID)
    assert MACS[0].lower() not in endpoints and MACS[1].lower() in endpoints
    # In that order: the old phone's DELETE came before any call for the new one.
    paths = [record.path for record in sandbox.state.records]
    delete = next(i for i, r in enumerate(sandbox.state.records) if r.method == "DELETE")
    assert all(MACS[1].lower() not in path for path in paths[:delete])
    r = await client.post("/devices/snom/000413F0AAAA/replace", json={"new_mac": MACS[2]})
    assert r.status_code == 404
    r = await client.post(f"/devices/snom/{MACS[1]}/replace", json={"new_mac": MACS[1]})
    assert r.status_code == 400


@pytest.mark.timeout(60)
async def test_periodic_reconcile_warns_of_drift(env: Start) -> None:
    e = await env(general={"reconcile_interval": 0.001})  # every 3.6 s
    client, log_path = e[2], e[3]
    await registered(client, MACS)
    behind_our_back(e)

    async def warned() -> bool:
        return "WARNING (RECONCILE): Drift found." in log_path.read_text()

    await wait_for(warned, timeout=40)
    line = next(li for li in log_path.read_text().splitlines() if "Drift found" in li)
    assert f"Mac={MACS[1]}" in line and "Found=https://elsewhere.test/" in line
    await asyncio.sleep(0)
