"""What the pages show, built from results: rows, intervals on a shared axis, warnings, CSV.

Pure functions of the domain's results, so that what a page says is tested without a browser,
and the page, its CSV and the API read the same figures.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from domain.analysis import Method
from domain.breakdown import Breakdown, Slice, SliceKind
from domain.concerns import (
    MIN_CONVERSIONS_TO_CALL,
    MIN_USERS_TO_CALL,
    Concern,
    breached,
    concerns,
    too_early,
)
from domain.experiment import Experiment
from domain.metrics import Direction, MetricKind
from domain.results import Comparison, ExperimentResults, VariantResult
from domain.scorecard import MetricCard, Verdict
from domain.series import Period, SeriesPoint, TimeSeries, start_of
from domain.stats import ALPHA, Interval

AXIS_WIDTH = 200.0  # SVG units of an interval's row; the height is fixed by the stylesheet
_AXIS_PAD = 0.08


@dataclass(frozen=True, slots=True)
class Axis:
    """The range of lifts every row of one table is drawn on, with 0 always inside it."""

    lower: float
    upper: float

    def x(self, value: float) -> float:
        return round((value - self.lower) / (self.upper - self.lower) * AXIS_WIDTH, 2)

    @property
    def zero(self) -> float:
        return self.x(0.0)

    def ticks(self, points: bool) -> list[tuple[float, str]]:
        """About four round values inside the axis, with short labels."""
        step = _round_step((self.upper - self.lower) / 5)
        first = math.ceil(self.lower / step)
        values = [k * step for k in range(first, math.floor(self.upper / step) + 1)]
        return [(self.x(v), _tick(v, points)) for v in values]


def axis_for(intervals: Iterable[Interval | None]) -> Axis:
    ends = [end for i in intervals if i is not None for end in (i.lower, i.upper)]
    lower, upper = min([0.0, *ends]), max([0.0, *ends])
    if upper - lower <= 0:
        lower, upper = -0.01, 0.01
    pad = (upper - lower) * _AXIS_PAD
    return Axis(lower - pad, upper + pad)


@dataclass(frozen=True, slots=True)
class Bar:
    """One interval in SVG units on its table's axis; ``tone`` says whether it lies wholly on
    the desired side of 0 (good), wholly on the other (bad), or across it (neutral)."""

    lower: float
    upper: float
    estimate: float | None
    zero: float
    tone: str
    label: str


def bar(
    axis: Axis, interval: Interval | None, estimate: float | None, direction: Direction, what: str, points: bool
) -> Bar | None:
    """``points``: the interval is of a difference of rates, labelled in percentage points."""
    if interval is None:
        return None
    better_up = direction is Direction.INCREASE
    if interval.lower > 0:
        tone = "good" if better_up else "bad"
    elif interval.upper < 0:
        tone = "bad" if better_up else "good"
    else:
        tone = "neutral"
    label = (
        f"{what}: {_signed(estimate, points) if estimate is not None else 'undefined'}, "
        f"interval {_signed(interval.lower, points)} to {_signed(interval.upper, points)}"
    )
    return Bar(
        axis.x(interval.lower),
        axis.x(interval.upper),
        None if estimate is None else axis.x(estimate),
        axis.zero,
        tone,
        label,
    )


@dataclass(frozen=True, slots=True)
class VariantRow:
    variant_id: str
    name: str
    is_control: bool
    users: int
    conversions: int
    rate: float | None
    value_per_user: float | None
    absolute_lift: float | None = None
    relative_lift: float | None = None
    p_value: float | None = None
    p_value_adjusted: float | None = None
    interval: Interval | None = None
    chance_to_beat: float | None = None
    bar: Bar | None = None


@dataclass(frozen=True, slots=True)
class Warning:
    kind: str  # srm, guardrail, early, setup: a class for the stylesheet and the tests
    text: str


@dataclass(frozen=True, slots=True)
class MetricRow:
    variant_id: str
    name: str
    estimate: float | None
    absolute_lift: float | None
    relative_lift: float | None
    p_value: float | None
    outcome: str
    guardrail: str | None
    bar: Bar | None


@dataclass(frozen=True, slots=True)
class MetricTable:
    name: str
    role: str
    kind: str
    event_type: str
    direction: str
    capped_at: float | None
    control: str
    control_estimate: float | None
    rows: list[MetricRow]
    axis: Axis
    points: bool  # a conversion: rates shown as percentages, differences in points


@dataclass(frozen=True, slots=True)
class DecisionRow:
    name: str
    verdict: str
    words: str
    reasons: list[str]


@dataclass
class ResultsView:
    method: str
    interval_name: str
    level: float
    rows: list[VariantRow]
    axis: Axis
    warnings: list[Warning]
    metrics: list[MetricTable] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)

    @property
    def ticks(self) -> list[tuple[float, str]]:
        return self.axis.ticks(points=True)


VERDICT_WORDS = {
    Verdict.SHIP: "Ship",
    Verdict.KEEP_RUNNING: "Keep running",
    Verdict.ROLL_BACK: "Roll back",
    Verdict.UNHEALTHY: "Unhealthy",
}

INTERVAL_NAMES = {
    Method.FIXED: "confidence interval (fixed horizon, read once)",
    Method.SEQUENTIAL: "confidence sequence (valid at every look)",
    Method.BAYESIAN: "credible interval (flat or the analysis's prior)",
}


def results_view(results: ExperimentResults) -> ResultsView:
    method = results.analysis.method
    shown = _shown_all(results, method)
    axis = axis_for(interval for _, interval, _ in shown)
    direction = results.analysis.primary_direction(results.query.primary_event_type)
    rows = _rows(results, shown, axis, direction)
    view = ResultsView(
        method=method.value,
        interval_name=INTERVAL_NAMES[method],
        level=1.0 - ALPHA,
        rows=rows,
        axis=axis,
        warnings=warnings(results),
    )
    if results.scorecard is not None:
        view.metrics = [_metric_table(card, results, method) for card in results.scorecard.metrics]
        names = {v.variant.id: v.variant.name for v in results.variants}
        view.decisions = [
            DecisionRow(names.get(d.variant_id, d.variant_id), d.verdict.value, VERDICT_WORDS[d.verdict], list(d.reasons))
            for d in results.scorecard.decisions
        ]
    return view


def _shown(comparison: Comparison | None, method: Method) -> tuple[Comparison | None, Interval | None, float | None]:
    """The interval the page draws for a comparison, by the method that reads the results."""
    if comparison is None:
        return None, None, None
    if method is Method.SEQUENTIAL and comparison.sequential is not None:
        return comparison, comparison.sequential.conversion.interval, None
    if method is Method.BAYESIAN and comparison.bayesian is not None:
        posterior = comparison.bayesian.conversion
        return comparison, posterior.absolute.interval, posterior.chance_to_beat_control
    return comparison, comparison.conversion.interval, None


def _row(variant: VariantResult, comparison: Comparison | None) -> VariantRow:
    row = VariantRow(
        variant_id=variant.variant.id,
        name=variant.variant.name,
        is_control=variant.variant.is_control,
        users=variant.users,
        conversions=variant.primary_unique_users,
        rate=variant.primary_conversion_rate,
        value_per_user=variant.value_per_user,
    )
    if comparison is None:
        return row
    test = comparison.conversion
    return _with(
        row,
        absolute_lift=test.absolute_lift,
        relative_lift=test.relative_lift,
        p_value=test.p_value,
        p_value_adjusted=comparison.p_value_adjusted,
    )


def _with(row: VariantRow, **changes: Any) -> VariantRow:
    return replace(row, **changes)


def _shown_all(results: ExperimentResults, method: Method) -> list[tuple[Comparison | None, Interval | None, float | None]]:
    by_variant = {c.variant_id: c for c in results.comparisons}
    return [_shown(by_variant.get(v.variant.id), method) for v in results.variants]


def _rows(
    results: ExperimentResults,
    shown: list[tuple[Comparison | None, Interval | None, float | None]],
    axis: Axis,
    direction: Direction,
    label: str = "",
    adjusted: Mapping[str, float | None] | None = None,
) -> list[VariantRow]:
    """The variant table's rows, each interval a bar on ``axis``; ``label`` prefixes the bars'
    names, ``adjusted`` replaces the p-values adjusted (a breakdown's, across slices)."""
    rows = []
    for variant, (comparison, interval, chance) in zip(results.variants, shown, strict=True):
        row = _row(variant, comparison)
        if comparison is not None:
            changes: dict[str, Any] = {}
            if adjusted is not None:
                changes["p_value_adjusted"] = adjusted.get(variant.variant.id)
            row = _with(row, interval=interval, chance_to_beat=chance, **changes,
                        bar=bar(axis, interval, row.absolute_lift, direction, label + variant.variant.name,
                                points=True))
        rows.append(row)
    return rows


def warnings(results: ExperimentResults) -> list[Warning]:
    """What a reader must know before reading the lifts, in plain words (docs/ui.md), for each
    concern the results raise (domain/concerns.py), gravest first."""
    found: list[Warning] = []
    names = {v.variant.id: v.variant.name for v in results.variants}
    for concern in concerns(results):
        if concern is Concern.SRM:
            p = results.srm.p_value if results.srm.mismatch else results.srm_sequential.p_value
            found.append(Warning(
                concern.value,
                "Sample ratio mismatch: the users per variant do not match the configured split"
                f"{'' if p is None else f' (p = {_p(p)})'}. Something is losing or misrouting users "
                "(assignment, a redirect, a bot filter); do not trust these results until it is explained.",
            ))
        elif concern is Concern.GUARDRAIL:
            for card, comparison in breached(results):
                found.append(Warning(
                    concern.value,
                    f"Guardrail breached: {names.get(comparison.variant_id, comparison.variant_id)} "
                    f"harms {card.metric.name} by more than the {_percent(card.metric.tolerance or 0)} "
                    "tolerated.",
                ))
        elif concern is Concern.SETUP:
            found.append(Warning(concern.value, "No primary event type is set, so no conversion is compared."))
        else:
            who = ", ".join(
                f"{v.variant.name} ({v.users} users, {v.primary_unique_users} conversions)" for v in too_early(results)
            )
            found.append(Warning(
                concern.value,
                f"Too early to call: {who}. Wait for at least {MIN_USERS_TO_CALL} users and "
                f"{MIN_CONVERSIONS_TO_CALL} conversions in every variant before reading the lift.",
            ))
    return found


def _metric_table(card: MetricCard, results: ExperimentResults, method: Method) -> MetricTable:
    names = {v.variant.id: v.variant.name for v in results.variants}
    control = next(v for v in results.variants if v.variant.is_control)
    values = {v.variant_id: v for v in card.values}
    intervals = []
    for comparison in card.comparisons:
        if method is Method.SEQUENTIAL and comparison.sequential is not None:
            intervals.append(comparison.sequential.interval)
        elif method is Method.BAYESIAN and comparison.bayesian is not None:
            intervals.append(comparison.bayesian.absolute.interval)
        else:
            intervals.append(comparison.test.interval)
    points = card.metric.kind is MetricKind.CONVERSION
    axis = axis_for(intervals)
    rows = []
    for comparison, interval in zip(card.comparisons, intervals, strict=True):
        name = names.get(comparison.variant_id, comparison.variant_id)
        value = values.get(comparison.variant_id)
        rows.append(MetricRow(
            variant_id=comparison.variant_id,
            name=name,
            estimate=None if value is None else value.estimate,
            absolute_lift=comparison.test.absolute_lift,
            relative_lift=comparison.test.relative_lift,
            p_value=comparison.p_value_adjusted if comparison.p_value_adjusted is not None else comparison.test.p_value,
            outcome=comparison.outcome.value if comparison.outcome is not None else "undefined",
            guardrail=None if comparison.guardrail is None else comparison.guardrail.value,
            bar=bar(axis, interval, comparison.test.absolute_lift, card.metric.direction, name, points),
        ))
    control_value = values.get(control.variant.id)
    return MetricTable(
        name=card.metric.name,
        role=card.metric.role.value,
        kind=card.metric.kind.value,
        event_type=card.metric.event_type,
        direction=card.metric.direction.value,
        capped_at=card.capped_at,
        control=control.variant.name,
        control_estimate=None if control_value is None else control_value.estimate,
        rows=rows,
        axis=axis,
        points=points,
    )


HEALTH_WORDS = {
    "ok": "Healthy",
    "srm": "Sample ratio mismatch",
    "guardrail": "Guardrail breached",
    "early": "Too early to call",
    "setup": "No primary event",
    "busy": "Busy: reload to read it",
    "none": "Not started",
}


@dataclass(frozen=True, slots=True)
class Lift:
    name: str
    value: float | None  # the relative lift of the primary conversion


@dataclass(frozen=True, slots=True)
class ListRow:
    id: str
    name: str
    status: str
    started: str | None
    users: int | None
    lifts: list[Lift]
    health: str

    @property
    def health_words(self) -> str:
        return HEALTH_WORDS[self.health]


def list_row(experiment: Experiment, results: ExperimentResults | None, busy: bool = False) -> ListRow:
    """An experiment's line in the list: its health is the gravest of its warnings."""
    started = None if experiment.started_at is None else experiment.started_at.strftime("%Y-%m-%d")
    if results is None:
        health = "busy" if busy else "none"
        return ListRow(experiment.id, experiment.name, experiment.status.value, started, None, [], health)
    names = {v.variant.id: v.variant.name for v in results.variants}
    lifts = [Lift(names[c.variant_id], c.conversion.relative_lift) for c in results.comparisons]
    health = next((c.value for c in concerns(results)), "ok")  # the gravest
    return ListRow(
        experiment.id, experiment.name, experiment.status.value, started, results.total_users, lifts, health
    )


@dataclass(frozen=True, slots=True)
class SliceView:
    kind: str  # value, other, unknown
    label: str
    users: int
    srm_mismatch: bool
    rows: list[VariantRow]  # p_value_adjusted: over every slice and variant


@dataclass(frozen=True, slots=True)
class BreakdownView:
    dimension: str
    method: str
    interval_name: str
    correction: str
    level: float
    axis: Axis
    slices: list[SliceView]

    @property
    def ticks(self) -> list[tuple[float, str]]:
        return self.axis.ticks(points=True)


def breakdown_view(breakdown: Breakdown) -> BreakdownView:
    """Each slice's variant table, every interval of every slice on one axis, each p-value
    adjusted over the whole family of slices × variants (the one to read)."""
    method = breakdown.analysis.method
    direction = breakdown.experiment.analysis.primary_direction(breakdown.primary_event_type)
    read = [(s, _shown_all(s.results, method)) for s in breakdown.slices]
    axis = axis_for(interval for _, shown in read for _, interval, _ in shown)
    slices = []
    for s, shown in read:
        rows = _rows(s.results, shown, axis, direction, f"{_slice_label(s.slice)}, ", s.p_values_adjusted)
        srm = s.results.srm_sequential if method is Method.SEQUENTIAL else s.results.srm
        slices.append(SliceView(s.slice.kind.value, _slice_label(s.slice), s.slice.users, srm.mismatch, rows))
    return BreakdownView(breakdown.dimension, method.value, INTERVAL_NAMES[method],
                         breakdown.analysis.correction.value, 1.0 - ALPHA, axis, slices)


def _slice_label(s: Slice) -> str:
    if s.kind is SliceKind.OTHER:
        return f"other ({s.values} values)"
    if s.kind is SliceKind.UNKNOWN:
        return "unknown (no value)"
    return s.value or ""


def breakdown_csv(view: BreakdownView) -> str:
    """Every slice's table as shown, one row per slice and variant, the slice first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(("dimension", "slice_kind", "slice", *CSV_COLUMNS[:10], "p_value_adjusted_across_slices",
                     *CSV_COLUMNS[11:]))
    for s in view.slices:
        for line in _csv_rows(s.rows):
            writer.writerow([view.dimension, s.kind, s.label, *line])
    return out.getvalue()


CSV_COLUMNS = (
    "variant_id", "variant_name", "is_control", "users", "conversions", "conversion_rate",
    "value_per_user", "absolute_lift", "relative_lift", "p_value", "p_value_adjusted",
    "interval_lower", "interval_upper", "chance_to_beat_control",
)


def results_csv(view: ResultsView) -> str:
    """The variant table as shown, one row per variant; full precision, empty for undefined."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(_csv_rows(view.rows))
    return out.getvalue()


def _csv_rows(rows: list[VariantRow]) -> list[list[Any]]:
    """The CSV_COLUMNS of each row; full precision, empty for undefined."""
    return [
        [
            row.variant_id, row.name, "true" if row.is_control else "false", row.users, row.conversions,
            *(_cell(v) for v in (
                row.rate, row.value_per_user, row.absolute_lift, row.relative_lift, row.p_value,
                row.p_value_adjusted,
                None if row.interval is None else row.interval.lower,
                None if row.interval is None else row.interval.upper,
                row.chance_to_beat,
            )),
        ]
        for row in rows
    ]


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


# Formatting, for the templates.

def percent(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def signed_percent(value: float | None) -> str:
    """A relative lift."""
    return "—" if value is None else _with_sign(value, f"{abs(value) * 100:.2f}%")


def number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def p_value(value: float | None) -> str:
    return "—" if value is None else _p(value)


def _p(value: float) -> str:
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


def _percent(value: float) -> str:
    return f"{value * 100:g}%"


def signed_points(value: float | None) -> str:
    """A difference of two rates, in percentage points."""
    return "—" if value is None else _signed(value, True)


def _signed(value: float, points: bool) -> str:
    """``points``: a difference of rates, in percentage points; else a plain number."""
    return _with_sign(value, f"{abs(value) * 100:.2f} pp" if points else f"{abs(value):.4g}")


def _with_sign(value: float, magnitude: str) -> str:
    """A typographic minus or a plus before the magnitude; none for 0."""
    return magnitude if value == 0 else ("−" if value < 0 else "+") + magnitude


def _tick(value: float, points: bool) -> str:
    if value == 0:
        return "0"
    return _with_sign(value, f"{abs(value) * 100:.3g} pp" if points else f"{abs(value):.3g}")


def _round_step(raw: float) -> float:
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


# Results over time, drawn as inline SVG charts.

CHART_WIDTH, CHART_HEIGHT = 640.0, 220.0
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_BOTTOM, _MARGIN_TOP = 56.0, 28.0, 24.0, 8.0


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    index: int  # the variant's place, 0 to 5: its colour in the stylesheet
    points: str  # SVG "x,y x,y …"; a gap (an undefined figure) splits the line
    band: str = ""  # the interval's polygon, "" when there is none


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    lines: list[Line]
    x_ticks: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    zero: float | None  # the y of 0, drawn for a lift
    markers: bool = False  # few points: each is drawn too (a line of one point shows nothing)
    width: float = CHART_WIDTH
    height: float = CHART_HEIGHT


@dataclass(frozen=True, slots=True)
class OverTimeRow:
    label: str
    cells: list[str]


@dataclass(frozen=True, slots=True)
class OverTime:
    rate: Chart  # each variant's cumulative conversion rate, by period
    lift: Chart  # each variant's difference from the control with its band, by period
    since_exposure: Chart  # the same difference by days since exposure
    rows: list[OverTimeRow]  # the calendar figures as a table
    chance: Chart | None = None  # each variant's chance to beat the control, by period


def over_time_charts(series: TimeSeries, method: Method) -> OverTime:
    """The charts of the over-time page; the band is the confidence sequence under
    ``sequential``, else the interval read at each point."""
    points = series.calendar
    names = {v.id: v.name for v in series.experiment.variants}
    order = {v.id: i % 6 for i, v in enumerate(series.experiment.variants)}
    labels = [_period_label(p.index, series.period) for p in points]
    rates: dict[str, list[float | None]] = {v: [] for v in names}
    for point in points:
        for arm in point.arms:
            rates[arm.variant_id].append(arm.conversion_rate)
    rate_values = [v for values in rates.values() for v in values if v is not None]
    rate_chart = _chart(
        "Cumulative conversion rate", labels, (0.0, max(rate_values, default=0.01) * 1.1 or 0.01),
        [(names[v], order[v], values, []) for v, values in rates.items()], zero=False,
    )
    chances: dict[str, list[float | None]] = {v: [] for v in names if v != series.experiment.control.id}
    for point in points:
        for c in point.comparisons:
            chances[c.variant_id].append(c.chance_to_beat_control)
    chance_chart = _chart(
        "Chance to beat the control (flat prior)", labels, (0.0, 1.0),
        [(names[v], order[v], values, []) for v, values in chances.items()], zero=False,
    )
    rows = [
        OverTimeRow(
            label,
            [percent(a.conversion_rate) for a in point.arms]
            + [signed_points(c.conversion.absolute_lift) for c in point.comparisons]
            + [percent(c.chance_to_beat_control, 1) for c in point.comparisons],
        )
        for label, point in zip(labels, points, strict=True)
    ]
    return OverTime(
        rate_chart,
        _lift_chart("Difference from the control (pp) and its interval", labels, points, names, order, method),
        _lift_chart(
            "The same by days since exposure (day 0: the day of assignment)",
            [f"day {p.index}" for p in series.since_exposure], series.since_exposure, names, order, method,
        ),
        rows,
        chance_chart,
    )


def _lift_chart(
    title: str, labels: list[str], points: list[SeriesPoint], names: dict[str, str], order: dict[str, int],
    method: Method,
) -> Chart:
    lifts: dict[str, list[float | None]] = {}
    bands: dict[str, list[Interval | None]] = {}
    for point in points:
        for c in point.comparisons:
            interval = c.sequential.interval if method is Method.SEQUENTIAL else c.conversion.interval
            lifts.setdefault(c.variant_id, []).append(c.conversion.absolute_lift)
            bands.setdefault(c.variant_id, []).append(interval)
    ends = [e for values in bands.values() for i in values if i is not None for e in (i.lower, i.upper)]
    ends += [v for values in lifts.values() for v in values if v is not None]
    low, high = min([0.0, *ends]), max([0.0, *ends])
    pad = (high - low) * 0.05 or 0.01
    return _chart(
        title, labels, (low - pad, high + pad),
        [(names[v], order[v], values, bands[v]) for v, values in lifts.items()], zero=True,
    )


def _chart(
    title: str,
    labels: list[str],
    y_range: tuple[float, float],
    lines: list[tuple[str, int, list[float | None], list[Interval | None]]],
    zero: bool,
) -> Chart:
    low, high = y_range
    if high <= low:
        high = low + 0.01
    inner_w = CHART_WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
    inner_h = CHART_HEIGHT - _MARGIN_BOTTOM - _MARGIN_TOP
    count = max(len(labels), 2)

    def x(i: int) -> float:
        return round(_MARGIN_LEFT + inner_w * i / (count - 1), 2)

    def y(value: float) -> float:
        return round(_MARGIN_TOP + inner_h * (high - value) / (high - low), 2)

    drawn = []
    for name, index, values, intervals in lines:
        coordinates = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(values) if v is not None)
        band = ""
        known = [(i, iv) for i, iv in enumerate(intervals) if iv is not None]
        if known:
            upper = [f"{x(i)},{y(min(iv.upper, high))}" for i, iv in known]
            lower = [f"{x(i)},{y(max(iv.lower, low))}" for i, iv in reversed(known)]
            band = " ".join(upper + lower)
        drawn.append(Line(name, index, coordinates, band))
    step = max(1, len(labels) // 6)
    x_ticks = [(x(i), labels[i]) for i in range(0, len(labels), step)]
    y_step = _round_step((high - low) / 4)
    y_ticks = [
        (y(k * y_step), f"{k * y_step * 100:.3g}%" if not zero else _tick(k * y_step, True))
        for k in range(math.ceil(low / y_step), math.floor(high / y_step) + 1)
    ]
    return Chart(title, drawn, x_ticks, y_ticks, y(0.0) if zero and low <= 0 <= high else None, len(labels) <= 60)


def _period_label(index: int, period: Period) -> str:
    start = start_of(index, period)
    return start.strftime("%m-%d") if period is Period.DAY else start.strftime("%m-%d %H:00")
