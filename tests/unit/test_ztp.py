"""The phone's side without a network: User-Agent, file names, the settings file,
Basic and Digest (with httpx's DigestAuth as the real client), nonces, the 429 brake."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from rps_service.config import ConfigError, load_settings
from rps_service.ztp.app import client_ip
from rps_service.ztp.auth import REALM, Authenticator, NonceBook, Secret
from rps_service.ztp.snom_file import parse_file_name, render_settings
from rps_service.ztp.throttle import FailureThrottle
from rps_service.ztp.useragent import UserAgent, parse_user_agent
from tests.conftest import write_ini

SECRET = Secret("ztp-0123456789ab", "p4ssw0rd-with-24-chars-x")
NOW = 1_800_000_000.0

# -- User-Agent -------------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "expected"), [
    ("Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004-g6f0b1a0 "
     "(Apr 16 2019 - 09:47:56) 000413922D24 SXM:0 UXM:0)",
     UserAgent("D785", "10.1.33.33", "000413922D24")),
    ("Mozilla/4.0 (compatible; snomD717-SIP 10.1.54.13 000413abcdef SXM:0 UXM:0)",
     UserAgent("D717", "10.1.54.13", "000413ABCDEF")),
    ("Mozilla/4.0 (compatible; snom320-SIP 8.7.3.25 1.1.3-s)", UserAgent("320", "8.7.3.25")),
    ("Mozilla/4.0 (compatible; snomD120-SIP 10.1.46.16 00041311BEEF)",
     UserAgent("D120", "10.1.46.16", "00041311BEEF")),
    ("snom-m3-SIP/01.0.1 0004139A0B0C", UserAgent("m3", "01.0.1", "0004139A0B0C")),
    # A vendor-neutral MAC is taken when it is not a bare number (a build id could be one).
    ("snomD785-SIP 10.1.33.33 build 201012000041 AABBCCDDEEFF",
     UserAgent("D785", "10.1.33.33", "AABBCCDDEEFF")),
    ("snomD785-SIP 10.1.33.33 build 201012000041", UserAgent("D785", "10.1.33.33")),
    ("curl/8.5.0", UserAgent()),
    ("", UserAgent()),
    ("\x00\xff snom", UserAgent()),
])
def test_user_agent(header: str, expected: UserAgent) -> None:
    assert parse_user_agent(header) == expected


def test_user_agent_absent() -> None:
    assert parse_user_agent(None) == UserAgent()


@given(st.text(max_size=2000))
def test_user_agent_never_raises(header: str) -> None:
    agent = parse_user_agent(header)
    assert agent.mac is None or (len(agent.mac) == 12 and agent.mac == agent.mac.upper())


# -- file names and the settings file ---------------------------------------------------------


@pytest.mark.parametrize(("name", "mac", "model"), [
    ("snomD717-000413ABCDEF.htm", "000413ABCDEF", "D717"),
    ("snomD717-000413abcdef.htm", "000413ABCDEF", "D717"),
    ("000413ABCDEF", "000413ABCDEF", None),
    ("000413ABCDEF.xml", "000413ABCDEF", None),
    ("snomD717.htm", None, None),
    ("snomD717-10.1.33.33-SIP-r.bin", None, None),
    ("snomD717-000413ABCDE.htm", None, None),
    ("", None, None),
    ("favicon.ico", None, None),
])
def test_file_names(name: str, mac: str | None, model: str | None) -> None:
    wanted = parse_file_name(name)
    assert (wanted.mac, wanted.model) == (mac, model)


def test_settings_file_is_spec_xml_with_escaped_values() -> None:
    body = render_settings("https://pbx.example.com/prov/?a=1&b=<2>", "ten&ant", 'p<w>"\'&')
    text = body.decode("utf-8")
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>\n<settings><phone-settings>\n')
    assert '  <setting_server perm="R">https://pbx.example.com/prov/?a=1&amp;b=&lt;2&gt;' \
           "</setting_server>\n" in text
    assert text.endswith("</phone-settings></settings>\n")
    root = ET.fromstring(body)  # noqa: S314 - our own output
    values = {child.tag: (child.text, child.attrib) for child in root.find("phone-settings")}
    assert values == {
        "setting_server": ("https://pbx.example.com/prov/?a=1&b=<2>", {"perm": "R"}),
        "http_client_user": ("ten&ant", {"perm": "R"}),
        "http_client_pass": ('p<w>"\'&', {"perm": "R"}),
    }


def test_settings_file_exactly_as_spec() -> None:
    assert render_settings("https://pbx.example.com/prov/", "tenant-user", "tenant-password") == (
        b'<?xml version="1.0" encoding="utf-8"?>\n'
        b"<settings><phone-settings>\n"
        b'  <setting_server perm="R">https://pbx.example.com/prov/</setting_server>\n'
        b'  <http_client_user perm="R">tenant-user</http_client_user>\n'
        b'  <http_client_pass perm="R">tenant-password</http_client_pass>\n'
        b"</phone-settings></settings>\n"
    )


# -- Basic and Digest -------------------------------------------------------------------------


def _auth(lifetime: float = 300) -> Authenticator:
    return Authenticator(NonceBook(lifetime))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - the protocol's hash


def digest_header(user: str, password: str, nonce: str, uri: str, nc: int = 1,
                  method: str = "GET", realm: str = REALM, cnonce: str = "0a1b2c3d") -> str:
    """An RFC 7616 Digest header, computed independently of the server's code."""
    ha1, ha2 = _md5(f"{user}:{realm}:{password}"), _md5(f"{method}:{uri}")
    response = _md5(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'algorithm=MD5, response="{response}", qop=auth, nc={nc:08x}, cnonce="{cnonce}"')


