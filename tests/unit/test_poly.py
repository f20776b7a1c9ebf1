"""PolyProvider against the Poly ZTP emulator served in-process, and the Poly phone
family's files.

The emulator keeps profiles and devices per organization the way the facts describe the
service (one holder per MAC, the same "claimed" answer for every holder, ``{results,
next}`` listings); its switches vary what is not confirmed (``profile`` or ``profileid``,
passwords read back or not, ids in creation answers or not). Answers it never gives are
scripted in front of it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from rps_service.guesses import forget_guesses
from rps_service.models import Device as DeviceRow
from rps_service.models import ServerProvisioning
from rps_service.providers.poly import PolyProvider, PolySettings
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.transport import AiohttpTransport
from rps_service.providers.vendor import ProviderContext
from rps_service.sandbox.poly import DEMO_API_KEY, DEMO_ORG, OTHER_ORG, PolyEmulator
from rps_service.sandbox.runner import RunningSandbox
from rps_service.ztp.poly import PolyFamily
from tests.conftest import SECRETS
from tests.emulated import Scripted, sandbox, transport

__all__ = ["sandbox", "transport"]  # fixtures

ROOT = "/poly/v1/"
KEY = DEMO_API_KEY
PASSWORD = "server8-pass-ABCDEFGHIJKLMNOP"
MAC = "0004F2ABCDEF"
URL8 = "https://pbx.test/ztprov/8/"
SECRETS.update({KEY, PASSWORD})


def device(mac: str = MAC, server: int = 8, url: str = URL8, user: str = "ztp-s8",
           password: str = PASSWORD, **extra: Any) -> Device:
    return Device(mac=mac, server=server, url=url, http_username=user, http_password=password,
                  **extra)


class Poly:
    """The emulator seen from a test: the demo organization's profiles and devices, what
    was sent (``seen``, ``calls()``) and scripted answers (``inject``)."""

    def __init__(self, sandbox: RunningSandbox, transport: AiohttpTransport) -> None:
        found = sandbox.state.emulators["poly"]
        assert isinstance(found, PolyEmulator)
        self.emulator = found
        self.sandbox = sandbox
        self.api = found.api_url(sandbox.base_url) + "/"
        self.front = Scripted(transport, ROOT)
        self.seen = self.front.seen
        self.calls = self.front.calls
        self.inject = self.front.inject

    @property
    def profiles(self) -> dict[str, dict[str, Any]]:
        return self.emulator.organizations[DEMO_ORG].profiles

    def profile(self, name: str) -> dict[str, Any]:
        [profile] = [p for p in self.profiles.values() if p["name"] == name]
        return profile

    def held(self, mac: str) -> str | None:
        """The id of the demo profile holding ``mac`` (lower case), or None."""
        holder = self.emulator.devices.get(mac)
        return holder[1] if holder and holder[0] == DEMO_ORG else None

    def demo_devices(self) -> Iterator[str]:
        return (mac for mac, (org, _) in self.emulator.devices.items() if org == DEMO_ORG)

    def foreign(self, mac: str) -> None:
        """Give ``mac`` to another organization."""
        other = self.emulator.organizations[OTHER_ORG]
        self.emulator.devices[mac] = (OTHER_ORG, next(iter(other.profiles)))


class NoCredentials:
    async def get_credentials(self, provider: str, server: int) -> None:
        return None


def make_provider(fake: Poly, **settings: Any) -> PolyProvider:
    section = PolySettings.model_validate({"api_url": fake.api, "api_key": KEY,
                                           "provisioning_url": URL8, "rate_limit": 1000,
                                           **settings})
    context = ProviderContext(mode="master", retry_cap=300, credentials=NoCredentials(),
                              transport=fake.front, clock=lambda: 1e9)
    return PolyProvider(section, context)


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


@pytest.fixture
def fake(sandbox: RunningSandbox, transport: AiohttpTransport) -> Poly:
    return Poly(sandbox, transport)


def cursor(offset: int) -> str:
    """The emulator's cursor for the page starting at ``offset``."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


