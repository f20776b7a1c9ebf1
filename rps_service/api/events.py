"""``/events``: accepting events (answered 202 once committed), reading them, re-queuing a
failed one (docs/api.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from aiohttp import web

from rps_service.api.base import (
    API,
    error,
    int_param,
    json_body,
    json_response,
    provider_refusal,
)
from rps_service.clock import utcnow
from rps_service.logs import get_logger
from rps_service.models import (
    EVENT_STATES,
    EventIn,
    FieldError,
    NewEvent,
    batch_size_error,
    validate_events,
)
from rps_service.providers.protocol import Provider
from rps_service.store import Inserted

log = get_logger()


async def post_events(request: web.Request) -> web.Response:
    api = request.app[API]
    body = await json_body(request)
    if not isinstance(body, dict | list):
        return error(400, "body must be an event object or an array of events",
                     [FieldError(0, "", "expected a JSON object or array")])
    if isinstance(body, list) and (refused := batch_size_error(body)):
        return error(400, refused[0], [refused[1]])
    events, problems = validate_events(
        body, frozenset(api.providers), lambda name: provider_refusal(name, api.providers))
    if not problems:
        problems = await _provider_problems(api.providers, events)
    if problems:
        return error(400, "invalid event" if len(problems) == 1 else "invalid events", problems)
    new = [NewEvent(e.action, e.provider, e.server, e.mac, e.payload(), e.key) for e in events]
    stored = await api.store.insert_events(new, utcnow())
    api.distributor.wake(list(dict.fromkeys((e.provider, e.server or 1) for e in new)))
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
    limit = int_param(request, "limit", query.get("limit", "100"), 1, 1000)
    before = int_param(request, "before", query["before"]) if "before" in query else None
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


def add_routes(app: web.Application) -> None:
    app.router.add_post("/events", post_events)
    app.router.add_get("/events", list_events)
    app.router.add_get("/events/{id}", get_event)
    app.router.add_post("/events/{id}/retry", retry_event)
