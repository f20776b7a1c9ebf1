"""Yealink's legacy RPS over XML-RPC: a named server per URL, then a URL per device.

The oldest Yealink redirection service (superseded by the RPS JSON API and then by YMCS,
and possibly retired: nobody reports whether it still answers). It carries only a URL to the
phone, so the URL holds the device's key (:attr:`~rps_service.access.AccessMode.URL_KEY`).

Wire facts (two or more public clients or documents agree unless said otherwise):

* ``POST`` of ``text/xml`` to ``https://api-dm.yealink.com:8443/xmlrpc`` with HTTP Basic;
  every parameter is a string; answers are ``[boolean, value]``, the value often untyped;
* a device is registered to a named *server* of the account, created first with
  ``redirect.addServer(serverName, url)``; names have at most 20 characters of
  ``A-z 0-9 - _ .`` and space and are unique across all Yealink customers;
* ``redirect.registerDeviceWithUniqueUrl(mac, serverName, url, override)`` gives the device
  its own URL (one public client);
* ``Existing MAC(s): <mac>``: the MAC is already this account's; "Are you sure you want to
  override MAC addresses": another customer holds it (so does an answer ``Error:`` followed
  by ten lower-case letters or digits, as one client reads it); ``Error:Invalid MAC(s)``,
  ``Error: Invalid server``;
* ``redirect.deRegisterDevice(mac)``; ``redirect.checkDevice(mac)`` → ``registered``,
  ``unregistered``, ``unknown`` or ``registered elsewhere`` (one client).

Another customer's MAC is never taken silently: the override flag is sent only when
``[yealink-xmlrpc] override = true``, and then with a WARNING. See
docs/vendors/yealink-xmlrpc.md.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import SecretStr

from rps_service.access import URL_KEY, AccessMode
from rps_service.guesses import rely_on_guess
from rps_service.logs import get_logger
from rps_service.providers.errors import clean_text, owned_by_other
from rps_service.providers.keyed import CreatedOnce
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.section import HttpUrl, ProviderSettings
from rps_service.providers.vendor import Account, ProviderContext
from rps_service.providers.xmlrpc import NAME_LIMIT as NAME_LIMIT  # re-exported
from rps_service.providers.xmlrpc import RpcFault, XmlRpcProvider, answer_of, server_name

log = get_logger()

#: The Test button looks up this MAC: any answer proves the login (nothing is written).
CHECK_MAC = "001565000000"
SERVER_NAME = re.compile(r"[A-Za-z0-9_. -]{1,20}")
_EXISTING = re.compile(r"existing mac", re.IGNORECASE)
_OVERRIDE_PROMPT = re.compile(r"override mac", re.IGNORECASE)
_INVALID_MAC = re.compile(r"invalid mac", re.IGNORECASE)
_INVALID_SERVER = re.compile(r"invalid server", re.IGNORECASE)
_URL = re.compile(r"\burl\b", re.IGNORECASE)
#: One client reads this as "owned by another user" (case matters: "Error:Invalid…" is not).
_OWNED_CODE = re.compile(r"^Error:[a-z0-9]{10}")
_EXISTS = re.compile(r"exist|already|duplicat", re.IGNORECASE)
_LOGIN = re.compile(r"auth|login|password|permission", re.IGNORECASE)
_STATUSES = ("registered", "unregistered", "unknown", "registered elsewhere")
GUESS_LOGIN = ("Yealink RPS answers a wrong login with HTTP 401 (or a fault), so a look-up "
               "it answers proves the login")
GUESS_SERVER_EXISTS = ("an addServer refusal whose words say the name exists (or is "
                       "already taken, a duplicate) means this account's server of an "
                       "earlier run: its name is derived from the account and the URL")

OWNED_HINT = ("release it in the Yealink RPS account that holds it, or set "
              "[yealink-xmlrpc] override = true to take it from that customer")
URL_HINT = ("check provisioning_url: Yealink RPS takes http://, https://, ftp:// and "
            "tftp:// URLs")


class YealinkXmlrpcSettings(ProviderSettings):
    """``[yealink-xmlrpc]``: the RPS login and the override switch."""

    credential_keys: ClassVar[tuple[str, ...]] = ("username", "password")

    api_url: HttpUrl = "https://api-dm.yealink.com:8443/xmlrpc"
    username: str = ""
    password: SecretStr = SecretStr("")
    # Send the override flag when another Yealink customer holds the MAC: it takes the
    # phone away from that customer. In rps.ini only (never per tenant): an operator's
    # decision, not one a tenant's credentials can make.
    override: bool = False


def rps_mac(mac: str) -> str:
    """``001565ABCDEF`` → ``001565abcdef``, the form Yealink's own examples use."""
    return mac.lower()


