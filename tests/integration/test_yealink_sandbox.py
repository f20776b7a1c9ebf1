"""The YMCS emulator is as strict as YMCS is known to be: a client that passes it speaks
the protocol (headers, tokens, bodies, ownership, the add-by-MAC permission, batches)."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import SandboxState
from rps_service.sandbox.yealink import YealinkEmulator
from rps_service.sandbox.ymcs import DEMO_KEY_ID, DEMO_SECRET, FOREIGN_MAC, OTHER_KEY_ID
from tests.conftest import SECRETS

SECRETS.update({DEMO_SECRET, "ymcs-other-secret"})
URL = "https://pbx.test/ztprov/8/"


def stamp(nonce: str | None = None, offset: float = 0.0) -> dict[str, str]:
    return {"timestamp": str(int((time.time() + offset) * 1000)),
            "nonce": nonce or secrets.token_hex(16)}


def basic(key_id: str = DEMO_KEY_ID, secret: str = DEMO_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()


class Ymcs:
    """A minimal, correct YMCS client for poking at the emulator."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.http = httpx.AsyncClient(base_url=f"{sandbox.base_url}/yealink", timeout=10)
        self.token = ""

    async def login(self, key_id: str = DEMO_KEY_ID, secret: str = DEMO_SECRET) -> httpx.Response:
        r = await self.http.post("/v2/token", json={"grant_type": "client_credentials"},
                                 headers={"Authorization": basic(key_id, secret), **stamp()})
        if r.status_code == 200:
            self.token = r.json()["access_token"]
        return r

    async def call(self, path: str, body: Any, **headers: str) -> httpx.Response:
        sent = {"Authorization": f"Bearer {self.token}", **stamp(), **headers}
        return await self.http.post(path, json=body, headers=sent)

    async def add(self, mac: str, **fields: str) -> httpx.Response:
        body = {"mac": mac, "sn": "3012345678901234", "uniqueServerUrl": URL,
                "authName": "ztp-user", "password": "device-password-0123456789", **fields}
        return await self.call("/v2/rps/devices", body)

    async def control(self, **switches: Any) -> httpx.Response:
        return await self.http.post(f"{self.sandbox.base_url}/_sandbox/yealink", json=switches)


@pytest.fixture
async def ymcs() -> AsyncIterator[Ymcs]:
    sandbox = await start_sandbox(SandboxState())
    client = Ymcs(sandbox)
    assert (await client.login()).status_code == 200
    yield client
    emulator = sandbox.state.emulators["yealink"]
    assert isinstance(emulator, YealinkEmulator)
    SECRETS.update(emulator.ymcs.issued)
    SECRETS.update(sandbox.state.received_passwords)
    await client.http.aclose()
    await sandbox.close()


def code(r: httpx.Response) -> str:
    return str(r.json().get("code", r.json().get("error")))


# -- headers and tokens -------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"timestamp": ""},
    {"nonce": ""},
    {"nonce": "a" * 33},  # 32 characters at most
    {"nonce": "not/a-nonce"},
    {"timestamp": "seconds"},  # seconds, not milliseconds (filled in below)
    {"offset": "-400"},
    {"offset": "+400"},
])
async def test_timestamp_and_nonce_are_required(ymcs: Ymcs, headers: dict[str, str]) -> None:
    headers = dict(headers)
    if headers.get("timestamp") == "seconds":
        headers["timestamp"] = str(int(time.time()))
    if "offset" in headers:  # stamped now: a value made at collection time would age
        headers = stamp(offset=float(headers.pop("offset")))
    r = await ymcs.call("/v2/rps/listDevices", {"skip": 0, "limit": 1}, **headers)
    assert (r.status_code, code(r)) == (401, "500401")
    assert r.json()["message"] == "Invalid request header"


async def test_a_nonce_is_used_once(ymcs: Ymcs) -> None:
    nonce = secrets.token_hex(16)
    first = await ymcs.call("/v2/rps/listDevices", {}, nonce=nonce)
    again = await ymcs.call("/v2/rps/listDevices", {}, nonce=nonce)
    assert first.status_code == 200
    assert (again.status_code, code(again), again.json()["message"]) == (
        403, "500403", "Request reply")


async def test_the_token_call(ymcs: Ymcs) -> None:
    wrong = await ymcs.login(DEMO_KEY_ID, "not-the-secret")
    assert (wrong.status_code, wrong.json()) == (
        401, {"error": "invalid_client", "error_description": "Bad client credentials"})
    r = await ymcs.http.post("/v2/token", json={"grant_type": "password"},
                             headers={"Authorization": basic(), **stamp()})
    assert (r.status_code, code(r)) == (400, "unsupported_grant_type")
    r = await ymcs.http.post("/v2/token", json={"grant_type": "client_credentials"},
                             headers={"Authorization": basic()})
    assert (r.status_code, code(r)) == (401, "500401")  # the token call is stamped too
    good = await ymcs.login()
    assert good.json()["expires_in"] == 3600 and good.json()["token_type"] == "bearer"


async def test_tokens_expire(ymcs: Ymcs) -> None:
    assert (await ymcs.control(token_lifetime=61)).json()["token_lifetime"] == 61
    assert (await ymcs.login()).json()["expires_in"] == 61
    assert (await ymcs.call("/v2/rps/listDevices", {})).status_code == 200
    await ymcs.control(expire_tokens=True)
    r = await ymcs.call("/v2/rps/listDevices", {})
    assert (r.status_code, code(r)) == (401, "900401")
    r = await ymcs.call("/v2/rps/listDevices", {}, Authorization="Bearer made-up")
    assert (r.status_code, code(r)) == (401, "900401")