def _nonce_of(challenges: list[str]) -> str:
    digest = challenges[0]
    return digest.split('nonce="', 1)[1].split('"', 1)[0]


def test_challenges_offer_digest_and_basic() -> None:
    digest, basic = _auth().challenges(NOW)
    assert digest.startswith(f'Digest realm="{REALM}", qop="auth", algorithm=MD5, nonce="')
    assert "stale" not in digest
    assert basic == f'Basic realm="{REALM}", charset="UTF-8"'
    assert _auth().challenges(NOW, stale=True)[0].endswith(", stale=true")


def test_basic() -> None:
    auth, uri = _auth(), "/ztprov/snomD717-000413ABCDEF.htm"
    assert auth.verify(_basic(SECRET.username, SECRET.password), "GET", uri, SECRET, NOW).ok
    wrong = auth.verify(_basic(SECRET.username, "nope"), "GET", uri, SECRET, NOW)
    assert not wrong.ok and wrong.reason == "wrong username or password"
    other_user = auth.verify(_basic("ztp-ffffffffffff", SECRET.password), "GET", uri, SECRET, NOW)
    assert not other_user.ok
    assert auth.verify("Basic !!!", "GET", uri, SECRET, NOW).reason == \
        "malformed Basic credentials"
    assert auth.verify("Basic " + base64.b64encode(b"nocolon").decode(), "GET", uri, SECRET,
                       NOW).reason == "malformed Basic credentials"


def test_no_credentials_is_not_a_failure() -> None:
    result = _auth().verify(None, "GET", "/ztprov/x", SECRET, NOW)
    assert (result.ok, result.reason, result.stale) == (False, "", False)
    assert _auth().verify("Bearer abc", "GET", "/ztprov/x", SECRET, NOW).reason.startswith(
        "unsupported authorization scheme")


def test_unknown_device_never_authenticates() -> None:
    auth = _auth()
    result = auth.verify(_basic(SECRET.username, SECRET.password), "GET", "/x", None, NOW)
    assert not result.ok and result.reason == "wrong username or password"


def test_digest_with_httpx_client() -> None:
    """httpx.DigestAuth is a real client implementation: challenge, answer, nonce counts."""
    auth = _auth()

    def server(request: httpx.Request) -> httpx.Response:
        result = auth.verify(request.headers.get("Authorization"), request.method,
                             request.url.raw_path.decode(), SECRET, NOW)
        if result.ok:
            return httpx.Response(200, text="ok")
        headers = [("WWW-Authenticate", c) for c in auth.challenges(NOW, stale=result.stale)]
        return httpx.Response(401, headers=headers)

    with httpx.Client(transport=httpx.MockTransport(server), base_url="http://pbx") as client:
        digest = httpx.DigestAuth(SECRET.username, SECRET.password)
        first = client.get("/ztprov/snomD717-000413ABCDEF.htm", auth=digest)
        assert first.status_code == 200
        assert [r.status_code for r in first.history] == [401]
        # The same client reuses the nonce with nc=2: accepted without a new challenge.
        second = client.get("/ztprov/snomD717-000413ABCDEF.htm", auth=digest)
        assert second.status_code == 200 and second.history == []
        assert "nc=00000002" in second.request.headers["Authorization"]
        wrong = client.get("/ztprov/x.htm", auth=httpx.DigestAuth(SECRET.username, "wrong"))
        assert wrong.status_code == 401


