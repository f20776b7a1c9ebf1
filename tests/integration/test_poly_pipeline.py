"""Poly ZTP beyond the vendor contract: the daemon (real MariaDB) against the Poly emulator.

One profile per server, created once and found again after a restart, updated when the
server's URL changes; a MAC in another of our own profiles moved into ours; a device moved
to another server; the phone fetching both of its files with the server's shared login.
Then the emulator's own strictness, straight over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from rps_service.sandbox import start_sandbox
from rps_service.sandbox.poly import DEMO_API_KEY, FOREIGN_MAC, OTHER_API_KEY, PolyEmulator
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import SandboxState
from rps_service.service import Service
from tests.conftest import SECRETS
from tests.integration.daemons import Daemons
from tests.integration.test_pipeline import wait_events, wait_for

SECRETS.update({DEMO_API_KEY, OTHER_API_KEY})
TENANT_PASSWORD = "poly-tenant-secret-1"
SECRETS.add(TENANT_PASSWORD)
MAC1, MAC2, MAC3 = "0004F2000101", "0004F2000102", "0004F2000103"
AGENT = "FileTransport PolycomVVX-VVX_450-UA/6.4.6.2116 Type/Application"


@dataclass
class Daemon:
    service: Service
    api: httpx.AsyncClient
    log_path: Path

    async def post(self, action: str, mac: str, server: int = 8) -> dict[str, Any]:
        r = await self.api.post("/events", json={"action": action, "provider": "poly",
                                                 "mac": mac, "server": server})
        assert r.status_code == 202, r.text
        [row] = await wait_events(self.api, [r.json()["events"][0]["id"]])
        return row

    async def access(self, mac: str) -> tuple[str | None, str | None, str | None]:
        row = await self.service.store.get_device("poly", mac)
        assert row is not None
        return row.url, row.http_username, row.http_password

    async def stop(self) -> None:
        await self.service.stop()


@dataclass
class World:
    sandbox: RunningSandbox
    emulator: PolyEmulator
    start: Callable[[], Awaitable[Daemon]]

    def profiles(self) -> dict[str, dict[str, Any]]:
        """The demo organization's profiles by name."""
        org = self.emulator.organizations["demo"]
        return {p["name"]: p for p in org.profiles.values()}

    def server_of(self, name: str) -> dict[str, Any]:
        return dict(self.profiles()[name]["template"]["provisioning"]["server"])

    def count(self, method: str, route: str) -> int:
        return self.sandbox.state.counts[(method, route)]


@pytest.fixture
async def world(daemons: Daemons) -> World:
    sandbox = await start_sandbox(SandboxState())
    daemons.sandboxes.append(sandbox)  # closed with the daemons
    emulator = sandbox.state.emulators["poly"]
    assert isinstance(emulator, PolyEmulator)

    async def start() -> Daemon:
        d = await daemons.start("poly", sandbox=sandbox, general={"retry_cap": 2, "queuenum": 4})
        return Daemon(d.service, d.api, d.log_path)

    return World(sandbox, emulator, start)


async def test_one_profile_per_server_found_again_after_a_restart(world: World) -> None:
    first = await world.start()
    for mac in (MAC1, MAC2):
        assert (await first.post("add", mac))["state"] == "done"
    assert world.count("POST", "poly-profiles") == 1
    [profile] = world.profiles().values()
    assert profile["name"] == "rps-8"
    assert world.emulator.holds(MAC1) == world.emulator.holds(MAC2)  # the same profile
    _, user, password = await first.access(MAC1)
    assert await first.access(MAC2) == ("https://ztp.test/ztprov/8/", user, password)
    assert world.server_of("rps-8") == {"address": "https://ztp.test/ztprov/8/",
                                        "username": user, "password": password}
    await first.stop()

    second = await world.start()  # a new daemon: same database, same Poly account
    assert (await second.post("add", MAC3))["state"] == "done"
    assert world.count("POST", "poly-profiles") == 1  # found by name, not created again
    assert list(world.profiles()) == ["rps-8"]
    held = world.emulator.holds(MAC3)
    assert held is not None and held.extra["profile"] == profile["id"]
    assert (held.username, held.password) == (user, password)


