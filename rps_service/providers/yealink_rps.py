"""Yealink's RPS JSON API v3.6 (``/api/open/v1/``, ``X-Ca-*`` signature): the pre-YMCS RPS.

For accounts that still hold RPS-platform AccessKeys (YMCS hosts refuse this scheme; the
YMCS provider is ``yealink``). The phone gets its own URL and per-device credentials
(``uniqueServerUrl``, ``authName``, ``password``), so it logs in at ``/ztprov/`` like a
Snom phone does.

Wire facts (the vendor's own signing demo and four or more public clients agree unless said
otherwise):

* every call signed by :class:`~rps_service.providers.auth_xca.XcaAuth`; ``POST`` calls
  carry a JSON body and no query, ``GET`` calls a query and no body;
* answers are HTTP 200 with ``{ret, data, error}``: ``ret >= 0`` is success, else
  ``error.msg`` names the reason: ``device.mac.existed`` (already this account's),
  ``device.mac.added.by.other`` / ``device.operate.forbidden`` (another enterprise's, one
  client), ``device.not.found`` (one client);
* ``server/add`` ``{serverName, url}`` (names of at most 20 characters, unique across all
  Yealink enterprises) and ``server/list`` ``{key, skip, limit, autoCount}``;
* ``device/add`` ``{macs, serverId, uniqueServerUrl, authName, password}``; for a MAC
  already ours ``device/edit`` ``{id, …}`` with the id found by ``device/list``, whose
  ``key`` search is fuzzy (the whole MAC is matched here);
* ``device/delete``: the public clients disagree (``{ids}`` in four, ``{macs}`` in two);
  this provider sends ``ids`` (the majority, and the form of the vendor's reference as
  one client cites it), found with ``device/list`` like an edit's;
* look-up ``device/checkMac?mac=`` → ``{existed, self}`` (``self`` in one client).

See docs/vendors/yealink-rps.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from rps_service.access import AccessMode
from rps_service.logs import get_logger
from rps_service.models import answer_mac
from rps_service.providers.auth_xca import XcaAuth
from rps_service.providers.errors import clean_text, owned_by_other
from rps_service.providers.keyed import KeyedLocks, drop_accounts
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import BaseUrl, ProviderSettings
from rps_service.providers.vendor import Account, ProviderContext, VendorProvider

log = get_logger()

API_PATH = "api/open/v1/"
JSON_UTF8 = "application/json;charset=UTF-8"
NAME_LIMIT = 20
PAGE_SIZE = 100
MAX_PAGES = 1000  # a look-up reads at most 100,000 devices

EXISTED = "device.mac.existed"
NOT_FOUND = "device.not.found"
OWNED_KEYS = frozenset({"device.mac.added.by.other", "device.operate.forbidden"})
_THROTTLED = re.compile(r"too.?(?:many|frequent)|frequen|rate.?limit|throttl", re.IGNORECASE)
_SIGNING = re.compile(r"sign|nonce|timestamp|access.?key|\bkey\b|api\.key|unauthori",
                      re.IGNORECASE)
_SERVER = re.compile(r"server", re.IGNORECASE)
_EXISTS = re.compile(r"exist|already|duplicat", re.IGNORECASE)

CLOCK_HINT = ("and this host's clock: RPS checks the signature and that X-Ca-Timestamp is "
              "recent")


class YealinkRpsSettings(ProviderSettings):
    """``[yealink-rps]``: the RPS platform's AccessKey."""

    credential_keys: ClassVar[tuple[str, ...]] = ("access_key_id", "access_key_secret")

    api_url: BaseUrl = "https://api-dm.yealink.com:8443/"
    access_key_id: str = ""
    access_key_secret: SecretStr = SecretStr("")


@dataclass(frozen=True)
class Answer:
    """An RPS envelope: ``ret`` (>= 0 is success), the error key and texts, ``data``."""

    ret: int
    key: str
    detail: str
    data: Any

    @property
    def ok(self) -> bool:
        return self.ret >= 0

    def text(self, call: str) -> str:
        extra = f" ({self.detail})" if self.detail else ""
        return f"{call} answered ret {self.ret}: {self.key or 'no error key'}{extra}"


def server_name(account: str, url: str) -> str:
    """The RPS server name for ``url`` in ``account``: stable, 20 characters, unlikely to
    be another enterprise's (names are unique across all of them)."""
    digest = hashlib.sha256(f"{account}\0{url}".encode()).hexdigest()
    return f"rps-{digest[:NAME_LIMIT - 4]}"


def rps_mac(mac: str) -> str:
    """``001565ABCDEF`` → ``001565abcdef`` (lower case, no separators, as RPS takes it)."""
    return mac.lower()



def error_key(data: Any) -> tuple[str, str]:
    """``(error.msg, the field errors' msgs)`` of an envelope."""
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return "", ""
    key = error.get("msg")
    fields = error.get("fieldErrors")
    details = [str(f.get("msg")) for f in fields if isinstance(f, dict) and f.get("msg")] \
        if isinstance(fields, list) else []
    return (key if isinstance(key, str) else ""), "; ".join(details)


