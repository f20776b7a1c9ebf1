"""PanasonicProvider against an in-process XML-RPC service, and the Panasonic phone family.

The provider: the calls on the wire, each fault code's class (100 URL, 200 MAC, 201 not
found, 202 another user's), ``checkPhones`` read per MAC, the Test button. The family: the
file names a phone asks for, its User-Agent, and the Standard Format File it gets.
"""

from __future__ import annotations

from typing import Any, cast
from xmlrpc.client import Fault

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from rps_service.guesses import forget_guesses
from rps_service.models import Device as DeviceRow
from rps_service.models import ServerProvisioning
from rps_service.providers.panasonic import PanasonicProvider
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.ztp.panasonic import HEADER, PanasonicFamily
from rps_service.ztp.useragent import UserAgent
from tests.rpcfake import KEY, FakeRpc, make

MAC = "0080F0ABCDEF"
URL = f"https://pbx.test/ztprov/8/{KEY}/Config{{MAC}}.cfg"
DEVICE = Device(mac=MAC, server=8, url=URL)
FAMILY = PanasonicFamily()


def provider(fake: FakeRpc, **section: Any) -> PanasonicProvider:
    return cast(PanasonicProvider, make(PanasonicProvider, fake, **section))


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


def checked(code: int, mac: str = MAC) -> list[dict[str, Any]]:
    return [{"mac": mac, "faultCode": code, "faultString": "text"}]


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


# -- the provider -------------------------------------------------------------------------


async def test_device_url_ends_in_the_file_the_phone_asks_for() -> None:
    p = provider(FakeRpc())
    assert await p.device_url(8, KEY) == URL
    query = provider(FakeRpc(), provisioning_url="https://pbx.test/ztprov/?t={server}")
    assert await query.device_url(8, KEY) == (
        f"https://pbx.test/ztprov/{KEY}/Config{{MAC}}.cfg?t=8")


async def test_register_sends_the_documented_call() -> None:
    fake = FakeRpc()
    await provider(fake).register(DEVICE)
    [call] = fake.calls
    assert call.path == "/redirect/xmlrpc"
    assert (call.method, call.params, call.all_strings) == (
        "ipredirect.registerPhone", (MAC, URL), True)


@pytest.mark.parametrize(("code", "failure_class", "words"), [
    (100, Failure.PERMANENT, "refused the URL (fault 100: text)"),
    (200, Failure.PERMANENT, "refused the MAC as malformed"),
    (201, Failure.PERMANENT, "does not know the MAC"),
    (202, Failure.OWNED,
     "The MAC belongs to another Panasonic redirection account (fault 202: text)"),
    (999, Failure.PERMANENT, "ipredirect.registerPhone with fault 999"),
])
async def test_register_faults(code: int, failure_class: Failure, words: str) -> None:
    err = await failure(provider(FakeRpc(lambda m, p: Fault(code, "text"))).register(DEVICE))
    assert err.failure is failure_class and words in err.text, err.text


async def test_register_url_refusal_names_the_setting() -> None:
    err = await failure(provider(FakeRpc(lambda m, p: Fault(100, "bad url")))
                        .register(DEVICE))
    assert "provisioning_url of [panasonic]" in err.text


@pytest.mark.parametrize("answer", [False, 1, "true", [True]])
async def test_register_success_is_only_a_bare_true(answer: Any) -> None:
    err = await failure(provider(FakeRpc(lambda m, p: answer)).register(DEVICE))
    assert err.failure is Failure.PERMANENT and "unexpected result" in err.text


async def test_a_fault_quoting_the_url_never_shows_the_key() -> None:
    err = await failure(provider(FakeRpc(lambda m, p: Fault(100, f"Invalid URL: {URL}")))
                        .register(DEVICE))
    assert KEY[12:] not in err.text and KEY[:12] + "***" in err.text


async def test_unregister() -> None:
    fake = FakeRpc()
    await provider(fake).deregister(Device(MAC, 8))
    assert (fake.calls[0].method, fake.calls[0].params) == ("ipredirect.unregisterPhone", (MAC,))
    # 201 "not found" on a remove: nothing to remove, done.
    await provider(FakeRpc(lambda m, p: Fault(201, "not found"))).deregister(Device(MAC, 8))
    owned = await failure(provider(FakeRpc(lambda m, p: Fault(202, "other")))
                          .deregister(Device(MAC, 8)))
    assert owned.failure is Failure.OWNED
    bad = await failure(provider(FakeRpc(lambda m, p: Fault(200, "mac")))
                        .deregister(Device(MAC, 8)))
    assert bad.failure is Failure.PERMANENT


@pytest.mark.parametrize(("answer", "expected"), [
    (checked(0), VendorRecord(MAC)),
    (checked(201), None),
    (checked(202), VendorRecord(MAC, ours=False, detail="fault 202")),
    # One struct per MAC: the one naming ours counts, whatever the order.
    (checked(202, "0080F0000001") + checked(0, MAC.lower()), VendorRecord(MAC)),
    (Fault(201, "not found"), None),
])
async def test_lookup(answer: Any, expected: VendorRecord | None) -> None:
    fake = FakeRpc(lambda m, p: answer)
    assert await provider(fake).lookup(Device(MAC, 8)) == expected
    assert [(c.method, c.params) for c in fake.calls] == [("ipredirect.checkPhones", (MAC,))]


@pytest.mark.parametrize("answer", [checked(200), [], [{"mac": MAC}], True])
async def test_lookup_failures(answer: Any) -> None:
    err = await failure(provider(FakeRpc(lambda m, p: answer)).lookup(Device(MAC, 8)))
    assert err.failure is Failure.PERMANENT


