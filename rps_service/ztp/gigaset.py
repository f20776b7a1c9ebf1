"""Gigaset phones sent here by Gigaset's legacy redirect service (``gigaset`` provider).

The service hands the phone the registered URL with ``%MACD`` replaced by its MAC, so the
phone asks for ``<key folder>/<MAC>.xml`` (the MAC's case differs between models: matched
without case). Its User-Agent reads ``<model>/<firmware>;<MAC>``, e.g.
``N510 IP PRO/42.245.00.000.000;7C2F804DF9A9``,
``Gigaset N870 IP PRO/83.V2.11.0+build.a546b91;7C2F80E0D605`` or
``Maxwell 3 PRO/82.2.18.4-release;7C2F80E61AF4``.

Two file formats, chosen by the model in the User-Agent (else the model the GUI gave):

* the N670 / N870 multicell systems read ``<provisioning version="1.1" productID="e2">``
  with ``<nvm><param name="Provisioning.global.ProvisioningServer" value="…"/>``;
* the other models (N510 IP PRO, N720 DM PRO, DE desk phones, ...) read
  ``<ProviderFrame><Provider>`` with the device's ``MAC_ADDRESS``, a ``PROFILE_NAME`` and
  ``SYMB_ITEM`` settings: ``BS_IP_Data1.aucS_DATA_SERVER[0]`` (the "Data server", where the
  phone provisions from) and ``BS_IP_Data.ucB_AUTO_UPDATE_PROFILE`` (keep provisioning).

No public source names a setting for the provisioning login, so the tenant's
``http_user``/``http_password`` travel in the URL itself (``https://user:password@host/…``,
percent-encoded); with no ``http_user`` the URL is given as it is.

The login in the URL, the ProviderFrame's settings, Maxwell phones reading that format and
the User-Agent's form (one public provisioning server) are said once per process when first
relied on (docs/vendors/gigaset.md).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import escape

from rps_service.guesses import rely_on_guess
from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.useragent import UserAgent

_FILE = re.compile(r"(?P<mac>[0-9A-Fa-f]{12})(?:\.xml)?", re.I)
_AGENT = re.compile(
    r'^"?(?:Gigaset\s+)?(?P<model>[A-Za-z][\w .-]{0,63}?)\s*/\s*(?P<firmware>[\w.+-]{1,64})'
    r"(?:;\s*(?P<mac>[0-9A-Fa-f]{12})\b)?")
_MAX_LENGTH = 512
#: The N670 and N870 (and N870E) multicell systems: the ``<provisioning>`` format.
_NX70 = re.compile(r"\bN[68]70", re.I)
#: The model's short name (N510, N720, DE410, ...): the profile the ProviderFrame names.
_PROFILE = re.compile(r"\b([A-Z]{1,3}\d{3}[A-Z]?)\b", re.I)
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_MAXWELL = re.compile(r"\bMaxwell\b", re.I)

GUESS_LOGIN = ("Gigaset phones take the provisioning login as the URL's user information "
               "(user:password@host)")
GUESS_DATA_SERVER = ("Gigaset phones of the ProviderFrame format provision from "
                     "BS_IP_Data1.aucS_DATA_SERVER[0] and keep doing so with "
                     "BS_IP_Data.ucB_AUTO_UPDATE_PROFILE (one public provisioning server's "
                     "templates)")
GUESS_MAXWELL = "Gigaset Maxwell phones read the ProviderFrame format"
GUESS_AGENT = ("a Gigaset phone's User-Agent reads <model>/<firmware>;<MAC> (one public "
               "provisioning server)")


def with_login(url: str, user: str, password: str) -> str:
    """``url`` with ``user:password@`` before its host (percent-encoded); unchanged when
    there is no user or the URL already carries a login."""
    parts = urlsplit(url)
    if not user or "@" in parts.netloc:
        return url
    login = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return parts._replace(netloc=f"{login}@{parts.netloc}").geturl()


def _attr(value: str) -> str:
    """An attribute value: XML-escaped, quotes included; non-ASCII as character references
    (the file is plain ASCII whatever encoding it declares)."""
    text = escape(value, {'"': "&quot;"})
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def render_nvm(server_url: str) -> bytes:
    """The N670/N870 file: the provisioning server and nothing else."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<provisioning version="1.1" productID="e2">',
        "  <nvm>",
        f'    <param name="Provisioning.global.ProvisioningServer" value="{_attr(server_url)}"/>',
        "  </nvm>",
        "</provisioning>",
        "",
    ]
    return "\n".join(lines).encode("ascii")


