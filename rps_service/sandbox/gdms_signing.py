"""GDMS's login and request-signing rules, as the emulator checks them.

Written from the published recipe, apart from the provider's signing code, so that a
mistake there is refused here rather than repeated:

* the token call's ``password`` is the hex SHA-256 of the hex MD5 of the login password;
* every API call's ``signature`` is the hex SHA-256 of ``&`` and ``k=v&`` for each query
  parameter (``signature`` left out) plus ``client_id`` and ``client_secret``, sorted by
  name, values as sent; a call with a body appends the body's hex SHA-256 and ``&``.
"""

from __future__ import annotations

import hashlib


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def token_password(password: str) -> str:
    """The ``password`` the token call must carry: hex SHA-256 of hex MD5 of the login's."""
    md5 = hashlib.md5(password.encode(), usedforsecurity=False).hexdigest()
    return _sha256_hex(md5.encode())


def expected_signature(query: list[tuple[str, str]], client_id: str, client_secret: str,
                       body: bytes) -> str:
    """The ``signature`` a call must carry: hex SHA-256 of ``&k=v&...&`` over the query
    (``signature`` left out) with ``client_id`` and ``client_secret``, sorted by name, values
    as sent; a body adds its hex SHA-256 and ``&``."""
    pairs = sorted([*query, ("client_id", client_id), ("client_secret", client_secret)])
    text = "&" + "".join(f"{name}={value}&" for name, value in pairs)
    if body:
        text += _sha256_hex(body) + "&"
    return _sha256_hex(text.encode())
