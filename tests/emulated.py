"""Provider unit tests against the sandbox's emulators, served in-process on loopback.

``sandbox`` and ``transport`` are fixtures (import them into a test module by name). For
answers no emulator gives (a 502 whose text echoes a secret, an odd 400), :class:`Scripted`
stands in front of the transport: a scripted answer is given once, to the first request
that matches it, and every other request goes to the emulator; it also records what was
sent, bodies included.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import httpx
import pytest

from rps_service.providers.transport import AiohttpTransport
from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import SandboxState

Outcome: TypeAlias = (httpx.Response | Callable[[httpx.Request], httpx.Response]
                      | Callable[[httpx.Request], Awaitable[httpx.Response]])


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxState(settings_count=10))
    yield running
    await running.close()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    sent = AiohttpTransport()
    yield sent
    await sent.aclose()


class SyncedClock:
    """A provider's clock (seconds), standing still unless moved; each move is made on the
    sandbox's server clock too, so both sides agree on token lifetimes and timestamps."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.sandbox = sandbox
        self.now = float(int(time.time()))
        self.sync()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.sync()

    def sync(self) -> None:
        self.sandbox.state.clock_offset = self.now - time.time()


class Scripted(httpx.AsyncBaseTransport):
    """Answers scripted requests itself, once each; sends the others on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, root: str,
                 check: Callable[[httpx.Request], None] | None = None) -> None:
        self.inner = inner
        self.root = root
        self.check = check  # run on every request before it goes anywhere
        self.script: list[tuple[str, Outcome]] = []
        self.sent: list[httpx.Request] = []  # every request as sent, headers and all
        self.forwarded: list[httpx.Request] = []  # those the emulator answered
        #: Every request sent: method, path (``root`` cut off) with query, and body (parsed
        #: JSON, else the bytes; None when empty).
        self.seen: list[tuple[str, str, Any]] = []

    def calls(self) -> list[str]:
        """``METHOD path?query`` of every request sent, in order."""
        return [f"{method} {target}" for method, target, _ in self.seen]

    def inject(self, part: str, outcome: Outcome) -> None:
        """Answer the next request whose ``METHOD path?query`` (the API's ``root`` cut off
        the path) contains ``part`` with ``outcome``: a response, or one made from the
        request (an async maker may ask the emulator first, through ``inner``)."""
        self.script.append((part, outcome))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode().removeprefix(self.root)
        content = await request.aread()
        self.seen.append((request.method, path, _decoded(content)))
        # A snapshot: a signing step may re-sign the same request object for a retry.
        self.sent.append(httpx.Request(request.method, request.url,
                                       headers=request.headers.copy(), content=content))
        if self.check is not None:
            self.check(request)
        for i, (part, outcome) in enumerate(self.script):
            if part in f"{request.method} {path}":
                del self.script[i]
                if isinstance(outcome, httpx.Response):
                    return outcome
                answer = outcome(request)
                return await answer if inspect.isawaitable(answer) else answer
        self.forwarded.append(request)
        return await self.inner.handle_async_request(request)


def _decoded(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content
