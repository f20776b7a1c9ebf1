"""GDMS OpenAPI request signing: an access token and a SHA-256 signature in the query.

Every GDMS call carries ``access_token``, ``timestamp`` (milliseconds) and ``signature`` in
its query. The signature is the lower-case hex SHA-256 of ``&k1=v1&k2=v2&…&`` over the
query's parameters (the signature itself left out) plus ``client_id`` and ``client_secret``,
sorted by name, with values as they are (not URL-encoded); a request with a body appends
the hex SHA-256 of the body bytes and ``&``. The client id and secret are signed but never
sent. :class:`GdmsAuth` signs with the account's token from a
:class:`~rps_service.providers.tokens.TokenCache` and, when GDMS refuses the token (expired
or revoked before its time), drops it and retries once with a new one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import httpx

from rps_service.providers.tokens import Keyed, Token, TokenAuth, TokenCache

#: Query parameters the signing step sets itself.
SIGNED_BY_US = ("access_token", "timestamp", "signature")
_TOKEN_WORDS = re.compile(r"token", re.IGNORECASE)
_REFUSED_WORDS = re.compile(r"expire|invalid|illegal|not exist|not found", re.IGNORECASE)


def sha256_hex(data: bytes | str) -> str:
    """Lower-case hex SHA-256 (of UTF-8 text, or of bytes)."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def password_hash(password: str) -> str:
    """The password GDMS's token call takes: hex SHA-256 of the hex MD5 of the login password."""
    md5 = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    return sha256_hex(md5)


def signature(params: Iterable[tuple[str, str]], client_id: str, client_secret: str,
              body: bytes = b"") -> str:
    """The ``signature`` of a request whose query (without ``signature``) is ``params``."""
    pairs = sorted([*params, ("client_id", client_id), ("client_secret", client_secret)])
    text = "&" + "&".join(f"{k}={v}" for k, v in pairs) + "&"
    if body:
        text += sha256_hex(body) + "&"
    return sha256_hex(text)


def token_refused(response: httpx.Response) -> bool:
    """True when GDMS says the access token is no good (expired, revoked, unknown).

    GDMS's answer is not published: an OAuth2 ``401``/``invalid_token`` and an envelope
    whose ``msg`` speaks of the token (``retCode`` not 0) both count.
    """
    if response.status_code == 401:
        return True
    try:
        data: Any = response.json()
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    if data.get("error") == "invalid_token":
        return True
    message = data.get("msg")
    return (data.get("retCode") not in (None, 0, "0") and isinstance(message, str)
            and bool(_TOKEN_WORDS.search(message)) and bool(_REFUSED_WORDS.search(message)))


class GdmsAuth(TokenAuth):
    """Signs one GDMS API call; a refused token is dropped and the call retried once.

    ``used`` collects the token values signed with, so error texts that echo a token can
    be masked.
    """

    requires_request_body = True

    def __init__(self, tokens: TokenCache[Any], account: Keyed, mac: str, client_id: str,
                 client_secret: str, timestamp: Callable[[], str]) -> None:
        super().__init__(tokens, account, mac)
        self.client_id = client_id
        self.client_secret = client_secret
        self.timestamp = timestamp
        self.used: list[str] = []

    async def async_auth_flow(self, request: httpx.Request
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        token = await self.token()
        self.sign(request, token)
        response = yield request
        if not token_refused(response):
            return
        # Refused before its time (revoked, or a login elsewhere replaced it): one retry
        # with a new token; a second refusal is the answer.
        self.drop(token)
        token = await self.token()
        self.sign(request, token)
        yield request

    def sign(self, request: httpx.Request, token: Token) -> None:
        """Set ``access_token``, a fresh ``timestamp`` and the ``signature`` in the query."""
        self.used.append(token.value)
        params = [(k, v) for k, v in request.url.params.multi_items() if k not in SIGNED_BY_US]
        params += [("access_token", token.value), ("timestamp", self.timestamp())]
        sig = signature(params, self.client_id, self.client_secret, request.content)
        request.url = request.url.copy_with(params=[*params, ("signature", sig)])
