"""SnomProvider against the SRAPS emulator served in-process.

The emulator checks every request's Hawk signature (payload hash, replayed nonces and
clock skew included), so a test passing here means SRAPS's own rules were met, not merely
that some call was made. The tests add their own key and settings catalogue to its world;
answers it never gives are scripted in front of it.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from rps_service.guesses import forget_guesses
from rps_service.models import Credentials
from rps_service.providers.protocol import Device, Failure, Provider, ProviderError, VendorRecord
from rps_service.providers.snom import SnomProvider, SnomSettings
from rps_service.providers.transport import AiohttpTransport
from rps_service.providers.vendor import ProviderContext
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import DEMO_COMPANY_ID, OTHER_COMPANY_ID, Setting
from tests.emulated import Scripted, sandbox

__all__ = ["sandbox"]  # the fixture

KEY_ID = "KEYID"
SECRET = "key-secret-0123456789"
PASSWORD = "device-pass-ABCDEFGHIJKLMNOP"
NOW = 1_700_000_000
MAC = "000413ABCDEF"
DEVICE = Device(
    mac=MAC, server=8, url="https://pbx.test/ztprov/8/", http_username="u8", http_password=PASSWORD
)
HAWK_HEADER = re.compile(
    r'^Hawk id="[^"]+", ts="\d+", nonce="[^"]+", (hash="[^"]+", )?mac="[^"]+"$'
)
EXPECTED_BODY = {
    "mac": "000413abcdef",
    "autoprovisioning_enabled": True,
    "settings_manager": {
        "uuid-server": {"value": "https://pbx.test/ztprov/8/", "attrs": {"perm": "RW"}},
        "uuid-user": {"value": "u8", "attrs": {"perm": "RW"}},
        "uuid-pass": {"value": PASSWORD, "attrs": {"perm": "RW"}},
    },
}
#: EXPECTED_BODY as SRAPS stores it: a PUT replaces the endpoint whole, absent fields null.
EXPECTED_STORED = {**EXPECTED_BODY, "name": None, "description": None,
                   "provisioning_profile": None}


def catalogue(filler: int = 5) -> list[dict[str, str]]:
    """A settings catalogue with the decoy global setting_server first."""
    entries = [{"uuid": "uuid-global", "param_name": "setting_server", "section": "global"}]
    entries += [
        {"uuid": f"uuid-{i}", "param_name": f"filler_{i}", "section": "phone-settings"}
        for i in range(filler)
    ]
    for uuid, name in [
        ("uuid-server", "setting_server"),
        ("uuid-user", "http_client_user"),
        ("uuid-pass", "http_client_pass"),
    ]:
        entries.append({"uuid": uuid, "param_name": name, "section": "phone-settings"})
    return entries


class Seen:
    """One request as sent."""

    def __init__(self, request: httpx.Request, body: Any) -> None:
        self.method = request.method
        self.target = request.url.raw_path.decode()  # path and query as sent
        self.body = body
        self.authorization = request.headers.get("authorization", "")
        self.accept = request.headers.get("accept", "")


Outcome = Callable[[httpx.Request], httpx.Response]


class Sraps:
    """The emulator seen from a test: its world with our key (``KEYID``, Role
    "Provisioning", company 1001) and our catalogue, what was sent (``seen``,
    ``targets()``), scripted answers (``inject``) and server clock moves
    (``clock_jumps``: the server's time for each next request)."""

    def __init__(self, sandbox: RunningSandbox, wire: AiohttpTransport) -> None:
        self.sandbox = sandbox
        self.state = sandbox.state
        self.api = sandbox.url
        self.state.add_key(KEY_ID, SECRET, DEMO_COMPANY_ID, "Provisioning")
        self.settings = catalogue()
        self.set_server_time(NOW)
        self.clock_jumps: list[int] = []
        self.front = Transport(wire, "", check=self._jump)
        self.front.api = self.api
        self.inject = self.front.inject

    @property
    def settings(self) -> list[dict[str, str]]:
        return [{"uuid": s.uuid, "param_name": s.param_name, "section": s.section}
                for s in self.state.settings]

    @settings.setter
    def settings(self, entries: list[dict[str, str]]) -> None:
        self.state.settings = [Setting(e["uuid"], e["param_name"], e["section"])
                               for e in entries]
        self.state.settings_by_uuid = {}
        for setting in self.state.settings:  # the first of a uuid wins, as in a listing
            self.state.settings_by_uuid.setdefault(setting.uuid, setting)

    @property
    def endpoints(self) -> dict[str, dict[str, Any]]:
        return self.state.endpoints(DEMO_COMPANY_ID)

    @property
    def seen(self) -> list[Seen]:
        return [Seen(request, body)
                for request, (_, _, body) in zip(self.front.sent, self.front.seen, strict=True)]

    def targets(self) -> list[str]:
        return [f"{s.method} {s.target}" for s in self.seen]

    def clear(self) -> None:
        """Forget what was sent so far."""
        self.front.sent.clear()
        self.front.seen.clear()

    def foreign(self, mac: str) -> None:
        """Give ``mac`` to another SRAPS account."""
        self.state.endpoints(OTHER_COMPANY_ID)[mac] = {
            "mac": mac, "name": None, "description": None, "provisioning_profile": None,
            "autoprovisioning_enabled": True, "settings_manager": {}}

    def set_server_time(self, when: int) -> None:
        # Hawk's check reads whole seconds of the wall clock: offset by whole seconds.
        self.state.clock_offset = when - int(time.time())

    def _jump(self, request: httpx.Request) -> None:
        if self.clock_jumps:
            self.set_server_time(self.clock_jumps.pop(0))


class Transport(Scripted):
    """The scripted front of the emulator; remembers whether it was closed."""

    closed = False
    api = ""  # the emulator's API URL

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
async def wire() -> AsyncIterator[AiohttpTransport]:
    sent = AiohttpTransport()
    yield sent
    await sent.aclose()


@pytest.fixture
def fake(sandbox: RunningSandbox, wire: AiohttpTransport) -> Sraps:
    return Sraps(sandbox, wire)


class FakeCredentials:
    """The ``rps_credentials`` table as a dict keyed by server."""

    def __init__(self, stored: dict[int, Credentials] | None = None) -> None:
        self.stored = stored or {}

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return self.stored.get(server) if provider == "snom" else None


def stored(server: int, key_id: str = KEY_ID, secret: str = SECRET, **kw: Any) -> Credentials:
    return Credentials("snom", server, {"access_key_id": key_id, "access_key_secret": secret},
                       **kw)


def make_settings(api: str, ini: bool = True, **extra: Any) -> SnomSettings:
    snom: dict[str, Any] = {
        "api_url": api,
        "provisioning_url": "https://pbx.test/ztprov/{server}/",
        "timeout": 5,
        **extra,
    }
    if ini:
        snom |= {"access_key_id": KEY_ID, "access_key_secret": SECRET}
    return SnomSettings.model_validate(snom)


@pytest.fixture
def transport(fake: Sraps) -> Transport:
    return fake.front


def make_provider(
    transport: Transport,
    *,
    mode: str = "master",
    ini: bool = True,
    creds: FakeCredentials | None = None,
    clock: Callable[[], float] = lambda: NOW,
    **settings: Any,
) -> SnomProvider:
    context = ProviderContext(mode=mode, retry_cap=300, credentials=creds or FakeCredentials(),
                              transport=transport, clock=clock)
    return SnomProvider(make_settings(transport.api, ini, **settings), context)


@pytest.fixture
def provider(transport: Transport) -> SnomProvider:
    return make_provider(transport)


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


# -- registration -------------------------------------------------------------------------


async def test_satisfies_the_provider_protocol(provider: SnomProvider) -> None:
    checked: Provider = provider
    assert checked.name == "snom"


async def test_cold_register_looks_up_then_puts(fake: Sraps, provider: SnomProvider) -> None:
    await provider.register(DEVICE)

    assert fake.targets() == [
        "GET /api/v1/tokens/KEYID",
        "GET /api/v1/settings/?page_size=1000",
        "GET /api/v1/companies/1001/endpoints/000413abcdef",
        "PUT /api/v1/companies/1001/endpoints/000413abcdef",
    ]
    put = fake.seen[-1]
    assert put.body == EXPECTED_BODY  # the global setting_server uuid is not used
    assert fake.endpoints["000413abcdef"] == EXPECTED_STORED
    for seen in fake.seen:
        assert HAWK_HEADER.match(seen.authorization), seen.authorization
        assert seen.accept == "application/json"
        assert ('hash="' in seen.authorization) == (seen.body is not None)


async def test_warm_register_reads_then_puts(fake: Sraps, provider: SnomProvider) -> None:
    await provider.register(DEVICE)
    fake.clear()

    await provider.register(Device(mac="000413AABBCC", server=8, url="u", http_password="p"))

    assert fake.targets() == ["GET /api/v1/companies/1001/endpoints/000413aabbcc",
                              "PUT /api/v1/companies/1001/endpoints/000413aabbcc"]


async def test_without_keeping_portal_settings_a_warm_register_is_one_call(
    fake: Sraps, transport: Transport
) -> None:
    provider = make_provider(transport, keep_portal_settings=False)
    await provider.register(DEVICE)
    fake.clear()
    await provider.register(DEVICE)
    assert fake.targets() == ["PUT /api/v1/companies/1001/endpoints/000413abcdef"]


async def test_portal_settings_profile_and_name_are_kept(
    fake: Sraps, provider: SnomProvider
) -> None:
    fake.endpoints["000413abcdef"] = {
        "mac": "000413abcdef", "autoprovisioning_enabled": True, "name": "Reception (portal)",
        "provisioning_profile": "profile-7",
        "settings_manager": {
            "uuid-3": {"value": "de", "attrs": {"perm": "RW"}},  # set in the portal
            "uuid-server": {"value": "https://old.test/", "attrs": {"perm": "RW"}},
        },
    }
    await provider.register(DEVICE)
    put = fake.seen[-1].body
    assert put["name"] == "Reception (portal)" and put["provisioning_profile"] == "profile-7"
    assert put["settings_manager"] == {
        "uuid-3": {"value": "de", "attrs": {"perm": "RW"}},
        **EXPECTED_BODY["settings_manager"],  # ours replace the old URL
    }


async def test_extra_settings_go_by_param_name(fake: Sraps, provider: SnomProvider) -> None:
    await provider.register(Device(mac=MAC, server=8, url="u", http_username="a",
                                   http_password="b", settings={"filler_2": "x"}))
    assert fake.seen[-1].body["settings_manager"]["uuid-2"] == {
        "value": "x", "attrs": {"perm": "RW"}}
    err = await failure(provider.register(Device(mac=MAC, server=8, url="u",
                                                 settings={"no_such": "1"})))
    assert err.failure is Failure.PERMANENT
    assert err.message == ("Unknown SRAPS setting 'no_such' (no such param_name in section "
                           "phone-settings)")


async def test_settings_pages_are_followed(transport: Transport, fake: Sraps) -> None:
    fake.settings = catalogue(filler=2000)  # pages of at most 1000: the uuids on page 3
    await make_provider(transport).register(DEVICE)

    assert fake.targets()[1:4] == [
        "GET /api/v1/settings/?page_size=1000",
        "GET /api/v1/settings/?page=2&page_size=1000",
        "GET /api/v1/settings/?page=3&page_size=1000",
    ]
    assert fake.seen[-1].body == EXPECTED_BODY


# Each a template on the emulator's host and port (it speaks plain HTTP on loopback).
@pytest.mark.parametrize("elsewhere", [
    "https://evil.example/api/v1/settings/?page=2&page_size=3",  # another host
    "https://{host}:{port}/api/v1/settings/?page=2&page_size=3",  # the same host, with TLS
    "http://{host}:{other_port}/api/v1/settings/?page=2&page_size=3",  # another port
    "//evil.example/api/v1/settings/?page=2",  # scheme-relative
])
async def test_a_next_page_elsewhere_is_not_followed(fake: Sraps, elsewhere: str) -> None:
    """Issue 20, finding 5: a Link rel=next to another scheme, host or port would get a
    Hawk-signed request; it is refused and the call fails (a list cut short would mislead
    a reconcile)."""
    sandbox = fake.sandbox
    elsewhere = elsewhere.format(host=sandbox.host, port=sandbox.port,
                                 other_port=sandbox.port + 1)

    async def first_page(request: httpx.Request) -> httpx.Response:
        answer = await fake.front.inner.handle_async_request(request)
        await answer.aread()
        return httpx.Response(200, json=answer.json(),
                              headers={"Link": f'<{elsewhere}>; rel="next"'})

    fake.inject("settings", first_page)
    provider = make_provider(fake.front)
    with capture_logs() as logs:
        err = await failure(provider.register(DEVICE))
    hosts = {f"{r.url.scheme}://{r.url.netloc.decode()}" for r in fake.front.sent}
    assert hosts == {sandbox.base_url}
    assert err.failure is Failure.PERMANENT
    assert err.text.startswith("SRAPS answered a next-page link to another host (")
    assert "not followed" in err.text and fake.endpoints == {}
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [
        "Link to another host ignored"]


async def test_a_device_list_page_elsewhere_is_not_followed(fake: Sraps) -> None:
    fake.inject("GET /api/v1/companies/1001/endpoints/", httpx.Response(
        200, json=[{"mac": "00:04:13:ab:cd:ef"}], headers={
            "Link": '<https://evil.example/api/v1/companies/1001/endpoints/?page=2>; '
                    'rel="next"'}))
    provider = make_provider(fake.front)
    pages = provider.list_devices(1)
    assert pages is not None
    first = await anext(pages)
    assert first.mac == MAC
    err = await failure(anext(pages))
    assert "next-page link to another host (evil.example)" in err.text
    assert "evil.example" not in [r.url.host for r in fake.front.sent]


async def test_every_settings_page_is_read_once(
    fake: Sraps, provider: SnomProvider
) -> None:
    # All three on page 1 of 5 (pages of at most 1000): later pages hold extra settings.
    fake.settings = catalogue(filler=0) + catalogue(filler=4000)[1:]
    await provider.register(DEVICE)
    await provider.register(DEVICE)
    assert sum("settings" in t for t in fake.targets()) == 5  # 4007 entries
    assert fake.seen[-1].body == EXPECTED_BODY  # the first uuid of each name wins


async def test_only_the_global_setting_server_is_refused(
    fake: Sraps, provider: SnomProvider
) -> None:
    fake.settings = [e for e in catalogue() if e["uuid"] != "uuid-server"]
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT
    assert err.message == (
        "The SRAPS settings catalogue has no setting_server in section phone-settings"
    )
    assert not fake.endpoints


async def test_without_credential_settings_nothing_is_sent(
    fake: Sraps, provider: SnomProvider
) -> None:
    fake.settings = [e for e in catalogue() if e["uuid"] != "uuid-pass"]
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT
    assert err.message == (
        "The SRAPS settings catalogue has no http_client_pass in section phone-settings: the "
        "phone would get its URL but no credentials and could never fetch its settings "
        "(401 at /ztprov/)")
    assert not fake.endpoints and not any("PUT" in t for t in fake.targets())
    result = await provider.check_credentials(8)
    assert not result.ok and "no http_client_pass" in result.message


async def test_concurrent_cold_calls_share_one_lookup(
    fake: Sraps, provider: SnomProvider
) -> None:
    devices = [Device(mac=f"0004130000{i:02X}", server=8, url="u") for i in range(5)]
    await asyncio.gather(*(provider.register(d) for d in devices))
    assert sum("tokens" in t for t in fake.targets()) == 1
    assert len(fake.endpoints) == 5


# -- deregister and lookup ----------------------------------------------------------------


async def test_deregister_deletes(fake: Sraps, provider: SnomProvider) -> None:
    await provider.register(DEVICE)
    await provider.deregister(Device(mac=MAC, server=8))
    assert fake.targets()[-1] == "DELETE /api/v1/companies/1001/endpoints/000413abcdef"
    assert not fake.endpoints
    assert 'hash="' not in fake.seen[-1].authorization


async def test_deregister_of_an_unknown_device_succeeds(
    fake: Sraps, provider: SnomProvider
) -> None:
    await provider.deregister(Device(mac=MAC, server=8))
    assert fake.targets()[-1] == "DELETE /api/v1/companies/1001/endpoints/000413abcdef"


async def test_lookup(fake: Sraps, provider: SnomProvider) -> None:
    assert await provider.lookup(DEVICE) is None
    await provider.register(DEVICE)
    assert await provider.lookup(DEVICE) == VendorRecord(MAC, "https://pbx.test/ztprov/8/")
    assert fake.targets()[-1] == "GET /api/v1/companies/1001/endpoints/000413abcdef"


# -- errors -------------------------------------------------------------------------------


async def test_key_without_role_gets_the_role_hint(fake: Sraps, provider: SnomProvider) -> None:
    fake.state.keys[KEY_ID].role = None
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT
    assert err.status == 403
    assert err.message == "403: You do not have permission to perform this action."
    assert err.hint == (
        "SRAPS refuses to register devices with this key: the key has no Role; "
        "choose a Role for the key in SRAPS (API keys)"
    )


async def test_guesses_about_the_login_settings_and_a_missing_role_field_are_said_once(
    fake: Sraps, provider: SnomProvider
) -> None:
    with capture_logs() as logs:
        await provider.register(DEVICE)
        await provider.register(DEVICE)
        fake.state.role_field = False  # the token shows no role field at all
        assert not (await provider.check_credentials(8)).ok
        assert not (await provider.check_credentials(8)).ok
    assert [(e["log_level"], e["component"], e["guess"]) for e in logs
            if e["event"] == "Relying on a guess"] == [
        ("warning", "Snom", "the phone's HTTP login goes in the SRAPS catalogue settings "
                            "http_client_user and http_client_pass (no public client writes "
                            "them)"),
        ("warning", "Snom", "a SRAPS token without a role field means the key has no Role")]


async def test_a_403_not_recognised_names_the_role_as_one_cause(
    fake: Sraps, provider: SnomProvider
) -> None:
    """The key's token shows a Role: a 403 that is not a taken MAC has no known cause, and
    the error does not claim the Role is missing."""
    await provider.register(DEVICE)
    fake.inject("endpoints", lambda r: httpx.Response(403, json={"detail": "Not allowed."}))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and err.status == 403
    assert err.text == ("403: Not allowed. (a 403 not recognised: a missing Role on the API "
                        "key is one cause; choose a Role for the key in SRAPS (API keys) if it "
                        "has none)")


async def test_mac_of_another_account(fake: Sraps, provider: SnomProvider) -> None:
    fake.foreign("000413abcdef")
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.OWNED
    assert err.message == ("The MAC belongs to another SRAPS account (403: MAC address is "
                           "taken or your account lacks permission)")
    assert "another SRAPS account" in str(err)
    assert "Role" not in err.hint


async def test_lacks_permission_is_a_taken_mac(fake: Sraps, provider: SnomProvider) -> None:
    await provider.register(DEVICE)
    detail = {"detail": "Your account lacks permission to modify this endpoint."}
    fake.inject("endpoints", lambda r: httpx.Response(403, json=detail))
    err = await failure(provider.register(DEVICE))
    assert err.message.startswith("The MAC belongs to another SRAPS account (403: ")


async def test_wrong_secret_is_permanent_and_not_cached(
    transport: Transport, fake: Sraps
) -> None:
    fake.state.keys[KEY_ID].secret = "the-real-secret"
    provider = make_provider(transport)
    err = await failure(provider.register(DEVICE))
    assert (err.failure, err.status, err.message) == (Failure.BAD_LOGIN, 401, "401: Bad mac")
    assert err.hint == ("check access_key_id and access_key_secret ([snom] of rps.ini or "
                        "PUT /providers/snom/credentials/N)")

    fake.state.keys[KEY_ID].secret = SECRET  # fixed on the SRAPS side: the next attempt
    # looks up again
    await provider.register(DEVICE)
    assert fake.targets().count("GET /api/v1/tokens/KEYID") == 2


async def test_401_on_a_warm_call_drops_the_cache(fake: Sraps, provider: SnomProvider) -> None:
    await provider.register(DEVICE)
    fake.inject("endpoints", lambda r: httpx.Response(401, json={"message": "Unauthorized"}))
    await failure(provider.register(DEVICE))
    fake.clear()
    await provider.register(DEVICE)
    assert fake.targets()[0] == "GET /api/v1/tokens/KEYID"


@pytest.mark.parametrize(
    ("header", "expected"),
    [("120", 120.0), ("Tue, 14 Nov 2023 22:15:00 GMT", 100.0), ("soon", None),
     ("100000", 300.0)],  # capped by retry_cap
)
async def test_429_throttles_with_retry_after(
    fake: Sraps, transport: Transport, header: str, expected: float | None
) -> None:
    provider = make_provider(transport, keep_portal_settings=False)
    await provider.register(DEVICE)  # NOW is 2023-11-14 22:13:20 UTC
    fake.inject("endpoints", lambda r: httpx.Response(429, headers={"Retry-After": header}))
    err = await failure(provider.register(DEVICE))
    # Without a Retry-After the account pauses for the default 2 s.
    assert (err.failure, err.status, err.retry_after) == (
        Failure.THROTTLED, 429, expected or 2.0)
    assert err.message == "429: Too Many Requests"
    assert err.transient


async def test_5xx_is_transient(fake: Sraps, provider: SnomProvider) -> None:
    fake.inject("tokens", lambda r: httpx.Response(503, text="<html>\n  upstream down\n</html>"))
    err = await failure(provider.register(DEVICE))
    assert (err.failure, err.status) == (Failure.TRANSIENT, 503)
    assert err.message == "503: <html> upstream down </html>"


def _raise(exc: type[httpx.TransportError]) -> Outcome:
    def outcome(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    return outcome


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (httpx.ReadTimeout, "Timeout after 5s"),
        (httpx.ConnectTimeout, "Timeout after 5s"),
        (httpx.ConnectError, "Connection failed: ConnectError"),
        (httpx.RemoteProtocolError, "Connection failed: RemoteProtocolError"),
    ],
)
async def test_transport_errors_are_transient(
    fake: Sraps, provider: SnomProvider, exc: type[httpx.TransportError], message: str
) -> None:
    fake.inject("tokens", _raise(exc))
    err = await failure(provider.register(DEVICE))
    assert (err.failure, err.message, err.status) == (Failure.TRANSIENT, message, None)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(200, text="not json"), "SRAPS answered the token lookup with invalid JSON"),
        (httpx.Response(200, json={"links": {}}), "SRAPS gave no links.company for the key KEYID"),
        (httpx.Response(200, json=[1]), "SRAPS answered the token lookup with no JSON object"),
    ],
)
async def test_bad_token_answers_are_permanent(
    fake: Sraps, provider: SnomProvider, response: httpx.Response, message: str
) -> None:
    fake.inject("tokens", lambda r: response)
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT
    assert err.message.startswith(message)


