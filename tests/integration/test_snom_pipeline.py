"""Daemon + Snom provider + SRAPS sandbox + real MariaDB: docs/vendors/snom.md end to end."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from rps_service import logs
from rps_service.config import load_settings
from rps_service.sandbox import start_sandbox
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import (
    DEMO_COMPANY_ID,
    DEMO_KEY_ID,
    DEMO_SECRET,
    HTTP_CLIENT_PASS_UUID,
    HTTP_CLIENT_USER_UUID,
    NOROLE_KEY_ID,
    NOROLE_SECRET,
    OTHER_COMPANY_ID,
    SETTING_SERVER_UUID,
    TAKEN_MAC,
)
from rps_service.service import Service
from tests.conftest import JSON_TYPE, free_port, remember_secrets, write_ini
from tests.integration.test_pipeline import wait_events

MAC = "000413ABCDEF"
Env = tuple[Service, RunningSandbox, httpx.AsyncClient, Path]


@pytest.fixture
async def env(tmp_path: Path, mysql_database: str) -> AsyncIterator[Callable[..., Awaitable[Env]]]:
    running: list[tuple[Service, RunningSandbox, httpx.AsyncClient, logs.LogFile]] = []

    async def _start(general: dict[str, Any] | None = None, snom: dict[str, Any] | None = None,
                     settings_count: int = 1200, state: Any = None) -> Env:
        from rps_service.sandbox.state import SandboxState

        sandbox = await start_sandbox(state or SandboxState(settings_count))
        log_path = tmp_path / "rps.log"
        values = {"port": free_port(), "database": mysql_database, "log_file": str(log_path),
                  "poll_interval": 0.2, "retry_base": 0.01, "retry_cap": 0.05,
                  "queuenum": 2}
        values.update(general or {})
        snom_values = {"api_url": sandbox.url, "access_key_id": DEMO_KEY_ID,
                       "access_key_secret": DEMO_SECRET,
                       "provisioning_url": "https://pbx.test/ztprov/{server}/",
                       "timeout": 5, "rate_limit": 1000}
        snom_values.update(snom or {})
        settings = load_settings(write_ini(tmp_path / "rps.ini", values, snom_values), env={})
        sink = logs.configure(str(log_path))
        service = Service(settings, log_sink=sink)
        await service.start()
        client = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10)
        running.append((service, sandbox, client, sink))
        return service, sandbox, client, log_path

    yield _start
    for service, sandbox, client, sink in running:
        await client.aclose()
        await service.stop()
        remember_secrets(sandbox.state)
        await sandbox.close()
        sink.close()
    structlog.reset_defaults()


async def post(client: httpx.AsyncClient, action: str, mac: str = MAC, server: int = 8
               ) -> dict[str, Any]:
    r = await client.post("/events", json={"action": action, "provider": "snom", "mac": mac,
                                           "server": server})
    assert r.status_code == 202, r.text
    [row] = await wait_events(client, [r.json()["events"][0]["id"]])
    return row


async def test_add_reregister_remove(env: Callable[..., Awaitable[Env]]) -> None:
    _, sandbox, client, log_path = await env()
    row = await post(client, "add")
    assert row["state"] == "done"
    endpoint = sandbox.state.endpoints(DEMO_COMPANY_ID)[MAC.lower()]
    settings = endpoint["settings_manager"]
    assert settings[SETTING_SERVER_UUID]["value"] == "https://pbx.test/ztprov/8/"
    device = (await client.get(f"/devices/snom/{MAC}")).json()
    assert device["status"] == "registered" and device["last_message"] == "-"
    assert settings[HTTP_CLIENT_USER_UUID]["value"] == device["http_username"]
    password = settings[HTTP_CLIENT_PASS_UUID]["value"]
    assert len(password) >= 20

    sandbox.state.reset_counts()
    assert (await post(client, "add"))["state"] == "done"
    assert sandbox.state.total == 2  # warm: the endpoint's read (portal settings) and PUT
    again = sandbox.state.endpoints(DEMO_COMPANY_ID)[MAC.lower()]["settings_manager"]
    assert again[HTTP_CLIENT_PASS_UUID]["value"] == password

    assert (await post(client, "remove"))["state"] == "done"
    assert MAC.lower() not in sandbox.state.endpoints(DEMO_COMPANY_ID)
    device = (await client.get(f"/devices/snom/{MAC}")).json()
    assert device["status"] == "unregistered" and device["http_username"] is None

    text = log_path.read_text()
    # A GET and a PUT of the endpoint, told apart by the method.
    verbs = re.findall(r"INFO \(Snom\): Sending Request\. Mac=000413ABCDEF Url=http://127\.0\.0"
                       r"\.1:\d+/api/v1/companies/1001/endpoints/000413abcdef Verb=(\w+)$",
                       text, re.M)
    assert {"GET", "PUT", "DELETE"} <= set(verbs), verbs
    assert "INFO (DATABASE): Device updated. Mac=000413ABCDEF Provider=snom Server=8 " \
           "Status=registered" in text
    assert DEMO_SECRET not in text and password not in text


async def test_key_without_role(env: Callable[..., Awaitable[Env]]) -> None:
    _, _, client, log_path = await env(snom={"access_key_id": NOROLE_KEY_ID,
                                             "access_key_secret": NOROLE_SECRET})
    row = await post(client, "add")
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "Role" in row["last_error"]
    device = (await client.get(f"/devices/snom/{MAC}")).json()
    assert device["status"] == "error" and "choose a Role" in device["last_message"]
    assert re.search(r"ERROR \(QUEUE\): Error while handling Event\. Action=add Err=403: .+ "
                     r"Mac=000413ABCDEF Provider=snom Server=8$", log_path.read_text(), re.M)
    r = await client.post("/providers/snom/test", json={"server": 8})
    assert r.status_code == 200
    assert r.json()["ok"] is False and "Role" in r.json()["message"]


async def test_mac_owned_by_other_account(env: Callable[..., Awaitable[Env]]) -> None:
    _, sandbox, client, _ = await env()
    row = await post(client, "add", mac=TAKEN_MAC)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "another SRAPS account" in row["last_error"]
    assert TAKEN_MAC in sandbox.state.endpoints(OTHER_COMPANY_ID)


async def test_wrong_secret(env: Callable[..., Awaitable[Env]]) -> None:
    _, _, client, log_path = await env(snom={"access_key_secret": "not-the-secret"})
    row = await post(client, "add")
    assert row["state"] == "failed" and row["attempts"] == 1
    assert row["last_error"].startswith("401: ")
    r = await client.post("/providers/snom/test", json={"server": 1})
    assert r.json()["ok"] is False
    assert r.json()["message"].startswith("SRAPS rejected the API keys: 401: ")
    assert "not-the-secret" not in log_path.read_text()


async def test_5xx_and_429_retried_then_succeed(env: Callable[..., Awaitable[Env]]) -> None:
    _, sandbox, client, _ = await env()
    sandbox.state.retry_after = 0
    sandbox.state.fail_next = [503, 429, 502]
    row = await post(client, "add")
    assert row["state"] == "done" and row["attempts"] == 4
    assert MAC.lower() in sandbox.state.endpoints(DEMO_COMPANY_ID)


async def test_small_and_large_catalogues(env: Callable[..., Awaitable[Env]]) -> None:
    _, sandbox, client, _ = await env(settings_count=2500)
    assert (await post(client, "add"))["state"] == "done"
    pages = sandbox.state.counts[("GET", "settings")]
    assert pages >= 2  # the setting sits past the first page of 1000


async def test_tenant_mode_uses_per_server_keys(env: Callable[..., Awaitable[Env]]) -> None:
    _, sandbox, client, _ = await env(general={"mode": "tenant"})
    row = await post(client, "add", server=8)
    assert row["state"] == "failed" and row["attempts"] == 1
    assert "server 8" in row["last_error"]
    r = await client.put("/providers/snom/credentials/8",
                         json={"access_key_id": DEMO_KEY_ID, "access_key_secret": DEMO_SECRET,
                               "provisioning_url": "https://tenant8.example.com/ztprov/"})
    assert r.status_code == 204
    assert (await client.post(f"/events/{row['id']}/retry", headers=JSON_TYPE)).status_code == 202
    [row] = await wait_events(client, [row["id"]], ("done",))
    endpoint = sandbox.state.endpoints(DEMO_COMPANY_ID)[MAC.lower()]
    assert endpoint["settings_manager"][SETTING_SERVER_UUID]["value"] == \
        "https://tenant8.example.com/ztprov/"
    r = await client.post("/providers/snom/test", json={"server": 8})
    assert r.json()["ok"] is True


async def test_master_mode_ignores_tenant_keys(env: Callable[..., Awaitable[Env]]) -> None:
    _, sandbox, client, _ = await env()
    # Stored keys for server 8 are not used in master mode: the rps.ini keys are.
    r = await client.put("/providers/snom/credentials/8",
                         json={"access_key_id": NOROLE_KEY_ID,
                               "access_key_secret": NOROLE_SECRET})
    assert r.status_code == 204
    assert (await post(client, "add", server=8))["state"] == "done"
    assert MAC.lower() in sandbox.state.endpoints(DEMO_COMPANY_ID)
