"""FanvilProvider against the FDPS emulator's core behind httpx.MockTransport, and the
Fanvil phone family of /ztprov/.

The fake transport checks what FDPS would: Basic auth with the double-MD5 password, a
``text/xml`` body that parses as an XML-RPC call, the emulator's parameter rules; so a test
passing here means FDPS's rules were met, not merely that some call was made.
"""

from __future__ import annotations

import base64
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rps_service.models import Device as DeviceRow
from rps_service.models import ServerProvisioning
from rps_service.providers.fanvil import (
    FanvilProvider,
    FanvilSettings,
    MaterialServer,
    fdps_password,
)
from rps_service.providers.protocol import Device, Failure, Provider, ProviderError, VendorRecord
from rps_service.providers.vendor import ProviderContext
from rps_service.sandbox.fanvil import (
    DEMO_PASSWORD,
    DEMO_USER,
    FOREIGN_MAC,
    SERVER_IN_USE,
    FanvilEmulator,
)
from rps_service.sandbox.state import SandboxState
from rps_service.sandbox.xmlrpc import XmlRpcRefused
from rps_service.ztp.fanvil import FanvilFamily, provisioning_server, render_config

API = "https://fdps.test/xmlrpc.php"
NOW = 1_700_000_000.0
MAC = "0C383E0A0B0C"
KEY = "0123456789abABCDEFGHIJKLMNOPQRSTUVWX"
URL = f"https://pbx.test:8443/ztprov/8/{KEY}/$mac.cfg"
DEVICE = Device(mac=MAC, server=8, url=URL)
REGISTER = ["redirect.deRegisterDevice", "redirect.deleteServer",
            "redirect.addMaterialServer", "redirect.registerDevice"]


def rpc(ok: bool, value: Any) -> httpx.Response:
    body = xmlrpc.client.dumps(([ok, value],), methodresponse=True, encoding="utf-8")
    return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml"})


def raw(value: Any) -> httpx.Response:
    """A methodResponse of ``value`` as it is (a tuple of results, or a Fault)."""
    body = xmlrpc.client.dumps(value, methodresponse=True, encoding="utf-8")
    return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml"})


def throttled() -> httpx.Response:
    """A throttling answer whose pause is over at once (the tests do not wait)."""
    return httpx.Response(429, headers={"Retry-After": "0"})


@dataclass
class Seen:
    method: str
    params: tuple[Any, ...]
    authorization: str
    content_type: str
    body: bytes


@dataclass
class FakeFdps:
    """The emulator's FDPS world behind a MockTransport, with answers to inject."""

    emulator: FanvilEmulator = field(default_factory=lambda: FanvilEmulator(SandboxState()))
    seen: list[Seen] = field(default_factory=list)
    injected: list[tuple[str, Callable[[], httpx.Response]]] = field(default_factory=list)

    def inject(self, method: str, outcome: Callable[[], httpx.Response]) -> None:
        """Answer the next call of ``method`` with ``outcome`` instead of FDPS."""
        self.injected.append((method, outcome))

    def methods(self) -> list[str]:
        return [s.method for s in self.seen]

    @property
    def demo(self) -> Any:
        return self.emulator.accounts[DEMO_USER]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params, method = xmlrpc.client.loads(request.content, use_builtin_types=True)
        self.seen.append(Seen(str(method), params, request.headers.get("authorization", ""),
                              request.headers.get("content-type", ""), request.content))
        for i, (name, outcome) in enumerate(self.injected):
            if name == method:
                del self.injected[i]
                return outcome()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user, _, password = base64.b64decode(token).decode().partition(":")
        if scheme != "Basic" or not self.emulator.login_ok(user, password):
            return httpx.Response(401, text="Unauthorized")
        if request.headers.get("content-type") != "text/xml":
            return httpx.Response(415)
        try:
            ok, value = self.emulator.call(user, str(method), params)
        except XmlRpcRefused as refused:
            return httpx.Response(200, content=refused.response.body,  # type: ignore[arg-type]
                                  headers={"Content-Type": "text/xml"})
        return rpc(ok, value)


