"""Snom legacy XML-RPC end to end (daemon + emulator + MariaDB), beyond the vendor contract:
each ``Error:…`` answer through the daemon, re-pointing with the same key, and the phone's
side under the URL key (Snom's own file names, a wrong key, a MAC that is not the phone's).
"""

# Tests take the imported ``daemon`` fixture as a parameter: not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

import pytest

from tests.integration.rpc_helpers import (
    folder,
    key_of,
    log_text,
    phone_get,
    store_provisioning_url,
    tenant,
    wrong_secret,
)
from tests.integration.test_vendor_contract import TENANT_USER, Env

# The contract's fixture (one daemon, its vendor's emulator, MariaDB) under the name the
# tests ask for; the ``vendor`` fixture below gives it this module's vendor.
from tests.integration.test_vendor_contract import env as daemon  # noqa: F401

Start = Callable[..., Awaitable[Env]]
MAC = "000413A1B2C3"


@pytest.fixture
def vendor() -> str:
    return "snom-xmlrpc"


def agent(mac: str = MAC) -> str:
    return f"Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004 {mac} SXM:0 UXM:0)"


async def test_a_malformed_url_fails_at_once_naming_the_setting(daemon: Start) -> None:
    e = await daemon(provisioning_url="ftp://ztp.test/ztprov/{server}/")
    row = await e.post("add", MAC)
    assert (row["state"], row["attempts"]) == ("failed", 1), row
    assert "refused the URL as malformed (Error:malformed_url)" in row["last_error"]
    assert "provisioning_url of [snom-xmlrpc]" in row["last_error"]
    assert e.emulator.holds(MAC) is None


async def test_remove_of_a_mac_the_vendor_no_longer_holds_is_done(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    e.emulator.deregister(MAC)  # gone at Snom behind the daemon's back
    row = await e.post("remove", MAC)
    assert row["state"] == "done", row
    assert (await e.device(MAC))["status"] == "unregistered"


async def test_remove_of_another_accounts_mac_fails(daemon: Start) -> None:
    e = await daemon()
    row = await e.post("remove", e.emulator.foreign_mac)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "The MAC belongs to another Snom redirection account" in row["last_error"]
    assert e.emulator.owner(e.emulator.foreign_mac) == "other-user"


async def test_repoint_overwrites_with_the_same_key(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    first, key = await key_of(e, MAC)
    await store_provisioning_url(e, "https://ztp2.test/ztprov/{server}/")
    assert (await e.post("add", MAC))["state"] == "done"
    held = e.emulator.holds(MAC)
    assert held is not None and held.url == f"https://ztp2.test/ztprov/8/{key}/" != first
    assert e.sandbox.state.history[MAC.lower()] == [("PUT", first), ("PUT", held.url)]


async def test_the_phone_fetches_its_snom_file_under_the_key(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    await tenant(e)
    url, key = await key_of(e, MAC)
    base = folder(url)
    assert base.endswith(f"/{key}/")
    # The model file first (404 once the key is accepted), then its own file.
    assert (await phone_get(e, f"{base}snomD785.htm", agent())).status_code == 404
    r = await phone_get(e, f"{base}snomD785-{MAC}.htm", agent())
    assert r.status_code == 200, r.text
    root = ET.fromstring(r.content)  # noqa: S314 - our own output
    assert root.findtext("phone-settings/http_client_user") == TENANT_USER
    assert (await phone_get(e, f"{base}{MAC.lower()}.xml", agent())).status_code == 200
    device = await e.device(MAC)
    assert (device["ztp_model"], device["ztp_firmware"]) == ("D785", "10.1.33.33")


async def test_a_wrong_key_or_another_phones_mac_is_refused(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    await tenant(e)
    url, key = await key_of(e, MAC)
    wrong = folder(wrong_secret(url, key))
    assert (await phone_get(e, f"{wrong}snomD785-{MAC}.htm", agent())).status_code == 403
    other = "000413A1B2C4"
    r = await phone_get(e, f"{folder(url)}snomD785-{other}.htm", agent(other))
    assert r.status_code == 403
    text = log_text(e)
    assert (f"WARNING (ZTP): Authentication failed. Ip=127.0.0.1 User=- "
            f"File={folder(url).replace(key, key[:12] + '***')}snomD785-{MAC}.htm "
            f"Key={key[:12]}*** "
            "Reason=unknown or revoked URL key") in text
    assert f"User-Agent MAC differs from the path. Ip=127.0.0.1 Mac={MAC} Ua_mac={other}" in text
    assert key[12:] not in text


async def test_test_button(daemon: Start) -> None:
    e = await daemon()
    r = await e.api.post("/providers/snom-xmlrpc/test", json={"server": 8})
    assert r.json() == {"ok": True, "message": (
        "Snom redirection accepted the login demo-user (network.echo answered without a "
        "fault); whether the account may redirect phones is not verified: it shows only at "
        "the first add")}
