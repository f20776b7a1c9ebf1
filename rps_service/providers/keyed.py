"""Once per key: a lock per key made on first use and gone when nobody needs it, and the
creations a vendor must run once per key.

The vendors' caches (a catalogue, a token, a server's id, a profile) are filled once per
key even when a burst of cold events asks at the same moment: the first caller fills the
cache under the key's lock, the others wait for it and find the cache filled. The locks
are held weakly: a key's lock lives while some caller holds or waits for it, so accounts
whose credentials were rotated away leave nothing behind. What the caches hold for such
accounts goes with :func:`drop_accounts` when the provider forgets them
(:meth:`~rps_service.providers.vendor.VendorProvider.forget_accounts`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Collection, Hashable, MutableMapping
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def drop_accounts(cache: MutableMapping[K, Any] | set[K], accounts: Collection[str]) -> None:
    """Remove from ``cache`` the entries of ``accounts`` (account keys): those keyed by an
    account key, or by a tuple whose first item is one (``(account key, URL)``)."""
    for key in [key for key in cache
                if (key[0] if isinstance(key, tuple) else key) in accounts]:
        if isinstance(cache, set):
            cache.discard(key)
        else:
            del cache[key]


class KeyedLocks(Generic[K]):
    """``async with locks(key):`` runs one caller per key at a time."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[K, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    def __call__(self, key: K) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def __len__(self) -> int:
        """Keys whose lock some caller holds or waits for."""
        return len(self._locks)


class CreatedOnce(Generic[K]):
    """Something a vendor must create once per key (a server object): the first caller for
    a key runs the creation while later ones wait for it; a success is remembered, a
    failure is not (the next caller tries again)."""

    def __init__(self) -> None:
        self._done: set[K] = set()
        self._locks: KeyedLocks[K] = KeyedLocks()

    async def ensure(self, key: K, create: Callable[[], Awaitable[None]]) -> None:
        """Run ``create`` unless ``key`` is done; concurrent callers of a key run it once."""
        if key in self._done:
            return
        async with self._locks(key):
            if key not in self._done:
                await create()
                self._done.add(key)

    def forget(self, key: K) -> None:
        """Create ``key`` again at its next use (the vendor lost it)."""
        self._done.discard(key)

    def forget_accounts(self, accounts: Collection[str]) -> None:
        """Forget every key of ``accounts`` (see :func:`drop_accounts`)."""
        drop_accounts(self._done, accounts)

    def clear(self) -> None:
        self._done.clear()
