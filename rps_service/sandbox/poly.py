"""The Poly ZTP emulator: the REST API at ``/poly/v1/`` (``API-KEY`` header).

Seeded world (fake keys; printing them is fine):

==============  ======================  =================================================
organization    API key                 holds
==============  ======================  =================================================
``demo``        ``demo-poly-api-key``   nothing (the daemon's account)
``other``       ``other-poly-api-key``  profile ``other-pbx`` with ``0004F2999999``
==============  ======================  =================================================

What it enforces, as far as the public facts go:

* ``API-KEY`` on every call; missing or wrong: 401 ``{"message": "Unauthorized"}``.
* Profiles (``/profiles``, ``/profiles/{id}``): bodies in the shape clients send (``name``,
  ``enabled``, ``template.{software, provisioning, dhcp, localization}``, ``custom``),
  unknown fields and wrong types refused (400), ``template.provisioning.server.address``
  required. Read back whole, passwords included (``show_passwords = False`` hides them);
  a creation answers the profile with its ``id`` (``id_in_answer = False`` leaves it out).
* Devices: a MAC belongs to one profile of one organization. ``POST /devices {id, profile}``
  for a MAC held anywhere, even in another profile of the caller, answers 409 "Device
  claimed by another organization" (Poly words it the same for every holder).
  ``GET /devices/{mac}`` shows the caller's own devices only (their profile's id under
  ``device_field``, ``profileid`` by default: which name Poly uses is not known), 404 for
  others; ``DELETE`` answers 409 for another organization's MAC, 404 for an unknown one.
  ``GET /devices?limit=&cursor=`` pages the caller's devices (``profile``, ``next`` cursor;
  ``page_cap`` answers fewer than ``limit`` per page, as a service may).
* Throttling and injected faults come from the shared core: 429 ``{"message": "Too Many
  Requests"}`` with ``Retry-After``.

``PUT /_sandbox/poly/devices/{mac}`` ``{"profile": "<name>", "address": "<url>"}`` puts a
MAC of the demo organization in a profile as an administrator would in the portal (the
profile is created when no profile has that name): a phone migrated in from elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .emulator import Emulator, Held
from .state import SandboxState

DEMO_API_KEY = "demo-poly-api-key"
OTHER_API_KEY = "other-poly-api-key"
DEMO_ORG = "demo"
OTHER_ORG = "other"
FOREIGN_MAC = "0004F2999999"
PROFILE_IDS = uuid.UUID("8c7b0f52-3a51-4a8e-9d0c-50c7a1e2b3d4")
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
CLAIMED = {"message": "Device claimed by another organization"}
NOT_FOUND = {"message": "Not Found"}
UNAUTHORIZED = {"message": "Unauthorized"}
_HEX12 = re.compile(r"[0-9A-Fa-f]{12}")
_URL = re.compile(r"https?://\S+")

Handler = Callable[["PolyEmulator", web.Request, "Organization"], Awaitable[web.Response]]
# section -> (field -> allowed types); a nested section's "type" is dict.
_TEXT = (str, type(None))
_SHAPE: dict[str, dict[str, tuple[type, ...]]] = {
    "": {"name": (str,), "enabled": (bool,), "template": (dict,), "custom": (dict,)},
    "template": {"software": (dict,), "provisioning": (dict,), "dhcp": (dict,),
                 "localization": (dict,)},
    "template.software": {"version": _TEXT},
    "template.provisioning": {"server": (dict,), "polling": (bool,), "quickSetup": (bool,)},
    "template.provisioning.server": {"address": (str,), "username": _TEXT, "password": _TEXT},
    "template.dhcp": {"bootServerOption": _TEXT, "option60Type": _TEXT},
    "template.localization": {"language": _TEXT},
    "custom": {"ucs": _TEXT, "obi": _TEXT},
}


class PolyError(Exception):
    """A refusal in Poly's shape: a status and ``{"message": ...}``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _bad(message: str) -> PolyError:
    return PolyError(400, {"message": message})


@dataclass
class Organization:
    """A Poly ZTP account: its key and profiles (id → stored profile, password included)."""

    name: str
    key: str = field(repr=False)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)


def validate_profile(body: Any, path: str = "") -> dict[str, Any]:
    """The fields of a profile body as given: unknown fields and wrong types refused."""
    if not isinstance(body, dict):
        raise _bad(f"{path or 'body'} must be an object")
    shape = _SHAPE[path]
    checked: dict[str, Any] = {}
    for name, value in body.items():
        where = f"{path}.{name}" if path else name
        if name not in shape:
            raise _bad(f"Unknown field: {where}")
        if not isinstance(value, shape[name]):
            raise _bad(f"Invalid type for {where}")
        checked[name] = validate_profile(value, where) if isinstance(value, dict) else value
    return checked


