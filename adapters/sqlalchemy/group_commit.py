"""Group commit for SQLite: the writes waiting for the one writer share a transaction and a sync.

SQLite takes one writer at a time. Writes queue here; one thread of its own runs each group:
every write that arrived while the previous group ran, each in a savepoint, then one commit
that makes all of them durable (``synchronous=FULL``) before any caller hears back. A write
that fails rolls back its own savepoint and fails its own caller alone.

Writes of one kind that are many and small (new assignments) queue as items of a batch job
instead: the group runs the job once over all its items, one statement for all of them; if
that fails, each item runs again alone, so that a bad item fails its own caller alone.

The writes are plain synchronous functions of a Connection, run on the writer thread with the
sqlite3 driver, so a write costs one hop to that thread, not one per statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

from adapters.sqlalchemy.dialects.common import BatchJob

T = TypeVar("T")
Job = Callable[[Connection], Any]

MAX_JOBS_PER_COMMIT = 64
"""Bounds one transaction (and the wait of its first caller) under a flood of writes."""


class GroupCommit:
    def __init__(self, engine: Engine, begin_options: dict[str, Any]) -> None:
        self._base = engine
        self._engine = engine.execution_options(**begin_options)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._pending: list[tuple[Job, asyncio.Future[Any]]] = []
        self._batched: dict[BatchJob, list[tuple[Any, asyncio.Future[Any]]]] = {}
        self._writer: asyncio.Task[None] | None = None

    async def run(self, job: Callable[[Connection], T], *, one_statement: bool = False) -> T:
        """Run ``job`` in the next group transaction; return once that has committed. A job of
        ``one_statement`` shares that transaction like any other: it costs no round trip here."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        self._wake()
        return await future

    async def run_batched(self, job: BatchJob, item: Any) -> Any:
        """Add ``item`` to the next group's run of ``job``; return its result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batched.setdefault(job, []).append((item, future))
        self._wake()
        return await future

    def _wake(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all())

    async def _write_all(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending or self._batched:
            group = [(j, f) for j, f in self._pending[:MAX_JOBS_PER_COMMIT] if not f.cancelled()]
            del self._pending[:MAX_JOBS_PER_COMMIT]
            batches = {
                job: [(item, f) for item, f in items if not f.cancelled()]
                for job, items in self._batched.items()
            }
            self._batched = {}
            work = [job for job, _ in group]
            batch_work = [(job, [item for item, _ in items]) for job, items in batches.items() if items]
            futures = [f for _, f in group]
            batch_futures = [[f for _, f in items] for items in batches.values() if items]
            try:
                outcomes, batch_outcomes = await asyncio.shield(
                    loop.run_in_executor(self._thread, self._commit, work, batch_work)
                )
            except Exception as exc:  # the transaction or its commit failed: nobody is durable
                for future in [*futures, *(f for fs in batch_futures for f in fs)]:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for future, outcome in zip(futures, outcomes, strict=True):
                _settle(future, outcome)
            for fs, item_outcomes in zip(batch_futures, batch_outcomes, strict=True):
                for future, outcome in zip(fs, item_outcomes, strict=True):
                    _settle(future, outcome)

    def _commit(
        self, jobs: list[Job], batches: list[tuple[BatchJob, list[Any]]]
    ) -> tuple[list[tuple[bool, Any]], list[list[tuple[bool, Any]]]]:
        outcomes: list[tuple[bool, Any]] = []
        batch_outcomes: list[list[tuple[bool, Any]]] = []
        with self._engine.begin() as conn:
            for job in jobs:
                outcomes.append(_in_savepoint(conn, job))
            for batch_job, items in batches:
                ok, values = _in_savepoint(conn, lambda c: batch_job(c, items))  # noqa: B023
                if ok:
                    batch_outcomes.append([(True, value) for value in values])
                else:  # one bad item: each alone in a savepoint of its own, to fail alone
                    batch_outcomes.append(
                        [_in_savepoint(conn, lambda c: batch_job(c, [item])[0]) for item in items]  # noqa: B023
                    )
        return outcomes, batch_outcomes

    async def close(self) -> None:
        """Let the writes already queued commit, then stop the writer thread."""
        if self._writer is not None:
            await asyncio.shield(self._writer)
        self._thread.shutdown(wait=True)
        self._base.dispose()


def _in_savepoint(conn: Connection, job: Job) -> tuple[bool, Any]:
    try:
        with conn.begin_nested():
            return True, job(conn)
    except Exception as exc:  # this job's own failure: its savepoint is undone
        return False, exc


def _settle(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():  # its caller is gone
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
