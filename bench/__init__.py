"""Benchmarks of rps-service: each starts what it measures as separate processes.

``python -m bench`` runs them all and prints one table; ``python -m bench intake`` runs one.
See ``docs/performance.md`` for the figures, their targets and what limits each of them.

Modules: :mod:`bench.common` (processes, databases, load generator, table, profiler),
:mod:`bench.bare` (the baseline server), one module per benchmark (:mod:`bench.intake`,
:mod:`bench.pipeline`, :mod:`bench.memory`, :mod:`bench.latency`, :mod:`bench.startstop`)
and :mod:`bench.variant` (runs the daemon with uvloop and/or orjson swapped in, to measure
what they would gain without touching the product).
"""
