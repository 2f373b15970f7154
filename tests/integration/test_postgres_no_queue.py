"""PostgreSQL: no lock that every writer of an experiment must queue on.

One writer of an experiment keeps its transaction open (a slow client, a long batch, a stalled
connection). The store's other writers of that experiment, on other connections, must go on
storing assignments and event batches meanwhile; a writer that collides with one of the open
transaction's rows may wait for it, but must hold up no one else. Once the open transaction
commits, results count its rows too, however the store keeps its totals.

The open transaction writes raw rows in the shape the store writes them (timestamps in
microseconds since the epoch), so it stands for a writer caught anywhere in its transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.migrate import upgrade
from adapters.sqlalchemy.store import SqlStore
from domain.assignment import Assignment
from domain.event import Event, EventBatch
from domain.experiment import Experiment
from domain.results import ResultQuery
from tests.contract.test_store_contract import experiment, reference
from tests.integration.database import micros

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 1, tzinfo=UTC)
WAIT_SECONDS = 10
QUERIES = [
    ResultQuery(primary_event_type="buy"),
    ResultQuery(event_type="view", primary_event_type=None),
    ResultQuery(start=T0, end=T0 + timedelta(days=1, microseconds=-1), primary_event_type="buy"),
    ResultQuery(
        start=T0 + timedelta(hours=2, minutes=30),
        end=T0 + timedelta(hours=20),
        primary_event_type="click",
    ),
]


@pytest.fixture
async def migrated(postgres_database: str) -> str:
    await asyncio.to_thread(upgrade, postgres_database)
    return postgres_database


async def within_the_wait(writes: Awaitable[Any], what: str) -> Any:
    try:
        return await asyncio.wait_for(writes, timeout=WAIT_SECONDS)
    except TimeoutError:
        pytest.fail(f"{what}: still waiting after {WAIT_SECONDS} s behind one open transaction")


async def hold_raw_rows(
    held: psycopg.AsyncConnection, assignment: Assignment, events: list[Event]
) -> None:
    """Write in the open transaction as the store writes: an assignment row, event rows."""
    await held.execute(
        "INSERT INTO user_assignments (experiment_id, user_id, variant_id, assigned_at)"
        " VALUES (%s, %s, %s, %s)",
        (
            assignment.experiment_id,
            assignment.user_id,
            assignment.variant_id,
            micros(assignment.assigned_at),
        ),
    )
    async with held.cursor() as cursor:
        await cursor.executemany(
            "INSERT INTO events"
            " (experiment_id, user_id, event_type, timestamp, value, properties, event_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    e.experiment_id,
                    e.user_id,
                    e.event_type,
                    micros(e.timestamp),
                    e.value,
                    e.properties,
                    e.event_id,
                )
                for e in events
            ],
        )


async def until_waiting_or_done(url: str, task: asyncio.Task[Any]) -> None:
    """Until ``task`` waits for a lock in this database (or has finished without waiting)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watcher:
        for _ in range(WAIT_SECONDS * 20):
            if task.done():
                return
            waiting = await (
                await watcher.execute(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND a.datname = current_database()"
                )
            ).fetchone()
            if waiting and waiting[0]:
                return
            await asyncio.sleep(0.05)
    pytest.fail("the colliding writer neither waited for the open transaction nor finished")


async def assert_results(store: SqlStore, exp: Experiment, assignments, events) -> None:
    for query in QUERIES:
        got = await store.variant_aggregates(exp, query)
        expected = reference(exp, assignments, events, query)
        for v in exp.variants:
            agg = got[v.id]
            assert (
                agg.users,
                agg.events,
                agg.unique_users_with_events,
                dict(agg.event_counts),
                agg.primary.events,
                agg.primary.users,
                agg.primary.value_sum,
                agg.primary.value_sum_squares,
            ) == expected[v.id], query


