"""Keeping the journal from growing forever: old finished events are deleted in batches.

Only ``done``, ``failed`` and ``superseded`` events go, and never the newest event of a
device, so ``GET /events`` still shows how each device's last request ended (and a
retry's 409 check still sees it). Each batch is its own short transaction: deleting a
month of events never holds locks long enough to delay the intake or the leases.
"""

from __future__ import annotations

from datetime import datetime

from rps_service.store.sql import SqlBackend, placeholders

FINISHED_STATES = ("done", "failed", "superseded")
_FINISHED = ", ".join(f"'{state}'" for state in FINISHED_STATES)


class RetentionQueries(SqlBackend):
    """The retention query of the event journal."""

    async def delete_finished_events(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` finished events last changed before ``before``, oldest
        first, keeping each device's newest event; how many were deleted."""
        async with self._tx() as tx:
            # Ids first, then the delete: MySQL cannot delete from a table its own
            # subquery reads. The delete checks the state again (a retry may have come).
            rows = await tx.fetchall(
                f"SELECT e.id FROM rps_events e WHERE e.state IN ({_FINISHED})"
                " AND e.updated_at < ? AND EXISTS (SELECT 1 FROM rps_events n"
                " WHERE n.provider = e.provider AND n.mac = e.mac AND n.id > e.id)"
                " ORDER BY e.id LIMIT ?",
                [before, limit],
            )
            ids = [int(row[0]) for row in rows]
            if not ids:
                return 0
            return await tx.execute(
                f"DELETE FROM rps_events WHERE id IN ({placeholders(len(ids))})"
                f" AND state IN ({_FINISHED}) AND updated_at < ?",
                [*ids, before],
            )
