"""Results over time: each variant's users and conversions per period and cumulatively, and the
comparisons of the cumulative figures at every period, by calendar period and by days since
each user's exposure.

Exact from summable totals keyed by (variant, period of assignment, period of the events):
a user's first conversion falls in one period (so converters add up over periods), and the
sum over users of the square of their cumulative value adds up over periods too, each period
adding, for each user with events in it, (cumulative after)² − (cumulative before)². Those are
what the store keeps per cell (``SeriesCell``); everything here is prefix sums over them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from domain.errors import FieldError, ValidationFailed
from domain.event import from_micros, to_micros
from domain.experiment import Experiment
from domain.stats import Proportion, SampleMean, TestResult, two_proportion_test, welch_test
from domain.stats.bayesian import chances_to_beat
from domain.stats.sequential import DEFAULT_TUNING_USERS, SequentialResult, sequential_proportions

MICROS_PER_HOUR = 3_600_000_000
MICROS_PER_DAY = 24 * MICROS_PER_HOUR
MAX_POINTS = 5_000
"""A series longer than this (an hourly one over more than 208 days) is refused: ask by day."""


class Period(StrEnum):
    DAY = "day"
    HOUR = "hour"

    @property
    def micros(self) -> int:
        return MICROS_PER_DAY if self is Period.DAY else MICROS_PER_HOUR


def period_of(moment: datetime, period: Period) -> int:
    """The whole periods since the Unix epoch, UTC, in which ``moment`` falls."""
    return to_micros(moment) // period.micros


def start_of(index: int, period: Period) -> datetime:
    return from_micros(index * period.micros)


@dataclass(frozen=True, slots=True)
class SeriesCell:
    """What the users of one variant assigned in one period did in one period of events, on
    the event type of the series."""

    converters: int = 0  # users whose first counted event of the type is in this period
    events: int = 0
    value_sum: float = 0.0
    value_squares: float = 0.0  # the period's addition to Σ over users of (their cumulative value)²

    def __add__(self, other: SeriesCell) -> SeriesCell:
        return SeriesCell(
            self.converters + other.converters,
            self.events + other.events,
            self.value_sum + other.value_sum,
            self.value_squares + other.value_squares,
        )


@dataclass(frozen=True, slots=True)
class SeriesTotals:
    """Users assigned per (variant, period), and the cells per (variant, period assigned,
    period of the events); periods are whole days or hours since the Unix epoch, UTC."""

    users: Mapping[tuple[str, int], int]
    cells: Mapping[tuple[str, int, int], SeriesCell]

    def by_day(self) -> SeriesTotals:
        """Hourly totals as daily ones: a day's users and cells are its hours' sums. Exact, as
        every figure adds up over the periods it covers: a day's new converters are the users
        whose first conversion falls in one of its hours, and its addition to Σ (cumulative
        value)² telescopes over its hours."""
        users: dict[tuple[str, int], int] = defaultdict(int)
        for (v, a), n in self.users.items():
            users[v, a // 24] += n
        cells: dict[tuple[str, int, int], SeriesCell] = defaultdict(SeriesCell)
        for (v, a, p), cell in self.cells.items():
            cells[v, a // 24, p // 24] += cell
        return SeriesTotals(dict(users), dict(cells))


@dataclass(frozen=True, slots=True)
class ArmPoint:
    variant_id: str
    new_users: int  # assigned in this period (calendar), or 0 (since exposure)
    users: int  # cumulative: assigned by its end (calendar); exposed long enough (since exposure)
    new_converters: int
    converters: int
    events: int  # cumulative
    value_sum: float  # cumulative

    @property
    def conversion(self) -> Proportion:
        return Proportion(self.users, self.converters)

    @property
    def conversion_rate(self) -> float | None:
        return self.conversion.rate


@dataclass(frozen=True, slots=True)
class ComparisonPoint:
    variant_id: str
    conversion: TestResult  # two-proportion z-test and Newcombe interval, read at this point
    sequential: SequentialResult  # the confidence sequence: valid at every point at once
    value: TestResult  # Welch, of the cumulative value per user
    chance_to_beat_control: float | None = None  # P(variant > control), flat prior (Beta posteriors)


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    index: int  # the period since the epoch (calendar), or days since exposure
    arms: list[ArmPoint]
    comparisons: list[ComparisonPoint]


@dataclass(frozen=True, slots=True)
class TimeSeries:
    experiment: Experiment
    event_type: str
    period: Period
    calendar: list[SeriesPoint]
    since_exposure: list[SeriesPoint]  # by whole UTC days since the day of assignment


def event_type_of(experiment: Experiment, event_type: str | None) -> str:
    chosen = event_type or experiment.primary_event_type
    if not chosen:
        raise ValidationFailed(
            [FieldError("event_type", "is required: the experiment has no primary event type")]
        )
    return chosen


def calendar_series(
    experiment: Experiment, totals: SeriesTotals, last: int, tuning_users: float = DEFAULT_TUNING_USERS
) -> list[SeriesPoint]:
    """One point per period from the first assignment's to ``last`` (the clock's), each the
    figures up to that period's end."""
    first = min((p for _, p in totals.users), default=None)
    if first is None or first > last:
        return []
    _check_length(last - first + 1)
    new_users: dict[tuple[str, int], int] = defaultdict(int)
    for (v, p), n in totals.users.items():
        new_users[v, p] += n
    by_period: dict[tuple[str, int], SeriesCell] = defaultdict(SeriesCell)
    for (v, _, p), cell in totals.cells.items():
        by_period[v, p] += cell
    running = {v.id: (0, SeriesCell()) for v in experiment.variants}
    points = []
    for p in range(first, last + 1):
        arms, means = [], {}
        for variant in experiment.variants:
            users, cumulative = running[variant.id]
            cell = by_period.get((variant.id, p), SeriesCell())
            users, cumulative = users + new_users.get((variant.id, p), 0), cumulative + cell
            running[variant.id] = (users, cumulative)
            arms.append(_arm(variant.id, new_users.get((variant.id, p), 0), users, cell.converters, cumulative))
            means[variant.id] = SampleMean(users, cumulative.value_sum, cumulative.value_squares)
        points.append(SeriesPoint(p, arms, _comparisons(experiment, arms, means, tuning_users)))
    return _with_chances(experiment, points)


