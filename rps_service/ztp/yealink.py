"""Yealink phones: ``<mac>.cfg`` answered in Yealink's CFG format.

TEMPORARY: a minimal family so that the Yealink RPS providers (``yealink-xmlrpc``,
``yealink-rps``) can be tested end to end on their own branch. The YMCS branch brings the
full family of the same name; when both are merged, that one replaces this file.

A Yealink sent here asks for its boot and common files (answered 404 after
authentication) and for ``<mac>.cfg`` (lower-case MAC): the file below, whose first line
must be ``#!version:1.0.0.1``, then ``key = value`` lines setting the phone's own
provisioning server and its credentials to the tenant's.
"""

from __future__ import annotations

import re

from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily

_SETTINGS_FILE = re.compile(r"([0-9a-f]{12}|[0-9A-F]{12})\.cfg")
_LINE_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def cfg_value(value: str) -> str:
    """``value`` on one CFG line (the format has no escapes: drop line breaks)."""
    return _LINE_BREAKS.sub("", value)


class YealinkFamily(PhoneFamily):
    """Yealink desk and DECT phones."""

    name = "yealink"
    content_type = "text/plain"

    def file_mac(self, name: str) -> str | None:
        match = _SETTINGS_FILE.fullmatch(name)
        return match.group(1).upper() if match else None

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        lines = [
            "#!version:1.0.0.1",
            f"static.auto_provision.server.url = {cfg_value(provisioning.prov_url)}",
            f"static.auto_provision.server.username = {cfg_value(provisioning.http_user)}",
            f"static.auto_provision.server.password = {cfg_value(provisioning.http_password)}",
            "",
        ]
        return "\n".join(lines).encode("utf-8")

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        octets = ":".join(mac.lower()[i:i + 2] for i in range(0, 12, 2))
        return f"{mac.lower()}.cfg", f"Yealink SIP-{model} 108.86.0.20 {octets}"
