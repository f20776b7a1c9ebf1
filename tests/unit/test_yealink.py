"""YealinkProvider against the YMCS v2 emulator served in-process.

The emulator checks what YMCS checks: Basic client credentials and the exact grant on the
token call, a live bearer token on every other call, and a millisecond ``timestamp`` plus a
fresh ``nonce`` on every request; the tests check the headers' exact form on the way. So a
passing test means the wire rules were met, not merely that some call was made. Answers the
emulator never gives are scripted in front of it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from rps_service.guesses import forget_guesses
from rps_service.models import Credentials
from rps_service.providers.protocol import Device, Failure, Provider, ProviderError, VendorRecord
from rps_service.providers.transport import AiohttpTransport
from rps_service.providers.vendor import ProviderContext
from rps_service.providers.yealink import REGION_HOSTS, SN_REASON, YealinkProvider, YealinkSettings
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.yealink import YealinkEmulator
from rps_service.sandbox.ymcs import DEMO_KEY_ID, DEMO_ORG, DEMO_SECRET, OTHER_ORG, new_device
from tests.emulated import Scripted, SyncedClock, sandbox, transport

__all__ = ["sandbox", "transport"]  # fixtures

KEY_ID = DEMO_KEY_ID
SECRET = DEMO_SECRET
PASSWORD = "device-pass-ABCDEFGHIJKLMNOP"
MAC = "001565ABCDEF"
SN = "3012345678901234"
URL = "https://pbx.test/ztprov/8/"
DEVICE = Device(mac=MAC, server=8, url=URL, http_username="ztp-0123456789ab",
                http_password=PASSWORD, sn=SN)
Outcome = Callable[[httpx.Request], httpx.Response]


def ymcs_error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message,
                                        "requestId": "req-1", "details": []})


@dataclass
class Seen:
    path: str
    body: Any
    headers: httpx.Headers


class Ymcs:
    """The emulator seen from a test: the demo organisation's devices (lower-case MAC →
    record), the tokens it issued, what was sent (``seen``, ``paths()``) and scripted
    answers (``inject``). Every request's replay headers are checked on the way."""

    def __init__(self, sandbox: RunningSandbox, transport: AiohttpTransport,
                 clock: SyncedClock) -> None:
        found = sandbox.state.emulators["yealink"]
        assert isinstance(found, YealinkEmulator)
        self.world = found.ymcs
        self.org = self.world.orgs[DEMO_ORG]
        self.api = found.api_url(sandbox.base_url)
        self.clock = clock
        self.nonces: set[str] = set()
        self.front = Scripted(transport, "/yealink", check=self._check_replay_headers)
        self.inject = self.front.inject

    @property
    def devices(self) -> dict[str, dict[str, Any]]:
        return self.org.devices

    @property
    def issued(self) -> list[str]:
        return self.world.issued

    @property
    def seen(self) -> list[Seen]:
        return [Seen(path, body, request.headers) for (_, path, body), request
                in zip(self.front.seen, self.front.sent, strict=True)]

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def add(self, mac: str, url: str | None = None) -> None:
        """Put ``mac`` in the demo organisation, as the portal would."""
        self.org.devices[mac] = new_device(mac, None, url, None, None)

    def foreign(self, mac: str) -> None:
        """Give ``mac`` to another organisation."""
        self.world.orgs[OTHER_ORG].devices[mac] = new_device(mac, None, "https://o/", None,
                                                             None)

    def _check_replay_headers(self, request: httpx.Request) -> None:
        timestamp, nonce = request.headers["timestamp"], request.headers["nonce"]
        assert timestamp == str(int(self.clock.now * 1000))
        assert re.fullmatch(r"[0-9a-f]{32}", nonce) and nonce not in self.nonces
        self.nonces.add(nonce)
        assert request.headers["accept"] == "application/json"


class FakeCredentials:
    def __init__(self, stored: dict[int, Credentials] | None = None) -> None:
        self.stored = stored or {}

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return self.stored.get(server) if provider == "yealink" else None


@pytest.fixture
def clock(sandbox: RunningSandbox) -> SyncedClock:
    return SyncedClock(sandbox)


