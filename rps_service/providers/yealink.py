"""Yealink YMCS v2 (RPS inside the Yealink Management Cloud Service).

A factory-reset Yealink asks YMCS where to go and is sent to the device's
``uniqueServerUrl`` with its own ``authName``/``password`` (our per-device credentials).

* Auth: OAuth2 client credentials (:mod:`rps_service.providers.auth_ymcs`), tokens cached
  per account and refreshed 60 s before they expire; a 401 drops the token and the call is
  sent once more with a fresh one.
* Register: ``POST /v2/rps/devices`` with the serial number (every account may), or
  ``POST /v2/rps/addDevicesByMac`` when ``add_by_mac`` is on (Yealink enables that per
  account; others get 403 ``900403``). YMCS documents no edit: ``800003`` (the account
  already holds the MAC) is answered by a delete and a second add; ``800004`` means another
  organisation holds it. A batch item without a code is read by its words (its shape is not
  public: a guess, logged once), and an "exists" read that way is checked with a look-up
  before anything is deleted.
* Remove: ``POST /v2/rps/delDevices`` by MAC. Look-up and list: ``POST /v2/rps/listDevices``.

Batch calls answer 200 even when an item failed: ``failureCount`` and ``errors`` say so.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, SecretStr, model_validator

from rps_service.access import AccessMode
from rps_service.guesses import rely_on_guess
from rps_service.models import answer_mac
from rps_service.providers.auth_ymcs import YmcsAuth, token_request
from rps_service.providers.errors import (
    clean_text,
    error_text,
    owned_by_other,
    parse_retry_after,
)
from rps_service.providers.keyed import drop_accounts
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import ProviderSettings, http_url
from rps_service.providers.tokens import Token, TokenCache
from rps_service.providers.vendor import USER_AGENT, Account, ProviderContext, VendorProvider

#: The three public YMCS API hosts (System → Integration → API shows an account's).
REGION_HOSTS: Mapping[str, str] = {
    "us": "https://us-api.ymcs.yealink.com",
    "eu": "https://eu-api.ymcs.yealink.com",
    "au": "https://au-api.ymcs.yealink.com",
}
_YEALINK_DOMAIN = "yealink.com"
PAGE_SIZE = 100
MAX_PAGES = 10_000  # 1 000 000 devices: only stops a server whose totals never end
#: Seconds a token lives when the answer does not say (YMCS answers 3600).
DEFAULT_TOKEN_LIFETIME = 3600.0
SN_REASON = "required by Yealink YMCS unless add_by_mac = true"
BY_MAC_FORBIDDEN = (
    "YMCS refused addDevicesByMac: this account lacks the add-by-MAC permission (only "
    "Yealink can enable it). Ask Yealink to enable it, or set add_by_mac = false and send "
    "each phone's serial number (sn) in its add event")
BY_MAC_UNVERIFIED = (
    "whether Yealink enabled that permission for this account is not verified (YMCS shows "
    "it only by refusing an add with 900403: the first add by MAC tells, and this Test "
    "reports it from then on)")
# Codes whose meaning is plain from the vendor's message: fail at once, quote it.
_PERMANENT_CODES = frozenset({"800001", "800002", "800005", "800006", "800007", "800008",
                              "900400", "900404", "900409"})
_EXISTS, _OWNED = "800003", "800004"
_CODE_IN_TEXT = re.compile(r"\b(8000\d\d|900\d\d\d)\b")
# A batch item's words (its errorInfo), read only when it carries no code.
_OTHER_ORG_WORDS = re.compile(r"\b(?:an)?other organi[sz]ations?\b", re.IGNORECASE)
_EXISTS_WORDS = re.compile(r"\b(?:already exists?|exists?|existed|already)\b", re.IGNORECASE)
_MISSING_WORDS = re.compile(r"\b(?:not|n't|never) (?:be )?exists?\b|n't exists?\b",
                            re.IGNORECASE)
GUESS_OWNED = ("a YMCS batch item without a code whose words name another organization "
               "means another organisation holds the MAC (800004)")
GUESS_EXISTS = ("a YMCS batch item without a code whose words say it exists means this "
                "account already holds the MAC (800003): checked with a look-up before the "
                "delete and second add")


def _api_url(value: str) -> str:
    """An http(s) URL; a Yealink host must be one of the three YMCS API hosts."""
    http_url(value)
    host = (urlsplit(value).hostname or "").lower()
    known = {urlsplit(u).hostname for u in REGION_HOSTS.values()}
    if (host == _YEALINK_DOMAIN or host.endswith("." + _YEALINK_DOMAIN)) and host not in known:
        raise ValueError("must be one of the YMCS API hosts " + ", ".join(REGION_HOSTS.values())
                         + " (or set region = us | eu | au and leave api_url empty)")
    return value.rstrip("/")


class YealinkSettings(ProviderSettings):
    """``[yealink]``: the region (or an explicit ``api_url``), the AccessKey, ``add_by_mac``.

    ``region`` picks the API host; an explicit ``api_url`` wins (a proxy, the sandbox), but a
    ``*.yealink.com`` URL must be one of the three hosts, and the region of one it names.
    """

    credential_keys: ClassVar[tuple[str, ...]] = (
        "access_key_id", "access_key_secret", "add_by_mac")

    api_url: Annotated[str, AfterValidator(_api_url)] = REGION_HOSTS["us"]
    region: Literal["us", "eu", "au"] = "us"
    access_key_id: str = ""
    access_key_secret: SecretStr = SecretStr("")
    # Add by MAC only (addDevicesByMac): Yealink enables this per account; without it every
    # add event must carry the phone's serial number.
    add_by_mac: bool = False

    @model_validator(mode="before")
    @classmethod
    def _host_of_region(cls, data: Any) -> Any:
        if isinstance(data, dict) and not str(data.get("api_url") or "").strip():
            region = str(data.get("region") or "us").strip().lower()
            data = {**data, "api_url": REGION_HOSTS.get(region, REGION_HOSTS["us"])}
        return data

    @model_validator(mode="after")
    def _region_matches(self) -> Self:
        named = next((r for r, u in REGION_HOSTS.items() if u == self.api_url), None)
        if named is not None and "region" in self.model_fields_set and named != self.region:
            raise ValueError(f"api_url is the {named} host but region = {self.region}: "
                             "give one of them")
        return self


@dataclass(frozen=True)
class _Refusal:
    """A failed add, as a code (``800003``...) and the vendor's words."""

    code: str
    text: str
    status: int
    #: The code was read from the words of a batch item that gave none (a guess).
    worded: bool = False


