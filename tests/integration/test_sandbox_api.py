"""The SRAPS sandbox on loopback, driven by httpx with mohawk-signed requests."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import mohawk
import pytest
from mohawk.base import EmptyValue
from mohawk.util import calculate_ts_mac

from rps_service.sandbox import (
    DEMO_COMPANY_ID,
    DEMO_KEY_ID,
    DEMO_SECRET,
    GLOBAL_SETTING_SERVER_UUID,
    HTTP_CLIENT_PASS_UUID,
    HTTP_CLIENT_USER_UUID,
    NOROLE_KEY_ID,
    NOROLE_SECRET,
    OTHER_COMPANY_ID,
    SETTING_SERVER_UUID,
    TAKEN_MAC,
    RunningSandbox,
    SandboxState,
    start_sandbox,
)

MAC = "000413abcdef"
ENDPOINT = f"companies/{DEMO_COMPANY_ID}/endpoints/{MAC}"
NO_PERMISSION = {"detail": "You do not have permission to perform this action."}


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with await start_sandbox(SandboxState()) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def sign(
    url: str,
    method: str,
    body: bytes | None = None,
    *,
    content_type: str = "application/json",
    key_id: str = DEMO_KEY_ID,
    secret: str = DEMO_SECRET,
    hash_payload: bool = True,
    ts: int | None = None,
) -> str:
    """An ``Authorization`` header made by mohawk's Sender."""
    credentials = {"id": key_id, "key": secret, "algorithm": "sha256"}
    if body is None or not hash_payload:
        sender = mohawk.Sender(
            credentials, url, method, EmptyValue, EmptyValue, always_hash_content=False,
            _timestamp=ts,
        )  # fmt: skip
    else:
        sender = mohawk.Sender(credentials, url, method, body, content_type, _timestamp=ts)
    return str(sender.request_header)


async def call(
    client: httpx.AsyncClient,
    sandbox: RunningSandbox,
    method: str,
    path: str,
    payload: Any = None,
    **signing: Any,
) -> httpx.Response:
    """A signed request to ``sandbox.url + path`` with an optional JSON payload."""
    url = sandbox.url + path
    body = None if payload is None else json.dumps(payload).encode()
    headers = {"Authorization": sign(url, method, body, **signing)}
    if body is not None:
        headers["Content-Type"] = signing.get("content_type", "application/json")
    return await client.request(method, url, content=body, headers=headers)


def endpoint_body(mac: str = MAC, url: str = "https://pbx.example.com/ztprov/") -> dict[str, Any]:
    return {
        "mac": mac,
        "autoprovisioning_enabled": True,
        "settings_manager": {
            SETTING_SERVER_UUID: {"value": url, "attrs": {"perm": "RW"}},
            HTTP_CLIENT_USER_UUID: {"value": "user", "attrs": {"perm": "R"}},
            HTTP_CLIENT_PASS_UUID: {"value": "pass", "attrs": {"perm": "R"}},
        },
    }


# -- Hawk --------------------------------------------------------------------------------


async def test_signed_token_request_answers_company_link(sandbox, client) -> None:
    response = await call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == DEMO_KEY_ID
    assert body["role"] == "admin"
    assert body["links"]["company"] == f"{sandbox.base_url}/api/v1/companies/{DEMO_COMPANY_ID}/"
    company = await call(client, sandbox, "GET", f"companies/{DEMO_COMPANY_ID}/")
    assert company.json()["id"] == DEMO_COMPANY_ID


async def test_get_signed_with_empty_payload_hash_is_accepted(sandbox, client) -> None:
    url = sandbox.url + f"tokens/{DEMO_KEY_ID}"
    header = sign(url, "GET", b"", content_type="")
    assert 'hash="' in header
    response = await client.get(url, headers={"Authorization": header})
    assert response.status_code == 200


async def test_token_of_another_key_is_forbidden(sandbox, client) -> None:
    response = await call(client, sandbox, "GET", "tokens/other-key")
    assert response.status_code == 403


async def test_wrong_secret_is_refused(sandbox, client) -> None:
    response = await call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}", secret="wrong")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Hawk error="Bad mac"'


