"""Poly (Polycom) desk phones: VVX, SoundPoint/SoundStation IP, Trio, Edge E and CCX on UC
Software / PolyOS.

Sent here by Poly ZTP, a phone asks its provisioning server for its per-phone *master
configuration file* ``<mac>.cfg`` (lower-case MAC; ``000000000000.cfg`` only when that is
missing). A master file only names other files: the firmware (``APP_FILE_PATH``) and the
configuration files (``CONFIG_FILES``). So the phone gets two files here:

1. ``<mac>.cfg``: a master file whose only configuration file is ``<mac>-rps.cfg``, with
   an empty ``APP_FILE_PATH``: no firmware to fetch here (a firmware file name carries no
   MAC, so ``/ztprov/`` could not tell which phone asks and would refuse its login);
2. ``<mac>-rps.cfg``: the ``device.prov.*`` parameters that make the tenant's ``prov_url``
   the phone's provisioning server, with the tenant's login, plus
   ``device.dhcp.bootSrvUseOpt = Static`` so a DHCP boot-server option does not take it
   back. Changed ``device.*`` parameters make the phone restart and provision from there.

Other files named after the phone (``<mac>-phone.cfg``, ``<mac>-license.cfg``,
``<mac>-directory.xml``) are 404 once it is authenticated; files with no MAC in the name
(``000000000000.cfg``, ``000000000000-directory.xml``) are 401, since no login can be
checked without a device; log uploads (``PUT <mac>-app.log``, ``<mac>-boot.log``) are 405.

The User-Agent reads ``FileTransport PolycomVVX-VVX_450-UA/6.4.6.2116 Type/Application``
(``PolyEdge-Edge_E450``, ``PolyCCX-CCX_600``...), sometimes with ``(SN:<serial>)``, which on
these phones is the MAC.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.useragent import UserAgent

_FILE = re.compile(r"(?P<mac>[0-9A-Fa-f]{12})(?P<rps>-rps)?\.cfg", re.I)
_AGENT = re.compile(r"FileTransport\s+Poly(?:com)?[A-Za-z]*-(?P<model>[A-Za-z0-9_]{1,32}?)"
                    r"-UA/(?P<firmware>\d{1,6}(?:\.\d{1,6}){1,5})")
_SERIAL = re.compile(r"\(SN:\s*([0-9A-Fa-f]{12})\)")
_MAX_AGENT = 1024
#: ``device.prov.serverType`` by the URL's scheme.
_SERVER_TYPES = {"http": "HTTP", "https": "HTTPS", "ftp": "FTP", "ftps": "FTPS",
                 "tftp": "TFTP"}
SETTINGS_SUFFIX = "-rps.cfg"


def _attribute(value: str) -> str:
    return escape(value, {'"': "&quot;"})


class PolyFamily(PhoneFamily):
    """``<mac>.cfg`` (a master file naming the next one) and ``<mac>-rps.cfg`` (the
    ``device.prov.*`` parameters)."""

    name = "poly"
    content_type = "application/xml"

    def file_mac(self, name: str) -> str | None:
        match = _FILE.fullmatch(name)
        if match is None or match.group("mac").isdigit():  # 000000000000.cfg is no phone's
            return None
        return match.group("mac").upper()

    def render_file(self, name: str, provisioning: ServerProvisioning, device: Device,
                    user_agent: str | None = None) -> bytes:
        if name.lower().endswith(SETTINGS_SUFFIX):
            return self.render(provisioning, device)
        return master_file(device.mac)

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        """``<mac>-rps.cfg``: the tenant's provisioning server and login."""
        return device_file(provisioning.prov_url, provisioning.http_user,
                           provisioning.http_password)

    def parse_user_agent(self, header: str | None) -> UserAgent:
        text = (header or "")[:_MAX_AGENT]
        match = _AGENT.search(text)
        serial = _SERIAL.search(text)
        mac = serial.group(1).upper() if serial and not serial.group(1).isdigit() else None
        if match is None:
            return UserAgent(mac=mac)
        return UserAgent(match.group("model").replace("_", ""), match.group("firmware"), mac)

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        """The file that carries the settings: the phone asks for ``<mac>.cfg`` first, and
        that names this one."""
        agent = f"FileTransport PolycomVVX-VVX_{model}-UA/6.4.6.2116 Type/Application"
        return f"{mac.lower()}{SETTINGS_SUFFIX}", agent


def master_file(mac: str) -> bytes:
    """``<mac>.cfg``: the per-phone master file, naming ``<mac>-rps.cfg`` only."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
        "<!-- rps-service: the configuration file below sends this phone to its"
        " provisioning server -->",
        f'<APPLICATION APP_FILE_PATH="" CONFIG_FILES="{mac.lower()}{SETTINGS_SUFFIX}"'
        ' MISC_FILES="" LOG_FILE_DIRECTORY="" OVERRIDES_DIRECTORY="" CONTACTS_DIRECTORY=""'
        ' LICENSE_DIRECTORY="" USER_PROFILES_DIRECTORY="" CALL_LISTS_DIRECTORY=""/>',
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def device_file(prov_url: str, user: str, password: str) -> bytes:
    """``<mac>-rps.cfg``: ``device.prov.*`` pointing the phone at ``prov_url``, escaped."""
    params = [("device.set", "1")]
    server_type = _SERVER_TYPES.get(urlsplit(prov_url).scheme.lower())
    if server_type:
        params += [("device.prov.serverType.set", "1"), ("device.prov.serverType", server_type)]
    params += [
        ("device.prov.serverName.set", "1"), ("device.prov.serverName", prov_url),
        ("device.prov.user.set", "1"), ("device.prov.user", user),
        ("device.prov.password.set", "1"), ("device.prov.password", password),
        ("device.dhcp.bootSrvUseOpt.set", "1"), ("device.dhcp.bootSrvUseOpt", "Static"),
    ]
    attributes = "\n".join(f'    {name}="{_attribute(value)}"' for name, value in params)
    lines = [
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
        "<polycomConfig>",
        f"  <device\n{attributes}/>",
        "</polycomConfig>",
        "",
    ]
    return "\n".join(lines).encode("utf-8")