# -- devices --------------------------------------------------------------------------------------


async def test_add_with_serial(ymcs: Ymcs) -> None:
    r = await ymcs.add("001565000001")
    assert r.status_code == 201
    assert r.json()["uniqueServerUrl"] == URL and r.json()["authName"] == "ztp-user"
    assert "password" not in r.json() and r.json()["id"]
    again = await ymcs.add("001565000001")
    assert (again.status_code, code(again)) == (400, "800003")
    foreign = await ymcs.add(FOREIGN_MAC)
    assert (foreign.status_code, code(foreign), foreign.json()["message"]) == (
        400, "800004", "Device already managed by another organization")


@pytest.mark.parametrize(("fields", "expected", "field"), [
    ({"sn": ""}, "900400", "sn"),
    ({"sn": "not a serial!"}, "800002", "sn"),
    ({"mac": "00:15:65:00:00:02"}, "800001", "mac"),
    ({"mac": "00156500000A"}, "800001", "mac"),  # lower case only
    ({"mac": "001565000002", "name": "x"}, "900400", "name"),
    ({"mac": "001565000002", "uniqueServerUrl": "ftp://x/"}, "800007", "uniqueServerUrl"),
])
async def test_add_bodies_are_checked(ymcs: Ymcs, fields: dict[str, str], expected: str,
                                      field: str) -> None:
    r = await ymcs.add(fields.pop("mac", "001565000002"), **fields)
    assert (r.status_code, code(r)) == (400, expected)
    assert r.json()["details"][0]["field"] == field and r.json()["requestId"]


async def test_add_by_mac_needs_the_permission(ymcs: Ymcs) -> None:
    item = {"mac": "001565000003", "uniqueServerUrl": URL}
    r = await ymcs.call("/v2/rps/addDevicesByMac", [item])
    assert (r.status_code, code(r), r.json()["message"]) == (
        403, "900403", "This request is forbidden")
    await ymcs.control(add_by_mac=True)
    r = await ymcs.call("/v2/rps/addDevicesByMac", item)  # an object is no body to YMCS
    assert (r.status_code, code(r)) == (412, "900444")
    r = await ymcs.call("/v2/rps/addDevicesByMac", [item] * 101)
    assert (r.status_code, code(r)) == (400, "800006")
    r = await ymcs.call("/v2/rps/addDevicesByMac",
                        [item, {"mac": FOREIGN_MAC, "uniqueServerUrl": URL}])
    assert r.status_code == 200
    assert r.json() == {"total": 2, "successCount": 1, "failureCount": 1, "errors": [
        {"mac": FOREIGN_MAC, "sn": None,
         "errorInfo": "Device already managed by another organization"}]}
    r = await ymcs.call("/v2/rps/addDevicesByMac", [item])
    assert r.json()["failureCount"] == 1 and r.json()["errors"][0]["errorInfo"] == (
        "Resource already exists")


async def test_delete_and_list(ymcs: Ymcs) -> None:
    for mac in ("001565000010", "001565000011", "001565000100"):
        assert (await ymcs.add(mac)).status_code == 201
    r = await ymcs.call("/v2/rps/listDevices",
                        {"skip": 0, "limit": 10, "autoCount": False,
                         "filter": {"mac": "00156500001"}})
    assert [d["mac"] for d in r.json()["data"]] == ["001565000010", "001565000011"]
    assert r.json()["total"] == 0  # counted only when asked
    assert all("authName" not in d and "password" not in d for d in r.json()["data"])
    r = await ymcs.call("/v2/rps/listDevices", {"skip": 1, "limit": 1, "autoCount": True,
                                                "filter": {}})
    assert r.json()["total"] == 3 and [d["mac"] for d in r.json()["data"]] == ["001565000011"]
    r = await ymcs.call("/v2/rps/delDevices",
                        {"deviceIdType": "mac", "deviceIds": ["001565000010", FOREIGN_MAC]})
    assert r.json() == {"total": 2, "successCount": 1, "failureCount": 1, "errors": [
        {"field": FOREIGN_MAC, "msg": "The resource does not exist or has been deleted"}]}
    r = await ymcs.call("/v2/rps/listDevices", {"filter": {"mac": "001565000010"}})
    assert r.json()["data"] is None
    r = await ymcs.call("/v2/rps/listDevices", {"limit": 501})
    assert (r.status_code, code(r)) == (400, "900400")


async def test_throttling(ymcs: Ymcs) -> None:
    ymcs.sandbox.state.throttle_rate = 1
    answers = [await ymcs.call("/v2/rps/listDevices", {}) for _ in range(3)]
    throttled = [r for r in answers if r.status_code == 429]
    assert throttled and code(throttled[0]) == "900429"
    assert "Retry-After" not in throttled[0].headers


async def test_accounts_are_apart(ymcs: Ymcs) -> None:
    other = Ymcs(ymcs.sandbox)
    assert (await other.login(OTHER_KEY_ID, "ymcs-other-secret")).status_code == 200
    r = await other.call("/v2/rps/listDevices", {"autoCount": True})
    assert [d["mac"] for d in r.json()["data"]] == [FOREIGN_MAC]
    assert (await ymcs.call("/v2/rps/listDevices", {})).json()["data"] is None
    await other.http.aclose()
