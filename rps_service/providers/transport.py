"""An httpx transport that sends through aiohttp's HTTP client.

The providers keep httpx's API: its requests and responses, ``MockTransport`` in the unit
tests, and its exception classes, which :mod:`.errors` classifies. Only the bytes go
through aiohttp's client, which spends about a sixth of the CPU per request that httpcore
does (see docs/performance.md, "Pipeline"). The vendor's latency is what bounds the
pipeline, but a worker's next request leaves only after the CPU work of every response that
arrived with its own, so that work adds to every call.

Errors are mapped onto httpx's classes by what happened, so that a refused connection, a
dropped one and a timeout each keep their own message in the journal and rps.log.

A vendor's answer is untrusted input: :func:`read_answer` reads it under ``max_answer``
(rps.ini, per provider), whatever its ``Content-Length`` or ``Content-Encoding`` claim.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
from yarl import URL

CHUNK = 65_536  # bytes read from the socket at a time: the most one read adds to memory


class AnswerTooLarge(Exception):
    """A vendor's answer over ``max_answer`` bytes (read or decoded): nothing more is read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"answer too large: more than {limit} bytes")


@contextlib.contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """aiohttp's exceptions as httpx's, by what happened (while connecting or reading)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
    except TimeoutError as exc:  # aiohttp's read timeouts are TimeoutError too
        raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
            aiohttp.ClientResponseError) as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientOSError as exc:
        raise httpx.ReadError(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(str(exc), request=request) from exc


class _Body(httpx.AsyncByteStream):
    """An aiohttp response's body, chunk by chunk as it arrives: whoever reads it decides
    how much (``read_answer`` stops at ``max_answer``); closing it before the end drops the
    connection rather than reading the rest."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request):
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # read to the end: the connection is kept alive
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with an :class:`aiohttp.ClientSession` (made on first use,
    inside the running loop); at most ``limit`` connections, kept alive between requests.
    The body is not read here: it streams to whoever reads the response."""

    def __init__(self, *, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                # httpx decodes Content-Encoding itself, as with its own transport.
                auto_decompress=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        with _as_httpx_errors(request):
            response = await self._open().request(
                request.method,
                # Sent byte for byte as httpx built it: a Hawk signature covers the path.
                URL(str(request.url), encoded=True),
                headers=list(request.headers.multi_items()),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,  # the whole call's deadline is the caller's (http.py)
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


# -- reading an answer, bounded -----------------------------------------------------------


async def read_answer(response: httpx.Response, limit: int) -> httpx.Response:
    """``response`` read whole, but never more than ``limit`` bytes, compressed or decoded.

    A ``Content-Length`` over the limit is refused before anything is read; otherwise the
    body is read a chunk at a time and given up as soon as it passes the limit (a vendor
    that sends gigabytes, or a small gzip that inflates to them, costs at most ``limit``
    plus one chunk). The answer comes back decoded (``Content-Encoding`` gzip and deflate
    undone here, under the same limit). Raises :class:`AnswerTooLarge`.
    """
    if response.is_stream_consumed:  # built in memory (a test's MockTransport): all read
        if len(response.content) > limit:
            raise AnswerTooLarge(limit)
        return response
    try:
        declared = int(response.headers.get("Content-Length", ""))
    except ValueError:
        declared = -1
    try:
        if declared > limit:
            raise AnswerTooLarge(limit)
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        inflate = _Inflater(encoding, limit) if encoding in ("gzip", "deflate") else None
        body, size = bytearray(), 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > limit:
                raise AnswerTooLarge(limit)
            body += inflate.feed(chunk) if inflate else chunk
        if inflate is not None:
            body += inflate.end()
    finally:
        await response.aclose()
    headers = [(k, v) for k, v in response.headers.multi_items()
               if inflate is None or k.lower() not in ("content-encoding", "content-length")]
    return httpx.Response(response.status_code, headers=headers, content=bytes(body),
                          request=response.request, extensions=response.extensions)


class _Inflater:
    """gzip or deflate, decoded with ``max_length``: never more than ``limit`` bytes out."""

    def __init__(self, encoding: str, limit: int) -> None:
        # gzip; for deflate, the zlib wrapper HTTP names (a raw stream is tried on failure).
        self._wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(self._wbits)
        self._limit = limit
        self._out = 0
        self._first = True

    def feed(self, data: bytes) -> bytes:
        try:
            out = self._zlib.decompress(data, self._room())
        except zlib.error:
            if not (self._first and self._wbits == zlib.MAX_WBITS):
                raise httpx.DecodingError("the answer's deflate data is corrupt") from None
            self._wbits = -zlib.MAX_WBITS  # a raw deflate stream, as some servers send
            self._zlib = zlib.decompressobj(self._wbits)
            out = self._zlib.decompress(data, self._room())
        self._first = False
        return self._count(out)

    def end(self) -> bytes:
        return self._count(self._zlib.flush())

    def _room(self) -> int:
        return self._limit - self._out + 1  # one byte more than allowed: enough to tell

    def _count(self, out: bytes) -> bytes:
        self._out += len(out)
        if self._out > self._limit or self._zlib.unconsumed_tail:
            raise AnswerTooLarge(self._limit)
        return out
