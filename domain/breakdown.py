"""Breakdowns: results split by a dimension, an attribute a user was assigned with.

An experiment names up to MAX_DIMENSIONS attributes (``analysis.dimensions``). When a user is
assigned, the values the call sent for them are stored with the assignment, for good: a user
sits in one slice of each dimension, as in one variant, so the totals of a slice add up like a
variant's (docs/api.md, Breakdowns). A user assigned without the attribute, or before the
dimension was named, is in the slice "unknown": the experiment's totals less its known slices'.
The MAX_SLICES values with the most users are shown each; the rest add up to "other".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from domain.analysis import Analysis
from domain.experiment import Experiment
from domain.results import ExperimentResults, ResultCalculator, ResultQuery
from domain.totals import EventTotals, VariantAggregate

MAX_SLICES = 50
"""Values shown each, by users; the rest are summed into one slice, "other"."""


@dataclass(frozen=True, slots=True)
class SliceCell:
    """One variant's users in a slice, and their totals of the primary event type."""

    users: int = 0
    primary: EventTotals = EventTotals()

    def __add__(self, other: SliceCell) -> SliceCell:
        return SliceCell(self.users + other.users, self.primary + other.primary)

    def __sub__(self, other: SliceCell) -> SliceCell:
        a, b = self.primary, other.primary
        return SliceCell(
            self.users - other.users,
            EventTotals(
                a.events - b.events,
                a.users - b.users,
                a.value_sum - b.value_sum,
                # A difference of sums of squares can round below 0; a variance never is.
                max(a.value_sum_squares - b.value_sum_squares, 0.0),
                a.events_sum_squares - b.events_sum_squares,
            ),
        )


Cells = Mapping[str, SliceCell]
"""By variant id."""


@dataclass(frozen=True, slots=True)
class BreakdownTotals:
    """What a store answers for a breakdown, read in one snapshot: per variant, the experiment's
    cells; per value of the dimension, the cells of the users assigned with it."""

    overall: Cells = field(default_factory=dict)
    by_value: Mapping[str, Cells] = field(default_factory=dict)


class SliceKind(StrEnum):
    VALUE = "value"  # the users assigned with this value
    OTHER = "other"  # the users of every value past the MAX_SLICES shown
    UNKNOWN = "unknown"  # assigned without a value (or before the dimension was named)


@dataclass(frozen=True, slots=True)
class Slice:
    kind: SliceKind
    value: str | None  # the value; None for other and unknown
    cells: Cells
    values: int = 1  # how many values it sums (other: those past the limit; unknown: 0)

    @property
    def users(self) -> int:
        return sum(c.users for c in self.cells.values())


def _total(cells: Iterable[Cells], variant_ids: Sequence[str]) -> dict[str, SliceCell]:
    out = {v: SliceCell() for v in variant_ids}
    for c in cells:
        for v in variant_ids:
            out[v] = out[v] + c.get(v, SliceCell())
    return out


def slices_of(totals: BreakdownTotals, variant_ids: Sequence[str], limit: int = MAX_SLICES) -> list[Slice]:
    """The values with the most users first (ties by value), at most ``limit`` of them; then
    "other", summing the rest; then "unknown", the users without a value. A slice with no
    user is left out."""
    ranked = sorted(
        ((v, {k: c for k, c in cells.items() if k in variant_ids}) for v, cells in totals.by_value.items()),
        key=lambda item: (-sum(c.users for c in item[1].values()), item[0]),
    )
    ranked = [(v, c) for v, c in ranked if sum(x.users for x in c.values())]
    shown = [Slice(SliceKind.VALUE, v, _total([c], variant_ids)) for v, c in ranked[:limit]]
    rest = ranked[limit:]
    if rest:
        shown.append(Slice(SliceKind.OTHER, None, _total((c for _, c in rest), variant_ids), len(rest)))
    known = _total((c for _, c in ranked), variant_ids)
    overall = _total([totals.overall], variant_ids)
    unknown = {v: overall[v] - known[v] for v in variant_ids}
    if any(c.users > 0 for c in unknown.values()):
        shown.append(Slice(SliceKind.UNKNOWN, None, unknown, 0))
    return shown


@dataclass(frozen=True, slots=True)
class SliceResults:
    slice: Slice
    results: ExperimentResults  # the slice's variants and comparisons, as the experiment's are
    p_values_adjusted: Mapping[str, float | None]  # by variant: the conversion's, over every slice


@dataclass(frozen=True, slots=True)
class Breakdown:
    experiment: Experiment
    dimension: str
    primary_event_type: str | None
    analysis: Analysis  # the slices' reading: the method and the correction across slices
    slices: list[SliceResults]


def breakdown(
    experiment: Experiment,
    dimension: str,
    query: ResultQuery,
    totals: BreakdownTotals,
    analysis: Analysis,
    calculator: ResultCalculator,
    limit: int = MAX_SLICES,
) -> Breakdown:
    """Each slice's results, read as the experiment's are (the analysis's method; neither a
    scorecard nor CUPED, which read totals a slice does not keep), and each comparison's
    conversion p-value adjusted over every slice and variant by the analysis's correction:
    a family of slices × variants, so that looking through fifty slices for a winner does not
    find one by chance."""
    plain = replace(analysis, metrics=(), cuped=False)
    query = replace(query, metric_types=(), pairs=(), capped_types=(), covariates=False)
    read = []
    for s in slices_of(totals, [v.id for v in experiment.variants], limit):
        aggregates = {
            v: VariantAggregate(v, c.users, {}, c.primary.users, c.primary) for v, c in s.cells.items()
        }
        read.append((s, calculator.compute(experiment, query, aggregates, plain)))
    family = [(i, c.variant_id, c.conversion.p_value) for i, (_, r) in enumerate(read) for c in r.comparisons]
    adjusted = plain.correct([p for _, _, p in family])
    by_slice: list[dict[str, float | None]] = [{} for _ in read]
    for (i, variant_id, _), p in zip(family, adjusted, strict=True):
        by_slice[i][variant_id] = p
    return Breakdown(
        experiment,
        dimension,
        query.primary_event_type,
        plain,
        [SliceResults(s, r, adj) for (s, r), adj in zip(read, by_slice, strict=True)],
    )
