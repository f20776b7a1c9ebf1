"""Properties of the parsers that read what phones (and anyone on the Internet) send to
/ztprov/: Basic and Digest credentials never raise and never let in the wrong credentials;
the User-Agent parser never raises and gives a MAC of 12 upper-case hex digits or none."""

from __future__ import annotations

import base64
import hashlib
import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rps_service.ztp.auth import REALM, Authenticator, NonceBook, Secret, auth_params
from rps_service.ztp.useragent import parse_user_agent

SECRET = Secret("ztp-0123456789ab", 'p4ss:w0rd "with" \\ odd chars')
NOW = 1_800_000_000.0
URI = "/ztprov/snomD717-000413ABCDEF.htm"
BOOK = NonceBook(300, key=b"k" * 32)
NONCE = BOOK.issue(NOW)
TCHARS = "!#$%&'*+.^_`|~-" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

headers = st.text(max_size=300) | st.binary(max_size=300).map(
    lambda raw: raw.decode("utf-8", "surrogateescape"))  # how undecodable bytes arrive
names = st.text(TCHARS, min_size=1, max_size=12)
values = st.text(max_size=40)
credentials = st.sampled_from([SECRET.username, SECRET.password, "", "ztp-ffffffffffff"]) | values


def _auth() -> Authenticator:
    return Authenticator(NonceBook(300, key=b"k" * 32))


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogatepass")).hexdigest()  # noqa: S324


def _digest(user: str, password: str, nc: int = 1, cnonce: str = "0a1b2c3d") -> str:
    """A Digest header computed here, independently, for the given credentials."""
    ha1, ha2 = _md5(f"{user}:{REALM}:{password}"), _md5(f"GET:{URI}")
    response = _md5(f"{ha1}:{NONCE}:{nc:08x}:{cnonce}:auth:{ha2}")
    return (f"Digest username={_quoted(user)}, realm={_quoted(REALM)}, nonce={_quoted(NONCE)},"
            f" uri={_quoted(URI)}, algorithm=MD5, response={_quoted(response)}, qop=auth,"
            f" nc={nc:08x}, cnonce={_quoted(cnonce)}")


# -- Basic ------------------------------------------------------------------------------------


@given(raw=st.binary(max_size=120) | st.sampled_from(
    [f"{SECRET.username}:{SECRET.password}".encode(), f"{SECRET.username}:".encode(),
     f"{SECRET.username}:{SECRET.password}x".encode()]))
@example(raw=f"{SECRET.username}:{SECRET.password}".encode())
def test_basic_accepts_exactly_the_right_pair(raw: bytes) -> None:
    header = "Basic " + base64.b64encode(raw).decode()
    result = _auth().verify(header, "GET", URI, SECRET, NOW)
    assert result.ok == (raw == f"{SECRET.username}:{SECRET.password}".encode())
    assert result.ok or result.reason


@given(token=headers)
@example(token="\xff\xfe")
@example(token="====")
def test_basic_never_raises_on_any_token(token: str) -> None:
    result = _auth().verify("Basic " + token, "GET", URI, SECRET, NOW)
    assert not result.ok  # random text is never the base64 of the right pair


# -- Digest -----------------------------------------------------------------------------------


@given(user=credentials, password=credentials)
@example(user=SECRET.username, password=SECRET.password)
def test_digest_accepts_exactly_the_right_credentials(user: str, password: str) -> None:
    result = _auth().verify(_digest(user, password), "GET", URI, SECRET, NOW)
    assert result.ok == (user == SECRET.username and password == SECRET.password)


@given(user=credentials, password=credentials)
def test_an_unknown_device_never_authenticates(user: str, password: str) -> None:
    assert not _auth().verify(_digest(user, password), "GET", URI, None, NOW).ok


@given(token=headers)
@example(token='username="a", realm=, nonce="x"')
@example(token='username="a", realm="rps-ztp", nonce="n", uri="http://[", response="r",'
               ' qop=auth, nc=00000001, cnonce="c"')
@example(token='"')
@example(token="a=b=c")
def test_digest_never_raises_on_any_token(token: str) -> None:
    assert not _auth().verify("Digest " + token, "GET", URI, SECRET, NOW).ok


@settings(max_examples=300)
@given(position=st.integers(0, 400), char=st.characters(), scheme=st.sampled_from(["", "x"]))
def test_a_damaged_valid_header_never_raises(position: int, char: str, scheme: str) -> None:
    header = _digest(SECRET.username, SECRET.password)
    position %= len(header)
    damaged = scheme + header[:position] + char + header[position + 1:]
    _auth().verify(damaged, "GET", URI, SECRET, NOW)  # any outcome, but an answer


@given(st.dictionaries(names, values, max_size=8))
def test_auth_params_read_back_what_was_written(fields: dict[str, str]) -> None:
    lowered = {k.lower(): v for k, v in fields.items()}
    if len(lowered) < len(fields):
        return  # names differing only in case are one name given twice: malformed
    text = ", ".join(f"{k}={_quoted(v)}" for k, v in fields.items())
    assert auth_params(text) == lowered


# -- User-Agent -------------------------------------------------------------------------------

MAC = re.compile(r"[0-9A-F]{12}")


@given(headers)
@example("snomD785-SIP 10.1.33.33 000413922d24 ÿ")
@example("\x00" * 2000)
def test_user_agent_never_raises_and_mac_is_upper_hex(header: str) -> None:
    agent = parse_user_agent(header)
    assert agent.mac is None or MAC.fullmatch(agent.mac)


@given(mac=st.text("0123456789abcdefABCDEF", min_size=12, max_size=12),
       model=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=6),
       noise=st.text(" ;()/-_.,abc", max_size=10))
def test_user_agent_finds_a_snom_mac(mac: str, model: str, noise: str) -> None:
    header = f"Mozilla/4.0 (compatible; snom{model}-SIP 10.1.2.3{noise} 000413{mac[6:]} SXM:0)"
    assert parse_user_agent(header).mac == f"000413{mac[6:]}".upper()
