"""``/devices``: the devices as the GUI shows them, a device's access details, replacing a
phone (docs/api.md, docs/fleet.md)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rps_service.api.base import (
    API,
    error,
    int_param,
    json_body,
    json_response,
    path_mac,
    provider_of,
    validated,
)
from rps_service.clock import utcnow
from rps_service.logs import get_logger
from rps_service.models import DEVICE_STATUSES, Device, NewEvent, normalize_mac
from rps_service.providers.protocol import Provider, ProviderError

log = get_logger()


async def list_devices(request: web.Request) -> web.Response:
    query = request.query
    unknown = set(query) - {"server", "provider", "status", "mac", "limit", "after", "count"}
    if unknown:
        return error(400, f"unknown query parameter: {sorted(unknown)[0]}")
    status = query.get("status")
    if status is not None and status not in DEVICE_STATUSES:
        return error(400, f"status: must be one of {', '.join(DEVICE_STATUSES)}")
    try:
        mac = normalize_mac(query["mac"]) if "mac" in query else None
    except ValueError as exc:
        return error(400, f"mac: {exc}")
    server = int_param(request, "server", query["server"]) if "server" in query else None
    limit = int_param(request, "limit", query.get("limit", "1000"), 1, 100_000)
    after = _device_cursor(query["after"]) if "after" in query else None
    if query.get("count", "false") not in ("true", "false"):
        return error(400, "count: must be true or false")
    store, provider = request.app[API].store, query.get("provider")
    # One row more than asked says whether a next page exists without a count.
    devices = await store.list_devices(server, provider, status, mac, limit + 1, after)
    page = devices[:limit]
    body: dict[str, Any] = {
        "devices": [d.to_json() for d in page],
        "next": f"{page[-1].server}:{page[-1].provider}:{page[-1].mac}"
        if len(devices) > limit else None,
    }
    if query.get("count") == "true":
        body["total"] = await store.count_devices(server, provider, status, mac)
    return json_response(body)


def _device_cursor(value: str) -> tuple[int, str, str]:
    """``after``: a previous answer's ``next``, ``<server>:<provider>:<mac>``."""
    server, _, rest = value.partition(":")
    provider, _, mac = rest.rpartition(":")
    if not (server.isascii() and server.isdigit() and provider and len(mac) == 12
            and int(server) < 2**31 and all(c in "0123456789ABCDEF" for c in mac)):
        raise web.HTTPBadRequest(reason="after: must be a previous answer's next "
                                        "(<server>:<provider>:<MAC>)")
    return int(server), provider, mac


async def get_device(request: web.Request) -> web.Response:
    mac = path_mac(request)
    if mac is None:
        return error(404, "no such device")
    device = await request.app[API].store.get_device(request.match_info["provider"], mac)
    if device is None:
        return error(404, "no such device")
    return json_response(device.to_json())


async def get_device_access(request: web.Request) -> web.Response:
    """What the vendor was given for the phone, for an operator debugging it: the URL with
    the HTTP username and password, or (vendors that carry only a URL) the URL with its
    key. The read is logged, the password and the key never."""
    api = request.app[API]
    provider = request.match_info["provider"]
    mac = path_mac(request)
    if mac is None:
        return error(404, "no such device")
    device = await api.store.get_device(provider, mac)
    if device is None:
        return error(404, "no such device")
    if device.refused:
        # The stored value was sealed with another key or for another row, or altered.
        return error(500, "the stored access details of this device cannot be opened with "
                          "this daemon's secret key (see rps.log)")
    if device.url_key:
        url = await _url_with_key(api.providers.get(provider), device)
        if url is None:
            return error(404, "this device's URL key is stored but no URL can be made "
                              f"for it yet (it is {device.status}; provider {provider} is "
                              "disabled or its provisioning_url is the example host)")
        access: dict[str, Any] = {"url": url, "username": None, "password": None}
    elif device.http_username and device.http_password:
        access = {"url": device.url, "username": device.http_username,
                  "password": device.http_password}
    else:
        return error(404, f"no access details stored for this device (it is {device.status}:"
                          " they are made by its first add and revoked by a remove)")
    log.warning("Access details read", component="LISTENER", mac=mac, provider=provider)
    return json_response(access)


async def _url_with_key(provider: Provider | None, device: Device) -> str | None:
    """A URL-key device's URL as the vendor was given it; before a first success, the one
    it will be given (its provider's ``provisioning_url`` with the key)."""
    if device.url and device.url_key and device.url_key in device.url:
        return device.url
    if provider is None:
        return None
    try:
        return await provider.device_url(device.server, device.url_key)
    except ProviderError:  # still the example host: the event says so
        return None


class ReplaceIn(BaseModel):
    """Body of POST /devices/{provider}/{mac}/replace."""

    model_config = ConfigDict(extra="forbid", strict=True)

    new_mac: str
    # The new phone's own serial number and MAC-ID, for vendors that need them.
    sn: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")
    mac_id: str | None = Field(None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9-]+$")

    @field_validator("new_mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return normalize_mac(value)


async def post_replace(request: web.Request) -> web.Response:
    api = request.app[API]
    provider = provider_of(request)
    old_mac = path_mac(request)
    if old_mac is None:
        return error(404, "no such device")
    body = validated(ReplaceIn, await json_body(request))
    if isinstance(body, web.Response):
        return body
    if body.new_mac == old_mac:
        return error(400, "new_mac: the new phone's MAC must differ from the old one's")
    old = await api.store.get_device(provider.name, old_mac)
    if old is None:
        return error(404, "no such device")
    details: dict[str, Any] = {k: v for k, v in (
        ("model", old.model), ("name", old.name), ("extension", old.extension),
        ("sn", body.sn), ("mac_id", body.mac_id)) if v}
    problem = await provider.event_problem("add", old.server, details)
    if problem is not None:
        return error(400, f"{problem[0]}: {problem[1]}")
    remove = NewEvent("remove", provider.name, old.server, old_mac, {})
    add = NewEvent("add", provider.name, old.server, body.new_mac, details)
    removed, added = await api.store.insert_replacement(remove, add, utcnow())
    api.distributor.wake()
    log.info("Device replaced", component="LISTENER", mac=old_mac, new_mac=body.new_mac,
             provider=provider.name, server=old.server)
    return json_response({"accepted": 2, "events": [
        {"id": removed, "action": "remove", "provider": provider.name, "mac": old_mac,
         "server": old.server},
        {"id": added, "action": "add", "provider": provider.name, "mac": body.new_mac,
         "server": old.server},
    ]}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/devices", list_devices)
    app.router.add_get("/devices/{provider}/{mac}", get_device)
    app.router.add_get("/devices/{provider}/{mac}/access", get_device_access)
    app.router.add_post("/devices/{provider}/{mac}/replace", post_replace)
