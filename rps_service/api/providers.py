"""``/providers``: the enabled providers, their credentials per server, the Test button and
reconcile (docs/api.md, docs/fleet.md)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from rps_service.api.base import (
    API,
    error,
    int_param,
    json_body,
    json_response,
    provider_of,
    validated,
    wake_jobs,
)
from rps_service.clock import utcnow
from rps_service.logs import get_logger
from rps_service.models import Credentials
from rps_service.pipeline.jobs import can_reconcile
from rps_service.providers.protocol import Provider
from rps_service.providers.section import (
    ProviderSettings,
    credentials_model,
    provisioning_url_model,
)

log = get_logger()


class TestIn(BaseModel):
    """Body of POST /providers/{provider}/test."""

    model_config = ConfigDict(extra="forbid", strict=True)

    server: int = Field(1, ge=1, le=2**31 - 1)


async def list_providers(request: web.Request) -> web.Response:
    """The enabled providers, so a console or script knows what it can test and filter."""
    names = sorted(request.app[API].providers)
    return json_response({"providers": [{"name": name} for name in names]})


async def put_credentials(request: web.Request) -> web.Response:
    provider = provider_of(request)
    section = provider.settings_class
    server = int_param(request, "server", request.match_info["server"])
    raw = await json_body(request)
    if isinstance(raw, dict) and set(raw) == {"provisioning_url"}:
        return await _put_provisioning_url(request, provider, section, server, raw)
    body = validated(credentials_model(section), raw)
    if isinstance(body, web.Response):
        return body
    values = body.model_dump(exclude={"provisioning_url"}, exclude_none=True)
    creds = Credentials(provider.name, server, values, getattr(body, "provisioning_url", None))
    await _store(request, section, creds, ",".join(sorted(values)))
    return web.Response(status=204)


async def _put_provisioning_url(request: web.Request, provider: Provider,
                                section: type[ProviderSettings], server: int, raw: Any
                                ) -> web.Response:
    """Only the server's ``provisioning_url``: its keys, if any, are kept. Re-pointing a
    tenant in master mode needs no keys (server 1's serve every server)."""
    body = validated(provisioning_url_model(section), raw)
    if isinstance(body, web.Response):
        return body
    stored = await request.app[API].store.get_credentials(provider.name, server)
    values = dict(stored.values) if stored is not None else {}
    creds = Credentials(provider.name, server, values, getattr(body, "provisioning_url", None))
    await _store(request, section, creds, "provisioning_url")
    return web.Response(status=204)


async def _store(request: web.Request, section: type[ProviderSettings], creds: Credentials,
                 keys: str) -> None:
    secrets = section.secret_keys()
    plain = [k for k in section.credential_keys if k not in secrets]
    await request.app[API].store.put_credentials(
        creds, utcnow(), id_key=plain[0] if plain else "", secret_key=secrets[0] if secrets else "")
    log.info("Credentials stored", component="LISTENER", keys=keys or "-",
             provider=creds.provider, server=creds.server)


async def get_credentials(request: web.Request) -> web.Response:
    provider = provider_of(request)
    section = provider.settings_class
    server = int_param(request, "server", request.match_info["server"])
    creds = await request.app[API].store.get_credentials(provider.name, server)
    if creds is None:
        return error(404, f"no credentials stored for server {server}")
    body: dict[str, Any] = {"provider": provider.name, "server": server}
    for key in section.credential_keys:
        if key in section.secret_keys():
            body[f"{key}_set"] = bool(creds.text(key))
        elif key in section.switch_keys():
            body[key] = creds.flag(key)
        else:
            body[key] = creds.values.get(key)
    body["provisioning_url"] = creds.provisioning_url
    return json_response(body)


async def test_provider(request: web.Request) -> web.Response:
    provider = provider_of(request)
    body = validated(TestIn, await json_body(request))
    if isinstance(body, web.Response):
        return body
    result = await provider.check_credentials(body.server)
    log.info("Credentials tested", component="LISTENER", ok=result.ok, provider=provider.name,
             server=body.server)
    return json_response({"ok": result.ok, "message": result.message})


class ReconcileIn(BaseModel):
    """Body of POST /providers/{provider}/reconcile."""

    model_config = ConfigDict(extra="forbid", strict=True)

    server: int = Field(1, ge=1, le=2**31 - 1)
    repair: bool = False  # queue the events that fix missing and drifted devices
    adopt: bool = False  # record what the vendor holds and the database does not know


async def post_reconcile(request: web.Request) -> web.Response:
    api = request.app[API]
    provider = provider_of(request)
    body = validated(ReconcileIn, await json_body(request))
    if isinstance(body, web.Response):
        return body
    if not can_reconcile(provider):
        return error(400, f"provider {provider.name} cannot reconcile: its vendor's API can "
                          "neither list an account's devices nor look one up")
    job_id = await api.store.create_job("reconcile", provider.name, body.server,
                                        {"repair": body.repair, "adopt": body.adopt}, utcnow())
    wake_jobs(request)
    log.info("Job created", component="LISTENER", id=job_id, kind="reconcile",
             provider=provider.name, server=body.server)
    return json_response({"job": job_id}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/providers", list_providers)
    app.router.add_put("/providers/{provider}/credentials/{server}", put_credentials)
    app.router.add_get("/providers/{provider}/credentials/{server}", get_credentials)
    app.router.add_post("/providers/{provider}/test", test_provider)
    app.router.add_post("/providers/{provider}/reconcile", post_reconcile)