async def test_errors_never_show_secrets(transport: Transport, fake: Sraps) -> None:
    provider = make_provider(transport)
    await provider.register(DEVICE)
    echo = {"message": f"invalid value {PASSWORD} (key {SECRET})"}
    fake.inject("endpoints", lambda r: httpx.Response(400, json=echo))
    with capture_logs() as logs:
        err = await failure(provider.register(DEVICE))
    assert err.message == "400: invalid value *** (key ***)"
    everything = f"{err} {err.hint} {logs!r}"
    assert PASSWORD not in everything
    assert SECRET not in everything


# -- clock skew ---------------------------------------------------------------------------


@pytest.mark.parametrize("challenge", [True, False])
async def test_stale_clock_is_corrected_once(
    transport: Transport, fake: Sraps, challenge: bool
) -> None:
    # With a Hawk ts/tsm challenge, or (challenge=False) only the answer's Date header.
    fake.state.stale_challenge = challenge
    provider = make_provider(transport, clock=lambda: NOW - 3600)
    with capture_logs() as logs:
        await provider.register(DEVICE)
    assert fake.targets()[:2] == ["GET /api/v1/tokens/KEYID"] * 2
    sent = [int(s.authorization.split('ts="')[1][:10]) for s in fake.seen[:2]]
    assert sent[0] == NOW - 3600
    assert abs(sent[1] - NOW) <= 1  # the server's whole-second clock may tick meanwhile
    assert len(fake.seen) == 5  # the offset is kept: no further 401s
    assert fake.endpoints
    adjusted = [e for e in logs if e["event"] == "Clock adjusted"]
    assert adjusted[0]["skew"] == "clock skew of 3600 s"


