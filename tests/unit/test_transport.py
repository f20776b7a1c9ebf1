"""AiohttpTransport: httpx requests sent by aiohttp's client to a real server on loopback.

What the providers rely on: the request leaves exactly as httpx built it (method, the URL's
raw path and query, headers, body), the response comes back with its status, headers and
body (a gzip body decoded as httpx would), and each way a request can fail surfaces as the
httpx exception that ``sraps_errors`` classifies, with its own message.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from aiohttp import web

from rps_service.providers.errors import transport_error
from rps_service.providers.transport import AiohttpTransport

Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(limit=4), timeout=2) as http:
        yield http


async def test_request_leaves_as_built_and_response_comes_back(
    serve: Serve, client: httpx.AsyncClient
) -> None:
    seen: dict[str, object] = {}

    async def echo(request: web.Request) -> web.Response:
        seen.update(method=request.method, raw_path=request.raw_path,
                    body=await request.read(), headers=dict(request.headers))
        return web.Response(status=201, body=b'{"ok":true}', content_type="application/json",
                            headers={"X-Seen": "1", "Retry-After": "7"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    base = await serve(app)
    response = await client.put(f"{base}/api/v1/companies/a%2Fb/endpoints/000413abcdef?x=1",
                                content=b'{"mac":"x"}',
                                headers={"Authorization": "Hawk id=\"k\"",
                                         "Content-Type": "application/json"})
    assert response.status_code == 201
    assert response.json() == {"ok": True}
    assert response.headers["X-Seen"] == "1" and response.headers["Retry-After"] == "7"
    assert seen["method"] == "PUT"
    # %2F stays encoded: the Hawk signature covers the path as httpx built it.
    assert seen["raw_path"] == "/api/v1/companies/a%2Fb/endpoints/000413abcdef?x=1"
    assert seen["body"] == b'{"mac":"x"}'
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert headers["Authorization"] == 'Hawk id="k"'
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == base.removeprefix("http://")
    assert headers["User-Agent"].startswith("python-httpx/")


async def test_connection_is_reused(serve: Serve, client: httpx.AsyncClient) -> None:
    peers: set[object] = set()

    async def peer(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", peer)
    base = await serve(app)
    for _ in range(5):
        assert (await client.get(f"{base}/")).status_code == 200
    assert len(peers) == 1


async def test_gzip_body_is_decoded_like_httpx(serve: Serve, client: httpx.AsyncClient) -> None:
    async def zipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"results":[]}'),
                            headers={"Content-Encoding": "gzip",
                                     "Content-Type": "application/json"})

    app = web.Application()
    app.router.add_get("/", zipped)
    base = await serve(app)
    assert (await client.get(f"{base}/")).json() == {"results": []}


async def test_hung_server_is_a_read_timeout(serve: Serve) -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/", hang)
    base = await serve(app)
    async with httpx.AsyncClient(transport=AiohttpTransport(), timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await http.get(f"{base}/")
    release.set()
    assert transport_error(caught.value, 0.3).text == "Timeout after 0.3s"


async def test_refused_connection_is_a_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError) as caught:
        await client.get(f"http://127.0.0.1:{port}/")
    err = transport_error(caught.value, 2)
    assert err.text == "Connection failed: ConnectError" and err.transient


async def test_dropped_connection_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # no answer at all

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.get(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()
    err = transport_error(caught.value, 2)
    assert err.text == "Connection failed: RemoteProtocolError" and err.transient


async def test_garbage_answer_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()


async def test_closed_transport_opens_a_new_session(serve: Serve) -> None:
    app = web.Application()
    app.router.add_get("/", _ok)
    base = await serve(app)
    transport = AiohttpTransport()
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get(f"{base}/")).status_code == 200
    await transport.aclose()  # twice is harmless
    async with httpx.AsyncClient(transport=transport) as http:
        assert (await http.get(f"{base}/")).status_code == 200


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")
