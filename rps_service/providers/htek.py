"""Htek's RPS over XML-RPC (Yealink-style): a named server per URL, then a MAC per server.

**Experimental.** Htek's API page could be read only in part and no public client calls the
service, so most facts here rest on one source or on the Yealink service it copies. Each
guess is said once per process when first relied on (``Relying on a guess.``, the first one
being that the provider is experimental), and refusals this module does not recognise carry
a hint pointing at docs/vendors/htek.md (which lists what to check with a real account).

Wire facts (tags as in docs/vendors/htek.md: one source unless said otherwise):

* ``POST`` of ``text/xml`` to ``https://rps.htek.com/index.php/xmlrpc`` with HTTP Basic
  (username and plain password; two sources agree);
* answers are ``[boolean, value]``, the value untyped (``<value>OK</value>``);
* ``redirect.addServer(serverName, url)`` (the two-string signature is Yealink's: a guess),
  then ``redirect.registerDevice(mac, serverName)``; ``registerDevice(mac, serverName,
  isOverride)`` with ``"1"`` takes a MAC another RPS user holds (the string type is a guess);
* ``redirect.deRegisterDevice(mac)`` and ``redirect.checkDevice(mac)`` (their parameters and
  checkDevice's ``registered`` / ``unregistered`` / ``registered elsewhere`` are Yealink's:
  guesses); no call deletes a server;
* error texts ``Invalid MAC(s)``, ``Existing MAC(s)`` (the MAC is this account's already),
  ``Invalid server``, "Are you sure you want to override MAC addresses" (another user's);
  prefix, spacing and case vary, so they are matched case-insensitively on substrings;
* the registered URL is a folder: the phone asks the RPS for ``cfg<mac>.xml`` and is sent
  to ``<url>/cfg<mac>.xml``.

Htek carries only a URL to the phone, so the URL holds the device's key
(:attr:`~rps_service.access.AccessMode.URL_KEY`) and each device gets its own server (named
from the account and the URL, so a re-registration finds it again). Another user's MAC is
never taken silently: the override flag is sent only with ``[htek] override = true``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from rps_service.guesses import rely_on_guess
from rps_service.logs import get_logger
from rps_service.providers.errors import owned_by_other
from rps_service.providers.keyed import CreatedOnce
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.rpcredirect import RpcRedirectProvider, RpcRedirectSettings
from rps_service.providers.section import HttpUrl, ProviderSettings
from rps_service.providers.vendor import Account, ProviderContext
from rps_service.providers.xmlrpc import RpcFault, answer_of, server_name

log = get_logger()

#: The Test button looks up this MAC (Htek's OUI, no phone): any answer proves the login.
CHECK_MAC = "001fc1000000"
_EXISTING = re.compile(r"existing\s*mac", re.IGNORECASE)
_OVERRIDE = re.compile(r"override\s*mac", re.IGNORECASE)
_INVALID_MAC = re.compile(r"invalid\s*mac", re.IGNORECASE)
_INVALID_SERVER = re.compile(r"invalid\s*server", re.IGNORECASE)
_EXISTS = re.compile(r"exist|already|duplicat", re.IGNORECASE)
_GONE = re.compile(r"not\s*(?:registered|found|exist)|unregistered|no\s*such", re.IGNORECASE)
_LOGIN = re.compile(r"auth|login|password|permission|denied", re.IGNORECASE)
_STATUSES = ("registered", "unregistered", "unknown", "registered elsewhere")

EXPERIMENTAL_HINT = ("Htek RPS support is experimental: this answer is not one the public "
                     "Htek documentation lists (docs/vendors/htek.md)")
OWNED_HINT = ("release it in the Htek RPS account that holds it, or set [htek] "
              "override = true to take it from that user")
GUESS_EXPERIMENTAL = ("Htek RPS works as its partly readable API page and Yealink's RPS it "
                      "copies say (an experimental provider: docs/vendors/htek.md)")
GUESS_ADD_SERVER = "Htek RPS takes addServer(serverName, url), two strings, as Yealink's RPS"
GUESS_SERVER_EXISTS = ("an addServer refusal whose words say the name exists (or is already "
                       "taken, a duplicate) means this account's server of an earlier run: "
                       "its name is derived from the account and the URL")
GUESS_FLAG = "Htek RPS takes registerDevice's override flag as the string \"1\""
GUESS_DEREGISTER = "Htek RPS removes a device with deRegisterDevice(mac), as Yealink's RPS"
GUESS_GONE = ("a deRegisterDevice refusal saying the MAC is not registered (not found, no "
              "such MAC) means there is nothing to remove")
GUESS_CHECK = ("Htek RPS's checkDevice(mac) answers registered, unregistered or registered "
               "elsewhere, as Yealink's RPS")
GUESS_LOGIN = ("Htek RPS answers a wrong login with HTTP 401 (or a fault), so a look-up it "
               "answers proves the login")


class HtekSettings(RpcRedirectSettings):
    """``[htek]``: the RPS login and the override switch."""

    api_url: HttpUrl = "https://rps.htek.com/index.php/xmlrpc"
    # Send the override flag when another Htek RPS user holds the MAC: it takes the phone
    # away from that user. In rps.ini only (never per tenant): an operator's decision.
    override: bool = False


class HtekProvider(RpcRedirectProvider):
    """Htek RPS, XML-RPC (experimental)."""

    name = "htek"
    label = "Htek"
    service = "Htek RPS"
    settings_class = HtekSettings
    settings: HtekSettings
    credentials_noun = "login"
    upper_mac: ClassVar[bool] = False  # the vendor's examples: 001fc1000001

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self._servers: CreatedOnce[tuple[str, str]] = CreatedOnce()  # (account key, name)

    def forget_accounts(self, keys: frozenset[str]) -> None:
        super().forget_accounts(keys)
        self._servers.forget_accounts(keys)

    # -- operations -----------------------------------------------------------------------

    async def vendor_register(self, account: Account, device: Device) -> None:
        rely_on_guess(self.label, GUESS_EXPERIMENTAL)
        name = await self._server(account, device)
        ok, text = await self._register(account, device.mac, name)
        if not ok and _INVALID_SERVER.search(text):
            # The server was deleted behind our back: create it again, once.
            self._servers.forget((account.key, name))
            name = await self._server(account, device)
            ok, text = await self._register(account, device.mac, name)
        if ok:
            return
        if _EXISTING.search(text):
            # Already this account's (to this server or another one): remove and add.
            await self._deregister(account, device.mac)
            ok, text = await self._register(account, device.mac, name)
            if ok:
                return
        if _OVERRIDE.search(text):
            await self._take(account, device, name, text)
            return
        raise self._refusal("registerDevice", text)

    async def _take(self, account: Account, device: Device, name: str, text: str) -> None:
        """Another RPS user holds the MAC: a failure, unless ``override = true``."""
        if not self.settings.override:
            raise owned_by_other(self.service, f"registerDevice answered {text}",
                                 hint=OWNED_HINT)
        log.warning("Taking the MAC from another Htek RPS account (override = true)",
                    component=self.label, mac=device.mac, server=device.server)
        rely_on_guess(self.label, GUESS_FLAG)
        ok, text = await self._register(account, device.mac, name, override=True)
        if ok:
            return
        if _OVERRIDE.search(text):
            raise owned_by_other(self.service, f"even with the override flag: {text}",
                                 hint="ask Htek support to move it")
        raise self._refusal("registerDevice", text)

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        rely_on_guess(self.label, GUESS_EXPERIMENTAL)
        await self._deregister(account, device.mac)

    async def _deregister(self, account: Account, mac: str) -> None:
        rely_on_guess(self.label, GUESS_DEREGISTER)
        ok, text = await self._call(account, "redirect.deRegisterDevice", mac,
                                    operation="deregister", mac=mac)
        if ok:
            return
        if _GONE.search(text):
            rely_on_guess(self.label, GUESS_GONE)
        else:
            # The refusal's words for "not there" are not public: ask what RPS holds.
            status = await self._status(account, mac)
            if status == "registered":
                raise self._refusal("deRegisterDevice", text)
        log.info("Nothing to remove", component=self.label, mac=mac)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        rely_on_guess(self.label, GUESS_EXPERIMENTAL)
        status = await self._status(account, device.mac)
        if status == "registered":
            return VendorRecord(device.mac, None, detail=status)
        if status == "registered elsewhere":
            return VendorRecord(device.mac, None, ours=False, detail=status)
        return None

    async def vendor_check(self, account: Account) -> str:
        rely_on_guess(self.label, GUESS_EXPERIMENTAL)
        # Htek has no login check: a look-up answered ``true`` proves it (a bad login is
        # taken to be an HTTP 401 or a fault); a ``false`` or a fault fails the Test.
        method = "redirect.checkDevice"
        answer = await self.rpc(account, method, CHECK_MAC, operation="check")
        read = None if isinstance(answer, RpcFault) else _tolerant(answer)
        said = answer.text if isinstance(answer, RpcFault) else read[1] if read else ""
        if (read is None or not read[0]) and _LOGIN.search(said):
            raise self.refused_login(method, answer, account)
        if read is None or not read[0]:
            raise self.unconfirmed_login(method, answer, account)
        rely_on_guess(self.label, GUESS_LOGIN)
        shown = self.vendor_text(read[1], account) or "OK"
        return self.accepted(account, f"{method} answered a look-up with {shown}")

    # -- calls ----------------------------------------------------------------------------

    async def _server(self, account: Account, device: Device) -> str:
        """The name of this account's server for the device's URL, created on first use."""
        name = server_name(account.text("username"), device.url)

        async def add() -> None:
            rely_on_guess(self.label, GUESS_ADD_SERVER)
            ok, text = await self._call(account, "redirect.addServer", name, device.url,
                                        operation="add_server", mac=device.mac, raw=True)
            if ok:
                return
            if not _EXISTS.search(text):
                raise self._refusal("addServer", text)
            rely_on_guess(self.label, GUESS_SERVER_EXISTS)
            log.info("Server already exists", component=self.label, mac=device.mac, name=name)

        await self._servers.ensure((account.key, name), add)
        return name

    async def _register(self, account: Account, mac: str, name: str, *,
                        override: bool = False) -> tuple[bool, str]:
        flag = ("1",) if override else ()
        return await self._call(account, "redirect.registerDevice", mac, name, *flag,
                                operation="register", mac=mac)

    async def _status(self, account: Account, mac: str) -> str:
        rely_on_guess(self.label, GUESS_CHECK)
        ok, text = await self._call(account, "redirect.checkDevice", mac, operation="lookup",
                                    mac=mac)
        status = " ".join(text.replace("_", " ").split()).lower()
        if not ok or status not in _STATUSES:
            raise self._refusal("checkDevice", text or "false")
        return status

    async def _call(self, account: Account, method: str, first: str, *more: str,
                    operation: str, mac: str = "-", raw: bool = False) -> tuple[bool, str]:
        """``(ok, text)`` of a ``[boolean, value]`` answer, the text cleaned for rps.log.
        ``first`` is the MAC (written as Htek's examples do) unless ``raw``."""
        sent = first if raw else self.vendor_mac(first)
        answer = await self.rpc(account, method, sent, *more, operation=operation, mac=mac)
        if isinstance(answer, RpcFault):
            if _LOGIN.search(answer.text):
                raise self.refused_login(method, answer, account)
            raise _hinted(self.unexpected(method, answer, account))
        read = _tolerant(answer)
        if read is None:
            raise _hinted(self.unexpected(method, answer, account))
        return read[0], self.vendor_text(read[1], account)

    def _refusal(self, method: str, text: str) -> ProviderError:
        message = f"{self.service} refused {method}: {text or 'false'}"
        if _INVALID_MAC.search(text):
            return ProviderError(message, Failure.PERMANENT,
                                 hint="Htek RPS does not take this MAC")
        if _INVALID_SERVER.search(text):
            return ProviderError(message, Failure.PERMANENT, hint=(
                "the RPS server this daemon created is missing or another user's: check "
                "the account's servers in the Htek RPS portal"))
        return ProviderError(message, Failure.PERMANENT, hint=EXPERIMENTAL_HINT)


def _tolerant(answer: Any) -> tuple[bool, str] | None:
    """``[boolean, value]`` as :func:`answer_of` reads it; also a bare boolean, or a bare
    text that starts ``OK`` or ``Error`` (shapes a partly documented service may use)."""
    read = answer_of(answer)
    if read is not None:
        return read
    if isinstance(answer, bool):
        return answer, ""
    if isinstance(answer, str):
        word = answer.strip().lower()
        if word.startswith("ok"):
            return True, answer.strip()
        if word.startswith("error"):
            return False, answer.strip()
    return None


def _hinted(err: ProviderError) -> ProviderError:
    hint = f"{err.hint}; {EXPERIMENTAL_HINT}" if err.hint else EXPERIMENTAL_HINT
    return ProviderError(err.message, err.failure, hint=hint, status=err.status,
                         retry_after=err.retry_after)