@pytest.mark.parametrize("challenge", [True, False])
async def test_a_correction_from_the_date_header_says_its_guess_once(
    transport: Transport, fake: Sraps, challenge: bool
) -> None:
    """SRAPS's timestamp window is inferred (±60 s, as the Hawk reference servers): a 401
    put down to our clock by its Date header relies on it, and rps.log says so once per
    process; a ts/tsm challenge that verifies with our key relies on nothing guessed."""
    fake.state.stale_challenge = challenge
    with capture_logs() as logs:
        for offset in (3600, 7200):  # two processes' worth of skew: one provider, twice off
            await make_provider(transport, clock=lambda o=offset: NOW - o).register(DEVICE)
    assert len([e for e in logs if e["event"] == "Clock adjusted"]) == 2
    said = [(e["log_level"], e["component"], e["guess"]) for e in logs
            if e["event"] == "Relying on a guess" and "Hawk timestamp" in e["guess"]]
    assert said == ([] if challenge else [(
        "warning", "Snom", "SRAPS refuses a Hawk timestamp about 60 s off, as the Hawk "
        "reference servers do: a 401 whose Date is 10 s or more off our clock is put down "
        "to our clock")])


async def test_a_second_401_is_not_retried(transport: Transport, fake: Sraps) -> None:
    provider = make_provider(transport, clock=lambda: NOW - 3600)
    fake.clock_jumps = [NOW, NOW + 7200]  # SRAPS's clock jumps again before the retry
    err = await failure(provider.register(DEVICE))
    assert (err.status, err.failure) == (401, Failure.BAD_LOGIN)
    assert sum("tokens" in t for t in fake.targets()) == 2
    assert "clock skew of 3600 s" in err.hint


