"""Access tokens per vendor account: fetched once, shared, refreshed before they expire.

For vendors whose API takes a bearer token (YMCS, GDMS): concurrent calls on a cold cache
share one token request; a token is refreshed ``refresh_before`` seconds before it expires;
a token the vendor refused (401) is dropped so the next call fetches a new one. Failures
are never cached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Token:
    """A bearer token and when it stops being valid (``clock`` time)."""

    value: str = field(repr=False)
    expires: float
    refresh: str | None = field(default=None, repr=False)  # a refresh token, if any


class TokenCache:
    """Tokens by account key; ``fetch(account_key, previous)`` gets a new one."""

    def __init__(self, fetch: Callable[[str, Token | None], Awaitable[Token]], *,
                 refresh_before: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.refresh_before = refresh_before
        self._clock = clock
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def cached(self, key: str) -> Token | None:
        """The account's token if it is still fresh enough to use."""
        token = self._tokens.get(key)
        if token is not None and token.expires - self.refresh_before > self._clock():
            return token
        return None

    async def get(self, key: str) -> Token:
        """A fresh token for the account (fetched if need be, once for all callers)."""
        token = self.cached(key)
        if token is not None:
            return token
        async with self._locks.setdefault(key, asyncio.Lock()):
            token = self.cached(key)
            if token is None:
                token = await self._fetch(key, self._tokens.get(key))
                self._tokens[key] = token
            return token

    def drop(self, key: str, token: Token | None = None) -> None:
        """Forget the account's token (only ``token``, if given: a newer one stays)."""
        current = self._tokens.get(key)
        if current is not None and (token is None or current.value == token.value):
            del self._tokens[key]

    def clear(self) -> None:
        self._tokens.clear()
        self._locks.clear()


class TokenAuth(httpx.Auth):
    """Signing with an account's token from a :class:`TokenCache` (YMCS, GDMS).

    Fetching a token is a request of its own, with its own turn under the account's rate
    limit. :class:`~rps_service.providers.http.VendorHttp` calls :meth:`prepare` before the
    signed request takes its turn, so that turn is never spent waiting for the token (and
    the two requests never go out together).
    """

    def __init__(self, tokens: TokenCache, key: str) -> None:
        self.tokens = tokens
        self.key = key
        self._prepared: Token | None = None

    async def prepare(self) -> None:
        """Get the token to sign with (fetched if need be)."""
        self._prepared = await self.tokens.get(self.key)

    async def token(self) -> Token:
        """The token to sign with: the one :meth:`prepare` got (once), else the cache's."""
        token, self._prepared = self._prepared, None
        return token or await self.tokens.get(self.key)

    def sync_auth_flow(self, request: httpx.Request
                       ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError(f"{type(self).__name__} fetches tokens asynchronously: "
                           "use an async client")
