"""Panasonic end to end (daemon + emulator + MariaDB), beyond the vendor contract: the fault
codes through the daemon, and the phone's side under the URL key (``Config<MAC>.cfg``, the
unexpanded ``Config{MAC}.cfg``, the Standard Format File, a wrong key).
"""

# Tests take the imported ``daemon`` fixture as a parameter: not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import quote

import pytest

from rps_service.ztp.panasonic import HEADER
from tests.integration.rpc_helpers import (
    folder,
    key_of,
    log_text,
    phone_get,
    store_provisioning_url,
    tenant,
    wrong_secret,
)
from tests.integration.test_vendor_contract import TENANT_PASSWORD, TENANT_USER, Env

# The contract's fixture (one daemon, its vendor's emulator, MariaDB) under the name the
# tests ask for; the ``vendor`` fixture below gives it this module's vendor.
from tests.integration.test_vendor_contract import env as daemon  # noqa: F401

Start = Callable[..., Awaitable[Env]]
MAC = "0080F0A1B2C3"
AGENT = f"Panasonic_KX-HDV130/01.133 ({MAC.lower()})"


@pytest.fixture
def vendor() -> str:
    return "panasonic"


async def test_a_refused_url_fails_at_once_naming_the_setting(daemon: Start) -> None:
    e = await daemon(provisioning_url="ftp://ztp.test/ztprov/{server}/")
    row = await e.post("add", MAC)
    assert (row["state"], row["attempts"]) == ("failed", 1), row
    assert "refused the URL (fault 100: Invalid URL)" in row["last_error"]
    assert "provisioning_url of [panasonic]" in row["last_error"]


async def test_another_users_mac_on_add_and_remove(daemon: Start) -> None:
    e = await daemon()
    for action in ("add", "remove"):
        row = await e.post(action, e.emulator.foreign_mac)
        assert (row["state"], row["attempts"]) == ("failed", 1), row
        assert ("The MAC belongs to another Panasonic redirection account (fault 202"
                in row["last_error"])


async def test_remove_of_a_mac_panasonic_does_not_know_is_done(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    e.emulator.deregister(MAC)
    assert (await e.post("remove", MAC))["state"] == "done"
    assert (await e.device(MAC))["status"] == "unregistered"


async def test_repoint_keeps_the_key(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    _, key = await key_of(e, MAC)
    await store_provisioning_url(e, "https://ztp2.test/ztprov/{server}/")
    assert (await e.post("add", MAC))["state"] == "done"
    held = e.emulator.holds(MAC)
    assert held is not None
    assert held.url == f"https://ztp2.test/ztprov/8/{key}/Config{{MAC}}.cfg"


async def test_the_phone_fetches_its_standard_format_file(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    await tenant(e)
    url, key = await key_of(e, MAC)
    assert url.endswith(f"/{key}/Config{{MAC}}.cfg")
    base = folder(url)
    # As the phone asks once {MAC} is replaced, and literally when nobody replaced it.
    for name in (f"Config{MAC}.cfg", quote("Config{MAC}.cfg")):
        r = await phone_get(e, base + name, AGENT)
        assert r.status_code == 200, (name, r.text)
        assert r.headers["content-type"].startswith("text/plain")
        lines = r.text.split("\r\n")
        assert lines[0] == HEADER
        user = f"{TENANT_USER}:{quote(TENANT_PASSWORD, safe='')}"
        assert (f'CFG_STANDARD_FILE_PATH="https://{user}@pbx.test/prov/Config{{MAC}}.cfg'
                '?tenant=8&a=<b>"') in lines
    # Product and master files are not this device's: 404 once the key is accepted.
    assert (await phone_get(e, f"{base}ConfigKX-HDV130.cfg", AGENT)).status_code == 404
    device = await e.device(MAC)
    assert (device["ztp_model"], device["ztp_firmware"]) == ("KX-HDV130", "01.133")


async def test_a_wrong_key_is_refused_and_logged(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    await tenant(e)
    url, key = await key_of(e, MAC)
    r = await phone_get(e, folder(wrong_secret(url, key)) + f"Config{MAC}.cfg", AGENT)
    assert r.status_code == 403
    assert f"Key={key[:12]}*** Reason=unknown or revoked URL key" in log_text(e)
    # The right key with another phone's User-Agent MAC.
    other = f"Panasonic_KX-HDV130/01.133 ({'0080f0a1b2c4'})"
    assert (await phone_get(e, folder(url) + f"Config{MAC}.cfg", other)).status_code == 403


async def test_test_button(daemon: Start) -> None:
    e = await daemon()
    r = await e.api.post("/providers/panasonic/test", json={"server": 8})
    assert r.json() == {"ok": True, "message": (
        "Panasonic redirection accepted the login demo-user (ipredirect.checkPhones answered "
        "a look-up of a MAC no phone has); whether the account may redirect phones is not "
        "verified: it shows only at the first add")}
    bad = await daemon(credentials=e.emulator.wrong_credentials())
    r = await bad.api.post("/providers/panasonic/test", json={"server": 8})
    assert r.json()["ok"] is False and "401" in r.json()["message"]