async def test_a_401_with_a_right_clock_is_not_retried(
    fake: Sraps, provider: SnomProvider
) -> None:
    fake.state.keys[KEY_ID].secret = "other"
    fake.inject("tokens", lambda r: httpx.Response(
        401, headers={"Date": email.utils.formatdate(NOW + 3, usegmt=True)}))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN and "clock skew" not in err.text
    assert fake.targets() == ["GET /api/v1/tokens/KEYID"]


async def test_unauthenticated_clock_hints_are_ignored(
    fake: Sraps, provider: SnomProvider
) -> None:
    forged = {"WWW-Authenticate": 'Hawk ts="1", tsm="Zm9yZ2Vk", error="Stale timestamp"'}
    fake.inject("tokens", lambda r: httpx.Response(401, headers=forged))
    err = await failure(provider.register(DEVICE))
    assert err.status == 401
    assert fake.targets() == ["GET /api/v1/tokens/KEYID"]


# -- credentials --------------------------------------------------------------------------


async def test_changed_credentials_miss_the_cache(
    transport: Transport, fake: Sraps
) -> None:
    source = FakeCredentials({8: stored(8)})
    provider = make_provider(transport, mode="tenant", creds=source)
    await provider.register(DEVICE)
    fake.state.keys[KEY_ID].secret = source.stored[8].text("access_key_secret") + "-rotated"
    source.stored[8] = stored(8, secret=fake.state.keys[KEY_ID].secret)
    fake.clear()

    await provider.register(DEVICE)
    assert [t.split()[1].split("?")[0] for t in fake.targets()] == [
        "/api/v1/tokens/KEYID",
        "/api/v1/settings/",
        "/api/v1/companies/1001/endpoints/000413abcdef",
        "/api/v1/companies/1001/endpoints/000413abcdef",
    ]


