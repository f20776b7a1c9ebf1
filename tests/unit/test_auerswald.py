"""AuerswaldProvider against an in-process XML-RPC service, and the Auerswald phone family.

The provider: lower-case MACs, truthy/falsy answers, and the look-up after a refusal that
tells "another account holds it" from a plain refusal (register) and "nothing of ours"
from a refusal (remove). The family: file names, User-Agent, the provisioning-xml.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any, cast
from xmlrpc.client import Fault

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from rps_service.guesses import forget_guesses
from rps_service.models import Device as DeviceRow
from rps_service.models import ServerProvisioning
from rps_service.providers.auerswald import AuerswaldProvider
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.ztp.auerswald import AuerswaldFamily
from rps_service.ztp.useragent import UserAgent
from tests.rpcfake import KEY, FakeRpc, make

MAC = "000952ABCDEF"
WIRE_MAC = "000952abcdef"
URL = f"https://pbx.test/ztprov/8/{KEY}/<MACADR>.xml"
DEVICE = Device(mac=MAC, server=8, url=URL)
FAMILY = AuerswaldFamily()


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


def provider(fake: FakeRpc) -> AuerswaldProvider:
    return cast(AuerswaldProvider, make(AuerswaldProvider, fake))


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


def world(register: Any = True, deregister: Any = True, info: Any = False) -> FakeRpc:
    answers = {"DeviceRegister": register, "DeviceDeregister": deregister, "DeviceInfo": info}
    return FakeRpc(lambda method, params: answers[method])


# -- the provider -------------------------------------------------------------------------


async def test_device_url_ends_in_the_marker_the_phone_replaces() -> None:
    assert await provider(world()).device_url(8, KEY) == URL


@pytest.mark.parametrize("truthy", [True, 1, "ok", {"mac": WIRE_MAC}])
async def test_register_success_is_any_truthy_answer(truthy: Any) -> None:
    fake = world(register=truthy)
    await provider(fake).register(DEVICE)
    [call] = fake.calls
    assert call.path == "/xmlrpc/"
    assert (call.method, call.params, call.all_strings) == (
        "DeviceRegister", (WIRE_MAC, URL), True)


@pytest.mark.parametrize("falsy", [False, 0, "", {}])
async def test_a_refused_mac_this_account_does_not_hold_is_anothers(falsy: Any) -> None:
    fake = world(register=falsy, info=False)
    err = await failure(provider(fake).register(DEVICE))
    assert err.failure is Failure.OWNED
    assert "The MAC belongs to another Auerswald redirection account" in err.text
    assert "Auerswald does not say why" in err.text
    assert [(c.method, c.params) for c in fake.calls] == [
        ("DeviceRegister", (WIRE_MAC, URL)), ("DeviceInfo", (WIRE_MAC,))]


async def test_reading_a_refusal_as_anothers_says_the_guess_once() -> None:
    with capture_logs() as logs:
        for _ in range(2):
            await failure(provider(world(register=False, info=False)).register(DEVICE))
    assert [(e["log_level"], e["component"], e["guess"]) for e in logs
            if e["event"] == "Relying on a guess"] == [
        ("warning", "Auerswald", "a refused DeviceRegister for a MAC this account does not "
                                 "hold means another account holds it")]


async def test_a_refused_mac_this_account_holds_is_a_plain_refusal() -> None:
    fake = world(register=False, info={"mac": WIRE_MAC, "url": "https://old.test/"})
    err = await failure(provider(fake).register(DEVICE))
    assert err.failure is Failure.PERMANENT
    assert "refused DeviceRegister (answered False)" in err.text
    assert "stays registered to this account with its previous URL" in err.text


async def test_a_fault_is_permanent_without_the_key() -> None:
    err = await failure(provider(world(register=Fault(7, f"bad {URL}"))).register(DEVICE))
    assert err.failure is Failure.PERMANENT and "fault 7" in err.text
    assert KEY[12:] not in err.text


async def test_deregister() -> None:
    fake = world(deregister=True)
    await provider(fake).deregister(Device(MAC, 8))
    assert [(c.method, c.params) for c in fake.calls] == [("DeviceDeregister", (WIRE_MAC,))]


async def test_a_refused_remove_of_a_mac_not_ours_is_done() -> None:
    fake = world(deregister=False, info=False)
    await provider(fake).deregister(Device(MAC, 8))
    assert fake.methods() == ["DeviceDeregister", "DeviceInfo"]


async def test_a_refused_remove_of_a_mac_still_ours_fails() -> None:
    fake = world(deregister=False, info={"mac": "00:09:52:AB:CD:EF"})
    err = await failure(provider(fake).deregister(Device(MAC, 8)))
    assert err.failure is Failure.PERMANENT and "still registered" in err.text


@pytest.mark.parametrize(("info", "expected"), [
    ({"mac": WIRE_MAC, "url": URL}, VendorRecord(MAC, url=URL)),
    ({"mac": WIRE_MAC}, VendorRecord(MAC)),
    ({"mac": "000952000001", "url": URL}, None),  # another MAC's struct is not ours
    (False, None),
    ({}, None),
    (Fault(1, "unknown"), None),
])
async def test_lookup(info: Any, expected: VendorRecord | None) -> None:
    assert await provider(world(info=info)).lookup(Device(MAC, 8)) == expected


async def test_check() -> None:
    fake = world(info=False)
    result = await provider(fake).check_credentials(8)
    assert (result.ok, result.message) == (
        True, "Auerswald redirection accepted the login acct-user (DeviceInfo answered a "
              "look-up of a MAC no phone has); "
              "whether the account may redirect phones is not verified: it shows only "
              "at the first add")
    assert fake.methods() == ["DeviceInfo"]
    refused = await provider(FakeRpc(password="other")).check_credentials(8)
    assert refused.ok is False and "check username and password" in refused.message


async def test_a_fault_fails_the_check() -> None:
    result = await provider(world(info=Fault(7, "access denied"))).check_credentials(8)
    assert (result.ok, result.message) == (
        False, "Auerswald redirection answered the Test's DeviceInfo with fault 7: access "
               "denied: the login is not confirmed (check username and password "
               "([auerswald] of rps.ini or PUT /providers/auerswald/credentials/N))")


# -- the phone family ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "mac"), [
    ("000952ABCDEF.xml", MAC), ("000952abcdef.xml", MAC), ("000952abcdef", MAC),
    ("<MACADR>.xml", None), ("prov.xml", None), ("000952ABCDE.xml", None),
])
def test_file_names(name: str, mac: str | None) -> None:
    assert FAMILY.file_mac(name) == mac


def test_serves_its_own_file_and_the_unreplaced_marker() -> None:
    assert FAMILY.serves("000952abcdef.xml", MAC) and FAMILY.serves("<MACADR>.xml", MAC)
    assert not FAMILY.serves("000952000001.xml", MAC) and not FAMILY.serves("", MAC)


@pytest.mark.parametrize(("header", "expected"), [
    ("Auerswald COMfortel D-200 2.8A 000952ABCDEF", UserAgent("D-200", "2.8A", MAC)),
    ("FONtevo D-400/3.0.1 (000952abcdef)", UserAgent("D-400", "3.0.1", MAC)),
    ("COMfortel 2600 IP 2.8B", UserAgent("2600 IP", "2.8B", None)),
    # Another vendor's hex token is never taken for the MAC (it would make a 403).
    ("Something 1.2 AABBCCDDEEFF", UserAgent(None, "1.2", None)),
    ("", UserAgent()),
])
def test_user_agent(header: str, expected: UserAgent) -> None:
    assert FAMILY.parse_user_agent(header) == expected


@given(st.text(max_size=2000))
def test_user_agent_never_raises(header: str) -> None:
    agent = FAMILY.parse_user_agent(header)
    assert agent.mac is None or agent.mac.startswith("000952")


def render(prov_url: str, user: str = "tenant8",
           password: str = "pw") -> ET.Element:  # noqa: S107 - a test value
    body = FAMILY.render(ServerProvisioning(8, prov_url, user, password),
                         DeviceRow("auerswald", MAC, 8, "registered"))
    return ET.fromstring(body)  # noqa: S314 - our own output


def test_the_file_points_the_phone_at_the_tenant() -> None:
    root = render("https://pbx.test/prov/?t=8&a=<b>", "ten&ant", "p<w>:@")
    assert root.tag == "configuration"
    [section] = list(root)
    assert section.tag == "provisioning"
    assert {e.tag: e.text for e in section} == {
        "active": "true", "redirect": "false",
        "url": "https://ten%26ant:p%3Cw%3E%3A%40@pbx.test/prov/<MACADR>.xml?t=8&a=<b>"}


@pytest.mark.parametrize(("prov_url", "url"), [
    ("https://pbx.test/prov/<MACADR>/", "https://u:p@pbx.test/prov/<MACADR>/"),
    ("https://pbx.test/prov/auerswald.xml", "https://u:p@pbx.test/prov/auerswald.xml"),
    ("https://pbx.test", "https://u:p@pbx.test/<MACADR>.xml"),
])
def test_file_url(prov_url: str, url: str) -> None:
    assert render(prov_url, "u", "p").findtext("provisioning/url") == url
