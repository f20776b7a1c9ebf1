"""Daemon + Htek provider + its emulator + real MariaDB: what the contract does not cover.

The phone's fetch of ``cfg<mac>.xml`` under the URL RPS redirects it to (with one ``/`` or
two after the key, as Htek may append the file name either way), the 404 for the same name
without extension, and the emulator's own strictness over HTTP (its untyped answers in
Apache XML-RPC's envelope, the 401 before any XML).
"""

from __future__ import annotations

import base64
import xmlrpc.client
from urllib.parse import urlsplit

import httpx

from rps_service.guesses import forget_guesses
from rps_service.providers import htek
from rps_service.sandbox.htek import FOREIGN_MAC, HtekEmulator
from rps_service.sandbox.rpcredirect import DEMO_USER
from tests.conftest import SECRETS
from tests.integration.daemons import Daemons
from tests.integration.test_pipeline import wait_events

MAC = "001FC1000101"


async def test_the_phone_fetches_its_xml_however_rps_joins_the_name(daemons: Daemons) -> None:
    forget_guesses()  # as in a freshly started daemon
    d = await daemons.start("htek")
    r = await d.api.post("/events", json={"action": "add", "provider": "htek", "mac": MAC,
                                          "server": 8})
    [row] = await wait_events(d.api, [r.json()["events"][0]["id"]])
    assert row["state"] == "done", row
    r = await d.api.put("/servers/8/provisioning", json={
        "prov_url": "https://pbx.test/prov/", "http_user": "tenant8",
        "http_password": "tenant-secret-8"})
    assert r.status_code == 204
    SECRETS.add("tenant-secret-8")
    held = d.sandbox.state.emulators["htek"].holds(MAC)
    assert held is not None and held.url and held.url.endswith("/")
    assert d.service.ztp is not None
    folder = f"http://{d.service.ztp.address}{urlsplit(held.url).path}"
    agent = {"User-Agent": "Htek UC926 2.0.4.2 00:1f:c1:00:01:01"}
    async with httpx.AsyncClient(headers=agent, timeout=10) as phone:
        for url in (folder + "cfg001fc1000101.xml", folder + "/cfg001fc1000101.xml"):
            r = await phone.get(url)
            assert r.status_code == 200, (url, r.text)
            assert "<P237 " in r.text and "https://pbx.test/prov/" in r.text
            assert r.headers["content-type"].startswith("application/xml")
        assert (await phone.get(folder + "cfg001fc1000101")).status_code == 404
        other = {"User-Agent": "Htek UC926 2.0.4.2 00:1f:c1:00:09:99"}
        assert (await phone.get(folder + "cfg001fc1000101.xml", headers=other)
                ).status_code == 403
    fetched = (await d.api.get(f"/devices/htek/{MAC}")).json()
    assert (fetched["ztp_model"], fetched["ztp_firmware"]) == ("UC926", "2.0.4.2")
    text = d.log_path.read_text()
    assert text.count(f"WARNING (Htek): Relying on a guess. Guess={htek.GUESS_EXPERIMENTAL}"
                      ) == 1


async def test_the_emulator_is_strict_over_http(daemons: Daemons) -> None:
    d = await daemons.start("htek")
    rps = d.sandbox.state.emulators["htek"]
    assert isinstance(rps, HtekEmulator)
    url = rps.api_url(d.sandbox.base_url)
    password = rps.accounts[DEMO_USER]
    login = base64.b64encode(f"{DEMO_USER}:{password}".encode()).decode()
    xml = {"Content-Type": "text/xml", "Authorization": f"Basic {login}"}

    def body(method: str, *params: object) -> bytes:
        return xmlrpc.client.dumps(params, method).encode()

    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(url, content=body("redirect.checkDevice", MAC))
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        r = await client.post(url, content=body("redirect.checkDevice", FOREIGN_MAC),
                              headers=xml)
        assert r.status_code == 200
        assert "<value>registered elsewhere</value>" in r.text  # untyped, as Htek writes it
        assert 'xmlns:ex="http://ws.apache.org/xmlrpc/namespaces/extensions"' in r.text
        r = await client.post(url, content=body("redirect.registerDevice", MAC, "x", 1),
                              headers=xml)
        assert "<fault>" in r.text  # the flag is a string
        r = await client.post(url, content=body("redirect.listDevices"), headers=xml)
        assert "<fault>" in r.text and "not emulated" in r.text
        r = await client.post(url + "/", content=body("redirect.checkDevice", MAC),
                              headers=xml)
        assert r.status_code == 404
