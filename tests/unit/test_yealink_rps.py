"""The Yealink RPS JSON provider and its X-Ca signing, against the emulator's core in-process.

The signing vectors are computed by hand from the vendor demo's recipe (the literal
signatures below were made with ``openssl dgst -sha256 -hmac``, not with this package), and
the emulator, whose check is written apart from the provider's signer, must accept exactly
those. The provider then talks to the emulator's request handler through
``httpx.MockTransport``: every call is verified (signature, Content-MD5, nonce, timestamp)
as over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from rps_service.models import Credentials
from rps_service.providers.auth_xca import XcaAuth, string_to_sign
from rps_service.providers.protocol import Device, Failure, ProviderError
from rps_service.providers.vendor import ProviderContext
from rps_service.providers.yealink_rps import (
    YealinkRpsProvider,
    YealinkRpsSettings,
    server_name,
)
from rps_service.sandbox.state import SandboxState
from rps_service.sandbox.yealink_rps import (
    API,
    FOREIGN_MAC,
    TIMESTAMP_WINDOW,
    YealinkRpsEmulator,
    signing_text,
)

KEY_ID = "key-7"
SECRET = "secret-Xyz-0123"
NONCE = "0f8fad5b-d9cb-469f-a165-70867728950e"
STAMP = 1_700_000_000.123
BODY = b'{"macs":["805ec0000001"],"serverId":"s-1"}'
MAC = "805EC0ABCDEF"
PASSWORD = "device-pass-ABCDEFGHIJKLMNOP"
DEVICE = Device(mac=MAC, server=8, url="https://pbx.test/ztprov/8/", http_username="ztp-u1",
                http_password=PASSWORD)
Outcome = Callable[[httpx.Request], httpx.Response]


# -- the signature ------------------------------------------------------------------------


def test_a_body_call_is_signed_as_the_vendor_demo_signs_it() -> None:
    md5 = base64.b64encode(hashlib.md5(BODY, usedforsecurity=False).digest()).decode()
    assert md5 == "yjZABkJ+f+5CrfQHEcL0+A=="
    text = ("POST\n"
            f"Content-MD5:{md5}\n"
            f"X-Ca-Key:{KEY_ID}\n"
            f"X-Ca-Nonce:{NONCE}\n"
            "X-Ca-Timestamp:1700000000123\n"
            "api/open/v1/device/add")  # no newline at the end
    request = httpx.Request("POST", "https://rps.test/api/open/v1/device/add", content=BODY,
                            headers={"Content-Type": "application/json;charset=UTF-8"})
    XcaAuth(KEY_ID, SECRET, clock=lambda: STAMP, nonce=lambda: NONCE).sign(request)

    assert request.headers["Content-MD5"] == md5
    assert (request.headers["X-Ca-Key"], request.headers["X-Ca-Nonce"],
            request.headers["X-Ca-Timestamp"]) == (KEY_ID, NONCE, "1700000000123")
    by_hand = base64.b64encode(hmac.new(SECRET.encode(), text.encode(), hashlib.sha256)
                               .digest()).decode()
    assert request.headers["X-Ca-Signature"] == by_hand == (
        "rTxu/U/+y8gkzMpWy8DklSkLxtHM1nbTWvUiQPpA9zY=")


def test_a_query_call_signs_the_sorted_query_and_sends_no_content_md5() -> None:
    request = httpx.Request("GET", "https://rps.test/api/open/v1/device/checkMac",
                            params=[("mac", "805ec0000001"), ("b", "2"), ("a", "")])
    XcaAuth(KEY_ID, SECRET, clock=lambda: STAMP, nonce=lambda: NONCE).sign(request)
    assert "Content-MD5" not in request.headers
    # a= (empty) is written as its name alone; names sorted; values not URL-encoded.
    assert request.headers["X-Ca-Signature"] == "tOrsNGeDs1kfUqKz+ixPU+vPgiYzw8UCJytfpUvlWCE="


def test_every_signing_draws_a_fresh_nonce_and_timestamp() -> None:
    auth = XcaAuth(KEY_ID, SECRET)
    first = httpx.Request("POST", "https://rps.test/api/open/v1/server/list", content=b"{}")
    second = httpx.Request("POST", "https://rps.test/api/open/v1/server/list", content=b"{}")
    auth.sign(first)
    auth.sign(second)
    assert first.headers["X-Ca-Nonce"] != second.headers["X-Ca-Nonce"]
    assert len(first.headers["X-Ca-Timestamp"]) == 13


def test_the_emulator_rebuilds_the_same_string_to_sign() -> None:
    md5 = base64.b64encode(hashlib.md5(BODY, usedforsecurity=False).digest()).decode()
    headers = {"Content-MD5": md5, "X-Ca-Key": KEY_ID, "X-Ca-Nonce": NONCE,
               "X-Ca-Timestamp": "1700000000123"}
    ours = string_to_sign("POST", "/api/open/v1/device/add", KEY_ID, NONCE, "1700000000123",
                          md5=md5)
    assert signing_text("POST", "/api/open/v1/device/add", headers, []) == ours


# -- the emulator's checks ----------------------------------------------------------------


@pytest.fixture
def rps() -> YealinkRpsEmulator:
    return YealinkRpsEmulator(SandboxState())


def signed(emulator: YealinkRpsEmulator, method: str, call: str, body: Any = None,
           params: dict[str, str] | None = None, secret: str | None = None,
           clock: Callable[[], float] = time.time) -> httpx.Request:
    content = json.dumps(body).encode() if body is not None else None
    request = httpx.Request(method, f"https://rps.test{API}/{call}", content=content,
                            params=params, headers={"Content-Type": "application/json"}
                            if content else {})
    XcaAuth(emulator.demo.key_id, secret or emulator.demo.secret, clock=clock).sign(request)
    return request


def serve(emulator: YealinkRpsEmulator, request: httpx.Request) -> tuple[int, Any]:
    return emulator.serve(request.method, request.url.path,
                          list(request.url.params.multi_items()), request.headers,
                          request.content)


def test_the_emulator_accepts_a_correct_signature_once(rps: YealinkRpsEmulator) -> None:
    request = signed(rps, "POST", "server/list", {"skip": 0, "limit": 10})
    status, body = serve(rps, request)
    assert (status, body["ret"]) == (200, 1), body
    status, body = serve(rps, request)  # the same nonce again: a replay
    assert (status, body["error"]["msg"]) == (401, "api.nonce.used")


def test_the_emulator_refuses_a_tampered_request(rps: YealinkRpsEmulator) -> None:
    request = signed(rps, "POST", "server/list", {"skip": 0, "limit": 10})
    sig = request.headers["X-Ca-Signature"]
    request.headers["X-Ca-Signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert serve(rps, request)[1]["error"]["msg"] == "api.signature.invalid"

    request = signed(rps, "POST", "server/list", {"skip": 0, "limit": 10})
    request._content = b'{"skip":0,"limit":99}'  # the body changed after signing
    assert serve(rps, request)[1]["error"]["msg"] == "api.content.md5.invalid"

    request = signed(rps, "POST", "server/list", {"skip": 0}, secret="not-the-secret")
    assert serve(rps, request)[0] == 401

    request = signed(rps, "GET", "device/checkMac", params={"mac": "805ec0000001"})
    request.url = request.url.copy_with(params={"mac": "805ec0000002"})  # another MAC
    assert serve(rps, request)[1]["error"]["msg"] == "api.signature.invalid"


def test_the_emulator_refuses_stale_timestamps_and_unknown_keys(
        rps: YealinkRpsEmulator) -> None:
    old = signed(rps, "POST", "server/list", {}, clock=lambda: time.time()
                 - TIMESTAMP_WINDOW - 5)
    assert serve(rps, old)[1]["error"]["msg"] == "api.timestamp.expired"
    unknown = signed(rps, "POST", "server/list", {})
    unknown.headers["X-Ca-Key"] = "nobody"
    assert serve(rps, unknown) == (401, {"ret": -1, "data": None, "error": {
        "msg": "api.key.invalid", "errorCode": 401, "fieldErrors": []}})


def test_the_emulator_wants_a_body_on_post_and_none_on_get(rps: YealinkRpsEmulator) -> None:
    request = signed(rps, "POST", "server/list", {})
    request.url = request.url.copy_with(params={"x": "1"})
    assert serve(rps, request)[1]["error"]["msg"] == "request.body.required"
    request = signed(rps, "GET", "device/checkMac", params={"mac": "805ec0000001"})
    assert serve(rps, request)[1]["data"] == {"existed": False, "self": False}


def test_the_emulator_takes_ids_or_macs_on_delete(rps: YealinkRpsEmulator) -> None:
    for mac in ("805ec0000001", "805ec0000002"):
        server = serve(rps, signed(rps, "POST", "server/add", {
            "serverName": f"s-{mac[-1]}", "url": "https://pbx.test/"}))[1]["data"]["id"]
        assert serve(rps, signed(rps, "POST", "device/add", {
            "macs": [mac], "serverId": server}))[1]["ret"] == 1
    first = rps.demo.device_with("805ec0000001")
    assert first is not None
    assert serve(rps, signed(rps, "POST", "device/delete", {"ids": [first["id"]]}))[1][
        "ret"] == 0
    assert serve(rps, signed(rps, "POST", "device/delete", {"macs": ["805ec0000002"]}))[1][
        "ret"] == 0
    assert rps.holds("805EC0000001") is None and rps.holds("805EC0000002") is None
    refused = serve(rps, signed(rps, "POST", "device/delete", {"macs": [FOREIGN_MAC.lower()]}))
    assert refused[1]["error"]["msg"] == "device.operate.forbidden"
    both = serve(rps, signed(rps, "POST", "device/delete", {"ids": ["x"], "macs": ["y"]}))
    assert both[1]["error"]["msg"] == "request.param.invalid"


# -- the provider against the emulator ----------------------------------------------------


@dataclass
class Rps:
    """MockTransport handler: the emulator's core, plus injected answers."""

    emulator: YealinkRpsEmulator
    seen: list[tuple[str, Any]] = field(default_factory=list)  # (call, body or query)
    injected: list[tuple[str, Outcome]] = field(default_factory=list)

    def inject(self, call: str, outcome: Outcome) -> None:
        self.injected.append((call, outcome))

    def calls(self) -> list[str]:
        return [c for c, _ in self.seen]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        call = request.url.path.removeprefix(API + "/")
        self.seen.append((call, json.loads(request.content) if request.content
                          else dict(request.url.params)))
        for i, (wanted, outcome) in enumerate(self.injected):
            if wanted == call:
                del self.injected[i]
                return outcome(request)
        status, body = serve(self.emulator, request)
        return httpx.Response(status, json=body)


