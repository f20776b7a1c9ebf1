"""Gigaset's legacy redirect service: XML-RPC ``autoprov.*`` at prov.gigaset.net.

A Gigaset phone is known to the service by its MAC-ID, the MAC and a 4-character code
printed on the device label (``7C2F80123456-AB12``). The code cannot be computed, so every
``add`` must bring it (event field ``mac_id``: the code alone or the whole MAC-ID); later
events reuse the one stored on the device row.

* register / re-point: ``autoprov.deregisterDevice(macId)`` (whatever it answers, unless
  the MAC-ID itself is refused), then ``autoprov.registerDevice(macId, url, providerName)``;
  registering a MAC-ID that is already registered is not an update, so re-pointing always
  deregisters first, as both public clients do;
* remove: ``autoprov.deregisterDevice(macId)``; ``mac_not_found:`` is success;
* look-up: ``autoprov.checkDevice(macId)`` (it says whether, not where: no URL); no list;
* Test: there is no call that only checks a login; ``checkDevice`` on a dummy MAC-ID proves
  the login (an HTTP 401 is taken to be a bad one: a guess, logged once) when it answers
  ``true`` or a code about the MAC-ID; any other ``false`` fails the Test.

Answers are ``[boolean, value]``; a failure's value is ``<code>:<the input>``. Codes:
``mac_already_in_use`` (another account holds the MAC), ``mac_invalid`` / ``mac_not_exist``
(the MAC-ID is refused: usually a wrong code), ``mac_not_found`` (not registered),
``url_invalid``, ``name_invalid``. The service carries only a URL to the phone, so the URL
holds the device's key (:attr:`~rps_service.access.AccessMode.URL_KEY`), and it expands
``%MACD`` to the phone's MAC: the registered URL is ``<provisioning_url><key>/%MACD.xml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field, SecretStr

from rps_service.access import AccessMode, mask_url_keys
from rps_service.guesses import rely_on_guess
from rps_service.providers.errors import clean_text, owned_by_other
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import HttpUrl, ProviderSettings
from rps_service.providers.vendor import Account
from rps_service.providers.xmlrpc import RpcFault, XmlRpcProvider, answer_of

DEFAULT_PROVIDER_NAME = "rps-service"
#: The file the phone asks for: the service puts the phone's MAC in place of %MACD.
FILE_PLACEHOLDER = "%MACD.xml"
#: Test: a MAC-ID no device has; an answer about it proves the login.
DUMMY_MAC_ID = "000000000000-0000"
#: The codes of a ``false`` answer that speak of the MAC-ID (not of the caller).
_MAC_ID_CODES = frozenset({"mac_not_found", "mac_invalid", "mac_not_exist",
                           "mac_already_in_use"})
GUESS_LOGIN = ("the Gigaset redirect service answers a wrong login with HTTP 401, so a "
               "look-up it answers proves the login")
_CODE = re.compile(r"[A-Za-z0-9]{4}")
_FULL = re.compile(r"(?P<mac>[0-9A-Fa-f]{12})-?(?P<code>[A-Za-z0-9]{4})")
MAC_ID_FORMAT = ("the device label's MAC-ID (12 hex digits, '-', 4 letters or digits, "
                 "e.g. 7C2F80123456-AB12) or its 4-character code")
CODE_HINT = "check the 4-character code after the MAC on the device label (event field mac_id)"


def normalize_mac_id(value: str, mac: str | None = None) -> str | None:
    """``<12 upper hex>-<4 upper alnum>`` from a code alone (given ``mac``) or a whole
    MAC-ID (with or without the hyphen); None when ``value`` is neither."""
    value = value.strip()
    if _CODE.fullmatch(value):
        return f"{mac}-{value.upper()}" if mac else None
    full = _FULL.fullmatch(value)
    if full is None:
        return None
    return f"{full['mac'].upper()}-{full['code'].upper()}"


class GigasetSettings(ProviderSettings):
    """``[gigaset]``: the redirect service's login and the provider name shown there."""

    credential_keys: ClassVar[tuple[str, ...]] = ("username", "password", "provider_name")
    optional_keys: ClassVar[tuple[str, ...]] = ("provider_name",)

    api_url: HttpUrl = "https://prov.gigaset.net/apxml/rpc.do"
    username: str = ""
    password: SecretStr = SecretStr("")
    # The free-text third argument of registerDevice (the portal shows it per device).
    provider_name: str = Field("", max_length=64)
    # No published limit; the legacy service is old and small: stay gentle.
    rate_limit: float = Field(2.0, gt=0, le=10_000)