@pytest.fixture
def fake(sandbox: RunningSandbox, transport: AiohttpTransport, clock: SyncedClock) -> Ymcs:
    return Ymcs(sandbox, transport, clock)


def make_provider(fake: Ymcs, *, mode: str = "master", ini: bool = True,
                  creds: FakeCredentials | None = None, **section: Any) -> YealinkProvider:
    values: dict[str, Any] = {"api_url": fake.api, "provisioning_url": URL, "timeout": 5,
                              **section}
    if ini:
        values = {"access_key_id": KEY_ID, "access_key_secret": SECRET, **values}
    context = ProviderContext(mode=mode, retry_cap=300, credentials=creds or FakeCredentials(),
                              transport=fake.front, clock=fake.clock)
    return YealinkProvider(YealinkSettings.model_validate(values), context)


@pytest.fixture
def provider(fake: Ymcs) -> YealinkProvider:
    return make_provider(fake)


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


# -- the wire ---------------------------------------------------------------------------------


async def test_satisfies_the_provider_protocol(provider: YealinkProvider) -> None:
    checked: Provider = provider
    assert checked.name == "yealink"


async def test_register_with_serial(fake: Ymcs, provider: YealinkProvider) -> None:
    await provider.register(DEVICE)

    assert fake.paths() == ["/v2/token", "/v2/rps/devices"]
    assert fake.seen[1].body == {"mac": "001565abcdef", "sn": SN, "uniqueServerUrl": URL,
                                 "authName": "ztp-0123456789ab", "password": PASSWORD}
    assert fake.seen[1].headers["authorization"] == f"Bearer {fake.issued[0]}"
    assert fake.seen[1].headers["content-type"] == "application/json"
    assert fake.devices["001565abcdef"]["uniqueServerUrl"] == URL


async def test_the_token_is_reused_and_refreshed_a_minute_before_expiry(
    fake: Ymcs, provider: YealinkProvider
) -> None:
    await provider.register(DEVICE)
    fake.clock.advance(3600 - 61)
    await provider.deregister(DEVICE)
    assert fake.paths().count("/v2/token") == 1
    fake.clock.advance(2)  # 59 s left: fetched again before the call, no 401 needed
    await provider.register(DEVICE)
    assert fake.paths()[-2:] == ["/v2/token", "/v2/rps/devices"]
    assert fake.seen[-1].headers["authorization"] == f"Bearer {fake.issued[1]}"


async def test_a_401_gets_a_fresh_token_and_one_retry(
    fake: Ymcs, provider: YealinkProvider
) -> None:
    await provider.register(DEVICE)
    fake.world.tokens.clear()  # YMCS forgot the token before its time
    await provider.deregister(DEVICE)

    assert fake.paths()[2:] == ["/v2/rps/delDevices", "/v2/token", "/v2/rps/delDevices"]
    first, retry = fake.seen[2], fake.seen[4]
    assert first.headers["nonce"] != retry.headers["nonce"]
    assert retry.headers["authorization"] == f"Bearer {fake.issued[1]}"
    assert "001565abcdef" not in fake.devices


async def test_a_second_401_is_a_bad_login_and_not_retried_again(
    fake: Ymcs, provider: YealinkProvider
) -> None:
    await provider.register(DEVICE)
    fake.world.tokens.clear()
    fake.inject("/v2/rps/delDevices", lambda r: ymcs_error(401, "900401", "Not logged in"))
    fake.inject("/v2/rps/delDevices", lambda r: ymcs_error(401, "900401", "Not logged in"))
    err = await failure(provider.deregister(DEVICE))

    assert err.failure is Failure.BAD_LOGIN and err.status == 401
    assert "900401" in err.text and "access_key_id" in err.text
    assert fake.paths()[2:] == ["/v2/rps/delDevices", "/v2/token", "/v2/rps/delDevices"]


