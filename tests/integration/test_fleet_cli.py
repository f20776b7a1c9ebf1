"""The fleet commands (``rps-service repoint|reconcile|job``) against a running daemon with
the test provider: ``--wait`` follows a job to the end of what the operator waits for."""

from __future__ import annotations

import asyncio
import re

from tests.console import wait_for
from tests.integration.test_admin_cli import Running, daemon, event

__all__ = ["daemon"]  # the fixture, shared with the admin command tests

MACS = [f"000413CC00{i:02X}" for i in range(3)]


async def test_repoint_wait_follows_the_queued_events(daemon: Running) -> None:
    """A re-point is ``done`` once its updates are queued; ``--wait`` goes on until they are
    sent, so "done" on the terminal means the vendor has them."""
    await daemon.post(*(event(mac, provider="fake", server=4) for mac in MACS))
    gate = daemon.provider.gate = asyncio.Event()  # the vendor holds every call
    command = asyncio.create_task(daemon.run("repoint", "4", "--provider", "fake", "--wait"))

    async def queued_and_held() -> bool:
        jobs = (await daemon.client.get("/jobs?limit=1")).json()["jobs"]
        if not jobs or jobs[0]["state"] != "done":
            return False
        job = (await daemon.client.get(f"/jobs/{jobs[0]['id']}")).json()
        return sum(job["events"].values()) == 3 and "done" not in job["events"]

    await wait_for(queued_and_held)
    finished, _ = await asyncio.wait({command}, timeout=2.5)  # the command polls every 1 s
    assert not finished, "repoint --wait returned while its events were still held"
    gate.set()
    code, out, err = await command
    assert code == 0, err
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines()[1:])
    assert rows["state"] == "done" and rows["events done"] == "3"
    assert "events pending" not in rows and "events running" not in rows
    # Progress on stderr: the job's phases, then its events (held by the vendor: 0/3).
    assert any(re.fullmatch(r"job \d+ repoint: events 0/3 finished \(\d pending, \d running\)",
                            line) for line in err.splitlines()), err
    assert sorted(call for call in daemon.provider.calls if call[1] in MACS) == sorted(
        [("register", mac) for mac in MACS] * 2)

