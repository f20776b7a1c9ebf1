"""Which columns hold sealed secrets, and the queries that seal, probe and re-seal them.

The device, credentials and tenant queries seal on write and open on read through
:meth:`SealingQueries.seal_value` / :meth:`SealingQueries.open_value`. Here too: the data step
that seals what older versions stored in clear (run once after the SQL migrations, recorded in
``rps_data_steps``), the re-sealing a key rotation does, and the probes a start uses to tell a
wrong or missing key file (docs/secrets.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from rps_service.access import masked_url
from rps_service.clock import utcnow
from rps_service.logs import get_logger
from rps_service.store.secrets import (
    PREFIX,
    Cell,
    ForeignKeyError,
    SecretBox,
    SecretError,
    sealed_key_id,
)
from rps_service.store.sql import DuplicateKey, SqlBackend, Tx

log = get_logger()

#: The data step that seals the secrets of a database from before version 0.2.
SEAL_STEP = "seal-secrets"
#: Rows re-sealed per transaction: short locks, whatever the table's size.
BATCH = 500
#: What a URL key's keyed hash is computed for (``rps_devices.url_key_id``).
URL_KEY_LOOKUP = "url_key"


@dataclass(frozen=True)
class SecretColumn:
    """A column that holds one secret per row, and the columns that name the row."""

    table: str
    column: str
    keys: tuple[str, ...]

    def cell(self, row: Sequence[Any]) -> Cell:
        return Cell(self.table, self.column, tuple(row))


DEVICE_PASSWORD = SecretColumn("rps_devices", "http_password", ("provider", "mac"))
URL_KEY = SecretColumn("rps_devices", "url_key", ("provider", "mac"))
SERVER_ACCESS_PASSWORD = SecretColumn("rps_server_access", "http_password",
                                      ("provider", "server"))
TENANT_PASSWORD = SecretColumn("rps_servers", "http_password", ("server",))
KEY_SECRET = SecretColumn("rps_credentials", "access_key_secret", ("provider", "server"))
#: The phones' listener's Digest nonce keys, one a period (docs/instances.md).
NONCE_KEY = SecretColumn("rps_ztp_keys", "nonce_key", ("period",))
SECRET_COLUMNS = (DEVICE_PASSWORD, URL_KEY, SERVER_ACCESS_PASSWORD, TENANT_PASSWORD,
                  KEY_SECRET, NONCE_KEY)


def param_cell(provider: str, server: int, key: str) -> Cell:
    """Where a provider's secret credential key lives inside ``rps_credentials.params``."""
    return Cell("rps_credentials", f"params.{key}", (provider, server))


#: Turns a stored value that the current key did not seal into its clear text.
Convert = Callable[[str, Cell], str]


@dataclass
class Resealed:
    """What a pass over every secret did: values sealed anew, and those it could not open."""

    count: int = 0
    refused: list[str] = field(default_factory=list)

    def add(self, other: Resealed) -> None:
        self.count += other.count
        self.refused += other.refused


def _after(keys: Sequence[str], last: Sequence[Any]) -> tuple[str, list[Any]]:
    """Keyset paging: rows after ``last`` in ``keys`` order (one or two key columns)."""
    if len(keys) == 1:
        return f"{keys[0]} > ?", [last[0]]
    return f"({keys[0]} > ? OR ({keys[0]} = ? AND {keys[1]} > ?))", [last[0], last[0], last[1]]


