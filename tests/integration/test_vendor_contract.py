"""One contract for every vendor: the daemon (real MariaDB) against each sandbox emulator.

Parametrized over the emulators of ``rps_service.sandbox.registry`` (each names its
provider): add, re-add, remove, a MAC another account owns, a bad login, the Test button,
throttling (the rate limit and the account pause), and the phone fetching its file from
``/ztprov/`` with what the vendor handed it. A vendor module passes these before it lands.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from rps_service.access import AccessMode
from rps_service.providers.vendor import VendorProvider
from rps_service.sandbox.emulator import Emulator, Held
from rps_service.sandbox.registry import EMULATORS
from rps_service.sandbox.runner import RunningSandbox
from rps_service.service import Service
from rps_service.vendors import PROVIDERS, family_of
from tests.conftest import SECRETS
from tests.integration.daemons import Daemons
from tests.integration.test_pipeline import wait_events, wait_for

PROV_URL = "https://pbx.test/prov/?tenant=8&a=<b>"
TENANT_USER = "tenant8"
TENANT_PASSWORD = "t3nant&<pw>"


@dataclass
class Env:
    """A daemon with one vendor enabled, pointed at that vendor's emulator."""

    service: Service
    sandbox: RunningSandbox
    emulator: Emulator
    provider: type[VendorProvider]
    api: httpx.AsyncClient
    log_path: Path

    @property
    def name(self) -> str:
        return self.emulator.name

    async def post(self, action: str, mac: str, server: int = 8, **extra: Any
                   ) -> dict[str, Any]:
        event = {"action": action, "provider": self.name, "mac": mac, "server": server}
        if action == "add":
            event |= self.emulator.event_fields(mac)
        r = await self.api.post("/events", json={**event, **extra})
        assert r.status_code == 202, r.text
        [row] = await wait_events(self.api, [r.json()["events"][0]["id"]])
        return row

    async def device(self, mac: str) -> dict[str, Any]:
        r = await self.api.get(f"/devices/{self.name}/{mac}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def access(self, mac: str) -> dict[str, Any]:
        """What the database holds as sent to the vendor (url, username, password)."""
        row = await self.service.store.get_device(self.name, mac)
        assert row is not None
        return {"url": row.url, "username": row.http_username, "password": row.http_password}


@pytest.fixture(params=[cls.name for cls in EMULATORS])
def vendor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def env(daemons: Daemons, vendor: str) -> Callable[..., Awaitable[Env]]:
    async def _start(credentials: dict[str, Any] | None = None, **section: Any) -> Env:
        d = await daemons.start(vendor, credentials=credentials,
                                general={"retry_cap": 2, "queuenum": 4}, **section)
        return Env(d.service, d.sandbox, d.sandbox.state.emulators[vendor], PROVIDERS[vendor],
                   d.api, d.log_path)

    return _start


def assert_sent(env: Env, held: Held | None, device: dict[str, Any], access: dict[str, Any]
                ) -> None:
    """The vendor holds exactly what the database says was sent for the phone."""
    assert held is not None
    mode = env.provider.access
    if mode is AccessMode.NONE:  # nothing per device: the vendor's portal points phones
        return
    assert held.url == access["url"]
    if mode in (AccessMode.CREDENTIALS, AccessMode.SERVER):
        assert (held.username, held.password) == (access["username"], access["password"])
        assert len(access["password"]) >= 20
    if mode is AccessMode.URL_KEY:
        assert device["url_key_set"] is True
        assert held.username is None and held.password is None


async def test_add_readd_remove(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    mac = e.emulator.sample_mac(1)
    row = await e.post("add", mac)
    assert row["state"] == "done", row
    device = await e.device(mac)
    assert (device["status"], device["last_message"], device["server"]) == (
        "registered", "-", 8)
    first = await e.access(mac)
    assert_sent(e, e.emulator.holds(mac), device, first)

    assert (await e.post("add", mac))["state"] == "done"
    assert await e.access(mac) == first  # the same details, every time
    assert_sent(e, e.emulator.holds(mac), device, first)
    # What an operator reads through the API: what the vendor was given (for URL-key
    # vendors the URL with its key, no username or password).
    r = await e.api.get(f"/devices/{e.name}/{mac}/access")
    if e.provider.access is AccessMode.NONE:
        assert r.status_code == 404, r.text
    else:
        assert (r.status_code, r.json()) == (200, first)

    assert (await e.post("remove", mac))["state"] == "done"
    assert (await e.api.get(f"/devices/{e.name}/{mac}/access")).status_code == 404
    assert e.emulator.holds(mac) is None
    device = await e.device(mac)
    assert device["status"] == "unregistered" and device["http_password_set"] is False
    assert e.sandbox.state.overlaps == 0
    text = e.log_path.read_text()
    assert f"INFO ({e.provider.label}): Sending Request. Mac={mac} Url=" in text


async def test_mac_owned_by_another_account(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    mac = e.emulator.foreign_mac
    before = e.emulator.holds(mac)
    row = await e.post("add", mac)
    assert row["state"] == "failed" and row["attempts"] == 1, row
    assert f"The MAC belongs to another {e.provider.service} account" in row["last_error"]
    assert e.emulator.holds(mac) == before  # ours never held it
    device = await e.device(mac)
    assert device["status"] == "error"


async def test_extra_settings_only_where_the_vendor_takes_them(
        env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    mac = e.emulator.sample_mac(3)
    event = {"action": "add", "provider": e.name, "mac": mac, "server": 8,
             **e.emulator.event_fields(mac), "settings": {"update_policy": "auto_update"}}
    r = await e.api.post("/events", json=event)
    if e.provider.supports_settings:
        assert r.status_code == 202, r.text
        return
    assert r.status_code == 400, r.text
    [detail] = r.json()["details"]
    assert detail["field"] == "settings"
    assert detail["message"] == f"{e.provider.service} takes no extra settings"
    assert (await e.api.get(f"/devices/{e.name}/{mac}")).status_code == 404  # nothing stored


async def test_bad_login(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env(credentials=None)
    r = await e.api.post(f"/providers/{e.name}/test", json={"server": 8})
    assert r.json()["ok"] is True, r.json()
    await e.service.stop()  # the next daemon shares the database: only it may take events

    bad = await env(credentials=e.emulator.wrong_credentials())
    row = await bad.post("add", bad.emulator.sample_mac(2))
    assert row["state"] == "failed" and row["attempts"] == 1, row
    assert "check " in row["last_error"]  # names the keys to check
    r = await bad.api.post(f"/providers/{bad.name}/test", json={"server": 8})
    assert r.json()["ok"] is False


async def test_rate_limit_keeps_under_the_vendors_rate(
    env: Callable[..., Awaitable[Env]]
) -> None:
    e = await env(rate_limit=4)
    e.sandbox.state.throttle_rate = 6
    macs = [e.emulator.sample_mac(10 + i) for i in range(12)]
    rows = await asyncio.gather(*(e.post("add", mac) for mac in macs))
    assert all(r["state"] == "done" for r in rows), rows
    # Paced evenly, a quarter second apart: no second holds more than rate + 1 = 5
    # arrivals, and no burst (a send up to half an interval late keeps the next slot, so
    # a gap may shrink to an eighth of a second). The sandbox runs in the daemon's event
    # loop here: on a loaded machine a stall delays sends and arrivals alike and can bunch
    # them by a little, hence one short gap and up to two throttled answers of slack.
    arrivals = sorted(record.at for record in e.sandbox.state.records)
    assert all(later - first >= 1.0
               for first, later in zip(arrivals, arrivals[5:], strict=False)), arrivals
    gaps = [later - first for first, later in itertools.pairwise(arrivals)]
    assert sum(1 for gap in gaps if gap < 0.1) <= 1, gaps
    assert e.sandbox.state.throttled <= 2


async def test_throttling_pauses_the_whole_account(
    env: Callable[..., Awaitable[Env]]
) -> None:
    e = await env(rate_limit=1000)
    e.sandbox.state.throttle_rate = 5
    macs = [e.emulator.sample_mac(30 + i) for i in range(8)]
    rows = await asyncio.gather(*(e.post("add", mac) for mac in macs))
    assert all(r["state"] == "done" for r in rows), rows
    throttled = e.sandbox.state.throttled
    assert throttled > 0
    # Each throttling answer pauses every worker's calls: about one throttled request per
    # worker per pause, not one per event and retry.
    assert throttled <= 2 * len(macs), throttled
    assert "WARNING" in e.log_path.read_text() and "Account paused" in e.log_path.read_text()


async def test_phone_fetches_its_file(env: Callable[..., Awaitable[Env]]) -> None:
    e = await env()
    family = family_of(e.provider.name)
    if family is None:
        pytest.skip(f"{e.name} sends its phones nowhere of ours (documented)")
    mac = e.emulator.sample_mac(3)
    assert (await e.post("add", mac))["state"] == "done"
    r = await e.api.put("/servers/8/provisioning", json={
        "prov_url": PROV_URL, "http_user": TENANT_USER, "http_password": TENANT_PASSWORD})
    assert r.status_code == 204
    SECRETS.add(TENANT_PASSWORD)
    held = e.emulator.holds(mac)
    assert held is not None and held.url
    name, agent = family.sample_request(mac, "T46U")
    assert e.service.ztp is not None
    url = f"http://{e.service.ztp.address}{urlsplit(held.url).path}"
    if not url.endswith("/"):
        url = url.rsplit("/", 1)[0] + "/"
    auth = httpx.BasicAuth(held.username, held.password) if held.username else None
    async with httpx.AsyncClient(headers={"User-Agent": agent}, timeout=10) as phone:
        if auth is not None:
            assert (await phone.get(url + name)).status_code == 401
        r = await phone.get(url + name, auth=auth)
    assert r.status_code == 200, r.text
    assert "pbx.test/prov/" in r.text and TENANT_USER in r.text
    assert "content-length" in r.headers and r.headers["cache-control"] == "no-store"

    async def fetched() -> bool:
        return (await e.device(mac))["ztp_fetched_at"] is not None

    await wait_for(fetched)
    # A removed device's phone is refused at once.
    assert (await e.post("remove", mac))["state"] == "done"
    async with httpx.AsyncClient(headers={"User-Agent": agent}, timeout=10) as phone:
        r = await phone.get(url + name, auth=auth)
    assert r.status_code in (401, 403)


async def test_reconcile_agrees_with_what_was_registered(
    env: Callable[..., Awaitable[Env]]
) -> None:
    e = await env()
    if not (e.provider.can_list or e.provider.can_lookup):
        pytest.skip(f"{e.name} can neither list nor look up (documented)")
    macs = [e.emulator.sample_mac(50 + i) for i in range(2)]
    for mac in macs:
        assert (await e.post("add", mac))["state"] == "done"
    r = await e.api.post(f"/providers/{e.name}/reconcile", json={"server": 8})
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]

    async def finished() -> bool:
        job = (await e.api.get(f"/jobs/{job_id}")).json()
        return job["state"] in ("done", "failed")

    await wait_for(finished)
    job = (await e.api.get(f"/jobs/{job_id}")).json()
    assert job["state"] == "done", job
    counts = job["result"]["counts"]
    # What the vendor answers reads back as exactly what was sent: no false differences.
    assert (counts["database"], counts["missing"], counts["drift"]) == (2, 0, 0), job
    if e.provider.can_list:
        assert counts["vendor"] >= 2 and counts["orphan"] == 0, job