class YealinkXmlrpcProvider(XmlRpcProvider):
    """Yealink legacy RPS, XML-RPC."""

    name = "yealink-xmlrpc"
    label = "Yealink"
    service = "Yealink RPS"
    settings_class = YealinkXmlrpcSettings
    settings: YealinkXmlrpcSettings
    access = AccessMode.URL_KEY
    credentials_noun = "login"

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self._servers: CreatedOnce[tuple[str, str]] = CreatedOnce()  # (account key, name)

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        self._servers.forget_accounts(keys)

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        url = device.url.replace("{mac}", rps_mac(device.mac))
        secrets = tuple(URL_KEY.findall(url))
        base = (await self.device_url(device.server)).split("{mac}")[0]
        name = await self._server(account, base, device.mac)
        ok, text = await self._register(account, device.mac, name, url, "0", secrets)
        if not ok and _INVALID_SERVER.search(text):
            # The server was deleted behind our back: create it again, once.
            self._servers.forget((account.key, name))
            name = await self._server(account, base, device.mac)
            ok, text = await self._register(account, device.mac, name, url, "0", secrets)
        if ok:
            return
        if _EXISTING.search(text):
            await self._repoint(account, device.mac, name, url, secrets)
            return
        if self._owned(text):
            await self._take(account, device, name, url, text, secrets)
            return
        raise self._refusal("registerDeviceWithUniqueUrl", text)

    async def _repoint(self, account: Account, mac: str, name: str, url: str,
                       secrets: tuple[str, ...]) -> None:
        """The MAC is already ours: register it again with the override flag (it replaces
        only our own registration); if RPS still says "existing", remove and add."""
        ok, text = await self._register(account, mac, name, url, "1", secrets)
        if not ok and _EXISTING.search(text):
            await self._deregister(account, mac, secrets)
            ok, text = await self._register(account, mac, name, url, "0", secrets)
        if not ok:
            raise self._refusal("registerDeviceWithUniqueUrl", text)

    async def _take(self, account: Account, device: Device, name: str, url: str, text: str,
                    secrets: tuple[str, ...]) -> None:
        """Another customer holds the MAC: a failure, unless ``override = true``."""
        detail = f"registerDeviceWithUniqueUrl answered {text}"
        if not self.settings.override:
            raise owned_by_other(self.service, detail, hint=OWNED_HINT)
        log.warning("Taking the MAC from another Yealink RPS account (override = true)",
                    component=self.label, mac=device.mac, server=device.server)
        ok, text = await self._register(account, device.mac, name, url, "1", secrets)
        if not ok:
            if self._owned(text):
                raise owned_by_other(self.service, f"even with the override flag: {text}",
                                     hint="ask Yealink support to move it")
            raise self._refusal("registerDeviceWithUniqueUrl", text)

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        await self._deregister(account, device.mac, ())

    async def _deregister(self, account: Account, mac: str, secrets: tuple[str, ...]) -> None:
        ok, text = await self._call(account, "redirect.deRegisterDevice", rps_mac(mac),
                                    operation="deregister", mac=mac, secrets=secrets)
        if ok:
            return
        # The refusal's words for "not yours / not there" are not public: ask what RPS holds.
        status = await self._status(account, mac)
        if status == "registered":
            raise self._refusal("deRegisterDevice", text)
        log.info("Nothing to remove", component=self.label, mac=mac, status=status)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        status = await self._status(account, device.mac)
        if status == "registered":
            return VendorRecord(device.mac, None, detail="registered")
        if status == "registered elsewhere":
            return VendorRecord(device.mac, None, ours=False, detail=status)
        return None

    async def vendor_check(self, account: Account) -> str:
        # No call only checks a login: a look-up answered ``true`` proves it (a bad login
        # is taken to be an HTTP 401 or a fault); a ``false`` fails the Test, quoting it.
        ok, text = await self._call(account, "redirect.checkDevice", CHECK_MAC,
                                    operation="check")
        if not ok:
            failure = Failure.BAD_LOGIN if _LOGIN.search(text) else Failure.PERMANENT
            raise ProviderError(f"{self.service} answered the Test's redirect.checkDevice "
                                f"with {text or 'false'}: the login is not confirmed", failure,
                                hint=self.bad_login_hint())
        rely_on_guess(self.label, GUESS_LOGIN)
        return (f"Yealink RPS accepted the login {account.text('username')} (a look-up "
                f"answered {text or 'OK'}); whether the account may redirect phones is not "
                "verified: it shows only at the first add")

    # -- calls ----------------------------------------------------------------------------

    async def _server(self, account: Account, url: str, mac: str) -> str:
        """The name of this account's server for ``url``, created on first use."""
        name = server_name(account.text("username"), url)

        async def add() -> None:
            ok, text = await self._call(account, "redirect.addServer", name, url,
                                        operation="add_server", mac=mac)
            if not ok:
                if not _EXISTS.search(text):
                    raise self._refusal("addServer", text)
                # Ours from an earlier run (the name is derived from the account and URL).
                rely_on_guess(self.label, GUESS_SERVER_EXISTS)
                log.info("Server already exists", component=self.label, mac=mac, name=name)

        await self._servers.ensure((account.key, name), add)
        return name

    async def _register(self, account: Account, mac: str, name: str, url: str,
                        override: str, secrets: tuple[str, ...]) -> tuple[bool, str]:
        return await self._call(account, "redirect.registerDeviceWithUniqueUrl",
                                rps_mac(mac), name, url, override, operation="register",
                                mac=mac, secrets=secrets)

    async def _status(self, account: Account, mac: str) -> str:
        ok, text = await self._call(account, "redirect.checkDevice", rps_mac(mac),
                                    operation="lookup", mac=mac)
        status = " ".join(text.split()).lower()
        if not ok or status not in _STATUSES:
            raise self._refusal("checkDevice", text or "false")
        return status

    async def _call(self, account: Account, method: str, *params: str, operation: str,
                    mac: str = "-", secrets: tuple[str, ...] = ()) -> tuple[bool, str]:
        result = await self.rpc(account, method, *params, operation=operation, mac=mac,
                                secrets=secrets)
        if isinstance(result, RpcFault):
            if _LOGIN.search(result.text):
                raise ProviderError(f"{self.service} refused {method} ({result})",
                                    Failure.BAD_LOGIN, hint=self.bad_login_hint())
            raise ProviderError(f"{self.service} answered {method} with {result}",
                                Failure.PERMANENT)
        answer = answer_of(result)
        if answer is None:
            raise ProviderError(f"{self.service} answered {method} without [boolean, text]",
                                Failure.PERMANENT)
        return answer[0], clean_text(answer[1], (*account.secrets, *secrets))

    def _owned(self, text: str) -> bool:
        return bool(_OVERRIDE_PROMPT.search(text) or _OWNED_CODE.search(text.strip()))

    def _refusal(self, method: str, text: str) -> ProviderError:
        message = f"{self.service} refused {method}: {text or 'false'}"
        if _INVALID_MAC.search(text):
            return ProviderError(message, Failure.PERMANENT,
                                 hint="Yealink RPS does not take this MAC")
        if _INVALID_SERVER.search(text):
            return ProviderError(message, Failure.PERMANENT, hint=(
                "the RPS server this daemon created is missing or another customer's: "
                "check the account's servers in the RPS portal"))
        if _URL.search(text):
            return ProviderError(message, Failure.PERMANENT, hint=URL_HINT)
        return ProviderError(message, Failure.PERMANENT)
