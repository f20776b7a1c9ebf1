"""``rps_service.sandbox.cli.main`` as a process: announces itself, serves, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx
import mohawk
from mohawk.base import EmptyValue

SCRIPT = "import sys; from rps_service.sandbox.cli import main; sys.exit(main(sys.argv[1:]))"


async def test_cli_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SCRIPT, "--port", "0", "--settings-count", "50",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert first.startswith("SRAPS sandbox listening on http://127.0.0.1:")
        url = first.split(" on ")[1].strip() + "tokens/demo-key"
        keys = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
        assert "id=demo-key secret=demo-secret company=1001 role=admin" in keys
        creds = {"id": "demo-key", "key": "demo-secret", "algorithm": "sha256"}
        sender = mohawk.Sender(creds, url, "GET", EmptyValue, EmptyValue, always_hash_content=False)
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(url, headers={"Authorization": sender.request_header})
        assert response.status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_help_says_it_serves_every_vendor() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rps_service", "sandbox", "--help",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    text = " ".join(out.decode().split())
    assert proc.returncode == 0
    assert "SRAPS-compatible" not in text
    assert "Every vendor's redirection API emulated on one local port" in text
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rps_service", "--help", stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert "emulate every vendor's API locally" in " ".join(out.decode().split())
