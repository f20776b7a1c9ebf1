"""Grandstream GDMS OpenAPI: claim a phone (MAC and serial number) into the account's site.

GDMS is itself the phones' provisioning source: a claimed phone asks GDMS at its factory
reset, and GDMS hands it the configuration of the site it belongs to. No call sets a URL per
device, so nothing per device reaches the phone from us: the site's template (set once in
the GDMS portal) points the phones at the PBX. See docs/vendors/grandstream.md.

Wire facts (two or more public clients agree unless said otherwise):

* token: ``POST /oapi/oauth/token`` (form), password grant with ``password`` =
  hex(SHA-256(hex(MD5(login password)))), ``client_id``, ``client_secret``; the answer has
  ``access_token``, ``refresh_token``, ``expires_in`` (about an hour); a refresh grant
  renews it; failures are OAuth2 ``{error, error_description}``;
* every call: ``/oapi/v1.0.0/<path>?access_token=…&timestamp=…&signature=…``
  (:mod:`~rps_service.providers.auth_gdms`), answered ``{retCode, msg, data}``, 0 = OK;
* register: ``POST device/add`` with a JSON array ``[{mac, sn, siteId, deviceName?}]``;
* list: ``POST device/list`` ``{pageNum, pageSize}`` → ``data.result`` and ``data.pages``;
* Test: the token and ``GET site/list``.

Unconfirmed, so tolerant: the ``retCode`` values (answers are read by their ``msg``), the
MAC's form (colons, as one client sends it; another says both forms work), "already
exists" meaning ours (checked with a look-up in ``device/list``), and the remove call
``device/delete`` ``{macList}`` (no public client has seen it work: experimental).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr, field_validator

from rps_service.access import AccessMode
from rps_service.guesses import rely_on_guess
from rps_service.logs import get_logger
from rps_service.models import answer_mac
from rps_service.providers.auth_gdms import GdmsAuth, password_hash
from rps_service.providers.errors import clean_text, owned_by_other
from rps_service.providers.keyed import KeyedLocks, drop_accounts
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import BaseUrl, ProviderSettings
from rps_service.providers.tokens import Token, TokenCache
from rps_service.providers.vendor import Account, ProviderContext, VendorProvider

log = get_logger()

API_PATH = "oapi/v1.0.0/"
TOKEN_PATH = "oapi/oauth/token"  # noqa: S105 - a path, not a password
FORM = "application/x-www-form-urlencoded"
#: Answers are read by their words: ask for English ones.
LANGUAGE = {"Accept-Language": "en-US,en;q=0.9"}
#: Tokens live about an hour; renew (refresh grant) this long before they expire.
REFRESH_BEFORE = 300.0
DEFAULT_EXPIRES_IN = 3600
PAGE_SIZE = 100  # device/list; peers use 100 to 1000, GDMS documents no maximum
MAX_PAGES = 1000  # a look-up reads at most 100,000 devices
LIST_TTL = 300.0  # seconds a device list read after "already exists" is reused
NAME_LIMIT = 64
SITE_ID = re.compile(r"[1-9][0-9]{0,18}")

EXPERIMENTAL_HINT = ("device/delete is an unconfirmed GDMS call: if the device stays in "
                     "GDMS, delete it in the GDMS portal")
SITE_HINT = ("check site_id: the number of the GDMS site the phones belong to (the Test "
             "button lists the organisation's sites)")
SERIAL_HINT = ("check the event's sn: the serial number on the phone's label, which GDMS "
               "checks against the MAC")
CLOCK_HINT = ("check client_secret and this host's clock: GDMS refused the request's "
              "signature or timestamp")


def _words(pattern: str) -> re.Pattern[str]:
    """``pattern`` as whole words, in any case: "assigned" holds no ``sign``."""
    return re.compile(rf"(?<![a-z])(?:{pattern})(?![a-z])", re.IGNORECASE)


# GDMS publishes no retCode values: a refusal is read by the words of its msg.
_MISSING = re.compile(r"(?:(?<![a-z])not|n't) (?:be )?(?:exists?|existed|found)(?![a-z])"
                      r"|(?<![a-z])(?:no such|non-?exist(?:ent|ing)?)(?![a-z])", re.IGNORECASE)
_EXISTS = _words(r"exists?|existed|existing|already|duplicated?|duplicates")
_OTHER_OWNER = _words(r"another|other (?:org|orgs|organi[sz]ations?|users?|accounts?"
                      r"|customers?|company|companies)")
_THROTTLED = _words(r"too (?:many|frequent(?:ly)?)|frequen(?:cy|t|tly)|rate.?limit(?:s|ed)?"
                    r"|limit exceeded|throttl(?:e|ed|es|ing)")
_TOKEN = _words(r"tokens?")
_SIGNING = _words(r"sign|signs|signed|signing|signatures?|timestamps?")
_SITE = _words(r"sites?|site_?ids?")
_SERIAL = _words(r"sn|serial|serials|serial ?numbers?|serialnumbers?|serial_?no")
#: The guesses a reading of ``msg`` relies on (logged once when first relied on).
GUESS_DELETE = "GDMS removes a device with device/delete {macList} (seen in no client)"
GUESS_OWNER = ("a GDMS msg naming another organisation, user or account means another "
               "GDMS account holds the MAC")
GUESS_MISSING = ("a GDMS device/delete msg saying the device does not exist or is not found "
                 "means it is already removed")
GUESS_THROTTLED = ("a GDMS msg speaking of too many or too frequent requests or a rate "
                   "limit means the login is throttled")
GUESS_STALE_LOGIN = "a GDMS msg naming the token means the login's token was refused"
GUESS_SIGNING = "a GDMS msg naming the signature or timestamp means the signature was refused"

#: The MAC of the event an operation runs for, for the token request's log line.


class GrandstreamSettings(ProviderSettings):
    """``[grandstream]``: the GDMS login, its API developer keys and the phones' site."""

    credential_keys: ClassVar[tuple[str, ...]] = (
        "username", "password", "client_id", "client_secret", "site_id")

    api_url: BaseUrl = "https://www.gdms.cloud/"  # EU accounts: https://eu.gdms.cloud/
    username: str = ""
    password: SecretStr = SecretStr("")  # the GDMS login password (sent hashed)
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    site_id: str = ""

    @field_validator("site_id")
    @classmethod
    def _site_number(cls, value: str) -> str:
        if value and not SITE_ID.fullmatch(value):
            raise ValueError("must be the number of a GDMS site (the Test button lists them)")
        return value


