"""Htek: the provider against its emulator's XML-RPC core in-process, and the phone file.

``httpx.MockTransport`` hands each request to the emulator's method table after checking
what the real service checks (Basic login, ``text/xml``, a well-formed call) and answers
``[boolean, value]`` with the value untyped, as the real service writes it. Answers the
emulator never gives (other wordings and cases, bare values, faults) are injected: the
provider must read them tolerantly.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from rps_service.access import new_url_key
from rps_service.guesses import forget_guesses
from rps_service.models import Credentials, Device, ServerProvisioning
from rps_service.providers import htek
from rps_service.providers.htek import HtekProvider, HtekSettings
from rps_service.providers.protocol import Device as VendorDevice
from rps_service.providers.protocol import Failure, ProviderError
from rps_service.providers.vendor import ProviderContext
from rps_service.providers.xmlrpc import server_name
from rps_service.sandbox.htek import (
    FOREIGN_MAC,
    OVERRIDE_PROMPT,
    HtekEmulator,
    plain_mac,
)
from rps_service.sandbox.rpcredirect import DEMO_USER, OTHER_USER
from rps_service.sandbox.state import SandboxState
from rps_service.sandbox.xmlrpc import XmlRpcRefused
from rps_service.ztp.htek import HtekFamily, render_config

API = "https://rps.test/index.php/xmlrpc"
MAC = "001FC1ABCDEF"
KEY = new_url_key()
URL = f"https://pbx.test/ztprov/8/{KEY}/"
DEVICE = VendorDevice(mac=MAC, server=8, url=URL)
Outcome = Callable[[], httpx.Response]


def untyped(ok: bool | int | str, text: str) -> httpx.Response:
    first = f"<boolean>{int(ok)}</boolean>" if not isinstance(ok, str) else ok
    body = ("<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
            f"<value>{first}</value><value>{text}</value></data>"
            "</array></value></param></params></methodResponse>")
    return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml"})


def bare(value: str) -> httpx.Response:
    body = (f"<?xml version='1.0'?><methodResponse><params><param><value>{value}</value>"
            "</param></params></methodResponse>")
    return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml"})


def faulted(code: int, text: str) -> httpx.Response:
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True)
    return httpx.Response(200, content=body.encode())


@dataclass
class Rps:
    """MockTransport handler: the emulator's methods behind the service's HTTP rules."""

    emulator: HtekEmulator
    seen: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    injected: list[tuple[str, Outcome]] = field(default_factory=list)

    def inject(self, method: str, outcome: Outcome) -> None:
        self.injected.append((method, outcome))

    def methods(self) -> list[str]:
        return [m.removeprefix("redirect.") for m, _ in self.seen]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user, _, password = base64.b64decode(token).decode().partition(":")
        if scheme != "Basic" or not self.emulator._login(user, password):
            return httpx.Response(401, text="Unauthorized")
        assert request.method == "POST" and request.headers["Content-Type"] == "text/xml"
        params, method = xmlrpc.client.loads(request.content)
        assert method is not None
        self.seen.append((method, params))
        for i, (wanted, outcome) in enumerate(self.injected):
            if wanted == method:
                del self.injected[i]
                return outcome()
        try:
            ok, text = self.emulator.call(user, method, params)
        except XmlRpcRefused as refused:
            assert isinstance(refused.response.body, bytes)
            return httpx.Response(200, content=refused.response.body)
        return untyped(ok, text)


class Store:
    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return None


def make_provider(handler: Rps, **section: Any) -> HtekProvider:
    settings = HtekSettings.model_validate({
        "api_url": API, "timeout": 5, "rate_limit": 1000, "username": DEMO_USER,
        "password": handler.emulator.accounts[DEMO_USER],
        "provisioning_url": "https://pbx.test/ztprov/{server}/", **section})
    context = ProviderContext(mode="master", retry_cap=300, credentials=Store(),
                              transport=httpx.MockTransport(handler))
    return HtekProvider(settings, context)


@pytest.fixture
def fake() -> Rps:
    return Rps(HtekEmulator(SandboxState()))


@pytest.fixture
def provider(fake: Rps) -> HtekProvider:
    return make_provider(fake)


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


# -- the provider ---------------------------------------------------------------------------


async def test_register_adds_a_server_for_the_device_url_then_registers_the_mac(
        fake: Rps, provider: HtekProvider) -> None:
    await provider.register(DEVICE)
    name = server_name(DEMO_USER, URL)
    assert fake.seen == [("redirect.addServer", (name, URL)),
                         ("redirect.registerDevice", ("001fc1abcdef", name))]
    held = fake.emulator.holds(MAC)
    assert held is not None and held.url == URL
    snapshot = fake.emulator.snapshot()
    assert snapshot["devices"][MAC]["server"] == name and KEY not in str(snapshot)
    await provider.register(DEVICE)  # again: the server is known, the MAC is ours
    assert fake.methods()[2:] == ["registerDevice", "deRegisterDevice", "registerDevice"]
    assert fake.emulator.holds(MAC) == held
    assert all(len(p) == 2 for m, p in fake.seen if m == "redirect.registerDevice")


async def test_a_restarted_daemon_takes_an_existing_server_as_its_own(fake: Rps) -> None:
    await make_provider(fake).register(DEVICE)
    with capture_logs() as logs:
        await make_provider(fake).register(DEVICE)
    assert fake.methods()[2:4] == ["addServer", "registerDevice"]
    assert any(e["event"] == "Server already exists" for e in logs)


async def test_a_server_deleted_behind_our_back_is_added_again(
        fake: Rps, provider: HtekProvider) -> None:
    await provider.register(DEVICE)
    del fake.emulator.servers[server_name(DEMO_USER, URL)]
    other = VendorDevice(mac="001FC1000002", server=8, url=URL)
    await provider.register(other)
    assert fake.methods()[2:] == ["registerDevice", "addServer", "registerDevice"]


async def test_another_users_mac_fails_without_override(fake: Rps,
                                                        provider: HtekProvider) -> None:
    err = await failure(provider.register(VendorDevice(mac=FOREIGN_MAC, server=8, url=URL)))
    assert err.failure is Failure.OWNED
    assert err.message.startswith("The MAC belongs to another Htek RPS account")
    assert "override = true" in err.hint
    assert [len(p) for m, p in fake.seen if m == "redirect.registerDevice"] == [2]
    assert fake.emulator.owner(FOREIGN_MAC) == OTHER_USER


async def test_override_true_sends_the_flag_with_a_warning(fake: Rps) -> None:
    provider = make_provider(fake, override=True)
    with capture_logs() as logs:
        await provider.register(VendorDevice(mac=FOREIGN_MAC, server=8, url=URL))
    flags = [p[2:] for m, p in fake.seen if m == "redirect.registerDevice"]
    assert flags == [(), ("1",)]
    assert fake.emulator.owner(FOREIGN_MAC) == DEMO_USER
    assert any("another Htek RPS account" in e["event"] for e in logs
               if e["log_level"] == "warning")


async def test_a_refused_override_flag_is_not_read_as_another_users(fake: Rps) -> None:
    provider = make_provider(fake, override=True)
    fake.inject("redirect.registerDevice", lambda: untyped(0, OVERRIDE_PROMPT))
    fake.inject("redirect.registerDevice", lambda: untyped(0, "Error:Invalid override flag"))
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.PERMANENT and "Invalid override flag" in err.message
    assert "experimental" in err.hint


@pytest.mark.parametrize("text", [
    OVERRIDE_PROMPT, "ARE YOU SURE YOU WANT TO OVERRIDE MAC ADDRESSES?",
    "Error: are you sure you want to override mac address(es)"])
async def test_the_override_prompt_is_read_in_any_case(fake: Rps, provider: HtekProvider,
                                                       text: str) -> None:
    fake.inject("redirect.registerDevice", lambda: untyped(0, text))
    assert (await failure(provider.register(DEVICE))).failure is Failure.OWNED


@pytest.mark.parametrize("text", ["Existing MAC(s): 001fc1abcdef",
                                  "Error:existing mac(s):001fc1abcdef", "EXISTINGMAC"])
async def test_existing_is_read_in_any_wording_and_re_registered(
        fake: Rps, provider: HtekProvider, text: str) -> None:
    await provider.register(DEVICE)
    fake.inject("redirect.registerDevice", lambda: untyped(0, text))
    await provider.register(DEVICE)
    assert fake.methods()[2:] == ["registerDevice", "deRegisterDevice", "registerDevice"]


@pytest.mark.parametrize(("outcome", "kind", "words"), [
    (lambda: untyped(0, "Error:Invalid MAC(s):00s1122334400"), Failure.PERMANENT,
     "does not take this MAC"),
    (lambda: untyped(0, "invalid mac(s): x"), Failure.PERMANENT, "does not take this MAC"),
    (lambda: untyped("<string>false</string>", "Error:something new"), Failure.PERMANENT,
     "experimental"),
    (lambda: faulted(4, "Too many parameters"), Failure.PERMANENT, "fault 4"),
    (lambda: faulted(1, "Authentication failed"), Failure.BAD_LOGIN, "username and password"),
    (lambda: bare("<string>Error: who knows</string>"), Failure.PERMANENT, "who knows"),
    (lambda: bare("<struct></struct>"), Failure.PERMANENT, "unexpected result"),
    (lambda: httpx.Response(429, headers={"Retry-After": "3"}), Failure.THROTTLED, "429"),
    (lambda: httpx.Response(502, text="Bad Gateway"), Failure.TRANSIENT, "502"),
    (lambda: httpx.Response(200, text="<html>maintenance</html>"), Failure.PERMANENT,
     "no XML-RPC result"),
])
async def test_answers_are_classified(fake: Rps, provider: HtekProvider, outcome: Outcome,
                                      kind: Failure, words: str) -> None:
    fake.inject("redirect.registerDevice", outcome)
    err = await failure(provider.register(DEVICE))
    assert err.failure is kind, err
    assert words in err.text


@pytest.mark.parametrize("answer", [
    lambda: untyped(1, "OK"), lambda: untyped("<string>1</string>", "ok"),
    lambda: untyped("<int>1</int>", "OK"), lambda: bare("OK"),
    lambda: bare("<boolean>1</boolean>")])
async def test_success_is_read_in_any_shape(fake: Rps, provider: HtekProvider,
                                            answer: Outcome) -> None:
    fake.inject("redirect.registerDevice", answer)
    await provider.register(DEVICE)  # no error


async def test_remove_and_a_mac_that_is_not_there(fake: Rps, provider: HtekProvider) -> None:
    await provider.register(DEVICE)
    await provider.deregister(VendorDevice(mac=MAC, server=8))
    assert fake.emulator.holds(MAC) is None
    await provider.deregister(VendorDevice(mac=MAC, server=8))  # "not registered": done
    assert fake.methods()[-1] == "deRegisterDevice"
    fake.inject("redirect.deRegisterDevice", lambda: untyped(0, "Error:busy"))
    await provider.deregister(VendorDevice(mac=MAC, server=8))  # unclear: asks, not there
    assert fake.methods()[-2:] == ["deRegisterDevice", "checkDevice"]

    await provider.register(DEVICE)
    fake.inject("redirect.deRegisterDevice", lambda: untyped(0, "Error:busy"))
    err = await failure(provider.deregister(VendorDevice(mac=MAC, server=8)))
    assert err.failure is Failure.PERMANENT and "Error:busy" in err.message
    assert "experimental" in err.hint


async def test_lookup(fake: Rps, provider: HtekProvider) -> None:
    assert await provider.lookup(VendorDevice(mac=MAC, server=8)) is None
    await provider.register(DEVICE)
    record = await provider.lookup(VendorDevice(mac=MAC, server=8))
    assert record is not None and record.ours
    foreign = await provider.lookup(VendorDevice(mac=FOREIGN_MAC, server=8))
    assert foreign is not None and not foreign.ours
    fake.inject("redirect.checkDevice", lambda: untyped(1, "  Registered_Elsewhere "))
    foreign = await provider.lookup(VendorDevice(mac=MAC, server=8))
    assert foreign is not None and not foreign.ours
    fake.inject("redirect.checkDevice", lambda: untyped(1, "maybe"))
    assert (await failure(provider.lookup(VendorDevice(mac=MAC, server=8)))).failure \
        is Failure.PERMANENT


async def test_the_test_button_says_what_it_did_not_verify(fake: Rps,
                                                           provider: HtekProvider) -> None:
    result = await provider.check_credentials(8)
    assert result.ok and DEMO_USER in result.message, result
    assert "answered a look-up with unregistered" in result.message
    assert "may redirect phones is not verified" in result.message
    result = await make_provider(fake, password="not-the-password").check_credentials(8)
    assert not result.ok and "rejected" in result.message


@pytest.mark.parametrize(("outcome", "words"), [
    (lambda: faulted(-32601, "method not found"), "the login is not confirmed"),
    (lambda: untyped(0, "Error:Invalid MAC(s):x"), "the login is not confirmed"),
    (lambda: faulted(2, "Permission denied"), "rejected"),
    (lambda: untyped(0, "Error:Login failed"), "rejected"),
])
async def test_the_test_fails_on_what_no_working_login_gets(
        fake: Rps, provider: HtekProvider, outcome: Outcome, words: str) -> None:
    fake.inject("redirect.checkDevice", outcome)
    result = await provider.check_credentials(8)
    assert not result.ok and words in result.message, result


async def test_each_guess_is_said_once_per_process(fake: Rps, provider: HtekProvider) -> None:
    forget_guesses()
    with capture_logs() as logs:
        await provider.register(DEVICE)
        await provider.deregister(VendorDevice(mac=MAC, server=8))
        await provider.register(DEVICE)
        await provider.deregister(VendorDevice(mac=MAC, server=8))
    guesses = [e["guess"] for e in logs if e["event"] == "Relying on a guess"]
    assert all(e["log_level"] == "warning" for e in logs if e["event"] == "Relying on a guess")
    assert guesses == [htek.GUESS_EXPERIMENTAL, htek.GUESS_ADD_SERVER, htek.GUESS_DEREGISTER]
    forget_guesses()


async def test_url_keys_and_passwords_never_reach_an_error_text(
        fake: Rps, provider: HtekProvider) -> None:
    password = fake.emulator.accounts[DEMO_USER]
    fake.inject("redirect.addServer", lambda: untyped(0, f"Error:bad url {URL} {password}"))
    err = await failure(provider.register(DEVICE))
    assert KEY not in err.text and password not in err.text


# -- the emulator ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["001FC1ABCDEF", "001fc1abcdef", "00:1F:C1:AB:CD:EF",
                                  "00-1f-c1-ab-cd-ef", "00 1F C1 AB CD EF"])
def test_the_emulator_takes_the_four_mac_forms(form: str) -> None:
    assert plain_mac(form) == MAC


@pytest.mark.parametrize("form", ["001FC1ABCDE", "00:1F-C1:AB:CD:EF", "00s1122334400"])
def test_the_emulator_refuses_other_macs(form: str) -> None:
    emulator = HtekEmulator(SandboxState())
    emulator.call(DEMO_USER, "redirect.addServer", ("s1", "https://pbx.test/"))
    ok, text = emulator.call(DEMO_USER, "redirect.registerDevice", (form, "s1"))
    assert not ok and text.startswith("Error:Invalid MAC(s):")


@pytest.mark.parametrize("params", [("m",), ("m", "s", "1", "x"), ("m", "s", 1)])
def test_the_emulator_checks_arity_and_types(params: tuple[Any, ...]) -> None:
    with pytest.raises(XmlRpcRefused):
        HtekEmulator(SandboxState()).call(DEMO_USER, "redirect.registerDevice", params)


def test_the_emulator_refuses_unknown_servers_and_bad_flags() -> None:
    emulator = HtekEmulator(SandboxState())
    assert emulator.call(DEMO_USER, "redirect.registerDevice", (MAC, "other-pbx")) == (
        False, "Error: Invalid server")  # another account's server
    emulator.call(DEMO_USER, "redirect.addServer", ("s1", "https://pbx.test/"))
    ok, text = emulator.call(DEMO_USER, "redirect.registerDevice", (MAC, "s1", "yes"))
    assert not ok and "override flag" in text
    assert emulator.call(DEMO_USER, "redirect.addServer", ("s" * 21, "https://x.test/"))[0] \
        is False


# -- the phone family -----------------------------------------------------------------------


def test_the_phone_file_hands_the_phone_on_in_hl_provision() -> None:
    body = render_config("https://prov.test/p/?a=1&b=<2>", "user\x07", 'pw&"<x>')
    root = ET.fromstring(body)  # noqa: S314 - our own output
    assert root.tag == "hl_provision" and root.get("version") == "1"
    config = root.find("config")
    assert config is not None and config.get("version") == "1"
    values = {e.tag: (e.get("para"), e.text) for e in config}
    assert values == {
        "P212": ("FirmwareUpGrade.UrgrateMode", "3"),
        "P237": ("FirmwareUpGrade.ConfigServerPath", "https://prov.test/p/?a=1&b=<2>"),
        "P1360": ("FirmwareUpGrade.UserName", "user"),
        "P1361": ("FirmwareUpGrade.Password", 'pw&"<x>'),
    }
    plain = ET.fromstring(render_config("http://prov.test/", "u", "p"))  # noqa: S314
    assert plain.findtext("config/P212") == "1"


def test_the_family_serves_only_cfg_mac_xml() -> None:
    family = HtekFamily()
    assert family.file_mac("cfg001fc11a9664.xml") == "001FC11A9664"
    assert family.file_mac("Cfg001FC11A9664.XML") == "001FC11A9664"
    for name in ("cfg001fc11a9664", "cfg0000000000.xml", "Factory0001.bin", "001fc11a9664.cfg",
                 "cfg001fc11a9664.xml.bak"):
        assert family.file_mac(name) is None, name
    provisioning = ServerProvisioning(server=8, prov_url="https://prov.test/",
                                      http_user="u", http_password="p")
    device = Device(provider="htek", mac=MAC, server=8, status="registered")
    assert b"<P237" in family.render(provisioning, device)


@pytest.mark.parametrize(("agent", "model", "firmware", "mac"), [
    ("Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9", "UC903", "2.0.4.2", "001FC11C22A9"),
    ("Htek UC926 2.0.4.2 00:1f:c1:00:00:00", "UC926", "2.0.4.2", "001FC1000000"),
    ("Htek UC912E", "UC912E", None, None),
    ("Mozilla/5.0", None, None, None),
    (None, None, None, None),
])
def test_user_agents(agent: str | None, model: str | None, firmware: str | None,
                     mac: str | None) -> None:
    ua = HtekFamily().parse_user_agent(agent)
    assert (ua.model, ua.firmware, ua.mac) == (model, firmware, mac)


def test_the_sample_request_is_what_the_family_serves() -> None:
    family = HtekFamily()
    name, agent = family.sample_request(MAC, "UC903")
    assert family.serves(name, MAC) and family.parse_user_agent(agent).mac == MAC
