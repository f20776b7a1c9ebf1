"""The Gigaset legacy redirect: MAC-ID rules, GigasetProvider against the emulator
in-process (and a MockTransport for answers it never gives), and the gigaset phone family."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
import xmlrpc.client
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from rps_service.guesses import forget_guesses
from rps_service.models import Credentials, ServerProvisioning
from rps_service.models import Device as DeviceRow
from rps_service.providers.gigaset import (
    DEFAULT_PROVIDER_NAME,
    GigasetProvider,
    GigasetSettings,
    normalize_mac_id,
)
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.transport import AiohttpTransport
from rps_service.providers.vendor import ProviderContext
from rps_service.sandbox.gigaset import (
    DEMO_PASSWORD,
    DEMO_USER,
    FOREIGN_MAC,
    OTHER_PASSWORD,
    GigasetEmulator,
)
from rps_service.sandbox.runner import RunningSandbox
from rps_service.ztp.gigaset import GigasetFamily, with_login
from tests.conftest import SECRETS
from tests.unit import test_grape as grape_tests

SECRETS.update({DEMO_PASSWORD, OTHER_PASSWORD})
MAC = "7C2F80ABCDEF"
KEY = "0123456789ab" + "S3cretPartOfTheKey_-xyz"[:24].ljust(24, "k")
URL = f"https://pbx.test/ztprov/8/{KEY}/%MACD.xml"


# -- MAC-IDs and intake -------------------------------------------------------------------

@given(mac=st.from_regex(r"[0-9A-Fa-f]{12}", fullmatch=True),
       code=st.from_regex(r"[A-Za-z0-9]{4}", fullmatch=True), hyphen=st.booleans())
def test_a_mac_id_reads_as_mac_hyphen_code(mac: str, code: str, hyphen: bool) -> None:
    expected = f"{mac.upper()}-{code.upper()}"
    assert normalize_mac_id(code, mac.upper()) == expected
    assert normalize_mac_id(f"{mac}{'-' if hyphen else ''}{code}") == expected
    assert normalize_mac_id(f" {mac}-{code} ", "000000000000") == expected


@pytest.mark.parametrize("value", ["", "AB1", "AB123", "A-B1", "7C2F80ABCDE-AB12",
                                   "7C2F80ABCDEG-AB12", "7C2F80ABCDEF--AB12", "ÄB12"])
def test_what_is_no_mac_id(value: str) -> None:
    assert normalize_mac_id(value, MAC) is None


async def test_intake_needs_a_mac_id_for_an_add_only() -> None:
    provider = make_provider(httpx.MockTransport(lambda r: httpx.Response(500)))
    missing = await provider.event_problem("add", 8, {})
    assert missing is not None and missing[0] == "mac_id" and "required" in missing[1]
    bad = await provider.event_problem("remove", None, {"mac_id": "AB1"})
    assert bad is not None and bad[0] == "mac_id" and "must be" in bad[1]
    for action, fields in [("add", {"mac_id": "ab12"}), ("add", {"mac_id": f"{MAC}-AB12"}),
                           ("update", {}), ("remove", {})]:
        assert await provider.event_problem(action, 8, fields) is None


# -- against the emulator -----------------------------------------------------------------

class Stored:
    """The rps_credentials table: these values for every server (or none)."""

    def __init__(self, values: dict[str, str | bool] | None = None) -> None:
        self.values = values

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return Credentials(provider, server, self.values) if self.values else None


def make_provider(transport: httpx.AsyncBaseTransport, api_url: str = "https://gs.test/rpc",
                  user: str = DEMO_USER, password: str = DEMO_PASSWORD,
                  stored: Stored | None = None, **extra: Any) -> GigasetProvider:
    settings = GigasetSettings.model_validate({
        "enabled": True, "api_url": api_url, "username": user, "password": password,
        "provisioning_url": "https://pbx.test/ztprov/{server}/", **extra})
    context = ProviderContext(mode="tenant" if stored else "master", retry_cap=30,
                              credentials=stored or Stored(), transport=transport)
    return GigasetProvider(settings, context)


# The sandbox on loopback and the daemon's own transport to it, as for GRAPE.
sandbox = grape_tests.sandbox
transport = grape_tests.transport


def emulator(sandbox: RunningSandbox) -> GigasetEmulator:
    found = sandbox.state.emulators["gigaset"]
    assert isinstance(found, GigasetEmulator)
    return found


def gigaset(sandbox: RunningSandbox, transport: AiohttpTransport, **kw: Any) -> GigasetProvider:
    return make_provider(transport, emulator(sandbox).api_url(sandbox.base_url), **kw)


def device(mac: str = MAC, mac_id: str | None = None, url: str = URL) -> Device:
    return Device(mac=mac, server=8, url=url,
                  mac_id=mac_id or GigasetEmulator.label_code(mac))


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


async def test_device_url_is_the_key_folder_and_the_mac_file() -> None:
    provider = make_provider(httpx.MockTransport(lambda r: httpx.Response(500)))
    assert await provider.device_url(8, KEY) == f"https://pbx.test/ztprov/8/{KEY}/%MACD.xml"
    braced = make_provider(httpx.MockTransport(lambda r: httpx.Response(500)),
                           provisioning_url="https://pbx.test/z/{server}/{mac}/")
    assert await braced.device_url(3, KEY) == f"https://pbx.test/z/3/%MACD/{KEY}/%MACD.xml"


async def test_register_deregisters_first_then_registers(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    provider = gigaset(sandbox, transport)
    await provider.register(device())
    assert emulator(sandbox).devices[MAC].provider_name == DEFAULT_PROVIDER_NAME
    held = emulator(sandbox).holds(MAC)
    assert held is not None and held.url == URL

    # Re-point: the service does not overwrite, so it is deregister then register.
    other = URL.replace("/8/", "/9/")
    await provider.register(device(url=other))
    assert sandbox.state.history[MAC.lower()] == [
        ("registerDevice", URL), ("deregisterDevice", None), ("registerDevice", other)]
    assert emulator(sandbox).holds(MAC) == held.__class__(other, extra=held.extra)


async def test_lookup_and_remove(sandbox: RunningSandbox, transport: AiohttpTransport) -> None:
    provider = gigaset(sandbox, transport, provider_name="Acme PBX")
    assert await provider.lookup(device()) is None
    await provider.register(device())
    assert emulator(sandbox).devices[MAC].provider_name == "Acme PBX"
    assert await provider.lookup(device()) == VendorRecord(MAC)
    await provider.deregister(device())
    assert emulator(sandbox).holds(MAC) is None
    await provider.deregister(device())  # not registered (mac_not_found): success
    assert provider.list_devices(8) is None


async def test_a_wrong_label_code(sandbox: RunningSandbox, transport: AiohttpTransport) -> None:
    code = GigasetEmulator.label_code(MAC)
    wrong = "ZZZZ" if code != "ZZZZ" else "YYYY"
    err = await failure(gigaset(sandbox, transport).register(device(mac_id=wrong)))
    assert err.failure is Failure.PERMANENT
    assert err.text.startswith("Gigaset redirect refused the MAC-ID (mac_not_exist:")
    assert "4-character code" in err.text and wrong not in err.text
    assert MAC.lower() not in sandbox.state.history  # nothing was registered


async def test_a_mac_id_of_another_device_is_not_sent(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    err = await failure(gigaset(sandbox, transport).register(
        device(mac_id="7C2F80000001-AB12")))
    assert err.failure is Failure.PERMANENT and "not of 7C2F80ABCDEF" in err.text
    err = await failure(gigaset(sandbox, transport).deregister(
        Device(mac=MAC, server=8, mac_id=None)))
    assert err.failure is Failure.PERMANENT and "mac_id" in err.text
    assert sandbox.state.total == 0


async def test_a_mac_of_another_account(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    err = await failure(gigaset(sandbox, transport).register(device(mac=FOREIGN_MAC)))
    assert err.failure is Failure.OWNED
    assert err.text.startswith("The MAC belongs to another Gigaset redirect account "
                               f"(mac_already_in_use:{FOREIGN_MAC})")
    assert emulator(sandbox).devices[FOREIGN_MAC].owner != DEMO_USER


async def test_a_provider_name_the_service_refuses(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    # The credentials API takes up to 255 characters; the service fewer.
    stored = Stored({"username": DEMO_USER, "password": DEMO_PASSWORD,
                     "provider_name": "n" * 65})
    err = await failure(gigaset(sandbox, transport, stored=stored).register(device()))
    assert "refused the provider name" in err.text and "provider_name" in err.text


async def test_test_button_and_a_wrong_password(
    sandbox: RunningSandbox, transport: AiohttpTransport
) -> None:
    check = await gigaset(sandbox, transport).check_credentials(8)
    # The dummy MAC-ID's code is not its label's: the answer is about the MAC-ID.
    assert check.ok and check.message == (
        f"Gigaset redirect accepted the login {DEMO_USER} (autoprov.checkDevice answered a "
        "dummy MAC-ID with mac_not_exist:000000000000); "
        "whether the account may redirect phones is not verified: it shows only "
        "at the first add")
    bad = gigaset(sandbox, transport, password="not-the-secret")
    check = await bad.check_credentials(8)
    assert not check.ok and check.message.startswith("Gigaset redirect rejected the login: 401")
    err = await failure(bad.register(device()))
    assert err.failure is Failure.BAD_LOGIN and "check username and password" in err.text


# -- answers the emulator does not give ---------------------------------------------------

def rpc_answer(value: Any) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        body = xmlrpc.client.dumps((value,), methodresponse=True)
        return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml"})
    return answer


async def test_the_wire_shape_of_a_call() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return rpc_answer([True, "ok"])(request)

    await make_provider(httpx.MockTransport(record)).register(device(mac_id="ab12"))
    methods = [xmlrpc.client.loads(r.content) for r in seen]
    assert methods == [((f"{MAC}-AB12",), "autoprov.deregisterDevice"),
                       ((f"{MAC}-AB12", URL, DEFAULT_PROVIDER_NAME), "autoprov.registerDevice")]
    for request in seen:
        assert request.method == "POST" and str(request.url) == "https://gs.test/rpc"
        assert request.headers["content-type"] == "text/xml"
        login = base64.b64decode(request.headers["authorization"].split()[1]).decode()
        assert login == f"{DEMO_USER}:{DEMO_PASSWORD}"
        assert b"<string>" in request.content


async def test_a_refused_url_keeps_the_url_key_out_of_the_message() -> None:
    answers = iter([[True, "ok"], [False, f"url_invalid:{URL}"]])

    def answer(request: httpx.Request) -> httpx.Response:
        return rpc_answer(next(answers))(request)

    err = await failure(make_provider(httpx.MockTransport(answer)).register(device()))
    assert err.failure is Failure.PERMANENT and "refused the URL" in err.text
    assert KEY not in err.text and f"{KEY[:12]}***" in err.text
    assert "provisioning_url" in err.text


@pytest.mark.parametrize("answer, expected", [
    (xmlrpc.client.Fault(4, "too many parameters"), "fault 4: too many parameters"),
    (["not", "a", "result"], "unexpected value"),
    ({"struct": 1}, "unexpected value"),
])
async def test_answers_that_are_not_the_services(answer: Any, expected: str) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, xmlrpc.client.Fault):
            body = xmlrpc.client.dumps(answer, methodresponse=True)
            return httpx.Response(200, content=body.encode())
        return rpc_answer(answer)(request)

    err = await failure(make_provider(httpx.MockTransport(respond)).deregister(device()))
    assert err.failure is Failure.PERMANENT and expected in err.text


async def test_a_page_that_is_no_xml_rpc() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text="<html>maintenance"))
    err = await failure(make_provider(transport).deregister(device()))
    assert err.failure is Failure.PERMANENT and "no XML-RPC result" in err.text


async def test_a_5xx_is_transient() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(503, text="busy"))
    err = await failure(make_provider(transport).register(device()))
    assert err.failure is Failure.TRANSIENT


@pytest.mark.parametrize("answer", [[False, "access_denied"], [False, ""]])
async def test_a_refusal_that_is_not_about_the_mac_id_fails_the_test(answer: Any) -> None:
    check = await make_provider(httpx.MockTransport(rpc_answer(answer))).check_credentials(8)
    assert not check.ok
    assert check.message.startswith("Gigaset redirect answered the Test's autoprov.checkDevice "
                                    f"with {answer[1] or 'false'}: the login is not confirmed")


async def test_the_test_says_the_guess_it_relies_on_once() -> None:
    provider = make_provider(httpx.MockTransport(rpc_answer([False, "mac_not_found:0"])))
    with capture_logs() as logs:
        assert (await provider.check_credentials(8)).ok
        assert (await provider.check_credentials(8)).ok
    assert [(e["log_level"], e["component"], e["guess"]) for e in logs
            if e["event"] == "Relying on a guess"] == [
        ("warning", "Gigaset", "the Gigaset redirect service answers a wrong login with HTTP "
                               "401, so a look-up it answers proves the login")]


# -- the phone family ---------------------------------------------------------------------

FAMILY = GigasetFamily()
TENANT = ServerProvisioning(8, 'https://pbx.test/prov/?t=8&x=<"é">', "tenant 8",
                            "p&ss:w<o>rd")
ROW = DeviceRow(provider="gigaset", mac=MAC, server=8, status="registered")
N870 = f"Gigaset N870 IP PRO/83.V2.11.0+build.a546b91;{MAC}"
N510 = f"N510 IP PRO/42.245.00.000.000;{MAC}"


def test_which_files_are_the_devices() -> None:
    for name in (f"{MAC}.xml", f"{MAC.lower()}.xml", MAC, f"{MAC.lower()}.XML"):
        assert FAMILY.serves(name, MAC), name
    for name in ("", "master.bin", f"{MAC}.cfg", "7C2F80000000.xml", f"x{MAC}.xml"):
        assert not FAMILY.serves(name, MAC), name


@pytest.mark.parametrize("agent, model, firmware, mac", [
    (N510, "N510 IP PRO", "42.245.00.000.000", MAC),
    (N870, "N870 IP PRO", "83.V2.11.0+build.a546b91", MAC),
    ("Gigaset N720 DM PRO/70.108.00.000.000", "N720 DM PRO", "70.108.00.000.000", None),
    (f"Maxwell 3 PRO/82.2.18.4-release;{MAC.lower()}", "Maxwell 3 PRO", "82.2.18.4-release",
     MAC),
    ("curl/8.0", "curl", "8.0", None),
    ("", None, None, None),
    ("/" * 2000, None, None, None),
])
def test_user_agents(agent: str, model: str | None, firmware: str | None,
                     mac: str | None) -> None:
    parsed = FAMILY.parse_user_agent(agent)
    assert (parsed.model, parsed.firmware, parsed.mac) == (model, firmware, mac)


def xml_of(body: bytes) -> ET.Element:
    return ET.fromstring(body)  # noqa: S314 - our own output


def login_url() -> str:
    return with_login(TENANT.prov_url, TENANT.http_user, TENANT.http_password)


def test_the_login_travels_in_the_url() -> None:
    assert login_url() == ('https://tenant%208:p%26ss%3Aw%3Co%3Erd@pbx.test/prov/'
                           '?t=8&x=<"é">')
    assert with_login("https://pbx.test/p/", "", "pw") == "https://pbx.test/p/"
    assert with_login("https://a:b@pbx.test/p/", "u", "pw") == "https://a:b@pbx.test/p/"


def test_the_n670_n870_file() -> None:
    body = FAMILY.render_file("settings.xml", TENANT, ROW, N870)
    body.decode("ascii")  # plain ASCII, whatever the tenant's values hold
    root = xml_of(body)
    assert (root.tag, root.get("version"), root.get("productID")) == ("provisioning", "1.1", "e2")
    [param] = root.iter("param")
    assert param.get("name") == "Provisioning.global.ProvisioningServer"
    assert param.get("value") == login_url()


def test_the_provider_frame_file() -> None:
    body = FAMILY.render_file("settings.xml", TENANT, ROW, N510)
    body.decode("ascii")
    root = xml_of(body)
    assert root.tag == "ProviderFrame"
    assert root.get("{http://www.w3.org/2001/XMLSchema-instance}noNamespaceSchemaLocation") == (
        "N510.xsd")
    provider = root.find("Provider")
    assert provider is not None
    assert provider.find("MAC_ADDRESS").get("value") == MAC  # type: ignore[union-attr]
    assert provider.find("PROFILE_NAME").get("value") == "N510"  # type: ignore[union-attr]
    assert provider.find("VERSION") is None
    items = {i.get("ID"): i.get("value") for i in provider.iter("SYMB_ITEM")}
    assert items == {
        "BS_IP_Data1.aucS_DATA_SERVER[0]": '"' + login_url().replace('"', "%22") + '"',
        "BS_IP_Data.ucB_AUTO_UPDATE_PROFILE": "0x1",
    }


def test_the_format_follows_the_phone_then_the_guis_model() -> None:
    de410 = FAMILY.render_file("settings.xml", TENANT, ROW, f"Gigaset DE410 IP PRO/02.00.07;{MAC}")
    version = xml_of(de410).find("Provider/VERSION")
    assert version is not None and len(version.get("value", "")) == 10
    assert datetime.strptime(version.get("value", ""), "%d%m%y%H%M").replace(
        tzinfo=UTC).year == datetime.now(UTC).year
    n670 = DeviceRow(provider="gigaset", mac=MAC, server=8, status="registered", model="N670")
    assert xml_of(FAMILY.render_file("settings.xml", TENANT, n670, None)).tag == "provisioning"
    assert xml_of(FAMILY.render(TENANT, ROW)).tag == "ProviderFrame"
    assert FAMILY.sample_request(MAC, "N510 IP PRO")[0] == f"{MAC}.xml"