async def test_check_accepts_the_per_mac_answer_and_says_what_it_did_not_verify() -> None:
    fake = FakeRpc(lambda m, p: checked(201, p[0]))
    with capture_logs() as logs:
        result = await provider(fake).check_credentials(8)
    assert (result.ok, result.message) == (
        True, "Panasonic redirection accepted the login acct-user (ipredirect.checkPhones "
              "answered a look-up of a MAC no phone has); "
              "whether the account may redirect phones is not verified: it shows only "
              "at the first add")
    assert fake.calls[0].method == "ipredirect.checkPhones"
    assert [(e["log_level"], e["guess"]) for e in logs if e["event"] == "Relying on a guess"] \
        == [("warning", "Panasonic answers a wrong login with HTTP 401, so a look-up it "
                        "answers proves the login")]
    refused = await provider(FakeRpc(password="other")).check_credentials(8)
    assert refused.ok is False and "check username and password" in refused.message


@pytest.mark.parametrize("answer", [Fault(201, "not found"), Fault(3, "login refused"), True,
                                    [], "OK"])
async def test_a_fault_or_another_answer_fails_the_check(answer: Any) -> None:
    result = await provider(FakeRpc(lambda m, p: answer)).check_credentials(8)
    assert result.ok is False
    assert result.message.startswith(
        "Panasonic redirection answered the Test's ipredirect.checkPhones with ")
    assert "the login is not confirmed" in result.message
    assert "accepted" not in result.message


# -- the phone family ---------------------------------------------------------------------


@pytest.mark.parametrize(("name", "mac"), [
    ("Config0080F0ABCDEF.cfg", MAC),
    ("Config0080f0abcdef.cfg", MAC),
    ("0080F0ABCDEF.cfg", MAC),
    ("0080F0ABCDEF", MAC),
    ("ConfigKX-HDV130.cfg", None),
    ("ConfigCommon.cfg", None),
    ("Config0080F0ABCDE.cfg", None),
    ("favicon.ico", None),
])
def test_file_names(name: str, mac: str | None) -> None:
    assert FAMILY.file_mac(name) == mac


def test_serves_its_own_file_and_the_unexpanded_placeholder() -> None:
    assert FAMILY.serves("Config0080F0ABCDEF.cfg", MAC)
    assert FAMILY.serves("Config{MAC}.cfg", MAC)
    assert not FAMILY.serves("Config0080F0000001.cfg", MAC)
    assert not FAMILY.serves("KX-HDV130.cfg", MAC)


@pytest.mark.parametrize(("header", "expected"), [
    ("Panasonic_KX-HDV130/01.133 (0080f0c8c381)", UserAgent("KX-HDV130", "01.133", "0080F0C8C381")),
    ("Panasonic_KX-UT113/01.133 (0080F0C8C381)", UserAgent("KX-UT113", "01.133", "0080F0C8C381")),
    ("Panasonic_KX-TGP600/06.001", UserAgent("KX-TGP600", "06.001", None)),
    ("Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 000413922D24)", UserAgent()),
    ("", UserAgent()),
])
def test_user_agent(header: str, expected: UserAgent) -> None:
    assert FAMILY.parse_user_agent(header) == expected


@given(st.text(max_size=2000))
def test_user_agent_never_raises(header: str) -> None:
    agent = FAMILY.parse_user_agent(header)
    assert agent.mac is None or (len(agent.mac) == 12 and agent.mac == agent.mac.upper())


def render(prov_url: str, user: str = "tenant8",
           password: str = "pw") -> list[str]:  # noqa: S107 - a test value
    body = FAMILY.render(ServerProvisioning(8, prov_url, user, password),
                         DeviceRow("panasonic", MAC, 8, "registered"))
    assert body.endswith(b"\r\n") and b"\n" not in body.replace(b"\r\n", b"")
    return body.decode().split("\r\n")


def test_the_file_points_the_phone_at_the_tenant() -> None:
    lines = render("https://pbx.test/prov/")
    assert lines[0] == HEADER
    assert 'CFG_STANDARD_FILE_PATH="https://tenant8:pw@pbx.test/prov/Config{MAC}.cfg"' in lines
    assert 'CFG_PRODUCT_FILE_PATH=""' in lines and 'CFG_MASTER_FILE_PATH=""' in lines
    assert 'HTTP_AUTH_ID="tenant8"' in lines and 'HTTP_AUTH_PASS="pw"' in lines


@pytest.mark.parametrize(("prov_url", "path"), [
    ("https://pbx.test/prov/{MAC}.cfg", "https://u:p@pbx.test/prov/{MAC}.cfg"),
    ("https://pbx.test/prov/panasonic.cfg", "https://u:p@pbx.test/prov/panasonic.cfg"),
    ("https://pbx.test/prov", "https://u:p@pbx.test/prov/Config{MAC}.cfg"),
    ("https://pbx.test/prov/?t=8&a=<b>", "https://u:p@pbx.test/prov/Config{MAC}.cfg?t=8&a=<b>"),
    ("https://x:y@pbx.test/prov/", "https://x:y@pbx.test/prov/Config{MAC}.cfg"),
])
def test_standard_file_path(prov_url: str, path: str) -> None:
    assert f'CFG_STANDARD_FILE_PATH="{path}"' in render(prov_url, "u", "p")


def test_values_that_the_format_cannot_quote() -> None:
    lines = render('https://pbx.test/"prov"/', "ten ant", 'p"w&:@/')
    assert ('CFG_STANDARD_FILE_PATH="https://ten%20ant:p%22w%26%3A%40%2F@pbx.test/%22prov%22/'
            'Config{MAC}.cfg"') in lines
    # HTTP_AUTH_* cannot hold a '"': left out (the URL carries the login).
    assert not any(line.startswith("HTTP_AUTH") for line in lines)
    assert sum(line.count('"') for line in lines) == 2 * 3