async def test_concurrent_cold_calls_share_one_token(fake: Ymcs, clock: SyncedClock) -> None:
    provider = make_provider(fake)
    devices = [Device(mac=f"00156500{i:04X}", server=8, url=URL, http_username="u",
                      http_password=PASSWORD, sn=SN) for i in range(5)]
    await asyncio.gather(*(provider.register(d) for d in devices))
    assert fake.paths().count("/v2/token") == 1 and len(fake.devices) == 5


# -- registration outcomes ---------------------------------------------------------------------


async def test_already_ours_is_deleted_and_added_again(
    fake: Ymcs, provider: YealinkProvider
) -> None:
    fake.add("001565abcdef", "https://old/")
    await provider.register(DEVICE)

    assert fake.paths()[1:] == ["/v2/rps/devices", "/v2/rps/delDevices", "/v2/rps/devices"]
    assert fake.devices["001565abcdef"]["uniqueServerUrl"] == URL


async def test_another_organisations_mac(fake: Ymcs, provider: YealinkProvider) -> None:
    fake.foreign("001565abcdef")
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.OWNED
    assert err.text.startswith("The MAC belongs to another YMCS account (400: Device already "
                               "managed by another organization (800004))")
    assert fake.paths()[1:] == ["/v2/rps/devices"]


async def test_without_sn_nothing_is_sent(fake: Ymcs, provider: YealinkProvider) -> None:
    err = await failure(provider.register(Device(mac=MAC, server=8, url=URL,
                                                  http_username="u", http_password="p")))
    assert err.failure is Failure.PERMANENT and "sn" in err.text and "add_by_mac" in err.text
    assert fake.seen == []


async def test_add_by_mac(fake: Ymcs) -> None:
    fake.org.add_by_mac = True
    provider = make_provider(fake, add_by_mac=True)
    await provider.register(Device(mac=MAC, server=8, url=URL, http_username="u",
                                   http_password=PASSWORD))
    assert fake.paths()[1:] == ["/v2/rps/addDevicesByMac"]
    assert fake.seen[1].body == [{"mac": "001565abcdef", "uniqueServerUrl": URL,
                                  "authName": "u", "password": PASSWORD}]


async def test_add_by_mac_without_the_permission(fake: Ymcs) -> None:
    provider = make_provider(fake, add_by_mac=True)
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and err.status == 403
    assert "900403" in err.text and "add-by-MAC permission" in err.text
    assert "add_by_mac = false" in err.text and "(sn)" in err.text


async def test_add_by_mac_already_ours_is_deleted_and_added(fake: Ymcs) -> None:
    fake.org.add_by_mac = True
    fake.add("001565abcdef")
    provider = make_provider(fake, add_by_mac=True)
    with capture_logs() as logs:
        await provider.register(DEVICE)
    # The batch item says "already exists" without a code: the look-up shows the MAC in
    # this account before it is deleted and added again.
    assert fake.paths()[1:] == ["/v2/rps/addDevicesByMac", "/v2/rps/listDevices",
                                "/v2/rps/delDevices", "/v2/rps/addDevicesByMac"]
    assert fake.devices["001565abcdef"]["uniqueServerUrl"] == URL
    assert [(e["log_level"], e["guess"]) for e in logs if e["event"] == "Relying on a guess"] \
        == [("warning", "a YMCS batch item without a code whose words say it exists means "
                        "this account already holds the MAC (800003): checked with a look-up "
                        "before the delete and second add")]


async def test_add_by_mac_exists_in_words_but_not_ours_deletes_nothing(fake: Ymcs) -> None:
    fake.org.add_by_mac = True
    fake.inject("addDevicesByMac", lambda r: httpx.Response(200, json={
        "total": 1, "successCount": 0, "failureCount": 1,
        "errors": [{"mac": "001565abcdef", "errorInfo": "Device already exists"}]}))
    err = await failure(make_provider(fake, add_by_mac=True).register(DEVICE))
    assert err.failure is Failure.PERMANENT
    assert err.message == ("200: Device already exists: read as \"already exists\", but the "
                           "MAC is not among this account's YMCS devices, so nothing was "
                           "deleted")
    assert fake.paths()[1:] == ["/v2/rps/addDevicesByMac", "/v2/rps/listDevices"]


