"""``/health``: whether the database answers, the backlog, the workers and the lanes.

It needs no token (load balancers, Docker's HEALTHCHECK and monitoring probe it), so when an
``api_token`` is set a request without it learns only ``{"status": "ok" | "degraded"}``: the
backlog and the database's error text (host names, user names) are for those with the token.
"""

from __future__ import annotations

from aiohttp import web

from rps_service.api.base import API, authorized, json_response
from rps_service.logs import get_logger
from rps_service.pipeline.report import pipeline_report
from rps_service.store import StoreUnavailable

log = get_logger()


async def health(request: web.Request) -> web.Response:
    api = request.app[API]
    full = authorized(request)
    depths = api.distributor.depths()
    try:
        await api.store.ping()
        backlog, lanes = await pipeline_report(api.distributor, api.store)
    except StoreUnavailable as exc:
        if not full:
            return json_response({"status": "degraded"}, status=503)
        return json_response(
            {"status": "unavailable", "database": f"unavailable: {exc}", "queues": depths},
            status=503,
        )
    if not full:
        return json_response({"status": "ok"})
    return json_response(
        {"status": "ok", "database": "ok", "backlog": backlog, "queues": depths,
         "lanes": [lane.to_json() for lane in lanes]}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