# -- settings ----------------------------------------------------------------------------


def test_settings_defaults_and_profile_name_check() -> None:
    section = PolySettings()
    assert section.api_url == "https://api.ztp.poly.com/v1/"
    assert section.profile_name == "rps-{server}"
    assert PolySettings.secret_keys() == ("api_key",)
    with pytest.raises(ValidationError, match="must contain"):
        PolySettings(profile_name="rps")


# -- register ------------------------------------------------------------------------------


async def test_first_device_creates_the_profile_then_adds_the_device(fake: Poly) -> None:
    provider = make_provider(fake)
    await provider.register(device())
    assert fake.calls() == ["GET profiles", "POST profiles", "POST devices"]
    profile = fake.profile("rps-8")
    assert profile["enabled"] is True
    assert profile["template"]["provisioning"]["server"] == {
        "address": URL8, "username": "ztp-s8", "password": PASSWORD}
    assert fake.seen[-1][2] == {"id": "0004f2abcdef", "profile": profile["id"]}
    # Warm: the next device of the server is one call.
    await provider.register(device(mac="0004F2000002"))
    assert fake.calls()[3:] == ["POST devices"]
    assert len(fake.profiles) == 1


async def test_a_restart_finds_the_profile_by_name(fake: Poly) -> None:
    await make_provider(fake).register(device())
    fake.seen.clear()
    await make_provider(fake).register(device(mac="0004F2000002"))  # a new process
    assert fake.calls() == ["GET profiles", "POST devices"]
    assert len(fake.profiles) == 1


async def test_a_profile_whose_password_is_not_shown_is_rewritten_once(fake: Poly) -> None:
    await make_provider(fake).register(device())
    fake.emulator.show_passwords = False
    fake.seen.clear()
    provider = make_provider(fake)
    await provider.register(device(mac="0004F2000002"))
    await provider.register(device(mac="0004F2000003"))
    pid = fake.profile("rps-8")["id"]
    assert fake.calls() == ["GET profiles", f"PUT profiles/{pid}", "POST devices",
                            "POST devices"]


async def test_a_changed_url_updates_the_profile_and_keeps_portal_fields(
    fake: Poly
) -> None:
    provider = make_provider(fake)
    await provider.register(device())
    pid = fake.profile("rps-8")["id"]
    # An administrator pinned a firmware and a language in the portal.
    fake.profiles[pid]["template"]["software"]["version"] = "6.4.6"
    fake.profiles[pid]["template"]["localization"]["language"] = "de"
    fresh = make_provider(fake)
    fake.seen.clear()
    await fresh.register(device(url="https://new.test/ztprov/8/"))
    assert fake.calls() == ["GET profiles", f"PUT profiles/{pid}", "POST devices",
                            "GET devices/0004f2abcdef"]  # claimed: already in this profile
    template = fake.profiles[pid]["template"]
    assert template["provisioning"]["server"]["address"] == "https://new.test/ztprov/8/"
    assert (template["software"]["version"], template["localization"]["language"]) == (
        "6.4.6", "de")
    assert set(fake.profiles[pid]) == {"id", "name", "enabled", "template"}


async def test_a_disabled_profile_is_enabled_again(fake: Poly) -> None:
    await make_provider(fake).register(device())
    fake.profile("rps-8")["enabled"] = False
    await make_provider(fake).register(device(mac="0004F2000002"))
    assert fake.profile("rps-8")["enabled"] is True


async def test_two_servers_get_two_profiles(fake: Poly) -> None:
    provider = make_provider(fake, profile_name="pbx1-{server}")
    await provider.register(device())
    await provider.register(device(mac="0004F2000009", server=9,
                                   url="https://pbx.test/ztprov/9/", user="ztp-s9"))
    assert sorted(p["name"] for p in fake.profiles.values()) == ["pbx1-8", "pbx1-9"]
    assert fake.held("0004f2000009") == fake.profile("pbx1-9")["id"]


