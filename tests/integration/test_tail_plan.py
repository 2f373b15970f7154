"""Results on PostgreSQL read the unfolded tail, never an experiment's history: the rows the
tail query reads from events, counted from the executed plan, stay near the tail's size while
the experiment holds a hundred times more."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.migrate import upgrade
from adapters.sqlalchemy.store import SqlStore
from adapters.sqlalchemy.views import ResultsView
from domain.assignment import Assignment
from domain.event import Event, EventBatch
from domain.results import ResultQuery
from tests.factories import an_experiment

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 1, tzinfo=UTC)
USERS, EVENTS_PER_USER = 1_000, 20  # 20,000 folded events
TAIL_USERS, TAIL_EVENTS = 5, 40


def rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows a plan's scans of ``relation`` produced or filtered away, over all their loops."""
    total = 0
    if plan.get("Relation Name") == relation:
        loops = plan.get("Actual Loops", 1)
        total += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)
                  + plan.get("Rows Removed by Index Recheck", 0)) * loops
    for child in plan.get("Plans", []):
        total += rows_read(child, relation)
    return total


async def explain(store: SqlStore, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    async with store.database.engine.connect() as conn:
        eh, ah = (await conn.execute(text("SELECT events_horizon, assignments_horizon FROM fold_state"))).one()
        answer = (await conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}"),
                                     {"eh": eh, "ah": ah, **params})).scalar_one()
    document = json.loads(answer) if isinstance(answer, str) else answer
    return document[0]["Plan"]


async def test_the_tail_query_reads_only_the_tail(postgres_database: str) -> None:
    upgrade(postgres_database)
    store = SqlStore(create_engine_for(postgres_database), fold_interval=3600)  # folds on demand only
    try:
        exp, other = an_experiment("tail-plan"), an_experiment("other")
        await store.add_experiment(exp)
        await store.add_experiment(other)
        for u in range(USERS):
            await store.add_assignment(Assignment.decide(exp, f"u{u}", T0))
        for first in range(0, USERS, 50):
            await store.add_events(EventBatch.of([
                Event(exp.id, f"u{u}", "buy", T0 + timedelta(seconds=i), 1.0)
                for u in range(first, first + 50) for i in range(EVENTS_PER_USER)
            ]))
        await store.fold()
        # The tail: new users (some with events sent before they were assigned, some after),
        # returning users' new events, and another experiment's writes that must not be read.
        later = T0 + timedelta(days=1)
        await store.add_events(EventBatch.of([Event(exp.id, "new0", "buy", later, 1.0)]))
        await store.fold()
        for u in range(TAIL_USERS):
            await store.add_assignment(Assignment.decide(exp, f"new{u}", later))
        tail = [Event(exp.id, f"new{i % TAIL_USERS}" if i % 2 else f"u{i}", "buy", later + timedelta(seconds=i), 2.0)
                for i in range(TAIL_EVENTS)]
        await store.add_events(EventBatch.of(tail))
        await store.add_events(EventBatch.of([Event(other.id, f"o{i}", "buy", later, 1.0) for i in range(30)]))

        # What the folder does every few seconds: tables without statistics are analyzed (the
        # planner reads a table it knows nothing of as a small one, and walks it), then not again.
        assert set(await store.folder.refresh_statistics()) == {"events", "user_assignments", "user_event_totals"}
        assert await store.folder.refresh_statistics() == []

        view = ResultsView(store.database)
        plan = await explain(store, view._without_range.text, {"x": exp.id})
        read = rows_read(plan, "events")
        # The tail holds 41 events of this experiment and 30 of another; the experiment 20,041.
        assert read <= 4 * (TAIL_EVENTS + 1 + 30), f"the tail query read {read} rows of events"
        assert rows_read(plan, "user_assignments") <= 4 * (TAIL_EVENTS + TAIL_USERS + 1)
        # Each tail user's totals so far, by key, not the 2,000 rows of every user's totals.
        assert rows_read(plan, "user_event_totals") <= 4 * (TAIL_EVENTS + 1)

        # And the answer is exact: the folded totals plus the tail.
        aggregates = await store.variant_aggregates(exp, ResultQuery(primary_event_type="buy"))
        assert sum(a.users for a in aggregates.values()) == USERS + TAIL_USERS
        assert sum(a.primary.events for a in aggregates.values()) == USERS * EVENTS_PER_USER + TAIL_EVENTS + 1
    finally:
        await store.close()


async def test_a_breakdown_reads_the_tail_users_values_by_key(postgres_database: str) -> None:
    """The slices' read looks up the dimension values of the tail's users and new assignments
    only, not the values of every user of the experiment."""
    upgrade(postgres_database)
    store = SqlStore(create_engine_for(postgres_database), fold_interval=3600)
    try:
        exp = an_experiment("sliced-plan", analysis={"dimensions": ["platform", "plan"]})
        await store.add_experiment(exp)
        for u in range(USERS):
            await store.add_assignment(Assignment.decide(exp, f"u{u}", T0, {"platform": "ios", "plan": str(u % 3)}))
        await store.add_events(EventBatch.of([Event(exp.id, f"u{u}", "buy", T0 + timedelta(seconds=1), 1.0)
                                              for u in range(USERS)]))
        await store.fold()
        later = T0 + timedelta(days=1)
        for u in range(TAIL_USERS):
            await store.add_assignment(Assignment.decide(exp, f"new{u}", later, {"platform": "web", "plan": "0"}))
        tail = [Event(exp.id, f"new{i % TAIL_USERS}" if i % 2 else f"u{i}", "buy", later, 2.0) for i in range(TAIL_EVENTS)]
        await store.add_events(EventBatch.of(tail))
        await store.folder.refresh_statistics()
        view = ResultsView(store.database)
        plan = await explain(store, view._slices.text, {"x": exp.id, "dim": "platform", "pt": "buy"})
        # 2,000 values are stored; the tail holds 5 new users and 40 events' users.
        read = rows_read(plan, "assignment_dimensions")
        assert read <= 4 * (TAIL_EVENTS + TAIL_USERS), f"the slices' read looked at {read} dimension values"
        totals = await store.breakdown_totals(exp, "platform", "buy")
        assert {v: sum(c.users for c in cells.values()) for v, cells in totals.by_value.items()} == {
            "ios": USERS, "web": TAIL_USERS,
        }
    finally:
        await store.close()


async def test_statements_are_never_jit_compiled(postgres_database: str) -> None:
    # Past jit_above_cost (the tail of an events table of a million rows or so), PostgreSQL
    # compiled each execution with LLVM: 2-3 s of CPU for a read of a few thousand rows.
    upgrade(postgres_database)
    engine = create_engine_for(postgres_database)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW jit"))).scalar_one() == "off"
            await conn.execute(text("SET jit_above_cost = 0"))  # as if the tables were huge
            view = ResultsView(SqlStore(engine).database)
            answer = (await conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) {view._without_range.text}"),
                                         {"x": "x", "eh": 0, "ah": 0})).scalar_one()
        document = json.loads(answer) if isinstance(answer, str) else answer
        assert "JIT" not in document[0]
    finally:
        await engine.dispose()
