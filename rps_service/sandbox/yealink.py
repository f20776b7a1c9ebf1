"""The YMCS v2 emulator: Yealink's RPS API at ``/yealink/v2/...``, as strict as known.

Every request needs a ``timestamp`` (milliseconds, within five minutes of the server's
clock) and a ``nonce`` (1 to 32 letters or digits, single-use): otherwise 401
``500401`` ("Invalid request header"), or 403 ``500403`` for a replayed nonce. The token
call takes Basic client credentials and ``{"grant_type": "client_credentials"}``; every
other call a live bearer token (401 ``900401``). Bodies are checked field by field;
ownership is per organisation (``800003`` yours, ``800004`` another's); ``addDevicesByMac``
needs the organisation's permission (403 ``900403``) and takes at most 100 items
(``800006``); batch calls answer 200 with per-item ``errors``. Throttling is 429
``900429`` without Retry-After (none is documented).

Control: ``POST /_sandbox/yealink`` with any of ``{"add_by_mac": bool, "org": "demo",
"token_lifetime": seconds, "expire_tokens": true, "timestamp_window": seconds}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .emulator import Emulator, Held
from .ymcs import (
    DEMO_KEY_ID,
    DEMO_ORG,
    DEMO_SECRET,
    FOREIGN_MAC,
    Org,
    Ymcs,
    detailed,
    listed,
    new_device,
)

if TYPE_CHECKING:
    from .state import SandboxState

PREFIX = "/yealink"
MAX_BATCH = 100
MAX_PAGE = 500
_MAC = re.compile(r"[0-9a-f]{12}")
_SN = re.compile(r"[A-Za-z0-9]{1,32}")
_URL = re.compile(r"https?://[^\s/?#]+\S{0,500}")
_ADD_FIELDS = frozenset({"mac", "sn", "serverId", "uniqueServerUrl", "authName", "password",
                         "remark"})
_BY_MAC_FIELDS = _ADD_FIELDS - {"sn"}
_LIMITS = {"sn": 32, "serverId": 64, "uniqueServerUrl": 511, "authName": 64,
           "password": 64, "remark": 128}
_GONE = "The resource does not exist or has been deleted"
Handler = Callable[[web.Request, Org, Any], Awaitable[web.Response]]


class Refused(Exception):
    """A refusal in YMCS's shape: ``{code, message, requestId, details}``."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None
                 ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field

    def response(self) -> web.Response:
        details = [{"field": self.field, "message": self.message}] if self.field else []
        return web.json_response({"code": self.code, "message": self.message,
                                  "requestId": _request_id(), "details": details},
                                 status=self.status)


def _request_id() -> str:
    return secrets.token_hex(16)


def _oauth(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description},
                             status=status)


def _bad(field: str, message: str, code: str = "900400") -> Refused:
    return Refused(400, code, f"{field}: {message}", field)


