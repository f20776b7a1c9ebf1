"""What every handler of the event API shares: the application's state, JSON answers and
refusals, and reading a request's body and parameters (docs/api.md)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from rps_service.config import Settings
from rps_service.metrics import Metrics
from rps_service.models import FieldError, normalize_mac
from rps_service.pipeline.distributor import Distributor
from rps_service.providers.protocol import Provider
from rps_service.store import Store
from rps_service.timeline import Timeline
from rps_service.vendors import PROVIDERS

if TYPE_CHECKING:
    from rps_service.pipeline.jobs import JobRunner


@dataclass
class Api:
    """What the handlers need, held on the application."""

    settings: Settings
    store: Store
    distributor: Distributor
    providers: Mapping[str, Provider]
    metrics: Metrics | None = None
    jobs: JobRunner | None = None  # woken when the API creates a job
    timeline: Timeline | None = None  # written before a device's timeline is read


API = web.AppKey("api", Api)


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON answer, serialised with orjson (the intake path's largest cost after I/O)."""
    return web.Response(body=orjson.dumps(body), status=status,
                        content_type="application/json")


def path_mac(request: web.Request) -> str | None:
    """The path's ``{mac}``, normalised; None when it is no MAC (the device is then
    unknown: 404 ``no such device``)."""
    try:
        return normalize_mac(request.match_info["mac"])
    except ValueError:
        return None


def error(status: int, message: str, details: list[FieldError] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = [
            {"index": d.index, "field": d.field, "message": d.message} for d in details
        ]
    return json_response(body, status=status)


JSON_REQUIRED = ("send Content-Type: application/json (every POST, PUT, PATCH and DELETE, "
                 "even one without a body)")


def is_json(content_type: str | None) -> bool:
    """``application/json``, with or without parameters (``; charset=utf-8``).

    A missing type is not JSON: a web page on another site can post a body without one
    (``new Blob([...])``), or with a form's or ``text/plain``, but never this one without
    the browser asking the daemon first (a CORS preflight, which it does not answer).
    """
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def authorized(request: web.Request) -> bool:
    """No ``api_token`` set, or the request carries it (``Authorization: Bearer <token>``),
    compared in constant time; a header that is not ASCII is simply not the token."""
    token = request.app[API].settings.general.api_token.get_secret_value()
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    if not given.isascii():
        return False
    return hmac.compare_digest(given.encode("ascii"), f"Bearer {token}".encode())


async def json_body(request: web.Request) -> Any:
    if not is_json(request.headers.get("Content-Type")):
        raise web.HTTPUnsupportedMediaType(reason=JSON_REQUIRED)
    limit = request.app[API].settings.general.max_body
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.read()
    try:
        return orjson.loads(raw)  # strict RFC 8259: no NaN or Infinity
    except orjson.JSONDecodeError as exc:
        # The media type was right, the content is not: a client error, not a media error.
        raise web.HTTPBadRequest(reason=f"body is not valid JSON: {exc}") from None


def int_param(request: web.Request, name: str, value: str, low: int = 1,
              high: int = 2**31 - 1) -> int:
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise web.HTTPBadRequest(reason=f"{name}: must be an integer from {low} to {high}")
    return number


def provider_of(request: web.Request) -> Provider:
    providers = request.app[API].providers
    provider = providers.get(request.match_info["provider"])
    if provider is None:
        raise web.HTTPNotFound(reason=provider_refusal(request.match_info["provider"],
                                                       providers))
    return provider


def provider_refusal(name: str, enabled: Iterable[str]) -> str:
    """Why ``name`` takes no requests, and how to change that (a disabled vendor's section
    is in rps.ini already, off)."""
    on = ", ".join(sorted(enabled)) or "none"
    if name in PROVIDERS:
        variable = f"RPS_{name.upper().replace('-', '_')}_ENABLED=true"
        return (f"provider {name} is disabled: set enabled = true in [{name}] of rps.ini (or "
                f"{variable}) and restart the daemon (enabled: {on})")
    return (f"unknown provider {name[:40]!r} (providers: {', '.join(PROVIDERS)}; "
            f"enabled: {on})")


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], body: Any) -> M | web.Response:
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


def wake_jobs(request: web.Request) -> None:
    jobs = request.app[API].jobs
    if jobs is not None:
        jobs.wake()
