"""A user's sticky place in an experiment: decided once by the hash, then stored for good."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.errors import FieldError, ValidationFailed
from domain.experiment import Experiment

MAX_USER_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment_id: str
    user_id: str
    variant_id: str
    variant_name: str
    assigned_at: datetime

    @classmethod
    def decide(cls, experiment: Experiment, user_id: str, now: datetime) -> Assignment:
        validate_user_id(user_id, "user_id")
        variant = experiment.variant_for_user(user_id)
        return cls(experiment.id, user_id, variant.id, variant.name, now)


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


def user_id_error(user_id: str, field: str) -> FieldError | None:
    if not 1 <= len(user_id) <= MAX_USER_ID_LENGTH:
        return FieldError(field, f"must be 1 to {MAX_USER_ID_LENGTH} characters")
    if "\x00" in user_id:  # no database stores it in text alike
        return FieldError(field, "must not contain the NUL character")
    return None


def validate_user_id(user_id: str, field: str) -> None:
    if (error := user_id_error(user_id, field)) is not None:
        raise ValidationFailed([error])
