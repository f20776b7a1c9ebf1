"""The vendor manifest: one line per vendor, checked when it is imported."""

from __future__ import annotations

import pytest

from rps_service.providers.snom import SnomProvider
from rps_service.sandbox.registry import EMULATORS, _emulator
from rps_service.vendors import FAMILIES, PROVIDERS, VENDORS, Vendor, _manifest, family_of
from rps_service.ztp.snom import SnomFamily


def test_every_vendor_has_its_provider_emulator_and_family() -> None:
    assert list(PROVIDERS) == list(VENDORS) == [cls.name for cls in EMULATORS]
    assert len(VENDORS) == 13
    for name, vendor in VENDORS.items():
        assert vendor.provider.name == name
        assert family_of(name) is vendor.family
        if vendor.family is not None:
            assert FAMILIES[vendor.family.name] is vendor.family
    assert family_of("grandstream") is None  # its portal sends phones to the PBX itself
    assert family_of("nope") is None


def test_a_vendor_listed_twice_stops_the_import() -> None:
    snom = Vendor(SnomProvider, SnomFamily(), "sraps:SrapsEmulator")
    with pytest.raises(ImportError, match="'snom' is listed twice"):
        _manifest(snom, snom)


@pytest.mark.parametrize("spec", ["sraps.SrapsEmulator", "sraps", "Sraps:SrapsEmulator"])
def test_an_emulator_not_written_module_class_stops_the_import(spec: str) -> None:
    with pytest.raises(ImportError, match="not module:Class"):
        _manifest(Vendor(SnomProvider, SnomFamily(), spec))


@pytest.mark.parametrize(("spec", "why"), [
    ("sraps:SrapEmulator", "not an Emulator"),          # misspelt class
    ("state:SandboxState", "not an Emulator"),          # not an emulator at all
    ("yealink:YealinkEmulator", "emulates 'yealink'"),  # another vendor's
])
def test_an_emulator_that_is_not_the_vendors_stops_the_sandbox(spec: str, why: str) -> None:
    with pytest.raises(ImportError, match=why):
        _emulator("snom", spec)


def test_a_missing_emulator_module_stops_the_sandbox() -> None:
    with pytest.raises(ModuleNotFoundError):
        _emulator("snom", "no_such_module:SrapsEmulator")
