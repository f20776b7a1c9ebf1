"""The legacy Yealink RPS emulator: XML-RPC at ``/yealink-xmlrpc/xmlrpc``.

As strict as the public facts allow:

* HTTP Basic (401 before any XML is read), ``POST`` of ``text/xml`` only, every method
  checks its parameter count and that each parameter is a string;
* per account, *servers* (``redirect.addServer``): names of 1 to 20 characters of
  ``A-z 0-9 - _ .`` and space, unique across all accounts, URLs starting ``http://``,
  ``https://``, ``ftp://`` or ``tftp://``; a device registers to one of the caller's servers
  (else ``Error: Invalid server``);
* ``redirect.registerDeviceWithUniqueUrl(mac, serverName, url, override)``, ``override``
  ``"0"`` or ``"1"``: a MAC held by another account is refused with the override prompt
  (or, with the ``foreign_answer`` switch at ``code``, with ``Error:`` and ten lower-case
  characters, the other form a public client reads as "owned by another") unless the flag
  is ``"1"``, which takes it; a MAC this account holds is ``Existing MAC(s): <mac>`` unless
  the flag is ``"1"``, which re-points it;
* MACs in any of the four documented forms (12 hex digits, either case, bare or with ``:``
  or ``-``), else ``Error:Invalid MAC(s):<mac>``;
* ``redirect.deRegisterDevice(mac)`` and ``redirect.checkDevice(mac)`` (``registered``,
  ``unregistered``, ``registered elsewhere``);
* answers are ``[boolean, value]`` with the value **untyped** (``<value>OK</value>``), as
  the real service writes it; an unknown method is a fault.

The texts for "server name exists", "not registered" and "bad override flag" are not public:
the ones here are this emulator's choice. Throttling answers HTTP 429 with Retry-After, a
guess (nothing is published).

Seeded (fake demo logins, printed by ``rps-service sandbox``): ``yealink-demo`` /
``yealink-demo-password`` and ``yealink-other`` / ``yealink-other-password``; the latter
holds :data:`FOREIGN_MAC` on its server ``other-pbx``.
Switches: ``POST /_sandbox/yealink-xmlrpc/switches`` ``{"foreign_answer": "prompt" | "code"}``.
"""

from __future__ import annotations

import hmac
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..access import URL_KEY
from .emulator import Held
from .state import SandboxState
from .xmlrpc import (
    XmlRpcEmulator,
    XmlRpcRefused,
    fault,
    parse_call,
    string_params,
    untyped_answer,
)

PATHS = ("/yealink-xmlrpc/xmlrpc", "/yealink-xmlrpc/xmlrpc/")
REALM = "RPS"
DEMO_USER = "yealink-demo"
DEMO_PASSWORD = "yealink-demo-password"  # noqa: S105 - a published fake demo login
OTHER_USER = "yealink-other"
OTHER_PASSWORD = "yealink-other-password"  # noqa: S105 - a published fake demo login
FOREIGN_MAC = "001565999999"
OTHER_SERVER = "other-pbx"
OK = "OK"
OVERRIDE_PROMPT = "Are you sure you want to override MAC addresses"
NAME_CHARS = "Error:The server name can only contain 'A-z 0-9 - _ . '(include space)"
NAME_LENGTH = "Error:The server name can not exceed 20 characters"
NAME_TAKEN = "Error:The server name already exists"
BAD_URL = ("Error:The url can only begin with 'http://' or 'https://' or 'ftp://' or "
           "'tftp://'")
BAD_FLAG = "Error:Invalid override flag"
INVALID_SERVER = "Error: Invalid server"
NOT_REGISTERED = "Error:MAC(s) not registered:"
_NAME = re.compile(r"[A-Za-z0-9_. -]+")
_MAC = re.compile(r"[0-9A-Fa-f]{12}|(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}"
                  r"|(?:[0-9A-Fa-f]{2}-){5}[0-9A-Fa-f]{2}")
_SCHEMES = ("http://", "https://", "ftp://", "tftp://")
_WRITES = frozenset({"redirect.registerDeviceWithUniqueUrl", "redirect.deRegisterDevice"})
Result = tuple[bool, str]


@dataclass
class RpsUser:
    """One RPS login (its servers are in :attr:`YealinkXmlrpcEmulator.servers`)."""

    username: str
    password: str = field(repr=False)


@dataclass
class Registration:
    """Where a MAC is sent: whose, to which server, with which URL."""

    owner: str
    server: str
    url: str


def plain_mac(value: str) -> str | None:
    """12 upper-case hex digits for a MAC in a documented form, else None."""
    return value.replace(":", "").replace("-", "").upper() if _MAC.fullmatch(value) else None


