"""Every vendor emulator the sandbox serves: the ones the vendor manifest names.

Imported here, not by the manifest, so the daemon never loads the sandbox. An emulator that
cannot be found, or that emulates another vendor than the one it is listed for, stops the
import with the manifest line to fix.
"""

from __future__ import annotations

import importlib

from rps_service.vendors import VENDORS

from .emulator import Emulator


def _emulator(vendor: str, spec: str) -> type[Emulator]:
    module, _, name = spec.partition(":")
    cls = getattr(importlib.import_module(f"{__package__}.{module}"), name, None)
    if not (isinstance(cls, type) and issubclass(cls, Emulator)):
        raise ImportError(f"vendor manifest: {vendor!r} names emulator {spec!r}, "
                          f"which is not an Emulator in rps_service.sandbox")
    if cls.name != vendor:
        raise ImportError(f"vendor manifest: {vendor!r} names emulator {spec!r}, "
                          f"which emulates {cls.name!r}")
    return cls


EMULATORS: tuple[type[Emulator], ...] = tuple(
    _emulator(name, vendor.emulator) for name, vendor in VENDORS.items())
