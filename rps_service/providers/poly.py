"""Poly ZTP (Zero Touch Provisioning) REST: send factory-reset Poly phones to /ztprov/.

Poly's service does not keep a URL per device: a *profile* holds the provisioning server's
address and the login the phone presents there, and each device (MAC) points at one
profile. So the daemon keeps one profile per server (tenant) and vendor account, named
from ``[poly] profile_name`` (``rps-{server}``), holding the server's device URL and the
credentials shared by that server's devices (:attr:`AccessMode.SERVER`).

* **Profile**: its id is cached per account and server. On a miss (a cold start) the
  account's profiles are listed and the one with our name is taken; none: it is created.
  A profile whose address, login or ``enabled`` flag differs from what the device needs
  is updated (``PUT``); one whose password the API does not show is updated once per
  start, since it cannot be compared.
* **Register**: ``POST /devices {id, profile}``. Poly answers "claimed by another
  organization" both when another account holds the MAC and when the MAC sits in another
  profile of *this* account, so on that answer the device is looked up: not ours (404) is
  "owned by another account"; ours in this profile is done; ours in another profile (a
  phone migrated in, or moved from another server) is deleted and added again.
* **Remove**: ``DELETE /devices/{mac}``; 404 is done.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import AfterValidator, SecretStr

from rps_service.access import AccessMode
from rps_service.guesses import rely_on_guess
from rps_service.logs import get_logger
from rps_service.models import answer_mac
from rps_service.providers.errors import error_text, owned_by_other
from rps_service.providers.keyed import KeyedLocks, drop_accounts
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import BaseUrl, ProviderSettings
from rps_service.providers.vendor import Account, ProviderContext, VendorProvider

log = get_logger()

GUESS_GONE = "a 404 to Poly's DELETE of a device means it is already removed"

#: Devices per page of ``GET /devices`` (the page size peers use; no maximum is published).
PAGE_SIZE = 50
#: Stops a listing whose cursors go round in circles.
MAX_PAGES = 10_000
#: Profiles of one account: a list longer than this many pages is not followed further.
MAX_PROFILE_PAGES = 100
CLAIMED_HINT = ("release it in the Poly ZTP account that holds it, or ask the phone's "
                "supplier or Poly to release it")
_PROFILE_KEYS = ("profile", "profileid", "profileId")


def _profile_name(value: str) -> str:
    """A profile name template: it must tell servers apart."""
    if "{server}" not in value:
        raise ValueError("must contain {server} (one profile per server)")
    if not value.replace("{server}", "1").isprintable() or len(value) > 64:
        raise ValueError("must be printable and at most 64 characters")
    return value


class PolySettings(ProviderSettings):
    """``[poly]``: the Poly ZTP API, its key and the profiles' name."""

    credential_keys: ClassVar[tuple[str, ...]] = ("api_key",)

    # The current API; older clients used https://api.ztp.poly.com/preview.
    api_url: BaseUrl = "https://api.ztp.poly.com/v1/"
    api_key: SecretStr = SecretStr("")
    # The profile of server N is found by this name ({server} replaced): installations that
    # share one Poly account must use different names.
    profile_name: Annotated[str, AfterValidator(_profile_name)] = "rps-{server}"


@dataclass(frozen=True)
class Profile:
    """One of our profiles as last read or written."""

    id: str
    body: Mapping[str, Any]  # the fields of the profile we know, as the API showed them
    #: (address, username, password digest) known to be in the profile; None: unknown
    holds: tuple[str, str, str] | None


