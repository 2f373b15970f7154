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


def user_id_error(user_id: str, field: str) -> FieldError | None:
    if not 1 <= len(user_id) <= MAX_USER_ID_LENGTH:
        return FieldError(field, f"must be 1 to {MAX_USER_ID_LENGTH} characters")
    if "\x00" in user_id:  # no database stores it in text alike
        return FieldError(field, "must not contain the NUL character")
    return None


def validate_user_id(user_id: str, field: str) -> None:
    if (error := user_id_error(user_id, field)) is not None:
        raise ValidationFailed([error])
