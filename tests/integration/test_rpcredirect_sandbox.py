"""The XML-RPC redirection emulators as a client meets them on loopback: how strictly they
refuse (login before XML, method, media type, parameter types, exact paths), ownership
between accounts, and URL keys kept out of the snapshot."""

from __future__ import annotations

import base64
import xmlrpc.client
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rps_service.sandbox import start_sandbox
from rps_service.sandbox.rpcredirect import OTHER_USER, RpcRedirectEmulator
from rps_service.sandbox.runner import RunningSandbox
from rps_service.sandbox.state import SandboxState
from tests.conftest import SECRETS, remember_secrets

KEY = "0123456789ab" + "SandboxSecretOfTheKey-xy"
#: Per emulator: register(mac, url), remove(mac), look up(mac), and a refused write's answer.
CALLS = {
    "snom-xmlrpc": ("redirect.registerPhone", "redirect.deregisterPhone", "redirect.checkPhone"),
    "panasonic": ("ipredirect.registerPhone", "ipredirect.unregisterPhone",
                  "ipredirect.checkPhones"),
    "auerswald": ("DeviceRegister", "DeviceDeregister", "DeviceInfo"),
}


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxState())
    yield running
    remember_secrets(running.state)
    for found in running.state.emulators.values():
        if isinstance(found, RpcRedirectEmulator):
            SECRETS.update(found.accounts.values())
    await running.close()


@pytest.fixture(params=sorted(CALLS))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def emulator(sandbox: RunningSandbox, name: str) -> RpcRedirectEmulator:
    found = sandbox.state.emulators[name]
    assert isinstance(found, RpcRedirectEmulator)
    return found


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "text/xml"}


async def call(sandbox: RunningSandbox, name: str, method: str, *params: Any,
               user: str = "demo-user", path: str | None = None) -> httpx.Response:
    e = emulator(sandbox, name)
    body = xmlrpc.client.dumps(params, method).encode()
    async with httpx.AsyncClient(timeout=5) as client:
        return await client.post(f"{sandbox.base_url}{path or e.path}", content=body,
                                 headers=basic(user, e.accounts[user]))