async def test_add_by_mac_exists_with_its_code_needs_no_lookup(fake: Ymcs) -> None:
    fake.org.add_by_mac = True
    fake.add("001565abcdef")
    fake.inject("addDevicesByMac", lambda r: httpx.Response(200, json={
        "total": 1, "successCount": 0, "failureCount": 1,
        "errors": [{"mac": "001565abcdef", "errorInfo": "Resource already exists (800003)"}]}))
    with capture_logs() as logs:
        await make_provider(fake, add_by_mac=True).register(DEVICE)
    assert fake.paths()[1:] == ["/v2/rps/addDevicesByMac", "/v2/rps/delDevices",
                                "/v2/rps/addDevicesByMac"]
    assert not [e for e in logs if e["event"] == "Relying on a guess"]


async def test_add_by_mac_of_another_organisation(fake: Ymcs) -> None:
    fake.org.add_by_mac = True
    fake.foreign("001565abcdef")
    with capture_logs() as logs:
        err = await failure(make_provider(fake, add_by_mac=True).register(DEVICE))
    assert err.failure is Failure.OWNED and "another organization" in err.text
    assert [e["guess"] for e in logs if e["event"] == "Relying on a guess"] == [
        "a YMCS batch item without a code whose words name another organization means "
        "another organisation holds the MAC (800004)"]


@pytest.mark.parametrize(("item", "code"), [
    ({"mac": "001565abcdef", "sn": None, "errorInfo": "Invalid MAC"}, ""),
    ({"mac": "001565abcdef", "errorCode": 800007, "errorInfo": "Invalid parameters"}, "800007"),
])
async def test_a_failed_batch_item_is_a_failure(fake: Ymcs, item: dict[str, Any],
                                                 code: str) -> None:
    fake.org.add_by_mac = True
    fake.inject("addDevicesByMac", lambda r: httpx.Response(200, json={
        "total": 1, "successCount": 0, "failureCount": 1, "errors": [item]}))
    err = await failure(make_provider(fake, add_by_mac=True).register(DEVICE))
    assert err.failure is Failure.PERMANENT and item["errorInfo"] in err.text
    assert code in err.text


@pytest.mark.parametrize(("code", "message"), [
    ("800001", "Invalid MAC"), ("800002", "Invalid SN"), ("800006", "Batch size exceeds limit"),
    ("800007", "Invalid parameters"), ("900400", "Request parameters are incorrect"),
])
async def test_vendor_codes_are_permanent_with_the_vendors_message(
    fake: Ymcs, provider: YealinkProvider, code: str, message: str
) -> None:
    fake.inject("/v2/rps/devices", lambda r: ymcs_error(400, code, message))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and err.text.startswith(f"400: {message} ({code})")
    assert fake.paths()[1:] == ["/v2/rps/devices"]  # never retried, never deleted


@pytest.mark.parametrize(("answer", "pause"), [
    (lambda r: ymcs_error(429, "900429", "Too many requests"), 2.0),  # the default pause
    (lambda r: ymcs_error(400, "900429", "Too many requests"), 2.0),
    (lambda r: httpx.Response(429, text="slow down", headers={"Retry-After": "7"}), 7.0),
])
async def test_throttling_pauses_the_account(fake: Ymcs, provider: YealinkProvider,
                                             answer: Outcome, pause: float) -> None:
    fake.inject("/v2/rps/devices", answer)
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.THROTTLED and err.retry_after == pause
    gate = provider.http.gate((await provider.account(8)).key)
    assert gate.paused_until > gate.clock()


async def test_throttled_token_request(fake: Ymcs, provider: YealinkProvider) -> None:
    fake.inject("/v2/token", lambda r: ymcs_error(429, "900429", "Too many requests"))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.THROTTLED and fake.paths() == ["/v2/token"]


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_5xx_is_transient(fake: Ymcs, provider: YealinkProvider, status: int) -> None:
    fake.inject("/v2/rps/devices", lambda r: ymcs_error(status, f"900{status}", "Server busy"))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.TRANSIENT