def test_digest_checks() -> None:
    auth = _auth()
    uri = "/ztprov/snomD717-000413ABCDEF.htm"
    nonce = _nonce_of(auth.challenges(NOW))
    good = digest_header(SECRET.username, SECRET.password, nonce, uri)
    assert auth.verify(good, "GET", uri, SECRET, NOW).ok
    assert auth.verify(good, "GET", uri, SECRET, NOW).reason == "nonce count replayed"
    assert auth.verify(digest_header(SECRET.username, SECRET.password, nonce, uri, nc=2),
                       "GET", uri, SECRET, NOW).ok
    cases = {
        "wrong username or password": digest_header(SECRET.username, "x", nonce, uri, nc=3),
        "uri does not match the request": digest_header(SECRET.username, SECRET.password,
                                                        nonce, "/ztprov/other.htm", nc=3),
        "wrong realm": digest_header(SECRET.username, SECRET.password, nonce, uri, nc=3,
                                     realm="other"),
        "unknown or forged nonce": digest_header(SECRET.username, SECRET.password,
                                                 nonce[:-2] + "AA", uri),
        "malformed Digest credentials": 'Digest username="x", nonce="y"',
    }
    for reason, header in cases.items():
        result = auth.verify(header, "GET", uri, SECRET, NOW)
        assert (result.ok, result.reason) == (False, reason), reason
    # Another server's nonce (another key) is not ours.
    foreign = _nonce_of(_auth().challenges(NOW))
    assert auth.verify(digest_header(SECRET.username, SECRET.password, foreign, uri), "GET",
                       uri, SECRET, NOW).reason == "unknown or forged nonce"
    # The method is part of the hash.
    head = digest_header(SECRET.username, SECRET.password, nonce, uri, nc=9, method="HEAD")
    assert not auth.verify(head, "GET", uri, SECRET, NOW).ok


def test_expired_nonce_is_stale_only_with_the_right_password() -> None:
    auth = _auth(lifetime=300)
    uri = "/ztprov/snomD717-000413ABCDEF.htm"
    nonce = _nonce_of(auth.challenges(NOW))
    later = NOW + 301
    right = auth.verify(digest_header(SECRET.username, SECRET.password, nonce, uri), "GET",
                        uri, SECRET, later)
    assert (right.ok, right.stale, right.reason) == (False, True, "")
    wrong = auth.verify(digest_header(SECRET.username, "guess", nonce, uri), "GET", uri,
                        SECRET, later)
    assert (wrong.ok, wrong.stale, wrong.reason) == (False, False,
                                                     "wrong username or password")
    assert auth.verify(digest_header(SECRET.username, SECRET.password, nonce, uri, nc=2),
                       "GET", uri, SECRET, NOW + 299).ok


def test_nonce_book() -> None:
    book = NonceBook(60, max_tracked=10)
    nonce = book.issue(NOW)
    assert book.status(nonce, NOW) == "fresh"
    assert book.status(nonce, NOW + 61) == "stale"
    assert book.status(nonce, NOW - 60) == "invalid"  # from the future
    assert book.status("x" * 43, NOW) == "invalid"
    assert book.status("", NOW) == "invalid"
    assert book.use(nonce, 1, NOW) and not book.use(nonce, 1, NOW)
    assert book.use(nonce, 5, NOW) and not book.use(nonce, 4, NOW)
    for _ in range(3000):  # memory stays bounded
        assert book.use(book.issue(NOW), 1, NOW)
    assert len(book._counts) <= 2048


# -- the client's address ----------------------------------------------------------------------


