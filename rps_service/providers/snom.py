"""Snom SRAPS REST v1: point factory-reset phones at our zero-touch provisioning URL.

SRAPS needs, per set of API keys, the company the key belongs to and the uuids of the
settings we write (``setting_server`` and the phone's HTTP credentials). Both are looked
up once and cached, so a warm registration is a single signed ``PUT``. Every request is
signed with Hawk (:mod:`rps_service.providers.hawk`); every failure becomes a classified
:class:`ProviderError` in :mod:`rps_service.providers.sraps_errors`, the one place
that decides what is retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeGuard
from urllib.parse import quote, urlsplit

import httpx
import structlog

from rps_service import __version__
from rps_service.config import Settings
from rps_service.providers import hawk
from rps_service.providers.base import (
    CheckResult,
    Credentials,
    CredentialSource,
    Device,
    Failure,
    ProviderError,
    RequestObserver,
)
from rps_service.providers.sraps_errors import check_failure, no_role_message, to_provider_error

log = structlog.get_logger("rps")

COMPONENT = "Snom"
JSON = "application/json"
USER_AGENT = f"rps-service/{__version__}"
PHONE_SETTINGS = "phone-settings"
# The catalogue has ~1100 entries (two pages at page_size=1000); the cap only stops a
# server whose Link headers go round in circles.
MAX_PAGES = 50

_MAC_SEPARATORS = re.compile(r"[:.\-]")
_MAC_DIGITS = re.compile(r"[0-9A-Fa-f]{12}")


@dataclass(frozen=True)
class _Catalogue:
    """What a warm call needs: the key's company and the uuids of the settings we write."""

    company_id: str
    server_uuid: str
    user_uuid: str | None
    pass_uuid: str | None


_CacheKey = tuple[str, str]


