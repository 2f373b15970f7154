"""The metrics an experiment is judged on: its scorecard's rows (docs/statistics.md, Scorecards).

Each metric is one figure per user, from the events counted for the user (from their assignment
on), so each comes from summable totals:

- ``conversion``: whether the user has an event of ``event_type`` (a proportion);
- ``count``: the user's number of events of ``event_type`` (a mean per user);
- ``value``: the sum of the user's ``value`` on events of ``event_type`` (a mean per user);
- ``ratio``: the sum over users of a numerator (the count or the value of ``event_type``) over
  the sum of the users' count of ``denominator_event_type`` events, by the delta method.

A metric has a role: the one ``primary`` metric decides, ``secondary`` metrics inform (both are
corrected for multiple testing together), ``guardrail`` metrics must not get worse than their
``tolerance`` allows (kept out of the correction). ``direction`` says which way is better.
A ``count`` or ``value`` metric may cap each user's figure (domain/capping.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from domain.capping import Cap, parse_cap
from domain.errors import FieldError, text_error

E = TypeVar("E", bound=StrEnum)

MAX_METRICS = 20
MAX_NAME = 100
MAX_EVENT_TYPE_LENGTH = 100
"""An event type's characters, wherever one is named: events, experiments, metrics."""
MAX_TOLERANCE = 10.0  # a relative harm of 1,000%: anything beyond is no guardrail


class MetricKind(StrEnum):
    CONVERSION = "conversion"
    COUNT = "count"
    VALUE = "value"
    RATIO = "ratio"


