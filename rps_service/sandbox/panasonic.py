"""Panasonic's XML-RPC redirection at ``/panasonic/redirect/xmlrpc`` (no trailing slash).

Success is a bare ``true``; failures are faults 100 (URL refused), 200 (malformed MAC),
201 (MAC not found), 202 (the MAC belongs to another user). ``checkPhones(mac)`` answers a
list with one struct per MAC: ``{"mac", "faultCode", "faultString"}``, code 0 when the
caller holds it. The fault texts are invented: only the codes are known.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .rpcredirect import Method, RpcRedirectEmulator, http_url
from .xmlrpc import answer, fault, string_params

_MAC = re.compile(r"[0-9A-Fa-f]{12}")
TEXTS = {0: "OK", 100: "Invalid URL", 200: "Invalid MAC address", 201: "MAC address not found",
         202: "MAC address is registered by another user"}


class PanasonicEmulator(RpcRedirectEmulator):
    """Panasonic's ``ipredirect.*`` XML-RPC API."""

    name = "panasonic"
    prefix = "/panasonic"
    path = "/panasonic/redirect/xmlrpc"
    realm = "Please Enter Your Password"
    write_methods = frozenset({"ipredirect.registerPhone", "ipredirect.unregisterPhone"})
    oui = "0080F0"
    foreign_mac = "0080F0999999"

    def methods(self) -> dict[str, Method]:
        return {
            "ipredirect.registerPhone": self._register,
            "ipredirect.unregisterPhone": self._unregister,
            "ipredirect.checkPhones": self._check,
        }

    def _register(self, account: str, params: tuple[Any, ...]) -> web.Response:
        mac, url = string_params("ipredirect.registerPhone", params, 2)
        if not _MAC.fullmatch(mac):
            return _fault(200)
        if not http_url(url):
            return _fault(100)
        if self.owner(mac) not in (None, account):
            return _fault(202)
        self.register(account, mac, url)
        return answer(True)

    def _unregister(self, account: str, params: tuple[Any, ...]) -> web.Response:
        (mac,) = string_params("ipredirect.unregisterPhone", params, 1)
        code = self._code(account, mac)
        if code:
            return _fault(code)
        self.deregister(mac)
        return answer(True)

    def _check(self, account: str, params: tuple[Any, ...]) -> web.Response:
        (mac,) = string_params("ipredirect.checkPhones", params, 1)
        code = self._code(account, mac)
        return answer([{"mac": mac, "faultCode": code, "faultString": TEXTS[code]}])

    def _code(self, account: str, mac: str) -> int:
        if not _MAC.fullmatch(mac):
            return 200
        owner = self.owner(mac)
        if owner is None:
            return 201
        return 0 if owner == account else 202


def _fault(code: int) -> web.Response:
    return fault(code, TEXTS[code])
