"""The shapes of the event API's answers, for its OpenAPI description (docs/api.md).

The handlers build their JSON by hand (``Event.to_json``, ``Device.to_json``, …); these
models only describe it. Tests validate real answers against them, and ``extra="forbid"``
makes a field added to an answer without being added here fail those tests.
A field with a default is one the answer may leave out (``duplicate``, ``total``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventState = Literal["pending", "running", "done", "failed", "superseded"]
DeviceStatus = Literal["pending", "registered", "unregistered", "error"]
Action = Literal["add", "remove", "update"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(_Answer):
    """One reason for a refusal."""

    index: int = Field(description="the event's index in the array (0 for one object)")
    field: str = Field(description="the field, empty when the whole event is meant")
    message: str


class Error(_Answer):
    """Every refusal."""

    error: str
    details: list[FieldError] | None = None


class AcceptedEvent(_Answer):
    """One stored event, as POST /events acknowledges it."""

    id: int
    action: Action
    provider: str
    mac: str
    server: int
    duplicate: bool | None = Field(None, description="present (true) when the idempotency "
                                                     "key was seen before: nothing stored")


class Accepted(_Answer):
    """POST /events: 202."""

    accepted: int
    events: list[AcceptedEvent]


class Event(_Answer):
    """A row of the journal."""

    id: int
    action: Action
    provider: str
    mac: str
    server: int
    state: EventState
    attempts: int
    last_error: str | None
    key: str | None = Field(description="the idempotency key it was posted with")
    payload: dict[str, Any] = Field(description="the optional details it was posted with")
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None


class EventList(_Answer):
    """GET /events."""

    events: list[Event]


class Retried(_Answer):
    """POST /events/{id}/retry: 202."""

    id: int
    state: Literal["pending"]


class Device(_Answer):
    """A row of ``rps_devices`` (never the device's password)."""

    provider: str
    mac: str
    server: int
    status: DeviceStatus
    last_message: str = Field(description="`-` when all is well, else the last error")
    model: str | None
    name: str | None
    extension: str | None
    registered_at: datetime | None
    url: str | None = Field(description="the provisioning URL given to the vendor (a URL "
                                        "key shows only its first 12 characters)")
    http_username: str | None
    http_password_set: bool
    url_key_set: bool = Field(description="the device has a URL key (vendors that carry "
                                          "only a URL to the phone)")
    sn: str | None
    mac_id: str | None
    updated_at: datetime | None
    ztp_fetched_at: datetime | None = Field(description="when the phone fetched its "
                                                        "/ztprov/ file")
    ztp_model: str | None
    ztp_firmware: str | None
    ztp_ip: str | None


class DeviceList(_Answer):
    """GET /devices."""

    devices: list[Device]
    next: str | None = Field(description="`after` for the next page; null on the last one")
    total: int | None = Field(None, description="matching devices, with `count=true`")


class Provider(_Answer):
    """An enabled provider."""

    name: str


class ProviderList(_Answer):
    """GET /providers."""

    providers: list[Provider]


class Credentials(_Answer):
    """GET /providers/{provider}/credentials/{server}: the provider's own keys, the
    non-secret ones with their values, each secret as ``<key>_set`` (true or false)."""

    model_config = ConfigDict(extra="allow")

    provider: str
    server: int
    provisioning_url: str | None


class Access(_Answer):
    """GET /devices/{provider}/{mac}/access: what the vendor was given for the phone: the
    URL with the phone's HTTP username and password, or, for vendors that carry only a URL,
    the URL with the device's key (``username`` and ``password`` null)."""

    url: str | None
    username: str | None
    password: str | None


class JobCreated(_Answer):
    """POST /providers/{provider}/reconcile, POST /servers/{server}/repoint: 202."""

    job: int


class Progress(_Answer):
    """How far a job has got."""

    done: int
    total: int | None
    phase: str | None = Field(description="listing, looking up, comparing, repairing, "
                                          "queueing")


class Job(_Answer):
    """A fleet job."""

    id: int
    kind: Literal["reconcile", "repoint"]
    provider: str
    server: int
    params: dict[str, Any]
    state: Literal["pending", "running", "done", "failed"]
    progress: Progress
    result: dict[str, Any] = Field(description="reconcile: `counts`, `missing`, `drift`, "
                                               "`orphan` (the first 1000 each), "
                                               "`orphans_checked`, `truncated`; repoint: "
                                               "`counts`")
    error: str | None
    runs: int
    created_at: datetime | None
    updated_at: datetime | None
    events: dict[str, int] | None = Field(None, description="the events the job queued, "
                                                            "by state")
    fetched: int | None = Field(None, description="repoint: how many of its devices' phones "
                                                  "fetched their bootstrap file since the job "
                                                  "started")
    not_fetched_total: int | None = Field(None, description="repoint: how many have not")
    not_fetched: list[str] | None = Field(None, description="repoint: MACs of its devices "
                                                            "whose phones have not, one page "
                                                            "in MAC order")
    not_fetched_next: str | None = Field(None, description="repoint: pass as "
                                                           "`not_fetched_after` for the next "
                                                           "page; absent on the last")


class JobList(_Answer):
    """GET /jobs."""

    jobs: list[Job]


class ServerSettings(_Answer):
    """GET /servers/{server}/settings/{provider}."""

    provider: str
    server: int
    settings: dict[str, str]


class TestResult(_Answer):
    """POST /providers/{provider}/test."""

    ok: bool
    message: str


class ServerProvisioning(_Answer):
    """GET /servers/{server}/provisioning."""

    server: int
    prov_url: str
    http_user: str
    http_password_set: bool


class Lane(_Answer):
    """One vendor account's lane: where its events wait."""

    provider: str
    account: str = Field(description="which account: `server N` whose credentials are used "
                                     "(never a secret), `no credentials` when none are set")
    backlog: int = Field(description="unfinished events of the account")
    in_flight: int = Field(description="vendor calls under way (this instance)")
    rate_limit: float | None = Field(description="requests per second the account is paced "
                                                 "at; null for a provider without pacing")
    paused_until: str | None = Field(description="UTC time a throttling answer pauses the "
                                                 "account until; null when not paused")


class Health(_Answer):
    """GET /health: 200. With ``api_token`` set and not given, only ``status``."""

    status: Literal["ok"]
    database: Literal["ok"] | None = None
    backlog: dict[str, int] | None = Field(
        None, description="unfinished events: `pending` (in the journal, or leased by "
        "another instance), `waiting` (held by their lane for a rate slot, a pause or a "
        "worker), `running` (vendor call under way)")
    queues: list[int] | None = Field(None, description="per worker: 1 while it has an "
                                                       "event, else 0")
    lanes: list[Lane] | None = Field(None, description="per vendor account with unfinished "
                                                       "events or calls under way")


class HealthDown(_Answer):
    """GET /health: 503. ``degraded`` alone when ``api_token`` is set and not given."""

    status: Literal["unavailable", "degraded"]
    database: str | None = Field(None, description="the database's error")
    queues: list[int] | None = None


class TimelineAccepted(_Answer):
    """An event for the device was stored."""

    at: datetime
    kind: Literal["accepted"]
    event: int
    action: Action
    server: int


class TimelineCall(_Answer):
    """One request to the vendor's API while handling an event."""

    at: datetime
    kind: Literal["call"]
    event: int
    method: str
    url: str = Field(description="secret query values masked (`access_token=***`)")
    status: int | str = Field(description="the HTTP status; an XML-RPC fault's code "
                                          "(`fault 305`); `timeout`, `error` when no answer "
                                          "came")
    ms: int = Field(description="how long the request took")
    attempt: int = Field(description="the event's attempt (1 for the first)")


class TimelineRetry(_Answer):
    """A failed attempt is tried again."""

    at: datetime = Field(description="when the retry is due")
    kind: Literal["retry"]
    event: int
    why: str


class TimelineOutcome(_Answer):
    """How an event ended."""

    at: datetime
    kind: Literal["outcome"]
    event: int
    state: EventState
    status: DeviceStatus | None = Field(description="the device's status it left; null when "
                                                    "it left the device as it was")
    message: str | None


FetchReason = Literal["no credentials", "wrong password", "unknown user", "MAC mismatch",
                      "device removed", "throttled"]


class TimelineFetch(_Answer):
    """A request of the phones' listener that named the device."""

    at: datetime
    kind: Literal["fetch"]
    ip: str
    file: str = Field(description="the path asked for (a URL key cut to its first 12 "
                                  "characters)")
    model: str | None
    firmware: str | None
    result: int = Field(description="the HTTP status answered")
    reason: FetchReason | None = Field(description="why it was refused; null when it was not")


TimelineEntry = Annotated[TimelineAccepted | TimelineCall | TimelineRetry | TimelineOutcome
                          | TimelineFetch, Field(discriminator="kind")]


class Timeline(_Answer):
    """GET /devices/{provider}/{mac}/timeline: what happened to the device, oldest first."""

    entries: list[TimelineEntry]


NAMES = frozenset(m.__name__ for m in (
    FieldError, Error, AcceptedEvent, Accepted, Event, EventList, Retried, Device, Lane,
    DeviceList, Provider, ProviderList, Credentials, TestResult, ServerProvisioning, Health,
    HealthDown, Access, JobCreated, Progress, Job, JobList, ServerSettings))


def absent_not_null(schema: dict[str, Any]) -> None:
    """A field with a None default is left out of the answer, never sent as null: say so."""
    required = set(schema.get("required", ()))
    for name, prop in schema.get("properties", {}).items():
        if name in required or "default" not in prop or prop["default"] is not None:
            continue
        del prop["default"]
        options = [o for o in prop.get("anyOf", ()) if o != {"type": "null"}]
        if len(options) == 1:
            del prop["anyOf"]
            prop.update(options[0])
