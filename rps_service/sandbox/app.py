"""The sandbox's aiohttp application: SRAPS routes behind faults and Hawk, plus ``/_sandbox/``.

Every request under ``/api/v1/`` goes through, in order: ``hang``/``paused`` holds,
injected faults (``fail_next``, ``rate_limit_rate``, ``error_rate`` -- answered before
authentication, like a proxy in front of the service would), Hawk verification (401), the
handler, then whatever is left of ``latency`` (counted from arrival, see :class:`Pacer`).
Each one is counted in ``state.counts[(method, route name)]`` and ``state.records``.
Route names: ``token``, ``company``, ``settings``, ``endpoints``, ``endpoint``, and
``unmatched`` for paths no route takes (answered 404 after authentication).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from . import api, control
from .hawk import HawkError, verify
from .state import ApiKey, SandboxState

API_PREFIX = "/api/v1/"
_MAC = "{mac:[0-9a-f]{12}}"  # strictly lower-case, no trailing slash: anything else is a 404

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(state: SandboxState) -> web.Application:
    """Build the sandbox application around ``state``."""
    app = web.Application(middlewares=[_api_middleware])
    app[api.STATE] = state
    app[_PACER] = Pacer()
    router = app.router
    router.add_get("/api/v1/tokens/{key_id}", api.get_token, name="token")
    router.add_get("/api/v1/companies/{cid}/", api.get_company, name="company")
    router.add_get("/api/v1/settings/", api.list_settings, name="settings")
    router.add_get("/api/v1/companies/{cid}/endpoints/", api.list_endpoints, name="endpoints")
    endpoint = router.add_resource(f"/api/v1/companies/{{cid}}/endpoints/{_MAC}", name="endpoint")
    endpoint.add_route("GET", api.get_endpoint)
    endpoint.add_route("PUT", api.put_endpoint)
    endpoint.add_route("DELETE", api.delete_endpoint)
    control.add_routes(app)
    return app


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api/v1"):
        return await handler(request)
    state = request.app[api.STATE]
    mac = request.match_info.get("mac")
    # Two requests for one MAC at once means a client broke per-device ordering.
    if mac is not None and request.method != "GET":
        if mac in state.in_flight:
            state.overlaps += 1
        state.in_flight.add(mac)
    try:
        response = await _serve(state, request, handler)
    finally:
        if mac is not None and request.method != "GET":
            state.in_flight.discard(mac)
    route = request.match_info.route.name or "unmatched"
    state.record(request.method, request.path_qs, route, response.status)
    return response


async def _serve(state: SandboxState, request: web.Request, handler: Handler) -> web.StreamResponse:
    await state.hold()
    # Latency counts from arrival: the answer goes out ``latency`` after the request came
    # in, however many requests the single event loop is verifying at the same time. The
    # stamp is taken before this request's work, and the loop is yielded once so that the
    # requests that arrived with it take theirs before it verifies (a real service answers
    # them in parallel). time.monotonic, not loop.time: uvloop's clock has 1 ms steps.
    arrived = time.monotonic()
    if state.latency > 0:
        await asyncio.sleep(0)
    response = await _answer(state, request, handler)
    if state.latency > 0:
        await request.app[_PACER].until(arrived + state.latency)
    return response


class Pacer:
    """Sleeps until a deadline, on average exactly.

    The event loop's timers do not fire on time: uvloop rounds them to whole milliseconds
    and the process must be woken, so a 50 ms sandbox answered after 50.3 ms on average
    (measured on the 2-core build machine; single answers 0.9 ms early to 1 ms late). The
    pacer learns that lateness as a moving average and asks the loop for that much less,
    so the answers' mean delay is the configured latency (single answers still spread by
    about a millisecond either way).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.late = 0.0  # seconds the loop's timer fired after the time asked, on average
        self._clock = clock
        self._sleep = sleep

    async def until(self, deadline: float) -> None:
        """Return at ``deadline`` (a ``clock`` time), on average."""
        wait = deadline - self._clock() - self.late
        if wait <= 0:
            return
        began = self._clock()
        await self._sleep(wait)
        self.late += (self._clock() - began - wait - self.late) / 16


_PACER = web.AppKey("pacer", Pacer)


async def _answer(state: SandboxState, request: web.Request, handler: Handler
                  ) -> web.StreamResponse:
    fault = state.next_fault()
    if fault is not None:
        return _fault(state, fault)
    try:
        request[api.API_KEY] = await _authenticate(state, request)
        return await handler(request)
    except HawkError as exc:
        return web.json_response(
            {"detail": exc.error}, status=401, headers={"WWW-Authenticate": exc.www_authenticate}
        )
    except api.ApiError as exc:
        return exc.response()
    except web.HTTPMethodNotAllowed:
        return web.json_response({"detail": f'Method "{request.method}" not allowed.'}, status=405)
    except web.HTTPNotFound:
        return web.json_response(api.NOT_FOUND, status=404)


async def _authenticate(state: SandboxState, request: web.Request) -> ApiKey:
    # Hawk signs the URL as the client sent it: Host header plus raw path and query.
    url = f"http://{request.headers.get('Host', '')}{request.raw_path}"
    return verify(
        state,
        authorization=request.headers.get("Authorization"),
        url=url,
        method=request.method,
        body=await request.read(),
        content_type=request.headers.get("Content-Type", ""),
    )


def _fault(state: SandboxState, status: int) -> web.Response:
    headers = {"Retry-After": str(state.retry_after)} if status == 429 else {}
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return web.json_response({"message": phrase}, status=status, headers=headers)
