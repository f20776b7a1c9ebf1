"""Run ``rps-service`` with a wall-clock tracer patched in: ``python -m bench.variant trace
run -c rps.ini`` (the first argument names the variant, the rest is the ``rps-service``
command line). Nothing in the product changes; this only patches the running process.

* ``trace``: every ``async def`` method of the classes in the pipeline's modules
  (listener, distributor, worker, providers, store) is wrapped to count calls and the time
  until they return, awaits included, which a sampling profiler cannot show. Written as
  JSON to ``$BENCH_TRACE`` at exit; the benchmarks turn it into a per-event breakdown in
  their notes.

(Earlier variants swapped in uvloop and orjson to measure what they would gain; the
product now uses both, see docs/performance.md.)
"""

from __future__ import annotations

import atexit
import functools
import importlib
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TRACED_MODULES = (
    "rps_service.api.app", "rps_service.pipeline.distributor", "rps_service.pipeline.worker",
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


SWAPS = {"trace": use_trace}


def main() -> int:
    names = [n for n in sys.argv[1].split(",") if n]
    for name in names:
        SWAPS[name]()
    from rps_service.cli import main as rps_main

    return rps_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
