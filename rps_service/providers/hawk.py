"""Hawk 1.0 request signing (HMAC-SHA256) on top of :mod:`mohawk`.

A thin wrapper so the SRAPS-family providers and their tests share one signing path:
``sign`` builds the ``Authorization`` header for one request, ``server_time`` reads the
server's clock from a ``WWW-Authenticate`` challenge after checking its ``tsm`` with our
key, and :class:`HawkAuth` is the signing step of a request (``httpx.Auth``) that corrects
our clock after a 401 that shows it is off.

How far off a Hawk timestamp SRAPS (and GRAPE) accept is not published: the Hawk reference
servers allow ±60 s, and that the service does too is an inference. A ``ts``/``tsm``
challenge that verifies with our key needs no such inference (the service says its time);
a 401 put down to our clock by its ``Date`` header alone does, and says so once per process
(:data:`GUESS_SKEW`, :func:`~rps_service.guesses.rely_on_guess`).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx
from mohawk import Sender
from mohawk.base import EmptyValue
from mohawk.exc import HawkFail
from mohawk.util import calculate_payload_hash, calculate_ts_mac, parse_authorization_header

from rps_service.guesses import rely_on_guess
from rps_service.logs import get_logger
from rps_service.providers.errors import http_date_offset

_log = get_logger()

ALGORITHM = "sha256"


# The attribute order @hapi/hawk emits; servers accept any order, but
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


#: A Date header this far from our clock explains a 401 (Hawk servers allow about ±60 s;
#: below this the one-second resolution of Date and network time make it noise).
SKEW_THRESHOLD = 10.0
#: Where a 401 that remained after a clock correction says how far off the clock was.
CLOCK_SKEW = "rps.clock_skew"
#: What a correction from the ``Date`` header relies on (``{service}``: SRAPS, GRAPE).
GUESS_SKEW = ("{service} refuses a Hawk timestamp about 60 s off, as the Hawk reference "
              "servers do: a 401 whose Date is 10 s or more off our clock is put down to our "
              "clock")


class Skew(NamedTuple):
    """How far the vendor's clock is ahead of ours (seconds), and whether the vendor said so
    itself (a ``ts``/``tsm`` challenge made with our key) rather than the ``Date`` header."""

    seconds: float
    authenticated: bool


class VendorClock:
    """Our idea of a vendor's clock: the local clock plus an offset learnt from its 401s."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.offset = 0.0

    def now(self) -> float:
        return self.clock() + self.offset

    def learn(self, key: HawkKey, response: httpx.Response) -> Skew | None:
        """After a 401: move the offset to the vendor's clock if the answer tells it; the
        skew found, or None when the clock is not the cause.

        A Hawk ``ts``/``tsm`` challenge counts only when its ``tsm`` was made with our key
        (anyone on the path could send a bare ``ts``); otherwise the ``Date`` header does,
        once it is further off than :data:`SKEW_THRESHOLD`.
        """
        server_ts = server_time(key, response.headers.get("WWW-Authenticate", ""))
        if server_ts is not None:
            skew = server_ts - self.now()
            self.offset = server_ts - self.clock()
            return Skew(skew, authenticated=True)
        dated = http_date_offset(response, self.now())
        if dated is None or abs(dated) < SKEW_THRESHOLD:
            return None
        self.offset += dated
        return Skew(dated, authenticated=False)


class HawkAuth(httpx.Auth):
    """Signs a request with Hawk; after a 401 caused by our clock, corrects it and retries
    once (never loops: a second 401 is a real refusal, marked with the skew found)."""

    requires_request_body = True

    def __init__(self, key: HawkKey, clock: VendorClock, *, label: str, service: str,
                 content_type: str = "application/json") -> None:
        self.key = key
        self.clock = clock
        self.label = label
        self.service = service  # the vendor's service as the guess names it (SRAPS, GRAPE)
        self.content_type = content_type

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self._sign(request)
        response = yield request
        if response.status_code != 401:
            return
        skew = self.clock.learn(self.key, response)
        if skew is None:
            return
        if not skew.authenticated:
            rely_on_guess(self.label, GUESS_SKEW.format(service=self.service))
        _log.warning("Clock adjusted", component=self.label, offset=round(self.clock.offset),
                     skew=f"clock skew of {round(skew.seconds)} s")
        self._sign(request)
        retried = yield request
        if retried.status_code == 401:
            retried.extensions[CLOCK_SKEW] = round(skew.seconds)

    def _sign(self, request: httpx.Request) -> None:
        content = request.content or None
        # Sign the URL as it will be sent, so path and query match byte for byte.
        request.headers["Authorization"] = sign(
            self.key, request.method, str(request.url), timestamp=int(self.clock.now()),
            content=content, content_type=self.content_type if content else "",
        )
