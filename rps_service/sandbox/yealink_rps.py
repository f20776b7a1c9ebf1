"""The Yealink RPS JSON API v3.6 emulator: ``/yealink-rps/api/open/v1/…``.

As strict as the public facts allow:

* the ``X-Ca-*`` signature, recomputed here from the vendor demo's recipe (written apart
  from the provider's, so one cannot hide the other's mistake): a known ``X-Ca-Key``, a
  13-digit ``X-Ca-Timestamp`` within :data:`TIMESTAMP_WINDOW` of the server's clock, a
  ``X-Ca-Nonce`` used once (:data:`TIMESTAMP_WINDOW` long), ``Content-MD5`` present exactly
  when there is a body and equal to the body's, the signature itself; ``POST`` with a JSON
  body and no query, ``GET`` with a query and no body;
* answers ``{ret, data, error}``: ``ret`` 1 (0 for deletions) or -1 with
  ``error: {msg, errorCode, fieldErrors}``;
* servers: names of 1 to 20 characters, unique across all enterprises; URLs ``http(s)://``,
  ``ftp://``, ``tftp://``;
* devices: MACs of 12 lower-case hex digits; ``device/add`` (all or nothing, at most
  :data:`MAX_BATCH`) refuses another enterprise's MAC with ``device.mac.added.by.other``
  (or ``device.operate.forbidden``, switch ``foreign_answer``) and one's own with
  ``device.mac.existed``; ``device/edit`` by id; ``device/delete`` takes **either**
  ``{ids}`` or ``{macs}`` (the public clients disagree); ``device/list``'s ``key`` matches
  any part of a MAC (fuzzy, as the real one); ``device/checkMac?mac=`` → ``{existed, self}``.

How the real service refuses a bad signature, a stale timestamp or a replayed nonce is not
public: here HTTP 401 with ``error.msg`` ``api.signature.invalid``, ``api.timestamp.expired``,
``api.nonce.used`` (and ``api.key.invalid`` for an unknown key). Error keys other than the
device ones above, the batch limit and the 15-minute window are guesses too; so is
throttling (HTTP 429, Retry-After, ``request.too.frequent``).

Seeded (fake demo keys, printed by ``rps-service sandbox``): enterprise ``demo``
(``yealink-rps-demo`` / ``yealink-rps-demo-secret``) and ``other``
(``yealink-rps-other`` / ``yealink-rps-other-secret``), which holds :data:`FOREIGN_MAC`.
Switches: ``POST /_sandbox/yealink-rps/switches`` ``{"foreign_answer": "added.by.other" |
"forbidden"}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .emulator import Emulator, Held
from .state import SandboxState

PREFIX = "/yealink-rps"
API = f"{PREFIX}/api/open/v1"
FOREIGN_MAC = "001565999999"
TIMESTAMP_WINDOW = 900  # seconds either side of the server's clock [G]
MAX_BATCH = 100  # MACs per device/add or device/delete [G]
MAX_PAGE = 1000
NAME_LIMIT = 20
_MAC = re.compile(r"[0-9a-f]{12}")
_NONCE = re.compile(r"[A-Za-z0-9-]{1,64}")
_SCHEMES = ("http://", "https://", "ftp://", "tftp://")
_ADD = frozenset({"macs", "serverId", "uniqueServerUrl", "remark", "authName", "password"})
_EDIT = frozenset({"id", "serverId", "uniqueServerUrl", "remark", "authName", "password"})
_LIST = frozenset({"key", "status", "skip", "limit", "autoCount"})
_SERVER_ADD = frozenset({"serverName", "url", "authName", "password"})
Reply = tuple[int, dict[str, Any]]  # HTTP status, JSON answer
_ROUTES = (  # (method, call, route name)
    ("POST", "server/add", "server-add"), ("POST", "server/list", "server-list"),
    ("GET", "device/serverList", "device-server-list"), ("POST", "device/add", "device-add"),
    ("POST", "device/edit", "device-edit"), ("POST", "device/delete", "device-delete"),
    ("POST", "device/list", "device-list"), ("GET", "device/checkMac", "device-check-mac"),
)


@dataclass
class Enterprise:
    """An RPS enterprise: its AccessKey, servers and devices (both by id)."""

    name: str
    key_id: str
    secret: str = field(repr=False)
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def device_with(self, mac: str) -> dict[str, Any] | None:
        return next((d for d in self.devices.values() if d["mac"] == mac), None)


class Refused(Exception):
    """A refusal: ``(status, body)`` to answer."""

    def __init__(self, key: str, status: int = 200, code: int = 400, detail: str = "") -> None:
        super().__init__(key)
        self.status = status
        self.body = {"ret": -1, "data": None,
                     "error": {"msg": key, "errorCode": code,
                               "fieldErrors": [{"msg": detail}] if detail else []}}


def _ok(data: Any = None, ret: int = 1) -> Reply:
    return 200, {"ret": ret, "data": data, "error": None}


def signing_text(method: str, path: str, headers: Mapping[str, str],
                 query: list[tuple[str, str]]) -> str:
    """The demo's string to sign, rebuilt from what arrived (see the module docstring)."""
    parts = [method]
    if "Content-MD5" in headers:
        parts.append("Content-MD5:" + headers["Content-MD5"])
    for name in ("X-Ca-Key", "X-Ca-Nonce", "X-Ca-Timestamp"):
        parts.append(name + ":" + headers.get(name, ""))
    parts.append(path[1:] if path.startswith("/") else path)
    pairs = sorted(query)
    if pairs:
        parts.append("&".join(k if v == "" else k + "=" + v for k, v in pairs))
    return "\n".join(parts)


