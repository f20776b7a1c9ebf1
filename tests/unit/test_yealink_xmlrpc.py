"""The legacy Yealink RPS provider against the emulator's XML-RPC core, in-process.

``httpx.MockTransport`` hands each request to the emulator's method table after checking
what the real service checks (Basic login, ``text/xml``, a well-formed call) and answers
``[boolean, value]`` with the value untyped, as the real service writes it. Answers the
emulator never gives (a still "existing" MAC after the override flag, faults, odd shapes)
are injected.
"""

from __future__ import annotations

import base64
import re
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from rps_service.access import new_url_key
from rps_service.guesses import forget_guesses
from rps_service.models import Credentials
from rps_service.providers.protocol import Device, Failure, ProviderError
from rps_service.providers.vendor import ProviderContext
from rps_service.providers.yealink_xmlrpc import (
    NAME_LIMIT,
    SERVER_NAME,
    YealinkXmlrpcProvider,
    YealinkXmlrpcSettings,
    answer_of,
    server_name,
)
from rps_service.sandbox.state import SandboxState
from rps_service.sandbox.xmlrpc import XmlRpcRefused
from rps_service.sandbox.yealink_xmlrpc import (
    DEMO_PASSWORD,
    DEMO_USER,
    FOREIGN_MAC,
    OTHER_USER,
    YealinkXmlrpcEmulator,
)

API = "https://rps.test/xmlrpc"
MAC = "805EC0ABCDEF"
KEY = new_url_key()
BASE = "https://pbx.test/ztprov/8/"
DEVICE = Device(mac=MAC, server=8, url=f"{BASE}{KEY}/")
Outcome = Callable[[], httpx.Response]


def untyped(ok: bool | int, text: str) -> httpx.Response:
    body = (f"<?xml version='1.0'?><methodResponse><params><param><value><array><data>"
            f"<value><boolean>{int(ok)}</boolean></value><value>{text}</value></data>"
            "</array></value></param></params></methodResponse>")
    return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml"})


@dataclass
class Rps:
    """MockTransport handler: the emulator's methods behind the service's HTTP rules."""

    emulator: YealinkXmlrpcEmulator
    seen: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    injected: list[tuple[str, Outcome]] = field(default_factory=list)

    def inject(self, method: str, outcome: Outcome) -> None:
        self.injected.append((method, outcome))

    def methods(self) -> list[str]:
        return [m.removeprefix("redirect.") for m, _ in self.seen]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        user, _, password = base64.b64decode(token).decode().partition(":")
        if scheme != "Basic" or not self.emulator.login_ok(user, password):
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


def make_provider(handler: Rps, **section: Any) -> YealinkXmlrpcProvider:
    settings = YealinkXmlrpcSettings.model_validate({
        "api_url": API, "timeout": 5, "rate_limit": 1000, "username": DEMO_USER,
        "password": DEMO_PASSWORD, "provisioning_url": "https://pbx.test/ztprov/{server}/",
        **section})
    context = ProviderContext(mode="master", retry_cap=300, credentials=Store(),
                              transport=httpx.MockTransport(handler))
    return YealinkXmlrpcProvider(settings, context)


@pytest.fixture
def fake() -> Rps:
    return Rps(YealinkXmlrpcEmulator(SandboxState()))


@pytest.fixture
def provider(fake: Rps) -> YealinkXmlrpcProvider:
    return make_provider(fake)


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


def test_server_names_are_short_stable_and_per_account_and_url() -> None:
    name = server_name("acct", BASE)
    assert len(name) == NAME_LIMIT and SERVER_NAME.fullmatch(name)
    assert name == server_name("acct", BASE)
    assert len({name, server_name("other", BASE), server_name("acct", BASE + "x/")}) == 3


@pytest.mark.parametrize(("result", "read"), [
    ([True, "OK"], (True, "OK")), ([1, "OK"], (True, "OK")), ([False, "x"], (False, "x")),
    (["0", "x"], (False, "x")), ([True], (True, "")), ("OK", None), ([], None),
    ([None, "x"], None),
])
def test_answers_are_read_as_boolean_and_text(result: Any, read: Any) -> None:
    assert answer_of(result) == read


async def test_register_adds_the_server_once_then_the_url_with_the_key(
        fake: Rps, provider: YealinkXmlrpcProvider) -> None:
    await provider.register(DEVICE)
    name = server_name(DEMO_USER, BASE)
    assert fake.seen == [
        ("redirect.addServer", (name, BASE)),
        ("redirect.registerDeviceWithUniqueUrl", ("805ec0abcdef", name, DEVICE.url, "0")),
    ]
    held = fake.emulator.holds(MAC)
    assert held is not None and held.url == DEVICE.url and KEY in held.url
    assert fake.emulator.servers[name] == (DEMO_USER, BASE)

    other = Device(mac="805EC0000002", server=8, url=f"{BASE}{new_url_key()}/")
    await provider.register(other)
    assert fake.methods()[2:] == ["registerDeviceWithUniqueUrl"]  # the server is known


