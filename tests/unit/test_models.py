"""Event validation (docs/api.md): MAC normalization and the rules that guard the journal."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rps_service.models import (
    MAX_BATCH,
    EventIn,
    FieldError,
    answer_mac,
    normalize_mac,
    validate_events,
)

PROVIDERS = frozenset({"snom"})
HEX = "0123456789abcdefABCDEF"
FIELDS = ["action", "provider", "mac", "server", "model", "name", "extension", "key"]


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"action": "add", "provider": "snom", "mac": "00:04:13:ab:cd:ef"}
    event.update(overrides)
    return event


def _only_error(body: Any) -> FieldError:
    events, errors = validate_events(body, PROVIDERS)
    assert events == [] or isinstance(body, list)
    assert len(errors) == 1, errors
    return errors[0]


# --- normalize_mac ---------------------------------------------------------------------------


@st.composite
def _separated_macs(draw: st.DrawFn) -> tuple[str, str]:
    digits = draw(st.text(alphabet=HEX, min_size=12, max_size=12))
    seps = draw(st.lists(st.sampled_from(["", ":", "-", "."]), min_size=5, max_size=5))
    pairs = [digits[i : i + 2] for i in range(0, 12, 2)]
    text = pairs[0] + "".join(sep + pair for sep, pair in zip(seps, pairs[1:], strict=True))
    return text, digits.upper()


@given(_separated_macs())
def test_normalize_mac_accepts_any_case_and_separators(case: tuple[str, str]) -> None:
    text, expected = case
    assert normalize_mac(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:04:13:ab:cd:ef", "000413ABCDEF"),
        ("00-04-13-AB-CD-EF", "000413ABCDEF"),
        ("0004.13ab.cdef", "000413ABCDEF"),
        ("000413abcdef", "000413ABCDEF"),
        (" 000413ABCDEF\n", "000413ABCDEF"),
    ],
)
def test_normalize_mac_examples(text: str, expected: str) -> None:
    assert normalize_mac(text) == expected


@given(
    digits=st.text(alphabet=HEX, max_size=24).filter(lambda s: len(s) != 12),
    sep=st.sampled_from(["", ":", "-", "."]),
)
def test_normalize_mac_refuses_wrong_number_of_digits(digits: str, sep: str) -> None:
    text = sep.join(digits[i : i + 2] for i in range(0, len(digits), 2))
    with pytest.raises(ValueError, match="12 hex digits"):
        normalize_mac(text)


@given(
    digits=st.text(alphabet=HEX, min_size=12, max_size=12),
    position=st.integers(min_value=0, max_value=11),
    bad=st.characters().filter(lambda c: c not in string.hexdigits),
)
def test_normalize_mac_refuses_a_non_hex_character(digits: str, position: int, bad: str) -> None:
    text = digits[:position] + bad + digits[position + 1 :]
    with pytest.raises(ValueError, match="12 hex digits"):
        normalize_mac(text)


@pytest.mark.parametrize(
    "text", ["", "00:04:13:ab:cd", "00:04:13:ab:cd:ef:01", "00:04:13:ab:cd:eg",
             "0004 13ab cdef", "00_04_13_ab_cd_ef", "0x0413abcdef"],
)
def test_normalize_mac_refuses_examples(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_mac(text)


def test_normalize_mac_refuses_unicode_that_uppercases_to_hex() -> None:
    with pytest.raises(ValueError):
        normalize_mac("\ufb00:04:13:ab:cd:ef")


# --- validate_events -------------------------------------------------------------------------


def test_single_object() -> None:
    events, errors = validate_events(_event(server=8), PROVIDERS)
    assert errors == []
    assert len(events) == 1
    event = events[0]
    assert (event.action, event.provider, event.mac, event.server) == (
        "add", "snom", "000413ABCDEF", 8)


def test_server_left_out_is_none_for_the_store_to_resolve() -> None:
    events, _ = validate_events(_event(), PROVIDERS)
    assert events[0].server is None


def test_array_keeps_order() -> None:
    body = [_event(mac="000413000001"), _event(action="remove", mac="000413000002"),
            _event(action="update", mac="000413000003")]
    events, errors = validate_events(body, PROVIDERS)
    assert errors == []
    assert [(e.action, e.mac) for e in events] == [
        ("add", "000413000001"), ("remove", "000413000002"), ("update", "000413000003")]


def test_empty_array_is_an_error() -> None:
    error = _only_error([])
    assert error.index == 0
    assert "no events" in error.message


def test_max_batch_is_accepted() -> None:
    events, errors = validate_events([_event()] * MAX_BATCH, PROVIDERS)
    assert errors == []
    assert len(events) == 1000


def test_over_max_batch_is_an_error() -> None:
    events, errors = validate_events([_event()] * (MAX_BATCH + 1), PROVIDERS)
    assert events == []
    assert len(errors) == 1
    assert "1000" in errors[0].message


@pytest.mark.parametrize("item", [None, 42, "add", ["add"], True])
def test_non_object_item_reports_its_index(item: Any) -> None:
    events, errors = validate_events([_event(), item], PROVIDERS)
    assert len(events) == 1
    assert errors == [FieldError(1, "", "an event must be a JSON object")]


@pytest.mark.parametrize("body", [None, 42, "add", True])
def test_non_object_body_is_an_error(body: Any) -> None:
    error = _only_error(body)
    assert (error.index, error.field) == (0, "")


def test_unknown_field() -> None:
    error = _only_error(_event(colour="blue"))
    assert error == FieldError(0, "colour", "unknown field")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("server", "8"),  # strict: no string-to-int coercion
        ("server", 8.0),
        ("server", True),
        ("server", 0),
        ("server", -1),
        ("server", 2**31),
        ("mac", 413),
        ("mac", "00:04:13:ab:cd"),
        ("action", "delete"),
        ("action", None),
        ("provider", ""),
        ("model", 717),
        ("name", ["Reception"]),
        ("extension", 1001),
        ("key", ""),
        ("key", "k" * 65),
    ],
)
def test_bad_field_is_named(field: str, value: Any) -> None:
    error = _only_error(_event(**{field: value}))
    assert (error.index, error.field) == (0, field)
    assert error.message


@pytest.mark.parametrize("field", ["action", "provider", "mac"])
def test_missing_required_field(field: str) -> None:
    body = _event()
    del body[field]
    error = _only_error(body)
    assert (error.index, error.field) == (0, field)


def test_key_of_64_chars_is_accepted() -> None:
    events, errors = validate_events(_event(key="k" * 64), PROVIDERS)
    assert errors == []
    assert events[0].key == "k" * 64


def test_unknown_provider() -> None:
    error = _only_error(_event(provider="yealink"))
    assert (error.index, error.field) == (0, "provider")
    assert "snom" in error.message


def test_disabled_provider_is_unknown() -> None:
    _, errors = validate_events(_event(), frozenset())
    assert [(e.index, e.field) for e in errors] == [(0, "provider")]


def test_batch_error_reports_the_right_index() -> None:
    body = [_event(), _event(mac="000413000002"), _event(mac="not-a-mac"), _event()]
    events, errors = validate_events(body, PROVIDERS)
    assert len(events) == 3
    assert [(e.index, e.field) for e in errors] == [(2, "mac")]
    assert "12 hex digits" in errors[0].message


def test_several_errors_in_one_event_are_all_reported() -> None:
    _, errors = validate_events([_event(), _event(server="8", colour="x")], PROVIDERS)
    assert sorted((e.index, e.field) for e in errors) == [(1, "colour"), (1, "server")]


def test_payload_keeps_only_given_details() -> None:
    events, _ = validate_events(_event(model="D717", key="gui-4711", server=8), PROVIDERS)
    assert events[0].payload() == {"model": "D717", "key": "gui-4711"}
    full = _event(model="D717", name="Reception", extension="1001", key="k")
    events, _ = validate_events(full, PROVIDERS)
    assert events[0].payload() == {"model": "D717", "name": "Reception",
                                   "extension": "1001", "key": "k"}
    events, _ = validate_events(_event(), PROVIDERS)
    assert events[0].payload() == {}


def test_event_is_frozen() -> None:
    event = EventIn.model_validate(_event())
    with pytest.raises(ValueError):
        event.server = 2  # type: ignore[misc]


# --- arbitrary JSON never crashes validation -------------------------------------------------

_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20) | st.sampled_from(["add", "remove", "snom", "000413ABCDEF"])
)
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), children, max_size=8),
    max_leaves=20,
)


@settings(max_examples=300)
@given(_json)
def test_arbitrary_json_never_raises(body: Any) -> None:
    events, errors = validate_events(body, PROVIDERS)
    assert events or errors
    items = body if isinstance(body, list) else [body]
    assert all(isinstance(e, EventIn) for e in events)
    assert all(0 <= e.index < max(len(items), 1) for e in errors)
    if 0 < len(items) <= MAX_BATCH:
        # Every item ends up either as an event or with at least one error.
        assert len(events) + len({e.index for e in errors}) == len(items)


@pytest.mark.parametrize(("given", "read"), [
    ("00:04:13:ab:cd:ef", "000413ABCDEF"), ("0004.13AB.CDEF", "000413ABCDEF"),
    ("000413abcdef", "000413ABCDEF"), ("00-04-13-AB-CD-EF", "000413ABCDEF"),
    ("000413ABCDE", ""), ("not a mac", ""), (None, ""), (12, ""), ("", ""),
])
def test_a_mac_in_a_vendor_answer_is_read_one_way(given: object, read: str) -> None:
    assert answer_mac(given) == read
