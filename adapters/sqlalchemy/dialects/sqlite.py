"""SQLite's strategy: one file, one writer at a time, readers beside it in WAL mode.

One writer means rowids are committed in order: everything up to a rowid is a fixed set once
committed, so the folder's horizons are rowids and a fold runs under the write lock. The writes
queue for a writer thread of their own and share its transactions (group_commit.py).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause

from adapters.sqlalchemy.dialects.common import (
    EVENT_COLUMNS,
    WAITING_TO_FILL,
    DimensionRow,
    FoldScript,
    FoldsOn,
    Row,
)
from adapters.sqlalchemy.group_commit import GroupCommit
from domain.event import EventBatch

BEGIN_IMMEDIATE = "begin_immediate"
"""Execution option: take the write lock at BEGIN rather than at the first write.

A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when
another connection wrote meanwhile; one that starts IMMEDIATE waits its turn instead.
"""


def _ensure_directory(url: URL) -> None:
    if url.database and url.database != ":memory:":
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _configure(sync_engine: Engine) -> None:
    """WAL, durable commits, waiting on locks, foreign keys: for every engine on a SQLite file."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" hook below emit BEGIN, instead of the driver's own guesswork.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it is acknowledged, also across a power loss.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # 64 MiB of page cache (the default is 2 MiB): inserts land at random places in the
        # indexes of events, and once those outgrow the cache every insert reads pages back.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(BEGIN_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _writer_engine(engine: AsyncEngine) -> Engine:
    """The synchronous sqlite3 engine for the one writer thread (group_commit.py), on the file
    that ``engine`` reads: one connection, used by that thread alone."""
    writer = create_engine(
        engine.url.set(drivername="sqlite+pysqlite"),
        pool_size=1,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )
    _configure(writer)
    return writer


class SqliteTimeLimit:
    """sqlite3's progress handler on the read connection: every ``STEPS`` steps of SQLite's
    virtual machine, the read asks whether its time is up or whether the task awaiting it has
    been cancelled (its client went away), and stops if so (sqlite3 raises "interrupted").
    The second question matters: aiosqlite runs the read in a thread of its own, which a
    cancelled task cannot stop, and closing the connection would wait behind the read.
    Both questions are answered in that thread: the clock and the task's count of
    cancellation requests, nothing that needs the event loop."""

    STEPS = 1_000_000
    """About 40 ms of work between questions: fine enough for a limit of seconds, and rare
    enough that the read seldom waits for the interpreter lock to ask."""

    @asynccontextmanager
    async def within(
        self, conn: AsyncConnection, timeout: float
    ) -> AsyncIterator[Callable[[DBAPIError], bool]]:
        driver = (await conn.get_raw_connection()).driver_connection  # aiosqlite's Connection
        task = asyncio.current_task()
        assert driver is not None and task is not None
        cancels = task.cancelling()
        deadline = time.monotonic() + timeout
        fired = False

        def progress() -> int:
            nonlocal fired
            if time.monotonic() >= deadline:
                fired = True
                return 1
            return 1 if task.cancelling() > cancels else 0

        await driver.set_progress_handler(progress, self.STEPS)
        try:
            yield lambda _: fired
        except asyncio.CancelledError:
            raise  # SQLAlchemy has closed the connection: there is no handler to take back
        except BaseException:
            await driver.set_progress_handler(None, 0)
            raise
        await driver.set_progress_handler(None, 0)


class FileLease:
    """An exclusive lock on a file beside the database. The kernel releases it when the process
    dies, so another process takes over at its next try."""

    def __init__(self, database_path: str | None) -> None:
        self._path = f"{database_path}.folder-lease" if database_path else None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    async def acquire(self) -> bool:
        if self._fd is not None or self._path is None:
            return self._fd is not None
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    async def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