def _checked_profile(body: Any) -> dict[str, Any]:
    """A profile as stored: validated, every section present (absent fields empty)."""
    given = validate_profile(body)
    name = given.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 128:
        raise _bad("name is required (1 to 128 characters)")
    template = given.get("template", {})
    provisioning = template.get("provisioning", {})
    server = provisioning.get("server", {})
    address = server.get("address")
    if not isinstance(address, str) or not _URL.fullmatch(address):
        raise _bad("template.provisioning.server.address must be an http(s) URL")

    def section(key: str, *fields: str) -> dict[str, Any]:
        part = template.get(key, {})
        return {f: part.get(f) for f in fields}

    profile: dict[str, Any] = {
        "name": name,
        "enabled": given.get("enabled", True),
        "template": {
            "software": section("software", "version"),
            "provisioning": {
                "server": {"address": address, "username": server.get("username"),
                           "password": server.get("password")},
                "polling": provisioning.get("polling", False),
                "quickSetup": provisioning.get("quickSetup", False),
            },
            "dhcp": section("dhcp", "bootServerOption", "option60Type"),
            "localization": section("localization", "language"),
        },
    }
    if "custom" in given:
        profile["custom"] = {f: given["custom"].get(f) for f in ("ucs", "obi")}
    return profile


class PolyEmulator(Emulator):
    """Poly ZTP REST (``/v1``)."""

    name = "poly"
    prefix = "/poly"
    foreign_mac = FOREIGN_MAC

    def __init__(self, state: SandboxState) -> None:
        super().__init__(state)
        self.organizations: dict[str, Organization] = {}
        # MAC (lower case) → (organization, profile id): one holder per MAC, worldwide.
        self.devices: dict[str, tuple[str, str]] = {}
        # What is not confirmed, for in-process tests to vary:
        self.show_passwords = True  # profiles read back with their password
        self.id_in_answer = True  # a creation's answer carries the new profile's id
        self.device_field = "profileid"  # GET /devices/{mac} names the profile so
        self.page_cap: int | None = None  # devices per listed page at most, whatever limit
        self._profile_count = 0
        self.organizations[DEMO_ORG] = Organization(DEMO_ORG, DEMO_API_KEY)
        other = self.organizations[OTHER_ORG] = Organization(OTHER_ORG, OTHER_API_KEY)
        profile = self._new_profile(other, {"name": "other-pbx", "template": {"provisioning": {
            "server": {"address": "https://other-pbx.test/prov/"}}}})
        self.devices[FOREIGN_MAC.lower()] = (OTHER_ORG, profile)

    # -- the emulator interface -----------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        router = app.router
        profiles = router.add_resource("/poly/v1/profiles", name="poly-profiles")
        profiles.add_route("GET", self._authenticated(PolyEmulator._list_profiles))
        profiles.add_route("POST", self._authenticated(PolyEmulator._create_profile))
        profile = router.add_resource("/poly/v1/profiles/{id}", name="poly-profile")
        profile.add_route("GET", self._authenticated(PolyEmulator._get_profile))
        profile.add_route("PUT", self._authenticated(PolyEmulator._put_profile))
        profile.add_route("DELETE", self._authenticated(PolyEmulator._delete_profile))
        devices = router.add_resource("/poly/v1/devices", name="poly-devices")
        devices.add_route("GET", self._authenticated(PolyEmulator._list_devices))
        devices.add_route("POST", self._authenticated(PolyEmulator._add_device))
        device = router.add_resource("/poly/v1/devices/{mac}", name="poly-device")
        device.add_route("GET", self._authenticated(PolyEmulator._get_device))
        device.add_route("DELETE", self._authenticated(PolyEmulator._delete_device))
        router.add_put("/_sandbox/poly/devices/{mac}", self._portal_device,
                       name="control-poly-device")

    def api_url(self, base: str) -> str:
        return f"{base}/poly/v1"

    def demo_credentials(self) -> dict[str, str | bool]:
        return {"api_key": DEMO_API_KEY}

    def wrong_credentials(self) -> dict[str, str | bool]:
        return {"api_key": "not-the-poly-api-key"}

    def sample_mac(self, index: int) -> str:
        return f"0004F200{index:04X}"

    def holds(self, mac: str) -> Held | None:
        holder = self.devices.get(mac.lower())
        if holder is None or holder[0] != DEMO_ORG:
            return None
        profile = self.organizations[DEMO_ORG].profiles[holder[1]]
        server = profile["template"]["provisioning"]["server"]
        return Held(server["address"], server["username"], server["password"],
                    {"profile": holder[1], "name": profile["name"]})

    def account_of(self, request: web.Request) -> str:
        return request.headers.get("API-KEY", "")[:64] or "-"

    async def write_mac(self, request: web.Request) -> str | None:
        if request.method == "DELETE" and "mac" in request.match_info:
            return request.match_info["mac"].lower()
        if request.method == "POST" and request.path == "/poly/v1/devices":
            try:
                body = json.loads(await request.read())
            except (ValueError, UnicodeDecodeError):
                return None
            mac = body.get("id") if isinstance(body, dict) else None
            return mac.lower() if isinstance(mac, str) else None
        return None

    async def unmatched(self, request: web.Request, exc: web.HTTPException
                        ) -> web.StreamResponse:
        if self._organization(request) is None:
            return web.json_response(UNAUTHORIZED, status=401)
        return web.json_response({"message": exc.reason}, status=exc.status)

    def describe(self, base: str) -> list[str]:
        return [*super().describe(base),
                f"poly: {FOREIGN_MAC} is claimed by another organization; "
                f'PUT {base}/_sandbox/poly/devices/<mac> {{"profile", "address"}} puts a MAC '
                "in a portal profile"]

    def snapshot(self) -> dict[str, Any]:
        organizations: dict[str, Any] = {}
        for org in self.organizations.values():
            organizations[org.name] = {
                "profiles": {pid: {"name": p["name"], "enabled": p["enabled"],
                                   "address": p["template"]["provisioning"]["server"]["address"]}
                             for pid, p in org.profiles.items()},
                "devices": {mac.upper(): pid for mac, (name, pid) in sorted(self.devices.items())
                            if name == org.name},
            }
        return {"organizations": organizations}

    # -- world ----------------------------------------------------------------------------

    def profile_named(self, organization: str, name: str) -> str | None:
        """The id of an organization's first profile called ``name``."""
        profiles = self.organizations[organization].profiles
        return next((pid for pid, p in profiles.items() if p["name"] == name), None)

    def portal_claim(self, mac: str, profile: str, address: str) -> str:
        """Put a demo MAC in the profile ``profile`` (created if needed) as the portal would;
        the profile's id."""
        org = self.organizations[DEMO_ORG]
        pid = self.profile_named(DEMO_ORG, profile) or self._new_profile(org, {
            "name": profile, "template": {"provisioning": {"server": {"address": address}}}})
        self.devices[mac.lower()] = (DEMO_ORG, pid)  # not a client's write: no history
        return pid

    def _new_profile(self, org: Organization, body: Any) -> str:
        profile = _checked_profile(body)
        self._profile_count += 1
        pid = str(uuid.uuid5(PROFILE_IDS, f"profile-{self._profile_count}"))
        org.profiles[pid] = {"id": pid, **profile}
        self._remember_password(profile)
        return pid

    def _remember_password(self, profile: dict[str, Any]) -> None:
        password = profile["template"]["provisioning"]["server"].get("password")
        if password:
            self.state.received_passwords.add(password)  # tests check logs never show one

    def _shown(self, profile: dict[str, Any]) -> dict[str, Any]:
        if self.show_passwords:
            return profile
        shown = json.loads(json.dumps(profile))
        shown["template"]["provisioning"]["server"].pop("password", None)
        return dict(shown)

    def _organization(self, request: web.Request) -> Organization | None:
        key = request.headers.get("API-KEY", "")
        return next((o for o in self.organizations.values() if key and o.key == key), None)

    def _authenticated(self, handler: Handler) -> Callable[[web.Request],
                                                          Awaitable[web.StreamResponse]]:
        async def checked(request: web.Request) -> web.StreamResponse:
            org = self._organization(request)
            if org is None:
                return web.json_response(UNAUTHORIZED, status=401)
            try:
                return await handler(self, request, org)
            except PolyError as exc:
                return web.json_response(exc.body, status=exc.status)

        return checked

    # -- profiles -------------------------------------------------------------------------

    async def _list_profiles(self, request: web.Request, org: Organization) -> web.Response:
        return web.json_response({"results": [self._shown(p) for p in org.profiles.values()]})

    async def _create_profile(self, request: web.Request, org: Organization) -> web.Response:
        pid = self._new_profile(org, await _json_body(request))
        shown = dict(self._shown(org.profiles[pid]))
        if not self.id_in_answer:
            del shown["id"]
        return web.json_response(shown, status=201)

    async def _get_profile(self, request: web.Request, org: Organization) -> web.Response:
        return web.json_response(self._shown(_own_profile(request, org)))

    async def _put_profile(self, request: web.Request, org: Organization) -> web.Response:
        pid = _own_profile(request, org)["id"]
        profile = _checked_profile(await _json_body(request))  # PUT replaces it whole
        org.profiles[pid] = {"id": pid, **profile}
        self._remember_password(profile)
        return web.json_response(self._shown(org.profiles[pid]))

    async def _delete_profile(self, request: web.Request, org: Organization) -> web.Response:
        pid = _own_profile(request, org)["id"]
        if any(holder == (org.name, pid) for holder in self.devices.values()):
            raise PolyError(409, {"message": "Profile has devices"})
        del org.profiles[pid]
        return web.json_response({"id": pid})

    # -- devices --------------------------------------------------------------------------

    async def _list_devices(self, request: web.Request, org: Organization) -> web.Response:
        limit = min(_limit(request.query.get("limit")), self.page_cap or MAX_LIMIT)
        start = _cursor(request.query.get("cursor"))
        mine = sorted((mac, pid) for mac, (name, pid) in self.devices.items()
                      if name == org.name)
        page = mine[start:start + limit]
        following = start + limit if start + limit < len(mine) else None
        return web.json_response({
            "results": [{"id": mac, "profile": pid} for mac, pid in page],
            "next": base64.urlsafe_b64encode(f"o:{following}".encode()).decode()
            if following is not None else None,
        })

    async def _add_device(self, request: web.Request, org: Organization) -> web.Response:
        body = await _json_body(request)
        if set(body) != {"id", "profile"}:
            raise _bad("Expected exactly the fields id and profile")
        mac, pid = body["id"], body["profile"]
        if not isinstance(mac, str) or not _HEX12.fullmatch(mac):
            raise _bad("Invalid device id")
        if not isinstance(pid, str) or pid not in org.profiles:
            raise _bad("Invalid profile")
        if mac.lower() in self.devices:
            raise PolyError(409, CLAIMED)  # whoever holds it, the same words
        self.devices[mac.lower()] = (org.name, pid)
        address = org.profiles[pid]["template"]["provisioning"]["server"]["address"]
        self.state.history[mac.lower()].append(("POST", address))
        return web.json_response({"id": mac.lower(), "profile": pid})

    async def _get_device(self, request: web.Request, org: Organization) -> web.Response:
        mac = _path_mac(request)
        holder = self.devices.get(mac)
        if holder is None or holder[0] != org.name:
            raise PolyError(404, NOT_FOUND)
        return web.json_response({"id": mac, self.device_field: holder[1]})

    async def _delete_device(self, request: web.Request, org: Organization) -> web.Response:
        mac = _path_mac(request)
        holder = self.devices.get(mac)
        if holder is None:
            raise PolyError(404, NOT_FOUND)
        if holder[0] != org.name:
            raise PolyError(409, CLAIMED)
        del self.devices[mac]
        self.state.history[mac].append(("DELETE", None))
        return web.json_response({"id": mac})

    # -- the portal (control) -------------------------------------------------------------

    async def _portal_device(self, request: web.Request) -> web.Response:
        mac = request.match_info["mac"]
        try:
            body = json.loads(await request.read())
            if not _HEX12.fullmatch(mac) or not isinstance(body, dict) or \
                    not isinstance(body.get("profile"), str) or \
                    not isinstance(body.get("address"), str):
                raise _bad('Expected a MAC and {"profile": "<name>", "address": "<url>"}')
            pid = self.portal_claim(mac, body["profile"], body["address"])
        except ValueError:
            return web.json_response({"message": "Malformed JSON"}, status=400)
        except PolyError as exc:
            return web.json_response(exc.body, status=exc.status)
        return web.json_response({"id": mac.lower(), "profile": pid})


def _own_profile(request: web.Request, org: Organization) -> dict[str, Any]:
    profile = org.profiles.get(request.match_info["id"])
    if profile is None:
        raise PolyError(404, NOT_FOUND)
    return profile


def _path_mac(request: web.Request) -> str:
    mac = request.match_info["mac"]
    if not _HEX12.fullmatch(mac):
        raise _bad("Invalid device id")
    return mac.lower()


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise _bad(f"limit must be a number from 1 to {MAX_LIMIT}")
    return int(value)


def _cursor(value: str | None) -> int:
    if not value:
        return 0
    try:
        text = base64.urlsafe_b64decode(value.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad("Invalid cursor") from None
    if not text.startswith("o:") or not text[2:].isdigit():
        raise _bad("Invalid cursor")
    return int(text[2:])


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise PolyError(415, {"message": "Unsupported Media Type"})
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise _bad("Malformed JSON") from None
    if not isinstance(body, dict):
        raise _bad("Expected a JSON object")
    return body