async def test_master_prefers_stored_server_1_keys(
    transport: Transport, fake: Sraps
) -> None:
    fake.state.add_key("STORED1", "stored-secret", DEMO_COMPANY_ID, "Provisioning")
    source = FakeCredentials({1: stored(1, "STORED1", "stored-secret"), 8: stored(8, "T8", "x")})
    await make_provider(transport, creds=source).register(DEVICE)
    assert fake.targets()[0] == "GET /api/v1/tokens/STORED1"
    assert all('id="STORED1"' in s.authorization for s in fake.seen)


async def test_master_falls_back_to_rps_ini(fake: Sraps, provider: SnomProvider) -> None:
    await provider.register(DEVICE)
    assert all(f'id="{KEY_ID}"' in s.authorization for s in fake.seen)


async def test_tenant_uses_the_events_server(transport: Transport, fake: Sraps) -> None:
    fake.state.add_key("T8", "tenant-secret", DEMO_COMPANY_ID, "Provisioning")
    source = FakeCredentials({1: stored(1), 8: stored(8, "T8", "tenant-secret")})
    await make_provider(transport, mode="tenant", creds=source).register(DEVICE)
    assert fake.targets()[0] == "GET /api/v1/tokens/T8"


async def test_tenant_without_keys_names_the_server(
    transport: Transport, fake: Sraps
) -> None:
    provider = make_provider(transport, mode="tenant", creds=FakeCredentials({1: stored(1)}))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT
    assert err.message == (
        "No SRAPS API keys for server 8 (tenant mode): "
        "store them with PUT /providers/snom/credentials/8"
    )
    assert not fake.seen


