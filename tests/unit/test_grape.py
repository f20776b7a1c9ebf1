"""GrapeProvider: against the GRAPE emulator in-process (strict Hawk, its own world) and,
for answers the emulator never gives, an httpx.MockTransport."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from rps_service.access import AccessMode
from rps_service.guesses import forget_guesses
from rps_service.models import Credentials
from rps_service.providers.grape import GrapeProvider, GrapeSettings
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.transport import AiohttpTransport
from rps_service.providers.vendor import ProviderContext
from rps_service.sandbox.grape import (
    DEMO_COMPANY_ID,
    DEMO_KEY_ID,
    DEMO_SECRET,
    FOREIGN_MAC,
    NOROLE_KEY_ID,
    NOROLE_SECRET,
    URL_SETTING_UUID,
    GrapeEmulator,
    grape_uuid,
)
from rps_service.sandbox.runner import RunningSandbox
from rps_service.vendors import VENDORS
from tests.conftest import SECRETS
from tests.emulated import sandbox, transport

__all__ = ["sandbox", "transport"]  # fixtures

SECRETS.update({DEMO_SECRET, NOROLE_SECRET})
MAC = "7C2F80ABCDEF"
URL = "https://pbx.test/ztprov/8/0123456789abKEYKEYKEYKEYKEYKEYKEYKEY/"
DEVICE = Device(mac=MAC, server=8, url=URL)


class NoCredentials:
    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return None


def provider_for(api_url: str, transport: httpx.AsyncBaseTransport,
                 key: str = DEMO_KEY_ID, secret: str = DEMO_SECRET) -> GrapeProvider:
    settings = GrapeSettings.model_validate({
        "enabled": True, "api_url": api_url, "access_key_id": key,
        "access_key_secret": secret, "provisioning_url": "https://pbx.test/ztprov/{server}/"})
    context = ProviderContext(mode="master", retry_cap=30, credentials=NoCredentials(),
                              transport=transport)
    return GrapeProvider(settings, context)


def emulator(sandbox: RunningSandbox) -> GrapeEmulator:
    found = sandbox.state.emulators["gigaset-grape"]
    assert isinstance(found, GrapeEmulator)
    return found


def grape(sandbox: RunningSandbox, transport: AiohttpTransport, **kw: Any) -> GrapeProvider:
    return provider_for(emulator(sandbox).api_url(sandbox.base_url), transport, **kw)


def routes(sandbox: RunningSandbox) -> list[str]:
    return [f"{r.method} {r.path}" for r in sandbox.state.records]


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


def guesses(logs: list[dict[str, Any]]) -> list[str]:
    return [e["guess"] for e in logs
            if e["event"] == "Relying on a guess" and e["log_level"] == "warning"]


# -- against the emulator -----------------------------------------------------------------


async def test_facts() -> None:
    assert GrapeProvider.access is AccessMode.URL_KEY
    assert VENDORS["gigaset-grape"].family is VENDORS["snom"].family
    assert GrapeSettings().api_url == "https://api.grape.gigaset.net/api/v1/"
    assert GrapeSettings.credential_keys == ("access_key_id", "access_key_secret")


async def test_cold_register_follows_the_links_and_sets_provisioning_server(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    await grape(sandbox, transport).register(DEVICE)

    base = "/gigaset-grape/api/v1"
    assert routes(sandbox) == [
        f"GET {base}/tokens/{DEMO_KEY_ID}",
        f"GET {base}/companies/{DEMO_COMPANY_ID}/",
        f"GET {base}/settings/?page_size=1000",
        f"GET {base}/settings/?page=2&page_size=1000",  # ProvisioningServer is on page 2
        f"GET {base}/companies/{DEMO_COMPANY_ID}/endpoints/7c2f80abcdef",
        f"PUT {base}/companies/{DEMO_COMPANY_ID}/endpoints/7c2f80abcdef",
    ]
    held = emulator(sandbox).holds(MAC)
    assert held is not None and held.url == URL and held.username is None
    # Only the URL: GRAPE has no setting known to carry a login to the phone.
    assert held.extra["endpoint"]["settings_manager"] == {
        URL_SETTING_UUID: {"value": URL, "attrs": {"perm": "RW"}}}
    assert sandbox.state.history["7c2f80abcdef"] == [("PUT", URL)]


async def test_warm_register_is_the_read_and_the_put(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    provider = grape(sandbox, transport)
    await provider.register(DEVICE)
    sandbox.state.reset_counts()

    await provider.register(Device(mac="7C2F80000001", server=8, url=URL))

    assert [r.split(" ")[0] for r in routes(sandbox)] == ["GET", "PUT"]
    assert routes(sandbox)[1].endswith("/endpoints/7c2f80000001")


async def test_lookup_list_and_deregister(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    provider = grape(sandbox, transport)
    for mac in (MAC, "7C2F80000002"):
        await provider.register(Device(mac=mac, server=8, url=URL))

    assert await provider.lookup(DEVICE) == VendorRecord(MAC, URL)
    listing = provider.list_devices(8)
    assert listing is not None
    assert sorted([r.mac async for r in listing]) == ["7C2F80000002", MAC]

    await provider.deregister(Device(mac=MAC, server=8))
    assert await provider.lookup(DEVICE) is None
    assert emulator(sandbox).holds(MAC) is None
    await provider.deregister(Device(mac=MAC, server=8))  # already gone: success


async def test_extra_settings_go_by_param_name_alone(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    device = Device(mac=MAC, server=8, url=URL, settings={"language": "Deutsch"})
    await grape(sandbox, transport).register(device)
    held = emulator(sandbox).holds(MAC)
    assert held is not None
    manager = held.extra["endpoint"]["settings_manager"]
    assert manager[grape_uuid("language")] == {"value": "Deutsch", "attrs": {"perm": "RW"}}

    err = await failure(grape(sandbox, transport).register(
        Device(mac=MAC, server=8, url=URL, settings={"no_such_setting": "1"})))
    assert err.failure is Failure.PERMANENT and "no_such_setting" in err.text


async def test_a_mac_of_another_account(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    err = await failure(grape(sandbox, transport).register(
        Device(mac=FOREIGN_MAC, server=8, url=URL)))
    assert err.failure is Failure.OWNED
    assert err.text.startswith("The MAC belongs to another GRAPE account")
    assert "ask Gigaset support" in err.text


async def test_a_key_without_role(sandbox: RunningSandbox, transport: AiohttpTransport) -> None:
    provider = grape(sandbox, transport, key=NOROLE_KEY_ID, secret=NOROLE_SECRET)
    # GRAPE's token shows no role: the Test cannot tell and does not refuse the key...
    check = await provider.check_credentials(8)
    assert check.ok, check.message
    # ...and the write's 403 says what to do.
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and err.status == 403
    assert "choose a Role for the key in GRAPE" in err.text


async def test_test_button_and_a_wrong_secret(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    check = await grape(sandbox, transport).check_credentials(8)
    # The Role is not shown by GRAPE's token: the Test says it did not verify it.
    assert check.ok and check.message == (
        f"GRAPE accepted the key {DEMO_KEY_ID} (company {DEMO_COMPANY_ID}); whether the "
        "key has a Role is not verified: GRAPE's token does not show it (a write refused "
        "with 403 is the first sign)")

    bad = grape(sandbox, transport, secret="not-the-secret")
    err = await failure(bad.register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN and "check access_key_id and" in err.text
    check = await bad.check_credentials(8)
    assert not check.ok and check.message.startswith("GRAPE rejected the API keys")


# -- answers the emulator does not give ---------------------------------------------------

API = "https://grape.test/api/v1/"


class FakeGrape:
    """Token, company and catalogue as given; endpoints accepted; every request kept."""

    def __init__(self, token: dict[str, Any], company: dict[str, Any],
                 catalogue: list[dict[str, str]] | None = None) -> None:
        self.token, self.company = token, company
        self.catalogue = catalogue if catalogue is not None else [
            {"uuid": "u-ps", "param_name": "ProvisioningServer"}]
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url}")
        path = request.url.path
        if "/tokens/" in path:
            return httpx.Response(200, json=self.token)
        if path.endswith("/settings/"):
            return httpx.Response(200, json=self.catalogue)
        if "/endpoints/" in path:
            return httpx.Response(404 if request.method == "GET" else 200, json={})
        return httpx.Response(200, json=self.company)


def token(company: str = f"{API}companies/c9/", **extra: Any) -> dict[str, Any]:
    return {"links": {"company": company}, **extra}


async def test_an_explicit_empty_role_is_refused_at_the_test() -> None:
    fake = FakeGrape(token(role="None"), {"links": {"endpoints": f"{API}companies/c9/ep/"}})
    check = await provider_for(API, httpx.MockTransport(fake)).check_credentials(8)
    assert not check.ok and "has no Role" in check.message


async def test_the_endpoints_link_is_followed_as_given() -> None:
    fake = FakeGrape(token(), {"links": {"endpoints": f"{API}companies/c9/devices"}})
    await provider_for(API, httpx.MockTransport(fake)).register(DEVICE)
    assert fake.seen[-1] == f"PUT {API}companies/c9/devices/7c2f80abcdef"


async def test_links_to_another_host_are_not_followed() -> None:
    fake = FakeGrape(token(company="https://elsewhere.test/api/v1/companies/c9/"),
                     {"links": {"endpoints": "https://elsewhere.test/c9/endpoints/"}})
    with capture_logs() as logs:
        await provider_for(API, httpx.MockTransport(fake)).register(DEVICE)
    assert not [s for s in fake.seen if "elsewhere" in s]
    assert f"GET {API}companies/c9/" in fake.seen  # built from the company id instead
    assert fake.seen[-1] == f"PUT {API}companies/c9/endpoints/7c2f80abcdef"
    assert any(e["event"] == "Link to another host ignored" for e in logs)


async def test_a_company_without_an_endpoints_link() -> None:
    fake = FakeGrape(token(), {"links": {}})
    err = await failure(provider_for(API, httpx.MockTransport(fake)).register(DEVICE))
    assert err.failure is Failure.PERMANENT and "links.endpoints" in err.text


async def test_a_catalogue_without_provisioning_server() -> None:
    fake = FakeGrape(token(), {"links": {"endpoints": f"{API}companies/c9/endpoints/"}},
                     catalogue=[{"uuid": "u1", "param_name": "setting_server",
                                 "section": "phone-settings"}])
    provider = provider_for(API, httpx.MockTransport(fake))
    err = await failure(provider.register(DEVICE))
    assert err.text == "The GRAPE settings catalogue has no ProvisioningServer"
    check = await provider.check_credentials(8)
    assert not check.ok and "ProvisioningServer" in check.message


async def test_a_skewed_clock_is_corrected_by_grapes_challenge(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    sandbox.state.clock_offset = 600  # GRAPE's clock ten minutes ahead of ours
    await grape(sandbox, transport).register(DEVICE)
    statuses = [r.status for r in sandbox.state.records]
    assert statuses[0] == 401 and statuses[-1] == 201  # one stale answer, then corrected
    assert emulator(sandbox).holds(MAC) is not None


# -- guesses ------------------------------------------------------------------------------


async def test_remove_says_its_guesses_once(sandbox: RunningSandbox,
                                            transport: AiohttpTransport) -> None:
    """No public GRAPE client removes a device: the DELETE and its 404 are SRAPS's, and
    rps.log says so the first time they are relied on, not on every remove."""
    provider = grape(sandbox, transport)
    await provider.register(DEVICE)
    with capture_logs() as logs:
        await provider.deregister(DEVICE)
        await provider.deregister(DEVICE)  # gone: 404, counted as removed
        await provider.deregister(DEVICE)
    assert emulator(sandbox).holds(MAC) is None
    assert guesses(logs) == [
        "GRAPE removes a device with DELETE of its endpoint, as SRAPS does",
        "a 404 to GRAPE's DELETE of an endpoint means the device is already removed"]
    assert all(e["component"] == "Gigaset" for e in logs if e["event"] == "Relying on a guess")


async def test_lookup_and_list_say_their_guesses(sandbox: RunningSandbox,
                                                 transport: AiohttpTransport) -> None:
    provider = grape(sandbox, transport)
    with capture_logs() as logs:
        assert await provider.lookup(DEVICE) is None
        listing = provider.list_devices(8)
        assert listing is not None and [r async for r in listing] == []
    assert guesses(logs) == [
        "GRAPE shows a device with GET of its endpoint and answers 404 when it holds none, "
        "as SRAPS does",
        "GRAPE lists its devices with GET of the endpoint collection, as SRAPS does"]


async def test_an_unrecognised_403_is_not_called_a_missing_role() -> None:
    """GRAPE's token shows no Role, so a 403 on the PUT has no known cause: the error
    says so and names the Role as one cause, without claiming it."""
    def refuse(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            return httpx.Response(403, json={"detail": "Forbidden by policy"})
        return fake(request)

    fake = FakeGrape(token(), {"links": {"endpoints": f"{API}companies/c9/endpoints/"}})
    err = await failure(provider_for(API, httpx.MockTransport(refuse)).register(DEVICE))
    assert err.failure is Failure.PERMANENT and err.status == 403
    assert err.text == ("403: Forbidden by policy (a 403 not recognised: a missing Role on the "
                        "API key is one cause; choose a Role for the key in GRAPE (API keys) "
                        "if it has none)")
    assert "has no Role" not in err.text