async def test_unknown_key_and_missing_or_garbled_header_are_refused(sandbox, client) -> None:
    url = sandbox.url + "tokens/nobody"
    unknown = await client.get(url, headers={"Authorization": sign(url, "GET", key_id="nobody")})
    missing = await client.get(url)
    garbled = await client.get(url, headers={"Authorization": "Hawk id=nobody"})
    assert [r.status_code for r in (unknown, missing, garbled)] == [401, 401, 401]
    assert 'error="Unknown credentials"' in unknown.headers["WWW-Authenticate"]
    assert 'error="Missing authentication"' in missing.headers["WWW-Authenticate"]
    assert 'error="Bad header format"' in garbled.headers["WWW-Authenticate"]


async def test_replayed_authorization_header_is_refused(sandbox, client) -> None:
    url = sandbox.url + f"tokens/{DEMO_KEY_ID}"
    headers = {"Authorization": sign(url, "GET")}
    first = await client.get(url, headers=headers)
    replay = await client.get(url, headers=headers)
    assert first.status_code == 200
    assert replay.status_code == 401
    assert 'error="Invalid nonce"' in replay.headers["WWW-Authenticate"]


async def test_put_without_payload_hash_is_refused(sandbox, client) -> None:
    response = await call(client, sandbox, "PUT", ENDPOINT, endpoint_body(), hash_payload=False)
    assert response.status_code == 401
    assert 'error="Missing required payload hash"' in response.headers["WWW-Authenticate"]
    assert MAC not in sandbox.state.endpoints(DEMO_COMPANY_ID)


async def test_tampered_body_is_refused(sandbox, client) -> None:
    url = sandbox.url + ENDPOINT
    header = sign(url, "PUT", json.dumps(endpoint_body()).encode())
    tampered = json.dumps(endpoint_body(url="https://evil.example/")).encode()
    response = await client.put(
        url, content=tampered, headers={"Authorization": header, "Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert 'error="Bad payload hash"' in response.headers["WWW-Authenticate"]


def _stale_header(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 401
    return dict(re.findall(r'(\w+)="([^"]*)"', response.headers["WWW-Authenticate"]))


async def test_stale_timestamp_tells_server_time(sandbox, client) -> None:
    stale = int(time.time()) - 3600
    response = await call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}", ts=stale)
    attrs = _stale_header(response)
    assert attrs["error"] == "Stale timestamp"
    assert abs(int(attrs["ts"]) - time.time()) < 5
    creds = {"id": DEMO_KEY_ID, "key": DEMO_SECRET, "algorithm": "sha256"}
    assert attrs["tsm"] == calculate_ts_mac(int(attrs["ts"]), creds).decode()


async def test_clock_offset_makes_fresh_requests_stale(sandbox, client) -> None:
    sandbox.state.clock_offset = 600
    response = await call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}")
    assert abs(int(_stale_header(response)["ts"]) - (time.time() + 600)) < 5
    sandbox.state.clock_offset = 0
    assert (await call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}")).status_code == 200


# -- settings ----------------------------------------------------------------------------


async def _all_settings(client, sandbox, first: str) -> tuple[list[dict[str, Any]], int]:
    url = sandbox.url + first
    entries: list[dict[str, Any]] = []
    pages = 0
    while url:
        response = await client.get(url, headers={"Authorization": sign(url, "GET")})
        assert response.status_code == 200
        entries.extend(response.json())
        pages += 1
        url = response.links.get("next", {}).get("url", "")
    return entries, pages


async def test_settings_pagination_yields_whole_catalogue(sandbox, client) -> None:
    entries, pages = await _all_settings(client, sandbox, "settings/?page_size=1000")
    assert pages == 2
    assert len(entries) == 1200 == len({e["uuid"] for e in entries})
    servers = {e["section"]: e["uuid"] for e in entries if e["param_name"] == "setting_server"}
    assert servers == {"global": GLOBAL_SETTING_SERVER_UUID, "phone-settings": SETTING_SERVER_UUID}
    first_page = {e["uuid"] for e in entries[:1000]}
    assert SETTING_SERVER_UUID not in first_page
    assert GLOBAL_SETTING_SERVER_UUID not in first_page


async def test_settings_default_page_size_and_link_format(sandbox, client) -> None:
    response = await call(client, sandbox, "GET", "settings/")
    assert len(response.json()) == 20
    assert response.headers["Link"] == (f'<{sandbox.url}settings/?page=2&page_size=20>; rel="next"')
    last = await call(client, sandbox, "GET", "settings/?page=2&page_size=1000")
    assert "Link" not in last.headers
    capped = await call(client, sandbox, "GET", "settings/?page_size=5000")
    assert len(capped.json()) == 1000


async def test_settings_refuse_unknown_query_and_bad_page(sandbox, client) -> None:
    unknown = await call(client, sandbox, "GET", "settings/?limit=10")
    assert unknown.status_code == 400
    assert unknown.json() == {"message": "Unknown query parameter: limit"}
    beyond = await call(client, sandbox, "GET", "settings/?page=99&page_size=1000")
    assert beyond.status_code == 404


# -- endpoints ---------------------------------------------------------------------------


async def test_endpoint_lifecycle(sandbox, client) -> None:
    created = await call(client, sandbox, "PUT", ENDPOINT, endpoint_body())
    assert created.status_code == 201
    assert created.json()["settings_manager"][SETTING_SERVER_UUID]["attrs"] == {"perm": "RW"}
    replaced = await call(client, sandbox, "PUT", ENDPOINT, {"mac": MAC})
    assert replaced.status_code == 200
    got = await call(client, sandbox, "GET", ENDPOINT)
    assert got.json() == replaced.json()
    assert got.json()["settings_manager"] == {}  # PUT replaced the whole endpoint
    listed = await call(client, sandbox, "GET", f"companies/{DEMO_COMPANY_ID}/endpoints/")
    assert [e["mac"] for e in listed.json()] == [MAC]
    deleted = await call(client, sandbox, "DELETE", ENDPOINT)
    assert deleted.status_code == 204
    assert (await call(client, sandbox, "GET", ENDPOINT)).status_code == 404
    assert (await call(client, sandbox, "DELETE", ENDPOINT)).status_code == 404
    assert sandbox.state.counts[("PUT", "endpoint")] == 2
    assert sandbox.state.counts[("DELETE", "endpoint")] == 2


async def test_put_unknown_field_is_refused(sandbox, client) -> None:
    body = {**endpoint_body(), "company": DEMO_COMPANY_ID}
    response = await call(client, sandbox, "PUT", ENDPOINT, body)
    assert response.status_code == 400
    assert response.json() == {"message": "Unknown field: company"}


async def test_put_global_setting_server_is_refused(sandbox, client) -> None:
    body = endpoint_body()
    body["settings_manager"] = {GLOBAL_SETTING_SERVER_UUID: {"value": "https://x/"}}
    response = await call(client, sandbox, "PUT", ENDPOINT, body)
    assert response.status_code == 400
    assert "not a phone setting" in response.json()["message"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"mac": "000413000000"}, "mac must equal the MAC in the URL"),
        ({}, "Missing field: mac"),
        ({"mac": MAC, "settings_manager": {"nope": {"value": "x"}}}, "Unknown setting: nope"),
        ({"mac": MAC, "autoprovisioning_enabled": 1}, "autoprovisioning_enabled must be a boolean"),
    ],
)  # fmt: skip
async def test_put_invalid_bodies_are_refused(sandbox, client, payload, message) -> None:
    response = await call(client, sandbox, "PUT", ENDPOINT, payload)
    assert response.status_code == 400
    assert response.json() == {"message": message}


