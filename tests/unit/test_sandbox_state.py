"""The sandbox's world, payload rules, switches and Hawk checks, without a network."""

from __future__ import annotations

import time

import mohawk
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mohawk.base import EmptyValue

from rps_service.sandbox import (
    DEMO_COMPANY_ID,
    DEMO_KEY_ID,
    DEMO_SECRET,
    GLOBAL_SETTING_SERVER_UUID,
    HTTP_CLIENT_PASS_UUID,
    HTTP_CLIENT_USER_UUID,
    NOROLE_KEY_ID,
    OTHER_COMPANY_ID,
    SETTING_SERVER_UUID,
    TAKEN_MAC,
    HawkError,
    SandboxState,
    setting_uuid,
    verify,
)
from rps_service.sandbox.cli import main
from rps_service.sandbox.control import ControlError, apply_switches
from rps_service.sandbox.sraps_api import ApiError, validate_endpoint

URL = "http://127.0.0.1:8900/api/v1/tokens/demo-key"
CREDS = {"id": DEMO_KEY_ID, "key": DEMO_SECRET, "algorithm": "sha256"}


def test_seeded_world() -> None:
    state = SandboxState()
    assert state.keys[DEMO_KEY_ID].company_id == DEMO_COMPANY_ID
    assert state.keys[NOROLE_KEY_ID].role is None
    assert state.owner_of(TAKEN_MAC) == OTHER_COMPANY_ID
    assert state.endpoints(DEMO_COMPANY_ID) == {}


def test_catalogue_places_important_settings_past_first_page() -> None:
    state = SandboxState()
    index = {s.uuid: i for i, s in enumerate(state.settings)}
    assert len(state.settings) == 1200
    assert index[GLOBAL_SETTING_SERVER_UUID] < index[SETTING_SERVER_UUID]
    assert min(index[u] for u in (SETTING_SERVER_UUID, HTTP_CLIENT_USER_UUID)) >= 1000
    assert state.setting("setting_server", "phone-settings").uuid == SETTING_SERVER_UUID
    assert setting_uuid("http_client_pass", "phone-settings") == HTTP_CLIENT_PASS_UUID


@given(st.integers(min_value=4, max_value=1300))
def test_catalogue_of_any_size_keeps_the_four_settings(count: int) -> None:
    settings = SandboxState(count, seed_world=False).settings
    uuids = [s.uuid for s in settings]
    assert len(settings) == count == len(set(uuids))
    for needed in (SETTING_SERVER_UUID, GLOBAL_SETTING_SERVER_UUID, HTTP_CLIENT_USER_UUID):
        assert needed in uuids


def test_catalogue_must_hold_the_four_settings() -> None:
    with pytest.raises(ValueError, match="at least 4"):
        SandboxState(3)


def test_fail_next_comes_before_rates() -> None:
    state = SandboxState()
    state.fail_next = [503, 429]
    state.error_rate = 1.0
    assert [state.next_fault() for _ in range(3)] == [503, 429, 503]
    state.error_rate = 0.0
    assert state.next_fault() is None


def test_switches_are_validated_all_or_nothing() -> None:
    state = SandboxState()
    apply_switches(state, {"paused": True, "error_rate": 0.5, "fail_next": [429]})
    assert state.paused
    assert state.switches()["fail_next"] == [429]
    with pytest.raises(ControlError):
        apply_switches(state, {"latency": 1, "error_rate": 2})
    assert state.latency == 0.0
    with pytest.raises(ControlError, match="Unknown switch"):
        apply_switches(state, {"nope": 1})


def test_nonces_are_single_use_per_key() -> None:
    state = SandboxState()
    assert not state.seen_nonce("a", "n1", "100")
    assert state.seen_nonce("a", "n1", "100")
    assert not state.seen_nonce("b", "n1", "100")
    assert not state.seen_nonce("a", "n1", "101")


_ALLOWED = {"mac", "autoprovisioning_enabled", "settings_manager", "name", "description"}


@given(st.text(min_size=1).filter(lambda name: name not in _ALLOWED))
def test_any_unknown_endpoint_field_is_refused(name: str) -> None:
    with pytest.raises(ApiError) as refused:
        validate_endpoint(SandboxState(4), "000413abcdef", {"mac": "000413abcdef", name: 1})
    assert refused.value.status == 400
    assert refused.value.body == {"message": f"Unknown field: {name}"}


@pytest.mark.parametrize(
    "entry",
    [{"value": 1}, {"value": "x", "attrs": {"perm": "W"}}, {"value": "x", "extra": 1}, "x"],
)
def test_bad_setting_values_are_refused(entry: object) -> None:
    body = {"mac": "000413abcdef", "settings_manager": {SETTING_SERVER_UUID: entry}}
    with pytest.raises(ApiError) as refused:
        validate_endpoint(SandboxState(4), "000413abcdef", body)
    assert refused.value.status == 400


def _verify(state: SandboxState, header: str, body: bytes = b"", ctype: str = "") -> str:
    key = verify(state, authorization=header, url=URL, method="GET", body=body, content_type=ctype)
    return key.id


def test_verify_accepts_signed_request_once() -> None:
    state = SandboxState(4)
    header = mohawk.Sender(CREDS, URL, "GET", EmptyValue, EmptyValue, always_hash_content=False)
    assert _verify(state, header.request_header) == DEMO_KEY_ID
    with pytest.raises(HawkError, match="Invalid nonce"):
        _verify(state, header.request_header)


def test_verify_refuses_body_without_hash() -> None:
    state = SandboxState(4)
    header = mohawk.Sender(CREDS, URL, "GET", EmptyValue, EmptyValue, always_hash_content=False)
    with pytest.raises(HawkError, match="Missing required payload hash"):
        _verify(state, header.request_header, b"{}", "application/json")


def test_verify_stale_timestamp_follows_clock_offset() -> None:
    state = SandboxState(4)
    state.clock_offset = -300
    header = mohawk.Sender(CREDS, URL, "GET", EmptyValue, EmptyValue, always_hash_content=False)
    with pytest.raises(HawkError) as refused:
        _verify(state, header.request_header)
    server_ts = int(time.time()) - 300
    assert refused.value.error == "Stale timestamp"
    assert f'ts="{server_ts}"' in refused.value.www_authenticate or (
        f'ts="{server_ts - 1}"' in refused.value.www_authenticate
    )


def test_cli_refuses_bad_options() -> None:
    assert main(["--error-rate", "2"]) == 2
    assert main(["--settings-count", "3"]) == 2