class PolyProvider(VendorProvider):
    """Poly ZTP REST (``API-KEY`` header)."""

    name = "poly"
    label = "Poly"
    service = "Poly ZTP"
    settings_class = PolySettings
    settings: PolySettings
    access = AccessMode.SERVER
    credentials_noun = "API key"
    can_list = True

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self._profiles: dict[tuple[str, int], Profile] = {}
        self._locks: KeyedLocks[tuple[str, int]] = KeyedLocks()
        # Per account: profile id → the address it sends phones to (look-ups, listings).
        self._addresses: dict[str, dict[str, str | None]] = {}

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        _check_device(device)
        for attempt in (1, 2):
            profile_id = await self._profile(account, device)
            response = await self._add(account, device, profile_id)
            if response.is_success:
                return
            if _claimed(response):
                await self._claimed(account, device, profile_id, response)
                return
            if attempt == 1 and _profile_refused(response):
                # Our cached profile may have been deleted in the portal: find it again.
                self._profiles.pop((account.key, device.server), None)
                continue
            raise self.error(response, account, (device.http_password,))

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        response = await self._send(account, "DELETE", _device_path(device.mac),
                                    "deregister", device.mac, ok=(404, 409))
        if response.status_code == 404:
            rely_on_guess(self.label, GUESS_GONE)
        if response.status_code == 409:
            # Poly's answer for a MAC another account holds: nothing of ours to remove.
            log.warning("Device held by another account, nothing to remove",
                        component=self.label, mac=device.mac,
                        err=error_text(response, account.secrets))

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        found = await self._device(account, device.mac, "lookup")
        if found is None:
            return None
        profile_id = _profile_of(found)
        url = await self._address(account, profile_id, device.mac) if profile_id else None
        return VendorRecord(device.mac, url)

    async def vendor_list(self, account: Account) -> AsyncIterator[VendorRecord]:
        await self._list_profiles(account)  # the addresses of the account's profiles
        addresses = self._addresses[account.key]
        async for entry in self._pages(account, "devices", "list", PAGE_SIZE, MAX_PAGES):
            mac = answer_mac(entry.get("id"))
            if not mac:
                continue
            profile_id = _profile_of(entry)
            yield VendorRecord(mac, addresses.get(profile_id) if profile_id else None)

    async def vendor_check(self, account: Account) -> str:
        profiles = await self._list_profiles(account)
        return f"{self.service} accepted the API key ({len(profiles)} profiles)"

    async def close(self) -> None:
        await super().close()
        self._profiles.clear()
        self._addresses.clear()

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        drop_accounts(self._profiles, keys)
        drop_accounts(self._addresses, keys)

    # -- devices --------------------------------------------------------------------------

    async def _add(self, account: Account, device: Device, profile_id: str) -> httpx.Response:
        body = {"id": device.mac.lower(), "profile": profile_id}
        return await self._send(account, "POST", "devices", "register", device.mac,
                                body=body, ok=(400, 404, 409))

    async def _claimed(self, account: Account, device: Device, profile_id: str,
                       claimed: httpx.Response) -> None:
        """Poly says "claimed" for another account's MAC and for one in another of our
        profiles alike: the look-up tells them apart."""
        text = f"{claimed.status_code}: {error_text(claimed, account.secrets)}"
        found = await self._device(account, device.mac, "lookup")
        if found is None:
            raise owned_by_other(self.service, text, claimed.status_code, CLAIMED_HINT)
        current = _profile_of(found)
        if current == profile_id:
            return  # already ours, in this server's profile
        log.info("Moving device to our profile", component=self.label, mac=device.mac,
                 profile=profile_id, previous=current or "-")
        await self._send(account, "DELETE", _device_path(device.mac), "deregister",
                         device.mac, ok=(404,))
        again = await self._add(account, device, profile_id)
        if again.is_success:
            return
        if _claimed(again):  # taken by someone else between our delete and add
            raise owned_by_other(self.service, f"{again.status_code}: "
                                 f"{error_text(again, account.secrets)}",
                                 again.status_code, CLAIMED_HINT)
        raise self.error(again, account, (device.http_password,))

    async def _device(self, account: Account, mac: str, operation: str
                      ) -> dict[str, Any] | None:
        response = await self._send(account, "GET", _device_path(mac), operation, mac,
                                    ok=(404,))
        if response.status_code == 404:
            return None
        return self.json_object(response, "the device look-up")

    # -- profiles -------------------------------------------------------------------------

    async def _profile(self, account: Account, device: Device) -> str:
        """The id of the server's profile, holding the device's URL and login."""
        key = (account.key, device.server)
        wanted = (device.url, device.http_username, _digest(device.http_password))
        known = self._profiles.get(key)
        if known is not None and known.holds == wanted:
            return known.id
        # One creation per server, even when a burst of its devices arrives cold.
        async with self._locks(key):
            known = self._profiles.get(key)
            if known is None:
                known = await self._find(account, device)
            if known is None:
                known = await self._create(account, device)
            elif known.holds != wanted:
                known = await self._update(account, device, known)
            self._profiles[key] = known
            return known.id

    async def _find(self, account: Account, device: Device) -> Profile | None:
        """Our profile for the device's server, from the account's list. The list also
        fills the cache for our other servers: a cold start lists once, not per server."""
        pattern = re.compile(r"(\d+)".join(map(re.escape, self._template().split("{server}"))))
        ours: dict[int, list[Profile]] = {}
        for profile in await self._list_profiles(account, device.mac):
            name = profile.body.get("name")
            match = pattern.fullmatch(name) if isinstance(name, str) else None
            if match and self._name(int(match.group(1))) == name:
                ours.setdefault(int(match.group(1)), []).append(profile)
        for server, profiles in ours.items():
            if len(profiles) > 1:
                log.warning("Several profiles have our name, using the first",
                            component=self.label, name=self._name(server),
                            count=len(profiles), id=profiles[0].id)
            if server != device.server:
                self._profiles.setdefault((account.key, server), profiles[0])
        mine = ours.get(device.server)
        return mine[0] if mine else None

    async def _create(self, account: Account, device: Device) -> Profile:
        body = _profile_body(self._name(device.server), device, {})
        response = await self._send(account, "POST", "profiles", "profile", device.mac,
                                    body=body, secrets=(device.http_password,))
        answer = self.json_value(response, "the profile creation")
        profile_id = _id_of(answer)
        if profile_id is None:
            # No id in the answer: the listing shows it.
            found = await self._find(account, device)
            if found is None:
                raise ProviderError(f"{self.service} created the profile "
                                    f"{body['name']} but neither answered nor lists its id",
                                    Failure.TRANSIENT)
            profile_id = found.id
        log.info("Profile created", component=self.label, mac=device.mac, name=body["name"],
                 id=profile_id, url=device.url)
        return self._remember(account, profile_id, body)

    async def _update(self, account: Account, device: Device, known: Profile) -> Profile:
        body = _profile_body(self._name(device.server), device, known.body)
        response = await self._send(account, "PUT", f"profiles/{quote(known.id, safe='')}",
                                    "profile", device.mac, body=body, ok=(404,),
                                    secrets=(device.http_password,))
        if response.status_code == 404:  # deleted in the portal since we listed it
            return await self._create(account, device)
        log.info("Profile updated", component=self.label, mac=device.mac, name=body["name"],
                 id=known.id, url=device.url)
        return self._remember(account, known.id, body)

    def _remember(self, account: Account, profile_id: str, body: dict[str, Any]) -> Profile:
        self._addresses.setdefault(account.key, {})[profile_id] = _address(body)
        return Profile(profile_id, body, _holds(body))

    async def _list_profiles(self, account: Account, mac: str = "-") -> list[Profile]:
        profiles = [
            Profile(profile_id, entry, _holds(entry))
            async for entry in self._pages(account, "profiles", "profile", None,
                                           MAX_PROFILE_PAGES, mac)
            if (profile_id := _id_of(entry)) is not None
        ]
        addresses = self._addresses.setdefault(account.key, {})
        addresses.update({p.id: _address(p.body) for p in profiles})
        return profiles

    async def _address(self, account: Account, profile_id: str, mac: str) -> str | None:
        addresses = self._addresses.setdefault(account.key, {})
        if profile_id not in addresses:
            response = await self._send(account, "GET", f"profiles/{quote(profile_id, safe='')}",
                                        "profile", mac, ok=(404,))
            addresses[profile_id] = (None if response.status_code == 404 else
                                     _address(self.json_object(response, "the profile")))
        return addresses[profile_id]

    def _template(self) -> str:
        return self.settings.profile_name

    def _name(self, server: int) -> str:
        return self._template().replace("{server}", str(server))

    # -- HTTP -----------------------------------------------------------------------------

    async def _pages(self, account: Account, path: str, operation: str, limit: int | None,
                     max_pages: int, mac: str = "-") -> AsyncIterator[dict[str, Any]]:
        """The entries of a ``{results, next}`` listing, following ``next`` cursors."""
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(max_pages):
            params = {"limit": str(limit)} if limit else {}
            if cursor:
                params["cursor"] = cursor
            response = await self._send(account, "GET", path, operation, mac, params=params)
            page = self.json_object(response, f"the {path} list")
            results = page.get("results")
            if not isinstance(results, list):
                raise ProviderError(f"{self.service} answered the {path} list with no "
                                    "results", Failure.PERMANENT)
            for entry in results:
                if isinstance(entry, dict):
                    yield entry
            following = page.get("next")
            if not isinstance(following, str) or not following or following in seen:
                return
            seen.add(following)
            cursor = following

    async def _send(self, account: Account, method: str, path: str, operation: str,
                    mac: str, *, body: dict[str, Any] | None = None,
                    params: Mapping[str, str] | None = None, ok: tuple[int, ...] = (),
                    secrets: tuple[str, ...] = ()) -> httpx.Response:
        response = await self.request(account, method, f"{self.settings.api_url}{path}",
                                      operation=operation, mac=mac, json_body=body,
                                      params=params, headers={"API-KEY": account.text("api_key")})
        if response.is_success or response.status_code in ok:
            return response
        raise self.error(response, account, secrets)

    def classify(self, response: httpx.Response, text: str, account: Account
                 ) -> ProviderError | None:
        if _claimed(response):
            return owned_by_other(self.service, f"{response.status_code}: {text}",
                                  response.status_code, CLAIMED_HINT)
        return None


