"""Access tokens per vendor account: fetched once, shared, refreshed before they expire.

For vendors whose API takes a bearer token (YMCS, GDMS): concurrent calls on a cold cache
share one token request; a token is refreshed ``refresh_before`` seconds before it expires;
a token the vendor refused (401) is dropped so the next call fetches a new one. Failures
are never cached.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import httpx

from rps_service.providers.keyed import KeyedLocks, drop_accounts


@dataclass(frozen=True)
class Token:
    """A bearer token and when it stops being valid (``clock`` time)."""

    value: str = field(repr=False)
    expires: float
    refresh: str | None = field(default=None, repr=False)  # a refresh token, if any


class Keyed(Protocol):
    """An account as the cache knows it: by its stable key (never its secrets)."""

    @property
    def key(self) -> str: ...


A = TypeVar("A", bound=Keyed)


class TokenCache(Generic[A]):
    """Tokens by account; ``fetch(account, previous, mac)`` gets a new one.

    ``previous`` is the account's last token, also after it was dropped (refused or
    expired), so that a vendor's refresh token in it can serve for the next one; ``mac``
    names the device whose call needed the token, for the log line.
    """

    def __init__(self, fetch: Callable[[A, Token | None, str], Awaitable[Token]], *,
                 refresh_before: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.refresh_before = refresh_before
        self._clock = clock
        self._tokens: dict[str, Token] = {}
        self._dropped: dict[str, Token] = {}
        self._locks: KeyedLocks[str] = KeyedLocks()

    def cached(self, account: A) -> Token | None:
        """The account's token if it is still fresh enough to use."""
        token = self._tokens.get(account.key)
        if token is not None and token.expires - self.refresh_before > self._clock():
            return token
        return None

    def latest(self, account: A) -> Token | None:
        """The account's newest token, fresh or not, dropped or not (to mask it in texts)."""
        return self._tokens.get(account.key) or self._dropped.get(account.key)

    async def get(self, account: A, mac: str = "-") -> Token:
        """A fresh token for the account (fetched if need be, once for all callers)."""
        token = self.cached(account)
        if token is not None:
            return token
        async with self._locks(account.key):
            token = self.cached(account)
            if token is None:
                token = await self._fetch(account, self.latest(account), mac)
                self._tokens[account.key] = token
                self._dropped.pop(account.key, None)
            return token

    def drop(self, account: A, token: Token | None = None) -> None:
        """Stop using the account's token (only ``token``, if given: a newer one stays)."""
        current = self._tokens.get(account.key)
        if current is not None and (token is None or current.value == token.value):
            self._dropped[account.key] = self._tokens.pop(account.key)

    def forget(self, account: A) -> None:
        """Forget every token of the account: the next one is fetched from nothing."""
        self._tokens.pop(account.key, None)
        self._dropped.pop(account.key, None)

    def forget_accounts(self, keys: Collection[str]) -> None:
        """Forget every token of the accounts ``keys`` (by key): accounts gone quiet, whose
        credentials may be rotated away (a token is a secret: none is kept longer)."""
        drop_accounts(self._tokens, keys)
        drop_accounts(self._dropped, keys)

    def clear(self) -> None:
        self._tokens.clear()
        self._dropped.clear()


class TokenAuth(httpx.Auth):
    """Signing with an account's token from a :class:`TokenCache` (YMCS, GDMS).

    Fetching a token is a request of its own, with its own turn under the account's rate
    limit. :class:`~rps_service.providers.http.VendorHttp` calls :meth:`prepare` before the
    signed request takes its turn, so that turn is never spent waiting for the token (and
    the two requests never go out together).
    """

    def __init__(self, tokens: TokenCache[Any], account: Keyed, mac: str = "-") -> None:
        self.tokens = tokens
        self.account = account
        self.mac = mac
        self._prepared: Token | None = None

    async def prepare(self) -> None:
        """Get the token to sign with (fetched if need be)."""
        self._prepared = await self.tokens.get(self.account, self.mac)

    async def token(self) -> Token:
        """The token to sign with: the one :meth:`prepare` got (once), else the cache's."""
        token, self._prepared = self._prepared, None
        return token or await self.tokens.get(self.account, self.mac)

    def drop(self, token: Token) -> None:
        """The vendor refused ``token``: the next :meth:`token` is a new one."""
        self.tokens.drop(self.account, token)

    def sync_auth_flow(self, request: httpx.Request
                       ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError(f"{type(self).__name__} fetches tokens asynchronously: "
                           "use an async client")
