"""The SRAPS REST API v1 handlers, as strict about paths and payloads as the real service.

Handlers run after the Hawk check (``sraps.authenticated``) has put the caller's key in
``request[API_KEY]`` and the world it belongs to in ``request[WORLD]`` (SRAPS's own, or
another service of the SRAPS family such as Gigaset GRAPE, with its own keys, companies,
catalogue and paths). Refusals are raised as :class:`ApiError` and rendered by that check.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .state import ApiKey, SandboxState, SrapsWorld

STATE: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)
API_KEY: web.RequestKey[ApiKey] = web.RequestKey("sandbox_api_key", ApiKey)
WORLD: web.RequestKey[SrapsWorld] = web.RequestKey("sandbox_world", SrapsWorld)

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
NO_PERMISSION: dict[str, Any] = {"detail": "You do not have permission to perform this action."}
NOT_FOUND: dict[str, Any] = {"detail": "Not found."}
TAKEN_MAC_ERROR: dict[str, Any] = {
    "error": "taken_mac_or_forbidden",
    "message": "MAC address is taken or your account lacks permission",
}
_ENDPOINT_FIELDS = ("mac", "autoprovisioning_enabled", "settings_manager", "name", "description",
                    "provisioning_profile")
_PERMS = ("R", "RW")


class ApiError(Exception):
    """A refusal: HTTP status, JSON body and extra headers."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The refusal as an aiohttp response."""
        return web.json_response(self.body, status=self.status, headers=self.headers)


def _bad(message: str) -> ApiError:
    return ApiError(400, {"message": message})


def _base(request: web.Request) -> str:
    """Scheme, host and API path of the caller's service (``http://host/api/v1``)."""
    return f"{request.scheme}://{request.host}{request[WORLD].api_path}"


# -- tokens, companies ---------------------------------------------------------------------


async def get_token(request: web.Request) -> web.Response:
    """``GET tokens/{key_id}``: the caller's own key, its Role and its company link."""
    key = request[API_KEY]
    if request.match_info["key_id"] != key.id:
        raise ApiError(403, NO_PERMISSION)
    base = _base(request)
    token: dict[str, Any] = {
        "id": key.id,
        "links": {
            "self": f"{base}/tokens/{key.id}",
            "company": f"{base}/companies/{key.company_id}/",
        },
    }
    if request[WORLD].role_field:
        token["role"] = key.role
    return web.json_response(token)


async def get_company(request: web.Request) -> web.Response:
    """``GET companies/{cid}/``: the caller's own company."""
    state, cid = _own_company(request)
    base = _base(request)
    return web.json_response(
        {
            "id": cid,
            "name": state.companies[cid].name,
            "links": {
                "self": f"{base}/companies/{cid}/",
                "endpoints": f"{base}/companies/{cid}/endpoints/",
            },
        }
    )


def _own_company(request: web.Request) -> tuple[SrapsWorld, str]:
    cid = request.match_info["cid"]
    if cid != request[API_KEY].company_id:
        raise ApiError(403, NO_PERMISSION)
    return request[WORLD], cid


# -- settings ------------------------------------------------------------------------------


async def list_settings(request: web.Request) -> web.Response:
    """``GET settings/?page_size=N&page=P``: one page, ``Link: <next>; rel="next"`` if more."""
    state = request[WORLD]
    page_size, page = _pagination(request)
    start = (page - 1) * page_size
    if start >= len(state.settings) and page != 1:
        raise ApiError(404, {"detail": "Invalid page."})
    end = start + page_size
    headers = {}
    if end < len(state.settings):
        nxt = f"{_base(request)}/settings/?page={page + 1}&page_size={page_size}"
        headers["Link"] = f'<{nxt}>; rel="next"'
    entries = [s.to_json() for s in state.settings[start:end]]
    return web.json_response(entries, headers=headers)


def _pagination(request: web.Request) -> tuple[int, int]:
    query = request.query
    for name in query:
        if name not in ("page", "page_size"):
            raise _bad(f"Unknown query parameter: {name}")
        if len(query.getall(name)) > 1:
            raise _bad(f"Repeated query parameter: {name}")
    page_size = _positive_int(query.get("page_size"), DEFAULT_PAGE_SIZE)
    if page_size is None:
        raise _bad(f"page_size must be an integer between 1 and {MAX_PAGE_SIZE}")
    page = _positive_int(query.get("page"), 1)
    if page is None:
        raise ApiError(404, {"detail": "Invalid page."})
    # Like Django REST framework's max_page_size: larger sizes are capped, not refused.
    return min(page_size, MAX_PAGE_SIZE), page


def _positive_int(text: str | None, default: int) -> int | None:
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        return None
    return int(text)


# -- endpoints -----------------------------------------------------------------------------


async def list_endpoints(request: web.Request) -> web.Response:
    """``GET companies/{cid}/endpoints/?page_size=N&page=P``: one page of the caller's
    company's endpoints (``Link: <next>; rel="next"`` when more), like the settings."""
    state, cid = _own_company(request)
    endpoints = state.endpoints(cid)
    page_size, page = _pagination(request)
    macs = sorted(endpoints)
    start = (page - 1) * page_size
    if start >= len(macs) and page != 1:
        raise ApiError(404, {"detail": "Invalid page."})
    headers = {}
    if start + page_size < len(macs):
        nxt = (f"{_base(request)}/companies/{cid}/endpoints/"
               f"?page={page + 1}&page_size={page_size}")
        headers["Link"] = f'<{nxt}>; rel="next"'
    return web.json_response([endpoints[m] for m in macs[start : start + page_size]],
                             headers=headers)


