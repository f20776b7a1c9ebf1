"""The OpenAPI 3.1 description of the event API (docs/api.md), built from code.

Request bodies are the pydantic models the handlers validate with; answers are described
by the small models in :mod:`rps_service.api.answers`, which tests hold against what the
handlers return. :data:`ROUTES` has one entry per route of ``api.app.create_app``; a
test compares the two, so a route added there without an entry here fails.

To add a route: its handler and ``add_*`` line in its resource module's ``add_routes``, then a
:class:`Route` in :data:`ROUTES` (its request model, if any, and an answer model in
``answers.py``), then regenerate the copy kept in the repository (a test compares it)::

    python -m rps_service.api.openapi > docs/openapi.json
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from rps_service import __version__
from rps_service.api import answers
from rps_service.api.devices import ReplaceIn
from rps_service.api.providers import ReconcileIn, TestIn
from rps_service.api.servers import RepointIn, ServerProvisioningIn, SettingsIn
from rps_service.models import DEVICE_STATUSES, EVENT_STATES, MAX_BATCH, EventIn
from rps_service.providers.section import (
    ProviderSettings,
    credentials_model,
    provisioning_url_model,
)
from rps_service.vendors import PROVIDERS

MAC_PATTERN = r"^\s*(?:[:.-]*[0-9A-Fa-f]){12}[:.-]*\s*$"
MAC_TEXT = ("12 hex digits, in any case, optionally separated by `:`, `-` or `.`; "
            "answers give it as 12 upper-case digits")
CURSOR_PATTERN = r"^[0-9]{1,10}:.+:[0-9A-F]{12}$"  # api.devices._device_cursor
INT32 = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


@dataclass(frozen=True)
class Param:
    """A path or query parameter."""

    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Answer:
    """One documented answer: a status, what it means, and its body (None: no body)."""

    status: int
    description: str
    body: type[BaseModel] | dict[str, Any] | None = answers.Error
    media: str = "application/json"


@dataclass(frozen=True)
class Route:
    """One route of the listener, as a client sees it."""

    method: str
    path: str
    summary: str
    answers: tuple[Answer, ...]
    params: tuple[Param, ...] = ()
    body: type[BaseModel] | dict[str, Any] | None = None
    tag: str = "events"
    public: bool = False  # served without the bearer token
    database: bool = True  # reads or writes the database: may answer 503
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- shared pieces ----------------------------------------------------------------------

PROVIDER = Param("provider", "path", {"type": "string"},
                 "a configured, enabled provider (`GET /providers`)")
SERVER = Param("server", "path", INT32, "tenant server id")
MAC = Param("mac", "path", {"type": "string", "pattern": MAC_PATTERN}, MAC_TEXT)
EVENT_ID = Param("id", "path", {"type": "integer"}, "the event id")
BAD_REQUEST = Answer(400, "a parameter or the body is invalid; `details` name each field")
BAD_BODY = (
    Answer(413, "the body is larger than `max_body`"),
    Answer(415, "the Content-Type is not `application/json`, or the body is not JSON"),
)
NO_PROVIDER = Answer(404, "unknown or disabled provider")
JOB_ID = Param("id", "path", {"type": "integer"}, "the job id")
#: Methods refused from other sites' pages and needing a JSON Content-Type (api/app.py).
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")

#: Each provider takes its own credential keys: the body is that provider's model.
CREDENTIAL_MODELS: tuple[type[BaseModel], ...] = tuple(
    credentials_model(cls.settings_class) for cls in PROVIDERS.values())
#: Or ``provisioning_url`` alone: the server's URL, its keys kept (the same for all).
URL_ONLY_MODEL = provisioning_url_model(ProviderSettings)
CREDENTIALS_BODY: dict[str, Any] = {  # anyOf: several providers share the same keys
    "anyOf": [{"$ref": f"#/components/schemas/{m.__name__}"}
              for m in (*CREDENTIAL_MODELS, URL_ONLY_MODEL)],
    "description": "the keys of the provider in the path (one of these, by provider); "
                   "another provider's keys are refused. A body with only "
                   "`provisioning_url` stores the server's URL and keeps its keys",
}

#: POST /events takes one event or an array; each event is EventIn.
EVENTS_BODY: dict[str, Any] = {
    "oneOf": [
        {"$ref": "#/components/schemas/EventIn"},
        {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"},
         "minItems": 1, "maxItems": MAX_BATCH},
    ],
}

ROUTES: tuple[Route, ...] = (
    Route("POST", "/events", "Accept one event or an array of events",
          (Answer(202, "stored (all of them, or none: see 400)", answers.Accepted),
           Answer(400, "an event is invalid (`details` has its index and field), or the "
                       f"array is empty or holds more than {MAX_BATCH}: nothing stored"),
           *BAD_BODY),
          body=EVENTS_BODY,
          description="Answered only once the events are committed. A repeated `key` "
                      "returns the first event's id with `duplicate: true`."),
    Route("GET", "/events", "List events, newest first",
          (Answer(200, "the events", answers.EventList), BAD_REQUEST),
          params=(Param("state", "query", {"type": "string", "enum": list(EVENT_STATES)}),
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": 1000, "default": 100}),
                  Param("before", "query", INT32,
                        "only events with an id below this (pages on)"))),
    Route("GET", "/events/{id}", "One event",
          (Answer(200, "the event", answers.Event), Answer(404, "no such event")),
          params=(EVENT_ID,)),
    Route("POST", "/events/{id}/retry", "Re-queue a failed event",
          (Answer(202, "re-queued", answers.Retried), Answer(404, "no such event"),
           Answer(409, "the event is not failed, or a newer event of the device exists")),
          params=(EVENT_ID,),
          description="Takes no body, but needs `Content-Type: application/json` like "
                      "every state-changing request (415 without it)."),
    Route("GET", "/devices", "List devices as the GUI shows them",
          (Answer(200, "a page of devices", answers.DeviceList), BAD_REQUEST),
          params=(Param("server", "query", INT32),
                  Param("provider", "query", {"type": "string"}),
                  Param("status", "query", {"type": "string",
                                            "enum": list(DEVICE_STATUSES)}),
                  Param("mac", "query", {"type": "string", "pattern": MAC_PATTERN},
                        MAC_TEXT),
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": 100_000, "default": 1000}),
                  Param("after", "query", {"type": "string", "pattern": CURSOR_PATTERN},
                        "the `next` of the previous page"),
                  Param("count", "query", {"type": "boolean", "default": False},
                        "also answer `total`, the number of matching devices")),
          tag="devices",
          description="In (server, provider, mac) order. `next` is null on the last page."),
    Route("GET", "/devices/{provider}/{mac}", "One device",
          (Answer(200, "the device", answers.Device), Answer(404, "no such device")),
          params=(Param("provider", "path", {"type": "string"}), MAC), tag="devices"),
    Route("GET", "/devices/{provider}/{mac}/access",
          "What the vendor was given for the phone (logged as a WARNING, without the password)",
          (Answer(200, "the URL and login (a URL-key device: its URL, the key in it; "
                       "username and password null)", answers.Access),
           Answer(404, "no such device, or it has no access details (removed, never added)"),
           Answer(500, "the stored access details cannot be opened with this daemon's "
                       "secret key (see rps.log)")),
          params=(Param("provider", "path", {"type": "string"}), MAC), tag="devices"),
    Route("GET", "/devices/{provider}/{mac}/timeline",
          "What happened to the device: events, vendor calls, retries, outcomes, the "
          "phone's requests",
          (Answer(200, "the newest entries, oldest first", answers.Timeline), BAD_REQUEST,
           Answer(404, "no such device")),
          params=(Param("provider", "path", {"type": "string"}), MAC,
                  Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": 10_000, "default": 1000},
                        "the newest this many entries")),
          tag="devices"),
    Route("POST", "/devices/{provider}/{mac}/replace",
          "Swap a phone: remove the old MAC, then add the new one in its place",
          (Answer(202, "both events stored; the add waits for the remove", answers.Accepted),
           BAD_REQUEST, Answer(404, "unknown provider or device"), *BAD_BODY),
          params=(PROVIDER, MAC), body=ReplaceIn, tag="fleet"),
    Route("GET", "/providers", "The enabled providers",
          (Answer(200, "their names", answers.ProviderList),),
          tag="providers", database=False),
    Route("PUT", "/providers/{provider}/credentials/{server}", "Store a server's API keys",
          (Answer(204, "stored", None), BAD_REQUEST, NO_PROVIDER, *BAD_BODY),
          params=(PROVIDER, SERVER), body=CREDENTIALS_BODY, tag="providers"),
    Route("GET", "/providers/{provider}/credentials/{server}",
          "A server's key id and whether a secret is set (never the secret)",
          (Answer(200, "the stored keys", answers.Credentials), BAD_REQUEST,
           Answer(404, "unknown provider, or no keys stored for the server")),
          params=(PROVIDER, SERVER), tag="providers"),
    Route("POST", "/providers/{provider}/test", "Check a server's API keys with the vendor now",
          (Answer(200, "the vendor's verdict (`ok` false is still a 200)", answers.TestResult),
           BAD_REQUEST, NO_PROVIDER, *BAD_BODY),
          params=(PROVIDER,), body=TestIn, tag="providers"),
    Route("POST", "/providers/{provider}/reconcile",
          "Compare what the vendor holds with the database (a job)",
          (Answer(202, "the job was created", answers.JobCreated),
           Answer(400, "an invalid body, or a vendor that can neither list nor look up"),
           NO_PROVIDER, *BAD_BODY),
          params=(PROVIDER,), body=ReconcileIn, tag="fleet"),
    Route("PUT", "/servers/{server}/provisioning",
          "The tenant's regular provisioning URL and credentials (for /ztprov/)",
          (Answer(204, "stored", None), BAD_REQUEST, *BAD_BODY),
          params=(SERVER,), body=ServerProvisioningIn, tag="servers"),
    Route("GET", "/servers/{server}/provisioning",
          "The tenant's provisioning details (never the password)",
          (Answer(200, "the details", answers.ServerProvisioning), BAD_REQUEST,
           Answer(404, "none stored for the server")),
          params=(SERVER,), tag="servers"),
    Route("PUT", "/servers/{server}/settings/{provider}",
          "Extra vendor settings pushed with every registration of the server's devices",
          (Answer(204, "stored", None),
           Answer(400, "an invalid body, or a provider without extra settings"),
           NO_PROVIDER, *BAD_BODY),
          params=(SERVER, PROVIDER), body=SettingsIn, tag="fleet"),
    Route("GET", "/servers/{server}/settings/{provider}", "A server's extra vendor settings",
          (Answer(200, "the settings (empty when none)", answers.ServerSettings),
           BAD_REQUEST, NO_PROVIDER),
          params=(SERVER, PROVIDER), tag="fleet"),
    Route("POST", "/servers/{server}/repoint",
          "Push every registered device of the server again (a job)",
          (Answer(202, "the job was created", answers.JobCreated),
           Answer(400, "an invalid body or an unknown provider"), *BAD_BODY),
          params=(SERVER,), body=RepointIn, tag="fleet"),
    Route("GET", "/jobs", "Fleet jobs, newest first",
          (Answer(200, "the jobs", answers.JobList), BAD_REQUEST),
          params=(Param("limit", "query", {"type": "integer", "minimum": 1,
                                           "maximum": 1000, "default": 50}),),
          tag="fleet"),
    Route("GET", "/jobs/{id}", "A fleet job: its state, progress and result",
          (Answer(200, "the job", answers.Job), Answer(404, "no such job"), BAD_REQUEST),
          params=(JOB_ID,
                  Param("not_fetched_after", "query", {"type": "string"},
                        "repoint: list the MACs of `not_fetched` after this one"),
                  Param("not_fetched_limit", "query", {"type": "integer", "minimum": 1,
                                                       "maximum": 1000, "default": 100},
                        "repoint: MACs of `not_fetched` in one answer")),
          tag="fleet"),
    Route("GET", "/health", "Database reachable, backlog, workers, lanes",
          (Answer(200, "healthy", answers.Health),
           Answer(503, "the database does not answer", answers.HealthDown)),
          tag="operations", public=True, database=False,
          description="Needs no token. When `api_token` is set, a request without it gets "
                      "only `{\"status\": \"ok\"}` (200) or `{\"status\": \"degraded\"}` "
                      "(503): the figures and the database's error need the token."),
    Route("GET", "/metrics", "Prometheus metrics",
          (Answer(200, "the Prometheus text format (OpenMetrics when asked in Accept)",
                  {"type": "string"}, media="text/plain"),),
          tag="operations", database=False),
    Route("GET", "/openapi.json", "This description",
          (Answer(200, "the OpenAPI 3.1 document", {"type": "object"}),),
          tag="operations", database=False),
)


# -- the document -------------------------------------------------------------------------


def _schemas() -> dict[str, Any]:
    """Every model's JSON Schema under its name: request models as validated, answers as
    serialised."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (EventIn, "validation"),
        *((m, "validation") for m in (*CREDENTIAL_MODELS, URL_ONLY_MODEL))]
    for route in ROUTES:
        if isinstance(route.body, type):
            models.append((route.body, "validation"))
        models += [(a.body, "serialization") for a in route.answers
                   if isinstance(a.body, type)]
    unique = list(dict.fromkeys(models))
    _, top = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top.get("$defs", {})
    event = schemas["EventIn"]["properties"]["mac"]
    # normalize_mac is a validator, which JSON Schema cannot see: give its rule.
    event.update(pattern=MAC_PATTERN, description=MAC_TEXT)
    for name, schema in schemas.items():
        if name in answers.NAMES:
            answers.absent_not_null(schema)
    return dict(sorted(schemas.items()))


