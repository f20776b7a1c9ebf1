"""The phones' listener cannot be held open: a header deadline and connection caps.

``/ztprov/`` faces the Internet. aiohttp's server has no deadline for a request's headers
(a client sending one header byte every few seconds keeps its connection, and a file
descriptor, for as long as it likes), and it accepts every connection it is offered, so a
few hundred idle or trickling connections used to exhaust the daemon's file limit and
take the event API and the database down with it. Here, below aiohttp:

* every connection is counted when it is accepted; beyond ``[ztp] max_connections`` in all,
  or ``max_connections_per_ip`` from one address, it is closed at once, before aiohttp
  ever sees it;
* a request's headers must arrive within ``[ztp] header_timeout`` of the connection's
  opening, or of the first byte of the next request on a kept-alive connection;
* an idle kept-alive connection is closed after :data:`IDLE_TIMEOUT` seconds (aiohttp's
  own ``keepalive_timeout``, passed to its runner).

The hook is the protocol factory given to ``loop.create_server``: :class:`GuardedSite` (an
aiohttp site, so the runner starts and stops it as any other) wraps each connection's
aiohttp protocol in a :class:`GuardedProtocol`, which sees the bytes before aiohttp does.
The end of a request's headers is found by looking for the blank line (CRLF CRLF, or LF LF,
which lenient parsers accept); a ``/ztprov/`` request has no body (GET and HEAD only).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web

from rps_service.logs import get_logger

log = get_logger()

#: Seconds an idle kept-alive connection stays open (SPEC §13).
IDLE_TIMEOUT = 15.0
#: File descriptors kept free beside the phones' connections: the event API, the database,
#: the vendors, rps.log.
FD_RESERVE = 256
_SUMMARY_EVERY = 10.0  # seconds between two log lines about refused or expired connections


@dataclass(frozen=True)
class Limits:
    """``[ztp]`` ``header_timeout``, ``max_connections``, ``max_connections_per_ip``
    (0: no cap per address)."""

    header_timeout: float
    max_connections: int
    max_per_ip: int


class _Summary:
    """At most one log line per kind per ``_SUMMARY_EVERY`` seconds, with how many were
    not written since: a flood must not flood rps.log too."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._next: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def due(self, kind: str) -> int | None:
        """None (count it, write nothing) or how many went unwritten before this one."""
        now = self._clock()
        if now < self._next.get(kind, 0.0):
            self._quiet[kind] = self._quiet.get(kind, 0) + 1
            return None
        self._next[kind] = now + _SUMMARY_EVERY
        return self._quiet.pop(kind, 0)


class ConnectionGuard:
    """Counts the phones' open connections, in all and per address."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.open = 0
        self._per_ip: dict[str, int] = {}
        self._summary = _Summary(clock)

    def admit(self, ip: str) -> bool:
        """Count a new connection from ``ip``; False (and one log line now and then) when
        it is over a cap and must be closed."""
        limits = self.limits
        if self.open >= limits.max_connections:
            self._refused(ip, "max_connections", limits.max_connections)
            return False
        if limits.max_per_ip and self._per_ip.get(ip, 0) >= limits.max_per_ip:
            self._refused(ip, "max_connections_per_ip", limits.max_per_ip)
            return False
        self.open += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return True

    def release(self, ip: str) -> None:
        """An admitted connection closed."""
        self.open -= 1
        left = self._per_ip.get(ip, 1) - 1
        if left > 0:
            self._per_ip[ip] = left
        else:
            self._per_ip.pop(ip, None)

    def connections_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def headers_too_slow(self, ip: str) -> None:
        quiet = self._summary.due("header_timeout")
        if quiet is not None:
            log.warning("Connection closed: request headers too slow", component="ZTP",
                        ip=ip, more=quiet, timeout=f"{self.limits.header_timeout:g}s")

    def _refused(self, ip: str, setting: str, limit: int) -> None:
        quiet = self._summary.due(setting)
        if quiet is not None:
            log.warning("Connection refused: too many connections", component="ZTP", ip=ip,
                        limit=f"{setting}={limit}", more=quiet)


def _headers_end(data: bytes, start: int) -> int:
    """Where the bytes after the first blank line at or after ``start`` begin, or -1."""
    ends = [i + len(mark) for mark in (b"\r\n\r\n", b"\n\n")
            if (i := data.find(mark, start)) >= 0]
    return min(ends) if ends else -1


class GuardedProtocol(asyncio.Protocol):
    """One phone's connection: admitted or closed at once, then its bytes handed to
    aiohttp's protocol while a timer waits for each request's headers."""

    def __init__(self, guard: ConnectionGuard, make: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._ip = "-"
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes of unfinished headers (a blank line may straddle)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a TCP connection (uvloop's too)
        peer = transport.get_extra_info("peername")
        self._ip = str(peer[0]) if peer else "-"
        if not self._guard.admit(self._ip):
            transport.abort()  # nothing was read or written: free the descriptor now
            return
        self._transport = transport
        self._inner = self._make()
        self._inner.connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        self._watch(data)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._inner is None:
            return  # refused: never counted, never given to aiohttp
        self._guard.release(self._ip)
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def _watch(self, data: bytes) -> None:
        # Bytes while no timer runs start a request (headers due); a blank line ends them.
        buffer, position = self._tail + data, 0
        while position < len(buffer):
            if self._timer is None:
                self._arm()
            end = _headers_end(buffer, position)
            if end < 0:
                self._tail = buffer[-3:]
                return
            self._disarm()
            position = end
        self._tail = b""

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.limits.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._guard.headers_too_slow(self._ip)
            self._transport.abort()


class GuardedSite(web.BaseSite):
    """An aiohttp TCP site whose connections go through a :class:`ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard,
                 *, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self.guard = host, port, guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GuardedProtocol(self.guard, server), self._host, self._port,
            backlog=self._backlog, reuse_address=True)


def raise_file_limit(max_connections: int) -> None:
    """Make room for ``max_connections`` phones beside everything else: raise the soft
    open-file limit up to the hard one if need be, and say so when even that is short."""
    needed = max_connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("Open file limit below what max_connections needs", component="ZTP",
                    hint="raise LimitNOFILE (systemd) or ulimit -n, or lower [ztp] "
                         "max_connections", limit=soft, needed=needed)
