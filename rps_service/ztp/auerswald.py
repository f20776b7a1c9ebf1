"""Auerswald COMfortel D-series phones (and their FONtevo twins): ``<MAC>.xml`` and a
provisioning-xml that moves the phone to the tenant's provisioning.

The redirection service sends the phone the device's URL, which ends in ``<MACADR>.xml``;
the phone replaces the marker ``<MACADR>`` by its MAC (a phone that does not is served the
literal name too: the URL key identifies the device). The answer is a settings patch in the
phone's own XML (``<configuration>`` holding settings sections, as Auerswald documents them)
with one section, ``<provisioning>``:

* ``active`` true and ``url`` the tenant's ``prov_url`` (a ``prov_url`` ending in ``/`` gets
  ``<MACADR>.xml`` appended; one naming a file or holding ``<MACADR>`` is kept), the
  tenant's credentials as the URL's user information: the section has no fields for them;
* ``redirect`` false: the phone asks the redirection service before its own URL, and the
  redirection still points at ``/ztprov/``; after a factory reset the phone asks it again.

The section carries no ``version`` attribute: the phone then matches it against the
schemas it knows. The User-Agent's format is not documented: the model is read after
``COMfortel`` (or a bare ``D-xxx``), the MAC only when it has Auerswald's OUI ``000952``.
The patch's root, the login in the URL and the User-Agent's form are guesses, each said once
per process when first relied on (docs/vendors/auerswald.md).
"""

from __future__ import annotations

import re
from xml.sax.saxutils import escape

from rps_service.guesses import rely_on_guess
from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.urls import file_url
from rps_service.ztp.useragent import UserAgent

MARKER = "<MACADR>"
FILE_NAME = f"{MARKER}.xml"
_FILE = re.compile(r"([0-9A-Fa-f]{12})(?:\.xml)?")
_PLACEHOLDERS = (FILE_NAME, MARKER)
_MODEL = re.compile(r"(?:COMfortel[ _-]?|\b)(D-\d{3}[A-Za-z]?|[0-9]{4} ?IP)\b", re.I)
_FIRMWARE = re.compile(r"(?<![\w.])(\d{1,4}\.\d{1,4}[A-Za-z]?(?:\.\d{1,6})*)(?![\w.])")
_MAC = re.compile(r"(?<![0-9A-Fa-f])(000952[0-9A-Fa-f]{6})(?![0-9A-Fa-f])", re.I)
_MAX_AGENT = 1024

GUESS_PATCH = ("Auerswald phones take a settings patch in a <configuration> root, its "
               "<provisioning> section without a version")
GUESS_LOGIN = ("Auerswald phones take the provisioning login as the URL's user information "
               "(user:password@host)")
GUESS_AGENT = ("an Auerswald phone's User-Agent names its model after COMfortel (or a bare "
               "D-xxx), then its firmware, and its MAC with Auerswald's OUI 000952 (the "
               "format is not documented)")


class AuerswaldFamily(PhoneFamily):
    """Auerswald phones sent here by Auerswald's redirection service."""

    name = "auerswald"
    content_type = "application/xml"

    def file_mac(self, name: str) -> str | None:
        match = _FILE.fullmatch(name)
        return match.group(1).upper() if match else None

    def serves(self, name: str, mac: str) -> bool:
        return name in _PLACEHOLDERS or self.file_mac(name) == mac

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        url = file_url(provisioning.prov_url, provisioning.http_user,
                       provisioning.http_password, FILE_NAME, (MARKER,))
        rely_on_guess("ZTP", GUESS_PATCH)
        if provisioning.http_user:
            rely_on_guess("ZTP", GUESS_LOGIN)
        lines = [
            '<?xml version="1.0" encoding="utf-8"?>',
            "<configuration>",
            "  <provisioning>",
            "    <active>true</active>",
            "    <redirect>false</redirect>",
            f"    <url>{escape(url)}</url>",
            "  </provisioning>",
            "</configuration>",
            "",
        ]
        return "\n".join(lines).encode("utf-8")

    def parse_user_agent(self, header: str | None) -> UserAgent:
        text = (header or "")[:_MAX_AGENT]
        model = _MODEL.search(text)
        firmware = _FIRMWARE.search(text, model.end() if model else 0)
        mac = _MAC.search(text)
        if model or mac:
            rely_on_guess("ZTP", GUESS_AGENT)
        return UserAgent(model.group(1) if model else None,
                         firmware.group(1) if firmware else None,
                         mac.group(1).upper() if mac else None)

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        return f"{mac}.xml", f"Auerswald COMfortel {model} 2.8A {mac}"
