"""Digest nonces that every instance on one database issues and verifies alike.

The nonce key of each period (``KEY_PERIOD``, a day) lives in the database, sealed like every
other secret (``rps_ztp_keys``); whichever instance asks first makes it. Every instance reads
the keys of the previous, current and next period every ``REFRESH`` seconds, signs new nonces
with the current one and accepts all three: the next key is known everywhere long before it
signs, and a nonce signed just before a rotation still verifies after it. A nonce count is
accepted once on any instance: the highest count used with a nonce is kept in the database
(``rps_ztp_nonces``) until the nonce can only be stale. See docs/instances.md.
"""

from __future__ import annotations

from rps_service.logs import get_logger
from rps_service.store import Store, StoreUnavailable
from rps_service.ztp.auth import NonceBook

log = get_logger()

KEY_PERIOD = 86_400.0  # seconds a nonce key signs new nonces
REFRESH = 60.0  # seconds between two reads of the keys
_RETRY = 5.0  # after a failed read
_SKEW = 5.0  # a nonce's count is kept this much past its lifetime (clock steps)


class SharedNonces:
    """Keeps a :class:`NonceBook` on the database's keys; checks nonce counts there."""

    def __init__(self, store: Store, book: NonceBook, period: float = KEY_PERIOD) -> None:
        self.store = store
        self.book = book
        self.period = period
        self._next_refresh = 0.0

    async def refresh(self, now: float) -> None:
        """Read the keys when due (a database that does not answer: the old keys stay)."""
        if now < self._next_refresh:
            return
        current = int(now // self.period)
        try:
            keys = await self.store.nonce_keys([current - 1, current, current + 1])
            if current == int(now // self.period) and keys.get(current):
                self.book.use_keys(keys[current], [keys[p] for p in sorted(keys)])
            await self.store.forget_nonces()
        except StoreUnavailable as exc:
            log.error("Nonce keys not read", component="ZTP", err=str(exc))
            self._next_refresh = now + _RETRY
            return
        self._next_refresh = now + REFRESH

    async def use(self, nonce: str, count: int) -> bool:
        """Accept ``count`` for ``nonce`` once across every instance."""
        return await self.store.use_nonce_count(nonce, count, self.book.lifetime + _SKEW)
