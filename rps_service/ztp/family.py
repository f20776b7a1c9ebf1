"""A phone family's side of ``/ztprov/``: which file is a device's, and what it gets.

Phones of different vendors ask for different file names (``snomD785-<MAC>.htm``,
``<mac>.cfg``, ...) and read different formats. A :class:`PhoneFamily` states that for one
family; the listener (:mod:`rps_service.ztp.app`) does everything else the same way for all
(authentication, throttling, logging, the fetch on the device row). The vendor manifest,
:mod:`rps_service.vendors`, gives each provider the family of its phones.
"""

from __future__ import annotations

import abc
import re
from typing import ClassVar

from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.useragent import UserAgent, parse_user_agent

_HEX12 = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{12}(?![0-9A-Fa-f])")


def mac_in(name: str, digits: bool = False) -> str | None:
    """The first MAC-like token of a file name, upper case: 12 hex digits, not all decimal
    (a build number is not a MAC) unless ``digits`` (a phone whose MAC happens to be all
    decimal, e.g. Yealink's ``001565000042``)."""
    for token in _HEX12.findall(name):
        if digits or not token.isdigit():
            return str(token).upper()
    return None


class PhoneFamily(abc.ABC):
    """What one family of phones asks ``/ztprov/`` for, and the file that points it on."""

    #: The family's name (a vendor's phones in docs and the contract tests).
    name: ClassVar[str]
    #: The settings file's media type.
    content_type: ClassVar[str] = "text/plain"

    @abc.abstractmethod
    def file_mac(self, name: str) -> str | None:
        """The MAC (12 upper-case hex digits) a file name asks for, when the name is a
        device's settings file of this family; None for anything else (the model file,
        firmware, probes), which is answered 404 once the phone is authenticated."""

    def serves(self, name: str, mac: str) -> bool:
        """Whether ``name`` is the settings file of the device ``mac`` (URL-key vendors
        may ask for a file without a MAC: override for them)."""
        return self.file_mac(name) == mac

    @abc.abstractmethod
    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        """The settings file: the tenant's provisioning URL and credentials, in the family's
        own format, every value escaped for it."""

    def render_file(self, name: str, provisioning: ServerProvisioning, device: Device,
                    user_agent: str | None) -> bytes:
        """The body of ``name``, one of the device's files (``serves`` accepted it), for the
        phone asking (its User-Agent as sent). One file in one format is :meth:`render`;
        a family whose phones fetch several files (Poly: a master file naming a second
        one) or whose models read different formats (Gigaset) overrides this."""
        return self.render(provisioning, device)

    def parse_user_agent(self, header: str | None) -> UserAgent:
        """Model, firmware and MAC from the family's User-Agent (never raises)."""
        return parse_user_agent(header)

    @abc.abstractmethod
    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        """The file name and User-Agent a freshly reset phone of the family sends first
        (for tests and the documentation)."""