async def test_put_needs_json_content_type_and_valid_json(sandbox, client) -> None:
    plain = {"content_type": "text/plain"}
    wrong_type = await call(client, sandbox, "PUT", ENDPOINT, {"mac": MAC}, **plain)
    assert wrong_type.status_code == 415
    url = sandbox.url + ENDPOINT
    headers = {"Authorization": sign(url, "PUT", b"{nope"), "Content-Type": "application/json"}
    malformed = await client.put(url, content=b"{nope", headers=headers)
    assert malformed.status_code == 400
    assert malformed.json() == {"message": "Malformed JSON"}


async def test_norole_key_reads_but_cannot_write(sandbox, client) -> None:
    keys = {"key_id": NOROLE_KEY_ID, "secret": NOROLE_SECRET}
    token = await call(client, sandbox, "GET", f"tokens/{NOROLE_KEY_ID}", **keys)
    assert token.status_code == 200
    assert token.json()["role"] is None
    put = await call(client, sandbox, "PUT", ENDPOINT, endpoint_body(), **keys)
    assert put.status_code == 403
    assert put.json() == NO_PERMISSION
    assert (await call(client, sandbox, "DELETE", ENDPOINT, **keys)).status_code == 403


async def test_taken_mac_is_refused(sandbox, client) -> None:
    path = f"companies/{DEMO_COMPANY_ID}/endpoints/{TAKEN_MAC}"
    response = await call(client, sandbox, "PUT", path, endpoint_body(TAKEN_MAC))
    assert response.status_code == 403
    assert response.json() == {
        "error": "taken_mac_or_forbidden",
        "message": "MAC address is taken or your account lacks permission",
    }
    assert TAKEN_MAC in sandbox.state.endpoints(OTHER_COMPANY_ID)