def _content(body: type[BaseModel] | dict[str, Any], media: str) -> dict[str, Any]:
    schema = ({"$ref": f"#/components/schemas/{body.__name__}"} if isinstance(body, type)
              else body)
    return {media: {"schema": schema}}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "tags": [route.tag],
                          "operationId": _operation_id(route)}
    if route.description:
        op["description"] = route.description
    if route.params:
        op["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.where == "path", "schema": p.schema,
             **({"description": p.description} if p.description else {})}
            for p in route.params
        ]
    if route.body is not None:
        op["requestBody"] = {"required": True,
                             "content": _content(route.body, "application/json")}
    responses: dict[str, Any] = {}
    for answer in route.answers:
        responses[str(answer.status)] = {"description": answer.description}
        if answer.body is not None:
            responses[str(answer.status)]["content"] = _content(answer.body, answer.media)
    if not route.public:
        responses["401"] = {"$ref": "#/components/responses/Unauthorized"}
        op["security"] = [{"bearer": []}]
    else:
        op["security"] = []
    if route.database:
        responses["503"] = {"$ref": "#/components/responses/DatabaseUnavailable"}
    if route.method in STATE_CHANGING:
        responses["403"] = {"$ref": "#/components/responses/CrossOrigin"}
        responses.setdefault("415", {"$ref": "#/components/responses/NotJson"})
    op["responses"] = dict(sorted(responses.items()))
    return op | route.extra


