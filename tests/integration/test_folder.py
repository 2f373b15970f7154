"""The folder: one per database, folding behind the writes, taken over when its holder goes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.migrate import upgrade
from adapters.sqlalchemy.store import SqlStore
from adapters.system import SystemClock
from domain.assignment import Assignment
from domain.errors import CovariatesFilling
from domain.event import Event, EventBatch
from domain.results import ResultQuery
from tests.factories import an_experiment
from tests.integration.conftest import REPO_ROOT
from tests.polling import eventually_async

T0 = datetime(2026, 11, 1, tzinfo=UTC)


async def pending(store: SqlStore) -> int:
    """Events not folded yet, by the horizon the folder stored."""
    key = "id <=" if store.database.dialect.name == "sqlite" else "txid <"
    async with store.database.engine.connect() as conn:
        return (await conn.execute(text(
            f"SELECT COUNT(*) FROM events WHERE NOT ({key} (SELECT events_horizon FROM fold_state))"
        ))).scalar_one()




async def test_one_folder_holds_the_lease_and_another_takes_over(database_url: str) -> None:
    first = SqlStore(create_engine_for(database_url), fold_interval=0.05)
    second = SqlStore(create_engine_for(database_url), fold_interval=0.05)
    exp = an_experiment("lease")
    await first.add_experiment(exp)
    await first.start()
    await eventually_async(lambda: _true(first.folder.holds_lease), 15)
    await second.start()
    await asyncio.sleep(0.3)
    assert first.folder.holds_lease and not second.folder.holds_lease

    a = await first.add_assignment(Assignment.decide(exp, "u1", T0))
    await second.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0 + timedelta(hours=1), 2.0)]))
    await eventually_async(lambda: _zero(pending(second)), 15)  # folded by the holder, not the writer

    await first.close()  # the holder goes: the other takes the lease over and folds
    await eventually_async(lambda: _true(second.folder.holds_lease), 15)
    await second.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0 + timedelta(hours=2), 3.0)]))
    await eventually_async(lambda: _zero(pending(second)), 15)
    agg = (await second.variant_aggregates(exp, ResultQuery(primary_event_type="buy")))[a.variant_id]
    assert (agg.primary.events, agg.primary.value_sum, agg.primary.value_sum_squares) == (2, 5.0, 25.0)
    await second.close()


async def _true(value: bool) -> bool:
    return value


async def _zero(count) -> bool:  # type: ignore[no-untyped-def]
    return await count == 0


async def fold_everything(store: SqlStore) -> None:
    """Fold until nothing is pending. On PostgreSQL a fold takes what lies below the cluster's
    oldest open transaction: another test's open transaction can hold a fold back for a while."""

    async def folded() -> bool:
        await store.fold()
        return await pending(store) == 0

    await eventually_async(folded, 15, "everything folded")


async def _folded_all(store: SqlStore) -> bool:
    await store.fold()
    return await pending(store) == 0


HOLDER = """
import asyncio, sys
from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.store import SqlStore

async def main():
    store = SqlStore(create_engine_for(sys.argv[1]), fold_interval=0.05)
    await store.start()
    while not store.folder.holds_lease:
        await asyncio.sleep(0.02)
    print("holding", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_the_lease_of_a_killed_holder_is_taken_over_within_seconds(database_url: str) -> None:
    """The holder dies without a word (SIGKILL): its lock goes with its process or session."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url], cwd=REPO_ROOT, stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert holder.stdout is not None
        assert (await asyncio.to_thread(holder.stdout.readline)).strip() == b"holding"
        store = SqlStore(create_engine_for(database_url), fold_interval=0.05)
        exp = an_experiment("killed")
        await store.add_experiment(exp)
        await store.start()
        await asyncio.sleep(0.3)
        assert not store.folder.holds_lease
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        started = time.monotonic()
        await eventually_async(lambda: _true(store.folder.holds_lease), 10)
        assert time.monotonic() - started < 10
        await store.add_assignment(Assignment.decide(exp, "u1", T0))
        await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0, 1.0)]))
        await eventually_async(lambda: _zero(pending(store)), 15)
        await store.close()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