# -- helpers --------------------------------------------------------------------------------


def _check_device(device: Device) -> None:
    if "{mac}" in device.url.lower():
        raise ProviderError(
            "provisioning_url contains {mac}, but a Poly ZTP profile is shared by all "
            "devices of a server: use a URL without {mac}", Failure.PERMANENT)
    if device.settings:
        names = ", ".join(sorted(device.settings))
        raise ProviderError(f"Poly ZTP takes no per-device settings (got {names}): its "
                            "profiles hold only the provisioning server and login",
                            Failure.PERMANENT)


def _device_path(mac: str) -> str:
    return f"devices/{mac.lower()}"


def _claimed(response: httpx.Response) -> bool:
    """Poly's "claimed by another organization" answer (409 per peers; the words count)."""
    if response.status_code == 409:
        return True
    return 400 <= response.status_code < 500 and response.status_code != 429 and \
        "claimed" in response.text.lower()


def _profile_refused(response: httpx.Response) -> bool:
    """A device add refused because of its profile (unknown or deleted)."""
    return response.status_code == 404 or (
        response.status_code == 400 and "profile" in response.text.lower())


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _id_of(entry: Any) -> str | None:
    value = entry.get("id") if isinstance(entry, dict) else None
    return str(value) if isinstance(value, (str, int)) and str(value) else None