class SealingQueries(SqlBackend):
    """Sealing and opening secrets with the loaded key; the data step and re-sealing."""

    def __init__(self) -> None:
        super().__init__()
        self._box: SecretBox | None = None
        self._secret_keys: Mapping[str, Sequence[str]] = {}
        # Once every value is sealed (the data step recorded), one found in clear in a
        # secret column was put there behind the daemon's back: refused like a forgery.
        self._strict = False

    def use_secrets(self, box: SecretBox, secret_keys: Mapping[str, Sequence[str]]) -> None:
        """Seal and open with ``box``; ``secret_keys`` names each provider's secret
        credential keys (sealed inside ``rps_credentials.params``)."""
        self._box = box
        self._secret_keys = secret_keys

    @property
    def secret_box(self) -> SecretBox | None:
        return self._box

    def _require_box(self) -> SecretBox:
        if self._box is None:
            raise SecretError("no secret key is loaded: a secret can be neither stored nor read")
        return self._box

    def seal_value(self, value: str | None, cell: Cell) -> str | None:
        """``value`` sealed for ``cell`` (None and '' stay as they are)."""
        return self._require_box().seal(value, cell) if value else value

    def open_value(self, value: str | None, cell: Cell) -> str | None:
        """The clear text of a stored value. One that cannot be trusted (sealed with another
        key or for another place, altered, or in clear) is logged and raises
        :class:`SecretError`."""
        if not value:
            return value
        try:
            if sealed_key_id(value) is None:
                if self._strict:
                    raise SecretError(f"{cell} holds a value in clear where only a sealed "
                                      "one belongs")
                return value
            return self._require_box().open(value, cell)
        except SecretError as exc:
            log.error("Secret refused", component="DATABASE", err=str(exc), hint=_hint(exc))
            raise

    def open_or_none(self, value: str | None, cell: Cell, refused: list[str]) -> str | None:
        """Like :meth:`open_value`, but a value that cannot be trusted is read as absent and
        its column named in ``refused``: one bad row must not stop a listing or a lease."""
        try:
            return self.open_value(value, cell)
        except SecretError:
            refused.append(cell.column)
            return None

    def lookup(self, purpose: str, value: str) -> str | None:
        """The keyed hash ``value`` is indexed by; None without a key (nothing matches)."""
        return self._box.lookup(purpose, value) if self._box is not None else None

    # -- the key the database is sealed with ----------------------------------------------

    async def registered_key(self) -> tuple[str, str | None] | None:
        """(key id, previous key id while a rotation runs) as recorded, or None."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT key_id, previous_key_id FROM rps_secret_key WHERE id = 1")
        return (str(row[0]), row[1]) if row else None

    async def register_key(self, key_id: str, previous: str | None = None) -> None:
        """Record the key the database is sealed with (and, during a rotation, the one it
        replaces)."""
        values = [key_id, previous, utcnow()]
        try:
            async with self._tx() as tx:
                await tx.execute(
                    "INSERT INTO rps_secret_key (id, key_id, previous_key_id, updated_at)"
                    " VALUES (1, ?, ?, ?)", values)
        except DuplicateKey:  # recorded before (or by an instance starting alongside)
            async with self._tx() as tx:
                await tx.execute("UPDATE rps_secret_key SET key_id = ?, previous_key_id = ?,"
                                 " updated_at = ? WHERE id = 1", values)

    async def sealed_with_other_key(self, key_id: str | None) -> tuple[str, str] | None:
        """A sealed value not sealed with ``key_id`` (None: any sealed value): its key id
        and where it is; None when there is none."""
        tag = f"{PREFIX}{key_id}:" if key_id else None
        async with self._tx() as tx:
            for col in SECRET_COLUMNS:
                where, params = f"SUBSTR({col.column}, 1, {len(PREFIX)}) = ?", [PREFIX]
                if tag is not None:
                    where += f" AND SUBSTR({col.column}, 1, {len(tag)}) <> ?"
                    params.append(tag)
                row = await tx.fetchone(
                    f"SELECT {col.column} FROM {col.table} WHERE {where} LIMIT 1", params)
                found = sealed_key_id(str(row[0])) if row else None
                if found:
                    return found, f"{col.table}.{col.column}"
            rows = await tx.fetchall(
                "SELECT params FROM rps_credentials WHERE params LIKE ?", [f'%"{PREFIX}%'])
        for (params,) in rows:
            for value in orjson.loads(params).values():
                found = sealed_key_id(value) if isinstance(value, str) else None
                if found and found != key_id:
                    return found, "rps_credentials.params"
        return None

    # -- the data step and rotation -------------------------------------------------------

    async def data_step_done(self, name: str) -> bool:
        async with self._tx() as tx:
            return await tx.fetchone("SELECT 1 FROM rps_data_steps WHERE name = ?",
                                     [name]) is not None

    async def _record_data_step(self, name: str) -> None:
        try:
            async with self._tx() as tx:
                await tx.execute("INSERT INTO rps_data_steps (name, finished_at) VALUES (?, ?)",
                                 [name, utcnow()])
        except DuplicateKey:
            pass  # another instance finished the same step at the same time

    async def seal_plaintext(self) -> int:
        """The data step: seal every secret stored in clear (by a version before sealing),
        a batch per transaction. Run once, then recorded; a step cut short by a crash is
        run again and seals only what is still in clear. How many values it sealed."""
        if await self.data_step_done(SEAL_STEP):
            self._strict = True
            return 0

        def in_clear(value: str, cell: Cell) -> str:
            key_id = sealed_key_id(value)
            if key_id is not None:
                raise ForeignKeyError(f"{cell} is sealed with key {key_id}", key_id)
            return value

        done = await self.reseal(in_clear)
        if done.refused:
            raise SecretError(f"{len(done.refused)} stored secrets are sealed with another "
                              f"key, the first: {done.refused[0]}")
        await self._record_data_step(SEAL_STEP)
        self._strict = True
        return done.count

    async def reseal(self, convert: Convert) -> Resealed:
        """Seal with the current key every secret it did not seal, ``convert`` giving each
        one's clear text (what it refuses is left as it is, and named in the answer)."""
        done = Resealed()
        for col in SECRET_COLUMNS:
            done.add(await self._reseal_column(col, convert))
        done.add(await self._reseal_params(convert))
        self._forget_credentials()
        if done.count:
            await self.compact_log()
        return done

    def _forget_credentials(self) -> None:
        """Drop cached credentials (the credentials queries override this)."""

    async def compact_log(self) -> None:
        """Drop old page images the database keeps beside it (SQLite's WAL; a backend with
        none has nothing to do)."""

    async def _reseal_column(self, col: SecretColumn, convert: Convert) -> Resealed:
        box = self._require_box()
        keys = ", ".join(col.keys)
        extra = ", url" if col is URL_KEY else ""
        done, last = Resealed(), None
        while True:
            where = (f"{col.column} IS NOT NULL AND {col.column} <> ''"
                     f" AND SUBSTR({col.column}, 1, {len(box.tag)}) <> ?")
            params: list[Any] = [box.tag]
            if last is not None:
                clause, values = _after(col.keys, last)
                where, params = f"{where} AND {clause}", params + values
            async with self._tx() as tx:
                rows = await tx.fetchall(
                    f"SELECT {keys}, {col.column}{extra} FROM {col.table} WHERE {where}"
                    f" ORDER BY {keys} LIMIT ?", [*params, BATCH])
                for row in rows:
                    done.count += await self._reseal_row(tx, col, row, convert, done)
            if len(rows) < BATCH:
                return done
            last = rows[-1][:len(col.keys)]

    async def _reseal_row(self, tx: Tx, col: SecretColumn, row: Sequence[Any],
                          convert: Convert, done: Resealed) -> int:
        box = self._require_box()
        width = len(col.keys)
        key, value = row[:width], str(row[width])
        cell = col.cell(key)
        try:
            clear = convert(value, cell)
        except SecretError as exc:
            done.refused.append(str(exc))
            return 0
        sets, values = [f"{col.column} = ?"], [box.seal(clear, cell)]
        if col is URL_KEY:
            # Found by its keyed hash; the URL the GUI reads shows only the selector.
            sets.append("url_key_id = ?")
            values.append(box.lookup(URL_KEY_LOOKUP, clear))
            if row[width + 1]:
                sets.append("url = ?")
                values.append(masked_url(str(row[width + 1]), clear))
        match = " AND ".join(f"{k} = ?" for k in col.keys)
        # Only if unchanged since read: a daemon may have written the row meanwhile.
        return await tx.execute(
            f"UPDATE {col.table} SET {', '.join(sets)} WHERE {match} AND {col.column} = ?",
            [*values, *key, value])

    async def _reseal_params(self, convert: Convert) -> Resealed:
        box = self._require_box()
        done, last = Resealed(), None
        while True:
            where, params = "params IS NOT NULL", list[Any]()
            if last is not None:
                clause, params = _after(("provider", "server"), last)
                where += f" AND {clause}"
            async with self._tx() as tx:
                rows = await tx.fetchall(
                    "SELECT provider, server, params FROM rps_credentials"
                    f" WHERE {where} ORDER BY provider, server LIMIT ?", [*params, BATCH])
                for provider, server, text in rows:
                    values = orjson.loads(text)
                    changed = 0
                    for key in self._secret_keys.get(provider, ()):
                        value = values.get(key)
                        if not isinstance(value, str) or not value or box.owns(value):
                            continue
                        cell = param_cell(provider, int(server), key)
                        try:
                            values[key] = box.seal(convert(value, cell), cell)
                        except SecretError as exc:
                            done.refused.append(str(exc))
                            continue
                        changed += 1
                    if changed:
                        done.count += changed * await tx.execute(
                            "UPDATE rps_credentials SET params = ? WHERE provider = ?"
                            " AND server = ? AND params = ?",
                            [orjson.dumps(values).decode(), provider, server, text])
            if len(rows) < BATCH:
                return done
            last = rows[-1][:2]


def _hint(exc: SecretError) -> str:
    if isinstance(exc, ForeignKeyError):
        return ("the key was rotated or replaced: restart this instance with the current "
                "secret_key_file")
    return "the value was changed behind the daemon's back: store it again through the API"