@dataclass(frozen=True)
class Envelope:
    """A GDMS answer: ``retCode`` (0 = OK), ``msg`` (secrets masked) and ``data``."""

    code: int | str
    msg: str
    data: Any

    @property
    def ok(self) -> bool:
        return str(self.code) == "0"

    def text(self, call: str) -> str:
        return f"{call} answered retCode {self.code}: {self.msg or 'no message'}"


class GrandstreamProvider(VendorProvider):
    """Grandstream GDMS OpenAPI."""

    name = "grandstream"
    label = "Grandstream"
    service = "GDMS"
    settings_class = GrandstreamSettings
    access = AccessMode.NONE  # the site's template points phones at the PBX
    can_list = True
    credentials_noun = "login"

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.tokens: TokenCache[Account] = TokenCache(
            self._fetch_token, refresh_before=REFRESH_BEFORE, clock=context.clock)
        # account key → (read at, MAC → device/list entry): see _org_device.
        self._known: dict[str, tuple[float, dict[str, dict[str, Any]]]] = {}
        self._list_locks: KeyedLocks[str] = KeyedLocks()

    async def event_problem(self, action: str, server: int | None,
                            fields: Mapping[str, object]) -> tuple[str, str] | None:
        if problem := await super().event_problem(action, server, fields):
            return problem
        if action == "add" and not fields.get("sn"):
            return ("sn", "required by Grandstream GDMS: a phone is added with the serial "
                          "number on its label")
        return None

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        site = self._site(account)
        if not device.sn:
            raise ProviderError(
                "No serial number (sn) for this device: GDMS adds a phone only with the "
                "serial number on its label; send an add event with \"sn\"",
                Failure.PERMANENT)
        entry: dict[str, Any] = {"mac": gdms_mac(device.mac), "sn": device.sn, "siteId": site}
        if device.name:
            entry["deviceName"] = device.name[:NAME_LIMIT]
        answer = await self._call(account, "device/add", device.mac, "register", [entry])
        if answer.ok:
            return
        if _OTHER_OWNER.search(answer.msg):
            rely_on_guess(self.label, GUESS_OWNER)
            raise owned_by_other(self.service, answer.text("device/add"))
        if _EXISTS.search(answer.msg) and not _MISSING.search(answer.msg):
            await self._already_there(account, device.mac, site, answer)
            return
        raise self._refusal(answer, "device/add")

    async def _already_there(self, account: Account, mac: str, site: int,
                             answer: Envelope) -> None:
        """After "already exists": ours (in the site) is success; anyone else's is not."""
        entry = await self._org_device(account, mac)
        if entry is None:
            raise owned_by_other(self.service, f"{answer.text('device/add')}; the MAC is "
                                 "not among this GDMS organisation's devices")
        held = _int(entry.get("siteId"))
        if held is not None and held != site:
            raise ProviderError(
                f"The device is in GDMS site {held} of this organisation, not in site_id "
                f"{site}", Failure.PERMANENT,
                hint=f"GDMS offers no call to move a device: move it to site {site} in the "
                     "GDMS portal, or set site_id")
        # GDMS sends phones by the site's template: nothing per device to re-point.
        log.info("Device already in the site, nothing to change", component=self.label,
                 mac=mac, site=site)

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        log.info("Removing with an experimental call", component=self.label, mac=device.mac,
                 call="device/delete")
        rely_on_guess(self.label, GUESS_DELETE)
        try:
            answer = await self._call(account, "device/delete", device.mac, "deregister",
                                      {"macList": [gdms_mac(device.mac)]})
        except ProviderError as err:
            raise _experimental(err) from None
        gone = not answer.ok and bool(_MISSING.search(answer.msg))
        if gone:
            rely_on_guess(self.label, GUESS_MISSING)
        if answer.ok or gone:
            cached = self._known.get(account.key)
            if cached:
                cached[1].pop(device.mac, None)
            return
        raise _experimental(self._refusal(answer, "device/delete"))

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        entry = await self._find(account, device.mac)
        return None if entry is None else self._record(entry)

    async def vendor_list(self, account: Account) -> AsyncIterator[VendorRecord]:
        site = self._site(account)
        async for entry in self._entries(account, "-"):
            held = _int(entry.get("siteId"))
            if held is None or held == site:  # the account is one site of the organisation
                record = self._record(entry)
                if record.mac:
                    yield record

    async def vendor_check(self, account: Account) -> str:
        site = self._site(account)
        answer = await self._call(account, "site/list", "-", "check", method="GET")
        if not answer.ok:
            raise self._refusal(answer, "site/list")
        sites = _sites(answer.data)
        if site not in sites:
            known = ", ".join(f"{i} ({n})" for i, n in sites.items()) or "none"
            raise ProviderError(
                f"site_id {site} is not a site of this GDMS organisation (its sites: {known})",
                Failure.PERMANENT)
        return (f"GDMS accepted the login {account.text('username')}; phones go to site "
                f"{site} ({sites[site]}); whether its template points them at the PBX is not "
                "verified: the API does not show templates (check it in the GDMS portal)")

    async def close(self) -> None:
        await super().close()
        self.tokens.clear()
        self._known.clear()

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        self.tokens.forget_accounts(keys)
        drop_accounts(self._known, keys)

    # -- look-ups -------------------------------------------------------------------------

    async def _find(self, account: Account, mac: str) -> dict[str, Any] | None:
        async for entry in self._entries(account, mac):
            if answer_mac(entry.get("mac")) == mac:
                return entry
        return None

    async def _org_device(self, account: Account, mac: str) -> dict[str, Any] | None:
        """The device's entry in the organisation's list, read at most LIST_TTL ago.

        Only a hit is taken from the cache (a miss reads the list again): a server's
        re-point sends an ``update`` for each of its devices, each answered "already
        exists", and must not read the whole list for every one of them.
        """
        cached = self._known.get(account.key)
        if cached and self.clock() - cached[0] < LIST_TTL and mac in cached[1]:
            return cached[1][mac]
        async with self._list_locks(account.key):
            cached = self._known.get(account.key)
            if cached and self.clock() - cached[0] < LIST_TTL and mac in cached[1]:
                return cached[1][mac]
            devices: dict[str, dict[str, Any]] = {}
            async for entry in self._entries(account, mac):
                if plain := answer_mac(entry.get("mac")):
                    devices[plain] = entry
            now = self.clock()
            # Lists past their time are never read again: keep none of them (an account
            # whose credentials changed would otherwise hold its whole list forever).
            for key in [k for k, (read, _) in self._known.items() if now - read >= LIST_TTL]:
                del self._known[key]
            self._known[account.key] = (now, devices)
            return devices.get(mac)

    async def _entries(self, account: Account, mac: str) -> AsyncIterator[dict[str, Any]]:
        """Every device of the organisation, page by page (``device/list``)."""
        for page in range(1, MAX_PAGES + 1):
            answer = await self._call(account, "device/list", mac, "list",
                                      {"pageNum": page, "pageSize": PAGE_SIZE})
            if not answer.ok:
                raise self._refusal(answer, "device/list")
            data = answer.data if isinstance(answer.data, dict) else {}
            result = data.get("result")
            if not isinstance(result, list):
                raise ProviderError(f"{self.service} answered device/list without "
                                    "data.result", Failure.PERMANENT)
            for entry in result:
                if isinstance(entry, dict):
                    yield entry
            pages = _int(data.get("pages"))
            # Without "pages", a short page is the last one.
            if not result or (page >= pages if pages is not None else len(result) < PAGE_SIZE):
                return

    def _record(self, entry: dict[str, Any]) -> VendorRecord:
        site = entry.get("siteId")
        return VendorRecord(answer_mac(entry.get("mac")), None,
                            detail="" if site is None else f"site {site}")

    # -- HTTP -----------------------------------------------------------------------------

    async def _call(self, account: Account, path: str, mac: str, operation: str,
                    body: object = None, method: str = "POST") -> Envelope:
        """One signed call; a non-2xx answer raises, an envelope is returned as it is."""
        auth = GdmsAuth(self.tokens, account, mac, account.text("client_id"),
                        account.text("client_secret"), self._timestamp)
        response = await self.request(account, method, self._url(API_PATH + path),
                                      operation=operation, mac=mac, json_body=body,
                                      headers=LANGUAGE, auth=auth)
        secrets = self._secrets(account, auth.used)
        if not response.is_success:
            raise self.error(response, account, secrets)
        data = self.json_value(response, path)
        if isinstance(data, dict) and "retCode" not in data and data.get("error"):
            # An OAuth2 refusal answered 200 (a fresh token refused: GdmsAuth retried).
            text = clean_text(f"{data['error']}: {data.get('error_description', '')}",
                              (*account.secrets, *secrets))
            raise ProviderError(f"{self.service} refused {path} ({text})", Failure.BAD_LOGIN,
                                status=response.status_code, hint=self.bad_login_hint())
        if not isinstance(data, dict) or "retCode" not in data:
            raise ProviderError(f"{self.service} answered {path} without a retCode",
                                Failure.PERMANENT, status=response.status_code)
        code = data["retCode"]
        return Envelope(code if isinstance(code, int | str) else str(code),
                        clean_text(str(data.get("msg") or ""), secrets), data.get("data"))

    def _refusal(self, answer: Envelope, call: str) -> ProviderError:
        """The shared reading of a refused call (``retCode`` not 0), by its message."""
        text = answer.text(call)
        if _THROTTLED.search(answer.msg):
            rely_on_guess(self.label, GUESS_THROTTLED)
            return ProviderError(text, Failure.THROTTLED)
        if _TOKEN.search(answer.msg):  # GdmsAuth already retried with a new token
            rely_on_guess(self.label, GUESS_STALE_LOGIN)
            return ProviderError(text, Failure.BAD_LOGIN, hint=self.bad_login_hint())
        if _SIGNING.search(answer.msg):
            rely_on_guess(self.label, GUESS_SIGNING)
            return ProviderError(text, Failure.BAD_LOGIN,
                                 hint=f"{CLOCK_HINT} ({self.credentials_where})")
        if _SITE.search(answer.msg):
            return ProviderError(text, Failure.PERMANENT, hint=SITE_HINT)
        if _SERIAL.search(answer.msg):
            return ProviderError(text, Failure.PERMANENT, hint=SERIAL_HINT)
        return ProviderError(text, Failure.PERMANENT)

    def bad_login_hint(self) -> str:
        return self.credentials_hint(("username", "password", "client_id", "client_secret"))

    def _url(self, path: str) -> str:
        return f"{self.settings.api_url}{path}"

    def _timestamp(self) -> str:
        return str(int(self.clock() * 1000))

    def _site(self, account: Account) -> int:
        value = account.text("site_id")
        if not SITE_ID.fullmatch(value):
            raise ProviderError(f"site_id {value!r} is not the number of a GDMS site",
                                Failure.PERMANENT, hint=SITE_HINT)
        return int(value)

    def _secrets(self, account: Account, tokens: list[str]) -> tuple[str, ...]:
        latest = self.tokens.latest(account)
        refresh = latest.refresh if latest else None
        return (password_hash(account.text("password")), *tokens,
                *((refresh,) if refresh else ()))

    # -- tokens ---------------------------------------------------------------------------

    async def _fetch_token(self, account: Account, previous: Token | None, mac: str) -> Token:
        """A new access token: the refresh grant when there is a refresh token, else (or
        when GDMS refuses it) a login with the password grant."""
        refresh = previous.refresh if previous else None
        if refresh:
            response = await self._token_request(account, mac, {
                "grant_type": "refresh_token", "refresh_token": refresh})
            if response.is_success:
                return self._token(response, account)
            if response.status_code == 429 or response.status_code >= 500:
                raise self._login_error(response, account, refresh)
            log.info("Refresh token refused, logging in again", component=self.label,
                     status=response.status_code)
            self.tokens.forget(account)  # a failed login next must not try it again
        response = await self._token_request(account, mac, {
            "grant_type": "password", "username": account.text("username"),
            "password": password_hash(account.text("password"))})
        if not response.is_success:
            raise self._login_error(response, account)
        return self._token(response, account)

    async def _token_request(self, account: Account, mac: str, form: dict[str, str]
                             ) -> httpx.Response:
        form |= {"client_id": account.text("client_id"),
                 "client_secret": account.text("client_secret")}
        return await self.request(account, "POST", self._url(TOKEN_PATH), operation="token",
                                  mac=mac, content=urlencode(form).encode(),
                                  content_type=FORM, headers=LANGUAGE)

    def _token(self, response: httpx.Response, account: Account) -> Token:
        data = self.json_object(response, "the token request")
        value, refresh = data.get("access_token"), data.get("refresh_token")
        if not isinstance(value, str) or not value:
            raise ProviderError(f"{self.service} answered the token request without an "
                                "access_token", Failure.PERMANENT, status=response.status_code)
        expires_in = _int(data.get("expires_in")) or DEFAULT_EXPIRES_IN
        return Token(value, self.clock() + expires_in,
                     refresh if isinstance(refresh, str) and refresh else None)

    def _login_error(self, response: httpx.Response, account: Account,
                     refresh: str | None = None) -> ProviderError:
        secrets = self._secrets(account, [refresh] if refresh else [])
        status = response.status_code
        if status == 429 or status >= 500 or status not in (400, 401, 403):
            return self.error(response, account, secrets)
        try:
            data = response.json()
        except ValueError:
            data = None
        code = str(data.get("error", "")) if isinstance(data, dict) else ""
        detail = str(data.get("error_description", "")) if isinstance(data, dict) else ""
        text = clean_text(f"{code}: {detail}" if code and detail else code or detail
                          or response.text, (*account.secrets, *secrets))
        hint = (self.credentials_hint(("client_id", "client_secret"))
                if code == "invalid_client"
                else self.credentials_hint(("username", "password"))
                if code == "invalid_grant" else self.bad_login_hint())
        return ProviderError(f"GDMS refused the login ({status} {text})", Failure.BAD_LOGIN,
                             status=status, hint=hint)


def gdms_mac(mac: str) -> str:
    """``000B82ABCDEF`` → ``00:0B:82:AB:CD:EF``, the form GDMS's own examples use."""
    return ":".join(mac[i:i + 2] for i in range(0, 12, 2))



def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _sites(data: object) -> dict[int, str]:
    """Site id → name from site/list's ``data`` (``data.result`` or a bare list)."""
    result = data.get("result") if isinstance(data, dict) else data
    sites: dict[int, str] = {}
    for entry in result if isinstance(result, list) else []:
        if isinstance(entry, dict) and (site := _int(entry.get("id", entry.get("siteId")))):
            sites[site] = str(entry.get("siteName") or entry.get("name") or "-")
    return sites


def _experimental(err: ProviderError) -> ProviderError:
    if err.failure is not Failure.PERMANENT:
        return err
    hint = f"{err.hint}; {EXPERIMENTAL_HINT}" if err.hint else EXPERIMENTAL_HINT
    return ProviderError(err.message, err.failure, hint=hint, status=err.status,
                         retry_after=err.retry_after)
