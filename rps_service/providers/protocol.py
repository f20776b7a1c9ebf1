"""The seam between the pipeline and a vendor's redirection service.

A provider only does I/O: it performs one operation and reports the outcome, raising
:class:`ProviderError` with a :class:`Failure` class. Retries, backoff, ordering and device
status transitions are the worker's policy, written once above all providers; what every
vendor shares (signing, rate limit, pause, logging, metrics) is the skeleton in
:mod:`rps_service.providers.vendor`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from rps_service.access import AccessMode
from rps_service.models import Credentials
from rps_service.providers.section import ProviderSettings

#: Told of every HTTP request a provider makes, for metrics:
#: ``(provider, operation, status, seconds)``; status is the HTTP status or an error class.
RequestObserver = Callable[[str, str, str, float], None]


class Failure(enum.Enum):
    """How the pipeline should treat a failed call."""

    TRANSIENT = "transient"  # retry with backoff (connect errors, timeouts, 5xx)
    THROTTLED = "throttled"  # the vendor asks us to slow down: pause the account, retry
    PERMANENT = "permanent"  # fail at once (other 4xx, missing credentials, bad data)
    OWNED = "owned"  # the MAC belongs to another account of the vendor: fail at once
    BAD_LOGIN = "bad_login"  # the vendor refused the credentials: fail at once


class ProviderError(Exception):
    """A failed vendor call.

    ``message`` is one readable line for rps.log and the GUI (``403: Forbidden``), with an
    optional ``hint`` telling the operator what to do. Never put secrets in either.
    ``deferred``: nothing was sent (the account is paused or its rate is used up past the
    lease); the event waits ``retry_after`` without using up an attempt.
    """

    def __init__(
        self,
        message: str,
        failure: Failure,
        *,
        hint: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        deferred: bool = False,
    ) -> None:
        self.message = message
        self.failure = failure
        self.hint = hint
        self.status = status
        self.retry_after = retry_after
        self.deferred = deferred
        super().__init__(self.text)

    @property
    def text(self) -> str:
        """Message and hint as one line."""
        return f"{self.message} ({self.hint})" if self.hint else self.message

    @property
    def transient(self) -> bool:
        return self.failure in (Failure.TRANSIENT, Failure.THROTTLED)


@dataclass(frozen=True)
class Device:
    """What a provider needs to register, update or de-register one phone.

    ``url`` is where the vendor sends the phone; ``http_username``/``http_password`` the
    phone's credentials for it (per device or per server, by the provider's
    :class:`~rps_service.access.AccessMode`). They are empty for ``deregister``.
    """

    mac: str  # 12 upper-case hex digits
    server: int
    url: str = ""
    http_username: str = ""
    http_password: str = field(default="", repr=False)
    model: str | None = None
    name: str | None = None
    sn: str | None = None
    mac_id: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VendorRecord:
    """What a vendor holds for one MAC (look-up and listing, for reconcile)."""

    mac: str  # 12 upper-case hex digits
    #: Where the vendor sends the phone, when it tells; "" when it holds the MAC but sends
    #: the phone nowhere (e.g. SRAPS's setting_server wiped in the portal): a drift.
    url: str | None = None
    ours: bool = True  # False: another account of the vendor holds the MAC
    detail: str = ""


class CredentialSource(Protocol):
    """Where providers read per-server credentials (the ``rps_credentials`` table)."""

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        """The stored keys for ``provider`` and ``server``, or None."""


@dataclass(frozen=True)
class CheckResult:
    """The answer to the GUI's Test button."""

    ok: bool
    message: str


class Provider(Protocol):
    """A vendor redirection service. Each method is one idempotent operation."""

    name: ClassVar[str]
    #: What the vendor carries to the phone (so what the daemon generates per device).
    access: ClassVar[AccessMode]
    #: Its rps.ini section: the keys the credentials API takes (docs/configuration.md).
    settings_class: ClassVar[type[ProviderSettings]]
    #: The API can list the account's devices (reconcile pages through them).
    can_list: ClassVar[bool]
    #: The API can look one device up (reconcile checks devices one by one without a list).
    can_lookup: ClassVar[bool]
    #: Extra settings (docs/fleet.md) can be pushed with a registration.
    supports_settings: ClassVar[bool]

    async def device_url(self, server: int, url_key: str | None = None) -> str:
        """The URL a phone of ``server`` is redirected to; a :class:`ProviderError` when
        the configured URL cannot reach a phone (still the shipped example host)."""

    async def event_problem(self, action: str, server: int | None,
                            fields: Mapping[str, object]) -> tuple[str, str] | None:
        """``(field, reason)`` when the provider cannot serve such an event, else None
        (e.g. a serial number a vendor needs); checked before the event is stored."""

    async def register(self, device: Device) -> None:
        """Create or replace the device's redirection with its access details."""

    async def deregister(self, device: Device) -> None:
        """Remove the device's redirection; a device unknown to the vendor is success."""

    async def lookup(self, device: Device) -> VendorRecord | None:
        """What the vendor holds for the device, or None when it holds nothing."""

    def list_devices(self, server: int) -> AsyncIterator[VendorRecord] | None:
        """Everything the vendor account of ``server`` holds, page by page; None when the
        vendor's API cannot list (reconcile then looks devices up one by one)."""

    async def check_credentials(self, server: int) -> CheckResult:
        """Try the server's credentials against the vendor now; never raises."""

    async def close(self) -> None:
        """Release connections and caches."""