class YealinkRpsProvider(VendorProvider):
    """Yealink RPS JSON API v3.6."""

    name = "yealink-rps"
    label = "Yealink"
    service = "Yealink RPS"
    settings_class = YealinkRpsSettings
    access = AccessMode.CREDENTIALS
    can_list = True
    credentials_noun = "AccessKey"

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self._servers: dict[tuple[str, str], object] = {}  # (account key, URL) → server id
        self._locks: KeyedLocks[tuple[str, str]] = KeyedLocks()

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        url = device.url.replace("{mac}", rps_mac(device.mac))
        fields = {"uniqueServerUrl": url, "authName": device.http_username,
                  "password": device.http_password}
        answer, server = await self._add(account, device, fields)
        if answer.ok:
            return
        if answer.key != EXISTED:
            raise self._refusal(answer, "device/add")
        entry = await self._find(account, device.mac)
        if entry is None:  # "already added", yet not among ours
            raise owned_by_other(self.service, f"{answer.text('device/add')}; the MAC is "
                                 "not among this account's devices")
        answer = await self._call(account, "device/edit", device.mac, "register",
                                  {"id": entry.get("id"), "serverId": server, **fields},
                                  secrets=(device.http_password,))
        if not answer.ok:
            raise self._refusal(answer, "device/edit")
        log.info("Device re-pointed", component=self.label, mac=device.mac)

    async def _add(self, account: Account, device: Device, fields: dict[str, str]
                   ) -> tuple[Answer, object]:
        """``device/add`` to the account's server for the device's URL; once more when
        RPS says the server is gone (deleted behind our back)."""
        base = device.url.split("{mac}")[0]
        body = {"macs": [rps_mac(device.mac)], **fields}
        server = await self._server(account, base, device.mac)
        answer = await self._call(account, "device/add", device.mac, "register",
                                  {**body, "serverId": server},
                                  secrets=(device.http_password,))
        if answer.ok or not _SERVER.search(answer.key) or answer.key in OWNED_KEYS:
            return answer, server
        self._servers.pop((account.key, base), None)
        server = await self._server(account, base, device.mac)
        answer = await self._call(account, "device/add", device.mac, "register",
                                  {**body, "serverId": server},
                                  secrets=(device.http_password,))
        return answer, server

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        entry = await self._find(account, device.mac)
        if entry is None:
            log.info("Nothing to remove", component=self.label, mac=device.mac)
            return
        answer = await self._call(account, "device/delete", device.mac, "deregister",
                                  {"ids": [entry.get("id")]})
        if not answer.ok and answer.key != NOT_FOUND:
            raise self._refusal(answer, "device/delete")

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        answer = await self._call(account, "device/checkMac", device.mac, "lookup",
                                  params={"mac": rps_mac(device.mac)}, method="GET")
        if not answer.ok:
            raise self._refusal(answer, "device/checkMac")
        data = answer.data if isinstance(answer.data, dict) else {}
        if data.get("existed") is False:
            return None
        if data.get("self") is False:
            return VendorRecord(device.mac, None, ours=False,
                                detail="another Yealink RPS enterprise holds it")
        entry = await self._find(account, device.mac)
        if entry is None:
            if data.get("existed") is True:
                return VendorRecord(device.mac, None, ours=False,
                                    detail="not among this account's devices")
            return None
        return self._record(entry)

    async def vendor_list(self, account: Account) -> AsyncIterator[VendorRecord]:
        async for entry in self._entries(account, "-", None):
            record = self._record(entry)
            if record.mac:
                yield record

    async def vendor_check(self, account: Account) -> str:
        answer = await self._call(account, "server/list", "-", "check",
                                  {"skip": 0, "limit": 1, "autoCount": True})
        if not answer.ok:
            raise self._refusal(answer, "server/list")
        total = answer.data.get("total") if isinstance(answer.data, dict) else None
        servers = f"; {total} servers" if isinstance(total, int) else ""
        return (f"Yealink RPS accepted the AccessKey {account.text('access_key_id')}"
                f"{servers}")

    async def close(self) -> None:
        await super().close()
        self._servers.clear()

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        drop_accounts(self._servers, keys)

    # -- servers and devices --------------------------------------------------------------

    async def _server(self, account: Account, url: str, mac: str) -> object:
        """The id of this account's server for ``url``: found by its name, else added."""
        key = (account.key, url)
        if key in self._servers:
            return self._servers[key]
        async with self._locks(key):
            if key in self._servers:
                return self._servers[key]
            name = server_name(account.text("access_key_id"), url)
            server = await self._find_server(account, name, mac)
            if server is None:
                answer = await self._call(account, "server/add", mac, "add_server",
                                          {"serverName": name, "url": url})
                data = answer.data if isinstance(answer.data, dict) else {}
                server = data.get("id") if answer.ok else None
                if server is None and (answer.ok or _EXISTS.search(answer.key)):
                    server = await self._find_server(account, name, mac)
                if server is None:
                    if answer.ok or _EXISTS.search(answer.key):
                        raise ProviderError(
                            f"{self.service} has a server named {name} that this account "
                            "does not list", Failure.PERMANENT,
                            hint="another Yealink enterprise may hold the name: tell the "
                                 "rps-service maintainers")
                    raise self._refusal(answer, "server/add")
            self._servers[key] = server
            return server

    async def _find_server(self, account: Account, name: str, mac: str) -> object | None:
        answer = await self._call(account, "server/list", mac, "list_servers",
                                  {"key": name, "skip": 0, "limit": PAGE_SIZE,
                                   "autoCount": True})
        if not answer.ok:
            raise self._refusal(answer, "server/list")
        for entry in _items(answer.data):
            server: object = entry.get("id")
            if entry.get("serverName") == name and server is not None:
                return server
        return None

    async def _find(self, account: Account, mac: str) -> dict[str, Any] | None:
        """The account's device with this MAC (``device/list``'s key is a fuzzy search)."""
        async for entry in self._entries(account, mac, rps_mac(mac)):
            if answer_mac(entry.get("mac")) == mac:
                return entry
        return None

    async def _entries(self, account: Account, mac: str, key: str | None
                       ) -> AsyncIterator[dict[str, Any]]:
        for page in range(MAX_PAGES):
            body: dict[str, Any] = {"skip": page * PAGE_SIZE, "limit": PAGE_SIZE,
                                    "autoCount": True}
            if key is not None:
                body["key"] = key
            answer = await self._call(account, "device/list", mac, "list", body)
            if not answer.ok:
                raise self._refusal(answer, "device/list")
            items = _items(answer.data)
            for entry in items:
                yield entry
            total = answer.data.get("total") if isinstance(answer.data, dict) else None
            seen = page * PAGE_SIZE + len(items)
            if len(items) < PAGE_SIZE or (isinstance(total, int) and seen >= total):
                return

    def _record(self, entry: Mapping[str, Any]) -> VendorRecord:
        url = entry.get("uniqueServerUrl") or entry.get("serverUrl")
        return VendorRecord(answer_mac(entry.get("mac")), url if isinstance(url, str) else None,
                            detail=str(entry.get("serverName") or ""))

    # -- HTTP -----------------------------------------------------------------------------

    async def _call(self, account: Account, path: str, mac: str, operation: str,
                    body: Mapping[str, Any] | None = None, *,
                    params: Mapping[str, str] | None = None, method: str = "POST",
                    secrets: tuple[str, ...] = ()) -> Answer:
        """One signed call; an envelope (``ret`` < 0 included) or a classified error."""
        auth = XcaAuth(account.text("access_key_id"), account.text("access_key_secret"),
                       clock=self.clock)
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        response = await self.request(
            account, method, f"{self.settings.api_url}{API_PATH}{path}", operation=operation,
            mac=mac, content=content, content_type=JSON_UTF8 if content else None,
            params=params, auth=auth)
        if not response.is_success:
            raise self.error(response, account, secrets)
        data = self.json_value(response, path)
        if not isinstance(data, dict) or not isinstance(data.get("ret"), int) \
                or isinstance(data.get("ret"), bool):
            raise ProviderError(f"{self.service} answered {path} without ret",
                                Failure.PERMANENT, status=response.status_code)
        key, detail = error_key(data)
        masked = (*account.secrets, *secrets)
        return Answer(data["ret"], clean_text(key, masked), clean_text(detail, masked),
                      data.get("data"))

    def classify(self, response: httpx.Response, text: str, account: Account
                 ) -> ProviderError | None:
        """A refusal answered with an HTTP error status, read by its ``error.msg``."""
        try:
            key, _ = error_key(response.json())
        except ValueError:
            key = ""
        status = response.status_code
        if key in OWNED_KEYS:
            return owned_by_other(self.service, f"{status}: {key}", status)
        if status == 429 or _THROTTLED.search(key):
            return None  # the shared rule: throttled, with Retry-After
        if status in (401, 403) or (key and _SIGNING.search(key)):
            said = clean_text(key, account.secrets) or text
            return ProviderError(f"{status}: {said}", Failure.BAD_LOGIN, status=status,
                                 hint=self.bad_login_hint())
        return None

    def _refusal(self, answer: Answer, call: str) -> ProviderError:
        text = answer.text(call)
        if answer.key in OWNED_KEYS:
            return owned_by_other(self.service, text)
        if _THROTTLED.search(answer.key):
            return ProviderError(text, Failure.THROTTLED)
        if _SIGNING.search(answer.key):
            return ProviderError(text, Failure.BAD_LOGIN, hint=self.bad_login_hint())
        return ProviderError(text, Failure.PERMANENT)

    def bad_login_hint(self) -> str:
        return f"{self.credentials_hint()} {CLOCK_HINT}"


def _items(data: Any) -> list[dict[str, Any]]:
    """The entries of a list answer: ``data.data`` (a page), or ``data`` itself."""
    items = data.get("data") if isinstance(data, dict) else data
    return [e for e in items if isinstance(e, dict)] if isinstance(items, list) else []
