"""The event API's application on ``listen:port`` (docs/api.md): its middleware (JSON
refusals, the bearer token, the Host check) and its routes, one module per resource.

An event is answered 202 only after its row is committed; the distributor is then woken so
work starts without waiting for a poll. Every refusal is JSON with the field and reason.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from rps_service.api import (
    console,
    devices,
    events,
    health,
    jobs,
    openapi,
    providers,
    servers,
    timeline,
)
from rps_service.api.base import API, JSON_REQUIRED, Api, authorized, error, is_json
from rps_service.logs import get_logger
from rps_service.store import StoreUnavailable

__all__ = ["Api", "create_app", "cross_site_refusal", "host_allowed", "host_name",
           "own_origin"]

log = get_logger()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on every route but /health (which then answers only ok or degraded)
    and the console's static files."""
    # By matched route, not path prefix: only the static-file handler is let through.
    public = request.match_info.route.name in console.PUBLIC_ROUTES
    if request.path != "/health" and not public and not authorized(request):
        response = error(401, "missing or wrong API token")
        response.headers["WWW-Authenticate"] = 'Bearer realm="rps"'
        return response
    return await handler(request)


_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CROSS_SITE = frozenset({"cross-site", "same-site"})


def own_origin(origin: str, host: str | None) -> bool:
    """Whether an ``Origin`` header names the site the request was addressed to (its
    ``Host``): the console's own page, directly or behind a proxy that passes ``Host``."""
    try:
        parts = urlsplit(origin)
        port = parts.port
        target = urlsplit(f"//{host}") if host else None
        target_port = target.port if target else None
    except ValueError:  # "http://[x", a port over 65535
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or target is None:
        return False
    default = 443 if parts.scheme == "https" else 80
    return (parts.hostname == (target.hostname or "")
            and (port or default) == (target_port or default))


def cross_site_refusal(request: web.Request) -> str | None:
    """Why a state-changing request comes from another site's page, or None."""
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if site in _CROSS_SITE:
        return f"Sec-Fetch-Site {site}"
    origin = request.headers.get("Origin")
    if origin is not None and not own_origin(origin, request.headers.get("Host")):
        return f"Origin {origin[:100]}"
    return None


@web.middleware
async def cross_site_middleware(request: web.Request, handler: Handler
                                ) -> web.StreamResponse:
    """No web page of another site changes anything, with or without api_token.

    A browser lets any page send a POST (a form, or ``fetch`` with ``mode: 'no-cors'``)
    and only hides the answer. Such a request is refused when the browser says where it
    comes from (``Origin``, ``Sec-Fetch-Site``), and in any case needs ``Content-Type:
    application/json``, which a page can send across sites only after a CORS preflight
    that this API never approves.
    """
    if request.method not in _STATE_CHANGING:
        return await handler(request)
    refused = cross_site_refusal(request)
    if refused is not None:
        log.warning("Request refused: cross-origin", component="LISTENER",
                    ip=request.remote or "-", path=request.path[:100], why=refused)
        return error(403, "cross-origin request refused")
    # Unknown paths and methods keep their 404 and 405.
    if request.match_info.http_exception is None and not is_json(
            request.headers.get("Content-Type")):
        return error(415, JSON_REQUIRED)
    return await handler(request)


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


def create_app(api: Api) -> web.Application:
    """The event API application (routes of docs/api.md)."""
    general = api.settings.general
    middlewares = [errors_middleware]
    if general.api_token.get_secret_value():
        middlewares.append(auth_middleware)
    else:  # a web page cannot send the token; without one, only the Host keeps it out
        middlewares.append(host_middleware(general.listen, general.allowed_hosts))
    middlewares.append(cross_site_middleware)
    app = web.Application(middlewares=middlewares,
                          client_max_size=api.settings.general.max_body)
    app[API] = api
    for resource in (events, devices, timeline, providers, servers, jobs, health, openapi):
        resource.add_routes(app)
    if api.metrics is not None:
        app.router.add_get("/metrics", api.metrics.handle)
    console.add_routes(app)  # /ui/
    return app
