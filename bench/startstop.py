"""5. Start and stop: process start to ``READY=1``, and SIGTERM to exit when idle.

The schema is created first (``rps-service init-db``), as on an installed system; then, 5
times (``--quick``: 2), the daemon is started with ``NOTIFY_SOCKET`` pointing at an
AF_UNIX datagram socket the harness bound, the way systemd (``Type=notify``) starts it.

* start → READY: from just before the fork to the arrival of the datagram with
  ``READY=1`` (the daemon sends it once the listener is bound and the database answers).
  Should no READY come (a daemon without sd_notify), the first 200 of ``/health`` is used
  instead and a note says so. The first 200 of ``/health`` is reported either way.
* SIGTERM → exit: the daemon idles 0.5 s after READY, then gets SIGTERM; the time until
  the process is gone (a pidfd turning readable).

Each figure is the median of the runs; the runs are in the notes. Targets ≤ 1 s.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

from bench.common import (
    Daemon,
    Options,
    Row,
    database,
    for_each_db,
    http_session,
    init_db,
    running,
    workdir,
)

BENCH = "startstop"
TARGET = 1.0  # seconds


async def run(opts: Options) -> list[Row]:
    async def measure(kind: str) -> list[Row]:
        return await _startstop(kind, opts)

    return await for_each_db(BENCH, opts, measure)


async def _ready_datagram(sock: socket.socket, within: float) -> float | None:
    """Monotonic time at which a datagram holding READY=1 arrived, or None."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), left)
        except TimeoutError:
            return None
        if b"READY=1" in data.split(b"\n"):
            return time.monotonic()
    return None


async def _startstop(kind: str, opts: Options) -> list[Row]:
    runs = 2 if opts.quick else 5
    ready: list[float] = []
    health: list[float] = []
    stops: list[float | None] = []
    with workdir(opts, f"startstop-{kind}") as folder, database(kind, folder, opts) as db:
        await init_db(Daemon(folder, db.dsn, opts, name="init"))
        async with http_session() as session:
            for i in range(runs):
                path = folder / f"notify-{i}.sock"
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                    sock.bind(str(path))
                    sock.setblocking(False)
                    daemon = Daemon(folder, db.dsn, opts, env={"NOTIFY_SOCKET": str(path)},
                                    name=f"daemon-{i}")
                    daemon.start()
                    async with running(daemon):
                        got, first_200 = await asyncio.gather(
                            _ready_datagram(sock, 30), daemon.ready(session))
                        health.append(first_200)
                        if got is not None:
                            ready.append(got - daemon.started)
                        await asyncio.sleep(0.5)
                        stops.append(daemon.stop())
    if len(ready) < runs:
        opts.note(f"startstop {kind}: no READY=1 from sd_notify in {runs - len(ready)} runs; "
                  "start → READY uses the first 200 of /health there")
        ready += health[len(ready):]
    clean = [s for s in stops if s is not None]
    opts.note(f"startstop {kind}: READY {_list(ready)} s; /health {_list(health)} s; "
              f"SIGTERM→exit {_list(clean)} s" + ("" if len(clean) == runs else
                                                   f"; {runs - len(clean)} had to be killed"))
    ready_median = statistics.median(ready)
    health_median = statistics.median(health)
    stop_median = statistics.median(clean) if len(clean) == runs else float("inf")
    return [
        Row(BENCH, kind, f"start → READY=1 (sd_notify), median of {runs}", ready_median, "s",
            target=f"≤ {TARGET:g} s", ok=ready_median <= TARGET),
        Row(BENCH, kind, f"start → first 200 of /health, median of {runs}", health_median,
            "s"),
        Row(BENCH, kind, f"SIGTERM → exit, idle, median of {runs}", stop_median, "s",
            target=f"≤ {TARGET:g} s", ok=stop_median <= TARGET),
    ]


def _list(values: list[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)
