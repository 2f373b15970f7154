"""Every store's totals for results over time (domain/series.py) equal the same totals walked
here from the assignments and events the test sent: folded in part, late events after a fold,
events before an assignment, assignments and events still in the tail, by day and by hour."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from adapters.memory.series import series_totals
from application.ports import Store
from domain.assignment import Assignment
from domain.event import Event, EventBatch
from domain.series import Period
from tests.factories import an_experiment

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize("period", list(Period))
async def test_series_totals_equal_a_walk_over_what_was_sent(store: Store, period: Period) -> None:
    rng = random.Random(19)
    exp = an_experiment("series", (34, 33, 33), primary="buy")
    await store.add_experiment(exp)
    assignments: dict[str, Assignment] = {}
    events: list[Event] = []

    async def assign(users: list[str], at: datetime) -> None:
        for user in users:
            assignments[user] = await store.add_assignment(Assignment.decide(exp, user, at))

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

    first = [f"a{i}" for i in range(30)]
    second = [f"b{i}" for i in range(30)]
    await assign(first, T0 + timedelta(hours=5))
    await send(first, 300, T0, 72)  # some before their assignment: not counted
    await fold()
    await assign(second, T0 + timedelta(days=2, hours=3))
    await send(first + second, 200, T0 + timedelta(days=1), 60)  # late ones among them
    await fold()
    await assign([f"c{i}" for i in range(10)], T0 + timedelta(days=3, minutes=7))  # in the tail
    await send(first + [f"c{i}" for i in range(10)], 100, T0 + timedelta(hours=2), 96)  # so are these

    got = await store.series_totals(exp, "buy", period)
    expected = series_totals(assignments, events, "buy", period)
    assert got.users == expected.users
    assert got.cells.keys() == expected.cells.keys()
    for key, cell in expected.cells.items():
        mine = got.cells[key]
        assert (mine.converters, mine.events) == (cell.converters, cell.events), key
        assert mine.value_sum == pytest.approx(cell.value_sum, rel=1e-9, abs=1e-9), key
        assert mine.value_squares == pytest.approx(cell.value_squares, rel=1e-9, abs=1e-6), key
    assert (await store.series_totals(exp, "never sent", period)).cells == {}
