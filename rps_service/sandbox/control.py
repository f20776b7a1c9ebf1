"""The unauthenticated control API under ``/_sandbox/`` (JSON), for tests and benchmarks.

* ``GET  /_sandbox/state``        -- :meth:`SandboxState.snapshot`.
* ``POST /_sandbox/faults``       -- set any switch; answers the switches.
* ``POST /_sandbox/keys``         -- ``{"id", "secret", "company", "role"}`` adds a key (201).
* ``POST /_sandbox/reset-counts`` -- forget counters and request records.
* ``PUT  /_sandbox/endpoints/{company}/{mac}`` -- set an endpoint as an administrator would
  in the SRAPS portal (any valid endpoint fields, ``provisioning_profile`` and other
  ``settings_manager`` entries included), behind the client's back.
* ``DELETE /_sandbox/endpoints/{company}/{mac}`` -- delete one likewise.
* ``POST /_sandbox/endpoints/{company}`` -- ``{"endpoints": [{"mac", "url"}, ...]}``: many
  endpoints at once, each with that ``setting_server`` (fleets for reconcile tests).
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from .sraps_api import STATE, ApiError, validate_endpoint
from .state import SETTING_SERVER_UUID, SandboxState

_FRACTIONS = ("error_rate", "rate_limit_rate")


class ControlError(Exception):
    """A refused control request (answered 400 with ``{"message": ...}``)."""


def apply_switches(state: SandboxState, changes: dict[str, Any]) -> None:
    """Validate and set fault switches by name; all-or-nothing."""
    checked = {name: _check_switch(name, value) for name, value in changes.items()}
    for name, value in checked.items():
        setattr(state, name, value)


def _check_switch(name: str, value: Any) -> Any:
    if name in ("paused", "hang", "stale_challenge", "role_field"):
        if not isinstance(value, bool):
            raise ControlError(f"{name} must be a boolean")
        return value
    if name == "fail_next":
        if not isinstance(value, list) or not all(_is_status(v) for v in value):
            raise ControlError("fail_next must be a list of HTTP statuses")
        return list(value)
    if name == "retry_after":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ControlError("retry_after must be a non-negative integer")
        return value
    if name in (*_FRACTIONS, "latency", "clock_offset", "throttle_rate"):
        return _check_number(name, value)
    raise ControlError(f"Unknown switch: {name}")


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ControlError(f"{name} must be a number")
    if name in _FRACTIONS and not 0 <= value <= 1:
        raise ControlError(f"{name} must be between 0 and 1")
    if name in ("latency", "throttle_rate") and value < 0:
        raise ControlError(f"{name} must not be negative")
    return float(value)


def _is_status(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise ControlError("Malformed JSON") from None
    if not isinstance(body, dict):
        raise ControlError("Expected a JSON object")
    return body


async def get_state(request: web.Request) -> web.Response:
    """Endpoints per company, keys, counts and switches."""
    return web.json_response(request.app[STATE].snapshot())


async def post_faults(request: web.Request) -> web.Response:
    """Set switches, e.g. ``{"fail_next": [503, 429], "latency": 0.2}``."""
    state = request.app[STATE]
    try:
        apply_switches(state, await _body(request))
    except ControlError as exc:
        return web.json_response({"message": str(exc)}, status=400)
    return web.json_response(state.switches())


async def post_keys(request: web.Request) -> web.Response:
    """Add a key: ``{"id": str, "secret": str, "company": str, "role": str | null}``."""
    state = request.app[STATE]
    try:
        body = await _body(request)
        key_id, secret, company = (body.get(n) for n in ("id", "secret", "company"))
        role = body.get("role")
        texts = (key_id, secret, company)
        if set(body) - {"id", "secret", "company", "role"} or not all(
            isinstance(v, str) and v for v in texts
        ):
            raise ControlError('Expected {"id", "secret", "company", "role"}')
        if role is not None and not isinstance(role, str):
            raise ControlError("role must be a string or null")
    except ControlError as exc:
        return web.json_response({"message": str(exc)}, status=400)
    key = state.add_key(str(key_id), str(secret), str(company), role)
    return web.json_response(
        {"id": key.id, "company": key.company_id, "role": key.role}, status=201
    )


async def post_reset_counts(request: web.Request) -> web.Response:
    """Forget counters and request records."""
    state = request.app[STATE]
    state.reset_counts()
    return web.json_response({"total": state.total})


async def put_portal_endpoint(request: web.Request) -> web.Response:
    """Set an endpoint the way the SRAPS portal would (no ownership or Role checks)."""
    state = request.app[STATE]
    company, mac = request.match_info["company"], request.match_info["mac"].lower()
    try:
        body = await _body(request)
        if company not in state.companies:
            raise ControlError(f"Unknown company: {company}")
        endpoint = validate_endpoint(state, mac, {"mac": mac, **body})
    except ControlError as exc:
        return web.json_response({"message": str(exc)}, status=400)
    except ApiError as exc:
        return exc.response()
    state.endpoints(company)[mac] = endpoint  # not a client's write: no history
    return web.json_response(endpoint)


async def delete_portal_endpoint(request: web.Request) -> web.Response:
    """Delete an endpoint the way the SRAPS portal would."""
    state = request.app[STATE]
    company, mac = request.match_info["company"], request.match_info["mac"].lower()
    if state.companies.get(company) is None or \
            state.endpoints(company).pop(mac, None) is None:
        return web.json_response({"message": "no such endpoint"}, status=404)
    return web.Response(status=204)


async def post_portal_endpoints(request: web.Request) -> web.Response:
    """Add many endpoints at once (``{"endpoints": [{"mac", "url"}]}``)."""
    state = request.app[STATE]
    company = request.match_info["company"]
    try:
        body = await _body(request)
        items = body.get("endpoints")
        if company not in state.companies or not isinstance(items, list):
            raise ControlError('Expected {"endpoints": [{"mac", "url"}]} for a known company')
        for item in items:
            mac, url = str(item["mac"]).lower(), str(item["url"])
            state.endpoints(company)[mac] = portal_endpoint(mac, url)
    except (ControlError, KeyError, TypeError) as exc:
        return web.json_response({"message": str(exc)}, status=400)
    return web.json_response({"count": len(items)}, status=201)


def portal_endpoint(mac: str, url: str) -> dict[str, Any]:
    """An endpoint as the portal would hold it: autoprovisioning on, ``setting_server``."""
    return {"mac": mac, "name": None, "description": None, "provisioning_profile": None,
            "autoprovisioning_enabled": True,
            "settings_manager": {SETTING_SERVER_UUID: {"value": url, "attrs": {"perm": "RW"}}}}


def add_routes(app: web.Application) -> None:
    """Register the ``/_sandbox/`` routes."""
    app.router.add_get("/_sandbox/state", get_state, name="control-state")
    app.router.add_post("/_sandbox/faults", post_faults, name="control-faults")
    app.router.add_post("/_sandbox/keys", post_keys, name="control-keys")
    app.router.add_post("/_sandbox/reset-counts", post_reset_counts, name="control-reset")
    app.router.add_put("/_sandbox/endpoints/{company}/{mac}", put_portal_endpoint,
                       name="control-endpoint")
    app.router.add_delete("/_sandbox/endpoints/{company}/{mac}", delete_portal_endpoint,
                          name="control-endpoint-delete")
    app.router.add_post("/_sandbox/endpoints/{company}", post_portal_endpoints,
                        name="control-endpoints")
