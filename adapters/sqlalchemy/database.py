"""The unit of work of the SQL store: the transaction boundary of a write, snapshot reads (with
a time limit where asked), the dialect's strategy, and driver errors turned into the domain's."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout  # every pooled connection stayed busy
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from adapters.sqlalchemy.dialects import Dialect, dialect_named
from adapters.sqlalchemy.dialects.common import BatchJob
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
        self.dialect: Dialect = dialect_named(engine.dialect.name)
        self._writes = self.dialect.write_lane(engine)

    async def write(self, job: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """Run ``job``, plain synchronous SQLAlchemy, in a write transaction; return once it has
        committed (how, the dialect's write lane says). ``one_statement``: the job is one
        statement, atomic by itself, which may then run without BEGIN and COMMIT."""
        return await self._writes.run(job, one_statement=one_statement)

    async def write_batched(self, job: BatchJob, item: Any) -> Any:
        """Like ``write``, for writes that are many and small: where writes queue (SQLite) the
        items waiting go to one run of ``job``; elsewhere each runs on its own, one statement."""
        return await self._writes.run_batched(job, item)

    @asynccontextmanager
    async def snapshot(self, timeout: float | None = None) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction whose statements all see one state of the data.

        With ``timeout`` (seconds), a statement still running after that long is stopped by
        the database, and ReadTimedOut raised: a read that runs away holds no connection and
        no database time past it. Cancelling the awaiting task stops the statement as well
        (asyncpg sends PostgreSQL a cancel request; on SQLite, see ``SqliteTimeLimit``), and
        SQLAlchemy then closes the connection instead of returning it to the pool."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**self.dialect.snapshot)
            if timeout is None:
                async with conn.begin():
                    yield conn
                return
            async with conn.begin(), self.dialect.time_limit.within(conn, timeout) as timed_out:
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
        await self._writes.close()
        await self.engine.dispose()
