"""The use cases: each one a callable object built once by the container."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from application.ports import Cache, Clock, IdSource, Store
from domain.assignment import Assignment, validate_user_id
from domain.errors import (
    EventsAhead,
    ExperimentNotFound,
    FieldError,
    UnknownExperiments,
    ValidationFailed,
)
from domain.event import NewEvents, batch_size_error, events_ahead
from domain.experiment import Experiment, VariantDraft
from domain.results import ExperimentResults, ResultCalculator, ResultQuery


class CreateExperiment:
    def __init__(self, store: Store, cache: Cache, clock: Clock, ids: IdSource) -> None:
        self._store, self._cache, self._clock, self._ids = store, cache, clock, ids

    async def __call__(
        self,
        *,
        name: str,
        variants: Sequence[VariantDraft],
        description: str | None = None,
        primary_event_type: str | None = None,
    ) -> Experiment:
        experiment = Experiment.create(
            name=name,
            description=description,
            primary_event_type=primary_event_type,
            variants=variants,
            new_id=self._ids.new_id,
            created_at=self._clock.now(),
        )
        await self._store.add_experiment(experiment)
        await self._cache.set_experiment(experiment)
        return experiment


class GetExperiment:
    """Read-through: experiments never change, so a cached one is never stale."""

    def __init__(self, store: Store, cache: Cache) -> None:
        self._store, self._cache = store, cache

    async def __call__(self, experiment_id: str) -> Experiment:
        experiment = await self._cache.get_experiment(experiment_id)
        if experiment is None:
            experiment = await self._store.get_experiment(experiment_id)
            if experiment is None:
                raise ExperimentNotFound(experiment_id)
            await self._cache.set_experiment(experiment)
        return experiment

    async def unknown(self, experiment_ids: Iterable[str]) -> set[str]:
        """Those of ``experiment_ids`` that name no experiment: the cached ones are known, and
        the store is asked about all the others at once, so the cost of a batch does not grow
        with the number of distinct (perhaps made-up) experiments it names."""
        uncached = set()
        for experiment_id in set(experiment_ids):
            if await self._cache.get_experiment(experiment_id) is None:
                uncached.add(experiment_id)
        if not uncached:
            return uncached
        return uncached - await self._store.existing_experiment_ids(uncached)


@dataclass(frozen=True, slots=True)
class ExperimentPage:
    items: list[Experiment]
    total: int


class ListExperiments:
    MAX_LIMIT = 500
    MAX_OFFSET = 2**53  # past what any store holds, and within every database's integers

    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(self, *, limit: int = 100, offset: int = 0) -> ExperimentPage:
        errors = []
        if not 1 <= limit <= self.MAX_LIMIT:
            errors.append(FieldError("limit", f"must be from 1 to {self.MAX_LIMIT}"))
        if not 0 <= offset <= self.MAX_OFFSET:
            errors.append(FieldError("offset", f"must be from 0 to {self.MAX_OFFSET}"))
        if errors:
            raise ValidationFailed(errors)
        items, total = await self._store.list_experiments(limit, offset)
        return ExperimentPage(items, total)


class AssignUser:
    """Get-or-create a user's assignment: the hash decides once, the store keeps it for good."""

    def __init__(self, experiments: GetExperiment, store: Store, cache: Cache, clock: Clock) -> None:
        self._experiments, self._store, self._cache, self._clock = experiments, store, cache, clock

    async def __call__(self, experiment_id: str, user_id: str) -> Assignment:
        validate_user_id(user_id, "user_id")
        # The experiment first, though a cached assignment would do without it: otherwise an
        # unknown experiment is a 404 or a 200 depending on what the cache holds. It is cached
        # in this process, so the lookup costs a dict read.
        experiment = await self._experiments(experiment_id)
        assignment = await self._cache.get_assignment(experiment_id, user_id)
        if assignment is not None:
            return assignment
        decided = Assignment.decide(experiment, user_id, self._clock.now())
        # Get-or-create in one call: the store keeps the first assignment ever stored (of
        # racing ones too) and returns it, so a known user gets theirs back, not this one.
        assignment = await self._store.add_assignment(decided)
        await self._cache.set_assignment(assignment)
        return assignment


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    accepted: int
    duplicates: int


class RecordEvents:
    """Store events all or none: each of an existing experiment, timed when received if the
    client did not say, and not stamped further ahead of the clock than ``future_skew``. The
    rules of each event alone were checked where the events came in."""

    DEFAULT_FUTURE_SKEW = timedelta(days=7)

    def __init__(
        self,
        experiments: GetExperiment,
        store: Store,
        clock: Clock,
        future_skew: timedelta = DEFAULT_FUTURE_SKEW,
    ) -> None:
        self._experiments, self._store, self._clock = experiments, store, clock
        self._future_skew = future_skew

    @property
    def future_skew(self) -> timedelta:
        return self._future_skew

    async def __call__(self, events: NewEvents) -> RecordOutcome:
        """Raises EventsAhead, naming every event stamped too far ahead, then UnknownExperiments,
        naming every event of an experiment that does not exist."""
        if (error := batch_size_error(len(events))) is not None:
            raise ValidationFailed([error])
        now = self._clock.now()
        if ahead := self.too_far_ahead(events.timestamps, now):
            raise EventsAhead(ahead, self._future_skew)
        experiment_ids = events.experiment_ids
        if unknown := await self.unknown_experiments(experiment_ids):
            raise UnknownExperiments(
                {i: x for i, x in enumerate(experiment_ids) if x in unknown}
            )
        batch = events.stamped(now)
        accepted = await self._store.add_events(batch)
        return RecordOutcome(accepted=accepted, duplicates=len(batch) - accepted)

    def too_far_ahead(self, timestamps: Iterable[int | None], now: datetime | None = None) -> list[int]:
        """The positions of the timestamps later than the clock plus the allowed skew."""
        return events_ahead(timestamps, now or self._clock.now(), self._future_skew)

    async def unknown_experiments(self, experiment_ids: Iterable[str]) -> set[str]:
        """Those of ``experiment_ids`` that name no experiment, in one store lookup at most."""
        return await self._experiments.unknown(experiment_ids)


class ComputeResults:
    def __init__(
        self, experiments: GetExperiment, store: Store, calculator: ResultCalculator
    ) -> None:
        self._experiments, self._store, self._calculator = experiments, store, calculator

    async def __call__(
        self,
        experiment_id: str,
        *,
        start: date | datetime | None = None,
        end: date | datetime | None = None,
        event_type: str | None = None,
        variant_id: str | None = None,
        primary_event_type: str | None = None,
    ) -> ExperimentResults:
        experiment = await self._experiments(experiment_id)
        query = ResultQuery.resolve(
            experiment,
            start=start,
            end=end,
            event_type=event_type,
            variant_id=variant_id,
            primary_event_type=primary_event_type,
        )
        aggregates = await self._store.variant_aggregates(experiment, query)
        return self._calculator.compute(experiment, query, aggregates)


class CheckHealth:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def __call__(self) -> bool:
        return await self._store.ping()
