"""Auerswald's XML-RPC redirection (``provisioning.auerswald.de/xmlrpc/``).

Everything here rests on a single public client: ``DeviceRegister(mac, url)`` and
``DeviceDeregister(mac)`` answer something truthy on success and something falsy when they
refuse, without saying why; ``DeviceInfo(mac)`` answers a struct naming the MAC when this
account holds it, anything else when not. So a refused call is followed by a look-up:

* a refused register for a MAC this account does not hold is reported as held by another
  account (that client's reading; Auerswald's answer does not say), one it holds as a plain
  refusal (its previous URL stays);
* a refused remove for a MAC this account does not hold is done (nothing of ours to remove).

MACs go out as 12 lower-case hex digits. The phone gets only the URL, which holds the
device's key and ends in ``<MACADR>.xml``: the phone replaces ``<MACADR>`` by its MAC.
"""

from __future__ import annotations

from typing import Any

from rps_service.guesses import rely_on_guess
from rps_service.logs import get_logger
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

log = get_logger()

#: A well-formed MAC no phone has (Auerswald's OUI), for the Test button's look-up.
PROBE_MAC = "000952000000"
GUESS_OWNED = ("a refused DeviceRegister for a MAC this account does not hold means another "
               "account holds it")


class AuerswaldSettings(RpcRedirectSettings):
    """``[auerswald]``: the redirection endpoint and the account's login."""

    api_url: HttpUrl = "https://provisioning.auerswald.de/xmlrpc/"


class AuerswaldProvider(RpcRedirectProvider):
    """Auerswald redirection over XML-RPC (one public source)."""

    name = "auerswald"
    label = "Auerswald"
    service = "Auerswald redirection"
    settings_class = AuerswaldSettings
    file_name = "<MACADR>.xml"
    upper_mac = False

    async def vendor_register(self, account: Account, device: Device) -> None:
        answer = await self.rpc(account, "DeviceRegister", self.vendor_mac(device.mac),
                                device.url, operation="register", mac=device.mac)
        if isinstance(answer, RpcFault):
            raise self.unexpected("DeviceRegister", answer, account)
        if answer:
            return
        # A refusal says nothing more: tell "another account holds it" from "refused"
        # by whether this account holds the MAC.
        shown = self.vendor_text(repr(answer), account)
        if await self._holds(account, device):
            raise ProviderError(
                f"{self.service} refused DeviceRegister (answered {shown}); the MAC stays "
                "registered to this account with its previous URL", Failure.PERMANENT,
                hint=f"check provisioning_url of [{self.name}]")
        rely_on_guess(self.label, GUESS_OWNED)
        raise owned_by_other(
            self.service, f"DeviceRegister answered {shown} and DeviceInfo does not show the "
            "MAC in this account; Auerswald does not say why it refuses",
            hint="release it in the account that holds it or ask Auerswald")

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        answer = await self.rpc(account, "DeviceDeregister", self.vendor_mac(device.mac),
                                operation="deregister", mac=device.mac)
        if isinstance(answer, RpcFault):
            raise self.unexpected("DeviceDeregister", answer, account)
        if answer:
            return
        if not await self._holds(account, device):
            log.info("Not registered in this account, nothing to remove",
                     component=self.label, mac=device.mac)
            return
        shown = self.vendor_text(repr(answer), account)
        raise ProviderError(f"{self.service} refused DeviceDeregister (answered {shown}); "
                            "the MAC is still registered to this account", Failure.PERMANENT)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        info = await self._info(account, device.mac)
        if info is None:
            return None
        url = info.get("url")
        return VendorRecord(device.mac, url=url if isinstance(url, str) else None)

    async def vendor_check(self, account: Account) -> str:
        # No login check exists: a look-up answered without a fault proves the login (a bad
        # one is an HTTP 401); a fault fails the Test.
        answer = await self.rpc(account, "DeviceInfo", PROBE_MAC, operation="check")
        if isinstance(answer, RpcFault):
            raise self.unconfirmed_login("DeviceInfo", answer, account)
        return self.accepted(account, "DeviceInfo answered a look-up of a MAC no phone has")

    async def _holds(self, account: Account, device: Device) -> bool:
        return await self._info(account, device.mac) is not None

    async def _info(self, account: Account, mac: str) -> dict[str, Any] | None:
        """``DeviceInfo``'s struct when it names ``mac`` (this account holds it), else None."""
        answer = await self.rpc(account, "DeviceInfo", self.vendor_mac(mac),
                                operation="lookup", mac=mac)
        if isinstance(answer, dict) and answer_mac(answer.get("mac")) == mac:
            return answer
        return None
