"""What every vendor emulator of the sandbox provides, on the shared server core.

The core (:mod:`rps_service.sandbox.app`) runs every emulator's requests through the same
pipeline: ``paused``/``hang`` holds, injected faults (``fail_next``, ``error_rate``,
``rate_limit_rate``), the per-account throttle (``throttle_rate`` requests per second,
answered in the vendor's own way by :meth:`Emulator.throttled`), the handler (which
authenticates as strictly as the vendor does), then the latency. It counts requests per
route, records each MAC's writes in order (``state.history``) and notices two writes for one
MAC at once (``state.overlaps``).

An emulator is one module: its routes under its ``prefix``, its world (accounts, devices,
ownership), and the facts the shared contract tests need (demo and wrong credentials, a MAC
another account owns, what it holds for a MAC).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

if TYPE_CHECKING:
    from .state import SandboxState


@dataclass(frozen=True)
class Held:
    """What an emulator holds for one MAC of the demo account: where the phone is sent
    and, for vendors that carry them, the credentials it is given."""

    url: str | None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict)


class Emulator(abc.ABC):
    """One vendor's API in the sandbox."""

    #: The provider it emulates (its line in :mod:`rps_service.vendors`).
    name: ClassVar[str]
    #: Where its routes live on the sandbox (``/yealink``); SRAPS keeps the root.
    prefix: ClassVar[str]

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    @abc.abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Register the vendor's routes (named, for ``state.counts``) under ``prefix``."""

    @abc.abstractmethod
    def api_url(self, base: str) -> str:
        """The ``api_url`` a daemon's ``[<name>]`` section needs for a sandbox at ``base``."""

    @abc.abstractmethod
    def demo_credentials(self) -> dict[str, str | bool]:
        """Credential keys of the seeded demo account (printed by ``rps-service sandbox``)."""

    @abc.abstractmethod
    def wrong_credentials(self) -> dict[str, str | bool]:
        """The demo account's keys with a wrong secret: the vendor refuses the login."""

    #: A MAC (12 upper-case hex digits) that another account of the vendor owns.
    foreign_mac: ClassVar[str]

    def sample_mac(self, index: int) -> str:
        """A MAC the vendor accepts for its phones (tests make devices with these)."""
        return f"00156500{index:04X}"

    def event_fields(self, mac: str) -> dict[str, Any]:
        """Fields an ``add`` event for ``mac`` needs besides the common ones (``sn``...)."""
        return {}

    @abc.abstractmethod
    def holds(self, mac: str) -> Held | None:
        """What the demo account holds for ``mac`` (12 upper-case hex), or None."""

    def account_of(self, request: web.Request) -> str:
        """Who is calling (for the per-account throttle), before authentication."""
        return request.headers.get("Authorization", "")[:64] or request.remote or "-"

    async def write_mac(self, request: web.Request) -> str | None:
        """The MAC (lower-case hex) a request writes, for ordering checks; None for reads."""
        mac = request.match_info.get("mac")
        return mac.lower() if mac and request.method in ("PUT", "POST", "DELETE") else None

    async def unmatched(self, request: web.Request, exc: web.HTTPException
                        ) -> web.StreamResponse:
        """A path or method no route of the emulator takes."""
        return web.json_response({"message": exc.reason}, status=exc.status)

    def throttled(self, retry_after: int) -> web.Response:
        """How the vendor answers a request over its rate."""
        return web.json_response({"message": "Too Many Requests"}, status=429,
                                 headers={"Retry-After": str(retry_after)})

    def fault(self, status: int) -> web.Response:
        """An injected failure (``fail_next``, ``error_rate``) in the vendor's shape."""
        return web.json_response({"message": f"injected {status}"}, status=status)

    def snapshot(self) -> dict[str, Any]:
        """The emulator's world for ``GET /_sandbox/state`` (never secrets)."""
        return {}

    def describe(self, base: str) -> list[str]:
        """Lines ``rps-service sandbox`` prints about this emulator (demo keys are fake)."""
        keys = " ".join(f"{k}={v}" for k, v in self.demo_credentials().items())
        return [f"{self.name}: api_url={self.api_url(base)} {keys}"]