def result(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return xmlrpc.client.loads(response.content, use_builtin_types=True)[0][0]


def fault_code(response: httpx.Response) -> int:
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(response.content)
    return int(info.value.faultCode)


def mac_for(name: str, sandbox: RunningSandbox) -> str:
    mac = emulator(sandbox, name).sample_mac(7)
    return mac.lower() if name == "auerswald" else mac


async def test_the_login_is_checked_before_anything_else(sandbox: RunningSandbox,
                                                        name: str) -> None:
    e = emulator(sandbox, name)
    async with httpx.AsyncClient(timeout=5) as client:
        for headers in ({}, basic("demo-user", "wrong"), basic("nobody", "x")):
            r = await client.request("GET", f"{sandbox.base_url}{e.path}", content=b"junk",
                                     headers=headers)
            assert r.status_code == 401
            assert r.headers["www-authenticate"] == f'Basic realm="{e.realm}"'
        login = basic("demo-user", e.accounts["demo-user"])
        assert (await client.get(f"{sandbox.base_url}{e.path}", headers=login)).status_code == 405
        json_login = {**login, "Content-Type": "application/json"}
        r = await client.post(f"{sandbox.base_url}{e.path}", content=b"{}", headers=json_login)
        assert r.status_code == 415
        r = await client.post(f"{sandbox.base_url}{e.path}", content=b"<not-xml", headers=login)
        assert fault_code(r) == -32700


async def test_only_the_exact_path(sandbox: RunningSandbox, name: str) -> None:
    e = emulator(sandbox, name)
    other = e.path[:-1] if e.path.endswith("/") else e.path + "/"
    r = await call(sandbox, name, CALLS[name][2], mac_for(name, sandbox), path=other)
    assert r.status_code == 404


async def test_parameters_are_checked(sandbox: RunningSandbox, name: str) -> None:
    register, _, lookup = CALLS[name]
    mac = mac_for(name, sandbox)
    assert fault_code(await call(sandbox, name, register, mac)) == -32602  # no URL
    assert fault_code(await call(sandbox, name, lookup, 123)) == -32602  # not a <string>
    assert fault_code(await call(sandbox, name, "system.listMethods")) == -32601
    assert sandbox.state.history == {}


async def test_one_owner_per_mac(sandbox: RunningSandbox, name: str) -> None:
    register, remove, _ = CALLS[name]
    e = emulator(sandbox, name)
    mac = mac_for(name, sandbox)
    url = f"https://pbx.test/ztprov/8/{KEY}/"
    assert await call(sandbox, name, register, mac, url)
    assert e.owner(mac) == "demo-user"
    # The other account can neither take nor remove it; the demo account removes it.
    taken = await call(sandbox, name, register, mac, url, user=OTHER_USER)
    removed = await call(sandbox, name, remove, mac, user=OTHER_USER)
    for r in (taken, removed):
        assert r.status_code == 200 and e.owner(mac) == "demo-user"
    await call(sandbox, name, remove, mac)
    assert e.owner(mac) is None
    assert sandbox.state.history[mac.lower()] == [("PUT", url), ("DELETE", None)]
    # The key's secret is remembered (logs are checked for it) and never shown.
    assert KEY[12:] in sandbox.state.received_passwords
    await call(sandbox, name, register, mac, url)
    async with httpx.AsyncClient(timeout=5) as client:
        state = (await client.get(f"{sandbox.control_url}state")).json()
    shown = state["vendors"][name]["devices"][mac.upper()]
    assert shown == {"account": "demo-user", "url": f"https://pbx.test/ztprov/8/{KEY[:12]}***/"}


async def test_refusals_in_each_vendors_words(sandbox: RunningSandbox) -> None:
    snom, pana, auer = "snom-xmlrpc", "panasonic", "auerswald"
    foreign = {n: emulator(sandbox, n).foreign_mac for n in (snom, pana, auer)}
    url = "https://pbx.test/p/"
    assert result(await call(sandbox, snom, "redirect.registerPhone", foreign[snom], url)) == [
        False, "Error:owned_by_other_user"]
    assert result(await call(sandbox, snom, "redirect.registerPhone", "00041", url)) == [
        False, "Error:malformed_mac"]
    for bad in ("ftp://pbx.test/", "https://pbx.test/%7Bmac%7D"):
        assert result(await call(sandbox, snom, "redirect.registerPhone", "000413000001",
                                 bad)) == [False, "Error:malformed_url"]
    assert result(await call(sandbox, snom, "redirect.deregisterPhone", "000413000001")) == [
        False, "Error:no_such_mac"]
    assert result(await call(sandbox, snom, "redirect.checkPhone", foreign[snom])) == [
        False, "Error:no_such_mac"]
    assert fault_code(await call(sandbox, pana, "ipredirect.registerPhone", foreign[pana],
                                 url)) == 202
    assert fault_code(await call(sandbox, pana, "ipredirect.registerPhone", "0080F0",
                                 url)) == 200
    assert fault_code(await call(sandbox, pana, "ipredirect.registerPhone", "0080F0000001",
                                 "pbx.test")) == 100
    assert fault_code(await call(sandbox, pana, "ipredirect.unregisterPhone",
                                 "0080F0000001")) == 201
    assert result(await call(sandbox, pana, "ipredirect.checkPhones", foreign[pana])) == [
        {"mac": foreign[pana], "faultCode": 202,
         "faultString": "MAC address is registered by another user"}]
    # Auerswald says only true or false; upper-case MACs are refused.
    assert result(await call(sandbox, auer, "DeviceRegister", foreign[auer].lower(), url)) \
        is False
    assert result(await call(sandbox, auer, "DeviceRegister", "000952ABCDEF", url)) is False
    assert result(await call(sandbox, auer, "DeviceInfo", foreign[auer].lower())) is False
    assert result(await call(sandbox, snom, "network.echo", "ping")) == "ping"
