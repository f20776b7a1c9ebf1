"""Snom's legacy XML-RPC redirection at ``/snom-xmlrpc/xmlrpc/`` (trailing slash required).

Answers are ``[true, "Ok"]`` or ``[false, "Error:<reason>"]`` (the second element always a
``<string>``), MACs 12 hex digits in either case, URLs taken raw (a percent-encoded or
non-http URL is ``Error:malformed_url``). Re-registering a MAC the account holds overwrites
it; a MAC another account holds is ``Error:owned_by_other_user``. ``checkPhone`` answers
``Error:no_such_mac`` for a MAC that is not the caller's (absent or another's);
``getPhoneRedirection`` answers ``[true, company, url]``; ``network.echo`` echoes.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from .rpcredirect import Method, RpcRedirectEmulator, http_url
from .xmlrpc import answer, string_params

_MAC = re.compile(r"[0-9A-Fa-f]{12}")
OK = [True, "Ok"]


def _error(reason: str) -> web.Response:
    return answer([False, f"Error:{reason}"])


class SnomXmlRpcEmulator(RpcRedirectEmulator):
    """Snom's ``redirect.*`` XML-RPC API."""

    name = "snom-xmlrpc"
    prefix = "/snom-xmlrpc"
    path = "/snom-xmlrpc/xmlrpc/"
    realm = "snom redirection"
    write_methods = frozenset({"redirect.registerPhone", "redirect.deregisterPhone"})
    oui = "000413"
    foreign_mac = "000413999998"

    def methods(self) -> dict[str, Method]:
        return {
            "redirect.registerPhone": self._register,
            "redirect.deregisterPhone": self._deregister,
            "redirect.checkPhone": self._check,
            "redirect.getPhoneRedirection": self._redirection,
            "network.echo": self._echo,
        }

    def _register(self, account: str, params: tuple[Any, ...]) -> web.Response:
        mac, url = string_params("redirect.registerPhone", params, 2)
        if not _MAC.fullmatch(mac):
            return _error("malformed_mac")
        if not http_url(url) or "%" in url:  # the URL must come raw, not percent-encoded
            return _error("malformed_url")
        if self.owner(mac) not in (None, account):
            return _error("owned_by_other_user")
        self.register(account, mac, url)
        return answer(OK)

    def _deregister(self, account: str, params: tuple[Any, ...]) -> web.Response:
        (mac,) = string_params("redirect.deregisterPhone", params, 1)
        problem = self._problem(account, mac)
        if problem:
            return _error(problem)
        self.deregister(mac)
        return answer(OK)

    def _check(self, account: str, params: tuple[Any, ...]) -> web.Response:
        (mac,) = string_params("redirect.checkPhone", params, 1)
        problem = self._problem(account, mac, hide_owner=True)
        return _error(problem) if problem else answer(OK)

    def _redirection(self, account: str, params: tuple[Any, ...]) -> web.Response:
        (mac,) = string_params("redirect.getPhoneRedirection", params, 1)
        problem = self._problem(account, mac, hide_owner=True)
        if problem:
            return _error(problem)
        return answer([True, "demo company", self.devices[mac.upper()].url])

    def _echo(self, account: str, params: tuple[Any, ...]) -> web.Response:
        (text,) = string_params("network.echo", params, 1)
        return answer(text)

    def _problem(self, account: str, mac: str, hide_owner: bool = False) -> str | None:
        if not _MAC.fullmatch(mac):
            return "malformed_mac"
        owner = self.owner(mac)
        if owner is None or (owner != account and hide_owner):
            return "no_such_mac"
        if owner != account:
            return "owned_by_other_user"
        return None
