"""What the XML-RPC emulators share: strict request parsing, Basic auth, answers and faults.

Real XML-RPC redirection services take ``POST`` with ``Content-Type: text/xml`` and HTTP
Basic auth; a wrong login is an HTTP 401 before any XML is read. The helpers here refuse
what such a server would (wrong method, content type or XML), so a client that passes them
speaks the protocol, not just Python's ``xmlrpc.client`` dialect.
"""

from __future__ import annotations

import base64
import binascii
import xmlrpc.client
from collections.abc import Callable
from typing import Any, ClassVar
from xml.parsers.expat import ExpatError
from xml.sax.saxutils import escape

from aiohttp import web

from .emulator import Emulator

XML = "text/xml"


class XmlRpcRefused(Exception):
    """A request refused before any method ran: ``response`` is the answer to give."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def basic_login(request: web.Request) -> tuple[str, str] | None:
    """The Basic username and password of a request, or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def unauthorized(realm: str) -> web.Response:
    """HTTP 401 with a Basic challenge (how these services refuse a login)."""
    return web.Response(status=401, text="Unauthorized",
                        headers={"WWW-Authenticate": f'Basic realm="{realm}"'})


async def parse_call(request: web.Request, check_login: Callable[[str, str], bool],
                     realm: str) -> tuple[str, tuple[Any, ...], str]:
    """``(method, params, user)`` of an authenticated XML-RPC call, or XmlRpcRefused."""
    login = basic_login(request)
    if login is None or not check_login(*login):
        raise XmlRpcRefused(unauthorized(realm))
    if request.method != "POST":
        raise XmlRpcRefused(web.Response(status=405, headers={"Allow": "POST"}))
    if request.content_type != XML:
        raise XmlRpcRefused(web.Response(status=415, text="Content-Type must be text/xml"))
    try:
        params, method = xmlrpc.client.loads(await request.read(), use_builtin_types=True)
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError, IndexError):
        raise XmlRpcRefused(fault(-32700, "parse error: not well formed")) from None
    if not method:
        raise XmlRpcRefused(fault(-32600, "invalid request: no methodName"))
    return method, params, login[0]


def answer(value: Any) -> web.Response:
    """A methodResponse holding ``value``."""
    body = xmlrpc.client.dumps((value,), methodresponse=True, encoding="utf-8")
    return web.Response(body=body.encode("utf-8"), content_type=XML, charset="utf-8")


def fault(code: int, text: str) -> web.Response:
    """A methodResponse holding a fault (HTTP 200, as XML-RPC servers answer)."""
    body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True,
                               encoding="utf-8")
    return web.Response(body=body.encode("utf-8"), content_type=XML, charset="utf-8")


def untyped_answer(ok: bool, text: str, namespaces: str = "") -> web.Response:
    """``[boolean, value]`` with the value untyped (``<value>OK</value>``), as the
    Yealink-style RPS services write it; ``namespaces``: attributes of the
    ``methodResponse`` element (Apache XML-RPC declares its extensions there)."""
    opening = f"<methodResponse {namespaces}>" if namespaces else "<methodResponse>"
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n{opening}<params><param><value>'
            f"<array><data><value><boolean>{int(ok)}</boolean></value>"
            f"<value>{escape(text)}</value></data></array>"
            "</value></param></params></methodResponse>\n")
    return web.Response(body=body.encode("utf-8"), content_type=XML, charset="utf-8")


def string_params(method: str, params: tuple[Any, ...], count: int) -> tuple[str, ...]:
    """``count`` string parameters, as every documented method takes (else a fault)."""
    if len(params) != count or not all(isinstance(p, str) for p in params):
        raise XmlRpcRefused(fault(-32602, f"{method}: expected {count} string parameters"))
    return params


class XmlRpcEmulator(Emulator):
    """An XML-RPC vendor: Basic login, one ``POST`` endpoint, and plain-text HTTP errors
    (these services answer a wrong path, a throttle or an outage as a web server does)."""

    #: The methods that write a MAC, for the sandbox's ordering checks.
    write_methods: ClassVar[frozenset[str]]

    def account_of(self, request: web.Request) -> str:
        login = basic_login(request)
        return login[0] if login else request.remote or "-"

    async def write_mac(self, request: web.Request) -> str | None:
        if request.method != "POST":
            return None
        try:
            params, method = xmlrpc.client.loads(await request.read(), use_builtin_types=True)
        except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError, IndexError):
            return None  # an unparsable body writes nothing
        return self.written_mac(params) if method in self.write_methods else None

    def written_mac(self, params: tuple[Any, ...]) -> str | None:
        """The MAC (lower-case hex) a write's parameters name: by default its first one."""
        first = params[0] if params else None
        return first.lower() if isinstance(first, str) and first else None

    async def unmatched(self, request: web.Request, exc: web.HTTPException
                        ) -> web.StreamResponse:
        return web.Response(status=exc.status, text=exc.reason)

    def throttled(self, retry_after: int) -> web.Response:
        return web.Response(status=429, text="Too Many Requests",
                            headers={"Retry-After": str(retry_after)})

    def fault(self, status: int) -> web.Response:
        return web.Response(status=status, text=f"injected {status}")
