"""The phone's side end to end (docs/phone-side.md): daemon + SRAPS sandbox + real MariaDB, then a
client playing the factory-reset phone against /ztprov/ with what SRAPS handed it."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    SETTING_SERVER_UUID,
    SandboxState,
)
from rps_service.service import Service
from tests.conftest import SECRETS, free_port, remember_secrets, write_ini
from tests.integration.test_pipeline import wait_events
from tests.unit.test_ztp import digest_header

MAC = "000413ABCDEF"
OTHER_MAC = "000413ABCDE0"
PROV_URL = "https://pbx.example.com/prov/?tenant=8&x=<y>"
TENANT_USER = "tenant8"
TENANT_PASSWORD = "s3cr&t<pw>\"'"


@dataclass
class Daemon:
    service: Service
    sandbox: RunningSandbox
    api: httpx.AsyncClient  # the event API
    log_path: Path

    @property
    def ztp_url(self) -> str:
        assert self.service.ztp is not None
        return f"http://{self.service.ztp.address}"


@dataclass(frozen=True)
class Phone:
    """What SRAPS gave a phone: where to ask, and as whom."""

    mac: str
    setting_server: str
    user: str
    password: str

    @property
    def path(self) -> str:
        return f"{urlsplit(self.setting_server).path}snomD717-{self.mac}.htm"


def user_agent(mac: str, model: str = "D717", firmware: str = "10.1.54.13") -> str:
    return f"Mozilla/4.0 (compatible; snom{model}-SIP {firmware} {mac} SXM:0 UXM:0)"


@pytest.fixture
async def daemon(tmp_path: Path, mysql_database: str
                 ) -> AsyncIterator[Callable[..., Awaitable[Daemon]]]:
    running: list[tuple[Daemon, logs.LogFile]] = []

    async def _start(ztp: dict[str, Any] | None = None,
                     more: dict[str, Any] | None = None,
                     sections: dict[str, dict[str, Any]] | None = None) -> Daemon:
        sandbox = await start_sandbox(SandboxState(1200))
        log_path = tmp_path / "rps.log"
        general = {"port": free_port(), "database": mysql_database, "log_file": str(log_path),
                   "poll_interval": 0.2, "retry_base": 0.01, "retry_cap": 0.05, "queuenum": 2,
                   **(more or {})}
        snom = {"api_url": sandbox.url, "access_key_id": DEMO_KEY_ID,
                "access_key_secret": DEMO_SECRET,
                "provisioning_url": "https://pbx.test/ztprov/{server}/", "timeout": 5,
                "rate_limit": 1000}
        ztp_values = {"enabled": "true", "listen": "127.0.0.1", "port": free_port()}
        ztp_values.update(ztp or {})
        extra = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
                        for name, values in {"ztp": ztp_values, **(sections or {})}.items())
        settings = load_settings(write_ini(tmp_path / "rps.ini", general, snom, extra), env={})
        sink = logs.configure(str(log_path))
        service = Service(settings, log_sink=sink)
        await service.start()
        api = httpx.AsyncClient(base_url=f"http://{service.address}", timeout=10)
        started = Daemon(service, sandbox, api, log_path)
        running.append((started, sink))
        return started

    yield _start
    for started, sink in running:
        await started.api.aclose()
        await started.service.stop()
        remember_secrets(started.sandbox.state)
        SECRETS.add(TENANT_PASSWORD)
        await started.sandbox.close()
        sink.close()
    structlog.reset_defaults()


async def post(d: Daemon, action: str, mac: str, server: int = 8) -> None:
    r = await d.api.post("/events", json={"action": action, "provider": "snom", "mac": mac,
                                          "server": server})
    assert r.status_code == 202, r.text
    [row] = await wait_events(d.api, [r.json()["events"][0]["id"]])
    assert row["state"] == "done", row


def sraps_phone(d: Daemon, mac: str) -> Phone:
    """What a factory-reset phone gets from SRAPS (here: the sandbox) for its MAC."""
    settings = d.sandbox.state.endpoints(DEMO_COMPANY_ID)[mac.lower()]["settings_manager"]
    return Phone(mac, settings[SETTING_SERVER_UUID]["value"],
                 settings[HTTP_CLIENT_USER_UUID]["value"],
                 settings[HTTP_CLIENT_PASS_UUID]["value"])


async def put_tenant(d: Daemon, server: int = 8) -> None:
    r = await d.api.put(f"/servers/{server}/provisioning",
                        json={"prov_url": PROV_URL, "http_user": TENANT_USER,
                              "http_password": TENANT_PASSWORD})
    assert r.status_code == 204, r.text


def phone_client(d: Daemon, mac: str, ip: str | None = None) -> httpx.AsyncClient:
    headers = {"User-Agent": user_agent(mac)}
    if ip:  # as nginx on loopback would add it
        headers["X-Forwarded-For"] = f"198.51.100.1, {ip}"
    return httpx.AsyncClient(base_url=d.ztp_url, headers=headers, timeout=10)


def challenges(response: httpx.Response) -> list[str]:
    return response.headers.get_list("www-authenticate")


def assert_unauthorized(response: httpx.Response, stale: bool = False) -> None:
    assert response.status_code == 401, response.text
    digest, basic = challenges(response)
    assert digest.startswith('Digest realm="rps-ztp", qop="auth", algorithm=MD5, nonce="')
    assert digest.endswith(", stale=true") is stale
    assert basic == 'Basic realm="rps-ztp", charset="UTF-8"'
    assert response.headers["cache-control"] == "no-store"


def nonce_of(response: httpx.Response) -> str:
    return challenges(response)[0].split('nonce="', 1)[1].split('"', 1)[0]


async def test_phone_provisions_itself(daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon()
    await post(d, "add", MAC)
    await post(d, "add", OTHER_MAC)
    await put_tenant(d)
    phone, other = sraps_phone(d, MAC), sraps_phone(d, OTHER_MAC)
    assert phone.setting_server == "https://pbx.test/ztprov/8/"
    assert phone.path == f"/ztprov/8/snomD717-{MAC}.htm"

    async with phone_client(d, MAC) as client:
        # The phone's first request carries no credentials: both challenges.
        assert_unauthorized(await client.get(phone.path))

        r = await client.get(phone.path, auth=(phone.user, phone.password))  # Basic
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/xml; charset=utf-8"
        assert r.headers["cache-control"] == "no-store"
        assert int(r.headers["content-length"]) == len(r.content)
        assert "transfer-encoding" not in r.headers
        values = {c.tag: c.text for c in ET.fromstring(r.content).find("phone-settings")}  # noqa: S314
        assert values == {"setting_server": PROV_URL, "http_client_user": TENANT_USER,
                          "http_client_pass": TENANT_PASSWORD}
        assert b"&amp;" in r.content and b"&lt;pw&gt;" in r.content

        body = r.content
        r = await client.head(phone.path, auth=(phone.user, phone.password))
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str(len(body))

        digest = httpx.DigestAuth(phone.user, phone.password)
        r = await client.get(phone.path, auth=digest)
        assert r.status_code == 200 and [h.status_code for h in r.history] == [401]
        replayed = r.request.headers["Authorization"]
        assert_unauthorized(await client.get(phone.path, headers={"Authorization": replayed}))

        # A nonce past nonce_lifetime, with the right password: stale=true.
        assert d.service.ztp is not None
        old = d.service.ztp.nonces.issue(time.time() - 301)
        stale = digest_header(phone.user, phone.password, old, phone.path)
        assert_unauthorized(await client.get(phone.path, headers={"Authorization": stale}),
                            stale=True)

        assert_unauthorized(await client.get(phone.path, auth=(phone.user, "wrong")))
        assert_unauthorized(await client.get(phone.path, auth=(other.user, other.password)))
        r = await client.get(phone.path, auth=httpx.DigestAuth(other.user, other.password))
        assert_unauthorized(r)

        # The model file and other probes: 401 before authentication, 404 after.
        for probe in ("/ztprov/8/snomD717.htm", "/ztprov/8/snomD717-10.1.54.13-SIP-r.bin",
                      "/ztprov/"):
            assert_unauthorized(await client.get(probe))
            r = await client.get(probe, auth=(phone.user, phone.password))
            assert r.status_code == 404, probe
        assert (await client.post(phone.path)).status_code == 405
        assert (await client.get("/prov/x.htm")).status_code == 404

    # The same 401 for a MAC nobody registered.
    async with phone_client(d, "000413000001") as client:
        unknown = "/ztprov/8/snomD717-000413000001.htm"
        assert_unauthorized(await client.get(unknown))
        assert_unauthorized(await client.get(unknown, auth=(phone.user, phone.password)))

    # The User-Agent says another MAC than the path: refused even with the right password.
    async with phone_client(d, OTHER_MAC) as client:
        r = await client.get(phone.path, auth=(phone.user, phone.password))
        assert r.status_code == 403

    device = (await d.api.get(f"/devices/snom/{MAC}")).json()
    assert device["ztp_fetched_at"] is not None and device["ztp_fetched_at"].endswith("Z")
    assert (device["ztp_model"], device["ztp_firmware"], device["ztp_ip"]) == (
        "D717", "10.1.54.13", "127.0.0.1")
    assert (await d.api.get(f"/devices/snom/{OTHER_MAC}")).json()["ztp_fetched_at"] is None

    await post(d, "remove", MAC)
    async with phone_client(d, MAC) as client:
        assert_unauthorized(await client.get(phone.path, auth=(phone.user, phone.password)))
        r = await client.get(phone.path, auth=httpx.DigestAuth(phone.user, phone.password))
        assert_unauthorized(r)

    text = d.log_path.read_text()
    assert re.search(r"^\[[\d: -]+\] INFO \(ZTP\): Listening\. Address=127\.0\.0\.1:\d+$",
                     text, re.M)
    path = re.escape(phone.path)
    assert re.search(rf"^\[[\d: -]+\] INFO \(ZTP\): GET {path} 401\. Ip=127\.0\.0\.1$", text, re.M)
    assert re.search(rf"^\[[\d: -]+\] INFO \(ZTP\): GET {path} 200\. Ip=127\.0\.0\.1$", text, re.M)
    assert re.search(rf"^\[[\d: -]+\] INFO \(ZTP\): GET {path} 403\. Ip=127\.0\.0\.1$", text, re.M)
    # The reason is for the operator only: the phone saw the same 401 each time.
    for mac, reason in ((MAC, "wrong username or password"), (MAC, "nonce count replayed"),
                        ("000413000001", "unknown MAC"),
                        (MAC, "device is unregistered (no access details: removed or never "
                              "added)")):
        assert (f"WARNING (ZTP): Authentication failed. Ip=127.0.0.1 User={phone.user} "
                f"File=/ztprov/8/snomD717-{mac}.htm Mac={mac} Reason={reason}\n") in text
    assert (f"WARNING (ZTP): User-Agent MAC differs from the path. Ip=127.0.0.1 Mac={MAC} "
            f"Ua_mac={OTHER_MAC}") in text
    for secret in (phone.password, other.password, TENANT_PASSWORD, "s3cr&t"):
        assert secret not in text


async def test_a_challenge_of_one_instance_is_answered_at_another(
    daemon: Callable[..., Awaitable[Daemon]]
) -> None:
    """Two instances on one database, as behind a load balancer: the nonce one issues
    verifies at the other, and a nonce count used at one is refused at the other."""
    one, two = await daemon(), await daemon()
    await post(one, "add", MAC)
    await put_tenant(one)
    phone = sraps_phone(one, MAC)
    async with phone_client(one, MAC) as at_one, phone_client(two, MAC) as at_two:
        nonce = nonce_of(await at_one.get(phone.path))
        answer = digest_header(phone.user, phone.password, nonce, phone.path)
        r = await at_two.get(phone.path, headers={"Authorization": answer})
        assert r.status_code == 200, r.text
        nonce = nonce_of(await at_two.get(phone.path))  # and the other way round
        second = digest_header(phone.user, phone.password, nonce, phone.path, nc=1)
        assert (await at_one.get(phone.path, headers={"Authorization": second})
                ).status_code == 200
        # The same nonce count again, at the instance that did not see it: refused.
        assert_unauthorized(await at_two.get(phone.path, headers={"Authorization": second}))
        third = digest_header(phone.user, phone.password, nonce, phone.path, nc=2)
        assert (await at_two.get(phone.path, headers={"Authorization": third})
                ).status_code == 200
    text = one.log_path.read_text()
    assert "Reason=nonce count replayed" in text


async def test_failures_are_throttled_but_never_a_valid_login(
        daemon: Callable[..., Awaitable[Daemon]]) -> None:
    """Issue 20, finding 3: ten bad logins from an address, then the valid login from the
    same address got 429. Phones share NAT addresses: only failures count (per address and
    user name, and per address), and valid credentials are always served."""
    d = await daemon({"fail_limit": 3, "fail_limit_per_ip": 5})
    await post(d, "add", MAC)
    await post(d, "add", OTHER_MAC)
    await put_tenant(d)
    phone, other = sraps_phone(d, MAC), sraps_phone(d, OTHER_MAC)
    async with phone_client(d, MAC, ip="10.0.0.5") as office, \
            phone_client(d, OTHER_MAC, ip="10.0.0.5") as colleague, \
            phone_client(d, MAC, ip="10.0.0.6") as elsewhere:
        for _ in range(3):  # a misconfigured phone, or a guesser, at the office's address
            assert_unauthorized(await office.get(phone.path, auth=(phone.user, "guess")))
        r = await office.get(phone.path, auth=(phone.user, "guess"))
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        # The valid login from the same address, right after: served (Basic and Digest).
        r = await office.get(phone.path, auth=(phone.user, phone.password))
        assert r.status_code == 200, r.text
        r = await office.get(phone.path, auth=httpx.DigestAuth(phone.user, phone.password))
        assert r.status_code == 200, r.text
        # Another phone behind the same NAT with a bad password is not yet over its own
        # limit (3 per user name)…
        assert_unauthorized(await colleague.get(other.path, auth=(other.user, "nope")))
        # …until the address as a whole passes fail_limit_per_ip (5).
        r = await colleague.get(other.path, auth=(other.user, "nope"))
        assert r.status_code == 429
        r = await colleague.get(other.path, auth=(other.user, other.password))
        assert r.status_code == 200, r.text
        # The first request of a phone (no credentials yet) is a challenge, never 429.
        assert_unauthorized(await colleague.get(other.path))
        # Another address is not slowed down at all.
        assert_unauthorized(await elsewhere.get(phone.path, auth=(phone.user, "guess")))
    text = d.log_path.read_text()
    path = re.escape(phone.path)
    assert len(re.findall(rf"WARNING \(ZTP\): Authentication failed\. Ip=10\.0\.0\.5 "
                          rf"User={phone.user} File={path} Mac={MAC} "
                          rf"Reason=wrong username or password$", text, re.M)) == 4
    assert (f"WARNING (ZTP): Too many failed authentications. Ip=10.0.0.5 Limit=3 "
            f"User={phone.user} Window=60s") in text
    assert "WARNING (ZTP): Too many failed authentications. Ip=10.0.0.5 Limit=5 Window=60s" \
        in text
    assert f"INFO (ZTP): GET {phone.path} 429. Ip=10.0.0.5" in text
    assert f"INFO (ZTP): GET {phone.path} 200. Ip=10.0.0.5" in text
    assert "Ip=10.0.0.6 User=" in text and f"GET {phone.path} 429. Ip=10.0.0.6" not in text


async def test_tenant_without_provisioning_details(
        daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon()
    await post(d, "add", MAC)
    phone = sraps_phone(d, MAC)
    async with phone_client(d, MAC) as client:
        r = await client.get(phone.path, auth=(phone.user, phone.password))
    assert r.status_code == 503 and r.headers["retry-after"] == "300"
    assert (await d.api.get(f"/devices/snom/{MAC}")).json()["ztp_fetched_at"] is None
    assert ("WARNING (ZTP): Server has no provisioning details. "
            "Hint=set them with PUT /servers/8/provisioning "
            f"Mac={MAC} Server=8") in d.log_path.read_text()


async def test_server_provisioning_api(daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon()
    assert (await d.api.get("/servers/8/provisioning")).status_code == 404
    await put_tenant(d)
    r = await d.api.get("/servers/8/provisioning")
    assert r.json() == {"server": 8, "prov_url": PROV_URL, "http_user": TENANT_USER,
                        "http_password_set": True}
    r = await d.api.put("/servers/8/provisioning",
                        json={"prov_url": "https://t8.example.com/prov/", "http_user": "u2",
                              "http_password": "p2"})
    assert r.status_code == 204
    assert (await d.api.get("/servers/8/provisioning")).json()["http_user"] == "u2"
    bad = [
        ({"prov_url": "ftp://x/", "http_user": "u", "http_password": "p"}, "prov_url"),
        ({"prov_url": "https://u:p@x/", "http_user": "u", "http_password": "p"}, "prov_url"),
        ({"prov_url": "https://x/", "http_user": "u", "http_password": "p", "x": 1}, "x"),
        ({"prov_url": "https://x/", "http_user": "u"}, "http_password"),
        ({"prov_url": "https://x/", "http_user": "u\n", "http_password": "p"}, "http_user"),
        ({"prov_url": "https://x/", "http_user": 5, "http_password": "p"}, "http_user"),
    ]
    for body, field in bad:
        r = await d.api.put("/servers/8/provisioning", json=body)
        assert r.status_code == 400, body
        assert [e["field"] for e in r.json()["details"]] == [field], body
    r = await d.api.put("/servers/0/provisioning",
                        json={"prov_url": "https://x/", "http_user": "u", "http_password": "p"})
    assert r.status_code == 400
    text = d.log_path.read_text()
    assert f"INFO (LISTENER): Server provisioning stored. Prov_url={PROV_URL} Server=8 " \
           f"User={TENANT_USER}" in text
    assert TENANT_PASSWORD not in text


async def test_ztp_listener_is_off_by_default(daemon: Callable[..., Awaitable[Daemon]]) -> None:
    d = await daemon({"enabled": "false"})
    assert d.service.ztp is None
    assert "(ZTP)" not in d.log_path.read_text()


FILTER = Path(__file__).resolve().parents[2] / "deploy/fail2ban/filter.d/rps-ztp.conf"


def fail2ban_addresses(log: str) -> list[str]:
    """The addresses the shipped filter's failregex takes from ``log``, matched the way
    fail2ban does (the datepattern's timestamp cut off first, ``<ADDR>`` an address)."""
    text = FILTER.read_text()
    failregex = re.search(r"^failregex = (.+)$", text, re.M)
    assert failregex is not None
    pattern = re.compile(failregex.group(1).replace("<ADDR>", r"(?P<addr>[0-9A-Fa-f.:]+)"))
    found = []
    for line in log.splitlines():
        match = pattern.search(re.sub(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]", "", line))
        if match:
            found.append(match.group("addr"))
    return found


async def test_fail2ban_filter_finds_the_client_not_what_it_sent(
        daemon: Callable[..., Awaitable[Daemon]], tmp_path: Path) -> None:
    d = await daemon()
    await post(d, "add", MAC)
    phone = sraps_phone(d, MAC)
    async with phone_client(d, MAC, ip="203.0.113.7") as attacker:
        for user in ("x Ip=10.9.9.9 File=/", "evil\x1b[2J", phone.user):
            r = await attacker.get(phone.path, auth=(user, "guess"))
            assert r.status_code == 401
        assert_unauthorized(await attacker.get(phone.path))  # no credentials: no failure
        r = await attacker.get(phone.path, headers={"Authorization": "Basic !!!"})
        assert r.status_code == 401
    log = d.log_path.read_text()
    assert fail2ban_addresses(log) == ["203.0.113.7"] * 4
    assert "User=x\\x20Ip=10.9.9.9\\x20File=/ File=" in log
    assert "User=evil\\x1b[2J File=" in log
    fail2ban = shutil.which("fail2ban-regex")
    if fail2ban is None:
        return  # the filter's own tool, where installed: it must agree
    (tmp_path / "rps.log").write_text(log)
    out = subprocess.run([fail2ban, "-v", str(tmp_path / "rps.log"), str(FILTER)],
                         capture_output=True, text=True, check=True).stdout
    assert "Lines: " in out and ", 4 matched," in out, out
    assert re.findall(r"^\|\s+(\S+)\s+\w{3} ", out, re.M) == ["203.0.113.7"] * 4, out
