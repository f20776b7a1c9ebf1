"""A device's access details: what the daemon generates for a phone before a vendor hears of it.

Vendors that carry credentials to the phone (SRAPS, YMCS, ...) get an HTTP username and a
random password per device; vendors that carry only a URL get a URL key, a path segment of
the device's provisioning URL that ``/ztprov/`` treats like a password. A URL key is a
*selector* (found with an index) followed by a *secret* (compared in constant time), so
looking a key up never leaks through timing how much of it was right.
"""

from __future__ import annotations

import enum
import re
import secrets

from rps_service.models import AccessDetails

SELECTOR_LENGTH = 12  # hex digits: 48 bits, only to find the row
_SECRET_BYTES = 18  # 144 bits (a URL key needs at least 128), 24 URL-safe characters
URL_KEY = re.compile(r"[0-9a-f]{12}[A-Za-z0-9_-]{24}")


class AccessMode(enum.Enum):
    """What a vendor carries to the phone, and so what the daemon generates per device."""

    CREDENTIALS = "credentials"  # the URL plus a per-device username and password
    SERVER = "server"  # the URL plus credentials shared by the server's devices (Poly)
    URL_KEY = "url_key"  # only a URL: it holds a per-device key
    NONE = "none"  # nothing per device (the vendor's portal points phones at the PBX)


def new_credentials() -> AccessDetails:
    """A fresh HTTP username and a random password (24 URL-safe characters)."""
    return AccessDetails(f"ztp-{secrets.token_hex(6)}", secrets.token_urlsafe(_SECRET_BYTES))


def new_url_key() -> str:
    """A fresh URL key: a 12-hex selector and a 24-character secret."""
    return secrets.token_hex(SELECTOR_LENGTH // 2) + secrets.token_urlsafe(_SECRET_BYTES)


def new_access(mode: AccessMode) -> AccessDetails:
    """What to generate for a device whose provider works in ``mode``."""
    if mode is AccessMode.URL_KEY:
        return AccessDetails(url_key=new_url_key())
    if mode is AccessMode.NONE:
        return AccessDetails()
    return new_credentials()


def url_key_selector(key: str) -> str | None:
    """The selector of a well-formed URL key, else None."""
    return key[:SELECTOR_LENGTH] if URL_KEY.fullmatch(key) else None


def mask_url_keys(text: str) -> str:
    """``text`` with every URL key cut to its selector (``0123456789ab***``): the part that
    rps.log, error texts and the API may show (the rest is the secret)."""
    return URL_KEY.sub(lambda m: m.group(0)[:SELECTOR_LENGTH] + "***", text)


def masked_url(url: str, key: str) -> str:
    """``url`` with its URL key cut to the selector (``0123456789ab***``): how the API lists
    it and how ``rps_devices.url`` stores it (the key itself is stored sealed)."""
    return url.replace(key, key[:SELECTOR_LENGTH] + "***") if key in url else url


def unmasked_url(url: str, key: str) -> str:
    """The URL the vendor was given: :func:`masked_url` undone with the device's key."""
    return url.replace(key[:SELECTOR_LENGTH] + "***", key)


def needs_generation(mode: AccessMode, stored: AccessDetails | None) -> bool:
    """True when the device lacks the details its provider's mode needs."""
    if mode is AccessMode.NONE:
        return False
    if stored is None:
        return True
    if mode is AccessMode.URL_KEY:
        return not stored.url_key
    return not (stored.username and stored.password)