class NoStoredCredentials:
    async def get_credentials(self, provider: str, server: int) -> None:
        return None


def make_provider(fake: FakeFdps, clock: Callable[[], float] = lambda: NOW,
                  handler: Any = None, **settings: Any) -> FanvilProvider:
    values = {"api_url": API, "username": DEMO_USER, "password": DEMO_PASSWORD,
              "provisioning_url": "https://pbx.test:8443/ztprov/{server}/", "timeout": 5,
              "rate_limit": 1000, **settings}
    context = ProviderContext(mode="master", retry_cap=300, credentials=NoStoredCredentials(),
                              transport=httpx.MockTransport(handler or fake), clock=clock)
    return FanvilProvider(FanvilSettings.model_validate(values), context)


@pytest.fixture
def fake() -> FakeFdps:
    return FakeFdps()


@pytest.fixture
def provider(fake: FakeFdps) -> FanvilProvider:
    return make_provider(fake)


async def failure(call: Any) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        await call
    return info.value


# -- the login and the URL ----------------------------------------------------------------


def test_basic_auth_password_is_hex_md5_of_hex_md5() -> None:
    # md5("password") = 5f4dcc3b..., and md5 of that text:
    assert fdps_password("password") == "696d29e0940a4957748fe3fc9efd22a3"


async def test_satisfies_the_provider_protocol(provider: FanvilProvider) -> None:
    checked: Provider = provider
    assert checked.name == "fanvil"


async def test_device_url_is_the_key_then_the_phones_file_name(
        provider: FanvilProvider) -> None:
    assert await provider.device_url(8, KEY) == URL


def test_url_is_split_as_fdps_rebuilds_it() -> None:
    server = MaterialServer.from_url(URL)
    assert (server.host, server.path, server.protocol) == (
        "pbx.test:8443", f"ztprov/8/{KEY}/$mac.cfg", "5")
    assert server.url() == URL  # host + "/" + path: the key survives
    assert MaterialServer.from_url("http://pbx.test/x/").protocol == "4"


_SEGMENT = st.text("abcXYZ019._~-$", min_size=1, max_size=12).filter(lambda s: s not in (".", ".."))


@given(scheme=st.sampled_from(["http", "https"]),
       host=st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True),
       port=st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
       segments=st.lists(_SEGMENT, max_size=4))
def test_any_device_url_survives_the_split(scheme: str, host: str, port: str,
                                           segments: list[str]) -> None:
    url = f"{scheme}://{host}{port}/" + "".join(f"{s}/" for s in segments) + f"{KEY}/$mac.cfg"
    server = MaterialServer.from_url(url)
    assert not server.path.startswith("/")
    assert server.url() == url


@pytest.mark.parametrize("url", [
    f"https://pbx.test/ztprov/8/{KEY}/$mac.cfg?tenant=8",
    f"https://pbx.test/ztprov/8/{KEY}/$mac.cfg#x",
    f"https://user:pw@pbx.test/ztprov/8/{KEY}/$mac.cfg",
    f"ftp://pbx.test/ztprov/8/{KEY}/$mac.cfg",
    f"https://pbx.test/ztprov/{{mac}}/{KEY}/$mac.cfg",
])
async def test_urls_fdps_cannot_keep_whole_are_refused_before_any_call(
        fake: FakeFdps, provider: FanvilProvider, url: str) -> None:
    err = await failure(provider.register(Device(mac=MAC, server=8, url=url)))
    assert err.failure is Failure.PERMANENT
    assert fake.seen == []
    assert KEY not in err.text


# -- register, re-point, remove -----------------------------------------------------------


