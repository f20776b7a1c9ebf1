"""What crosses the HTTP API: events in, and the validation rules that guard the journal."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from rps_service.text import control_in, describe_char

_MAC_SEPARATORS = re.compile(r"[:\-.]")
_HEX12 = re.compile(r"[0-9A-Fa-f]{12}")

Action = Literal["add", "remove", "update"]
EVENT_STATES = ("pending", "running", "done", "failed", "superseded")
DEVICE_STATUSES = ("pending", "registered", "unregistered", "error")
MAX_BATCH = 1000
MAX_SETTINGS = 100  # extra vendor settings one event may carry
#: The optional details an event keeps in ``rps_events.payload``.
PAYLOAD_FIELDS = ("model", "name", "extension", "key", "sn", "mac_id", "settings")
#: The free-text fields of an event: refused when they hold a control character (text.py).
TEXT_FIELDS = ("model", "name", "extension", "key", "sn", "mac_id")


def normalize_mac(value: str) -> str:
    """``00:04:13:ab:cd:ef`` (or with ``-`` ``.``, any case) → ``000413ABCDEF``."""
    mac = _MAC_SEPARATORS.sub("", value.strip())
    # Match before upper-casing: some non-ASCII letters upper-case to hex digits.
    if not _HEX12.fullmatch(mac):
        raise ValueError("must be 12 hex digits, optionally separated by ':', '-' or '.'")
    return mac.upper()


def answer_mac(value: object) -> str:
    """A MAC as a vendor's answer gives it (any case, ``:`` ``-`` ``.`` between the digits)
    as 12 upper-case hex digits; '' when ``value`` is not one."""
    try:
        return normalize_mac(value) if isinstance(value, str) else ""
    except ValueError:
        return ""


class EventIn(BaseModel):
    """One event as the GUI posts it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    action: Action
    provider: str = Field(min_length=1, max_length=32)
    mac: str
    # None: the device's current server (update/remove always use it; add falls back to 1).
    server: int | None = Field(None, ge=1, le=2_147_483_647)
    model: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=255)
    extension: str | None = Field(None, max_length=64)
    key: str | None = Field(None, min_length=1, max_length=64)
    sn: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    mac_id: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9-]+$")
    settings: dict[str, str] | None = Field(None, max_length=MAX_SETTINGS)

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return normalize_mac(value)

    @field_validator(*TEXT_FIELDS, mode="before")
    @classmethod
    def _no_controls(cls, value: Any) -> Any:
        # These end up in rps.log, the GUI, the CLI and vendors' portals: a control or bidi
        # character there is never a name, only a way to mislead whoever reads it.
        char = control_in(value) if isinstance(value, str) else None
        if char is not None:
            raise ValueError(f"must not contain control or bidi characters "
                             f"(found {describe_char(char)})")
        return value

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, setting in (value or {}).items():
            if not name or len(name) > 64 or len(setting) > 1024:
                raise ValueError("names of 1 to 64 characters, values of at most 1024")
        return value

    def payload(self) -> dict[str, Any]:
        """The optional details kept with the event in ``rps_events.payload``."""
        return self.model_dump(include=set(PAYLOAD_FIELDS), exclude_none=True)


_EVENTS = TypeAdapter(list[EventIn])


@dataclass(frozen=True)
class FieldError:
    """One reason an event was refused, for the 400 body's ``details``."""

    index: int
    field: str
    message: str


def batch_size_error(body: list[Any]) -> tuple[str, FieldError] | None:
    """An array with no events or more than ``MAX_BATCH``: the 400's ``error`` and detail.

    Refused as a whole before any event is read, so the limit is the answer's ``error``
    (a client must split the batch), and the detail points at the first event over it.
    """
    if not body:
        return "the array holds no events", FieldError(0, "", "the array holds no events")
    if len(body) > MAX_BATCH:
        return (f"at most {MAX_BATCH} events per request (got {len(body)})",
                FieldError(MAX_BATCH, "", f"event {MAX_BATCH} and after are over the limit "
                                          f"of {MAX_BATCH} events per request"))
    return None


def validate_events(
    body: Any, providers: frozenset[str], refusal: Callable[[str], str] | None = None
) -> tuple[list[EventIn], list[FieldError]]:
    """Validate a POST /events body: one object or an array of up to 1000 objects;
    ``refusal`` says why a provider not in ``providers`` takes no events."""
    items = body if isinstance(body, list) else [body]
    if isinstance(body, list) and (refused := batch_size_error(body)):
        return [], [refused[1]]
    try:  # the common case, a valid batch, in one call
        events = _EVENTS.validate_python(items)
    except ValidationError:
        pass  # go through one by one below, to report each problem with its index
    else:
        if all(e.provider in providers for e in events):
            return events, []
    events = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            errors.append(FieldError(index, "", "an event must be a JSON object"))
            continue
        try:
            event = EventIn.model_validate(item)
        except ValidationError as exc:
            errors.extend(_field_errors(index, exc))
            continue
        if event.provider not in providers:
            known = ", ".join(sorted(providers)) or "none"
            errors.append(FieldError(index, "provider", refusal(event.provider) if refusal
                                     else f"unknown or disabled provider (enabled: {known})"))
            continue
        events.append(event)
    return events, errors


def _field_errors(index: int, exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False):
        field_name = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
        out.append(FieldError(index, field_name, message))
    return out


@dataclass
class NewEvent:
    """A validated event about to be written to the journal."""

    action: str
    provider: str
    server: int | None  # None until the store resolves it to the device's server
    mac: str
    payload: dict[str, Any]
    key: str | None = None


