"""Snapshot reads with a time limit, on the real databases: a statement that runs past it is
stopped by the database and raises ReadTimedOut; a cancelled read stops too; the connection
pool serves the next read either way (adapters/sqlalchemy/database.py).

SQLite's slow read is a recursive count that takes seconds; PostgreSQL's is a read of
``fold_state`` while another session holds an ACCESS EXCLUSIVE lock on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.migrate import upgrade
from domain.errors import ReadTimedOut
from tests.integration.database import fold_state_lock, waiting_on_fold_state

# About 20 s of SQLite's virtual machine: no test that passes waits for it to end by itself.
SLOW_SQLITE = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000000)"
    " SELECT count(*) FROM c"
)
NO_LONGER = 30  # seconds: a test whose limit failed fails here rather than hang on the lock
FOLD_STATE = "SELECT events_horizon FROM fold_state"


async def read(db: Database, sql: str, timeout: float) -> None:
    async with db.snapshot(timeout=timeout) as conn:
        await conn.execute(text(sql))


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    upgrade(url)
    db = Database(create_engine_for(url))
    yield db
    await db.close()


async def test_sqlite_a_read_past_its_time_is_stopped(sqlite_db: Database) -> None:
    started = time.monotonic()
    with pytest.raises(ReadTimedOut) as stopped:
        await asyncio.wait_for(read(sqlite_db, SLOW_SQLITE, 0.3), NO_LONGER)
    assert 0.3 <= time.monotonic() - started < 3
    assert stopped.value.retry_after_seconds == 1
    # The same pool reads on, without a limit left behind on its connection.
    async with sqlite_db.snapshot() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM fold_state"))).scalar_one() == 1


async def test_sqlite_a_read_within_its_time_is_untouched(sqlite_db: Database) -> None:
    async with sqlite_db.snapshot(timeout=5) as conn:
        assert (await conn.execute(text("SELECT count(*) FROM fold_state"))).scalar_one() == 1


async def test_sqlite_a_cancelled_read_stops_in_its_thread(sqlite_db: Database) -> None:
    task = asyncio.create_task(read(sqlite_db, SLOW_SQLITE, 60))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Without the check, the read (and the connection's close behind it) ran to its end.
    assert time.monotonic() - started < 3
    async with sqlite_db.snapshot(timeout=5) as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1


@pytest.fixture
async def postgres_db(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(create_engine_for(postgres_url))
    yield db
    await db.close()


@pytest.fixture
def fold_state_locked(postgres_url: str) -> Iterator[psycopg.Connection]:
    with fold_state_lock(postgres_url) as locker:
        yield locker


@pytest.mark.postgres
async def test_postgres_a_read_past_its_time_is_stopped_by_the_server(
    postgres_db: Database, postgres_url: str, fold_state_locked: psycopg.Connection
) -> None:
    started = time.monotonic()
    with pytest.raises(ReadTimedOut):
        await asyncio.wait_for(read(postgres_db, FOLD_STATE, 0.5), NO_LONGER)
    assert 0.5 <= time.monotonic() - started < 3
    assert waiting_on_fold_state(postgres_url) == []
    fold_state_locked.rollback()
    # The limit was the transaction's only: the same connection, back in the pool, has none.
    async with postgres_db.snapshot() as conn:
        assert (await conn.execute(text("SHOW statement_timeout"))).scalar_one() == "0"


@pytest.mark.postgres
async def test_postgres_a_cancelled_read_stops_on_the_server(
    postgres_db: Database, postgres_url: str, fold_state_locked: psycopg.Connection
) -> None:
    task = asyncio.create_task(read(postgres_db, FOLD_STATE, 60))
    for _ in range(100):
        if waiting := await asyncio.to_thread(waiting_on_fold_state, postgres_url):
            break
        await asyncio.sleep(0.05)
    assert len(waiting) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(60):
        if not await asyncio.to_thread(waiting_on_fold_state, postgres_url):
            break
        await asyncio.sleep(0.05)
    assert waiting_on_fold_state(postgres_url) == [], "the cancelled read still waits on the server"
    fold_state_locked.rollback()
    async with postgres_db.snapshot(timeout=5) as conn:
        assert (await conn.execute(text(FOLD_STATE))).scalar_one() >= 0
