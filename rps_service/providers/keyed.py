"""One lock per key (an account, a server), made on first use, gone when nobody needs it.

The vendors' caches (a catalogue, a token, a server's id, a profile) are filled once per
key even when a burst of cold events asks at the same moment: the first caller fills the
cache under the key's lock, the others wait for it and find the cache filled. The locks
are held weakly: a key's lock lives while some caller holds or waits for it, so accounts
whose credentials were rotated away leave nothing behind.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


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
