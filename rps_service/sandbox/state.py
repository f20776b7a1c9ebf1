"""The sandbox's in-memory world: companies, API keys, endpoints, settings, switches, counters.

Seeded world (deterministic, the same on every start):

=============  ==============  ===============  ================  ========
company id     company name    key id           secret            role
=============  ==============  ===============  ================  ========
``1001``       ``demo``        ``demo-key``     ``demo-secret``   ``admin``
``1001``       ``demo``        ``norole-key``   ``norole-secret`` ``None``
``2002``       ``other``       ``other-key``    ``other-secret``  ``admin``
=============  ==============  ===============  ================  ========

Company ``2002`` owns the endpoint ``000413999999`` (:data:`TAKEN_MAC`), so that MAC is
"taken" for everybody else. These are fake demo keys; printing them is fine.

The settings catalogue has ``settings_count`` entries (1200 by default). The four settings a
client needs sit past the first page of 1000 (indices 1010, 1100, 1101, 1150; in a smaller
catalogue, the last four places), the ``global`` ``setting_server`` trap first:

* :data:`GLOBAL_SETTING_SERVER_UUID` -- ``setting_server`` in section ``global`` (refused),
* :data:`HTTP_CLIENT_USER_UUID`, :data:`HTTP_CLIENT_PASS_UUID` -- section ``phone-settings``,
* :data:`SETTING_SERVER_UUID` -- ``setting_server`` in section ``phone-settings``.

Every uuid is ``uuid5(SETTINGS_NAMESPACE, "<section>/<param_name>")``, so it does not depend on
the catalogue size.

A state object holds asyncio events for ``paused``/``hang``: use one state per event loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
import uuid
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .emulator import Emulator

SETTINGS_NAMESPACE = uuid.UUID("5b0c2f64-0d1e-4c5e-9a51-5a4d5b0a5a11")
PHONE_SECTION = "phone-settings"

DEMO_COMPANY_ID = "1001"
DEMO_COMPANY_NAME = "demo"
DEMO_KEY_ID = "demo-key"
DEMO_SECRET = "demo-secret"  # noqa: S105 - a published fake demo key
NOROLE_KEY_ID = "norole-key"
NOROLE_SECRET = "norole-secret"  # noqa: S105 - a published fake demo key
OTHER_COMPANY_ID = "2002"
OTHER_COMPANY_NAME = "other"
OTHER_KEY_ID = "other-key"
OTHER_SECRET = "other-secret"  # noqa: S105 - a published fake demo key
ADMIN_ROLE = "admin"
TAKEN_MAC = "000413999999"

DEFAULT_SETTINGS_COUNT = 1200
MAX_RECORDS = 10_000
NONCE_WINDOW_SECONDS = 120  # nonces older than twice the ±60 s skew can never pass again


def setting_uuid(param_name: str, section: str) -> str:
    """The deterministic uuid of a catalogue entry."""
    return str(uuid.uuid5(SETTINGS_NAMESPACE, f"{section}/{param_name}"))


SETTING_SERVER_UUID = setting_uuid("setting_server", PHONE_SECTION)
GLOBAL_SETTING_SERVER_UUID = setting_uuid("setting_server", "global")
HTTP_CLIENT_USER_UUID = setting_uuid("http_client_user", PHONE_SECTION)
HTTP_CLIENT_PASS_UUID = setting_uuid("http_client_pass", PHONE_SECTION)

# (index in a catalogue of >= 1151 entries, param_name, section), in catalogue order.
_IMPORTANT: tuple[tuple[int, str, str], ...] = (
    (1010, "setting_server", "global"),
    (1100, "http_client_user", PHONE_SECTION),
    (1101, "http_client_pass", PHONE_SECTION),
    (1150, "setting_server", PHONE_SECTION),
)
_FILLER_NAMES = ("language", "timezone", "dkey_menu", "ntp_server", "user_realname", "fkey")
_FILLER_SECTIONS = (PHONE_SECTION, "functionKeys", "global", "tbook")


@dataclass(frozen=True)
class Setting:
    """One entry of the settings catalogue."""

    uuid: str
    param_name: str
    section: str

    def to_json(self) -> dict[str, Any]:
        """The entry as ``GET settings/`` lists it."""
        return {
            "uuid": self.uuid,
            "param_name": self.param_name,
            "section": self.section,
            "type": "string",
        }


@dataclass
class ApiKey:
    """An access key: Hawk id and secret, the company it belongs to, and its Role."""

    id: str
    secret: str = field(repr=False)
    company_id: str
    role: str | None


@dataclass
class Company:
    """An SRAPS account and its endpoints (MAC -> stored endpoint JSON)."""

    id: str
    name: str
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRecord:
    """One request seen under ``/api/v1/``."""

    method: str
    path: str
    status: int
    route: str
    at: float = 0.0  # arrival, time.monotonic()


#: Settings a real catalogue has and tests push as extra settings (docs/fleet.md).
EXTRA_SETTINGS = ("firmware_status", "update_policy", "language")


def build_catalogue(count: int, credential_settings: bool = True) -> list[Setting]:
    """The settings catalogue of ``count`` entries (at least 4), important ones past page 1.

    ``credential_settings=False`` leaves ``http_client_user``/``http_client_pass`` out (a
    catalogue that cannot carry the phone's credentials: the daemon must refuse to go on).
    """
    if count < len(_IMPORTANT):
        raise ValueError(f"settings_count must be at least {len(_IMPORTANT)}")
    fits = count > _IMPORTANT[-1][0]
    important = [entry for entry in _IMPORTANT
                 if credential_settings or not entry[1].startswith("http_client")]
    places = {
        (idx if fits else count - len(_IMPORTANT) + n): (name, section)
        for n, (idx, name, section) in enumerate(important)
    }
    for n, name in enumerate(EXTRA_SETTINGS):  # early in the catalogue, page 1
        places.setdefault(5 + n, (name, PHONE_SECTION))
    catalogue: list[Setting] = []
    for i in range(count):
        name, section = places.get(i) or (
            f"{_FILLER_NAMES[i % len(_FILLER_NAMES)]}_{i}",
            _FILLER_SECTIONS[i % len(_FILLER_SECTIONS)],
        )
        catalogue.append(Setting(setting_uuid(name, section), name, section))
    return catalogue


class SrapsWorld(Protocol):
    """One service of the SRAPS family as its handlers and the Hawk check see it: its
    paths, keys, companies and catalogue (SRAPS's own world is :class:`SandboxState`)."""

    @property
    def api_path(self) -> str:
        """Where the service's API lives on the sandbox (``/api/v1``)."""

    @property
    def phone_section(self) -> str | None:
        """The catalogue section endpoints may use (None: entries carry no section)."""

    @property
    def url_uuid(self) -> str:
        """The catalogue uuid of the setting that holds the phone's URL."""

    @property
    def password_uuid(self) -> str | None:
        """The uuid of the phone's HTTP password setting, if the service carries one."""

    @property
    def role_field(self) -> bool:
        """Whether token objects show the key's Role."""

    @property
    def clock_offset(self) -> float:
        """Seconds added to the server clock for Hawk."""

    @property
    def stale_challenge(self) -> bool:
        """Whether a stale Hawk timestamp is answered with ts/tsm."""

    @property
    def companies(self) -> dict[str, Company]:
        """Companies by id."""

    @property
    def keys(self) -> dict[str, ApiKey]:
        """API keys by id."""

    @property
    def settings(self) -> list[Setting]:
        """The catalogue, in order."""

    @property
    def settings_by_uuid(self) -> dict[str, Setting]:
        """The catalogue by uuid."""

    @property
    def history(self) -> defaultdict[str, list[tuple[str, str | None]]]:
        """Per MAC, each accepted write in order (shared by every emulator)."""

    @property
    def received_passwords(self) -> set[str]:
        """Every phone password received (the log-leak check reads them)."""

    @property
    def writes(self) -> defaultdict[str, list[dict[str, Any]]]:
        """Per MAC, every accepted PUT body."""

    def endpoints(self, company_id: str) -> dict[str, dict[str, Any]]:
        """The endpoints of a company, MAC -> endpoint JSON."""

    def owner_of(self, mac: str) -> str | None:
        """The id of the company holding ``mac``, if any."""

    def credentials(self, key_id: str) -> dict[str, str]:
        """mohawk credentials for a key id; raises LookupError for unknown ids."""

    def seen_nonce(self, key_id: str, nonce: str, ts: str) -> bool:
        """Record a nonce; True when it was already used."""


class SandboxState:
    """Everything the sandbox knows; tests running it in-process may read and change it.

    Switches (also settable through ``POST /_sandbox/faults``): ``latency`` (seconds before
    every ``/api/v1/`` answer), ``error_rate`` (fraction answered 503), ``rate_limit_rate``
    (fraction answered 429), ``retry_after`` (seconds, the 429's ``Retry-After``),
    ``fail_next`` (statuses for the next requests, in order), ``paused`` and ``hang`` (hold
    requests until cleared), ``clock_offset`` (seconds added to the server clock for Hawk).
    """

    # SRAPS's own place in the SRAPS family (:class:`SrapsWorld`).
    api_path = "/api/v1"
    phone_section: str | None = PHONE_SECTION
    url_uuid = SETTING_SERVER_UUID
    password_uuid: str | None = HTTP_CLIENT_PASS_UUID

    def __init__(
        self,
        settings_count: int = DEFAULT_SETTINGS_COUNT,
        *,
        seed: int = 0,
        seed_world: bool = True,
        credential_settings: bool = True,
    ) -> None:
        self.companies: dict[str, Company] = {}
        self.keys: dict[str, ApiKey] = {}
        self.settings: list[Setting] = build_catalogue(settings_count, credential_settings)
        self.settings_by_uuid: dict[str, Setting] = {s.uuid: s for s in self.settings}
        self.rng = random.Random(seed)
        self.latency = 0.0
        self.error_rate = 0.0
        self.rate_limit_rate = 0.0
        self.retry_after = 1
        self.fail_next: list[int] = []
        self.clock_offset = 0.0
        # A stale Hawk timestamp is answered with the server's ts/tsm (False: only the
        # Date header tells the server's time, as some Hawk servers do).
        self.stale_challenge = True
        # The token object shows the key's Role (False: the field is absent).
        self.role_field = True
        # Requests per second per account before the vendor throttles (0: never).
        self.throttle_rate = 0.0
        self.throttled = 0  # requests answered as throttled
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # tokens, at
        self.emulators: dict[str, Emulator] = {}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.total = 0
        self.arrivals = 0  # requests that reached the sandbox, answered or not yet
        self.records: deque[RequestRecord] = deque(maxlen=MAX_RECORDS)
        self.held = 0  # requests currently waiting on paused/hang
        # Per MAC, each accepted write in order: ("PUT", setting_server value) or
        # ("DELETE", None); and how often two writes for one MAC overlapped.
        self.history: defaultdict[str, list[tuple[str, str | None]]] = defaultdict(list)
        self.in_flight: set[str] = set()
        self.overlaps = 0
        self.received_passwords: set[str] = set()  # every http_client_pass value PUT
        # Per MAC, every accepted PUT body in order (the write-ahead tests read passwords).
        self.writes: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        self._nonces: dict[tuple[str, str, str], int] = {}
        self._running = asyncio.Event()  # set = not paused
        self._running.set()
        self._unhung = asyncio.Event()  # set = not hanging
        self._unhung.set()
        self._held_changed = asyncio.Event()
        if seed_world:
            self._seed()

    def _seed(self) -> None:
        self.add_company(DEMO_COMPANY_ID, DEMO_COMPANY_NAME)
        self.add_company(OTHER_COMPANY_ID, OTHER_COMPANY_NAME)
        self.add_key(DEMO_KEY_ID, DEMO_SECRET, DEMO_COMPANY_ID, ADMIN_ROLE)
        self.add_key(NOROLE_KEY_ID, NOROLE_SECRET, DEMO_COMPANY_ID, None)
        self.add_key(OTHER_KEY_ID, OTHER_SECRET, OTHER_COMPANY_ID, ADMIN_ROLE)
        self.companies[OTHER_COMPANY_ID].endpoints[TAKEN_MAC] = {
            "mac": TAKEN_MAC,
            "name": None,
            "description": None,
            "autoprovisioning_enabled": True,
            "settings_manager": {},
        }

    # -- world ------------------------------------------------------------------------

    def add_company(self, company_id: str, name: str | None = None) -> Company:
        """Add a company (or return the existing one with that id)."""
        if company_id not in self.companies:
            self.companies[company_id] = Company(company_id, name or company_id)
        return self.companies[company_id]

    def add_key(self, key_id: str, secret: str, company_id: str, role: str | None) -> ApiKey:
        """Add or replace an access key; its company is created when missing."""
        self.add_company(company_id)
        key = ApiKey(key_id, secret, company_id, role)
        self.keys[key_id] = key
        return key

    def endpoints(self, company_id: str) -> dict[str, dict[str, Any]]:
        """The endpoints of a company, MAC -> endpoint JSON."""
        return self.companies[company_id].endpoints

    def owner_of(self, mac: str) -> str | None:
        """The id of the company holding ``mac``, if any."""
        for company in self.companies.values():
            if mac in company.endpoints:
                return company.id
        return None

    def setting(self, param_name: str, section: str) -> Setting:
        """The catalogue entry with that name and section (KeyError when absent)."""
        found = self.settings_by_uuid.get(setting_uuid(param_name, section))
        if found is None:
            raise KeyError(f"{section}/{param_name}")
        return found

    # -- Hawk -------------------------------------------------------------------------

    def credentials(self, key_id: str) -> dict[str, str]:
        """mohawk credentials for a key id; raises LookupError for unknown ids."""
        key = self.keys[key_id]
        return {"id": key.id, "key": key.secret, "algorithm": "sha256"}

    def now(self) -> float:
        """The server clock as Hawk sees it (wall clock plus ``clock_offset``)."""
        return time.time() + self.clock_offset

    def http_date(self) -> str:
        """The server clock as a ``Date`` header."""
        return email.utils.formatdate(self.now(), usegmt=True)

    def seen_nonce(self, key_id: str, nonce: str, ts: str) -> bool:
        """Record a nonce; True when this (id, nonce, ts) was already used (a replay)."""
        entry = (key_id, nonce, ts)
        if entry in self._nonces:
            return True
        if len(self._nonces) >= MAX_RECORDS:
            self._prune_nonces()
        try:
            self._nonces[entry] = int(ts)
        except ValueError:
            self._nonces[entry] = int(self.now())
        return False

    def _prune_nonces(self) -> None:
        oldest = self.now() - NONCE_WINDOW_SECONDS
        self._nonces = {k: ts for k, ts in self._nonces.items() if ts >= oldest}

    # -- switches ---------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Hold new ``/api/v1/`` requests until set back to False."""
        return not self._running.is_set()

    @paused.setter
    def paused(self, value: bool) -> None:
        if value:
            self._running.clear()
        else:
            self._running.set()

    @property
    def hang(self) -> bool:
        """Never answer ``/api/v1/`` requests while True (for client timeout tests)."""
        return not self._unhung.is_set()

    @hang.setter
    def hang(self, value: bool) -> None:
        if value:
            self._unhung.clear()
        else:
            self._unhung.set()

    async def hold(self) -> None:
        """Wait while ``hang`` or ``paused`` is set (called for every vendor request)."""
        if self._running.is_set() and self._unhung.is_set():
            return
        self._change_held(+1)
        try:
            while not (self._running.is_set() and self._unhung.is_set()):
                await self._unhung.wait()
                await self._running.wait()
        finally:
            self._change_held(-1)

    def _change_held(self, delta: int) -> None:
        self.held += delta
        self._held_changed.set()

    async def wait_held(self, count: int) -> None:
        """Return once at least ``count`` requests are being held (no sleeping in tests)."""
        while self.held < count:
            self._held_changed.clear()
            await self._held_changed.wait()

    def release(self) -> None:
        """Clear ``paused`` and ``hang`` so held requests go on (used at shutdown)."""
        self.paused = False
        self.hang = False

    def switches(self) -> dict[str, Any]:
        """The fault switches as JSON."""
        return {
            "latency": self.latency,
            "error_rate": self.error_rate,
            "rate_limit_rate": self.rate_limit_rate,
            "retry_after": self.retry_after,
            "fail_next": list(self.fail_next),
            "paused": self.paused,
            "hang": self.hang,
            "clock_offset": self.clock_offset,
            "stale_challenge": self.stale_challenge,
            "role_field": self.role_field,
            "throttle_rate": self.throttle_rate,
        }

    def throttle(self, vendor: str, account: str) -> int | None:
        """Seconds to wait (a Retry-After) when ``account`` is over ``throttle_rate``, else
        None. A token bucket: bursts of up to ``throttle_rate``, refilled at that rate."""
        rate = self.throttle_rate
        if rate <= 0:
            return None
        now = time.monotonic()
        tokens, at = self._buckets.get((vendor, account), (rate, now))
        tokens = min(rate, tokens + (now - at) * rate)
        if tokens >= 1:
            self._buckets[(vendor, account)] = (tokens - 1, now)
            return None
        self._buckets[(vendor, account)] = (tokens, now)
        self.throttled += 1
        return max(1, math.ceil((1 - tokens) / rate))

    def next_fault(self) -> int | None:
        """The status to answer instead of serving this request, if any."""
        if self.fail_next:
            return self.fail_next.pop(0)
        if self.rate_limit_rate and self.rng.random() < self.rate_limit_rate:
            return 429
        if self.error_rate and self.rng.random() < self.error_rate:
            return 503
        return None

    # -- counters ---------------------------------------------------------------------

    def record(self, method: str, path: str, route: str, status: int, at: float = 0.0) -> None:
        """Count one vendor request and remember it (the last 10 000)."""
        self.counts[(method, route)] += 1
        self.total += 1
        self.records.append(RequestRecord(method, path, status, route, at))

    def reset_counts(self) -> None:
        """Forget counts and request records."""
        self.counts.clear()
        self.total = 0
        self.throttled = 0
        self.records.clear()

    def snapshot(self) -> dict[str, Any]:
        """Endpoints per company, keys (without secrets), counts and switches, as JSON."""
        return {
            "companies": {
                c.id: {"name": c.name, "endpoints": dict(c.endpoints)}
                for c in self.companies.values()
            },
            "keys": [
                {"id": k.id, "company": k.company_id, "role": k.role} for k in self.keys.values()
            ],
            "counts": {f"{m} {r}": n for (m, r), n in sorted(self.counts.items())},
            "total": self.total,
            "switches": self.switches(),
            "settings_count": len(self.settings),
            "held": self.held,
            "throttled": self.throttled,
            "overlaps": self.overlaps,
            "vendors": {name: e.snapshot() for name, e in self.emulators.items()
                        if e.snapshot()},
        }
