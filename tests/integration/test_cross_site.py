"""Issue 20, findings 1 and 8: other sites' pages change nothing through the event API, a
malformed ``Authorization`` is a 401, and ``/health`` tells strangers only ok or degraded.

What a browser sends is replayed as it sends it: a ``fetch(url, {mode: 'no-cors', body: new
Blob([...])})`` from another origin has an ``Origin`` and no ``Content-Type``; a plain HTML
form has ``application/x-www-form-urlencoded``; a modern browser adds ``Sec-Fetch-Site``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from rps_service import logs
from rps_service.config import load_settings
from rps_service.service import Service
from tests.conftest import JSON_TYPE, MYSQL_HOST, MYSQL_PORT, free_port, write_ini
from tests.fakes import ScriptedProvider, permanent
from tests.integration.test_pipeline import wait_events
from tests.proxy import TcpProxy

MAC = "000413ABCDEF"
TOKEN = "cross-site-test-token"
EVIL = "http://evil.example"


@dataclass
class Api:
    service: Service
    client: httpx.AsyncClient
    provider: ScriptedProvider
    log: Path

    @property
    def origin(self) -> str:
        return f"http://{self.service.address}"


Start = Callable[..., Awaitable[Api]]


@pytest.fixture
async def start(make_settings: Any, tmp_path: Path) -> AsyncIterator[Start]:
    running: list[Api] = []
    log_path = tmp_path / "rps.log"
    sink = logs.configure(str(log_path))

    async def _start(general: dict[str, Any] | None = None) -> Api:
        provider = ScriptedProvider()
        service = Service(make_settings({**(general or {}), "log_file": str(log_path)}),
                          providers={"fake": provider})
        await service.start()
        headers = {"Authorization": f"Bearer {TOKEN}"} if (general or {}).get(
            "api_token") else {}
        client = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10,
                                   headers=headers)
        running.append(Api(service, client, provider, log_path))
        return running[-1]

    yield _start
    for api in running:
        await api.client.aclose()
        await api.service.stop()
    sink.close()
    structlog.reset_defaults()


async def _registered(api: Api) -> int:
    """A registered device and a failed event of another one; the failed event's id."""
    r = await api.client.post("/events", json={"action": "add", "provider": "fake", "mac": MAC,
                                               "server": 8})
    api.provider.script["000413000002"] = [permanent("403: Forbidden")]
    failed = await api.client.post("/events", json={"action": "add", "provider": "fake",
                                                    "mac": "000413000002", "server": 8})
    ids = [r.json()["events"][0]["id"], failed.json()["events"][0]["id"]]
    rows = await wait_events(api.client, ids, ("done", "failed"))
    assert [row["state"] for row in rows] == ["done", "failed"]
    return ids[1]


async def _unchanged(api: Api, failed_id: int, events_before: int) -> None:
    events = (await api.client.get("/events", params={"limit": 1000})).json()["events"]
    assert len(events) == events_before
    assert (await api.client.get(f"/events/{failed_id}")).json()["state"] == "failed"
    assert (await api.client.get(f"/devices/fake/{MAC}")).json()["status"] == "registered"
    assert api.provider.calls.count(("deregister", MAC)) == 0
    assert (await api.client.get("/jobs")).json()["jobs"] == []
    assert (await api.client.get("/providers/fake/credentials/8")).status_code == 404
    assert (await api.client.get("/servers/8/provisioning")).status_code == 404


def _attempts(failed_id: int) -> list[tuple[str, str, bytes]]:
    """Every state-changing route, as another site's page can send it."""
    remove = json.dumps({"action": "remove", "provider": "fake", "mac": MAC}).encode()
    return [
        ("POST", "/events", remove),
        ("POST", f"/events/{failed_id}/retry", b""),
        ("PUT", "/providers/fake/credentials/8", b'{"access_key_id": "x", '
                                                 b'"access_key_secret": "y"}'),
        ("POST", "/providers/fake/test", b'{"server": 8}'),
        ("POST", "/providers/fake/reconcile", b'{"server": 8, "repair": true}'),
        ("PUT", "/servers/8/provisioning", b'{"prov_url": "https://evil.example/", '
                                          b'"http_user": "u", "http_password": "p"}'),
        ("POST", "/servers/8/repoint", b'{"provider": "fake"}'),
        ("PUT", "/servers/8/settings/fake", b'{"settings": {"a": "b"}}'),
        ("POST", f"/devices/fake/{MAC}/replace", b'{"new_mac": "000413ABCDF0"}'),
    ]


