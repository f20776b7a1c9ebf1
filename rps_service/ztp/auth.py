"""Per-device HTTP authentication for ``/ztprov/``: Basic and Digest (RFC 7617, RFC 7616).

The phone knows only the username and password the daemon generated for its MAC and pushed
to SRAPS. Three rules shape this module:

* **Nothing about a MAC is revealed before authentication.** A request for an unknown MAC, a
  removed device or a wrong password gets the same 401, after the same work: the check runs
  against throw-away credentials when the device has none (``expected=None``).
* **Constant-time comparison.** Both sides are hashed to a fixed length and compared with
  :func:`hmac.compare_digest`, so neither the values nor their lengths leak through timing.
* **Server-issued, expiring nonces.** A Digest nonce carries its issue time and an HMAC of it
  under a key that never leaves this process, so nonces need no storage until they are used;
  an expired one that is otherwise valid earns ``stale=true`` (the client retries with the
  fresh nonce without asking the user), and each nonce count is accepted once.

The signing key may be given by :mod:`rps_service.ztp.nonces` (shared by every instance on
one database, rotated: a nonce signed with any accepted key verifies), so a phone's requests
may reach any instance.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

REALM = "rps-ztp"
WRONG_CREDENTIALS = "wrong username or password"
_NONCE_BYTES = 32  # 8 issue time + 8 random + 16 HMAC
_FUTURE_SKEW = 5.0  # seconds a nonce may claim to come from the future (clock steps)
_DIGEST_FIELDS = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")
NonceStatus = Literal["fresh", "stale", "invalid"]
MALFORMED = "malformed Authorization header"
REPLAYED = "nonce count replayed"
# RFC 7235 auth-param: token BWS "=" BWS ( token / quoted-string ), then "," or the end.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_AUTH_PARAM = re.compile(
    rf'[ \t]*({_TCHARS})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|({_TCHARS}))?[ \t]*(?:,|\Z)',
    re.DOTALL,
)
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class Secret:
    """The username and password a device must present."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Secret(username={self.username!r}, password='***')"


@dataclass(frozen=True)
class AuthResult:
    """The outcome of checking an ``Authorization`` header."""

    ok: bool
    #: Why it failed, for the WARNING line; empty when nothing was offered (the normal first
    #: request of a phone) or the nonce was merely stale: neither is an attack.
    reason: str = ""
    stale: bool = False
    #: A Digest login that passed: its nonce and nonce count (checked across instances).
    nonce: str = ""
    count: int = 0


