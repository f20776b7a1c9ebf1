"""Secrets at rest: each secret the database holds is sealed with AES-GCM (docs/secrets.md).

A sealed value reads ``rps1:<key id>:<base64url(nonce | ciphertext | tag)>``:

- ``rps1`` names the format, so a later one can be told apart and migrated;
- the key id (8 hex digits derived from the key, never the key itself) names the key that
  sealed it, so a wrong key file, a rotation half done or a value from another installation
  is recognised as such, not taken for a damaged value;
- the associated data binds the value to its table, column and row (``rps_devices``,
  ``http_password``, provider and MAC): copied into another row or column, it does not open.

One 32-byte key (the secret key file) yields three independent ones through HKDF: the AEAD
key, the HMAC key of the look-up hashes (a URL key is found by its keyed hash, never by
opening every row) and the key id. Nothing here writes cipher code of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = "rps1"
KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_SEALED = re.compile(rf"{FORMAT}:([0-9a-f]{{8}}):([A-Za-z0-9_-]{{38,}})")
#: What every sealed value starts with (the SQL probes look for it).
PREFIX = f"{FORMAT}:"


class SecretError(Exception):
    """A stored secret cannot be read: sealed with another key, for another place, altered,
    or found in clear where only a sealed value belongs."""


class ForeignKeyError(SecretError):
    """Sealed with another key than this daemon's (a wrong key file, a rotation)."""

    def __init__(self, message: str, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


@dataclass(frozen=True)
class Cell:
    """Where a secret lives: table, column (``params.<key>`` inside a JSON column) and the
    row's key; the associated data of the value sealed there."""

    table: str
    column: str
    row: tuple[str | int, ...]

    def __str__(self) -> str:
        return f"{self.table}.{self.column} of {'/'.join(map(str, self.row))}"

    def associated_data(self) -> bytes:
        parts = (FORMAT, self.table, self.column, *map(str, self.row))
        return "\x00".join(parts).encode()


def sealed_key_id(value: str) -> str | None:
    """The key id of a sealed value, or None for a value in clear."""
    match = _SEALED.fullmatch(value)
    return match.group(1) if match else None


def new_key() -> bytes:
    """A fresh random key (the content of a new key file)."""
    return os.urandom(KEY_BYTES)


def _derive(key: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                info=b"rps-service " + purpose).derive(key)


class SecretBox:
    """Seals and opens the secrets of one key; computes look-up hashes with it."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a key has {KEY_BYTES} bytes, not {len(key)}")
        self.key_id = _derive(key, b"key id v1", 4).hex()
        self._aead = AESGCM(_derive(key, b"seal v1", KEY_BYTES))
        self._lookup_key = _derive(key, b"lookup v1", KEY_BYTES)
        #: What the values this key sealed start with.
        self.tag = f"{PREFIX}{self.key_id}:"

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    def seal(self, value: str, cell: Cell) -> str:
        """``value`` sealed for ``cell``: a fresh random nonce each time."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), cell.associated_data())
        return self.tag + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, value: str, cell: Cell) -> str:
        """The clear text of a value sealed for ``cell`` with this key.

        Raises :class:`ForeignKeyError` for another key's value, :class:`SecretError` for a
        value that is not sealed, or was sealed for another place, or was altered.
        """
        match = _SEALED.fullmatch(value)
        if match is None:
            raise SecretError(f"{cell} is not sealed")
        key_id, text = match.groups()
        if key_id != self.key_id:
            raise ForeignKeyError(f"{cell} is sealed with key {key_id}, not with this key "
                                  f"({self.key_id})", key_id)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            if len(raw) < _NONCE_BYTES + _TAG_BYTES:
                raise ValueError("too short")
            clear = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:],
                                       cell.associated_data())
            return clear.decode()
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise SecretError(f"{cell} does not open: it was sealed for another row or "
                              "column, or altered") from exc

    def owns(self, value: str) -> bool:
        """True when ``value`` was sealed with this key (it may still fail to open)."""
        return value.startswith(self.tag)

    def lookup(self, purpose: str, value: str) -> str:
        """The keyed hash a secret is found by (64 hex digits): the index holds this, never
        the secret, and only the key's holder can compute it for a guess."""
        message = f"{purpose}\x00{value}".encode()
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()
