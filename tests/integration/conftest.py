"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.daemons import Daemons


@pytest.fixture
async def daemons(tmp_path: Path, mysql_database: str) -> AsyncIterator[Daemons]:
    """Daemons with one vendor enabled against the sandbox, on a fresh MariaDB database."""
    started = Daemons(tmp_path, mysql_database)
    yield started
    await started.close()
