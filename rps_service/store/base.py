"""The store: the event journal's queries over one SQL backend.

Queries are named by what they do. Policy (what state follows what, when to retry) is not
here: it is in ``pipeline/worker.py``; the device queries are in ``devices.py``, the shared seam in
``sql.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from rps_service.models import Event, NewEvent
from rps_service.store.cluster import ClusterQueries
from rps_service.store.devices import DeviceQueries
from rps_service.store.group import GroupCommit
from rps_service.store.jobs import JobQueries
from rps_service.store.outbox import Notice, OutboxQueries
from rps_service.store.retention import RetentionQueries
from rps_service.store.sql import (
    EVENT_COLUMNS,
    DeviceOutcome,
    DuplicateKey,
    Inserted,
    StoreUnavailable,
    Tx,
    device_slot,
    placeholders,
)
from rps_service.store.timeline import TimelineQueries

__all__ = [
    "DeviceOutcome", "DuplicateKey", "Finish", "Inserted", "LeaseLost", "Leased", "Store",
    "StoreUnavailable", "Superseded", "Tx", "device_slot", "moot_events",
]

MAX_EVENTS_PER_COMMIT = 5000  # keeps one INSERT well under max_allowed_packet
MAX_OUTCOMES_PER_COMMIT = 500
_Posted = tuple[Sequence[NewEvent], datetime]  # one request's events and its arrival


class Store(DeviceQueries, RetentionQueries, JobQueries, OutboxQueries, TimelineQueries,
            ClusterQueries):
    """The event journal, device table and credentials, over one SQL backend."""

    #: SQL fragments that differ between dialects.
    mod_function = "MOD"
    lock_clause = ""
    #: Leasing one server's events reads them in id order from ``ix_events_lane``: with a
    #: large backlog, a planner left to itself picks the due-time index and sorts it all.
    lane_index = ""
    returning = True
    #: A multi-row INSERT takes consecutive ids and reports the first (MySQL/MariaDB with
    #: innodb_autoinc_lock_mode 0 or 1); otherwise RETURNING or one row at a time.
    consecutive_ids = False
    #: Write the insert time into the statement as text (MySQL: saves escaping it per
    #: row). Not for SQLite, which caches compiled statements by their text.
    inline_time = False

    def __init__(self) -> None:
        super().__init__()
        self._intake: GroupCommit[_Posted, list[Inserted]] = GroupCommit(
            self._insert_posted, name="intake-commit", size=lambda posted: len(posted[0]),
            limit=MAX_EVENTS_PER_COMMIT,
        )
        self._finishing: GroupCommit[Finish, bool] = GroupCommit(
            self.finish_events_now, name="finish-commit", limit=MAX_OUTCOMES_PER_COMMIT,
        )

    # -- intake --------------------------------------------------------------------------

    async def insert_events(self, events: Sequence[NewEvent], now: datetime) -> list[Inserted]:
        """Store a batch atomically; a repeated idempotency key yields the first event's id.

        Concurrent calls share one transaction (:mod:`rps_service.store.group`).
        """
        return await self._intake.submit((events, now))

    async def _insert_posted(self, posted: list[_Posted]) -> list[list[Inserted]]:
        # The newest request's time: no event is stamped before it arrived.
        rows = await self.insert_events_now([e for events, _ in posted for e in events],
                                            max(now for _, now in posted))
        out, start = [], 0
        for events, _ in posted:
            out.append(rows[start : start + len(events)])
            start += len(events)
        return out

    async def insert_events_now(self, events: Sequence[NewEvent], now: datetime
                                ) -> list[Inserted]:
        """Store a batch atomically in a transaction of its own."""
        try:
            return await self._insert_events(events, now)
        except DuplicateKey:
            # A concurrent request stored the same key between our check and insert.
            return await self._insert_events(events, now)

    async def _insert_events(self, events: Sequence[NewEvent], now: datetime) -> list[Inserted]:
        async with self._tx() as tx:
            known, servers = await self._known_keys(tx, [e.key for e in events if e.key])
            fresh, seen = [], set()
            for event in events:
                if event.key and (event.key in known or event.key in seen):
                    continue
                if event.key:
                    seen.add(event.key)
                fresh.append(event)
            await self._resolve_servers(tx, fresh)
            new_ids = iter(await self._insert_rows(tx, fresh, now) if fresh else [])
            if fresh:
                await self._mark_accepted(tx, fresh, now)
        out: list[Inserted] = []
        for event in events:
            if event.key and event.key in known:
                # A repeat is answered as the first event, which acted on its own server.
                event.server = servers[event.key]
                out.append(Inserted(known[event.key], True))
                continue
            event_id = next(new_ids)
            if event.key:
                known[event.key] = event_id
                servers[event.key] = event.server or 1
            out.append(Inserted(event_id, False))
        return out

    async def _resolve_servers(self, tx: Tx, events: list[NewEvent]) -> None:
        """Give each event the server it acts on (docs/api.md): ``update`` and ``remove`` always
        the device's current one, an ``add`` without ``server`` the device's, else 1.

        "Current" is where the device's newest unfinished event puts it, else its row:
        per-device order means that is where it will be when this event runs.
        """
        needed = [e for e in events if e.server is None or e.action != "add"]
        if not needed:
            return
        current: dict[tuple[str, str], int] = {}
        for provider, macs in _macs_by_provider(needed).items():
            marks = placeholders(len(macs))
            rows = await tx.fetchall(
                f"SELECT mac, server FROM rps_devices WHERE provider = ? AND mac IN ({marks})",
                [provider, *macs])
            rows += await tx.fetchall(
                "SELECT mac, server FROM rps_events WHERE provider = ?"
                f" AND state IN ('pending', 'running') AND mac IN ({marks}) ORDER BY id",
                [provider, *macs])
            current.update({(provider, str(mac)): int(server) for mac, server in rows})
        for event in events:
            device = (event.provider, event.mac)
            known = current.get(device)
            if event.action == "add":
                event.server = event.server or known or 1
            else:
                event.server = known or event.server or 1
            current[device] = event.server

    async def _known_keys(self, tx: Tx, keys: list[str]
                          ) -> tuple[dict[str, int], dict[str, int]]:
        """The events already stored under these keys: key → id, and key → server."""
        if not keys:
            return {}, {}
        rows = await tx.fetchall(
            f"SELECT idempotency_key, id, server FROM rps_events"
            f" WHERE idempotency_key IN ({placeholders(len(set(keys)))})",
            sorted(set(keys)),
        )
        return ({str(key): int(event_id) for key, event_id, _ in rows},
                {str(key): int(server) for key, _, server in rows})

    async def _insert_rows(self, tx: Tx, events: list[NewEvent], now: datetime) -> list[int]:
        columns = (
            "created_at, action, provider, server, mac, payload, state, attempts,"
            " next_attempt_at, updated_at, idempotency_key, slot"
        )
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        if self.inline_time:
            # Our own digits-only text, written once into the statement rather than bound
            # (and escaped by the driver) three times per row.
            row = f"('{stamp}', ?, ?, ?, ?, ?, 'pending', 0, '{stamp}', '{stamp}', ?, ?)"
            times: list[Any] = []
        else:
            row = "(?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"
            times = [stamp]
        params: list[Any] = []
        for e in events:
            payload = orjson.dumps(e.payload).decode()
            params += [*times, e.action, e.provider, e.server, e.mac, payload, *times, *times,
                       e.key, device_slot(e.provider, e.mac)]
        insert_all = f"INSERT INTO rps_events ({columns}) VALUES {', '.join([row] * len(events))}"
        if self.consecutive_ids:
            first = await tx.insert(insert_all, params)
            return list(range(first, first + len(events)))
        if not self.returning:
            width = len(params) // len(events)
            sql = f"INSERT INTO rps_events ({columns}) VALUES {row}"
            return [
                await tx.insert(sql, params[i * width : (i + 1) * width])
                for i in range(len(events))
            ]
        rows = await tx.fetchall(insert_all + " RETURNING id", params)
        # Ids grow in row order within one statement; RETURNING order is not promised.
        return sorted(int(r[0]) for r in rows)

    # -- reading events ------------------------------------------------------------------

    def _event(self, row: tuple[Any, ...]) -> Event:
        return Event(
            id=int(row[0]),
            action=row[1],
            provider=row[2],
            server=int(row[3]),
            mac=row[4],
            payload=orjson.loads(row[5]) if row[5] else {},
            state=row[6],
            attempts=int(row[7]),
            created_at=self.convert_time(row[8]),  # type: ignore[arg-type]
            updated_at=self.convert_time(row[9]),  # type: ignore[arg-type]
            next_attempt_at=self.convert_time(row[10]),
            lease_until=self.convert_time(row[11]),
            last_error=row[12],
            idempotency_key=row[13],
            slot=int(row[14]),
        )

    async def get_event(self, event_id: int) -> Event | None:
        async with self._tx() as tx:
            row = await tx.fetchone(
                f"SELECT {EVENT_COLUMNS} FROM rps_events WHERE id = ?", [event_id]
            )
        return self._event(row) if row else None

    async def list_events(
        self, state: str | None = None, limit: int = 100, before_id: int | None = None
    ) -> list[Event]:
        """Newest first; ``before_id`` pages backwards."""
        where: list[str] = []
        params: list[Any] = []
        if state:
            where.append("state = ?")
            params.append(state)
        if before_id:
            where.append("id < ?")
            params.append(before_id)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                f"SELECT {EVENT_COLUMNS} FROM rps_events{clause} ORDER BY id DESC LIMIT ?",
                [*params, limit],
            )
        return [self._event(r) for r in rows]

    async def retry_event(self, event_id: int, now: datetime) -> str:
        """Re-queue a failed event: ``ok``, ``not_found``, ``newer:<id>`` when a newer event
        of the device came since (sending this one again would undo it), or the state that
        forbids it."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT state, provider, mac FROM rps_events WHERE id = ?", [event_id])
            if row is None:
                return "not_found"
            if row[0] != "failed":
                return str(row[0])
            newer = await tx.fetchone(
                "SELECT MAX(id) FROM rps_events WHERE provider = ? AND mac = ? AND id > ?",
                [row[1], row[2], event_id])
            if newer and newer[0] is not None:
                return f"newer:{int(newer[0])}"
            await tx.execute(
                "UPDATE rps_events SET state = 'pending', attempts = 0, next_attempt_at = ?,"
                " updated_at = ? WHERE id = ? AND state = 'failed'",
                [now, now, event_id],
            )
        return "ok"

    # -- leasing -------------------------------------------------------------------------

    async def lease_events(
        self,
        owner: str,
        now: datetime,
        lease_until: datetime,
        limit: int,
        queuenum: int,
        queues: Sequence[int],
    ) -> Leased:
        """Take up to ``limit`` due events whose device has nothing earlier unfinished.

        Only the oldest unfinished event of a device is ever eligible, so a device's events
        run one at a time, in order, whichever instance takes them. ``queues`` limits the
        choice to devices that hash to queues with room.
        """
        where = ["e.state = 'pending'", "e.next_attempt_at <= ?"]
        params: list[Any] = [now]
        if len(queues) < queuenum:
            where.append(f"{self.mod_function}(e.slot, ?) IN ({placeholders(len(queues))})")
            params += [queuenum, *queues]
        async with self._tx() as tx:
            candidates = await self._due(tx, where, [*params, limit])
            return await self._take(tx, owner, now, lease_until, candidates)

    async def pending_groups(self) -> list[tuple[str, int]]:
        """The (provider, server) pairs with pending events (due or not)."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT DISTINCT provider, server FROM rps_events WHERE state = 'pending'")
        return sorted((str(p), int(s)) for p, s in rows)

    async def lease_groups(
        self, owner: str, now: datetime, lease_until: datetime,
        wanted: Sequence[tuple[str, int, int]],
    ) -> Leased:
        """Take, per (provider, server, limit) of ``wanted``, up to ``limit`` of the server's
        due events in arrival order (the rules of :meth:`lease_events`), in one transaction:
        a backlog of one server never hides another server's events."""
        async with self._tx() as tx:
            candidates: list[Event] = []
            for provider, server, limit in wanted:
                candidates += await self._due(
                    tx, ["e.state = 'pending'", "e.provider = ?", "e.server = ?",
                         "e.next_attempt_at <= ?"], [provider, server, now, limit],
                    self.lane_index)
            return await self._take(tx, owner, now, lease_until, candidates)

    async def _due(self, tx: Tx, where: list[str], params: list[Any], index: str = ""
                   ) -> list[Event]:
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM rps_events e{index} WHERE {' AND '.join(where)}"
            " AND NOT EXISTS (SELECT 1 FROM rps_events p WHERE p.provider = e.provider"
            " AND p.mac = e.mac AND p.state IN ('pending', 'running') AND p.id < e.id)"
            # An event that waits for another (a replaced phone's add waits for its remove).
            " AND (e.after_id IS NULL OR NOT EXISTS (SELECT 1 FROM rps_events a"
            " WHERE a.id = e.after_id AND a.state IN ('pending', 'running')))"
            f" ORDER BY e.id LIMIT ?{self.lock_clause}"
        )
        return [self._event(r) for r in await tx.fetchall(sql, params)]

    async def _take(self, tx: Tx, owner: str, now: datetime, lease_until: datetime,
                    candidates: list[Event]) -> Leased:
        if not candidates:
            return Leased([], [])
        superseded = await self._supersede_moot(tx, candidates, now)
        gone = {s.id for s in superseded}
        events = [e for e in candidates if e.id not in gone]
        if events:
            ids = [e.id for e in events]
            await tx.execute(
                "UPDATE rps_events SET state = 'running', attempts = attempts + 1,"
                " lease_owner = ?, lease_until = ?, updated_at = ?"
                f" WHERE id IN ({placeholders(len(ids))})",
                [owner, lease_until, now, *ids],
            )
            await self._load_devices(tx, [e for e in events if e.action != "remove"])
        for event in events:
            event.state, event.lease_until = "running", lease_until
            event.attempts += 1
        return Leased(events, superseded)

    async def _supersede_moot(
        self, tx: Tx, candidates: list[Event], now: datetime
    ) -> list[Superseded]:
        """Mark pending events that a newer pending event of their device makes moot.

        Each candidate is its device's oldest unfinished event, so all the device's pending
        events are at or after it and none is running: they can be settled here safely.
        """
        by_provider: dict[str, set[str]] = {}
        for event in candidates:
            by_provider.setdefault(event.provider, set()).add(event.mac)
        pending: dict[tuple[str, str], list[tuple[int, str]]] = {}
        for provider, macs in by_provider.items():
            # Both unfinished states, so the planner reads the device index rather than
            # every pending event of the backlog; the running ones are left out below.
            rows = await tx.fetchall(
                "SELECT id, mac, action, state FROM rps_events WHERE provider = ?"
                f" AND state IN ('pending', 'running') AND mac IN ({placeholders(len(macs))})"
                " ORDER BY id",
                [provider, *sorted(macs)],
            )
            for event_id, mac, action, state in rows:
                if state == "pending":
                    pending.setdefault((provider, mac), []).append((int(event_id), action))
        moot = [m for events in pending.values() for m in moot_events(events)]
        for item in moot:
            await tx.execute(
                "UPDATE rps_events SET state = 'superseded', last_error = ?, updated_at = ?"
                " WHERE id = ? AND state = 'pending'",
                [f"superseded by event {item.by}", now, item.id],
            )
        return moot

    async def renew_leases(self, owner: str, ids: Sequence[int], lease_until: datetime
                           ) -> list[int]:
        """Extend this instance's leases on events it still holds; the ids renewed (the
        others were lost: their lease ran out and another worker may have them)."""
        if not ids:
            return []
        marks = placeholders(len(ids))
        async with self._tx() as tx:
            changed = await tx.execute(
                f"UPDATE rps_events SET lease_until = ? WHERE lease_owner = ?"
                f" AND state = 'running' AND id IN ({marks})",
                [lease_until, owner, *ids],
            )
            if changed == len(ids):
                return list(ids)
            rows = await tx.fetchall(
                f"SELECT id FROM rps_events WHERE lease_owner = ? AND state = 'running'"
                f" AND id IN ({marks})", [owner, *ids])
        return [int(r[0]) for r in rows]

    async def release_leases(self, owner: str, ids: Sequence[int], now: datetime) -> int:
        """Give events back untouched (shutdown, queue full): the lease attempt is not counted."""
        if not ids:
            return 0
        async with self._tx() as tx:
            return await tx.execute(
                "UPDATE rps_events SET state = 'pending', attempts = attempts - 1,"
                " lease_owner = NULL, lease_until = NULL, updated_at = ?"
                f" WHERE lease_owner = ? AND state = 'running'"
                f" AND id IN ({placeholders(len(ids))})",
                [now, owner, *ids],
            )

    async def release_expired_leases(self, now: datetime) -> list[int]:
        """Make events whose lease ran out (a crashed worker) pending again; their ids."""
        async with self._tx() as tx:
            rows = await tx.fetchall(
                "SELECT id FROM rps_events WHERE state = 'running' AND lease_until < ?"
                f"{self.lock_clause}",
                [now],
            )
            ids = [int(r[0]) for r in rows]
            if ids:
                await tx.execute(
                    "UPDATE rps_events SET state = 'pending', lease_owner = NULL,"
                    " lease_until = NULL, next_attempt_at = ?, updated_at = ?"
                    f" WHERE state = 'running' AND id IN ({placeholders(len(ids))})",
                    [now, now, *ids],
                )
        return ids

    async def next_due(self) -> datetime | None:
        """When the earliest waiting event becomes due (backoff timers)."""
        async with self._tx() as tx:
            row = await tx.fetchone(
                "SELECT MIN(next_attempt_at) FROM rps_events WHERE state = 'pending'"
            )
        return self.convert_time(row[0]) if row else None

    # -- finishing -----------------------------------------------------------------------

    async def finish_event(
        self,
        event: Event,
        owner: str,
        state: str,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        device: DeviceOutcome | None = None,
        uncount: bool = False,
    ) -> bool:
        """Record an outcome (``done``, ``failed``, or ``pending`` again for a retry) and the
        device row in one transaction. False when the lease was lost to another worker.
        ``uncount``: the attempt sent nothing (deferred) and is not counted.

        Outcomes finished concurrently share one transaction (:mod:`rps_service.store.group`).
        """
        return await self._finishing.submit(
            Finish(event, owner, state, now, error, next_attempt_at, device, int(uncount)))

    async def finish_events_now(self, items: list[Finish]) -> list[bool]:
        """Record outcomes in one transaction of their own.

        All or nothing: when any lease turns out lost, the transaction is rolled back and
        :class:`LeaseLost` raised, and the group commit records each outcome alone. A lone
        outcome whose lease was lost gives ``[False]``.
        """
        now = max(item.now for item in items)
        same: dict[tuple[str, str | None, datetime | None, str, int], list[int]] = {}
        for item in items:
            key = (item.state, item.error, item.next_attempt_at, item.owner, item.uncount)
            same.setdefault(key, []).append(item.event.id)
        stored = False
        async with self._tx() as tx:
            changed = 0
            for (state, error, next_attempt_at, owner, uncount), ids in same.items():
                changed += await tx.execute(
                    "UPDATE rps_events SET state = ?, last_error = ?, next_attempt_at = ?,"
                    " lease_owner = NULL, lease_until = NULL, updated_at = ?,"
                    " attempts = attempts - ?"
                    f" WHERE id IN ({placeholders(len(ids))}) AND lease_owner = ?"
                    " AND state = 'running'",
                    [state, error, next_attempt_at or now, now, uncount, *ids, owner],
                )
            if changed < len(items):
                if len(items) == 1:
                    return [False]  # nothing was written; the commit is empty
                raise LeaseLost(f"{len(items) - changed} of {len(items)} leases lost")
            await self._save_device_outcomes(
                tx, [(i.event, i.device) for i in items if i.device is not None], now)
            if self.webhook_types:
                stored = await self.add_notices(tx, [n for n in map(_notice, items) if n], now)
        if stored:
            self.notices_stored()
        return [True] * len(items)


