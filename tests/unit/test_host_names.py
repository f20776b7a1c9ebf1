"""``[general] allowed_hosts`` and the Host header rule of the event API (DNS rebinding)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rps_service.api.app import host_allowed, host_name
from rps_service.config import ConfigError, load_settings


def _load(tmp_path: Path, value: str) -> tuple[str, ...]:
    path = tmp_path / "rps.ini"
    path.write_text(f"[general]\nallowed_hosts = {value}\n", encoding="utf-8")
    return load_settings(path, env={}).general.allowed_hosts


def test_allowed_hosts_default_empty_and_parsed(tmp_path: Path) -> None:
    path = tmp_path / "rps.ini"
    path.write_text("[general]\n", encoding="utf-8")
    assert load_settings(path, env={}).general.allowed_hosts == ()
    assert _load(tmp_path, " PBX.Example.com., gui.local ,[fd00::1],10.0.0.5,") == (
        "pbx.example.com", "gui.local", "fd00::1", "10.0.0.5")


@pytest.mark.parametrize("bad", ["https://pbx.example.com", "pbx.example.com:15777",
                                 "pbx example", "pbx/x", "*.example.com"])
def test_allowed_hosts_refuses_what_is_not_a_name(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, bad)
    assert f"[general] allowed_hosts: {bad!r} is not a host name or IP address" in str(caught.value)


@pytest.mark.parametrize(("header", "name"), [
    ("localhost:15777", "localhost"), ("[::1]:15777", "::1"), ("[::1]", "::1"),
    ("PBX.example.com.", "pbx.example.com"), ("127.0.0.1", "127.0.0.1"), ("", ""),
])
def test_host_name(header: str, name: str) -> None:
    assert host_name(header) == name


@given(st.text(max_size=80))
def test_any_host_header_is_judged_without_raising(header: str) -> None:
    name = host_name(header)
    allowed = host_allowed(name, "127.0.0.1", ("pbx.example.com",))
    # A name that is not an address (letters beyond hex digits, spaces, …) passes only when
    # it is localhost or listed: no DNS name of an attacker's gets through.
    if set(name) - set("0123456789abcdef:."):
        assert allowed == (name in ("localhost", "pbx.example.com"))


@given(st.ip_addresses() | st.ip_addresses(v=4).map(lambda a: IPv6Address(f"::ffff:{a}")))
def test_addresses_pass_when_loopback(address: IPv4Address | IPv6Address) -> None:
    text = str(address)
    header = f"[{text}]:15777" if ":" in text else f"{text}:15777"
    mapped = address.ipv4_mapped if isinstance(address, IPv6Address) else None
    loopback = address.is_loopback or (mapped is not None and mapped.is_loopback)
    assert host_allowed(host_name(header), "127.0.0.1", ()) == loopback
