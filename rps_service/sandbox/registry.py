"""Every vendor emulator the sandbox serves (one line per vendor, as in the providers')."""

from __future__ import annotations

from .emulator import Emulator
from .grandstream import GrandstreamEmulator
from .sraps import SrapsEmulator
from .yealink import YealinkEmulator

EMULATORS: tuple[type[Emulator], ...] = (
    SrapsEmulator,
    YealinkEmulator,
    GrandstreamEmulator,
)