class YealinkRpsEmulator(Emulator):
    """Yealink RPS JSON API v3.6."""

    name = "yealink-rps"
    prefix = PREFIX
    foreign_mac = FOREIGN_MAC

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        demo = Enterprise("demo", "yealink-rps-demo", "yealink-rps-demo-secret")
        other = Enterprise("other", "yealink-rps-other", "yealink-rps-other-secret")
        self.enterprises = {e.key_id: e for e in (demo, other)}
        self.nonces: dict[tuple[str, str], float] = {}  # (key id, nonce) → seen at
        self.foreign_answer = "added.by.other"
        self.deletions: Counter[str] = Counter()  # device/delete calls by "ids" / "macs"
        server = self.add_server(other, "other-pbx", "https://other.example/prov/")
        self.add_device(other, FOREIGN_MAC.lower(), server["id"], None, None, None,
                        record=False)

    @property
    def demo(self) -> Enterprise:
        return self.enterprises["yealink-rps-demo"]

    # -- the Emulator interface -----------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        for method, call, route in _ROUTES:
            app.router.add_route(method, f"{API}/{call}", self.handle,
                                 name=f"yealink-rps-{route}")
        app.router.add_post("/_sandbox/yealink-rps/switches", self.switches,
                            name="control-yealink-rps-switches")

    def api_url(self, base: str) -> str:
        return f"{base}{PREFIX}/"

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"access_key_id": self.demo.key_id, "access_key_secret": self.demo.secret}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"access_key_id": self.demo.key_id, "access_key_secret": "not-the-secret"}

    def sample_mac(self, index: int) -> str:
        # 80:5E:C0 is one of Yealink's OUIs; letters keep a MAC from reading as a number.
        return f"805EC0{index:06X}"

    def holds(self, mac: str) -> Held | None:
        device = self.demo.device_with(mac.lower())
        if device is None:
            return None
        server = self.demo.servers.get(device["serverId"] or "")
        url = device["uniqueServerUrl"] or (server["url"] if server else None)
        return Held(url, device["authName"], device["password"],
                    {"id": device["id"], "server": server["serverName"] if server else None})

    def account_of(self, request: web.Request) -> str:
        return request.headers.get("X-Ca-Key") or request.remote or "-"

    async def write_mac(self, request: web.Request) -> str | None:
        if request.method != "POST" or not request.path.endswith(
                ("/device/add", "/device/edit", "/device/delete")):
            return None
        try:
            body = json.loads(await request.read())
            if "id" in body or "ids" in body:
                wanted = body["id"] if "id" in body else body["ids"][0]
                return str(next(d["mac"] for e in self.enterprises.values()
                                for d in e.devices.values() if d["id"] == wanted))
            mac = body["macs"][0]
        except (ValueError, LookupError, TypeError, StopIteration):
            return None
        return mac.lower() if isinstance(mac, str) else None

    async def unmatched(self, request: web.Request, exc: web.HTTPException
                        ) -> web.StreamResponse:
        return web.json_response({"status": exc.status, "error": exc.reason,
                                  "path": request.path}, status=exc.status)

    def throttled(self, retry_after: int) -> web.Response:
        return web.json_response(Refused("request.too.frequent", 429, 429).body, status=429,
                                 headers={"Retry-After": str(retry_after)})

    def fault(self, status: int) -> web.Response:
        return web.json_response(Refused(f"injected {status}", status, status).body,
                                 status=status)

    def snapshot(self) -> dict[str, Any]:
        return {"enterprises": {
            e.name: {"servers": [{k: v for k, v in s.items() if k != "password"}
                                 for s in e.servers.values()],
                     "devices": [{k: v for k, v in d.items() if k != "password"}
                                 for d in e.devices.values()]}
            for e in self.enterprises.values()},
            "deletions": dict(self.deletions),
            "switches": {"foreign_answer": self.foreign_answer}}

    # -- HTTP -----------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        status, body = self.serve(request.method, request.path, list(request.query.items()),
                                  request.headers, await request.read())
        return web.json_response(body, status=status)

    def serve(self, method: str, path: str, query: list[tuple[str, str]],
              headers: Mapping[str, str], body: bytes) -> Reply:
        """One request without HTTP (unit tests call it): ``(status, JSON answer)``."""
        try:
            enterprise = self.verify(method, path, query, headers, body)
            call = path.removeprefix(API + "/")
            if method == "GET":
                return self._get(enterprise, call, dict(query))
            return self._post(enterprise, call, self._json(body))
        except Refused as refused:
            return refused.status, refused.body

    def verify(self, method: str, path: str, query: list[tuple[str, str]],
               headers: Mapping[str, str], body: bytes) -> Enterprise:
        """The caller's enterprise, or Refused (the checks of the module docstring)."""
        enterprise = self.enterprises.get(headers.get("X-Ca-Key", ""))
        if enterprise is None:
            raise Refused("api.key.invalid", 401, 401)
        stamp = headers.get("X-Ca-Timestamp", "")
        now = self.state.now()
        if not (stamp.isdigit() and len(stamp) == 13) \
                or abs(int(stamp) / 1000 - now) > TIMESTAMP_WINDOW:
            raise Refused("api.timestamp.expired", 401, 401)
        nonce = headers.get("X-Ca-Nonce", "")
        if not _NONCE.fullmatch(nonce):
            raise Refused("api.nonce.invalid", 401, 401)
        self._check_body(method, query, headers, body)
        expected = base64.b64encode(hmac.new(
            enterprise.secret.encode(), signing_text(method, path, headers, query).encode(),
            hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, headers.get("X-Ca-Signature", "")):
            raise Refused("api.signature.invalid", 401, 401)
        if (enterprise.key_id, nonce) in self.nonces:
            raise Refused("api.nonce.used", 401, 401)
        self._remember(enterprise.key_id, nonce, now)
        return enterprise

    def _check_body(self, method: str, query: list[tuple[str, str]],
                    headers: Mapping[str, str], body: bytes) -> None:
        if method == "GET" and body:
            raise Refused("request.body.unexpected")
        if method == "POST" and (query or not body):
            raise Refused("request.body.required")
        md5 = headers.get("Content-MD5")
        if bool(body) != (md5 is not None):
            raise Refused("api.signature.invalid", 401, 401, "Content-MD5 goes with a body")
        if body:
            if headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                raise Refused("request.content.type.invalid", 415, 415)
            digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest())
            if not hmac.compare_digest(digest.decode(), md5 or ""):
                raise Refused("api.content.md5.invalid", 401, 401)

    def _remember(self, key_id: str, nonce: str, now: float) -> None:
        if len(self.nonces) > 10_000:  # forget nonces whose timestamps can no longer pass
            self.nonces = {k: at for k, at in self.nonces.items()
                           if at > now - 2 * TIMESTAMP_WINDOW}
        self.nonces[(key_id, nonce)] = now

    def _json(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise Refused("request.body.invalid") from None
        if not isinstance(data, dict):
            raise Refused("request.body.invalid", detail="expected a JSON object")
        return data

    # -- calls ----------------------------------------------------------------------------

    def _get(self, enterprise: Enterprise, call: str, query: dict[str, str]) -> Reply:
        if call == "device/serverList":
            _fields(query, frozenset())
            return _ok([_public(s) for s in enterprise.servers.values()])
        _fields(query, frozenset({"mac"}))
        mac = query.get("mac", "")
        if not _MAC.fullmatch(mac):
            raise Refused("device.mac.invalid", detail="mac: 12 lower-case hex digits")
        holder = self._holder(mac)
        return _ok({"existed": holder is not None, "self": holder is enterprise})

    def _post(self, enterprise: Enterprise, call: str, body: dict[str, Any]) -> Reply:
        handler = {"server/add": self._server_add, "server/list": self._server_list,
                   "device/add": self._device_add, "device/edit": self._device_edit,
                   "device/delete": self._device_delete, "device/list": self._device_list,
                   }[call]
        return handler(enterprise, body)

    def _server_add(self, enterprise: Enterprise, body: dict[str, Any]) -> Reply:
        _fields(body, _SERVER_ADD)
        name, url = body.get("serverName"), body.get("url")
        if not isinstance(name, str) or not 1 <= len(name) <= NAME_LIMIT:
            raise Refused("server.name.invalid", detail=f"serverName: 1 to {NAME_LIMIT} chars")
        _url(url, "url")
        _strings(body, ("authName", "password"))
        if any(s["serverName"] == name for e in self.enterprises.values()
               for s in e.servers.values()):
            raise Refused("server.name.existed", code=409)
        server = self.add_server(enterprise, name, str(url), body.get("authName"),
                                 body.get("password"))
        return _ok(_public(server))

    def _server_list(self, enterprise: Enterprise, body: dict[str, Any]) -> Reply:
        key, skip, limit = _page_request(body)
        servers = [_public(s) for s in enterprise.servers.values()
                   if key.lower() in s["serverName"].lower()]
        return _ok(_page(servers, skip, limit))

    def _device_add(self, enterprise: Enterprise, body: dict[str, Any]) -> Reply:
        _fields(body, _ADD)
        macs = body.get("macs")
        if not isinstance(macs, list) or not 1 <= len(macs) <= MAX_BATCH \
                or not all(isinstance(m, str) and _MAC.fullmatch(m) for m in macs) \
                or len(set(macs)) != len(macs):
            raise Refused("device.mac.invalid",
                          detail=f"macs: 1 to {MAX_BATCH} MACs of 12 lower-case hex digits")
        server_id = self._target(enterprise, body)
        for mac in macs:  # all or nothing
            holder = self._holder(mac)
            if holder is enterprise:
                raise Refused("device.mac.existed", code=409, detail=mac)
            if holder is not None:
                raise Refused("device.operate.forbidden" if self.foreign_answer
                              == "forbidden" else "device.mac.added.by.other", code=409)
        added = [self.add_device(enterprise, mac, server_id, body.get("uniqueServerUrl"),
                                  body.get("authName"), body.get("password"),
                                  body.get("remark")) for mac in macs]
        return _ok([_view(enterprise, d) for d in added])

    def _device_edit(self, enterprise: Enterprise, body: dict[str, Any]) -> Reply:
        _fields(body, _EDIT)
        wanted = body.get("id")
        device = enterprise.devices.get(wanted if isinstance(wanted, str) else "")
        if device is None:
            raise Refused("device.not.found", code=404)
        server_id = self._target(enterprise, body, device)
        device.update(serverId=server_id)
        for name in ("uniqueServerUrl", "authName", "password", "remark"):
            if name in body:
                device[name] = body[name]
        self._record_write("device/edit", device)
        return _ok(_view(enterprise, device))

    def _device_delete(self, enterprise: Enterprise, body: dict[str, Any]) -> Reply:
        _fields(body, frozenset({"ids", "macs"}))
        if len(body) != 1:
            raise Refused("request.param.invalid", detail="give either ids or macs")
        name, values = next(iter(body.items()))
        if not isinstance(values, list) or not 1 <= len(values) <= MAX_BATCH \
                or not all(isinstance(v, str) for v in values):
            raise Refused("request.param.invalid", detail=f"{name}: 1 to {MAX_BATCH} strings")
        devices = []
        for value in values:  # all or nothing
            if name == "macs" and not _MAC.fullmatch(value):
                raise Refused("device.mac.invalid", detail=value)
            device = (enterprise.device_with(value) if name == "macs"
                      else enterprise.devices.get(value))
            if device is None:
                holder = self._holder(value) if name == "macs" else None
                if holder is not None:
                    raise Refused("device.operate.forbidden", code=403)
                raise Refused("device.not.found", code=404)
            devices.append(device)
        self.deletions[name] += 1
        for device in devices:
            del enterprise.devices[device["id"]]
            self.state.history[device["mac"]].append(("device/delete", None))
        return _ok(None, ret=0)

    def _device_list(self, enterprise: Enterprise, body: dict[str, Any]) -> Reply:
        key, skip, limit = _page_request(body)
        devices = [_view(enterprise, d) for d in sorted(enterprise.devices.values(),
                                                        key=lambda d: str(d["mac"]))
                   if key.lower().replace(":", "") in d["mac"]]
        return _ok(_page(devices, skip, limit))

    # -- the world ------------------------------------------------------------------------

    def _holder(self, mac: str) -> Enterprise | None:
        return next((e for e in self.enterprises.values() if e.device_with(mac)), None)

    def _target(self, enterprise: Enterprise, body: dict[str, Any],
                device: dict[str, Any] | None = None) -> str | None:
        """The body's serverId (one of the caller's) and checked URL and credentials."""
        server_id = body.get("serverId", device["serverId"] if device else None)
        if server_id is not None and server_id not in enterprise.servers:
            raise Refused("server.not.found", code=404)
        if "uniqueServerUrl" in body:
            _url(body["uniqueServerUrl"], "uniqueServerUrl")
        _strings(body, ("authName", "password", "remark"))
        if server_id is None and not (body.get("uniqueServerUrl")
                                      or (device and device["uniqueServerUrl"])):
            raise Refused("request.param.invalid", detail="serverId or uniqueServerUrl")
        return server_id if isinstance(server_id, str) else None

    def add_server(self, enterprise: Enterprise, name: str, url: str,
                   auth_name: Any = None, password: Any = None) -> dict[str, Any]:
        """Add a server to ``enterprise`` (as ``server/add`` or the portal would)."""
        server = {"id": uuid.uuid4().hex, "serverName": name, "url": url,
                  "authName": auth_name, "password": password}
        enterprise.servers[server["id"]] = server
        return server

    def add_device(self, enterprise: Enterprise, mac: str, server_id: str | None,
                   url: Any, auth_name: Any, password: Any, remark: Any = None,
                   record: bool = True) -> dict[str, Any]:
        """Add a device (lower-case MAC) to ``enterprise``, as ``device/add`` would
        (``record=False``: seeded, not a client's write)."""
        device = {"id": uuid.uuid4().hex, "mac": mac, "serverId": server_id,
                  "uniqueServerUrl": url, "authName": auth_name, "password": password,
                  "remark": remark}
        enterprise.devices[device["id"]] = device
        if record:
            self._record_write("device/add", device)
        return device

    def _record_write(self, op: str, device: dict[str, Any]) -> None:
        self.state.history[device["mac"]].append((op, device["uniqueServerUrl"]))
        if isinstance(device["password"], str) and device["password"]:
            self.state.received_passwords.add(device["password"])

    # -- control --------------------------------------------------------------------------

    async def switches(self, request: web.Request) -> web.Response:
        """``{"foreign_answer": "added.by.other" | "forbidden"}``."""
        try:
            body = json.loads(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = None
        choices = ("added.by.other", "forbidden")
        if not isinstance(body, dict) or set(body) - {"foreign_answer"} \
                or body.get("foreign_answer", self.foreign_answer) not in choices:
            return web.json_response({"message": 'Expected {"foreign_answer": '
                                                 '"added.by.other" | "forbidden"}'},
                                     status=400)
        self.foreign_answer = str(body.get("foreign_answer", self.foreign_answer))
        return web.json_response({"foreign_answer": self.foreign_answer})


def _fields(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Refused("request.param.invalid", detail=f"unknown field {unknown[0]}")


def _url(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.startswith(_SCHEMES) or len(value) > 1024:
        raise Refused("server.url.invalid", detail=f"{name}: http(s), ftp or tftp URL")


def _strings(body: Mapping[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = body.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 128):
            raise Refused("request.param.invalid", detail=f"{name}: a string")


def _page_request(body: dict[str, Any]) -> tuple[str, int, int]:
    _fields(body, _LIST)
    key, skip, limit = body.get("key", ""), body.get("skip", 0), body.get("limit", 10)
    if not isinstance(key, str) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (skip, limit)) \
            or skip < 0 or not 1 <= limit <= MAX_PAGE:
        raise Refused("request.param.invalid",
                      detail=f"key a string, skip >= 0, limit 1 to {MAX_PAGE}")
    return key, skip, limit


def _page(items: list[dict[str, Any]], skip: int, limit: int) -> dict[str, Any]:
    return {"skip": skip, "limit": limit, "total": len(items),
            "data": items[skip:skip + limit]}


def _view(enterprise: Enterprise, device: dict[str, Any]) -> dict[str, Any]:
    """A device as the API shows it, with its server's name and URL."""
    server = enterprise.servers.get(device["serverId"] or "") or {}
    return {**_public(device), "serverName": server.get("serverName"),
            "serverUrl": server.get("url")}


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry as the API shows it: never the password."""
    return {k: v for k, v in entry.items() if k != "password"}
