"""The Htek RPS emulator: XML-RPC at ``/htek/index.php/xmlrpc``.

As strict as the public facts allow; where a fact is a guess, the guess is the stricter one:

* HTTP Basic with the plain password (401 before any XML is read), ``POST`` of ``text/xml``
  only, every method checks its parameter count and that each parameter is a string;
* per account, *servers* (``redirect.addServer(serverName, url)``, Yealink's signature: a
  guess): names of 1 to 20 characters of ``A-z 0-9 - _ .`` and space, unique across all
  accounts (Yealink's rules: a guess), http(s) URLs; there is no call to delete one;
* ``redirect.registerDevice(mac, serverName)`` to one of the caller's servers (else
  ``Error: Invalid server``); a MAC this account holds is ``Existing MAC(s): <mac>``, one
  another account holds is "Are you sure you want to override MAC addresses";
  ``registerDevice(mac, serverName, isOverride)`` with the string ``"1"`` takes it (``"0"``
  is a plain register; anything else is refused with this emulator's own text);
* MACs in the four forms Htek's twin service lists (12 hex digits, either case, bare or
  separated by ``:``, ``-`` or a space), else ``Error:Invalid MAC(s):<mac>``;
* ``redirect.deRegisterDevice(mac)`` and ``redirect.checkDevice(mac)`` (``registered``,
  ``unregistered``, ``registered elsewhere``): Yealink's parameters and words, guesses;
* answers are ``[boolean, value]`` with the value **untyped** (``<value>OK</value>``) in an
  Apache XML-RPC ``methodResponse``, as the real service writes it; the other methods of
  Htek's list (``listDevices``, the batch calls, ``editDevice``) are not emulated (their
  parameters are not public) and answer a fault, as does an unknown method.

The texts for "server name exists", "not registered" and "bad override flag" are not public:
the ones here are this emulator's choice. Throttling answers HTTP 429 with Retry-After, a
guess (nothing is published).

Seeded (fake demo logins, printed by ``rps-service sandbox``): ``demo-user`` /
``demo-htek-password`` and ``other-user``, which holds :data:`FOREIGN_MAC` on its server
``other-pbx``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .rpcredirect import OTHER_USER, Method, RpcRedirectEmulator, http_url
from .state import SandboxState
from .xmlrpc import XmlRpcRefused, fault, string_params, untyped_answer

FOREIGN_MAC = "001FC1999999"
OTHER_SERVER = "other-pbx"
OK = "OK"
OVERRIDE_PROMPT = "Are you sure you want to override MAC addresses"
INVALID_SERVER = "Error: Invalid server"
NAME_TAKEN = "Error:The server name already exists"
BAD_NAME = "Error:Invalid server name"
BAD_URL = "Error:Invalid server url"
BAD_FLAG = "Error:Invalid override flag"
NOT_REGISTERED = "Error:MAC(s) not registered:"
NOT_EMULATED = ("redirect.listDevices", "redirect.registerDevices",
                "redirect.deRegisterDevices", "redirect.editDevice")
_NAME = re.compile(r"[A-Za-z0-9_. -]{1,20}")
_MAC = re.compile(r"[0-9A-Fa-f]{12}|[0-9A-Fa-f]{2}([:\- ])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}")
#: What Apache XML-RPC, which Htek's answers show it runs, declares on methodResponse.
APACHE_NAMESPACE = 'xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions"'
Result = tuple[bool, str]
Call = Callable[[str, tuple[Any, ...]], Result]


def plain_mac(value: str) -> str | None:
    """12 upper-case hex digits for a MAC in one of the four forms, else None."""
    return re.sub(r"[:\- ]", "", value).upper() if _MAC.fullmatch(value) else None


class HtekEmulator(RpcRedirectEmulator):
    """Htek RPS, XML-RPC."""

    name = "htek"
    prefix = "/htek"
    path = "/htek/index.php/xmlrpc"
    realm = "Htek RPS"
    oui = "001FC1"
    foreign_mac = FOREIGN_MAC
    write_methods = frozenset({"redirect.registerDevice", "redirect.deRegisterDevice"})

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        # name → (owner, url); the seeded foreign registration is on the other's server.
        self.servers: dict[str, tuple[str, str]] = {
            OTHER_SERVER: (OTHER_USER, self.devices[FOREIGN_MAC].url)}
        self.server_of: dict[str, str] = {FOREIGN_MAC: OTHER_SERVER}

    def methods(self) -> dict[str, Method]:
        table = {name: _answered(run) for name, run in self._results().items()}
        return table | {method: _not_emulated for method in NOT_EMULATED}

    def written_mac(self, params: tuple[Any, ...]) -> str | None:
        mac = plain_mac(params[0]) if params and isinstance(params[0], str) else None
        return mac.lower() if mac else None

    def snapshot(self) -> dict[str, Any]:
        world = super().snapshot()
        world["servers"] = {n: {"owner": o} for n, (o, _) in sorted(self.servers.items())}
        for mac, entry in world["devices"].items():
            entry["server"] = self.server_of.get(mac)
        return world

    def call(self, user: str, method: str, params: tuple[Any, ...]) -> Result:
        """One authenticated call, without HTTP (unit tests use it); a refused call raises
        XmlRpcRefused with the fault to answer."""
        run = self._results().get(method)
        if run is None:
            raise XmlRpcRefused(fault(-32601, f"method not found: {method}"))
        return run(user, params)

    # -- methods --------------------------------------------------------------------------

    def _results(self) -> dict[str, Call]:
        return {"redirect.addServer": self._add_server,
                "redirect.registerDevice": self._register,
                "redirect.deRegisterDevice": self._deregister,
                "redirect.checkDevice": self._check}

    def _add_server(self, user: str, params: tuple[Any, ...]) -> Result:
        name, url = string_params("redirect.addServer", params, 2)
        if not _NAME.fullmatch(name):
            return False, BAD_NAME
        if not http_url(url):
            return False, BAD_URL
        if name in self.servers:  # unique across all accounts (a guess: Yealink's rule)
            return False, NAME_TAKEN
        self.servers[name] = (user, url)
        return True, OK

    def _register(self, user: str, params: tuple[Any, ...]) -> Result:
        if len(params) not in (2, 3):
            raise XmlRpcRefused(fault(-32602, "redirect.registerDevice: expected 2 or 3 "
                                              "string parameters"))
        given, server, *flag = string_params("redirect.registerDevice", params, len(params))
        mac = plain_mac(given)
        if mac is None:
            return False, f"Error:Invalid MAC(s):{given}"
        if self.servers.get(server, ("", ""))[0] != user:
            return False, INVALID_SERVER
        if flag and flag[0] not in ("0", "1"):
            return False, BAD_FLAG
        holder = self.owner(mac)
        if holder is not None and flag != ["1"]:
            return False, (f"Existing MAC(s): {given}" if holder == user else OVERRIDE_PROMPT)
        self.register(user, mac, self.servers[server][1])
        self.server_of[mac] = server
        return True, OK

    def _deregister(self, user: str, params: tuple[Any, ...]) -> Result:
        (given,) = string_params("redirect.deRegisterDevice", params, 1)
        mac = plain_mac(given)
        if mac is None:
            return False, f"Error:Invalid MAC(s):{given}"
        if self.owner(mac) != user:
            return False, f"{NOT_REGISTERED}{given}"
        self.deregister(mac)
        self.server_of.pop(mac, None)
        return True, OK

    def _check(self, user: str, params: tuple[Any, ...]) -> Result:
        (given,) = string_params("redirect.checkDevice", params, 1)
        mac = plain_mac(given)
        if mac is None:
            return False, f"Error:Invalid MAC(s):{given}"
        holder = self.owner(mac)
        if holder is None:
            return True, "unregistered"
        return True, "registered" if holder == user else "registered elsewhere"


def _answered(run: Call) -> Method:
    def method(user: str, params: tuple[Any, ...]) -> web.Response:
        return untyped_answer(*run(user, params), namespaces=APACHE_NAMESPACE)
    return method


def _not_emulated(user: str, params: tuple[Any, ...]) -> web.Response:
    return fault(-32601, "not emulated: its parameters are not public")
