"""A device's access details, API credentials and tenants' provisioning details without curl
or SQL: ``GET /devices/{provider}/{mac}/access`` and the admin commands ``access``,
``credentials set|show`` and ``provisioning set|show`` against a running daemon."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from aiohttp import web

from rps_service import logs
from rps_service.access import AccessMode
from rps_service.cli import main
from rps_service.config import load_settings
from rps_service.providers.vendor import with_path_segment
from rps_service.service import Service
from tests.conftest import SECRETS, free_port, write_ini
from tests.fakes import ScriptedProvider
from tests.integration.test_admin_cli import TOKEN, Running

MAC = "000413AC0001"
SECRETS.update({"tenant-pw-8", "grand-pw", "client-s3cret"})  # checked in every log file


@pytest.fixture
async def daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Running]:
    log_file = str(tmp_path / "rps.log")
    sink = logs.configure(log_file)
    values = {"port": free_port(), "database": f"sqlite:///{tmp_path}/rps.db",
              "log_file": log_file, "poll_interval": 0.2, "api_token": TOKEN}
    ini = write_ini(tmp_path / "rps.ini", values)
    provider = ScriptedProvider()
    service = Service(load_settings(ini, env={}),
                      providers={"fake": provider, "keyed": KeyedProvider()})
    await service.start()
    client = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10,
                               headers={"Authorization": f"Bearer {TOKEN}"})
    yield Running(service, provider, ini, client, capsys)
    await client.aclose()
    await service.stop()
    sink.close()
    structlog.reset_defaults()


class KeyedProvider(ScriptedProvider):
    """A vendor that carries only a URL to the phone: the URL holds the device's key."""

    name = "keyed"
    access = AccessMode.URL_KEY

    async def device_url(self, server: int, url_key: str | None = None) -> str:
        url = f"https://pbx.test/ztprov/{server}/"
        return with_path_segment(url, url_key) if url_key else url


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


async def test_access_endpoint(daemon: Running, tmp_path: Path) -> None:
    await daemon.post({"action": "add", "provider": "fake", "mac": MAC, "server": 8})
    r = await daemon.client.get(f"/devices/fake/{MAC.lower()}/access")
    assert r.status_code == 200
    access = r.json()
    assert set(access) == {"url", "username", "password"}
    assert access["url"] == "https://pbx.test/ztprov/8/"
    assert access["username"].startswith("ztp-") and len(access["password"]) >= 20
    SECRETS.add(access["password"])
    assert daemon.provider.registered[MAC].http_password == access["password"]
    log = (tmp_path / "rps.log").read_text()
    assert f"WARNING (LISTENER): Access details read. Mac={MAC} Provider=fake\n" in log
    assert access["password"] not in log
    # Without the token: 401; unknown device, bad MAC, other provider: 404.
    async with httpx.AsyncClient() as anonymous:
        r = await anonymous.get(f"http://{daemon.service.address}/devices/fake/{MAC}/access")
    assert r.status_code == 401
    for path in ("/devices/fake/000413FFFFFF/access", "/devices/fake/nope/access",
                 f"/devices/other/{MAC}/access"):
        assert (await daemon.client.get(path)).status_code == 404, path
    # A remove revokes them: 404 saying so.
    await daemon.post({"action": "remove", "provider": "fake", "mac": MAC})
    r = await daemon.client.get(f"/devices/fake/{MAC}/access")
    assert r.status_code == 404 and r.json()["error"].startswith(
        "no access details stored for this device (it is unregistered")