async def test_other_company_is_forbidden(sandbox, client) -> None:
    path = f"companies/{OTHER_COMPANY_ID}/endpoints/{MAC}"
    response = await call(client, sandbox, "PUT", path, endpoint_body())
    assert response.status_code == 403
    assert response.json() == NO_PERMISSION


@pytest.mark.parametrize("mac", [MAC + "/", MAC.upper(), "00:04:13:ab:cd:ef", MAC[:-1]])
async def test_malformed_endpoint_paths_are_not_found(sandbox, client, mac) -> None:
    path = f"companies/{DEMO_COMPANY_ID}/endpoints/{mac}"
    response = await call(client, sandbox, "PUT", path, endpoint_body())
    assert response.status_code == 404
    assert sandbox.state.endpoints(DEMO_COMPANY_ID) == {}


# -- faults ------------------------------------------------------------------------------


async def test_fail_next_then_success(sandbox, client) -> None:
    sandbox.state.fail_next = [503, 429]
    path = f"tokens/{DEMO_KEY_ID}"
    unavailable = await call(client, sandbox, "GET", path)
    limited = await call(client, sandbox, "GET", path)
    ok = await call(client, sandbox, "GET", path)
    assert unavailable.status_code == 503
    assert unavailable.json() == {"message": "Service Unavailable"}
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert ok.status_code == 200
    assert [r.status for r in sandbox.state.records] == [503, 429, 200]


async def test_rates_answer_429_and_503(sandbox, client) -> None:
    sandbox.state.rate_limit_rate = 1.0
    sandbox.state.retry_after = 7
    limited = await call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    sandbox.state.rate_limit_rate = 0.0
    sandbox.state.error_rate = 1.0
    assert (await call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}")).status_code == 503


async def test_paused_requests_wait_until_resumed(sandbox, client) -> None:
    sandbox.state.paused = True
    pending = asyncio.create_task(call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}"))
    await asyncio.wait_for(sandbox.state.wait_held(1), 5)
    assert not pending.done()
    sandbox.state.paused = False
    assert (await asyncio.wait_for(pending, 5)).status_code == 200


async def test_hang_times_clients_out(sandbox, client) -> None:
    sandbox.state.hang = True
    url = sandbox.url + f"tokens/{DEMO_KEY_ID}"
    with pytest.raises(httpx.ReadTimeout):
        await client.get(url, headers={"Authorization": sign(url, "GET")}, timeout=0.2)
    assert sandbox.state.held == 1


async def test_latency_delays_answers(sandbox, client) -> None:
    sandbox.state.latency = 0.1
    started = time.monotonic()
    await call(client, sandbox, "GET", f"tokens/{DEMO_KEY_ID}")
    assert time.monotonic() - started >= 0.1


# -- control API -------------------------------------------------------------------------


async def test_control_api(sandbox, client) -> None:
    control = sandbox.control_url
    faults = await client.post(control + "faults", json={"fail_next": [502], "latency": 0})
    assert faults.json()["fail_next"] == [502]
    bad = await client.post(control + "faults", json={"explode": True})
    assert bad.status_code == 400
    added = await client.post(
        control + "keys", json={"id": "k2", "secret": "s2", "company": "3003", "role": None}
    )
    assert added.status_code == 201
    k2 = {"key_id": "k2", "secret": "s2"}
    assert (await call(client, sandbox, "GET", "tokens/k2", **k2)).status_code == 502
    token = await call(client, sandbox, "GET", "tokens/k2", **k2)
    assert token.json()["links"]["company"].endswith("/api/v1/companies/3003/")
    state = (await client.get(control + "state")).json()
    assert state["counts"] == {"GET token": 2}
    assert state["companies"][OTHER_COMPANY_ID]["endpoints"][TAKEN_MAC]["mac"] == TAKEN_MAC
    assert all("secret" not in key for key in state["keys"])
    await client.post(control + "reset-counts")
    assert (await client.get(control + "state")).json()["total"] == 0