class SnomProvider:
    """The :class:`~rps_service.providers.base.Provider` for Snom SRAPS REST v1.

    ``transport`` sends the requests (the service's shared
    :class:`~rps_service.providers.transport.AiohttpTransport`; ``httpx.MockTransport`` in
    tests); this provider never closes it. ``clock`` gives Unix time for Hawk timestamps
    and Retry-After dates; ``observe``, if given, is told of every request (metrics).
    """

    name = "snom"

    def __init__(
        self,
        settings: Settings,
        credentials: CredentialSource,
        transport: httpx.AsyncBaseTransport,
        *,
        clock: Callable[[], float] = time.time,
        observe: RequestObserver | None = None,
    ) -> None:
        self._snom = settings.snom
        self._mode = settings.general.mode
        self._source = credentials
        self._transport = transport
        self._timeout = httpx.Timeout(self._snom.timeout).as_dict()
        self._clock = clock
        self._observe = observe
        # Seconds to add to our clock to get SRAPS's, learnt from a Hawk 401 challenge.
        self._offset = 0.0
        self._cache: dict[_CacheKey, _Catalogue] = {}
        self._locks: dict[_CacheKey, asyncio.Lock] = {}

    # -- Provider API -------------------------------------------------------------------

    async def device_url(self, server: int) -> str:
        """The server's stored ``provisioning_url`` or the configured one, ``{server}`` set."""
        stored = await self._source.get_credentials(self.name, server)
        template = (stored.provisioning_url if stored else None) or self._snom.provisioning_url
        return template.replace("{server}", str(server))

    async def register(self, device: Device) -> None:
        """Create or replace the endpoint with our URL and the phone's HTTP credentials."""
        creds, catalogue, mac = await self._target(device)
        url = device.url or await self.device_url(device.server)
        await self._call(
            creds,
            "PUT",
            self._endpoint_url(catalogue, mac),
            operation="register",
            mac=mac,
            body=_endpoint_body(mac, url, device, catalogue),
            secrets=(device.http_password,),
            stale_on=(401, 404),  # 404: the cached company is gone
        )

    async def deregister(self, device: Device) -> None:
        """Delete the endpoint; one SRAPS does not know is already what we want."""
        creds, catalogue, mac = await self._target(device)
        await self._call(creds, "DELETE", self._endpoint_url(catalogue, mac),
                         operation="deregister", mac=mac, ok=(404,))

    async def lookup(self, device: Device) -> dict[str, object] | None:
        """The endpoint as SRAPS holds it, or None when SRAPS has none for the MAC."""
        creds, catalogue, mac = await self._target(device)
        url = self._endpoint_url(catalogue, mac)
        response = await self._call(creds, "GET", url, operation="lookup", mac=mac, ok=(404,))
        if response.status_code == 404:
            return None
        return _json_object(response, "the endpoint lookup")

    async def check_credentials(self, server: int) -> CheckResult:
        """Try the server's keys now (tokens and settings lookups); never raises."""
        try:
            creds = await self._credentials(server)
            token = await self._fetch_token(creds)
            if "role" in token and not token["role"]:
                return CheckResult(False, no_role_message(creds.access_key_id))
            catalogue = await self._load(creds, token)
        except ProviderError as err:
            return CheckResult(False, check_failure(err))
        except Exception as exc:  # the GUI's Test button must always get an answer
            # Only the class: a traceback's locals could hold the secret.
            log.error(
                "Credentials check failed",
                component=COMPONENT,
                server=server,
                err=type(exc).__name__,
            )
            return CheckResult(False, f"Check failed: {type(exc).__name__}")
        return CheckResult(
            True,
            f"SRAPS accepted the key {creds.access_key_id} (company {catalogue.company_id})",
        )

    async def close(self) -> None:
        """Forget cached lookups; the shared HTTP client belongs to the service."""
        self._cache.clear()
        self._locks.clear()

    # -- credentials and cache ----------------------------------------------------------

    async def _target(self, device: Device) -> tuple[Credentials, _Catalogue, str]:
        mac = normalize_mac(device.mac)
        creds = await self._credentials(device.server)
        return creds, await self._catalogue(creds, mac), mac

    async def _credentials(self, server: int) -> Credentials:
        if self._mode == "tenant":
            stored = await self._source.get_credentials(self.name, server)
            if _usable(stored):
                return stored
            raise ProviderError(
                f"No SRAPS API keys for server {server} (tenant mode): "
                f"store them with PUT /providers/snom/credentials/{server}",
                Failure.PERMANENT,
            )
        stored = await self._source.get_credentials(self.name, 1)
        if _usable(stored):
            return stored
        key_id, secret = self._snom.access_key_id, self._snom.access_key_secret.get_secret_value()
        if key_id and secret:
            return Credentials(self.name, 1, key_id, secret)
        raise ProviderError(
            f"No SRAPS API keys for server {server} (master mode): set access_key_id and "
            "access_key_secret in [snom] of rps.ini or store them with "
            "PUT /providers/snom/credentials/1",
            Failure.PERMANENT,
        )

    async def _catalogue(self, creds: Credentials, mac: str) -> _Catalogue:
        # ``mac``: the device whose event needs the lookups, for the log lines (SPEC §5).
        key = _cache_key(creds)
        if hit := self._cache.get(key):
            return hit
        # One lookup per key even when a burst of events arrives on a cold cache.
        async with self._locks.setdefault(key, asyncio.Lock()):
            if hit := self._cache.get(key):
                return hit
            return await self._load(creds, await self._fetch_token(creds, mac), mac)

    async def _load(
        self, creds: Credentials, token: dict[str, object], mac: str = "-"
    ) -> _Catalogue:
        company_id = _company_id(token, creds.access_key_id)
        catalogue = _Catalogue(company_id, *await self._fetch_uuids(creds, mac))
        key = _cache_key(creds)
        # A changed secret for the same key id makes the old entry unreachable: drop it.
        for old in [k for k in self._cache if k[0] == key[0]]:
            del self._cache[old]
        self._cache[key] = catalogue
        return catalogue

    def _forget(self, creds: Credentials) -> None:
        self._cache.pop(_cache_key(creds), None)

    # -- SRAPS lookups ------------------------------------------------------------------

    async def _fetch_token(self, creds: Credentials, mac: str = "-") -> dict[str, object]:
        url = f"{self._snom.api_url}tokens/{quote(creds.access_key_id, safe='')}"
        response = await self._call(creds, "GET", url, operation="token", mac=mac)
        return _json_object(response, "the token lookup")

    async def _fetch_uuids(
        self, creds: Credentials, mac: str = "-"
    ) -> tuple[str, str | None, str | None]:
        found: dict[str, str | None] = dict.fromkeys(
            ("setting_server", "http_client_user", "http_client_pass")
        )
        url: str | None = f"{self._snom.api_url}settings/?page_size=1000"
        seen: set[str] = set()
        while url and url not in seen and len(seen) < MAX_PAGES:
            seen.add(url)
            response = await self._call(creds, "GET", url, operation="settings", mac=mac)
            _collect_uuids(_json(response, "the settings lookup"), found)
            if all(found.values()):
                break  # later pages cannot change the answer
            url = _next_link(response)
        server_uuid = found["setting_server"]
        if not server_uuid:
            raise ProviderError(
                "The SRAPS settings catalogue has no setting_server in section phone-settings",
                Failure.PERMANENT,
            )
        return server_uuid, found["http_client_user"], found["http_client_pass"]

    def _endpoint_url(self, catalogue: _Catalogue, mac: str) -> str:
        company = quote(catalogue.company_id, safe="")
        return f"{self._snom.api_url}companies/{company}/endpoints/{mac.lower()}"

    # -- HTTP ---------------------------------------------------------------------------

    async def _call(
        self,
        creds: Credentials,
        method: str,
        url: str,
        *,
        operation: str,
        mac: str = "-",
        body: dict[str, object] | None = None,
        ok: tuple[int, ...] = (),
        secrets: Iterable[str] = (),
        stale_on: tuple[int, ...] = (401,),
    ) -> httpx.Response:
        """One signed request; a non-2xx status not in ``ok`` raises ProviderError.

        ``operation`` (token, settings, register, deregister, lookup) labels its metrics.
        """
        key = hawk.HawkKey(creds.access_key_id, creds.access_key_secret)
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        response = await self._exchange(key, method, url, content, mac, operation)
        status = response.status_code
        if response.is_success or status in ok:
            return response
        if status in stale_on:
            self._forget(creds)
        raise to_provider_error(
            response,
            timeout=self._snom.timeout,
            now=self._clock() + self._offset,
            secrets=(creds.access_key_secret, *secrets),
        )

    async def _exchange(
        self,
        key: hawk.HawkKey,
        method: str,
        url: str,
        content: bytes | None,
        mac: str,
        operation: str,
    ) -> httpx.Response:
        response = await self._timed(key, method, url, content, mac, operation)
        # Retry once, never loop: a second 401 is a real rejection.
        if response.status_code == 401 and self._adjust_clock(key, response):
            response = await self._timed(key, method, url, content, mac, operation)
        return response

    async def _timed(
        self,
        key: hawk.HawkKey,
        method: str,
        url: str,
        content: bytes | None,
        mac: str,
        operation: str,
    ) -> httpx.Response:
        if self._observe is None:
            return await self._send(key, method, url, content, mac)
        started, status = time.monotonic(), "error"
        try:
            response = await self._send(key, method, url, content, mac)
            status = str(response.status_code)
            return response
        except ProviderError as err:
            status = "timeout" if isinstance(err.__cause__, httpx.TimeoutException) else "error"
            raise
        finally:
            self._observe(self.name, operation, status, time.monotonic() - started)

    async def _send(
        self, key: hawk.HawkKey, method: str, url: str, content: bytes | None, mac: str
    ) -> httpx.Response:
        headers = {"Accept": JSON, "Accept-Encoding": "gzip, deflate", "User-Agent": USER_AGENT}
        if content is not None:
            headers["Content-Type"] = JSON
        # Straight to the transport: httpx's client layer (cookies, redirects, auth hooks,
        # default headers) would only cost CPU on every call; SRAPS needs none of it.
        request = httpx.Request(method, url, content=content, headers=headers,
                                extensions={"timeout": self._timeout})
        # Sign the URL as it will be sent, so path and query match byte for byte.
        request.headers["Authorization"] = hawk.sign(
            key,
            method,
            str(request.url),
            timestamp=int(self._clock() + self._offset),
            content=content,
            content_type=JSON,
        )
        log.info("Sending Request", component=COMPONENT, mac=mac, url=str(request.url))
        try:
            response = await self._transport.handle_async_request(request)
            response.request = request
            try:
                await response.aread()
            finally:
                await response.aclose()
        except httpx.RequestError as exc:
            raise to_provider_error(exc, timeout=self._snom.timeout) from exc
        return response

    def _adjust_clock(self, key: hawk.HawkKey, response: httpx.Response) -> bool:
        server_ts = hawk.server_time(key, response.headers.get("WWW-Authenticate", ""))
        if server_ts is None:
            return False
        self._offset = server_ts - self._clock()
        log.warning("Clock adjusted", component=COMPONENT, offset=round(self._offset))
        return True


