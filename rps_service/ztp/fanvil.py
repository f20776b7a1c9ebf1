"""Fanvil phones: ``<mac>.cfg`` under the device's own URL, answered in Fanvil's text format.

FDPS sends a phone to ``<provisioning_url><key>/$mac.cfg``; the phone replaces ``$mac`` with
its MAC (lower-case hex) and asks for ``<mac>.cfg``. A phone that did not replace it asks for
``$mac.cfg`` itself: under the device's key that is its file too. Model files
(``f0C00620000.cfg``, ``F0V00X600000.cfg``...) and firmware are answered 404.

The file is Fanvil's configuration text (``<<VOIP CONFIG FILE>>`` ... ``<<END OF FILE>>``)
with only the auto-provisioning module: the tenant's provisioning server as Fanvil splits it
(``Download Server IP`` host[:port], ``Config File Name`` path + ``$mac.cfg``, ``Download
Protocol`` 4 http / 5 https) and the tenant's credentials (``Download Username`` /
``Download Password``). The format has no escaping: values run to the end of their line, so
line breaks and other control characters are dropped.

The User-Agent reads ``Fanvil X4U 2.12.1 0c383e07e16c``: model, firmware, MAC. That the
firmware ignores the ``--ZTP Prov URL--`` line, and where a URL's query goes, are inferred:
said once per process when first relied on (docs/vendors/fanvil.md).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from rps_service.guesses import rely_on_guess
from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.useragent import UserAgent

FANVIL_OUI = "0C383E"
#: What FDPS's URL names (the provider's ``FILE_NAME``), should the phone not expand it.
PLACEHOLDER_FILE = "$mac.cfg"
#: The config version written; a factory-reset phone applies it (Fanvil skips a file whose
#: version is not newer than the running one, so the lowest one peers serve is used).
VERSION = "2.0000000000"
PROTOCOLS = {"http": "4", "https": "5"}
_SETTINGS_FILE = re.compile(r"(?P<mac>[0-9A-Fa-f]{12})\.cfg")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_LENGTH = 1024
_MODEL = re.compile(r"\bFanvil[ _/-]?(?P<model>[A-Za-z][A-Za-z0-9._-]{0,31})"
                    r"(?:\s+(?P<firmware>\d{1,6}(?:\.\d{1,6}){1,5})\b)?", re.I)
_HEX12 = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{12}(?![0-9A-Fa-f])")

GUESS_COMMENT = ("Fanvil firmware ignores the --ZTP Prov URL-- line as it does the separator "
                 "lines of its own files")
GUESS_QUERY = ("a query of the tenant's URL goes after Fanvil's Config File Name (Fanvil has "
               "no field for one)")


def _value(text: str) -> str:
    return _CONTROL.sub("", text)


def provisioning_server(prov_url: str) -> tuple[str, str, str]:
    """``(Download Server IP, Config File Name, Download Protocol)`` for the tenant's URL.

    The URL is a directory: the phone is to ask for ``<mac>.cfg`` in it (its query, if any,
    after the file name: Fanvil has no field of its own for one).
    """
    parts = urlsplit(prov_url)
    path = parts.path.lstrip("/")
    if path and not path.endswith("/"):
        path += "/"
    name = f"{path}{PLACEHOLDER_FILE}"
    if parts.query:
        rely_on_guess("ZTP", GUESS_QUERY)
        name += f"?{parts.query}"
    return parts.netloc, name, PROTOCOLS.get(parts.scheme, "4")


def render_config(prov_url: str, http_user: str, http_password: str) -> bytes:
    """The auto-provisioning settings in Fanvil's configuration text format."""
    server, name, protocol = provisioning_server(prov_url)
    rely_on_guess("ZTP", GUESS_COMMENT)
    lines = [
        f"<<VOIP CONFIG FILE>>Version:{VERSION}",
        # Fanvil's separator style (``--Name--:``): a line no module reads, for people.
        f"--ZTP Prov URL--   :{_value(prov_url)}",
        "",
        "<AUTOUPDATE CONFIG MODULE>",
        f"Download Username  :{_value(http_user)}",
        f"Download Password  :{_value(http_password)}",
        f"Download Server IP :{_value(server)}",
        f"Config File Name   :{_value(name)}",
        f"Download Protocol  :{protocol}",
        "Download Mode      :1",
        "Download Interval  :1",
        "DHCP Option        :0",
        "PNP Enable         :0",
        "<<END OF FILE>>",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


class FanvilFamily(PhoneFamily):
    """``<mac>.cfg`` (or the unexpanded ``$mac.cfg``) under the device's URL key; the answer
    is the ``<AUTOUPDATE CONFIG MODULE>`` of Fanvil's text format."""

    name = "fanvil"
    content_type = "text/plain"

    def file_mac(self, name: str) -> str | None:
        match = _SETTINGS_FILE.fullmatch(name)
        return match.group("mac").upper() if match else None

    def serves(self, name: str, mac: str) -> bool:
        return self.file_mac(name) == mac or name.lower() == PLACEHOLDER_FILE

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        return render_config(provisioning.prov_url, provisioning.http_user,
                             provisioning.http_password)

    def parse_user_agent(self, header: str | None) -> UserAgent:
        if not header:
            return UserAgent()
        text = header[:_MAX_LENGTH]
        match = _MODEL.search(text)
        tokens = [str(t).upper() for t in _HEX12.findall(text) if not str(t).isdigit()]
        mac = next((t for t in tokens if t.startswith(FANVIL_OUI)), tokens[0] if tokens else None)
        return UserAgent(model=match.group("model") if match else None,
                         firmware=match.group("firmware") if match else None, mac=mac)

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        return f"{mac.lower()}.cfg", f"Fanvil {model} 2.12.1 {mac.lower()}"
