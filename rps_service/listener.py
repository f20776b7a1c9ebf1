"""The LISTENER: the HTTP API of docs/api.md on ``listen:port``.

An event is answered 202 only after its row is committed; the distributor is then woken so
work starts without waiting for a poll. Every refusal is JSON with the field and reason.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rps_service import console
from rps_service.config import Settings
from rps_service.distributor import Distributor, utcnow
from rps_service.logs import get_logger
from rps_service.metrics import Metrics
from rps_service.models import (
    DEVICE_STATUSES,
    EVENT_STATES,
    Credentials,
    EventIn,
    FieldError,
    NewEvent,
    ServerProvisioning,
    batch_size_error,
    normalize_mac,
    validate_events,
)
from rps_service.providers.base import Provider
from rps_service.providers.section import ProviderSettings, credentials_model
from rps_service.store import Inserted, Store, StoreUnavailable

if TYPE_CHECKING:
    from rps_service.jobs import JobRunner

log = get_logger()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Api:
    """What the handlers need, held on the application."""

    settings: Settings
    store: Store
    distributor: Distributor
    providers: Mapping[str, Provider]
    metrics: Metrics | None = None
    jobs: JobRunner | None = None  # woken when the API creates a job


API = web.AppKey("api", Api)


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON answer, serialised with orjson (the intake path's largest cost after I/O)."""
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json")


