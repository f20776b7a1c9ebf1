"""The event journal: one store interface, SQLite and MySQL/MariaDB behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rps_service.store.base import DeviceOutcome, Inserted, Store, StoreUnavailable
from rps_service.store.sql import DatabaseMissing

if TYPE_CHECKING:  # config imports every vendor module: not at run time
    from rps_service.config import DatabaseUrl


def create_store(url: DatabaseUrl) -> Store:
    """The backend for a ``database`` URL (not yet opened)."""
    if url.scheme == "sqlite":
        from rps_service.store.sqlite import SqliteStore

        return SqliteStore(url.path)
    from rps_service.store.mysql import MysqlStore

    return MysqlStore(url)


__all__ = ["DatabaseMissing", "DeviceOutcome", "Inserted", "Store", "StoreUnavailable",
           "create_store"]
