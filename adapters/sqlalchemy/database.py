"""The unit of work of the SQL store: the transaction boundary of a write, snapshot reads (with
a time limit where asked), the dialect's strategy, and driver errors turned into the domain's."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, ParamSpec, Protocol, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout  # every pooled connection stayed busy
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sqlalchemy.dialects import Dialect, dialect_of
from adapters.sqlalchemy.engine import BEGIN_IMMEDIATE, sqlite_writer_engine
from adapters.sqlalchemy.group_commit import BatchJob, GroupCommit
from domain.errors import ReadTimedOut, StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")


def unavailable_on_connection_loss(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A lost or refused connection is StoreUnavailable, so callers need not know the driver."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except IntegrityError:
            raise
        except (DBAPIError, OSError, PoolTimeout) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    return wrapper


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect: Dialect = dialect_of(engine.dialect.name)
        # SQLite has one writer at a time: waiting writes share a transaction and its sync.
        # PostgreSQL writes concurrently and groups commits in its own WAL writer.
        self._group = (
            GroupCommit(sqlite_writer_engine(engine), {BEGIN_IMMEDIATE: True})
            if self.dialect.name == "sqlite"
            else None
        )
        self._time_limit: _TimeLimit = (
            _SqliteTimeLimit() if self.dialect.name == "sqlite" else _PostgresTimeLimit()
        )

    @property
    def sqlite_path(self) -> str | None:
        return self.engine.url.database if self.dialect.name == "sqlite" else None

    async def write(self, job: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """Run ``job``, plain synchronous SQLAlchemy, in a write transaction; return once it has
        committed. SQLite's writer thread runs it on sqlite3; PostgreSQL runs it on asyncpg
        through SQLAlchemy's greenlet bridge. ``one_statement``: the job is one statement,
        atomic by itself, so PostgreSQL runs it without BEGIN and COMMIT: one round trip."""
        if self._group is not None:
            return await self._group.run(job)
        if one_statement:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.run_sync(job)
        async with self.engine.begin() as conn:
            return await conn.run_sync(job)

    async def write_batched(self, job: BatchJob, item: Any) -> Any:
        """Like ``write``, for writes that are many and small: on SQLite the items waiting for
        the writer go to one run of ``job``; on PostgreSQL each runs on its own, one statement."""
        if self._group is not None:
            return await self._group.run_batched(job, item)

        def one(conn: Connection) -> Any:
            return job(conn, [item])[0]

        return await self.write(one, one_statement=True)

    @asynccontextmanager
    async def snapshot(self, timeout: float | None = None) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction whose statements all see one state of the data.

        With ``timeout`` (seconds), a statement still running after that long is stopped by
        the database, and ReadTimedOut raised: a read that runs away holds no connection and
        no database time past it. Cancelling the awaiting task stops the statement as well
        (asyncpg sends PostgreSQL a cancel request; on SQLite, see ``_SqliteTimeLimit``), and
        SQLAlchemy then closes the connection instead of returning it to the pool."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**self.dialect.snapshot)
            if timeout is None:
                async with conn.begin():
                    yield conn
                return
            async with conn.begin(), self._time_limit.within(conn, timeout) as timed_out:
                try:
                    yield conn
                except DBAPIError as exc:
                    if timed_out(exc):
                        raise ReadTimedOut(timeout) from exc
                    raise

    def connect(self) -> Any:
        return self.engine.connect()

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def close(self) -> None:
        if self._group is not None:
            await self._group.close()
        await self.engine.dispose()


class _TimeLimit(Protocol):
    """How a dialect stops a snapshot's statement that runs past its time."""

    def within(
        self, conn: AsyncConnection, timeout: float
    ) -> AbstractAsyncContextManager[Callable[[DBAPIError], bool]]:
        """The limit applied to ``conn``'s open transaction; gives the test of whether an error
        was the limit stopping a statement."""


class _PostgresTimeLimit:
    """``statement_timeout`` for this transaction only (``set_config``'s third argument), set
    by its first statement: one round trip, and nothing left on the pooled connection. The
    server cancels a statement that runs past it, whatever it waits on (a lock, the disk)."""

    _SET = text("SELECT set_config('statement_timeout', :ms, true)")
    _QUERY_CANCELED = "57014"  # statement_timeout's SQLSTATE (and a cancel request's)

    @asynccontextmanager
    async def within(
        self, conn: AsyncConnection, timeout: float
    ) -> AsyncIterator[Callable[[DBAPIError], bool]]:
        await conn.execute(self._SET, {"ms": str(max(1, round(timeout * 1000)))})
        yield self._canceled

    def _canceled(self, exc: DBAPIError) -> bool:
        return getattr(exc.orig, "sqlstate", None) == self._QUERY_CANCELED


class _SqliteTimeLimit:
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