async def test_a_cold_start_lists_the_profiles_once_for_all_servers(fake: Poly) -> None:
    provider = make_provider(fake, profile_name="pbx0-{server}")
    await provider.register(device())
    await provider.register(device(mac="0004F2000009", server=9,
                                   url="https://pbx.test/ztprov/9/", user="ztp-s9"))
    # Look-alike names are not ours: another installation's, an administrator's.
    fake.profiles["x1"] = {**fake.profile("pbx0-8"), "id": "x1", "name": "pbx0-08"}
    fake.profiles["x2"] = {**fake.profile("pbx0-8"), "id": "x2", "name": "pbx1-8"}
    fake.seen.clear()
    fresh = make_provider(fake, profile_name="pbx0-{server}")
    await fresh.register(device(mac="0004F2000002"))
    await fresh.register(device(mac="0004F2000003", server=9,
                                url="https://pbx.test/ztprov/9/", user="ztp-s9"))
    assert fake.calls() == ["GET profiles", "POST devices", "POST devices"]
    assert fake.held("0004f2000002") == fake.profile("pbx0-8")["id"]
    assert fake.held("0004f2000003") == fake.profile("pbx0-9")["id"]


async def test_duplicate_names_use_the_first_and_say_so(fake: Poly) -> None:
    await make_provider(fake).register(device())
    first = fake.profile("rps-8")["id"]
    fake.profiles["dup"] = {**fake.profiles[first], "id": "dup"}
    with capture_logs() as logs:
        await make_provider(fake).register(device(mac="0004F2000002"))
    assert fake.held("0004f2000002") == first
    assert any(e["event"] == "Several profiles have our name, using the first"
               and e["count"] == 2 for e in logs)


async def test_a_creation_answer_without_id_is_found_in_the_list(fake: Poly) -> None:
    fake.emulator.id_in_answer = False
    await make_provider(fake).register(device())
    assert fake.calls() == ["GET profiles", "POST profiles", "GET profiles", "POST devices"]
    assert fake.held("0004f2abcdef") == fake.profile("rps-8")["id"]


async def test_a_profile_deleted_in_the_portal_is_created_again(fake: Poly) -> None:
    provider = make_provider(fake)
    await provider.register(device())
    fake.profiles.clear()
    for mac in list(fake.demo_devices()):
        del fake.emulator.devices[mac]
    await provider.register(device(mac="0004F2000002"))
    assert fake.calls()[3:] == ["POST devices", "GET profiles", "POST profiles",
                                "POST devices"]
    assert fake.held("0004f2000002") == fake.profile("rps-8")["id"]


async def test_readding_a_device_of_this_profile_is_done(fake: Poly) -> None:
    provider = make_provider(fake)
    await provider.register(device())
    await provider.register(device())
    assert fake.calls()[3:] == ["POST devices", "GET devices/0004f2abcdef"]


@pytest.mark.parametrize("key", ["profileid", "profile"])
async def test_a_device_in_another_of_our_profiles_is_moved(fake: Poly, key: str) -> None:
    fake.emulator.device_field = key
    admin = fake.emulator.portal_claim("0004f2abcdef", "migrated", "https://old.test/")
    provider = make_provider(fake)
    with capture_logs() as logs:
        await provider.register(device())
    pid = fake.profile("rps-8")["id"]
    assert fake.calls()[2:] == ["POST devices", "GET devices/0004f2abcdef",
                                "DELETE devices/0004f2abcdef", "POST devices"]
    assert fake.held("0004f2abcdef") == pid
    assert any(e["event"] == "Moving device to our profile" and e["previous"] == admin
               for e in logs)


async def test_another_organizations_mac_is_owned_by_another(fake: Poly) -> None:
    fake.foreign("0004f2abcdef")
    with pytest.raises(ProviderError) as err:
        await make_provider(fake).register(device())
    assert err.value.failure is Failure.OWNED
    assert err.value.message.startswith("The MAC belongs to another Poly ZTP account (409: "
                                        "Device claimed by another organization)")
    assert "DELETE devices/0004f2abcdef" not in fake.calls()