async def get_endpoint(request: web.Request) -> web.Response:
    """``GET companies/{cid}/endpoints/{mac}``: one endpoint or 404."""
    state, cid = _own_company(request)
    endpoint = state.endpoints(cid).get(request.match_info["mac"])
    if endpoint is None:
        raise ApiError(404, NOT_FOUND)
    return web.json_response(endpoint)


async def delete_endpoint(request: web.Request) -> web.Response:
    """``DELETE companies/{cid}/endpoints/{mac}``: 204, or 404 when the company lacks it."""
    state, cid = _writable_company(request)
    mac = request.match_info["mac"]
    state.history[mac].append(("DELETE", None))
    if state.endpoints(cid).pop(mac, None) is None:
        raise ApiError(404, NOT_FOUND)
    return web.Response(status=204)


async def put_endpoint(request: web.Request) -> web.Response:
    """``PUT companies/{cid}/endpoints/{mac}``: create (201) or replace (200) an endpoint."""
    state, cid = _writable_company(request)
    mac = request.match_info["mac"]
    endpoint = validate_endpoint(state, mac, await _json_object(request))
    owner = state.owner_of(mac)
    if owner is not None and owner != cid:
        raise ApiError(403, TAKEN_MAC_ERROR)
    store_endpoint(state, cid, mac, endpoint)
    return web.json_response(endpoint, status=200 if owner == cid else 201)


def store_endpoint(state: SrapsWorld, cid: str, mac: str, endpoint: dict[str, Any]) -> None:
    """Replace the endpoint (PUT replaces it whole) and record the write."""
    state.endpoints(cid)[mac] = endpoint
    manager = endpoint["settings_manager"]
    password = manager.get(state.password_uuid, {}).get("value") if state.password_uuid else None
    if password:
        state.received_passwords.add(password)  # lets tests check no log ever shows one
    server_setting = manager.get(state.url_uuid, {})
    state.history[mac].append(("PUT", server_setting.get("value")))
    state.writes[mac].append(endpoint)


def has_role(key: ApiKey) -> bool:
    """Whether a key was created with a Role (null, empty and "none" are none)."""
    return bool(key.role) and str(key.role).strip().lower() != "none"


def _writable_company(request: web.Request) -> tuple[SrapsWorld, str]:
    state, cid = _own_company(request)
    if not has_role(request[API_KEY]):
        # A key created without a Role can read but not change anything.
        raise ApiError(403, NO_PERMISSION)
    return state, cid


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise ApiError(415, {"message": "Unsupported media type: expected application/json"})
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise _bad("Malformed JSON") from None
    if not isinstance(body, dict):
        raise _bad("Expected a JSON object")
    return body


def validate_endpoint(state: SrapsWorld, mac: str, body: dict[str, Any]) -> dict[str, Any]:
    """Check a PUT body and return the endpoint to store (absent fields get defaults)."""
    for name in body:
        if name not in _ENDPOINT_FIELDS:
            raise _bad(f"Unknown field: {name}")
    if "mac" not in body:
        raise _bad("Missing field: mac")
    if body["mac"] != mac:
        raise _bad("mac must equal the MAC in the URL")
    enabled = body.get("autoprovisioning_enabled", False)
    if not isinstance(enabled, bool):
        raise _bad("autoprovisioning_enabled must be a boolean")
    for name in ("name", "description", "provisioning_profile"):
        if not isinstance(body.get(name), str | None):
            raise _bad(f"{name} must be a string")
    # PUT replaces the whole endpoint: what the body leaves out is gone (docs/vendors/snom.md).
    return {
        "mac": mac,
        "name": body.get("name"),
        "description": body.get("description"),
        "provisioning_profile": body.get("provisioning_profile"),
        "autoprovisioning_enabled": enabled,
        "settings_manager": _validate_settings(state, body.get("settings_manager", {})),
    }


def _validate_settings(state: SrapsWorld, manager: Any) -> dict[str, Any]:
    if not isinstance(manager, dict):
        raise _bad("settings_manager must be an object")
    for uuid, entry in manager.items():
        setting = state.settings_by_uuid.get(uuid)
        if setting is None:
            raise _bad(f"Unknown setting: {uuid}")
        if state.phone_section is not None and setting.section != state.phone_section:
            raise _bad(
                f"Setting {uuid} ({setting.param_name}, section {setting.section}) "
                "is not a phone setting"
            )
        _validate_setting_value(uuid, entry)
    return manager


def _validate_setting_value(uuid: str, entry: Any) -> None:
    where = f"settings_manager.{uuid}"
    if not isinstance(entry, dict):
        raise _bad(f"{where} must be an object")
    for name in entry:
        if name not in ("value", "attrs"):
            raise _bad(f"Unknown field: {where}.{name}")
    if not isinstance(entry.get("value"), str):
        raise _bad(f"{where}.value must be a string")
    attrs = entry.get("attrs", {"perm": "RW"})
    if not isinstance(attrs, dict) or set(attrs) != {"perm"}:
        raise _bad(f'{where}.attrs must be {{"perm": "R"|"RW"}}')
    if attrs["perm"] not in _PERMS:
        raise _bad(f'{where}.attrs.perm must be "R" or "RW"')


def fault_response(status: int) -> web.Response:
    """An injected failure, shaped like a proxy's or Django REST's error answer."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return web.json_response({"message": phrase}, status=status)
