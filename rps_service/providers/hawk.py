"""Hawk 1.0 request signing (HMAC-SHA256) on top of :mod:`mohawk`.

A thin wrapper so the Snom provider and its tests share one signing path: ``sign`` builds
the ``Authorization`` header for one request, ``server_time`` reads the server's clock from
a ``WWW-Authenticate`` challenge after checking its ``tsm`` with our key.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field

import mohawk.base
import mohawk.util
from mohawk import Sender
from mohawk.base import EmptyValue
from mohawk.exc import HawkFail
from mohawk.util import calculate_payload_hash, calculate_ts_mac, parse_authorization_header

ALGORITHM = "sha256"


class _Repr:
    pformat = staticmethod(repr)


def silence_mohawk_debug() -> None:
    """Keep mohawk's DEBUG output out of every log, and stop paying for it.

    mohawk logs the payload it hashes at DEBUG; our payloads carry device passwords, so
    that output must never reach rps.log, even when the daemon runs at DEBUG. mohawk also
    builds those messages with ``pprint.pformat`` before its logger drops them: two thirds
    of the CPU of signing a request (60 of 90 µs) and more of verifying one (the sandbox).
    The messages are never emitted, so a plain ``repr`` does for them.
    """
    logging.getLogger("mohawk").setLevel(logging.INFO)
    for module in (mohawk.base, mohawk.util):
        if hasattr(module, "pprint"):
            setattr(module, "pprint", _Repr)  # noqa: B010 - a module attribute, not ours


silence_mohawk_debug()

# The attribute order @hapi/hawk emits (and SPEC §6 shows); servers accept any order, but
# operators comparing captures with the reference client should see the familiar shape.
_HEADER_ORDER = ("id", "ts", "nonce", "hash", "ext", "mac")


@dataclass(frozen=True)
class HawkKey:
    """Hawk credentials: the SRAPS access key id and its secret (never in repr)."""

    id: str
    secret: str = field(repr=False)

    def _mohawk(self) -> dict[str, str]:
        return {"id": self.id, "key": self.secret, "algorithm": ALGORITHM}


def sign(
    key: HawkKey,
    method: str,
    url: str,
    *,
    timestamp: int,
    content: bytes | None = None,
    content_type: str = "",
    nonce: str | None = None,
    ext: str | None = None,
) -> str:
    """The ``Authorization`` header value for one request.

    ``url`` must be the absolute URL exactly as sent (path and query). A payload hash is
    included whenever ``content`` is given, and only then. ``nonce`` and ``ext`` exist for
    the reference vectors; production calls leave them to mohawk (random nonce, no ext).
    """
    sender = Sender(
        key._mohawk(),
        url,
        method,
        content=EmptyValue if content is None else content,
        content_type=EmptyValue if content is None else content_type,
        always_hash_content=False,
        nonce=nonce,
        ext=ext,
        _timestamp=timestamp,
    )
    return _reorder(str(sender.request_header))


def _reorder(header: str) -> str:
    attributes = parse_authorization_header(header)
    parts = [f'{name}="{attributes[name]}"' for name in _HEADER_ORDER if name in attributes]
    return "Hawk " + ", ".join(parts)


def payload_hash(content: bytes, content_type: str) -> str:
    """The Hawk payload hash of a body (``hash=`` in the header)."""
    return bytes(calculate_payload_hash(content, ALGORITHM, content_type)).decode("ascii")


def server_time(key: HawkKey, www_authenticate: str) -> int | None:
    """The server's clock from a ``Hawk ts="…", tsm="…"`` challenge, or None.

    None when the header is not such a challenge or its ``tsm`` was not made with our key:
    an unauthenticated timestamp must not move our clock (anyone on the path could).
    """
    try:
        attributes = parse_authorization_header(www_authenticate)
    except (HawkFail, ValueError):
        return None
    ts, tsm = attributes.get("ts", ""), attributes.get("tsm", "")
    if not ts.isdigit() or not tsm:
        return None
    expected = bytes(calculate_ts_mac(ts, key._mohawk())).decode("ascii")
    if not hmac.compare_digest(expected, tsm):
        return None
    return int(ts)
