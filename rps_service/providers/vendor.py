"""The skeleton every vendor provider is built on: a vendor module states facts and does I/O.

A vendor subclasses :class:`VendorProvider`, sets its facts as class attributes (``name``,
``label``, ``service``, ``settings_class`` with its default ``api_url``, credential keys and
``rate_limit``, ``access``) and implements the ``vendor_*`` hooks and, where its answers need
it, :meth:`VendorProvider.classify`. This class does the rest: which credentials an event
uses (master or tenant mode), the device URL, the shared HTTP client (rate limit, throttle
pause, lease fencing, the ``Sending Request.`` line, metrics, timeouts), the error classes
and the Test button's wording. A vendor is added with its module and a line in the
manifest, :mod:`rps_service.vendors`.
"""

from __future__ import annotations

import abc
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeGuard, TypeVar
from urllib.parse import urlsplit

import httpx

from rps_service import __version__
from rps_service.access import AccessMode
from rps_service.logs import get_logger
from rps_service.models import Credentials
from rps_service.pipeline.lanes import LaneId
from rps_service.providers.errors import error_text, http_error
from rps_service.providers.http import RPC_METHOD, VendorHttp
from rps_service.providers.protocol import (
    CheckResult,
    CredentialSource,
    Device,
    Failure,
    ProviderError,
    RequestObserver,
    VendorRecord,
)
from rps_service.providers.section import PLACEHOLDER_HOST, ProviderSettings

log = get_logger()

USER_AGENT = f"rps-service/{__version__}"
JSON = "application/json"
T = TypeVar("T")


@dataclass(frozen=True)
class Account:
    """The vendor account an operation runs on: whose credentials, and a stable key.

    ``key`` names the account for rate limits, pauses and caches: the provider, the
    non-secret credential values and a digest of the secret ones (never the secrets).
    """

    provider: str
    server: int  # the server whose credentials these are (1 in master mode)
    credentials: Credentials = field(repr=False)
    key: str
    secrets: tuple[str, ...] = field(repr=False, default=())

    def text(self, name: str) -> str:
        return self.credentials.text(name)

    def flag(self, name: str) -> bool:
        return self.credentials.flag(name)


@dataclass(frozen=True)
class ProviderContext:
    """What the service hands every provider it builds."""

    mode: str  # master | tenant
    retry_cap: float
    credentials: CredentialSource
    transport: httpx.AsyncBaseTransport
    observe: RequestObserver | None = None
    clock: Callable[[], float] = time.time
    #: The clock of rate slots, pauses and forgetting idle accounts (tests move it).
    monotonic: Callable[[], float] = time.monotonic


