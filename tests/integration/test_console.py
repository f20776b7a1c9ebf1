"""The console's files and /openapi.json as the listener serves them (the page itself runs
in a real browser in tests/acceptance/test_console_browser.py)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from rps_service.api.openapi import render
from rps_service.config import load_settings
from tests.conftest import free_port, write_ini
from tests.console import running

TOKEN = "s3cret-token"
UI = Path(__file__).resolve().parents[2] / "rps_service" / "ui"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a daemon with an api_token, sending no token."""
    general = {"port": free_port(), "database": f"sqlite:///{tmp_path}/rps.db",
               "log_file": "-", "api_token": TOKEN}
    settings = load_settings(write_ini(tmp_path / "rps.ini", general), env={})
    async with running(settings) as (service, _), httpx.AsyncClient(
            base_url=f"http://{service.address}", timeout=10) as bare:
        yield bare


async def test_page_and_modules_are_served_without_the_token(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/ui/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="app.js"></script>' in r.text
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    # Every file the page and its modules ask for is there, with a type a browser runs.
    wanted = set(re.findall(r'(?:href|src)="([\w.-]+\.(?:js|css))"', r.text))
    for module in UI.glob("*.js"):
        wanted |= set(re.findall(r"from '\./([\w.-]+\.js)'", module.read_text()))
    assert {"app.js", "api.js", "devices.js", "style.css"} <= wanted
    for name in sorted(wanted):
        got = await client.get(f"/ui/{name}")
        assert got.status_code == 200, name
        assert got.headers["Content-Type"].startswith(
            "text/javascript" if name.endswith(".js") else "text/css"), name


async def test_api_calls_still_need_the_token(client: httpx.AsyncClient) -> None:
    for path in ("/devices", "/events", "/providers", "/openapi.json", "/metrics"):
        assert (await client.get(path)).status_code == 401, path
    assert (await client.get("/health")).status_code == 200
    # Nothing under /ui/ leads to the API or the disk. Sent as raw request lines: an HTTP
    # client would resolve the dots itself.
    for path in ("/ui/../devices", "/ui/%2e%2e/devices", "/ui/..%2fdevices",
                 "/ui//etc/passwd", "/ui/../../rps_service/listener.py", "/ui/nope.js",
                 "/ui/./app.js"):
        status, body = await _raw_get(client.base_url, path)
        assert status == 404, path
        assert body == b'{"error":"no such file in the console"}', path


async def _raw_get(url: httpx.URL, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_ui_without_slash_redirects_and_unchanged_files_answer_304(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/ui")
    assert r.status_code == 301 and r.headers["Location"] == "ui/"
    first = await client.get("/ui/app.js")
    again = await client.get("/ui/app.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""


async def test_openapi_json_is_the_committed_description(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert r.text == render()
    assert r.json()["paths"]["/devices"]["get"]["parameters"][-2]["name"] == "after"
