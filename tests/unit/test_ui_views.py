"""What the results pages show, from results the calculator made of hand-made totals: the
shared axis and its bars, the warnings in plain words, the list's health and the CSV."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.metrics import Direction
from domain.results import ResultCalculator, ResultQuery
from domain.stats import Interval
from entrypoints.ui import views
from tests.factories import an_experiment
from tests.unit.test_results import agg


def computed(control: tuple[int, int], treated: tuple[int, int]):
    exp = an_experiment()
    c, t = exp.variants
    return ResultCalculator().compute(
        exp, ResultQuery(primary_event_type="buy"), {c.id: agg(c.id, *control), t.id: agg(t.id, *treated)}
    )


finite = st.floats(-5, 5, allow_nan=False)


@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=6))
def test_every_interval_and_zero_lie_on_the_shared_axis(pairs: list[tuple[float, float]]) -> None:
    intervals = [Interval(min(a, b), max(a, b)) for a, b in pairs]
    axis = views.axis_for(intervals)
    assert 0 <= axis.zero <= views.AXIS_WIDTH
    for interval in intervals:
        assert 0 <= axis.x(interval.lower) <= axis.x(interval.upper) <= views.AXIS_WIDTH
    ticks = axis.ticks(points=True)
    assert ticks and all(0 <= x <= views.AXIS_WIDTH for x, _ in ticks)
    assert [x for x, _ in ticks] == sorted(x for x, _ in ticks)


def test_an_axis_with_nothing_to_show_is_still_an_axis() -> None:
    axis = views.axis_for([None, Interval(0.0, 0.0)])
    assert axis.lower < 0 < axis.upper


@pytest.mark.parametrize(
    ("interval", "direction", "tone"),
    [
        (Interval(0.01, 0.03), Direction.INCREASE, "good"),
        (Interval(-0.03, -0.01), Direction.INCREASE, "bad"),
        (Interval(-0.01, 0.03), Direction.INCREASE, "neutral"),
        (Interval(0.01, 0.03), Direction.DECREASE, "bad"),
        (Interval(-0.03, -0.01), Direction.DECREASE, "good"),
    ],
)
def test_a_bar_is_coloured_by_the_desired_direction(interval: Interval, direction: Direction, tone: str) -> None:
    axis = views.axis_for([interval])
    drawn = views.bar(axis, interval, (interval.lower + interval.upper) / 2, direction, "green", points=True)
    assert drawn is not None and drawn.tone == tone
    assert drawn.lower < drawn.estimate < drawn.upper
    assert drawn.label.startswith("green: ") and " pp" in drawn.label


def test_no_interval_no_bar() -> None:
    assert views.bar(views.axis_for([]), None, None, Direction.INCREASE, "x", points=True) is None


def test_the_view_carries_the_calculators_figures_unchanged() -> None:
    results = computed((10_000, 800), (10_000, 920))
    view = views.results_view(results)
    control, treated = view.rows
    assert (control.users, control.conversions, control.rate) == (10_000, 800, 0.08)
    assert control.bar is None and control.relative_lift is None
    (comparison,) = results.comparisons
    assert treated.relative_lift == comparison.conversion.relative_lift
    assert treated.p_value == comparison.conversion.p_value
    assert treated.interval == comparison.conversion.interval
    assert treated.bar is not None and treated.bar.tone == "good"  # 8% to 9.2%: the interval is above 0
    assert view.warnings == []


def test_few_users_or_conversions_are_too_early_to_call() -> None:
    kinds = [w.kind for w in views.warnings(computed((99, 30), (120, 30)))]
    assert kinds == ["early"]
    assert [w.kind for w in views.warnings(computed((500, 9), (500, 30)))] == ["early"]
    assert views.warnings(computed((100, 10), (100, 10))) == []


def test_a_broken_split_is_named_before_anything_else() -> None:
    results = computed((10_000, 800), (8_000, 700))  # a 50/50 split that came out 55/45
    found = views.warnings(results)
    assert found[0].kind == "srm" and "do not trust" in found[0].text
    row = views.list_row(results.experiment, results)
    assert (row.health, row.health_words, row.users) == ("srm", "Sample ratio mismatch", 18_000)


def test_an_experiment_without_results_is_listed_by_its_state() -> None:
    exp = an_experiment()
    assert views.list_row(exp, None).health_words == "Not started"
    assert views.list_row(exp, None, busy=True).health == "busy"


def test_the_csv_is_the_table_with_full_precision_and_empty_nulls() -> None:
    results = computed((1_000, 80), (1_000, 97))
    view = views.results_view(results)
    rows = list(csv.DictReader(io.StringIO(views.results_csv(view))))
    assert list(rows[0]) == list(views.CSV_COLUMNS)
    control, treated = rows
    assert control["absolute_lift"] == "" and control["is_control"] == "true"
    (comparison,) = results.comparisons
    assert float(treated["relative_lift"]) == comparison.conversion.relative_lift
    assert float(treated["interval_lower"]) == comparison.conversion.interval.lower
    assert int(treated["conversions"]) == 97


def test_figures_are_written_as_people_read_them() -> None:
    assert views.percent(0.0825) == "8.25%"
    assert views.signed_percent(0.15) == "+15.00%" and views.signed_percent(-0.5) == "−50.00%"
    assert views.signed_points(-0.0123) == "−1.23 pp"
    assert views.p_value(0.00001) == "< 0.0001" and views.p_value(0.04567) == "0.0457"
    assert views.percent(None) == views.p_value(None) == "—"


def test_the_charts_hold_every_point_inside_their_box() -> None:
    from datetime import UTC, datetime, timedelta

    from adapters.memory.series import series_totals
    from domain.analysis import Method
    from domain.assignment import Assignment
    from domain.event import Event
    from domain.series import Period, TimeSeries, calendar_series, exposure_series, period_of

    exp = an_experiment()
    t0 = datetime(2026, 11, 28, tzinfo=UTC)
    assignments = {
        f"u{i}": Assignment(exp.id, f"u{i}", exp.variants[i % 2].id, "", t0 + timedelta(hours=i)) for i in range(60)
    }
    events = [Event(exp.id, f"u{i}", "buy", t0 + timedelta(hours=i + 3), 2.0) for i in range(0, 60, 4)]
    last = period_of(t0 + timedelta(days=4), Period.DAY)
    points = calendar_series(exp, series_totals(assignments, events, "buy", Period.DAY), last)
    by_day = series_totals(assignments, events, "buy", Period.DAY)
    series = TimeSeries(exp, "buy", Period.DAY, points, exposure_series(exp, by_day, last))
    charts = views.over_time_charts(series, Method.SEQUENTIAL)
    rate, lift, rows = charts.rate, charts.lift, charts.rows
    assert len(rows) == len(points) == 5
    (since,) = charts.since_exposure.lines
    assert len(since.points.split()) == len(series.since_exposure) == 5
    assert [line.name for line in rate.lines] == [v.name for v in exp.variants]
    (treated,) = lift.lines
    assert len(treated.points.split()) == 5 and len(treated.band.split()) == 10
    for chart in (rate, lift, charts.since_exposure):
        for line in chart.lines:
            for xy in (line.points + " " + line.band).split():
                x, y = map(float, xy.split(","))
                assert 0 <= x <= chart.width and 0 <= y <= chart.height
    assert lift.zero is not None and rate.zero is None and rate.markers


def test_a_breakdown_draws_every_slice_on_one_axis_and_shows_the_adjusted_p() -> None:
    from domain.analysis import Analysis
    from domain.breakdown import BreakdownTotals, SliceCell, breakdown
    from domain.totals import EventTotals

    def cell(users: int, converters: int) -> SliceCell:
        return SliceCell(users, EventTotals(converters, converters, 0.0, 0.0, converters))

    exp = an_experiment("sliced", (50, 50), primary="buy")
    a, b = (v.id for v in exp.variants)
    by_value = {f"v{i:02d}": {a: cell(400 + i, 40), b: cell(400, 40 + (i % 12) * 5)} for i in range(53)}
    overall = {v: cell(30, 3) for v in (a, b)}  # the users without a value
    for cells in by_value.values():
        overall = {v: overall[v] + cells[v] for v in (a, b)}
    found = breakdown(exp, "platform", ResultQuery.resolve(exp), BreakdownTotals(overall, by_value), Analysis(),
                      ResultCalculator())
    view = views.breakdown_view(found)
    assert [s.kind for s in view.slices] == ["value"] * 50 + ["other", "unknown"]
    assert view.slices[50].label == "other (3 values)" and view.slices[51].label == "unknown (no value)"
    bars = [row.bar for s in view.slices for row in s.rows if row.bar is not None]
    assert len(bars) == 52 and len({b.zero for b in bars}) == 1  # one axis for every slice
    for s, read in zip(view.slices, found.slices, strict=True):
        (treated,) = [r for r in s.rows if not r.is_control]
        assert treated.p_value_adjusted == read.p_values_adjusted[b]
        assert treated.p_value == read.results.comparisons[0].conversion.p_value
    assert any(b.tone == "good" for b in bars) and any(b.tone == "neutral" for b in bars)
    rows = list(csv.reader(io.StringIO(views.breakdown_csv(view))))
    assert rows[0][:4] == ["dimension", "slice_kind", "slice", "variant_id"]
    assert "p_value_adjusted_across_slices" in rows[0] and len(rows) == 1 + 52 * 2
    assert rows[-1][:3] == ["platform", "unknown", "unknown (no value)"]


def _sliced(experiment, cells_by_value: dict, unknown: dict, method: str = "fixed"):
    """A breakdown of hand-made slices: ``cells_by_value`` and ``unknown`` give per slice the
    (users, converters) of control and treatment."""
    from domain.analysis import AnalysisOverrides
    from domain.breakdown import BreakdownTotals, SliceCell, breakdown
    from domain.totals import EventTotals

    a, b = (v.id for v in experiment.variants)

    def cells(pair: tuple[tuple[int, int], tuple[int, int]]) -> dict:
        return {v: SliceCell(n, EventTotals(k, k, 0.0, 0.0, k)) for v, (n, k) in zip((a, b), pair, strict=True)}

    by_value = {value: cells(pair) for value, pair in cells_by_value.items()}
    overall = cells(unknown)
    for c in by_value.values():
        overall = {v: overall[v] + c[v] for v in (a, b)}
    analysis = AnalysisOverrides(method=method).over(experiment.analysis)  # as a request reads it
    return breakdown(experiment, "platform", ResultQuery.resolve(experiment), BreakdownTotals(overall, by_value),
                     analysis, ResultCalculator())


@pytest.mark.parametrize(
    ("direction", "tones"),
    [("increase", ["good", "bad", "neutral"]), ("decrease", ["bad", "good", "neutral"])],
)
def test_a_slices_bar_is_coloured_by_its_side_of_0_and_the_primary_metrics_direction(
    direction: str, tones: list[str]
) -> None:
    metric = {"name": "bought", "kind": "conversion", "event_type": "buy", "role": "primary", "direction": direction}
    exp = an_experiment("toned", (50, 50), primary="buy", analysis={"metrics": [metric]})
    found = _sliced(
        exp,
        {"ios": ((2000, 200), (2000, 400)),  # +10 pp: wholly up
         "android": ((1900, 400), (1900, 200)),  # −10.5 pp: wholly down
         "web": ((1800, 200), (1800, 205))},  # across 0
        unknown=((10, 1), (10, 1)),
    )
    view = views.breakdown_view(found)
    assert [s.label for s in view.slices] == ["ios", "android", "web", "unknown (no value)"]
    bars = [row.bar for s in view.slices[:3] for row in s.rows if not row.is_control]
    assert [b.tone for b in bars if b is not None] == tones
    assert all(row.bar is None for s in view.slices for row in s.rows if row.is_control)
    # One axis for every slice, wide enough for every interval and 0.
    drawn = [row.bar for s in view.slices for row in s.rows if row.bar is not None]
    assert len(drawn) == 4 and len({b.zero for b in drawn}) == 1
    assert all(0 <= b.lower <= b.upper <= views.AXIS_WIDTH for b in drawn)
    assert drawn[0].label.startswith("ios, v1: ")  # the bar says which slice and variant it draws


def test_a_breakdown_draws_the_methods_interval_and_keeps_the_across_slices_p() -> None:
    exp = an_experiment("methods", (50, 50), primary="buy")
    values = {"ios": ((500, 50), (500, 70)), "web": ((300, 30), (300, 31))}
    for method in ("fixed", "sequential", "bayesian"):
        found = _sliced(exp, values, unknown=((40, 4), (40, 6)), method=method)
        view = views.breakdown_view(found)
        assert view.method == method and view.interval_name == views.INTERVAL_NAMES[found.analysis.method]
        for s, read in zip(view.slices, found.slices, strict=True):
            (treated,) = [r for r in s.rows if not r.is_control]
            (comparison,) = read.results.comparisons
            expected = {
                "fixed": comparison.conversion.interval,
                "sequential": comparison.sequential and comparison.sequential.conversion.interval,
                "bayesian": comparison.bayesian and comparison.bayesian.conversion.absolute.interval,
            }[method]
            assert treated.interval == expected and expected is not None
            assert treated.p_value_adjusted == read.p_values_adjusted[treated.variant_id]
            assert (treated.chance_to_beat is not None) == (method == "bayesian")
    # The adjusted p over every slice is never below the slice's own p.
    for s in view.slices:
        (treated,) = [r for r in s.rows if not r.is_control]
        assert treated.p_value is not None and treated.p_value_adjusted is not None
        assert treated.p_value_adjusted >= treated.p_value
