"""Panasonic SIP phones (KX-HDV, KX-TGP, KX-UT): ``Config<MAC>.cfg`` and the vendor's
"Standard Format File" pointing the phone at the tenant's provisioning.

The redirection service sends the phone the device's URL, which ends in ``Config{MAC}.cfg``
(``{MAC}``: the MAC in upper case); a phone that gets it unexpanded asks for it literally,
which is served too (the URL key, not the name, identifies the device). The answer is a text
file: the fixed first line ``# Panasonic SIP Phone Standard Format File #``, then
``NAME="value"`` lines:

* ``CFG_STANDARD_FILE_PATH``: the phone's own (per-device) file at the tenant, with the
  tenant's credentials as the URL's user information (the form Panasonic's administrator
  guides show, ``http://id:pass@host/{MAC}.cfg``); a ``prov_url`` ending in ``/`` gets
  ``Config{MAC}.cfg`` appended, one naming a file or a ``{MAC}``/``{mac}`` is kept;
* ``CFG_PRODUCT_FILE_PATH`` and ``CFG_MASTER_FILE_PATH`` emptied, so nothing else keeps
  pointing the phone at ``/ztprov/`` (the tenant's own files may set them again);
* ``HTTP_AUTH_ID`` / ``HTTP_AUTH_PASS``: the same credentials for the phone's HTTP client
  (names from memory of the administrator guide, unconfirmed; left out when a value holds a
  ``"``, which the format cannot quote).

Lines end in CRLF. The User-Agent reads ``Panasonic_KX-HDV130/01.133 (0080f0c8c381)``
(one provisioning system's parser). The ``HTTP_AUTH_*`` names, the emptied paths and the
User-Agent's form are said once per process when first relied on (docs/vendors/panasonic.md).
"""

from __future__ import annotations

import re

from rps_service.guesses import rely_on_guess
from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.urls import file_url
from rps_service.ztp.useragent import UserAgent

HEADER = "# Panasonic SIP Phone Standard Format File #"
FILE_NAME = "Config{MAC}.cfg"
_FILE = re.compile(r"(?:Config)?([0-9A-Fa-f]{12})(?:\.cfg)?")
_PLACEHOLDERS = ("Config{MAC}.cfg", "Config{mac}.cfg")
_AGENT = re.compile(r"Panasonic[_ -]([A-Za-z0-9-]{1,32})/([0-9A-Za-z.]{1,32})"
                    r"(?:\s*\(([0-9A-Fa-f]{2}(?:[:-]?[0-9A-Fa-f]{2}){5})\))?")
_MAX_AGENT = 1024

GUESS_PATHS = ("a Panasonic phone follows a new CFG_STANDARD_FILE_PATH with the product and "
               "master file paths emptied")
GUESS_AUTH = ("Panasonic phones take their provisioning server's HTTP login from HTTP_AUTH_ID "
              "and HTTP_AUTH_PASS (names recalled from the administrator guides)")
GUESS_AGENT = ("a Panasonic phone's User-Agent reads Panasonic_<MODEL>/<firmware> (<mac>) "
               "(one provisioning system's parser)")


class PanasonicFamily(PhoneFamily):
    """Panasonic phones sent here by Panasonic's redirection service."""

    name = "panasonic"
    content_type = "text/plain"

    def file_mac(self, name: str) -> str | None:
        match = _FILE.fullmatch(name)
        return match.group(1).upper() if match else None

    def serves(self, name: str, mac: str) -> bool:
        return name in _PLACEHOLDERS or self.file_mac(name) == mac

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        user, password = provisioning.http_user, provisioning.http_password
        rely_on_guess("ZTP", GUESS_PATHS)
        lines = [
            HEADER,
            "# rps-service: where this phone provisions from now on",
            f'CFG_STANDARD_FILE_PATH="{_standard_path(provisioning.prov_url, user, password)}"',
            'CFG_PRODUCT_FILE_PATH=""',
            'CFG_MASTER_FILE_PATH=""',
        ]
        if '"' not in user + password:
            lines += [f'HTTP_AUTH_ID="{user}"', f'HTTP_AUTH_PASS="{password}"']
            if user:
                rely_on_guess("ZTP", GUESS_AUTH)
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def parse_user_agent(self, header: str | None) -> UserAgent:
        match = _AGENT.search((header or "")[:_MAX_AGENT])
        if match is None:
            return UserAgent()
        rely_on_guess("ZTP", GUESS_AGENT)
        mac = re.sub(r"[:-]", "", match.group(3)).upper() if match.group(3) else None
        return UserAgent(match.group(1), match.group(2), mac)

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        return f"Config{mac}.cfg", f"Panasonic_{model}/01.133 ({mac.lower()})"


def _standard_path(prov_url: str, user: str, password: str) -> str:
    # A '"' would end the quoted value: in a URL it may be written %22.
    return file_url(prov_url.replace('"', "%22"), user, password, FILE_NAME,
                    ("{MAC}", "{mac}"))