# -- small parsers ----------------------------------------------------------------------


def normalize_mac(value: str) -> str:
    """12 upper-case hex digits from any accepted spelling; PERMANENT error otherwise."""
    digits = _MAC_SEPARATORS.sub("", value)
    if not _MAC_DIGITS.fullmatch(digits):
        raise ProviderError(f"Invalid MAC {value!r}: need 12 hex digits", Failure.PERMANENT)
    return digits.upper()


def _usable(creds: Credentials | None) -> TypeGuard[Credentials]:
    return creds is not None and bool(creds.access_key_id) and bool(creds.access_key_secret)


def _cache_key(creds: Credentials) -> _CacheKey:
    # A digest, not the secret, so the cache never holds a second copy of it.
    digest = hashlib.sha256(creds.access_key_secret.encode()).hexdigest()
    return creds.access_key_id, digest


def _json(response: httpx.Response, what: str) -> object:
    try:
        data: object = response.json()
    except ValueError:
        raise ProviderError(
            f"SRAPS answered {what} with invalid JSON ({response.status_code})",
            Failure.PERMANENT,
            status=response.status_code,
        ) from None
    return data


def _json_object(response: httpx.Response, what: str) -> dict[str, object]:
    data = _json(response, what)
    if not isinstance(data, dict):
        raise ProviderError(f"SRAPS answered {what} with no JSON object", Failure.PERMANENT)
    return data


