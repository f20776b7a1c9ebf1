"""The GDMS emulator: Grandstream's OpenAPI at ``/grandstream/oapi/``.

As strict as the public facts allow: the token call checks the client id and secret and the
double-hashed password, issues expiring access tokens and rotating refresh tokens; every
API call must carry a known, unexpired ``access_token``, a ``timestamp`` within
:data:`TIMESTAMP_WINDOW` of the server's clock and a ``signature`` recomputed here over the
query, the client id and secret and the body's hash; ``client_id``/``client_secret`` in the
query are refused (they are signed, never sent). Bodies are checked field by field.

Seeded world (fake demo values, printed by ``rps-service sandbox``):

=========  ========  ===============  =====================  ==============  =========
org id     name      username         password               client id       sites
=========  ========  ===============  =====================  ==============  =========
``52001``  demo      ``gdms-demo``    ``gdms-demo-password``  ``gdms-demo``   3345, 3346
``52002``  other     ``gdms-other``   ``gdms-other-password`` ``gdms-other``  4455
=========  ========  ===============  =====================  ==============  =========

Client secrets are ``gdms-demo-secret`` and ``gdms-other-secret``. Org ``52002`` holds
:data:`FOREIGN_MAC`. A device's serial number must be :func:`serial_for` its MAC (GDMS
checks the pair against the phone's label): ``GS`` followed by the MAC's 12 hex digits.

GDMS publishes no ``retCode`` table: the codes and messages below are this emulator's
choice; the provider reads answers by their ``msg`` words, not their codes. Switches
(``POST /_sandbox/grandstream/switches``): ``token_ttl`` (seconds an access token lives),
``foreign_answer`` (``exists``: another organisation's MAC gets the same "already exists"
as one's own; ``bound``: a message naming another organisation).
``POST /_sandbox/grandstream/expire-tokens`` (``{"refresh": true}`` also ends the refresh
tokens) makes every issued token expire now.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from .emulator import Emulator, Held
from .gdms_signing import expected_signature, token_password
from .state import SandboxState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API = "/grandstream/oapi/v1.0.0"
TOKEN_URL = "/grandstream/oapi/oauth/token"  # noqa: S105 - a path, not a password
FOREIGN_MAC = "000B82999999"
TIMESTAMP_WINDOW = 300  # seconds either side of the server's clock [G]
MAX_BATCH = 100  # devices per device/add or device/delete [G]
MAX_PAGE_SIZE = 1000  # peers ask for up to 1000 per page
NAME_LIMIT = 64

# retCodes: this emulator's choice (GDMS publishes none); the messages carry the meaning.
PARAMETER_ERROR = (1000, "Parameter error")
SIGNATURE_ERROR = (40002, "Signature error")
TIMESTAMP_ERROR = (40003, "The timestamp has expired")
TOO_FREQUENT = (40029, "Requests too frequent, please try again later")
DEVICE_EXISTS = (70001, "The device already exists")
DEVICE_MISSING = (70002, "The device does not exist")
SITE_MISSING = (70003, "The site does not exist")
SERIAL_MISMATCH = (70004, "The MAC address and the SN do not match")
DEVICE_BOUND = (70005, "The device has been added by another organization")

_MAC = re.compile(r"(?:[0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{12}")
_ADD_FIELDS = frozenset({"mac", "sn", "siteId", "deviceName", "orgId"})
_LIST_FIELDS = frozenset({"pageNum", "pageSize", "orgId", "order", "type"})

def serial_for(mac: str) -> str:
    """The serial number the emulator pairs with a MAC (the phone's label, in reality):
    ``GS`` and the MAC's 12 hex digits, so a trial can work it out by hand."""
    return "GS" + plain_mac(mac)


def plain_mac(value: str) -> str:
    return value.replace(":", "").upper()


def colon_mac(mac: str) -> str:
    return ":".join(mac[i:i + 2] for i in range(0, 12, 2))


@dataclass
class GdmsOrg:
    """A GDMS organisation: its login, API developer keys, sites and devices."""

    id: int
    name: str
    username: str
    password: str = field(repr=False)
    client_id: str
    client_secret: str = field(repr=False)
    sites: dict[int, str]
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # plain MAC → entry


_ORG = web.RequestKey("gdms_org", GdmsOrg)


@dataclass
class Issued:
    """An access or refresh token: whose, and until when (server clock)."""

    org: int
    expires: float


class Refused(Exception):
    """A refusal: the answer to give."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def envelope(code: tuple[int, str], detail: str = "", status: int = 200,
             data: Any = None) -> web.Response:
    msg = f"{code[1]}: {detail}" if detail else code[1]
    return web.json_response({"retCode": code[0], "msg": msg, "data": data}, status=status)


def ok(data: Any = None) -> web.Response:
    return web.json_response({"retCode": 0, "msg": "success", "data": data})


def oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _bad(detail: str) -> Refused:
    return Refused(envelope(PARAMETER_ERROR, detail))


class GrandstreamEmulator(Emulator):
    """Grandstream GDMS OpenAPI."""

    name = "grandstream"
    prefix = "/grandstream"
    foreign_mac: ClassVar[str] = FOREIGN_MAC

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.orgs: dict[int, GdmsOrg] = {}
        self.access: dict[str, Issued] = {}
        self.refresh: dict[str, Issued] = {}
        self.token_ttl = 3600.0
        self.refresh_ttl = 30 * 86400.0
        self.foreign_answer = "exists"
        self.logins = 0
        self.refreshes = 0
        self._seed()

    def _seed(self) -> None:
        self.orgs[52001] = GdmsOrg(52001, "demo", "gdms-demo", "gdms-demo-password",
                                   "gdms-demo", "gdms-demo-secret",
                                   {3345: "Default", 3346: "Branch"})
        other = GdmsOrg(52002, "other", "gdms-other", "gdms-other-password", "gdms-other",
                        "gdms-other-secret", {4455: "Other HQ"})
        other.devices[FOREIGN_MAC] = self._entry(other, FOREIGN_MAC, serial_for(FOREIGN_MAC),
                                                 4455, "Lobby")
        self.orgs[other.id] = other

    @property
    def demo(self) -> GdmsOrg:
        return self.orgs[52001]

    # -- the Emulator interface -----------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        token = router.add_resource(TOKEN_URL, name="grandstream-token")
        token.add_route("POST", self.token)
        token.add_route("GET", self.token)
        router.add_post(f"{API}/device/add", self.signed(self.device_add),
                        name="grandstream-device-add")
        router.add_post(f"{API}/device/delete", self.signed(self.device_delete),
                        name="grandstream-device-delete")
        router.add_post(f"{API}/device/list", self.signed(self.device_list),
                        name="grandstream-device-list")
        sites = router.add_resource(f"{API}/site/list", name="grandstream-site-list")
        sites.add_route("GET", self.signed(self.site_list))
        sites.add_route("POST", self.signed(self.site_list))
        router.add_post("/_sandbox/grandstream/expire-tokens", self.expire_tokens,
                        name="control-grandstream-expire")
        router.add_post("/_sandbox/grandstream/switches", self.switches,
                        name="control-grandstream-switches")

    def api_url(self, base: str) -> str:
        return f"{base}/grandstream/"

    def demo_credentials(self) -> dict[str, str | bool]:
        org = self.demo
        return {"username": org.username, "password": org.password,
                "client_id": org.client_id, "client_secret": org.client_secret,
                "site_id": "3345"}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {**self.demo_credentials(), "password": "not-the-password"}

    def sample_mac(self, index: int) -> str:
        return f"000B8200{index:04X}"  # 00:0B:82 is Grandstream's

    def event_fields(self, mac: str) -> dict[str, Any]:
        return {"sn": serial_for(mac)}

    def holds(self, mac: str) -> Held | None:
        entry = self.demo.devices.get(mac.upper())
        if entry is None:
            return None
        return Held(None, extra={"site_id": entry["siteId"], "sn": entry["sn"],
                                 "device_name": entry["deviceName"]})

    def account_of(self, request: web.Request) -> str:
        issued = self.access.get(request.query.get("access_token", ""))
        if issued is not None:
            return f"org-{issued.org}"
        return request.query.get("client_id") or request.remote or "-"

    async def write_mac(self, request: web.Request) -> str | None:
        if request.method != "POST" or not request.path.endswith(("/device/add",
                                                                  "/device/delete")):
            return None
        try:
            body = json.loads(await request.read())
            first = body[0]["mac"] if isinstance(body, list) else body["macList"][0]
        except (ValueError, LookupError, TypeError):
            return None
        return plain_mac(first).lower() if isinstance(first, str) else None

    def throttled(self, retry_after: int) -> web.Response:
        return web.json_response({"retCode": TOO_FREQUENT[0], "msg": TOO_FREQUENT[1],
                                  "data": None}, status=429,
                                 headers={"Retry-After": str(retry_after)})

    def fault(self, status: int) -> web.Response:
        return web.json_response({"retCode": status, "msg": f"injected {status}",
                                  "data": None}, status=status)

    async def unmatched(self, request: web.Request, exc: web.HTTPException
                        ) -> web.StreamResponse:
        return web.json_response({"status": exc.status, "error": exc.reason,
                                  "path": request.path}, status=exc.status)

    def snapshot(self) -> dict[str, Any]:
        now = self.state.now()
        return {
            "orgs": {str(o.id): {"name": o.name, "sites": {str(k): v for k, v in o.sites.items()},
                                 "devices": list(o.devices.values())}
                     for o in self.orgs.values()},
            "live_tokens": sum(1 for t in self.access.values() if t.expires > now),
            "logins": self.logins, "refreshes": self.refreshes,
            "switches": {"token_ttl": self.token_ttl, "foreign_answer": self.foreign_answer},
        }

    # -- tokens ---------------------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        """``/oapi/oauth/token``: a form POST or a GET query (peers use both)."""
        params = dict(request.query)
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            params |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        org = next((o for o in self.orgs.values()
                    if o.client_id == params.get("client_id")), None)
        if org is None or not hmac.compare_digest(org.client_secret,
                                                  params.get("client_secret", "")):
            return oauth_error(401, "invalid_client", "Bad client credentials")
        grant = params.get("grant_type")
        if grant == "password":
            if params.get("username") != org.username or not hmac.compare_digest(
                    token_password(org.password), params.get("password", "")):
                return oauth_error(400, "invalid_grant", "Bad credentials")
            self.logins += 1
        elif grant == "refresh_token":
            given = params.get("refresh_token", "")
            issued = self.refresh.pop(given, None)
            if issued is None or issued.org != org.id or issued.expires <= self.state.now():
                return oauth_error(400, "invalid_grant", f"Invalid refresh token: {given}")
            self.refreshes += 1
        elif grant:
            return oauth_error(400, "unsupported_grant_type", f"Unsupported grant type: {grant}")
        else:
            return oauth_error(400, "invalid_request", "Missing grant type")
        return web.json_response(self._issue(org))

    def _issue(self, org: GdmsOrg) -> dict[str, Any]:
        now = self.state.now()
        access, refresh = str(uuid.uuid4()), str(uuid.uuid4())
        self.access[access] = Issued(org.id, now + self.token_ttl)
        self.refresh[refresh] = Issued(org.id, now + self.refresh_ttl)  # the old one is gone
        return {"access_token": access, "token_type": "bearer", "refresh_token": refresh,
                "expires_in": max(int(self.token_ttl) - 1, 0), "scope": "all"}

    # -- signed calls ---------------------------------------------------------------------

    def signed(self, handler: Handler) -> Handler:
        """The access token, the timestamp and the signature first; then the handler."""

        async def checked(request: web.Request) -> web.StreamResponse:
            try:
                request[_ORG] = await self._verify(request)
                return await handler(request)
            except Refused as exc:
                return exc.response

        return checked

    async def _verify(self, request: web.Request) -> GdmsOrg:
        query = request.query
        token = query.get("access_token", "")
        issued = self.access.get(token)
        if issued is None:
            raise Refused(oauth_error(401, "invalid_token", f"Invalid access token: {token}"))
        if issued.expires <= self.state.now():
            raise Refused(oauth_error(401, "invalid_token", f"Access token expired: {token}"))
        org = self.orgs[issued.org]
        if any(len(query.getall(k)) > 1 for k in query):
            raise _bad("a query parameter is repeated")
        if "client_id" in query or "client_secret" in query:
            raise _bad("client_id and client_secret are signed, never sent")
        stamp = query.get("timestamp", "")
        if not stamp.isdigit() or abs(int(stamp) / 1000 - self.state.now()) > TIMESTAMP_WINDOW:
            raise Refused(envelope(TIMESTAMP_ERROR))
        body = await request.read()
        if body and request.content_type != "application/json":
            raise _bad("the body must be application/json")
        params = [(k, v) for k, v in query.items() if k != "signature"]
        expected = expected_signature(params, org.client_id, org.client_secret, body)
        if not hmac.compare_digest(expected, query.get("signature", "")):
            raise Refused(envelope(SIGNATURE_ERROR))
        return org

    async def _json(self, request: web.Request, required: bool = True) -> Any:
        body = await request.read()
        if not body:
            if required:
                raise _bad("a JSON body is required")
            return None
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise _bad("the body is not JSON") from None

    # -- devices and sites ----------------------------------------------------------------

    async def device_add(self, request: web.Request) -> web.Response:
        org = request[_ORG]
        items = await self._json(request)
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise _bad(f"expected a JSON array of 1 to {MAX_BATCH} devices")
        checked = [self._checked_device(org, item) for item in items]
        if len({mac for mac, _ in checked}) != len(checked):
            raise _bad("a MAC is repeated")
        for mac, _ in checked:  # all or nothing
            self._check_free(org, mac)
        for mac, item in checked:
            org.devices[mac] = self._entry(org, mac, item["sn"], item["siteId"],
                                           item.get("deviceName", ""))
            self.state.history[mac.lower()].append(("device/add", None))
        return ok()

    def _checked_device(self, org: GdmsOrg, item: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(item, dict) or set(item) - _ADD_FIELDS:
            raise _bad(f"a device is an object of {', '.join(sorted(_ADD_FIELDS))}")
        mac, sn, site = item.get("mac"), item.get("sn"), item.get("siteId")
        if not isinstance(mac, str) or not _MAC.fullmatch(mac):
            raise _bad("mac must be 12 hex digits, with or without colons")
        if not isinstance(sn, str) or not sn:
            raise _bad("sn is required")
        if not isinstance(site, int) or isinstance(site, bool):
            raise _bad("siteId must be a number")
        name = item.get("deviceName", "")
        if not isinstance(name, str) or len(name) > NAME_LIMIT:
            raise _bad(f"deviceName must be a string of at most {NAME_LIMIT} characters")
        if "orgId" in item and item["orgId"] != org.id:
            raise _bad("orgId is not the caller's organization")
        if site not in org.sites:
            raise Refused(envelope(SITE_MISSING))
        if sn != serial_for(plain_mac(mac)):
            raise Refused(envelope(SERIAL_MISMATCH))
        return plain_mac(mac), item

    def _check_free(self, org: GdmsOrg, mac: str) -> None:
        for holder in self.orgs.values():
            if mac in holder.devices:
                bound = holder is not org and self.foreign_answer == "bound"
                raise Refused(envelope(DEVICE_BOUND if bound else DEVICE_EXISTS))

    async def device_delete(self, request: web.Request) -> web.Response:
        org = request[_ORG]
        body = await self._json(request)
        macs = body.get("macList") if isinstance(body, dict) else None
        if (not isinstance(body, dict) or set(body) - {"macList", "orgId"}
                or not isinstance(macs, list) or not 1 <= len(macs) <= MAX_BATCH
                or not all(isinstance(m, str) and _MAC.fullmatch(m) for m in macs)):
            raise _bad(f"expected {{\"macList\": [1 to {MAX_BATCH} MACs]}}")
        plain = [plain_mac(m) for m in macs]
        if any(m not in org.devices for m in plain):  # another org's device is not ours
            raise Refused(envelope(DEVICE_MISSING))
        for mac in plain:
            del org.devices[mac]
            self.state.history[mac.lower()].append(("device/delete", None))
        return ok()

    async def device_list(self, request: web.Request) -> web.Response:
        org = request[_ORG]
        body = await self._json(request)
        if not isinstance(body, dict) or set(body) - _LIST_FIELDS:
            raise _bad(f"expected an object of {', '.join(sorted(_LIST_FIELDS))}")
        page, size = body.get("pageNum", 1), body.get("pageSize", 10)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                   for v in (page, size)) or size > MAX_PAGE_SIZE:
            raise _bad(f"pageNum and pageSize must be numbers (pageSize at most {MAX_PAGE_SIZE})")
        if "orgId" in body and body["orgId"] != org.id:
            raise _bad("orgId is not the caller's organization")
        devices = [org.devices[m] for m in sorted(org.devices)]
        return ok(_page(devices, page, size))

    async def site_list(self, request: web.Request) -> web.Response:
        org = request[_ORG]
        body = await self._json(request, required=False)
        if body is not None and (not isinstance(body, dict)
                                 or set(body) - {"orgId", "pageNum", "pageSize"}):
            raise _bad("expected an object of orgId, pageNum, pageSize")
        wanted = (body or {}).get("orgId", request.query.get("orgId"))
        if wanted is not None and str(wanted) != str(org.id):
            raise _bad("orgId is not the caller's organization")
        sites = [{"id": i, "siteName": n, "orgId": org.id} for i, n in sorted(org.sites.items())]
        return ok(_page(sites, 1, max(len(sites), 1)))

    def _entry(self, org: GdmsOrg, mac: str, sn: str, site: int, name: str
               ) -> dict[str, Any]:
        return {"mac": colon_mac(mac), "sn": sn, "deviceName": name, "siteId": site,
                "siteName": org.sites[site], "orgId": org.id, "status": 0}

    # -- control ----------------------------------------------------------------------------

    async def expire_tokens(self, request: web.Request) -> web.Response:
        """Every access token (and with ``{"refresh": true}`` every refresh token) ends now."""
        try:
            body = json.loads(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict) or set(body) - {"refresh"} or not isinstance(
                body.get("refresh", False), bool):
            return web.json_response({"message": 'Expected {"refresh": bool}'}, status=400)
        self.expire(refresh=body.get("refresh", False))
        return web.json_response({"expired": len(self.access)})

    def expire(self, *, refresh: bool = False) -> None:
        """End every issued access token now (and the refresh tokens too)."""
        past = self.state.now() - 1
        for issued in self.access.values():
            issued.expires = past
        if refresh:
            for issued in self.refresh.values():
                issued.expires = past

    async def switches(self, request: web.Request) -> web.Response:
        """``{"token_ttl": seconds, "foreign_answer": "exists" | "bound"}``."""
        try:
            body = json.loads(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = None
        ttl = body.get("token_ttl", self.token_ttl) if isinstance(body, dict) else None
        answer = body.get("foreign_answer", self.foreign_answer) if isinstance(body, dict) \
            else None
        if (not isinstance(body, dict) or set(body) - {"token_ttl", "foreign_answer"}
                or isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0
                or answer not in ("exists", "bound")):
            return web.json_response({"message": "Expected token_ttl (seconds >= 0) and "
                                                 "foreign_answer (exists or bound)"},
                                     status=400)
        self.token_ttl, self.foreign_answer = float(ttl), str(answer)
        return web.json_response(self.snapshot()["switches"])

    def describe(self, base: str) -> list[str]:
        return [*super().describe(base),
                'grandstream: add events need "sn": here GS and the MAC\'s 12 hex digits '
                "(e.g. GS000B82000001 for 000B82000001)"]


def _page(items: list[dict[str, Any]], page: int, size: int) -> dict[str, Any]:
    total = len(items)
    return {"pageNum": page, "pageSize": size, "total": total,
            "pages": max((total + size - 1) // size, 1),
            "result": items[(page - 1) * size: page * size]}