async def test_register_is_the_four_calls_in_order(fake: FakeFdps,
                                                   provider: FanvilProvider) -> None:
    await provider.register(DEVICE)

    assert fake.methods() == REGISTER
    expected_auth = "Basic " + base64.b64encode(
        f"{DEMO_USER}:{fdps_password(DEMO_PASSWORD)}".encode()).decode()
    for seen in fake.seen:
        assert seen.authorization == expected_auth
        assert seen.content_type == "text/xml"
        assert DEMO_PASSWORD.encode() not in seen.body
    assert [s.params for s in fake.seen] == [
        (MAC,), (MAC,),
        ([f"cfgName={MAC}", "cfgPfMode=1", "cfgDhcpOpt=false", "cfgPnpEnable=false",
          "cfgPfSrv=pbx.test:8443", f"cfgPfName=ztprov/8/{KEY}/$mac.cfg", "cfgPfProt=5"],),
        (MAC, MAC),
    ]
    # A first registration: the two clean-ups were told "nothing of that name", and that
    # was fine.
    answers = [(method, text) for _, method, _, text in fake.emulator.calls]
    assert answers == [("redirect.deRegisterDevice", "Error:device_not_exist"),
                       ("redirect.deleteServer", "Error:server_not_exist"),
                       ("redirect.addMaterialServer", "success"),
                       ("redirect.registerDevice", "success")]
    assert fake.demo.devices == {MAC: MAC}
    assert fake.emulator.holds(MAC).url == URL  # type: ignore[union-attr]


async def test_reregister_repoints_to_the_new_url(fake: FakeFdps,
                                                  provider: FanvilProvider) -> None:
    await provider.register(DEVICE)
    new_url = URL.replace("pbx.test:8443", "new.test")
    await provider.register(Device(mac=MAC, server=8, url=new_url))

    assert fake.methods() == REGISTER * 2
    assert [text for *_, text in list(fake.emulator.calls)[4:]] == ["success"] * 4
    assert fake.emulator.holds(MAC).url == new_url  # type: ignore[union-attr]
    assert list(fake.demo.servers) == [MAC]


async def test_remove_deregisters_and_deletes_the_server(fake: FakeFdps,
                                                         provider: FanvilProvider) -> None:
    await provider.register(DEVICE)
    fake.seen.clear()
    await provider.deregister(Device(mac=MAC, server=8))
    assert fake.methods() == ["redirect.deRegisterDevice", "redirect.deleteServer"]
    assert fake.demo.devices == {} and fake.demo.servers == {}

    await provider.deregister(Device(mac=MAC, server=8))  # already gone: success


async def test_a_mac_of_another_account_is_owned_and_leaves_no_server(
        fake: FakeFdps, provider: FanvilProvider) -> None:
    err = await failure(provider.register(Device(mac=FOREIGN_MAC, server=8, url=URL)))
    assert err.failure is Failure.OWNED
    assert err.text.startswith(
        "The MAC belongs to another FDPS account (Error: device_had_existed)")
    assert fake.methods() == [*REGISTER, "redirect.deleteServer"]
    assert fake.demo.servers == {} and fake.demo.devices == {}
    assert fake.emulator.accounts["other-fanvil"].devices == {FOREIGN_MAC: FOREIGN_MAC}


async def test_extra_settings_are_refused(fake: FakeFdps, provider: FanvilProvider) -> None:
    err = await failure(provider.register(Device(mac=MAC, server=8, url=URL,
                                                  settings={"language": "de"})))
    assert err.failure is Failure.PERMANENT and "language" in err.text
    assert fake.seen == []


# -- answers and their classes ------------------------------------------------------------


