"""What crosses the HTTP API: events in, and the validation rules that guard the journal."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

_MAC_SEPARATORS = re.compile(r"[:\-.]")
_HEX12 = re.compile(r"[0-9A-Fa-f]{12}")

Action = Literal["add", "remove", "update"]
EVENT_STATES = ("pending", "running", "done", "failed", "superseded")
DEVICE_STATUSES = ("pending", "registered", "unregistered", "error")
MAX_BATCH = 1000


def normalize_mac(value: str) -> str:
    """``00:04:13:ab:cd:ef`` (or with ``-`` ``.``, any case) → ``000413ABCDEF``."""
    mac = _MAC_SEPARATORS.sub("", value.strip())
    # Match before upper-casing: some non-ASCII letters upper-case to hex digits.
    if not _HEX12.fullmatch(mac):
        raise ValueError("must be 12 hex digits, optionally separated by ':', '-' or '.'")
    return mac.upper()


class EventIn(BaseModel):
    """One event as the GUI posts it (SPEC §3)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    action: Action
    provider: str = Field(min_length=1, max_length=32)
    mac: str
    server: int = Field(1, ge=1, le=2_147_483_647)
    model: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=255)
    extension: str | None = Field(None, max_length=64)
    key: str | None = Field(None, min_length=1, max_length=64)

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return normalize_mac(value)

    def payload(self) -> dict[str, Any]:
        """The optional details kept with the event in ``rps_events.payload``."""
        return self.model_dump(include={"model", "name", "extension", "key"}, exclude_none=True)


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
    body: Any, providers: frozenset[str]
) -> tuple[list[EventIn], list[FieldError]]:
    """Validate a POST /events body: one object or an array of up to 1000 objects."""
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
            errors.append(
                FieldError(index, "provider", f"unknown or disabled provider (enabled: {known})")
            )
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
    server: int
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
    # When the phone fetched its /ztprov/ settings file, and what it said it was (SPEC §7).
    ztp_fetched_at: datetime | None = None
    ztp_model: str | None = None
    ztp_firmware: str | None = None
    ztp_ip: str | None = None

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
            "url": self.url,
            "http_username": self.http_username,
            "http_password_set": bool(self.http_password),
            "updated_at": _iso(self.updated_at),
            "ztp_fetched_at": _iso(self.ztp_fetched_at),
            "ztp_model": self.ztp_model,
            "ztp_firmware": self.ztp_firmware,
            "ztp_ip": self.ztp_ip,
        }


@dataclass(frozen=True)
class ServerProvisioning:
    """A row of ``rps_servers``: where a tenant's phones go after /ztprov/ (SPEC §7)."""

    server: int
    prov_url: str
    http_user: str
    http_password: str = field(repr=False)
    updated_at: datetime | None = None


def _iso(value: datetime | None) -> str | None:
    # The journal keeps naive UTC times; say so on the wire.
    return value.isoformat(timespec="seconds") + "Z" if value else None
