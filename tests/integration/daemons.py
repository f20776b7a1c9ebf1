"""Daemons with one vendor enabled, pointed at the sandbox, on a real database.

What the vendor tests share: write an rps.ini with the vendor's section (the emulator's
``api_url``, its demo credentials unless others are given), start the service in this
process, and at the end stop every daemon and close every sandbox started for the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from rps_service import logs
from rps_service.config import load_settings
from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import SandboxState
from rps_service.service import Service
from tests.conftest import SECRETS, free_port, remember_secrets

ZTP_URL = "https://ztp.test/ztprov/{server}/"


def ini_text(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
                  for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


@dataclass
class Daemon:
    service: Service
    sandbox: RunningSandbox
    api: httpx.AsyncClient
    log_path: Path
    sink: logs.LogFile = field(repr=False)


class Daemons:
    """Starts daemons for one test (each with its own rps.log, all on ``database``)."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.tmp_path = tmp_path
        self.database = database
        self.running: list[Daemon] = []
        self.sandboxes: list[RunningSandbox] = []

    async def start(self, vendor: str, *, sandbox: RunningSandbox | None = None,
                    credentials: dict[str, Any] | None = None,
                    general: dict[str, Any] | None = None, ztp: bool = True,
                    others: dict[str, dict[str, Any]] | None = None,
                    others_sandbox: RunningSandbox | None = None,
                    **section: Any) -> Daemon:
        """A daemon with ``[vendor]`` enabled against ``sandbox`` (a new one by default);
        ``credentials`` replace the emulator's demo ones, ``section`` and ``general`` add to
        or override the defaults of those sections. ``others``: more vendors enabled, each
        with its emulator's demo credentials plus the values given, against
        ``others_sandbox`` (default: the same sandbox)."""
        if sandbox is None:
            sandbox = await start_sandbox(SandboxState())
            self.sandboxes.append(sandbox)
        emulator = sandbox.state.emulators[vendor]
        if credentials is None:
            credentials = emulator.demo_credentials()
            SECRETS.update(str(v) for k, v in credentials.items()
                           if "secret" in k or "password" in k or k == "api_key")
        log_path = self.tmp_path / f"rps-{len(self.running)}.log"
        sections: dict[str, dict[str, Any]] = {
            "general": {"port": free_port(), "database": self.database,
                        "secret_key_file": str(self.tmp_path / "secret.key"),
                        "log_file": str(log_path), "poll_interval": 0.2, "retry_base": 0.01,
                        "retry_cap": 0.5, "queuenum": 2, **(general or {})},
            vendor: {"enabled": True, "api_url": emulator.api_url(sandbox.base_url),
                     "provisioning_url": ZTP_URL, "timeout": 5, "rate_limit": 1000,
                     **credentials, **section},
        }
        if ztp:
            sections["ztp"] = {"enabled": True, "listen": "127.0.0.1", "port": free_port()}
        if vendor != "snom":
            sections["snom"] = {"enabled": False}
        for name, values in (others or {}).items():
            where = others_sandbox or sandbox
            other = where.state.emulators[name]
            sections[name] = {"enabled": True, "api_url": other.api_url(where.base_url),
                              "provisioning_url": ZTP_URL, "timeout": 5, "rate_limit": 1000,
                              **other.demo_credentials(), **values}
        ini = self.tmp_path / "rps.ini"
        ini.write_text(ini_text(sections), encoding="utf-8")
        sink = logs.configure(str(log_path))
        service = Service(load_settings(ini, env={}), log_sink=sink)
        await service.start()
        api = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=15)
        daemon = Daemon(service, sandbox, api, log_path, sink)
        self.running.append(daemon)
        return daemon

    async def close(self) -> None:
        for daemon in self.running:
            await daemon.api.aclose()
            await daemon.service.stop()
            daemon.sink.close()
        for sandbox in self.sandboxes:
            remember_secrets(sandbox.state)  # device passwords and URL keys it received
            await sandbox.close()
        structlog.reset_defaults()