async def test_bad_key_is_a_bad_login_naming_the_key(fake: Poly) -> None:
    provider = make_provider(fake, api_key="wrong-key")
    with pytest.raises(ProviderError) as err:
        await provider.register(device())
    assert err.value.failure is Failure.BAD_LOGIN
    assert "check api_key" in err.value.text
    result = await provider.check_credentials(8)
    assert result.ok is False and "Unauthorized" in result.message


async def test_throttling_pauses_with_the_retry_after(fake: Poly) -> None:
    fake.sandbox.state.fail_next = [429]  # the emulator's own throttling answer
    fake.sandbox.state.retry_after = 7
    with pytest.raises(ProviderError) as err:
        await make_provider(fake).register(device())
    assert err.value.failure is Failure.THROTTLED and err.value.retry_after == 7


async def test_server_errors_are_transient_and_texts_mask_secrets(fake: Poly) -> None:
    fake.inject("POST profiles", httpx.Response(
        502, json={"message": f"upstream saw {PASSWORD} and {KEY}"}))
    with pytest.raises(ProviderError) as err:
        await make_provider(fake).register(device())
    assert err.value.failure is Failure.TRANSIENT
    assert PASSWORD not in err.value.text and KEY not in err.value.text


async def test_an_invalid_mac_is_permanent(fake: Poly) -> None:
    fake.inject("POST devices", httpx.Response(400, json={"message": "Invalid device id"}))
    with pytest.raises(ProviderError) as err:
        await make_provider(fake).register(device())
    assert err.value.failure is Failure.PERMANENT and "Invalid device id" in err.value.text


async def test_mac_placeholders_and_device_settings_are_refused(fake: Poly) -> None:
    provider = make_provider(fake)
    with pytest.raises(ProviderError, match="contains \\{mac\\}"):
        await provider.register(device(url="https://pbx.test/ztprov/8/{mac}"))
    with pytest.raises(ProviderError, match="no per-device settings \\(got language\\)"):
        await provider.register(device(settings={"language": "de"}))
    assert fake.calls() == []


# -- remove, look-up, list, test --------------------------------------------------------------


async def test_remove(fake: Poly) -> None:
    provider = make_provider(fake)
    await provider.register(device())
    await provider.deregister(Device(mac=MAC, server=8))
    assert "0004f2abcdef" not in fake.emulator.devices
    with capture_logs() as logs:
        await provider.deregister(Device(mac=MAC, server=8))  # 404: already gone
        await provider.deregister(Device(mac=MAC, server=8))
    assert [(e["log_level"], e["guess"]) for e in logs if e["event"] == "Relying on a guess"] \
        == [("warning", "a 404 to Poly's DELETE of a device means it is already removed")]
    fake.foreign("0004f2000099")
    with capture_logs() as logs:
        await provider.deregister(Device(mac="0004F2000099", server=8))
    assert any(e["event"] == "Device held by another account, nothing to remove" for e in logs)


@pytest.mark.parametrize("key", ["profileid", "profile"])
async def test_lookup_reads_either_profile_field(fake: Poly, key: str) -> None:
    fake.emulator.device_field = key
    await make_provider(fake).register(device())
    provider = make_provider(fake)  # cold: the profile's address is read once
    assert await provider.lookup(device()) == VendorRecord(MAC, URL8)
    assert await provider.lookup(device(mac="0004F2000077")) is None
    pid = fake.profile("rps-8")["id"]
    assert fake.calls().count(f"GET profiles/{pid}") == 1


async def test_list_follows_cursors(fake: Poly) -> None:
    provider = make_provider(fake)
    macs = [f"0004F20000{i:02X}" for i in range(5)]
    for mac in macs:
        await provider.register(device(mac=mac))
    fake.seen.clear()
    fake.emulator.page_cap = 2
    listing = provider.list_devices(8)
    assert listing is not None
    records = [record async for record in listing]
    assert records == [VendorRecord(mac, URL8) for mac in macs]
    assert fake.calls() == ["GET profiles", "GET devices?limit=50",
                            f"GET devices?limit=50&cursor={cursor(2)}",
                            f"GET devices?limit=50&cursor={cursor(4)}"]


