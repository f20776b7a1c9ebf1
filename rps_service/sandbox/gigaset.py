"""The Gigaset legacy redirect emulator: XML-RPC ``autoprov.*`` at ``/gigaset/apxml/rpc.do``.

As strict as the public facts allow (where a fact is a guess, the guess is the stricter
reading, marked [G]):

* ``POST`` with ``Content-Type: text/xml`` and HTTP Basic; a wrong login is an HTTP 401;
  every method takes string parameters only (faults otherwise);
* a MAC-ID is ``<12 upper-case hex>-<4 upper-case letters or digits>``; anything else is
  ``mac_invalid:<mac>``. Every MAC has one code, the one on its label
  (:meth:`GigasetEmulator.label_code`, printed by ``rps-service sandbox`` on request); a MAC-ID
  with another code is ``mac_not_exist:<mac>`` [G: which of the two codes a wrong label
  code gets is not public];
* ``registerDevice(macId, url, providerName)`` on a MAC another account holds is
  ``mac_already_in_use:<mac>``; on a MAC this account already holds it fails the same way
  [G: both public clients deregister first, so the service is taken not to overwrite]; the
  URL must be an http(s)/ftp/tftp URL with a host (``url_invalid:<url>``), the provider
  name 1 to 64 characters (``name_invalid:<name>``) [G: limits];
* ``deregisterDevice(macId)``: ``[true, "ok"]``, or ``mac_not_found:<mac>`` when this
  account does not hold it; ``checkDevice(macId)``: ``[true, <mac>]`` or ``mac_not_found``;
* answers are ``[boolean, string]``; error texts name the bare 12-hex MAC (as one public
  client matches them) or the rejected input.

Seeded (fake demo values): the demo login ``gigaset-demo`` / ``gigaset-demo-pass``, and the
login ``gigaset-other`` / ``gigaset-other-pass`` which holds :data:`FOREIGN_MAC`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from . import xmlrpc as rpc
from .emulator import Held

if TYPE_CHECKING:
    from .state import SandboxState

PATH = "/gigaset/apxml/rpc.do"
REALM = "Gigaset redirect"
DEMO_USER = "gigaset-demo"
DEMO_PASSWORD = "gigaset-demo-pass"  # noqa: S105 - a published fake demo login
OTHER_USER = "gigaset-other"
OTHER_PASSWORD = "gigaset-other-pass"  # noqa: S105 - a published fake demo login
FOREIGN_MAC = "7C2F80888888"
_MAC_ID = re.compile(r"(?P<mac>[0-9A-F]{12})-(?P<code>[A-Z0-9]{4})")
_URL_SCHEMES = ("http", "https", "ftp", "tftp")
MAX_NAME = 64


@dataclass
class Registration:
    """One MAC in the redirect database: whose, where to, under which provider name."""

    owner: str
    url: str
    provider_name: str


class GigasetEmulator(rpc.XmlRpcEmulator):
    """Gigaset's legacy XML-RPC redirect service."""

    name = "gigaset"
    prefix = "/gigaset"
    foreign_mac = FOREIGN_MAC

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.logins = {DEMO_USER: DEMO_PASSWORD, OTHER_USER: OTHER_PASSWORD}
        self.devices: dict[str, Registration] = {
            FOREIGN_MAC: Registration(OTHER_USER, "https://other.example/%MACD.xml", "other")}

    @staticmethod
    def label_code(mac: str) -> str:
        """The 4-character code on the label of the device ``mac`` (12 upper-case hex)."""
        digest = hashlib.sha256(f"gigaset-label/{mac.upper()}".encode()).digest()
        return base64.b32encode(digest).decode()[:4]

    # -- the emulator's facts -------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", PATH, self.handle, name="gigaset-rpc")
        app.router.add_get("/_sandbox/gigaset/mac-id/{mac}", self.get_mac_id,
                           name="control-gigaset-mac-id")

    def api_url(self, base: str) -> str:
        return f"{base}{PATH}"

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"username": DEMO_USER, "password": DEMO_PASSWORD}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"username": DEMO_USER, "password": "not-the-secret"}

    def sample_mac(self, index: int) -> str:
        return f"7C2F8001{index:04X}"

    def event_fields(self, mac: str) -> dict[str, Any]:
        return {"mac_id": self.label_code(mac)}

    def holds(self, mac: str) -> Held | None:
        registration = self.devices.get(mac.upper())
        if registration is None or registration.owner != DEMO_USER:
            return None
        return Held(registration.url, extra={"provider_name": registration.provider_name})

    write_methods = frozenset({"autoprov.registerDevice", "autoprov.deregisterDevice"})

    def written_mac(self, params: tuple[Any, ...]) -> str | None:
        mac = super().written_mac(params)
        return mac[:12] if mac else None

    def snapshot(self) -> dict[str, Any]:
        return {"devices": {mac: {"owner": r.owner, "url": r.url,
                                  "provider_name": r.provider_name}
                            for mac, r in sorted(self.devices.items())}}

    def describe(self, base: str) -> list[str]:
        return [*super().describe(base),
                f"gigaset: a MAC's label code (mac_id): GET {base}/_sandbox/gigaset/mac-id/<MAC>"]

    async def get_mac_id(self, request: web.Request) -> web.Response:
        """``GET /_sandbox/gigaset/mac-id/{mac}``: the MAC-ID on that device's label."""
        mac = request.match_info["mac"].replace(":", "").replace("-", "").upper()
        if not re.fullmatch(r"[0-9A-F]{12}", mac):
            return web.json_response({"error": "mac must be 12 hex digits"}, status=400)
        return web.json_response({"mac_id": f"{mac}-{self.label_code(mac)}"})

    # -- the service ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """One XML-RPC call."""
        try:
            method, params, user = await rpc.parse_call(
                request, lambda u, p: self.logins.get(u) == p, REALM)
            if method == "autoprov.registerDevice":
                return self._register(user, *rpc.string_params(method, params, 3))
            if method == "autoprov.deregisterDevice":
                return self._deregister(user, *rpc.string_params(method, params, 1))
            if method == "autoprov.checkDevice":
                return self._check(user, *rpc.string_params(method, params, 1))
            return rpc.fault(-32601, f"method not found: {method}")
        except rpc.XmlRpcRefused as refused:
            return refused.response

    def _register(self, user: str, mac_id: str, url: str, provider_name: str) -> web.Response:
        mac, refusal = self._known(mac_id)
        if refusal is not None:
            return refusal
        if self.devices.get(mac) is not None:  # another account's, or already ours [G]
            return _false(f"mac_already_in_use:{mac}")
        parts = urlsplit(url)
        if parts.scheme not in _URL_SCHEMES or not parts.hostname or any(c.isspace() for c in url):
            return _false(f"url_invalid:{url}")
        if not 0 < len(provider_name) <= MAX_NAME:
            return _false(f"name_invalid:{provider_name}")
        self.devices[mac] = Registration(user, url, provider_name)
        self.state.history[mac.lower()].append(("registerDevice", url))
        return rpc.answer([True, "ok"])

    def _deregister(self, user: str, mac_id: str) -> web.Response:
        mac, refusal = self._ours(user, mac_id)
        if refusal is not None:
            return refusal
        del self.devices[mac]
        self.state.history[mac.lower()].append(("deregisterDevice", None))
        return rpc.answer([True, "ok"])

    def _check(self, user: str, mac_id: str) -> web.Response:
        mac, refusal = self._ours(user, mac_id)
        return refusal if refusal is not None else rpc.answer([True, mac])

    def _ours(self, user: str, mac_id: str) -> tuple[str, web.Response | None]:
        """The MAC of a MAC-ID this login holds, or the refusal (``mac_not_found`` when
        another login holds it, or nobody)."""
        mac, refusal = self._known(mac_id)
        if refusal is None:
            registration = self.devices.get(mac)
            if registration is None or registration.owner != user:
                refusal = _false(f"mac_not_found:{mac}")
        return mac, refusal

    def _known(self, mac_id: str) -> tuple[str, web.Response | None]:
        """The MAC of a well-formed MAC-ID whose code is the label's, or the refusal."""
        match = _MAC_ID.fullmatch(mac_id)
        if match is None:
            return "", _false(f"mac_invalid:{mac_id}")
        mac = match["mac"]
        if match["code"] != self.label_code(mac):
            return mac, _false(f"mac_not_exist:{mac}")
        return mac, None


def _false(text: str) -> web.Response:
    return rpc.answer([False, text])