async def test_a_changed_provisioning_url_updates_the_profile(world: World) -> None:
    daemon = await world.start()
    assert (await daemon.post("add", MAC1))["state"] == "done"
    r = await daemon.api.put("/providers/poly/credentials/8", json={
        "api_key": DEMO_API_KEY, "provisioning_url": "https://new.test/ztprov/8/"})
    assert r.status_code == 204
    assert (await daemon.post("add", MAC2))["state"] == "done"
    assert world.count("POST", "poly-profiles") == 1
    assert world.count("PUT", "poly-profile") == 1
    # The profile is shared: the earlier phone is sent to the new URL as well.
    for mac in (MAC1, MAC2):
        held = world.emulator.holds(mac)
        assert held is not None and held.url == "https://new.test/ztprov/8/"
    assert "Profile updated" in daemon.log_path.read_text()


async def test_two_servers_get_two_profiles_and_two_logins(world: World) -> None:
    daemon = await world.start()
    assert (await daemon.post("add", MAC1, server=8))["state"] == "done"
    assert (await daemon.post("add", MAC2, server=9))["state"] == "done"
    assert sorted(world.profiles()) == ["rps-8", "rps-9"]
    url8, user8, password8 = await daemon.access(MAC1)
    url9, user9, password9 = await daemon.access(MAC2)
    assert (url8, url9) == ("https://ztp.test/ztprov/8/", "https://ztp.test/ztprov/9/")
    assert user8 != user9 and password8 != password9
    assert world.server_of("rps-9")["username"] == user9


async def test_a_mac_in_another_of_our_profiles_is_moved_into_ours(world: World) -> None:
    # A phone migrated in: an administrator put it in a profile of the same account.
    world.emulator.portal_claim(MAC1, "migrated", "https://old-pbx.test/prov/")
    daemon = await world.start()
    row = await daemon.post("add", MAC1)
    assert row["state"] == "done", row
    held = world.emulator.holds(MAC1)
    assert held is not None and held.extra["name"] == "rps-8"
    assert world.sandbox.state.history[MAC1.lower()] == [
        ("DELETE", None), ("POST", "https://ztp.test/ztprov/8/")]
    assert "Moving device to our profile" in daemon.log_path.read_text()
    # Another organization's MAC is still refused, with nothing deleted.
    row = await daemon.post("add", FOREIGN_MAC)
    assert row["state"] == "failed"
    assert "The MAC belongs to another Poly ZTP account" in row["last_error"]
    assert FOREIGN_MAC.lower() not in world.sandbox.state.history


async def test_a_device_moved_to_another_server_gets_that_servers_login(world: World) -> None:
    daemon = await world.start()
    assert (await daemon.post("add", MAC2, server=9))["state"] == "done"
    assert (await daemon.post("add", MAC1, server=8))["state"] == "done"
    before8 = world.server_of("rps-8")
    assert (await daemon.post("add", MAC1, server=9))["state"] == "done"
    held = world.emulator.holds(MAC1)
    assert held is not None and held.extra["name"] == "rps-9"
    # Profile rps-9 still holds server 9's login (the one MAC2 has), not server 8's.
    _, user9, password9 = await daemon.access(MAC2)
    assert (held.username, held.password) == (user9, password9)
    assert world.server_of("rps-9")["username"] == user9
    assert world.server_of("rps-8") == before8
    assert await daemon.access(MAC1) == ("https://ztp.test/ztprov/9/", user9, password9)