@dataclass
class Event:
    """A row of ``rps_events``."""

    id: int
    action: str
    provider: str
    server: int
    mac: str
    payload: dict[str, Any]
    state: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    last_error: str | None = None
    idempotency_key: str | None = None
    slot: int = 0
    # For add/update, the device row as it was when the event was leased (read in the
    # lease's transaction, so the worker needs no query of its own before the call).
    device: Device | None = field(default=None, repr=False)
    device_loaded: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "provider": self.provider,
            "mac": self.mac,
            "server": self.server,
            "state": self.state,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "key": self.idempotency_key,
            "payload": self.payload,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "next_attempt_at": _iso(self.next_attempt_at),
        }


@dataclass
class Device:
    """A row of ``rps_devices``, as the GUI shows it."""

    provider: str
    mac: str
    server: int
    status: str
    last_message: str = "-"
    model: str | None = None
    name: str | None = None
    extension: str | None = None
    registered_at: datetime | None = None
    url: str | None = None
    http_username: str | None = None
    http_password: str | None = field(default=None, repr=False)
    updated_at: datetime | None = None
    sn: str | None = None
    mac_id: str | None = None
    # The per-device key in the URL of vendors that carry no credentials to the phone.
    url_key: str | None = field(default=None, repr=False)
    # When the phone fetched its /ztprov/ settings file, and what it said it was.
    ztp_fetched_at: datetime | None = None
    ztp_model: str | None = None
    ztp_firmware: str | None = None
    ztp_ip: str | None = None
    # The secret columns whose stored value could not be trusted (read as None; see
    # docs/secrets.md): sealed with another key, for another row, or altered.
    refused: tuple[str, ...] = ()
    # What the last finished event left (registered, unregistered, error); ``status`` shows
    # pending over it while an event of the device is unfinished. None: not known (a row
    # of an older version, or written by reconcile): ``status`` says it.
    settled_status: str | None = None

    def settled(self) -> str:
        """The status as of the last finished event."""
        return self.settled_status or self.status

    def shown_url(self) -> str | None:
        """The URL as the API lists it: a URL key is a password, so only its selector shows
        (``GET /devices/{provider}/{mac}/access`` gives it whole)."""
        if self.url and self.url_key and self.url_key in self.url:
            return self.url.replace(self.url_key, self.url_key[:12] + "***")
        return self.url

    def to_json(self) -> dict[str, Any]:
        """The device for the API: access details never include the password."""
        return {
            "provider": self.provider,
            "mac": self.mac,
            "server": self.server,
            "status": self.status,
            "last_message": self.last_message,
            "model": self.model,
            "name": self.name,
            "extension": self.extension,
            "registered_at": _iso(self.registered_at),
            "url": self.shown_url(),
            "http_username": self.http_username,
            "http_password_set": bool(self.http_password),
            "url_key_set": bool(self.url_key),
            "sn": self.sn,
            "mac_id": self.mac_id,
            "updated_at": _iso(self.updated_at),
            "ztp_fetched_at": _iso(self.ztp_fetched_at),
            "ztp_model": self.ztp_model,
            "ztp_firmware": self.ztp_firmware,
            "ztp_ip": self.ztp_ip,
        }


@dataclass(frozen=True)
class AccessDetails:
    """What a phone presents at ``/ztprov/``, stored before the vendor hears of it.

    ``username``/``password`` for vendors that carry credentials to the phone; ``url_key``
    (a selector and a secret, see :func:`rps_service.access.split_url_key`) for vendors
    that carry only a URL.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    url_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Credentials:
    """A vendor account's credentials for one provider and server (tenant).

    ``values`` holds the provider's own keys (``access_key_id``, ``username``, ``api_key``,
    ...): strings, or booleans for switches such as ``add_by_mac``. Its repr shows the key
    names only, never the values.
    """

    provider: str
    server: int
    values: Mapping[str, str | bool] = field(repr=False)
    provisioning_url: str | None = None

    def __repr__(self) -> str:
        return (f"Credentials(provider={self.provider!r}, server={self.server}, "
                f"keys={sorted(self.values)!r}, provisioning_url={self.provisioning_url!r})")

    def text(self, key: str) -> str:
        """A key's value as text ('' when absent)."""
        value = self.values.get(key, "")
        return value if isinstance(value, str) else str(value).lower()

    def flag(self, key: str) -> bool:
        """A switch's value (False when absent)."""
        value = self.values.get(key, False)
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ServerProvisioning:
    """A row of ``rps_servers``: where a tenant's phones go after /ztprov/ (docs/phone-side.md)."""

    server: int
    prov_url: str
    http_user: str
    http_password: str = field(repr=False)
    updated_at: datetime | None = None


def _iso(value: datetime | None) -> str | None:
    # The journal keeps naive UTC times; say so on the wire.
    return value.isoformat(timespec="seconds") + "Z" if value else None



@dataclass
class Job:
    """A row of ``rps_jobs``: a fleet operation (docs/fleet.md), run by one instance at a time."""

    id: int
    kind: str  # reconcile | repoint
    provider: str
    server: int
    params: dict[str, Any]
    state: str
    done: int = 0
    total: int | None = None
    phase: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    runs: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "provider": self.provider, "server": self.server,
            "params": self.params, "state": self.state,
            "progress": {"done": self.done, "total": self.total, "phase": self.phase},
            "result": self.result, "error": self.error, "runs": self.runs,
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
        }
