"""Device rows, API credentials and the tenants' provisioning details (docs/database.md).

Their secrets (device passwords, URL keys, key secrets, tenant and shared passwords) are
sealed here on the way in and opened on the way out (docs/secrets.md); the queries above
this module only ever see clear text.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import orjson

from rps_service.access import masked_url, unmasked_url
from rps_service.models import (
    AccessDetails,
    Credentials,
    Device,
    Event,
    NewEvent,
    ServerProvisioning,
)
from rps_service.store.group import GroupCommit
from rps_service.store.sealing import (
    DEVICE_PASSWORD,
    KEY_SECRET,
    SERVER_ACCESS_PASSWORD,
    TENANT_PASSWORD,
    URL_KEY,
    URL_KEY_LOOKUP,
    SealingQueries,
    param_cell,
)
from rps_service.store.sql import DEVICE_COLUMNS, DeviceOutcome, SqlBackend, Tx, placeholders

#: The event payload's device details, kept on the device row when an event gives them.
_DETAILS = ("model", "name", "extension", "sn", "mac_id")
_AccessRequest = tuple[str, str, int, AccessDetails, datetime]

#: How long API keys read from ``rps_credentials`` are reused. Every vendor call needs
#: them; a change made through this instance's API applies at once, one made through
#: another instance sharing the database within this many seconds.
CREDENTIALS_TTL = 5.0
#: Device rows per statement at intake (well under SQLite's limit of bound values).
ROWS_PER_UPSERT = 2000


#: A device's place in the listing order: (server, provider, mac).
DeviceKey = tuple[int, str, str]


def _device_filter(server: int | None, provider: str | None, status: str | None,
                   mac: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("server", server), ("provider", provider), ("status", status),
                          ("mac", mac)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return where, params


class DeviceQueries(SealingQueries):
    """Queries on ``rps_devices``, ``rps_credentials`` and ``rps_servers``."""

    def __init__(self) -> None:
        super().__init__()
        self._credentials: dict[tuple[str, int], tuple[float, Credentials | None]] = {}
        # Write-ahead access details of workers starting cold registrations together.
        self._access: GroupCommit[_AccessRequest, AccessDetails] = GroupCommit(
            self._ensure_access_now, name="access-commit", limit=200)

    async def _mark_accepted(self, tx: Tx, events: list[NewEvent], now: datetime) -> None:
        await mark_accepted(self, tx, events, now)

    async def _save_device_outcomes(
        self, tx: Tx, outcomes: list[tuple[Event, DeviceOutcome]], now: datetime
    ) -> None:
        """Upsert the device rows of finished events: one statement per kind of outcome."""
        kinds: dict[tuple[bool, bool], list[tuple[Event, DeviceOutcome]]] = {}
        for event, outcome in outcomes:
            kind = (outcome.registered, outcome.revoke or outcome.access is not None)
            kinds.setdefault(kind, []).append((event, outcome))
        for (registered, access), group in kinds.items():
            group.sort(key=lambda pair: (pair[0].provider, pair[0].mac))  # one lock order
            columns = ["server", "status", "last_message", "updated_at"]
            if registered:
                columns.append("registered_at")
            if access:
                columns += ["url", "http_username", "http_password", "url_key", "url_key_id"]
            updates = {column: f"new.{column}" for column in columns}
            # Details the event does not give are kept as stored; a retry settles nothing.
            updates.update({c: f"COALESCE(new.{c}, {c})"
                            for c in (*_DETAILS, "settled_status")})
            sql = self.upsert_device_sql(
                "provider, mac, server, status, last_message, registered_at, updated_at,"
                f" {', '.join(_DETAILS)}, url, http_username, http_password, url_key,"
                " url_key_id, settled_status",
                updates,
                rows=len(group),
            )
            params: list[Any] = []
            for event, outcome in group:
                url, details = outcome.access or (None, AccessDetails())
                params += [event.provider, event.mac, outcome.server or event.server,
                           outcome.status,
                           outcome.message, now if outcome.registered else None, now,
                           *(event.payload.get(name) for name in _DETAILS),
                           *self._sealed_access(event.provider, event.mac, url, details),
                           None if outcome.status == "pending" else outcome.status]
            await tx.execute(sql, params)

    def _sealed_access(self, provider: str, mac: str, url: str | None,
                       details: AccessDetails) -> list[Any]:
        """url, http_username, http_password, url_key and url_key_id as stored: the password
        and key sealed, the key found by its keyed hash, the URL showing only its selector."""
        row = (provider, mac)
        key = details.url_key
        return [masked_url(url, key) if url and key else url, details.username,
                self.seal_value(details.password, DEVICE_PASSWORD.cell(row)),
                self.seal_value(key, URL_KEY.cell(row)),
                self.lookup(URL_KEY_LOOKUP, key) if key else None]

    # -- devices -------------------------------------------------------------------------

    def _device(self, row: tuple[Any, ...]) -> Device:
        refused: list[str] = []
        where = (row[0], row[1])
        password = self.open_or_none(row[11], DEVICE_PASSWORD.cell(where), refused)
        key = self.open_or_none(row[19], URL_KEY.cell(where), refused)
        url = unmasked_url(row[9], key) if row[9] and key else row[9]
        return Device(
            provider=row[0], mac=row[1], server=int(row[2]), status=row[3],
            last_message=row[4], model=row[5], name=row[6], extension=row[7],
            registered_at=self.convert_time(row[8]), url=url, http_username=row[10],
            http_password=password, updated_at=self.convert_time(row[12]),
            ztp_fetched_at=self.convert_time(row[13]), ztp_model=row[14],
            ztp_firmware=row[15], ztp_ip=row[16], sn=row[17], mac_id=row[18], url_key=key,
            refused=tuple(refused), settled_status=row[20],
        )

    async def _load_devices(self, tx: Tx, events: list[Event]) -> None:
        """Attach each event's device row (or None) as ``event.device``: one query."""
        by_provider: dict[str, list[Event]] = {}
        for event in events:
            by_provider.setdefault(event.provider, []).append(event)
        for provider, group in by_provider.items():
            macs = sorted({e.mac for e in group})
            rows = await tx.fetchall(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices WHERE provider = ?"
                f" AND mac IN ({placeholders(len(macs))})",
                [provider, *macs],
            )
            found = {d.mac: d for d in map(self._device, rows)}
            for event in group:
                event.device, event.device_loaded = found.get(event.mac), True

    async def get_device(self, provider: str, mac: str) -> Device | None:
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices WHERE provider = ? AND mac = ?",
                [provider, mac],
            )
        return self._device(row) if row else None

    async def devices_with_mac(self, mac: str) -> list[Device]:
        """The device rows of ``mac`` under every provider (the phone's side)."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices WHERE mac = ? ORDER BY provider",
                [mac])
        return [self._device(r) for r in rows]

    async def device_by_username(self, username: str) -> Device | None:
        """A device whose phone logs in as ``username`` (one of a server's, for vendors with
        one login per server)."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices WHERE http_username = ? LIMIT 1",
                [username])
        return self._device(row) if row else None

    async def device_by_url_key(self, key: str) -> Device | None:
        """The device with URL key ``key``, found by the key's keyed hash (no row is opened
        to search; compare the key yourself, in constant time)."""
        found = self.lookup(URL_KEY_LOOKUP, key)
        if found is None:
            return None
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices WHERE url_key_id = ?", [found])
        return self._device(row) if row else None

    # -- access details, written before the vendor call (docs/database.md) -----------------------

    async def ensure_access(self, provider: str, mac: str, server: int,
                            generated: AccessDetails, now: datetime) -> AccessDetails:
        """The device's stored access details, storing ``generated`` where it has none.

        Committed before the vendor call, so a retry (or a call that timed out but landed)
        sends the same details. A device new to the table starts ``pending``.
        Concurrent calls share one transaction (:mod:`rps_service.store.group`).
        """
        return await self._access.submit((provider, mac, server, generated, now))

    async def _ensure_access_now(self, items: list[_AccessRequest]) -> list[AccessDetails]:
        rows = sorted(set((provider, mac) for provider, mac, *_ in items))  # one lock order
        fill = {c: f"COALESCE({c}, new.{c})"
                for c in ("http_username", "http_password", "url_key", "url_key_id")}
        sql = self.upsert_device_sql(
            "provider, mac, server, status, last_message, updated_at, http_username,"
            " http_password, url_key, url_key_id", fill, rows=len(items))
        params: list[Any] = []
        for provider, mac, server, details, now in sorted(items, key=lambda i: i[:2]):
            params += [provider, mac, server, "pending", "-", now,
                       *self._sealed_access(provider, mac, None, details)[1:]]
        async with self._tx() as tx:
            await tx.execute(sql, params)
            stored: dict[tuple[str, str], tuple[Any, ...]] = {}
            for provider, macs in _by_provider(rows).items():
                found = await tx.fetchall(
                    "SELECT mac, http_username, http_password, url_key FROM rps_devices"
                    f" WHERE provider = ? AND mac IN ({placeholders(len(macs))})",
                    [provider, *macs])
                stored.update({(provider, row[0]): row[1:] for row in found})
        # Opened after the commit; a stored value that cannot be trusted fails this device
        # (never sent to a vendor), and the group commit retries the others alone.
        return [self._stored_access(provider, mac, stored[(provider, mac)])
                for provider, mac, *_ in items]

    def _stored_access(self, provider: str, mac: str, row: tuple[Any, ...]) -> AccessDetails:
        user, password, key = row
        where = (provider, mac)
        return AccessDetails(user, self.open_value(password, DEVICE_PASSWORD.cell(where)),
                             self.open_value(key, URL_KEY.cell(where)))

    async def ensure_server_access(self, provider: str, server: int,
                                   generated: AccessDetails, now: datetime) -> AccessDetails:
        """Credentials shared by a server's devices (vendors with one login per profile)."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT http_username, http_password FROM rps_server_access"
                " WHERE provider = ? AND server = ?", [provider, server])
            cell = SERVER_ACCESS_PASSWORD.cell((provider, server))
            if row is None:
                await tx.execute(
                    "INSERT INTO rps_server_access (provider, server, http_username,"
                    " http_password, updated_at) VALUES (?, ?, ?, ?, ?)",
                    [provider, server, generated.username,
                     self.seal_value(generated.password, cell), now])
                return generated
        return AccessDetails(row[0], self.open_value(row[1], cell))

    async def list_devices(
        self,
        server: int | None = None,
        provider: str | None = None,
        status: str | None = None,
        mac: str | None = None,
        limit: int = 1000,
        after: DeviceKey | None = None,
    ) -> list[Device]:
        """Devices in (server, provider, mac) order; ``after`` pages on from a key (keyset
        paging: a page deep in 100,000 rows costs what the first one does)."""
        where, params = _device_filter(server, provider, status, mac)
        if after is not None:
            # Spelled out rather than a row-value comparison, which MySQL does not turn
            # into an index range; ix_devices_order serves both the range and the order.
            where.append("(server > ? OR (server = ? AND (provider > ?"
                         " OR (provider = ? AND mac > ?))))")
            params += [after[0], after[0], after[1], after[1], after[2]]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                f"SELECT {DEVICE_COLUMNS} FROM rps_devices{clause}"
                " ORDER BY server, provider, mac LIMIT ?",
                [*params, limit],
            )
        return [self._device(r) for r in rows]

    async def count_devices(
        self,
        server: int | None = None,
        provider: str | None = None,
        status: str | None = None,
        mac: str | None = None,
    ) -> int:
        """How many devices match the filters (for a console's "1-100 of N")."""
        where, params = _device_filter(server, provider, status, mac)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        async with self._tx() as tx:
            row = await tx.fetchone(f"SELECT COUNT(*) FROM rps_devices{clause}", params)
        return int(row[0]) if row else 0

    # -- credentials ---------------------------------------------------------------------

    async def put_credentials(self, creds: Credentials, now: datetime,
                              id_key: str = "", secret_key: str = "") -> None:
        """Store (or replace) a server's credentials for a provider.

        All keys go to ``params`` (JSON, the provider's secret keys sealed); ``id_key`` /
        ``secret_key`` name the ones also written to the ``access_key_id`` /
        ``access_key_secret`` columns the GUI reads (the secret sealed).
        """
        self._credentials.pop((creds.provider, creds.server), None)
        where = (creds.provider, creds.server)
        values = dict(creds.values)
        for key in self._secret_keys.get(creds.provider, ()):
            value = values.get(key)
            if isinstance(value, str):
                values[key] = self.seal_value(value, param_cell(*where, key)) or ""
        secret = self.seal_value(creds.text(secret_key), KEY_SECRET.cell(where)) \
            if secret_key else ""
        async with self._tx() as tx:
            await tx.execute(
                "DELETE FROM rps_credentials WHERE provider = ? AND server = ?",
                [creds.provider, creds.server],
            )
            await tx.execute(
                "INSERT INTO rps_credentials (provider, server, access_key_id,"
                " access_key_secret, provisioning_url, params, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [creds.provider, creds.server, creds.text(id_key) if id_key else "",
                 secret, creds.provisioning_url, orjson.dumps(values).decode(), now],
            )

    async def servers_with_credentials(self, provider: str) -> list[int]:
        """The servers that have keys of their own stored for ``provider``."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT server FROM rps_credentials WHERE provider = ? ORDER BY server",
                [provider])
        return [int(r[0]) for r in rows]

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        """The keys stored for ``provider`` and ``server`` (cached for CREDENTIALS_TTL)."""
        key = (provider, server)
        cached = self._credentials.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT access_key_id, access_key_secret, provisioning_url, params"
                " FROM rps_credentials WHERE provider = ? AND server = ?",
                [provider, server],
            )
        creds = None
        if row is not None:
            creds = Credentials(provider, server, self._open_credentials(provider, server, row),
                                row[2])
        self._credentials[key] = (time.monotonic() + CREDENTIALS_TTL, creds)
        return creds

    def _open_credentials(self, provider: str, server: int, row: tuple[Any, ...]
                          ) -> dict[str, str | bool]:
        if not row[3]:
            # Rows from before params existed hold the SRAPS keys in their own columns.
            return {"access_key_id": row[0],
                    "access_key_secret": self.open_value(row[1], KEY_SECRET.cell(
                        (provider, server))) or ""}
        values: dict[str, str | bool] = orjson.loads(row[3])
        for name in self._secret_keys.get(provider, ()):
            value = values.get(name)
            if isinstance(value, str):
                values[name] = self.open_value(value, param_cell(provider, server, name)) or ""
        return values

    def _forget_credentials(self) -> None:
        self._credentials.clear()

    # -- the phone's side (/ztprov/, docs/phone-side.md) ------------------------------------------

    async def put_server_provisioning(self, prov: ServerProvisioning, now: datetime) -> None:
        """Store (or replace) a tenant's regular provisioning URL and credentials."""
        async with self._tx() as tx:
            await tx.execute("DELETE FROM rps_servers WHERE server = ?", [prov.server])
            await tx.execute(
                "INSERT INTO rps_servers (server, prov_url, http_user, http_password,"
                " updated_at) VALUES (?, ?, ?, ?, ?)",
                [prov.server, prov.prov_url, prov.http_user,
                 self.seal_value(prov.http_password, TENANT_PASSWORD.cell((prov.server,))),
                 now],
            )

    async def get_server_provisioning(self, server: int) -> ServerProvisioning | None:
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT prov_url, http_user, http_password, updated_at FROM rps_servers"
                " WHERE server = ?",
                [server],
            )
        if row is None:
            return None
        password = self.open_value(row[2], TENANT_PASSWORD.cell((server,))) or ""
        return ServerProvisioning(server, row[0], row[1], password, self.convert_time(row[3]))

    async def record_ztp_fetch(self, provider: str, mac: str, model: str | None,
                               firmware: str | None, ip: str | None, now: datetime) -> None:
        """Note that the phone fetched its settings file, and what it said it was."""
        async with self._tx() as tx:
            await tx.execute(
                "UPDATE rps_devices SET ztp_fetched_at = ?, ztp_model = ?, ztp_firmware = ?,"
                " ztp_ip = ?, updated_at = ? WHERE provider = ? AND mac = ?",
                [now, model and model[:64], firmware and firmware[:64], ip and ip[:45], now,
                 provider, mac],
            )


