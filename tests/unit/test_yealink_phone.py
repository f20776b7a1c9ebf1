"""The Yealink phone family at /ztprov/: file names, User-Agent, the CFG file it gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rps_service.models import Device, ServerProvisioning
from rps_service.vendors import FAMILIES
from rps_service.ztp.useragent import UserAgent, parse_user_agent
from rps_service.ztp.yealink import YealinkFamily, cfg_value

FAMILY = YealinkFamily()
DEVICE = Device("yealink", "001565ABCDEF", 8, "registered")


def parse_cfg(text: str) -> dict[str, str]:
    """Read a CFG file as a Yealink does: header first, comments skipped, split at '='."""
    lines = text.split("\n")
    assert lines[0] == "#!version:1.0.0.1"
    values = {}
    for line in lines[1:]:
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, line
        values[key.strip()] = value.strip()
    return values


def test_registered() -> None:
    assert FAMILIES["yealink"].name == "yealink"


@pytest.mark.parametrize(("name", "mac"), [
    ("001565abcdef.cfg", "001565ABCDEF"),  # what Yealinks ask for
    ("001565ABCDEF.cfg", "001565ABCDEF"),
    ("001565123456.cfg", "001565123456"),  # all decimal: still a MAC here
    ("001565aBCdef.cfg", None),
    ("y000000000000.boot", None),  # the common boot file
    ("001565abcdef.boot", None),  # the MAC-oriented boot file
    ("y000000000028.cfg", None),  # a model's common CFG file
    ("001565abcdef-local.cfg", None),
    ("001565abcdef-contact.xml", None),
    ("001565abcdef", None),
    ("snomD717-001565ABCDEF.htm", None),
])
def test_settings_file_names(name: str, mac: str | None) -> None:
    assert FAMILY.file_mac(name) == mac
    assert FAMILY.serves(name, "001565ABCDEF") == (mac == "001565ABCDEF")


@pytest.mark.parametrize(("header", "expected"), [
    ("Yealink SIP-T46U 108.86.0.20 80:5e:c0:12:34:56",
     UserAgent("T46U", "108.86.0.20", "805EC0123456")),
    ("Yealink SIP-T21P_E2 52.80.0.3 00:15:65:4c:4c:26",
     UserAgent("T21P_E2", "52.80.0.3", "0015654C4C26")),
    ("Yealink SIP VP-T49G 51.80.0.100 00:15:65:00:00:01",
     UserAgent("T49G", "51.80.0.100", "001565000001")),
    ("Yealink W60B 77.83.0.85 80:5e:c0:11:22:33", UserAgent("W60B", "77.83.0.85", "805EC0112233")),
    ("Yealink-T46G 28.83.0.35 28.1.0.128.0.0.0", UserAgent("T46G", "28.83.0.35")),
    ("Yealink SIP-T54W", UserAgent("T54W")),
    ("curl/8.5.0", UserAgent()),
    ("", UserAgent()),
    (None, UserAgent()),
])
def test_user_agent(header: str | None, expected: UserAgent) -> None:
    assert FAMILY.parse_user_agent(header) == expected


@pytest.mark.parametrize(("header", "mac"), [
    ("Yealink SIP-T46U 108.86.0.20 80:5e:c0:12:34:56", "805EC0123456"),
    ("Yealink SIP-T46U 108.86.0.20 00:15:65:12:34:56", "001565123456"),  # all decimal
    ("x 00-15-65-4c-4c-26 y", "0015654C4C26"),
    ("x 00:15-65:4c:4c:26", None),  # mixed separators
    ("x 00:15:65:4c:4c:26:11", None),  # seven octets
    ("Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 000413922D24 SXM:0 UXM:0)",
     "000413922D24"),
])
def test_the_listener_finds_a_separated_mac(header: str, mac: str | None) -> None:
    assert parse_user_agent(header).mac == mac


@given(st.text(max_size=2000))
def test_user_agent_never_raises(header: str) -> None:
    agent = FAMILY.parse_user_agent(header)
    assert agent.mac is None or (len(agent.mac) == 12 and agent.mac == agent.mac.upper())


def test_the_cfg_file() -> None:
    body = FAMILY.render(ServerProvisioning(8, "https://pbx.test/prov/?t=8&a=<b>", "tenant8",
                                            "t3nant&<pw>"), DEVICE)
    assert body == (
        b"#!version:1.0.0.1\n"
        b"## Written by rps-service: on to the tenant's provisioning server.\n"
        b"static.auto_provision.server.url = https://pbx.test/prov/?t=8&a=<b>\n"
        b"static.auto_provision.server.username = tenant8\n"
        b"static.auto_provision.server.password = t3nant&<pw>\n"
    )


@pytest.mark.parametrize("password", ["#starts-with-hash", "a#b", "x = y", "%NULL%x", "ü€"])
def test_values_stay_on_their_line(password: str) -> None:
    text = FAMILY.render(ServerProvisioning(8, "https://pbx.test/prov/#frag", "u", password),
                         DEVICE).decode("utf-8")
    values = parse_cfg(text)
    assert values["static.auto_provision.server.password"] == password
    assert values["static.auto_provision.server.url"] == "https://pbx.test/prov/#frag"


@given(st.text(max_size=200))
def test_no_value_can_add_a_line(value: str) -> None:
    text = FAMILY.render(ServerProvisioning(8, "https://pbx.test/", "u", value),
                         DEVICE).decode("utf-8")
    assert text.count("\n") == 5 and len(text.splitlines()) == 5
    assert cfg_value(value) in text


def test_sample_request() -> None:
    name, agent = FAMILY.sample_request("001565ABCDEF", "T46U")
    assert name == "001565abcdef.cfg"
    assert FAMILY.parse_user_agent(agent) == UserAgent("T46U", "108.86.0.20", "001565ABCDEF")
    assert FAMILY.file_mac(name) == "001565ABCDEF"