class Store:
    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return None


def make_provider(handler: Rps, **keys: str) -> YealinkRpsProvider:
    settings = YealinkRpsSettings.model_validate({
        "api_url": "https://rps.test/yealink-rps", "timeout": 5, "rate_limit": 1000,
        "access_key_id": handler.emulator.demo.key_id,
        "access_key_secret": handler.emulator.demo.secret, **keys})
    context = ProviderContext(mode="master", retry_cap=300, credentials=Store(),
                              transport=httpx.MockTransport(handler))
    return YealinkRpsProvider(settings, context)


@pytest.fixture
def fake(rps: YealinkRpsEmulator) -> Rps:
    return Rps(rps)


@pytest.fixture
def provider(fake: Rps) -> YealinkRpsProvider:
    return make_provider(fake)


def envelope(key: str, status: int = 200, detail: str = "") -> Outcome:
    error = {"msg": key, "errorCode": 400, "fieldErrors": [{"msg": detail}] if detail else []}
    return lambda _: httpx.Response(status, json={"ret": -1, "data": None, "error": error})


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


async def test_register_adds_one_server_and_the_device_with_its_credentials(
        fake: Rps, provider: YealinkRpsProvider) -> None:
    await provider.register(DEVICE)
    held = fake.emulator.holds(MAC)
    assert held is not None
    assert (held.url, held.username, held.password) == (DEVICE.url, "ztp-u1", PASSWORD)
    assert fake.calls() == ["server/list", "server/add", "device/add"]
    name = fake.seen[1][1]["serverName"]
    assert name == server_name(fake.emulator.demo.key_id, DEVICE.url) and len(name) <= 20
    [server] = fake.emulator.demo.servers.values()
    assert (server["serverName"], server["url"]) == (name, DEVICE.url)
    assert fake.seen[2][1] == {"macs": ["805ec0abcdef"], "serverId": server["id"],
                               "uniqueServerUrl": DEVICE.url, "authName": "ztp-u1",
                               "password": PASSWORD}

    await provider.register(Device(mac="805EC0000002", server=8, url=DEVICE.url,
                                   http_username="ztp-u2", http_password="pw-2" * 6))
    assert fake.calls()[3:] == ["device/add"]  # the server is known now

    # A fresh daemon finds the server by its name instead of adding another.
    again = make_provider(fake)
    await again.register(Device(mac="805EC0000003", server=8, url=DEVICE.url,
                                http_username="ztp-u3", http_password="pw-3" * 6))
    assert fake.calls()[4:] == ["server/list", "device/add"]
    assert len(fake.emulator.demo.servers) == 1