async def test_check_counts_profiles(fake: Poly) -> None:
    provider = make_provider(fake)
    await provider.register(device())
    result = await provider.check_credentials(8)
    assert result.ok and result.message == "Poly ZTP accepted the API key (1 profiles)"


# -- the phone's side ------------------------------------------------------------------------

FAMILY = PolyFamily()
PROVISIONING = ServerProvisioning(8, 'https://pbx.test/prov/?a=1&b="2"', "tenant<8>",
                                  "p&w\"'<>")
ROW = DeviceRow(provider="poly", mac=MAC, server=8, status="registered")


def parsed(body: bytes) -> ElementTree.Element:
    return ElementTree.fromstring(body)  # noqa: S314 - our own output, not untrusted data


def test_file_names() -> None:
    assert FAMILY.file_mac("0004f2abcdef.cfg") == MAC
    assert FAMILY.file_mac("0004F2ABCDEF-rps.cfg") == MAC
    for other in ("000000000000.cfg", "0004f2abcdef-phone.cfg", "0004f2abcdef-app.log",
                  "sip.ld", "0004f2abcdef-license.cfg", "0004f2abcdef-directory.xml"):
        assert FAMILY.file_mac(other) is None, other
    assert FAMILY.serves("0004f2abcdef.cfg", MAC)
    assert not FAMILY.serves("0004f2abcdef.cfg", "0004F2000001")


def test_master_file_names_only_the_settings_file() -> None:
    root = parsed(FAMILY.render_file("0004f2abcdef.cfg", PROVISIONING, ROW))
    assert root.tag == "APPLICATION"
    assert root.attrib["CONFIG_FILES"] == "0004f2abcdef-rps.cfg"
    assert root.attrib["APP_FILE_PATH"] == ""  # no firmware from /ztprov/


def test_settings_file_points_at_the_tenant_escaped() -> None:
    body = FAMILY.render_file("0004F2ABCDEF-rps.cfg", PROVISIONING, ROW)
    assert body == FAMILY.render(PROVISIONING, ROW)
    [element] = parsed(body)
    assert element.attrib == {
        "device.set": "1",
        "device.prov.serverType.set": "1", "device.prov.serverType": "HTTPS",
        "device.prov.serverName.set": "1", "device.prov.serverName": PROVISIONING.prov_url,
        "device.prov.user.set": "1", "device.prov.user": "tenant<8>",
        "device.prov.password.set": "1", "device.prov.password": "p&w\"'<>",
        "device.dhcp.bootSrvUseOpt.set": "1", "device.dhcp.bootSrvUseOpt": "Static",
    }
    plain = ServerProvisioning(8, "http://10.0.0.1/prov/", "u", "p")
    [element] = parsed(FAMILY.render(plain, ROW))
    assert element.attrib["device.prov.serverType"] == "HTTP"


@pytest.mark.parametrize(("agent", "model", "firmware", "mac"), [
    ("FileTransport PolycomVVX-VVX_450-UA/6.4.6.2116 Type/Application", "VVX450",
     "6.4.6.2116", None),
    ("FileTransport PolyEdge-Edge_E450-UA/8.0.0.15602 Type/Application", "EdgeE450",
     "8.0.0.15602", None),
    ("FileTransport PolyCCX-CCX_600-UA/8.0.2.3267 (SN:482567b5313f) Type/Application",
     "CCX600", "8.0.2.3267", "482567B5313F"),
    ("FileTransport PolycomSoundPointIP-SPIP_335-UA/3.2.1.0078", "SPIP335", "3.2.1.0078",
     None),
    ("curl/8.5.0", None, None, None),
    (None, None, None, None),
])
def test_user_agent(agent: str | None, model: str | None, firmware: str | None,
                    mac: str | None) -> None:
    parsed = FAMILY.parse_user_agent(agent)
    assert (parsed.model, parsed.firmware, parsed.mac) == (model, firmware, mac)