async def test_a_mac_already_ours_is_repointed_with_the_override_flag(
        fake: Rps, provider: YealinkXmlrpcProvider) -> None:
    await provider.register(DEVICE)
    moved = Device(mac=MAC, server=9, url=f"https://pbx.test/ztprov/9/{KEY}/")
    await provider.register(moved)
    name9 = server_name(DEMO_USER, "https://pbx.test/ztprov/9/")
    assert fake.seen[2:] == [
        ("redirect.addServer", (name9, "https://pbx.test/ztprov/9/")),
        ("redirect.registerDeviceWithUniqueUrl", ("805ec0abcdef", name9, moved.url, "0")),
        ("redirect.registerDeviceWithUniqueUrl", ("805ec0abcdef", name9, moved.url, "1")),
    ]
    held = fake.emulator.holds(MAC)
    assert held is not None and held.url == moved.url


async def test_still_existing_after_the_flag_is_removed_and_added(
        fake: Rps, provider: YealinkXmlrpcProvider) -> None:
    await provider.register(DEVICE)
    fake.inject("redirect.registerDeviceWithUniqueUrl", lambda: untyped(0, "Existing MAC(s): x"))
    fake.inject("redirect.registerDeviceWithUniqueUrl", lambda: untyped(0, "Existing MAC(s): x"))
    await provider.register(DEVICE)
    assert fake.methods()[2:] == ["registerDeviceWithUniqueUrl", "registerDeviceWithUniqueUrl",
                                  "deRegisterDevice", "registerDeviceWithUniqueUrl"]
    assert fake.emulator.holds(MAC) is not None


@pytest.mark.parametrize("answer", ["prompt", "code"])
async def test_another_customers_mac_fails_without_override(
        fake: Rps, provider: YealinkXmlrpcProvider, answer: str) -> None:
    fake.emulator.foreign_answer = answer
    err = await failure(provider.register(Device(mac=FOREIGN_MAC, server=8, url=DEVICE.url)))
    assert err.failure is Failure.OWNED
    assert err.message.startswith("The MAC belongs to another Yealink RPS account")
    assert "override = true" in err.hint
    assert [p[-1] for m, p in fake.seen if m.endswith("UniqueUrl")] == ["0"]  # never "1"
    assert fake.emulator.devices[FOREIGN_MAC].owner == OTHER_USER


async def test_override_true_takes_the_mac_with_a_warning(fake: Rps) -> None:
    provider = make_provider(fake, override=True)
    with capture_logs() as logs:
        await provider.register(Device(mac=FOREIGN_MAC, server=8, url=DEVICE.url))
    assert [p[-1] for m, p in fake.seen if m.endswith("UniqueUrl")] == ["0", "1"]
    assert fake.emulator.devices[FOREIGN_MAC].owner == DEMO_USER
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert "another Yealink RPS account" in warning["event"]


async def test_a_server_deleted_behind_our_back_is_added_again(
        fake: Rps, provider: YealinkXmlrpcProvider) -> None:
    await provider.register(DEVICE)
    del fake.emulator.servers[server_name(DEMO_USER, BASE)]
    await provider.register(Device(mac="805EC0000002", server=8, url=DEVICE.url))
    assert fake.methods()[2:] == ["registerDeviceWithUniqueUrl", "addServer",
                                  "registerDeviceWithUniqueUrl"]


async def test_an_existing_server_of_ours_is_used(fake: Rps) -> None:
    await make_provider(fake).register(DEVICE)
    fresh = make_provider(fake)  # a restarted daemon: its cache is empty
    await fresh.register(Device(mac="805EC0000002", server=8, url=DEVICE.url))
    assert fake.methods()[2:] == ["addServer", "registerDeviceWithUniqueUrl"]
    assert fake.emulator.holds("805EC0000002") is not None


async def test_remove_and_a_mac_that_is_not_there(fake: Rps,
                                                 provider: YealinkXmlrpcProvider) -> None:
    await provider.register(DEVICE)
    await provider.deregister(Device(mac=MAC, server=8))
    assert fake.emulator.holds(MAC) is None
    await provider.deregister(Device(mac=MAC, server=8))  # refused, but nothing is there
    assert fake.methods()[-2:] == ["deRegisterDevice", "checkDevice"]
    await provider.deregister(Device(mac=FOREIGN_MAC, server=8))  # another's: not ours
    assert fake.emulator.devices[FOREIGN_MAC].owner == OTHER_USER

    await provider.register(DEVICE)
    fake.inject("redirect.deRegisterDevice", lambda: untyped(0, "Error:busy"))
    err = await failure(provider.deregister(Device(mac=MAC, server=8)))
    assert err.failure is Failure.PERMANENT and "Error:busy" in err.message


async def test_lookup(fake: Rps, provider: YealinkXmlrpcProvider) -> None:
    assert await provider.lookup(Device(mac=MAC, server=8)) is None
    await provider.register(DEVICE)
    record = await provider.lookup(Device(mac=MAC, server=8))
    assert record is not None and record.ours
    foreign = await provider.lookup(Device(mac=FOREIGN_MAC, server=8))
    assert foreign is not None and not foreign.ours
    fake.inject("redirect.checkDevice", lambda: untyped(1, "Error:Invalid MAC"))
    assert (await failure(provider.lookup(Device(mac=MAC, server=8)))).failure \
        is Failure.PERMANENT


