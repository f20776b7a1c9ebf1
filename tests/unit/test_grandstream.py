"""GrandstreamProvider against the GDMS emulator served in-process.

The emulator recomputes every call's signature with its own code (written from the
published recipe, not with the provider's helper), checks the timestamp against its clock,
which the tests keep on the provider's, and the double-hashed password at the token call,
so a passing test means GDMS's rules were met, not merely that some call was made. Answers
it never gives are scripted in front of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from structlog.testing import capture_logs

from rps_service.guesses import forget_guesses
from rps_service.models import Credentials
from rps_service.providers.auth_gdms import password_hash, signature
from rps_service.providers.grandstream import (
    EXPERIMENTAL_HINT,
    LIST_TTL,
    GrandstreamProvider,
    GrandstreamSettings,
)
from rps_service.providers.protocol import Device, Failure, Provider, ProviderError, VendorRecord
from rps_service.providers.transport import AiohttpTransport
from rps_service.providers.vendor import ProviderContext
from rps_service.sandbox.grandstream import GrandstreamEmulator, serial_for
from rps_service.sandbox.runner import RunningSandbox
from tests.emulated import Scripted, sandbox, transport
from tests.emulated import SyncedClock as Clock

__all__ = ["sandbox", "transport"]  # fixtures

USERNAME = "gdms-demo"
PASSWORD = "gdms-demo-password"  # the emulator's published demo login
CLIENT_ID = "gdms-demo"
CLIENT_SECRET = "gdms-demo-secret"  # the emulator's published demo key
SITE = 3345
MAC = "000B82ABCDEF"
SN = serial_for(MAC)  # the emulator pairs each MAC with one serial, as GDMS checks the label
DEVICE = Device(mac=MAC, server=8, sn=SN, name="Reception")
Outcome = Callable[[httpx.Request], httpx.Response]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    content_type: str


def envelope(code: int, msg: str = "success", data: Any = None, status: int = 200
             ) -> httpx.Response:
    return httpx.Response(status, json={"retCode": code, "msg": msg, "data": data})


class Gdms:
    """The emulator seen from a test: the demo organisation's devices (plain MAC → entry),
    what was sent (``seen``, ``calls()``, ``grants``) and scripted answers (``inject``)."""

    def __init__(self, sandbox: RunningSandbox, transport: AiohttpTransport) -> None:
        found = sandbox.state.emulators["grandstream"]
        assert isinstance(found, GrandstreamEmulator)
        self.emulator = found
        self.org = found.demo
        self.api = found.api_url(sandbox.base_url)
        self.front = Scripted(transport, "/grandstream/oapi/")
        self.inject = self.front.inject
        self.expires_in = int(found.token_ttl) - 1

    @property
    def devices(self) -> dict[str, dict[str, Any]]:
        return self.org.devices

    @property
    def seen(self) -> list[Seen]:
        return [Seen(r.method, r.url.path.removeprefix("/grandstream"),
                     dict(parse_qsl(r.url.query.decode(), keep_blank_values=True)),
                     body.decode() if isinstance(body, bytes) else body,
                     r.headers.get("content-type", ""))
                for r, (_, _, body) in zip(self.front.sent, self.front.seen, strict=True)]

    def calls(self) -> list[str]:
        return [s.path.removeprefix("/oapi/v1.0.0/").removeprefix("/oapi/") for s in self.seen]

    @property
    def grants(self) -> list[str]:
        """The grant of every token call the emulator answered."""
        return [form["grant_type"] for form in self.token_forms(self.front.forwarded)]

    def token_forms(self, requests: list[httpx.Request] | None = None
                    ) -> list[dict[str, str]]:
        return [dict(parse_qsl(r.content.decode())) for r in
                (self.front.sent if requests is None else requests)
                if r.url.path.endswith("/oauth/token")]

    def add(self, mac: str, site: int = SITE, name: str = "x") -> None:
        """Put ``mac`` (colon form) in the demo organisation, as the portal would."""
        plain = mac.replace(":", "")
        self.org.devices[plain] = self.emulator._entry(self.org, plain, serial_for(plain),
                                                       site, name)

    def foreign(self, mac: str) -> None:
        """Give ``mac`` (colon form) to another organisation."""
        plain = mac.replace(":", "")
        other = self.emulator.orgs[52002]
        other.devices[plain] = self.emulator._entry(other, plain, serial_for(plain), 4455, "x")


class FakeCredentials:
    def __init__(self, stored: dict[int, Credentials] | None = None) -> None:
        self.stored = stored or {}

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return self.stored.get(server) if provider == "grandstream" else None


def ini_keys(**changes: str) -> dict[str, str]:
    return {"username": USERNAME, "password": PASSWORD, "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "site_id": str(SITE), **changes}


def make_provider(fake: Gdms, clock: Clock, *, mode: str = "master",
                  creds: FakeCredentials | None = None,
                  transport: httpx.AsyncBaseTransport | None = None,
                  **keys: str) -> GrandstreamProvider:
    settings = GrandstreamSettings.model_validate(
        {"api_url": fake.api, "timeout": 5, "rate_limit": 1000,
         **(ini_keys(**keys) if mode == "master" else {})})
    context = ProviderContext(mode=mode, retry_cap=300, credentials=creds or FakeCredentials(),
                              transport=transport or fake.front, clock=clock)
    return GrandstreamProvider(settings, context)


@pytest.fixture
def clock(sandbox: RunningSandbox) -> Clock:
    return Clock(sandbox)


@pytest.fixture
def fake(sandbox: RunningSandbox, transport: AiohttpTransport) -> Gdms:
    found = Gdms(sandbox, transport)
    # The emulator's seeded demo login, which these tests use throughout.
    assert (found.org.username, found.org.password, found.org.client_id,
            found.org.client_secret) == (USERNAME, PASSWORD, CLIENT_ID, CLIENT_SECRET)
    assert found.org.sites == {SITE: "Default", 3346: "Branch"}
    return found


@pytest.fixture
def provider(fake: Gdms, clock: Clock) -> GrandstreamProvider:
    return make_provider(fake, clock)


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


# -- signing --------------------------------------------------------------------------------


def test_password_is_sha256_of_the_md5_hex() -> None:
    # md5("password") = 5f4dcc3b…; its hex digits hashed again with SHA-256 (sha256sum).
    assert password_hash("password") == (
        "3f2cd8e57b096fe7e4a78a5627e34ca3f885ad65a56e61c287cf4211bbc5949f")


def test_signature_vectors() -> None:
    params = [("timestamp", "1700000000000"), ("access_token", "tok")]
    # sha256 of "&access_token=tok&client_id=cid&client_secret=csec&timestamp=1700000000000&"
    assert signature(params, "cid", "csec") == (
        "d94e28c24616740dca87f84ff30d19edc7b0fca92fce62e3f9b34988d5955253")
    # … with the body's hash (b7fec2d5…) and "&" appended before hashing.
    assert signature(params, "cid", "csec", b'[{"mac":"00:0B:82:00:00:01"}]') == (
        "ab034939f8215c8cc143ca96cc87addeecee9671bf271b94e0b5d92e304d96e4")


def test_signature_covers_the_body() -> None:
    params = [("access_token", "tok"), ("timestamp", "1")]
    assert signature(params, "cid", "csec", b'{"a":1}') != signature(params, "cid", "csec",
                                                                      b'{"a":2}')


class Altering(httpx.AsyncBaseTransport):
    """Changes a device/add body after it was signed, on its way to the emulator."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("device/add"):
            body = (await request.aread()).replace(b"Reception", b"Reception!")
            headers = [(k, v) for k, v in request.headers.multi_items()
                       if k.lower() != "content-length"]
            request = httpx.Request(request.method, request.url, headers=headers,
                                    content=body)
        return await self.inner.handle_async_request(request)


