"""Htek phones: ``cfg<mac>.xml`` under the device's own URL, in Htek's ``<hl_provision>`` XML.

Htek's RPS sends a phone's request for ``cfg<mac>`` or ``cfg<mac>.xml`` on to the URL the
device was registered with, the file name appended (lower-case MAC, no separators). The
phone asks for ``cfg<mac>`` first, then ``cfg<mac>.xml``; only the ``.xml`` one is answered
(the file without extension may be another format), which sends the phone on to it.
Anything else under the key (common files, firmware) is answered 404.

The file is Htek's provisioning XML, ``<hl_provision version="1"><config version="1">`` with
one ``<P<number> para="<name>">value</P<number>>`` per setting (``para`` is only a label),
as the public templates of three PBX projects write it. It sets the phone's configuration
server (``P237``, the full URL), its protocol (``P212``: 1 HTTP, 3 HTTPS) and the
credentials for it (``P1360``, ``P1361``) to the tenant's regular provisioning.

The User-Agent reads ``Htek UC903 2.0.4.2 00:1f:c1:1c:22:a9``: model, firmware, MAC.
``P212 = 3`` for HTTPS and ``P1360``/``P1361`` come from one PBX project's template, and that
``cfg<mac>`` is another format is a guess: each is said once per process when first relied
on (docs/vendors/htek.md).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from rps_service.guesses import rely_on_guess
from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.useragent import UserAgent, parse_user_agent

HTEK_OUI = "001FC1"
#: ``P212`` (FirmwareUpGrade.UrgrateMode) by the URL's scheme.
PROTOCOLS = {"http": "1", "https": "3"}
_SETTINGS_FILE = re.compile(r"cfg(?P<mac>[0-9A-Fa-f]{12})\.xml", re.IGNORECASE)
_NO_EXTENSION = re.compile(r"cfg(?P<mac>[0-9A-Fa-f]{12})", re.IGNORECASE)
# XML 1.0 allows no control characters but tab, line feed and carriage return; a value
# needs none of them.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_LENGTH = 1024
GUESS_NO_EXTENSION = ("cfg<mac> without extension is another format: an Htek phone answered "
                      "404 for it asks for cfg<mac>.xml next")
GUESS_HTTPS = ("P212 = 3 makes an Htek phone fetch its configuration over HTTPS (one PBX "
               "project's template)")
GUESS_LOGIN = ("Htek phones take their configuration server's login from P1360 and P1361 "
               "(one PBX project's template)")
_AGENT = re.compile(r"\bHtek[ _/-]+(?P<model>[A-Za-z0-9][A-Za-z0-9._-]{0,31})"
                    r"(?:\s+(?P<firmware>\d{1,6}(?:\.\d{1,6}){1,5}))?(?![\w.])", re.I)


def xml_value(value: str) -> str:
    """``value`` as an element's text: escaped, control characters dropped."""
    return escape(_CONTROL.sub("", value))


def setting(number: int, para: str, value: str) -> str:
    return f'    <P{number} para="{para}">{xml_value(value)}</P{number}>'


def render_config(prov_url: str, http_user: str, http_password: str) -> bytes:
    """The auto-provisioning settings in Htek's ``<hl_provision>`` format."""
    protocol = PROTOCOLS.get(urlsplit(prov_url).scheme.lower(), "1")
    if protocol == PROTOCOLS["https"]:
        rely_on_guess("ZTP", GUESS_HTTPS)
    if http_user:
        rely_on_guess("ZTP", GUESS_LOGIN)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<hl_provision version="1">',
        '  <config version="1">',
        "    <!-- Written by rps-service: on to the tenant's provisioning server. -->",
        setting(212, "FirmwareUpGrade.UrgrateMode", protocol),
        setting(237, "FirmwareUpGrade.ConfigServerPath", prov_url),
        setting(1360, "FirmwareUpGrade.UserName", http_user),
        setting(1361, "FirmwareUpGrade.Password", http_password),
        "  </config>",
        "</hl_provision>",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


class HtekFamily(PhoneFamily):
    """Htek desk phones (UC9xx and OEM models with the same firmware)."""

    name = "htek"
    content_type = "application/xml"

    def file_mac(self, name: str) -> str | None:
        match = _SETTINGS_FILE.fullmatch(name)
        return match.group("mac").upper() if match else None

    def serves(self, name: str, mac: str) -> bool:
        """``cfg<mac>.xml``; ``cfg<mac>`` (asked first) is not, on a guess."""
        if self.file_mac(name) == mac:
            return True
        bare = _NO_EXTENSION.fullmatch(name)
        if bare is not None and bare.group("mac").upper() == mac:
            rely_on_guess("ZTP", GUESS_NO_EXTENSION)
        return False

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        return render_config(provisioning.prov_url, provisioning.http_user,
                             provisioning.http_password)

    def parse_user_agent(self, header: str | None) -> UserAgent:
        """``Htek <model> <firmware> <mac with colons>``; every part optional."""
        if not header:
            return UserAgent()
        text = header[:_MAX_LENGTH]
        mac = parse_user_agent(text).mac
        match = _AGENT.search(text)
        if match is None:
            return UserAgent(mac=mac)
        return UserAgent(match.group("model"), match.group("firmware"), mac)

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        octets = ":".join(mac.lower()[i:i + 2] for i in range(0, 12, 2))
        return f"cfg{mac.lower()}.xml", f"Htek {model} 2.0.4.2 {octets}"