class _Transport:
    def __init__(self, peer: str) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: object = None) -> object:
        return (self.peer, 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("203.0.113.9", None, "203.0.113.9"),
    ("203.0.113.9", "10.0.0.5", "203.0.113.9"),  # only a proxy on loopback is believed
    ("127.0.0.1", "10.0.0.5", "10.0.0.5"),
    ("::1", "2001:db8::5", "2001:db8::5"),
    ("::ffff:127.0.0.1", "10.0.0.5", "10.0.0.5"),
    ("127.0.0.1", "6.6.6.6, 10.0.0.5", "10.0.0.5"),  # the hop nginx appended, not the forgery
    ("127.0.0.1", "not-an-ip", "127.0.0.1"),
    ("127.0.0.1", None, "127.0.0.1"),
])
def test_client_ip(peer: str, forwarded: str | None, expected: str) -> None:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    request = make_mocked_request("GET", "/ztprov/x", headers=headers,
                                  transport=_Transport(peer))
    assert client_ip(request) == expected


# -- the 429 brake and the [ztp] section ------------------------------------------------------


def test_throttle_counts_failures_per_user_and_per_address() -> None:
    throttle = FailureThrottle(limit=3, limit_per_ip=5, window=60)
    for second in range(2):
        assert throttle.failed("10.0.0.5", "ztp-a", NOW + second) == (None, [])
    assert throttle.failed("10.0.0.5", "ztp-a", NOW + 2) == (None, ["user"])  # reached
    assert throttle.failed("10.0.0.5", "ztp-a", NOW + 3) == (57, [])  # over: 429
    # Another user name behind the same address has its own count…
    assert throttle.failed("10.0.0.5", "ztp-b", NOW + 4) == (None, ["ip"])  # 5th in all
    # …until the address as a whole is over its limit.
    assert throttle.failed("10.0.0.5", "ztp-c", NOW + 5) == (55, [])
    assert throttle.failed("10.0.0.6", "ztp-a", NOW + 5) == (None, [])  # another address
    # The window slides: a minute after the first failures, the address is let be.
    assert throttle.failed("10.0.0.5", "ztp-d", NOW + 70) == (None, [])


def test_throttle_memory_is_bounded() -> None:
    throttle = FailureThrottle(limit=2, limit_per_ip=2, window=60)
    for i in range(1000):
        throttle.failed("10.0.0.5", f"user-{i}" + "x" * 10_000, NOW)
    assert throttle.failed("10.0.0.5", "user-0" + "x" * 10_000, NOW)[0] == 60


def test_ztp_section(tmp_path: Path) -> None:
    settings = load_settings(write_ini(tmp_path / "a.ini"), env={})
    assert (settings.ztp.enabled, settings.ztp.listen, settings.ztp.port, settings.ztp.path) == (
        False, "0.0.0.0", 15780, "/ztprov/")  # noqa: S104
    ztp = settings.ztp
    assert (ztp.header_timeout, ztp.max_connections, ztp.max_connections_per_ip,
            ztp.fail_limit, ztp.fail_limit_per_ip) == (10, 1000, 100, 10, 100)
    # A public ZTP address needs no api_token (phones authenticate per device).
    settings = load_settings(write_ini(tmp_path / "b.ini", extra="[ztp]\nenabled = true\n"),
                             env={"RPS_ZTP_PATH": "/zt/prov/"})
    assert settings.ztp.enabled and settings.ztp.path == "/zt/prov/"
    for key, value, reason in (("path", "ztprov", "must start and end with /"),
                               ("listen", "pbx.example.com", "must be an IP address"),
                               ("port", "0", "greater than or equal to 1"),
                               ("nonce_lifetime", "1", "greater than or equal to 10"),
                               ("header_timeout", "0", "greater than 0"),
                               ("max_connections", "0", "greater than or equal to 1"),
                               ("max_connections_per_ip", "-1", "greater than or equal to 0"),
                               ("fail_limit_per_ip", "0", "greater than or equal to 1")):
        with pytest.raises(ConfigError) as exc:
            load_settings(write_ini(tmp_path / "c.ini", extra=f"[ztp]\n{key} = {value}\n"),
                          env={})
        assert exc.value.section == "ztp" and exc.value.key == key
        assert reason in exc.value.reason
