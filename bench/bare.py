"""The intake baseline: a bare aiohttp server answering ``POST /events`` with 202, no storage.

``python -m bench.bare --port P [--asyncio]``. The handler reads the whole body (the client
must be able to send it) and answers a small fixed JSON 202; it does not parse or validate
the body, so it is the ceiling of aiohttp on this machine, served the way the daemon serves
(``AppRunner``, ``access_log=None``, one process, one event loop: uvloop where it is
installed, as ``rps-service run`` does; ``--asyncio`` forces asyncio's own loop).
``GET /health`` answers 200 for the harness's readiness poll.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

ACCEPTED = b'{"accepted": 1, "events": []}'


async def post_events(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ACCEPTED, status=202, content_type="application/json")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(port: int) -> None:
    app = web.Application(client_max_size=1_048_576)
    app.router.add_post("/events", post_events)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--asyncio", action="store_true", help="not on uvloop")
    args = parser.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        args.asyncio = True
    if args.asyncio:
        asyncio.run(serve(args.port))
    else:
        uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