async def test_master_without_keys_names_the_server(
    transport: Transport, fake: Sraps
) -> None:
    source = FakeCredentials({1: stored(1, secret=""), 8: stored(8)})
    err = await failure(make_provider(transport, ini=False, creds=source).register(DEVICE))
    assert err.message == (
        "No SRAPS API keys for server 8 (master mode): set access_key_id and "
        "access_key_secret in [snom] of rps.ini or store them with "
        "PUT /providers/snom/credentials/1"
    )
    assert not fake.seen


async def test_device_url(transport: Transport) -> None:
    override = stored(8, provisioning_url="https://t8.test/ztp/{server}/")
    provider = make_provider(transport, creds=FakeCredentials({8: override}))
    assert await provider.device_url(8) == "https://t8.test/ztp/8/"
    assert await provider.device_url(3) == "https://pbx.test/ztprov/3/"


# -- check_credentials --------------------------------------------------------------------


async def test_check_ok(fake: Sraps, provider: SnomProvider) -> None:
    result = await provider.check_credentials(8)
    assert (result.ok, result.message) == (True, "SRAPS accepted the key KEYID (company 1001)")
    fake.clear()
    await provider.register(DEVICE)  # the check warmed the cache
    assert len(fake.seen) == 2


@pytest.mark.parametrize("role", [None, "", "none", "None", "NONE", "absent"])
async def test_check_key_without_role(
    fake: Sraps, provider: SnomProvider, role: str | None
) -> None:
    if role == "absent":
        fake.state.role_field = False  # the token object has no role at all
    else:
        fake.state.keys[KEY_ID].role = role
    result = await provider.check_credentials(8)
    assert not result.ok
    assert result.message == (
        "The key KEYID has no Role: SRAPS refuses to register devices with it. "
        "Choose a Role for the key in SRAPS."
    )


