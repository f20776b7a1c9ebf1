"""The Gigaset GRAPE emulator: the SRAPS family's API at ``/gigaset-grape/api/v1/``.

GRAPE speaks SRAPS's protocol, so this is the SRAPS emulator (:mod:`.sraps`, handlers in
:mod:`.api`, Hawk in :mod:`.hawk`) over a world of its own (:class:`GrapeWorld`): its own
keys, companies, endpoints and settings catalogue, under its own path. What differs, as
far as public clients show GRAPE:

* the catalogue's URL setting is ``ProvisioningServer`` (placed past the first page of
  1000, so a client must follow ``Link: rel="next"``); entries carry ``uuid`` and
  ``param_name`` but no ``section`` (a client must not need one);
* no setting carries the phone's HTTP login: phones get a URL only;
* token objects show no ``role`` (whether GRAPE's do is unknown): a key without a Role is
  refused only when it writes (403), as SRAPS does.

Seeded (fake demo values): company ``3001`` with ``grape-demo-key``/``grape-demo-secret``
(Role admin) and ``grape-norole-key``/``grape-norole-secret`` (no Role); company ``3002``
with ``grape-other-key``/``grape-other-secret``, which owns :data:`FOREIGN_MAC`.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from .emulator import Held
from .sraps import SrapsEmulator
from .state import (
    ADMIN_ROLE,
    SETTINGS_NAMESPACE,
    ApiKey,
    Company,
    SandboxState,
    Setting,
    SrapsWorld,
)

API_PATH = "/gigaset-grape/api/v1"
DEMO_COMPANY_ID = "3001"
DEMO_KEY_ID = "grape-demo-key"
DEMO_SECRET = "grape-demo-secret"  # noqa: S105 - a published fake demo key
NOROLE_KEY_ID = "grape-norole-key"
NOROLE_SECRET = "grape-norole-secret"  # noqa: S105 - a published fake demo key
OTHER_COMPANY_ID = "3002"
OTHER_KEY_ID = "grape-other-key"
OTHER_SECRET = "grape-other-secret"  # noqa: S105 - a published fake demo key
#: Gigaset's OUI; another GRAPE account holds this MAC.
FOREIGN_MAC = "7C2F80999999"
URL_SETTING = "ProvisioningServer"
CATALOGUE_SIZE = 1100
_URL_SETTING_INDEX = 1050  # past the first page of 1000
EXTRA_SETTINGS = ("language", "update_policy")  # early, page 1
_FILLER = ("Language", "TimeZone", "NtpServer", "DisplayName", "FunctionKey")


def grape_uuid(param_name: str) -> str:
    """The deterministic (dashless, as GRAPE's look) uuid of a catalogue entry."""
    return uuid.uuid5(SETTINGS_NAMESPACE, f"grape/{param_name}").hex


URL_SETTING_UUID = grape_uuid(URL_SETTING)


@dataclass(frozen=True)
class GrapeSetting(Setting):
    """A catalogue entry as GRAPE's public clients read it: no section."""

    def to_json(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "param_name": self.param_name, "type": "string"}


def build_catalogue(count: int = CATALOGUE_SIZE) -> list[Setting]:
    """``count`` entries; ``ProvisioningServer`` past the first page of 1000."""
    places = {_URL_SETTING_INDEX if count > _URL_SETTING_INDEX else count - 1: URL_SETTING}
    for n, name in enumerate(EXTRA_SETTINGS):
        places.setdefault(3 + n, name)
    names = [places.get(i) or f"{_FILLER[i % len(_FILLER)]}_{i}" for i in range(count)]
    return [GrapeSetting(grape_uuid(name), name, "") for name in names]


class GrapeWorld:
    """GRAPE's keys, companies and catalogue (a :class:`~.state.SrapsWorld`); the clock,
    the nonces and the write history are the sandbox's (``state``)."""

    api_path = API_PATH
    phone_section: str | None = None
    url_uuid = URL_SETTING_UUID
    password_uuid: str | None = None

    def __init__(self, state: SandboxState) -> None:
        self._state = state
        # Whether GRAPE's token objects show a Role is unknown: the emulator shows none.
        self.role_field = False
        self.companies: dict[str, Company] = {}
        self.keys: dict[str, ApiKey] = {}
        self.settings = build_catalogue()
        self.settings_by_uuid = {s.uuid: s for s in self.settings}
        for cid, name in ((DEMO_COMPANY_ID, "demo"), (OTHER_COMPANY_ID, "other")):
            self.companies[cid] = Company(cid, name)
        for key in (ApiKey(DEMO_KEY_ID, DEMO_SECRET, DEMO_COMPANY_ID, ADMIN_ROLE),
                    ApiKey(NOROLE_KEY_ID, NOROLE_SECRET, DEMO_COMPANY_ID, None),
                    ApiKey(OTHER_KEY_ID, OTHER_SECRET, OTHER_COMPANY_ID, ADMIN_ROLE)):
            self.keys[key.id] = key
        mac = FOREIGN_MAC.lower()
        self.companies[OTHER_COMPANY_ID].endpoints[mac] = {
            "mac": mac, "name": None, "description": None, "provisioning_profile": None,
            "autoprovisioning_enabled": True, "settings_manager": {}}

    @property
    def clock_offset(self) -> float:
        return self._state.clock_offset

    @property
    def stale_challenge(self) -> bool:
        return self._state.stale_challenge

    @property
    def history(self) -> defaultdict[str, list[tuple[str, str | None]]]:
        return self._state.history

    @property
    def received_passwords(self) -> set[str]:
        return self._state.received_passwords

    @property
    def writes(self) -> defaultdict[str, list[dict[str, Any]]]:
        return self._state.writes

    def endpoints(self, company_id: str) -> dict[str, dict[str, Any]]:
        return self.companies[company_id].endpoints

    def owner_of(self, mac: str) -> str | None:
        return next((c.id for c in self.companies.values() if mac in c.endpoints), None)

    def credentials(self, key_id: str) -> dict[str, str]:
        key = self.keys[key_id]
        return {"id": key.id, "key": key.secret, "algorithm": "sha256"}

    def seen_nonce(self, key_id: str, nonce: str, ts: str) -> bool:
        return self._state.seen_nonce(key_id, nonce, ts)


class GrapeEmulator(SrapsEmulator):
    """Gigaset GRAPE REST v1 (the SRAPS emulator over :class:`GrapeWorld`)."""

    name = "gigaset-grape"
    prefix = "/gigaset-grape"
    route_prefix = "gigaset-grape-"
    foreign_mac = FOREIGN_MAC

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.grape = GrapeWorld(state)

    @property
    def world(self) -> SrapsWorld:
        return self.grape

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"access_key_id": DEMO_KEY_ID, "access_key_secret": DEMO_SECRET}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"access_key_id": DEMO_KEY_ID, "access_key_secret": "not-the-secret"}

    def sample_mac(self, index: int) -> str:
        return f"7C2F8000{index:04X}"

    def holds(self, mac: str) -> Held | None:
        endpoint = self.grape.endpoints(DEMO_COMPANY_ID).get(mac.lower())
        if endpoint is None:
            return None
        entry = endpoint["settings_manager"].get(URL_SETTING_UUID)
        url = entry.get("value") if isinstance(entry, dict) else None
        return Held(url, extra={"endpoint": endpoint})

    def snapshot(self) -> dict[str, Any]:
        return {
            "companies": {c.id: {"name": c.name, "endpoints": dict(c.endpoints)}
                          for c in self.grape.companies.values()},
            "keys": [{"id": k.id, "company": k.company_id, "role": k.role}
                     for k in self.grape.keys.values()],
        }
