"""Every vendor emulator the sandbox serves (one line per vendor, as in the providers')."""

from __future__ import annotations

from .emulator import Emulator
from .grandstream import GrandstreamEmulator
from .sraps import SrapsEmulator
from .yealink_rps import YealinkRpsEmulator
from .yealink_xmlrpc import YealinkXmlrpcEmulator

EMULATORS: tuple[type[Emulator], ...] = (
    SrapsEmulator,
    GrandstreamEmulator,
    YealinkXmlrpcEmulator,
    YealinkRpsEmulator,
)
