"""Failed exchanges as classified errors: the HTTP-level rules every vendor shares.

A vendor module first applies its own rules (error codes in the body, "owned by another
account" wordings) and falls back to :func:`http_error`: 429 and a 503 with Retry-After
throttle (the account pauses), other 5xx are transient, 401 is a bad login, other 4xx are
permanent. Texts come from the body (JSON ``message``, ``error``, ``detail``, ``msg``...),
with every secret masked and cut to one short line.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

from rps_service.providers.protocol import Failure, ProviderError

TEXT_LIMIT = 200
_TEXT_FIELDS = ("message", "error_description", "error", "detail", "msg", "errorInfo")


def transport_error(exc: httpx.RequestError, timeout: float) -> ProviderError:
    """No answer at all: transient."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"Timeout after {timeout:g}s", Failure.TRANSIENT)
    return ProviderError(f"Connection failed: {type(exc).__name__}", Failure.TRANSIENT)


def http_error(response: httpx.Response, *, text: str, bad_login_hint: str,
               now: float | None = None) -> ProviderError:
    """The shared classification of a non-2xx answer; ``text`` is the vendor's message."""
    status = response.status_code
    message = f"{status}: {text}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now or time.time())
    if status == 429 or (status == 503 and retry_after is not None):
        return ProviderError(message, Failure.THROTTLED, status=status, retry_after=retry_after)
    if status >= 500:
        return ProviderError(message, Failure.TRANSIENT, status=status)
    if status == 401:
        return ProviderError(message, Failure.BAD_LOGIN, status=status, hint=bad_login_hint)
    return ProviderError(message, Failure.PERMANENT, status=status)


def owned_by_other(service: str, detail: str, status: int | None = None,
                   hint: str = "release it in the account that holds it") -> ProviderError:
    """The one wording every vendor's "another account holds this MAC" answer gets."""
    return ProviderError(f"The MAC belongs to another {service} account ({detail})",
                         Failure.OWNED, status=status, hint=hint)


def error_text(response: httpx.Response, secrets: Iterable[str] = ()) -> str:
    """The vendor's message: a JSON text field, else the body; secrets masked, one line."""
    text = ""
    try:
        data = response.json()
    except ValueError:  # not JSON (or not decodable): use the body as it is
        data = None
    if isinstance(data, dict):
        for name in _TEXT_FIELDS:
            value = data.get(name)
            if value:
                text = value if isinstance(value, str) else json.dumps(value)
                break
    return clean_text(text or response.text, secrets) or response.reason_phrase or "no reason"


def clean_text(text: str, secrets: Iterable[str] = ()) -> str:
    """One line of at most TEXT_LIMIT characters with every secret masked."""
    # Mask before cutting, so a truncated secret cannot survive half-visible.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 1] + "…"
    return text


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from ``now`` (a number or an HTTP date), or None."""
    if not value:
        return None
    seconds: float | None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value.strip(), now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp() - now


def http_date_offset(response: httpx.Response, now: float) -> float | None:
    """Seconds the vendor's clock (its ``Date`` header) is ahead of ``now``, or None."""
    value = response.headers.get("Date")
    if not value:
        return None
    return _seconds_until(value.strip(), now)