async def test_a_mac_already_ours_is_edited_in_place(fake: Rps,
                                                    provider: YealinkRpsProvider) -> None:
    await provider.register(DEVICE)
    moved = Device(mac=MAC, server=9, url="https://pbx.test/ztprov/9/",
                   http_username="ztp-u1", http_password="new-password-0123456789")
    with capture_logs() as logs:
        await provider.register(moved)
    assert fake.calls()[3:] == ["server/list", "server/add", "device/add", "device/list",
                                "device/edit"]
    edit = fake.seen[-1][1]
    held = fake.emulator.holds(MAC)
    assert held is not None and edit["id"] == held.extra["id"]
    assert (held.url, held.password) == (moved.url, "new-password-0123456789")
    assert len(fake.emulator.demo.devices) == 1
    assert any(entry["event"] == "Device re-pointed" for entry in logs)


async def test_the_edit_takes_the_id_of_the_whole_mac_from_a_fuzzy_list(
        fake: Rps, provider: YealinkRpsProvider) -> None:
    fake.inject("device/add", envelope("device.mac.existed"))
    fake.inject("device/list", lambda _: httpx.Response(200, json={
        "ret": 1, "error": None, "data": {"skip": 0, "limit": 100, "total": 2, "data": [
            {"id": "near", "mac": "805ec0abcde0"},
            {"id": "exact", "mac": "80:5E:C0:AB:CD:EF"}]}}))
    fake.inject("device/edit", lambda _: httpx.Response(200, json={"ret": 1, "data": {},
                                                                   "error": None}))
    await provider.register(DEVICE)
    assert fake.seen[-1][0] == "device/edit" and fake.seen[-1][1]["id"] == "exact"


