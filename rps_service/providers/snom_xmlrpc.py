"""Snom's legacy XML-RPC redirection (``…:8083/xmlrpc/``), for accounts without API keys.

Every method answers ``[true, "Ok"]`` or ``[false, "Error:<reason>"]``; the reasons are
``owned_by_other_user``, ``malformed_url``, ``malformed_mac`` and ``no_such_mac``. The
phone gets only the URL (no credentials), so the URL carries the device's key; it then asks
for ``snom<MODEL>.htm`` and ``snom<MODEL>-<MAC>.htm`` under it (the Snom family at
``/ztprov/``). ``listPhones`` exists only per phone type (``snomD785``...), so this provider
does not list; reconcile looks devices up one by one (``checkPhone``).
"""

from __future__ import annotations

from typing import Any

from rps_service.providers.errors import owned_by_other
from rps_service.providers.protocol import Device, Failure, ProviderError, VendorRecord
from rps_service.providers.rpcredirect import RpcRedirectProvider, RpcRedirectSettings
from rps_service.providers.section import BaseUrl
from rps_service.providers.vendor import Account
from rps_service.providers.xmlrpc import RpcFault

OWNED = "owned_by_other_user"
NO_SUCH_MAC = "no_such_mac"
MALFORMED_URL = "malformed_url"
MALFORMED_MAC = "malformed_mac"


class SnomXmlRpcSettings(RpcRedirectSettings):
    """``[snom-xmlrpc]``: the legacy endpoint (its trailing slash is required: kept, or
    added when missing) and the redirection account's login."""

    api_url: BaseUrl = "https://secure-provisioning.snom.com:8083/xmlrpc/"


class SnomXmlRpcProvider(RpcRedirectProvider):
    """Snom redirection over XML-RPC (``redirect.*``)."""

    name = "snom-xmlrpc"
    label = "Snom"
    service = "Snom redirection"
    settings_class = SnomXmlRpcSettings

    async def vendor_register(self, account: Account, device: Device) -> None:
        # Registering a MAC this account holds again re-points it (the URL is sent raw).
        ok, reason = await self._call(account, "redirect.registerPhone", "register",
                                      device.mac, device.url)
        if ok:
            return
        if reason == MALFORMED_URL:
            raise ProviderError(f"{self.service} refused the URL as malformed (Error:{reason})",
                                Failure.PERMANENT,
                                hint=f"check provisioning_url of [{self.name}]")
        raise self._refusal("redirect.registerPhone", reason)

    async def vendor_deregister(self, account: Account, device: Device) -> None:
        ok, reason = await self._call(account, "redirect.deregisterPhone", "deregister",
                                      device.mac)
        if ok or reason == NO_SUCH_MAC:  # not registered (any more): what a remove wants
            return
        raise self._refusal("redirect.deregisterPhone", reason)

    async def vendor_lookup(self, account: Account, device: Device) -> VendorRecord | None:
        ok, reason = await self._call(account, "redirect.checkPhone", "lookup", device.mac)
        if not ok:
            if reason == NO_SUCH_MAC:  # also what a MAC of another account may answer
                return None
            if reason == OWNED:
                return VendorRecord(device.mac, ours=False, detail=f"Error:{reason}")
            raise self._refusal("redirect.checkPhone", reason)
        method = "redirect.getPhoneRedirection"
        answer = await self.rpc(account, method, self.vendor_mac(device.mac),
                                operation="lookup", mac=device.mac)
        return VendorRecord(device.mac, url=_redirection_url(answer))

    async def vendor_check(self, account: Account) -> str:
        # What echo answers is not documented; only a fault (or a 401) means a bad login.
        answer = await self.rpc(account, "network.echo", "ping", operation="check")
        if isinstance(answer, RpcFault):
            raise self.refused_login("network.echo", answer, account)
        return self.accepted(account, "network.echo answered without a fault")

    async def _call(self, account: Account, method: str, operation: str, mac: str,
                    *more: str) -> tuple[bool, str]:
        """``(success, reason)`` of a ``[bool, "Ok" | "Error:<reason>"]`` answer; the
        reason lower-cased without its ``Error:`` prefix (peers compare it that way)."""
        answer = await self.rpc(account, method, self.vendor_mac(mac), *more,
                                operation=operation, mac=mac)
        if not (isinstance(answer, list) and answer and isinstance(answer[0], bool)):
            raise self.unexpected(method, answer, account)
        text = answer[1] if len(answer) > 1 and isinstance(answer[1], str) else ""
        if answer[0]:
            return True, ""
        reason = text.strip()
        if reason.lower().startswith("error:"):
            reason = reason[len("error:"):]
        return False, self.vendor_text(reason.strip().lower(), account)

    def _refusal(self, method: str, reason: str) -> ProviderError:
        if reason == OWNED:
            return owned_by_other(self.service, f"Error:{reason}")
        if reason == MALFORMED_MAC:
            return ProviderError(f"{self.service} refused the MAC as malformed "
                                 f"(Error:{reason})", Failure.PERMANENT)
        return ProviderError(f"{self.service} refused {method}: Error:{reason or 'unknown'}",
                             Failure.PERMANENT)


def _redirection_url(answer: Any) -> str | None:
    """The URL of a ``getPhoneRedirection`` answer: documented as ``[true, company, url]``,
    read by one peer as ``[true, url]``; either is taken (None for anything else)."""
    if not (isinstance(answer, list) and answer and answer[0] is True):
        return None
    texts = [item for item in answer[1:] if isinstance(item, str)]
    urls = [item for item in texts if "://" in item]
    found = urls or texts
    return found[-1] if found else None
