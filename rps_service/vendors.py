"""Every vendor in one manifest: its provider, its phones' family and its sandbox emulator.

Adding a vendor is its provider module (``providers/``), its emulator (``sandbox/``), its
phone family (``ztp/``, or none when the vendor's phones are not sent here for a file) and
one line in :data:`VENDORS` (docs/architecture.md). The order is the order of the sections
in documentation and of ``rps-service check-config``'s output.

The manifest is checked when it is imported: a name given twice, or an emulator that is not
written ``module:Class``, stops the import. The families are objects, not names, so a
misspelt family is a NameError here rather than a phone answered 404 at ``/ztprov/``. The
emulators are named, not imported: the daemon never loads the sandbox, which imports them
(:mod:`rps_service.sandbox.app`) and checks that each emulates the vendor it is listed for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from rps_service.providers.auerswald import AuerswaldProvider
from rps_service.providers.fanvil import FanvilProvider
from rps_service.providers.gigaset import GigasetProvider
from rps_service.providers.grandstream import GrandstreamProvider
from rps_service.providers.grape import GrapeProvider
from rps_service.providers.htek import HtekProvider
from rps_service.providers.panasonic import PanasonicProvider
from rps_service.providers.poly import PolyProvider
from rps_service.providers.protocol import CredentialSource, Provider, RequestObserver
from rps_service.providers.snom import SnomProvider
from rps_service.providers.snom_xmlrpc import SnomXmlRpcProvider
from rps_service.providers.vendor import ProviderContext, VendorProvider
from rps_service.providers.yealink import YealinkProvider
from rps_service.providers.yealink_rps import YealinkRpsProvider
from rps_service.providers.yealink_xmlrpc import YealinkXmlrpcProvider
from rps_service.ztp.auerswald import AuerswaldFamily
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.fanvil import FanvilFamily
from rps_service.ztp.gigaset import GigasetFamily
from rps_service.ztp.htek import HtekFamily
from rps_service.ztp.panasonic import PanasonicFamily
from rps_service.ztp.poly import PolyFamily
from rps_service.ztp.snom import SnomFamily
from rps_service.ztp.yealink import YealinkFamily

if TYPE_CHECKING:  # config reads the manifest: no import of config at run time
    from rps_service.config import Settings

_EMULATOR = re.compile(r"[a-z_]+:[A-Z]\w*")


@dataclass(frozen=True)
class Vendor:
    """One vendor: what the daemon calls, what its phones fetch, what the sandbox serves."""

    provider: type[VendorProvider]
    #: The phones' side at ``/ztprov/``; None: the vendor's phones get no file from us.
    family: PhoneFamily | None
    #: ``module:Class`` of its emulator in :mod:`rps_service.sandbox`.
    emulator: str

    @property
    def name(self) -> str:
        return self.provider.name


def _manifest(*vendors: Vendor) -> dict[str, Vendor]:
    manifest: dict[str, Vendor] = {}
    for vendor in vendors:
        if vendor.name in manifest:
            raise ImportError(f"vendor manifest: {vendor.name!r} is listed twice")
        if not _EMULATOR.fullmatch(vendor.emulator):
            raise ImportError(f"vendor manifest: {vendor.name!r} names its emulator "
                              f"{vendor.emulator!r}, not module:Class")
        manifest[vendor.name] = vendor
    return manifest


_SNOM, _YEALINK = SnomFamily(), YealinkFamily()

VENDORS: dict[str, Vendor] = _manifest(
    Vendor(SnomProvider, _SNOM, "sraps:SrapsEmulator"),
    Vendor(YealinkProvider, _YEALINK, "yealink:YealinkEmulator"),
    Vendor(PolyProvider, PolyFamily(), "poly:PolyEmulator"),
    Vendor(GrandstreamProvider, None, "grandstream:GrandstreamEmulator"),
    Vendor(FanvilProvider, FanvilFamily(), "fanvil:FanvilEmulator"),
    Vendor(SnomXmlRpcProvider, _SNOM, "snom_xmlrpc:SnomXmlRpcEmulator"),
    Vendor(GigasetProvider, GigasetFamily(), "gigaset:GigasetEmulator"),
    Vendor(GrapeProvider, _SNOM, "grape:GrapeEmulator"),
    Vendor(YealinkRpsProvider, _YEALINK, "yealink_rps:YealinkRpsEmulator"),
    Vendor(PanasonicProvider, PanasonicFamily(), "panasonic:PanasonicEmulator"),
    Vendor(YealinkXmlrpcProvider, _YEALINK, "yealink_xmlrpc:YealinkXmlrpcEmulator"),
    Vendor(AuerswaldProvider, AuerswaldFamily(), "auerswald:AuerswaldEmulator"),
    Vendor(HtekProvider, HtekFamily(), "htek:HtekEmulator"),
)

#: Every provider class by name: what rps.ini's sections, the API and the CLI follow.
PROVIDERS: dict[str, type[VendorProvider]] = {
    name: vendor.provider for name, vendor in VENDORS.items()}

#: Every phone family ``/ztprov/`` serves, by name.
FAMILIES: dict[str, PhoneFamily] = {
    vendor.family.name: vendor.family for vendor in VENDORS.values() if vendor.family}


def family_of(provider: str) -> PhoneFamily | None:
    """The phone family of ``provider``'s phones (None: unknown, or none is served)."""
    vendor = VENDORS.get(provider)
    return vendor.family if vendor else None


def build_providers(
    settings: Settings,
    creds: CredentialSource,
    transport: httpx.AsyncBaseTransport,
    *,
    observe: RequestObserver | None = None,
) -> dict[str, Provider]:
    """The enabled providers, ready to use; ``observe`` is told of every vendor request."""
    context = ProviderContext(mode=settings.general.mode, retry_cap=settings.general.retry_cap,
                              credentials=creds, transport=transport, observe=observe)
    return {
        name: cls(settings.providers[name], context)
        for name, cls in PROVIDERS.items()
        if settings.providers[name].enabled
    }