async def test_existed_but_not_listed_is_another_accounts(
        fake: Rps, provider: YealinkRpsProvider) -> None:
    fake.inject("device/add", envelope("device.mac.existed"))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.OWNED
    assert err.message.startswith("The MAC belongs to another Yealink RPS account")


@pytest.mark.parametrize("answer", ["added.by.other", "forbidden"])
async def test_another_enterprises_mac_is_owned_by_other(
        fake: Rps, provider: YealinkRpsProvider, answer: str) -> None:
    fake.emulator.foreign_answer = answer
    err = await failure(provider.register(Device(mac=FOREIGN_MAC, server=8, url=DEVICE.url,
                                                 http_username="u", http_password="p" * 24)))
    assert err.failure is Failure.OWNED
    assert "The MAC belongs to another Yealink RPS account" in err.message
    assert ("device.mac.added.by.other" if answer == "added.by.other"
            else "device.operate.forbidden") in err.message
    assert "device/edit" not in fake.calls()


async def test_remove_deletes_by_id_and_missing_is_done(fake: Rps,
                                                       provider: YealinkRpsProvider) -> None:
    await provider.register(DEVICE)
    held = fake.emulator.holds(MAC)
    assert held is not None
    await provider.deregister(Device(mac=MAC, server=8))
    assert fake.seen[-1] == ("device/delete", {"ids": [held.extra["id"]]})
    assert fake.emulator.holds(MAC) is None

    calls = len(fake.seen)
    await provider.deregister(Device(mac=MAC, server=8))  # nothing left: no delete sent
    assert fake.calls()[calls:] == ["device/list"]

    await provider.register(DEVICE)
    fake.inject("device/delete", envelope("device.not.found"))  # gone meanwhile: done
    await provider.deregister(Device(mac=MAC, server=8))


