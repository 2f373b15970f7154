"""Assignment: which variant a user sees, decided once and stored."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from application.experiments import GetExperiment
from application.ports import (
    Assignments,
    Cache,
    Clock,
)
from domain.assignment import Answer, Assignment, Exposure, HeldOut, standing, validate_user_id
from domain.eligibility import Gate, Reason
from domain.errors import ExperimentNotFound, FieldError, ValidationFailed, describe
from domain.experiment import Experiment

MAX_EXPOSURES = 10_000
"""Exposures in one report, as events in one batch."""


class AssignUser:
    """What a user is served. A QA override first; then the experiment's state: only a running
    experiment assigns (draft, paused and archived ones serve the control, a stopped one its
    winner, storing nothing); then a stored assignment, kept for good; then the gates of a
    running experiment (audience, coverage), and the hash decides once, for good."""

    def __init__(self, experiments: GetExperiment, store: Assignments, cache: Cache, clock: Clock) -> None:
        self._experiments, self._store, self._cache, self._clock = experiments, store, cache, clock

    async def __call__(
        self, experiment_id: str, user_id: str, attributes: Mapping[str, Any] | None = None
    ) -> Answer:
        validate_user_id(user_id, "user_id")
        experiment = await self._experiments(experiment_id)
        if (fixed := standing(experiment, user_id)) is not None:
            variant, reason = fixed
            if reason is Reason.FORCED:
                forced_at = experiment.override_for(user_id).forced_at  # type: ignore[union-attr]
                return Answer.served(experiment, user_id, variant.id, reason, forced_at, True)
            return Answer.served(experiment, user_id, variant.id, reason)
        assignment = await self._cache.get_assignment(experiment_id, user_id)
        if assignment is not None:
            return Answer.of(assignment)
        if (gate := Gate.of(experiment)) is not None:
            if (reason := gate.exclusion(user_id, attributes or {})) is not None:
                # Coverage only grows while an experiment runs, so whoever it leaves out was
                # never assigned; attributes may differ from call to call, so a user the
                # audience leaves out now may have been assigned before, and keeps that.
                stored = await self._store.get_assignment(experiment_id, user_id) if reason is Reason.AUDIENCE else None
                if stored is None:
                    if reason is Reason.HOLDOUT:  # the holdout's results count whoever it held out
                        await self._store.add_holdout_member(experiment.holdout.holdout_id, user_id, self._clock.now())  # type: ignore[union-attr]
                    return Answer.served(experiment, user_id, experiment.control.id, reason)
                await self._cache.set_assignment(stored)
                return Answer.of(stored)
        decided = Assignment.decide(experiment, user_id, self._clock.now(), attributes)
        # Get-or-create in one call: the store keeps the first assignment ever stored (of
        # racing ones too) and returns it, so a known user gets theirs back, not this one.
        assignment = await self._store.add_assignment(decided)
        await self._cache.set_assignment(assignment)
        return Answer.of(assignment)


@dataclass(frozen=True, slots=True)
class ExposureOutcome:
    accepted: int  # exposures in the batch
    assigned: int  # assignments stored by this batch
    already_assigned: int  # users whose assignment was stored before (theirs is kept)
    held_out: int  # users a holdout kept out


class RecordExposures:
    """Store the users a client served by local assignment, all or none: each exposure is
    judged again from the experiment as it stands (``Exposure.judged``), and a batch with one
    the service would not have decided alike stores nothing and names every such one. The
    first assignment of a user stays, as with the assignment route."""

    def __init__(
        self,
        experiments: GetExperiment,
        store: Assignments,
        clock: Clock,
        skew: timedelta,
    ) -> None:
        self._experiments, self._store, self._clock, self._skew = experiments, store, clock, skew

    async def __call__(self, exposures: Sequence[Exposure]) -> ExposureOutcome:
        """Raises ValidationFailed naming each bad exposure by its index: ``[3].variant_id``."""
        if not 1 <= len(exposures) <= MAX_EXPOSURES:
            raise ValidationFailed([FieldError("", f"must hold 1 to {MAX_EXPOSURES} exposures")])
        now = self._clock.now()
        found: dict[str, Experiment | None] = {}
        for experiment_id in {x.experiment_id for x in exposures}:
            try:
                found[experiment_id] = await self._experiments(experiment_id)
            except ExperimentNotFound:
                found[experiment_id] = None
        errors: list[FieldError] = []
        assignments: dict[tuple[str, str], Assignment] = {}
        held_out: list[HeldOut] = []
        for i, exposure in enumerate(exposures):
            if abs(exposure.at - now) > self._skew:
                errors.append(FieldError(f"[{i}].timestamp", f"is more than {describe(self._skew)} from the service's clock"))
                continue
            if (experiment := found[exposure.experiment_id]) is None:
                errors.append(FieldError(f"[{i}].experiment_id", "experiment does not exist"))
                continue
            judged = exposure.judged(experiment)
            if isinstance(judged, FieldError):
                errors.append(FieldError(f"[{i}].{judged.field}", judged.message))
            elif isinstance(judged, HeldOut):
                held_out.append(judged)
            else:  # the first of a user's exposures in the batch is the one kept
                assignments.setdefault((judged.experiment_id, judged.user_id), judged)
        if errors:
            raise ValidationFailed(errors)
        decided = list(assignments.values())
        stored = await self._store.add_exposures(decided, held_out)
        fresh = sum(s.assigned_at == d.assigned_at for s, d in zip(stored, decided, strict=True))
        return ExposureOutcome(len(exposures), fresh, len(decided) - fresh, len(held_out))
