"""Every vendor emulator the sandbox serves (one line per vendor, as in the providers')."""

from __future__ import annotations

from .emulator import Emulator
from .sraps import SrapsEmulator
from .yealink import YealinkEmulator

EMULATORS: tuple[type[Emulator], ...] = (
    SrapsEmulator,
    YealinkEmulator,
)
