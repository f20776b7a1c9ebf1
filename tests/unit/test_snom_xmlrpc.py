"""SnomXmlRpcProvider against an in-process XML-RPC service (tests/rpcfake.py).

What goes on the wire (path with its trailing slash, Basic, ``<string>`` parameters, the
upper-case MAC, the URL raw), each ``Error:…`` answer's class and message, the tolerant
``getPhoneRedirection`` shapes, the Test button, and URL keys kept out of every message.
"""

from __future__ import annotations

from typing import Any, cast
from xmlrpc.client import Fault

import httpx
import pytest
from structlog.testing import capture_logs

from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.snom_xmlrpc import SnomXmlRpcProvider, SnomXmlRpcSettings
from tests.rpcfake import KEY, PASSWORD, FakeRpc, make

MAC = "000413ABCDEF"
URL = f"https://pbx.test/ztprov/8/{KEY}/"
DEVICE = Device(mac=MAC, server=8, url=URL)


def provider(fake: FakeRpc, **section: Any) -> SnomXmlRpcProvider:
    return cast(SnomXmlRpcProvider, make(SnomXmlRpcProvider, fake, **section))


def ok(method: str, params: tuple[Any, ...]) -> Any:
    return [True, "Ok"]


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


async def test_register_sends_the_documented_call() -> None:
    fake = FakeRpc(ok)
    await provider(fake).register(DEVICE)
    [call] = fake.calls
    assert call.path == "/xmlrpc/"  # the trailing slash is required
    assert (call.method, call.params, call.all_strings) == (
        "redirect.registerPhone", (MAC, URL), True)


def test_api_url_keeps_its_trailing_slash() -> None:
    assert SnomXmlRpcSettings().api_url == "https://secure-provisioning.snom.com:8083/xmlrpc/"
    assert SnomXmlRpcSettings(api_url="https://rds.test:8083/xmlrpc").api_url == (
        "https://rds.test:8083/xmlrpc/")


async def test_device_url_is_a_folder_under_the_key() -> None:
    url = await provider(FakeRpc(ok)).device_url(8, KEY)
    assert url == f"https://pbx.test/ztprov/8/{KEY}/"


@pytest.mark.parametrize(("text", "failure_class", "words"), [
    ("Error:owned_by_other_user", Failure.OWNED,
     "The MAC belongs to another Snom redirection account (Error:owned_by_other_user)"),
    ("Error: Owned_By_Other_User", Failure.OWNED, "another Snom redirection account"),
    ("Error:malformed_url", Failure.PERMANENT, "refused the URL as malformed"),
    ("Error:malformed_mac", Failure.PERMANENT, "refused the MAC as malformed"),
    ("Error:no_such_mac", Failure.PERMANENT, "refused redirect.registerPhone: Error:no_such_mac"),
    ("Error:something_new", Failure.PERMANENT, "Error:something_new"),
])
async def test_register_refusals(text: str, failure_class: Failure, words: str) -> None:
    fake = FakeRpc(lambda m, p: [False, text])
    err = await failure(provider(fake).register(DEVICE))
    assert err.failure is failure_class and words in err.text, err.text
    assert len(fake.calls) == 1  # never retried by the provider


async def test_malformed_url_names_the_setting() -> None:
    err = await failure(provider(FakeRpc(lambda m, p: [False, "Error:malformed_url"]))
                        .register(DEVICE))
    assert "provisioning_url of [snom-xmlrpc]" in err.text


@pytest.mark.parametrize("answer", [True, "Ok", [], ["Ok"], {"ok": True}, [1, "Ok"]])
async def test_an_answer_of_another_shape_fails_loudly(answer: Any) -> None:
    err = await failure(provider(FakeRpc(lambda m, p: answer)).register(DEVICE))
    assert err.failure is Failure.PERMANENT and "unexpected result" in err.text


async def test_a_fault_is_permanent_and_never_shows_the_url_key() -> None:
    fake = FakeRpc(lambda m, p: Fault(4, f"cannot parse {URL} for user x"))
    err = await failure(provider(fake).register(DEVICE))
    assert err.failure is Failure.PERMANENT and "fault 4" in err.text
    assert KEY not in err.text and KEY[12:] not in err.text and KEY[:12] + "***" in err.text


