"""Yealink phones: ``<mac>.cfg`` and a ``.cfg`` file that hands them on to the tenant.

A Yealink sent here by YMCS (RPS) provisions from the URL it was given, logging in with the
``authName``/``password`` YMCS handed it. It asks, in order, for its MAC-oriented boot file
``<mac>.boot``, the common boot file ``y000000000000.boot``, the common CFG file
``y0000000000XX.cfg`` (``XX`` names the model) and its MAC-oriented CFG file ``<mac>.cfg``
(lower-case MAC). The boot files and the common file are answered 404 (after
authentication), which sends the phone on to ``<mac>.cfg``: the file below.

The file is Yealink's CFG format: the first line must be ``#!version:1.0.0.1``, then one
``key = value`` per line, lines starting with ``#`` are comments. It sets the phone's own
provisioning server (``static.auto_provision.server.url``) and the credentials for it
(``.username``, ``.password``) to the tenant's regular provisioning. That a ``#``, ``=`` or
``&`` inside a value stays part of it is inferred from the format: said once per process
when a value holds one (docs/vendors/yealink.md).
"""

from __future__ import annotations

import re

from rps_service.guesses import rely_on_guess
from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.useragent import UserAgent, parse_user_agent

HEADER = "#!version:1.0.0.1"
URL_KEY = "static.auto_provision.server.url"
USER_KEY = "static.auto_provision.server.username"
PASSWORD_KEY = "static.auto_provision.server.password"  # noqa: S105 - a parameter's name

_SETTINGS_FILE = re.compile(r"([0-9a-f]{12}|[0-9A-F]{12})\.cfg")
_MAX_LENGTH = 1024
# "Yealink SIP-T46U 108.86.0.20 80:5e:c0:12:34:56", "Yealink SIP VP-T49G …",
# "Yealink W60B 77.83.0.85 …", "Yealink-T46G 28.83.0.35 …" (older, no MAC).
_AGENT = re.compile(
    r"\byealink[\s-]+(?:sip(?:\s+vp)?[\s-]+)?(?P<model>[A-Za-z0-9_]{1,32})"
    r"(?:\s+(?P<firmware>\d{1,6}(?:\.\d{1,6}){1,5}))?(?![\w.])", re.I)
# Line breaks of any kind, and the other control characters (tab is a space in a value).
_LINE_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_INNER_MARKS = re.compile(r"[#=&]")

GUESS_VALUE = ("a Yealink CFG value runs from after the first = to the end of its line, so "
               "#, = and & inside it stay part of it")


def cfg_value(value: str) -> str:
    """``value`` on one CFG line. The format has no escapes: a value is everything after
    the first ``=`` to the end of the line, so only a line break could hurt (the tenant API
    refuses control characters; any that ever arrived would be dropped here)."""
    if _INNER_MARKS.search(value):
        rely_on_guess("ZTP", GUESS_VALUE)
    return _LINE_BREAKS.sub("", value)


class YealinkFamily(PhoneFamily):
    """Yealink desk and DECT phones (firmware with boot files or without)."""

    name = "yealink"
    content_type = "text/plain"

    def file_mac(self, name: str) -> str | None:
        match = _SETTINGS_FILE.fullmatch(name)
        return match.group(1).upper() if match else None

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        lines = [
            HEADER,
            "## Written by rps-service: on to the tenant's provisioning server.",
            f"{URL_KEY} = {cfg_value(provisioning.prov_url)}",
            f"{USER_KEY} = {cfg_value(provisioning.http_user)}",
            f"{PASSWORD_KEY} = {cfg_value(provisioning.http_password)}",
            "",
        ]
        return "\n".join(lines).encode("utf-8")

    def parse_user_agent(self, header: str | None) -> UserAgent:
        """``Yealink SIP-<model> <firmware> <mac with colons>``; every part optional."""
        if not header:
            return UserAgent()
        text = header[:_MAX_LENGTH]
        match = _AGENT.search(text)
        mac = parse_user_agent(text).mac
        if match is None:
            return UserAgent(mac=mac)
        return UserAgent(match.group("model"), match.group("firmware"), mac)

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        octets = ":".join(mac.lower()[i:i + 2] for i in range(0, 12, 2))
        return f"{mac.lower()}.cfg", f"Yealink SIP-{model} 108.86.0.20 {octets}"
