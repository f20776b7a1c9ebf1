"""What instances sharing one database share besides the journal: each vendor account's rate
and throttling pause, and the phones' Digest nonce keys and nonce counts (docs/instances.md).

Every expiry is written and compared with the database's own clock (``NOW(6)``), never a
host's: two hosts whose clocks differ still agree on which rows are alive.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rps_service.logs import get_logger
from rps_service.store.sealing import NONCE_KEY, SealingQueries
from rps_service.store.secrets import SecretError
from rps_service.store.sql import DuplicateKey, placeholders

log = get_logger()

#: Rows of instances gone for longer than this (seconds) are deleted by the next heartbeat.
FORGET_AFTER = 3600.0


@dataclass(frozen=True)
class Claim:
    """A live instance with work for an account, since when (database time)."""

    account: str
    owner: str
    since: datetime


@dataclass(frozen=True)
class Claims:
    """What a heartbeat read: the live claims on this instance's accounts, and the time."""

    now: datetime
    claims: list[Claim]


class ClusterQueries(SealingQueries):
    """The shared account state and the phones' nonce keys and counts."""

    #: The database's clock, and a time ``?`` later (the bound value: :meth:`_later`).
    now_sql = "NOW(6)"
    later_sql = "(NOW(6) + INTERVAL ? MICROSECOND)"
    greatest_function = "GREATEST"

    def _later(self, seconds: float) -> Any:
        return int(seconds * 1_000_000)

    def account_id(self, key: str) -> str:
        """The name an account goes by in the shared tables: a keyed hash of its key (which
        holds a digest of the account's secrets), the same on every instance."""
        return (self.lookup("rate-account", key) or "")[:32] or _plain_digest(key)

    async def beat_rate_claims(self, owner: str, accounts: Sequence[str], ttl: float,
                               dropped: Sequence[str] = ()) -> Claims:
        """Claim ``accounts`` for ``ttl`` seconds more (a claim that had expired starts
        anew), give up the ``dropped`` ones, and read every live claim on ``accounts``.

        Each statement is a transaction of its own, touching only this instance's rows by
        primary key: heartbeats of several instances never wait for one another.
        """
        now, later = self.now_sql, self.later_sql
        if accounts:
            rows = ", ".join([f"(?, ?, {now}, {later})"] * len(accounts))
            params: list[Any] = []
            for account in accounts:
                params += [owner, account, self._later(ttl)]
            async with self._tx() as tx:
                # ``since`` first: MySQL evaluates the assignments in order.
                await tx.execute(
                    f"INSERT INTO rps_rate_claims (owner, account, since, expires_at)"
                    f" VALUES {rows} {self._on_claim_clash()}"
                    f" since = CASE WHEN rps_rate_claims.expires_at < {now} THEN {now}"
                    f" ELSE rps_rate_claims.since END,"
                    f" expires_at = {self._new('expires_at')}", params)
        if dropped:
            async with self._tx() as tx:
                await tx.execute(
                    "DELETE FROM rps_rate_claims WHERE owner = ?"
                    f" AND account IN ({placeholders(len(dropped))})", [owner, *dropped])
        async with self._tx() as tx:
            found = await tx.fetchall(
                f"SELECT account, owner, since, {now} FROM rps_rate_claims"
                f" WHERE account IN ({placeholders(len(accounts))}) AND expires_at > {now}"
                " ORDER BY account, since, owner", list(accounts)) if accounts else []
            clock = [found[0][3]] if found else await tx.fetchone(f"SELECT {now}") or [None]
        return Claims(self._time(clock[0]), [
            Claim(str(a), str(o), self._time(s)) for a, o, s, _ in found])

    async def forget_rate_claims(self) -> int:
        """Delete the claims of instances gone long ago."""
        async with self._tx() as tx:
            return await tx.execute(
                f"DELETE FROM rps_rate_claims WHERE expires_at < {self.later_sql}",
                [self._later(-FORGET_AFTER)])

    async def drop_rate_claims(self, owner: str, after: float = 1.0) -> None:
        """A stopping instance gives its shares back ``after`` seconds from now (when its
        last calls are that old: a receiver counts calls per second)."""
        async with self._tx() as tx:
            await tx.execute(f"UPDATE rps_rate_claims SET expires_at = {self.later_sql}"
                             " WHERE owner = ?", [self._later(after), owner])

    async def share_pause(self, account: str, seconds: float) -> None:
        """Pause ``account`` on every instance for ``seconds`` (a longer pause stays)."""
        async with self._tx() as tx:
            await tx.execute(
                "INSERT INTO rps_account_pauses (account, paused_until)"
                f" VALUES (?, {self.later_sql})"
                f" {self._on_pause_clash()} paused_until = {self.greatest_function}"
                f"(rps_account_pauses.paused_until, {self._new('paused_until')})",
                [account, self._later(seconds)])

    async def account_pauses(self) -> list[tuple[str, float]]:
        """Every account paused now, with the seconds its pause has left."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                f"SELECT account, paused_until, {self.now_sql} FROM rps_account_pauses"
                f" WHERE paused_until > {self.now_sql}")
        return [(str(account), (self._time(until) - self._time(now)).total_seconds())
                for account, until, now in rows]

    async def forget_pauses(self) -> int:
        """Delete pauses that ended long ago."""
        async with self._tx() as tx:
            return await tx.execute(
                f"DELETE FROM rps_account_pauses WHERE paused_until < {self.later_sql}",
                [self._later(-FORGET_AFTER)])

    # -- the phones' Digest nonces ---------------------------------------------------------

    async def nonce_keys(self, periods: Sequence[int]) -> dict[int, bytes]:
        """The nonce key of each period, made (by whichever instance asks first) when
        missing. A key that no longer opens (the secret key was rotated) is replaced."""
        keys, unreadable = await self._read_nonce_keys(periods)
        missing = [p for p in periods if p not in keys]
        if not missing:
            return keys
        async with self._tx() as tx:
            for period in missing:
                if period in unreadable:
                    await tx.execute("DELETE FROM rps_ztp_keys WHERE period = ? AND"
                                     " nonce_key = ?", [period, unreadable[period]])
                key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
                sealed = self.seal_value(key, NONCE_KEY.cell((period,)))
                with contextlib.suppress(DuplicateKey):  # another instance was first
                    await tx.execute("INSERT INTO rps_ztp_keys (period, nonce_key, created_at)"
                                     f" VALUES (?, ?, {self.now_sql})", [period, sealed])
        keys, _ = await self._read_nonce_keys(periods)
        return keys

    async def _read_nonce_keys(self, periods: Sequence[int]
                               ) -> tuple[dict[int, bytes], dict[int, str]]:
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT period, nonce_key FROM rps_ztp_keys"
                f" WHERE period IN ({placeholders(len(periods))})", list(periods))
        keys: dict[int, bytes] = {}
        unreadable: dict[int, str] = {}
        for period, sealed in rows:
            try:
                opened = self.open_value(str(sealed), NONCE_KEY.cell((int(period),)))
            except SecretError:  # sealed with a key this database no longer uses
                unreadable[int(period)] = str(sealed)
                continue
            if opened:
                keys[int(period)] = base64.b64decode(opened)
        return keys, unreadable

    async def use_nonce_count(self, nonce: str, count: int, lifetime: float) -> bool:
        """Accept nonce count ``count`` of ``nonce`` once, on whichever instance: it must
        exceed every count this nonce was used with before."""
        async with self._tx() as tx:
            if await tx.execute("UPDATE rps_ztp_nonces SET nc = ? WHERE nonce = ? AND nc < ?",
                                [count, nonce, count]):
                return True
            try:
                await tx.execute(
                    f"INSERT INTO rps_ztp_nonces (nonce, nc, expires_at)"
                    f" VALUES (?, ?, {self.later_sql})", [nonce, count, self._later(lifetime)])
            except DuplicateKey:
                return False  # used before with this count or a higher one
        return True

    async def forget_nonces(self) -> int:
        """Delete the counts of nonces that can only be stale now."""
        async with self._tx() as tx:
            return await tx.execute(f"DELETE FROM rps_ztp_nonces WHERE expires_at < {self.now_sql}")

    # -- dialect ---------------------------------------------------------------------------

    def _on_claim_clash(self) -> str:
        return "ON DUPLICATE KEY UPDATE"

    def _on_pause_clash(self) -> str:
        return "ON DUPLICATE KEY UPDATE"

    def _new(self, column: str) -> str:
        return f"VALUES({column})"

    def _time(self, value: Any) -> datetime:
        return self.convert_time(value) or datetime.min


def _plain_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]