async def test_check_wrong_secret(fake: Sraps, provider: SnomProvider) -> None:
    fake.state.keys[KEY_ID].secret = "other"
    result = await provider.check_credentials(8)
    assert (result.ok, result.message) == (
        False,
        "SRAPS rejected the API keys: 401: Bad mac (check access_key_id and "
        "access_key_secret ([snom] of rps.ini or PUT /providers/snom/credentials/N))",
    )


async def test_check_unreachable(fake: Sraps, provider: SnomProvider) -> None:
    fake.inject("tokens", _raise(httpx.ConnectError))
    result = await provider.check_credentials(8)
    assert (result.ok, result.message) == (
        False,
        "SRAPS unreachable: Connection failed: ConnectError",
    )


async def test_check_without_keys(transport: Transport) -> None:
    result = await make_provider(transport, mode="tenant").check_credentials(8)
    assert not result.ok
    assert result.message.startswith("No SRAPS API keys for server 8 (tenant mode)")


async def test_check_never_raises(transport: Transport) -> None:
    class Broken(FakeCredentials):
        async def get_credentials(self, provider: str, server: int) -> Credentials | None:
            raise RuntimeError("database gone")

    result = await make_provider(transport, creds=Broken()).check_credentials(8)
    assert (result.ok, result.message) == (False, "Check failed: RuntimeError")


# -- logging and lifecycle ----------------------------------------------------------------


async def test_every_request_is_logged(fake: Sraps, provider: SnomProvider) -> None:
    with capture_logs() as logs:
        await provider.register(DEVICE)
    sent = [e for e in logs if e["event"] == "Sending Request"]
    # The lookups a registration triggers carry its MAC too (docs/logs.md's example line).
    assert [(e["component"], e["mac"], e["log_level"]) for e in sent] == [
        ("Snom", MAC, "info"),
    ] * 4
    assert sent[0]["url"] == f"{fake.api}tokens/KEYID"
    assert sent[3]["url"] == f"{fake.api}companies/1001/endpoints/000413abcdef"
    assert SECRET not in repr(logs)
    assert PASSWORD not in repr(logs)


async def test_close_leaves_the_shared_transport_open(
    fake: Sraps, transport: Transport
) -> None:
    provider = make_provider(transport)
    await provider.register(DEVICE)
    await provider.close()
    assert not transport.closed
    await provider.register(DEVICE)  # still usable; the cache starts cold again
    assert fake.targets().count("GET /api/v1/tokens/KEYID") == 2
