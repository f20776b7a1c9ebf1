"""sd_notify: the datagram protocol, WATCHDOG_USEC, and the wedged-worker check."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from rps_service.models import Event
from rps_service.notify import Monitor, Notifier, watchdog_interval


@pytest.fixture
def systemd() -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd's notify socket (short path: 108 bytes max)."""
    folder = tempfile.mkdtemp(prefix="rps-")
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


def test_sends_one_datagram_of_lines(systemd: tuple[str, socket.socket]) -> None:
    path, sock = systemd
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.notify("READY=1", "STATUS=Started")
    assert sock.recv(4096) == b"READY=1\nSTATUS=Started"
    notifier.close()


def test_abstract_socket() -> None:
    name = f"rps-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = Notifier(f"@{name}")
        assert notifier.notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_no_notify_socket_is_a_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False
    assert notifier.watchdog is None


def test_unsupported_or_gone_socket_does_not_raise(tmp_path: Path) -> None:
    assert not Notifier("vsock:2:1234").enabled
    gone = Notifier(str(tmp_path / "nothing-here"))
    assert gone.notify("READY=1") is False
    assert gone.notify("STATUS=x") is False  # warned once, still no exception
    gone.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
        ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env: dict[str, str],
                                                   expected: float | None) -> None:
    assert watchdog_interval(env) == expected


@dataclass
class FakeWorker:
    index: int
    current: Event | None = None


class FakeDistributor:
    def depths(self) -> list[int]:
        return [0, 2]


class FakeStore:
    async def backlog(self) -> dict[str, int]:
        return {"pending": 3, "running": 1}


def an_event(event_id: int) -> Event:
    now = datetime(2026, 1, 1)
    return Event(id=event_id, action="add", provider="snom", server=1, mac="000413000001",
                 payload={}, state="running", attempts=1, created_at=now, updated_at=now)


def test_a_worker_on_one_event_too_long_is_wedged() -> None:
    now = [100.0]
    workers = [FakeWorker(0), FakeWorker(1)]
    monitor = Monitor(Notifier(None), FakeStore(), FakeDistributor(), workers,
                      wedge_after=10, clock=lambda: now[0])
    first = an_event(1)
    workers[0].current = first
    assert monitor.wedged(now[0]) == []
    now[0] += 10.5
    [(worker, event, age)] = monitor.wedged(now[0])
    assert worker is workers[0] and event is first and age == pytest.approx(10.5)
    # The same id coming back from a new lease (a retry) is a new start, not the old one.
    workers[0].current = an_event(1)
    assert monitor.wedged(now[0]) == []
    workers[0].current = None
    assert monitor.wedged(now[0] + 100) == []


async def test_status_line_names_backlog_and_queues() -> None:
    monitor = Monitor(Notifier(None), FakeStore(), FakeDistributor(), [], wedge_after=1)
    assert await monitor.status_line() == "Backlog: 3 pending, 1 running. Queues: 0 2"