class SqliteDialect:
    name = "sqlite"
    url_example = "sqlite:///path/to/file.db"
    snapshot: dict[str, Any] = {}  # a SQLite read transaction is a snapshot already
    time_limit = SqliteTimeLimit()
    # A fold holds the one writer: fewer, larger folds write each page of the per-user totals
    # once for more events (bench/RESULTS.md, Sustained ingestion).
    fold_interval = 0.5

    def url(self, url: URL, *, asynchronous: bool) -> URL:
        return url.set(drivername="sqlite+aiosqlite" if asynchronous else "sqlite+pysqlite")

    def engine(self, url: URL) -> AsyncEngine:
        _ensure_directory(url)
        # Readers of a WAL file run side by side. Opening one costs a thread and the pragmas
        # above, so the pool keeps as many as requests commonly run at once; past the
        # default five, every burst opened and closed connections of its own.
        engine = create_async_engine(url, pool_size=32, max_overflow=32)
        _configure(engine.sync_engine)
        return engine

    def migration_engine(self, url: URL) -> Engine:
        _ensure_directory(url)
        engine = create_engine(url)
        _configure(engine)

        @event.listens_for(engine, "connect")
        def _foreign_keys_off(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # A batch migration copies a table, drops the old one and renames the copy: with
            # foreign keys on, dropping a table that rows still reference fails. SQLite's own
            # procedure for such changes turns them off and checks them before committing
            # (check_migrated); the pragma cannot change inside a transaction.
            dbapi_connection.execute("PRAGMA foreign_keys=OFF")

        return engine

    def lock_migrations(self, conn: Connection) -> None:
        """Nothing: BEGIN already holds the one writer's lock until the migration commits."""

    def check_migrated(self, conn: Connection) -> None:
        """Every row still references one that exists, or the migration is rolled back."""
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"the migration would break {len(broken)} foreign key(s): {broken[:5]}")

    def write_lane(self, engine: AsyncEngine) -> GroupCommit:
        """One writer at a time: waiting writes share a transaction and its sync."""
        return GroupCommit(_writer_engine(engine), {BEGIN_IMMEDIATE: True})

    def lease(self, engine: AsyncEngine) -> FileLease:
        return FileLease(engine.url.database)

    async def serialize_fold(self, database: FoldsOn, job: Callable[[Connection], int]) -> int:
        return await database.write(job)  # the write lock serializes every fold

    # The folder's windows. ``e`` is events, ``a`` user_assignments.
    event_key, assignment_key = "e.id", "a.rowid"

    def after(self, key: str, param: str) -> str:
        """Rows written after the horizon ``param``."""
        return f"{key} > :{param}"

    def upto(self, key: str, param: str) -> str:
        """Rows at or before the horizon ``param``: folded, once it is the stored horizon."""
        return f"{key} <= :{param}"

    def only(self, column: str) -> str:
        """A column compared without its index: SQLite's planner would otherwise pick the
        index on the experiment over the rowid range, and walk every row of the experiment."""
        return f"+{column}"

    def by_key(self, table: str, alias: str) -> str:
        """A table read by its rowid range alone: without statistics, SQLite's planner takes a
        scan of a covering index over an open-ended rowid range, every row of the table."""
        return f"{table} AS {alias} NOT INDEXED"

    def assignment_of(self, events: str, alias: str) -> str:
        """Join each event of ``events`` to its user's assignment, as ``alias``: a lookup by the
        unique key per event (the events lead; ``counted_pairs`` says how)."""
        return (
            f"JOIN user_assignments {alias}"
            f" ON {alias}.experiment_id = {events}.experiment_id AND {alias}.user_id = {events}.user_id"
        )

    def prior_events_of(self, assignments: str, alias: str) -> str:
        """Join each assignment of ``assignments`` to its user's prior events, as ``alias``: a
        range of their index per assignment (CROSS JOIN keeps the assignments outside)."""
        return (
            f"CROSS JOIN prior_events {alias}"
            f" ON {alias}.experiment_id = {assignments}.experiment_id AND {alias}.user_id = {assignments}.user_id"
        )

    # Ends a subquery whose filters must run before the joins around it: SQLite's planner keeps a subquery's own filters inside it.
    fence = ""

    def events_of(self, experiments: str, alias: str) -> str:
        """Join each row of ``experiments`` (an experiment_id) to its events, as ``alias``, by the
        events' index on the experiment: CROSS JOIN keeps the few experiments outside."""
        return f"CROSS JOIN events {alias} ON {alias}.experiment_id = {experiments}.experiment_id"

    def assignment_after(self, events: str, alias: str) -> str:
        """As ``assignment_of``, the events kept outside whatever the planner would pick (it
        scanned the assignments and read the experiment's events once for each)."""
        return "CROSS " + self.assignment_of(events, alias)

    def assignment_or_none(self, events: str, alias: str) -> str:
        """As ``assignment_of``, with NULLs for an event whose user has no assignment."""
        return "LEFT " + self.assignment_of(events, alias)

    def fold_window(self, conn: Connection, limit: int) -> tuple[int, int, int, int, bool]:
        """The stored horizons, and those a fold may advance to: the newest rows (the write lock
        is held, so nothing else can commit meanwhile), at most ``limit`` events past the stored
        horizon."""
        eh, ah, et, at, waiting = conn.exec_driver_sql(
            "SELECT events_horizon, assignments_horizon,"
            " MIN((SELECT COALESCE(MAX(id), 0) FROM events), events_horizon + ?),"
            f" (SELECT COALESCE(MAX(rowid), 0) FROM user_assignments), {WAITING_TO_FILL} FROM fold_state",
            (limit,),
        ).one()
        return eh, ah, et, at, bool(waiting)

    def script(self, statements: Sequence[TextClause]) -> FoldScript:
        """One by one: each is a call into the embedded library, no round trip to save."""

        def run(conn: Connection, params: Mapping[str, int]) -> None:
            for statement in statements:
                conn.execute(statement, params)

        return run

    def unmatchable(self, *keys: str) -> bool:
        return False

    def totals_of(self, deltas: str, alias: str) -> str:
        """Each delta's user totals so far, as ``alias`` (NULLs for a user without any)."""
        return (
            f"LEFT JOIN user_event_totals {alias} ON {alias}.experiment_id = {deltas}.experiment_id"
            f" AND {alias}.user_id = {deltas}.user_id AND {alias}.event_type = {deltas}.event_type"
        )

    def totals_by(
        self, alias: str, experiment: str, user: str, event_type: str, table: str = "user_event_totals"
    ) -> str:
        return (
            f"LEFT JOIN {table} {alias} ON {alias}.experiment_id = {experiment}"
            f" AND {alias}.user_id = {user} AND {alias}.event_type = {event_type}"
        )

    def dimensions_of(self, rows: str, alias: str, one: bool) -> str:
        """CROSS JOIN keeps the rows outside: a lookup of the primary key per row."""
        only = f" AND {alias}.dimension = :dim" if one else ""
        return (
            f"CROSS JOIN assignment_dimensions {alias} ON {alias}.experiment_id = {rows}.experiment_id"
            f" AND {alias}.user_id = {rows}.user_id{only}"
        )

    def refresh_statistics(self, conn: Connection) -> list[str]:
        """Nothing: the SQLite queries are written for a planner without statistics."""
        return []

    _INSERT_EVENTS = (
        f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        " ON CONFLICT (event_id) DO NOTHING"
    )

    _INSERT_ASSIGNMENT = (
        "INSERT INTO user_assignments (experiment_id, user_id, variant_id, assigned_at)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (experiment_id, user_id) DO NOTHING"
    )

    _INSERT_DIMENSION = (
        "INSERT INTO assignment_dimensions (experiment_id, user_id, dimension, value) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (experiment_id, user_id, dimension) DO NOTHING"
    )

    def insert_assignments(
        self, conn: Connection, rows: list[Row], dimensions: list[DimensionRow]
    ) -> list[tuple[str, int] | None]:
        """A group's assignments in one statement, then what is stored for each: the row just
        inserted, or the one that was there first; then the dimensions of the rows stored here
        (their time is this row's). The write lock is held, so all of it is final."""
        conn.exec_driver_sql(self._INSERT_ASSIGNMENT, rows)
        stored: dict[tuple[str, str], tuple[str, int]] = {}
        for experiment_id in {row[0] for row in rows}:
            users = list({row[1] for row in rows if row[0] == experiment_id})
            found = conn.exec_driver_sql(
                "SELECT user_id, variant_id, assigned_at FROM user_assignments"
                f" WHERE experiment_id = ? AND user_id IN ({', '.join('?' * len(users))})",
                (experiment_id, *users),
            )
            stored.update({(experiment_id, u): (v, at) for u, v, at in found})
        if dimensions:
            mine = {(x, u) for x, u, v, at in rows if stored[(x, u)] == (v, at)}
            if kept := [d for d in dimensions if (d[0], d[1]) in mine]:
                conn.exec_driver_sql(self._INSERT_DIMENSION, kept)
        return [stored[(row[0], row[1])] for row in rows]

    def insert_events(self, conn: Connection, batch: EventBatch) -> int:
        # The DBAPI's executemany, without SQLAlchemy's per-row parameter processing, which
        # adds nothing to plain strings, integers and floats. Its rowcount sums over the rows:
        # the ones not skipped as duplicates.
        return conn.exec_driver_sql(self._INSERT_EVENTS, batch.rows()).rowcount