class VendorProvider(abc.ABC):
    """A :class:`~rps_service.providers.protocol.Provider` on the shared skeleton."""

    #: The provider's name in events, rps.ini (``[name]``) and the API.
    name: ClassVar[str]
    #: The log component (``INFO (<label>): Sending Request. …``).
    label: ClassVar[str]
    #: The vendor's service, as messages name it ("another SRAPS account").
    service: ClassVar[str]
    settings_class: ClassVar[type[ProviderSettings]]
    access: ClassVar[AccessMode] = AccessMode.CREDENTIALS
    #: How messages call the credentials ("No SRAPS API keys for server 8").
    credentials_noun: ClassVar[str] = "credentials"
    #: The API can list the account's devices (reconcile pages through them).
    can_list: ClassVar[bool] = False
    #: The API can look one device up (reconcile checks devices one by one without a list).
    can_lookup: ClassVar[bool] = True
    #: Extra settings (docs/fleet.md) can be pushed with a registration (``Device.settings``).
    supports_settings: ClassVar[bool] = False
    #: Seconds after a throttling pause during which the account's events go one at a time
    #: (0: never); for a vendor that throttles again when every worker resumes at once.
    gentle_after_throttle: ClassVar[float] = 0.0
    #: A guess that serving this vendor's phones at ``/ztprov/`` relies on ("" for none),
    #: when their family is another vendor's: said once per process at the first file
    #: served (a family's own guesses are said by the family).
    phones_guess: ClassVar[str] = ""

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        self.settings = settings
        self.context = context
        self.clock = context.clock
        self.http = VendorHttp(
            name=self.name, label=self.label, transport=context.transport,
            timeout=settings.timeout, rate_limit=settings.rate_limit,
            retry_cap=context.retry_cap, max_answer=settings.max_answer,
            gentle=self.gentle_after_throttle, observe=context.observe,
            monotonic=context.monotonic,
        )
        self._accounts: dict[int, tuple[Credentials, Account]] = {}

    # -- the Provider protocol ----------------------------------------------------------

    async def device_url(self, server: int, url_key: str | None = None) -> str:
        """The server's stored ``provisioning_url`` or the configured one, ``{server}``
        replaced; for URL-key vendors the device's key is a path segment after it. Empty for
        vendors that send nothing per device (their portal points phones at the PBX)."""
        if self.access is AccessMode.NONE:
            return ""
        stored = await self.context.credentials.get_credentials(self.name, server)
        override = stored.provisioning_url if stored else None
        template = override or self.settings.provisioning_url
        if urlsplit(template).hostname == PLACEHOLDER_HOST:
            where = (f"the provisioning_url stored for server {server}" if override
                     else f"[{self.name}] provisioning_url in rps.ini")
            raise ProviderError(
                f"provisioning_url still points at the example host {PLACEHOLDER_HOST}: "
                f"set {where} to the URL your phones reach (e.g. "
                f"https://pbx.your-domain/ztprov/{{server}}/)",
                Failure.PERMANENT,
            )
        url = template.replace("{server}", str(server))
        if self.access is AccessMode.URL_KEY and url_key:
            url = with_path_segment(url, url_key)
        return url

    async def event_problem(self, action: str, server: int | None,
                            fields: Mapping[str, object]) -> tuple[str, str] | None:
        """Extra settings only where the vendor takes them; vendors add their own needs
        (call this first when overriding)."""
        if fields.get("settings") and not self.supports_settings:
            return "settings", f"{self.service} takes no extra settings"
        return None

    async def register(self, device: Device) -> None:
        account = await self.account(device.server)
        await self._run(account, self.vendor_register(account, device))

    async def deregister(self, device: Device) -> None:
        account = await self.account(device.server)
        await self._run(account, self.vendor_deregister(account, device))

    async def lookup(self, device: Device) -> VendorRecord | None:
        account = await self.account(device.server)
        return await self._run(account, self.vendor_lookup(account, device))

    def list_devices(self, server: int) -> AsyncIterator[VendorRecord] | None:
        """None unless the vendor's API can list (``can_list``)."""
        return self._listing(server) if self.can_list else None

    async def _listing(self, server: int) -> AsyncIterator[VendorRecord]:
        account = await self.account(server)
        pages = self.vendor_list(account)
        while True:
            try:
                record = await self._run(account, anext(pages))
            except StopAsyncIteration:
                return
            yield record

    async def check_credentials(self, server: int) -> CheckResult:
        """Try the server's credentials now; always an answer, never an exception."""
        try:
            account = await self.account(server)
            message = await self._run(account, self.vendor_check(account))
        except ProviderError as err:
            return CheckResult(False, self.check_failure(err))
        except Exception as exc:  # the GUI's Test button must always get an answer
            # Only the class: a traceback's locals could hold a secret.
            log.error("Credentials check failed", component=self.label, server=server,
                      err=type(exc).__name__)
            return CheckResult(False, f"Check failed: {type(exc).__name__}")
        return CheckResult(True, message)

    async def close(self) -> None:
        """Forget cached lookups and accounts; the shared transport belongs to the service."""
        self._accounts.clear()

    async def lane(self, server: int) -> LaneId:
        """The account ``server``'s events are sent with, as the scheduler sees it: a key
        and a label that never hold a secret, and the account's gate."""
        try:
            account = await self.account(server)
        except ProviderError:
            # No usable credentials: the events fail at once, without a call or a turn.
            return LaneId(f"{self.name}|none", self.name, "no credentials", None)
        return LaneId(account.key, self.name, f"server {account.server}",
                      self.http.gate(account.key))

    def forget_idle(self, quiet: float, keep: Collection[str] = ()) -> frozenset[str]:
        """Forget the accounts gone quiet (credentials rotated away, a server removed): their
        gates (:meth:`VendorHttp.forget_idle <rps_service.providers.http.VendorHttp.forget_idle>`:
        only when idle and not in ``keep``), then what the provider keeps per account
        (:meth:`forget_accounts`). The accounts forgotten."""
        gone = self.http.forget_idle(quiet, keep)
        if gone:
            self.forget_accounts(gone)
        return gone

    # -- hooks of a vendor module ---------------------------------------------------------

    def forget_accounts(self, keys: frozenset[str]) -> None:
        """Drop what is kept per account (the credentials last read, and a vendor's tokens,
        catalogue or server ids) for the accounts ``keys`` (by :attr:`Account.key`): nothing
        was sent on them for a while, so nothing of theirs is in use. A vendor with caches
        of its own extends this (calling it first)."""
        self._accounts = {server: cached for server, cached in self._accounts.items()
                          if cached[1].key not in keys}

    @abc.abstractmethod
    async def vendor_register(self, account: Account, device: Device) -> None:
        """Create or re-point the device's redirection (idempotent)."""

    @abc.abstractmethod
    async def vendor_deregister(self, account: Account, device: Device) -> None:
        """Remove the device's redirection; already gone is success."""

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        """What the vendor holds for the MAC (None: nothing)."""
        raise ProviderError(f"{self.service} offers no look-up of a device", Failure.PERMANENT)

    def vendor_list(self, account: Account) -> AsyncIterator[VendorRecord]:
        """Every device the account holds, page by page (vendors with ``can_list``)."""
        raise ProviderError(f"{self.service} offers no list of devices", Failure.PERMANENT)

    @abc.abstractmethod
    async def vendor_check(self, account: Account) -> str:
        """Prove the credentials work; the Test button's success message."""

    def classify(self, response: httpx.Response, text: str, account: Account
                 ) -> ProviderError | None:
        """A vendor's own reading of a failed answer (error codes, "owned by another"
        wordings), or None for the shared HTTP rules."""
        return None

    # -- what vendor modules call ---------------------------------------------------------

    async def account(self, server: int) -> Account:
        """The credentials an operation for ``server`` uses (docs/vendors/, ``mode``)."""
        if self.context.mode == "tenant":
            stored = await self.context.credentials.get_credentials(self.name, server)
            if self._usable(stored):
                return self._account(server, stored)
            raise ProviderError(
                f"No {self.service} {self.credentials_noun} for server {server} (tenant "
                f"mode): store them with PUT /providers/{self.name}/credentials/{server}",
                Failure.PERMANENT,
            )
        stored = await self.context.credentials.get_credentials(self.name, 1)
        if self._usable(stored):
            return self._account(1, stored)
        ini = Credentials(self.name, 1, self.settings.credentials())
        if self._usable(ini):
            return self._account(1, ini)
        keys = " and ".join(self._required_keys())
        raise ProviderError(
            f"No {self.service} {self.credentials_noun} for server {server} (master mode): "
            f"set {keys} in [{self.name}] of rps.ini or store them with "
            f"PUT /providers/{self.name}/credentials/1",
            Failure.PERMANENT,
        )

    async def request(
        self,
        account: Account,
        method: str,
        url: str,
        *,
        operation: str,
        mac: str = "-",
        json_body: object = None,
        content: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        accept: str = JSON,
        rpc_method: str | None = None,
    ) -> httpx.Response:
        """Build and send one request (plus whatever ``auth`` adds); the response, read.
        ``rpc_method``: the XML-RPC method the body calls, for the log line."""
        sent_headers = {"Accept": accept, "Accept-Encoding": "gzip, deflate",
                        "User-Agent": USER_AGENT, **(headers or {})}
        if json_body is not None:
            content = json.dumps(json_body, separators=(",", ":")).encode()
            content_type = JSON
        if content_type:
            sent_headers["Content-Type"] = content_type
        request = httpx.Request(method, url, params=params, content=content,
                                headers=sent_headers)
        if rpc_method:
            request.extensions[RPC_METHOD] = rpc_method
        return await self.http.send(request, account=account.key, operation=operation,
                                    mac=mac, auth=auth)

    def expect(self, response: httpx.Response, account: Account, ok: tuple[int, ...] = ()
               ) -> httpx.Response:
        """``response`` when 2xx or in ``ok``; else its classified :class:`ProviderError`."""
        if response.is_success or response.status_code in ok:
            return response
        raise self.error(response, account)

    def error(self, response: httpx.Response, account: Account,
              secrets: tuple[str, ...] = ()) -> ProviderError:
        """A failed answer as a :class:`ProviderError` (the vendor's rules, then HTTP's)."""
        text = error_text(response, (*account.secrets, *secrets))
        return self.classify(response, text, account) or http_error(
            response, text=text, bad_login_hint=self.bad_login_hint(), now=self.clock())

    def bad_login_hint(self) -> str:
        return self.credentials_hint()

    @property
    def credentials_where(self) -> str:
        """Where an operator sets this provider's credentials."""
        return f"[{self.name}] of rps.ini or PUT /providers/{self.name}/credentials/N"

    def credentials_hint(self, keys: Sequence[str] = ()) -> str:
        """``check <keys> (<where they are set>)``; the provider's credential keys by default."""
        keys = keys or self._required_keys() or self.settings_class.credential_keys
        listed = " and ".join(keys) if len(keys) < 3 else f"{', '.join(keys[:-1])} and {keys[-1]}"
        return f"check {listed} ({self.credentials_where})"

    def check_failure(self, err: ProviderError) -> str:
        """What the Test button says about a failed check."""
        if err.failure is Failure.BAD_LOGIN:
            return f"{self.service} rejected the {self.credentials_noun}: {err.text}"
        if err.transient:
            return f"{self.service} unreachable: {err.text}"
        if err.status is None:
            return err.text
        return f"{self.service} answered {err.text}"

    def json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        """The answer's JSON object, or a permanent error naming ``what`` it answered."""
        data = self.json_value(response, what)
        if not isinstance(data, dict):
            raise ProviderError(f"{self.service} answered {what} with no JSON object",
                                Failure.PERMANENT, status=response.status_code)
        return data

    def json_value(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ProviderError(
                f"{self.service} answered {what} with invalid JSON ({response.status_code})",
                Failure.PERMANENT, status=response.status_code,
            ) from None

    # -- internals ------------------------------------------------------------------------

    async def _run(self, account: Account, operation: Awaitable[T]) -> T:
        """Run one vendor operation: a throttling answer pauses the whole account (its gate
        is kept meanwhile: see :meth:`forget_idle`)."""
        with self.http.using(account.key):
            try:
                result = await operation
            except ProviderError as err:
                if err.failure is Failure.THROTTLED and not err.deferred:
                    err.retry_after = self.http.gate(account.key).pause(err.retry_after)
                    log.warning("Account paused", component=self.label,
                                server=account.server, seconds=f"{err.retry_after:g}",
                                status=err.status or "-")
                raise
            self.http.gate(account.key).succeeded()
            return result

    def _required_keys(self) -> tuple[str, ...]:
        cls = self.settings_class
        optional = {*cls.switch_keys(), *cls.optional_keys}
        return tuple(k for k in cls.credential_keys if k not in optional)

    def _usable(self, creds: Credentials | None) -> TypeGuard[Credentials]:
        return creds is not None and all(creds.text(k) for k in self._required_keys())

    def _account(self, server: int, creds: Credentials) -> Account:
        cached = self._accounts.get(server)
        if cached is not None and cached[0] is creds:
            return cached[1]
        secret_keys = self.settings_class.secret_keys()
        secrets = tuple(creds.text(k) for k in secret_keys if creds.text(k))
        digest = hashlib.sha256("\0".join(secrets).encode()).hexdigest()[:16]
        plain = "|".join(creds.text(k) for k in self.settings_class.credential_keys
                         if k not in secret_keys)
        account = Account(self.name, server, creds, f"{self.name}|{plain}|{digest}", secrets)
        self._accounts[server] = (creds, account)
        return account


def with_path_segment(url: str, segment: str) -> str:
    """``url`` with ``segment`` as one more path segment (``…/ztprov/8/`` → ``…/8/KEY/``)."""
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return parts._replace(path=f"{path}{segment}/").geturl()
