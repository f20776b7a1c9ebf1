"""Auerswald end to end (daemon + emulator + MariaDB), beyond the vendor contract: refusals
told apart by the look-up that follows them, and the phone's side under the URL key
(``<mac>.xml``, the unreplaced ``<MACADR>.xml``, the provisioning-xml, a wrong key).
"""

# Tests take the imported ``daemon`` fixture as a parameter: not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import pytest

from tests.integration.rpc_helpers import folder, key_of, log_text, phone_get, tenant, wrong_secret
from tests.integration.test_vendor_contract import TENANT_USER, Env

# The contract's fixture (one daemon, its vendor's emulator, MariaDB) under the name the
# tests ask for; the ``vendor`` fixture below gives it this module's vendor.
from tests.integration.test_vendor_contract import env as daemon  # noqa: F401

Start = Callable[..., Awaitable[Env]]
MAC = "000952A1B2C3"
AGENT = f"Auerswald COMfortel D-200 2.8A {MAC}"


@pytest.fixture
def vendor() -> str:
    return "auerswald"


async def test_a_refused_url_for_a_mac_we_hold_is_a_plain_refusal(daemon: Start) -> None:
    e = await daemon(provisioning_url="ftp://ztp.test/ztprov/{server}/")
    e.emulator.register("demo-user", MAC.lower(), "https://old.test/prov/<MACADR>.xml")
    row = await e.post("add", MAC)
    assert (row["state"], row["attempts"]) == ("failed", 1), row
    assert "refused DeviceRegister (answered False)" in row["last_error"]
    assert "stays registered to this account with its previous URL" in row["last_error"]
    held = e.emulator.holds(MAC)
    assert held is not None and held.url == "https://old.test/prov/<MACADR>.xml"


async def test_a_refused_mac_we_do_not_hold_reads_as_anothers(daemon: Start) -> None:
    e = await daemon()
    row = await e.post("add", e.emulator.foreign_mac)
    assert "DeviceInfo does not show the MAC in this account" in row["last_error"]


async def test_remove_of_a_mac_we_do_not_hold_is_done(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    e.emulator.deregister(MAC)
    assert (await e.post("remove", MAC))["state"] == "done"
    assert (await e.device(MAC))["status"] == "unregistered"
    # Another account's MAC: Auerswald cannot say whose it is; ours it is not.
    assert (await e.post("remove", e.emulator.foreign_mac))["state"] == "done"
    assert e.emulator.owner(e.emulator.foreign_mac) == "other-user"
    assert "Not registered in this account, nothing to remove" in log_text(e)


async def test_the_phone_fetches_its_provisioning_xml(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    await tenant(e)
    url, key = await key_of(e, MAC)
    assert url.endswith(f"/{key}/<MACADR>.xml")
    base = folder(url)
    for name in (f"{MAC.lower()}.xml", quote("<MACADR>.xml")):
        r = await phone_get(e, base + name, AGENT)
        assert r.status_code == 200, (name, r.text)
        assert r.headers["content-type"].startswith("application/xml")
        root = ET.fromstring(r.content)  # noqa: S314 - our own output
        assert root.findtext("provisioning/redirect") == "false"
        target = root.findtext("provisioning/url") or ""
        assert target.startswith(f"https://{TENANT_USER}:")
        assert "@pbx.test/prov/<MACADR>.xml?tenant=8&a=<b>" in target
    assert (await phone_get(e, f"{base}prov.xml", AGENT)).status_code == 404
    device = await e.device(MAC)
    assert (device["ztp_model"], device["ztp_firmware"]) == ("D-200", "2.8A")


async def test_a_wrong_key_is_refused(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    url, key = await key_of(e, MAC)
    r = await phone_get(e, folder(wrong_secret(url, key)) + f"{MAC}.xml", AGENT)
    assert r.status_code == 403
    # Removed: the right key is refused too.
    assert (await e.post("remove", MAC))["state"] == "done"
    assert (await phone_get(e, folder(url) + f"{MAC}.xml", AGENT)).status_code == 403


async def test_test_button(daemon: Start) -> None:
    e = await daemon()
    r = await e.api.post("/providers/auerswald/test", json={"server": 8})
    assert r.json() == {"ok": True, "message": (
        "Auerswald redirection accepted the login demo-user (DeviceInfo answered a look-up "
        "of a MAC no phone has); whether the account may redirect phones is not verified: "
        "it shows only at the first add")}