class Role(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    GUARDRAIL = "guardrail"


class Direction(StrEnum):
    INCREASE = "increase"
    DECREASE = "decrease"


class Measure(StrEnum):
    """What a ratio sums of its numerator's events: how many, or their values."""

    COUNT = "count"
    VALUE = "value"


KEYS = (
    "name", "kind", "event_type", "role", "direction", "tolerance", "denominator_event_type", "numerator", "cap",
)
CAPPABLE = (MetricKind.COUNT, MetricKind.VALUE)


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    kind: MetricKind
    event_type: str
    role: Role = Role.SECONDARY
    direction: Direction = Direction.INCREASE
    tolerance: float | None = None  # guardrails: the relative harm tolerated (0.02: 2% worse)
    denominator_event_type: str | None = None  # ratios only
    numerator: Measure = Measure.COUNT  # ratios only
    cap: Cap | None = None  # counts and values only

    @property
    def pair(self) -> tuple[str, str] | None:
        """A ratio's (numerator, denominator) event types: what needs per-user cross sums."""
        if self.kind is not MetricKind.RATIO or self.denominator_event_type is None:
            return None
        return self.event_type, self.denominator_event_type

    @property
    def event_types(self) -> tuple[str, ...]:
        pair = self.pair
        return (self.event_type,) if pair is None else pair

    @property
    def tolerated(self) -> float:
        return 0.0 if self.tolerance is None else self.tolerance

    def document(self) -> dict[str, Any]:
        """Every key, null where it does not apply: one shape for every metric."""
        ratio = self.kind is MetricKind.RATIO
        return {
            "name": self.name,
            "kind": self.kind.value,
            "event_type": self.event_type,
            "role": self.role.value,
            "direction": self.direction.value,
            "tolerance": self.tolerated if self.role is Role.GUARDRAIL else None,
            "denominator_event_type": self.denominator_event_type if ratio else None,
            "numerator": self.numerator.value if ratio else None,
            "cap": None if self.cap is None else self.cap.document(),
        }


def parse_metrics(value: Any, where: str, errors: list[FieldError]) -> tuple[Metric, ...]:
    """Metrics from their JSON form; each invalid field is named (``metrics[2].kind``) in
    ``errors``. A list of metrics has exactly one primary, and unique names."""
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.append(FieldError(where, "must be a list of metrics"))
        return ()
    if len(value) > MAX_METRICS:
        errors.append(FieldError(where, f"must hold at most {MAX_METRICS} metrics"))
        return ()
    metrics: list[Metric] = []
    before = len(errors)
    for i, item in enumerate(value):
        metric = _metric(item, f"{where}[{i}]", errors)
        if metric is not None:
            metrics.append(metric)
    if len(errors) > before:
        return ()
    seen: set[str] = set()
    for i, metric in enumerate(metrics):
        if metric.name in seen:
            errors.append(FieldError(f"{where}[{i}].name", f"repeats the name {metric.name!r}"))
        seen.add(metric.name)
    primaries = sum(m.role is Role.PRIMARY for m in metrics)
    if metrics and primaries != 1:
        errors.append(FieldError(where, f"must have exactly one primary metric, not {primaries}"))
    return tuple(metrics) if len(errors) == before else ()


def _metric(item: Any, where: str, errors: list[FieldError]) -> Metric | None:
    if not isinstance(item, dict):
        errors.append(FieldError(where, "must be an object"))
        return None
    before = len(errors)
    for key in sorted(set(item) - set(KEYS)):
        errors.append(FieldError(f"{where}.{key}", "is not a field of a metric"))
    name = _text(item.get("name"), f"{where}.name", MAX_NAME, errors)
    event_type = _text(item.get("event_type"), f"{where}.event_type", MAX_EVENT_TYPE_LENGTH, errors)
    kind = _choice(item.get("kind"), MetricKind, f"{where}.kind", errors, required=True)
    role = _choice(item.get("role"), Role, f"{where}.role", errors) or Role.SECONDARY
    direction = _choice(item.get("direction"), Direction, f"{where}.direction", errors) or Direction.INCREASE
    numerator = _choice(item.get("numerator"), Measure, f"{where}.numerator", errors) or Measure.COUNT
    denominator = None
    if kind is MetricKind.RATIO:
        denominator = _text(
            item.get("denominator_event_type"), f"{where}.denominator_event_type", MAX_EVENT_TYPE_LENGTH, errors
        )
    else:
        for key in ("denominator_event_type", "numerator"):
            if item.get(key) is not None:
                errors.append(FieldError(f"{where}.{key}", "is for ratio metrics only"))
    cap = parse_cap(item.get("cap"), f"{where}.cap", errors)
    if cap is not None and kind not in CAPPABLE:
        errors.append(FieldError(f"{where}.cap", "is for count and value metrics only"))
    tolerance = item.get("tolerance")
    if tolerance is not None:
        if role is not Role.GUARDRAIL:
            errors.append(FieldError(f"{where}.tolerance", "is for guardrail metrics only"))
        elif (
            isinstance(tolerance, bool)
            or not isinstance(tolerance, int | float)
            or not math.isfinite(tolerance)
            or not 0 <= tolerance <= MAX_TOLERANCE
        ):
            errors.append(FieldError(
                f"{where}.tolerance",
                f"must be a relative harm from 0 to {MAX_TOLERANCE:g} (0.02: 2% worse than the control)",
            ))
    if len(errors) > before or name is None or event_type is None or kind is None:
        return None
    return Metric(
        name=name,
        kind=kind,
        event_type=event_type,
        role=role,
        direction=direction,
        tolerance=None if tolerance is None else float(tolerance),
        denominator_event_type=denominator,
        numerator=numerator,
        cap=cap,
    )


def _text(value: Any, where: str, limit: int, errors: list[FieldError]) -> str | None:
    if value is None:
        errors.append(FieldError(where, "is required"))
    elif not isinstance(value, str) or not 1 <= len(value) <= limit or not value.strip():
        errors.append(FieldError(where, f"must be text of 1 to {limit} characters, not blank"))
    elif (error := text_error(value, where)) is not None:
        errors.append(error)
    else:
        return value
    return None


def _choice(
    value: Any, kind: type[E], where: str, errors: list[FieldError], *, required: bool = False
) -> E | None:
    if value is None:
        if required:
            errors.append(FieldError(where, f"is required: one of {', '.join(k.value for k in kind)}"))
        return None
    try:
        return kind(value)
    except ValueError:
        errors.append(FieldError(where, f"must be one of {', '.join(k.value for k in kind)}"))
        return None
