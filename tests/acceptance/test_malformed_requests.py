"""The phones' listener faces the Internet: broken HTTP and broken Authorization headers,
sent with raw sockets to a running daemon, get a 4xx and at most one rps.log line each,
never a traceback on stderr (the same holds for the event listener)."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_daemon import LINE, Daemon

MALFORMED = "Malformed request."
ZTP_FILE = "/ztprov/snomD717-000413ABCDEF.htm"


def _request(line: str, *headers: bytes) -> bytes:
    return (line.encode() + b"\r\nHost: pbx\r\nConnection: close\r\n"
            + b"".join(h + b"\r\n" for h in headers) + b"\r\n")


#: (what, raw bytes, logged as "Malformed request": 1 line, or 0 lines)
BROKEN_HTTP = [
    ("request line too long", _request("GET /" + "a" * 9000 + " HTTP/1.1"), 1),
    ("header too long", _request(f"GET {ZTP_FILE} HTTP/1.1", b"X-Big: " + b"b" * 9000), 1),
    ("bad byte in a header name", _request(f"GET {ZTP_FILE} HTTP/1.1", b"X-B\x01d: y"), 1),
    ("header without a colon", _request(f"GET {ZTP_FILE} HTTP/1.1", b"NoColonHere"), 1),
    ("too many headers", _request(f"GET {ZTP_FILE} HTTP/1.1",
                                  *[f"X-H{i}: v".encode() for i in range(200)]), 1),
    ("bad Content-Length", _request(f"POST {ZTP_FILE} HTTP/1.1", b"Content-Length: abc"), 1),
    ("unknown HTTP version", _request(f"GET {ZTP_FILE} HTTP/9.9"), 1),
    ("control byte in a header value", _request(f"GET {ZTP_FILE} HTTP/1.1",
                                                b"Authorization: \x7f"), 1),
    # Non-HTTP bytes as the first thing on a connection (scanners, TLS to a plain port):
    # aiohttp answers 400 and logs it at debug level only, which we drop.
    ("garbage", b"GARBAGE\r\n\r\n", 0),
    ("TLS handshake", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40
     + b"\r\n\r\n", 0),
]

#: Requests that parse but carry broken credentials: a plain 401, like a wrong password.
BROKEN_AUTH = [
    b'Authorization: Digest username="a", realm=, nonce="x", uri="/", response="r"',
    b'Authorization: Digest username="a", realm="rps-ztp", nonce="x", uri="http://[",'
    b' response="0", qop=auth, nc=00000001, cnonce="c"',
    b'Authorization: Digest username="\xff\xfe", realm="rps-ztp", nonce="n", uri="/",'
    b' response="\xc3\x28", qop=auth, nc=zz, cnonce="c"',
    b'Authorization: Digest "', b"Authorization: Digest ,,,=,", b"Authorization: Digest a=b=c",
    b"Authorization: Basic \xff\xfe\xfd", b"Authorization: Basic ====", b"Authorization: Basic",
]


async def _send(port: int, raw: bytes) -> int:
    """Send ``raw`` and return the status the server answered (0: closed without one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 10)
    except ConnectionResetError:
        return 0
    finally:
        writer.close()
    parts = head.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[Daemon, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        ztp_port = int(sock.getsockname()[1])
    running = Daemon(tmp_path, {}, {})
    running.ini.write_text(running.ini.read_text() + (
        f"\n[ztp]\nenabled = true\nlisten = 127.0.0.1\nport = {ztp_port}\n"))
    running.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await running.ready(client)
        yield running, ztp_port
    finally:
        running.kill()


def _malformed_lines(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log.read_text().splitlines() if MALFORMED in line]


async def test_broken_http_gets_4xx_and_one_line_no_traceback(
    daemon: tuple[Daemon, int],
) -> None:
    running, ztp_port = daemon
    for port, component in ((ztp_port, "ZTP"), (running.port, "LISTENER")):
        for what, raw, lines in BROKEN_HTTP:
            before = len(_malformed_lines(running))
            status = await _send(port, raw)
            assert 400 <= status < 500, (component, what, status)
            new = _malformed_lines(running)[before:]
            assert len(new) == lines, (component, what, new)
            for line in new:
                assert f"WARNING ({component}): Malformed request. Err=" in line
                assert line.endswith(" Ip=127.0.0.1"), line
                assert "bbbb" not in line and "aaaa" not in line  # no client bytes echoed
    await _stop(running)
    stderr = (running.folder / "stderr.txt").read_text()
    assert "Traceback" not in stderr and "Error handling request" not in stderr, stderr
    assert [line for line in running.log.read_text().splitlines() if not LINE.match(line)] == []


async def test_broken_authorization_is_401(daemon: tuple[Daemon, int]) -> None:
    running, ztp_port = daemon
    for header in BROKEN_AUTH:
        raw = _request(f"GET {ZTP_FILE} HTTP/1.1",
                       b"User-Agent: snomD717-SIP 10.1.54.13 000413ABCDEF", header)
        assert await _send(ztp_port, raw) == 401, header
    await _stop(running)
    log = running.log.read_text()
    assert "500" not in log and "Request failed" not in log, log
    assert "Traceback" not in (running.folder / "stderr.txt").read_text()


async def _stop(running: Daemon) -> None:
    assert running.proc is not None
    running.proc.send_signal(signal.SIGTERM)
    assert await running.wait_exit() == 0
