"""Hawk signing: the @hapi/hawk reference vectors through the provider's signing path."""

from __future__ import annotations

import re
import time

from mohawk import Receiver
from mohawk.util import calculate_ts_mac

from rps_service.providers.hawk import HawkKey, payload_hash, server_time, sign

# From the @hapi/hawk README.
KEY = HawkKey("dh37fgj492je", "werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn")
URL = "http://example.com:8000/resource/1?b=1&a=2"
TS = 1353832234
NONCE = "j4h3g2"
EXT = "some-app-ext-data"


def _attrs(header: str) -> dict[str, str]:
    assert header.startswith("Hawk ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def test_get_reference_vector() -> None:
    header = sign(KEY, "GET", URL, timestamp=TS, nonce=NONCE, ext=EXT)
    assert header == (
        'Hawk id="dh37fgj492je", ts="1353832234", nonce="j4h3g2", ext="some-app-ext-data", '
        'mac="6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE="'
    )


def test_payload_reference_vector() -> None:
    content = b"Thank you for flying Hawk"
    header = sign(
        KEY, "POST", URL, timestamp=TS, nonce=NONCE, ext=EXT, content=content,
        content_type="text/plain",
    )  # fmt: skip
    attrs = _attrs(header)
    assert attrs["hash"] == "Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY="
    assert attrs["mac"] == "aSe1DERmZuRl3pI36/9BdZmnErTw3sNzOOAUlfeKjVw="
    assert payload_hash(content, "text/plain") == attrs["hash"]


def test_header_order_matches_the_reference_client() -> None:
    header = sign(KEY, "PUT", "https://x.test/a", timestamp=TS, content=b"{}", content_type="a/b")
    assert list(_attrs(header)) == ["id", "ts", "nonce", "hash", "mac"]


def test_no_hash_without_body_and_a_fresh_nonce_each_time() -> None:
    first = _attrs(sign(KEY, "GET", "https://x.test/a", timestamp=TS))
    second = _attrs(sign(KEY, "GET", "https://x.test/a", timestamp=TS))
    assert "hash" not in first
    assert "ext" not in first
    assert first["nonce"] != second["nonce"]


def test_a_receiver_accepts_our_signature() -> None:
    url = "https://sraps.test/api/v1/companies/1/endpoints/000413abcdef"
    body = b'{"mac":"000413abcdef"}'
    header = sign(
        KEY, "PUT", url, timestamp=TS, content=body, content_type="application/json"
    )  # fmt: skip
    Receiver(
        lambda _id: {"id": KEY.id, "key": KEY.secret, "algorithm": "sha256"},
        header,
        url,
        "PUT",
        content=body,
        content_type="application/json",
        seen_nonce=lambda *_: False,
        localtime_offset_in_seconds=TS - time.time(),
    )


def _challenge(ts: int, key: HawkKey = KEY) -> str:
    creds = {"id": key.id, "key": key.secret, "algorithm": "sha256"}
    tsm = calculate_ts_mac(ts, creds).decode()
    return f'Hawk ts="{ts}", tsm="{tsm}", error="Stale timestamp"'


def test_server_time_from_an_authentic_challenge() -> None:
    assert server_time(KEY, _challenge(1700000000)) == 1700000000


def test_server_time_ignores_forged_or_missing_tsm() -> None:
    other = HawkKey(KEY.id, "not-the-secret")
    assert server_time(KEY, _challenge(1700000000, other)) is None
    assert server_time(KEY, 'Hawk ts="1700000000", error="Stale timestamp"') is None
    assert server_time(KEY, 'Hawk error="Unknown credentials"') is None
    assert server_time(KEY, "Basic realm=x") is None
    assert server_time(KEY, "") is None


def test_key_repr_hides_the_secret() -> None:
    assert KEY.secret not in repr(KEY)