class LeaseLost(Exception):
    """A shared outcome transaction met an event no longer leased to its worker."""


@dataclass(frozen=True)
class Finish:
    """One outcome to record (the arguments of :meth:`Store.finish_event`)."""

    event: Event
    owner: str
    state: str
    now: datetime
    error: str | None
    next_attempt_at: datetime | None
    device: DeviceOutcome | None
    uncount: int = 0


@dataclass(frozen=True)
class Superseded:
    """An event settled without a call: a newer event of its device makes it moot."""

    id: int
    by: int


@dataclass(frozen=True)
class Leased:
    """What one lease round took, and what it settled as superseded."""

    events: list[Event]
    superseded: list[Superseded]


def _notice(item: Finish) -> Notice | None:
    """The notification an outcome sends (docs/webhooks.md): none for a retry."""
    event, device = item.event, item.device
    if item.state == "failed":
        status = device.status if device else (event.device.status if event.device else "-")
        return Notice("device.failed", event.provider, event.mac, event.server, status,
                      item.error or "-")
    if item.state != "done" or device is None:
        return None
    kind = "device.unregistered" if device.status == "unregistered" else "device.registered"
    return Notice(kind, event.provider, event.mac, event.server, device.status,
                  device.message)


def _macs_by_provider(events: Sequence[NewEvent]) -> dict[str, list[str]]:
    out: dict[str, set[str]] = {}
    for event in events:
        out.setdefault(event.provider, set()).add(event.mac)
    return {provider: sorted(macs) for provider, macs in out.items()}


def moot_events(pending: Sequence[tuple[int, str]]) -> list[Superseded]:
    """Which of a device's pending events (id, action; oldest first) need not be sent.

    A later ``remove`` makes any earlier event moot (the device ends removed either way);
    a later ``add`` makes an earlier ``add``/``update`` moot (PUT replaces the whole
    endpoint with the same access details); a later ``update`` makes an earlier ``update``
    moot, but not an ``add``: an update of a device that is not registered is refused, so
    the add must run first. A ``remove`` followed by an ``add`` is kept: the remove revokes
    the access details, so the add sends fresh ones.
    """
    moot: list[Superseded] = []
    later: dict[str, int] = {}  # the newest event of each action seen so far
    for event_id, action in reversed(pending):
        if action == "remove":
            by = later.get("remove")
        elif action == "add":
            by = later.get("remove") or later.get("add")
        else:
            by = later.get("remove") or later.get("add") or later.get("update")
        if by is not None:
            moot.append(Superseded(event_id, by))
        later.setdefault(action, event_id)
    return moot[::-1]