class GigasetProvider(XmlRpcProvider):
    """Gigaset redirect (legacy XML-RPC, MAC-ID)."""

    name = "gigaset"
    label = "Gigaset"
    service = "Gigaset redirect"
    settings_class = GigasetSettings
    access = AccessMode.URL_KEY
    credentials_noun = "login"

    async def device_url(self, server: int, url_key: str | None = None) -> str:
        """The device's URL key folder plus ``%MACD.xml`` (the service expands ``%MACD``,
        so a ``{mac}`` in ``provisioning_url`` becomes ``%MACD`` too)."""
        url = await super().device_url(server, url_key)
        url = url.replace("{mac}", "%MACD")
        return url + FILE_PLACEHOLDER if url_key else url

    async def event_problem(self, action: str, server: int | None,
                            fields: Mapping[str, object]) -> tuple[str, str] | None:
        """An ``add`` needs the MAC-ID code; a ``mac_id`` given must read as one."""
        if problem := await super().event_problem(action, server, fields):
            return problem
        given = fields.get("mac_id")
        if given is None:
            if action == "add":
                return ("mac_id", f"required by the Gigaset redirect service: {MAC_ID_FORMAT}")
            return None
        if not isinstance(given, str) or normalize_mac_id(given, "0" * 12) is None:
            return ("mac_id", f"must be {MAC_ID_FORMAT}")
        return None

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        mac_id = self._mac_id(device)
        ok, text = await self._call(account, "autoprov.deregisterDevice", mac_id,
                                    operation="deregister", mac=device.mac)
        if not ok and _code(text) in ("mac_invalid", "mac_not_exist"):
            raise self._refusal(text, mac_id)
        name = account.text("provider_name") or DEFAULT_PROVIDER_NAME
        ok, text = await self._call(account, "autoprov.registerDevice", mac_id, device.url,
                                    name, operation="register", mac=device.mac)
        if not ok:
            raise self._refusal(text, mac_id)

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        mac_id = self._mac_id(device)
        ok, text = await self._call(account, "autoprov.deregisterDevice", mac_id,
                                    operation="deregister", mac=device.mac)
        if not ok and _code(text) != "mac_not_found":
            raise self._refusal(text, mac_id)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        mac_id = self._mac_id(device)
        ok, text = await self._call(account, "autoprov.checkDevice", mac_id,
                                    operation="lookup", mac=device.mac)
        if ok or text.upper() in (device.mac, mac_id):
            return VendorRecord(device.mac)  # the service does not tell the URL
        code = _code(text)
        if code == "mac_not_found":
            return None
        if code == "mac_already_in_use":
            return VendorRecord(device.mac, ours=False, detail=self._text(text, mac_id))
        raise self._refusal(text, mac_id)

    async def vendor_check(self, account: Account) -> str:
        # No call only checks a login: a look-up of a dummy MAC-ID answered with what the
        # service says about a MAC-ID proves the login (a bad one is taken to be an HTTP
        # 401); any other refusal fails the Test, quoting it.
        method = "autoprov.checkDevice"
        ok, text = await self._call(account, method, DUMMY_MAC_ID, operation="check")
        if not ok and _code(text) not in _MAC_ID_CODES:
            raise ProviderError(f"{self.service} answered the Test's {method} with "
                                f"{self._text(text) or 'false'}: the login is not confirmed",
                                Failure.PERMANENT, hint=self.bad_login_hint())
        rely_on_guess(self.label, GUESS_LOGIN)
        answered = self._text(text) if not ok else "true"
        return (f"{self.service} accepted the login {account.text('username')} ({method} "
                f"answered a dummy MAC-ID with {answered}); whether the account may redirect "
                "phones is not verified: it shows only at the first add")

    # -- XML-RPC --------------------------------------------------------------------------

    async def _call(self, account: Account, method: str, *params: str, operation: str,
                    mac: str = "-") -> tuple[bool, str]:
        """``method(*params)``'s ``[boolean, value]`` answer as ``(ok, value text)``."""
        result = await self.rpc(account, method, *params, operation=operation, mac=mac)
        if isinstance(result, RpcFault):
            raise ProviderError(f"{self.service} answered {method} with {result}",
                                Failure.PERMANENT)
        if isinstance(result, bool):  # a bare boolean: tolerated
            return result, ""
        answer = answer_of(result)
        if answer is None:
            raise ProviderError(f"{self.service} answered {method} with an unexpected value",
                                Failure.PERMANENT)
        return answer

    def _mac_id(self, device: Device) -> str:
        mac_id = normalize_mac_id(device.mac_id or "", device.mac)
        if mac_id is None:
            raise ProviderError(
                f"No MAC-ID known for {device.mac}: send the event with mac_id, "
                f"{MAC_ID_FORMAT}", Failure.PERMANENT)
        if not mac_id.startswith(device.mac):
            raise ProviderError(
                f"The mac_id given is the MAC-ID of {mac_id[:12]}, not of {device.mac}: "
                f"send the one on this device's label", Failure.PERMANENT)
        return mac_id

    def _refusal(self, text: str, mac_id: str) -> ProviderError:
        """A ``false`` answer as the error its code means."""
        code, shown = _code(text), self._text(text, mac_id)
        if code == "mac_already_in_use":
            return owned_by_other(self.service, shown)
        if code in ("mac_invalid", "mac_not_exist"):
            return ProviderError(f"{self.service} refused the MAC-ID ({shown})",
                                 Failure.PERMANENT, hint=CODE_HINT)
        if code == "url_invalid":
            return ProviderError(f"{self.service} refused the URL ({shown})", Failure.PERMANENT,
                                 hint=f"check provisioning_url in [{self.name}] or the one "
                                      "stored for the server")
        if code == "name_invalid":
            return ProviderError(f"{self.service} refused the provider name ({shown})",
                                 Failure.PERMANENT, hint=f"check provider_name in [{self.name}]")
        return ProviderError(f"{self.service} refused the call ({shown or 'no reason'})",
                             Failure.PERMANENT)

    def _text(self, text: str, mac_id: str = "") -> str:
        """A vendor text for rps.log: URL keys cut to their selector, the label code
        masked (the phones use it as a password at Gigaset), one short line."""
        text = mask_url_keys(text)
        if mac_id:
            text = re.sub(re.escape(mac_id), f"{mac_id[:12]}-****", text, flags=re.I)
        return clean_text(text)



def _code(text: str) -> str:
    """The error code of a ``<code>:<input>`` value (lower case)."""
    return text.partition(":")[0].strip().lower()