async def test_a_replayed_nonce_is_transient(fake: Ymcs, provider: YealinkProvider) -> None:
    fake.inject("/v2/rps/devices", lambda r: ymcs_error(403, "500403", "Request reply"))
    assert (await failure(provider.register(DEVICE))).failure is Failure.TRANSIENT


async def test_refused_headers_point_at_the_clock(fake: Ymcs,
                                                  provider: YealinkProvider) -> None:
    fake.inject("/v2/token", lambda r: ymcs_error(401, "500401", "Invalid request header"))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and "clock" in err.text


@pytest.mark.parametrize("status", [400, 401])
async def test_wrong_secret_is_a_bad_login(fake: Ymcs, status: int) -> None:
    fake.inject("/v2/token", lambda r: httpx.Response(status, json={
        "error": "invalid_client", "error_description": "Bad client credentials"}))
    err = await failure(make_provider(fake).register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN
    assert err.text.startswith(f"{status}: Bad client credentials")
    assert "check access_key_id and access_key_secret" in err.text


async def test_a_token_answer_without_a_token(fake: Ymcs, provider: YealinkProvider) -> None:
    fake.inject("/v2/token", lambda r: httpx.Response(200, json={"token_type": "bearer"}))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and "access_token" in err.text
    await provider.register(DEVICE)  # the failure was not cached


async def test_errors_never_show_secrets(fake: Ymcs, provider: YealinkProvider) -> None:
    fake.inject("/v2/rps/devices", lambda r: ymcs_error(
        400, "800007", f"bad password {PASSWORD} for {SECRET}"))
    err = await failure(provider.register(DEVICE))
    assert PASSWORD not in err.text and SECRET not in err.text and "***" in err.text


# -- remove, look-up, list ---------------------------------------------------------------------


async def test_deregister_of_a_device_ymcs_does_not_hold(fake: Ymcs,
                                                         provider: YealinkProvider) -> None:
    await provider.deregister(Device(mac=MAC, server=8))
    assert fake.paths()[1:] == ["/v2/rps/delDevices", "/v2/rps/listDevices"]


async def test_a_delete_that_left_the_device_fails(fake: Ymcs,
                                                   provider: YealinkProvider) -> None:
    fake.add("001565abcdef")
    fake.inject("delDevices", lambda r: httpx.Response(200, json={
        "total": 1, "successCount": 0, "failureCount": 1,
        "errors": [{"field": "001565abcdef", "msg": "Device is locked"}]}))
    err = await failure(provider.deregister(Device(mac=MAC, server=8)))
    assert err.failure is Failure.PERMANENT and "Device is locked" in err.text


async def test_lookup_takes_the_exact_mac_of_a_fuzzy_search(
    fake: Ymcs, provider: YealinkProvider
) -> None:
    assert await provider.lookup(DEVICE) is None  # "data": null
    fake.add("001565abcdef01", "x")
    fake.add("001565abcdef", URL)
    assert await provider.lookup(DEVICE) == VendorRecord(MAC, URL)
    assert fake.seen[-1].body == {"skip": 0, "limit": 10, "autoCount": False,
                                  "filter": {"mac": "001565abcdef"}}


async def test_list_pages_until_the_total(fake: Ymcs, provider: YealinkProvider) -> None:
    for i in range(230):
        mac = f"00156500{i:04x}"
        fake.add(mac, f"{URL}{i}")
    listing = provider.list_devices(8)
    assert listing is not None
    records = [r async for r in listing]
    assert len(records) == 230 and records[0] == VendorRecord("001565000000", f"{URL}0")
    bodies = [s.body for s in fake.seen if s.path == "/v2/rps/listDevices"]
    assert [(b["skip"], b["limit"], b["autoCount"]) for b in bodies] == [
        (0, 100, True), (100, 100, True), (200, 100, True)]


async def test_list_of_an_empty_account(fake: Ymcs, provider: YealinkProvider) -> None:
    listing = provider.list_devices(8)
    assert listing is not None and [r async for r in listing] == []


# -- Test button, credentials, intake ------------------------------------------------------------


async def test_check_fetches_a_token_now(fake: Ymcs, provider: YealinkProvider) -> None:
    await provider.register(DEVICE)
    result = await provider.check_credentials(8)
    assert result.ok, result.message
    assert result.message == (f"YMCS accepted the AccessKey {KEY_ID}; the account holds 1 RPS "
                              "devices; adding with serial numbers (add_by_mac = false)")
    assert fake.paths()[-2:] == ["/v2/token", "/v2/rps/listDevices"]


async def test_check_wrong_secret(fake: Ymcs) -> None:
    provider = make_provider(fake, access_key_secret="wrong")
    result = await provider.check_credentials(8)
    assert not result.ok
    assert result.message.startswith("YMCS rejected the API keys: 401: Bad client credentials")


async def test_tenant_mode_uses_the_servers_keys_and_switch(fake: Ymcs) -> None:
    creds = FakeCredentials({8: Credentials("yealink", 8, {
        "access_key_id": KEY_ID, "access_key_secret": SECRET, "add_by_mac": True})})
    provider = make_provider(fake, mode="tenant", ini=False, creds=creds)
    assert await provider.event_problem("add", 8, {}) is None
    assert await provider.event_problem("add", 9, {}) == ("sn", SN_REASON)
    fake.org.add_by_mac = True
    await provider.register(Device(mac=MAC, server=8, url=URL, http_username="u",
                                   http_password=PASSWORD))
    assert fake.paths()[-1] == "/v2/rps/addDevicesByMac"
    err = await failure(provider.register(Device(mac=MAC, server=9, url=URL, sn=SN)))
    assert "No YMCS API keys for server 9" in err.text


async def test_event_problem(fake: Ymcs) -> None:
    provider = make_provider(fake)
    assert await provider.event_problem("add", 8, {}) == ("sn", SN_REASON)
    assert await provider.event_problem("add", None, {"model": "T46U"}) == ("sn", SN_REASON)
    assert await provider.event_problem("add", 8, {"sn": SN}) is None
    assert await provider.event_problem("update", 8, {}) is None  # the stored sn is used
    assert await provider.event_problem("remove", 8, {}) is None
    by_mac = make_provider(fake, ini=False, add_by_mac=True)  # no keys yet: the ini switch
    assert await by_mac.event_problem("add", 8, {}) is None
    assert fake.seen == []


async def test_every_request_is_logged_without_its_token(fake: Ymcs,
                                                         provider: YealinkProvider) -> None:
    with capture_logs() as logs:
        await provider.register(DEVICE)
    lines = [(e["mac"], e["url"]) for e in logs if e["event"] == "Sending Request"]
    assert lines == [(MAC, f"{fake.api}/v2/token"), (MAC, f"{fake.api}/v2/rps/devices")]
    assert fake.issued[0] not in repr(logs) and PASSWORD not in repr(logs)


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "url"), [
    ({}, REGION_HOSTS["us"]),
    ({"region": "eu"}, "https://eu-api.ymcs.yealink.com"),
    ({"region": "au", "api_url": ""}, "https://au-api.ymcs.yealink.com"),
    ({"api_url": "https://eu-api.ymcs.yealink.com/"}, "https://eu-api.ymcs.yealink.com"),
    ({"api_url": "http://127.0.0.1:8900/yealink"}, "http://127.0.0.1:8900/yealink"),
])
def test_region_picks_the_host(values: dict[str, str], url: str) -> None:
    assert YealinkSettings.model_validate(values).api_url == url


@pytest.mark.parametrize("values", [
    {"region": "cn"},
    {"api_url": "https://de-api.ymcs.yealink.com"},
    {"region": "us", "api_url": "https://eu-api.ymcs.yealink.com"},
    {"api_url": "ftp://ymcs.test"},
])
def test_bad_region_or_host_is_refused(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        YealinkSettings.model_validate(values)


def test_add_by_mac_is_a_credential_switch() -> None:
    assert YealinkSettings.switch_keys() == ("add_by_mac",)
    assert YealinkSettings.secret_keys() == ("access_key_secret",)
    assert YealinkSettings.model_validate({"add_by_mac": "true"}).add_by_mac is True
