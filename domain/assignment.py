"""A user's sticky place in an experiment: decided once by the hash, then stored for good."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.dimensions import dimension_values
from domain.eligibility import NOT_STARTED, Gate, Reason
from domain.errors import FieldError, ValidationFailed
from domain.experiment import Experiment, Variant
from domain.lifecycle import Status

MAX_USER_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    assigned_at: datetime
    # (dimension, value) of the experiment's dimensions the assigning call sent a value for
    # (domain/breakdown.py): stored with the assignment when it is made, never changed after.
    dimensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def decide(
        cls, experiment: Experiment, user_id: str, now: datetime, attributes: Mapping[str, Any] | None = None
    ) -> Assignment:
        validate_user_id(user_id, "user_id")
        variant = experiment.variant_for_user(user_id)
        dimensions = dimension_values(experiment.analysis.dimensions, attributes)
        return cls(experiment.id, user_id, variant.id, variant.name, now, dimensions)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a user is served: their stored assignment, or a variant served without one (the
    control while the experiment is not running or the user is not in it; the winner once it
    has stopped; a forced variant for a QA override). ``reason`` says which (Reason's values)."""

    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    assigned_at: datetime | None
    in_experiment: bool
    reason: str

    @classmethod
    def of(cls, assignment: Assignment) -> Answer:
        a = assignment
        return cls(a.experiment_id, a.user_id, a.variant_id, a.variant_name, a.assigned_at, True, "assigned")

    @classmethod
    def served(cls, experiment: Experiment, user_id: str, variant_id: str, reason: str,
               at: datetime | None = None, in_experiment: bool = False) -> Answer:
        variant = experiment.variant(variant_id)
        assert variant is not None
        return cls(experiment.id, user_id, variant.id, variant.name, at, in_experiment, reason)


def standing(experiment: Experiment, user_id: str) -> tuple[Variant, Reason] | None:
    """What the user is served whatever is stored: their QA override, else, unless the
    experiment is running, the variant its state serves (the winner once stopped, else the
    control). None when the experiment is running and the user is not forced."""
    if (forced := experiment.override_for(user_id)) is not None:
        variant = experiment.variant(forced.variant_id)
        assert variant is not None  # an override names a variant of its experiment
        return variant, Reason.FORCED
    if experiment.status is Status.RUNNING:
        return None
    if experiment.status is Status.STOPPED:
        return experiment.winner, Reason.WINNER
    return experiment.control, NOT_STARTED[experiment.status]


def serve(experiment: Experiment, user_id: str, attributes: Mapping[str, Any]) -> tuple[Variant, Reason]:
    """What the user is served, decided from the experiment alone, as a client library
    decides it locally (docs/api.md, Local assignment): ``standing``, then the gates (the
    control, with the reason it leaves the user out), then the hash. The service answers the
    same but for one case: a user it stored, whom the audience now leaves out, keeps the
    stored variant (application/assignment.py)."""
    if (fixed := standing(experiment, user_id)) is not None:
        return fixed
    if (gate := Gate.of(experiment)) is not None and (reason := gate.exclusion(user_id, attributes)) is not None:
        return experiment.control, reason
    return experiment.variant_for_user(user_id), Reason.ASSIGNED


def user_id_error(user_id: str, field: str) -> FieldError | None:
    if not 1 <= len(user_id) <= MAX_USER_ID_LENGTH:
        return FieldError(field, f"must be 1 to {MAX_USER_ID_LENGTH} characters")
    if "\x00" in user_id:  # no database stores it in text alike
        return FieldError(field, "must not contain the NUL character")
    return None


def validate_user_id(user_id: str, field: str) -> None:
    if (error := user_id_error(user_id, field)) is not None:
        raise ValidationFailed([error])


@dataclass(frozen=True, slots=True)
class HeldOut:
    """A user a holdout kept out of an experiment, first seen then."""

    holdout_id: str
    user_id: str
    seen_at: datetime


@dataclass(frozen=True, slots=True)
class Exposure:
    """A user served by a client's local assignment (docs/api.md, Local assignment), reported so
    that the service stores what it would have stored had it been asked: the assignment, at the
    moment the user was served, or the holdout that kept them out."""

    experiment_id: str
    user_id: str
    variant_id: str
    at: datetime  # when the user was served, by the client's clock
    attributes: Mapping[str, Any] | None = None

    def judged(self, experiment: Experiment) -> Assignment | HeldOut | FieldError:
        """What to store, or why not (a field and a message): the service decides again, from
        the experiment as it stands, and keeps only what it would have decided itself. The
        moment is the exposure's own, but never before the experiment started: a client's
        clock a little behind must not date an assignment before its experiment ran."""
        if (error := user_id_error(self.user_id, "user_id")) is not None:
            return error
        variant, reason = serve(experiment, self.user_id, self.attributes or {})
        at = max(self.at, experiment.started_at) if experiment.started_at is not None else self.at
        if reason is Reason.ASSIGNED:
            if variant.id != self.variant_id:
                return FieldError("variant_id", f"the service assigns this user to variant {variant.id} ({variant.name})")
            dimensions = dimension_values(experiment.analysis.dimensions, self.attributes)
            return Assignment(experiment.id, self.user_id, variant.id, variant.name, at, dimensions)
        if reason is Reason.HOLDOUT and experiment.holdout is not None:
            if self.variant_id != variant.id:
                return FieldError("variant_id", f"the holdout keeps this user out: served the control, {variant.id}")
            return HeldOut(experiment.holdout.holdout_id, self.user_id, at)
        return FieldError("user_id", f"is not in the experiment ({reason.value}): {_NOT_STORED[reason]}")


_NOT_STORED = {
    Reason.FORCED: "a user forced by a QA override is never stored",
    Reason.WINNER: "the experiment has stopped",
    Reason.DRAFT: "the experiment is a draft",
    Reason.PAUSED: "the experiment is paused",
    Reason.ARCHIVED: "the experiment is archived",
    Reason.AUDIENCE: "the attributes sent do not match its audience",
    Reason.LAYER: "the user's layer bucket is another experiment's",
    Reason.COVERAGE: "the user is outside its coverage",
}
