"""Group commit for SQLite: the writes waiting for the one writer share a transaction and a sync.

SQLite takes one writer at a time, and with ``synchronous=FULL`` every commit waits for the disk
(a few milliseconds here: 192 new assignments/s when each had its own). While one transaction
runs, the writes that arrive queue up; the next transaction takes them all, each in a savepoint
of its own, and one commit makes all of them durable. Every caller hears back only after that
commit, so nothing is acknowledged before it is on disk; a write that fails rolls back its own
savepoint and fails its own caller alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")
Job = Callable[[AsyncConnection], Awaitable[Any]]

MAX_JOBS_PER_COMMIT = 64
"""Bounds one transaction (and the wait of its first caller) under a flood of writes."""


class GroupCommit:
    def __init__(self, engine: AsyncEngine, begin_options: dict[str, Any]) -> None:
        self._engine = engine.execution_options(**begin_options)
        self._pending: list[tuple[Job, asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def run(self, job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``job`` in the next group transaction; return once that has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())
        return await future

    async def _write_all(self) -> None:
        while self._pending:
            group = self._pending[:MAX_JOBS_PER_COMMIT]
            del self._pending[:MAX_JOBS_PER_COMMIT]
            await self._commit(group)

    async def _commit(self, group: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            async with self._engine.begin() as conn:
                for job, future in group:
                    if future.cancelled():  # its caller is gone and nothing was acknowledged
                        continue
                    try:
                        async with conn.begin_nested():
                            outcomes.append((future, True, await job(conn)))
                    except Exception as exc:  # this job's own failure: its savepoint is undone
                        outcomes.append((future, False, exc))
        except BaseException as exc:  # the transaction or its commit failed: nobody is durable
            for _, future in group:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
            return
        for future, ok, value in outcomes:
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def close(self) -> None:
        """Let the writes already queued commit."""
        if self._writer is not None:
            await asyncio.shield(self._writer)