def _operation_id(route: Route) -> str:
    words = [w.strip("{}") for w in route.path.strip("/").replace(".", "_").split("/")]
    return "_".join([route.method.lower(), *words])


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the event API."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rps-service event API",
            "version": __version__,
            "description": "The PBX GUI's and operators' API of rps-service. JSON "
                           "both ways. When `api_token` is set, every route but `/health` "
                           "(and the console's static files under `/ui/`) needs "
                           "`Authorization: Bearer <token>`. Every POST, PUT, PATCH and "
                           "DELETE needs `Content-Type: application/json`, even without a "
                           "body, and is refused (403) when a web page of another site "
                           "sent it.",
        },
        "servers": [{"url": "http://127.0.0.1:15777", "description": "the default listen"}],
        "tags": [{"name": n} for n in ("events", "devices", "providers", "servers", "fleet",
                                       "operations")],
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {
                "type": "http", "scheme": "bearer",
                "description": "`api_token` from rps.ini; only when it is set"}},
            "responses": {
                "Unauthorized": {"description": "missing or wrong token (only when "
                                                "`api_token` is set)", "content": error},
                "DatabaseUnavailable": {"description": "the database does not answer; "
                                                       "nothing was stored",
                                        "content": error},
                "CrossOrigin": {"description": "sent by a web page of another site "
                                               "(`Origin` not this host, or `Sec-Fetch-Site` "
                                               "`cross-site`/`same-site`): nothing changed",
                                "content": error},
                "NotJson": {"description": "no `Content-Type: application/json` (required "
                                           "on every POST, PUT, PATCH and DELETE, even "
                                           "without a body)",
                            "content": error},
            },
        },
    }


def render() -> str:
    """The document as kept in ``docs/openapi.json``: indented, keys in a stable order."""
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


@functools.cache
def _rendered() -> bytes:
    return render().encode()


async def get_openapi(request: web.Request) -> web.Response:
    return web.Response(body=_rendered(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", get_openapi)


if __name__ == "__main__":
    sys.stdout.write(render())
