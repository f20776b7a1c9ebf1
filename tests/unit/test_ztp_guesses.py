"""The phones' side says its guesses: each unconfirmed phone fact (docs/vendors/), the first
time a process relies on it, is one ``WARNING (ZTP): Relying on a guess. Guess=…``; later
uses, and uses that rely on nothing guessed, stay quiet."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from rps_service.guesses import forget_guesses
from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.auerswald import AuerswaldFamily
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.fanvil import FanvilFamily
from rps_service.ztp.gigaset import GigasetFamily
from rps_service.ztp.htek import HtekFamily
from rps_service.ztp.panasonic import PanasonicFamily
from rps_service.ztp.yealink import YealinkFamily


@pytest.fixture(autouse=True)
def _say_guesses_again() -> None:
    forget_guesses()  # each test sees the first use of a guess


TENANT_PASSWORD = "s3cret"


def tenant(prov_url: str = "https://pbx.test/prov/", user: str = "tenant8",
           password: str = TENANT_PASSWORD) -> ServerProvisioning:
    return ServerProvisioning(8, prov_url, user, password)


def device(provider: str, mac: str, model: str | None = None) -> Device:
    return Device(provider=provider, mac=mac, server=8, status="registered", model=model)


def said_twice(action: Callable[[], Any]) -> list[tuple[str, str, str]]:
    """What ``action``, done twice, said as guesses: (level, component, guess)."""
    with capture_logs() as logs:
        action()
        action()
    return [(e["log_level"], e["component"], e["guess"]) for e in logs
            if e["event"] == "Relying on a guess"]


def ztp(*guesses: str) -> list[tuple[str, str, str]]:
    return [("warning", "ZTP", guess) for guess in guesses]


def file_of(family: PhoneFamily, provisioning: ServerProvisioning, phone: Device,
            agent: str | None = None) -> Callable[[], bytes]:
    return lambda: family.render_file("file", provisioning, phone, agent)


# -- Auerswald ------------------------------------------------------------------------------


def test_auerswald_says_its_patch_root_and_the_login_in_the_url() -> None:
    family, phone = AuerswaldFamily(), device("auerswald", "000952000001")
    assert said_twice(file_of(family, tenant(), phone)) == ztp(
        "Auerswald phones take a settings patch in a <configuration> root, its "
        "<provisioning> section without a version",
        "Auerswald phones take the provisioning login as the URL's user information "
        "(user:password@host)")
    forget_guesses()
    assert said_twice(file_of(family, tenant(user="", password=""), phone)) == ztp(
        "Auerswald phones take a settings patch in a <configuration> root, its "
        "<provisioning> section without a version")  # no login: none in the URL


def test_auerswald_says_its_user_agent_guess_only_when_it_reads_something() -> None:
    family = AuerswaldFamily()
    assert said_twice(lambda: family.parse_user_agent("curl/8.5.0")) == []
    assert said_twice(lambda: family.parse_user_agent(
        "Auerswald COMfortel D-200 2.8A 000952000001")) == ztp(
        "an Auerswald phone's User-Agent names its model after COMfortel (or a bare D-xxx), "
        "then its firmware, and its MAC with Auerswald's OUI 000952 (the format is not "
        "documented)")


# -- Panasonic ------------------------------------------------------------------------------


def test_panasonic_says_the_auth_names_only_when_it_writes_a_login() -> None:
    family, phone = PanasonicFamily(), device("panasonic", "0080F0000001")
    paths = ("a Panasonic phone follows a new CFG_STANDARD_FILE_PATH with the product and "
             "master file paths emptied")
    assert said_twice(file_of(family, tenant(user="", password=""), phone)) == ztp(paths)
    assert said_twice(file_of(family, tenant(), phone)) == ztp(
        "Panasonic phones take their provisioning server's HTTP login from HTTP_AUTH_ID and "
        "HTTP_AUTH_PASS (names recalled from the administrator guides)")
    forget_guesses()
    # A '"' cannot be written in the format: the two lines are left out, and not relied on.
    assert said_twice(file_of(family, tenant(password='pa"ss'), phone)) == ztp(paths)


def test_panasonic_says_its_user_agent_guess() -> None:
    family = PanasonicFamily()
    assert said_twice(lambda: family.parse_user_agent("Mozilla/5.0")) == []
    assert said_twice(lambda: family.parse_user_agent(
        "Panasonic_KX-HDV130/01.133 (0080f0c8c381)")) == ztp(
        "a Panasonic phone's User-Agent reads Panasonic_<MODEL>/<firmware> (<mac>) (one "
        "provisioning system's parser)")


# -- Gigaset --------------------------------------------------------------------------------


GIGASET_LOGIN = ("Gigaset phones take the provisioning login as the URL's user information "
                 "(user:password@host)")
DATA_SERVER = ("Gigaset phones of the ProviderFrame format provision from "
               "BS_IP_Data1.aucS_DATA_SERVER[0] and keep doing so with "
               "BS_IP_Data.ucB_AUTO_UPDATE_PROFILE (one public provisioning server's templates)")
GIGASET_AGENT = ("a Gigaset phone's User-Agent reads <model>/<firmware>;<MAC> (one public "
                 "provisioning server)")


def test_gigaset_says_the_guesses_each_file_format_relies_on() -> None:
    family, mac = GigasetFamily(), "7C2F80000001"
    multicell = file_of(family, tenant(user="", password=""),
                        device("gigaset", mac, "N870 IP PRO"))
    assert said_twice(multicell) == []  # three public sources agree on this one
    frame = file_of(family, tenant(), device("gigaset", mac, "N510 IP PRO"))
    assert said_twice(frame) == ztp(GIGASET_LOGIN, DATA_SERVER)
    maxwell = file_of(family, tenant(), device("gigaset", mac),
                      "Maxwell 3 PRO/82.2.18.4-release;7C2F80000001")
    assert said_twice(maxwell) == ztp(GIGASET_AGENT,
                                      "Gigaset Maxwell phones read the ProviderFrame format")


# -- Fanvil ---------------------------------------------------------------------------------


def test_fanvil_says_its_comment_line_and_a_query_guess() -> None:
    family, phone = FanvilFamily(), device("fanvil", "0C383E000001")
    comment = ("Fanvil firmware ignores the --ZTP Prov URL-- line as it does the separator "
               "lines of its own files")
    assert said_twice(file_of(family, tenant(), phone)) == ztp(comment)
    assert said_twice(file_of(family, tenant("https://pbx.test/prov/?t=8"), phone)) == ztp(
        "a query of the tenant's URL goes after Fanvil's Config File Name (Fanvil has no "
        "field for one)")


# -- Htek -----------------------------------------------------------------------------------


def test_htek_says_its_single_source_parameters_when_it_writes_them() -> None:
    family, phone = HtekFamily(), device("htek", "001FC1000001")
    assert said_twice(file_of(family, tenant("http://pbx.test/prov/", "", ""), phone)) == []
    assert said_twice(file_of(family, tenant(), phone)) == ztp(
        "P212 = 3 makes an Htek phone fetch its configuration over HTTPS (one PBX project's "
        "template)",
        "Htek phones take their configuration server's login from P1360 and P1361 (one PBX "
        "project's template)")


def test_htek_says_its_guess_when_it_refuses_the_file_without_extension() -> None:
    family, mac = HtekFamily(), "001FC1000001"
    assert said_twice(lambda: family.serves("cfg001fc1000001.xml", mac)) == []
    assert said_twice(lambda: family.serves("cfg001fc1000002", mac)) == []  # not its MAC
    assert said_twice(lambda: family.serves("cfg001fc1000001", mac)) == ztp(
        "cfg<mac> without extension is another format: an Htek phone answered 404 for it "
        "asks for cfg<mac>.xml next")
    assert not family.serves("cfg001fc1000001", mac)


# -- Yealink --------------------------------------------------------------------------------


def test_yealink_says_its_format_guess_when_a_value_holds_a_mark() -> None:
    family, phone = YealinkFamily(), device("yealink", "001565000001")
    assert said_twice(file_of(family, tenant(), phone)) == []
    assert said_twice(file_of(family, tenant(password="a#b=c"), phone)) == ztp(
        "a Yealink CFG value runs from after the first = to the end of its line, so #, = and "
        "& inside it stay part of it")
