"""One contract every Store adapter must keep; run against each (see STORE_KINDS in conftest)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from application.ports import Store
from domain.assignment import Assignment
from domain.errors import DuplicateExperimentName
from domain.event import Event, EventBatch
from domain.experiment import Experiment, VariantDraft
from domain.results import ResultQuery
from tests.fakes import SequentialIds

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def experiment(name: str = "exp", shares=(50, 50), created_at: datetime = T0, ids=None) -> Experiment:
    return Experiment.create(
        name=name,
        description="about it",
        primary_event_type="buy",
        variants=[VariantDraft(f"v{i}", s) for i, s in enumerate(shares)],
        new_id=(ids or SequentialIds(name)).new_id,
        created_at=created_at,
    )


async def test_experiments_round_trip_exactly(store: Store) -> None:
    exp = experiment(shares=(33.33, 33.33, 33.34), created_at=T0 + timedelta(microseconds=123457))
    await store.add_experiment(exp)
    assert await store.get_experiment(exp.id) == exp
    assert await store.get_experiment("missing") is None


async def test_names_are_unique(store: Store) -> None:
    await store.add_experiment(experiment("a"))
    with pytest.raises(DuplicateExperimentName):
        await store.add_experiment(experiment("a", ids=SequentialIds("other")))


async def test_listing_is_newest_first_and_paged(store: Store) -> None:
    made = [experiment(f"e{i}", created_at=T0 + timedelta(seconds=i)) for i in range(5)]
    for exp in made:
        await store.add_experiment(exp)
    items, total = await store.list_experiments(2, 1)
    assert total == 5
    assert [e.name for e in items] == ["e3", "e2"]
    assert (await store.list_experiments(10, 10)) == ([], 5)


async def test_first_assignment_wins_and_is_returned_to_every_caller(store: Store) -> None:
    exp = experiment()
    await store.add_experiment(exp)
    assert await store.get_assignment(exp.id, "u1") is None
    tries = [Assignment.decide(exp, "u1", T0 + timedelta(seconds=i)) for i in range(20)]
    stored = await asyncio.gather(*(store.add_assignment(a) for a in tries))
    assert len(set(stored)) == 1
    assert stored[0] in tries
    assert await store.get_assignment(exp.id, "u1") == stored[0]


async def test_events_skip_known_event_ids_within_and_across_batches(store: Store) -> None:
    exp = experiment()
    await store.add_experiment(exp)
    e = Event(exp.id, "u1", "buy", T0, 1.5, '{"a":1}', "id-1")
    assert await store.add_events(EventBatch.of([e, e, Event(exp.id, "u1", "buy", T0)])) == 2
    assert await store.add_events(EventBatch.of([e, Event(exp.id, "u1", "buy", T0, event_id="id-2")])) == 1
    assert await store.add_events(EventBatch.of([Event(exp.id, "u1", "buy", T0), Event(exp.id, "u1", "buy", T0)])) == 2


async def test_the_counting_rule_is_exact_to_the_microsecond(store: Store) -> None:
    exp = experiment()
    await store.add_experiment(exp)
    at = T0 + timedelta(hours=1, microseconds=500)
    assignment = await store.add_assignment(Assignment.decide(exp, "u1", at))
    await store.add_events(
        EventBatch.of([
            Event(exp.id, "u1", "buy", at - timedelta(microseconds=1), 100.0),
            Event(exp.id, "u1", "buy", at, 2.0),
            Event(exp.id, "u1", "buy", at + timedelta(microseconds=1), 3.0),
        ])
    )
    agg = (await store.variant_aggregates(exp, ResultQuery(primary_event_type="buy")))[assignment.variant_id]
    assert (agg.users, agg.events, agg.primary.events, agg.primary.value_sum, agg.primary.value_sum_squares) == (
        1, 2, 2, 5.0, 25.0,
    )


async def test_aggregates_equal_an_independent_computation(store: Store) -> None:
    """A seeded random stream of assignments and events, and every kind of filter."""
    rng = random.Random(7)
    exp = experiment(shares=(40, 35, 25))
    await store.add_experiment(exp)
    assignments: dict[str, Assignment] = {}
    for i in range(60):
        user = f"u{i}"
        at = T0 + timedelta(days=rng.randrange(5), seconds=rng.randrange(86_400), microseconds=rng.randrange(10**6))
        if i < 50:  # the rest stay unassigned: their events are stored but never counted
            assignments[user] = await store.add_assignment(Assignment.decide(exp, user, at))
    events = []
    for _ in range(600):
        user = f"u{rng.randrange(60)}"
        when = T0 + timedelta(days=rng.randrange(6), seconds=rng.randrange(86_400))
        if user in assignments and rng.random() < 0.2:
            when = assignments[user].assigned_at  # events at exactly the assignment count
        value = rng.choice([None, round(rng.uniform(0, 50), 2)])
        events.append(Event(exp.id, user, rng.choice(["buy", "view", "click"]), when, value))
    await store.add_events(EventBatch.of(events))

    day = timedelta(days=1)
    queries = [
        ResultQuery(primary_event_type="buy"),
        ResultQuery(primary_event_type=None),
        ResultQuery(event_type="view", primary_event_type="buy"),
        ResultQuery(start=T0 + day, end=T0 + 3 * day - timedelta(microseconds=1), primary_event_type="click"),
        ResultQuery(end=T0 + 2 * day, event_type="buy", primary_event_type="buy"),
        ResultQuery(start=T0 + 4 * day),
    ]
    for query in queries:
        got = await store.variant_aggregates(exp, query)
        expected = reference(exp, assignments, events, query)
        for v in exp.variants:
            agg = got[v.id]
            want = expected[v.id]
            assert (agg.users, agg.events, agg.unique_users_with_events, dict(agg.event_counts),
                    agg.primary.events, agg.primary.users) == want[:6], query
            assert agg.primary.value_sum == pytest.approx(want[6], rel=1e-12)
            assert agg.primary.value_sum_squares == pytest.approx(want[7], rel=1e-12)


def reference(exp, assignments, events, q: ResultQuery) -> dict[str, tuple]:
    """The counting rule of API.md, written out plainly over raw events."""
    out = {}
    for v in exp.variants:
        members = {u: a for u, a in assignments.items() if a.variant_id == v.id}
        users = sum(1 for a in members.values() if q.end is None or a.assigned_at <= q.end)
        counted = [
            e for e in events
            if e.user_id in members and e.timestamp >= members[e.user_id].assigned_at
            and (q.start is None or e.timestamp >= q.start) and (q.end is None or e.timestamp <= q.end)
        ]
        shown = [e for e in counted if q.event_type in (None, e.event_type)]
        primary = [e for e in counted if q.primary_event_type in (None, e.event_type)]
        counts: dict[str, int] = defaultdict(int)
        for e in shown:
            counts[e.event_type] += 1
        totals: dict[str, float] = defaultdict(float)
        for e in primary:
            totals[e.user_id] += e.value or 0.0
        out[v.id] = (
            users, len(shown), len({e.user_id for e in shown}), dict(counts), len(primary),
            len(totals), sum(totals.values()), sum(t * t for t in totals.values()),
        )
    return out


async def test_ping(store: Store) -> None:
    assert await store.ping() is True
