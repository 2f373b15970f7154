"""Every store's breakdown totals (domain/breakdown.py) equal the same totals walked here from
the assignments and events the test sent: users with and without a value, folded in part, late
events after a fold, events before an assignment, assignments and events still in the tail, per
event type and for every type; and the same again after a rebuild."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from application.ports import Store
from domain.assignment import Assignment
from domain.breakdown import BreakdownTotals
from domain.event import Event, EventBatch
from domain.experiment import Experiment
from tests.factories import an_experiment

T0 = datetime(2026, 11, 1, tzinfo=UTC)
PLATFORMS = ["ios", "android", "web"]


def walked(exp: Experiment, sent: dict[str, tuple[str, datetime, dict]], events: list[Event],
           dimension: str, event_type: str | None) -> dict:
    """{None: overall, value: slice} -> variant -> (users, events, converters, Σ value, Σ value²)."""
    per_user: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for e in events:
        if e.user_id in sent and e.timestamp >= sent[e.user_id][1] and event_type in (None, e.event_type):
            per_user[e.user_id][0] += 1
            per_user[e.user_id][1] += e.value or 0.0
    out: dict = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0.0, 0.0]))
    for user, (variant, _, values) in sent.items():
        for key in {None, values.get(dimension)} if values.get(dimension) is not None else {None}:
            cell = out[key][variant]
            cell[0] += 1
            if user in per_user:
                n, v = per_user[user]
                cell[1] += n
                cell[2] += 1
                cell[3] += v
                cell[4] += v * v
    return out


def assert_equal(got: BreakdownTotals, expected: dict) -> None:
    def check(cells, want) -> None:
        assert {v for v, c in cells.items() if c.users} == {v for v, w in want.items() if w[0]}
        for variant, (users, n, converters, s, s2) in want.items():
            c = cells[variant]
            assert (c.users, c.primary.events, c.primary.users) == (users, n, converters), variant
            assert c.primary.value_sum == pytest.approx(s, rel=1e-9, abs=1e-9)
            assert c.primary.value_sum_squares == pytest.approx(s2, rel=1e-9, abs=1e-6)

    check(got.overall, expected[None])
    assert {k for k, cells in got.by_value.items() if any(c.users for c in cells.values())} == set(expected) - {None}
    for value, want in expected.items():
        if value is not None:
            check(got.by_value[value], want)


async def test_breakdown_totals_equal_a_walk_over_what_was_sent(store: Store) -> None:
    rng = random.Random(23)
    exp = an_experiment("sliced", (34, 33, 33), primary="buy", analysis={"dimensions": ["platform", "tier"]})
    await store.add_experiment(exp)
    sent: dict[str, tuple[str, datetime, dict]] = {}
    events: list[Event] = []

    async def assign(users: list[str], at: datetime) -> None:
        for user in users:
            values = {}
            if rng.random() < 0.85:  # the rest arrive without the attribute: unknown
                values["platform"] = rng.choice(PLATFORMS)
            values["tier"] = float(rng.randrange(3))  # stored as "0", "1", "2"
            stored = await store.add_assignment(Assignment.decide(exp, user, at, values))
            sent.setdefault(user, (stored.variant_id, stored.assigned_at,
                                   {k: (v if isinstance(v, str) else str(int(v))) for k, v in values.items()}))

    async def send(users: list[str], count: int, earliest: datetime, hours: int) -> None:
        batch = [
            Event(exp.id, rng.choice(users), rng.choice(["buy", "buy", "view"]),
                  earliest + timedelta(hours=rng.randrange(hours), seconds=rng.randrange(3600)),
                  rng.choice([None, round(rng.uniform(0, 40), 2)]))
            for _ in range(count)
        ]
        events.extend(batch)
        await store.add_events(EventBatch.of(batch))

    async def fold() -> None:
        if hasattr(store, "fold"):
            await store.fold()

    first = [f"a{i}" for i in range(40)]
    second = [f"b{i}" for i in range(40)]
    await assign(first, T0 + timedelta(hours=5))
    await assign(first[:5], T0 + timedelta(hours=9))  # again, with other values: the first are kept
    await send(first, 300, T0, 72)  # some before their assignment: not counted
    await fold()
    await assign(second, T0 + timedelta(days=2, hours=3))
    await send(first + second, 200, T0 + timedelta(days=1), 60)  # late ones among them
    await fold()
    await assign([f"c{i}" for i in range(10)], T0 + timedelta(days=3, minutes=7))  # in the tail
    await send(first + [f"c{i}" for i in range(10)], 100, T0 + timedelta(hours=2), 96)  # so are these

    for dimension in ("platform", "tier"):
        for event_type in ("buy", None):
            got = await store.breakdown_totals(exp, dimension, event_type)
            assert_equal(got, walked(exp, sent, events, dimension, event_type))
    await store.rebuild_aggregates()
    got = await store.breakdown_totals(exp, "platform", "buy")
    assert_equal(got, walked(exp, sent, events, "platform", "buy"))
    nothing = await store.breakdown_totals(exp, "never named", "buy")
    assert all(c.users == 0 for cells in nothing.by_value.values() for c in cells.values())
    assert sum(c.users for c in nothing.overall.values()) == len(sent)


async def test_dimensions_of_an_experiment_without_them_are_not_stored(store: Store) -> None:
    exp = an_experiment("unsliced")
    await store.add_experiment(exp)
    await store.add_assignment(Assignment.decide(exp, "u1", T0, {"platform": "ios"}))
    got = await store.breakdown_totals(exp, "platform", "buy")
    assert got.by_value == {} or all(c.users == 0 for cells in got.by_value.values() for c in cells.values())
    assert sum(c.users for c in got.overall.values()) == 1
