"""Fixtures the client's tests share: the in-memory fake of the service, and the waits a
client was told to make (its injected sleep records them instead of sleeping)."""

from __future__ import annotations

import pytest
from fake_service import FakeService


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def delays() -> list[float]:
    return []
