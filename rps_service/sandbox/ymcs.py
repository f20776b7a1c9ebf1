"""The YMCS world of the sandbox: organisations, AccessKeys, tokens, nonces and RPS devices.

Seeded (fake demo keys, printed by ``rps-service sandbox``):

============  ==================  ======================  =======================
organisation  AccessKey ID        secret                  holds
============  ==================  ======================  =======================
``demo``      ``ymcs-demo-id``    ``ymcs-demo-secret``    nothing
``other``     ``ymcs-other-id``   ``ymcs-other-secret``   :data:`FOREIGN_MAC`
============  ==================  ======================  =======================

Neither may add by MAC until its permission is switched on (``add_by_mac``), as on YMCS,
where Yealink enables it per account.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEMO_ORG = "demo"
DEMO_KEY_ID = "ymcs-demo-id"
DEMO_SECRET = "ymcs-demo-secret"  # noqa: S105 - a published fake demo key
OTHER_ORG = "other"
OTHER_KEY_ID = "ymcs-other-id"
OTHER_SECRET = "ymcs-other-secret"  # noqa: S105 - a published fake demo key
FOREIGN_MAC = "001565ffff01"  # held by the other organisation
DEFAULT_TOKEN_LIFETIME = 3600  # seconds, as YMCS answers
#: How far a request's ``timestamp`` may be from the server's clock. YMCS publishes none;
#: five minutes is the common choice.
TIMESTAMP_WINDOW = 300.0
NONCE = re.compile(r"[0-9A-Za-z]{1,32}")


@dataclass
class Org:
    """A YMCS enterprise: its AccessKey, its switches and its RPS devices by MAC."""

    name: str
    key_id: str
    secret: str = field(repr=False)
    add_by_mac: bool = False
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class IssuedToken:
    """A bearer token: whose it is and when it stops working (server time, seconds)."""

    org: Org
    expires: float


class Ymcs:
    """Organisations, tokens and nonces; every rule a handler needs, no HTTP."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.orgs: dict[str, Org] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.issued: list[str] = []  # every token handed out (tests keep them out of logs)
        self.token_lifetime = DEFAULT_TOKEN_LIFETIME
        self.timestamp_window = TIMESTAMP_WINDOW
        self.token_calls = 0
        self.refused_tokens = 0  # API calls answered 401 for an unknown or expired token
        self._nonces: dict[str, float] = {}
        self.add_org(DEMO_ORG, DEMO_KEY_ID, DEMO_SECRET)
        other = self.add_org(OTHER_ORG, OTHER_KEY_ID, OTHER_SECRET)
        other.devices[FOREIGN_MAC] = new_device(FOREIGN_MAC, "3011111111111111",
                                                "https://other.example/prov/", None, None)

    def add_org(self, name: str, key_id: str, secret: str) -> Org:
        """Add (or replace) an organisation with its AccessKey."""
        org = Org(name, key_id, secret)
        self.orgs[name] = org
        return org

    def org_of_key(self, key_id: str, secret: str) -> Org | None:
        """The organisation an AccessKey belongs to, when the secret is right."""
        for org in self.orgs.values():
            if secrets.compare_digest(org.key_id, key_id) and secrets.compare_digest(
                    org.secret, secret):
                return org
        return None

    def owner_of(self, mac: str) -> Org | None:
        for org in self.orgs.values():
            if mac in org.devices:
                return org
        return None

    # -- tokens -----------------------------------------------------------------------

    def issue(self, org: Org) -> tuple[str, int]:
        """A new token for ``org`` and its lifetime in seconds."""
        token = secrets.token_hex(20)
        self.tokens[token] = IssuedToken(org, self.clock() + self.token_lifetime)
        self.issued.append(token)
        return token, self.token_lifetime

    def org_of_token(self, token: str) -> Org | None:
        """The organisation of a valid token (None: unknown or expired)."""
        issued = self.tokens.get(token)
        if issued is None or issued.expires <= self.clock():
            return None
        return issued.org

    def expire_tokens(self) -> int:
        """Expire every token now (as a server restart or revocation would); how many."""
        now = self.clock()
        live = [t for t in self.tokens.values() if t.expires > now]
        for issued in live:
            issued.expires = now
        return len(live)

    # -- replay protection --------------------------------------------------------------

    def header_problem(self, timestamp: str | None, nonce: str | None) -> str | None:
        """Why ``timestamp``/``nonce`` are refused: "invalid", "replay", or None."""
        if not timestamp or not timestamp.isdigit() or not nonce or not NONCE.fullmatch(nonce):
            return "invalid"
        now = self.clock()
        if abs(int(timestamp) / 1000 - now) > self.timestamp_window:
            return "invalid"
        if nonce in self._nonces:
            return "replay"
        if len(self._nonces) > 10_000:
            oldest = now - 2 * self.timestamp_window
            self._nonces = {n: at for n, at in self._nonces.items() if at >= oldest}
        self._nonces[nonce] = now
        return None

    def switches(self) -> dict[str, Any]:
        return {
            "add_by_mac": {org.name: org.add_by_mac for org in self.orgs.values()},
            "token_lifetime": self.token_lifetime,
            "timestamp_window": self.timestamp_window,
        }


def new_device(mac: str, sn: str | None, url: str | None, auth_name: str | None,
               password: str | None, remark: str | None = None) -> dict[str, Any]:
    """A device record as YMCS keeps it (the password is never shown back)."""
    return {
        "id": secrets.token_hex(16), "mac": mac, "sn": sn, "serverId": None,
        "serverName": None, "serverUrl": None, "uniqueServerUrl": url,
        "authName": auth_name, "password": password, "remark": remark, "ipAddress": None,
        "dateRegistered": int(time.time() * 1000), "lastConnected": None,
    }


def listed(device: dict[str, Any]) -> dict[str, Any]:
    """A device as ``listDevices`` shows it (no credentials)."""
    return {k: v for k, v in device.items() if k not in ("authName", "password")}


def detailed(device: dict[str, Any]) -> dict[str, Any]:
    """A device as ``GET /v2/rps/devices/{id}`` shows it (the authName, no password)."""
    return {k: v for k, v in device.items() if k != "password"}
