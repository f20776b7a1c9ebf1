"""``/jobs``: fleet jobs (reconcile, re-point) and how far they got (docs/fleet.md); the jobs
themselves run in :mod:`rps_service.pipeline.jobs`."""

from __future__ import annotations

from aiohttp import web

from rps_service.api.base import API, error, int_param, json_response
from rps_service.logs import get_logger

log = get_logger()

NOT_FETCHED_PAGE = 100  # MACs of ``not_fetched`` in one answer, by default
NOT_FETCHED_MAX = 1000


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
    prefix = f"{job.kind}-{job.id}-"
    if job.kind == "repoint" or job.params.get("repair"):
        # The events the job queued, by state: how far the fix itself has got.
        body["events"] = await store.events_by_key_prefix(prefix)
    if job.kind == "repoint" and job.created_at is not None:
        # Verified: whose phones came to fetch their bootstrap file since the job started
        # (the device row keeps the time to the second).
        after = request.query.get("not_fetched_after", "")[:12]
        limit = int_param(request, "not_fetched_limit",
                          request.query.get("not_fetched_limit", str(NOT_FETCHED_PAGE)),
                          1, NOT_FETCHED_MAX)
        fetched, left, waiting = await store.job_fetches(
            prefix, job.created_at.replace(microsecond=0), after.upper(), limit + 1)
        body["fetched"] = fetched
        body["not_fetched_total"] = left
        body["not_fetched"] = waiting[:limit]
        if len(waiting) > limit:  # absent on the last page
            body["not_fetched_next"] = waiting[limit - 1]
    return json_response(body)


async def list_jobs(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", request.query.get("limit", "50"), 1, 1000)
    jobs = await request.app[API].store.list_jobs(limit)
    return json_response({"jobs": [j.to_json() for j in jobs]})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/jobs", list_jobs)
    app.router.add_get("/jobs/{id}", get_job)
