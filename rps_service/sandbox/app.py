"""The sandbox's aiohttp application: every vendor emulator on one server, plus ``/_sandbox/``.

Every request to an emulator (SRAPS at ``/api/v1/``, the others under ``/<provider>/``) goes
through, in order: ``hang``/``paused`` holds, injected faults (``fail_next``,
``rate_limit_rate``, ``error_rate`` -- answered before authentication, like a proxy in front
of the service would), the per-account throttle (``throttle_rate``), the emulator's handler
(which authenticates), then whatever is left of ``latency`` (counted from arrival, see
:class:`Pacer`). Each one is counted in ``state.counts[(method, route name)]`` and
``state.records``; route names of other vendors carry their provider's name
(``yealink-token``), and ``unmatched`` counts paths no route takes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..mohawk_quiet import silence_mohawk_debug
from . import control
from . import sraps_api as api
from .emulator import Emulator
from .registry import EMULATORS
from .state import SandboxState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(state: SandboxState) -> web.Application:
    """Build the sandbox application around ``state``, with every registered emulator."""
    silence_mohawk_debug()  # the Hawk check's DEBUG output would show the payloads
    app = web.Application(middlewares=[_api_middleware])
    app[api.STATE] = state
    app[_PACER] = Pacer()
    for cls in EMULATORS:
        emulator = state.emulators.get(cls.name) or cls(state)
        state.emulators[cls.name] = emulator
        emulator.add_routes(app)
    control.add_routes(app)
    return app


def _emulator_for(state: SandboxState, path: str) -> Emulator | None:
    for emulator in state.emulators.values():
        if path == emulator.prefix or path.startswith(emulator.prefix + "/"):
            return emulator
    return None


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[api.STATE]
    emulator = _emulator_for(state, request.path)
    if emulator is None:
        return await handler(request)
    arrived = time.monotonic()
    state.arrivals += 1
    mac = await emulator.write_mac(request)
    # Two writes for one MAC at once means a client broke per-device ordering.
    if mac is not None:
        if mac in state.in_flight:
            state.overlaps += 1
        state.in_flight.add(mac)
    try:
        response = await _serve(state, emulator, request, handler)
    finally:
        if mac is not None:
            state.in_flight.discard(mac)
    route = request.match_info.route.name or "unmatched"
    state.record(request.method, request.path_qs, route, response.status, arrived)
    return response


async def _serve(state: SandboxState, emulator: Emulator, request: web.Request,
                 handler: Handler) -> web.StreamResponse:
    await state.hold()
    # Latency counts from arrival: the answer goes out ``latency`` after the request came
    # in, however many requests the single event loop is verifying at the same time. The
    # stamp is taken before this request's work, and the loop is yielded once so that the
    # requests that arrived with it take theirs before it verifies (a real service answers
    # them in parallel). time.monotonic, not loop.time: uvloop's clock has 1 ms steps.
    arrived = time.monotonic()
    if state.latency > 0:
        await asyncio.sleep(0)
    response = await _answer(state, emulator, request, handler)
    response.headers["Date"] = state.http_date()  # the vendor's clock (clock_offset)
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


async def _answer(state: SandboxState, emulator: Emulator, request: web.Request,
                  handler: Handler) -> web.StreamResponse:
    fault = state.next_fault()
    if fault is not None:
        response = emulator.fault(fault)
        if fault == 429:
            response.headers["Retry-After"] = str(state.retry_after)
        return response
    wait = state.throttle(emulator.name, emulator.account_of(request))
    if wait is not None:
        return emulator.throttled(wait)
    exception = request.match_info.http_exception
    if exception is not None:  # no route for this path or method
        return await emulator.unmatched(request, exception)
    return await handler(request)
