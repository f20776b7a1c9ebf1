"""The journal's clock: naive UTC, as every table stores its times."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Naive UTC now: the journal's clock."""
    return datetime.now(UTC).replace(tzinfo=None)