def render_provider_frame(server_url: str, mac: str, profile: str | None,
                          now: datetime | None = None) -> bytes:
    """The ProviderFrame file: the Data server for the device ``mac``. A string setting's
    value is itself quoted (``"…"``); a quote inside the URL is percent-encoded."""
    schema = f' xmlns:xsi="{XSI}" xsi:noNamespaceSchemaLocation="{profile}.xsd"' if profile else ""
    quoted = '"' + server_url.replace('"', "%22") + '"'
    lines = [
        '<?xml version="1.0" encoding="ISO-8859-1"?>',
        f"<ProviderFrame{schema}>",
        "  <Provider>",
        f'    <MAC_ADDRESS value="{mac}"/>',
    ]
    if profile and profile.upper().startswith("DE"):
        # The DE desk phones apply a file only with a version (DDMMYYHHMM).
        stamp = (now or datetime.now(UTC)).strftime("%d%m%y%H%M")
        lines.append(f'    <VERSION value="{stamp}"/>')
    lines += [
        f'    <PROFILE_NAME class="string" value="{_attr(profile or "rps-service")}"/>',
        '    <SYMB_ITEM ID="BS_IP_Data1.aucS_DATA_SERVER[0]" class="symb_item" '
        f'value="{_attr(quoted)}"/>',
        '    <SYMB_ITEM ID="BS_IP_Data.ucB_AUTO_UPDATE_PROFILE" class="symb_item" value="0x1"/>',
        "  </Provider>",
        "</ProviderFrame>",
        "",
    ]
    return "\n".join(lines).encode("ascii")


class GigasetFamily(PhoneFamily):
    """Gigaset's legacy-redirect phones: ``<MAC>.xml`` under the device's URL key."""

    name = "gigaset"
    content_type = "application/xml"

    def file_mac(self, name: str) -> str | None:
        match = _FILE.fullmatch(name)
        return match["mac"].upper() if match else None

    def serves(self, name: str, mac: str) -> bool:
        return self.file_mac(name) == mac

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        return self._render(provisioning, device, device.model or "")

    def render_file(self, name: str, provisioning: ServerProvisioning, device: Device,
                    user_agent: str | None) -> bytes:
        model = self.parse_user_agent(user_agent).model or device.model or ""
        return self._render(provisioning, device, model)

    def parse_user_agent(self, header: str | None) -> UserAgent:
        match = _AGENT.match((header or "")[:_MAX_LENGTH])
        if match is None:
            return UserAgent()
        rely_on_guess("ZTP", GUESS_AGENT)
        mac = match["mac"]
        return UserAgent(model=match["model"].strip(), firmware=match["firmware"],
                         mac=mac.upper() if mac else None)

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        return f"{mac}.xml", f"Gigaset {model}/42.250.00.000.000;{mac}"

    @staticmethod
    def _render(provisioning: ServerProvisioning, device: Device, model: str) -> bytes:
        url = with_login(provisioning.prov_url, provisioning.http_user,
                         provisioning.http_password)
        if url != provisioning.prov_url:
            rely_on_guess("ZTP", GUESS_LOGIN)
        if _NX70.search(model):
            return render_nvm(url)
        rely_on_guess("ZTP", GUESS_DATA_SERVER)
        if _MAXWELL.search(model):
            rely_on_guess("ZTP", GUESS_MAXWELL)
        profile = _PROFILE.search(model)
        return render_provider_frame(url, device.mac, profile[1].upper() if profile else None)