class YealinkEmulator(Emulator):
    """Yealink YMCS v2 RPS."""

    name = "yealink"
    prefix = PREFIX
    foreign_mac = FOREIGN_MAC.upper()

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.ymcs = Ymcs(clock=state.now)

    # -- routes -----------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        router.add_post(f"{PREFIX}/v2/token", self._token, name="yealink-token")
        api = [("/v2/rps/devices", self._add, "yealink-add"),
               ("/v2/rps/addDevicesByMac", self._add_by_mac, "yealink-add-by-mac"),
               ("/v2/rps/delDevices", self._delete, "yealink-delete"),
               ("/v2/rps/listDevices", self._list, "yealink-list")]
        for path, handler, name in api:
            router.add_post(PREFIX + path, self._api(handler), name=name)
        router.add_get(PREFIX + "/v2/rps/devices/{id}", self._api(self._device, body=False),
                       name="yealink-device")
        router.add_post("/_sandbox/yealink", self._control, name="control-yealink")

    def _api(self, handler: Handler, body: bool = True
             ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def checked(request: web.Request) -> web.Response:
            try:
                self._replay_check(request)
                org = self._bearer(request)
                data = await _json_body(request) if body else None
                return await handler(request, org, data)
            except Refused as refused:
                return refused.response()

        return checked

    def _replay_check(self, request: web.Request) -> None:
        problem = self.ymcs.header_problem(request.headers.get("timestamp"),
                                           request.headers.get("nonce"))
        if problem == "replay":
            raise Refused(403, "500403", "Request reply")
        if problem:
            raise Refused(401, "500401", "Invalid request header")

    def _bearer(self, request: web.Request) -> Org:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        org = self.ymcs.org_of_token(token.strip()) if scheme.lower() == "bearer" else None
        if org is None:
            self.ymcs.refused_tokens += 1
            raise Refused(401, "900401", "Not logged in or session expired")
        return org

    # -- token ------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        self.ymcs.token_calls += 1
        try:
            self._replay_check(request)
        except Refused as refused:
            return refused.response()
        org = self._basic(request)
        if org is None:
            return _oauth(401, "invalid_client", "Bad client credentials")
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            body = None
        if request.content_type != "application/json" or body != {
                "grant_type": "client_credentials"}:
            return _oauth(400, "unsupported_grant_type",
                          'Expected the JSON body {"grant_type": "client_credentials"}')
        token, lifetime = self.ymcs.issue(org)
        return web.json_response({"access_token": token, "token_type": "bearer",
                                  "expires_in": lifetime})

    def _basic(self, request: web.Request) -> Org | None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            key_id, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode(
                ).partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
        return self.ymcs.org_of_key(key_id, secret) if sep else None

    # -- devices ----------------------------------------------------------------------

    async def _add(self, request: web.Request, org: Org, body: Any) -> web.Response:
        """``POST /v2/rps/devices``: one device, with its serial number (201)."""
        if not isinstance(body, dict):
            raise Refused(400, "900400", "The request body must be a JSON object")
        item = self._item(body, _ADD_FIELDS)
        if not item.get("sn"):
            raise _bad("sn", "Cannot be empty")
        if not _SN.fullmatch(item["sn"]):
            raise _bad("sn", "Invalid SN", "800002")
        refusal = self._ownership(org, item["mac"])
        if refusal is not None:
            raise Refused(400, *refusal)
        device = self._store(org, item)
        return web.json_response(detailed(device), status=201)

    async def _add_by_mac(self, request: web.Request, org: Org, body: Any) -> web.Response:
        """``POST /v2/rps/addDevicesByMac``: a bare array of up to 100 devices."""
        if not org.add_by_mac:
            raise Refused(403, "900403", "This request is forbidden")
        if not isinstance(body, list):  # an object is taken as no body at all
            raise Refused(412, "900444", "Request body is missing")
        if not body:
            raise Refused(400, "900400", "The device list cannot be empty")
        if len(body) > MAX_BATCH:
            raise Refused(400, "800006", "Batch size exceeds limit")
        items = [self._item(entry, _BY_MAC_FIELDS, loose_mac=True) for entry in body]
        errors = []
        for item in items:
            if not _MAC.fullmatch(item["mac"]):
                errors.append({"mac": item["mac"], "sn": None, "errorInfo": "Invalid MAC"})
                continue
            refusal = self._ownership(org, item["mac"])
            if refusal is not None:
                errors.append({"mac": item["mac"], "sn": None, "errorInfo": refusal[1]})
                continue
            self._store(org, item)
        return web.json_response({"total": len(items), "successCount": len(items) - len(errors),
                                  "failureCount": len(errors), "errors": errors})

    async def _delete(self, request: web.Request, org: Org, body: Any) -> web.Response:
        """``POST /v2/rps/delDevices`` ``{deviceIdType: mac|id, deviceIds}``."""
        if not isinstance(body, dict) or set(body) - {"deviceIdType", "deviceIds"}:
            raise Refused(400, "900400", "Expected {deviceIdType, deviceIds}")
        kind, ids = body.get("deviceIdType", "id"), body.get("deviceIds")
        if kind not in ("mac", "id"):
            raise _bad("deviceIdType", "Must be mac or id")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise _bad("deviceIds", "Cannot be empty")
        if len(ids) > MAX_BATCH:
            raise Refused(400, "800006", "Batch size exceeds limit")
        errors = []
        for device_id in ids:
            mac = device_id if kind == "mac" else next(
                (m for m, d in org.devices.items() if d["id"] == device_id), "")
            if mac not in org.devices:
                errors.append({"field": device_id, "msg": _GONE})
                continue
            del org.devices[mac]
            self.state.history[mac].append(("DELETE", None))
        return web.json_response({"total": len(ids), "successCount": len(ids) - len(errors),
                                  "failureCount": len(errors), "errors": errors})

    async def _list(self, request: web.Request, org: Org, body: Any) -> web.Response:
        """``POST /v2/rps/listDevices`` ``{skip, limit, autoCount, filter: {mac}}``."""
        if not isinstance(body, dict) or set(body) - {"skip", "limit", "autoCount", "filter"}:
            raise Refused(400, "900400", "Expected {skip, limit, autoCount, filter}")
        skip, limit = body.get("skip", 0), body.get("limit", 10)
        count, flt = body.get("autoCount", False), body.get("filter", {})
        for name, value, low, high in (("skip", skip, 0, 10**9), ("limit", limit, 1, MAX_PAGE)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise _bad(name, f"Must be an integer from {low} to {high}")
        if not isinstance(count, bool):
            raise _bad("autoCount", "Must be a boolean")
        if not isinstance(flt, dict) or set(flt) - {"mac"} or not isinstance(
                flt.get("mac", ""), str):
            raise _bad("filter", "Only {mac} can be filtered")
        wanted = re.sub(r"[^0-9a-f]", "", str(flt.get("mac", "")).lower())
        # Matching is by substring, as YMCS's search is: a caller must check the MAC.
        rows = [listed(d) for m, d in sorted(org.devices.items()) if wanted in m]
        page = rows[skip:skip + limit]
        return web.json_response({"skip": skip, "limit": limit,
                                  "total": len(rows) if count else 0, "data": page or None})

    async def _device(self, request: web.Request, org: Org, body: Any) -> web.Response:
        wanted = request.match_info["id"]
        for device in org.devices.values():
            if device["id"] == wanted:
                return web.json_response(detailed(device))
        raise Refused(400, "900400", _GONE)

    def _item(self, entry: Any, allowed: frozenset[str], loose_mac: bool = False
              ) -> dict[str, str]:
        if not isinstance(entry, dict):
            raise Refused(400, "900400", "Each device must be a JSON object")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise _bad(unknown[0], "Unknown field")
        for key, value in entry.items():
            if not isinstance(value, str):
                raise _bad(key, "Must be a string")
            if len(value) > _LIMITS.get(key, 64):
                raise _bad(key, "Too long", "800008")
        mac = entry.get("mac")
        if not mac:
            raise _bad("mac", "Cannot be empty")
        if not loose_mac and not _MAC.fullmatch(mac):
            raise _bad("mac", "Invalid MAC", "800001")
        if not entry.get("serverId") and not entry.get("uniqueServerUrl"):
            raise _bad("uniqueServerUrl", "Give serverId or uniqueServerUrl")
        if entry.get("uniqueServerUrl") and not _URL.fullmatch(entry["uniqueServerUrl"]):
            raise _bad("uniqueServerUrl", "Invalid URL", "800007")
        if entry.get("serverId"):
            raise _bad("serverId", _GONE)  # the sandbox has no RPS servers
        return dict(entry)

    def _ownership(self, org: Org, mac: str) -> tuple[str, str] | None:
        owner = self.ymcs.owner_of(mac)
        if owner is None:
            return None
        if owner is org:
            return "800003", "Resource already exists"
        return "800004", "Device already managed by another organization"

    def _store(self, org: Org, item: dict[str, str]) -> dict[str, Any]:
        device = new_device(item["mac"], item.get("sn"), item.get("uniqueServerUrl"),
                            item.get("authName"), item.get("password"), item.get("remark"))
        org.devices[item["mac"]] = device
        if device["password"]:
            self.state.received_passwords.add(device["password"])
        self.state.history[item["mac"]].append(("POST", device["uniqueServerUrl"]))
        return device

    # -- control ----------------------------------------------------------------------

    async def _control(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"{}")
            self._apply(body)
        except (ValueError, UnicodeDecodeError, TypeError) as exc:
            return web.json_response({"message": str(exc) or "Malformed JSON"}, status=400)
        return web.json_response(self.ymcs.switches())

    def _apply(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise TypeError("Expected a JSON object")
        unknown = set(body) - {"add_by_mac", "org", "token_lifetime", "expire_tokens",
                               "timestamp_window"}
        if unknown:
            raise ValueError(f"Unknown switch: {sorted(unknown)[0]}")
        org = self.ymcs.orgs.get(body.get("org", DEMO_ORG))
        if org is None:
            raise ValueError("Unknown org")
        for name in ("add_by_mac", "expire_tokens"):
            if name in body and not isinstance(body[name], bool):
                raise ValueError(f"{name} must be a boolean")
        for name in ("token_lifetime", "timestamp_window"):
            value = body.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        if "add_by_mac" in body:
            org.add_by_mac = body["add_by_mac"]
        if "token_lifetime" in body:
            self.ymcs.token_lifetime = body["token_lifetime"]
        if "timestamp_window" in body:
            self.ymcs.timestamp_window = float(body["timestamp_window"])
        if body.get("expire_tokens"):
            self.ymcs.expire_tokens()

    # -- the contract tests' side ---------------------------------------------------------

    def api_url(self, base: str) -> str:
        return f"{base}{PREFIX}"

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"access_key_id": DEMO_KEY_ID, "access_key_secret": DEMO_SECRET}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"access_key_id": DEMO_KEY_ID, "access_key_secret": "not-the-secret"}

    def event_fields(self, mac: str) -> dict[str, Any]:
        return {"sn": f"30{int(mac, 16) % 10**14:014d}"}

    def holds(self, mac: str) -> Held | None:
        device = self.ymcs.orgs[DEMO_ORG].devices.get(mac.lower())
        if device is None:
            return None
        return Held(device["uniqueServerUrl"], device["authName"], device["password"],
                    {"device": detailed(device)})

    def account_of(self, request: web.Request) -> str:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            issued = self.ymcs.tokens.get(value.strip())
            return issued.org.key_id if issued else "-"
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value.strip()).decode().partition(":")[0]
            except (binascii.Error, ValueError, UnicodeDecodeError):
                return "-"
        return "-"

    async def write_mac(self, request: web.Request) -> str | None:
        if request.method != "POST" or not request.path.startswith(f"{PREFIX}/v2/rps/"):
            return None
        try:
            body = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return None
        if isinstance(body, list) and body and isinstance(body[0], dict):
            body = body[0]
        if not isinstance(body, dict):
            return None
        if isinstance(body.get("mac"), str):
            return str(body["mac"]).lower()
        ids = body.get("deviceIds")
        if body.get("deviceIdType") == "mac" and isinstance(ids, list) and ids:
            return str(ids[0]).lower()
        return None

    async def unmatched(self, request: web.Request, exc: web.HTTPException
                        ) -> web.StreamResponse:
        return Refused(exc.status, f"900{exc.status}", exc.reason).response()

    def throttled(self, retry_after: int) -> web.Response:
        # No Retry-After: YMCS documents none, so the client's own pause is what works.
        return Refused(429, "900429", "Too many requests").response()

    def fault(self, status: int) -> web.Response:
        return Refused(status, f"900{status}", f"injected {status}").response()

    def snapshot(self) -> dict[str, Any]:
        return {
            "orgs": {org.name: {"key_id": org.key_id, "add_by_mac": org.add_by_mac,
                                "devices": {m: listed(d) for m, d in org.devices.items()}}
                     for org in self.ymcs.orgs.values()},
            **self.ymcs.switches(),
            "token_calls": self.ymcs.token_calls,
            "refused_tokens": self.ymcs.refused_tokens,
        }

    def describe(self, base: str) -> list[str]:
        return [f"yealink: api_url={self.api_url(base)} access_key_id={DEMO_KEY_ID} "
                f"access_key_secret={DEMO_SECRET} (add_by_mac permission off: "
                "POST /_sandbox/yealink {\"add_by_mac\": true})"]


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise Refused(412, "900444", "Request body is missing")
    if request.content_type != "application/json":
        raise Refused(400, "900400", "Content-Type must be application/json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Refused(400, "900400", "Malformed JSON") from None
