"""Device rows, API credentials and the tenants' provisioning details (SPEC §4, §7)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rps_service.models import Device, Event, ServerProvisioning
from rps_service.providers.base import Credentials
from rps_service.store.sql import DEVICE_COLUMNS, DeviceOutcome, SqlBackend, Tx, placeholders

#: How long API keys read from ``rps_credentials`` are reused. Every vendor call needs
#: them; a change made through this instance's API applies at once, one made through
#: another instance sharing the database within this many seconds.
CREDENTIALS_TTL = 5.0


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


class DeviceQueries(SqlBackend):
    """Queries on ``rps_devices``, ``rps_credentials`` and ``rps_servers``."""

    def __init__(self) -> None:
        self._credentials: dict[tuple[str, int], tuple[float, Credentials | None]] = {}

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
                columns += ["url", "http_username", "http_password"]
            updates = {column: f"new.{column}" for column in columns}
            # Details the event does not give are kept as stored.
            updates.update({c: f"COALESCE(new.{c}, {c})" for c in ("model", "name", "extension")})
            sql = self.upsert_device_sql(
                "provider, mac, server, status, last_message, registered_at, updated_at,"
                " model, name, extension, url, http_username, http_password",
                updates,
                rows=len(group),
            )
            params: list[Any] = []
            for event, outcome in group:
                payload = event.payload
                url, username, password = outcome.access or (None, None, None)
                params += [event.provider, event.mac, event.server, outcome.status,
                           outcome.message, now if outcome.registered else None, now,
                           payload.get("model"), payload.get("name"), payload.get("extension"),
                           url, username, password]
            await tx.execute(sql, params)

    # -- devices -------------------------------------------------------------------------

    def _device(self, row: tuple[Any, ...]) -> Device:
        return Device(
            provider=row[0], mac=row[1], server=int(row[2]), status=row[3],
            last_message=row[4], model=row[5], name=row[6], extension=row[7],
            registered_at=self.convert_time(row[8]), url=row[9], http_username=row[10],
            http_password=row[11], updated_at=self.convert_time(row[12]),
            ztp_fetched_at=self.convert_time(row[13]), ztp_model=row[14],
            ztp_firmware=row[15], ztp_ip=row[16],
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

    async def put_credentials(self, creds: Credentials, now: datetime) -> None:
        self._credentials.pop((creds.provider, creds.server), None)
        async with self._tx() as tx:
            await tx.execute(
                "DELETE FROM rps_credentials WHERE provider = ? AND server = ?",
                [creds.provider, creds.server],
            )
            await tx.execute(
                "INSERT INTO rps_credentials (provider, server, access_key_id,"
                " access_key_secret, provisioning_url, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                [creds.provider, creds.server, creds.access_key_id, creds.access_key_secret,
                 creds.provisioning_url, now],
            )

    async def get_credentials(self, provider: str, server: int) -> Credentials | None:
        """The keys stored for ``provider`` and ``server`` (cached for CREDENTIALS_TTL)."""
        key = (provider, server)
        cached = self._credentials.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT access_key_id, access_key_secret, provisioning_url FROM rps_credentials"
                " WHERE provider = ? AND server = ?",
                [provider, server],
            )
        creds = Credentials(provider, server, row[0], row[1], row[2]) if row else None
        self._credentials[key] = (time.monotonic() + CREDENTIALS_TTL, creds)
        return creds

    # -- the phone's side (/ztprov/, SPEC §7) ------------------------------------------

    async def put_server_provisioning(self, prov: ServerProvisioning, now: datetime) -> None:
        """Store (or replace) a tenant's regular provisioning URL and credentials."""
        async with self._tx() as tx:
            await tx.execute("DELETE FROM rps_servers WHERE server = ?", [prov.server])
            await tx.execute(
                "INSERT INTO rps_servers (server, prov_url, http_user, http_password,"
                " updated_at) VALUES (?, ?, ?, ?, ?)",
                [prov.server, prov.prov_url, prov.http_user, prov.http_password, now],
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
        return ServerProvisioning(server, row[0], row[1], row[2], self.convert_time(row[3]))

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
