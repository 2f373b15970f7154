"""The use cases: each one a callable object built once by the container."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from application.ports import Cache, Clock, IdSource, Store
from domain.assignment import Assignment, validate_user_id
from domain.errors import ExperimentNotFound, FieldError, ValidationFailed
from domain.event import MAX_BATCH, Event, EventBatch, TimestampOutOfRange, as_utc
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
        assignment = await self._cache.get_assignment(experiment_id, user_id)
        if assignment is not None:
            return assignment
        experiment = await self._experiments(experiment_id)
        decided = Assignment.decide(experiment, user_id, self._clock.now())
        # Get-or-create in one call: the store keeps the first assignment ever stored (of
        # racing ones too) and returns it, so a known user gets theirs back, not this one.
        assignment = await self._store.add_assignment(decided)
        await self._cache.set_assignment(assignment)
        return assignment


@dataclass(slots=True)  # not frozen: a frozen init costs a setattr call per field, per event
class EventDraft:
    """An event as a client sends it; the timestamp defaults to the time it is received."""

    experiment_id: str
    user_id: str
    event_type: str
    timestamp: datetime | None = None
    value: float | None = None
    properties: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    accepted: int
    duplicates: int


class RecordEvents:
    def __init__(self, experiments: GetExperiment, store: Store, clock: Clock) -> None:
        self._experiments, self._store, self._clock = experiments, store, clock

    async def __call__(
        self,
        drafts: Sequence[EventDraft | None],
        *,
        batch: bool,
        rejected: Sequence[FieldError] = (),
    ) -> RecordOutcome:
        """Validate every event first, then store all of them in one transaction, or none.

        A single event for an unknown experiment is ExperimentNotFound; in a batch it is one
        more invalid event, named by its index like the others. ``rejected`` are errors found
        before (events a caller could not even read, passed as None), reported with the rest.
        """
        if batch and not 1 <= len(drafts) <= MAX_BATCH:
            raise ValidationFailed(
                [FieldError("events", f"must hold 1 to {MAX_BATCH} events, got {len(drafts)}")]
            )
        received_at = self._clock.now()
        known = await self._known_experiments(
            {d.experiment_id for d in drafts if d is not None}, batch=batch
        )
        events: list[Event] = []
        errors: list[FieldError] = list(rejected)
        for i, draft in enumerate(drafts):
            if draft is None:
                continue
            prefix = f"events[{i}]." if batch else ""
            try:
                timestamp = received_at if draft.timestamp is None else as_utc(draft.timestamp)
            except TimestampOutOfRange as exc:
                errors.append(FieldError(f"{prefix}timestamp", str(exc)))
                timestamp = received_at
            event = Event(
                experiment_id=draft.experiment_id,
                user_id=draft.user_id,
                event_type=draft.event_type,
                timestamp=timestamp,
                value=draft.value,
                properties=draft.properties,
                event_id=draft.event_id,
            )
            errors.extend(event.errors(prefix))
            if draft.experiment_id not in known:
                errors.append(FieldError(f"{prefix}experiment_id", "experiment does not exist"))
            events.append(event)
        if errors:
            raise ValidationFailed(sorted(errors, key=_event_index))
        accepted = await self._store.add_events(EventBatch.of(events))
        return RecordOutcome(accepted=accepted, duplicates=len(events) - accepted)

    async def _known_experiments(self, experiment_ids: set[str], *, batch: bool) -> set[str]:
        known = set()
        for experiment_id in experiment_ids:
            try:
                await self._experiments(experiment_id)
            except ExperimentNotFound:
                if not batch:
                    raise
            else:
                known.add(experiment_id)
        return known


def _event_index(error: FieldError) -> int:
    head = error.field.partition("]")[0]
    return int(head[len("events[") :]) if head.startswith("events[") else -1


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
