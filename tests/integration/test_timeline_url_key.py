"""A URL-key vendor's timeline (docs/timeline.md): Panasonic, an XML-RPC service whose
faults are the calls' status, and whose phones prove who they are by the key in the URL."""

# Tests take the imported ``daemon`` fixture as a parameter: not a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.integration.rpc_helpers import folder, key_of, phone_get, tenant, wrong_secret
from tests.integration.test_vendor_contract import Env
from tests.integration.test_vendor_contract import env as daemon  # noqa: F401

Start = Callable[..., Awaitable[Env]]
MAC = "0080F0A1B2C3"
AGENT = f"Panasonic_KX-HDV130/01.133 ({MAC.lower()})"


@pytest.fixture
def vendor() -> str:
    return "panasonic"


async def entries(e: Env) -> list[dict[str, Any]]:
    r = await e.api.get(f"/devices/panasonic/{MAC}/timeline")
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


async def test_a_fault_is_the_calls_status(daemon: Start) -> None:
    e = await daemon(provisioning_url="ftp://ztp.test/ztprov/{server}/")
    assert (await e.post("add", MAC))["state"] == "failed"
    found = await entries(e)
    calls = [c for c in found if c["kind"] == "call"]
    assert calls[-1]["status"] == "fault 100" and calls[-1]["method"] == "POST"
    assert found[-1]["kind"] == "outcome" and found[-1]["state"] == "failed"
    assert "fault 100" in found[-1]["message"]


async def test_the_phone_by_its_url_key(daemon: Start) -> None:
    e = await daemon()
    assert (await e.post("add", MAC))["state"] == "done"
    await tenant(e)
    url, key = await key_of(e, MAC)
    name = f"Config{MAC}.cfg"
    assert (await phone_get(e, folder(url) + name, AGENT)).status_code == 200
    assert (await phone_get(e, folder(wrong_secret(url, key)) + name, AGENT)).status_code \
        == 403
    other = "Panasonic_KX-HDV130/01.133 (0080f0a1b2c4)"
    assert (await phone_get(e, folder(url) + name, other)).status_code == 403
    assert (await e.post("remove", MAC))["state"] == "done"
    assert (await phone_get(e, folder(url) + name, AGENT)).status_code == 403
    found = await entries(e)
    fetches = [(f["result"], f["reason"], f["model"]) for f in found if f["kind"] == "fetch"]
    assert fetches == [(200, None, "KX-HDV130"), (403, "wrong password", "KX-HDV130"),
                       (403, "MAC mismatch", "KX-HDV130"), (403, "device removed", "KX-HDV130")]
    text = json.dumps(found)
    assert key not in text and key[12:] not in text  # only its selector, as rps.log shows
