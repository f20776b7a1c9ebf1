"""The SRAPS family (Snom SRAPS REST v1; Gigaset GRAPE speaks the same protocol).

Per set of API keys the provider needs the company the key belongs to (and, for services
that want it followed, the endpoint collection its ``links.endpoints`` names) and the uuids
of the catalogue settings it writes (the provisioning URL, the phone's HTTP credentials and
any extra settings, by ``param_name``). All are looked up once per key and cached, so a warm
registration is the endpoint's read and its ``PUT``, or the ``PUT`` alone with
``keep_portal_settings = false``. Requests are signed with Hawk
(:class:`~rps_service.providers.hawk.HawkAuth`), which also corrects our clock after a 401
that shows it is off.

``PUT`` replaces the whole endpoint, so a re-registration reads it first and keeps what an
administrator set in the portal (other settings, ``provisioning_profile``, ``name``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import SecretStr

from rps_service.guesses import rely_on_guess
from rps_service.logs import get_logger
from rps_service.models import answer_mac
from rps_service.providers import hawk
from rps_service.providers.errors import owned_by_other
from rps_service.providers.keyed import KeyedLocks, drop_accounts
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import ProviderSettings
from rps_service.providers.vendor import Account, ProviderContext, VendorProvider

log = get_logger()

#: The catalogue has ~1180 entries (two pages at page_size=1000); the cap only stops a
#: server whose Link headers go round in circles.
MAX_PAGES = 50
PAGE_SIZE = 1000
#: How a token object shows a missing Role is not public: all of these mean none.
_NO_ROLE = ("", "none", "null")
#: What a service whose ``calls_guessed`` relies on (``{service}``: its name).
GUESS_GET = ("{service} shows a device with GET of its endpoint and answers 404 when it "
             "holds none, as SRAPS does")
GUESS_DELETE = "{service} removes a device with DELETE of its endpoint, as SRAPS does"
GUESS_DELETE_404 = ("a 404 to {service}'s DELETE of an endpoint means the device is "
                    "already removed")
GUESS_NO_ROLE = "a {service} token without a role field means the key has no Role"
GUESS_LOGIN_SETTINGS = ("the phone's HTTP login goes in the {service} catalogue settings "
                        "{user} and {password} (no public client writes them)")
GUESS_LIST = "{service} lists its devices with GET of the endpoint collection, as SRAPS does"


class SrapsSettings(ProviderSettings):
    """``[snom]``-style section: Hawk API keys and the portal-settings switch."""

    credential_keys: ClassVar[tuple[str, ...]] = ("access_key_id", "access_key_secret")

    access_key_id: str = ""
    access_key_secret: SecretStr = SecretStr("")
    # Read the endpoint before each PUT and keep what the portal set there (docs/vendors/snom.md);
    # false saves that read for accounts that set nothing in the portal.
    keep_portal_settings: bool = True


@dataclass(frozen=True)
class Catalogue:
    """What a warm call needs: the key's company and the uuids of writable settings."""

    company_id: str
    uuids: Mapping[str, str]  # param_name → uuid, in the section our settings live in
    endpoints: str  # the company's endpoint collection, ending in "/"
    #: Whether the key's token showed no Role (None: the token does not show it).
    no_role: bool | None = None


