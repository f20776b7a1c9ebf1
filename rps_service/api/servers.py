"""``/servers/{server}``: a tenant's provisioning details for its phones, re-pointing its
devices, and the extra settings pushed with their registrations (docs/api.md, docs/fleet.md)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rps_service.api.base import (
    API,
    error,
    int_param,
    json_body,
    json_response,
    provider_of,
    provider_refusal,
    validated,
    wake_jobs,
)
from rps_service.clock import utcnow
from rps_service.logs import get_logger
from rps_service.models import EventIn, ServerProvisioning

log = get_logger()


_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # control characters cannot be written in XML 1.0


class ServerProvisioningIn(BaseModel):
    """Body of PUT /servers/{server}/provisioning."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # No user:password@ in the URL: credentials go in http_user/http_password (never logged).
    prov_url: str = Field(max_length=1024, pattern=r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$")
    http_user: str = Field(min_length=1, max_length=255, pattern=_PRINTABLE)
    http_password: str = Field(min_length=1, max_length=255, pattern=_PRINTABLE)


async def put_server_provisioning(request: web.Request) -> web.Response:
    server = int_param(request, "server", request.match_info["server"])
    body = validated(ServerProvisioningIn, await json_body(request))
    if isinstance(body, web.Response):
        return body
    provisioning = ServerProvisioning(server, body.prov_url, body.http_user,
                                      body.http_password)
    await request.app[API].store.put_server_provisioning(provisioning, utcnow())
    log.info("Server provisioning stored", component="LISTENER", prov_url=body.prov_url,
             server=server, user=body.http_user)
    return web.Response(status=204)


async def get_server_provisioning(request: web.Request) -> web.Response:
    server = int_param(request, "server", request.match_info["server"])
    provisioning = await request.app[API].store.get_server_provisioning(server)
    if provisioning is None:
        return error(404, f"no provisioning details stored for server {server}")
    return json_response({
        "server": server, "prov_url": provisioning.prov_url,
        "http_user": provisioning.http_user,
        "http_password_set": bool(provisioning.http_password),
    })


class RepointIn(BaseModel):
    """Body of POST /servers/{server}/repoint."""

    model_config = ConfigDict(extra="forbid", strict=True)

    provider: str = Field(min_length=1, max_length=32)


async def post_repoint(request: web.Request) -> web.Response:
    api = request.app[API]
    server = int_param(request, "server", request.match_info["server"])
    body = validated(RepointIn, await json_body(request))
    if isinstance(body, web.Response):
        return body
    if body.provider not in api.providers:
        return error(400, f"provider: {provider_refusal(body.provider, api.providers)}")
    job_id = await api.store.create_job("repoint", body.provider, server, {}, utcnow())
    wake_jobs(request)
    log.info("Job created", component="LISTENER", id=job_id, kind="repoint",
             provider=body.provider, server=server)
    return json_response({"job": job_id}, status=202)


class SettingsIn(BaseModel):
    """Body of PUT /servers/{server}/settings/{provider}."""

    model_config = ConfigDict(extra="forbid", strict=True)

    settings: dict[str, str]

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, str]) -> dict[str, str]:
        return EventIn._settings(value) or {}


async def put_settings(request: web.Request) -> web.Response:
    api = request.app[API]
    server = int_param(request, "server", request.match_info["server"])
    provider = provider_of(request)
    body = validated(SettingsIn, await json_body(request))
    if isinstance(body, web.Response):
        return body
    if not provider.supports_settings:
        return error(400, f"provider {provider.name} takes no extra settings")
    await api.store.put_server_settings(provider.name, server, body.settings, utcnow())
    log.info("Server settings stored", component="LISTENER", names=",".join(body.settings)
             or "-", provider=provider.name, server=server)
    return web.Response(status=204)


async def get_settings(request: web.Request) -> web.Response:
    server = int_param(request, "server", request.match_info["server"])
    provider = provider_of(request)
    settings = await request.app[API].store.get_server_settings(provider.name, server)
    return json_response({"provider": provider.name, "server": server, "settings": settings})


def add_routes(app: web.Application) -> None:
    app.router.add_put("/servers/{server}/provisioning", put_server_provisioning)
    app.router.add_get("/servers/{server}/provisioning", get_server_provisioning)
    app.router.add_post("/servers/{server}/repoint", post_repoint)
    app.router.add_put("/servers/{server}/settings/{provider}", put_settings)
    app.router.add_get("/servers/{server}/settings/{provider}", get_settings)
