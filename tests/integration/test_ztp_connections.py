"""Issue 20, finding 2, on the phones' listener itself: request headers have a deadline,
idle kept-alive connections are closed, and connections beyond the caps are closed at once.

Raw sockets play the clients (an HTTP client would not send half a request); the listener
is the real one, on the real store, on loopback. Addresses 127.0.0.2 and up are other
clients (Linux routes all of 127/8 to loopback).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from rps_service import logs
from rps_service.config import ZtpSettings
from rps_service.store import Store
from rps_service.ztp.app import ZtpListener
from tests.conftest import free_port

REQUEST = b"GET /ztprov/8/snomD717-000413ABCDEF.htm HTTP/1.1\r\nHost: pbx\r\n\r\n"
Start = Callable[..., Awaitable[ZtpListener]]
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/rps.db"  # connections, not storage, are under test


@pytest.fixture
async def start(store: Store, tmp_path: Path) -> AsyncIterator[Start]:
    listeners: list[ZtpListener] = []
    sink = logs.configure(str(tmp_path / "rps.log"))

    async def _start(idle_timeout: float = 15.0, **values: Any) -> ZtpListener:
        settings = ZtpSettings.model_validate({"enabled": True, "listen": "127.0.0.1",
                                               "port": free_port(), **values})
        listener = ZtpListener(settings, store, idle_timeout=idle_timeout)
        await listener.start()
        listeners.append(listener)
        return listener

    yield _start
    for listener in listeners:
        await listener.close()
    sink.close()
    structlog.reset_defaults()


def port_of(listener: ZtpListener) -> int:
    return int(listener.address.rsplit(":", 1)[1])


async def connect(listener: ZtpListener, source: str = "127.0.0.1") -> Conn:
    return await asyncio.open_connection("127.0.0.1", port_of(listener),
                                         local_addr=(source, 0))


async def closed_by_server(conn: Conn, within: float) -> bool:
    """Whether the server closed the connection (EOF or reset) within ``within`` seconds,
    reading and discarding whatever it answered before."""
    reader, _ = conn
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (left := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return False
        except ConnectionError:  # reset: closed without a word
            return True
        if not data:
            return True
    return False


async def answer(conn: Conn) -> bytes:
    reader, writer = conn
    writer.write(REQUEST)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    await asyncio.wait_for(reader.readexactly(length), 5)
    return head.split(b"\r\n")[0]


def close_all(conns: list[Conn]) -> None:
    for _, writer in conns:
        writer.close()


async def test_headers_must_arrive_within_header_timeout(start: Start, tmp_path: Path
                                                         ) -> None:
    listener = await start(header_timeout=1)
    silent = await connect(listener)  # opens and says nothing
    trickler = await connect(listener)

    async def trickle() -> int:
        sent = 0
        with contextlib.suppress(ConnectionError):
            for byte in REQUEST[:-2]:  # never the final blank line
                trickler[1].write(bytes([byte]))
                await trickler[1].drain()
                sent += 1
                await asyncio.sleep(0.2)
        return sent

    sending = asyncio.create_task(trickle())
    assert await closed_by_server(silent, within=5)
    assert await closed_by_server(trickler, within=5)
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    # A prompt client on a kept-alive connection is answered request after request.
    prompt = await connect(listener)
    for _ in range(3):
        assert await answer(prompt) == b"HTTP/1.1 401 Unauthorized"
        await asyncio.sleep(0.6)  # idle between requests: no header deadline runs then
    assert await answer(prompt) == b"HTTP/1.1 401 Unauthorized"
    close_all([silent, trickler, prompt])
    await asyncio.sleep(0.1)
    assert listener.guard.open == 0
    log = (tmp_path / "rps.log").read_text()
    assert ("WARNING (ZTP): Connection closed: request headers too slow. Ip=127.0.0.1 More=0 "
            "Timeout=1s") in log


async def test_idle_kept_alive_connections_are_closed(start: Start) -> None:
    listener = await start(idle_timeout=1, header_timeout=10)
    conn = await connect(listener)
    assert await answer(conn) == b"HTTP/1.1 401 Unauthorized"
    assert await closed_by_server(conn, within=5)  # well before header_timeout
    close_all([conn])


async def test_connections_beyond_the_caps_are_closed_at_once(start: Start, tmp_path: Path
                                                              ) -> None:
    listener = await start(max_connections=5, max_connections_per_ip=3)
    first = [await connect(listener) for _ in range(3)]
    over_ip = await connect(listener)
    assert await closed_by_server(over_ip, within=2)
    others = [await connect(listener, "127.0.0.2") for _ in range(2)]
    over_all = await connect(listener, "127.0.0.3")
    assert await closed_by_server(over_all, within=2)
    # The admitted ones are served…
    for conn in (first[0], others[0]):
        assert await answer(conn) == b"HTTP/1.1 401 Unauthorized"
    assert listener.guard.open == 5
    # …and a slot freed is a slot for the next client.
    close_all(first[:1])
    await asyncio.sleep(0.2)
    assert listener.guard.connections_from("127.0.0.1") == 2
    late = await connect(listener, "127.0.0.3")
    assert await answer(late) == b"HTTP/1.1 401 Unauthorized"
    close_all([*first, *others, late, over_ip, over_all])
    await asyncio.sleep(0.2)
    assert listener.guard.open == 0
    log = (tmp_path / "rps.log").read_text()
    assert ("WARNING (ZTP): Connection refused: too many connections. Ip=127.0.0.1 "
            "Limit=max_connections_per_ip=3 More=0") in log
    assert ("WARNING (ZTP): Connection refused: too many connections. Ip=127.0.0.3 "
            "Limit=max_connections=5 More=0") in log


async def test_no_cap_per_address_behind_a_proxy(start: Start) -> None:
    listener = await start(max_connections=50, max_connections_per_ip=0)
    conns = [await connect(listener) for _ in range(20)]
    assert await answer(conns[-1]) == b"HTTP/1.1 401 Unauthorized"
    assert listener.guard.open == 20
    close_all(conns)


async def test_a_refusal_flood_writes_few_lines(start: Start, tmp_path: Path) -> None:
    listener = await start(max_connections=2, max_connections_per_ip=2)
    kept = [await connect(listener) for _ in range(2)]
    refused = [await connect(listener) for _ in range(50)]
    for conn in refused:
        assert await closed_by_server(conn, within=2)
    close_all([*kept, *refused])
    lines = [line for line in (tmp_path / "rps.log").read_text().splitlines()
             if "Connection refused" in line]
    assert len(lines) == 1  # the other 49 are counted in the next line, 10 s later
