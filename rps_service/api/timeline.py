"""``GET /devices/{provider}/{mac}/timeline``: what happened to one device, oldest first
(docs/timeline.md).

The stored entries (vendor calls, retries, outcomes, the phone's requests) are merged with
what the event journal already holds: when each event was accepted, and how an event ended
that a later one made moot (``superseded``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from rps_service.api.base import API, error, int_param, json_response, path_mac
from rps_service.store.timeline import EventStep, TimelineEntry
from rps_service.timeline import iso_time

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


def _entry(at: datetime, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    # A retry's own "at" is when it is due (docs/timeline.md); every other entry's is when
    # it happened.
    return {"at": iso_time(at), "kind": kind, **data}


def _from_events(events: list[EventStep]) -> list[tuple[datetime, int, dict[str, Any]]]:
    rows = []
    for e in events:
        rows.append((e.created_at, 0, _entry(e.created_at, "accepted", {
            "event": e.id, "action": e.action, "server": e.server})))
        if e.state == "superseded":
            rows.append((e.updated_at, 1, _entry(e.updated_at, "outcome", {
                "event": e.id, "state": e.state, "status": None, "message": e.last_error})))
    return rows


def merged(events: list[EventStep], entries: list[TimelineEntry], limit: int
           ) -> list[dict[str, Any]]:
    """Events and stored entries in the order they happened; the newest ``limit``."""
    rows = _from_events(events)
    rows += [(e.at, 1, _entry(e.at, e.kind, e.data)) for e in entries]
    # Stable: stored entries keep the order they were recorded in when times tie.
    rows.sort(key=lambda row: (row[0], row[1]))
    return [row[2] for row in rows[-limit:]]


async def get_timeline(request: web.Request) -> web.Response:
    api = request.app[API]
    provider = request.match_info["provider"]
    mac = path_mac(request)
    if mac is None:
        return error(404, "no such device")
    unknown = set(request.query) - {"limit"}
    if unknown:
        return error(400, f"unknown query parameter: {sorted(unknown)[0]}")
    limit = int_param(request, "limit", request.query.get("limit", str(DEFAULT_LIMIT)), 1,
                      MAX_LIMIT)
    events = await api.store.device_events(provider, mac, limit)
    # Known: it has a row, or at least an event (an add not yet handled).
    if not events and await api.store.get_device(provider, mac) is None:
        return error(404, "no such device")
    if api.timeline is not None:
        await api.timeline.flush()  # what was recorded a moment ago is shown too
    entries = await api.store.device_timeline(provider, mac, limit)
    return json_response({"entries": merged(events, entries, limit)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/devices/{provider}/{mac}/timeline", get_timeline)
