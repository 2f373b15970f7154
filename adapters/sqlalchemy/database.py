"""The unit of work of the SQL store: the transaction boundary of a write, snapshot reads, the
dialect's strategy, and driver errors turned into the domain's."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout  # every pooled connection stayed busy
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sqlalchemy.dialects import Dialect, dialect_of
from adapters.sqlalchemy.engine import BEGIN_IMMEDIATE, sqlite_writer_engine
from adapters.sqlalchemy.group_commit import BatchJob, GroupCommit
from domain.errors import StoreUnavailable

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
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction whose statements all see one state of the data."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**self.dialect.snapshot)
            async with conn.begin():
                yield conn

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