async def test_the_test_button(fake: Rps, provider: YealinkXmlrpcProvider) -> None:
    result = await provider.check_credentials(8)
    assert result.ok and result.message == (
        f"Yealink RPS accepted the login {DEMO_USER} (a look-up answered unregistered); "
        "whether the account may redirect phones is not verified: it shows only at the first add")
    result = await make_provider(fake, password="not-the-password").check_credentials(8)
    assert not result.ok and "rejected" in result.message


@pytest.mark.parametrize(("text", "words"), [
    ("Error:Invalid MAC", "Yealink RPS answered the Test's redirect.checkDevice with "
                          "Error:Invalid MAC: the login is not confirmed"),
    ("Error:permission denied", "Yealink RPS rejected the login: Yealink RPS answered the "
                                "Test's redirect.checkDevice with Error:permission denied"),
])
async def test_a_false_answer_fails_the_test(fake: Rps, provider: YealinkXmlrpcProvider,
                                             text: str, words: str) -> None:
    fake.inject("redirect.checkDevice", lambda: untyped(0, text))
    result = await provider.check_credentials(8)
    assert not result.ok and result.message.startswith(words), result.message


async def test_guesses_are_said_once(fake: Rps) -> None:
    await make_provider(fake).register(DEVICE)
    fresh = make_provider(fake)  # a restarted daemon finds its server there already
    with capture_logs() as logs:
        await fresh.register(Device(mac="805EC0000002", server=8, url=DEVICE.url))
        await make_provider(fake).register(Device(mac="805EC0000003", server=8,
                                                  url=DEVICE.url))
        assert (await fresh.check_credentials(8)).ok
        assert (await fresh.check_credentials(8)).ok
    assert [e["guess"] for e in logs if e["event"] == "Relying on a guess"] == [
        "an addServer refusal whose words say the name exists (or is already taken, a "
        "duplicate) means this account's server of an earlier run: its name is derived from "
        "the account and the URL",
        "Yealink RPS answers a wrong login with HTTP 401 (or a fault), so a look-up it "
        "answers proves the login"]


@pytest.mark.parametrize(("method", "outcome", "kind", "words"), [
    ("redirect.registerDeviceWithUniqueUrl", lambda: untyped(0, "Error:Invalid MAC(s):x"),
     Failure.PERMANENT, "does not take this MAC"),
    ("redirect.registerDeviceWithUniqueUrl",
     lambda: untyped(0, "Error:The url can only begin with 'http://'"), Failure.PERMANENT,
     "provisioning_url"),
    ("redirect.registerDeviceWithUniqueUrl", lambda: httpx.Response(
        200, content=xmlrpc.client.dumps(xmlrpc.client.Fault(4, "Too many parameters"),
                                         methodresponse=True).encode()),
     Failure.PERMANENT, "fault 4"),
    ("redirect.addServer", lambda: httpx.Response(
        200, content=xmlrpc.client.dumps(xmlrpc.client.Fault(1, "Authentication failed"),
                                         methodresponse=True).encode()),
     Failure.BAD_LOGIN, "username and password"),
    ("redirect.addServer", lambda: httpx.Response(429, headers={"Retry-After": "3"}),
     Failure.THROTTLED, "429"),
    ("redirect.addServer", lambda: httpx.Response(502, text="Bad Gateway"),
     Failure.TRANSIENT, "502"),
    ("redirect.addServer", lambda: httpx.Response(200, text="<html>maintenance</html>"),
     Failure.PERMANENT, "no XML-RPC result"),
    ("redirect.addServer", lambda: untyped(0, "Error:The server name can only contain x"),
     Failure.PERMANENT, "server name"),
    ("redirect.registerDeviceWithUniqueUrl", lambda: httpx.Response(
        200, content=xmlrpc.client.dumps(("OK",), methodresponse=True).encode()),
     Failure.PERMANENT, "without [boolean, text]"),
])
async def test_answers_are_classified(fake: Rps, provider: YealinkXmlrpcProvider,
                                      method: str, outcome: Outcome, kind: Failure,
                                      words: str) -> None:
    fake.inject(method, outcome)
    err = await failure(provider.register(DEVICE))
    assert err.failure is kind, err
    assert words in err.text


async def test_a_wrong_login_names_the_keys_to_check(fake: Rps) -> None:
    err = await failure(make_provider(fake, password="not-the-password").register(DEVICE))
    assert err.failure is Failure.BAD_LOGIN and "check username and password" in err.text


async def test_url_keys_never_reach_an_error_text(fake: Rps,
                                                  provider: YealinkXmlrpcProvider) -> None:
    fake.inject("redirect.registerDeviceWithUniqueUrl",
                lambda: untyped(0, f"Error:The url {DEVICE.url} is refused"))
    err = await failure(provider.register(DEVICE))
    assert KEY not in err.text and "***" in err.text
    assert re.search(r"Error:The url https://pbx\.test/ztprov/8/\*\*\*/", err.text)
