"""The use cases on the in-memory adapters, with a clock and ids the tests control."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from adapters.memory.cache import MemoryCache
from adapters.memory.store import MemoryStore
from application.assignment import AssignUser
from application.experiments import CreateExperiment, GetExperiment, ListExperiments
from application.health import CheckHealth
from application.layers import LayersAndHoldouts
from application.results import ComputeResults, ResultsSlots
from application.tracking import RecordEvents
from domain.assignment import Assignment
from domain.errors import (
    DuplicateExperimentName,
    EventsAhead,
    ExperimentNotFound,
    UnknownExperiments,
    ValidationFailed,
)
from domain.event import NewEvents, to_micros
from domain.experiment import VariantDraft
from domain.results import ResultCalculator
from tests.factories import variant_drafts
from tests.fakes import FakeClock, SequentialIds


class Service:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.store = MemoryStore()
        self.cache = MemoryCache()
        get = GetExperiment(self.store, self.cache)
        self.create = CreateExperiment(self.store, self.cache, self.clock, SequentialIds())
        self.get = get
        self.list = ListExperiments(self.store)
        self.assign = AssignUser(get, self.store, self.cache, self.clock)
        self.record = RecordEvents(get, self.store, self.clock)
        self.results = ComputeResults(get, self.store, ResultCalculator(), ResultsSlots(4, 0.5))
        self.health = CheckHealth(self.store)

    async def experiment(self, name: str = "exp", shares=(50, 50), primary: str | None = "buy"):
        return await self.create(
            name=name,
            actor="tester",
            primary_event_type=primary,
            variants=variant_drafts(shares),
        )


@pytest.fixture
def svc() -> Service:
    return Service()


async def test_create_get_and_list_newest_first(svc: Service) -> None:
    first = await svc.experiment("a")
    svc.clock.advance(seconds=1)
    second = await svc.experiment("b")
    assert await svc.get(first.id) == first
    page = await svc.list(limit=1, offset=0)
    assert (page.items, page.total) == ([second], 2)
    assert (await svc.list(limit=5, offset=1)).items == [first]


async def test_duplicate_names_conflict(svc: Service) -> None:
    await svc.experiment("a")
    with pytest.raises(DuplicateExperimentName):
        await svc.experiment("a")


async def test_unknown_experiment(svc: Service) -> None:
    with pytest.raises(ExperimentNotFound):
        await svc.get("nope")
    with pytest.raises(ExperimentNotFound):
        await svc.assign("nope", "u1")


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (501, 0), (10, -1)])
async def test_list_bounds(svc: Service, limit: int, offset: int) -> None:
    with pytest.raises(ValidationFailed):
        await svc.list(limit=limit, offset=offset)


async def test_assignment_is_sticky_and_survives_a_cold_cache(svc: Service) -> None:
    experiment = await svc.experiment()
    first = await svc.assign(experiment.id, "u1")
    assert first.variant_id == experiment.variant_for_user("u1").id
    svc.clock.advance(hours=1)
    assert await svc.assign(experiment.id, "u1") == first
    svc.cache = MemoryCache()
    cold = AssignUser(GetExperiment(svc.store, svc.cache), svc.store, svc.cache, svc.clock)
    assert await cold(experiment.id, "u1") == first


async def test_a_cached_assignment_of_an_unknown_experiment_is_still_a_404(svc: Service) -> None:
    """The answer does not depend on what the cache holds: the experiment is looked up first."""
    exp = await svc.experiment()
    assignment = await svc.assign(exp.id, "u1")
    ghost = Assignment("no-such-experiment", "u1", assignment.variant_id, "v0", svc.clock.now())
    await svc.cache.set_assignment(ghost)
    with pytest.raises(ExperimentNotFound):
        await svc.assign("no-such-experiment", "u1")


async def test_concurrent_first_calls_store_one_assignment(svc: Service) -> None:
    experiment = await svc.experiment()
    answers = await asyncio.gather(*(svc.assign(experiment.id, "u1") for _ in range(50)))
    assert len(set(answers)) == 1
    results = await svc.results(experiment.id)
    assert results.total_users == 1


async def test_user_id_length(svc: Service) -> None:
    experiment = await svc.experiment()
    with pytest.raises(ValidationFailed):
        await svc.assign(experiment.id, "x" * 257)
    assert (await svc.assign(experiment.id, "x" * 256)).user_id == "x" * 256


def events(*rows: tuple, **columns: list) -> NewEvents:
    """NewEvents from (experiment_id, user_id, event_type[, timestamp]) rows; other columns
    default to None."""
    n = len(rows)
    return NewEvents(
        experiment_ids=[r[0] for r in rows],
        user_ids=[r[1] for r in rows],
        event_types=[r[2] for r in rows],
        timestamps=[to_micros(r[3]) if len(r) > 3 else None for r in rows],
        values=columns.get("values", [None] * n),
        properties=columns.get("properties", [None] * n),
        event_ids=columns.get("event_ids", [None] * n),
    )


async def test_events_dedupe_by_event_id(svc: Service) -> None:
    experiment = await svc.experiment()
    x = experiment.id
    batch = events((x, "u1", "buy"), (x, "u1", "buy"), (x, "u1", "view"), event_ids=["e1", "e1", None])
    outcome = await svc.record(batch)
    assert (outcome.accepted, outcome.duplicates) == (2, 1)
    again = await svc.record(events((x, "u1", "buy"), event_ids=["e1"]))
    assert (again.accepted, again.duplicates) == (0, 1)


async def test_unknown_experiments_are_named_by_position_and_nothing_is_stored(svc: Service) -> None:
    experiment = await svc.experiment()
    await svc.assign(experiment.id, "u1")
    batch = events(
        (experiment.id, "u1", "buy"), ("nope", "u1", "buy"), (experiment.id, "u1", "buy"), ("gone", "u1", "x")
    )
    with pytest.raises(UnknownExperiments) as exc:
        await svc.record(batch)
    assert exc.value.experiment_ids == {1: "nope", 3: "gone"}
    assert (await svc.results(experiment.id)).total_events == 0
    assert await svc.record.unknown_experiments(["nope", experiment.id, "nope", "gone"]) == {"nope", "gone"}
    assert await svc.record.unknown_experiments([]) == set()


@pytest.mark.parametrize("size", [0, 10_001])
async def test_batch_size_bounds(svc: Service, size: int) -> None:
    experiment = await svc.experiment()
    with pytest.raises(ValidationFailed) as exc:
        await svc.record(events(*[(experiment.id, "u", "buy")] * size))
    # About the whole batch: the core names no wire field (the HTTP layer says "events").
    assert [e.field for e in exc.value.errors] == [""]
    assert "1 to 10000 events" in exc.value.errors[0].message


async def test_events_count_from_the_assignment_on(svc: Service) -> None:
    experiment = await svc.experiment()
    await svc.record(events((experiment.id, "u1", "buy")))  # received before: not counted
    svc.clock.advance(seconds=1)
    assigned = await svc.assign(experiment.id, "u1")
    at = assigned.assigned_at
    await svc.record(
        events(
            (experiment.id, "u1", "buy", at),  # equal: counted
            (experiment.id, "u1", "buy", at - timedelta(microseconds=1)),
            (experiment.id, "stranger", "buy"),  # never assigned: stored, not counted
            values=[2.0, None, None],
        )
    )
    results = await svc.results(experiment.id)
    row = next(v for v in results.variants if v.variant.id == assigned.variant_id)
    assert (row.users, row.events, row.primary_event_count, row.value_sum) == (1, 1, 1, 2.0)


async def test_default_timestamp_is_the_time_received(svc: Service) -> None:
    experiment = await svc.experiment()
    await svc.assign(experiment.id, "u1")
    svc.clock.advance(seconds=5)
    sent_at = datetime(2026, 11, 28, 13, 0, 0, 7, tzinfo=UTC)
    await svc.record(events((experiment.id, "u1", "buy"), (experiment.id, "u1", "buy", sent_at)))
    received = svc.clock.now()
    assert (await svc.results(experiment.id, start=received, end=received)).total_events == 1
    assert (await svc.results(experiment.id, start=sent_at, end=sent_at)).total_events == 1


async def test_results_reject_bad_filters(svc: Service) -> None:
    experiment = await svc.experiment()
    with pytest.raises(ValidationFailed):
        await svc.results(experiment.id, variant_id="nope")
    with pytest.raises(ValidationFailed):
        await svc.results(
            experiment.id,
            start=datetime(2026, 2, 1, tzinfo=UTC),
            end=datetime(2026, 1, 1, tzinfo=UTC),
        )


async def test_health(svc: Service) -> None:
    assert await svc.health() is True


class CountingStore(MemoryStore):
    """The memory store, counting the experiment lookups a use case makes of it."""

    def __init__(self) -> None:
        super().__init__()
        self.single_lookups = 0
        self.many_lookups = 0

    async def get_experiment(self, experiment_id: str):
        self.single_lookups += 1
        return await super().get_experiment(experiment_id)

    async def existing_experiment_ids(self, experiment_ids):
        self.many_lookups += 1
        return await super().existing_experiment_ids(experiment_ids)


async def test_a_batch_naming_thousands_of_unknown_experiments_costs_one_store_lookup() -> None:
    store = CountingStore()
    cache = MemoryCache()
    clock = FakeClock()
    create = CreateExperiment(store, cache, clock, SequentialIds())
    known = await create(name="k", variants=[VariantDraft("a", 50), VariantDraft("b", 50)], actor="test")
    record = RecordEvents(GetExperiment(store, cache), store, clock)
    ids = [f"nope-{i}" for i in range(9_999)] + [known.id]
    events = NewEvents(ids, ["u"] * len(ids), ["view"] * len(ids), [None] * len(ids),
                       [None] * len(ids), [None] * len(ids), [None] * len(ids))
    with pytest.raises(UnknownExperiments) as raised:
        await record(events)
    assert len(raised.value.experiment_ids) == 9_999
    assert (store.single_lookups, store.many_lookups) == (0, 1)
    # An experiment known to the cache costs no store lookup at all.
    assert await record.unknown_experiments([known.id]) == set()
    assert store.many_lookups == 1


async def test_events_beyond_the_clock_skew_are_refused_by_position(svc: Service) -> None:
    experiment = await svc.experiment()
    now = to_micros(svc.clock.now())
    week = 7 * 86400 * 1_000_000
    stamps = [now + week, now + week + 1, None, now - week * 100, now + week * 1000]
    n = len(stamps)
    events = NewEvents([experiment.id] * n, ["u"] * n, ["view"] * n, stamps, [None] * n, [None] * n, [None] * n)
    with pytest.raises(EventsAhead) as raised:
        await svc.record(events)
    assert raised.value.positions == [1, 4]
    assert raised.value.skew == timedelta(days=7)
    svc.clock.advance(seconds=1)  # a second later the first one beyond is within the skew
    assert svc.record.too_far_ahead(stamps) == [4]


class HoldoutOutcomes(MemoryStore):
    """Answers the holdout's outcomes it is given, whatever the assignments."""

    def __init__(self, held: tuple[int, int], exposed: tuple[int, int]) -> None:
        super().__init__()
        self.outcomes = (*held, *exposed)

    async def holdout_outcomes(self, holdout_id: str, event_type: str) -> tuple[int, int, int, int]:
        return self.outcomes  # type: ignore[return-value]


