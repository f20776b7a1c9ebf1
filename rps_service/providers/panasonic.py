"""Panasonic's XML-RPC redirection (``provisioning.e-connecting.net``, ``ipredirect.*``).

Success is a bare ``true``; a failure is an XML-RPC fault whose code says why: 100 the URL
is refused, 200 the MAC is malformed, 201 the MAC is not known (on a remove: nothing to
remove, done), 202 the MAC belongs to another user. The codes come from one peer only, so
any other fault fails the event with its code and text.

The phone gets only the URL, which holds the device's key and ends in ``Config{MAC}.cfg``:
``{MAC}`` is replaced by the phone's MAC (peers append it to every URL they register), so
the phone asks ``/ztprov/`` for ``Config<MAC>.cfg`` under its key.
"""

from __future__ import annotations

from typing import Any

from rps_service.guesses import rely_on_guess
from rps_service.models import answer_mac
from rps_service.providers.errors import owned_by_other
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.rpcredirect import (
    RpcRedirectProvider,
    RpcRedirectSettings,
)
from rps_service.providers.section import HttpUrl
from rps_service.providers.vendor import Account
from rps_service.providers.xmlrpc import RpcFault

BAD_URL = 100
BAD_MAC = 200
NOT_FOUND = 201
OWNED = 202
#: A well-formed MAC no phone has, for the Test button's look-up.
PROBE_MAC = "0080F0000000"
GUESS_LOGIN = ("Panasonic answers a wrong login with HTTP 401, so a look-up it answers "
               "proves the login")


class PanasonicSettings(RpcRedirectSettings):
    """``[panasonic]``: the redirection endpoint and the account's login."""

    api_url: HttpUrl = "https://provisioning.e-connecting.net/redirect/xmlrpc"


class PanasonicProvider(RpcRedirectProvider):
    """Panasonic redirection over XML-RPC."""

    name = "panasonic"
    label = "Panasonic"
    service = "Panasonic redirection"
    settings_class = PanasonicSettings
    file_name = "Config{MAC}.cfg"

    async def vendor_register(self, account: Account, device: Device) -> None:
        # Registering a MAC this account holds again overwrites its URL (re-point).
        answer = await self.rpc(account, "ipredirect.registerPhone",
                                self.vendor_mac(device.mac), device.url,
                                operation="register", mac=device.mac)
        if answer is True:
            return
        if isinstance(answer, RpcFault) and answer.code == BAD_URL:
            raise ProviderError(f"{self.service} refused the URL ({answer})", Failure.PERMANENT,
                                hint=f"check provisioning_url of [{self.name}]")
        raise self._failure("ipredirect.registerPhone", answer, account)

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        answer = await self.rpc(account, "ipredirect.unregisterPhone",
                                self.vendor_mac(device.mac), operation="deregister",
                                mac=device.mac)
        if answer is True or (isinstance(answer, RpcFault) and answer.code == NOT_FOUND):
            return
        raise self._failure("ipredirect.unregisterPhone", answer, account)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        method = "ipredirect.checkPhones"
        answer = await self.rpc(account, method, self.vendor_mac(device.mac),
                                operation="lookup", mac=device.mac)
        code = _code_for(answer, device.mac)
        if code == 0:
            return VendorRecord(device.mac)  # the answer does not tell the URL
        if code == NOT_FOUND:
            return None
        if code == OWNED:
            return VendorRecord(device.mac, ours=False, detail=f"fault {OWNED}")
        raise self._failure(method, answer if code is None else RpcFault(code, ""), account)

    async def vendor_check(self, account: Account) -> str:
        # Panasonic offers no login check: a look-up of a MAC no phone has, answered with
        # the list of per-MAC codes ``checkPhones`` gives, proves the login (a bad one is
        # taken to be an HTTP 401); a fault or any other answer fails the Test.
        method = "ipredirect.checkPhones"
        answer = await self.rpc(account, method, PROBE_MAC, operation="check")
        if not isinstance(answer, list) or _code_for(answer, PROBE_MAC) is None:
            raise self.unconfirmed_login(method, answer, account)
        rely_on_guess(self.label, GUESS_LOGIN)
        return self.accepted(account, f"{method} answered a look-up of a MAC no phone has")

    def _failure(self, method: str, answer: Any, account: Account) -> ProviderError:
        if not isinstance(answer, RpcFault):
            return self.unexpected(method, answer, account)
        if answer.code == OWNED:
            return owned_by_other(self.service, str(answer))
        if answer.code == BAD_MAC:
            return ProviderError(f"{self.service} refused the MAC as malformed ({answer})",
                                 Failure.PERMANENT)
        if answer.code == NOT_FOUND:
            return ProviderError(f"{self.service} does not know the MAC ({answer})",
                                 Failure.PERMANENT,
                                 hint="check the MAC; Panasonic knows the MACs of its phones")
        return self.unexpected(method, answer, account)


def _code_for(answer: Any, mac: str) -> int | None:
    """The ``faultCode`` ``checkPhones`` gives ``mac``: its answer is a list of structs,
    one per MAC asked (the one naming ``mac``, else the first); a plain fault counts too."""
    if isinstance(answer, RpcFault):
        return answer.code
    if not isinstance(answer, list):
        return None
    entries = [e for e in answer if isinstance(e, dict)]
    named = [e for e in entries
             if any(answer_mac(e.get(k)) == mac for k in ("mac", "macAddress"))]
    found = named or entries
    code = found[0].get("faultCode") if found else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None