@pytest.mark.parametrize(("method", "response", "failure_class", "words"), [
    ("redirect.registerDevice", lambda: rpc(False, "Error:device_had_existed:0C383E0A0B0C"),
     Failure.OWNED, "The MAC belongs to another FDPS account"),
    ("redirect.registerDevice", lambda: rpc(False, "Error: mac_format_error"),
     Failure.PERMANENT, "FDPS refused the MAC"),
    ("redirect.addMaterialServer", lambda: rpc(False, "Error: url_format_error"),
     Failure.PERMANENT, "check provisioning_url"),
    ("redirect.addMaterialServer", lambda: rpc(False, "Error:server_had_existed"),
     Failure.TRANSIENT, "server_had_existed"),
    ("redirect.registerDevice", lambda: rpc(False, "Error:server_not_existed"),
     Failure.TRANSIENT, "server_not_existed"),
    ("redirect.deleteServer", lambda: rpc(False, SERVER_IN_USE),
     Failure.PERMANENT, "server_has_device"),
    ("redirect.registerDevice", lambda: rpc(False, "Error: something_new"),
     Failure.PERMANENT, "something_new"),
    ("redirect.registerDevice", lambda: raw(xmlrpc.client.Fault(3, "boom")),
     Failure.PERMANENT, "fault 3: boom"),
    ("redirect.registerDevice", lambda: raw(("ok",)), Failure.PERMANENT, "no [ok, text] pair"),
    ("redirect.registerDevice", lambda: httpx.Response(200, text="<html>maintenance</html>"),
     Failure.PERMANENT, "no XML-RPC result"),
    ("redirect.deRegisterDevice", lambda: httpx.Response(401, text="Unauthorized"),
     Failure.BAD_LOGIN, "check username and password"),
    ("redirect.deRegisterDevice", lambda: httpx.Response(429, headers={"Retry-After": "7"}),
     Failure.THROTTLED, "429"),
    ("redirect.deRegisterDevice", lambda: httpx.Response(503, text="busy"),
     Failure.TRANSIENT, "503"),
])
async def test_answers_are_classified(fake: FakeFdps, provider: FanvilProvider, method: str,
                                      response: Callable[[], httpx.Response],
                                      failure_class: Failure, words: str) -> None:
    if method == "redirect.deleteServer":  # refused only where it is not tolerated
        await provider.register(DEVICE)
        fake.inject(method, response)
        err = await failure(provider.deregister(Device(mac=MAC, server=8)))
    else:
        fake.inject(method, response)
        err = await failure(provider.register(DEVICE))
    assert err.failure is failure_class, err.text
    assert words in err.text
    if failure_class is Failure.THROTTLED:
        assert err.retry_after == 7


async def test_secrets_never_reach_an_error_text(fake: FakeFdps,
                                                 provider: FanvilProvider) -> None:
    hashed = fdps_password(DEMO_PASSWORD)
    fake.inject("redirect.addMaterialServer",
                lambda: rpc(False, f"Error: {DEMO_PASSWORD} {hashed} {KEY} refused"))
    err = await failure(provider.register(DEVICE))
    assert DEMO_PASSWORD not in err.text and hashed not in err.text and KEY not in err.text


# -- an interrupted registration goes on where it stopped ---------------------------------


async def test_a_throttled_registration_resumes_where_it_stopped(
        fake: FakeFdps, provider: FanvilProvider) -> None:
    fake.inject("redirect.registerDevice", throttled)
    err = await failure(provider.register(DEVICE))
    assert err.failure is Failure.THROTTLED
    fake.seen.clear()

    await provider.register(DEVICE)
    assert fake.methods() == ["redirect.registerDevice"]
    assert fake.emulator.holds(MAC).url == URL  # type: ignore[union-attr]


async def test_a_changed_url_or_a_remove_starts_the_recipe_over(
        fake: FakeFdps, provider: FanvilProvider) -> None:
    fake.inject("redirect.registerDevice", throttled)
    await failure(provider.register(DEVICE))
    fake.seen.clear()
    other = Device(mac=MAC, server=8, url=URL.replace("ztprov/8", "ztprov/9"))
    await provider.register(other)
    assert fake.methods() == REGISTER

    fake.inject("redirect.registerDevice", throttled)
    await failure(provider.register(DEVICE))
    await provider.deregister(Device(mac=MAC, server=8))
    fake.seen.clear()
    await provider.register(DEVICE)
    assert fake.methods() == REGISTER


