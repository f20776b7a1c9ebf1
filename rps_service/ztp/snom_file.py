"""The files a phone asks for under ``/ztprov/`` and the one settings file it gets.

A Snom phone requests ``snom<MODEL>.htm`` and then ``snom<MODEL>-<MAC>.htm``; a provisioning
URL written with ``{mac}`` makes it ask for the bare MAC (``000413ABCDEF``, optionally with
``.htm``/``.xml``/``.cfg``). Only a name that carries a MAC is a settings file; everything
else (the model file, firmware, probes) is answered 404 once the phone is authenticated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

_SETTINGS_FILE = re.compile(
    r"(?:snom(?P<model>[A-Za-z0-9]{1,32})-)?(?P<mac>[0-9A-Fa-f]{12})(?:\.(?:htm|html|xml|cfg))?"
)


@dataclass(frozen=True)
class RequestedFile:
    """What a file name asks for: ``mac`` is set only for a device's settings file."""

    name: str
    mac: str | None = None  # 12 upper-case hex digits
    model: str | None = None


def parse_file_name(name: str) -> RequestedFile:
    """Classify the last path segment of a request under the ZTP path."""
    match = _SETTINGS_FILE.fullmatch(name)
    if match is None:
        return RequestedFile(name)
    return RequestedFile(name, match.group("mac").upper(), match.group("model"))


def render_settings(prov_url: str, http_user: str, http_password: str) -> bytes:
    """The Snom settings file: the tenant's provisioning URL and credentials, escaped."""
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<settings><phone-settings>",
        f'  <setting_server perm="R">{escape(prov_url)}</setting_server>',
        f'  <http_client_user perm="R">{escape(http_user)}</http_client_user>',
        f'  <http_client_pass perm="R">{escape(http_password)}</http_client_pass>',
        "</phone-settings></settings>",
        "",
    ]
    return "\n".join(lines).encode("utf-8")