async def test_results_read_their_writes_while_nothing_is_folded(database_url: str) -> None:
    """With the folder stopped, every write still shows in results at once: the tail."""
    store = SqlStore(create_engine_for(database_url), fold_interval=3600)
    exp = an_experiment("tail")
    await store.add_experiment(exp)
    await store.fold()
    a = await store.add_assignment(Assignment.decide(exp, "u1", T0))
    await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0 + timedelta(minutes=m), 1.0) for m in range(5)]))
    assert await pending(store) == 5
    for q in (ResultQuery(primary_event_type="buy"),
              ResultQuery(start=T0, end=T0 + timedelta(days=1), primary_event_type="buy"),
              ResultQuery(start=T0 + timedelta(minutes=1, seconds=30), end=T0 + timedelta(hours=3), primary_event_type="buy")):
        agg = (await store.variant_aggregates(exp, q))[a.variant_id]
        expected = 5 if q.start == T0 or q.start is None else 3
        assert (agg.users, agg.primary.events, agg.primary.value_sum) == (1, expected, float(expected)), q
    await store.close()


@pytest.mark.postgres
async def test_a_fold_while_an_older_transaction_is_open_skips_nothing(postgres_database: str) -> None:
    """PostgreSQL commits out of order: a transaction that began first may commit last. A fold
    run while it is open must not pass its rows by (its horizon stays below it), and results
    stay exact before and after it commits. Taking the highest committed transaction as the
    horizon instead would fold the later write and lose the older one for good."""
    import psycopg

    upgrade(postgres_database)
    store = SqlStore(create_engine_for(postgres_database), fold_interval=3600)
    try:
        exp = an_experiment("out-of-order")
        await store.add_experiment(exp)
        a = await store.add_assignment(Assignment.decide(exp, "u1", T0))
        await store.fold()
        older = psycopg.connect(postgres_database, connect_timeout=3)
        try:
            older.execute("SELECT pg_current_xact_id()")  # it has a transaction id, from now
            await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0 + timedelta(minutes=2), 2.0)]))
            older.execute(
                "INSERT INTO events (experiment_id, user_id, event_type, timestamp, value)"
                " VALUES (%s, 'u1', 'buy', %s, 1.0)",
                (exp.id, (T0 + timedelta(minutes=1) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)),
            )
            await store.fold()  # the later write is committed, the older one is not
            query = ResultQuery(primary_event_type="buy")
            agg = (await store.variant_aggregates(exp, query))[a.variant_id]
            assert (agg.primary.events, agg.primary.value_sum) == (1, 2.0)
            older.commit()
        finally:
            older.close()
        agg = (await store.variant_aggregates(exp, query))[a.variant_id]
        assert (agg.primary.events, agg.primary.value_sum) == (2, 3.0)  # read from the tail
        # The horizon is the cluster's oldest open transaction: a test in another database of
        # the same server (a parallel worker) may hold it back a moment, never for good.
        await eventually_async(lambda: _folded_all(store), 15, "a fold that leaves nothing pending")
        agg = (await store.variant_aggregates(exp, query))[a.variant_id]
        assert (agg.primary.events, agg.primary.value_sum) == (2, 3.0)  # and from the totals
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_fold_on_postgresql_is_a_few_round_trips_whatever_its_statements(postgres_database: str) -> None:
    """Under load every round trip waits for a turn of the server's event loop, so a fold's
    dozen statements go to PostgreSQL as one script: the lease's lock, the window read, the
    script, the unlock. Counted at SQLAlchemy's cursor (the script goes past it, as one call to
    the driver), with the fold's result checked so that a script that did nothing fails."""
    from sqlalchemy import event

    upgrade(postgres_database)
    store = SqlStore(create_engine_for(postgres_database), fold_interval=3600)
    try:
        exp = an_experiment("one-trip")
        await store.add_experiment(exp)
        a = await store.add_assignment(Assignment.decide(exp, "u1", T0))
        await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0 + timedelta(minutes=m), 2.0) for m in range(3)]))
        # The background folder (started by the first write) stops, so that its own fold and
        # statistics check cannot run while the statements are counted.
        await store.folder.close()
        await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0 + timedelta(minutes=3), 2.0)]))
        sent: list[str] = []

        def count(conn, cursor, statement, *args) -> None:  # noqa: ANN001
            sent.append(statement)

        event.listen(store.database.engine.sync_engine, "before_cursor_execute", count)
        await store.fold()
        assert len(sent) <= 3, sent  # lock, window, unlock; one statement each was 17 or more
        await fold_everything(store)  # in case another test's open transaction held that one back
        # A fold that finds nothing new (or an open transaction holds its window back): the
        # question of what waits to be filled rides in the window's statement.
        sent.clear()
        await store.fold()
        event.remove(store.database.engine.sync_engine, "before_cursor_execute", count)
        assert len(sent) <= 3, sent
        async with store.database.engine.connect() as conn:
            folded = (await conn.execute(
                text("SELECT events, value_sum FROM variant_event_totals WHERE experiment_id = :x AND event_type = 'buy'"),
                {"x": exp.id},
            )).one()
        assert tuple(folded) == (4, 8.0)
        agg = (await store.variant_aggregates(exp, ResultQuery(primary_event_type="buy")))[a.variant_id]
        assert (agg.primary.events, agg.primary.value_sum) == (4, 8.0)
    finally:
        await store.close()


