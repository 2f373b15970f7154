"""Fixtures shared by every layer of tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory.store import MemoryStore
from application.ports import Store
from tests.fakes import FakeClock, SequentialIds

# Hypothesis keeps its example database out of the work tree.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", "/tmp/experiments-hypothesis")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ids() -> SequentialIds:
    return SequentialIds()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


async def open_store(kind: str, tmp_path: Path) -> Store:
    """A fresh, empty store of the given kind, migrated with the real Alembic history."""
    if kind == "memory":
        return MemoryStore()
    if kind == "sqlite":
        from adapters.sqlalchemy.engine import create_engine_for
        from adapters.sqlalchemy.migrate import upgrade
        from adapters.sqlalchemy.store import SqlStore

        url = sqlite_url(tmp_path)
        upgrade(url)
        return SqlStore(create_engine_for(url))
    raise ValueError(kind)


STORE_KINDS = ["memory", "sqlite"]


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(request.param, tmp_path)
    yield opened
    await opened.close()