def _by_provider(keys: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for provider, mac in keys:
        out.setdefault(provider, []).append(mac)
    return out


def _macs_of(events: list[NewEvent], action: str) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for event in events:
        if event.action == action:
            out.setdefault(event.provider, set()).add(event.mac)
    return {provider: sorted(macs) for provider, macs in sorted(out.items())}


async def mark_accepted(backend: SqlBackend, tx: Tx, events: list[NewEvent], now: datetime
                        ) -> None:
    """Accepted means visible: in the intake's transaction, a new device's row appears
    ``pending`` and a known one shows ``pending`` until its event is finished. An
    ``update`` leaves a removed or unknown device alone (it is refused, not sent)."""
    adds = sorted({(e.provider, e.mac): e for e in events if e.action == "add"}.items())
    for start in range(0, len(adds), ROWS_PER_UPSERT):
        chunk = adds[start:start + ROWS_PER_UPSERT]
        # A new device holds nothing at the vendor yet: settled as unregistered.
        sql = backend.upsert_device_sql(
            "provider, mac, server, status, last_message, updated_at, settled_status",
            {"status": "new.status", "updated_at": "new.updated_at"}, rows=len(chunk))
        params: list[Any] = []
        for (provider, mac), event in chunk:
            params += [provider, mac, event.server or 1, "pending", "-", now, "unregistered"]
        await tx.execute(sql, params)
    for action, spared in (("remove", ""), ("update", " AND status <> 'unregistered'")):
        for provider, macs in _macs_of(events, action).items():
            await tx.execute(
                f"UPDATE rps_devices SET status = 'pending', updated_at = ?"
                f" WHERE provider = ? AND mac IN ({placeholders(len(macs))}){spared}",
                [now, provider, *macs])