class NonceBook:
    """Issues Digest nonces and checks them: signature, age, and nonce counts already seen."""

    def __init__(self, lifetime: float, key: bytes | None = None,
                 max_tracked: int = 100_000) -> None:
        self.lifetime = lifetime
        self._key = key or secrets.token_bytes(32)
        self._accepted = [self._key]  # keys a nonce may be signed with
        self._max_tracked = max_tracked
        self._counts: dict[str, tuple[float, int]] = {}  # nonce -> (issued, highest nc)
        self._next_prune = 1024

    def use_keys(self, signing: bytes, accepted: list[bytes]) -> None:
        """Sign new nonces with ``signing``; accept nonces signed with any of ``accepted``."""
        self._key = signing
        self._accepted = [signing, *(k for k in accepted if k != signing)]

    def issue(self, now: float) -> str:
        """A fresh nonce stamped with ``now``."""
        body = struct.pack(">Q", int(now)) + secrets.token_bytes(8)
        raw = body + self._sign(body)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def status(self, nonce: str, now: float) -> NonceStatus:
        """``fresh``, ``stale`` (ours but expired) or ``invalid`` (not issued here)."""
        issued = self._issued(nonce)
        if issued is None or issued > now + _FUTURE_SKEW:
            return "invalid"
        return "stale" if now - issued > self.lifetime else "fresh"

    def use(self, nonce: str, count: int, now: float) -> bool:
        """Accept nonce count ``count`` once: it must exceed every count seen with ``nonce``."""
        issued = self._issued(nonce)
        if issued is None:
            return False
        seen = self._counts.get(nonce)
        if seen is not None and count <= seen[1]:
            return False
        self._counts[nonce] = (issued, count)
        if len(self._counts) >= self._next_prune:
            self._prune(now)
        return True

    def _sign(self, body: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(key or self._key, body, hashlib.sha256).digest()[:16]

    def _issued(self, nonce: str) -> float | None:
        if len(nonce) != 43:  # 32 bytes, unpadded base64url
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=")
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        body, signature = raw[:16], raw[16:]
        if not any(hmac.compare_digest(signature, self._sign(body, key))
                   for key in self._accepted):
            return None
        return float(struct.unpack(">Q", body[:8])[0])

    def _prune(self, now: float) -> None:
        # Expired nonces can only ever be stale, so their counts need not be kept.
        cutoff = now - self.lifetime
        self._counts = {n: v for n, v in self._counts.items() if v[0] >= cutoff}
        while len(self._counts) > self._max_tracked:  # a flood of valid logins: oldest first
            del self._counts[next(iter(self._counts))]
        self._next_prune = max(1024, 2 * len(self._counts))


class Authenticator:
    """Checks Basic and Digest credentials against one device's :class:`Secret`."""

    def __init__(self, nonces: NonceBook, realm: str = REALM) -> None:
        self.nonces = nonces
        self.realm = realm
        # Checked when the device is unknown, so that case costs the same work.
        self._decoy = Secret(f"ztp-{secrets.token_hex(6)}", secrets.token_urlsafe(18))

    def challenges(self, now: float, stale: bool = False) -> list[str]:
        """The ``WWW-Authenticate`` values of a 401: Digest first (preferred), then Basic."""
        digest = (f'Digest realm="{self.realm}", qop="auth", algorithm=MD5, '
                  f'nonce="{self.nonces.issue(now)}"')
        if stale:
            digest += ", stale=true"
        return [digest, f'Basic realm="{self.realm}", charset="UTF-8"']

    def verify(self, header: str | None, method: str, uri: str, expected: Secret | None,
               now: float) -> AuthResult:
        """Check an ``Authorization`` header for a request of ``method`` on ``uri``."""
        if not header or not header.strip():
            return AuthResult(False)
        scheme, _, token = header.strip().partition(" ")
        secret = expected or self._decoy
        try:
            if scheme.lower() == "basic":
                result = self._basic(token.strip(), secret)
            elif scheme.lower() == "digest":
                result = self._digest(token, method, uri, secret, now)
            else:
                return AuthResult(False, f"unsupported authorization scheme {scheme[:20]!r}")
        except (ValueError, LookupError, UnicodeError):
            # Anything from the Internet that trips a parser is refused like a wrong
            # password (401), never answered with a 500.
            return AuthResult(False, MALFORMED)
        if result.ok and expected is None:  # cannot happen unless the decoy was guessed
            return AuthResult(False, WRONG_CREDENTIALS)
        return result

    def _basic(self, token: str, secret: Secret) -> AuthResult:
        try:
            decoded = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return AuthResult(False, "malformed Basic credentials")
        user, sep, password = decoded.partition(b":")
        if not sep:
            return AuthResult(False, "malformed Basic credentials")
        # Both comparisons always run: which of the two was wrong must not show in the time.
        user_ok = _same(user, _utf8(secret.username))
        password_ok = _same(password, _utf8(secret.password))
        if user_ok & password_ok:
            return AuthResult(True)
        return AuthResult(False, WRONG_CREDENTIALS)

    def _digest(self, token: str, method: str, uri: str, secret: Secret,
                now: float) -> AuthResult:
        fields = _digest_fields(token)
        if fields is None:
            return AuthResult(False, "malformed Digest credentials")
        username = fields["username"]
        problem = self._digest_problem(fields, uri)
        if problem:
            return AuthResult(False, problem)
        status = self.nonces.status(fields["nonce"], now)
        if status == "invalid":
            return AuthResult(False, "unknown or forged nonce")
        expected = _digest_response(secret, self.realm, method, fields)
        user_ok = _same(_utf8(username), _utf8(secret.username))
        response_ok = _same(_utf8(fields["response"].lower()), _utf8(expected))
        if not user_ok & response_ok:
            return AuthResult(False, WRONG_CREDENTIALS)
        if status == "stale":
            return AuthResult(False, stale=True)
        count = int(fields["nc"], 16)
        if not self.nonces.use(fields["nonce"], count, now):
            return AuthResult(False, REPLAYED)
        return AuthResult(True, nonce=fields["nonce"], count=count)

    def _digest_problem(self, fields: dict[str, str], uri: str) -> str:
        if fields["realm"] != self.realm:
            return "wrong realm"
        if fields["qop"].lower() != "auth":
            return "unsupported qop (only auth)"
        if fields.get("algorithm", "MD5").upper() != "MD5":
            return "unsupported algorithm (only MD5)"
        if len(fields["nc"]) != 8 or not _is_hex(fields["nc"]):
            return "malformed nonce count"
        if _path(fields["uri"]) != _path(uri):
            return "uri does not match the request"
        return ""


def auth_params(text: str) -> dict[str, str] | None:
    """``a=1, b="x, \\"y\\""`` → ``{"a": "1", "b": 'x, "y"'}``; None when malformed.

    Names are lower-cased; an empty value (``realm=``) is kept as ``""``; a name given
    twice is malformed (which one counts would be a guess). Never raises.
    """
    fields: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        if text[pos] in ", \t":  # empty list elements are allowed
            pos += 1
            continue
        match = _AUTH_PARAM.match(text, pos)
        if match is None:
            return None
        name, quoted, bare = match.groups()
        name = name.lower()
        if name in fields:
            return None
        fields[name] = _ESCAPED.sub(r"\1", quoted) if quoted is not None else (bare or "")
        pos = match.end()
    return fields


def _digest_fields(token: str) -> dict[str, str] | None:
    fields = auth_params(token)
    if fields is None or not all(fields.get(name) for name in _DIGEST_FIELDS):
        return None
    return fields


def _path(uri: str) -> str:
    try:
        return urlsplit(uri).path
    except ValueError:  # "http://[" and the like: a path that matches nothing
        return "\x00invalid"


def _digest_response(secret: Secret, realm: str, method: str, fields: dict[str, str]) -> str:
    ha1 = _md5(f"{secret.username}:{realm}:{secret.password}")
    ha2 = _md5(f"{method}:{fields['uri']}")
    return _md5(":".join((ha1, fields["nonce"], fields["nc"], fields["cnonce"],
                          fields["qop"], ha2)))


def _md5(text: str) -> str:
    # RFC 7616's MD5 is what phones implement; it is the protocol, not our choice of hash.
    return hashlib.md5(_utf8(text), usedforsecurity=False).hexdigest()


def _utf8(text: str) -> bytes:
    # Header bytes that are not UTF-8 reach us as lone surrogates: encode them, not raise.
    return text.encode("utf-8", "surrogatepass")


def _same(given: bytes, expected: bytes) -> bool:
    # Hash first: compare_digest leaks the lengths of its arguments, hashes have one length.
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)
