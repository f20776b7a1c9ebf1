"""A provider written for the tests: records every call, fails as scripted."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping

from pydantic import SecretStr

from rps_service.access import AccessMode
from rps_service.providers.protocol import CheckResult, Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import ProviderSettings


class FakeSettings(ProviderSettings):
    """The test provider takes a key id and secret, like SRAPS."""

    credential_keys = ("access_key_id", "access_key_secret")
    access_key_id: str = ""
    access_key_secret: SecretStr = SecretStr("")


class ScriptedProvider:
    """Acts like a vendor: holds registrations; ``script[mac]`` lists failures to raise
    (a ProviderError, or None for success) before behaving normally."""

    name = "fake"
    access = AccessMode.CREDENTIALS
    settings_class = FakeSettings
    can_list = False
    can_lookup = True  # reconcile looks devices up one by one
    supports_settings = True

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, str]] = []
        self.registered: dict[str, Device] = {}
        self.script: dict[str, list[ProviderError | None]] = defaultdict(list)
        self.in_flight: set[str] = set()
        self.overlaps = 0  # calls for a device while another for it was running
        self.gate: asyncio.Event | None = None  # when set, calls wait for it

    async def device_url(self, server: int, url_key: str | None = None) -> str:
        return f"https://pbx.test/ztprov/{server}/"

    async def event_problem(self, action: str, server: int | None,
                            fields: Mapping[str, object]) -> tuple[str, str] | None:
        return None

    async def _step(self, op: str, device: Device) -> None:
        if device.mac in self.in_flight:
            self.overlaps += 1
        self.in_flight.add(device.mac)
        try:
            self.calls.append((op, device.mac))
            if self.gate is not None:
                await self.gate.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.script[device.mac]:
                failure = self.script[device.mac].pop(0)
                if failure is not None:
                    raise failure
        finally:
            self.in_flight.discard(device.mac)

    async def register(self, device: Device) -> None:
        await self._step("register", device)
        self.registered[device.mac] = device

    async def deregister(self, device: Device) -> None:
        await self._step("deregister", device)
        self.registered.pop(device.mac, None)

    async def lookup(self, device: Device) -> VendorRecord | None:
        found = self.registered.get(device.mac)
        return VendorRecord(found.mac, found.url) if found else None

    def list_devices(self, server: int) -> AsyncIterator[VendorRecord] | None:
        return None

    async def check_credentials(self, server: int) -> CheckResult:
        return CheckResult(True, f"fake provider accepts server {server}")

    async def close(self) -> None:
        return None


def transient(message: str = "503: Service Unavailable", retry_after: float | None = None
              ) -> ProviderError:
    return ProviderError(message, Failure.TRANSIENT, status=503, retry_after=retry_after)


def permanent(message: str = "403: Forbidden") -> ProviderError:
    return ProviderError(message, Failure.PERMANENT, status=403)