def _company_id(token: dict[str, object], key_id: str) -> str:
    links = token.get("links")
    company = links.get("company") if isinstance(links, dict) else None
    path = urlsplit(company).path if isinstance(company, str) else ""
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise ProviderError(
            f"SRAPS gave no links.company for the key {key_id}: cannot tell its company",
            Failure.PERMANENT,
        )
    return segments[-1]


def _collect_uuids(page: object, found: dict[str, str | None]) -> None:
    if not isinstance(page, list):
        raise ProviderError("SRAPS answered the settings lookup with no list", Failure.PERMANENT)
    for entry in page:
        if not isinstance(entry, dict) or entry.get("section") != PHONE_SETTINGS:
            continue
        name, uuid = entry.get("param_name"), entry.get("uuid")
        if name in found and not found[name] and isinstance(uuid, str) and uuid:
            found[name] = uuid


def _next_link(response: httpx.Response) -> str | None:
    target = response.links.get("next", {}).get("url")
    return str(response.url.join(target)) if target else None


def _rw(value: str) -> dict[str, object]:
    return {"value": value, "attrs": {"perm": "RW"}}


def _endpoint_body(mac: str, url: str, device: Device, catalogue: _Catalogue) -> dict[str, object]:
    settings: dict[str, object] = {catalogue.server_uuid: _rw(url)}
    # Without these settings in the catalogue the phone's credentials cannot be sent.
    if catalogue.user_uuid:
        settings[catalogue.user_uuid] = _rw(device.http_username)
    if catalogue.pass_uuid:
        settings[catalogue.pass_uuid] = _rw(device.http_password)
    return {"mac": mac.lower(), "autoprovisioning_enabled": True, "settings_manager": settings}