async def test_access_command(daemon: Running) -> None:
    await daemon.post({"action": "add", "provider": "fake", "mac": MAC})
    access = (await daemon.client.get(f"/devices/fake/{MAC}/access")).json()
    code, out, err = await daemon.run("access", "fake", "00:04:13:ac:00:01")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["URL", "USERNAME", "PASSWORD"]
    assert lines[1].split() == [access["url"], access["username"], access["password"]]
    code, out, _ = await daemon.run("access", "fake", MAC, "--json")
    assert (code, json.loads(out)) == (0, access)
    code, out, err = await daemon.run("access", "fake", "000413FFFFFF")
    assert (code, out) == (1, "")
    assert err == "rps-service access: daemon answered 404: no such device\n"
    code, _, err = await daemon.run("access", "fake", "xyz")
    assert code == 1 and err.startswith("rps-service access: mac 'xyz': ")


async def test_access_of_a_url_key_device(daemon: Running, tmp_path: Path) -> None:
    """A vendor that carries only a URL: the access details are that URL with its key
    (the key is nowhere else an operator could read it but the database)."""
    await daemon.post({"action": "add", "provider": "keyed", "mac": MAC, "server": 8})
    row = await daemon.service.store.get_device("keyed", MAC)
    assert row is not None and row.url_key
    SECRETS.add(row.url_key)
    url = f"https://pbx.test/ztprov/8/{row.url_key}/"
    r = await daemon.client.get(f"/devices/keyed/{MAC}/access")
    assert (r.status_code, r.json()) == (200, {"url": url, "username": None,
                                               "password": None})
    assert f"WARNING (LISTENER): Access details read. Mac={MAC} Provider=keyed\n" in \
        (tmp_path / "rps.log").read_text()
    code, out, err = await daemon.run("access", "keyed", MAC)
    assert (code, err, out.split()) == (0, "", ["URL", url])
    code, out, err = await daemon.run("access", "keyed", MAC, "--field", "url")
    assert (code, out, err) == (0, url + "\n", "")
    code, out, err = await daemon.run("access", "keyed", MAC, "--field", "password")
    assert (code, out) == (1, "")
    assert err.startswith("rps-service access: password: none for this device")
    # Revoked by a remove: 404 again.
    await daemon.post({"action": "remove", "provider": "keyed", "mac": MAC})
    r = await daemon.client.get(f"/devices/keyed/{MAC}/access")
    assert r.status_code == 404 and "it is unregistered" in r.json()["error"]


async def test_access_field_for_scripts(daemon: Running) -> None:
    await daemon.post({"action": "add", "provider": "fake", "mac": MAC, "server": 8})
    access = (await daemon.client.get(f"/devices/fake/{MAC}/access")).json()
    SECRETS.add(access["password"])
    for field in ("url", "username", "password"):
        code, out, err = await daemon.run("access", "fake", MAC, "--field", field)
        assert (code, out, err) == (0, access[field] + "\n", "")


async def test_credentials_set_and_show(daemon: Running,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    stdin(monkeypatch, "very-secret\n")
    code, out, err = await daemon.run(
        "credentials", "set", "fake", "8", "access_key_id=KID8", "access_key_secret=-",
        "--provisioning-url", "https://t8.example.com/ztprov/")
    assert (code, out, err) == (0, "Credentials stored for fake server 8.\n", "")
    code, out, err = await daemon.run("credentials", "show", "fake", "8")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines()]
    assert ["access_key_id", "KID8"] in rows and ["access_key_secret_set", "true"] in rows
    assert ["provisioning_url", "https://t8.example.com/ztprov/"] in rows
    assert "very-secret" not in out
    code, out, _ = await daemon.run("credentials", "show", "fake", "8", "--json")
    assert json.loads(out)["access_key_id"] == "KID8"
    # The daemon refuses: one line with its reason, no "event 0" of a batch.
    code, out, err = await daemon.run("credentials", "set", "fake", "9", "access_key_id=K")
    assert (code, out) == (1, "")
    assert err == ("rps-service credentials: daemon answered 400: invalid body: "
                   "access_key_secret: Field required\n")
    code, _, err = await daemon.run("credentials", "show", "fake", "9")
    assert (code, err) == (1, "rps-service credentials: daemon answered 404: "
                              "no credentials stored for server 9\n")
    # The URL alone (master mode: server 1's keys serve every server); keys are kept.
    code, out, err = await daemon.run("credentials", "set", "fake", "9",
                                      "--provisioning-url", "https://t9.example.com/ztprov/")
    assert (code, out, err) == (0, "Provisioning URL stored for fake server 9.\n", "")
    code, out, err = await daemon.run("credentials", "set", "fake", "8",
                                      "--provisioning-url", "https://t8b.example.com/ztprov/")
    assert code == 0, err
    stored = await daemon.service.store.get_credentials("fake", 8)
    assert stored is not None and stored.provisioning_url == "https://t8b.example.com/ztprov/"
    assert stored.text("access_key_id") == "KID8" and stored.text("access_key_secret")


