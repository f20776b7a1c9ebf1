"""Helpers for the operations tests: a stand-in for systemd's notify socket, /metrics text."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator

from prometheus_client.parser import text_string_to_metric_families


class FakeSystemd:
    """Receives sd_notify datagrams; each line with the monotonic time it arrived."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock, self.address = sock, address
        self.messages: list[tuple[float, str]] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 4096)
            now = time.monotonic()
            self.messages += [(now, line) for line in data.decode().split("\n")]
            self._arrived.set()

    def lines(self) -> list[str]:
        return [line for _, line in self.messages]

    async def wait_for(self, line: str | re.Pattern[str], timeout: float = 20) -> float:
        """When a matching line arrived (waiting for it if need be)."""
        deadline = time.monotonic() + timeout
        while True:
            for when, seen in self.messages:
                if seen == line if isinstance(line, str) else line.match(seen):
                    return when
            if time.monotonic() > deadline:
                raise AssertionError(f"no {line!r} from the daemon; got {self.lines()}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), deadline - time.monotonic())


@contextlib.asynccontextmanager
async def fake_systemd(abstract: bool = False) -> AsyncIterator[FakeSystemd]:
    """A bound datagram socket (a short path: AF_UNIX allows 108 bytes, or an abstract name)."""
    folder = tempfile.mkdtemp(prefix="rps-")
    if abstract:
        address = f"@rps-test-{os.getpid()}-{time.monotonic_ns()}"
        bind_to = "\0" + address[1:]
    else:
        address = bind_to = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(bind_to)
        sock.setblocking(False)
        fake = FakeSystemd(sock, address)
        fake._task = asyncio.create_task(fake._receive(), name="fake-systemd")
        try:
            yield fake
        finally:
            fake._task.cancel()
            await asyncio.gather(fake._task, return_exceptions=True)
    finally:
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)


def scrape(text: str) -> dict[str, float]:
    """``name{label="v",…}`` (labels sorted) → value, for the samples of a /metrics page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
