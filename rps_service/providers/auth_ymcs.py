"""Yealink YMCS v2 request authentication: a bearer token plus ``timestamp`` and ``nonce``.

YMCS is OAuth2 client credentials with a twist: *every* request, the token request
included, carries a ``timestamp`` header (Unix time in milliseconds) and a ``nonce`` header
(random, at most 32 characters, never used twice). The token comes from ``POST /v2/token``
with ``Authorization: Basic base64(id:secret)`` and the JSON body
``{"grant_type": "client_credentials"}``; API calls send ``Authorization: Bearer <token>``.

:class:`YmcsAuth` signs one API request with the account's cached token
(:class:`~rps_service.providers.tokens.TokenCache`). After a 401 it drops that token, gets a
fresh one and sends the request once more with a new timestamp and nonce; a second 401 is
the vendor's real answer. The token request itself is built by :func:`token_request`.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx

from rps_service.providers.http import OPERATION
from rps_service.providers.tokens import Keyed, TokenAuth, TokenCache

TOKEN_PATH = "/v2/token"  # noqa: S105 - a path, not a secret
#: Peers send 32 random hex characters; a sibling Yealink API documents 32 as the maximum.
NONCE_BYTES = 16
JSON = "application/json"


def new_nonce() -> str:
    """32 random hex characters."""
    return secrets.token_hex(NONCE_BYTES)


def stamp(request: httpx.Request, clock: Callable[[], float] = time.time) -> None:
    """Give ``request`` a fresh ``timestamp`` (milliseconds) and ``nonce``."""
    request.headers["timestamp"] = str(int(clock() * 1000))
    request.headers["nonce"] = new_nonce()


def token_request(api_url: str, key_id: str, key_secret: str, *, user_agent: str,
                  clock: Callable[[], float] = time.time) -> httpx.Request:
    """``POST /v2/token`` for the account's AccessKey (client credentials, Basic)."""
    basic = base64.b64encode(f"{key_id}:{key_secret}".encode()).decode("ascii")
    body = json.dumps({"grant_type": "client_credentials"}, separators=(",", ":")).encode()
    request = httpx.Request("POST", api_url.rstrip("/") + TOKEN_PATH, content=body, headers={
        "Authorization": f"Basic {basic}", "Content-Type": JSON, "Accept": JSON,
        "User-Agent": user_agent})
    request.extensions[OPERATION] = "token"
    stamp(request, clock)
    return request


class YmcsAuth(TokenAuth):
    """Bearer token, timestamp and nonce on an API request; one retry after a 401."""

    def __init__(self, tokens: TokenCache[Any], account: Keyed, mac: str = "-",
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(tokens, account, mac)
        self.clock = clock

    async def async_auth_flow(self, request: httpx.Request
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        self._sign(request, token.value)
        response = yield request
        if response.status_code != 401:
            return
        # The token expired early or was revoked: a new one, and a new nonce, once.
        self.drop(token)
        token = await self.token()
        self._sign(request, token.value)
        yield request

    def _sign(self, request: httpx.Request, token: str) -> None:
        request.headers["Authorization"] = f"Bearer {token}"
        stamp(request, self.clock)
