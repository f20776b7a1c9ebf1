"""An XML-RPC redirection service in-process (httpx.MockTransport) for provider unit tests.

It refuses what a real one would before any method runs (no or wrong Basic login: 401; not
``POST``/``text/xml``; a body that is not an XML-RPC call), records each call as the wire
carried it (the path, the method, the parameters and whether each was sent as
``<string>``), and answers from a script per method: a value, an ``xmlrpc.client.Fault``,
or a whole ``httpx.Response`` (429, 503...).
"""

from __future__ import annotations

import base64
import re
import xmlrpc.client
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from rps_service.models import Credentials
from rps_service.providers.protocol import CredentialSource
from rps_service.providers.section import ProviderSettings
from rps_service.providers.vendor import ProviderContext, VendorProvider

USER = "acct-user"
PASSWORD = "acct-password-0123456789"
KEY = "0123456789ab" + "S3cretPartOfTheUrlKey-xy"
NOW = 1_700_000_000.0


@dataclass(frozen=True)
class Call:
    """One call as it arrived."""

    path: str
    method: str
    params: tuple[Any, ...]
    all_strings: bool  # every parameter was a <string> on the wire


Answer = Any  # a value, an xmlrpc.client.Fault, or an httpx.Response


@dataclass
class FakeRpc:
    """Answers ``script[method]`` in order, then ``default(method, params)``."""

    default: Callable[[str, tuple[Any, ...]], Answer] = lambda method, params: True
    script: defaultdict[str, list[Answer]] = field(default_factory=lambda: defaultdict(list))
    calls: list[Call] = field(default_factory=list)
    user: str = USER
    password: str = PASSWORD

    def answer(self, method: str, *answers: Answer) -> None:
        self.script[method].extend(answers)

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return httpx.Response(401, text="Unauthorized",
                                  headers={"WWW-Authenticate": 'Basic realm="fake"'})
        if request.method != "POST" or request.headers.get("content-type") != "text/xml":
            return httpx.Response(415, text="POST text/xml only")
        params, method = xmlrpc.client.loads(request.content, use_builtin_types=True)
        values = re.findall(rb"<param>\s*<value>\s*<(\w+)>", request.content)
        self.calls.append(Call(request.url.path, method or "", params,
                               all(v == b"string" for v in values)))
        queued = self.script[method or ""]
        outcome = queued.pop(0) if queued else self.default(method or "", params)
        if isinstance(outcome, httpx.Response):
            return outcome
        if isinstance(outcome, xmlrpc.client.Fault):
            body = xmlrpc.client.dumps(outcome, methodresponse=True)
        else:
            body = xmlrpc.client.dumps((outcome,), methodresponse=True, allow_none=True)
        return httpx.Response(200, content=body.encode(), headers={"Content-Type": "text/xml"})


class NoStoredCredentials:
    """An empty ``rps_credentials`` table (master credentials come from rps.ini)."""

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        return None


def make(cls: type[VendorProvider], fake: FakeRpc, credentials: CredentialSource | None = None,
         **section: Any) -> VendorProvider:
    """A provider of ``cls`` on ``fake`` with rps.ini master credentials."""
    values: dict[str, Any] = {"enabled": True, "username": USER, "password": PASSWORD,
                              "provisioning_url": "https://pbx.test/ztprov/{server}/",
                              **section}
    settings: ProviderSettings = cls.settings_class(**values)
    context = ProviderContext(mode="master", retry_cap=300,
                              credentials=credentials or NoStoredCredentials(),
                              transport=httpx.MockTransport(fake), clock=lambda: NOW)
    return cls(settings, context)
