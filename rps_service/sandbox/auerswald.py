"""Auerswald's XML-RPC redirection at ``/auerswald/xmlrpc/``.

Only one public client shows this API, so the answers are what it reads: ``DeviceRegister``
and ``DeviceDeregister`` answer ``true`` or ``false`` (never why), ``DeviceInfo`` a struct
``{"mac", "url"}`` when the caller holds the MAC and ``false`` otherwise. MACs must be 12
lower-case hex digits (what that client sends; anything else is refused with ``false``), and
the URL an http(s) URL.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .rpcredirect import Method, RpcRedirectEmulator, http_url
from .xmlrpc import answer, string_params

_MAC = re.compile(r"[0-9a-f]{12}")


class AuerswaldEmulator(RpcRedirectEmulator):
    """Auerswald's ``Device*`` XML-RPC API."""

    name = "auerswald"
    prefix = "/auerswald"
    path = "/auerswald/xmlrpc/"
    realm = "Auerswald Provisioning"
    write_methods = frozenset({"DeviceRegister", "DeviceDeregister"})
    oui = "000952"
    foreign_mac = "000952999999"

    def methods(self) -> dict[str, Method]:
        return {
            "DeviceRegister": self._register,
            "DeviceDeregister": self._deregister,
            "DeviceInfo": self._info,
        }

    def _register(self, account: str, params: tuple[Any, ...]) -> web.Response:
        mac, url = string_params("DeviceRegister", params, 2)
        if not (_MAC.fullmatch(mac) and http_url(url)) or self.owner(mac) not in (None, account):
            return answer(False)
        self.register(account, mac, url)
        return answer(True)

    def _deregister(self, account: str, params: tuple[Any, ...]) -> web.Response:
        (mac,) = string_params("DeviceDeregister", params, 1)
        if not _MAC.fullmatch(mac) or self.owner(mac) != account:
            return answer(False)
        self.deregister(mac)
        return answer(True)

    def _info(self, account: str, params: tuple[Any, ...]) -> web.Response:
        (mac,) = string_params("DeviceInfo", params, 1)
        if not _MAC.fullmatch(mac) or self.owner(mac) != account:
            return answer(False)
        return answer({"mac": mac, "url": self.devices[mac.upper()].url})
