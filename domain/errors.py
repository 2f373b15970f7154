"""Domain errors: what can go wrong in the business rules, with no notion of HTTP."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from domain.rate_limit import Decision


class DomainError(Exception):
    """Base of every error the core raises on purpose."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid input field, named by its path (``variants[1].traffic_percentage``)."""

    field: str
    message: str


class ValidationFailed(DomainError):
    """Input that is well-formed but breaks a rule; carries every broken rule at once."""

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        self.errors = errors
        self.detail = detail or "; ".join(
            f"{e.field}: {e.message}" if e.field else e.message for e in errors[:5]
        )
        super().__init__(self.detail)

    def renamed(self, names: Mapping[str, str]) -> ValidationFailed:
        """The same errors with fields named as the caller knows them: the core names its own
        parameters (``start``; ``""`` for a whole input) and a boundary gives their names there
        (``start_date``, ``events``)."""
        return ValidationFailed([FieldError(names.get(e.field, e.field), e.message) for e in self.errors])


class ExperimentNotFound(DomainError):
    def __init__(self, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        super().__init__(f"experiment {experiment_id!r} does not exist")


class NotFound(DomainError):
    """Something other than an experiment that does not exist (a layer, a holdout)."""

    def __init__(self, kind: str, thing_id: str) -> None:
        self.kind, self.thing_id = kind, thing_id
        super().__init__(f"{kind} {thing_id!r} does not exist")


class UnknownExperiments(DomainError):
    """Events that name experiments which do not exist: their positions, with the names."""

    def __init__(self, experiment_ids: dict[int, str]) -> None:
        self.experiment_ids = experiment_ids
        super().__init__(
            f"{len(experiment_ids)} events name experiments that do not exist, "
            f"such as {next(iter(experiment_ids.values()))!r}"
        )


class EventsAhead(DomainError):
    """Events stamped further in the future than the clock skew allowed: their positions."""

    def __init__(self, positions: list[int], skew: timedelta) -> None:
        self.positions = positions
        self.skew = skew
        super().__init__(f"{len(positions)} events are stamped more than {describe(skew)} ahead")


def describe(span: timedelta) -> str:
    """``7 days``, ``36 hours``, ``90 seconds``: the largest whole unit."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


class DuplicateExperimentName(DomainError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"an experiment named {name!r} already exists")


class ConcurrentChange(DomainError):
    def __init__(self, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        super().__init__(
            f"experiment {experiment_id!r} was changed by another request meanwhile; read it and retry"
        )


class DuplicateName(DomainError):
    def __init__(self, kind: str, name: str) -> None:
        self.kind, self.name = kind, name
        super().__init__(f"a {kind} named {name!r} already exists")


class StoreUnavailable(DomainError):
    """The store cannot be reached; raised by adapters so callers need not know the driver."""


class KeyNotFound(DomainError):
    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"key {key_id!r} does not exist")


class RateLimited(DomainError):
    """A caller spent its requests of a route class faster than its rate allows."""

    def __init__(self, route_class: str, decision: Decision) -> None:
        self.route_class = route_class
        self.decision = decision
        super().__init__(
            f"too many {route_class} requests: at most {decision.rate} for this credential; "
            f"retry after {decision.retry_after_seconds} s"
        )


class Overloaded(DomainError):
    """Work declined or stopped so that it does not pile up on the store; the same request may
    succeed after ``retry_after_seconds``."""

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


class CovariatesFilling(Overloaded):
    """CUPED was just turned on for the experiment: its users' pre-periods are being filled
    from the events already stored, by the folder's next fold."""

    def __init__(self, experiment_id: str) -> None:
        super().__init__(
            f"the pre-period totals of experiment {experiment_id!r} are being filled (CUPED was just turned "
            "on); retry after 1 s",
            1,
        )


class ResultsBusy(Overloaded):
    """As many results are being computed as this process allows, and none finished within
    the wait a request is given."""

    def __init__(self, running: int, retry_after_seconds: int) -> None:
        self.running = running
        super().__init__(
            f"results are busy: {running} are being computed on this server already; "
            f"retry after {retry_after_seconds} s",
            retry_after_seconds,
        )


class ReadTimedOut(Overloaded):
    """A read of the store ran past its time limit and was stopped on the store's side."""

    def __init__(self, limit_seconds: float) -> None:
        self.limit_seconds = limit_seconds
        retry = max(1, math.ceil(limit_seconds))
        super().__init__(
            f"the store took longer than {limit_seconds:g} s to answer, so the read was stopped; "
            f"retry after {retry} s",
            retry,
        )


def text_error(value: str, field: str) -> FieldError | None:
    """NUL cannot be stored as text by every database, and no name or id needs it."""
    return FieldError(field, "must not contain the NUL character") if "\x00" in value else None