async def test_an_open_transaction_of_an_experiment_holds_up_no_other_writer(migrated: str) -> None:
    store = SqlStore(create_engine_for(migrated))
    await store.start()  # folding in the background, as in a server
    exp = experiment("x", shares=(50, 30, 20))
    await store.add_experiment(exp)
    hour = timedelta(hours=1)

    held_assignment = Assignment.decide(exp, "held-user", T0 + hour)
    held_events = [
        Event(exp.id, "held-user", "buy", T0 + 2 * hour, 2.5, None, "held-1"),
        Event(exp.id, "held-user", "view", T0 + 3 * hour, None, '{"a":1}', "held-2"),
        Event(
            exp.id, "held-user", "buy", T0 + hour / 2, 100.0, None, "held-3"
        ),  # before: not counted
        Event(exp.id, "late-user", "click", T0 + 4 * hour, 1.25, None, "held-4"),
    ]
    assignments: dict[str, Assignment] = {}
    events: list[Event] = []

    def batch(tag: str, users: list[str]) -> list[Event]:
        made = [
            Event(
                exp.id, user, kind, T0 + hour * (1 + i), 0.25 * (i + 1), None, f"{tag}-{user}-{i}"
            )
            for user in users
            for i, kind in enumerate(["buy", "view", "click", "buy", "view"])
        ]
        events.extend(made)
        return made

    held = await psycopg.AsyncConnection.connect(migrated)  # not autocommit: one transaction
    colliding: asyncio.Task[int] | None = None
    try:
        await hold_raw_rows(held, held_assignment, held_events)

        # 1. Writers of the experiment on other connections store while the transaction is open.
        first = await within_the_wait(
            asyncio.gather(
                store.add_assignment(Assignment.decide(exp, "fresh-1", T0 + hour)),
                store.add_events(EventBatch.of(batch("one", ["fresh-1", "held-user", "nobody"]))),
                store.add_events(EventBatch.of(batch("two", ["late-user", "fresh-2"]))),
            ),
            "new writes of the experiment",
        )
        assignments["fresh-1"] = first[0]
        assert first[1:] == [15, 10]

        # 2. A batch that repeats one of the open transaction's event_ids must wait to learn
        # whether that one is a duplicate; while it waits, the others still store.
        collision = [
            held_events[0],
            Event(exp.id, "fresh-1", "click", T0 + 5 * hour, 0.5, None, "c-1"),
        ]
        colliding = asyncio.create_task(store.add_events(EventBatch.of(collision)))
        await until_waiting_or_done(migrated, colliding)
        second = await within_the_wait(
            asyncio.gather(
                store.add_assignment(Assignment.decide(exp, "fresh-2", T0 + 2 * hour)),
                store.add_assignment(Assignment.decide(exp, "late-user", T0 + 2 * hour)),
                store.add_events(
                    EventBatch.of(batch("three", ["fresh-2", "late-user", "held-user"]))
                ),
            ),
            "writes of the experiment beside one waiting for the open transaction",
        )
        assignments["fresh-2"], assignments["late-user"] = second[0], second[1]
        assert second[2] == 15

        # What is committed is counted; what is not yet committed is not. So it stays after a
        # rebuild of the totals (safe while the service runs), which must leave the open
        # transaction's rows to be counted once they commit.
        await assert_results(store, exp, assignments, events)
        await within_the_wait(store.rebuild_aggregates(), "a rebuild of the totals")
        await assert_results(store, exp, assignments, events)

        await held.commit()
        assert (
            await within_the_wait(colliding, "the colliding batch, once the transaction ended") == 1
        )
    finally:
        if colliding is not None and not colliding.done():
            colliding.cancel()
        await held.rollback()  # a no-op after the commit; else it frees the waiting writers
        await held.close()
        if colliding is not None:
            await asyncio.gather(colliding, return_exceptions=True)

    assignments["held-user"] = held_assignment
    events += held_events + collision[1:]
    try:
        await assert_results(store, exp, assignments, events)
    finally:
        await store.close()
