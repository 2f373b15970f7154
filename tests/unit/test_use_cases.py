"""The use cases on the in-memory adapters, with a clock and ids the tests control."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from adapters.memory.cache import MemoryCache
from adapters.memory.store import MemoryStore
from application.use_cases import (
    AssignUser,
    CheckHealth,
    ComputeResults,
    CreateExperiment,
    EventDraft,
    GetExperiment,
    ListExperiments,
    RecordEvents,
)
from domain.errors import DuplicateExperimentName, ExperimentNotFound, FieldError, ValidationFailed
from domain.experiment import VariantDraft
from domain.results import ResultCalculator
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
        self.results = ComputeResults(get, self.store, ResultCalculator())
        self.health = CheckHealth(self.store)

    async def experiment(self, name: str = "exp", shares=(50, 50), primary: str | None = "buy"):
        return await self.create(
            name=name,
            primary_event_type=primary,
            variants=[VariantDraft(f"v{i}", s) for i, s in enumerate(shares)],
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


async def test_events_dedupe_by_event_id(svc: Service) -> None:
    experiment = await svc.experiment()
    draft = EventDraft(experiment.id, "u1", "buy", event_id="e1")
    outcome = await svc.record([draft, draft, EventDraft(experiment.id, "u1", "view")], batch=True)
    assert (outcome.accepted, outcome.duplicates) == (2, 1)
    again = await svc.record([draft], batch=False)
    assert (again.accepted, again.duplicates) == (0, 1)


async def test_a_bad_event_rejects_the_whole_batch_naming_each_index(svc: Service) -> None:
    experiment = await svc.experiment()
    await svc.assign(experiment.id, "u1")
    drafts = [
        EventDraft(experiment.id, "u1", "buy"),
        EventDraft(experiment.id, "u1", ""),
        EventDraft("nope", "u1", "buy"),
        None,
        EventDraft(experiment.id, "u1", "buy", value=float("inf")),
    ]
    with pytest.raises(ValidationFailed) as exc:
        await svc.record(drafts, batch=True, rejected=[FieldError("events[3].user_id", "bad")])
    assert [e.field for e in exc.value.errors] == [
        "events[1].event_type", "events[2].experiment_id", "events[3].user_id", "events[4].value",
    ]
    assert (await svc.results(experiment.id)).total_events == 0


async def test_single_event_for_unknown_experiment_is_not_found(svc: Service) -> None:
    with pytest.raises(ExperimentNotFound):
        await svc.record([EventDraft("nope", "u1", "buy")], batch=False)


@pytest.mark.parametrize("size", [0, 10_001])
async def test_batch_size_bounds(svc: Service, size: int) -> None:
    experiment = await svc.experiment()
    with pytest.raises(ValidationFailed):
        await svc.record([EventDraft(experiment.id, "u", "buy")] * size, batch=True)


async def test_properties_size_limit(svc: Service) -> None:
    experiment = await svc.experiment()
    big = '{"k":"' + "x" * (64 * 1024) + '"}'
    with pytest.raises(ValidationFailed):
        await svc.record([EventDraft(experiment.id, "u", "buy", properties=big)], batch=False)


async def test_events_count_from_the_assignment_on(svc: Service) -> None:
    experiment = await svc.experiment()
    await svc.record([EventDraft(experiment.id, "u1", "buy")], batch=False)  # before: not counted
    svc.clock.advance(seconds=1)
    assigned = await svc.assign(experiment.id, "u1")
    at = assigned.assigned_at
    await svc.record(
        [
            EventDraft(experiment.id, "u1", "buy", timestamp=at, value=2.0),  # equal: counted
            EventDraft(experiment.id, "u1", "buy", timestamp=at - timedelta(microseconds=1)),
            EventDraft(experiment.id, "stranger", "buy"),  # never assigned: stored, not counted
        ],
        batch=True,
    )
    results = await svc.results(experiment.id)
    row = next(v for v in results.variants if v.variant.id == assigned.variant_id)
    assert (row.users, row.events, row.primary_event_count, row.value_sum) == (1, 1, 1, 2.0)


async def test_default_timestamp_is_the_time_received(svc: Service) -> None:
    experiment = await svc.experiment()
    await svc.assign(experiment.id, "u1")
    svc.clock.advance(seconds=5)
    await svc.record([EventDraft(experiment.id, "u1", "buy")], batch=False)
    received = svc.clock.now()
    results = await svc.results(experiment.id, start=received, end=received)
    assert results.total_events == 1


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
