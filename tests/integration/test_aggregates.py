"""Results from the folded totals plus the tail equal the reference store's count over raw events,
for any stream of writes, folds at any points between them, and any filter."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.memory.store import MemoryStore
from adapters.sqlalchemy.engine import create_engine_for
from adapters.sqlalchemy.migrate import upgrade
from adapters.sqlalchemy.store import SqlStore
from domain.assignment import Assignment
from domain.event import Event, EventBatch
from domain.experiment import Experiment
from domain.results import ResultQuery
from tests.factories import an_experiment

T0 = datetime(2026, 11, 1, tzinfo=UTC)
USERS = [f"u{i}" for i in range(8)]
TYPES = ["buy", "view"]
_names = itertools.count()

moments = st.integers(0, 10 * 24 * 3600 * 1000).map(lambda ms: T0 + timedelta(milliseconds=ms))
assign_op = st.tuples(st.just("assign"), st.sampled_from(USERS), moments)
event_op = st.tuples(
    st.just("event"),
    st.sampled_from(USERS),
    moments,
    st.sampled_from(TYPES),
    st.one_of(st.none(), st.floats(-100, 100, allow_nan=False).map(lambda v: round(v, 2))),
    st.one_of(st.none(), st.sampled_from(["e1", "e2", "e3"])),
)
fold_op = st.just(("fold",))
batches = st.lists(st.one_of(assign_op, fold_op, st.lists(event_op, min_size=1, max_size=6)), max_size=14)
queries = st.builds(
    lambda start, end, event_type, primary: (start, end, event_type, primary),
    st.one_of(st.none(), moments),
    st.one_of(st.none(), moments),
    st.one_of(st.none(), st.sampled_from(TYPES)),
    st.one_of(st.none(), st.sampled_from(TYPES)),
)


class Stores:
    """One database, migrated once; each example writes to an experiment of its own."""

    def __init__(self, url: str) -> None:
        upgrade(url)
        self.loop = asyncio.new_event_loop()
        # Folds happen where a test says (the background one would not wait an hour).
        self.totals = SqlStore(create_engine_for(url), fold_interval=3600)

    def run(self, coroutine):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coroutine)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    # SQLite folds by rowid, PostgreSQL by transaction ids: both are tested.
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('agg') / 'agg.db'}"
    else:
        url = request.getfixturevalue("postgres_databases").create()
    s = Stores(url)
    yield s
    s.run(s.totals.close())
    s.loop.close()


def fields(agg) -> tuple:  # type: ignore[no-untyped-def]
    return (agg.users, agg.events, agg.unique_users_with_events, dict(agg.event_counts),
            agg.primary.events, agg.primary.users)


@given(batches, st.lists(queries, min_size=1, max_size=4))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_totals_equal_a_raw_scan_and_the_reference(stores: Stores, ops, filters) -> None:  # type: ignore[no-untyped-def]
    name = f"exp{next(_names)}"
    experiment = an_experiment(name, (50, 30, 20), primary=None)
    memory = MemoryStore()

    async def write() -> None:
        for store in (stores.totals, memory):
            await store.add_experiment(experiment)
        for op in ops:
            if op[0] == "fold":
                await stores.totals.fold()
            elif op[0] == "assign":
                a = Assignment.decide(experiment, op[1], op[2])
                assert await stores.totals.add_assignment(a) == await memory.add_assignment(a)
            else:
                batch = [
                    Event(experiment.id, user, event_type, when, value, None,
                          None if eid is None else f"{name}-{eid}")
                    for _, user, when, event_type, value, eid in op
                ]
                assert await stores.totals.add_events(EventBatch.of(batch)) == await memory.add_events(EventBatch.of(batch))

    stores.run(write())
    for start, end, event_type, primary in filters:
        if start and end and start > end:
            start, end = end, start
        query = ResultQuery(start=start, end=end, event_type=event_type, primary_event_type=primary)
        unfiltered = ResultQuery(event_type=event_type, primary_event_type=primary)
        # The same range widened to whole UTC days, and to whole hours: read from the period
        # totals alone, where the range itself also reads its partial edge hours from events.
        whole_days = ResultQuery(
            start=None if start is None else datetime.combine(start.date(), time.min, UTC),
            end=None if end is None else datetime.combine(end.date(), time.max, UTC),
            event_type=event_type,
            primary_event_type=primary,
        )
        whole_hours = ResultQuery(
            start=None if start is None else start.replace(minute=0, second=0, microsecond=0),
            end=None if end is None else end.replace(minute=59, second=59, microsecond=999999),
            event_type=event_type,
            primary_event_type=primary,
        )
        for q in (query, unfiltered, whole_days, whole_hours):
            assert_same(stores.run(stores.totals.variant_aggregates(experiment, q)),
                        stores.run(memory.variant_aggregates(experiment, q)), experiment, q)


def assert_same(got, ref, experiment, q) -> None:  # type: ignore[no-untyped-def]
    for v in experiment.variants:
        assert fields(got[v.id]) == fields(ref[v.id]), q
        for attr in ("value_sum", "value_sum_squares"):
            assert getattr(got[v.id].primary, attr) == pytest.approx(getattr(ref[v.id].primary, attr), rel=1e-9, abs=1e-6)


def test_rebuild_reproduces_the_totals(stores: Stores) -> None:
    experiment = an_experiment("rebuild")

    memory = MemoryStore()

    async def scenario(store) -> None:  # type: ignore[no-untyped-def]
        await store.add_experiment(experiment)
        # An event stored before its user is assigned, stamped after the assignment: counted late.
        await store.add_events(EventBatch.of([Event(experiment.id, "early", "buy", T0 + timedelta(days=2), 5.0)]))
        if store is stores.totals:
            await store.fold()
        for i, user in enumerate(["early", "x", "y", "z"]):
            await store.add_assignment(Assignment.decide(experiment, user, T0 + timedelta(days=1, seconds=i)))
        await store.add_events(EventBatch.of(
            [Event(experiment.id, u, t, T0 + timedelta(days=3), 2.5) for u in ("x", "y", "z", "y") for t in TYPES]
        ))

    stores.run(scenario(stores.totals))
    stores.run(scenario(memory))
    query = ResultQuery(primary_event_type="buy")
    ref = stores.run(memory.variant_aggregates(experiment, query))
    before = stores.run(stores.totals.variant_aggregates(experiment, query))
    assert sum(a.primary.users for a in before.values()) == 4
    stores.run(stores.totals.rebuild_aggregates())
    after = stores.run(stores.totals.variant_aggregates(experiment, query))
    stores.run(stores.totals.fold())
    folded = stores.run(stores.totals.variant_aggregates(experiment, query))
    for v in experiment.variants:
        assert fields(before[v.id]) == fields(after[v.id]) == fields(folded[v.id]) == fields(ref[v.id])
        assert after[v.id].primary.value_sum_squares == pytest.approx(ref[v.id].primary.value_sum_squares, rel=1e-12)


def test_the_rebuild_command(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "entrypoints", "rebuild-aggregates"],
        cwd=root, env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "rebuilt" in done.stdout


def test_concurrent_writes_fold_exactly_once(stores: Stores) -> None:
    """Writes racing each other (on SQLite, sharing group commits) count each event once."""
    experiment = an_experiment(f"concurrent-{next(_names)}")
    memory = MemoryStore()
    users = [f"c{i}" for i in range(30)]
    batches = [
        [Event(experiment.id, users[(b * 7 + i) % 30], TYPES[i % 2], T0 + timedelta(hours=b % 5, minutes=i),
               float(i), None, f"{experiment.id}-{(b * 5 + i) % 120}") for i in range(10)]
        for b in range(24)
    ]
    assignments = [Assignment.decide(experiment, u, T0 + timedelta(hours=i % 4)) for i, u in enumerate(users)]

    async def write(store) -> list[int]:  # type: ignore[no-untyped-def]
        await store.add_experiment(experiment)
        writes = [store.add_events(EventBatch.of(b)) for b in batches] + [store.add_assignment(a) for a in assignments]
        if store is memory:
            return [await w for w in writes]
        return await asyncio.gather(*writes)

    stored = stores.run(write(stores.totals))
    reference = stores.run(write(memory))
    # Which racing write stored a repeated event_id differs; how many were stored does not.
    assert sum(stored[: len(batches)]) == sum(reference[: len(batches)]) == 120
    # Which racing batch stored a repeated event_id differs from the reference's order, so the
    # reference counts the rows the database holds.
    stored_rows = stores.run(rows_of(stores.totals, experiment))
    query = ResultQuery(primary_event_type="buy")
    for fold in (False, True):
        if fold:
            stores.run(stores.totals.fold())
        assert_same(stores.run(stores.totals.variant_aggregates(experiment, query)),
                    stores.run(stored_rows.variant_aggregates(experiment, query)), experiment, query)


async def rows_of(store: SqlStore, experiment: Experiment) -> MemoryStore:
    """The reference store holding exactly the raw rows the SQL store holds."""
    from sqlalchemy import text

    from domain.event import from_micros

    reference = MemoryStore()
    await reference.add_experiment(experiment)
    async with store.database.engine.connect() as conn:
        for user, at in await conn.execute(
            text("SELECT user_id, assigned_at FROM user_assignments WHERE experiment_id = :x"), {"x": experiment.id}
        ):
            await reference.add_assignment(Assignment.decide(experiment, user, from_micros(at)))
        rows = (await conn.execute(
            text("SELECT user_id, event_type, timestamp, value FROM events WHERE experiment_id = :x"),
            {"x": experiment.id},
        )).all()
    await reference.add_events(EventBatch.of(
        [Event(experiment.id, u, t, from_micros(ts), v) for u, t, ts, v in rows]
    ))
    return reference


def test_whole_days_split_at_utc_midnight_before_and_after_1970(stores: Stores) -> None:
    """The per-day totals floor-divide microseconds (SQL's integer division truncates towards
    zero): events a microsecond either side of midnight, before and after the epoch, land in
    the day a scan puts them in."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    experiment = an_experiment(f"midnight-{next(_names)}", created_at=epoch - timedelta(days=4000))
    micro = timedelta(microseconds=1)
    moments = [epoch - micro, epoch, epoch + timedelta(days=1) - micro, epoch + timedelta(days=1),
               datetime(1960, 3, 1, tzinfo=UTC) - micro, datetime(1960, 3, 1, tzinfo=UTC)]

    async def write() -> None:
        await stores.totals.add_experiment(experiment)
        for i in range(4):
            await stores.totals.add_assignment(Assignment.decide(experiment, f"m{i}", epoch - timedelta(days=4000)))
        await stores.totals.add_events(EventBatch.of(
            [Event(experiment.id, f"m{i % 4}", "buy", when, float(i + 1)) for i, when in enumerate(moments)]
        ))

    stores.run(write())
    stores.run(stores.totals.fold())
    expected = {date(1969, 12, 31): 1, date(1970, 1, 1): 2, date(1970, 1, 2): 1, date(1960, 2, 29): 1,
                date(1960, 3, 1): 1}
    for day, count in expected.items():
        query = ResultQuery(
            start=datetime.combine(day, time.min, UTC), end=datetime.combine(day, time.max, UTC),
            primary_event_type="buy",
        )
        fast = stores.run(stores.totals.variant_aggregates(experiment, query))
        assert sum(a.events for a in fast.values()) == count, day
        # An hour either side of midnight, read from the hourly totals.
        hours = ResultQuery(
            start=datetime.combine(day, time.min, UTC) - timedelta(hours=1),
            end=datetime.combine(day, time.min, UTC) + timedelta(hours=1, microseconds=-1),
            primary_event_type="buy",
        )
        around = stores.run(stores.totals.variant_aggregates(experiment, hours))
        assert sum(a.events for a in around.values()) == sum(
            1 for m in moments if hours.start <= m <= hours.end
        ), day