class YealinkXmlrpcEmulator(XmlRpcEmulator):
    """Yealink legacy RPS, XML-RPC."""

    name = "yealink-xmlrpc"
    prefix = "/yealink-xmlrpc"
    foreign_mac = FOREIGN_MAC

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.users = {u.username: u for u in (RpsUser(DEMO_USER, DEMO_PASSWORD),
                                               RpsUser(OTHER_USER, OTHER_PASSWORD))}
        self.servers: dict[str, tuple[str, str]] = {  # name → (owner, url)
            OTHER_SERVER: (OTHER_USER, "https://other.example/prov/")}
        self.devices: dict[str, Registration] = {  # 12 upper-case hex → registration
            FOREIGN_MAC: Registration(OTHER_USER, OTHER_SERVER, "https://other.example/prov/")}
        self.foreign_answer = "prompt"
        self.calls: Counter[str] = Counter()  # authenticated calls by method
        self._methods = {
            "redirect.addServer": self._add_server,
            "redirect.registerDeviceWithUniqueUrl": self._register,
            "redirect.deRegisterDevice": self._deregister,
            "redirect.checkDevice": self._check,
        }

    # -- the Emulator interface -----------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        for n, path in enumerate(PATHS):
            app.router.add_route("*", path, self.handle, name=f"yealink-xmlrpc{'-slash' * n}")
        app.router.add_post("/_sandbox/yealink-xmlrpc/switches", self.switches,
                            name="control-yealink-xmlrpc-switches")

    def api_url(self, base: str) -> str:
        return f"{base}{PATHS[0]}"

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"username": DEMO_USER, "password": DEMO_PASSWORD}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"username": DEMO_USER, "password": "not-the-password"}

    def sample_mac(self, index: int) -> str:
        # 80:5E:C0 is one of Yealink's OUIs; letters keep a MAC from reading as a number.
        return f"805EC0{index:06X}"

    def holds(self, mac: str) -> Held | None:
        entry = self.devices.get(mac.upper())
        if entry is None or entry.owner != DEMO_USER:
            return None
        return Held(entry.url, extra={"server": entry.server,
                                      "server_url": self.servers[entry.server][1]})

    write_methods = _WRITES

    def written_mac(self, params: tuple[Any, ...]) -> str | None:
        mac = plain_mac(params[0]) if params and isinstance(params[0], str) else None
        return mac.lower() if mac else None

    def snapshot(self) -> dict[str, Any]:
        return {"servers": {n: {"owner": o, "url": u} for n, (o, u) in self.servers.items()},
                "devices": {m: {"owner": r.owner, "server": r.server}
                            for m, r in self.devices.items()},
                "calls": dict(self.calls),
                "switches": {"foreign_answer": self.foreign_answer}}

    # -- the XML-RPC endpoint -------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        try:
            method, params, user = await parse_call(request, self.login_ok, REALM)
            ok, text = self.call(user, method, params)
        except XmlRpcRefused as refused:
            return refused.response
        return untyped_answer(ok, text)

    def call(self, user: str, method: str, params: tuple[Any, ...]) -> Result:
        """One authenticated call, without HTTP (unit tests use it too); a refused call
        raises XmlRpcRefused with the fault to answer."""
        run = self._methods.get(method)
        if run is None:
            raise XmlRpcRefused(fault(-32601, f"method not found: {method}"))
        self.calls[method] += 1
        return run(user, params)

    def login_ok(self, user: str, password: str) -> bool:
        account = self.users.get(user)
        expected = account.password if account else "decoy-password"
        return hmac.compare_digest(password.encode(), expected.encode()) and account is not None

    # -- methods --------------------------------------------------------------------------

    def _add_server(self, user: str, params: tuple[Any, ...]) -> Result:
        name, url = string_params("redirect.addServer", params, 2)
        if not _NAME.fullmatch(name):
            return False, NAME_CHARS
        if len(name) > 20:
            return False, NAME_LENGTH
        if not url.startswith(_SCHEMES):
            return False, BAD_URL
        if name in self.servers:  # unique across all accounts
            return False, NAME_TAKEN
        self.servers[name] = (user, url)
        return True, OK

    def _register(self, user: str, params: tuple[Any, ...]) -> Result:
        given, server, url, flag = string_params(
            "redirect.registerDeviceWithUniqueUrl", params, 4)
        mac = plain_mac(given)
        if mac is None:
            return False, f"Error:Invalid MAC(s):{given}"
        if self.servers.get(server, ("", ""))[0] != user:
            return False, INVALID_SERVER
        if not url.startswith(_SCHEMES):
            return False, BAD_URL
        if flag not in ("0", "1"):
            return False, BAD_FLAG
        held = self.devices.get(mac)
        if held is not None and flag != "1":
            if held.owner == user:
                return False, f"Existing MAC(s): {given}"
            return False, (OVERRIDE_PROMPT if self.foreign_answer == "prompt"
                           else f"Error:{mac.lower()[2:12]}")
        self.devices[mac] = Registration(user, server, url)
        self.state.history[mac.lower()].append(("registerDeviceWithUniqueUrl", url))
        self.state.received_passwords.update(URL_KEY.findall(url))  # for the log scan
        return True, OK

    def _deregister(self, user: str, params: tuple[Any, ...]) -> Result:
        (given,) = string_params("redirect.deRegisterDevice", params, 1)
        mac = plain_mac(given)
        if mac is None:
            return False, f"Error:Invalid MAC(s):{given}"
        held = self.devices.get(mac)
        if held is None or held.owner != user:
            return False, f"{NOT_REGISTERED}{given}"
        del self.devices[mac]
        self.state.history[mac.lower()].append(("deRegisterDevice", None))
        return True, OK

    def _check(self, user: str, params: tuple[Any, ...]) -> Result:
        (given,) = string_params("redirect.checkDevice", params, 1)
        mac = plain_mac(given)
        if mac is None:
            return False, "Error:Invalid MAC"
        held = self.devices.get(mac)
        if held is None:
            return True, "unregistered"
        return True, "registered" if held.owner == user else "registered elsewhere"

    # -- control --------------------------------------------------------------------------

    async def switches(self, request: web.Request) -> web.Response:
        """``{"foreign_answer": "prompt" | "code"}``: how another account's MAC is refused."""
        try:
            body = json.loads(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or set(body) - {"foreign_answer"} \
                or body.get("foreign_answer", self.foreign_answer) not in ("prompt", "code"):
            return web.json_response({"message": 'Expected {"foreign_answer": "prompt" | '
                                                 '"code"}'}, status=400)
        self.foreign_answer = str(body.get("foreign_answer", self.foreign_answer))
        return web.json_response({"foreign_answer": self.foreign_answer})