async def test_holdout_results_test_the_exposed_against_the_held_out() -> None:
    store = HoldoutOutcomes(held=(40, 11), exposed=(360, 94))
    layers = LayersAndHoldouts(store, FakeClock(), SequentialIds(), ResultsSlots(4, 0.5))
    holdout = await layers.create_holdout("global", 10)
    result = await layers.holdout_results(holdout.id, "buy")
    assert (result.held_out.n, result.held_out.x, result.exposed.n, result.exposed.x) == (40, 11, 360, 94)
    z, p = proportions_ztest([94, 11], [360, 40])
    low, high = confint_proportions_2indep(94, 360, 11, 40, method="newcomb", compare="diff")
    test = result.test
    assert test.statistic == pytest.approx(float(z), rel=1e-9)
    assert test.p_value == pytest.approx(float(p), rel=1e-9)
    assert test.interval is not None
    assert (test.interval.lower, test.interval.upper) == pytest.approx((float(low), float(high)), rel=1e-9)
    assert test.absolute_lift == pytest.approx(94 / 360 - 11 / 40, rel=1e-12)
    assert test.relative_lift == pytest.approx((94 / 360 - 11 / 40) / (11 / 40), rel=1e-12)


async def test_all_experiments_holds_each_once_when_one_is_created_while_it_pages() -> None:
    from application.experiments import AllExperiments
    from tests.factories import an_experiment

    store = MemoryStore()
    for i in range(5):
        await store.add_experiment(an_experiment(f"e{i}", ids=f"x{i}", created_at=datetime(2026, 11, 1, i, tzinfo=UTC)))
    reads = []
    listing = store.list_experiments

    async def list_then_create(limit: int, offset: int):  # noqa: ANN202
        reads.append(offset)
        page = await listing(limit, offset)
        if len(reads) == 1:  # a new experiment arrives between the first page and the second
            await store.add_experiment(an_experiment("late", ids="late", created_at=datetime(2026, 11, 2, tzinfo=UTC)))
        return page

    store.list_experiments = list_then_create  # type: ignore[method-assign]
    paging = AllExperiments(store)
    paging.PAGE = 2
    found = await paging()
    assert len(reads) > 2
    # The pages shifted: the one read next repeats e3. Each once; "late" is the next read's.
    assert sorted(e.name for e in found) == ["e0", "e1", "e2", "e3", "e4"]