async def test_a_stale_resume_falls_back_to_the_whole_recipe(
        fake: FakeFdps, provider: FanvilProvider) -> None:
    fake.inject("redirect.registerDevice", throttled)
    await failure(provider.register(DEVICE))
    # Meanwhile another instance completed the registration of this phone.
    fake.emulator.call(DEMO_USER, "redirect.registerDevice", (MAC, MAC))
    fake.seen.clear()

    await provider.register(DEVICE)  # the resumed call hears "had existed": all four again
    assert fake.methods() == ["redirect.registerDevice", "redirect.deleteServer", *REGISTER]
    assert fake.demo.devices == {MAC: MAC}


async def test_fdps_refusals_are_not_resumed(fake: FakeFdps,
                                             provider: FanvilProvider) -> None:
    # A race answer is retried, but from the start: FDPS's state was not as expected.
    fake.inject("redirect.addMaterialServer", lambda: rpc(False, "Error:server_had_existed"))
    assert (await failure(provider.register(DEVICE))).failure is Failure.TRANSIENT
    fake.seen.clear()
    await provider.register(DEVICE)
    assert fake.methods() == REGISTER

    # A resumed step that hears "no such server" (deleted meanwhile) runs all four at once.
    fake.inject("redirect.registerDevice", throttled)
    await failure(provider.register(Device(mac="0C383E0000AA", server=8, url=URL)))
    fake.emulator.call(DEMO_USER, "redirect.deleteServer", ("0C383E0000AA",))
    fake.seen.clear()
    await provider.register(Device(mac="0C383E0000AA", server=8, url=URL))
    assert fake.methods() == ["redirect.registerDevice", *REGISTER]
    assert fake.demo.devices["0C383E0000AA"] == "0C383E0000AA"


async def test_a_resume_is_forgotten_after_its_window(fake: FakeFdps) -> None:
    now = [NOW]
    provider = make_provider(fake, clock=lambda: now[0])
    fake.inject("redirect.registerDevice", throttled)
    await failure(provider.register(DEVICE))
    now[0] += 3600
    fake.seen.clear()
    await provider.register(DEVICE)
    assert fake.methods() == REGISTER


async def test_after_a_throttle_the_account_goes_one_event_at_a_time(fake: FakeFdps) -> None:
    # The scheduler reads it from the account's gate (tests/unit/test_lanes.py).
    now = [NOW]
    provider = make_provider(fake, clock=lambda: now[0])
    account = await provider.account(8)
    gate = provider.http.gate(account.key)
    await provider.register(DEVICE)
    assert not gate.one_at_a_time()
    fake.inject("redirect.deRegisterDevice", throttled)
    await failure(provider.register(DEVICE))
    assert gate.one_at_a_time()
    assert gate.gentle_until == gate.paused_until + 60


# -- look-up, list, Test ------------------------------------------------------------------


async def test_lookup_and_list_read_devices_and_their_servers(
        fake: FakeFdps, provider: FanvilProvider) -> None:
    assert await provider.lookup(DEVICE) is None
    await provider.register(DEVICE)
    assert await provider.lookup(DEVICE) == VendorRecord(MAC, URL)
    assert await provider.lookup(Device(mac=FOREIGN_MAC, server=8)) is None

    listing = provider.list_devices(8)
    assert listing is not None
    assert [r async for r in listing] == [VendorRecord(MAC, URL)]


async def test_list_tolerates_unknown_server_shapes(fake: FakeFdps,
                                                    provider: FanvilProvider) -> None:
    fake.inject("redirect.listDevices", lambda: rpc(True, ["0c:38:3e:0a:0b:0c", "junk", 7]))
    fake.inject("redirect.listServers", lambda: rpc(True, "not json"))
    listing = provider.list_devices(8)
    assert listing is not None
    assert [r async for r in listing] == [VendorRecord(MAC, None)]


