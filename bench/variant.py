"""Run ``rps-service`` with uvloop and/or orjson swapped in, to measure what they would gain.

``python -m bench.variant uvloop,orjson run -c rps.ini`` (the first argument names the
swaps, the rest is the ``rps-service`` command line). Nothing in the product changes; this
only patches the running process, the way the lead would wire them in for real:

* ``uvloop``: the uvloop event loop policy, so ``asyncio.run`` in ``rps_service.cli`` runs
  on uvloop.
* ``orjson``: ``json.loads`` of the request body in ``rps_service.listener``, the
  ``json.dumps`` of aiohttp's ``web.json_response`` (every answer), and the payload
  ``json.dumps``/``loads`` of ``rps_service.store.base``. orjson refuses NaN and Infinity
  like the listener's ``parse_constant`` does.

* ``trace``: not a speed-up but a wall-clock tracer: every ``async def`` method of the
  classes in the pipeline's modules (listener, distributor, worker, providers, store) is
  wrapped to count calls and the time until they return, awaits included, which a sampling
  profiler cannot show. Written as JSON to ``$BENCH_TRACE`` at exit; the benchmarks turn
  it into a per-event breakdown in their notes.

Each swap that finds nothing to patch says so on stderr (the product may have moved on).
Needs ``pip install uvloop orjson`` in the venv; neither is a dependency of rps-service.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib
import inspect
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def use_uvloop() -> None:
    import uvloop  # type: ignore[import-not-found, unused-ignore]

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def use_orjson() -> None:
    import orjson  # type: ignore[import-not-found, unused-ignore]
    from aiohttp import web

    def dumps(value: Any, **_: Any) -> str:
        return str(orjson.dumps(value).decode())

    def loads(raw: Any, **_: Any) -> Any:
        return orjson.loads(raw)

    web.json_response = functools.partial(web.json_response, dumps=dumps)
    shim = SimpleNamespace(loads=loads, dumps=dumps, JSONDecodeError=ValueError)
    for name in ("rps_service.listener", "rps_service.store.base"):
        module = importlib.import_module(name)
        if getattr(module, "json", None) is None:
            print(f"bench.variant: {name} has no json to swap", file=sys.stderr)
            continue
        module.json = shim  # type: ignore[attr-defined]


TRACED_MODULES = (
    "rps_service.listener", "rps_service.distributor", "rps_service.worker",
    "rps_service.providers.snom", "rps_service.providers.transport", "rps_service.store.base",
    "rps_service.store.sql", "rps_service.store.devices", "rps_service.store.group",
    "rps_service.store.mysql", "rps_service.store.sqlite",
)


def use_trace() -> None:
    stats: dict[str, list[float]] = {}  # name -> [calls, seconds, max seconds]

    def timed(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                took = time.perf_counter() - began
                entry = stats.setdefault(name, [0, 0.0, 0.0])
                entry[0] += 1
                entry[1] += took
                entry[2] = max(entry[2], took)

        return wrapper

    for module_name in TRACED_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        short = module_name.rsplit(".", 1)[1]
        for attr, value in list(vars(module).items()):
            if inspect.iscoroutinefunction(value) and value.__module__ == module_name:
                setattr(module, attr, timed(f"{short}.{attr}", value))
            elif inspect.isclass(value) and value.__module__ == module_name:
                for name, member in list(vars(value).items()):
                    if inspect.iscoroutinefunction(member):
                        setattr(value, name, timed(f"{value.__name__}.{name}", member))
    path = os.environ.get("BENCH_TRACE")
    if path:
        atexit.register(lambda: Path(path).write_text(json.dumps(stats), encoding="utf-8"))


SWAPS = {"uvloop": use_uvloop, "orjson": use_orjson, "trace": use_trace}


def main() -> int:
    names = [n for n in sys.argv[1].split(",") if n]
    for name in names:
        SWAPS[name]()
    from rps_service.cli import main as rps_main

    return rps_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