async def test_provisioning_set_and_show(daemon: Running,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    stdin(monkeypatch, "tenant-pw-8\n")
    code, out, err = await daemon.run("provisioning", "set", "8", "--url",
                                      "https://pbx.example.com/prov/", "--user", "tenant8",
                                      "--password-stdin")
    assert (code, out, err) == (0, "Provisioning details stored for server 8.\n", "")
    stored = await daemon.service.store.get_server_provisioning(8)
    assert stored is not None and stored.http_password == "tenant-pw-8"
    code, out, _ = await daemon.run("provisioning", "show", "8")
    rows = [line.split() for line in out.splitlines()]
    assert ["prov_url", "https://pbx.example.com/prov/"] in rows
    assert ["http_password_set", "true"] in rows and "tenant-pw-8" not in out
    code, out, _ = await daemon.run("provisioning", "show", "8", "--json")
    assert json.loads(out)["http_user"] == "tenant8"
    # The password only ever comes from stdin.
    with pytest.raises(SystemExit) as exited:  # argparse: a usage error
        await daemon.run("provisioning", "set", "8", "--url", "https://x/", "--user", "u")
    assert exited.value.code == 2
    assert "required: --password-stdin" in daemon.capsys.readouterr().err
    stdin(monkeypatch, "")
    code, _, err = await daemon.run("provisioning", "set", "8", "--url", "https://x/",
                                    "--user", "u", "--password-stdin")
    assert (code, err) == (1, "rps-service provisioning: http_password: nothing on stdin\n")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[tuple[str, str, Any]]]]:
    """A stand-in daemon that records what it is sent: the wire, not our parsing."""
    seen: list[tuple[str, str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, await request.json()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_credentials_are_passed_through_with_booleans(
    recorder: tuple[str, list[tuple[str, str, Any]]], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    url, seen = recorder
    monkeypatch.chdir(tmp_path)  # no rps.ini: --url and no token

    async def run(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, list(args))
        out, err = capsys.readouterr()
        return code, out, err

    stdin(monkeypatch, "grand-pw\nclient-s3cret\n")
    code, out, err = await run("credentials", "set", "grandstream", "3", "username=admin",
                               "password=-", "client_id=cid", "client_secret=-",
                               "add_by_mac=true", "override=false", "site_id=42",
                               "note=", "--url", url, "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"provider": "grandstream", "server": 3, "stored": True}
    assert seen == [("PUT", "/providers/grandstream/credentials/3", {
        "username": "admin", "password": "grand-pw", "client_id": "cid",
        "client_secret": "client-s3cret", "add_by_mac": True, "override": False,
        "site_id": "42", "note": ""})]
    for args, message in ((["nokey"], "'nokey': give KEY=VALUE"),
                          (["a=1", "a=2"], "a: given twice"),
                          ([], "give the credentials as KEY=VALUE"),
                          (["=x"], "'': give KEY=VALUE")):
        code, out, err = await run("credentials", "set", "snom", "1", *args, "--url", url)
        assert (code, out) == (1, ""), args
        assert err.startswith(f"rps-service credentials: {message}"), err
    assert len(seen) == 1  # nothing was sent for the refused ones
