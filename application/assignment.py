"""Assignment: which variant a user sees, decided once and stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from application.experiments import GetExperiment
from application.ports import (
    Assignments,
    Cache,
    Clock,
)
from domain.assignment import Answer, Assignment, validate_user_id
from domain.eligibility import NOT_STARTED, Gate, Reason
from domain.lifecycle import Status


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
        if (forced := experiment.override_for(user_id)) is not None:
            return Answer.served(experiment, user_id, forced.variant_id, Reason.FORCED, forced.forced_at, True)
        if experiment.status is not Status.RUNNING:
            if experiment.status is Status.STOPPED:
                return Answer.served(experiment, user_id, experiment.winner.id, Reason.WINNER)
            return Answer.served(experiment, user_id, experiment.control.id, NOT_STARTED[experiment.status])
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
        decided = Assignment.decide(experiment, user_id, self._clock.now())
        # Get-or-create in one call: the store keeps the first assignment ever stored (of
        # racing ones too) and returns it, so a known user gets theirs back, not this one.
        assignment = await self._store.add_assignment(decided)
        await self._cache.set_assignment(assignment)
        return Answer.of(assignment)
