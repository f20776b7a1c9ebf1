"""The fleet operations' HTTP API (docs/fleet.md): reconcile, re-point, jobs, extra settings and
replacing a phone. Jobs are run by :mod:`rps_service.jobs`; everything they change goes
through the journal like any event."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rps_service.distributor import utcnow
from rps_service.jobs import can_reconcile
from rps_service.listener import (
    API,
    _int_param,
    _json_body,
    _provider,
    _validated,
    error,
    json_response,
)
from rps_service.logs import get_logger
from rps_service.models import EventIn, NewEvent, normalize_mac

log = get_logger()


class ReconcileIn(BaseModel):
    """Body of POST /providers/{provider}/reconcile."""

    model_config = ConfigDict(extra="forbid", strict=True)

    server: int = Field(1, ge=1, le=2**31 - 1)
    repair: bool = False  # queue the events that fix missing and drifted devices
    adopt: bool = False  # record what the vendor holds and the database does not know


class RepointIn(BaseModel):
    """Body of POST /servers/{server}/repoint."""

    model_config = ConfigDict(extra="forbid", strict=True)

    provider: str = Field(min_length=1, max_length=32)


class SettingsIn(BaseModel):
    """Body of PUT /servers/{server}/settings/{provider}."""

    model_config = ConfigDict(extra="forbid", strict=True)

    settings: dict[str, str]

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: dict[str, str]) -> dict[str, str]:
        return EventIn._settings(value) or {}


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


def _wake_jobs(request: web.Request) -> None:
    jobs = request.app[API].jobs
    if jobs is not None:
        jobs.wake()


async def post_reconcile(request: web.Request) -> web.Response:
    api = request.app[API]
    provider = _provider(request)
    body = _validated(ReconcileIn, await _json_body(request))
    if isinstance(body, web.Response):
        return body
    if not can_reconcile(provider):
        return error(400, f"provider {provider.name} cannot reconcile: its vendor's API can "
                          "neither list an account's devices nor look one up")
    job_id = await api.store.create_job("reconcile", provider.name, body.server,
                                        {"repair": body.repair, "adopt": body.adopt}, utcnow())
    _wake_jobs(request)
    log.info("Job created", component="LISTENER", id=job_id, kind="reconcile",
             provider=provider.name, server=body.server)
    return json_response({"job": job_id}, status=202)


async def post_repoint(request: web.Request) -> web.Response:
    api = request.app[API]
    server = _int_param(request, "server", request.match_info["server"])
    body = _validated(RepointIn, await _json_body(request))
    if isinstance(body, web.Response):
        return body
    if body.provider not in api.providers:
        return error(400, f"provider: unknown or disabled provider {body.provider!r}")
    job_id = await api.store.create_job("repoint", body.provider, server, {}, utcnow())
    _wake_jobs(request)
    log.info("Job created", component="LISTENER", id=job_id, kind="repoint",
             provider=body.provider, server=server)
    return json_response({"job": job_id}, status=202)


async def get_job(request: web.Request) -> web.Response:
    store = request.app[API].store
    try:
        job_id = int(request.match_info["id"])
    except ValueError:
        job_id = 0
    if not 1 <= job_id < 2**63:  # beyond a BIGINT, the database refuses the number itself
        return error(404, "no such job")
    job = await store.get_job(job_id)
    if job is None:
        return error(404, "no such job")
    body = job.to_json()
    if job.kind == "repoint" or job.params.get("repair"):
        # The events the job queued, by state: how far the fix itself has got.
        body["events"] = await store.events_by_key_prefix(f"{job.kind}-{job.id}-")
    return json_response(body)


async def list_jobs(request: web.Request) -> web.Response:
    limit = _int_param(request, "limit", request.query.get("limit", "50"), 1, 1000)
    jobs = await request.app[API].store.list_jobs(limit)
    return json_response({"jobs": [j.to_json() for j in jobs]})


async def put_settings(request: web.Request) -> web.Response:
    api = request.app[API]
    server = _int_param(request, "server", request.match_info["server"])
    provider = _provider(request)
    body = _validated(SettingsIn, await _json_body(request))
    if isinstance(body, web.Response):
        return body
    if not getattr(provider, "supports_settings", False):
        return error(400, f"provider {provider.name} takes no extra settings")
    await api.store.put_server_settings(provider.name, server, body.settings, utcnow())
    log.info("Server settings stored", component="LISTENER", names=",".join(body.settings)
             or "-", provider=provider.name, server=server)
    return web.Response(status=204)


async def get_settings(request: web.Request) -> web.Response:
    server = _int_param(request, "server", request.match_info["server"])
    provider = _provider(request)
    settings = await request.app[API].store.get_server_settings(provider.name, server)
    return json_response({"provider": provider.name, "server": server, "settings": settings})


async def post_replace(request: web.Request) -> web.Response:
    api = request.app[API]
    provider = _provider(request)
    try:
        old_mac = normalize_mac(request.match_info["mac"])
    except ValueError:
        return error(404, "no such device")
    body = _validated(ReplaceIn, await _json_body(request))
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
    """The routes of docs/fleet.md."""
    app.router.add_post("/providers/{provider}/reconcile", post_reconcile)
    app.router.add_post("/servers/{server}/repoint", post_repoint)
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{id}", get_job)
    app.router.add_put("/servers/{server}/settings/{provider}", put_settings)
    app.router.add_get("/servers/{server}/settings/{provider}", get_settings)
    app.router.add_post("/devices/{provider}/{mac}/replace", post_replace)
