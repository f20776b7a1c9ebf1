"""Start-up failures as an operator meets them: ``rps-service run`` as a subprocess, exit
code 1, one line on stderr naming the setting to fix (no traceback), one line in rps.log,
and nothing leased from the journal by a start that failed."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rps_service.clock import utcnow
from rps_service.config import parse_database_url
from rps_service.models import NewEvent
from rps_service.store import create_store
from tests.conftest import free_port, write_ini


def run_daemon(folder: Path, general: dict[str, object], extra: str = ""
               ) -> subprocess.CompletedProcess[str]:
    """``rps-service run`` until it exits (these starts fail); its stderr in the result."""
    values: dict[str, object] = {"port": free_port(), "database": f"sqlite:///{folder}/rps.db",
                                 "log_file": str(folder / "rps.log"), "queuenum": 2}
    values.update(general)
    ini = write_ini(folder / "rps.ini", values, extra=extra)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPS_")}
    return subprocess.run([sys.executable, "-m", "rps_service", "run", "-c", str(ini)],
                          capture_output=True, text=True, timeout=60, cwd=folder, env=env)


def assert_refused(result: subprocess.CompletedProcess[str], folder: Path, reason: str) -> None:
    """Exit 1; exactly ``rps-service: cannot start: <reason>`` on stderr; logged once."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"rps-service: cannot start: {reason}"]
    log = (folder / "rps.log").read_text()
    assert log.count("Cannot start") == 1, log
    assert f"ERROR (MAIN): Cannot start. Err={reason}\n" in log
    assert "Traceback" not in log + result.stderr + result.stdout


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_event_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = run_daemon(tmp_path, {"port": taken_port})
    assert_refused(result, tmp_path, f"[general] port {taken_port}: address already in use")


def test_listen_address_not_on_this_host(tmp_path: Path) -> None:
    result = run_daemon(tmp_path, {"listen": "192.0.2.1", "api_token": "tok-123456"})
    assert_refused(result, tmp_path, "[general] listen 192.0.2.1: cannot assign requested address")


async def _journal_one_event(url: str) -> int:
    store = create_store(parse_database_url(url))
    await store.open()
    await store.migrate()
    try:
        [row] = await store.insert_events(
            [NewEvent("add", "snom", 1, "000413ABCDEF", {}, None)], utcnow())
        return row.id
    finally:
        await store.close()


async def _event_row(url: str, event_id: int) -> tuple[str, int]:
    store = create_store(parse_database_url(url))
    await store.open()
    try:
        event = await store.get_event(event_id)
    finally:
        await store.close()
    assert event is not None
    return event.state, event.attempts


def test_ztp_port_in_use_and_nothing_leased(tmp_path: Path, taken_port: int) -> None:
    url = f"sqlite:///{tmp_path}/rps.db"
    event_id = asyncio.run(_journal_one_event(url))
    result = run_daemon(tmp_path, {"database": url},
                        extra=f"\n[ztp]\nenabled = true\nlisten = 127.0.0.1\nport = {taken_port}\n")
    assert_refused(result, tmp_path, f"[ztp] port {taken_port}: address already in use")
    # The distributor never ran: the waiting event was neither leased nor sent.
    assert asyncio.run(_event_row(url, event_id)) == ("pending", 0)
    log = (tmp_path / "rps.log").read_text()
    assert "Distributing events" not in log and "Sending Request" not in log


def test_database_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    dsn = f"sqlite:///{tmp_path}/data/rps.db"
    result = run_daemon(tmp_path, {"database": dsn})
    assert_refused(result, tmp_path, f"[general] database {dsn}: cannot create the folder "
                                     f"{tmp_path}/data: {tmp_path}/data is a file, not a folder")


def test_database_folder_not_writable(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        folder = Path("/sys/kernel")  # root may write anywhere else
    else:
        folder = tmp_path / "readonly"
        folder.mkdir(mode=0o500)
    dsn = f"sqlite:///{folder}/rps.db"
    result = run_daemon(tmp_path, {"database": dsn})
    assert_refused(result, tmp_path,
                   f"[general] database {dsn}: cannot open {folder}/rps.db: unable to open "
                   f"database file (the file and {folder} must be writable by this user)")


def test_unreachable_mysql(tmp_path: Path) -> None:
    port = free_port()
    dsn = f"mysql://rps@127.0.0.1:{port}/pbxware"
    result = run_daemon(tmp_path, {"database": dsn})
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    prefix = (f"rps-service: cannot start: [general] database {dsn}: "
              f"MySQL at 127.0.0.1:{port}: MySQL error 2003: ")
    assert line.startswith(prefix) and line.endswith("(connection refused)"), line
    log = (tmp_path / "rps.log").read_text()
    assert log.count("Cannot start") == 1 and "Traceback" not in log + result.stderr
