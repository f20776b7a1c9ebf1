"""Strict Hawk 1.0 (sha256) verification of sandbox requests, done by mohawk's ``Receiver``.

Strictness matches the public facts: a request with a body must carry a payload ``hash``,
nonces are single-use (per key id, nonce and ts), and timestamps must be within ±60 s of the
server clock (the world's ``clock_offset`` shifts that clock). Failures carry the ``error`` text
that goes into ``WWW-Authenticate: Hawk error="..."``; the names follow ``@hapi/hawk``.
"""

from __future__ import annotations

from mohawk import Receiver
from mohawk.exc import (
    AlreadyProcessed,
    CredentialsLookupError,
    HawkFail,
    MacMismatch,
    MisComputedContentHash,
    MissingAuthorization,
    TokenExpired,
)
from mohawk.util import calculate_ts_mac, parse_authorization_header

from ..mohawk_quiet import silence_mohawk_debug
from .state import ApiKey, SrapsWorld

silence_mohawk_debug()

TIMESTAMP_SKEW_SECONDS = 60
_REQUIRED_ATTRIBUTES = ("id", "ts", "nonce", "mac")


class HawkError(Exception):
    """A refused request: ``error`` for the client, ``www_authenticate`` header value."""

    def __init__(self, error: str, www_authenticate: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.www_authenticate = www_authenticate or f'Hawk error="{error}"'


def verify(
    state: SrapsWorld,
    *,
    authorization: str | None,
    url: str,
    method: str,
    body: bytes,
    content_type: str,
) -> ApiKey:
    """Check one request's ``Authorization`` header; return its key or raise HawkError.

    ``url`` must be rebuilt from the Host header and the path+query exactly as sent.
    """
    if not authorization:
        raise HawkError("Missing authentication")
    attributes = _parse(authorization)
    try:
        Receiver(
            state.credentials,
            authorization,
            url,
            method,
            content=body,
            content_type=content_type,
            seen_nonce=state.seen_nonce,
            localtime_offset_in_seconds=state.clock_offset,
            accept_untrusted_content=False,
            timestamp_skew_in_seconds=TIMESTAMP_SKEW_SECONDS,
        )
    except TokenExpired as exc:
        raise _stale(state, attributes["id"], int(exc.localtime_in_seconds)) from None
    except MisComputedContentHash:
        missing = "hash" not in attributes
        raise HawkError(
            "Missing required payload hash" if missing else "Bad payload hash"
        ) from None
    except (MissingAuthorization, CredentialsLookupError):
        raise HawkError("Unknown credentials") from None
    except MacMismatch:
        raise HawkError("Bad mac") from None
    except AlreadyProcessed:
        raise HawkError("Invalid nonce") from None
    except (HawkFail, LookupError, ValueError, TypeError):
        raise HawkError("Bad header format") from None
    return state.keys[attributes["id"]]


def _parse(authorization: str) -> dict[str, str]:
    # mohawk's own parser, run first so failures get distinct errors and a body without a
    # hash can be told apart from a wrong hash.
    try:
        attributes: dict[str, str] = parse_authorization_header(authorization)
    except (HawkFail, ValueError, TypeError):
        raise HawkError("Bad header format") from None
    if any(not attributes.get(name) for name in _REQUIRED_ATTRIBUTES):
        raise HawkError("Missing attributes")
    if not attributes["ts"].isdigit():
        raise HawkError("Invalid timestamp")
    return attributes


def _stale(state: SrapsWorld, key_id: str, now: int) -> HawkError:
    # mohawk's TokenExpired.www_authenticate carries a verbose error text; rebuild the header
    # with the standard "Stale timestamp" and mohawk's tsm (HMAC of "hawk.1.ts\n<ts>\n").
    if not state.stale_challenge:  # the server's time is only in the Date header
        return HawkError("Stale timestamp")
    tsm = calculate_ts_mac(now, state.credentials(key_id))
    tsm_text = tsm.decode("ascii") if isinstance(tsm, bytes) else str(tsm)
    header = f'Hawk ts="{now}", tsm="{tsm_text}", error="Stale timestamp"'
    return HawkError("Stale timestamp", header)
