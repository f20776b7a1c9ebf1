"""Every vendor emulator the sandbox serves (one line per vendor, as in the providers')."""

from __future__ import annotations

from .emulator import Emulator
from .gigaset import GigasetEmulator
from .grandstream import GrandstreamEmulator
from .grape import GrapeEmulator
from .sraps import SrapsEmulator

EMULATORS: tuple[type[Emulator], ...] = (
    SrapsEmulator,
    GrandstreamEmulator,
    GrapeEmulator,
    GigasetEmulator,
)