class YealinkProvider(VendorProvider):
    """Yealink YMCS v2 (docs/vendors/yealink.md)."""

    name = "yealink"
    label = "Yealink"
    service = "YMCS"
    settings_class = YealinkSettings
    settings: YealinkSettings
    access = AccessMode.CREDENTIALS
    credentials_noun = "API keys"
    can_list = True

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.tokens: TokenCache[Account] = TokenCache(self._fetch_token, refresh_before=60.0,
                                                      clock=self.clock)
        #: Accounts whose last addDevicesByMac YMCS refused for want of the permission.
        self._by_mac_refused: dict[str, str] = {}

    # -- intake ---------------------------------------------------------------------------

    async def event_problem(self, action: str, server: int | None,
                            fields: Mapping[str, object]) -> tuple[str, str] | None:
        """An add needs ``sn`` unless the account adds by MAC."""
        if problem := await super().event_problem(action, server, fields):
            return problem
        if action != "add" or fields.get("sn"):
            return None
        if server is None and self.context.mode == "tenant":
            return None  # whose account is not known yet: the worker says it if need be
        if await self._adds_by_mac(server or 1):
            return None
        return "sn", SN_REASON

    async def _adds_by_mac(self, server: int) -> bool:
        try:
            account = await self.account(server)
        except ProviderError:  # no credentials yet: the event fails later, saying so
            return self.settings.add_by_mac
        return account.flag("add_by_mac")

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        by_mac = account.flag("add_by_mac")
        if not by_mac and not device.sn:
            raise ProviderError(
                f"No serial number for {device.mac}: YMCS adds a device with its sn unless "
                "add_by_mac = true (send sn in the add event)", Failure.PERMANENT)
        refusal = await self._add(account, device, by_mac)
        if refusal is not None and refusal.code == _EXISTS:
            # Already in this account (perhaps with another URL): YMCS has no edit call.
            await self._confirm_ours(account, device, refusal)
            await self._delete(account, device.mac)
            refusal = await self._add(account, device, by_mac)
        if refusal is not None:
            raise self._refused(refusal, device.mac)

    async def _confirm_ours(self, account: Account, device: Device, refusal: _Refusal) -> None:
        """Before a delete on an "exists" read from words alone, see the device in this
        account's list (which shows only its own devices); not there, nothing is deleted."""
        if not refusal.worded:
            return  # 800003: YMCS's code for "this account already holds it"
        rely_on_guess(self.label, GUESS_EXISTS)
        if await self.vendor_lookup(account, device) is None:
            raise ProviderError(
                f"{refusal.status}: {refusal.text}: read as \"already exists\", but the MAC "
                "is not among this account's YMCS devices, so nothing was deleted",
                Failure.PERMANENT, status=refusal.status,
                hint="look the MAC up in the YMCS portal")

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        await self._delete(account, device.mac)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        page = await self._list(account, device.mac, {"mac": device.mac.lower()}, 0, 10)
        for entry in page.get("data") or ():
            record = _record(entry)
            if record is not None and record.mac == device.mac:
                return record
        return None

    async def vendor_list(self, account: Account) -> AsyncIterator[VendorRecord]:
        skip = 0
        for _ in range(MAX_PAGES):
            page = await self._list(account, "-", {}, skip, PAGE_SIZE, count=True)
            data = page.get("data") or []
            if not isinstance(data, list):
                raise ProviderError(f"{self.service} answered the device list with no list",
                                    Failure.PERMANENT)
            for entry in data:
                record = _record(entry)
                if record is not None:
                    yield record
            skip += len(data)
            total = page.get("total")
            if not data or (isinstance(total, int) and skip >= total) or (
                    not isinstance(total, int) and len(data) < PAGE_SIZE):
                return

    async def vendor_check(self, account: Account) -> str:
        self.tokens.forget(account)  # prove the keys now, not a token from earlier
        page = await self._list(account, "-", {}, 0, 1, count=True)
        total = page.get("total")
        held = f"; the account holds {total} RPS devices" if isinstance(total, int) else ""
        by_mac = account.flag("add_by_mac")
        if by_mac and account.key in self._by_mac_refused:
            raise ProviderError(f"{self._by_mac_refused[account.key]}: {BY_MAC_FORBIDDEN}",
                                Failure.PERMANENT)
        # YMCS answers the permission only to an add (900403): no call shows it without
        # adding a device, so the Test says what it did not check.
        how = (f"adding by MAC (add_by_mac = true): {BY_MAC_UNVERIFIED}" if by_mac
               else "adding with serial numbers (add_by_mac = false)")
        return (f"{self.service} accepted the AccessKey {account.text('access_key_id')}"
                f"{held}; {how}")

    async def close(self) -> None:
        await super().close()
        self.tokens.clear()
        self._by_mac_refused.clear()

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        self.tokens.forget_accounts(keys)
        drop_accounts(self._by_mac_refused, keys)

    # -- calls ----------------------------------------------------------------------------

    async def _add(self, account: Account, device: Device, by_mac: bool) -> _Refusal | None:
        """Add the device; None when added, else why not (raises what is not a refusal)."""
        item: dict[str, Any] = {"mac": device.mac.lower()}
        if not by_mac:
            item["sn"] = device.sn
        item |= {"uniqueServerUrl": device.url, "authName": device.http_username,
                 "password": device.http_password}
        secrets = (device.http_password,)
        if not by_mac:
            response = await self._call(account, "register", "/v2/rps/devices", item,
                                        device.mac)
            if response.is_success:
                return None
            return self._refusal(response, account, secrets)
        response = await self._call(account, "register", "/v2/rps/addDevicesByMac", [item],
                                    device.mac)
        # What the account's permission is, as far as an answer shows it (for the Test).
        if _code(response) == "900403":
            self._by_mac_refused[account.key] = (
                f"the last add by MAC was refused ({response.status_code}: 900403; once "
                "Yealink has enabled the permission, retry that event)")
        elif response.is_success:
            self._by_mac_refused.pop(account.key, None)
        if not response.is_success:
            return self._refusal(response, account, secrets)
        return self._batch_refusal(response, "the add by MAC", secrets)

    async def _delete(self, account: Account, mac: str) -> None:
        """Delete the MAC from the account; a MAC it does not hold is already deleted."""
        response = await self._call(account, "deregister", "/v2/rps/delDevices",
                                    {"deviceIdType": "mac", "deviceIds": [mac.lower()]}, mac)
        if response.is_success:
            refusal = self._batch_refusal(response, "the delete", ())
            if refusal is None:
                return
        else:
            err = self.error(response, account)
            if err.failure is not Failure.PERMANENT or response.status_code not in (400, 404):
                raise err
            refusal = _Refusal(_code(response), self._text(response, account),
                               response.status_code)
        # YMCS reports a MAC it does not hold as a failed item: look before failing.
        if await self.vendor_lookup(account, Device(mac=mac, server=account.server)) is None:
            return
        raise self._refused(refusal, mac)

    async def _list(self, account: Account, mac: str, flt: dict[str, str], skip: int,
                    limit: int, *, count: bool = False) -> dict[str, Any]:
        body = {"skip": skip, "limit": limit, "autoCount": count, "filter": flt}
        operation = "lookup" if flt else "list"
        response = await self._call(account, operation, "/v2/rps/listDevices", body, mac)
        self.expect(response, account)
        return self.json_object(response, "the device list")

    async def _call(self, account: Account, operation: str, path: str, body: object,
                    mac: str) -> httpx.Response:
        """One API call, signed (a token is fetched first when the cache has none)."""
        return await self.request(
            account, "POST", self._url(path), operation=operation, mac=mac,
            json_body=body, auth=YmcsAuth(self.tokens, account, mac, self.clock))

    async def _fetch_token(self, account: Account, previous: Token | None, mac: str) -> Token:
        request = token_request(self.settings.api_url, account.text("access_key_id"),
                                account.text("access_key_secret"), user_agent=USER_AGENT,
                                clock=self.clock)
        response = await self.http.send(request, account=account.key, operation="token",
                                        mac=mac)
        if not response.is_success:
            raise self.error(response, account)
        data = self.json_object(response, "the token request")
        value, lifetime = data.get("access_token"), data.get("expires_in")
        if not isinstance(value, str) or not value:
            raise ProviderError(f"{self.service} answered the token request without an "
                                "access_token", Failure.PERMANENT, status=200)
        if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        return Token(value, self.clock() + float(lifetime))

    def _url(self, path: str) -> str:
        return self.settings.api_url.rstrip("/") + path

    # -- answers --------------------------------------------------------------------------

    def _refusal(self, response: httpx.Response, account: Account,
                 secrets: tuple[str, ...]) -> _Refusal:
        """A refused add as a :class:`_Refusal` when its code is the vendor's ruling on the
        device; anything else (login, throttling, outages) raises its classified error."""
        code = _code(response)
        if code in (_EXISTS, _OWNED) or code in _PERMANENT_CODES:
            return _Refusal(code, self._text(response, account, secrets), response.status_code)
        raise self.error(response, account, secrets)

    def _batch_refusal(self, response: httpx.Response, what: str,
                       secrets: tuple[str, ...]) -> _Refusal | None:
        """A 200 batch answer's first failed item, or None when every item succeeded."""
        data = self.json_object(response, what)
        failures, successes = data.get("failureCount"), data.get("successCount")
        listed = data.get("errors")
        errors: list[Any] = listed if isinstance(listed, list) else []
        if not failures and not errors and successes != 0:
            return None
        first = next((e for e in errors if isinstance(e, dict)), {})
        text = next((str(first[k]) for k in ("errorInfo", "msg", "message")
                     if first.get(k)), f"{what} failed with no reason given")
        code = next((str(first[k]).strip() for k in ("code", "errorCode") if first.get(k)), "")
        found = _CODE_IN_TEXT.search(text)
        code = code or (found.group(1) if found else "")
        worded = not code and bool(_code_of_words(text))
        return _Refusal(code or _code_of_words(text), clean_text(text, secrets),
                        response.status_code, worded)

    def _refused(self, refusal: _Refusal, mac: str) -> ProviderError:
        where = f"{refusal.status}: {refusal.text}"
        if refusal.code:
            where += f" ({refusal.code})"
        if refusal.code == _OWNED:
            if refusal.worded:
                rely_on_guess(self.label, GUESS_OWNED)
            return owned_by_other(self.service, where, refusal.status,
                                  "release it in the YMCS account that holds it or ask "
                                  "Yealink to move it")
        if refusal.code == _EXISTS:
            return ProviderError(f"{where}: YMCS still holds {mac} after deleting it",
                                 Failure.TRANSIENT, status=refusal.status)
        hint = "check the event's sn" if refusal.code == "800002" else ""
        return ProviderError(where, Failure.PERMANENT, status=refusal.status, hint=hint)

    def _text(self, response: httpx.Response, account: Account,
              secrets: tuple[str, ...] = ()) -> str:
        return error_text(response, (*account.secrets, *secrets))

    def classify(self, response: httpx.Response, text: str, account: Account
                 ) -> ProviderError | None:
        status, code = response.status_code, _code(response)
        where = f"{status}: {text}" + (f" ({code})" if code else "")
        if code == _OWNED:
            return owned_by_other(self.service, where, status)
        if status == 429 or code == "900429":
            retry = parse_retry_after(response.headers.get("Retry-After"), self.clock())
            return ProviderError(where, Failure.THROTTLED, status=status, retry_after=retry)
        if code == "900403" and response.request.url.path.endswith("/addDevicesByMac"):
            return ProviderError(f"{where}: {BY_MAC_FORBIDDEN}", Failure.PERMANENT,
                                 status=status)
        if code == "500403":  # our nonce was taken for a replay: a new one will do
            return ProviderError(where, Failure.TRANSIENT, status=status)
        if code == "500401":
            return ProviderError(where, Failure.PERMANENT, status=status, hint=(
                "YMCS refused the timestamp/nonce headers: check this host's clock (NTP)"))
        if code == "900401":
            return ProviderError(where, Failure.BAD_LOGIN, status=status, hint=(
                "YMCS refused a freshly issued token: " + self.bad_login_hint()))
        if _oauth_error(response) in ("invalid_client", "unauthorized_client"):
            return ProviderError(where, Failure.BAD_LOGIN, status=status,
                                 hint=self.bad_login_hint())
        if code == "900403":
            return ProviderError(where, Failure.PERMANENT, status=status, hint=(
                "the AccessKey may lack the RPS permission in YMCS"))
        if code in _PERMANENT_CODES:
            return ProviderError(where, Failure.PERMANENT, status=status)
        return None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _code(response: httpx.Response) -> str:
    """The YMCS error code of an answer (``800003``), or ''."""
    code = _json(response).get("code")
    return str(code).strip() if isinstance(code, str | int) and code != "" else ""


def _oauth_error(response: httpx.Response) -> str:
    error = _json(response).get("error")
    return error.strip().lower() if isinstance(error, str) else ""


def _code_of_words(text: str) -> str:
    """A batch item's code from its words, when it gives none (the shape is not public):
    matched tolerantly, and only ever a guess (see GUESS_OWNED, GUESS_EXISTS)."""
    if _OTHER_ORG_WORDS.search(text):
        return _OWNED
    if _EXISTS_WORDS.search(text) and not _MISSING_WORDS.search(text):
        return _EXISTS
    return ""


def _record(entry: object) -> VendorRecord | None:
    if not isinstance(entry, dict) or not (mac := answer_mac(entry.get("mac"))):
        return None
    url = entry.get("uniqueServerUrl") or entry.get("serverUrl")
    return VendorRecord(mac, url if isinstance(url, str) else None)