async def test_a_vanished_server_is_added_again(fake: Rps, provider: YealinkRpsProvider
                                                ) -> None:
    await provider.register(DEVICE)
    fake.emulator.demo.devices.clear()
    fake.emulator.demo.servers.clear()  # deleted in the portal
    await provider.register(Device(mac="805EC0000002", server=8, url=DEVICE.url,
                                   http_username="u2", http_password="p" * 24))
    assert fake.calls()[3:] == ["device/add", "server/list", "server/add", "device/add"]
    assert fake.emulator.holds("805EC0000002") is not None


async def test_lookup_reads_checkmac_then_the_list(fake: Rps,
                                                  provider: YealinkRpsProvider) -> None:
    assert await provider.lookup(Device(mac=MAC, server=8)) is None
    foreign = await provider.lookup(Device(mac=FOREIGN_MAC, server=8))
    assert foreign is not None and foreign.ours is False
    await provider.register(DEVICE)
    record = await provider.lookup(Device(mac=MAC, server=8))
    assert record is not None and (record.mac, record.url, record.ours) == (MAC, DEVICE.url,
                                                                          True)
    assert ("device/checkMac", {"mac": "805ec0abcdef"}) in fake.seen


async def test_list_pages_through_the_account(fake: Rps, provider: YealinkRpsProvider
                                              ) -> None:
    page = [{"id": f"d{i}", "mac": f"805ec0{i:06x}", "uniqueServerUrl": "https://p/"}
            for i in range(100)]
    fake.inject("device/list", lambda _: httpx.Response(200, json={
        "ret": 1, "error": None, "data": {"skip": 0, "limit": 100, "total": 101,
                                          "data": page}}))
    fake.inject("device/list", lambda _: httpx.Response(200, json={
        "ret": 1, "error": None, "data": {"skip": 100, "limit": 100, "total": 101,
                                          "data": [{"id": "x", "mac": "805ec0ffffff"}]}}))
    listing = provider.list_devices(8)
    assert listing is not None
    records = [r async for r in listing]
    assert len(records) == 101 and records[-1].mac == "805EC0FFFFFF"
    assert [body["skip"] for call, body in fake.seen if call == "device/list"] == [0, 100]


async def test_the_test_button(fake: Rps, provider: YealinkRpsProvider) -> None:
    result = await provider.check_credentials(8)
    assert result.ok and "yealink-rps-demo" in result.message
    wrong = make_provider(fake, access_key_secret="not-the-secret")
    result = await wrong.check_credentials(8)
    assert not result.ok and "rejected" in result.message


@pytest.mark.parametrize(("outcome", "kind"), [
    (envelope("api.signature.invalid", 401), Failure.BAD_LOGIN),
    (envelope("api.signature.invalid", 200), Failure.BAD_LOGIN),
    (envelope("device.operate.forbidden", 403), Failure.OWNED),
    (envelope("request.too.frequent", 200), Failure.THROTTLED),
    (lambda _: httpx.Response(429, headers={"Retry-After": "7"}, json={"ret": -1}),
     Failure.THROTTLED),
    (lambda _: httpx.Response(503, text="busy"), Failure.TRANSIENT),
    (envelope("device.remark.too.long"), Failure.PERMANENT),
    (lambda _: httpx.Response(200, json={"data": []}), Failure.PERMANENT),
])
async def test_answers_are_classified(fake: Rps, provider: YealinkRpsProvider,
                                      outcome: Outcome, kind: Failure) -> None:
    await provider.register(DEVICE)  # the server is known: the next call is device/add
    fake.inject("device/add", outcome)
    err = await failure(provider.register(Device(mac="805EC0000009", server=8, url=DEVICE.url,
                                                 http_username="u", http_password="p" * 24)))
    assert err.failure is kind, err
    if kind is Failure.BAD_LOGIN:
        assert "access_key_secret" in err.text and "clock" in err.text
    if kind is Failure.THROTTLED and err.status == 429:
        assert err.retry_after is not None


async def test_no_password_reaches_an_error_text(fake: Rps, provider: YealinkRpsProvider
                                                 ) -> None:
    await provider.register(DEVICE)
    fake.inject("device/add", envelope("device.password.invalid",
                                       detail=f"password {PASSWORD} is too weak"))
    err = await failure(provider.register(DEVICE))
    assert PASSWORD not in err.text and "***" in err.text
    fake.inject("server/list", envelope("x", 400, detail=fake.emulator.demo.secret))
    result = await make_provider(fake).check_credentials(8)
    assert fake.emulator.demo.secret not in result.message
