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

EMULATORS: tuple[type[Emulator], ...] = (
    SrapsEmulator,
    YealinkEmulator,
    GrandstreamEmulator,
    SnomXmlRpcEmulator,
    PanasonicEmulator,
    AuerswaldEmulator,
    PolyEmulator,
    GrapeEmulator,
    GigasetEmulator,
    FanvilEmulator,
)