async def test_the_phone_fetches_its_files_with_the_servers_login(world: World) -> None:
    daemon = await world.start()
    for mac, server in ((MAC1, 8), (MAC2, 8), (MAC3, 9)):
        assert (await daemon.post("add", mac, server))["state"] == "done"
    r = await daemon.api.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/", "http_user": "tenant8",
        "http_password": TENANT_PASSWORD})
    assert r.status_code == 204
    held = world.emulator.holds(MAC1)
    assert held is not None and held.username and held.password
    assert daemon.service.ztp is not None
    base = f"http://{daemon.service.ztp.address}/ztprov/8/"
    login = httpx.BasicAuth(held.username, held.password)
    async with httpx.AsyncClient(base_url=base, headers={"User-Agent": AGENT},
                                 timeout=10) as phone:
        assert (await phone.get("0004f2000101.cfg")).status_code == 401
        master = await phone.get("0004f2000101.cfg", auth=login)
        assert master.status_code == 200
        root = ElementTree.fromstring(master.content)  # noqa: S314 - our own answer
        assert root.tag == "APPLICATION"
        settings_file = root.attrib["CONFIG_FILES"]
        assert settings_file == "0004f2000101-rps.cfg"
        r = await phone.get(settings_file, auth=login)
        assert r.status_code == 200
        [params] = ElementTree.fromstring(r.content)  # noqa: S314 - our own answer
        assert (params.attrib["device.prov.serverName"], params.attrib["device.prov.user"],
                params.attrib["device.prov.password"]) == (
            "https://pbx.test/prov/", "tenant8", TENANT_PASSWORD)
        # The firmware, override files and log uploads are not ours to serve.
        # No MAC in it: the login itself tells whose it is; nothing to serve, no failure.
        assert (await phone.get("sip.ld", auth=login)).status_code == 404
        assert (await phone.get("0004f2000101-phone.cfg", auth=login)).status_code == 404
        assert (await phone.put("0004f2000101-app.log", auth=login)).status_code == 405
        # The login is the server's: it opens the files of the server's other phones too
        # (documented), but no other server's and no unknown MAC's.
        assert (await phone.get("0004f2000102-rps.cfg", auth=login)).status_code == 200
        assert (await phone.get("0004f2000103-rps.cfg", auth=login)).status_code == 401
        assert (await phone.get("0004f2000199-rps.cfg", auth=login)).status_code == 401

    async def fetched() -> bool:
        row = await daemon.service.store.get_device("poly", MAC1)
        return row is not None and row.ztp_fetched_at is not None

    await wait_for(fetched)
    row = await daemon.service.store.get_device("poly", MAC1)
    assert row is not None and (row.ztp_model, row.ztp_firmware) == ("VVX450", "6.4.6.2116")


async def test_a_device_already_gone_at_poly_is_removed(world: World) -> None:
    daemon = await world.start()
    assert (await daemon.post("add", MAC1))["state"] == "done"
    del world.emulator.devices[MAC1.lower()]  # released in the portal meanwhile
    assert (await daemon.post("remove", MAC1))["state"] == "done"
    row = await daemon.service.store.get_device("poly", MAC1)
    assert row is not None and row.status == "unregistered" and not row.http_password


# -- the emulator ------------------------------------------------------------------------------


@pytest.fixture
async def poly() -> AsyncIterator[tuple[httpx.AsyncClient, PolyEmulator]]:
    sandbox = await start_sandbox(SandboxState())
    emulator = sandbox.state.emulators["poly"]
    assert isinstance(emulator, PolyEmulator)
    async with httpx.AsyncClient(base_url=emulator.api_url(sandbox.base_url) + "/",
                                 headers={"API-KEY": DEMO_API_KEY}) as client:
        yield client, emulator
    await sandbox.close()


PROFILE = {"name": "p", "enabled": True, "template": {"provisioning": {"server": {
    "address": "https://pbx.test/ztprov/8/", "username": "u", "password": "pw-123"}}}}


async def test_emulator_refuses_a_missing_or_wrong_key(
    poly: tuple[httpx.AsyncClient, PolyEmulator]
) -> None:
    client, _ = poly
    for headers in ({"API-KEY": ""}, {"API-KEY": "wrong"}):
        r = await client.get("profiles", headers=headers)
        assert (r.status_code, r.json()) == (401, {"message": "Unauthorized"})
    r = await client.get("no-such-route", headers={"API-KEY": "wrong"})
    assert r.status_code == 401