async def test_a_body_altered_after_signing_is_refused(fake: Gdms, clock: Clock) -> None:
    provider = make_provider(fake, clock, transport=Altering(fake.front))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN
    assert "signature error" in err.message.lower() and "clock" in err.hint
    assert fake.devices == {}


async def test_register_sends_a_signed_device_add(fake: Gdms, clock: Clock,
                                                  provider: GrandstreamProvider) -> None:
    await provider.register(DEVICE)
    assert fake.calls() == ["oauth/token", "device/add"]
    add = fake.seen[1]
    assert add.method == "POST" and add.content_type == "application/json"
    assert add.body == [{"mac": "00:0B:82:AB:CD:EF", "sn": SN, "siteId": SITE,
                         "deviceName": "Reception"}]
    assert list(add.query) == ["access_token", "timestamp", "signature"]  # no client secret
    assert add.query["timestamp"] == str(int(clock.now * 1000))
    assert fake.devices["000B82ABCDEF"]["siteId"] == SITE


async def test_the_token_is_a_password_grant_with_the_hashed_password(
        fake: Gdms, provider: GrandstreamProvider) -> None:
    await provider.register(DEVICE)
    form = dict(parse_qsl(fake.seen[0].body))
    assert form == {"grant_type": "password", "username": USERNAME,
                    "password": password_hash(PASSWORD), "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET}


# -- tokens ---------------------------------------------------------------------------------


async def test_the_token_is_reused(fake: Gdms, provider: GrandstreamProvider) -> None:
    await provider.register(DEVICE)
    await provider.register(Device(mac="000B82000001", server=8, sn=serial_for("000B82000001")))
    assert fake.grants == ["password"]


async def test_token_refreshed_before_it_expires(fake: Gdms, clock: Clock,
                                                 provider: GrandstreamProvider) -> None:
    await provider.register(DEVICE)
    clock.advance(fake.expires_in - 200)  # inside the refresh margin, still valid
    await provider.register(Device(mac="000B82000001", server=8, sn=serial_for("000B82000001")))
    clock.advance(fake.expires_in - 200)
    await provider.register(Device(mac="000B82000002", server=8, sn=serial_for("000B82000002")))
    assert fake.grants == ["password", "refresh_token", "refresh_token"]  # rotated tokens


async def test_a_refused_refresh_token_logs_in_again(fake: Gdms, clock: Clock,
                                                     provider: GrandstreamProvider) -> None:
    await provider.register(DEVICE)
    fake.emulator.refresh.clear()  # e.g. GDMS restarted
    clock.advance(fake.expires_in)
    with capture_logs() as logs:
        await provider.register(Device(mac="000B82000001", server=8, sn=serial_for("000B82000001")))
    assert fake.grants == ["password", "refresh_token", "password"]
    refresh = [*(f["refresh_token"] for f in fake.token_forms() if "refresh_token" in f),
               *fake.emulator.refresh]
    assert len(refresh) == 2
    assert all(token not in str(entry) for token in refresh for entry in logs)


async def test_a_token_refused_early_is_dropped_and_retried_once(
        fake: Gdms, provider: GrandstreamProvider) -> None:
    await provider.register(DEVICE)
    fake.emulator.access.clear()  # revoked before its time
    await provider.register(Device(mac="000B82000001", server=8, sn=serial_for("000B82000001")))
    assert fake.calls() == ["oauth/token", "device/add", "device/add", "oauth/token",
                            "device/add"]
    assert fake.grants == ["password", "refresh_token"]


async def test_a_second_token_refusal_is_a_bad_login_without_the_token(
        fake: Gdms, clock: Clock) -> None:
    def refusing(request: httpx.Request) -> httpx.Response:
        token = dict(parse_qsl(request.url.query.decode()))["access_token"]
        return httpx.Response(401, json={"error": "invalid_token",
                                         "error_description": f"Invalid token: {token}"})

    fake.inject("v1.0.0/", refusing)
    fake.inject("v1.0.0/", refusing)
    fake.inject("v1.0.0/", refusing)  # a third, should the provider loop
    provider = make_provider(fake, clock)
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN and err.status == 401
    assert fake.calls().count("device/add") == 2  # one retry, no loop
    tokens = [s.query["access_token"] for s in fake.seen if "access_token" in s.query]
    assert len(tokens) == 2 and all(token not in err.text for token in tokens)
    assert "***" in err.text
    assert "check username, password, client_id and client_secret" in err.hint


@pytest.mark.parametrize(("keys", "expected"), [
    ({"client_secret": "wrong-secret"}, "check client_id and client_secret"),
    ({"password": "wrong-password"}, "check username and password"),
])
async def test_login_refusals_name_the_keys(fake: Gdms, clock: Clock, keys: dict[str, str],
                                            expected: str) -> None:
    provider = make_provider(fake, clock, **keys)
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN
    assert expected in err.hint and "[grandstream]" in err.hint
    assert "wrong-" not in err.text and fake.calls() == ["oauth/token"]


async def test_refresh_token_echoed_in_an_error_is_masked(fake: Gdms, clock: Clock,
                                                          provider: GrandstreamProvider) -> None:
    await provider.register(DEVICE)
    clock.advance(fake.expires_in)

    def busy(request: httpx.Request) -> httpx.Response:
        given = dict(parse_qsl(request.content.decode()))["refresh_token"]
        return httpx.Response(503, json={"error": "busy",
                                         "error_description": f"cannot renew {given}"})

    fake.inject("oauth/token", busy)
    err = await failure(provider.register(Device(mac="000B82000001", server=8,
                                                 sn=serial_for("000B82000001"))))
    assert err.transient and "cannot renew ***" in err.text
    assert fake.grants == ["password"]  # a busy GDMS is not a reason to log in again


# -- registration outcomes --------------------------------------------------------------------


async def test_already_exists_in_our_site_is_success(fake: Gdms,
                                                     provider: GrandstreamProvider) -> None:
    fake.add("00:0B:82:AB:CD:EF")
    with capture_logs() as logs:
        await provider.register(DEVICE)
    assert fake.calls()[-2:] == ["device/add", "device/list"]
    assert fake.devices["000B82ABCDEF"]["deviceName"] == "x"  # nothing changed
    assert any(e["event"] == "Device already in the site, nothing to change" for e in logs)


async def test_an_update_reads_the_list_once_per_ttl(fake: Gdms, clock: Clock,
                                                     provider: GrandstreamProvider) -> None:
    for i in range(3):
        fake.add(f"00:0B:82:00:00:0{i}")
    for i in range(3):
        mac = f"000B8200000{i}"
        await provider.register(Device(mac=mac, server=8, sn=serial_for(mac)))
    assert fake.calls().count("device/list") == 1
    clock.advance(LIST_TTL)
    await provider.register(Device(mac="000B82000000", server=8, sn=serial_for("000B82000000")))
    assert fake.calls().count("device/list") == 2


async def test_already_exists_in_another_site_is_refused(fake: Gdms,
                                                         provider: GrandstreamProvider) -> None:
    fake.add("00:0B:82:AB:CD:EF", site=3346)
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT
    assert "site 3346" in err.message and f"site_id {SITE}" in err.message
    assert "GDMS portal" in err.hint


async def test_already_exists_elsewhere_is_another_account(
        fake: Gdms, provider: GrandstreamProvider) -> None:
    fake.foreign("00:0B:82:AB:CD:EF")
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.OWNED
    assert err.message.startswith("The MAC belongs to another GDMS account")
    assert fake.calls()[-1] == "device/list"


async def test_a_message_naming_another_organisation_needs_no_lookup(
        fake: Gdms, provider: GrandstreamProvider) -> None:
    fake.foreign("00:0B:82:AB:CD:EF")
    fake.emulator.foreign_answer = "bound"  # "… added by another organization"
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.OWNED and "device/list" not in fake.calls()


async def test_the_lookup_follows_pages(fake: Gdms, provider: GrandstreamProvider) -> None:
    for i in range(150):
        mac = f"00:0B:82:00:{i // 256:02X}:{i % 256:02X}"
        fake.add(mac, site=3346 if i % 2 else SITE)
    found = await provider.lookup(Device(mac="000B82000095", server=8))
    assert found == VendorRecord("000B82000095", None, detail="site 3346")
    assert fake.calls()[-2:] == ["device/list", "device/list"]
    assert await provider.lookup(Device(mac="000B82FFFFFF", server=8)) is None
    listing = provider.list_devices(8)
    assert listing is not None
    records = [r async for r in listing]
    assert len(records) == 75 and all(r.detail == f"site {SITE}" for r in records)


@pytest.mark.parametrize(("message", "failure_class", "hint"), [
    ("The site does not exist", Failure.PERMANENT, "check site_id"),
    ("The MAC address and the SN do not match", Failure.PERMANENT, "check the event's sn"),
    ("Requests too frequent, please try again later", Failure.THROTTLED, ""),
    ("timestamp expired", Failure.BAD_LOGIN, "clock"),
    ("Invalid signature", Failure.BAD_LOGIN, "clock"),
    ("Something else went wrong", Failure.PERMANENT, ""),
    # Whole words only: "assigned" holds "sign" but says nothing of the signature.
    ("Device assigned to an unknown site", Failure.PERMANENT, "check site_id"),
    ("Parameter assigned incorrectly", Failure.PERMANENT, ""),
    ("The designated frequencyBand is wrong", Failure.PERMANENT, ""),
])
async def test_refusals_by_message(fake: Gdms, provider: GrandstreamProvider, message: str,
                                   failure_class: Failure, hint: str) -> None:
    fake.inject("device/add", lambda r: envelope(12345, message))
    err = await failure(provider.register(DEVICE))
    assert err.failure is failure_class
    assert f"retCode 12345: {message}" in err.message and hint in err.hint


async def test_assigned_is_not_a_signature_refusal(fake: Gdms,
                                                   provider: GrandstreamProvider) -> None:
    fake.inject("device/add", lambda r: envelope(12345, "MAC assigned"))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and "clock" not in err.hint
    assert err.message == "device/add answered retCode 12345: MAC assigned"


async def test_a_reading_by_words_says_its_guess_once(fake: Gdms,
                                                      provider: GrandstreamProvider) -> None:
    for _ in range(2):
        fake.inject("device/add", lambda r: envelope(1, "Requests too frequent"))
    with capture_logs() as logs:
        for _ in range(2):
            assert (await failure(provider.register(DEVICE))).failure is Failure.THROTTLED
        await provider.deregister(Device(mac=MAC, server=8))  # "does not exist": removed
    assert [(e["log_level"], e["guess"]) for e in logs if e["event"] == "Relying on a guess"] \
        == [("warning", "a GDMS msg speaking of too many or too frequent requests or a rate "
                        "limit means the login is throttled"),
            ("warning", "GDMS removes a device with device/delete {macList} (seen in no "
                        "client)"),
            ("warning", "a GDMS device/delete msg saying the device does not exist or is not "
                        "found means it is already removed")]


async def test_http_429_throttles_with_retry_after(fake: Gdms,
                                                   provider: GrandstreamProvider) -> None:
    fake.inject("device/add", lambda r: httpx.Response(
        429, headers={"Retry-After": "7"}, json={"retCode": 1, "msg": "too many"}))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.THROTTLED and err.retry_after == 7


async def test_an_answer_without_envelope_is_permanent(fake: Gdms,
                                                       provider: GrandstreamProvider) -> None:
    fake.inject("device/add", lambda r: httpx.Response(200, json={"ok": True}))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and "without a retCode" in err.message


async def test_an_oauth_refusal_answered_200_is_a_bad_login(
        fake: Gdms, provider: GrandstreamProvider) -> None:
    def refusal(request: httpx.Request) -> httpx.Response:
        token = dict(parse_qsl(request.url.query.decode()))["access_token"]
        return httpx.Response(200, json={"error": "invalid_token",
                                         "error_description": f"Invalid token: {token}"})

    fake.inject("device/add", refusal)
    fake.inject("device/add", refusal)
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN and "Invalid token: ***" in err.message
    assert fake.grants == ["password", "refresh_token"]  # one retry with a new token


async def test_requests_ask_for_english_answers(fake: Gdms, clock: Clock) -> None:
    await make_provider(fake, clock).register(DEVICE)
    languages = [r.headers.get("accept-language", "") for r in fake.front.sent]
    assert len(languages) == 2 and all(v.startswith("en") for v in languages)


async def test_5xx_is_transient(fake: Gdms, provider: GrandstreamProvider) -> None:
    fake.inject("device/add", lambda r: httpx.Response(502, text="Bad Gateway"))
    assert (await failure(provider.register(DEVICE))).failure is Failure.TRANSIENT


async def test_register_without_a_serial_sends_nothing(fake: Gdms,
                                                       provider: GrandstreamProvider) -> None:
    err = await failure(provider.register(Device(mac=MAC, server=8)))
    assert err.failure is Failure.PERMANENT and "(sn)" in err.message
    assert fake.seen == []


async def test_event_problem_asks_for_sn_on_add_only(provider: GrandstreamProvider) -> None:
    problem = await provider.event_problem("add", 8, {"model": "GRP2614"})
    assert problem is not None and problem[0] == "sn"
    assert await provider.event_problem("add", 8, {"sn": SN}) is None
    assert await provider.event_problem("update", 8, {}) is None
    assert await provider.event_problem("remove", None, {}) is None


# -- remove -----------------------------------------------------------------------------------


async def test_deregister_deletes_by_mac_list(fake: Gdms,
                                              provider: GrandstreamProvider) -> None:
    fake.add("00:0B:82:AB:CD:EF")
    with capture_logs() as logs:
        await provider.deregister(Device(mac=MAC, server=8))
    assert fake.seen[-1].body == {"macList": ["00:0B:82:AB:CD:EF"]}
    assert fake.devices == {}
    assert any(e["event"] == "Removing with an experimental call" for e in logs)
    guessed = [e["guess"] for e in logs if e["event"] == "Relying on a guess"]
    assert "GDMS removes a device with device/delete {macList} (seen in no client)" in guessed


async def test_deregister_of_an_unknown_device_succeeds(
        fake: Gdms, provider: GrandstreamProvider) -> None:
    await provider.deregister(Device(mac=MAC, server=8))
    assert fake.calls()[-1] == "device/delete"


@pytest.mark.parametrize("outcome", [
    lambda r: envelope(1000, "Parameter error"),
    lambda r: httpx.Response(404, json={"error": "Not Found"}),
])
async def test_a_refused_remove_says_it_is_experimental(
        fake: Gdms, provider: GrandstreamProvider, outcome: Outcome) -> None:
    fake.inject("device/delete", outcome)
    err = await failure(provider.deregister(Device(mac=MAC, server=8)))
    assert err.failure is Failure.PERMANENT and EXPERIMENTAL_HINT in err.hint


# -- Test button, settings, logs ----------------------------------------------------------------


async def test_check_names_the_site(fake: Gdms, provider: GrandstreamProvider) -> None:
    result = await provider.check_credentials(8)
    assert result.ok and f"site {SITE} (Default)" in result.message
    assert fake.seen[-1].method == "GET" and fake.calls()[-1] == "site/list"


async def test_check_with_a_wrong_site_lists_the_sites(fake: Gdms, clock: Clock) -> None:
    provider = make_provider(fake, clock, site_id="999")
    result = await provider.check_credentials(8)
    assert not result.ok
    assert "site_id 999 is not a site" in result.message
    assert "3345 (Default), 3346 (Branch)" in result.message


async def test_check_with_a_wrong_password(fake: Gdms, clock: Clock) -> None:
    provider = make_provider(fake, clock, password="nope-nope")
    result = await provider.check_credentials(8)
    assert not result.ok and "GDMS rejected the login" in result.message


def test_site_id_must_be_a_number() -> None:
    with pytest.raises(ValueError, match="number of a GDMS site"):
        GrandstreamSettings.model_validate({"site_id": "main"})


async def test_tenant_mode_uses_the_servers_login_and_site(fake: Gdms, clock: Clock) -> None:
    stored = Credentials("grandstream", 9, ini_keys(site_id="3346"))
    provider = make_provider(fake, clock, mode="tenant",
                             creds=FakeCredentials({9: stored}))
    await provider.register(Device(mac=MAC, server=9, sn=SN))
    assert fake.devices["000B82ABCDEF"]["siteId"] == 3346
    err = await failure(provider.register(Device(mac=MAC, server=8, sn=SN)))
    assert "No GDMS login for server 8" in err.message


async def test_logged_urls_hide_token_and_signature(fake: Gdms,
                                                    provider: GrandstreamProvider) -> None:
    with capture_logs() as logs:
        await provider.register(DEVICE)
    urls = [e["url"] for e in logs if e["event"] == "Sending Request"]
    assert urls[0] == f"{fake.api}oapi/oauth/token"
    assert "access_token=***" in urls[1] and "signature=***" in urls[1]
    assert fake.seen[1].query["access_token"] not in urls[1]
    assert all(e["mac"] == MAC for e in logs if e["event"] == "Sending Request")


async def test_satisfies_the_provider_protocol(provider: GrandstreamProvider) -> None:
    checked: Provider = provider
    assert checked.name == "grandstream" and await provider.device_url(8) == ""


async def test_device_lists_past_their_time_are_not_kept(fake: Gdms, clock: Clock) -> None:
    # Two tenants' accounts: the first one's list, read long ago, is let go when the
    # second one reads its own (credentials rotated away would otherwise hold it forever).
    creds = FakeCredentials({
        8: Credentials("grandstream", 8, ini_keys()),
        9: Credentials("grandstream", 9, ini_keys(site_id="3346"))})
    provider = make_provider(fake, clock, mode="tenant", creds=creds)
    fake.add("00:0B:82:AB:CD:EF")
    await provider.register(DEVICE)
    assert len(provider._known) == 1
    clock.advance(LIST_TTL)
    fake.add("00:0B:82:00:00:09", site=3346)
    await provider.register(Device(mac="000B82000009", server=9, sn=serial_for("000B82000009")))
    assert len(provider._known) == 1
