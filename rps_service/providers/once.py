"""Something a vendor must create once per key (a server object, a profile), single-flight.

The first caller for a key runs the creation while later callers for the same key wait for
it; once it succeeded the key is remembered and nobody waits again (a failure is not
remembered: the next caller tries again). A key's lock is dropped once the key is done, so
keys that are many (one per device) cost only their entry in the set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable


class CreatedOnce:
    """The keys whose creation has succeeded, and the creations under way."""

    def __init__(self) -> None:
        self._done: set[Hashable] = set()
        self._locks: dict[Hashable, asyncio.Lock] = {}

    async def ensure(self, key: Hashable, create: Callable[[], Awaitable[None]]) -> None:
        """Run ``create`` unless ``key`` is done; concurrent callers of a key run it once."""
        if key in self._done:
            return
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self._done:
                await create()
                self._done.add(key)
        self._locks.pop(key, None)

    def forget(self, key: Hashable) -> None:
        """Create ``key`` again at its next use (the vendor lost it)."""
        self._done.discard(key)
