"""What the emulators of the small XML-RPC redirection services share.

One route (the vendor's exact path), HTTP Basic checked before any XML is read (a wrong
login is a 401 with the vendor's realm), strict XML-RPC parsing (``POST``, ``text/xml``,
string parameters, the exact count), and a world of accounts and registrations: each MAC
is held by at most one account, a seeded other account holds :attr:`foreign_mac`. Every
accepted write lands in ``state.history``; the URL keys received are remembered as secrets
(they must never reach a log) and masked in the snapshot.

Throttling is an HTTP 429 with ``Retry-After``: none of these services documents a rate
limit or how it refuses one, so that answer is a guess.
"""

from __future__ import annotations

import abc
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from aiohttp import web

from .emulator import Held
from .state import SandboxState
from .xmlrpc import XmlRpcEmulator, XmlRpcRefused, fault, parse_call

DEMO_USER = "demo-user"
OTHER_USER = "other-user"
_KEY = re.compile(r"([0-9a-f]{12})([A-Za-z0-9_-]{24})")
#: A method of the emulated service: ``(account, params)`` → the answer.
Method = Callable[[str, tuple[Any, ...]], web.Response]


@dataclass
class Registration:
    """Which account holds a MAC (12 upper-case hex digits), and where it sends the phone."""

    account: str
    url: str


class RpcRedirectEmulator(XmlRpcEmulator):
    """An XML-RPC redirection service on one path under ``prefix``."""

    #: The vendor's endpoint path, exactly (a missing or extra slash is a 404).
    path: ClassVar[str]
    #: The Basic realm of the 401.
    realm: ClassVar[str]
    #: The vendor's OUI, for sample MACs.
    oui: ClassVar[str]

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.accounts = {DEMO_USER: f"demo-{self.name}-password",
                         OTHER_USER: f"other-{self.name}-password"}
        self.devices: dict[str, Registration] = {
            self.foreign_mac: Registration(OTHER_USER, "https://other.example.net/prov/")}

    @abc.abstractmethod
    def methods(self) -> dict[str, Method]:
        """The service's methods by name."""

    # -- the route ------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", self.path, self.handle, name=f"{self.name}-xmlrpc")

    def api_url(self, base: str) -> str:
        return f"{base}{self.path}"

    async def handle(self, request: web.Request) -> web.Response:
        """Authenticate, parse, run the method (unknown ones are a standard fault)."""
        try:
            method, params, user = await parse_call(request, self._login, self.realm)
            run = self.methods().get(method)
            if run is None:
                return fault(-32601, f"method not found: {method}")
            return run(user, params)
        except XmlRpcRefused as exc:
            return exc.response

    def _login(self, user: str, password: str) -> bool:
        expected = self.accounts.get(user)
        return expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    # -- the contract tests' facts ----------------------------------------------------------

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"username": DEMO_USER, "password": self.accounts[DEMO_USER]}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"username": DEMO_USER, "password": "not-the-password"}

    def sample_mac(self, index: int) -> str:
        return f"{self.oui}{index:06X}"

    def holds(self, mac: str) -> Held | None:
        found = self.devices.get(mac.upper())
        return Held(found.url) if found and found.account == DEMO_USER else None

    def snapshot(self) -> dict[str, Any]:
        return {"devices": {mac: {"account": r.account, "url": _masked(r.url)}
                            for mac, r in sorted(self.devices.items())}}

    # -- helpers for the vendor modules -------------------------------------------------------

    def register(self, account: str, mac: str, url: str) -> None:
        """Record a registration (a write: history, and the URL key as a secret)."""
        mac = mac.upper()
        self.devices[mac] = Registration(account, url)
        self.state.history[mac.lower()].append(("PUT", url))
        for match in _KEY.finditer(url):
            self.state.received_passwords.add(match.group(2))

    def deregister(self, mac: str) -> None:
        mac = mac.upper()
        del self.devices[mac]
        self.state.history[mac.lower()].append(("DELETE", None))

    def owner(self, mac: str) -> str | None:
        found = self.devices.get(mac.upper())
        return found.account if found else None


def http_url(url: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace, as every vendor wants."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname)
            and not any(c.isspace() for c in url))


def _masked(url: str) -> str:
    return _KEY.sub(lambda m: m.group(1) + "***", url)
