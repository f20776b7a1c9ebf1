"""Run the sandbox in-process on loopback, for provider, daemon and benchmark tests."""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from .app import create_app
from .state import SandboxState

_SHUTDOWN_TIMEOUT = 2.0  # held requests are released at close, so this is only a backstop


class RunningSandbox:
    """A started sandbox: ``url`` ends in ``/api/v1/``; ``await close()`` stops it.

    Also an async context manager (``async with await start_sandbox() as sandbox``).
    """

    def __init__(self, runner: web.AppRunner, state: SandboxState, host: str, port: int) -> None:
        self.state = state
        self.host = host
        self.port = port
        self.base_url = f"http://{host}:{port}"
        self.url = f"{self.base_url}/api/v1/"
        self.control_url = f"{self.base_url}/_sandbox/"
        self._runner = runner

    async def close(self) -> None:
        """Release held requests and stop serving."""
        self.state.release()
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_sandbox(
    state: SandboxState | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSandbox:
    """Serve a sandbox on ``host:port`` (port 0 picks a free one) until closed."""
    state = state or SandboxState()
    runner = web.AppRunner(create_app(state), access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return RunningSandbox(runner, state, host, int(bound))