async def test_an_idle_database_is_not_written_by_folds(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once everything is folded, a fold finds nothing and writes nothing, on both databases:
    on PostgreSQL the previous fold's own transaction must not count as something to fold, or
    an idle database would be written at every fold, and the folder could never rest longer.
    (Transaction ids are the cluster's: other tests' work may widen the window meanwhile, so
    the width past which an empty window moves anyway is out of the way here.)"""
    from adapters.sqlalchemy.dialects.postgresql import PostgresDialect

    monkeypatch.setattr(PostgresDialect, "EMPTY_WINDOW", 2**62)
    store = SqlStore(create_engine_for(database_url), fold_interval=3600)
    try:
        exp = an_experiment("idle")
        await store.add_experiment(exp)
        await store.add_assignment(Assignment.decide(exp, "u1", T0))
        await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0 + timedelta(minutes=1), 1.0)]))
        await fold_everything(store)

        async def state() -> tuple[int, int, int]:
            async with store.database.engine.connect() as conn:
                row = (await conn.execute(text("SELECT events_horizon, assignments_horizon, folded_at FROM fold_state"))).one()
            return tuple(row)

        before = await state()
        assert [await store.fold() for _ in range(3)] == [0, 0, 0]
        assert await state() == before
        await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0 + timedelta(minutes=2), 1.0)]))
        await fold_everything(store)
        assert await state() != before
    finally:
        await store.close()


@pytest.mark.postgres
async def test_an_empty_window_moves_once_it_is_wide(postgres_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A window without rows stays put (an idle database is not written), but not forever: once
    it spans more than EMPTY_WINDOW transactions (writes rolled back, other databases' work on
    the cluster) the horizon moves past it, so that no fold keeps looking at the same entries."""
    import psycopg

    from adapters.sqlalchemy.dialects.postgresql import PostgresDialect

    monkeypatch.setattr(PostgresDialect, "EMPTY_WINDOW", 3)
    upgrade(postgres_database)
    store = SqlStore(create_engine_for(postgres_database), fold_interval=3600)
    try:
        async with store.database.engine.connect() as conn:
            before = (await conn.execute(text("SELECT events_horizon FROM fold_state"))).scalar_one()
        with psycopg.connect(postgres_database, connect_timeout=3) as other:
            for _ in range(5):  # transactions that write nothing anyone folds
                other.execute("SELECT pg_current_xact_id()")
                other.commit()

        async def moved() -> bool:  # once no other test's open transaction holds xmin back
            await store.fold()
            async with store.database.engine.connect() as conn:
                after = (await conn.execute(text("SELECT events_horizon FROM fold_state"))).scalar_one()
            return after >= before + 5

        await eventually_async(moved, 15, "the horizon moved past the empty window")
    finally:
        await store.close()


async def test_cuped_turned_on_answers_filling_until_the_next_fold(database_url: str) -> None:
    """Registered when an experiment turns CUPED on, its users' pre-periods are filled by the
    next fold; a read before it is refused (503 with Retry-After at the API), never answered
    from half the data. A new experiment is filled from the start."""
    store = SqlStore(create_engine_for(database_url), fold_interval=3600)  # folds only when told
    try:
        exp = an_experiment("later")
        born = an_experiment("born", analysis={"cuped": True})
        for e in (exp, born):
            await store.add_experiment(e)
        await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0, 5.0)]))  # before the assignment
        await store.fold()
        await store.add_assignment(Assignment.decide(exp, "u1", T0 + timedelta(days=1)))
        assert (await store.variant_aggregates(born, ResultQuery(covariates=True)))  # nothing to fill
        changed, _ = exp.changed(T0, lambda: "v2", analysis={"cuped": True})
        await store.update_experiment(changed, expected_version=exp.version)
        with pytest.raises(CovariatesFilling):
            await store.variant_aggregates(changed, ResultQuery(covariates=True))
        await store.fold()
        got = await store.variant_aggregates(changed, ResultQuery(primary_event_type="buy", covariates=True))
        (covariate,) = [a.covariate for a in got.values() if a.covariate and a.covariate.users]
        assert (covariate.users, covariate.value_sum, covariate.both) == (1, 5.0, 0)
    finally:
        await store.close()


