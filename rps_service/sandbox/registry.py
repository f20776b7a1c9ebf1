"""Every vendor emulator the sandbox serves (one line per vendor, as in the providers')."""

from __future__ import annotations

from .auerswald import AuerswaldEmulator
from .emulator import Emulator
from .fanvil import FanvilEmulator
from .gigaset import GigasetEmulator
from .grandstream import GrandstreamEmulator
from .grape import GrapeEmulator
from .panasonic import PanasonicEmulator
from .poly import PolyEmulator
from .snom_xmlrpc import SnomXmlRpcEmulator
from .sraps import SrapsEmulator
from .yealink import YealinkEmulator
from .yealink_rps import YealinkRpsEmulator
from .yealink_xmlrpc import YealinkXmlrpcEmulator

EMULATORS: tuple[type[Emulator], ...] = (
    SrapsEmulator,
    YealinkEmulator,
    PolyEmulator,
    GrandstreamEmulator,
    FanvilEmulator,
    SnomXmlRpcEmulator,
    GigasetEmulator,
    GrapeEmulator,
    YealinkRpsEmulator,
    PanasonicEmulator,
    YealinkXmlrpcEmulator,
    AuerswaldEmulator,
)
