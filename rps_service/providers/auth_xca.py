"""The ``X-Ca-*`` request signature of Yealink's RPS JSON API (v3.6, ``/api/open/v1/``).

Every call carries ``X-Ca-Key`` (the AccessKey ID), ``X-Ca-Nonce`` (a fresh UUID),
``X-Ca-Timestamp`` (Unix milliseconds) and ``X-Ca-Signature``; a call with a body also
carries ``Content-MD5``, the base64 MD5 of the exact body bytes. The signature is
base64(HMAC-SHA256(AccessKey secret, string to sign)), the string to sign being these lines
joined by ``\\n`` with no newline at the end, as Yealink's own signing demo builds it:

1. the HTTP method in upper case;
2. ``Content-MD5:<value>``, only when there is a body;
3. ``X-Ca-Key:<id>``, ``X-Ca-Nonce:<nonce>``, ``X-Ca-Timestamp:<ms>``;
4. the URL's path without its leading slash (``api/open/v1/device/add``);
5. only for a call with query parameters: the parameters sorted by name as ``k=v`` joined
   by ``&`` (a parameter with an empty value is written as its name alone), values as they
   are, not URL-encoded.

Each signing draws a new nonce and timestamp, so a retried request is never a replay.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Generator, Iterable

import httpx

KEY = "X-Ca-Key"
NONCE = "X-Ca-Nonce"
TIMESTAMP = "X-Ca-Timestamp"
SIGNATURE = "X-Ca-Signature"
CONTENT_MD5 = "Content-MD5"


def content_md5(body: bytes) -> str:
    """Base64 of the MD5 of the body bytes, as ``Content-MD5`` carries it."""
    digest = hashlib.md5(body, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def query_line(params: Iterable[tuple[str, str]]) -> str:
    """The query parameters as the string to sign takes them (sorted, unencoded)."""
    return "&".join(f"{k}={v}" if v else k for k, v in sorted(params))


def string_to_sign(method: str, path: str, key_id: str, nonce: str, timestamp: str, *,
                   md5: str | None = None, params: Iterable[tuple[str, str]] = ()) -> str:
    """The text the signature covers (module docstring)."""
    lines = [method.upper()]
    if md5:
        lines.append(f"{CONTENT_MD5}:{md5}")
    lines += [f"{KEY}:{key_id}", f"{NONCE}:{nonce}", f"{TIMESTAMP}:{timestamp}",
              path.removeprefix("/")]
    query = query_line(params)
    if query:
        lines.append(query)
    return "\n".join(lines)


def sign(secret: str, text: str) -> str:
    """base64(HMAC-SHA256(secret, text))."""
    mac = hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


class XcaAuth(httpx.Auth):
    """Signs one RPS call (the headers above); no retry: a refusal is the answer."""

    requires_request_body = True

    def __init__(self, key_id: str, secret: str, clock: Callable[[], float] = time.time,
                 nonce: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self.key_id = key_id
        self.secret = secret
        self.clock = clock
        self.nonce = nonce

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign(request)
        yield request

    def sign(self, request: httpx.Request) -> None:
        """Set the ``X-Ca-*`` headers (and ``Content-MD5`` for a body) on ``request``."""
        nonce, timestamp = self.nonce(), str(int(self.clock() * 1000))
        md5 = content_md5(request.content) if request.content else None
        if md5:
            request.headers[CONTENT_MD5] = md5
        request.headers[KEY] = self.key_id
        request.headers[NONCE] = nonce
        request.headers[TIMESTAMP] = timestamp
        text = string_to_sign(request.method, request.url.path, self.key_id, nonce, timestamp,
                              md5=md5, params=request.url.params.multi_items())
        request.headers[SIGNATURE] = sign(self.secret, text)