def exposure_series(
    experiment: Experiment, totals: SeriesTotals, last_day: int, tuning_users: float = DEFAULT_TUNING_USERS
) -> list[SeriesPoint]:
    """Point k: over the users assigned at least k days before ``last_day`` (so that their
    k-th day has begun), what they did from their day of assignment to k days after it.
    ``totals`` by day."""
    first = min((a for _, a in totals.users), default=None)
    if first is None or first > last_day:
        return []
    horizon = last_day - first + 1
    _check_length(horizon)
    # Per variant and day of assignment: the cells by days since, then their prefix sums.
    by_start: dict[tuple[str, int], list[SeriesCell]] = defaultdict(lambda: [SeriesCell()] * horizon)
    for (v, a, p), cell in totals.cells.items():
        k = p - a
        if 0 <= k < horizon and first <= a <= last_day:
            row = by_start[v, a]
            row[k] = row[k] + cell
    prefix: dict[tuple[str, int], list[SeriesCell]] = {}
    for key, row in by_start.items():
        running, sums = SeriesCell(), []
        for cell in row:
            running = running + cell
            sums.append(running)
        prefix[key] = sums
    empty = [SeriesCell()] * horizon
    points = []
    for k in range(horizon):
        arms, means = [], {}
        for variant in experiment.variants:
            users, new_converters, cumulative = 0, 0, SeriesCell()
            for a in range(first, last_day - k + 1):
                users += totals.users.get((variant.id, a), 0)
                new_converters += by_start.get((variant.id, a), empty)[k].converters
                cumulative = cumulative + prefix.get((variant.id, a), empty)[k]
            arms.append(_arm(variant.id, 0, users, new_converters, cumulative))
            means[variant.id] = SampleMean(users, cumulative.value_sum, cumulative.value_squares)
        points.append(SeriesPoint(k, arms, _comparisons(experiment, arms, means, tuning_users)))
    return _with_chances(experiment, points)


def _with_chances(experiment: Experiment, points: list[SeriesPoint]) -> list[SeriesPoint]:
    """Each comparison's chance to beat the control, for every point in one vectorized pass."""
    control = experiment.control.id
    pairs = [
        (next(a for a in p.arms if a.variant_id == control).conversion,
         next(a for a in p.arms if a.variant_id == c.variant_id).conversion)
        for p in points
        for c in p.comparisons
    ]
    chances = iter(chances_to_beat(pairs))
    return [
        SeriesPoint(p.index, p.arms, [replace(c, chance_to_beat_control=next(chances)) for c in p.comparisons])
        for p in points
    ]


def _arm(variant_id: str, new_users: int, users: int, new_converters: int, cumulative: SeriesCell) -> ArmPoint:
    return ArmPoint(
        variant_id, new_users, users, new_converters, cumulative.converters, cumulative.events, cumulative.value_sum
    )


def _comparisons(
    experiment: Experiment, arms: list[ArmPoint], means: dict[str, SampleMean], tuning_users: float
) -> list[ComparisonPoint]:
    by_id = {a.variant_id: a for a in arms}
    control = next(v for v in experiment.variants if v.is_control)
    base = by_id[control.id]
    return [
        ComparisonPoint(
            v.id,
            two_proportion_test(base.conversion, by_id[v.id].conversion),
            sequential_proportions(base.conversion, by_id[v.id].conversion, tuning_users=tuning_users),
            welch_test(means[control.id], means[v.id]),
        )
        for v in experiment.variants
        if not v.is_control
    ]


def _check_length(points: int) -> None:
    if points > MAX_POINTS:
        raise ValidationFailed(
            [FieldError("period", f"gives {points} points, over the {MAX_POINTS} a series may hold: ask by day")]
        )