async def test_check_lists_servers(fake: FakeFdps, provider: FanvilProvider) -> None:
    result = await provider.check_credentials(8)
    assert (result.ok, result.message) == (
        True, "FDPS accepted the login demo-fanvil (0 servers); whether the account may "
              "redirect phones is not verified: it shows only at the first add")
    assert fake.methods() == ["redirect.listServers"]

    bad = make_provider(fake, password="wrong")
    result = await bad.check_credentials(8)
    assert result.ok is False
    assert result.message.startswith("FDPS rejected the login: 401")
    assert "check username and password" in result.message


# -- the phone's side ---------------------------------------------------------------------


FAMILY = FanvilFamily()
PHONE = DeviceRow(provider="fanvil", mac=MAC, server=8, status="registered")


@pytest.mark.parametrize(("name", "served"), [
    ("0c383e0a0b0c.cfg", True), ("0C383E0A0B0C.cfg", True), ("$mac.cfg", True),
    ("0c383e0a0b0d.cfg", False), ("f0C00620000.cfg", False), ("F0V00X600000.cfg", False),
    ("f0X4hw1.100.cfg", False), ("X4U_2.12.16.3.z", False), ("0c383e0a0b0c.xml", False),
])
def test_the_phone_is_served_its_mac_file_only(name: str, served: bool) -> None:
    assert FAMILY.serves(name, MAC) is served


@pytest.mark.parametrize(("agent", "model", "firmware", "mac"), [
    ("Fanvil X4 2.10.2.6887 0c383e07e16c", "X4", "2.10.2.6887", "0C383E07E16C"),
    ("Fanvil X5U-V2 2.12.1 0c3800000000)", "X5U-V2", "2.12.1", "0C3800000000"),
    ("Fanvil X4U 0c383e112233 2.4.2", "X4U", None, "0C383E112233"),
    ("curl/8.0", None, None, None),
    (None, None, None, None),
])
def test_user_agent(agent: str | None, model: str | None, firmware: str | None,
                    mac: str | None) -> None:
    parsed = FAMILY.parse_user_agent(agent)
    assert (parsed.model, parsed.firmware, parsed.mac) == (model, firmware, mac)


def test_sample_request_is_what_the_family_serves() -> None:
    name, agent = FAMILY.sample_request(MAC, "X4U")
    assert FAMILY.serves(name, MAC) and FAMILY.parse_user_agent(agent).mac == MAC


def test_bootstrap_file_in_fanvils_text_format() -> None:
    body = FAMILY.render(ServerProvisioning(8, "https://pbx.test:8443/prov/?tenant=8&a=<b>",
                                            "tenant8", "p@ss:w&<rd>\r\nPNP Enable :1"),
                         PHONE)
    assert body.decode() == (
        "<<VOIP CONFIG FILE>>Version:2.0000000000\n"
        "--ZTP Prov URL--   :https://pbx.test:8443/prov/?tenant=8&a=<b>\n"
        "\n"
        "<AUTOUPDATE CONFIG MODULE>\n"
        "Download Username  :tenant8\n"
        "Download Password  :p@ss:w&<rd>PNP Enable :1\n"
        "Download Server IP :pbx.test:8443\n"
        "Config File Name   :prov/$mac.cfg?tenant=8&a=<b>\n"
        "Download Protocol  :5\n"
        "Download Mode      :1\n"
        "Download Interval  :1\n"
        "DHCP Option        :0\n"
        "PNP Enable         :0\n"
        "<<END OF FILE>>\n"
    )


@pytest.mark.parametrize(("url", "expected"), [
    ("http://pbx.test", ("pbx.test", "$mac.cfg", "4")),
    ("http://pbx.test/", ("pbx.test", "$mac.cfg", "4")),
    ("https://pbx.test/a/b", ("pbx.test", "a/b/$mac.cfg", "5")),
    ("https://pbx.test/a/b/#frag", ("pbx.test", "a/b/$mac.cfg", "5")),
])
def test_provisioning_server_split(url: str, expected: tuple[str, str, str]) -> None:
    assert provisioning_server(url) == expected
    assert f"\nConfig File Name   :{expected[1]}\n".encode() in render_config(url, "u", "p")