@pytest.mark.parametrize(("body", "message"), [
    ({**PROFILE, "colour": "red"}, "Unknown field: colour"),
    ({**PROFILE, "enabled": "yes"}, "Invalid type for enabled"),
    ({"name": "p", "template": {"provisioning": {"server": {"address": "ftp.test"}}}},
     "template.provisioning.server.address must be an http(s) URL"),
    ({"name": "p", "template": {"provisioning": {"server": {
        "address": "https://x.test/", "realm": "r"}}}},
     "Unknown field: template.provisioning.server.realm"),
    ({"template": PROFILE["template"]}, "name is required (1 to 128 characters)"),
])
async def test_emulator_validates_profiles(
    poly: tuple[httpx.AsyncClient, PolyEmulator], body: dict[str, Any], message: str
) -> None:
    client, _ = poly
    r = await client.post("profiles", json=body)
    assert (r.status_code, r.json()) == (400, {"message": message})


async def test_emulator_profiles_and_claims(
    poly: tuple[httpx.AsyncClient, PolyEmulator]
) -> None:
    client, emulator = poly
    first = (await client.post("profiles", json=PROFILE)).json()["id"]
    second = (await client.post("profiles", json={**PROFILE, "name": "q"})).json()["id"]
    listed = (await client.get("profiles")).json()["results"]
    assert [p["name"] for p in listed] == ["p", "q"]
    assert listed[0]["template"]["provisioning"]["server"]["password"] == "pw-123"
    emulator.show_passwords = False
    shown = (await client.get(f"profiles/{first}")).json()
    assert "password" not in shown["template"]["provisioning"]["server"]

    assert (await client.post("devices", json={"id": "0004F2000001", "profile": first})
            ).status_code == 200
    # Claimed, in the same words, whoever holds the MAC: this profile, another of ours,
    # another organization.
    for body in ({"id": "0004f2000001", "profile": first},
                 {"id": "0004f2000001", "profile": second},
                 {"id": FOREIGN_MAC, "profile": first}):
        r = await client.post("devices", json=body)
        assert (r.status_code, r.json()) == (
            409, {"message": "Device claimed by another organization"})
    assert (await client.post("devices", json={"id": "0004f2000002", "profile": "nope"})
            ).status_code == 400
    assert (await client.post("devices", json={"id": "00:04:f2:00:00:02", "profile": first})
            ).status_code == 400
    assert (await client.get("devices/0004f2000001")).json() == {
        "id": "0004f2000001", "profileid": first}
    assert (await client.get(f"devices/{FOREIGN_MAC}")).status_code == 404
    assert (await client.delete(f"devices/{FOREIGN_MAC}")).status_code == 409
    assert (await client.delete("profiles/" + first)).status_code == 409  # it has a device
    assert (await client.delete("devices/0004f2000001")).status_code == 200
    assert (await client.delete("devices/0004f2000001")).status_code == 404


async def test_emulator_pages_devices_with_cursors(
    poly: tuple[httpx.AsyncClient, PolyEmulator]
) -> None:
    client, _ = poly
    pid = (await client.post("profiles", json=PROFILE)).json()["id"]
    macs = [f"0004f20000{i:02x}" for i in range(5)]
    for mac in macs:
        assert (await client.post("devices", json={"id": mac, "profile": pid})
                ).status_code == 200
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        page = (await client.get("devices", params=params)).json()
        seen += [d["id"] for d in page["results"]]
        assert all(d["profile"] == pid for d in page["results"])
        if page["next"] is None:
            break
        params = {"limit": "2", "cursor": page["next"]}
    assert seen == macs  # the other organization's MAC is not listed
    assert (await client.get("devices", params={"limit": "0"})).status_code == 400
    assert (await client.get("devices", params={"cursor": "!!"})).status_code == 400
