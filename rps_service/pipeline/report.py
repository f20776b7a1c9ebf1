"""Where events wait, as ``/health``, the console and the metrics show it.

Per lane (vendor account): its unfinished events in the journal, its vendor calls under
way, its ``rate_limit`` and, while a throttling answer holds it, until when. The
backlog's ``running`` counts only events whose vendor call is under way in this instance,
``waiting`` the events this instance holds in their lane (for a rate slot, a pause or a
free worker), ``pending`` all other unfinished events (in the journal, or leased by
another instance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from rps_service.pipeline.distributor import Distributor


@dataclass(frozen=True)
class LaneReport:
    """One lane's figures (``account`` is a label, never a secret)."""

    provider: str
    account: str
    backlog: int
    in_flight: int
    rate_limit: float | None
    paused_until: datetime | None

    def to_json(self) -> dict[str, object]:
        return {"provider": self.provider, "account": self.account, "backlog": self.backlog,
                "in_flight": self.in_flight, "rate_limit": self.rate_limit,
                "paused_until": None if self.paused_until is None
                else self.paused_until.isoformat().replace("+00:00", "Z")}


async def lane_reports(distributor: Distributor,
                       backlog: dict[tuple[str, int], int]) -> list[LaneReport]:
    """Every lane with unfinished events or calls under way, by provider and account."""
    totals: dict[str, int] = {}
    lanes = {lane.key: lane for lane in distributor.board}
    named: dict[str, tuple[str, str, float | None, float]] = {}
    for lane in lanes.values():
        gate = lane.gate
        named[lane.key] = (lane.provider, lane.account, gate.rate if gate else None,
                           gate.paused_until if gate else 0.0)
    for (provider, server), count in backlog.items():
        lane_id = await distributor.lane_for(provider, server)
        totals[lane_id.key] = totals.get(lane_id.key, 0) + count
        if lane_id.key not in named:
            gate = lane_id.gate
            named[lane_id.key] = (lane_id.provider, lane_id.account,
                                  gate.rate if gate else None,
                                  gate.paused_until if gate else 0.0)
    mono, now = time.monotonic(), datetime.now(UTC)
    out = []
    for key, (provider, account, rate, paused) in named.items():
        in_flight = lanes[key].in_flight if key in lanes else 0
        if not totals.get(key) and not in_flight:
            continue
        until = now + timedelta(seconds=paused - mono) if paused > mono else None
        out.append(LaneReport(provider, account, totals.get(key, 0), in_flight, rate, until))
    return sorted(out, key=lambda r: (r.provider, r.account))


def split_backlog(distributor: Distributor, journal: dict[str, int]) -> dict[str, int]:
    """The journal's ``pending``/``running`` counts as pending, waiting and running."""
    running = distributor.board.in_flight
    waiting = distributor.board.waiting + distributor.handoff.qsize()
    unfinished = journal.get("pending", 0) + journal.get("running", 0)
    return {"pending": max(unfinished - running - waiting, 0), "waiting": waiting,
            "running": running}


class _Journal(Protocol):
    async def backlog(self) -> dict[str, int]: ...

    async def backlog_by_server(self) -> dict[tuple[str, int], int]: ...


async def pipeline_report(distributor: Distributor, store: _Journal
                          ) -> tuple[dict[str, int], list[LaneReport]]:
    """The backlog (pending, waiting, running) and the lanes, read now."""
    journal = await store.backlog()
    lanes = await lane_reports(distributor, await store.backlog_by_server())
    return split_backlog(distributor, journal), lanes