async def test_results_without_the_scorecard_read_no_metric_and_score_none(svc: Service) -> None:
    """For a caller that needs the plain figures (POST /power): a capped metric's per-user
    figures and the metrics' totals are not read, no scorecard is built; the plain figures
    are the same."""
    metrics = [
        {"name": "buyers", "kind": "conversion", "event_type": "buy", "role": "primary"},
        {"name": "revenue", "kind": "value", "event_type": "buy", "role": "secondary", "cap": {"percentile": 0.99}},
        {"name": "per view", "kind": "ratio", "event_type": "buy", "denominator_event_type": "view",
         "role": "secondary"},
    ]
    exp = await svc.create(name="scored", actor="tester", primary_event_type="buy",
                           variants=variant_drafts((50, 50)), analysis={"metrics": metrics})
    seen = []
    read = svc.store.variant_aggregates

    async def recording(experiment, query):  # noqa: ANN001, ANN202
        seen.append(query)
        return await read(experiment, query)

    svc.store.variant_aggregates = recording  # type: ignore[method-assign]
    full = await svc.results(exp.id)
    plain = await svc.results(exp.id, scorecard=False)
    assert seen[0].capped_types and seen[0].metric_types and seen[0].pairs
    assert (seen[1].capped_types, seen[1].metric_types, seen[1].pairs) == ((), (), ())
    assert full.scorecard is not None and plain.scorecard is None
    assert plain.variants == full.variants and plain.comparisons == full.comparisons