class SrapsProvider(VendorProvider):
    """SRAPS REST v1; subclasses state the service's URL and setting names."""

    settings: SrapsSettings
    credentials_noun = "API keys"
    can_list = True
    supports_settings = True
    #: The catalogue settings the device's URL and credentials go in.
    url_setting: ClassVar[str] = "setting_server"
    user_setting: ClassVar[str | None] = "http_client_user"
    pass_setting: ClassVar[str | None] = "http_client_pass"  # noqa: S105 - a setting's name
    #: The catalogue section they are taken from (None: entries carry no section).
    catalogue_section: ClassVar[str | None] = "phone-settings"
    #: Find the endpoint collection through the company's ``links.endpoints`` (one more
    #: call per key, cached) rather than building ``companies/{id}/endpoints/``.
    endpoints_from_links: ClassVar[bool] = False
    #: A token object without a ``role`` field: True reads it as no Role (SRAPS's rule);
    #: False as not shown (the Test does not refuse the key for it).
    role_absent_means_none: ClassVar[bool] = True
    #: Whose support can move a MAC another account holds.
    vendor: ClassVar[str] = "Snom"
    #: The endpoint's ``GET`` and ``DELETE`` and the collection's ``GET`` are inferred from
    #: SRAPS, not seen in any client of this service: relying on them logs the guess.
    calls_guessed: ClassVar[bool] = False

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.vendor_clock = hawk.VendorClock(context.clock)
        self._cache: dict[str, Catalogue] = {}
        self._locks: KeyedLocks[str] = KeyedLocks()

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        catalogue = await self._catalogue(account, device.mac)
        url = _endpoint_url(catalogue, device.mac)
        body: dict[str, Any] = {"mac": device.mac.lower(), "autoprovisioning_enabled": True,
                                "settings_manager": self._our_settings(catalogue, device)}
        if self.settings.keep_portal_settings:
            response = await self._send(account, "GET", url, "lookup", device.mac, ok=(404,),
                                        secrets=(device.http_password,))
            self._guessed(GUESS_GET)
            if response.status_code != 404:
                body = _merged(self.json_object(response, "the endpoint lookup"), body)
        await self._send(account, "PUT", url, "register", device.mac, body=body,
                         secrets=(device.http_password,), stale_on=(401, 404))

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        catalogue = await self._catalogue(account, device.mac)
        response = await self._send(account, "DELETE", _endpoint_url(catalogue, device.mac),
                                    "deregister", device.mac, ok=(404,))
        self._guessed(GUESS_DELETE)
        if response.status_code == 404:
            self._guessed(GUESS_DELETE_404)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        catalogue = await self._catalogue(account, device.mac)
        response = await self._send(account, "GET", _endpoint_url(catalogue, device.mac),
                                    "lookup", device.mac, ok=(404,))
        self._guessed(GUESS_GET)
        if response.status_code == 404:
            return None
        return self._record(catalogue, self.json_object(response, "the endpoint lookup"))

    async def vendor_list(self, account: Account) -> AsyncIterator[VendorRecord]:
        catalogue = await self._catalogue(account, "-")
        url: str | None = f"{catalogue.endpoints}?page_size={PAGE_SIZE}"
        seen: set[str] = set()
        while url and url not in seen and len(seen) < MAX_PAGES * 100:
            seen.add(url)
            response = await self._send(account, "GET", url, "list", "-")
            self._guessed(GUESS_LIST)
            page = self.json_value(response, "the endpoint list")
            if not isinstance(page, list):
                raise ProviderError(f"{self.service} answered the endpoint list with no list",
                                    Failure.PERMANENT)
            for entry in page:
                if isinstance(entry, dict) and isinstance(entry.get("mac"), str):
                    yield self._record(catalogue, entry)
            url = self._next_link(response)

    async def vendor_check(self, account: Account) -> str:
        token = await self._fetch_token(account)
        key_id = account.text("access_key_id")
        no_role = self._no_role(token)
        if no_role:
            raise ProviderError(
                f"The key {key_id} has no Role: {self.service} refuses to register devices "
                f"with it. Choose a Role for the key in {self.service}.", Failure.PERMANENT)
        catalogue = await self._load(account, token, "-")
        self._credential_uuids(catalogue)  # fails loudly when the phone would get no login
        unverified = "" if no_role is False else (
            f"; whether the key has a Role is not verified: {self.service}'s token does not "
            "show it (a write refused with 403 is the first sign)")
        return (f"{self.service} accepted the key {key_id} (company {catalogue.company_id})"
                f"{unverified}")

    async def close(self) -> None:
        await super().close()
        self._cache.clear()

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        drop_accounts(self._cache, keys)

    # -- the catalogue --------------------------------------------------------------------

    async def _catalogue(self, account: Account, mac: str) -> Catalogue:
        # ``mac``: the device whose event needs the lookups, for the log lines (docs/logs.md).
        if hit := self._cache.get(account.key):
            return hit
        # One lookup per key even when a burst of events arrives on a cold cache.
        async with self._locks(account.key):
            if hit := self._cache.get(account.key):
                return hit
            return await self._load(account, await self._fetch_token(account, mac), mac)

    async def _load(self, account: Account, token: dict[str, Any], mac: str) -> Catalogue:
        company_id = self._company_id(token, account.text("access_key_id"))
        endpoints = await self._endpoints(account, token, company_id, mac)
        catalogue = Catalogue(company_id, await self._fetch_uuids(account, mac), endpoints,
                              self._no_role(token))
        # A changed secret for the same key id makes the old entry unreachable: drop it.
        prefix = account.key.rsplit("|", 1)[0] + "|"
        for old in [k for k in self._cache if k.startswith(prefix)]:
            del self._cache[old]
        self._cache[account.key] = catalogue
        return catalogue

    async def _fetch_token(self, account: Account, mac: str = "-") -> dict[str, Any]:
        url = f"{self.settings.api_url}tokens/{quote(account.text('access_key_id'), safe='')}"
        response = await self._send(account, "GET", url, "token", mac)
        return self.json_object(response, "the token lookup")

    async def _fetch_uuids(self, account: Account, mac: str) -> dict[str, str]:
        uuids: dict[str, str] = {}
        url: str | None = f"{self.settings.api_url}settings/?page_size={PAGE_SIZE}"
        seen: set[str] = set()
        while url and url not in seen and len(seen) < MAX_PAGES:
            seen.add(url)
            response = await self._send(account, "GET", url, "settings", mac)
            page = self.json_value(response, "the settings lookup")
            if not isinstance(page, list):
                raise ProviderError(f"{self.service} answered the settings lookup with no list",
                                    Failure.PERMANENT)
            self._collect(page, uuids)
            url = self._next_link(response)
        if self.url_setting not in uuids:
            where = f" in section {self.catalogue_section}" if self.catalogue_section else ""
            raise ProviderError(f"The {self.service} settings catalogue has no "
                                f"{self.url_setting}{where}", Failure.PERMANENT)
        return uuids

    def _collect(self, page: list[Any], uuids: dict[str, str]) -> None:
        for entry in page:
            if not isinstance(entry, dict):
                continue
            if self.catalogue_section and entry.get("section") != self.catalogue_section:
                continue
            name, uuid = entry.get("param_name"), entry.get("uuid")
            if isinstance(name, str) and isinstance(uuid, str) and uuid:
                uuids.setdefault(name, uuid)

    def _credential_uuids(self, catalogue: Catalogue) -> tuple[str, str] | None:
        """The uuids the phone's credentials go in; an error when the catalogue lacks them
        (a phone that gets only a URL would be refused at /ztprov/ forever)."""
        if self.user_setting is None or self.pass_setting is None:
            return None
        missing = [name for name in (self.user_setting, self.pass_setting)
                   if name not in catalogue.uuids]
        if missing:
            where = f" in section {self.catalogue_section}" if self.catalogue_section else ""
            raise ProviderError(
                f"The {self.service} settings catalogue has no {'/'.join(missing)}{where}: "
                "the phone would get its URL but no credentials and could never fetch "
                "its settings (401 at /ztprov/)", Failure.PERMANENT)
        return catalogue.uuids[self.user_setting], catalogue.uuids[self.pass_setting]

    def _our_settings(self, catalogue: Catalogue, device: Device) -> dict[str, Any]:
        ours: dict[str, Any] = {}
        for name, value in device.settings.items():
            uuid = catalogue.uuids.get(name)
            if uuid is None:
                where = f" in section {self.catalogue_section}" if self.catalogue_section else ""
                raise ProviderError(f"Unknown {self.service} setting {name!r} (no such "
                                    f"param_name{where})", Failure.PERMANENT)
            ours[uuid] = _rw(value)
        ours[catalogue.uuids[self.url_setting]] = _rw(device.url)
        credential_uuids = self._credential_uuids(catalogue)
        if credential_uuids is not None:
            rely_on_guess(self.label, GUESS_LOGIN_SETTINGS.format(
                service=self.service, user=self.user_setting, password=self.pass_setting))
            ours[credential_uuids[0]] = _rw(device.http_username)
            ours[credential_uuids[1]] = _rw(device.http_password)
        return ours

    def _record(self, catalogue: Catalogue, endpoint: dict[str, Any]) -> VendorRecord:
        manager = endpoint.get("settings_manager")
        uuid = catalogue.uuids[self.url_setting]
        entry = manager.get(uuid) if isinstance(manager, dict) else None
        url = entry.get("value") if isinstance(entry, dict) else None
        mac = answer_mac(endpoint.get("mac"))
        # The endpoint is ours but sends the phone nowhere (the setting wiped or emptied in
        # the portal): "" says so, where None would mean the answer does not tell.
        return VendorRecord(mac, url if isinstance(url, str) and url else "")

    def _company_id(self, token: dict[str, Any], key_id: str) -> str:
        links = token.get("links")
        company = links.get("company") if isinstance(links, dict) else None
        path = urlsplit(company).path if isinstance(company, str) else ""
        segments = [s for s in path.split("/") if s]
        if not segments:
            raise ProviderError(f"{self.service} gave no links.company for the key {key_id}: "
                                "cannot tell its company", Failure.PERMANENT)
        return segments[-1]

    async def _endpoints(self, account: Account, token: dict[str, Any], company_id: str,
                         mac: str) -> str:
        """The company's endpoint collection: built from the company id, or (with
        ``endpoints_from_links``) the company's ``links.endpoints``."""
        company = f"{self.settings.api_url}companies/{quote(company_id, safe='')}/"
        if not self.endpoints_from_links:
            return f"{company}endpoints/"
        link = self._own_link(token["links"]["company"]) or company
        response = await self._send(account, "GET", link, "company", mac)
        links = self.json_object(response, "the company lookup").get("links")
        endpoints = links.get("endpoints") if isinstance(links, dict) else None
        if not isinstance(endpoints, str) or not endpoints:
            raise ProviderError(f"{self.service} gave no links.endpoints for company "
                                f"{company_id}: cannot tell where its devices are",
                                Failure.PERMANENT)
        url = self._own_link(endpoints) or f"{company}endpoints/"
        return url if url.endswith("/") else url + "/"

    def _own_link(self, link: str) -> str | None:
        """``link`` (absolute or relative) when it is on ``api_url``'s host, else None: the
        signed requests go nowhere else (the built URL is used instead, logged)."""
        base = httpx.URL(self.settings.api_url)
        url = base.join(link)
        if (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port):
            return str(url)
        log.warning("Link to another host ignored", component=self.label, host=url.host)
        return None

    def _next_link(self, response: httpx.Response) -> str | None:
        """The ``Link: rel=next`` page, which must be on ``api_url``'s scheme, host and port:
        the request is Hawk-signed, and a page elsewhere would get the signature (and the
        list would be incomplete without it, so the call fails rather than stop short)."""
        target = response.links.get("next", {}).get("url")
        if not target:
            return None
        url = str(response.url.join(target))
        own = self._own_link(url)
        if own is None:
            raise ProviderError(
                f"{self.service} answered a next-page link to another host "
                f"({httpx.URL(url).host or '?'}): not followed", Failure.PERMANENT,
                hint=f"api_url is {self.settings.api_url}; links are followed only there")
        return own

    def _no_role(self, token: dict[str, Any]) -> bool | None:
        """Whether the token shows the key has no Role (None: it does not show it)."""
        if "role" not in token:
            if not self.role_absent_means_none:
                return None
            rely_on_guess(self.label, GUESS_NO_ROLE.format(service=self.service))
            return True
        role = token["role"]
        return role is None or (isinstance(role, str) and role.strip().lower() in _NO_ROLE)

    def _guessed(self, guess: str) -> None:
        if self.calls_guessed:
            rely_on_guess(self.label, guess.format(service=self.service))

    # -- HTTP -----------------------------------------------------------------------------

    async def _send(self, account: Account, method: str, url: str, operation: str, mac: str,
                    *, body: dict[str, Any] | None = None, ok: tuple[int, ...] = (),
                    secrets: tuple[str, ...] = (), stale_on: tuple[int, ...] = (401,)
                    ) -> httpx.Response:
        key = hawk.HawkKey(account.text("access_key_id"), account.text("access_key_secret"))
        auth = hawk.HawkAuth(key, self.vendor_clock, label=self.label, service=self.service)
        response = await self.request(account, method, url, operation=operation, mac=mac,
                                      json_body=body, auth=auth)
        if response.is_success or response.status_code in ok:
            return response
        if response.status_code in stale_on:
            self._cache.pop(account.key, None)  # the cached company or key may be gone
        raise self.error(response, account, secrets)

    def classify(self, response: httpx.Response, text: str, account: Account
                 ) -> ProviderError | None:
        status = response.status_code
        if status == 401 and hawk.CLOCK_SKEW in response.extensions:
            skew = response.extensions[hawk.CLOCK_SKEW]
            return ProviderError(
                f"401: {text}", Failure.BAD_LOGIN, status=401,
                hint=f"clock skew of {skew} s found and corrected, but the key was still "
                     f"refused: {self.bad_login_hint()}")
        if status != 403:
            return None
        body = response.text.lower()
        if "taken_mac_or_forbidden" in body or "lacks permission" in body:
            hint = (f"release it in the account that holds it or ask {self.vendor} support "
                    "to move it")
            return owned_by_other(self.service, f"403: {text}", 403, hint)
        cached = self._cache.get(account.key)
        if cached is not None and cached.no_role:
            hint = (f"{self.service} refuses to register devices with this key: the key has "
                    f"no Role; choose a Role for the key in {self.service} (API keys)")
            return ProviderError(f"403: {text}", Failure.PERMANENT, status=403, hint=hint)
        # Nothing says why: a key without a Role is refused this way, but so may be more.
        hint = (f"a 403 not recognised: a missing Role on the API key is one cause; choose a "
                f"Role for the key in {self.service} (API keys) if it has none")
        return ProviderError(f"403: {text}", Failure.PERMANENT, status=403, hint=hint)


def _endpoint_url(catalogue: Catalogue, mac: str) -> str:
    return f"{catalogue.endpoints}{mac.lower()}"


def _merged(existing: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """The PUT body that keeps the portal's settings, profile and name beside ours."""
    body = dict(ours)
    manager = existing.get("settings_manager")
    if isinstance(manager, dict):
        body["settings_manager"] = {**manager, **ours["settings_manager"]}
    for name in ("provisioning_profile", "name"):
        if existing.get(name) is not None:
            body[name] = existing[name]
    return body


def _rw(value: str) -> dict[str, Any]:
    return {"value": value, "attrs": {"perm": "RW"}}
