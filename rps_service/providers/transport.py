"""An httpx transport that sends through aiohttp's HTTP client.

The providers keep httpx's API: its requests and responses, ``MockTransport`` in the unit
tests, and its exception classes, which :mod:`.sraps_errors` classifies. Only the bytes go
through aiohttp's client, which spends about a sixth of the CPU per request that httpcore
does (see docs/performance.md, "Pipeline"). The vendor's latency is what bounds the
pipeline, but a worker's next request leaves only after the CPU work of every response that
arrived with its own, so that work adds to every call.

Errors are mapped onto httpx's classes by what happened, so that a refused connection, a
dropped one and a timeout each keep their own message in the journal and rps.log.
"""

from __future__ import annotations

import aiohttp
import httpx
from yarl import URL


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with an :class:`aiohttp.ClientSession` (made on first use,
    inside the running loop); at most ``limit`` connections, kept alive between requests."""

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
        try:
            async with self._open().request(
                request.method,
                # Sent byte for byte as httpx built it: a Hawk signature covers the path.
                URL(str(request.url), encoded=True),
                headers=list(request.headers.multi_items()),
                data=await request.aread() or None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            ) as response:
                body = await response.read()
                return httpx.Response(
                    response.status,
                    headers=list(response.raw_headers),
                    stream=httpx.ByteStream(body),
                    extensions={"http_version": b"HTTP/1.1",
                                "reason_phrase": (response.reason or "").encode()},
                )
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

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
