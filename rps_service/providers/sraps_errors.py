"""SRAPS's answers as classified errors: the one place that decides what is retried.

Each failed exchange becomes a :class:`ProviderError` with the vendor's message (from the
JSON ``message``, then ``error``, then ``detail``, else the body), a hint for the operator
where one helps, and transient (connection errors, timeouts, 5xx, 429 with Retry-After)
or permanent (the rest) — SPEC §6.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from datetime import UTC
from email.utils import parsedate_to_datetime

import httpx

from rps_service.providers.base import Failure, ProviderError

TEXT_LIMIT = 200

AUTH_HINT = "check the access key id and secret"
NO_ROLE_HINT = (
    "SRAPS refuses to register devices with this key: the key has no Role; "
    "choose a Role for the key in SRAPS (API keys)"
)
TAKEN_HINT = "release it in the account that holds it or ask Snom support to move it"


def to_provider_error(
    outcome: httpx.Response | httpx.RequestError,
    *,
    timeout: float,
    now: float | None = None,
    secrets: Iterable[str] = (),
) -> ProviderError:
    """Classify a failed exchange: the one place that decides transient vs permanent.

    ``now`` (Unix time, server clock) resolves an HTTP-date Retry-After; ``secrets`` are
    masked wherever the server's answer echoes them.
    """
    if isinstance(outcome, httpx.TimeoutException):
        return ProviderError(f"Timeout after {timeout:g}s", Failure.TRANSIENT)
    if isinstance(outcome, httpx.RequestError):
        return ProviderError(f"Connection failed: {type(outcome).__name__}", Failure.TRANSIENT)
    status = outcome.status_code
    text = _error_text(outcome, secrets)
    message = f"{status}: {text}"
    if status == 429:
        retry_after = _retry_after(outcome.headers.get("Retry-After"), now or time.time())
        return ProviderError(message, Failure.TRANSIENT, status=status, retry_after=retry_after)
    if status >= 500:
        return ProviderError(message, Failure.TRANSIENT, status=status)
    if status == 401:
        return ProviderError(message, Failure.PERMANENT, status=status, hint=AUTH_HINT)
    if status == 403:
        return _forbidden(outcome, text)
    return ProviderError(message, Failure.PERMANENT, status=status)


def _forbidden(response: httpx.Response, text: str) -> ProviderError:
    body = response.text.lower()
    if "taken_mac_or_forbidden" in body or "lacks permission" in body:
        return ProviderError(
            f"403: The MAC belongs to another SRAPS account ({text})",
            Failure.PERMANENT,
            status=403,
            hint=TAKEN_HINT,
        )
    return ProviderError(f"403: {text}", Failure.PERMANENT, status=403, hint=NO_ROLE_HINT)


def _error_text(response: httpx.Response, secrets: Iterable[str]) -> str:
    text = ""
    try:
        data = response.json()
    except ValueError:  # not JSON (or not decodable): use the body as it is
        data = None
    if isinstance(data, dict):
        for field in ("message", "error", "detail"):
            value = data.get(field)
            if value:
                text = value if isinstance(value, str) else json.dumps(value)
                break
    text = text or response.text
    # Mask before cutting, so a truncated secret cannot survive half-visible.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 1] + "…"
    return text or response.reason_phrase or "no reason given"


def _retry_after(value: str | None, now: float) -> float | None:
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


def check_failure(err: ProviderError) -> str:
    """What the Test button says about a failed check."""
    if err.status == 401:
        return "SRAPS rejected the key: wrong access key id or secret"
    if err.transient:
        return f"SRAPS unreachable: {err.text}"
    if err.status is None:
        return err.text
    return f"SRAPS answered {err.text}"


def no_role_message(key_id: str) -> str:
    """What the Test button says about a key without a Role."""
    return (
        f"The key {key_id} has no Role: SRAPS refuses to register devices with it. "
        "Choose a Role for the key in SRAPS."
    )
