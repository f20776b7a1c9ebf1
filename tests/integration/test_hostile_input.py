"""Thousands of malformed bodies, headers and paths against the real listener and journal:
never a 5xx, never a crash, never a row stored for anything invalid."""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rps_service.config import load_settings
from rps_service.service import Service
from tests.conftest import free_port, write_ini
from tests.fakes import ScriptedProvider

TOKEN = "hostile-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                               max_size=6),
    max_leaves=20,
)
FIELDS = ["action", "provider", "mac", "server", "model", "name", "extension", "key", "sn",
          "mac_id", "settings"]
VALID = {"action": "add", "provider": "fake", "mac": "00:04:13:ab:cd:ef", "server": 8}


class Harness:
    """One daemon (SQLite, test provider, api_token) on its own event loop."""

    def __init__(self, folder: Path) -> None:
        self.runner = asyncio.Runner()
        ini = write_ini(folder / "rps.ini", {
            "port": free_port(), "database": f"sqlite:///{folder}/rps.db", "log_file": "-",
            "log_level": "ERROR", "api_token": TOKEN, "max_body": 65536})
        self.service = Service(load_settings(ini, env={}),
                               providers={"fake": ScriptedProvider()})
        self.runner.run(self.service.start())
        self.client = httpx.AsyncClient(base_url=f"http://{self.service.address}", timeout=10)

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    def rows(self) -> int:
        return len(self.run(self.service.store.list_events(limit=100_000)))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.run(self.service.stop())
        self.runner.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    made = Harness(tmp_path_factory.mktemp("hostile"))
    yield made
    made.close()


fuzz = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def post_json(harness: Harness, body: Any) -> httpx.Response:
    content = json.dumps(body).encode()
    headers = {**AUTH, "Content-Type": "application/json"}
    response: httpx.Response = harness.run(harness.client.post("/events", content=content,
                                                               headers=headers))
    return response


def is_valid(body: Any) -> bool:
    """What the contract accepts, written independently of the product's validator."""
    items = body if isinstance(body, list) else [body]
    if isinstance(body, list) and not 1 <= len(body) <= 1000:
        return False
    return all(_valid_event(item) for item in items)


def _valid_event(item: Any) -> bool:
    if not isinstance(item, dict) or set(item) - set(FIELDS):
        return False
    mac = item.get("mac")
    hexes = "".join(c for c in mac if c not in ":-.").strip() if isinstance(mac, str) else ""
    checks = [
        item.get("action") in ("add", "remove", "update"),
        item.get("provider") == "fake",
        len(hexes) == 12 and all(c in string.hexdigits for c in hexes),
        item.get("server") is None or (type(item["server"]) is int
                                       and 1 <= item["server"] < 2**31),
        all(item.get(k) is None or (isinstance(item[k], str) and len(item[k]) <= limit
                                    and not _has_control(item[k]))
            for k, limit in (("model", 64), ("name", 255), ("extension", 64))),
        "key" not in item or item["key"] is None or (isinstance(item["key"], str)
                                                      and 1 <= len(item["key"]) <= 64
                                                      and not _has_control(item["key"])),
        _code(item.get("sn"), "._-"),
        _code(item.get("mac_id"), "-"),
        _settings(item.get("settings")),
    ]
    return all(checks)