@pytest.mark.parametrize("token", ["", TOKEN], ids=["no-token", "token"])
async def test_other_sites_pages_change_nothing(start: Start, token: str) -> None:
    api = await start({"api_token": token} if token else {})
    failed_id = await _registered(api)
    before = len((await api.client.get("/events", params={"limit": 1000})).json()["events"])
    browsers = [  # what each kind of cross-site request carries
        {"Origin": EVIL},  # fetch(no-cors) with a Blob body: no Content-Type at all
        {"Origin": EVIL, "Content-Type": "text/plain;charset=UTF-8"},
        {"Origin": "null", "Content-Type": "application/json"},  # a sandboxed iframe
        {"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},  # a form
        {"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"},
        {"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"},
        {"Origin": f"http://{api.service.address.replace('127.0.0.1', 'localhost')}",
         "Content-Type": "application/json"},  # same host, another name: another origin
    ]
    for method, path, body in _attempts(failed_id):
        for headers in browsers:
            r = await api.client.request(method, path, content=body, headers=headers)
            assert r.status_code == 403, (method, path, headers, r.text)
            assert r.json() == {"error": "cross-origin request refused"}
    await _unchanged(api, failed_id, before)
    log = api.log.read_text()
    assert ("WARNING (LISTENER): Request refused: cross-origin. Ip=127.0.0.1 Path=/events "
            f"Why=Origin {EVIL}") in log
    assert "Why=Sec-Fetch-Site cross-site" in log


async def test_state_changes_need_a_json_content_type(start: Start) -> None:
    """Without ``Origin`` (older browsers, privacy extensions), a page's request still
    cannot carry ``application/json`` without a preflight: anything else is 415."""
    api = await start()
    failed_id = await _registered(api)
    before = len((await api.client.get("/events", params={"limit": 1000})).json()["events"])
    for method, path, body in _attempts(failed_id):
        for content_type in (None, "text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=x", "application/json-patch"):
            headers = {"Content-Type": content_type} if content_type else {}
            r = await api.client.request(method, path, content=body, headers=headers)
            assert r.status_code == 415, (method, path, content_type, r.text)
            assert r.json()["error"].startswith("send Content-Type: application/json")
    await _unchanged(api, failed_id, before)
    # Unknown paths and methods keep their own answers.
    assert (await api.client.post("/nowhere")).status_code == 404
    assert (await api.client.delete("/events")).status_code == 405


async def test_the_gui_and_the_console_still_work(start: Start) -> None:
    api = await start()
    failed_id = await _registered(api)
    # The PBX GUI: a server, no Origin; a retry needs only the Content-Type, no body.
    api.provider.script.pop("000413000002", None)
    r = await api.client.post(f"/events/{failed_id}/retry", headers=JSON_TYPE)
    assert r.status_code == 202, r.text
    [row] = await wait_events(api.client, [failed_id], ("done",))
    assert row["attempts"] == 1
    # The console: same origin.
    console = {"Origin": api.origin, "Sec-Fetch-Site": "same-origin", **JSON_TYPE}
    r = await api.client.post("/events", headers=console, json={
        "action": "remove", "provider": "fake", "mac": MAC})
    assert r.status_code == 202, r.text
    behind_proxy = {"Origin": "https://pbx.example.com", "Host": "pbx.example.com",
                    "Sec-Fetch-Site": "same-origin", **JSON_TYPE}
    r = await api.client.put("/servers/8/settings/fake", headers=behind_proxy,
                             json={"settings": {}})
    assert r.status_code == 403  # pbx.example.com is not an allowed Host here…
    assert "is not allowed" in r.json()["error"]
    api2 = await start({"allowed_hosts": "pbx.example.com"})
    r = await api2.client.put("/servers/8/settings/fake", headers=behind_proxy,
                              json={"settings": {}})
    assert r.status_code == 204, r.text  # …and is once it is: nginx passes Host along
    # A user typing the URL (Sec-Fetch-Site: none) and GETs from anywhere are answered.
    r = await api.client.post("/providers/fake/test", headers={"Sec-Fetch-Site": "none",
                                                               **JSON_TYPE},
                              json={"server": 8})
    assert r.status_code == 200
    assert (await api.client.get("/events", headers={"Origin": EVIL})).status_code == 200


@pytest.mark.parametrize("value", [b"Bearer \xff\xfe", b"\xc3\xa9", b"Bearer", b"Basic Zm9v",
                                   b"Bearer  " + TOKEN.encode(), TOKEN.encode()])
async def test_malformed_authorization_is_401(start: Start, value: bytes) -> None:
    api = await start({"api_token": TOKEN})
    r = await api.client.get("/events", headers={"Authorization": value})
    assert r.status_code == 401, r.text
    assert r.json() == {"error": "missing or wrong API token"}
    r = await api.client.post("/events", headers={"Authorization": value, **JSON_TYPE},
                              json={"action": "add", "provider": "fake", "mac": MAC})
    assert r.status_code == 401
    # /health answers, without the figures.
    r = await api.client.get("/health", headers={"Authorization": value})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert " ERROR " not in api.log.read_text()


async def test_health_without_the_token_says_only_ok(start: Start) -> None:
    api = await start({"api_token": TOKEN})
    r = await api.client.get("/health", headers={"Authorization": ""})
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = await api.client.get("/health")
    assert r.status_code == 200
    assert set(r.json()) == {"status", "database", "backlog", "queues", "lanes"}
    # Without a token configured (loopback only), the full answer, as before.
    open_api = await start()
    async with httpx.AsyncClient(base_url=f"http://{open_api.service.address}") as bare:
        assert set((await bare.get("/health")).json()) == {"status", "database", "backlog", "lanes",
                                                           "queues"}


@pytest.mark.mysql
async def test_health_hides_the_database_error_without_the_token(
        mysql_database: str, tmp_path: Path) -> None:
    proxy = TcpProxy(MYSQL_HOST, MYSQL_PORT, free_port())
    await proxy.start()
    dsn = mysql_database.replace(f"{MYSQL_HOST}:{MYSQL_PORT}", f"127.0.0.1:{proxy.port}")
    ini = write_ini(tmp_path / "rps.ini", {"port": free_port(), "database": dsn,
                                           "log_file": "-", "api_token": TOKEN})
    service = Service(load_settings(ini, env={}), providers={"fake": ScriptedProvider()})
    await service.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10) as c:
            await proxy.cut()
            r = await c.get("/health")
            assert r.status_code == 503 and r.json() == {"status": "degraded"}
            r = await c.get("/health", headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 503
            assert r.json()["database"].startswith("unavailable: ")
            assert str(proxy.port) in r.json()["database"]  # the address: for the token only
    finally:
        await proxy.restore()
        await service.stop()
        await proxy.close()