def error(status: int, message: str, details: list[FieldError] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = [
            {"index": d.index, "field": d.field, "message": d.message} for d in details
        ]
    return json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON for every refusal; 503 when the database is away; never a bare 500 page."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[API].settings.general.max_body
        return error(413, f"body larger than max_body ({limit} bytes)")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error(exc.status, exc.reason)
        if "Allow" in exc.headers:  # a 405 must say which methods the path has
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except StoreUnavailable as exc:
        return error(503, f"database unavailable: {exc}")
    except Exception:
        log.exception("Request failed", component="LISTENER", path=request.path)
        return error(500, "internal error; see rps.log")


def auth_middleware(token: str) -> Any:
    """Bearer token on every route but /health and the console's static files, compared in
    constant time."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # By matched route, not path prefix: only the static-file handler is let through.
        public = request.match_info.route.name in console.PUBLIC_ROUTES
        if request.path != "/health" and not public:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                response = error(401, "missing or wrong API token")
                response.headers["WWW-Authenticate"] = 'Bearer realm="rps"'
                return response
        return await handler(request)

    return middleware


def host_name(header: str) -> str:
    """The name in a ``Host`` header: lower case, without port, brackets or final dot."""
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:15777
        host = host[1:].partition("]")[0]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_allowed(name: str, listen: str, allowed: tuple[str, ...]) -> bool:
    """Loopback names and addresses, the ``listen`` address, or one of ``allowed_hosts``."""
    if name in ("localhost", listen.lower()) or name in allowed:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def host_middleware(listen: str, allowed: tuple[str, ...]) -> Any:
    """Without an api_token, answer only requests addressed to this host by a name we know.

    A web page can make a browser on the PBX post to 127.0.0.1:15777 under a DNS name of
    its own (DNS rebinding); the browser then sends that name as Host, which is refused.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host")
        if header is not None and not host_allowed(host_name(header), listen, allowed):
            shown = header[:100]
            log.warning("Request refused: Host not allowed", component="LISTENER",
                        host=shown, ip=request.remote or "-", path=request.path[:100])
            return error(403, f"Host {shown!r} is not allowed: without api_token the API "
                              "answers only loopback names, the listen address and "
                              "[general] allowed_hosts")
        return await handler(request)

    return middleware


async def _json_body(request: web.Request) -> Any:
    content_type = request.headers.get("Content-Type", "application/json")
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise web.HTTPUnsupportedMediaType(reason="send Content-Type: application/json")
    limit = request.app[API].settings.general.max_body
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.read()
    try:
        return orjson.loads(raw)  # strict RFC 8259: no NaN or Infinity
    except orjson.JSONDecodeError as exc:
        # The media type was right, the content is not: a client error, not a media error.
        raise web.HTTPBadRequest(reason=f"body is not valid JSON: {exc}") from None


# -- events ---------------------------------------------------------------------------------


async def post_events(request: web.Request) -> web.Response:
    api = request.app[API]
    body = await _json_body(request)
    if not isinstance(body, dict | list):
        return error(400, "body must be an event object or an array of events",
                     [FieldError(0, "", "expected a JSON object or array")])
    if isinstance(body, list) and (refused := batch_size_error(body)):
        return error(400, refused[0], [refused[1]])
    events, problems = validate_events(body, frozenset(api.providers))
    if not problems:
        problems = await _provider_problems(api.providers, events)
    if problems:
        return error(400, "invalid event" if len(problems) == 1 else "invalid events", problems)
    new = [NewEvent(e.action, e.provider, e.server, e.mac, e.payload(), e.key) for e in events]
    stored = await api.store.insert_events(new, utcnow())
    api.distributor.wake()
    out = []
    received: Counter[tuple[str, str]] = Counter()
    for event, row in zip(new, stored, strict=True):
        item = {"id": row.id, "action": event.action, "provider": event.provider,
                "mac": event.mac, "server": event.server}
        if row.duplicate:
            item["duplicate"] = True
        else:
            received[(event.action, event.provider)] += 1
        out.append(item)
    if api.metrics is not None:
        for (action, provider), count in received.items():
            api.metrics.event_received(action, provider, count)
    _log_accepted(new, stored)
    return json_response({"accepted": len(out), "events": out}, status=202)


async def _provider_problems(providers: Mapping[str, Provider], events: list[EventIn]
                             ) -> list[FieldError]:
    """What a provider cannot serve (a serial number it needs, ...), by event index."""
    problems = []
    for index, event in enumerate(events):
        found = await providers[event.provider].event_problem(
            event.action, event.server, event.payload())
        if found is not None:
            problems.append(FieldError(index, *found))
    return problems


def _log_accepted(events: list[NewEvent], stored: list[Inserted]) -> None:
    # One line per event for a single event; one per request for a batch (a line per
    # event was a quarter of a batch's cost; each event's MAC is on its Snom lines).
    fresh = [(e, s) for e, s in zip(events, stored, strict=True) if not s.duplicate]
    if len(events) == 1 and fresh:
        event, row = fresh[0]
        log.info("Event accepted", component="LISTENER", action=event.action, id=row.id,
                 mac=event.mac, provider=event.provider, server=event.server)
    elif fresh:
        log.info("Events accepted", component="LISTENER", count=len(fresh),
                 ids=f"{fresh[0][1].id}-{fresh[-1][1].id}")


def _int_param(request: web.Request, name: str, value: str, low: int = 1,
               high: int = 2**31 - 1) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise web.HTTPBadRequest(reason=f"{name}: must be an integer from {low} to {high}")
    return number


def _event_id(request: web.Request) -> int:
    try:
        event_id = int(request.match_info["id"])
    except ValueError:
        event_id = 0
    if not 1 <= event_id < 2**63:  # beyond a BIGINT, the database refuses the number itself
        raise web.HTTPNotFound(reason="no such event")
    return event_id


async def get_event(request: web.Request) -> web.Response:
    event = await request.app[API].store.get_event(_event_id(request))
    if event is None:
        return error(404, "no such event")
    return json_response(event.to_json())


async def list_events(request: web.Request) -> web.Response:
    query = request.query
    unknown = set(query) - {"state", "limit", "before"}
    if unknown:
        return error(400, f"unknown query parameter: {sorted(unknown)[0]}")
    state = query.get("state")
    if state is not None and state not in EVENT_STATES:
        return error(400, f"state: must be one of {', '.join(EVENT_STATES)}")
    limit = _int_param(request, "limit", query.get("limit", "100"), 1, 1000)
    before = _int_param(request, "before", query["before"]) if "before" in query else None
    events = await request.app[API].store.list_events(state, limit, before)
    return json_response({"events": [e.to_json() for e in events]})


async def retry_event(request: web.Request) -> web.Response:
    api = request.app[API]
    event_id = _event_id(request)
    result = await api.store.retry_event(event_id, utcnow())
    if result == "not_found":
        return error(404, "no such event")
    if result.startswith("newer:"):
        return error(409, f"a newer event ({result[6:]}) of this device was accepted since "
                          f"event {event_id}: sending this one again would undo it")
    if result != "ok":
        return error(409, f"event {event_id} is {result}, not failed")
    api.distributor.wake()
    log.info("Event re-queued", component="LISTENER", id=event_id)
    return json_response({"id": event_id, "state": "pending"}, status=202)


# -- devices --------------------------------------------------------------------------------


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
    server = _int_param(request, "server", query["server"]) if "server" in query else None
    limit = _int_param(request, "limit", query.get("limit", "1000"), 1, 100_000)
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
    try:
        mac = normalize_mac(request.match_info["mac"])
    except ValueError:
        return error(404, "no such device")
    device = await request.app[API].store.get_device(request.match_info["provider"], mac)
    if device is None:
        return error(404, "no such device")
    return json_response(device.to_json())


async def get_device_access(request: web.Request) -> web.Response:
    """What the vendor was given for the phone (URL, HTTP username and password), for an
    operator debugging it; the read is logged, the password never."""
    provider = request.match_info["provider"]
    try:
        mac = normalize_mac(request.match_info["mac"])
    except ValueError:
        return error(404, "no such device")
    device = await request.app[API].store.get_device(provider, mac)
    if device is None:
        return error(404, "no such device")
    if not device.http_username or not device.http_password:
        return error(404, f"no access details stored for this device (it is {device.status}:"
                          " they are made by its first add and revoked by a remove)")
    log.warning("Access details read", component="LISTENER", mac=mac, provider=provider)
    return json_response({"url": device.url, "username": device.http_username,
                          "password": device.http_password})


# -- provider credentials and the Test button -----------------------------------------------


class TestIn(BaseModel):
    """Body of POST /providers/{provider}/test."""

    model_config = ConfigDict(extra="forbid", strict=True)

    server: int = Field(1, ge=1, le=2**31 - 1)


async def list_providers(request: web.Request) -> web.Response:
    """The enabled providers, so a console or script knows what it can test and filter."""
    names = sorted(request.app[API].providers)
    return json_response({"providers": [{"name": name} for name in names]})


def _provider(request: web.Request) -> Provider:
    provider = request.app[API].providers.get(request.match_info["provider"])
    if provider is None:
        raise web.HTTPNotFound(reason="unknown or disabled provider")
    return provider


M = TypeVar("M", bound=BaseModel)


def _validated(model: type[M], body: Any) -> M | web.Response:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = [
            FieldError(0, ".".join(map(str, e["loc"])),
                       "unknown field" if e["type"] == "extra_forbidden"
                       else str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors(include_url=False)
        ]
        return error(400, "invalid body", details)


def _section(provider: Provider) -> type[ProviderSettings]:
    section: type[ProviderSettings] | None = getattr(provider, "settings_class", None)
    if section is None:
        raise web.HTTPNotFound(reason=f"provider {provider.name} takes no credentials")
    return section


async def put_credentials(request: web.Request) -> web.Response:
    provider = _provider(request)
    section = _section(provider)
    server = _int_param(request, "server", request.match_info["server"])
    body = _validated(credentials_model(section), await _json_body(request))
    if isinstance(body, web.Response):
        return body
    values = body.model_dump(exclude={"provisioning_url"}, exclude_none=True)
    creds = Credentials(provider.name, server, values, getattr(body, "provisioning_url", None))
    secrets = section.secret_keys()
    plain = [k for k in section.credential_keys if k not in secrets]
    await request.app[API].store.put_credentials(
        creds, utcnow(), id_key=plain[0] if plain else "", secret_key=secrets[0] if secrets else "")
    log.info("Credentials stored", component="LISTENER", keys=",".join(sorted(values)),
             provider=provider.name, server=server)
    return web.Response(status=204)


async def get_credentials(request: web.Request) -> web.Response:
    provider = _provider(request)
    section = _section(provider)
    server = _int_param(request, "server", request.match_info["server"])
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
    provider = _provider(request)
    body = _validated(TestIn, await _json_body(request))
    if isinstance(body, web.Response):
        return body
    result = await provider.check_credentials(body.server)
    log.info("Credentials tested", component="LISTENER", ok=result.ok, provider=provider.name,
             server=body.server)
    return json_response({"ok": result.ok, "message": result.message})


# -- the tenant's provisioning details (/ztprov/ hands them to phones) ----------------

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # control characters cannot be written in XML 1.0


class ServerProvisioningIn(BaseModel):
    """Body of PUT /servers/{server}/provisioning."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # No user:password@ in the URL: credentials go in http_user/http_password (never logged).
    prov_url: str = Field(max_length=1024, pattern=r"^https?://[^\s/?#@]+(?:[/?#]\S*)?$")
    http_user: str = Field(min_length=1, max_length=255, pattern=_PRINTABLE)
    http_password: str = Field(min_length=1, max_length=255, pattern=_PRINTABLE)


async def put_server_provisioning(request: web.Request) -> web.Response:
    server = _int_param(request, "server", request.match_info["server"])
    body = _validated(ServerProvisioningIn, await _json_body(request))
    if isinstance(body, web.Response):
        return body
    provisioning = ServerProvisioning(server, body.prov_url, body.http_user,
                                      body.http_password)
    await request.app[API].store.put_server_provisioning(provisioning, utcnow())
    log.info("Server provisioning stored", component="LISTENER", prov_url=body.prov_url,
             server=server, user=body.http_user)
    return web.Response(status=204)


async def get_server_provisioning(request: web.Request) -> web.Response:
    server = _int_param(request, "server", request.match_info["server"])
    provisioning = await request.app[API].store.get_server_provisioning(server)
    if provisioning is None:
        return error(404, f"no provisioning details stored for server {server}")
    return json_response({
        "server": server, "prov_url": provisioning.prov_url,
        "http_user": provisioning.http_user,
        "http_password_set": bool(provisioning.http_password),
    })


# -- health ---------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    api = request.app[API]
    depths = api.distributor.depths()
    try:
        await api.store.ping()
        backlog = await api.store.backlog()
    except StoreUnavailable as exc:
        return json_response(
            {"status": "unavailable", "database": f"unavailable: {exc}", "queues": depths},
            status=503,
        )
    return json_response(
        {"status": "ok", "database": "ok", "backlog": backlog, "queues": depths}
    )


def create_app(api: Api) -> web.Application:
    """The event API application (routes of docs/api.md)."""
    general = api.settings.general
    middlewares = [errors_middleware]
    token = general.api_token.get_secret_value()
    if token:
        middlewares.append(auth_middleware(token))
    else:  # a web page cannot send the token; without one, only the Host keeps it out
        middlewares.append(host_middleware(general.listen, general.allowed_hosts))
    app = web.Application(middlewares=middlewares,
                          client_max_size=api.settings.general.max_body)
    app[API] = api
    app.router.add_post("/events", post_events)
    app.router.add_get("/events", list_events)
    app.router.add_get("/events/{id}", get_event)
    app.router.add_post("/events/{id}/retry", retry_event)
    app.router.add_get("/devices", list_devices)
    app.router.add_get("/devices/{provider}/{mac}", get_device)
    app.router.add_get("/devices/{provider}/{mac}/access", get_device_access)
    app.router.add_get("/providers", list_providers)
    app.router.add_put("/providers/{provider}/credentials/{server}", put_credentials)
    app.router.add_get("/providers/{provider}/credentials/{server}", get_credentials)
    app.router.add_post("/providers/{provider}/test", test_provider)
    app.router.add_put("/servers/{server}/provisioning", put_server_provisioning)
    app.router.add_get("/servers/{server}/provisioning", get_server_provisioning)
    app.router.add_get("/health", health)
    if api.metrics is not None:
        app.router.add_get("/metrics", api.metrics.handle)
    from rps_service import fleet  # it builds on this module's helpers

    fleet.add_routes(app)
    console.add_routes(app)  # /ui/ and /openapi.json
    return app
