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
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from rps_service.config import ConfigError, load_settings
from rps_service.providers.errors import transport_error
from rps_service.providers.http import VendorHttp
from rps_service.providers.protocol import ProviderError
from rps_service.providers.transport import AiohttpTransport
from tests.conftest import write_ini

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


# -- issue 20, finding 4: vendor answers are bounded in size and in time ------------------


LIMIT = 65_536


def vendor_http(transport: httpx.AsyncBaseTransport, timeout: float = 5.0,
                max_answer: int = LIMIT) -> VendorHttp:
    return VendorHttp(name="snom", label="Snom", transport=transport, timeout=timeout,
                      rate_limit=1000, retry_cap=1, max_answer=max_answer)


class Flood:
    """A raw HTTP server that answers with ``total`` bytes in chunks (with or without a
    Content-Length), and counts how many it got to send before the client hung up."""

    def __init__(self, total: int, *, declare: bool, pause: float = 0.0,
                 chunk: int = 65_536, encoding: str = "") -> None:
        self.total, self.declare, self.pause, self.chunk = total, declare, pause, chunk
        self.encoding = encoding
        self.sent = 0
        self.done = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {self.total}\r\n" if self.declare else "Connection: close\r\n"
        head += f"Content-Encoding: {self.encoding}\r\n" if self.encoding else ""
        try:
            writer.write((head + "\r\n").encode())
            while self.sent < self.total:
                part = min(self.chunk, self.total - self.sent)
                writer.write(b"x" * part)
                await writer.drain()
                self.sent += part
                if self.pause:
                    await asyncio.sleep(self.pause)
            writer.close()
        except (ConnectionError, OSError):
            pass  # the client gave up: what we are here to see
        finally:
            self.done.set()


@pytest.mark.parametrize("declare", [False, True], ids=["chunked", "content-length"])
async def test_a_huge_answer_is_given_up_early(declare: bool) -> None:
    """400 MB offered, with or without a Content-Length: at most ``max_answer`` is read."""
    flood = Flood(400 * 1_048_576, declare=declare)
    transport = AiohttpTransport()
    async with flood as url:
        with pytest.raises(ProviderError) as caught:
            await vendor_http(transport).send(httpx.Request("GET", url), account="a",
                                              operation="lookup")
        await asyncio.wait_for(flood.done.wait(), 10)  # the server saw the client hang up
    await transport.aclose()
    assert caught.value.transient
    assert caught.value.text == "Snom answer too large: more than 65536 bytes (max_answer)"
    # Socket buffers take some megabytes; nowhere near 400 MB were ever accepted.
    assert flood.sent < 32 * 1_048_576


async def test_an_answer_within_the_limit_is_read_whole() -> None:
    flood = Flood(LIMIT, declare=False, chunk=1000)
    transport = AiohttpTransport()
    async with flood as url:
        response = await vendor_http(transport).send(httpx.Request("GET", url), account="a",
                                                     operation="lookup")
    await transport.aclose()
    assert response.status_code == 200 and response.content == b"x" * LIMIT


async def test_a_compressed_answer_is_bounded_once_decoded(serve: Serve) -> None:
    small = gzip.compress(b'{"ok": true}')
    bomb = gzip.compress(b"0" * 50 * 1_048_576)  # 50 KB that inflate to 50 MB

    async def zipped(request: web.Request) -> web.Response:
        body = bomb if request.path == "/bomb" else small
        return web.Response(body=body, headers={"Content-Encoding": "gzip",
                                                "Content-Type": "application/json"})

    app = web.Application()
    app.router.add_get("/{name}", zipped)
    base = await serve(app)
    transport = AiohttpTransport()
    http = vendor_http(transport)
    ok = await http.send(httpx.Request("GET", f"{base}/small"), account="a", operation="x")
    assert ok.json() == {"ok": True} and "content-encoding" not in ok.headers
    assert len(bomb) < LIMIT
    with pytest.raises(ProviderError) as caught:
        await http.send(httpx.Request("GET", f"{base}/bomb"), account="a", operation="x")
    await transport.aclose()
    assert "answer too large" in caught.value.text and caught.value.transient


async def test_a_trickling_vendor_cannot_hold_a_call_past_its_timeout() -> None:
    """One byte every 0.3 s never trips a per-read timeout of 1 s; the call's deadline of
    1 s still ends it, long before the 60 bytes would have arrived (18 s)."""
    flood = Flood(60, declare=True, pause=0.3, chunk=1)
    transport = AiohttpTransport()
    seen: list[tuple[str, str]] = []
    http = VendorHttp(name="snom", label="Snom", transport=transport, timeout=1,
                      rate_limit=1000, retry_cap=1,
                      observe=lambda _, op, status, __: seen.append((op, status)))
    async with flood as url:
        with pytest.raises(ProviderError) as caught:
            await http.send(httpx.Request("GET", url), account="a", operation="lookup")
        await asyncio.wait_for(flood.done.wait(), 10)
    await transport.aclose()
    assert caught.value.text == "Timeout after 1s" and caught.value.transient
    assert flood.sent < 60  # the connection was dropped mid-answer
    assert seen == [("lookup", "timeout")]


async def test_max_answer_is_read_from_rps_ini(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "rps.ini", snom={"max_answer": 20000})
    assert load_settings(ini, env={}).provider("snom").max_answer == 20000
    assert load_settings(write_ini(tmp_path / "b.ini"), env={}).provider(
        "snom").max_answer == 1_048_576
    with pytest.raises(ConfigError) as caught:
        load_settings(write_ini(tmp_path / "c.ini", snom={"max_answer": 10}), env={})
    assert (caught.value.section, caught.value.key) == ("snom", "max_answer")