def _profile_of(device: Mapping[str, Any]) -> str | None:
    """The profile a device points at (``profile`` or ``profileid``: sources differ)."""
    for key in _PROFILE_KEYS:
        value = device.get(key)
        if isinstance(value, dict):
            value = value.get("id")
        if isinstance(value, (str, int)) and str(value):
            return str(value)
    return None


def _section(data: Mapping[str, Any] | None, *path: str) -> Mapping[str, Any]:
    for key in path:
        value = data.get(key) if isinstance(data, Mapping) else None
        data = value if isinstance(value, Mapping) else None
    return data if isinstance(data, Mapping) else {}


def _server(profile: Mapping[str, Any]) -> Mapping[str, Any]:
    return _section(profile, "template", "provisioning", "server")


def _address(profile: Mapping[str, Any]) -> str | None:
    address = _server(profile).get("address")
    return address if isinstance(address, str) else None


def _holds(profile: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """What a profile is known to hold; None when it cannot be compared (no password shown)
    or sends no phone anywhere (disabled)."""
    server = _server(profile)
    address, username, password = (server.get(k) for k in ("address", "username", "password"))
    if profile.get("enabled") is False or not all(
            isinstance(v, str) for v in (address, username, password)):
        return None
    return str(address), str(username), _digest(str(password))


def _profile_body(name: str, device: Device, existing: Mapping[str, Any]) -> dict[str, Any]:
    """The profile as created or replaced: our server and login, and the other fields an
    administrator may have set in the portal kept as they were (the shape peers send)."""
    provisioning = _section(existing, "template", "provisioning")
    body: dict[str, Any] = {
        "name": name,
        "enabled": True,
        "template": {
            "software": {"version": _section(existing, "template", "software").get("version")},
            "provisioning": {
                "server": {"address": device.url, "username": device.http_username,
                           "password": device.http_password},
                "polling": bool(provisioning.get("polling", False)),
                "quickSetup": bool(provisioning.get("quickSetup", False)),
            },
            "dhcp": {key: _section(existing, "template", "dhcp").get(key)
                     for key in ("bootServerOption", "option60Type")},
            "localization": {
                "language": _section(existing, "template", "localization").get("language")},
        },
    }
    custom = _section(existing, "custom")
    if custom:
        body["custom"] = {key: custom.get(key) for key in ("ucs", "obi")}
    return body
