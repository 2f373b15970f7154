"""The use cases: each one a callable object built once by the container."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from application.ports import Cache, Clock, IdSource, Store
from domain.assignment import Answer, Assignment, validate_user_id
from domain.eligibility import NOT_STARTED, Gate, Reason
from domain.lifecycle import Status
from domain.errors import (
    EventsAhead,
    ExperimentNotFound,
    FieldError,
    UnknownExperiments,
    ValidationFailed,
)
from domain.event import NewEvents, batch_size_error, events_ahead
from domain.experiment import BUCKETS, Experiment, VariantDraft
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
        status: str | None = None,
        coverage: float | None = None,
        audience: Any = None,
    ) -> Experiment:
        experiment = Experiment.create(
            name=name,
            description=description,
            primary_event_type=primary_event_type,
            variants=variants,
            new_id=self._ids.new_id,
            created_at=self._clock.now(),
            status=status,
            coverage=coverage,
            audience=audience,
        )
        await self._store.add_experiment(experiment)
        await self._cache.set_experiment(experiment)
        return experiment


class ChangeExperiment:
    """Apply a change to an experiment, store it if the experiment did not change meanwhile
    (ConcurrentChange otherwise: the client reads it again and retries), and make every
    process forget its copy (within the cache's bound). Returns the experiment and the diff."""

    def __init__(self, store: Store, cache: Cache, clock: Clock, ids: IdSource) -> None:
        self._store, self._cache, self._clock, self._ids = store, cache, clock, ids

    async def __call__(self, experiment_id: str, **changes: Any) -> tuple[Experiment, dict[str, Any]]:
        current = await self._current(experiment_id)
        changed, diff = current.changed(self._clock.now(), self._ids.new_id, **changes)
        if diff:
            await self._save(current, changed)
        return changed, diff

    async def force(self, experiment_id: str, user_id: str, variant_id: str) -> Experiment:
        validate_user_id(user_id, "user_id")
        current = await self._current(experiment_id)
        changed = current.forced(user_id, variant_id, self._clock.now())
        await self._save(current, changed)
        return changed

    async def unforce(self, experiment_id: str, user_id: str) -> bool:
        """False when the user was not forced."""
        current = await self._current(experiment_id)
        changed = current.unforced(user_id)
        if changed is current:
            return False
        await self._save(current, changed)
        return True

    async def _current(self, experiment_id: str) -> Experiment:
        # From the store, not a cache: a change applies to the latest version.
        experiment = await self._store.get_experiment(experiment_id)
        if experiment is None:
            raise ExperimentNotFound(experiment_id)
        return experiment

    async def _save(self, current: Experiment, changed: Experiment) -> None:
        await self._store.update_experiment(changed, expected_version=current.version)
        await self._cache.forget_experiment(changed.id)


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
    """What a user is served. A QA override first; then the experiment's state: only a running
    experiment assigns (draft, paused and archived ones serve the control, a stopped one its
    winner, storing nothing); then a stored assignment, kept for good; then the gates of a
    running experiment (audience, coverage), and the hash decides once, for good."""

    def __init__(self, experiments: GetExperiment, store: Store, cache: Cache, clock: Clock) -> None:
        self._experiments, self._store, self._cache, self._clock = experiments, store, cache, clock

    async def __call__(
        self, experiment_id: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Answer:
        validate_user_id(user_id, "user_id")
        experiment = await self._experiments(experiment_id)
        if (forced := experiment.override_for(user_id)) is not None:
            return Answer.served(experiment, user_id, forced.variant_id, Reason.FORCED, forced.forced_at, True)
        if experiment.status is not Status.RUNNING:
            if experiment.status is Status.STOPPED:
                return Answer.served(experiment, user_id, experiment.winner.id, Reason.WINNER)
            return Answer.served(experiment, user_id, experiment.control.id, NOT_STARTED[experiment.status])
        assignment = await self._cache.get_assignment(experiment_id, user_id)
        if assignment is not None:
            return Answer.of(assignment)
        if experiment.coverage_basis_points < BUCKETS or experiment.audience is not None:
            gate = Gate(experiment.id, experiment.coverage_basis_points, experiment.audience)
            if (reason := gate.exclusion(user_id, attributes or {})) is not None:
                # Coverage only grows while an experiment runs, so whoever it leaves out was
                # never assigned; attributes may differ from call to call, so a user the
                # audience leaves out now may have been assigned before, and keeps that.
                stored = await self._store.get_assignment(experiment_id, user_id) if reason is Reason.AUDIENCE else None
                if stored is None:
                    return Answer.served(experiment, user_id, experiment.control.id, reason)
                await self._cache.set_assignment(stored)
                return Answer.of(stored)
        decided = Assignment.decide(experiment, user_id, self._clock.now())
        # Get-or-create in one call: the store keeps the first assignment ever stored (of
        # racing ones too) and returns it, so a known user gets theirs back, not this one.
        assignment = await self._store.add_assignment(decided)
        await self._cache.set_assignment(assignment)
        return Answer.of(assignment)


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