async def test_prior_events_no_assignment_can_reach_are_dropped(database_url: str) -> None:
    """An event of a user with no assignment is kept for CUPED (prior_events) while an
    assignment made from now on could still have it in its pre-period: an assignment may carry
    a time up to ``backdating`` before now (an exposure's own time), so what is older than the
    pre-period before that can go. Nothing a read counts changes."""
    store = SqlStore(create_engine_for(database_url), fold_interval=3600, now=SystemClock().now, backdating=timedelta(days=1))
    try:
        exp = an_experiment("pruned", analysis={"cuped": True})
        await store.add_experiment(exp)
        # The background loop (started by the first write otherwise) is stopped before it runs:
        # it prunes too, and only this test's calls are counted.
        store.folder.start()
        await store.folder.close()
        now = datetime.now(UTC)
        ages = {"unreachable": timedelta(days=15, hours=1), "reachable": timedelta(days=14, hours=23)}
        await store.add_events(EventBatch.of(
            [Event(exp.id, "later", "buy", now - age, value) for age, value in zip(ages.values(), (4.0, 2.0), strict=True)]
        ))
        await fold_everything(store)  # in case another test's open transaction holds a fold back
        assert await store.folder.prune() == 1
        assert await store.folder.prune() == 0
        async with store.database.engine.connect() as conn:
            kept = (await conn.execute(text("SELECT value FROM prior_events WHERE user_id = 'later'"))).scalars().all()
        assert kept == [2.0]
        # Assigned as far back as allowed: only the reachable event is in the pre-period.
        a = await store.add_assignment(Assignment.decide(exp, "later", now - timedelta(days=1)))
        got = await store.variant_aggregates(exp, ResultQuery(primary_event_type="buy", covariates=True))
        assert (got[a.variant_id].covariate.users, got[a.variant_id].covariate.value_sum) == (1, 2.0)
    finally:
        await store.close()
