"""Fixtures shared by the test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestra.store.embedded import EmbeddedStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    """An embedded store in a fresh temporary file, closed after the test."""
    opened = await EmbeddedStore.open(tmp_path / "state.db")
    yield opened
    await opened.close()
