"""The daemon as a subprocess, as an operator runs it: start, post, signals, rps.log."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import DEMO_COMPANY_ID, DEMO_KEY_ID, DEMO_SECRET
from tests.conftest import free_port, remember_secrets, write_ini

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] (DEBUG|INFO|WARNING|ERROR) \([A-Za-z]+\): "
    r"[^.]+\.( [A-Z][A-Za-z]*=\S.*)?$"
)


class Daemon:
    """One ``rps-service run`` process in a temporary folder."""

    def __init__(self, folder: Path, general: dict[str, Any], snom: dict[str, Any],
                 extra: str = "") -> None:
        self.folder = folder
        self.port = free_port()
        self.log = folder / "rps.log"
        values = {"port": self.port, "database": f"sqlite:///{folder}/rps.db",
                  "log_file": str(self.log), "poll_interval": 0.2, "retry_base": 0.05,
                  "retry_cap": 0.2, "queuenum": 2}
        values.update(general)
        self.ini = write_ini(folder / "rps.ini", values, snom, extra)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RPS_")}
        with (self.folder / "stderr.txt").open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rps_service", "run", "-c", str(self.ini)],
                cwd=self.folder, env=env, stdout=err, stderr=err,
            )

    async def ready(self, client: httpx.AsyncClient, timeout: float = 20) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.output()
            try:
                if (await client.get(f"{self.url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        raise AssertionError("daemon did not become ready")

    async def wait_exit(self, timeout: float = 20) -> int:
        assert self.proc is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while self.proc.poll() is None:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("daemon did not exit")
            await asyncio.sleep(0.05)
        return int(self.proc.returncode)

    def output(self) -> str:
        text = self.log.read_text() if self.log.exists() else ""
        stderr = self.folder / "stderr.txt"
        return text + (stderr.read_text() if stderr.exists() else "")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox()
    yield running
    remember_secrets(running.state)
    await running.close()


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for daemon in made:
        daemon.kill()


def snom_keys(sandbox: RunningSandbox) -> dict[str, Any]:
    return {"api_url": sandbox.url, "access_key_id": DEMO_KEY_ID,
            "access_key_secret": DEMO_SECRET, "timeout": 5,
            "rate_limit": 1000, "provisioning_url": "https://pbx.test/ztprov/{server}/"}


async def events(client: httpx.AsyncClient, daemon: Daemon) -> dict[int, dict[str, Any]]:
    r = await client.get(f"{daemon.url}/events", params={"limit": 1000})
    return {e["id"]: e for e in r.json()["events"]}


async def test_sigterm_drains_in_flight_and_keeps_the_rest(
    tmp_path: Path, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, {"queuenum": 1, "drain_timeout": 10}, snom_keys(sandbox))
    daemons.append(daemon)
    daemon.start()
    async with httpx.AsyncClient(timeout=10) as client:
        await daemon.ready(client)
        sandbox.state.paused = True
        macs = [f"0004130000{i:02X}" for i in range(4)]
        r = await client.post(f"{daemon.url}/events",
                              json=[{"action": "add", "provider": "snom", "mac": m}
                                    for m in macs])
        assert r.status_code == 202
        ids = [e["id"] for e in r.json()["events"]]
        await asyncio.wait_for(sandbox.state.wait_held(1), 10)  # the first event is in flight
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        assert daemon.proc.poll() is None  # still draining
        sandbox.state.paused = False
        assert await daemon.wait_exit() == 0
    log = daemon.output()
    assert "INFO (MAIN): Signal received. Signal=SIGTERM" in log
    assert MAC_LINE(macs[0]) in log
    # Restart: the first event finished before exit, the others were kept pending.
    daemon.start()
    async with httpx.AsyncClient(timeout=10) as client:
        sandbox.state.paused = True
        await daemon.ready(client)
        rows = await events(client, daemon)
    assert rows[ids[0]]["state"] == "done"
    assert all(rows[i]["state"] in ("pending", "running") for i in ids[1:])
    assert all(rows[i]["attempts"] <= 1 for i in ids[1:])
    sandbox.state.paused = False
    assert macs[0].lower() in sandbox.state.endpoints(DEMO_COMPANY_ID)


def MAC_LINE(mac: str) -> str:
    return f"INFO (DATABASE): Device updated. Mac={mac} Provider=snom Server=1 Status=registered"


async def test_second_signal_stops_at_once(
    tmp_path: Path, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, {"queuenum": 1, "drain_timeout": 60}, snom_keys(sandbox))
    daemons.append(daemon)
    daemon.start()
    async with httpx.AsyncClient(timeout=10) as client:
        await daemon.ready(client)
        sandbox.state.hang = True
        r = await client.post(f"{daemon.url}/events",
                              json={"action": "add", "provider": "snom", "mac": "000413000001"})
        assert r.status_code == 202
        await asyncio.wait_for(sandbox.state.wait_held(1), 10)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        daemon.proc.send_signal(signal.SIGINT)
        assert await daemon.wait_exit(timeout=5) == 1
    assert "Second signal, stopping at once" in daemon.output()


async def test_log_lines_follow_spec_and_hold_no_secret(
    tmp_path: Path, sandbox: RunningSandbox, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, {"api_token": "tok-123456"}, snom_keys(sandbox))
    daemons.append(daemon)
    daemon.start()
    headers = {"Authorization": "Bearer tok-123456"}
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        await daemon.ready(client)
        sandbox.state.fail_next = [403]
        r = await client.post(f"{daemon.url}/events", json=[
            {"action": "add", "provider": "snom", "mac": "00:04:13:00:00:01", "server": 8},
            {"action": "add", "provider": "snom", "mac": "000413000002"},
        ])
        ids = [e["id"] for e in r.json()["events"]]
        for _ in range(200):
            rows = await events(client, daemon)
            if all(rows[i]["state"] in ("done", "failed") for i in ids):
                break
            await asyncio.sleep(0.05)
        device = (await client.get(f"{daemon.url}/devices/snom/000413000002")).json()
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        assert await daemon.wait_exit() == 0
    lines = daemon.log.read_text().splitlines()
    assert lines, "rps.log is empty"
    bad = [line for line in lines if not LINE.match(line)]
    assert bad == []
    text = "\n".join(lines)
    assert re.search(r"\] INFO \(LISTENER\): Listening\. Address=127\.0\.0\.1:\d+$", text, re.M)
    assert "INFO (DISTRIBUTOR): Distributing events. Num=2" in text
    assert re.search(r"ERROR \(QUEUE\): Error while handling Event\. Action=add Err=403: .+ "
                     r"Mac=000413000001 Provider=snom Server=8$", text, re.M)
    assert "Sending Request. Mac=000413000002 Url=http://127.0.0.1:" in text
    for secret in (DEMO_SECRET, "tok-123456", "Hawk id="):
        assert secret not in text
    assert device["status"] == "registered"


def test_bad_config_exits_2_naming_file_section_key(tmp_path: Path) -> None:
    ini = write_ini(tmp_path / "rps.ini", {"queuenum": "many"})
    result = subprocess.run([sys.executable, "-m", "rps_service", "run", "-c", str(ini)],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode == 2
    assert f"{ini}: [general] queuenum:" in result.stderr
    result = subprocess.run([sys.executable, "-m", "rps_service", "check-config", "-c",
                             str(ROOT / "etc" / "rps.ini")],
                            capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 0, result.stderr


async def test_snom_event_without_keys_fails_with_clear_message(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(tmp_path, {}, {"api_url": "http://127.0.0.1:9/api/v1/",
                                   "provisioning_url": "https://pbx.test/ztprov/"})
    daemons.append(daemon)
    daemon.start()
    async with httpx.AsyncClient(timeout=10) as client:
        await daemon.ready(client)
        r = await client.post(f"{daemon.url}/events",
                              json={"action": "add", "provider": "snom", "mac": "000413000003"})
        event_id = r.json()["events"][0]["id"]
        for _ in range(200):
            row = (await client.get(f"{daemon.url}/events/{event_id}")).json()
            if row["state"] == "failed":
                break
            await asyncio.sleep(0.05)
    assert row["state"] == "failed"
    assert row["last_error"].startswith("No SRAPS API keys for server 1 (master mode)")


async def test_the_terminal_shows_the_listeners_and_the_example_url_warning(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Started by hand with rps.log in a file, the terminal says where both listeners are
    and that events fail while provisioning_url is the shipped example (not only rps.log)."""
    ztp_port = free_port()
    daemon = Daemon(tmp_path, {}, {}, extra=f"[ztp]\nenabled = true\nlisten = 127.0.0.1\n"
                                             f"port = {ztp_port}\n")
    daemons.append(daemon)
    daemon.start()
    async with httpx.AsyncClient(timeout=10) as client:
        await daemon.ready(client)
    stderr = tmp_path / "stderr.txt"
    address = f"127.0.0.1:{daemon.port}"
    expected = [
        f"rps-service: listening on {address} (web console http://{address}/ui/); log in "
        f"{daemon.log}",
        f"rps-service: phones' listener on 127.0.0.1:{ztp_port}, path /ztprov/",
        "rps-service: WARNING: [snom] provisioning_url is the example host pbx.example.com: "
        "its events fail until it is the URL your phones reach (e.g. "
        "RPS_SNOM_PROVISIONING_URL=…)",
    ]

    async def said() -> bool:
        return stderr.read_text().splitlines() == expected

    deadline = asyncio.get_running_loop().time() + 10
    while not await said():
        assert asyncio.get_running_loop().time() < deadline, stderr.read_text()
        await asyncio.sleep(0.05)
