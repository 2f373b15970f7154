"""Reading a service's database directly, around the service: what a test checks it against."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine, make_url

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def raw_engine(database_url: str) -> Engine:
    """A plain synchronous engine on DATABASE_URL (sqlite3 or psycopg), none of the store's code."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url)


def micros(moment: datetime | str) -> int:
    """Microseconds since the epoch, as the store keeps timestamps; takes an API timestamp too."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return (moment - _EPOCH) // timedelta(microseconds=1)


@contextmanager
def fold_state_lock(postgres_url: str) -> Iterator[psycopg.Connection]:
    """Another session's ACCESS EXCLUSIVE lock on ``fold_state``, which every results read and
    every fold reads first: they wait on the server until the lock's transaction ends, by
    ``rollback()`` on the connection given or at the end of the block."""
    locker = psycopg.connect(postgres_url, connect_timeout=3)
    try:
        locker.execute("LOCK TABLE fold_state IN ACCESS EXCLUSIVE MODE")
        yield locker
    finally:
        locker.rollback()
        locker.close()


def waiting_on_fold_state(postgres_url: str) -> list[tuple[int, str, str | None]]:
    """(pid, state, wait event type) of the sessions waiting for the lock on ``fold_state``."""
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=3) as watcher:
        return watcher.execute(
            "SELECT a.pid, a.state, a.wait_event_type FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE NOT l.granted AND l.relation = 'fold_state'::regclass"
        ).fetchall()