def _has_control(text: str) -> bool:
    """SPEC §13: C0 and C1 controls, bidi and format controls (and lone surrogates and the
    line separators, which the daemon refuses too)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
               or c in "\u061c\u200e\u200f\u2028\u2029\u202a\u202b\u202c\u202d\u202e"
                       "\u2066\u2067\u2068\u2069" for c in text)


def _code(value: Any, extra: str) -> bool:
    if value is None:
        return True
    allowed = string.ascii_letters + string.digits + extra
    return isinstance(value, str) and 1 <= len(value) <= 32 and all(c in allowed for c in value)


def _settings(value: Any) -> bool:
    if value is None:
        return True
    return isinstance(value, dict) and len(value) <= 100 and all(
        isinstance(v, str) and 1 <= len(k) <= 64 and len(v) <= 1024 for k, v in value.items())


@fuzz
@given(body=json_values)
def test_random_json_bodies(harness: Harness, body: Any) -> None:
    before = harness.rows()
    r = post_json(harness, body)
    assert r.status_code in (202, 400), r.text
    assert (r.status_code == 202) == is_valid(body), (body, r.text)
    if r.status_code == 400:
        assert r.json()["error"] and isinstance(r.json()["details"], list)
        assert harness.rows() == before


@fuzz
@given(field=st.sampled_from([*FIELDS, "extra"]), value=json_values,
       batch=st.integers(min_value=1, max_value=4))
def test_one_bad_field_in_a_batch(harness: Harness, field: str, value: Any, batch: int
                                  ) -> None:
    bad = {**VALID, field: value}
    body = [VALID] * (batch - 1) + [bad]
    before = harness.rows()
    r = post_json(harness, body)
    assert r.status_code in (202, 400), r.text
    assert (r.status_code == 202) == is_valid(body), (body, r.text)
    # A key hypothesis drew in an earlier example is a duplicate: its first event's id.
    fresh = [e for e in r.json()["events"] if not e.get("duplicate")] \
        if r.status_code == 202 else []
    assert r.status_code != 202 or field == "key" or len(fresh) == batch
    assert harness.rows() == before + len(fresh)


@fuzz
@given(raw=st.binary(max_size=300),
       content_type=st.sampled_from(["application/json", "text/plain", "", "application/xml",
                                     "application/json; charset=latin-1", "multipart/x"]))
def test_random_bytes(harness: Harness, raw: bytes, content_type: str) -> None:
    before = harness.rows()
    headers = {**AUTH, "Content-Type": content_type} if content_type else AUTH
    r = harness.run(harness.client.post("/events", content=raw, headers=headers))
    assert r.status_code < 500, r.text
    if r.status_code != 202:
        assert harness.rows() == before


@fuzz
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       path=st.lists(st.text(max_size=20), min_size=1, max_size=4),
       query=st.dictionaries(st.sampled_from(["state", "limit", "before", "server", "mac",
                                              "status", "provider", "x"]),
                             st.text(max_size=12), max_size=3))
def test_random_paths_and_queries(harness: Harness, method: str, path: list[str],
                                  query: dict[str, str]) -> None:
    before = harness.rows()
    url = "/" + "/".join(quote(part, safe="") for part in path)
    for base in ("", "/events", "/devices", "/providers/fake/credentials"):
        target = f"http://{harness.service.address}{base}{url}"
        r = harness.run(harness.client.request(method, target, params=query, headers=AUTH))
        assert r.status_code < 500, (method, base + url, r.text)
    assert harness.rows() == before


@fuzz
@given(value=st.text(max_size=60))
def test_random_authorization(harness: Harness, value: str) -> None:
    before = harness.rows()
    try:
        request = harness.client.build_request("POST", "/events", json=VALID,
                                               headers={"Authorization": value})
        r = harness.run(harness.client.send(request))
    except (UnicodeEncodeError, ValueError, httpx.LocalProtocolError):
        return  # not sendable as an HTTP header at all
    if value == f"Bearer {TOKEN}":
        assert r.status_code == 202
        assert harness.rows() == before + 1
    else:
        # 401 from the daemon, or 400 from the HTTP parser for a malformed header line.
        assert r.status_code in (400, 401)
        assert harness.rows() == before


def test_sql_metacharacters_stored_verbatim(harness: Harness) -> None:
    name = "O'Brien\"; DROP TABLE rps_events; -- %s ? \\x00 é ü"
    r = harness.run(harness.client.post(
        "/events", json={**VALID, "mac": "000413FFFF01", "name": name, "key": "k'; --"},
        headers=AUTH))
    assert r.status_code == 202
    event = harness.run(harness.client.get(f"/events/{r.json()['events'][0]['id']}",
                                           headers=AUTH)).json()
    assert event["payload"]["name"] == name and event["key"] == "k'; --"
