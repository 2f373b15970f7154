"""The write lane's batches, on both databases: the many small writes of a moment (new
assignments) share one statement and one commit, each caller hears its own result, and a bad
item fails its own caller alone. On PostgreSQL this is what lets new users cost what they cost
on SQLite (bench/RESULTS.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from adapters.memory.cache import MemoryCache
from adapters.sqlalchemy.database import Database
from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.store import SqlStore
from application.experiments import CreateExperiment
from domain.assignment import Assignment
from domain.experiment import VariantDraft
from tests.fakes import FakeClock, SequentialIds

CALLERS = 100


class Echo:
    """A batch job that asks the database one statement a run, and records each run."""

    def __init__(self) -> None:
        self.runs: list[list[object]] = []

    def __call__(self, conn: Connection, items: Sequence[object]) -> list[object]:
        self.runs.append(list(items))
        if "bad" in items:
            raise ValueError("a bad item")
        conn.execute(text("SELECT 1"))
        return [f"echo {i}" for i in items]


async def test_the_items_of_a_moment_share_one_run_and_each_hears_its_own(database_url: str) -> None:
    database = Database(create_engine_for(database_url))
    job = Echo()
    try:
        answers = await asyncio.gather(*(database.write_batched(job, n) for n in range(CALLERS)))
        assert answers == [f"echo {n}" for n in range(CALLERS)]
        assert sorted(i for run in job.runs for i in run) == list(range(CALLERS))
        assert len(job.runs) <= 3, [len(run) for run in job.runs]  # one a caller would be 100
        # No timer: an item alone runs at once, by itself.
        job.runs.clear()
        assert await database.write_batched(job, "alone") == "echo alone"
        assert job.runs == [["alone"]]
    finally:
        await database.close()


async def test_a_bad_item_fails_its_own_caller_alone(database_url: str) -> None:
    database = Database(create_engine_for(database_url))
    job = Echo()
    try:
        items = ["a", "bad", "b", "c"]
        answers = await asyncio.gather(*(database.write_batched(job, i) for i in items), return_exceptions=True)
        assert answers[0] == "echo a" and answers[2:] == ["echo b", "echo c"]
        assert isinstance(answers[1], ValueError)
    finally:
        await database.close()


async def test_new_users_of_a_moment_each_get_the_row_stored_for_them(database_url: str) -> None:
    """Fifty new users at once, and one user asked twice with two different variants (as two
    instances deciding at once would): each answer is the row stored, the first one wins."""
    store = SqlStore(create_engine_for(database_url))
    try:
        experiment = await CreateExperiment(store, MemoryCache(), FakeClock(), SequentialIds())(
            actor="ci", name="batched", variants=[VariantDraft("a", 50), VariantDraft("b", 50)]
        )
        a, b = experiment.variants
        at = datetime(2026, 12, 3, 12, tzinfo=UTC)
        wanted = [Assignment(experiment.id, f"u{n}", (a, b)[n % 2].id, (a, b)[n % 2].name, at) for n in range(50)]
        twice = [Assignment(experiment.id, "twice", v.id, v.name, at) for v in (a, b)]
        answers = await asyncio.gather(*(store.add_assignment(x) for x in [*wanted, *twice]))
        assert answers[:50] == wanted
        assert answers[50] == answers[51] == twice[0]
        for x in [*wanted, twice[0]]:
            assert await store.get_assignment(x.experiment_id, x.user_id) == x
    finally:
        await store.close()