async def test_an_error_page_quoting_the_key_is_masked() -> None:
    fake = FakeRpc(lambda m, p: httpx.Response(400, text=f"bad request {URL}"))
    err = await failure(provider(fake).register(DEVICE))
    assert err.status == 400 and KEY[12:] not in err.text


async def test_deregister_of_an_unknown_mac_is_done() -> None:
    fake = FakeRpc(lambda m, p: [False, "Error:no_such_mac"])
    await provider(fake).deregister(Device(MAC, 8))
    assert fake.calls[0].params == (MAC,)


async def test_deregister_of_another_accounts_mac_fails() -> None:
    fake = FakeRpc(lambda m, p: [False, "Error:owned_by_other_user"])
    assert (await failure(provider(fake).deregister(Device(MAC, 8)))).failure is Failure.OWNED


@pytest.mark.parametrize("redirection", [
    [True, "Example Company", URL],  # as Snom documents it
    [True, URL],  # as one peer reads it
])
async def test_lookup_reads_either_redirection_shape(redirection: list[Any]) -> None:
    fake = FakeRpc(lambda m, p: redirection if m == "redirect.getPhoneRedirection"
                   else [True, "Ok"])
    record = await provider(fake).lookup(Device(MAC, 8))
    assert record == VendorRecord(MAC, url=URL)
    assert fake.methods() == ["redirect.checkPhone", "redirect.getPhoneRedirection"]


async def test_lookup_without_a_redirection_url_still_finds_the_device() -> None:
    fake = FakeRpc(lambda m, p: [False, "Error:no_such_mac"] if m.endswith("Redirection")
                   else [True, "Ok"])
    assert await provider(fake).lookup(Device(MAC, 8)) == VendorRecord(MAC, url=None)


async def test_lookup_of_absent_and_foreign_macs() -> None:
    absent = FakeRpc(lambda m, p: [False, "Error:no_such_mac"])
    assert await provider(absent).lookup(Device(MAC, 8)) is None
    assert absent.methods() == ["redirect.checkPhone"]
    foreign = FakeRpc(lambda m, p: [False, "Error:owned_by_other_user"])
    record = await provider(foreign).lookup(Device(MAC, 8))
    assert record is not None and record.ours is False


def test_listing_is_not_offered() -> None:
    assert provider(FakeRpc(ok)).list_devices(8) is None


async def test_check_pings_and_names_the_login() -> None:
    fake = FakeRpc(lambda m, p: p[0])
    result = await provider(fake).check_credentials(8)
    assert (result.ok, result.message) == (
        True, "Snom redirection accepted the login acct-user (network.echo answered "
              "without a fault); "
              "whether the account may redirect phones is not verified: it shows only "
              "at the first add")
    assert [(c.method, c.params) for c in fake.calls] == [("network.echo", ("ping",))]


async def test_check_with_a_fault_is_a_bad_login() -> None:
    result = await provider(FakeRpc(lambda m, p: Fault(1, "auth"))).check_credentials(8)
    assert result.ok is False
    assert result.message.startswith(
        "Snom redirection rejected the credentials: network.echo refused: fault 1: auth")
    assert "check username and password" in result.message


async def test_bad_login_is_not_retried_and_names_the_keys() -> None:
    fake = FakeRpc(ok, password="another-password")
    err = await failure(provider(fake).register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN and err.status == 401
    assert "check username and password ([snom-xmlrpc] of rps.ini" in err.text
    assert PASSWORD not in err.text


async def test_throttling_pauses_the_account() -> None:
    fake = FakeRpc(lambda m, p: httpx.Response(429, headers={"Retry-After": "7"}))
    with capture_logs() as logs:
        err = await failure(provider(fake).register(DEVICE))
    assert err.failure is Failure.THROTTLED and err.retry_after == 7
    assert any(e["event"] == "Account paused" for e in logs)


async def test_every_request_is_logged_without_the_key() -> None:
    with capture_logs() as logs:
        await provider(FakeRpc(ok)).register(DEVICE)
    sent = [e for e in logs if e["event"] == "Sending Request"]
    assert [(e["component"], e["mac"], e["url"]) for e in sent] == [
        ("Snom", MAC, "https://secure-provisioning.snom.com:8083/xmlrpc/")]
    assert KEY not in repr(logs)
