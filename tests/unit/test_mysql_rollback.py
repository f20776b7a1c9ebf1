"""A failed rollback closes the connection and says so (it was swallowed silently)."""

from __future__ import annotations

import pymysql
from structlog.testing import capture_logs

from rps_service.store.mysql import _rollback


class _BrokenConnection:
    closed = False

    async def rollback(self) -> None:
        raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query")

    def close(self) -> None:
        self.closed = True


async def test_a_failed_rollback_drops_the_connection_and_is_logged() -> None:
    conn = _BrokenConnection()
    with capture_logs() as logs:
        await _rollback(conn)
    assert conn.closed
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("Rollback failed, connection dropped", "warning")]
    assert "Lost connection" in logs[0]["err"]
