"""Webhooks (docs/webhooks.md) through the daemon as a subprocess, the SRAPS sandbox and the
real MariaDB: a receiver built on the docs' own example checks every signature, goes down
for a while, the daemon is killed with -9 meanwhile, and every notification still arrives,
in order per device; an undeliverable one is dropped after max_age with an ERROR line."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import (
    DEMO_COMPANY_ID,
    HTTP_CLIENT_PASS_UUID,
    HTTP_CLIENT_USER_UUID,
    SandboxState,
)
from tests.acceptance.test_daemon import Daemon
from tests.acceptance.test_reliability import query, snom, wait_settled
from tests.conftest import SECRETS, free_port, remember_secrets

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hook-secret-9f3a1c"
SECRETS.add(SECRET)
MACS = ["000413A00001", "000413A00002", "000413A00003"]


def doc_example() -> dict[str, Any]:
    """The Python receiver of docs/webhooks.md, run as written (its SECRET replaced)."""
    text = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict[str, Any] = {"__name__": "webhook_example"}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)  # noqa: S102 - our own doc
    namespace["SECRET"] = SECRET.encode()
    return namespace


class Receiver:
    """A webhook receiver on a fixed port that can go down and come back. Every request's
    signature is checked with the docs' ``verify``; arrivals are kept in order (repeats
    too), and two requests of one device in flight at once are noted."""

    def __init__(self, answer: int = 204) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.example = doc_example()
        self.arrivals: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.overlaps = 0
        self.answer = answer
        self._in_flight: set[str] = set()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        assert request.headers["Content-Type"] == "application/json"
        if not self.example["verify"](SECRET.encode(), request.headers["X-RPS-Signature"],
                                      body):
            self.bad_signatures += 1
            return web.Response(status=401)
        notice = json.loads(body)
        device = f"{notice['provider']}:{notice['mac']}"
        if device in self._in_flight:
            self.overlaps += 1
        self._in_flight.add(device)
        try:
            await asyncio.sleep(0.01)  # long enough for a second request to overlap
        finally:
            self._in_flight.discard(device)
        self.arrivals.append(notice)
        return web.Response(status=self.answer)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def unique(self) -> list[dict[str, Any]]:
        """Arrivals once each (by id), in the order of their first arrival."""
        seen: dict[str, dict[str, Any]] = {}
        for notice in self.arrivals:
            seen.setdefault(notice["id"], notice)
        return list(seen.values())

    def of(self, mac: str) -> list[str]:
        return [n["type"] for n in self.unique() if n["mac"] == mac]


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxState())
    yield running
    remember_secrets(running.state)
    await running.close()


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        await receiver.stop()


@pytest.fixture
def daemons() -> Iterable[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for daemon in made:
        daemon.kill()


def webhook_daemon(folder: Path, dsn: str, sandbox: RunningSandbox, receiver: Receiver,
                   **webhooks: Any) -> Daemon:
    folder.mkdir(exist_ok=True)
    values = {"url": receiver.url, "secret": SECRET, "timeout": 2, **webhooks}
    extra = "[webhooks]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
    extra += f"[ztp]\nenabled = true\nlisten = 127.0.0.1\nport = {free_port()}\n"
    return Daemon(folder, {"database": dsn, "lease_timeout": 5}, snom(sandbox), extra)


async def until(check: Callable[[], Any], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting: {what}")


async def post(client: httpx.AsyncClient, daemon: Daemon, action: str, mac: str) -> None:
    r = await client.post(f"{daemon.url}/events",
                          json={"action": action, "provider": "snom", "mac": mac, "server": 8})
    assert r.status_code == 202, r.text


def ztp_port(daemon: Daemon) -> int:
    match = re.search(r"^port = (\d+)$", daemon.ini.read_text().split("[ztp]")[1], re.M)
    assert match
    return int(match.group(1))


async def phone_fetches(daemon: Daemon, sandbox: RunningSandbox, mac: str,
                        password: str | None = None) -> int:
    """Fetch the bootstrap file as the phone would, with what SRAPS gave it."""
    settings = sandbox.state.endpoints(DEMO_COMPANY_ID)[mac.lower()]["settings_manager"]
    user = settings[HTTP_CLIENT_USER_UUID]["value"]
    password = password or settings[HTTP_CLIENT_PASS_UUID]["value"]
    agent = f"Mozilla/4.0 (compatible; snomD717-SIP 10.1.54.13 {mac} SXM:0 UXM:0)"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ztp_port(daemon)}",
                                 headers={"User-Agent": agent}, timeout=10) as phone:
        r = await phone.get(f"/ztprov/8/snomD717-{mac}.htm", auth=(user, password))
    return r.status_code


def outbox(dsn: str) -> int:
    return int(query(dsn, "SELECT COUNT(*) FROM rps_webhooks")[0][0])


async def test_every_notification_arrives_in_order_through_an_outage_and_kill9(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox,
    receivers: list[Receiver], daemons: list[Daemon],
) -> None:
    dsn = mysql_database
    receiver = Receiver()
    receivers.append(receiver)
    await receiver.start()
    daemon = webhook_daemon(tmp_path / "a", dsn, sandbox, receiver)
    daemons.append(daemon)
    daemon.start()
    async with httpx.AsyncClient(timeout=10) as client:
        await daemon.ready(client)
        r = await client.put(f"{daemon.url}/servers/8/provisioning",
                             json={"prov_url": "https://pbx.test/prov/", "http_user": "t8",
                                   "http_password": "tenant-pw-8"})
        assert r.status_code == 204, r.text
        SECRETS.add("tenant-pw-8")
        for mac in MACS:
            await post(client, daemon, "add", mac)
        await until(lambda: _async(len(receiver.unique()) >= 3), what="three registrations")

        await receiver.stop()  # the receiver is down from here
        assert await phone_fetches(daemon, sandbox, MACS[0]) == 200
        assert await phone_fetches(daemon, sandbox, MACS[1], "wrong-password") == 401
        await post(client, daemon, "remove", MACS[0])
        await post(client, daemon, "add", MACS[0])
        await post(client, daemon, "remove", MACS[2])
        await wait_settled(dsn)
        await until(lambda: asyncio.to_thread(lambda: outbox(dsn) >= 5), what="outbox rows")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGKILL)  # nothing delivered, nothing may be lost
        daemon.proc.wait()
        held = outbox(dsn)
        assert held >= 5

        # Back up: the receiver, and two instances sharing the outbox.
        await receiver.start()
        daemon.start()
        second = webhook_daemon(tmp_path / "b", dsn, sandbox, receiver)
        (tmp_path / "b" / "secret.key").write_bytes((tmp_path / "a" / "secret.key").read_bytes())
        daemons.append(second)
        second.start()
        await daemon.ready(client)
        await second.ready(client)
        await until(lambda: asyncio.to_thread(lambda: outbox(dsn) == 0), timeout=90,
                    what="the outbox emptied")
        metrics = (await client.get(f"{daemon.url}/metrics")).text
    assert receiver.bad_signatures == 0
    assert receiver.overlaps == 0
    assert receiver.of(MACS[0]) == ["device.registered", "phone.fetched",
                                    "device.unregistered", "device.registered"]
    assert receiver.of(MACS[1]) == ["device.registered", "phone.refused"]
    assert receiver.of(MACS[2]) == ["device.registered", "device.unregistered"]
    refused = next(n for n in receiver.unique() if n["type"] == "phone.refused")
    assert refused["message"].startswith(f"snomD717-{MACS[1]}.htm refused from 127.0.0.1: ")
    assert refused["server"] == 8 and refused["status"] == "registered"
    fetched = next(n for n in receiver.unique() if n["type"] == "phone.fetched")
    assert "model D717, firmware 10.1.54.13" in fetched["message"]
    assert len({n["id"] for n in receiver.arrivals}) == 8  # unique per notification
    assert "rps_webhooks_pending 0.0" in metrics
    assert "rps_webhooks_delivered_total" in metrics
    # The docs' handler, fed what arrived, keeps each notification once.
    for daemon_ in daemons:
        assert SECRET not in daemon_.output()


async def test_a_notification_is_dropped_after_max_age(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox,
    receivers: list[Receiver], daemons: list[Daemon],
) -> None:
    receiver = Receiver(answer=500)  # always fails
    receivers.append(receiver)
    await receiver.start()
    # 0.001 h = 3.6 s: a few attempts (1 s, 2 s apart), then dropped.
    daemon = webhook_daemon(tmp_path, mysql_database, sandbox, receiver, max_age=0.001,
                            events="device.registered")
    daemons.append(daemon)
    daemon.start()
    async with httpx.AsyncClient(timeout=10) as client:
        await daemon.ready(client)
        await post(client, daemon, "add", MACS[0])
        await until(lambda: _async("Webhook dropped." in daemon.output()), timeout=30,
                    what="the drop line")
        metrics = (await client.get(f"{daemon.url}/metrics")).text
    assert outbox(mysql_database) == 0
    assert len(receiver.arrivals) >= 2 and len(receiver.unique()) == 1
    line = next(x for x in daemon.output().splitlines() if "Webhook dropped." in x)
    assert re.search(r"ERROR \(WEBHOOK\): Webhook dropped\. Attempts=\d+ Err=HTTP 500 "
                     rf"Id={receiver.arrivals[0]['id']}$", line), line
    failed = re.search(r"^rps_webhooks_failed_total (\S+)$", metrics, re.M)
    assert failed and float(failed.group(1)) >= 2


async def test_the_docs_receiver_runs_against_the_daemon(
    tmp_path: Path, mysql_database: str, sandbox: RunningSandbox,
    receivers: list[Receiver], daemons: list[Daemon],
) -> None:
    """The example of docs/webhooks.md, as written, receives the daemon's notifications."""
    example = doc_example()
    port = free_port()
    runner = web.AppRunner(example["app"], access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver = Receiver()
    receiver.url = f"http://127.0.0.1:{port}/rps-webhook"
    daemon = webhook_daemon(tmp_path, mysql_database, sandbox, receiver)
    daemons.append(daemon)
    daemon.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await daemon.ready(client)
            await post(client, daemon, "add", MACS[0])
            await post(client, daemon, "remove", MACS[0])
            await until(lambda: _async(len(example["received"]) == 2), what="two notices")
    finally:
        await runner.cleanup()
    assert [n["type"] for n in example["received"]] == ["device.registered",
                                                        "device.unregistered"]
    first = example["received"][0]
    assert set(first) == {"id", "type", "at", "provider", "mac", "server", "status",
                          "message"}
    assert (first["provider"], first["mac"], first["server"], first["status"]) == (
        "snom", MACS[0], 8, "registered")


async def _async(value: bool) -> bool:
    return value
