"""Every vendor emulator the sandbox serves (one line per vendor, as in the providers')."""

from __future__ import annotations

from .emulator import Emulator
from .fanvil import FanvilEmulator
from .sraps import SrapsEmulator

EMULATORS: tuple[type[Emulator], ...] = (
    SrapsEmulator,
    FanvilEmulator,
)
